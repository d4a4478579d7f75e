//! From a file's bytes to a plugin ready to run: wrap, compile, check the imports and the
//! interface (v2 or v1), link the deny-all WASI, call (one item, or a session's blocks).
//!
//! Accepted forms, so plugins can come from any language:
//! - a component (binary, or text `.wat` in the component format);
//! - a core module carrying the `batch:plugin` component type in a custom section, as
//!   `wit-bindgen` (Rust, C, ...) emits for `wasm32-unknown-unknown`: wrapped here with
//!   `wit-component`, so the output of `cargo build` can be dropped in as it is.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use batch_core::text::{bounded_message, shown_message};
use batch_core::{Format, Output, Outputs, PluginConfig, PluginInput};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, InstancePre, Linker, Resource, ResourceTable};
use wasmtime::{Engine, PoolConcurrencyLimitError, Store, StoreContextMut, Trap};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::p2::{DynPollable, Pollable};

use super::cache::ArtifactCache;
use super::error::{ItemSpan, PluginError};
use super::interface::{Columns, Interface, Item, Ranges, RangesIndices, v1, v2};
use super::sandbox::{CallSlot, SandboxedEngine, StoreState};
use super::wasi;
use v2::exports::batch::plugin::compute::Output as WitOutput;

/// A compiled, validated plugin. Cheap to share; each call instantiates it in a fresh store.
pub struct LoadedPlugin {
    name: String,
    digest: String,
    size: u64,
    engine: SandboxedEngine,
    pre: Pre,
    /// What the component imports (WASI interfaces only: anything else is rejected).
    imports: Vec<String>,
    /// The items it takes, as it states them ([`batch_core::plugin_input`]); `None`: a v2
    /// plugin that does not say (it takes whatever a source gives).
    input: Option<PluginInput>,
    /// When it was last handed out (seconds since the Unix epoch), so the registry can drop
    /// versions nobody uses.
    used: std::sync::atomic::AtomicU64,
}

/// Ready-to-instantiate code, by interface version; for v2, where its optional `ranges`
/// export is when it has one.
enum Pre {
    V1(v1::PluginPre<StoreState>),
    V2 {
        instance_pre: InstancePre<StoreState>,
        compute: v2::PluginIndices,
        ranges: Option<RangesIndices>,
    },
}

/// A live instance, by interface version (v2: with its `ranges` export, if any).
enum Instance {
    V1(v1::Plugin),
    V2(v2::Plugin, Option<Ranges>),
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("size", &self.size)
            .field("interface", &self.interface())
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// Compiles `bytes` (read from `path`) as plugin `name`. Slow (milliseconds to seconds):
    /// call it once per digest and keep the result.
    /// With a cache, a version compiled before is loaded from disk instead of compiled again,
    /// and a newly compiled one is stored there.
    pub fn load(
        engine: &SandboxedEngine,
        cache: Option<&ArtifactCache>,
        name: &str,
        path: &Path,
        bytes: &[u8],
    ) -> Result<Self, PluginError> {
        let invalid = |reason: String| PluginError::Invalid {
            name: name.to_owned(),
            path: path.to_owned(),
            reason,
        };
        let digest = sha256_hex(bytes);
        let cached = cache.and_then(|c| c.compiled(&digest, engine.engine()));
        let component = match cached {
            Some(component) => component,
            None => compile(engine, bytes).map_err(invalid)?,
        };
        let imports = reject_imports(&component, engine).map_err(invalid)?;
        let pre = link(&component, engine).map_err(invalid)?;
        let input = match pre {
            Pre::V1(_) => Some(PluginInput::Numbers),
            Pre::V2 { .. } => stated_input(bytes).map_err(invalid)?,
        };
        if let Some(cache) = cache {
            cache.store_source(&digest, bytes);
            cache.store_compiled(&digest, &component);
        }
        Ok(Self {
            name: name.to_owned(),
            digest,
            size: bytes.len() as u64,
            engine: engine.clone(),
            pre,
            imports,
            input,
            used: std::sync::atomic::AtomicU64::new(now_secs()),
        })
    }

    /// Records that the plugin is being used now.
    pub fn touch(&self) {
        self.used
            .store(now_secs(), std::sync::atomic::Ordering::Relaxed);
    }

    /// How long since it was last handed out.
    pub fn idle_for(&self) -> Duration {
        Duration::from_secs(
            now_secs().saturating_sub(self.used.load(std::sync::atomic::Ordering::Relaxed)),
        )
    }

