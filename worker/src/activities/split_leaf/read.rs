//! Reading a split: its byte range with ranged reads (pinned to the source's version), records
//! found by Hadoop's rule ([`SplitRecords`]), made items by the source's format; or, for a
//! retry batch's leaf, each listed record read where it starts. The records go to the plugin
//! ([`super::run`]) 4 MiB at a time, and the leaf checkpoints between; the split's next read
//! runs while the plugin runs, so that reading and computing overlap.

use batch_core::split::SplitRecords;
use temporalio_sdk::activities::ActivityError;

use super::output::SplitOutput;
use super::pending::Pending;
use super::{SplitError, SplitRun};
use crate::activities::checkpoint::{self, heartbeating};

/// Bytes read per ranged read.
const READ_BYTES: u64 = 4 * 1024 * 1024;
/// Bytes of a ranged read for one listed record (a retry batch's leaf), more if it is longer.
const RECORD_READ_BYTES: u64 = 64 * 1024;
/// Bytes of records read before they go to the plugin (one call slot, one heartbeat).
const PENDING_BYTES: usize = 4 * 1024 * 1024;

impl SplitRun<'_> {
    /// Reads the split and runs the plugin over its records, writing the outputs.
    pub(super) async fn read_split(&self, out: &mut SplitOutput) -> Result<(), SplitError> {
        let task = self.task;
        let mut split = SplitRecords::new(task.first, task.last);
        let mut pending = Pending::default();
        let size = task.source.size;
        let version = task.source.version.as_deref();
        let mut next = split.read_from();
        let collect = |pending: &mut Pending, index: u64, record: &[u8]| {
            pending.add(&self.items, index, record);
        };
        loop {
            if next > size {
                split.finish(&mut |index, record| collect(&mut pending, index, record))?;
            }
            if let Some(e) = pending.intolerable(&task.tolerance) {
                return Err(e);
            }
            if split.is_done() {
                return self.flush(&mut pending, out).await;
            }
            let last = (next + READ_BYTES - 1).min(size);
            // A slow store must not look like a lost worker: heartbeat while the read waits.
            let read = heartbeating(
                self.ctx,
                &next,
                data_io::read::read_range(&self.source, version, next, last),
            );
            let bytes = if pending.bytes() >= PENDING_BYTES {
                // The next read while the plugin runs over what was read so far.
                let (flushed, bytes) = tokio::join!(self.flush(&mut pending, out), read);
                flushed?;
                let leaf = format!("split {}..={}, next {next}", task.first, task.last);
                checkpoint::pass(self.ctx, next, &leaf)
                    .await
                    .map_err(SplitError::Activity)?;
                bytes?
            } else {
                read.await?
            };
            let pushed = split.push(&bytes, &mut |index, record| {
                collect(&mut pending, index, record)
            });
            // A record that fails the batch comes first, even before a longer one after it.
            if let Some(e) = pending.intolerable(&task.tolerance) {
                return Err(e);
            }
            pushed?;
            next = last + 1;
        }
    }

    /// A retry batch's leaf: reads each listed record where it starts, and runs the plugin
    /// over them as [`Self::read_split`] does over a split's.
    pub(super) async fn read_listed(
        &self,
        list: &[u64],
        out: &mut SplitOutput,
    ) -> Result<(), SplitError> {
        let mut pending = Pending::default();
        for (n, &index) in list.iter().enumerate() {
            let record = heartbeating(self.ctx, &index, self.read_record_at(index)).await?;
            // An earlier batch never reported a line that is not an item.
            if !pending.add(&self.items, index, &record) {
                return Err(SplitError::BadRecord {
                    index,
                    reason: "this line is not an item (blank)".into(),
                });
            }
            if let Some(e) = pending.intolerable(&self.task.tolerance) {
                return Err(e);
            }
            let last = n + 1 == list.len();
            if last || pending.bytes() >= PENDING_BYTES {
                self.flush(&mut pending, out).await?;
                if self.ctx.is_cancelled() {
                    return Err(SplitError::Activity(ActivityError::cancelled()));
                }
            }
        }
        Ok(())
    }

    /// The record that starts at byte `index` (without its line end): the split `index..=index`
    /// owns exactly that record, so [`SplitRecords`] finds its end, whatever its length.
    async fn read_record_at(&self, index: u64) -> Result<Vec<u8>, SplitError> {
        let size = self.task.source.size;
        let version = self.task.source.version.as_deref();
        let mut split = SplitRecords::new(index, index);
        let mut next = split.read_from();
        let mut found = None;
        while found.is_none() && !split.is_done() {
            if next > size {
                split.finish(&mut |_, record| found = Some(record.to_vec()))?;
                break;
            }
            let last = (next + RECORD_READ_BYTES - 1).min(size);
            let bytes = data_io::read::read_range(&self.source, version, next, last).await?;
            split.push(&bytes, &mut |_, record| found = Some(record.to_vec()))?;
            next = last + 1;
        }
        found.ok_or_else(|| SplitError::BadRecord {
            index,
            reason: "no record starts at this byte".into(),
        })
    }
}
