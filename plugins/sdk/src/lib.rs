//! Write a batch plugin as one Rust function.
//!
//! ```ignore
//! fn square(item: u64) -> Result<u64, String> {
//!     item.checked_mul(item).ok_or_else(|| format!("{item} squared overflows u64"))
//! }
//! batch_plugin_sdk::export_plugin!(square);
//! ```
//!
//! Build with `cargo build --profile wasm --target wasm32-unknown-unknown`: the result is a core
//! module carrying the `batch:plugin@1.0.0` component type, which the worker wraps into a
//! component when it loads it (see `plugins/wit/plugin.wit`).

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "batch_plugin_sdk::bindings",
    });
}

#[doc(hidden)]
pub use bindings::exports::batch::plugin::compute::Guest;
#[doc(hidden)]
pub use std::string::String;

/// Exports `$f: fn(u64) -> Result<u64, String>` as the plugin's `process` function.
#[macro_export]
macro_rules! export_plugin {
    ($f:path) => {
        struct __BatchPlugin;

        impl $crate::Guest for __BatchPlugin {
            fn process(item: u64) -> ::core::result::Result<u64, $crate::String> {
                $f(item)
            }
        }

        $crate::bindings::export_bindings!(__BatchPlugin with_types_in $crate::bindings);
    };
}
