//! The column protocol of the optional `ranges` and `records` exports
//! (`plugins/wit/v2/plugin.wit`): a block of range items, or of records in one buffer, in one
//! call, outputs in columns (kinds, numbers, records, errors), checked against each other
//! before any is believed.

use batch_core::Output;
use wasmtime::Store;

use super::error::{ItemSpan, PluginError};
use super::interface::{Columns, Ranges, RecordBlock, RecordColumns, Records};
use super::module::LoadedPlugin;
use super::sandbox::StoreState;

/// What `ranges.process-range` reports per item (`plugins/wit/v2/plugin.wit`).
mod kind {
    pub(super) const NUMBER: u8 = 0;
    pub(super) const RECORD: u8 = 1;
    pub(super) const SKIP: u8 = 2;
    pub(super) const ERROR: u8 = 3;
}

/// One `ranges.process-range` call on the `len` items of `span`: the deadline armed, what the
/// plugin printed logged.
pub(super) fn process_ranges(
    plugin: &LoadedPlugin,
    store: &mut Store<StoreState>,
    ranges: &Ranges,
    span: ItemSpan,
    len: usize,
) -> Result<Columns, PluginError> {
    let count = u32::try_from(len).expect("a block is far smaller than 2^32 items");
    plugin.guarded(store, span, |store| {
        ranges.call_process_range(store, span.first, count)
    })
}

/// Checks that a plugin's columns (untrusted) agree with each other and with the block of `len`
/// items; returns how many items are numbers.
pub(super) fn check_columns(
    plugin: &LoadedPlugin,
    columns: &Columns,
    span: ItemSpan,
    len: usize,
) -> Result<usize, PluginError> {
    check_count(plugin, span, columns.kinds.len(), len)?;
    // The common case first, in one vectorized pass: every item a number.
    if columns.numbers.len() == len && columns.kinds.iter().fold(0, |any, &kind| any | kind) == 0 {
        return Ok(len);
    }
    let records = columns.records.len();
    check_kinds(
        plugin,
        span,
        &columns.kinds,
        |n| span.first + n as u64,
        [columns.numbers.len(), records, columns.errors.len()],
    )
}

/// Checks that a call on the `want` items of `span` gave `got` results.
fn check_count(
    plugin: &LoadedPlugin,
    span: ItemSpan,
    got: usize,
    want: usize,
) -> Result<(), PluginError> {
    if got == want {
        return Ok(());
    }
    Err(PluginError::ResultCount {
        plugin: plugin.label(),
        items: span,
        got,
        want,
    })
}

/// Checks that `kinds` (one per item of `span`, the `n`-th being item `index_of(n)`) are known
/// kinds, as many of each as the columns of numbers, records and errors hold (`lens`, in that
/// order); returns how many are numbers.
fn check_kinds(
    plugin: &LoadedPlugin,
    span: ItemSpan,
    kinds: &[u8],
    index_of: impl Fn(usize) -> u64,
    lens: [usize; 3],
) -> Result<usize, PluginError> {
    let inconsistent = |problem: String| PluginError::Columns {
        plugin: plugin.label(),
        items: span,
        problem,
    };
    let mut of_kind = [0usize; 4];
    for (n, &kind) in kinds.iter().enumerate() {
        match of_kind.get_mut(usize::from(kind)) {
            Some(count) => *count += 1,
            None => {
                return Err(inconsistent(format!(
                    "item {} is of unknown kind {kind}",
                    index_of(n)
                )));
            }
        }
    }
    for (kind, name, column) in [
        (kind::NUMBER, "numbers", lens[0]),
        (kind::RECORD, "records", lens[1]),
        (kind::ERROR, "errors", lens[2]),
    ] {
        let want = of_kind[usize::from(kind)];
        if column != want {
            return Err(inconsistent(format!(
                "{want} items of kind {kind}, but {column} {name}"
            )));
        }
    }
    Ok(of_kind[usize::from(kind::NUMBER)])
}

/// Checked columns ([`check_columns`]) as one output or refusal message per item, in order.
pub(super) fn expand_columns(columns: Columns) -> Vec<Result<Output, String>> {
    let Columns {
        kinds,
        numbers,
        records,
        errors,
    } = columns;
    let mut records = records.into_iter();
    expand(
        kinds,
        numbers,
        || records.next().unwrap_or_default(),
        errors,
    )
}

/// Checked columns as one output or refusal message per item, in order: a kind per item, the
/// numbers and errors in their columns, each record from `record`.
fn expand(
    kinds: Vec<u8>,
    numbers: Vec<u64>,
    mut record: impl FnMut() -> Vec<u8>,
    errors: Vec<String>,
) -> Vec<Result<Output, String>> {
    let (mut numbers, mut errors) = (numbers.into_iter(), errors.into_iter());
    kinds
        .into_iter()
        .map(|kind| match kind {
            kind::NUMBER => Ok(Output::Number(numbers.next().unwrap_or_default())),
            kind::RECORD => Ok(Output::Record(record())),
            kind::SKIP => Ok(Output::Skip),
            _ => Err(errors.next().unwrap_or_default()),
        })
        .collect()
}

/// One `records.process-records` call on `block` (the items of `span`): the deadline armed,
/// what the plugin printed logged.
pub(super) fn process_records(
    plugin: &LoadedPlugin,
    store: &mut Store<StoreState>,
    records: &Records,
    block: &RecordBlock,
    span: ItemSpan,
) -> Result<RecordColumns, PluginError> {
    plugin.guarded(store, span, |store| {
        records.call_process_records(store, block)
    })
}

/// Checks that a plugin's record columns (untrusted) agree with each other and with the block
/// of the records `indexes`: the kinds as [`check_columns`] does, and the output records' ends
/// in order within their data.
pub(super) fn check_record_columns(
    plugin: &LoadedPlugin,
    columns: &RecordColumns,
    span: ItemSpan,
    indexes: &[u64],
) -> Result<(), PluginError> {
    check_count(plugin, span, columns.kinds.len(), indexes.len())?;
    let lens = [
        columns.numbers.len(),
        columns.ends.len(),
        columns.errors.len(),
    ];
    check_kinds(plugin, span, &columns.kinds, |n| indexes[n], lens)?;
    let mut start = 0;
    for &end in &columns.ends {
        if end < start || end as usize > columns.data.len() {
            return Err(PluginError::Columns {
                plugin: plugin.label(),
                items: span,
                problem: format!(
                    "an output record ends at {end}, after one that ends at {start}, in {} \
                     bytes of output records",
                    columns.data.len()
                ),
            });
        }
        start = end;
    }
    Ok(())
}

/// Checked record columns ([`check_record_columns`]) as one output or refusal message per
/// record, in order.
pub(super) fn expand_record_columns(columns: RecordColumns) -> Vec<Result<Output, String>> {
    let RecordColumns {
        kinds,
        numbers,
        data,
        ends,
        errors,
    } = columns;
    let mut ends = ends.into_iter();
    let mut start = 0usize;
    let record = || {
        let end = ends.next().map_or(start, |end| end as usize);
        let record = data.get(start..end).unwrap_or_default().to_vec();
        start = end;
        record
    };
    expand(kinds, numbers, record, errors)
}
