//! The sandbox, in one place: what a plugin call may use, and the engine that enforces it.
//!
//! - No ambient authority: plugins are components whose world imports nothing; the linker
//!   provides only a deny-all WASI 0.2 ([`super::wasi`]: no files, network, environment; frozen
//!   clocks, deterministic randomness, bounded stdout/stderr), for the language runtimes that
//!   import it. Components that import anything else are rejected at load, by name.
//! - Isolation: every call runs in a fresh `Store` (a `batch`-mode slice reuses one store for
//!   the items of one slice of one batch); nothing survives the store.
//! - Calls at once: a call needs a [`CallSlot`], and there are [`SandboxLimits::calls_at_once`]
//!   of them (default: the machine's cores). Waiting for a slot is not part of a call's deadline.
//! - CPU: epoch interruption. A ticker thread advances the engine's epoch every [`EPOCH_TICK`];
//!   each store traps once its deadline (in ticks) has passed, so an infinite loop stops. With
//!   no more calls than cores, a call's wall-clock deadline is close to its CPU time.
//! - Memory: [`CallLimiter`] caps the *sum* of a call's linear memories (a component may have
//!   several) and the count of its instances, memories and tables ([`PER_CALL`]).
//! - Host objects: a store's table holds at most [`MAX_HOST_OBJECTS`] resources (streams,
//!   pollables, requests ...); making more traps the call. A store of a batch that calls
//!   services holds at most twice the [`HTTP`] bounds of bodies (`http::hooks::Spent`).
//! - Shared pools: the pooling allocator is sized so that `calls_at_once` calls, each at its
//!   per-call limits, always fit: no plugin can exhaust what another batch's call needs. If
//!   the pool is nonetheless full, that is a host condition and retryable, never the item's
//!   fault ([`super::PluginError::HostBusy`]).
//!
//! The worker's plugin memory is therefore bounded by [`SandboxLimits::memory_bound`]:
//! `calls_at_once x (memory cap + table cap)`, plus what the host holds of calls' results: at
//! most the memory cap per call slot, since the results copied out of one call are bounded by
//! the store's hostcall fuel, set to the memory cap (less what a data split already holds of
//! its instance's earlier results, see `PluginSession::set_result_budget`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi::{WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

use super::http::{HttpState, HttpStore, LeafHttp};
use super::wasi::WasiState;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    StoreContextMut, UpdateDeadline,
};

/// Granularity of the CPU deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Largest plugin file the registry reads (the read itself is bounded, whatever the file
/// claims its size is). Room for interpreters compiled to wasm (a Python plugin built with
/// componentize-py is ~18 MB), while a stray multi-gigabyte file is never read whole.
pub const MAX_PLUGIN_FILE_BYTES: u64 = 64 << 20;

/// Longest the worker waits for one plugin to compile before rejecting it (the file is not
/// retried until it changes). Compilation runs off the workflow-driving task, so waiting never
/// stalls workflows; the bound keeps a pathological file from holding a compile slot forever.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(120);

/// The longest `--plugin-deadline-ms` allowed: a call must end well within the activity
/// timeouts it runs under (item activities heartbeat at 30 s, see `workflow.rs`), so a slow
/// but honest call is never taken for a lost worker.
pub const MAX_CPU_DEADLINE: Duration = Duration::from_secs(20);

/// Outbound HTTP's bounds ([`super::http::HttpBounds`]), beside the other limits.
pub use super::http::{HTTP, HttpBounds};

/// Calls of HTTP batches at once in a worker that grants hosts, when not set
/// (`--http-calls`): they mostly wait on responses, so more than cores.
pub const DEFAULT_HTTP_CALLS: u32 = 16;

/// What one call may create, whatever the plugin: enough for components built by mainstream
/// toolchains (a wrapped module has ~3 core instances; interpreters a few more), and the unit
/// by which the engine-wide pools are sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerCall {
    pub core_instances: u32,
    pub memories: u32,
    pub tables: u32,
    /// Elements of one table (8 bytes each).
    pub table_elements: usize,
}

