//! The activities: resolve a plugin name to a pinned version (once per batch, at the root) and
//! run the plugin on one item (once per item, in the leaves).
//!
//! Wasm runs on tokio's blocking pool, never on the async runtime's worker threads, so a slow
//! plugin cannot stall polling, heartbeats or other activities. A call first waits for one of
//! the sandbox's call slots (heartbeating meanwhile, so a long wait behind other batches' calls
//! is never taken for a lost worker); the slot moves into the blocking work and is released
//! only when the wasm has stopped running, even if the activity was cancelled meanwhile.

use std::sync::Arc;

use batch_core::ids::plugin_task_queue;
use std::time::Instant;

use temporalio_client::Client;

use batch_core::http::HttpTask;
use batch_core::{Failures, ItemOutcome, PluginInfo, PluginRef, Tolerance};
use serde::Serialize;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use data_io::{Access, Authority, Grants, Location};

use crate::metrics::PluginMetrics;
use crate::plugins::http::{HttpGrants, LeafHttp};
use crate::plugins::sandbox::{CallSlot, SlotKind};
use crate::plugins::{LoadedPlugin, PluginError, PluginRegistry};
use crate::renewal::{RunningTask, TaskCounter};
use crate::routing;

mod checkpoint;
mod engine;
mod range_leaf;
mod split_leaf;

pub use batch_core::tasks::{
    ItemTask, ManifestTask, RangeOutcome, RangeTask, SplitOutcome, SplitTask,
};
pub use checkpoint::HEARTBEAT_THROTTLE;
use checkpoint::heartbeating;
use range_leaf::RangeError;
#[cfg(test)]
use range_leaf::RangeProgress;

/// The activities of one worker process. Cheap to clone: the plugin queues' workers
/// ([`crate::plugin_queues`]) register clones that share the registry and the call limit.
#[derive(Clone)]
pub struct PluginActivities {
    registry: Arc<PluginRegistry>,
    /// What data batches may read and write: every location a task names is checked against
    /// these where it is opened.
    grants: Arc<Grants>,
    metrics: PluginMetrics,
    /// The batch task queue; work arriving on a plugin queue has been routed already.
    home_queue: String,
    /// To ask the server which workers serve a plugin this worker lacks.
    client: Option<Client>,
    /// Activity tasks started by the SDK worker these activities are registered with (see
    /// [`crate::renewal`]).
    tasks_started: TaskCounter,
    /// Many-object sources' stored listings read lately, shared by the leaves.
    listings: split_leaf::ListingCache,
    /// The hosts plugins may call: every batch's hosts are checked against these at its root
    /// and again in each leaf, where its requests are made.
    http_grants: Arc<HttpGrants>,
}

impl PluginActivities {
    pub fn new(
        registry: Arc<PluginRegistry>,
        grants: Arc<Grants>,
        metrics: PluginMetrics,
        home_queue: &str,
        client: Option<Client>,
    ) -> Self {
        Self {
            registry,
            grants,
            metrics,
            home_queue: home_queue.to_owned(),
            client,
            tasks_started: TaskCounter::default(),
            listings: split_leaf::ListingCache::default(),
            http_grants: Arc::new(HttpGrants::default()),
        }
    }

    /// These activities with the operator's HTTP grants (`--allow-http`); without, no batch
    /// that calls services runs here.
    pub fn with_http_grants(self, http_grants: HttpGrants) -> Self {
        Self {
            http_grants: Arc::new(http_grants),
            ..self
        }
    }

    /// The leaf's HTTP for a task of a batch that calls services (`None` for any other):
    /// checked here, where the requests are made, against the operator's grants and the
    /// leaf's share of the batch's limits.
    fn leaf_http(
        &self,
        ctx: &ActivityContext,
        task: Option<&HttpTask>,
    ) -> Result<Option<Arc<LeafHttp>>, ActivityError> {
        let Some(task) = task else {
            return Ok(None);
        };
        let leaf_id = ctx.info().workflow_id.clone().unwrap_or_default();
        self.http_grants
            .leaf(task, &leaf_id)
            .map(|leaf| {
                let metrics = self.metrics.clone();
                leaf.observe(move |delta| metrics.http(delta));
                Some(leaf)
            })
            .map_err(|e| {
                tracing::warn!("{e}");
                routing::failure(
                    batch_core::FailureKind::HttpNotGranted,
                    e.to_string(),
                    false,
                )
            })
    }

