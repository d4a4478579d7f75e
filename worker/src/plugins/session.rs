//! A configured instance of a plugin, v1 or v2 alike: callers run blocks of items through one
//! type, whichever interface the plugin implements.

use std::ops::Range;
use std::sync::Arc;

use batch_core::text::shown_message;
use batch_core::{Output, Outputs, PluginConfig};
use wasmtime::{PoolConcurrencyLimitError, Store};

use super::columns::{
    check_columns, check_record_columns, expand_columns, expand_record_columns, process_ranges,
    process_records,
};
use super::error::{ItemSpan, PluginError};
use super::http::LeafHttp;
use super::interface::{self, Interface, Item, Ranges, Records, v1, v2};
use super::link::Pre;
use super::module::{LoadedPlugin, is_deadline};
use super::record_buffer::RecordBuffer;
use super::sandbox::{CallSlot, StoreState};
use v2::exports::batch::plugin::compute::Output as WitOutput;

/// A live instance, by interface version (v2: with its `ranges` and `records` exports, if
/// any).
pub(super) enum Instance {
    V1(v1::Plugin),
    V2 {
        compute: v2::Plugin,
        ranges: Option<Ranges>,
        records: Option<Records>,
    },
}

/// Running a loaded plugin: in a fresh instance per call, or in a session.
impl LoadedPlugin {
    /// Instantiates (and, with no configuration, does not configure) the plugin once and
    /// reports the linear memory it holds at start: what every call costs before any item.
    pub fn instantiated_memory(&self, slot: &mut CallSlot) -> Result<usize, PluginError> {
        let mut store = self.engine().new_store(slot, None);
        self.instantiate(&mut store)?;
        Ok(store.data().memory_bytes())
    }

    /// The number the plugin computes for range item `item`, with no configuration, in a fresh
    /// store, after waiting for a call slot. Blocking: for tools and tests (a v2 plugin's
    /// record or skip is reported as an error here); the worker uses [`Self::call_with`].
    pub fn call(&self, item: u64) -> Result<u64, PluginError> {
        let mut slot = self.engine().call_slot_blocking();
        match self.call_with(&mut slot, None, item)? {
            Output::Number(n) => Ok(n),
            other => Err(self.refused(
                item,
                &format!("expected a number, the plugin produced {other:?}"),
            )),
        }
    }

    /// Runs the plugin on range item `item` in a fresh instance (configured with `config`),
    /// in the caller's call slot. Blocking (it runs wasm): call it from a blocking thread,
    /// never directly on the async runtime.
    pub fn call_with(
        &self,
        slot: &mut CallSlot,
        config: Option<&PluginConfig>,
        item: u64,
    ) -> Result<Output, PluginError> {
        let mut session = self.open(slot, config)?;
        session.call(item)
    }

