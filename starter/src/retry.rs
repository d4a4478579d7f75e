//! `--retry-failed BATCH`: a new batch over exactly the failed items of an earlier, completed
//! batch (see [`batch_core::retry`]). The earlier batch's result says what it ran and how many
//! items failed; its `failed/` parts (with an output) or its result (without one) say which.

use batch_core::failures::KEPT_INDEXES;
use batch_core::output::failed_indexes;
use batch_core::retry::{DATA_RETRY_LEAF, MAX_RETRY_ITEMS, RetryError, RetryOf, retry_workflow_id};
use batch_core::workflow_ref::BatchWorkflowRef;
use batch_core::{NodeInput, NodeResult};
use temporalio_client::WorkflowGetResultOptions;

use crate::{Args, Batch, Given, connect_from, describe_failure};

/// The retry batch of `earlier`'s failed items, or `None` when none failed.
pub(crate) async fn retry_batch(
    args: &Args,
    given: &Given,
    earlier: &str,
) -> anyhow::Result<Option<Batch>> {
    if given.n || given.batch_size {
        anyhow::bail!(
            "N and BATCH_SIZE do not apply to --retry-failed: the batch's items are the failed \
             items of {earlier}, in its leaf size"
        );
    }
    let client = connect_from(args).await?.client;
    let handle = client.get_workflow_handle::<BatchWorkflowRef>(earlier.to_owned());
    let result: NodeResult = handle
        .get_result(WorkflowGetResultOptions::default())
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "--retry-failed needs a completed batch's report, and batch {earlier} did not \
                 complete: {}",
                describe_failure(&e)
            )
        })?;
    let count = result.failures.count;
    if count == 0 {
        return Ok(None);
    }
    if count > MAX_RETRY_ITEMS as u64 {
        return Err(RetryError::TooMany {
            batch: earlier.to_owned(),
            count,
        }
        .into());
    }
    let earlier_config = &result.config;
    let items = match &earlier_config.output {
        Some(output) => read_failed_parts(output, &result).await?,
        None if result.failures.indexes_complete() => result.failures.indexes.clone(),
        None => {
            return Err(RetryError::Incomplete {
                batch: earlier.to_owned(),
                count,
                kept: KEPT_INDEXES,
            }
            .into());
        }
    };
    anyhow::ensure!(
        items.len() as u64 == count,
        "batch {earlier} reports {count} failed items, but its report lists {}",
        items.len()
    );

    let mut config = earlier_config.clone();
    config.retry_of = Some(RetryOf {
        batch: earlier.to_owned(),
        plugin: earlier_config.plugin.clone(),
        failed: count,
    });
    // The plugin's current version (or another plugin, or the version given) runs them: the
    // root pins it again.
    config.plugin = if given.plugin {
        args.plugin.clone()
    } else {
        batch_core::PluginRef::named(&earlier_config.plugin.name)
    };
    if args.plugin_config.is_some() {
        config.plugin_config = args.plugin_config.clone();
    }
    if given.mode {
        config.mode = args.mode;
    }
    config.tolerance = args.tolerance();
    // A data batch's leaf size was bytes of a split; a retry's leaf is records read one by one.
    config.batch_size = match &config.source {
        // A compressed stream is read from its start: one leaf reads it once for them all
        // (and a many-object source's records, object by object, in order).
        Some(source) if source.compression.is_some() || source.objects.is_some() => {
            MAX_RETRY_ITEMS as u64
        }
        Some(_) => DATA_RETRY_LEAF,
        None => config.batch_size.min(config.mode.max_batch_size()),
    };
    config.max_children = args.max_children;
    config.max_in_flight = args.max_in_flight;
    config.max_leaves_in_flight = args
        .max_leaves_in_flight
        .unwrap_or_else(|| batch_core::config::default_leaf_budget(config.mode, config.batch_size));
    args.apply_http(&mut config);
    config.output = match (&earlier_config.output, &args.output) {
        (Some(earlier_output), Some(output)) => {
            let output = data_io::location::absolute(output)?;
            anyhow::ensure!(
                &output != earlier_output,
                "the retry's --output must differ from batch {earlier}'s ({earlier_output}): \
                 the two outputs together hold every item once"
            );
            data_io::Location::open(&output, data_io::Authority::User)?;
            Some(output)
        }
        (Some(earlier_output), None) => anyhow::bail!(
            "batch {earlier} wrote its outputs to {earlier_output}: give the retry's own \
             --output (another directory or prefix)"
        ),
        (None, Some(_)) => anyhow::bail!(
            "batch {earlier} had no output, so its retry has none either: --output needs a \
             data source"
        ),
        (None, None) => None,
    };
    // The earlier batch's encoding (a Parquet output's schema too), unless given anew.
    if args.output_encoding_given() {
        config.output_encoding = args.output_encoding()?;
    }
    let k = items.len() as u64;
    let input = NodeInput {
        first: 1,
        last: k,
        depth: 0,
        config,
        leaf_budget: None,
        items: Some(items),
    };
    input.validate()?;
    let c = &input.config;
    let workflow_id = args.workflow_id.clone().unwrap_or_else(|| {
        let tolerance = serde_json::to_string(&c.tolerance).unwrap_or_default();
        retry_workflow_id(
            earlier,
            &[
                &c.plugin.id_part(),
                c.plugin_config.as_ref().map_or("", |p| p.digest.as_str()),
                &tolerance,
                c.output.as_deref().unwrap_or(""),
                c.mode.as_str(),
            ],
            &batch_core::ids::tree_shape(k, c.mode, c.batch_size, c.max_children),
        )
    });
    Ok(Some(Batch { input, workflow_id }))
}

/// Every failed item's index, from the earlier batch's `failed/` parts, in source order.
async fn read_failed_parts(output: &str, result: &NodeResult) -> anyhow::Result<Vec<u64>> {
    let location = data_io::Location::open(output, data_io::Authority::User)?;
    let mut items = Vec::new();
    for part in &result.failed_parts {
        let mut target = location.clone();
        for segment in part.name.split('/') {
            target = target.child(segment);
        }
        let bytes = data_io::write::get(&target).await?;
        let text = String::from_utf8_lossy(&bytes);
        items.extend(failed_indexes(&part.name, &text)?);
    }
    Ok(items)
}