/// Host objects (resources: streams, pollables, HTTP requests and bodies ...) one store may
/// hold at once: far more than a language runtime uses, and few enough that a plugin making
/// them in a loop holds kilobytes of the host's memory, not wasmtime's default of a million.
pub const MAX_HOST_OBJECTS: usize = 10_000;

pub const PER_CALL: PerCall = PerCall {
    core_instances: 16,
    memories: 4,
    tables: 16,
    table_elements: 65_536,
};

impl PerCall {
    /// Bytes all of a call's tables may use.
    pub const fn table_bytes(&self) -> u64 {
        self.tables as u64 * self.table_elements as u64 * 8
    }
}

/// Resource limits of the plugin host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Budget of one call from the moment it starts executing (the epoch deadline), rounded
    /// up to [`EPOCH_TICK`].
    pub cpu_deadline: Duration,
    /// Cap on the sum of a call's linear memories.
    pub memory_bytes: usize,
    /// Plugin calls executing at once in this process (each holds a [`CallSlot`]).
    pub calls_at_once: u32,
    /// Longest a plugin may take to compile before it is rejected.
    pub compile_timeout: Duration,
    /// Plugins compiling at once in this process; the others wait their turn. A compile
    /// takes one core and about ten times the plugin's size in memory ([`COMPILE_MEMORY_FACTOR`]).
    pub compiles_at_once: u32,
    /// Calls of plugins that call services (batches with `--http-allow`) at once, beside
    /// `calls_at_once`: they spend their time waiting on responses, so they hold these slots
    /// and never one a computing call needs. 0 in a worker that grants no host.
    pub http_calls_at_once: u32,
}

/// Memory a compile takes, as a multiple of the plugin file's size (measured here: ~660 MiB
/// for a 60 MiB component, ~330 MiB for componentize-py's 18 MiB Python plugin).
pub const COMPILE_MEMORY_FACTOR: u64 = 11;

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            cpu_deadline: Duration::from_secs(1),
            memory_bytes: 64 << 20,
            calls_at_once: default_calls_at_once(),
            compile_timeout: DEFAULT_COMPILE_TIMEOUT,
            compiles_at_once: 1,
            http_calls_at_once: 0,
        }
    }
}

/// One call per core: more would only share the cores, stretching every call's wall-clock
/// deadline.
pub fn default_calls_at_once() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(2)
}

/// Epoch ticks covering `budget` (at least one).
fn ticks(budget: Duration) -> u64 {
    let ticks = budget.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

impl SandboxLimits {
    fn deadline_ticks(&self) -> u64 {
        ticks(self.cpu_deadline)
    }

    /// Call slots of both kinds.
    fn all_calls(&self) -> u32 {
        self.calls_at_once
            .max(1)
            .saturating_add(self.http_calls_at_once)
    }

    /// The most memory plugin instances can hold at once in this process: every call slot (of
    /// both kinds) at its memory and table caps, plus one returned value of at most the memory
    /// cap per call being read back, plus what each HTTP call's store may hold of bodies
    /// (twice the request and response bounds, see `http::hooks::Spent`).
    pub fn memory_bound(&self) -> u64 {
        u64::from(self.all_calls()) * (2 * self.memory_bytes as u64 + PER_CALL.table_bytes())
            + u64::from(self.http_calls_at_once)
                * 2
                * (HTTP.request_bytes + HTTP.response_bytes) as u64
    }

    fn pool(&self) -> PoolingAllocationConfig {
        let calls = self.all_calls();
        let mut pool = PoolingAllocationConfig::default();
        // Sized from the per-call limits: `calls` calls at their limits always fit.
        pool.total_component_instances(calls)
            .total_core_instances(calls * PER_CALL.core_instances)
            .total_memories(calls * PER_CALL.memories)
            .total_tables(calls * PER_CALL.tables)
            .max_core_instances_per_component(PER_CALL.core_instances)
            .max_memories_per_component(PER_CALL.memories)
            .max_tables_per_component(PER_CALL.tables)
            .table_elements(PER_CALL.table_elements)
            .max_memory_size(self.memory_bytes);
        pool
    }
}

/// Which slots a call takes: a computing call's, or the slot of a call that may wait on
/// services ([`SandboxLimits::http_calls_at_once`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    Compute,
    Http,
}