    /// An instance kept for many calls: one store, one instantiation, one `configure`, each
    /// call still bound by the CPU deadline (re-armed per call) and the memory cap (for the
    /// whole session). Calls share the instance's memory, so use it only for the items of one
    /// slice of one leaf of one batch, where the per-item isolation is traded for speed. The
    /// session keeps `slot` until it is dropped.
    pub fn session(
        self: &Arc<Self>,
        slot: CallSlot,
        config: Option<&PluginConfig>,
    ) -> Result<PluginSession<'static>, PluginError> {
        self.session_calling(slot, config, None)
    }

    /// [`Self::session`] in a batch that calls services (`http`: its leaf's HTTP): the
    /// plugin's requests go through `http`, each stamped with the item set by
    /// [`PluginSession::begin_item`].
    pub fn session_calling(
        self: &Arc<Self>,
        mut slot: CallSlot,
        config: Option<&PluginConfig>,
        http: Option<Arc<LeafHttp>>,
    ) -> Result<PluginSession<'static>, PluginError> {
        let session = self.open_calling(&mut slot, config, http)?;
        Ok(PluginSession {
            store: session.store,
            instance: session.instance,
            plugin: PluginHandle::Shared(self.clone()),
            range_items: Vec::new(),
            _slot: Some(slot),
        })
    }

    /// A configured instance in a fresh store; the caller holds the slot.
    pub(super) fn open(
        &self,
        slot: &mut CallSlot,
        config: Option<&PluginConfig>,
    ) -> Result<PluginSession<'_>, PluginError> {
        self.open_calling(slot, config, None)
    }

    /// [`Self::open`], with the leaf's HTTP in a batch that calls services. A plugin that
    /// imports wasi:http is refused anywhere else, before it is instantiated.
    fn open_calling(
        &self,
        slot: &mut CallSlot,
        config: Option<&PluginConfig>,
        http: Option<Arc<LeafHttp>>,
    ) -> Result<PluginSession<'_>, PluginError> {
        if self.calls_services() && http.is_none() {
            return Err(PluginError::HttpNotGranted {
                plugin: self.label(),
                reason: "the batch names no host it may call: start it with --http-allow \
                         HOST[:PORT] (--mode batch or a data source), on workers that grant \
                         the host with --allow-http"
                    .into(),
            });
        }
        let mut store = self.engine().new_store(slot, http);
        let instance = self.instantiate(&mut store)?;
        let mut session = PluginSession {
            store,
            instance,
            plugin: PluginHandle::Borrowed(self),
            range_items: Vec::new(),
            _slot: None,
        };
        session.configure(config)?;
        Ok(session)
    }

    /// Instantiates the plugin in `store`. A full engine-wide pool is the host's condition
    /// (retryable); anything else (a start function that traps, a component over the per-call
    /// limits) is the plugin's.
    fn instantiate(&self, store: &mut Store<StoreState>) -> Result<Instance, PluginError> {
        let instance = match self.pre() {
            Pre::V1(pre) => pre.instantiate(&mut *store).map(Instance::V1),
            Pre::V2 {
                instance_pre,
                compute,
                ranges,
                records,
            } => instance_pre.instantiate(&mut *store).and_then(|instance| {
                let ranges = match ranges {
                    Some(ranges) => Some(ranges.load(&mut *store, &instance)?),
                    None => None,
                };
                let records = match records {
                    Some(records) => Some(records.load(&mut *store, &instance)?),
                    None => None,
                };
                Ok(Instance::V2 {
                    compute: compute.load(&mut *store, &instance)?,
                    ranges,
                    records,
                })
            }),
        };
        self.log_output(store, &"instantiation");
        instance.map_err(|source| {
            if source.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
                PluginError::HostBusy { source }
            } else {
                PluginError::Instantiate {
                    plugin: self.label(),
                    source,
                }
            }
        })
    }
}

/// The plugin a session runs: borrowed for one call, shared for a long session.
pub(super) enum PluginHandle<'a> {
    Borrowed(&'a LoadedPlugin),
    Shared(Arc<LoadedPlugin>),
}

impl std::ops::Deref for PluginHandle<'_> {
    type Target = LoadedPlugin;
    fn deref(&self) -> &LoadedPlugin {
        match self {
            PluginHandle::Borrowed(p) => p,
            PluginHandle::Shared(p) => p,
        }
    }
}

/// A configured instance (see [`LoadedPlugin::session`]).
pub struct PluginSession<'a> {
    // Field order is drop order: the store (and its pool slots) goes before the call slot.
    pub(super) store: Store<StoreState>,
    pub(super) instance: Instance,
    pub(super) plugin: PluginHandle<'a>,
    /// Reused for blocks of range items, so a block allocates nothing.
    pub(super) range_items: Vec<Item>,
    pub(super) _slot: Option<CallSlot>,
}

