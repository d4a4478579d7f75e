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

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use batch_core::ids::plugin_task_queue;
use futures::future::LocalBoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use temporalio_client::Client;
use temporalio_sdk::runtime::PollerBehavior;
use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

use crate::activities::PluginActivities;
use crate::plugins::{PluginError, PluginRegistry};

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
}

type Stops = Arc<Mutex<Vec<Box<dyn Fn() + Send>>>>;

/// The activity-only workers of this process, one per plugin held.
pub struct PluginQueues<'r> {
    runtime: &'r Runtime,
    client: Client,
    activities: PluginActivities,
    registry: Arc<PluginRegistry>,
    settings: PluginQueueSettings,
    serving: BTreeSet<String>,
    running: FuturesUnordered<LocalBoxFuture<'static, (String, anyhow::Result<()>)>>,
    stops: Stops,
    stopping: Arc<std::sync::atomic::AtomicBool>,
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
            stops: Arc::default(),
            stopping: Arc::default(),
        }
    }

    /// Starts a queue for every usable plugin in the directory that has none yet. The scan
    /// (a `stat` per file, a compile per new file) runs on the blocking pool: this task also
    /// drives the workflows.
    pub async fn serve_new_plugins(&mut self) {
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let registry = self.registry.clone();
        let listed = tokio::task::spawn_blocking(move || registry.list())
            .await
            .unwrap_or_else(|e| {
                Err(PluginError::HostPanic {
                    reason: e.to_string(),
                })
            });
        let plugins = match listed {
            Ok(plugins) => plugins,
            Err(e) => {
                tracing::warn!("cannot scan the plugins directory: {e}");
                return;
            }
        };
        for plugin in plugins.into_iter().filter(|p| p.digest.is_some()) {
            if self.serving.contains(&plugin.name) {
                continue;
            }
            match self.start(&plugin.name) {
                Ok(()) => {
                    self.serving.insert(plugin.name);
                }
                Err(e) => {
                    tracing::error!(plugin = %plugin.name, "cannot serve the plugin's queue: {e:#}")
                }
            }
        }
    }

    fn start(&mut self, name: &str) -> anyhow::Result<()> {
        let queue = plugin_task_queue(&self.settings.home_queue, name);
        let slots = self.settings.slots.max(1);
        let tuner = TunerHolder::builder()
            .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(2))
            .activity_task_slot_supplier(FixedSizeSlotSupplier::new(slots))
            .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(1))
            .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
            .build();
        let options = WorkerOptions::new(&queue)
            .register_activities(self.activities.clone())
            .tuner(tuner)
            .activity_task_poller_behavior(PollerBehavior::SimpleMaximum(POLLERS_PER_PLUGIN))
            .graceful_shutdown_period(self.settings.graceful_shutdown)
            .build();
        let mut worker = Worker::new(self.runtime, self.client.clone(), options)?;
        let stop = worker.shutdown_handle();
        {
            let mut stops = self.stops.lock().unwrap_or_else(PoisonError::into_inner);
            // A shutdown that began while this worker was being built must stop it too.
            if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                stop();
            }
            stops.push(Box::new(stop));
        }
        tracing::info!(plugin = name, %queue, "serving the plugin's queue");
        let name = name.to_owned();
        self.running.push(Box::pin(async move {
            let result = worker.run().await.map_err(anyhow::Error::from);
            (name, result)
        }));
        Ok(())
    }

    /// Stops every plugin queue's worker (gracefully) and keeps new ones from starting; for
    /// the signal handler.
    pub fn stop_handle(&self) -> impl Fn() + Send + Sync + 'static {
        let stops = self.stops.clone();
        let stopping = self.stopping.clone();
        move || {
            stopping.store(true, std::sync::atomic::Ordering::SeqCst);
            for stop in stops.lock().unwrap_or_else(PoisonError::into_inner).iter() {
                stop();
            }
        }
    }

    /// Runs the plugin queues' workers until `main` (the batch queue's worker) ends, scanning
    /// for new plugins meanwhile; then stops them and waits for them.
    pub async fn run_beside<E>(
        &mut self,
        main: impl std::future::Future<Output = Result<(), E>>,
    ) -> Result<(), E> {
        let mut main = std::pin::pin!(main);
        let mut rescan = tokio::time::interval(RESCAN_EVERY);
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
                _ = rescan.tick() => self.serve_new_plugins().await,
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
