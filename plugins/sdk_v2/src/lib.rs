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
//! a few nanoseconds. The macro also exports the optional `ranges` and `records` interfaces
//! (blocks of a range source, or of records in one buffer; outputs in columns), which the
//! worker lowers and lifts in bulk. Build with `cargo build --profile wasm --target wasm32-unknown-unknown`:
//! the result imports nothing. (`wasm32-wasip2` also works; the worker links a deny-all WASI
//! for it.)

#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "json")]
pub mod json;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/v2",
        world: "plugin-with-records",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "batch_plugin_sdk_v2::bindings",
    });
}

pub use bindings::exports::batch::plugin::compute::{Item, Output};

#[doc(hidden)]
pub use bindings::exports::batch::plugin::compute::Guest;
#[doc(hidden)]
pub use bindings::exports::batch::plugin::ranges::{Columns, Guest as RangesGuest};
#[doc(hidden)]
pub use bindings::exports::batch::plugin::records::{
    Guest as RecordsGuest, RecordBlock, RecordColumns,
};

/// What `ranges.process-range` reports per item (see `plugins/wit/v2/plugin.wit`).
#[doc(hidden)]
pub mod kind {
    pub const NUMBER: u8 = 0;
    pub const RECORD: u8 = 1;
    pub const SKIP: u8 = 2;
    pub const ERROR: u8 = 3;
}

/// Sorts one result into columns: a number or an error into its column, a record through
/// `record`; returns its kind.
#[inline(always)]
fn sort_result(
    result: Result<Output, String>,
    numbers: &mut Vec<u64>,
    record: impl FnOnce(Vec<u8>),
    errors: &mut Vec<String>,
) -> u8 {
    match result {
        Ok(Output::Number(n)) => {
            numbers.push(n);
            kind::NUMBER
        }
        Ok(Output::Record(bytes)) => {
            record(bytes);
            kind::RECORD
        }
        Ok(Output::Skip) => kind::SKIP,
        Err(message) => {
            errors.push(message);
            kind::ERROR
        }
    }
}

/// Adds one item's result to `columns`.
#[doc(hidden)]
#[inline(always)]
pub fn push_column(columns: &mut Columns, result: Result<Output, String>) {
    let records = &mut columns.records;
    let kind = sort_result(
        result,
        &mut columns.numbers,
        |bytes| records.push(bytes),
        &mut columns.errors,
    );
    columns.kinds.push(kind);
}

/// Empty columns with room for `count` items of numbers.
#[doc(hidden)]
pub fn columns_for(count: u32) -> Columns {
    Columns {
        kinds: Vec::with_capacity(count as usize),
        numbers: Vec::with_capacity(count as usize),
        records: Vec::new(),
        errors: Vec::new(),
    }
}
/// Adds one record's result to `columns`.
#[doc(hidden)]
#[inline(always)]
pub fn push_record_column(columns: &mut RecordColumns, result: Result<Output, String>) {
    let (data, ends) = (&mut columns.data, &mut columns.ends);
    let record = |bytes: Vec<u8>| {
        data.extend_from_slice(&bytes);
        // A block's outputs fit in the instance's memory, far below 4 GiB.
        ends.push(data.len() as u32);
    };
    let kind = sort_result(result, &mut columns.numbers, record, &mut columns.errors);
    columns.kinds.push(kind);
}

/// Runs `process` on each record of `block` (with this instance's configuration, `None`
/// before `configure` has run), its results in columns.
#[doc(hidden)]
pub fn process_records<C>(
    block: RecordBlock,
    config: Option<&C>,
    process: impl Fn(&C, Item) -> Result<Output, String>,
) -> RecordColumns {
    let count = block.indexes.len();
    let mut columns = RecordColumns {
        kinds: Vec::with_capacity(count),
        numbers: Vec::new(),
        data: Vec::new(),
        ends: Vec::new(),
        errors: Vec::new(),
    };
    let mut start = 0usize;
    for (n, &index) in block.indexes.iter().enumerate() {
        let end = block.ends.get(n).map_or(start, |&end| end as usize);
        let data = block.data.get(start..end).map(<[u8]>::to_vec);
        start = end;
        let result = match (config, data) {
            (Some(config), Some(data)) => process(
                config,
                Item {
                    index,
                    data: Some(data),
                },
            ),
            (None, _) => Err(unconfigured()),
            (_, None) => Err(format!("item {index}: the block's ends are out of order")),
        };
        push_record_column(&mut columns, result);
    }
    columns
}

