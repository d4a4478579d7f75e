//! The activities: resolve a plugin name to a pinned version (once per batch, at the root) and
//! run the plugin on one item (once per item, in the leaves).
//!
//! Wasm runs on tokio's blocking pool, never on the async runtime's worker threads, so a slow
//! plugin cannot stall polling, heartbeats or other activities.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use batch_core::ids::plugin_task_queue;
use temporalio_client::grpc::WorkflowService;
use temporalio_client::tonic::IntoRequest;
use temporalio_client::{Client, NamespacedClient};
use temporalio_common::protos::temporal::api::enums::v1::TaskQueueType;
use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeTaskQueueRequest;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use batch_core::{Outputs, PluginInfo, PluginRef};
use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::metrics::PluginMetrics;
use crate::plugins::{PluginError, PluginRegistry};
use crate::renewal::{RunningTask, TaskCounter};

/// A leaf's whole range for one pinned plugin (`batch` mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeTask {
    pub plugin: PluginRef,
    pub first: u64,
    pub last: u64,
}

/// What a `batch`-mode leaf has done so far, sent with each heartbeat: a retry starts from
/// `next` with these outputs instead of from the beginning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RangeProgress {
    next: u64,
    outputs: Outputs,
}

/// How long a `batch`-mode leaf computes between heartbeats.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// One item for one pinned plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemTask {
    pub plugin: PluginRef,
    pub item: u64,
}

/// The activities of one worker process. Cheap to clone: the plugin queues' workers
/// ([`crate::plugin_queues`]) register clones that share the registry and the call limit.
#[derive(Clone)]
pub struct PluginActivities {
    registry: Arc<PluginRegistry>,
    metrics: PluginMetrics,
    /// Plugin calls running at once, across all of this process's task queues: bounds the
    /// sandbox's instance slots however many queues deliver work.
    calls: Arc<Semaphore>,
    /// The batch task queue; work arriving on a plugin queue has been routed already.
    home_queue: String,
    /// To ask the server which workers serve a plugin this worker lacks.
    client: Option<Client>,
    /// Activity tasks started by the SDK worker these activities are registered with (see
    /// [`crate::renewal`]).
    tasks_started: TaskCounter,
}

impl PluginActivities {
    pub fn new(
        registry: Arc<PluginRegistry>,
        metrics: PluginMetrics,
        max_concurrent_calls: usize,
        home_queue: &str,
        client: Option<Client>,
    ) -> Self {
        Self {
            registry,
            metrics,
            calls: Arc::new(Semaphore::new(max_concurrent_calls.max(1))),
            home_queue: home_queue.to_owned(),
            client,
            tasks_started: TaskCounter::default(),
        }
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
        to_activity_error(e, self.routed(ctx))
    }

    /// Whether this task came through a plugin's own queue (the workflow re-sent it there).
    fn routed(&self, ctx: &ActivityContext) -> bool {
        ctx.info().task_queue != self.home_queue
    }

    async fn call_permit(&self) -> Result<OwnedSemaphorePermit, ActivityError> {
        // The semaphore is never closed.
        self.calls.clone().acquire_owned().await.map_err(|e| {
            ActivityError::application(ApplicationFailure::new(anyhow::anyhow!(
                "plugin call limit unavailable: {e}"
            )))
        })
    }

    /// A call permit for a batch-mode leaf, heartbeating while it waits: the leaf's heartbeat
    /// timeout (30 s) must not expire just because other leaves hold every permit.
    async fn range_permit(
        &self,
        ctx: &ActivityContext,
    ) -> Result<OwnedSemaphorePermit, ActivityError> {
        let acquire = self.call_permit();
        let mut acquire = std::pin::pin!(acquire);
        loop {
            tokio::select! {
                permit = &mut acquire => return permit,
                () = tokio::time::sleep(HEARTBEAT_EVERY) => {
                    // The last progress, unchanged, so a retry still resumes from it.
                    let progress: Option<RangeProgress> =
                        ctx.heartbeat_details().deserialize().ok().flatten();
                    if let Err(e) = ctx.record_heartbeat(progress).await {
                        tracing::warn!("cannot record a heartbeat: {e}");
                    }
                }
            }
        }
    }