/// The right to run one plugin call. Held for as long as the call's store lives, so the pools
/// hold at most `calls_at_once` stores' worth of instances; drop it only after the store.
pub struct CallSlot {
    _permit: OwnedSemaphorePermit,
}

/// Tracks one store's resources against the per-call limits.
pub struct CallLimiter {
    memory_cap: usize,
    memory_total: usize,
    /// The growth being attempted, undone if the allocation itself fails.
    pending: usize,
}

impl CallLimiter {
    fn new(memory_cap: usize) -> Self {
        Self {
            memory_cap,
            memory_total: 0,
            pending: 0,
        }
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.memory_total.saturating_add(growth);
        if total > self.memory_cap {
            // A trap, not -1: the guest's allocator would abort with a less useful message.
            return Err(wasmtime::Error::msg(format!(
                "memory limit: the call's linear memories would use {total} bytes, over the \
                 cap of {} bytes",
                self.memory_cap
            )));
        }
        self.memory_total = total;
        self.pending = growth;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_total -= std::mem::take(&mut self.pending);
        Err(error.context("memory limit: growing a linear memory failed"))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > PER_CALL.table_elements {
            return Err(wasmtime::Error::msg(format!(
                "table limit: a table of {desired} elements is over the limit of {}",
                PER_CALL.table_elements
            )));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        PER_CALL.core_instances as usize
    }

    fn tables(&self) -> usize {
        PER_CALL.tables as usize
    }

    fn memories(&self) -> usize {
        PER_CALL.memories as usize
    }
}

/// What each store carries: its limiter, the deny-all WASI context once the plugin touches
/// WASI ([`super::wasi`]), and for a batch that calls services its HTTP ([`super::http`]).
pub struct StoreState {
    limiter: CallLimiter,
    wasi: Option<WasiState>,
    http: Option<HttpState>,
    /// In a store that may wait on services: this thread's CPU time when the deadline was
    /// last armed (see [`cpu_deadline`]).
    cpu_armed: Option<Duration>,
}

impl StoreState {
    /// Bytes of linear memory the store's instances hold now.
    pub fn memory_bytes(&self) -> usize {
        self.limiter.memory_total
    }

    /// What the plugin wrote to stdout and stderr since the last time, if it uses WASI.
    pub fn take_output(&mut self) -> Option<[(&'static str, super::wasi::Captured); 2]> {
        self.wasi.as_ref().map(WasiState::take_output)
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi
            .get_or_insert_with(|| WasiState::deny_all(MAX_HOST_OBJECTS))
            .view()
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let wasi = self
            .wasi
            .get_or_insert_with(|| WasiState::deny_all(MAX_HOST_OBJECTS));
        // A store of a batch that calls nothing never gets this far (the session refuses a
        // plugin importing wasi:http there); were it to, every request is refused.
        let http = self
            .http
            .get_or_insert_with(|| HttpState::new(Arc::new(LeafHttp::denying())));
        WasiHttpCtxView {
            ctx: &mut http.ctx,
            table: wasi.table(),
            hooks: &mut http.hooks,
        }
    }
}

impl HttpStore for StoreState {
    fn http_state(&self) -> Option<&HttpState> {
        self.http.as_ref()
    }
}

impl StoreState {
    /// The store's HTTP, in a batch that calls services.
    pub fn http_mut(&mut self) -> Option<&mut HttpState> {
        self.http.as_mut()
    }

