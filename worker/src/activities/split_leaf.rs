//! A data batch's leaf (`process_split`): read one split of the source with ranged reads,
//! or a compressed source's stream decompressed ([`read`]), run its records through the plugin with the leaf engine ([`run`]), count the
//! outputs and write them, in source order, to the split's part ([`output`]).
//!
//! A retried attempt starts the split again from its first byte and rewrites the whole part
//! (the same bytes: the source is pinned to its version, the plugin to its digest), so a crash
//! at any point neither loses nor doubles an item or a line of output. A split is at most the
//! batch's split size (64 MiB by default), so a retry redoes about a second of work.

use std::sync::Arc;

use batch_core::DataSource;
use batch_core::FailureKind;
use batch_core::objects::Listing;
use batch_core::output_format::SCHEMA_SAMPLE_RECORDS;
use batch_core::record_items::RecordItems;
use batch_core::source::part_name;
use batch_core::split::RecordTooLong;
use batch_core::tasks::{SplitOutcome, SplitTask};
use data_io::{Access, Authority, DataError, Location};
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use super::PluginActivities;
use crate::plugins::http::LeafHttp;
use crate::plugins::{LoadedPlugin, PluginError};

mod listing;
mod output;
mod parquet;
mod pending;
mod read;
mod run;

pub(crate) use listing::ListingCache;

/// Why a split stopped.
pub(super) enum SplitError {
    Plugin(PluginError),
    Data(DataError),
    /// A record the host cannot turn into an item (a CSV row that does not fit the header, a
    /// line over [`batch_core::split::MAX_RECORD_BYTES`]).
    BadRecord {
        index: u64,
        reason: String,
    },
    /// A source the batch cannot process at all (a CSV row with a line break in a quoted
    /// field), whatever its tolerance.
    BadSource {
        index: u64,
        reason: String,
    },
    Activity(ActivityError),
}

impl From<RecordTooLong> for SplitError {
    fn from(e: RecordTooLong) -> Self {
        let reason = RecordTooLong { start: None, ..e }.to_string();
        SplitError::BadRecord {
            index: e.start.unwrap_or_default(),
            reason,
        }
    }
}

impl From<PluginError> for SplitError {
    fn from(e: PluginError) -> Self {
        SplitError::Plugin(e)
    }
}

impl From<DataError> for SplitError {
    fn from(e: DataError) -> Self {
        SplitError::Data(e)
    }
}

impl SplitError {
    /// The activity's failure; items named as `source` names them.
    pub(super) fn into_activity_error(
        self,
        activities: &PluginActivities,
        ctx: &ActivityContext,
        source: &DataSource,
    ) -> ActivityError {
        match self {
            SplitError::Plugin(e) => activities.failure(ctx, e),
            SplitError::Data(e) if e.is_bad_source() => {
                crate::routing::failure(FailureKind::BadSource, e.message(), false)
            }
            SplitError::Data(e) => crate::routing::data_failure(&e),
            SplitError::BadRecord { index, reason } => crate::routing::failure(
                FailureKind::BadRecord,
                format!("item {}: {reason}", source.item_name(index)),
                false,
            ),
            SplitError::BadSource { index, reason } => crate::routing::failure(
                FailureKind::BadSource,
                format!("item {}: {reason}", source.item_name(index)),
                false,
            ),
            SplitError::Activity(e) => e,
        }
    }
}

/// One split being run: what its parts share.
struct SplitRun<'a> {
    activities: &'a PluginActivities,
    ctx: &'a ActivityContext,
    task: &'a SplitTask,
    plugin: Arc<LoadedPlugin>,
    /// The source's object, or a many-object source's base.
    source: Location,
    /// A many-object source's listing.
    listing: Option<Arc<Listing>>,
    /// How the source's records become items for this plugin.
    items: RecordItems,
    /// Only the first outputs are wanted ([`PluginActivities::sample_split`]): reading stops
    /// at [`SCHEMA_SAMPLE_RECORDS`].
    sample: bool,
    /// The leaf's HTTP, in a batch that calls services.
    http: Option<Arc<LeafHttp>>,
}

impl SplitRun<'_> {
    /// A sample has read enough records.
    fn sampled(&self, pending: &pending::Pending) -> bool {
        self.sample && pending.records.len() >= SCHEMA_SAMPLE_RECORDS
    }
}

impl PluginActivities {
    /// The split `task` ready to be read: the source opened under the grants (a
    /// many-object source's objects are each checked as they are opened, under its base), its
    /// listing, the plugin, checked against the source's records.
    async fn open_split<'a>(
        &'a self,
        ctx: &'a ActivityContext,
        task: &'a SplitTask,
        sample: bool,
    ) -> Result<SplitRun<'a>, SplitError> {
        let opened = match &task.source.objects {
            None => &task.source.location,
            Some(objects) => &objects.base,
        };
        let source = Location::open(opened, Authority::granted(&self.grants, Access::Read))?;
        let listing = match &task.source.objects {
            None => None,
            Some(objects) => Some(self.listing(ctx, &task.source, objects).await?),
        };
        let plugin = self
            .plugin(ctx, &(), &task.plugin)
            .await
            .inspect_err(|e| self.metrics.failure(&task.plugin.name, e))?;
        plugin.check_input(Some(task.source.format))?;
        let http = self
            .leaf_http(ctx, task.http.as_ref())
            .map_err(SplitError::Activity)?;
        let items = RecordItems::new(&task.source, plugin.input())
            .map_err(|e| DataError::invalid(&task.source.location, e.to_string()))?;
        Ok(SplitRun {
            activities: self,
            ctx,
            task,
            plugin,
            source,
            listing,
            items,
            sample,
            http,
        })
    }

    pub(super) async fn run_split(
        &self,
        ctx: &ActivityContext,
        task: SplitTask,
    ) -> Result<SplitOutcome, SplitError> {
        // The operator's grants first (the source's, then the output's): a place outside
        // them is refused before anything is read or created.
        let split = self.open_split(ctx, &task, false).await?;
        let output = task
            .output
            .as_deref()
            .map(|o| Location::open(o, Authority::granted(&self.grants, Access::Write)))
            .transpose()?;
        let name = part_name(task.first, task.last);
        let listing = split.listing.clone();
        let mut out =
            output::SplitOutput::create(output.as_ref(), &task.output_encoding, name, listing)
                .await?;
        let run = match &task.items {
            Some(list) => split.read_listed(list, &mut out).await,
            None => split.read_split(&mut out).await,
        };
        if let Err(e) = run {
            out.abort().await;
            return Err(e);
        }
        let (mut outputs, failures, part, failed_part) = out.finish(task.first, task.last).await?;
        if let Some(http) = &split.http {
            outputs.http.add(&http.take_counts());
        }
        Ok(SplitOutcome {
            outputs,
            part,
            failures,
            failed_part,
        })
    }

    /// The first outputs of the split `task` (at most
    /// [`batch_core::output_format::SCHEMA_SAMPLE_OUTPUTS`], each as the
    /// row a Parquet output would hold), writing nothing.
    pub(super) async fn sample_split(
        &self,
        ctx: &ActivityContext,
        task: &SplitTask,
    ) -> Result<Vec<Vec<u8>>, SplitError> {
        let split = self.open_split(ctx, task, true).await?;
        let mut out = output::SplitOutput::sampling();
        match &task.items {
            Some(list) => split.read_listed(list, &mut out).await?,
            None => split.read_split(&mut out).await?,
        }
        Ok(out.sampled())
    }
}