    /// These activities for a new SDK worker: same registry, limits and metrics, and a fresh
    /// count of activity tasks (returned), by which [`crate::renewal`] knows when to renew it.
    pub fn for_new_generation(&self, client: Option<Client>) -> (Self, TaskCounter) {
        let tasks_started = TaskCounter::default();
        let activities = Self {
            client: client.or_else(|| self.client.clone()),
            tasks_started: tasks_started.clone(),
            ..self.clone()
        };
        (activities, tasks_started)
    }

    /// Counts an activity task for renewal; it runs until the returned guard drops.
    fn count_task(&self) -> RunningTask {
        self.tasks_started.start()
    }

    /// A failure as Temporal should see it. Work that reached this worker on the batch queue
    /// without the pinned version fails for good *here*, so the workflow re-sends it to the
    /// plugin's queue at once; on the plugin's queue another holder may still have it, so
    /// there it is retried.
    fn failure(&self, ctx: &ActivityContext, e: PluginError) -> ActivityError {
        routing::to_activity_error(e, self.routed(ctx))
    }

    /// Whether this task came through a plugin's own queue (the workflow re-sent it there).
    fn routed(&self, ctx: &ActivityContext) -> bool {
        ctx.info().task_queue != self.home_queue
    }

    /// A call slot of the sandbox (shared by every task queue of this process), heartbeating
    /// while it waits (see [`heartbeating`]).
    async fn call_slot<P: Serialize + Clone + 'static>(
        &self,
        ctx: &ActivityContext,
        progress: &P,
        kind: SlotKind,
    ) -> Result<CallSlot, ActivityError> {
        let engine = self.registry.engine();
        if !engine.has_slots(kind) {
            return Err(routing::failure(
                batch_core::FailureKind::HttpNotGranted,
                "this worker runs no plugin calls that call services (it grants no host with \
                 --allow-http)"
                    .into(),
                false,
            ));
        }
        // The common case, a free slot, without arming a heartbeat timer per item.
        if let Some(slot) = engine.try_slot_of(kind) {
            return Ok(slot);
        }
        // A cancelled task stops waiting (its heartbeats bring the cancellation), so a
        // cancelled batch does not wait for its queued leaves to take turns.
        tokio::select! {
            slot = heartbeating(ctx, progress, engine.slot_of(kind)) => Ok(slot),
            () = ctx.cancelled() => {
                tracing::info!("cancelled while waiting for a call slot");
                Err(ActivityError::cancelled())
            }
        }
    }

    /// The pinned plugin: from memory when this process has it (no blocking), else from the
    /// registry on the blocking pool (it may read and compile a file), heartbeating `progress`
    /// meanwhile.
    async fn plugin<P: Serialize + Clone + 'static>(
        &self,
        ctx: &ActivityContext,
        progress: &P,
        plugin: &PluginRef,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        if let Some(loaded) = self.registry.loaded(plugin) {
            return Ok(loaded);
        }
        let (registry, plugin) = (self.registry.clone(), plugin.clone());
        heartbeating(
            ctx,
            progress,
            on_blocking_pool(move || registry.get(&plugin)),
        )
        .await
    }

    /// Which workers poll plugin `name`'s queue (seen in the last minute), comma-separated.
    async fn holders_of(&self, name: &str) -> Option<String> {
        let client = self.client.as_ref()?;
        crate::plugin_queues::holders::holders_of(client, &self.home_queue, name).await
    }
}

#[activities]
impl PluginActivities {
    /// The current version of the named plugin, as a reference pinned by digest.
    #[activity(name = "resolve_plugin")]
    pub async fn resolve_plugin(
        self: Arc<Self>,
        ctx: ActivityContext,
        name: String,
    ) -> Result<PluginRef, ActivityError> {
        let _running = self.count_task();
        let registry = self.registry.clone();
        let wanted = name.clone();
        let resolving = on_blocking_pool(move || registry.resolve(&wanted));
        // Resolving may compile a new plugin (seconds for a large one).
        let plugin = match heartbeating(&ctx, &(), resolving).await {
            Ok(plugin) => plugin,
            Err(PluginError::NotFound {
                name,
                dir,
                available,
            }) => {
                // On the plugin's own queue, this worker was the one asked: no further hop.
                let holders = if self.routed(&ctx) {
                    None
                } else {
                    self.holders_of(&name).await
                };
                let error = match holders {
                    Some(workers) => PluginError::HeldElsewhere {
                        queue: plugin_task_queue(&self.home_queue, &name),
                        name,
                        dir,
                        workers,
                    },
                    _ => PluginError::NotFound {
                        name,
                        dir,
                        available,
                    },
                };
                return Err(self.failure(&ctx, error));
            }
            Err(e) => return Err(self.failure(&ctx, e)),
        };
        Ok(PluginRef {
            name: plugin.name().to_owned(),
            digest: Some(plugin.digest().to_owned()),
        })
    }

