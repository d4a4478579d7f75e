//! Renewal: replacing an SDK worker with a fresh one every so many activity tasks, so the
//! worker's memory stays flat however many items it processes.
//!
//! Why: `temporalio-sdk` 1.1.1's `Worker` records a cancellation token for every activity task
//! it starts (`ActivityHalf::task_tokens_to_cancels`) and never removes it, about 300 bytes per
//! activity, growing linearly with the activities run (how it was found and measured:
//! `docs/benchmarks.md`). The map belongs to the SDK `Worker` value, so the only cure from
//! outside the SDK is a new `Worker`. A *generation* is one SDK worker; when it has started
//! `renew_after` activity tasks, the next generation starts polling first, then the old one
//! shuts down gracefully: its in-flight activities finish, its cached workflows are handed back
//! to the server (replayed by the new generation from their short histories). Nothing is lost
//! or run twice: this is an ordinary worker restart, without a gap in polling.
//!
//! The price: workflow tasks on their way to the old worker as it stops (on its sticky queue,
//! or polled and dropped by its shutdown) wait for their timeouts (10 s each, concurrently), so
//! a renewal delays a running batch by about 10 s. Hence a large threshold while busy, and an
//! early, free renewal when the worker is idle (between batches).
//!
//! Each generation has its own connection: the SDK refuses two workers of the same task types
//! on one queue and one connection (`ClientWorkerSet`), and the two overlap while the old one
//! drains.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::LocalBoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;

/// How often the running generation's activity count is compared with the threshold.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Activity tasks one SDK worker starts before it is renewed, by default: bounds the SDK's
/// retained tokens to about 15 MB (50,000 x ~300 bytes), at the cost of one ~10 s delay per
/// 50,000 activities, a few percent of the time they take (`docs/benchmarks.md`). An idle worker
/// renews after 10,000.
pub const DEFAULT_RENEW_AFTER: u64 = 50_000;

/// The activity tasks of one generation, counted by the activities (see
/// [`crate::activities::PluginActivities::for_new_generation`]). Cheap to clone (shared).
/// Not the SDK's `ActivityInboundInterceptor`: in temporalio-sdk 1.1.1 it sits behind the
/// `experimental` feature (an API that may change), for what is one guard per activity here.
#[derive(Clone, Default)]
pub struct TaskCounter(Arc<Counts>);

#[derive(Default)]
struct Counts {
    started: AtomicU64,
    running: AtomicU64,
}

impl TaskCounter {
    /// Counts a task as started and running until the returned guard drops.
    pub fn start(&self) -> RunningTask {
        self.0.started.fetch_add(1, Ordering::Relaxed);
        self.0.running.fetch_add(1, Ordering::Relaxed);
        RunningTask(self.clone())
    }

    fn started(&self) -> u64 {
        self.0.started.load(Ordering::Relaxed)
    }

    fn running(&self) -> u64 {
        self.0.running.load(Ordering::Relaxed)
    }
}

/// One running activity task (see [`TaskCounter::start`]).
pub struct RunningTask(TaskCounter);

