//! Plugin queues: how work finds a worker that holds its plugin when workers' plugin
//! directories differ (a rolling upgrade, a plugin installed on some machines only).
//!
//! Every worker polls the batch task queue, and work goes there first: any worker may take it,
//! and a leaf's activities go straight to the worker that ran the leaf (eager dispatch). Each
//! worker *also* polls one queue per plugin it holds, [`plugin_task_queue`]`(queue, name)`, with
//! an activity-only SDK worker. When an activity lands on a worker without the pinned version,
//! it fails at once with a routable kind and the workflow re-sends it to the plugin's queue,
//! where only holders poll (see [`crate::workflow`]). Nothing is retried blindly, and a worker
//! without the plugin never fails an item for good.
//!
//! Plugins dropped into the directory while the worker runs get their queue at the next scan
//! ([`RESCAN_EVERY`]). A queue is never dropped: a removed file's versions stay servable from
//! the registry's cache.

pub mod holders;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use batch_core::connect::{ConnectOverrides, connect};
use batch_core::ids::plugin_task_queue;
use futures::future::LocalBoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use temporalio_client::Client;
use temporalio_sdk::runtime::PollerBehavior;
use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

use tokio::task::JoinHandle;

use crate::activities::PluginActivities;
use crate::plugins::registry::UNLOAD_AFTER;
use crate::plugins::{PluginError, PluginRegistry};
use crate::renewal::{Generation, StopSignal, run_renewing};

/// Lists the plugins directory's names on the blocking pool (a directory read: nothing is
/// loaded, a plugin is compiled on its first use), and drops from memory the versions unused
/// for [`UNLOAD_AFTER`].
fn scan_now(registry: &PluginRegistry) -> Result<Vec<String>, PluginError> {
    registry.unload_idle(UNLOAD_AFTER);
    registry.names()
}

async fn scan(registry: Arc<PluginRegistry>) -> Result<Vec<String>, PluginError> {
    tokio::task::spawn_blocking(move || scan_now(&registry))
        .await
        .unwrap_or_else(|e| Err(PluginError::HostPanic { source: e }))
}

/// The result of the scan in progress; never ready when there is none.
async fn finished<T>(task: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

/// How often the plugins directory is scanned for plugins without a queue yet.
pub const RESCAN_EVERY: Duration = Duration::from_secs(5);

/// Long polls per plugin queue: routed work is the exception, a second poller only hides the
/// latency of the first one's round trip.
const POLLERS_PER_PLUGIN: usize = 2;

/// Settings shared by every plugin queue's worker.
pub struct PluginQueueSettings {
    /// The batch task queue.
    pub home_queue: String,
    /// Activity slots of each plugin queue's worker. Plugin calls across all queues are
    /// bounded by [`PluginActivities`]' own limit (the sandbox's instance slots) anyway.
    pub slots: usize,
    pub graceful_shutdown: Duration,
    /// To connect each renewed worker (see [`crate::renewal`]).
    pub overrides: ConnectOverrides,
    /// Activity tasks a plugin queue's SDK worker runs before it is renewed.
    pub renew_after: u64,
}

/// The activity-only workers of this process, one per plugin held.
pub struct PluginQueues<'r> {
    runtime: &'r Runtime,
    client: Client,
    activities: PluginActivities,
    registry: Arc<PluginRegistry>,
    settings: PluginQueueSettings,
    serving: BTreeSet<String>,
    running: FuturesUnordered<LocalBoxFuture<'r, (String, anyhow::Result<()>)>>,
    stop: StopSignal,
}

impl<'r> PluginQueues<'r> {
    pub fn new(
        runtime: &'r Runtime,
        client: Client,
        activities: PluginActivities,
        registry: Arc<PluginRegistry>,
        settings: PluginQueueSettings,
    ) -> Self {
        Self {
            runtime,
            client,
            activities,
            registry,
            settings,
            serving: BTreeSet::new(),
            running: FuturesUnordered::new(),
            stop: StopSignal::default(),
        }
    }

    /// Starts a queue for every usable plugin in the directory that has none yet (at start,
    /// before any workflow runs; later scans go through [`Self::run_beside`]).
    pub async fn serve_new_plugins(&mut self) {
        let listed = scan(self.registry.clone()).await;
        self.serve(listed);
    }

