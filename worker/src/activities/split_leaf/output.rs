//! What a split has counted and written: its outputs' statistics and failures, its part (one
//! line per output, in source order; skips write nothing) and, from its first failed item on
//! when the batch has an output, its `failed/` part.

use std::io::Write as _;
use std::ops::Range;
use std::sync::Arc;

use batch_core::objects::{ItemId, Listing};
use batch_core::output::{FAILED_DIR, FailedLine, FailedPartInfo, PartInfo};
use batch_core::{FailedItem, FailureKind, Failures, Output, Outputs};
use bytes::Bytes;
use data_io::write::PartWriter;
use data_io::{DataError, Location};

use super::pending::BadRecord;
use crate::plugins::RecordBuffer;

/// What became of one record run by the plugin.
pub(super) enum RecordResult {
    Output(Output),
    /// A tolerated failure: its kind and message.
    Failed(FailureKind, String),
}

/// A split's outputs as they are written.
pub(super) struct SplitOutput {
    pub(super) outputs: Outputs,
    pub(super) failures: Failures,
    part: Option<PartWriter>,
    /// Opened at the split's first failed item, when the batch has an output.
    failed_part: Option<PartWriter>,
    failed_location: Option<Location>,
    /// The part's name (`part-<first>-<last>`).
    name: String,
    /// A many-object source's listing: failed lines name their object.
    listing: Option<Arc<Listing>>,
}

impl SplitOutput {
    /// Starts the split's part under `output`, if the batch has one (removing what earlier
    /// attempts of it staged).
    pub(super) async fn create(
        output: Option<&Location>,
        name: String,
        listing: Option<Arc<Listing>>,
    ) -> Result<Self, DataError> {
        let part = match output {
            Some(o) => Some(PartWriter::create(o.child(&name)).await?),
            None => None,
        };
        Ok(Self {
            outputs: Outputs::default(),
            failures: Failures::default(),
            part,
            failed_part: None,
            failed_location: output.map(|o| o.child(FAILED_DIR).child(&name)),
            name,
            listing,
        })
    }

    /// Adds the `results` of the records `range` of `records` (in order) and the `bad` records
    /// among them, in source order, and writes their lines.
    pub(super) async fn write(
        &mut self,
        records: &RecordBuffer,
        range: Range<usize>,
        results: Vec<RecordResult>,
        bad: Vec<BadRecord>,
    ) -> Result<(), DataError> {
        let mut lines = Vec::new();
        let mut failed_lines = Vec::new();
        let mut bad = bad.into_iter().peekable();
        for (n, result) in range.zip(results) {
            let index = records.index(n);
            while let Some(record) = bad.next_if(|b| b.index < index) {
                self.fail(&mut failed_lines, &record);
            }
            match result {
                RecordResult::Output(output) => {
                    self.outputs.add(&output);
                    match output {
                        Output::Record(bytes) => {
                            lines.extend_from_slice(&bytes);
                            lines.push(b'\n');
                        }
                        Output::Number(n) => {
                            // Into the lines as they are, without a string per number.
                            let _ = writeln!(lines, "{n}");
                        }
                        Output::Skip => {}
                    }
                }
                RecordResult::Failed(kind, reason) => {
                    self.failed(&mut failed_lines, index, kind, &reason, records.data(n));
                }
            }
        }
        for record in bad {
            self.fail(&mut failed_lines, &record);
        }
        if let Some(part) = self.part.as_mut() {
            part.write(Bytes::from(lines)).await?;
        }
        if !failed_lines.is_empty()
            && let Some(location) = &self.failed_location
        {
            if self.failed_part.is_none() {
                self.failed_part = Some(PartWriter::create(location.clone()).await?);
            }
            if let Some(part) = self.failed_part.as_mut() {
                part.write(Bytes::from(failed_lines)).await?;
            }
        }
        Ok(())
    }

    fn fail(&mut self, failed_lines: &mut Vec<u8>, record: &BadRecord) {
        let reason = &record.reason;
        self.failed(
            failed_lines,
            record.index,
            FailureKind::BadRecord,
            reason,
            &record.excerpt,
        );
    }

    /// Counts a failed item, and lines it up for the `failed/` part when there is one.
    fn failed(
        &mut self,
        failed_lines: &mut Vec<u8>,
        index: u64,
        kind: FailureKind,
        reason: &str,
        input: &[u8],
    ) {
        self.failures.push(FailedItem::new(index, kind, reason));
        if self.failed_location.is_some() {
            let mut line = FailedLine::new(index, kind, reason, input);
            if let Some(listing) = &self.listing {
                let id = ItemId::of_index(index);
                if let Some(entry) = listing.entries.get(id.ordinal as usize) {
                    line = line.in_object(&entry.name, id.position);
                }
            }
            // A struct of strings and numbers always encodes.
            if let Ok(json) = serde_json::to_vec(&line) {
                failed_lines.extend_from_slice(&json);
                failed_lines.push(b'\n');
            }
        }
    }

    /// Makes the parts visible, whole; what they hold, for the manifest.
    pub(super) async fn finish(
        self,
        first: u64,
        last: u64,
    ) -> Result<(Outputs, Failures, Option<PartInfo>, Option<FailedPartInfo>), DataError> {
        let Self {
            outputs,
            failures,
            part,
            failed_part,
            name,
            ..
        } = self;
        let failed_part = match failed_part {
            Some(writer) => Some(FailedPartInfo {
                name: format!("{FAILED_DIR}/{name}"),
                first,
                last,
                failed: failures.count,
                bytes: writer.finish().await?,
            }),
            None => None,
        };
        let part = match part {
            Some(writer) => Some(PartInfo {
                name,
                first,
                last,
                items: outputs.count + failures.count,
                records: outputs.records,
                numbers: outputs.numbers(),
                skipped: outputs.skipped,
                failed: failures.count,
                bytes: writer.finish().await?,
            }),
            None => None,
        };
        Ok((outputs, failures, part, failed_part))
    }

    /// Gives up: nothing becomes visible.
    pub(super) async fn abort(self) {
        for part in [self.part, self.failed_part].into_iter().flatten() {
            part.abort().await;
        }
    }
}