impl PluginSession<'_> {
    pub fn interface(&self) -> Interface {
        self.plugin.interface()
    }

    /// Whether the session is in a batch that calls services: then each call takes one item
    /// ([`Self::begin_item`]), so each request belongs to one.
    pub fn calls_services(&self) -> bool {
        self.store.data().http().is_some()
    }

    /// In a batch that calls services, the next call is the item at `index`'s: its requests
    /// carry its keys.
    pub fn begin_item(&mut self, index: u64) {
        if let Some(http) = self.store.data_mut().http_mut() {
            http.begin_item(index);
        }
    }

    /// The item at `index`'s call is over, with `results`. When the plugin failed the item
    /// after one of its requests failed transiently (the host's retries spent), the failure is
    /// the service's, not the item's: [`PluginError::ServiceUnavailable`], which retries the
    /// leaf.
    pub fn end_item(
        &mut self,
        index: u64,
        results: Result<Vec<Result<Output, PluginError>>, PluginError>,
    ) -> Result<Vec<Result<Output, PluginError>>, PluginError> {
        let Some(http) = self.store.data_mut().http_mut() else {
            return results;
        };
        let Some(reason) = http.end_item() else {
            return results;
        };
        let failed = match &results {
            Ok(each) => each.iter().any(Result::is_err),
            Err(_) => true,
        };
        if !failed {
            return results;
        }
        Err(PluginError::ServiceUnavailable {
            plugin: self.plugin.label(),
            item: index,
            reason: batch_core::text::shown_message(&reason),
        })
    }

    /// `configure` (interface v2) with the batch's configuration. A v1 plugin takes none.
    pub(super) fn configure(&mut self, config: Option<&PluginConfig>) -> Result<(), PluginError> {
        let plugin = &self.plugin;
        let refused = |message: String| PluginError::Configure {
            plugin: plugin.label(),
            message,
        };
        match &self.instance {
            Instance::V1(_) => match config {
                None => Ok(()),
                Some(_) => Err(refused(format!(
                    "it implements {}, which takes no configuration (--plugin-config needs {})",
                    interface::V1,
                    interface::V2
                ))),
            },
            Instance::V2 {
                compute: instance, ..
            } => {
                plugin.engine().arm_deadline(&mut self.store);
                let outcome = instance
                    .batch_plugin_compute()
                    .call_configure(&mut self.store, config.map(|c| c.json.as_str()));
                plugin.log_output(&mut self.store, &"configure");
                match outcome {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(message)) => Err(refused(shown_message(&message))),
                    Err(e) if is_deadline(&e) => Err(refused(format!(
                        "it exceeded its CPU deadline of {} ms",
                        plugin.cpu_deadline().as_millis()
                    ))),
                    Err(e) => Err(refused(shown_message(&format!("it trapped: {e:#}")))),
                }
            }
        }
    }

    /// The output for range item `item` (a block of one).
    pub fn call(&mut self, item: u64) -> Result<Output, PluginError> {
        let mut outputs = self.process_range(item, 1)?;
        Ok(outputs.pop().unwrap_or(Output::Skip))
    }

    /// Adds the outputs of the `len` range items from `first` on to `outputs`, without
    /// collecting them first: the hot path of a `batch`-mode leaf (`numbers` is scratch space,
    /// reused across blocks). An item the plugin refuses goes to `refused` when given (the
    /// instance goes on: a refusal is an answer, not a fault); without it the first refusal
    /// fails the block. A call that fails as a whole fails the block. After a failed block
    /// `outputs` holds part of it: the caller discards it.
    pub fn process_range_into(
        &mut self,
        first: u64,
        len: usize,
        outputs: &mut Outputs,
        numbers: &mut Vec<u64>,
        mut refused: Option<&mut dyn FnMut(PluginError)>,
    ) -> Result<(), PluginError> {
        let span = span_of(first, len);
        let plugin = &self.plugin;
        let results = match &self.instance {
            Instance::V1(_) => {
                // One call per item anyway.
                let items = range_items(&mut self.range_items, first, len);
                let each = self.process_each(&items);
                self.range_items = items;
                for result in each? {
                    match (result, refused.as_mut()) {
                        (Ok(output), _) => outputs.add(&output),
                        (Err(e), Some(refused)) => refused(e),
                        (Err(e), None) => return Err(e),
                    }
                }
                return Ok(());
            }
            Instance::V2 {
                ranges: Some(ranges),
                ..
            } => {
                let columns = process_ranges(plugin, &mut self.store, ranges, span, len)?;
                if check_columns(plugin, &columns, span, len)? == len {
                    // Numbers only: aggregated straight from their column.
                    outputs.extend_numbers(&columns.numbers);
                    return Ok(());
                }
                expand_columns(columns)
            }
            Instance::V2 {
                compute: instance,
                ranges: None,
                ..
            } => {
                let items = range_items(&mut self.range_items, first, len);
                let results = process_v2(plugin, &mut self.store, instance, &items, span);
                self.range_items = items;
                results?
                    .into_iter()
                    .map(|result| result.map(Output::from))
                    .collect()
            }
        };
        numbers.clear();
        let mut refusal = None;
        for (result, index) in results.into_iter().zip(first..) {
            match result {
                Ok(Output::Number(n)) => numbers.push(n),
                // Records and skips have no place in the numbers' edges: counting them
                // before the block's numbers gives the same statistics as item order.
                Ok(other) => outputs.add(&other),
                Err(message) => {
                    let e = plugin.refused(index, &message);
                    match refused.as_mut() {
                        Some(refused) => refused(e),
                        None => {
                            refusal = Some(e);
                            break;
                        }
                    }
                }
            }
        }
        outputs.extend_numbers(numbers);
        refusal.map_or(Ok(()), Err)
    }

    /// The outputs of the `len` range items from `first` on, in one call (v2) or one call per
    /// item (v1). The first failing item fails the block.
    pub fn process_range(&mut self, first: u64, len: usize) -> Result<Vec<Output>, PluginError> {
        let items = range_items(&mut self.range_items, first, len);
        let outputs = self.process(&items);
        self.range_items = items;
        outputs
    }

    /// The outputs of a block of items, in order. Blocking, like [`LoadedPlugin::call`]. The
    /// first failing item fails the block. After a trap or a deadline the instance is
    /// unusable: open a new session.
    pub fn process(&mut self, items: &[Item]) -> Result<Vec<Output>, PluginError> {
        self.process_each(items)?.into_iter().collect()
    }

    /// Each item's output or refusal, in order; `Err` when the whole call failed (a trap, the
    /// deadline, a broken interface), which no item can be blamed for alone. A block of range
    /// items (consecutive, without data) goes through the plugin's `ranges` export when it
    /// has one, as in a `batch`-mode leaf.
    pub fn process_each(
        &mut self,
        items: &[Item],
    ) -> Result<Vec<Result<Output, PluginError>>, PluginError> {
        let records = match &self.instance {
            Instance::V2 {
                records: Some(_), ..
            } => RecordBuffer::of_items(items),
            _ => None,
        };
        match records {
            Some(records) => self.process_records(&records, 0..records.len()),
            None => self.process_items(items),
        }
    }

    /// Each output or refusal of the records `range` of `records`, in order, as
    /// [`Self::process_each`] gives them: in one buffer through the plugin's `records` export
    /// when it has one, as items otherwise.
    pub fn process_records(
        &mut self,
        records: &RecordBuffer,
        range: Range<usize>,
    ) -> Result<Vec<Result<Output, PluginError>>, PluginError> {
        let block = match &self.instance {
            Instance::V2 {
                records: Some(export),
                ..
            } => records.block(range.clone()).map(|block| (export, block)),
            _ => None,
        };
        let Some((export, block)) = block else {
            return self.process_items(&records.items(range));
        };
        let (Some(&first), Some(&last)) = (block.indexes.first(), block.indexes.last()) else {
            return Ok(Vec::new());
        };
        let span = ItemSpan { first, last };
        let plugin = &self.plugin;
        let columns = process_records(plugin, &mut self.store, export, &block, span)?;
        check_record_columns(plugin, &columns, span, &block.indexes)?;
        let results = expand_record_columns(columns);
        Ok(refusals_named(
            plugin,
            results,
            block.indexes.iter().copied(),
        ))
    }

    /// [`Self::process_each`] without the `records` export.
    fn process_items(
        &mut self,
        items: &[Item],
    ) -> Result<Vec<Result<Output, PluginError>>, PluginError> {
        let (Some(head), Some(tail)) = (items.first(), items.last()) else {
            return Ok(Vec::new());
        };
        let span = ItemSpan {
            first: head.index,
            last: tail.index,
        };
        let plugin = &self.plugin;
        let results: Vec<Result<Output, String>> = match &self.instance {
            Instance::V1(instance) => {
                let mut outputs = Vec::with_capacity(items.len());
                for item in items {
                    if item.data.is_some() {
                        outputs.push(Err(plugin.refused(
                            item.index,
                            &format!(
                                "this item is a record, but the plugin implements {}, which \
                                 takes numbers only: use a {} plugin for records",
                                interface::V1,
                                interface::V2
                            ),
                        )));
                        continue;
                    }
                    plugin.engine().arm_deadline(&mut self.store);
                    let outcome = instance
                        .batch_plugin_compute()
                        .call_process(&mut self.store, item.index);
                    plugin.log_output(&mut self.store, &ItemSpan::one(item.index));
                    match outcome {
                        Ok(Ok(n)) => outputs.push(Ok(Output::Number(n))),
                        Ok(Err(message)) => outputs.push(Err(plugin.refused(item.index, &message))),
                        Err(e) => return Err(plugin.call_error(ItemSpan::one(item.index), e)),
                    }
                }
                return Ok(outputs);
            }
            Instance::V2 {
                ranges: Some(ranges),
                ..
            } if is_range_block(items) => {
                let columns = process_ranges(plugin, &mut self.store, ranges, span, items.len())?;
                check_columns(plugin, &columns, span, items.len())?;
                expand_columns(columns)
            }
            Instance::V2 {
                compute: instance, ..
            } => process_v2(plugin, &mut self.store, instance, items, span)?
                .into_iter()
                .map(|result| result.map(Output::from))
                .collect(),
        };
        Ok(refusals_named(
            plugin,
            results,
            items.iter().map(|item| item.index),
        ))
    }

    /// Bytes of linear memory the instance holds now.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().memory_bytes()
    }

    /// Bounds what the host copies out of each following call of this instance to `bytes`
    /// (at most the memory cap, which is also the default): a caller that keeps earlier
    /// results passes what is left of the cap, so the results it holds stay within it.
    pub fn set_result_budget(&mut self, bytes: usize) {
        let cap = self.plugin.engine().limits().memory_bytes;
        self.store.set_hostcall_fuel(bytes.min(cap));
    }
}

