//! A Parquet object's part of a split: the row groups whose first byte the split holds, each
//! fetched whole (pinned), its rows decoded as JSON objects on the blocking pool, 4 MiB at a
//! time, while the plugin runs over the rows before; a row's index is its row number.

use data_io::parquet::ParquetFile;

use super::SplitError;
use super::SplitRun;
use super::output::SplitOutput;
use super::pending::Pending;
use super::read::{Object, PENDING_BYTES, Select};
use crate::activities::checkpoint::heartbeating;
use crate::activities::on_blocking_pool;

impl SplitRun<'_> {
    /// The rows of `object`'s row groups that start in `first..=last`, those `select` takes
    /// added to `pending`.
    pub(super) async fn read_parquet(
        &self,
        object: &Object,
        first: u64,
        last: u64,
        mut select: Select<'_>,
        pending: &mut Pending,
        out: &mut SplitOutput,
    ) -> Result<(), SplitError> {
        let version = object.version.as_deref();
        let columns = self.task.source.columns.as_deref();
        let file = heartbeating(
            self.ctx,
            &first,
            ParquetFile::open(&object.location, version, object.size, columns),
        )
        .await?;
        for (group, first_row) in file.owned(first, last) {
            if select.is_done() || self.sampled(pending) {
                break;
            }
            let mut rows = heartbeating(
                self.ctx,
                &first_row,
                file.row_group(&object.location, version, object.size, group),
            )
            .await?;
            let mut row = first_row;
            loop {
                let (back, json) = on_blocking_pool(move || {
                    let json = rows.next_json(PENDING_BYTES);
                    Ok((rows, json))
                })
                .await?;
                rows = back;
                let json = json?;
                if json.is_empty() {
                    break;
                }
                for line in json.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    select.take(self, pending, object, row, line);
                    row += 1;
                }
                if let Some(e) = pending.intolerable(&self.task.tolerance) {
                    return Err(e);
                }
                if let Some(e) = select.error(object, false) {
                    return Err(e);
                }
                if select.is_done() || self.sampled(pending) {
                    break;
                }
                if pending.bytes() >= PENDING_BYTES {
                    self.flush(pending, out).await?;
                }
            }
        }
        match select.error(object, true) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
