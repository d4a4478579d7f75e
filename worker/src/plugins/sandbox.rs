//! The sandbox, in one place: what a plugin call may use, and the engine that enforces it.
//!
//! - No ambient authority: plugins are components whose world imports nothing, and the linker
//!   provides nothing, so a plugin cannot reach files, network, environment, clocks or
//!   randomness. Components that import anything are rejected at load ([`super::module`]).
//! - Isolation: every call runs in a fresh `Store`; no state survives from one item to the next.
//! - CPU: epoch interruption. A ticker thread advances the engine's epoch every [`EPOCH_TICK`];
//!   each store traps once its deadline (in ticks) has passed, so an infinite loop stops.
//! - Memory: a per-store cap on linear memory and tables; growing past it traps.

use std::time::Duration;

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder,
};

/// Granularity of the CPU deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Largest plugin file the registry reads. Real plugins are kilobytes to a few MiB; the cap
/// keeps a stray multi-gigabyte file in the plugins directory from being read, hashed and
/// compiled (checked with a `stat`, before reading).
pub const MAX_PLUGIN_FILE_BYTES: u64 = 16 << 20;

/// Resource limits of one plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Wall-clock budget of one call (the epoch deadline), rounded up to [`EPOCH_TICK`].
    pub cpu_deadline: Duration,
    /// Cap on a call's linear memory.
    pub memory_bytes: usize,
    /// Instances that can be alive at once (pooling allocator slots): at least the number of
    /// plugin calls that can run concurrently.
    pub pool_slots: u32,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            cpu_deadline: Duration::from_secs(1),
            memory_bytes: 64 << 20,
            pool_slots: 256,
        }
    }
}

impl SandboxLimits {
    fn deadline_ticks(&self) -> u64 {
        let ticks = self.cpu_deadline.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }
}

/// What each store carries: only its limits.
pub struct StoreState {
    limits: StoreLimits,
}

/// A wasmtime engine configured for the sandbox, with its epoch ticker.
#[derive(Clone)]
pub struct SandboxedEngine {
    engine: Engine,
    limits: SandboxLimits,
}

impl SandboxedEngine {
    pub fn new(limits: SandboxLimits) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        // A deep recursion traps with "call stack exhausted" instead of overflowing the host.
        config.max_wasm_stack(512 << 10);
        // Pre-reserved slots make a fresh instance per call cheap. Each slot's memory is capped
        // at the sandbox's limit, so a plugin cannot outgrow it there either.
        let slots = limits.pool_slots;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(slots)
            .total_core_instances(slots * 2)
            .total_memories(slots * 2)
            .total_tables(slots * 2)
            .max_memory_size(limits.memory_bytes);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        // Without the ticker no deadline would ever fire: fail rather than run unguarded.
        spawn_epoch_ticker(&engine)
            .map_err(|e| anyhow::anyhow!("cannot start the wasm epoch ticker thread: {e}"))?;
        Ok(Self { engine, limits })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn limits(&self) -> SandboxLimits {
        self.limits
    }

    /// A fresh store for one call, with the memory cap and CPU deadline armed.
    pub fn new_store(&self) -> Store<StoreState> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .instances(8)
            .tables(8)
            .memories(2)
            // Trap rather than let `memory.grow` return -1: the guest's allocator would
            // abort with a less useful message.
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&self.engine, StoreState { limits });
        store.limiter(|state| &mut state.limits);
        self.arm_deadline(&mut store);
        store
    }

    /// Gives the store a full CPU budget from now.
    pub fn arm_deadline(&self, store: &mut Store<StoreState>) {
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
            pool_slots: 1,
        };
        assert_eq!(at(0).deadline_ticks(), 1);
        assert_eq!(at(1).deadline_ticks(), 1);
        assert_eq!(at(10).deadline_ticks(), 1);
        assert_eq!(at(11).deadline_ticks(), 2);
        assert_eq!(at(1000).deadline_ticks(), 100);
    }
}
