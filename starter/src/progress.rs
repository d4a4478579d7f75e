//! A progress bar for a running batch, driven by the server's state: how many of the tree's
//! workflows have completed (the visibility API), against the tree's size from the planner.
//! Shown only when stderr is a terminal; it clears itself when the batch ends.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressFinish, ProgressStyle};
use temporalio_client::{Client, WorkflowCountOptions};

/// How often the server is asked.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Updates the bar until dropped (the caller races it against the batch's result).
/// `total_workflows` is the tree's size when known (not when attaching by id).
pub(crate) async fn follow(
    client: Client,
    workflow_id: String,
    total_workflows: Option<u64>,
    items: u64,
) {
    let bar = match total_workflows {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} workflows done, ~{msg} items, {per_sec}, ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {pos} workflows done, {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    }
    .with_finish(ProgressFinish::AndClear);
    bar.set_message("0");
    let query = format!(
        "(WorkflowId = '{workflow_id}' OR WorkflowId STARTS_WITH '{workflow_id}-') \
         AND ExecutionStatus = 'Completed'"
    );
    loop {
        if let Ok(count) = client
            .count_workflows(query.clone(), WorkflowCountOptions::default())
            .await
        {
            let done = count.count() as u64;
            bar.set_position(done);
            if let Some(total) = total_workflows.filter(|t| *t > 0) {
                let estimate = u128::from(items) * u128::from(done.min(total)) / u128::from(total);
                bar.set_message(estimate.to_string());
            }
        }
        bar.tick();
        tokio::time::sleep(POLL_EVERY).await;
    }
}