impl PluginSession<'static> {
    /// This session, or a fresh one when its store has held more of the host's memory for HTTP
    /// bodies than one bound (the plugin may be keeping them): call it between items.
    pub fn renewed_if_worn(self, config: Option<&PluginConfig>) -> Result<Self, PluginError> {
        match self.store.data().http() {
            Some(http) if http.worn() => self.renew(config),
            _ => Ok(self),
        }
    }

    /// A fresh, configured instance of the same plugin in this session's call slot.
    pub fn renew(self, config: Option<&PluginConfig>) -> Result<Self, PluginError> {
        let PluginSession {
            store,
            plugin,
            _slot: slot,
            ..
        } = self;
        let http = store.data().http().map(|h| h.leaf().clone());
        // The old instance's pool slots go back before the new instance takes its own.
        drop(store);
        match (plugin, slot) {
            (PluginHandle::Shared(plugin), Some(slot)) => {
                plugin.session_calling(slot, config, http)
            }
            _ => unreachable!("only sessions from LoadedPlugin::session are renewed"),
        }
    }
}

impl From<WitOutput> for Output {
    fn from(output: WitOutput) -> Self {
        match output {
            WitOutput::Number(n) => Output::Number(n),
            WitOutput::Record(bytes) => Output::Record(bytes),
            WitOutput::Skip => Output::Skip,
        }
    }
}