    /// The version a batch was started pinned to, loaded (fetched from the store, checked,
    /// admitted, compiled) before its tree starts: a version no worker can run fails the batch
    /// at its root, naming it, instead of in every leaf.
    #[activity(name = "check_plugin")]
    pub async fn check_plugin(
        self: Arc<Self>,
        ctx: ActivityContext,
        plugin: PluginRef,
    ) -> Result<PluginRef, ActivityError> {
        let _running = self.count_task();
        if plugin.digest.is_none() {
            return Err(routing::failure(
                batch_core::FailureKind::InvalidTaskInput,
                "invalid task input: check_plugin needs a pinned version".into(),
                false,
            ));
        }
        let loaded = self
            .plugin(&ctx, &(), &plugin)
            .await
            .map_err(|e| self.failure(&ctx, e))?;
        Ok(PluginRef {
            name: plugin.name,
            digest: Some(loaded.digest().to_owned()),
        })
    }

    /// Whether this worker grants every host a batch asks to call (and its limits give each
    /// leaf a share): run at the root of a batch that calls services, so a host no worker
    /// grants fails the batch, naming the host, before any item runs.
    #[activity(name = "check_http")]
    pub async fn check_http(
        self: Arc<Self>,
        ctx: ActivityContext,
        task: HttpTask,
    ) -> Result<(), ActivityError> {
        let _running = self.count_task();
        self.leaf_http(&ctx, Some(&task)).map(|_| ())
    }

    /// Every plugin in this worker's directory, usable or not.
    #[activity(name = "list_plugins")]
    pub async fn list_plugins(
        self: Arc<Self>,
        ctx: ActivityContext,
    ) -> Result<Vec<PluginInfo>, ActivityError> {
        let _running = self.count_task();
        let registry = self.registry.clone();
        on_blocking_pool(move || registry.list())
            .await
            .map_err(|e| self.failure(&ctx, e))
    }

    /// The statistics of the plugin's outputs over a leaf's whole range (`batch` mode).
    #[activity(name = "process_range")]
    pub async fn process_range(
        self: Arc<Self>,
        ctx: ActivityContext,
        task: RangeTask,
    ) -> Result<RangeOutcome, ActivityError> {
        let _running = self.count_task();
        task.validate().map_err(|e| invalid_task(&e))?;
        self.run_range(&ctx, task).await.map_err(|e| match e {
            RangeError::Plugin(e) => self.failure(&ctx, e),
            RangeError::Activity(e) => e,
        })
    }

    /// One split of a data batch: its records through the plugin, its outputs to its part.
    #[activity(name = "process_split")]
    pub async fn process_split(
        self: Arc<Self>,
        ctx: ActivityContext,
        task: SplitTask,
    ) -> Result<SplitOutcome, ActivityError> {
        let _running = self.count_task();
        task.validate_with_output().map_err(|e| invalid_task(&e))?;
        let source = task.source.clone();
        self.run_split(&ctx, task)
            .await
            .map_err(|e| e.into_activity_error(&self, &ctx, &source))
    }

    /// A Parquet output's schema, when the batch gives none: inferred from the first outputs of
    /// the source's first split (`task`, a few MiB of it at most), as the schema's text.
    /// Writes nothing.
    #[activity(name = "infer_output_schema")]
    pub async fn infer_output_schema(
        self: Arc<Self>,
        ctx: ActivityContext,
        task: SplitTask,
    ) -> Result<String, ActivityError> {
        let _running = self.count_task();
        task.validate().map_err(|e| invalid_task(&e))?;
        let rows = self
            .sample_split(&ctx, &task)
            .await
            .map_err(|e| e.into_activity_error(&self, &ctx, &task.source))?;
        data_io::schema::infer(rows.iter().map(Vec::as_slice)).map_err(|e| {
            routing::failure(
                batch_core::FailureKind::InvalidBatchInput,
                e.to_string(),
                false,
            )
        })
    }

    /// Writes a data batch's manifest (last, so that its presence means the output is whole).
    #[activity(name = "write_manifest")]
    pub async fn write_manifest(
        self: Arc<Self>,
        _ctx: ActivityContext,
        task: ManifestTask,
    ) -> Result<(), ActivityError> {
        let _running = self.count_task();
        let write = async {
            let output = Location::open(
                &task.output,
                Authority::granted(&self.grants, Access::Write),
            )?;
            let mut json = serde_json::to_vec_pretty(&task.manifest).map_err(|e| {
                data_io::DataError::invalid(&task.output, format!("cannot encode: {e}"))
            })?;
            json.push(b'\n');
            data_io::write::put(&output.child(batch_core::source::MANIFEST_NAME), json).await?;
            // Every part is in place: what unfinished attempts staged goes, so the output
            // holds exactly what the manifest lists.
            data_io::write::remove_staging(&output).await?;
            data_io::write::remove_staging(&output.child(batch_core::output::FAILED_DIR)).await
        };
        write.await.map_err(|e| routing::data_failure(&e))
    }