    /// The sandboxed engine the plugin runs in (its limits and call slots).
    pub fn engine(&self) -> &SandboxedEngine {
        &self.engine
    }

    /// The WASI interfaces it imports (empty for a plugin that imports nothing).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Instantiates (and, with no configuration, does not configure) the plugin once and
    /// reports the linear memory it holds at start: what every call costs before any item.
    pub fn instantiated_memory(&self, slot: &mut CallSlot) -> Result<usize, PluginError> {
        let mut store = self.engine.new_store(slot);
        self.instantiate(&mut store)?;
        Ok(store.data().memory_bytes())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Lowercase hex sha256 of the file's bytes: the plugin version's identity.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The CPU deadline of each of its calls.
    pub fn cpu_deadline(&self) -> Duration {
        self.engine.limits().cpu_deadline
    }

    /// The items the plugin takes, if it says (v1 plugins take numbers).
    pub fn input(&self) -> Option<PluginInput> {
        self.input
    }

    /// Whether a batch over `source` (`None`: a range) gives the plugin the items it takes;
    /// checked before any item runs.
    pub fn check_input(&self, source: Option<Format>) -> Result<(), PluginError> {
        match self.input {
            Some(input) => input
                .accepts(source)
                .map_err(|reason| PluginError::WrongInput {
                    plugin: self.label(),
                    reason,
                }),
            None => Ok(()),
        }
    }

    pub fn interface(&self) -> Interface {
        match self.pre {
            Pre::V1(_) => Interface::V1,
            Pre::V2 { .. } => Interface::V2,
        }
    }

    /// Whether the plugin exports the optional `ranges` interface (v2: range blocks, outputs
    /// in columns), through which it gets range blocks.
    pub fn has_ranges(&self) -> bool {
        matches!(
            self.pre,
            Pre::V2 {
                ranges: Some(_),
                ..
            }
        )
    }

    /// The number the plugin computes for range item `item`, with no configuration, in a fresh
    /// store, after waiting for a call slot. Blocking: for tools and tests (a v2 plugin's
    /// record or skip is reported as an error here); the worker uses [`Self::call_with`].
    pub fn call(&self, item: u64) -> Result<u64, PluginError> {
        let mut slot = self.engine.call_slot_blocking();
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
        mut slot: CallSlot,
        config: Option<&PluginConfig>,
    ) -> Result<PluginSession<'static>, PluginError> {
        let session = self.open(&mut slot, config)?;
        Ok(PluginSession {
            store: session.store,
            instance: session.instance,
            plugin: PluginHandle::Shared(self.clone()),
            range_items: Vec::new(),
            _slot: Some(slot),
        })
    }

