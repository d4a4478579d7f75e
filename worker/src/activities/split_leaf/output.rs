//! What a split has counted and written: its outputs' statistics and failures, its part (its
//! outputs in source order, encoded as the batch's output says; skips write nothing) and, from its first failed item on
//! when the batch has an output, its `failed/` part.

use std::ops::Range;
use std::sync::Arc;

use batch_core::objects::{ItemId, Listing};
use batch_core::output::{FAILED_DIR, FailedLine, FailedPartInfo, PartInfo};
use batch_core::output_format::{OutputEncoding, SCHEMA_SAMPLE_OUTPUTS};
use batch_core::{FailedItem, FailureKind, Failures, Output, Outputs};
use bytes::Bytes;
use data_io::part_encoder::{Encoded, Out, PartEncoder, number_row};
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
    part: Option<Part>,
    /// Opened at the split's first failed item, when the batch has an output.
    failed_part: Option<PartWriter>,
    failed_location: Option<Location>,
    /// The split's name (`part-<first>-<last>`): its `failed/` part's.
    name: String,
    /// A many-object source's listing: failed lines name their object.
    listing: Option<Arc<Listing>>,
    /// Sampling the outputs to infer a Parquet output's schema: the first rows.
    sample: Option<Vec<Vec<u8>>>,
}

/// The split's part: its name, its encoder and its writer.
struct Part {
    name: String,
    /// `None` only while it encodes on the blocking pool.
    encoder: Option<PartEncoder>,
    writer: PartWriter,
}

impl SplitOutput {
    /// Starts the split's part under `output`, if the batch has one (removing what earlier
    /// attempts of it staged), encoded as `encoding` says.
    pub(super) async fn create(
        output: Option<&Location>,
        encoding: &OutputEncoding,
        name: String,
        listing: Option<Arc<Listing>>,
    ) -> Result<Self, DataError> {
        let part = match output {
            Some(o) => {
                let part_name = encoding.part_name(&name);
                let location = o.child(&part_name);
                let encoder = PartEncoder::new(encoding, location.text())?;
                Some(Part {
                    name: part_name,
                    encoder: Some(encoder),
                    writer: PartWriter::create(location).await?,
                })
            }
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
            sample: None,
        })
    }

    /// A split run only to see its first outputs (the rows a Parquet output's schema is
    /// inferred from): it writes nothing.
    pub(super) fn sampling() -> Self {
        Self {
            outputs: Outputs::default(),
            failures: Failures::default(),
            part: None,
            failed_part: None,
            failed_location: None,
            name: String::new(),
            listing: None,
            sample: Some(Vec::new()),
        }
    }

    /// The rows sampled ([`Self::sampling`]).
    pub(super) fn sampled(self) -> Vec<Vec<u8>> {
        self.sample.unwrap_or_default()
    }

    /// Adds the `results` of the records `range` of `records` (in order) and the `bad` records
    /// among them, in source order, and writes them. An output the part's encoding refuses
    /// (a row outside a Parquet output's schema) is a failed item.
    pub(super) async fn write(
        &mut self,
        records: &RecordBuffer,
        range: Range<usize>,
        results: Vec<RecordResult>,
        bad: Vec<BadRecord>,
    ) -> Result<(), DataError> {
        let (results, encoded) = self.encode(results).await?;
        let mut refused = encoded.refused.into_iter().peekable();
        let mut failed_lines = Vec::new();
        let mut bad = bad.into_iter().peekable();
        let mut nth_output = 0;
        for (n, result) in range.zip(results) {
            let index = records.index(n);
            while let Some(record) = bad.next_if(|b| b.index < index) {
                self.fail(&mut failed_lines, &record);
            }
            match result {
                RecordResult::Output(output) => {
                    if !matches!(output, Output::Skip) {
                        nth_output += 1;
                    }
                    match refused.next_if(|(at, _)| *at + 1 == nth_output) {
                        Some((_, reason)) => {
                            let kind = FailureKind::OutputOutsideSchema;
                            self.failed(&mut failed_lines, index, kind, &reason, records.data(n));
                        }
                        None => self.outputs.add(&output),
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
            part.writer.write(Bytes::from(encoded.bytes)).await?;
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

    /// The part's bytes for the outputs among `results` (on the blocking pool unless they
    /// are plain lines), and which it refused; while sampling, the rows kept.
    async fn encode(
        &mut self,
        results: Vec<RecordResult>,
    ) -> Result<(Vec<RecordResult>, Encoded), DataError> {
        if let Some(sample) = &mut self.sample {
            for result in &results {
                if sample.len() >= SCHEMA_SAMPLE_OUTPUTS {
                    break;
                }
                match result {
                    RecordResult::Output(Output::Record(bytes)) => sample.push(bytes.clone()),
                    RecordResult::Output(Output::Number(n)) => {
                        sample.push(number_row(*n));
                    }
                    _ => {}
                }
            }
        }
        let Some(part) = self.part.as_mut() else {
            return Ok((results, Encoded::default()));
        };
        if let Some(encoder) = part.encoder.as_mut().filter(|e| e.is_light()) {
            let encoded = encoder.encode(&outs(&results))?;
            return Ok((results, encoded));
        }
        let mut encoder = part
            .encoder
            .take()
            .ok_or_else(|| DataError::invalid(part.writer.location(), "the part failed earlier"))?;
        let location = part.writer.location().to_owned();
        let (encoder, results, encoded) = tokio::task::spawn_blocking(move || {
            let encoded = encoder.encode(&outs(&results));
            (encoder, results, encoded)
        })
        .await
        .map_err(|e| DataError::invalid(&location, format!("encoding stopped: {e}")))?;
        part.encoder = Some(encoder);
        Ok((results, encoded?))
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
            Some(Part {
                name,
                encoder,
                mut writer,
            }) => Some(PartInfo {
                name,
                first,
                last,
                items: outputs.count + failures.count,
                records: outputs.records,
                numbers: outputs.numbers(),
                skipped: outputs.skipped,
                failed: failures.count,
                bytes: {
                    let last = finish_encoder(encoder, writer.location()).await?;
                    writer.write(Bytes::from(last)).await?;
                    writer.finish().await?
                },
            }),
            None => None,
        };
        Ok((outputs, failures, part, failed_part))
    }

    /// Gives up: nothing becomes visible.
    pub(super) async fn abort(self) {
        let part = self.part.map(|p| p.writer);
        for part in [part, self.failed_part].into_iter().flatten() {
            part.abort().await;
        }
    }
}

/// The outputs among `results` that go into a part, in order.
fn outs(results: &[RecordResult]) -> Vec<Out<'_>> {
    results
        .iter()
        .filter_map(|result| match result {
            RecordResult::Output(Output::Record(bytes)) => Some(Out::Record(bytes)),
            RecordResult::Output(Output::Number(n)) => Some(Out::Number(*n)),
            RecordResult::Output(Output::Skip) | RecordResult::Failed(..) => None,
        })
        .collect()
}

/// The part's last bytes (a Parquet footer, a compressed stream's end), on the blocking pool.
async fn finish_encoder(
    encoder: Option<PartEncoder>,
    location: &str,
) -> Result<Vec<u8>, DataError> {
    let encoder = encoder.ok_or_else(|| DataError::invalid(location, "the part failed earlier"))?;
    let location = location.to_owned();
    tokio::task::spawn_blocking(move || encoder.finish())
        .await
        .map_err(|e| DataError::invalid(&location, format!("encoding stopped: {e}")))?
}
