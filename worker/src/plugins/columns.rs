//! The column protocol of the optional `ranges` export (`plugins/wit/v2/plugin.wit`): a
//! block of range items in one call, outputs in columns (kinds, numbers, records, errors),
//! checked against each other before any is believed.

use batch_core::Output;
use wasmtime::Store;

use super::error::{ItemSpan, PluginError};
use super::interface::{Columns, Ranges};
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
    plugin.engine().arm_deadline(store);
    let outcome = ranges.call_process_range(&mut *store, span.first, count);
    plugin.log_output(store, &span);
    outcome.map_err(|e| plugin.call_error(span, e))
}

/// Checks that a plugin's columns (untrusted) agree with each other and with the block of `len`
/// items; returns how many items are numbers.
pub(super) fn check_columns(
    plugin: &LoadedPlugin,
    columns: &Columns,
    span: ItemSpan,
    len: usize,
) -> Result<usize, PluginError> {
    if columns.kinds.len() != len {
        return Err(PluginError::ResultCount {
            plugin: plugin.label(),
            items: span,
            got: columns.kinds.len(),
            want: len,
        });
    }
    // The common case first, in one vectorized pass: every item a number.
    if columns.numbers.len() == len && columns.kinds.iter().fold(0, |any, &kind| any | kind) == 0 {
        return Ok(len);
    }
    let inconsistent = |problem: String| PluginError::Columns {
        plugin: plugin.label(),
        items: span,
        problem,
    };
    let mut of_kind = [0usize; 4];
    for (&kind, index) in columns.kinds.iter().zip(span.first..) {
        match of_kind.get_mut(usize::from(kind)) {
            Some(count) => *count += 1,
            None => {
                return Err(inconsistent(format!(
                    "item {index} is of unknown kind {kind}"
                )));
            }
        }
    }
    for (kind, name, column) in [
        (kind::NUMBER, "numbers", columns.numbers.len()),
        (kind::RECORD, "records", columns.records.len()),
        (kind::ERROR, "errors", columns.errors.len()),
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
    let (mut numbers, mut records, mut errors) =
        (numbers.into_iter(), records.into_iter(), errors.into_iter());
    kinds
        .into_iter()
        .map(|kind| match kind {
            kind::NUMBER => Ok(Output::Number(numbers.next().unwrap_or_default())),
            kind::RECORD => Ok(Output::Record(records.next().unwrap_or_default())),
            kind::SKIP => Ok(Output::Skip),
            _ => Err(errors.next().unwrap_or_default()),
        })
        .collect()
}