    /// A configured instance in a fresh store; the caller holds the slot.
    fn open(
        &self,
        slot: &mut CallSlot,
        config: Option<&PluginConfig>,
    ) -> Result<PluginSession<'_>, PluginError> {
        let mut store = self.engine.new_store(slot);
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
        let instance = match &self.pre {
            Pre::V1(pre) => pre.instantiate(&mut *store).map(Instance::V1),
            Pre::V2 {
                instance_pre,
                compute,
                ranges,
            } => instance_pre.instantiate(&mut *store).and_then(|instance| {
                let ranges = match ranges {
                    Some(ranges) => Some(ranges.load(&mut *store, &instance)?),
                    None => None,
                };
                Ok(Instance::V2(compute.load(&mut *store, &instance)?, ranges))
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

    /// The plugin's refusal of `item`, its words bounded and neutralised.
    fn refused(&self, item: u64, message: &str) -> PluginError {
        PluginError::Refused {
            plugin: self.label(),
            item,
            message: shown_message(message),
        }
    }

    /// A failed call as the plugin's error: the deadline, results over the budget, or a trap.
    fn call_error(&self, items: ItemSpan, e: wasmtime::Error) -> PluginError {
        // wasmtime names no type for it: its message says the hostcall fuel ran out.
        if format!("{e:#}").contains("fuel allocated for hostcalls has been exhausted") {
            PluginError::OutputTooLarge {
                plugin: self.label(),
                items,
                limit: self.engine.limits().memory_bytes,
            }
        } else if is_deadline(&e) {
            PluginError::Deadline {
                plugin: self.label(),
                items,
                limit_ms: self.engine.limits().cpu_deadline.as_millis(),
            }
        } else {
            PluginError::Trap {
                plugin: self.label(),
                items,
                source: e,
            }
        }
    }

    /// Sends what a WASI plugin wrote to stdout and stderr during the last call to the log.
    fn log_output(&self, store: &mut Store<StoreState>, during: &dyn std::fmt::Display) {
        let Some(streams) = store.data_mut().take_output() else {
            return;
        };
        for (stream, captured) in streams {
            if captured.is_empty() {
                continue;
            }
            tracing::info!(
                target: "plugin_output",
                plugin = %self.label(),
                stream,
                %during,
                "{}",
                captured.shown()
            );
        }
    }

    /// `name@sha256:<digest>` for messages: exactly which module failed.
    pub fn label(&self) -> String {
        format!("{}@sha256:{}", self.name, self.digest)
    }
}

/// The plugin a session runs: borrowed for one call, shared for a long session.
enum PluginHandle<'a> {
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
    store: Store<StoreState>,
    instance: Instance,
    plugin: PluginHandle<'a>,
    /// Reused for blocks of range items, so a block allocates nothing.
    range_items: Vec<Item>,
    _slot: Option<CallSlot>,
}

impl PluginSession<'_> {
    pub fn interface(&self) -> Interface {
        self.plugin.interface()
    }

    /// `configure` (interface v2) with the batch's configuration. A v1 plugin takes none.
    fn configure(&mut self, config: Option<&PluginConfig>) -> Result<(), PluginError> {
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
                    super::interface::V1,
                    super::interface::V2
                ))),
            },
            Instance::V2(instance, _) => {
                plugin.engine.arm_deadline(&mut self.store);
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
            Instance::V2(_, Some(ranges)) => {
                let columns = process_ranges(plugin, &mut self.store, ranges, span, len)?;
                if check_columns(plugin, &columns, span, len)? == len {
                    // Numbers only: aggregated straight from their column.
                    outputs.extend_numbers(&columns.numbers);
                    return Ok(());
                }
                expand_columns(columns)
            }
            Instance::V2(instance, None) => {
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
                                super::interface::V1,
                                super::interface::V2
                            ),
                        )));
                        continue;
                    }
                    plugin.engine.arm_deadline(&mut self.store);
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
            Instance::V2(_, Some(ranges)) if is_range_block(items) => {
                let columns = process_ranges(plugin, &mut self.store, ranges, span, items.len())?;
                check_columns(plugin, &columns, span, items.len())?;
                expand_columns(columns)
            }
            Instance::V2(instance, _) => {
                process_v2(plugin, &mut self.store, instance, items, span)?
                    .into_iter()
                    .map(|result| result.map(Output::from))
                    .collect()
            }
        };
        Ok(results
            .into_iter()
            .zip(items)
            .map(|(result, item)| result.map_err(|message| plugin.refused(item.index, &message)))
            .collect())
    }

    /// Bytes of linear memory the instance holds now.
    pub fn memory_bytes(&self) -> usize {
        self.store.data().memory_bytes()
    }

    /// Bounds what the host copies out of each following call of this instance to `bytes`
    /// (at most the memory cap, which is also the default): a caller that keeps earlier
    /// results passes what is left of the cap, so the results it holds stay within it.
    pub fn set_result_budget(&mut self, bytes: usize) {
        let cap = self.plugin.engine.limits().memory_bytes;
        self.store.set_hostcall_fuel(bytes.min(cap));
    }
}