    /// Which workers poll plugin `name`'s queue (seen in the last minute), comma-separated.
    async fn holders_of(&self, name: &str) -> Option<String> {
        let client = self.client.as_ref()?;
        let queue = plugin_task_queue(&self.home_queue, name);
        let request = DescribeTaskQueueRequest {
            namespace: client.namespace(),
            task_queue: Some(TaskQueue::from(queue)),
            task_queue_type: TaskQueueType::Activity as i32,
            ..Default::default()
        };
        let response =
            WorkflowService::describe_task_queue(&mut client.clone(), request.into_request())
                .await
                .inspect_err(|e| {
                    tracing::warn!(plugin = name, "cannot describe the plugin's queue: {e}")
                })
                .ok()?
                .into_inner();
        let recent = SystemTime::now() - Duration::from_secs(60);
        let mut workers: Vec<String> = response
            .pollers
            .into_iter()
            .filter(|p| {
                p.last_access_time
                    .and_then(|t| SystemTime::try_from(t).ok())
                    .is_some_and(|t| t >= recent)
            })
            .map(|p| p.identity)
            .collect();
        workers.sort();
        workers.dedup();
        (!workers.is_empty()).then(|| workers.join(", "))
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
        let plugin = match on_blocking_pool(move || registry.resolve(&wanted)).await {
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
    ) -> Result<Outputs, ActivityError> {
        let _running = self.count_task();
        let _permit = self.range_permit(&ctx).await?;
        self.run_range(&ctx, task).await.map_err(|e| match e {
            RangeError::Plugin(e) => self.failure(&ctx, e),
            RangeError::Activity(e) => e,
        })
    }

    /// The plugin's output for one item.
    #[activity(name = "process_item")]
    pub async fn process_item(
        self: Arc<Self>,
        ctx: ActivityContext,
        task: ItemTask,
    ) -> Result<u64, ActivityError> {
        let _running = self.count_task();
        let _permit = self.call_permit().await?;
        let registry = self.registry.clone();
        let metrics = self.metrics.clone();
        on_blocking_pool(move || {
            let started = Instant::now();
            let output = registry
                .get(&task.plugin)
                .and_then(|plugin| plugin.call(task.item));
            let outcome = output.as_ref().map(|_| ());
            metrics.call(&task.plugin.name, started.elapsed(), outcome);
            output
        })
        .await
        .map_err(|e| self.failure(&ctx, e))
    }
}

impl PluginActivities {
    /// Runs the plugin over `task`'s range in one instance, a slice at a time on the blocking
    /// pool, heartbeating progress between slices (and stopping if the activity is cancelled).
    async fn run_range(
        &self,
        ctx: &ActivityContext,
        task: RangeTask,
    ) -> Result<Outputs, RangeError> {
        let resumed: Option<RangeProgress> = ctx.heartbeat_details().deserialize().ok().flatten();
        let (mut next, mut outputs) = match resumed {
            Some(p) if (task.first..=task.last.saturating_add(1)).contains(&p.next) => {
                tracing::info!(
                    first = task.first,
                    last = task.last,
                    next = p.next,
                    "resuming a batch leaf"
                );
                (p.next, p.outputs)
            }
            _ => (task.first, Outputs::default()),
        };
        let registry = self.registry.clone();
        let plugin_ref = task.plugin.clone();
        let plugin = on_blocking_pool(move || registry.get(&plugin_ref))
            .await
            .inspect_err(|e| self.metrics.failure(&task.plugin.name, e))?;
        let mut session = None;
        while next <= task.last {
            let plugin = plugin.clone();
            let last = task.last;
            let metrics = self.metrics.clone();
            let (after, out, kept) = on_blocking_pool(move || {
                let started = Instant::now();
                let mut session = match session {
                    Some(s) => s,
                    None => plugin.session()?,
                };
                let from = next;
                loop {
                    match session.call(next) {
                        Ok(output) => outputs.push(output),
                        Err(e) => {
                            metrics.items(plugin.name(), next - from);
                            metrics.failure(plugin.name(), &e);
                            return Err(e);
                        }
                    }
                    if next == last || started.elapsed() >= HEARTBEAT_EVERY {
                        metrics.items(plugin.name(), next - from + 1);
                        return Ok((next + 1, outputs, session));
                    }
                    next += 1;
                }
            })
            .await?;
            next = after;
            outputs = out;
            session = Some(kept);
            if next <= task.last {
                let progress = RangeProgress {
                    next,
                    outputs: outputs.clone(),
                };
                if let Err(e) = ctx.record_heartbeat(progress).await {
                    tracing::warn!("cannot record a heartbeat: {e}");
                }
                if ctx.is_cancelled() {
                    return Err(RangeError::Activity(ActivityError::cancelled()));
                }
            }
        }
        Ok(outputs)
    }
}

/// Why a batch-mode leaf stopped: its plugin failed, or the activity was cancelled.
enum RangeError {
    Plugin(PluginError),
    Activity(ActivityError),
}

impl From<PluginError> for RangeError {
    fn from(e: PluginError) -> Self {
        RangeError::Plugin(e)
    }
}

/// Runs plugin work on tokio's blocking pool. A panic there is a bug of the host, not of the
/// plugin (plugin faults are traps): it surfaces as a retryable failure.
async fn on_blocking_pool<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PluginError> + Send + 'static,
) -> Result<T, PluginError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        // Cancelled only when the runtime shuts down: retryable, like a panic, but named.
        Err(e) => Err(PluginError::HostPanic {
            reason: if e.is_panic() {
                e.to_string()
            } else {
                "the worker is shutting down".to_owned()
            },
        }),
    }
}

/// Plugin errors become application failures typed by kind (visible in the Web UI and in
/// `temporal workflow show`); only the ones a retry can cure stay retryable.
fn to_activity_error(e: PluginError, routed: bool) -> ActivityError {
    let retryable = e.is_retryable() && (routed || !e.is_routable());
    let kind = e.kind();
    if e.is_routable() && !routed {
        // Expected whenever workers' plugin directories differ: the workflow re-routes it.
        tracing::debug!(kind, "{e}");
    } else {
        tracing::warn!(kind, retryable, "{e}");
    }
    ActivityError::application(
        ApplicationFailure::builder(e)
            .type_name(kind.to_owned())
            .non_retryable(!retryable)
            .build(),
    )
}