    pub fn http(&self) -> Option<&HttpState> {
        self.http.as_ref()
    }
}

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// The deadline of a store that may wait on services: a request's wait is not the plugin's
/// CPU. When the epoch deadline passes, the CPU time the calling thread spent since the
/// deadline was armed decides: under the budget, the call goes on for what is left of it;
/// at or over it, the call traps as any call past its deadline. (Waiting for a response, the
/// thread sleeps in the host and spends no CPU.)
fn cpu_deadline(
    budget: Duration,
) -> impl FnMut(StoreContextMut<'_, StoreState>) -> wasmtime::Result<UpdateDeadline>
+ Send
+ Sync
+ 'static {
    move |store| {
        let used = store
            .data()
            .cpu_armed
            .map_or(budget, |armed| thread_cpu().saturating_sub(armed));
        Ok(match budget.checked_sub(used) {
            Some(left) if !left.is_zero() => UpdateDeadline::Continue(ticks(left)),
            _ => UpdateDeadline::Interrupt,
        })
    }
}

/// A wasmtime engine configured for the sandbox, with its epoch ticker and call slots.
#[derive(Clone)]
pub struct SandboxedEngine {
    engine: Engine,
    limits: SandboxLimits,
    slots: Arc<Semaphore>,
    http_slots: Arc<Semaphore>,
    compiles: Arc<Semaphore>,
}

impl SandboxedEngine {
    pub fn new(limits: SandboxLimits) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        // A deep recursion traps with "call stack exhausted" instead of overflowing the host.
        config.max_wasm_stack(512 << 10);
        // Compile on one thread: a large plugin dropped into a busy worker then takes one
        // core, not all of them, from the batches being served.
        config.parallel_compilation(false);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(limits.pool()));
        let engine = Engine::new(&config)?;
        // Without the ticker no deadline would ever fire: fail rather than run unguarded.
        spawn_epoch_ticker(&engine)
            .map_err(|e| anyhow::anyhow!("cannot start the wasm epoch ticker thread: {e}"))?;
        let slots = Arc::new(Semaphore::new(limits.calls_at_once.max(1) as usize));
        let http_slots = Arc::new(Semaphore::new(limits.http_calls_at_once as usize));
        let compiles = Arc::new(Semaphore::new(limits.compiles_at_once.max(1) as usize));
        Ok(Self {
            engine,
            limits,
            slots,
            http_slots,
            compiles,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn limits(&self) -> SandboxLimits {
        self.limits
    }

    /// The slots of calls of `kind`.
    fn slots(&self, kind: SlotKind) -> &Arc<Semaphore> {
        match kind {
            SlotKind::Compute => &self.slots,
            SlotKind::Http => &self.http_slots,
        }
    }

    /// Waits (asynchronously, first come first served) for a call slot.
    pub async fn call_slot(&self) -> CallSlot {
        self.slot_of(SlotKind::Compute).await
    }

    /// Waits (asynchronously, first come first served) for a call slot of `kind`. A worker
    /// without HTTP slots never gives one: check [`Self::has_slots`] first.
    pub async fn slot_of(&self, kind: SlotKind) -> CallSlot {
        let permit = self.slots(kind).clone().acquire_owned().await;
        CallSlot {
            // The semaphore is never closed.
            _permit: permit.unwrap_or_else(|_| unreachable!("the call slots are never closed")),
        }
    }

    /// Whether this engine has call slots of `kind` at all.
    pub fn has_slots(&self, kind: SlotKind) -> bool {
        match kind {
            SlotKind::Compute => true,
            SlotKind::Http => self.limits.http_calls_at_once > 0,
        }
    }

    /// A call slot if one is free right now.
    pub fn try_call_slot(&self) -> Option<CallSlot> {
        self.try_slot_of(SlotKind::Compute)
    }

    /// A call slot of `kind` if one is free right now.
    pub fn try_slot_of(&self, kind: SlotKind) -> Option<CallSlot> {
        let permit = self.slots(kind).clone().try_acquire_owned().ok()?;
        Some(CallSlot { _permit: permit })
    }

    /// [`Self::call_slot`] for callers outside the async runtime (tools, tests, benchmarks).
    pub fn call_slot_blocking(&self) -> CallSlot {
        futures::executor::block_on(self.call_slot())
    }

    /// The right to compile one plugin, waited for (blocking: compiles run on blocking
    /// threads; the activity that waits heartbeats meanwhile). Held by the compile itself, so
    /// a compile given up on at its timeout still counts until it has stopped.
    pub fn compile_slot_blocking(&self) -> OwnedSemaphorePermit {
        futures::executor::block_on(self.compiles.clone().acquire_owned())
            .unwrap_or_else(|_| unreachable!("the compile slots are never closed"))
    }

    /// Plugins compiling right now (at most `compiles_at_once`).
    pub fn compiles_running(&self) -> usize {
        self.limits.compiles_at_once.max(1) as usize - self.compiles.available_permits()
    }

    /// Call slots free right now.
    pub fn free_slots(&self) -> usize {
        self.slots.available_permits()
    }

    /// A fresh store for one call, with the memory cap and CPU deadline armed; with `http`,
    /// for a batch that calls services (its deadline then counts CPU time, see
    /// `cpu_deadline`). The caller holds a [`CallSlot`] for as long as the store lives.
    pub fn new_store(
        &self,
        _slot: &mut CallSlot,
        http: Option<Arc<LeafHttp>>,
    ) -> Store<StoreState> {
        let limiter = CallLimiter::new(self.limits.memory_bytes);
        let calls_services = http.is_some();
        let mut store = Store::new(
            &self.engine,
            StoreState {
                limiter,
                wasi: None,
                http: http.map(HttpState::new),
                cpu_armed: None,
            },
        );
        if calls_services {
            store.epoch_deadline_callback(cpu_deadline(self.limits.cpu_deadline));
        }
        store.limiter(|state| &mut state.limiter);
        // What the host copies out of one call (its results, what it passes a host function)
        // is bounded like the call's memories: without it, results that alias one buffer many
        // times would make the host copy far more than the plugin holds.
        store.set_hostcall_fuel(self.limits.memory_bytes);
        self.arm_deadline(&mut store);
        store
    }

    /// Gives the store a full CPU budget from now.
    pub fn arm_deadline(&self, store: &mut Store<StoreState>) {
        if store.data().http.is_some() {
            store.data_mut().cpu_armed = Some(thread_cpu());
        }
        store.set_epoch_deadline(self.limits.deadline_ticks());
    }
}

/// Advances the epoch every tick for as long as the engine lives: the thread holds only a weak
/// handle, so it ends when the last clone of the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_rounds_up_to_whole_ticks() {
        let at = |ms| SandboxLimits {
            cpu_deadline: Duration::from_millis(ms),
            memory_bytes: 0,
            calls_at_once: 1,
            compile_timeout: DEFAULT_COMPILE_TIMEOUT,
            compiles_at_once: 1,
            http_calls_at_once: 0,
        };
        assert_eq!(at(0).deadline_ticks(), 1);
        assert_eq!(at(1).deadline_ticks(), 1);
        assert_eq!(at(10).deadline_ticks(), 1);
        assert_eq!(at(11).deadline_ticks(), 2);
        assert_eq!(at(1000).deadline_ticks(), 100);
    }