impl Drop for RunningTask {
    fn drop(&mut self) {
        self.0.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether the generation should be renewed now: at `renew_after` tasks in any case, or at a
/// fifth of that when idle (no task running and none started since the last check), when a
/// renewal costs nothing because no work is in flight.
fn due(started: u64, running: u64, started_at_last_check: u64, renew_after: u64) -> bool {
    started >= renew_after
        || (started >= renew_after / 5 && running == 0 && started == started_at_last_check)
}

/// One running SDK worker.
pub struct Generation {
    /// Resolves when the worker has shut down.
    pub run: LocalBoxFuture<'static, anyhow::Result<()>>,
    /// Starts a graceful shutdown.
    pub stop: Box<dyn Fn()>,
    /// Activity tasks it has started so far.
    pub activity_tasks: TaskCounter,
}

impl Generation {
    /// `worker`, about to run, whose activities count their tasks in `activity_tasks`.
    pub fn of(mut worker: temporalio_sdk::Worker, activity_tasks: TaskCounter) -> Self {
        Self {
            stop: Box::new(worker.shutdown_handle()),
            activity_tasks,
            run: Box::pin(async move { worker.run().await.map_err(anyhow::Error::from) }),
        }
    }
}

/// Asks a [`run_renewing`] loop to stop its generations (gracefully) and start no more.
#[derive(Clone)]
pub struct StopSignal(Arc<watch::Sender<bool>>);

impl Default for StopSignal {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }
}

impl StopSignal {
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    async fn stopped(&self) {
        let mut receiver = self.0.subscribe();
        // The sender lives in `self`, so this only ends when stopped.
        let _ = receiver.wait_for(|stopped| *stopped).await;
    }
}

/// Runs generations built by `build` one after another until `stop`: a new one each time the
/// running one has started `renew_after` activity tasks (a fifth of that if it is idle). `label` names the worker in logs.
/// Ends with the first generation that fails (other than by being renewed), or when stopped
/// and every generation has finished.
pub async fn run_renewing<B, F>(
    label: &str,
    mut build: B,
    renew_after: u64,
    stop: StopSignal,
) -> anyhow::Result<()>
where
    B: FnMut(u64) -> F,
    F: Future<Output = anyhow::Result<Generation>>,
{
    let mut number = 1;
    let mut current = build(number).await?;
    if stop.is_stopped() {
        (current.stop)();
    }
    // Older generations finishing their in-flight tasks.
    let mut draining = FuturesUnordered::new();
    let mut check = tokio::time::interval(CHECK_EVERY);
    let stopped = stop.stopped();
    let mut stopped = std::pin::pin!(stopped);
    let mut stopping = false;
    let mut started_at_last_check = 0;
    let result = loop {
        tokio::select! {
            result = &mut current.run => break result,
            Some(result) = draining.next() => {
                if let Err(e) = result {
                    tracing::warn!(worker = label, "a renewed generation ended with: {e:#}");
                }
            }
            () = &mut stopped, if !stopping => {
                stopping = true;
                (current.stop)();
            }
            _ = check.tick(), if !stopping => {
                let started = current.activity_tasks.started();
                let running = current.activity_tasks.running();
                let last = std::mem::replace(&mut started_at_last_check, started);
                if !due(started, running, last, renew_after) {
                    continue;
                }
                let next = match build(number + 1).await {
                    Ok(next) => next,
                    Err(e) => {
                        // The current generation keeps serving; the next check tries again.
                        tracing::warn!(worker = label, "cannot start a new generation: {e:#}");
                        continue;
                    }
                };
                number += 1;
                started_at_last_check = 0;
                tracing::info!(
                    worker = label,
                    generation = number,
                    previous_activity_tasks = started,
                    idle = running == 0,
                    "renewed the SDK worker (the previous one finishes its in-flight tasks)"
                );
                let old = std::mem::replace(&mut current, next);
                (old.stop)();
                draining.push(old.run);
                if stop.is_stopped() {
                    stopping = true;
                    (current.stop)();
                }
            }
        }
    };
    while let Some(drained) = draining.next().await {
        if let Err(e) = drained {
            tracing::warn!(worker = label, "a renewed generation ended with: {e:#}");
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    /// A stand-in for an SDK worker: runs until stopped; records that it was stopped.
    fn fake_generation(stopped: Rc<RefCell<Vec<u64>>>, number: u64) -> (Generation, TaskCounter) {
        let (tx, mut rx) = watch::channel(false);
        let counter = TaskCounter::default();
        let generation = Generation {
            run: Box::pin(async move {
                let _ = rx.wait_for(|s| *s).await;
                Ok(())
            }),
            stop: Box::new(move || {
                stopped.borrow_mut().push(number);
                tx.send_replace(true);
            }),
            activity_tasks: counter.clone(),
        };
        (generation, counter)
    }

    #[tokio::test]
    async fn renews_after_the_threshold_and_stops_every_generation() {
        let stopped = Rc::new(RefCell::new(Vec::new()));
        let counters = Rc::new(RefCell::new(Vec::new()));
        let stop = StopSignal::default();
        let build = |number: u64| {
            let (generation, counter) = fake_generation(stopped.clone(), number);
            counters.borrow_mut().push(counter);
            async move { Ok(generation) }
        };
        let driver = async {
            // Busy below the threshold (a task running): no renewal.
            wait_for(|| counters.borrow().len() == 1).await;
            let first = counters.borrow()[0].clone();
            let running = first.start();
            let _done: Vec<_> = (0..8).map(|_| first.start()).collect();
            tokio::time::sleep(CHECK_EVERY * 3).await;
            assert_eq!(counters.borrow().len(), 1, "renewed below the threshold");
            // At the threshold: a second generation, and the first is stopped.
            let _tenth = first.start();
            wait_for(|| counters.borrow().len() == 2).await;
            drop(running);
            assert_eq!(*stopped.borrow(), vec![1]);
            stop.stop();
        };
        let (result, ()) = tokio::join!(run_renewing("test", build, 10, stop.clone()), driver);
        result.expect("the renewing loop ends cleanly");
        assert_eq!(*stopped.borrow(), vec![1, 2]);
        assert_eq!(counters.borrow().len(), 2);
    }

    #[test]
    fn due_at_the_threshold_or_at_a_fifth_when_idle() {
        // (started, running, started at the last check)
        assert!(!due(0, 0, 0, 100));
        assert!(!due(19, 0, 19, 100));
        assert!(due(20, 0, 20, 100), "idle at a fifth");
        assert!(!due(20, 1, 20, 100), "a task running");
        assert!(!due(20, 0, 15, 100), "tasks started since the last check");
        assert!(!due(99, 3, 90, 100));
        assert!(due(100, 3, 90, 100), "busy at the threshold");
        assert!(due(u64::MAX, 0, 0, 100));
    }

    async fn wait_for(condition: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(tokio::time::Instant::now() < deadline, "timed out");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