    /// The plugin's output for one item: a number (as v1 always returned), or a record's size
    /// or a skip (v2).
    #[activity(name = "process_item")]
    pub async fn process_item(
        self: Arc<Self>,
        ctx: ActivityContext,
        task: ItemTask,
    ) -> Result<ItemOutcome, ActivityError> {
        let _running = self.count_task();
        task.validate().map_err(|e| invalid_task(&e))?;
        let plugin = self
            .plugin(&ctx, &(), &task.plugin)
            .await
            .inspect_err(|e| self.metrics.failure(&task.plugin.name, e))
            .map_err(|e| self.failure(&ctx, e))?;
        plugin
            .check_input(None)
            .map_err(|e| self.failure(&ctx, e))?;
        let mut slot = self.call_slot(&ctx, &(), SlotKind::Compute).await?;
        let metrics = self.metrics.clone();
        on_blocking_pool(move || {
            let started = Instant::now();
            let output = plugin.call_with(&mut slot, task.config.as_ref(), task.item);
            drop(slot);
            let outcome = output.as_ref().map(|_| ());
            metrics.call(&task.plugin.name, started.elapsed(), outcome);
            output.map(|o| ItemOutcome::from(&o))
        })
        .await
        .map_err(|e| self.failure(&ctx, e))
    }
}

/// A leaf of items `first..=last` whose failed items exceed the batch's tolerance fails for
/// good, saying how many failed and the first of them; the workflow then stops the batch.
pub(crate) fn within_tolerance(
    failures: &Failures,
    tolerance: &Tolerance,
    first: u64,
    last: u64,
) -> Result<(), ActivityError> {
    if !tolerance.exceeded_by(failures.count) {
        return Ok(());
    }
    Err(routing::failure(
        batch_core::FailureKind::BatchToleranceExceeded,
        failures.exceeded_message(tolerance, first, last),
        false,
    ))
}

/// Runs plugin work on tokio's blocking pool. A panic there is a bug of the host, not of the
/// plugin (plugin faults are traps): it surfaces as a retryable failure.
async fn on_blocking_pool<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PluginError> + Send + 'static,
) -> Result<T, PluginError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(source) if source.is_panic() => Err(PluginError::HostPanic { source }),
        // Cancelled only when the runtime shuts down: retryable, like a panic, but named.
        Err(_) => Err(PluginError::ShuttingDown),
    }
}

/// A task input that no retry can fix: fails the activity for good, with the reason.
fn invalid_task(reason: &batch_core::tasks::TaskError) -> ActivityError {
    tracing::warn!("invalid task input: {reason}");
    routing::failure(
        batch_core::FailureKind::InvalidTaskInput,
        format!("invalid task input: {reason}"),
        false,
    )
}