    #[test]
    fn the_limiter_caps_the_sum_of_a_calls_memories() {
        let mut limiter = CallLimiter::new(10 << 20);
        assert!(
            limiter
                .memory_growing(0, 6 << 20, None)
                .expect("first memory")
        );
        assert!(
            limiter
                .memory_growing(0, 4 << 20, None)
                .expect("second memory")
        );
        let err = limiter
            .memory_growing(4 << 20, 5 << 20, None)
            .expect_err("over the sum");
        assert!(
            err.to_string().contains("over the cap of 10485760 bytes"),
            "{err}"
        );
        // A growth the allocator then fails is given back.
        let mut limiter = CallLimiter::new(10 << 20);
        assert!(limiter.memory_growing(0, 8 << 20, None).expect("grow"));
        let _ = limiter.memory_grow_failed(wasmtime::Error::msg("mmap failed"));
        assert!(
            limiter
                .memory_growing(0, 9 << 20, None)
                .expect("room again")
        );
    }

    #[test]
    fn the_memory_bound_counts_every_slot_at_its_caps() {
        let limits = SandboxLimits {
            cpu_deadline: Duration::from_secs(1),
            memory_bytes: 64 << 20,
            calls_at_once: 2,
            compile_timeout: DEFAULT_COMPILE_TIMEOUT,
            compiles_at_once: 1,
            http_calls_at_once: 0,
        };
        assert_eq!(
            limits.memory_bound(),
            2 * (2 * (64 << 20) + 16 * 65_536 * 8)
        );
    }
}