impl PluginSession<'static> {
    /// Each item's output or failure, in order, each item in its own call, in a fresh
    /// instance (in the same call slot), and a fresh instance again after any call that failed
    /// as a whole (a trap, the deadline, a broken interface), which is then that item's own
    /// failure. Used when a block failed and a batch tolerates failed items: it finds exactly
    /// which items fail, and an instance a trap left unusable never runs another item. The
    /// results held stay within `budget` bytes (see [`result_bytes`]): when the caller holds
    /// results already (`held` bytes, counted in `budget`), it stops before an item whose
    /// results would pass it (that item then starts the caller's next round, with a whole
    /// budget), so it may answer for a prefix of `items` only. Returns the session to go on
    /// with; `Err` only for what is not an item's failure (a new instance that cannot be made
    /// or configured).
    pub fn isolate(
        self,
        items: &[Item],
        config: Option<&PluginConfig>,
        budget: usize,
        mut held: usize,
    ) -> Result<(Self, Vec<Result<Output, PluginError>>), PluginError> {
        // The failed block may have left this instance unusable.
        let mut this = self.renew(config)?;
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            this.set_result_budget(budget.saturating_sub(held));
            let result = match this.process_each(std::slice::from_ref(item)) {
                Ok(mut one) => one.pop().unwrap_or(Ok(Output::Skip)),
                Err(e) => {
                    this = this.renew(config)?;
                    if matches!(e, PluginError::OutputTooLarge { .. }) && held > 0 {
                        break;
                    }
                    Err(e)
                }
            };
            held += result_bytes(&result);
            results.push(result);
        }
        Ok((this, results))
    }

    /// A fresh, configured instance of the same plugin in this session's call slot.
    pub fn renew(self, config: Option<&PluginConfig>) -> Result<Self, PluginError> {
        let PluginSession {
            store,
            plugin,
            _slot: slot,
            ..
        } = self;
        // The old instance's pool slots go back before the new instance takes its own.
        drop(store);
        match (plugin, slot) {
            (PluginHandle::Shared(plugin), Some(slot)) => plugin.session(slot, config),
            _ => unreachable!("only sessions from LoadedPlugin::session are renewed"),
        }
    }
}

