//! The activities: resolve a plugin name to a pinned version (once per batch, at the root) and
//! run the plugin on one item (once per item, in the leaves).
//!
//! Wasm runs on tokio's blocking pool, never on the async runtime's worker threads, so a slow
//! plugin cannot stall polling, heartbeats or other activities.

use std::sync::Arc;

use batch_core::{PluginInfo, PluginRef};
use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::plugins::{PluginError, PluginRegistry};

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
