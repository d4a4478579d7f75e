//! Keeping the worker's resident memory at what it uses, whatever the size of the batch.
//!
//! A per-item batch makes the worker allocate and free small objects at a high rate from many
//! threads (workflow activations, activity payloads, gRPC buffers, wasm store bookkeeping).
//! glibc's allocator keeps freed memory in per-thread arenas instead of returning it, so the
//! resident size creeps up with the length and width of a batch and stays at its high-water
//! mark, although what is live stays bounded by the slots and the sticky cache (figures before
//! and after: `docs/benchmarks.md`). Two settings fix that:
//!
//! - fewer arenas (`M_ARENA_MAX`): the worker is I/O bound and its allocation is not contended
//!   enough to need one arena per core and thread;
//! - a periodic `malloc_trim`, which hands free pages inside the arenas back to the kernel.
//!
//! Other allocators or platforms manage this themselves: there, this does nothing.

use std::time::Duration;

/// How often freed memory is handed back. A trim walks the arenas (well under a millisecond
/// for this worker), so once a second costs nothing measurable.
pub const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Arenas glibc may create: one for the main thread and one shared by the others.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENA_MAX: libc::c_int = 2;

/// Call first thing in `main`, before any thread starts: arenas are created on first use.
// The crate forbids `unsafe` by default: these two FFI calls are the audited exceptions here.
#[allow(unsafe_code)]
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of glibc's allocator, with a valid value; it has no
    // other precondition and is called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
    }
}

/// Starts a thread that returns freed memory to the kernel every [`TRIM_EVERY`].
#[allow(unsafe_code)]
pub fn start_trimming() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(TRIM_EVERY);
                    // SAFETY: malloc_trim only walks glibc's own arenas, under their locks;
                    // it has no preconditions and frees nothing that is in use.
                    unsafe {
                        libc::malloc_trim(0);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the memory trimming thread: {e}");
        }
    }
}
