//! Who holds a plugin: the workers polling its queue, as the server sees them.

use std::time::{Duration, SystemTime};

use batch_core::ids::plugin_task_queue;
use temporalio_client::grpc::WorkflowService;
use temporalio_client::tonic::IntoRequest;
use temporalio_client::{Client, NamespacedClient};
use temporalio_common::protos::temporal::api::enums::v1::TaskQueueType;
use temporalio_common::protos::temporal::api::taskqueue::v1::TaskQueue;
use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeTaskQueueRequest;

/// Which workers poll plugin `name`'s queue beside `home_queue` (seen in the last minute),
/// comma-separated: what a batch's failure names when this worker lacks the plugin.
pub async fn holders_of(client: &Client, home_queue: &str, name: &str) -> Option<String> {
    let queue = plugin_task_queue(home_queue, name);
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