    /// Starts a queue for each plugin of a scan's result that has none yet (a file that does
    /// not load fails the work routed to it, naming why).
    fn serve(&mut self, listed: Result<Vec<String>, PluginError>) {
        if self.stop.is_stopped() {
            return;
        }
        let plugins = match listed {
            Ok(plugins) => plugins,
            Err(e) => {
                tracing::warn!("cannot scan the plugins directory: {}", e.message());
                return;
            }
        };
        for name in plugins {
            if self.serving.contains(&name) {
                continue;
            }
            self.start(&name);
            self.serving.insert(name);
        }
    }

    /// Serves `name`'s queue with a renewing SDK worker; a worker that cannot be built or fails
    /// ends the loop with the error, and the next scan starts it again (see [`Self::run_beside`]).
    fn start(&mut self, name: &str) {
        let queue = plugin_task_queue(&self.settings.home_queue, name);
        tracing::info!(plugin = name, %queue, "serving the plugin's queue");
        let (runtime, settings) = (self.runtime, &self.settings);
        let (slots, graceful_shutdown) = (settings.slots.max(1), settings.graceful_shutdown);
        let (overrides, activities) = (settings.overrides.clone(), self.activities.clone());
        // The first generation shares the worker's connection; later ones connect anew.
        let first_client = Cell::new(Some(self.client.clone()));
        let build_queue = queue.clone();
        let build = move |_generation: u64| {
            let (queue, overrides, activities) =
                (build_queue.clone(), overrides.clone(), activities.clone());
            let first = first_client.take();
            async move {
                let client = match first {
                    Some(client) => client,
                    None => connect(&overrides).await?.client,
                };
                let (activities, activity_tasks) = activities.for_new_generation(None);
                let tuner = TunerHolder::builder()
                    .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(2))
                    .activity_task_slot_supplier(FixedSizeSlotSupplier::new(slots))
                    .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(1))
                    .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
                    .build();
                let options = WorkerOptions::new(&queue)
                    .register_activities(activities)
                    .tuner(tuner)
                    .max_heartbeat_throttle_interval(crate::activities::HEARTBEAT_THROTTLE)
                    .activity_task_poller_behavior(PollerBehavior::SimpleMaximum(
                        POLLERS_PER_PLUGIN,
                    ))
                    .graceful_shutdown_period(graceful_shutdown)
                    .build();
                let worker = Worker::new(runtime, client, options)?;
                Ok(Generation::of(worker, activity_tasks))
            }
        };
        let (name, renew_after, stop) = (name.to_owned(), settings.renew_after, self.stop.clone());
        self.running.push(Box::pin(async move {
            let result = run_renewing(&queue, build, renew_after, stop).await;
            (name, result)
        }));
    }

    /// Stops every plugin queue's worker (gracefully) and keeps new ones from starting; for
    /// the signal handler.
    pub fn stop_handle(&self) -> impl Fn() + Send + Sync + 'static {
        let stop = self.stop.clone();
        move || stop.stop()
    }

    /// Runs the plugin queues' workers until `main` (the batch queue's worker) ends, scanning
    /// for new plugins meanwhile; then stops them and waits for them.
    pub async fn run_beside<E>(
        &mut self,
        main: impl std::future::Future<Output = Result<(), E>>,
    ) -> Result<(), E> {
        let mut main = std::pin::pin!(main);
        let mut rescan = tokio::time::interval(RESCAN_EVERY);
        // The scan (a `stat` per file, a compile per new file: seconds for a large plugin)
        // runs as a task of its own: this future also drives the batch worker's workflows,
        // which must not wait for it.
        let mut scanning: Option<JoinHandle<Result<Vec<String>, PluginError>>> = None;
        let result = loop {
            tokio::select! {
                result = &mut main => break result,
                Some((name, result)) = self.running.next() => {
                    if let Err(e) = result {
                        tracing::error!(plugin = %name, "the plugin queue's worker stopped: {e:#}");
                        // Let the next scan start it again.
                        self.serving.remove(&name);
                    }
                }
                _ = rescan.tick(), if scanning.is_none() => {
                    let registry = self.registry.clone();
                    scanning = Some(tokio::task::spawn_blocking(move || scan_now(&registry)));
                }
                listed = finished(&mut scanning) => {
                    scanning = None;
                    self.serve(listed.unwrap_or_else(|e| Err(PluginError::HostPanic {
                        source: e,
                    })));
                }
            }
        };
        self.stop_handle()();
        while let Some((name, result)) = self.running.next().await {
            if let Err(e) = result {
                tracing::warn!(plugin = %name, "the plugin queue's worker stopped: {e:#}");
            }
        }
        result
    }
}
