//! The plugin interfaces this worker implements, side by side: `batch:plugin@1.0.0` (one
//! number in, one number out, per call) and `batch:plugin@2.0.0` (a configuration, then
//! blocks of items, each producing a number, a record or a skip). A component is of the
//! version it exports; one worker runs both.

pub mod v1 {
    wasmtime::component::bindgen!({
        path: "../plugins/wit/plugin.wit",
        world: "plugin",
    });
}

pub mod v2 {
    wasmtime::component::bindgen!({
        path: "../plugins/wit/v2",
        world: "plugin",
    });
}

/// The same package's optional `ranges` interface (range blocks, outputs in columns), as the
/// Rust SDK exports it beside `compute`. Only its bindings are used from this world.
pub mod v2_ranges {
    wasmtime::component::bindgen!({
        path: "../plugins/wit/v2",
        world: "plugin-with-ranges",
    });
}

/// The same package's optional `records` interface (record blocks in one buffer, outputs in
/// columns), as the Rust SDK exports it beside `compute` and `ranges`. Only its bindings are
/// used from this world.
pub mod v2_records {
    wasmtime::component::bindgen!({
        path: "../plugins/wit/v2",
        world: "plugin-with-records",
    });
}

/// The exported interface names, as listed by `starter --list-plugins`.
pub const V1: &str = "batch:plugin/compute@1.0.0";
pub const V2: &str = "batch:plugin/compute@2.0.0";
pub const V2_RANGES: &str = "batch:plugin/ranges@2.0.0";
pub const V2_RECORDS: &str = "batch:plugin/records@2.0.0";

/// Which interface a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    V1,
    V2,
}

impl Interface {
    pub fn name(self) -> &'static str {
        match self {
            Interface::V1 => V1,
            Interface::V2 => V2,
        }
    }

    /// The interface a component's exports implement (the newest if both), if any.
    pub fn of<'a>(mut exports: impl Iterator<Item = &'a str>) -> Option<Self> {
        let names: Vec<&str> = exports.by_ref().collect();
        if names.contains(&V2) {
            Some(Interface::V2)
        } else if names.contains(&V1) {
            Some(Interface::V1)
        } else {
            None
        }
    }
}

/// One item handed to a v2 plugin.
pub type Item = v2::exports::batch::plugin::compute::Item;

/// Where a component's `ranges` export is, found once per plugin.
pub type RangesIndices = v2_ranges::exports::batch::plugin::ranges::GuestIndices;
/// A live instance's `ranges` export.
pub type Ranges = v2_ranges::exports::batch::plugin::ranges::Guest;
/// What `ranges.process-range` returns.
pub type Columns = v2_ranges::exports::batch::plugin::ranges::Columns;

/// Where a component's `records` export is, found once per plugin.
pub type RecordsIndices = v2_records::exports::batch::plugin::records::GuestIndices;
/// A live instance's `records` export.
pub type Records = v2_records::exports::batch::plugin::records::Guest;
/// What `records.process-records` takes.
pub type RecordBlock = v2_records::exports::batch::plugin::records::RecordBlock;
/// What `records.process-records` returns.
pub type RecordColumns = v2_records::exports::batch::plugin::records::RecordColumns;