/// What the host holds for one item's result, in bytes: the result itself and its record or
/// message (what the hostcall fuel counts, near enough).
pub fn result_bytes(result: &Result<Output, PluginError>) -> usize {
    std::mem::size_of::<Result<Output, PluginError>>()
        + match result {
            Ok(Output::Record(bytes)) => bytes.len(),
            Ok(_) => 0,
            Err(e) => match e {
                PluginError::Refused { message, .. } => message.len(),
                _ => 0,
            },
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

/// What `ranges.process-range` reports per item (`plugins/wit/v2/plugin.wit`).
mod kind {
    pub(super) const NUMBER: u8 = 0;
    pub(super) const RECORD: u8 = 1;
    pub(super) const SKIP: u8 = 2;
    pub(super) const ERROR: u8 = 3;
}

/// One `ranges.process-range` call on the `len` items of `span`: the deadline armed, what the
/// plugin printed logged.
fn process_ranges(
    plugin: &LoadedPlugin,
    store: &mut Store<StoreState>,
    ranges: &Ranges,
    span: ItemSpan,
    len: usize,
) -> Result<Columns, PluginError> {
    let count = u32::try_from(len).expect("a block is far smaller than 2^32 items");
    plugin.engine.arm_deadline(store);
    let outcome = ranges.call_process_range(&mut *store, span.first, count);
    plugin.log_output(store, &span);
    outcome.map_err(|e| plugin.call_error(span, e))
}

/// Checks that a plugin's columns (untrusted) agree with each other and with the block of `len`
/// items; returns how many items are numbers.
fn check_columns(
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
fn expand_columns(columns: Columns) -> Vec<Result<Output, String>> {
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

/// The range items `first..first + len`, in `buffer`'s allocation (taken: give it back by
/// assigning it again), so a session's blocks allocate nothing.
fn range_items(buffer: &mut Vec<Item>, first: u64, len: usize) -> Vec<Item> {
    let mut items = std::mem::take(buffer);
    items.clear();
    items.extend((first..).take(len).map(|index| Item { index, data: None }));
    items
}

/// Whether a call stopped at its CPU deadline (the epoch interrupt), rather than trapping.
fn is_deadline(e: &wasmtime::Error) -> bool {
    e.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
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
    plugin.engine.arm_deadline(store);
    let outcome = instance
        .batch_plugin_compute()
        .call_process(&mut *store, items);
    plugin.log_output(store, &span);
    let results = outcome.map_err(|e| plugin.call_error(span, e))?;
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

/// The linker every plugin is instantiated with: the deny-all WASI ([`wasi`]), with the
/// clock's sleeps made instant (below), and the plugin's version read from its exports.
fn link(component: &Component, engine: &SandboxedEngine) -> Result<Pre, String> {
    let mut linker: Linker<StoreState> = Linker::new(engine.engine());
    let link_error = |e: wasmtime::Error| format!("cannot link WASI: {e:#}");
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link_error)?;
    instant_sleeps(&mut linker).map_err(link_error)?;
    let exports: Vec<String> = component
        .component_type()
        .exports(engine.engine())
        .map(|(name, _)| name.to_owned())
        .collect();
    let interface = Interface::of(exports.iter().map(String::as_str)).ok_or_else(|| {
        format!(
            "does not export {} or {} (it exports: {})",
            super::interface::V2,
            super::interface::V1,
            if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            }
        )
    })?;
    let instance_pre = linker
        .instantiate_pre(component)
        .map_err(|e| format!("cannot be instantiated: {e:#}"))?;
    let does_not_implement =
        |e: wasmtime::Error| format!("does not implement {}: {e:#}", interface.name());
    Ok(match interface {
        Interface::V1 => Pre::V1(v1::PluginPre::new(instance_pre).map_err(does_not_implement)?),
        Interface::V2 => Pre::V2 {
            compute: v2::PluginIndices::new(&instance_pre).map_err(does_not_implement)?,
            // Optional: without it, range blocks go through `compute.process`. Its types are
            // checked at instantiation, as the other exports' are.
            ranges: match exports.iter().any(|e| e == super::interface::V2_RANGES) {
                true => Some(RangesIndices::new(&instance_pre).map_err(|e| {
                    format!("does not implement {}: {e:#}", super::interface::V2_RANGES)
                })?),
                false => None,
            },
            instance_pre,
        },
    })
}

/// The version of `wasi:clocks` that wasmtime-wasi links (its newest 0.2 release); imports of
/// any older 0.2 version resolve to it.
const WASI_CLOCKS_MONOTONIC: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Replaces WASI's timers with ones that are ready at once. wasmtime-wasi's timers wait in
/// real time inside the host, where the CPU deadline cannot interrupt them: a plugin polling
/// a timer of a year would hold its call slot for a year. With the clocks frozen
/// ([`wasi::FROZEN_WALL_CLOCK`]), no time passes for a plugin anyway, so a sleep returns
/// immediately.
fn instant_sleeps(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut clock = linker.instance(WASI_CLOCKS_MONOTONIC)?;
    clock.func_wrap(
        "subscribe-duration",
        |mut store: StoreContextMut<'_, StoreState>, (_duration,): (u64,)| {
            ready_now(store.data_mut().ctx().table).map(|p| (p,))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |mut store: StoreContextMut<'_, StoreState>, (_when,): (u64,)| {
            ready_now(store.data_mut().ctx().table).map(|p| (p,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A pollable that is always ready.
struct ReadyNow;

#[wasmtime_wasi::async_trait]
impl Pollable for ReadyNow {
    async fn ready(&mut self) {}
}

fn ready_now(table: &mut ResourceTable) -> wasmtime::Result<Resource<DynPollable>> {
    let resource = table.push(ReadyNow)?;
    wasmtime_wasi::p2::subscribe(table, resource)
}

/// Wraps and compiles `bytes` on a thread of its own, giving up after the sandbox's compile
/// timeout. Cranelift cannot be interrupted: a compile that times out finishes in the
/// background and its result is dropped (the file is remembered as rejected until it changes).
fn compile(engine: &SandboxedEngine, bytes: &[u8]) -> Result<Component, String> {
    let timeout = engine.limits().compile_timeout;
    // Compiles take turns (`--plugin-compiles`): each takes ~10x the plugin's size in memory.
    let slot = engine.compile_slot_blocking();
    let (engine, bytes) = (engine.engine().clone(), bytes.to_vec());
    let (done, result) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("plugin-compile".into())
        .spawn(move || {
            let compiled = compile_now(&engine, &bytes);
            // The slot goes back once the compile has stopped, even one given up on.
            drop(slot);
            // The receiver may have given up: nothing to do then.
            let _ = done.send(compiled);
        })
        .map_err(|e| format!("cannot start a compile thread: {e}"))?;
    match result.recv_timeout(timeout) {
        Ok(compiled) => compiled,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
            "compiling it took longer than the {} limit",
            human_duration(timeout)
        )),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("the compile thread panicked".into()),
    }
}

fn compile_now(engine: &Engine, bytes: &[u8]) -> Result<Component, String> {
    let component_bytes = to_component_bytes(bytes)?;
    Component::new(engine, &component_bytes)
        .map_err(|e| bounded_message(&format!("does not compile: {e:#}")))
}

fn human_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// The input a plugin states in its [`batch_core::plugin_input::SECTION`] custom section
/// (anywhere in it: a Rust plugin's sits in its core module), if it states one.
fn stated_input(bytes: &[u8]) -> Result<Option<PluginInput>, String> {
    if !bytes.starts_with(b"\0asm") {
        // WebAssembly text (test fixtures): no custom sections.
        return Ok(None);
    }
    let mut stated = None;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(wasmparser::Payload::CustomSection(section)) = payload else {
            continue;
        };
        if section.name() != batch_core::plugin_input::SECTION {
            continue;
        }
        let text = String::from_utf8_lossy(section.data());
        let input = PluginInput::parse(&text).ok_or_else(|| {
            format!(
                "its {} section says {}, not one of {}",
                batch_core::plugin_input::SECTION,
                format_args!("{:?}", batch_core::text::bounded(&text, 64)),
                PluginInput::ALL.map(PluginInput::as_str).join(", ")
            )
        })?;
        if stated.is_some_and(|s| s != input) {
            return Err(format!(
                "it states two inputs in its {} sections",
                batch_core::plugin_input::SECTION
            ));
        }
        stated = Some(input);
    }
    Ok(stated)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether a file whose first bytes are `head` (of `len` in all) could be a plugin, without
/// compiling or reading it whole: not empty, WebAssembly text, or binary WebAssembly whose
/// sections parse as far as `head` goes.
pub fn check_start(head: &[u8], len: u64) -> Result<(), String> {
    if head.is_empty() {
        return Err("the file is empty".into());
    }
    if !head.starts_with(b"\0asm") {
        // Text is parsed when it is loaded, as it is compiled; only its start here.
        return to_component_bytes(head).map(|_| ());
    }
    // As `Parser::parse_all` does, but over the head only: nested modules and components
    // parsed in turn, function bodies skipped.
    let mut parser = wasmparser::Parser::new(0);
    let mut outer = Vec::new();
    let mut at = 0;
    let eof = head.len() as u64 == len;
    loop {
        let (consumed, payload) = match parser.parse(&head[at..], eof) {
            Ok(wasmparser::Chunk::NeedMoreData(_)) => return Ok(()),
            Ok(wasmparser::Chunk::Parsed { consumed, payload }) => (consumed, payload),
            Err(e) => return Err(format!("is not well-formed WebAssembly: {e}")),
        };
        at += consumed;
        match payload {
            wasmparser::Payload::CodeSectionStart { size, .. } => {
                let size = size as usize;
                if head.len() - at < size {
                    return Ok(());
                }
                parser.skip_section();
                at += size;
            }
            wasmparser::Payload::ModuleSection { parser: inner, .. }
            | wasmparser::Payload::ComponentSection { parser: inner, .. } => {
                outer.push(std::mem::replace(&mut parser, inner));
            }
            wasmparser::Payload::End(_) => match outer.pop() {
                Some(p) => parser = p,
                None => return Ok(()),
            },
            _ => {}
        }
    }
}

fn to_component_bytes(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    if wasmparser::Parser::is_core_wasm(bytes) {
        return wit_component::ComponentEncoder::default()
            .module(bytes)
            .and_then(|encoder| encoder.validate(true).encode())
            .map_err(|e| {
                format!(
                    "is a core module that cannot be wrapped as a component (build it with \
                     wit-bindgen against plugins/wit/plugin.wit): {e:#}"
                )
            });
    }
    if wasmparser::Parser::is_component(bytes) {
        return Ok(bytes.to_vec());
    }
    if bytes.starts_with(b"\0asm") {
        return Err("is WebAssembly of an unsupported version or layer".into());
    }
    // Text format: `Component::new` parses `.wat` itself (and names the line of a mistake).
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "not WebAssembly (no \\0asm header, and not text)".to_owned())?;
    if !text.trim_start().starts_with(['(', ';']) {
        return Err("not WebAssembly (no \\0asm header, and not WebAssembly text)".into());
    }
    Ok(bytes.to_vec())
}

/// The sandbox's first rule: a plugin gets nothing from the host but the deny-all WASI 0.2
/// ([`wasi`]). Name every other import so the author sees what to remove.
fn reject_imports(component: &Component, engine: &SandboxedEngine) -> Result<Vec<String>, String> {
    let ty = component.component_type();
    let (linked, refused): (Vec<String>, Vec<String>) = ty
        .imports(engine.engine())
        .map(|(name, _)| name.to_owned())
        .partition(|name| wasi::is_linked(name));
    if refused.is_empty() {
        Ok(linked)
    } else {
        Err(format!(
            "imports {} but plugins may import only WASI 0.2, which the worker links deny-all \
             (no files, network or environment; see docs/plugins.md)",
            refused.join(", ")
        ))
    }
}
