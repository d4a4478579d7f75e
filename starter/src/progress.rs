//! A progress bar for a running batch, driven by the server's state: how many of the tree's
//! workflows have completed (the visibility API), against the tree's size from the planner.
//! Shown only when stderr is a terminal; it clears itself when the batch ends.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressFinish, ProgressState, ProgressStyle};
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
    // Items per workflow, to turn the workflow rate into an item rate.
    let items_per_workflow = total_workflows
        .filter(|t| *t > 0)
        .map(|t| items as f64 / t as f64);
    let rates = move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = w.write_str(&rate_text(state.per_sec(), items_per_workflow));
    };
    let bar = match total_workflows {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} workflows done, ~{msg} items, {rates}, ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("rates", rates),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {pos} workflows done, {rates}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner())
                .with_key("rates", rates),
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

/// The bar's rates with their units and one decimal: `12.5 workflows/s, 38.1 items/s` (the
/// item rate only when the tree's size is known).
fn rate_text(workflows_per_sec: f64, items_per_workflow: Option<f64>) -> String {
    let workflows = if workflows_per_sec.is_finite() {
        workflows_per_sec
    } else {
        0.0
    };
    match items_per_workflow {
        Some(per) => format!("{workflows:.1} workflows/s, {:.1} items/s", workflows * per),
        None => format!("{workflows:.1} workflows/s"),
    }
}

#[cfg(test)]
mod tests {
    use super::rate_text;

    #[test]
    fn rates_have_units_and_one_decimal() {
        assert_eq!(
            rate_text(1.951, Some(2000.0 / 656.0)),
            "2.0 workflows/s, 5.9 items/s"
        );
        assert_eq!(rate_text(4.7561, None), "4.8 workflows/s");
        assert_eq!(rate_text(f64::INFINITY, None), "0.0 workflows/s");
        assert_eq!(rate_text(0.0, Some(3.0)), "0.0 workflows/s, 0.0 items/s");
    }
}