/// Each result of a call, its refusal (a plugin's message) made the error that names its item
/// (`indexes`, in the same order).
fn refusals_named(
    plugin: &LoadedPlugin,
    results: Vec<Result<Output, String>>,
    indexes: impl Iterator<Item = u64>,
) -> Vec<Result<Output, PluginError>> {
    results
        .into_iter()
        .zip(indexes)
        .map(|(result, index)| result.map_err(|message| plugin.refused(index, &message)))
        .collect()
}

/// The items `first..first + len` of a range, as one call's span.
fn span_of(first: u64, len: usize) -> ItemSpan {
    ItemSpan {
        first,
        last: first + len.saturating_sub(1) as u64,
    }
}

/// Whether `items` are consecutive range items (no data): what `ranges.process-range` takes.
fn is_range_block(items: &[Item]) -> bool {
    items
        .iter()
        .zip(items.first().map_or(0, |i| i.index)..)
        .all(|(item, index)| item.data.is_none() && item.index == index)
}

/// The range items `first..first + len`, in `buffer`'s allocation (taken: give it back by
/// assigning it again), so a session's blocks allocate nothing.
fn range_items(buffer: &mut Vec<Item>, first: u64, len: usize) -> Vec<Item> {
    let mut items = std::mem::take(buffer);
    items.clear();
    items.extend((first..).take(len).map(|index| Item { index, data: None }));
    items
}

/// One v2 `process` call on a block: the deadline armed, what the plugin printed logged, and
/// exactly one result per item, or the call's failure.
fn process_v2(
    plugin: &LoadedPlugin,
    store: &mut Store<StoreState>,
    instance: &v2::Plugin,
    items: &[Item],
    span: ItemSpan,
) -> Result<Vec<Result<WitOutput, String>>, PluginError> {
    let results = plugin.guarded(store, span, |store| {
        instance.batch_plugin_compute().call_process(store, items)
    })?;
    if results.len() != items.len() {
        return Err(PluginError::ResultCount {
            plugin: plugin.label(),
            items: span,
            got: results.len(),
            want: items.len(),
        });
    }
    Ok(results)
}
