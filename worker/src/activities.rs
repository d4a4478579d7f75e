//! The activities: resolve a plugin name to a pinned version (once per batch, at the root) and
//! run the plugin on one item (once per item, in the leaves).
//!
//! Wasm runs on tokio's blocking pool, never on the async runtime's worker threads, so a slow
//! plugin cannot stall polling, heartbeats or other activities.

use std::sync::Arc;
use std::time::{Duration, Instant};

use batch_core::{Outputs, PluginInfo, PluginRef};
use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::plugins::{PluginError, PluginRegistry};

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

pub struct PluginActivities {
    registry: Arc<PluginRegistry>,
}

impl PluginActivities {
    pub fn new(registry: Arc<PluginRegistry>) -> Self {
        Self { registry }
    }
}

#[activities]
impl PluginActivities {
    /// The current version of the named plugin, as a reference pinned by digest.
    #[activity(name = "resolve_plugin")]
    pub async fn resolve_plugin(
        self: Arc<Self>,
        _ctx: ActivityContext,
        name: String,
    ) -> Result<PluginRef, ActivityError> {
        let registry = self.registry.clone();
        let plugin = on_blocking_pool(move || registry.resolve(&name)).await?;
        Ok(PluginRef {
            name: plugin.name().to_owned(),
            digest: Some(plugin.digest().to_owned()),
        })
    }

    /// Every plugin in this worker's directory, usable or not.
    #[activity(name = "list_plugins")]
    pub async fn list_plugins(
        self: Arc<Self>,
        _ctx: ActivityContext,
    ) -> Result<Vec<PluginInfo>, ActivityError> {
        let registry = self.registry.clone();
        on_blocking_pool(move || registry.list()).await
    }

    /// The statistics of the plugin's outputs over a leaf's whole range (`batch` mode).
    #[activity(name = "process_range")]
    pub async fn process_range(
        self: Arc<Self>,
        ctx: ActivityContext,
        task: RangeTask,
    ) -> Result<Outputs, ActivityError> {
        self.run_range(&ctx, task).await
    }

    /// The plugin's output for one item.
    #[activity(name = "process_item")]
    pub async fn process_item(
        self: Arc<Self>,
        _ctx: ActivityContext,
        task: ItemTask,
    ) -> Result<u64, ActivityError> {
        let registry = self.registry.clone();
        on_blocking_pool(move || registry.get(&task.plugin)?.call(task.item)).await
    }
}

impl PluginActivities {
    /// Runs the plugin over `task`'s range in one instance, a slice at a time on the blocking
    /// pool, heartbeating progress between slices (and stopping if the activity is cancelled).
    async fn run_range(
        &self,
        ctx: &ActivityContext,
        task: RangeTask,
    ) -> Result<Outputs, ActivityError> {
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
        let plugin = on_blocking_pool(move || registry.get(&plugin_ref)).await?;
        let mut session = None;
        while next <= task.last {
            let plugin = plugin.clone();
            let last = task.last;
            let (after, out, kept) = on_blocking_pool(move || {
                let started = Instant::now();
                let mut session = match session {
                    Some(s) => s,
                    None => plugin.session()?,
                };
                loop {
                    outputs.push(session.call(next)?);
                    if next == last || started.elapsed() >= HEARTBEAT_EVERY {
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
                    return Err(ActivityError::cancelled());
                }
            }
        }
        Ok(outputs)
    }
}

async fn on_blocking_pool<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PluginError> + Send + 'static,
) -> Result<T, ActivityError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(to_activity_error(e)),
        // A panic in the host is our bug, not the plugin's: let Temporal retry it.
        Err(e) => Err(ActivityError::application(ApplicationFailure::new(
            anyhow::anyhow!("plugin host panicked: {e}"),
        ))),
    }
}

/// Plugin errors become application failures typed by kind (visible in the Web UI and in
/// `temporal workflow show`); only the ones a retry can cure stay retryable.
fn to_activity_error(e: PluginError) -> ActivityError {
    let retryable = e.is_retryable();
    let kind = e.kind();
    tracing::warn!(kind, retryable, "{e}");
    ActivityError::application(
        ApplicationFailure::builder(e)
            .type_name(kind.to_owned())
            .non_retryable(!retryable)
            .build(),
    )
}