/// The activities' own logic (resuming, cancelling, waiting for a call slot, checking task
/// inputs) with the SDK's activity test kit: a test activity context, no server. Uses the
/// plugins built by `scripts/build-plugins.sh`.
#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use temporalio_sdk::testing::{ActivityEnvironment, ActivityEnvironmentError};

    use super::*;
    use crate::plugins::{SandboxLimits, SandboxedEngine};
    use batch_core::Outputs;
    use checkpoint::HEARTBEAT_EVERY;

    fn registry(calls_at_once: u32) -> Arc<PluginRegistry> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
        let limits = SandboxLimits {
            calls_at_once,
            ..SandboxLimits::default()
        };
        let engine = SandboxedEngine::new(limits).expect("engine");
        Arc::new(PluginRegistry::open(dir, engine, None).expect("run scripts/build-plugins.sh"))
    }

    fn square(registry: &PluginRegistry) -> PluginRef {
        let plugin = registry
            .resolve("square_number")
            .expect("square_number is built");
        PluginRef {
            name: plugin.name().to_owned(),
            digest: Some(plugin.digest().to_owned()),
        }
    }

    /// A test environment on the activities' home queue "test", counting heartbeats.
    fn environment(
        registry: Arc<PluginRegistry>,
        resumed_from: Option<RangeProgress>,
        heartbeats: Arc<AtomicUsize>,
    ) -> ActivityEnvironment {
        let activities = PluginActivities::new(
            registry,
            Arc::new(Grants::none()),
            PluginMetrics::disabled(),
            "test",
            None,
        );
        let builder = ActivityEnvironment::builder_with_default()
            .register_activities(activities)
            .on_heartbeat(move |_| {
                heartbeats.fetch_add(1, Ordering::Relaxed);
            });
        match resumed_from {
            Some(progress) => builder.heartbeat_details(progress).expect("details"),
            None => builder,
        }
        .build()
    }

    fn message(e: ActivityEnvironmentError) -> String {
        format!("{e:?}")
    }

    #[tokio::test]
    async fn a_batch_leaf_resumes_from_its_last_heartbeat() {
        let registry = registry(2);
        let plugin = square(&registry);
        // The first attempt heartbeated after items 1..=5, recorded as zeros here: a resumed
        // leaf keeps them and computes only 6..=10.
        let mut outputs = Outputs::default();
        (1..=5).for_each(|_| outputs.push(0));
        let progress = RangeProgress {
            next: 6,
            outputs,
            failures: Failures::default(),
        };
        let env = environment(registry, Some(progress), Arc::default());
        let task = RangeTask {
            plugin,
            first: 1,
            last: 10,
            config: None,
            tolerance: Tolerance::default(),
            items: None,
            http: None,
        };
        let result = env
            .run(PluginActivities::process_range, task)
            .await
            .expect("resumed leaf");
        let result = result.outputs;
        assert_eq!(result.count, 10);
        assert_eq!(result.sum, 36 + 49 + 64 + 81 + 100);
        assert_eq!(result.tail, [0, 0, 0, 0, 0, 36, 49, 64, 81, 100]);
    }

    #[tokio::test]
    async fn a_cancelled_batch_leaf_stops_at_its_next_block() {
        let registry = registry(2);
        let plugin = square(&registry);
        let heartbeats = Arc::new(AtomicUsize::new(0));
        let env = environment(registry, None, heartbeats.clone());
        let task = RangeTask {
            plugin,
            first: 1,
            last: 1_000_000_000,
            config: None,
            tolerance: Tolerance::default(),
            items: None,
            http: None,
        };
        let started = Instant::now();
        let (result, ()) = tokio::join!(env.run(PluginActivities::process_range, task), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            env.cancel();
        });
        let err = message(result.expect_err("cancelled"));
        assert!(err.contains("Cancelled"), "{err}");
        // The slice learns of the cancellation at once and stops at its next block: not even
        // one slice's time, no heartbeat, never the whole range.
        assert!(
            started.elapsed() < HEARTBEAT_EVERY,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(heartbeats.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn an_item_waiting_for_a_call_slot_heartbeats_and_then_runs() {
        let registry = registry(1);
        let plugin = square(&registry);
        let heartbeats = Arc::new(AtomicUsize::new(0));
        let env = environment(registry.clone(), None, heartbeats.clone());
        // Another batch's call holds the only slot for a while.
        let busy = registry.engine().call_slot().await;
        let (result, ()) = tokio::join!(
            env.run(
                PluginActivities::process_item,
                ItemTask {
                    plugin,
                    item: 7,
                    config: None,
                },
            ),
            async {
                tokio::time::sleep(HEARTBEAT_EVERY * 2 + Duration::from_millis(500)).await;
                drop(busy);
            }
        );
        assert_eq!(
            result.expect("ran once the slot was free"),
            ItemOutcome::Number(49)
        );
        assert!(
            heartbeats.load(Ordering::Relaxed) >= 2,
            "heartbeats while waiting"
        );
    }

    #[tokio::test]
    async fn task_inputs_from_any_client_are_checked_before_any_work() {
        let registry = registry(2);
        let plugin = square(&registry);
        let env = environment(registry, None, Arc::default());
        for (first, last, expected) in [
            (1, u64::MAX, "item 18446744073709551615 is out of range"),
            (0, 5, "item 0 is out of range"),
            (9, 3, "the range 9..=3 is empty"),
        ] {
            let task = RangeTask {
                plugin: plugin.clone(),
                first,
                last,
                config: None,
                tolerance: Tolerance::default(),
                items: None,
                http: None,
            };
            let err = message(
                env.run(PluginActivities::process_range, task)
                    .await
                    .expect_err("invalid"),
            );
            assert!(err.contains(expected), "{err}");
        }
        let item = ItemTask {
            plugin,
            item: 0,
            config: None,
        };
        let err = message(
            env.run(PluginActivities::process_item, item)
                .await
                .expect_err("invalid"),
        );
        assert!(err.contains("item 0 is out of range"), "{err}");
    }
}
