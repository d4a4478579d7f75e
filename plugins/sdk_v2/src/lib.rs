//! Write a batch plugin for interface v2 (`plugins/wit/v2/plugin.wit`) as one Rust function.
//!
//! An item is its 1-based `index` and its `data` (a line or record of the batch's source, or
//! `None` when the source is a range of numbers). A plugin returns, per item, a number, a
//! record (bytes) or a skip, or refuses the item with a message.
//!
//! Without configuration:
//!
//! ```ignore
//! use batch_plugin_sdk_v2::{Item, Output};
//!
//! fn square(item: Item) -> Result<Output, String> {
//!     let n = item.index;
//!     n.checked_mul(n).map(Output::Number).ok_or_else(|| format!("{n} squared overflows u64"))
//! }
//! batch_plugin_sdk_v2::export_plugin!(square);
//! ```
//!
//! With a configuration (`starter --plugin-config JSON`), parsed once per instance by a
//! `configure` function and handed to every call:
//!
//! ```ignore
//! struct Divisor(u64);
//!
//! fn configure(config: Option<&str>) -> Result<Divisor, String> { /* parse the JSON */ }
//!
//! fn keep_multiples(divisor: &Divisor, item: Item) -> Result<Output, String> {
//!     Ok(if item.index % divisor.0 == 0 { Output::Number(item.index) } else { Output::Skip })
//! }
//! batch_plugin_sdk_v2::export_plugin!(keep_multiples, configure = configure);
//! ```
//!
//! The worker calls the function once per item, but hands the plugin whole blocks of items
//! per call (the macro loops over them), so the per-item cost of crossing into wasm stays at
//! a few nanoseconds. Build with `cargo build --profile wasm --target wasm32-unknown-unknown`:
//! the result imports nothing. (`wasm32-wasip2` also works; the worker links a deny-all WASI
//! for it.)

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/v2",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "batch_plugin_sdk_v2::bindings",
    });
}

pub use bindings::exports::batch::plugin::compute::{Item, Output};

#[doc(hidden)]
pub use bindings::exports::batch::plugin::compute::Guest;
#[doc(hidden)]
pub use std::{cell::RefCell, string::String, vec::Vec};

/// The item's data as UTF-8 text (a line without its line break), or a message saying why it
/// is not: for plugins that read text records.
pub fn text(item: &Item) -> Result<&str, String> {
    let data = item.data.as_deref().ok_or_else(|| {
        format!(
            "item {} has no data: this plugin reads records, not a range of numbers",
            item.index
        )
    })?;
    std::str::from_utf8(data).map_err(|e| format!("item {} is not UTF-8: {e}", item.index))
}

/// Exports a plugin.
///
/// - `export_plugin!(f)` with `f: fn(Item) -> Result<Output, String>`: the plugin takes no
///   configuration and refuses one.
/// - `export_plugin!(f, configure = c)` with `c: fn(Option<&str>) -> Result<C, String>` and
///   `f: fn(&C, Item) -> Result<Output, String>`: `c` parses the batch's configuration (JSON
///   text, or `None`) once per instance; its error fails the batch with that message.
#[macro_export]
macro_rules! export_plugin {
    ($process:path) => {
        fn __batch_plugin_no_config(config: Option<&str>) -> Result<(), $crate::String> {
            match config {
                None => Ok(()),
                Some(_) => Err("this plugin takes no configuration".into()),
            }
        }
        fn __batch_plugin_unconfigured(
            _: &(),
            item: $crate::Item,
        ) -> Result<$crate::Output, $crate::String> {
            $process(item)
        }
        $crate::export_plugin!(
            __batch_plugin_unconfigured,
            configure = __batch_plugin_no_config
        );
    };
    ($process:path, configure = $configure:path) => {
        struct __BatchPlugin;

        // The configuration of this instance: `configure` runs before any `process`. wasm32
        // instances are single-threaded, so a thread-local holds it without locking.
        ::std::thread_local! {
            static __BATCH_PLUGIN_CONFIG: $crate::RefCell<Option<Box<dyn ::core::any::Any>>> =
                const { $crate::RefCell::new(None) };
        }

        impl $crate::Guest for __BatchPlugin {
            fn configure(config: Option<$crate::String>) -> Result<(), $crate::String> {
                let parsed = $configure(config.as_deref())?;
                __BATCH_PLUGIN_CONFIG.with(|c| *c.borrow_mut() = Some(Box::new(parsed)));
                Ok(())
            }

            fn process(
                items: $crate::Vec<$crate::Item>,
            ) -> $crate::Vec<Result<$crate::Output, $crate::String>> {
                __BATCH_PLUGIN_CONFIG.with(|c| {
                    let config = c.borrow();
                    match config.as_ref().and_then(|c| c.downcast_ref()) {
                        Some(config) => items.into_iter().map(|i| $process(config, i)).collect(),
                        None => items
                            .iter()
                            .map(|_| Err("the plugin was not configured".into()))
                            .collect(),
                    }
                })
            }
        }

        $crate::bindings::export_bindings!(__BatchPlugin with_types_in $crate::bindings);
    };
}