#[doc(hidden)]
pub use std::{string::String, vec::Vec};

use std::any::Any;
use std::cell::RefCell;

// The configuration of this instance: `configure` runs before any `process`. wasm32 instances
// are single-threaded, so a thread-local holds it without locking.
thread_local! {
    static CONFIG: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Keeps this instance's parsed configuration.
#[doc(hidden)]
pub fn set_config<C: 'static>(config: C) {
    CONFIG.with(|c| *c.borrow_mut() = Some(Box::new(config)));
}

/// Runs `f` with this instance's configuration (of the type `configure` returns), or `None`
/// before `configure` has run.
#[doc(hidden)]
pub fn with_config<C: 'static, R>(
    _configure: fn(Option<&str>) -> Result<C, String>,
    f: impl FnOnce(Option<&C>) -> R,
) -> R {
    CONFIG.with(|c| f(c.borrow().as_ref().and_then(|c| c.downcast_ref())))
}

/// The refusal of every item when `configure` has not run (the worker always runs it).
#[doc(hidden)]
pub fn unconfigured() -> String {
    "the plugin was not configured".into()
}

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
/// - Either, followed by `input = numbers | text | json | csv_row`: the items the plugin
///   takes ([`plugin_input!`]), so a batch over other items is refused before it runs.
#[macro_export]
macro_rules! export_plugin {
    ($process:path, input = $input:ident) => {
        $crate::plugin_input!($input);
        $crate::export_plugin!($process);
    };
    ($process:path, configure = $configure:path, input = $input:ident) => {
        $crate::plugin_input!($input);
        $crate::export_plugin!($process, configure = $configure);
    };
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

        impl $crate::Guest for __BatchPlugin {
            fn configure(config: Option<$crate::String>) -> Result<(), $crate::String> {
                $crate::set_config($configure(config.as_deref())?);
                Ok(())
            }

            fn process(
                items: $crate::Vec<$crate::Item>,
            ) -> $crate::Vec<Result<$crate::Output, $crate::String>> {
                $crate::with_config($configure, |config| match config {
                    Some(config) => items.into_iter().map(|i| $process(config, i)).collect(),
                    None => items.iter().map(|_| Err($crate::unconfigured())).collect(),
                })
            }
        }

        impl $crate::RangesGuest for __BatchPlugin {
            fn process_range(first: u64, count: u32) -> $crate::Columns {
                let mut columns = $crate::columns_for(count);
                $crate::with_config($configure, |config| {
                    for index in (first..).take(count as usize) {
                        let result = match config {
                            Some(config) => $process(config, $crate::Item { index, data: None }),
                            None => Err($crate::unconfigured()),
                        };
                        $crate::push_column(&mut columns, result);
                    }
                });
                columns
            }
        }

        impl $crate::RecordsGuest for __BatchPlugin {
            fn process_records(block: $crate::RecordBlock) -> $crate::RecordColumns {
                $crate::with_config($configure, |config| {
                    $crate::process_records(block, config, $process)
                })
            }
        }

        $crate::bindings::export_bindings!(__BatchPlugin with_types_in $crate::bindings);
    };
}

/// States the items the plugin takes, in the `batch-plugin:input` custom section the worker
/// reads when it loads the plugin: `numbers` (the items `1..=N` of a range batch, no data),
/// `text` (any record's bytes), `json` (a JSON value: JSON Lines, or CSV rows as JSON
/// objects) or `csv_row` (a CSV row as written: lines, or a CSV source's rows without its
/// header). The worker refuses a batch whose source gives other items, before any item runs.
/// A plugin that states nothing is given whatever the batch's source gives.
#[macro_export]
macro_rules! plugin_input {
    (numbers) => {
        $crate::plugin_input!(@section b"numbers");
    };
    (text) => {
        $crate::plugin_input!(@section b"text");
    };
    (json) => {
        $crate::plugin_input!(@section b"json");
    };
    (csv_row) => {
        $crate::plugin_input!(@section b"csv-row");
    };
    (@section $name:literal) => {
        #[unsafe(link_section = "batch-plugin:input")]
        #[used]
        static __BATCH_PLUGIN_INPUT: [u8; $name.len()] = *$name;
    };
}
