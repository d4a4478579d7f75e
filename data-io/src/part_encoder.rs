//! A part's bytes from its outputs, as the batch's output encoding says: JSON Lines (one output a
//! line), gzip- or zstd-compressed as one stream, or Parquet (every output a row of the output's
//! schema; one that does not fit it is refused, with the reason, and becomes a failed item).
//! Synchronous: the worker runs it on its blocking pool, a block of outputs at a time, and
//! writes the bytes each block gives.

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_json::reader::{Decoder, ReaderBuilder};
use arrow_schema::SchemaRef;
use batch_core::output_format::{NUMBER_COLUMN, OutputEncoding, OutputFormat};
use batch_core::source::Compression;
use parquet::arrow::ArrowWriter;
use parquet::basic::{GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::DataError;

/// Rows of a Parquet part's row group, at most.
const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Bytes of a Parquet part's row group, at most: what it holds in memory before writing it.
const ROW_GROUP_BYTES: usize = 64 * 1024 * 1024;
/// zstd's level for outputs: its default, fast and about gzip's ratio on text.
const ZSTD_LEVEL: i32 = 3;

/// One output to encode.
#[derive(Debug, Clone, Copy)]
pub enum Out<'a> {
    /// A record's bytes (a JSON object for a Parquet part).
    Record(&'a [u8]),
    Number(u64),
}

/// What a block of outputs gave.
#[derive(Debug, Default)]
pub struct Encoded {
    /// The part's next bytes.
    pub bytes: Vec<u8>,
    /// The outputs refused (by their place in the block), each with the reason.
    pub refused: Vec<(usize, String)>,
}

/// The row a number output is in a Parquet part: `{"value": n}`.
pub fn number_row(n: u64) -> Vec<u8> {
    format!("{{\"{NUMBER_COLUMN}\": {n}}}").into_bytes()
}

/// A part's encoder.
pub struct PartEncoder {
    location: String,
    kind: Kind,
}

enum Kind {
    Lines(Option<Box<Compressor>>),
    Parquet(Box<ParquetPart>),
}

enum Compressor {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

/// The bytes the Parquet writer has written and the part has not yet taken.
#[derive(Clone, Default)]
struct Written(Arc<Mutex<Vec<u8>>>);

impl Written {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl std::io::Write for Written {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct ParquetPart {
    schema: SchemaRef,
    writer: ArrowWriter<Written>,
    written: Written,
}

impl PartEncoder {
    /// The encoder of the part at `location` (named in errors).
    pub fn new(encoding: &OutputEncoding, location: &str) -> Result<Self, DataError> {
        let failed = |e: &dyn std::fmt::Display| DataError::invalid(location, e.to_string());
        let kind = match encoding.format {
            OutputFormat::Jsonl => Kind::Lines(match encoding.compression {
                None => None,
                Some(Compression::Gzip) => Some(Box::new(Compressor::Gzip(
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default()),
                ))),
                Some(Compression::Zstd) => Some(Box::new(Compressor::Zstd(
                    zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)
                        .map_err(|e| failed(&e))?,
                ))),
            }),
            OutputFormat::Parquet => {
                let text = encoding.schema.as_deref().ok_or_else(|| {
                    DataError::invalid(location, "a Parquet part needs the output's schema")
                })?;
                let schema = Arc::new(crate::schema::parse(text).map_err(|e| failed(&e))?);
                let codec = match encoding.compression {
                    None => parquet::basic::Compression::UNCOMPRESSED,
                    Some(Compression::Gzip) => {
                        parquet::basic::Compression::GZIP(GzipLevel::default())
                    }
                    Some(Compression::Zstd) => {
                        parquet::basic::Compression::ZSTD(ZstdLevel::default())
                    }
                };
                let properties = WriterProperties::builder()
                    .set_compression(codec)
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
                    .build();
                let written = Written::default();
                let writer =
                    ArrowWriter::try_new(written.clone(), schema.clone(), Some(properties))
                        .map_err(|e| failed(&e))?;
                Kind::Parquet(Box::new(ParquetPart {
                    schema,
                    writer,
                    written,
                }))
            }
        };
        Ok(Self {
            location: location.to_owned(),
            kind,
        })
    }

    /// Plain lines: encoding is copying, cheap enough to do anywhere.
    pub fn is_light(&self) -> bool {
        matches!(self.kind, Kind::Lines(None))
    }

    /// Encodes a block of outputs, in order.
    pub fn encode(&mut self, outputs: &[Out<'_>]) -> Result<Encoded, DataError> {
        let location = &self.location;
        match &mut self.kind {
            Kind::Lines(compressor) => {
                let mut lines = Vec::new();
                for output in outputs {
                    match output {
                        Out::Record(bytes) => lines.extend_from_slice(bytes),
                        Out::Number(n) => {
                            let _ = write!(lines, "{n}");
                        }
                    }
                    lines.push(b'\n');
                }
                let bytes = match compressor {
                    None => lines,
                    Some(c) => c.compress(&lines).map_err(|e| io(location, e))?,
                };
                Ok(Encoded {
                    bytes,
                    refused: Vec::new(),
                })
            }
            Kind::Parquet(part) => part.encode(location, outputs),
        }
    }

    /// The part's last bytes (a compressed stream's end, a Parquet file's last row group and
    /// footer).
    pub fn finish(self) -> Result<Vec<u8>, DataError> {
        let location = &self.location;
        match self.kind {
            Kind::Lines(None) => Ok(Vec::new()),
            Kind::Lines(Some(compressor)) => match *compressor {
                Compressor::Gzip(c) => c.finish().map_err(|e| io(location, e)),
                Compressor::Zstd(c) => c.finish().map_err(|e| io(location, e)),
            },
            Kind::Parquet(part) => {
                let ParquetPart {
                    writer, written, ..
                } = *part;
                writer
                    .close()
                    .map_err(|e| DataError::invalid(location, format!("cannot write: {e}")))?;
                Ok(written.take())
            }
        }
    }
}

fn io(location: &str, e: std::io::Error) -> DataError {
    DataError::invalid(location, format!("cannot compress: {e}"))
}

impl Compressor {
    /// Compresses `lines`, giving the bytes of the stream that are ready.
    fn compress(&mut self, lines: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Compressor::Gzip(c) => {
                c.write_all(lines)?;
                Ok(std::mem::take(c.get_mut()))
            }
            Compressor::Zstd(c) => {
                c.write_all(lines)?;
                Ok(std::mem::take(c.get_mut()))
            }
        }
    }
}

impl ParquetPart {
    fn decoder(&self, rows: usize) -> Result<Decoder, String> {
        ReaderBuilder::new(self.schema.clone())
            .with_strict_mode(true)
            .with_batch_size(rows.max(1))
            .build_decoder()
            .map_err(|e| e.to_string())
    }

    /// The rows of `outputs` in one batch; an error if any does not fit.
    fn batch(&self, rows: &[Vec<u8>]) -> Result<RecordBatch, String> {
        let mut decoder = self.decoder(rows.len())?;
        for row in rows {
            let used = decoder.decode(row).map_err(|e| e.to_string())?;
            if used != row.len() {
                return Err("not one JSON value".into());
            }
            // Apart, so that two outputs never read as one value (`1` then `2`).
            decoder.decode(b"\n").map_err(|e| e.to_string())?;
        }
        let batch = decoder
            .flush()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no row".to_owned())?;
        if batch.num_rows() != rows.len() {
            return Err(format!(
                "{} rows from {} outputs: an output is one JSON object",
                batch.num_rows(),
                rows.len()
            ));
        }
        Ok(batch)
    }

    fn encode(&mut self, location: &str, outputs: &[Out<'_>]) -> Result<Encoded, DataError> {
        let rows: Vec<Vec<u8>> = outputs
            .iter()
            .map(|output| match output {
                Out::Record(bytes) => bytes.to_vec(),
                Out::Number(n) => number_row(*n),
            })
            .collect();
        let mut refused = Vec::new();
        if !rows.is_empty() {
            match self.batch(&rows) {
                Ok(batch) => self.write(location, &batch)?,
                // Which ones do not fit: each on its own.
                Err(_) => {
                    for (n, row) in rows.iter().enumerate() {
                        match self.batch(std::slice::from_ref(row)) {
                            Ok(batch) => self.write(location, &batch)?,
                            Err(reason) => refused.push((
                                n,
                                format!("the output does not fit the output's schema: {reason}"),
                            )),
                        }
                    }
                }
            }
        }
        Ok(Encoded {
            bytes: self.written.take(),
            refused,
        })
    }

    fn write(&mut self, location: &str, batch: &RecordBatch) -> Result<(), DataError> {
        self.writer
            .write(batch)
            .map_err(|e| DataError::invalid(location, format!("cannot write: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn encoding(
        format: OutputFormat,
        compression: Option<Compression>,
        schema: Option<&str>,
    ) -> OutputEncoding {
        OutputEncoding {
            format,
            compression,
            schema: schema.map(str::to_owned),
        }
    }

    fn run(
        encoding: &OutputEncoding,
        blocks: &[&[Out<'_>]],
    ) -> (Vec<u8>, Vec<Vec<(usize, String)>>) {
        let mut encoder = PartEncoder::new(encoding, "out/part").expect("an encoder");
        let mut bytes = Vec::new();
        let mut refused = Vec::new();
        for block in blocks {
            let encoded = encoder.encode(block).expect("encodes");
            bytes.extend(encoded.bytes);
            refused.push(encoded.refused);
        }
        bytes.extend(encoder.finish().expect("finishes"));
        (bytes, refused)
    }

    #[test]
    fn lines_are_plain_or_one_compressed_stream() {
        let blocks: [&[Out<'_>]; 2] = [
            &[Out::Record(b"{\"a\":1}"), Out::Number(7)],
            &[Out::Number(u64::MAX)],
        ];
        let plain = format!("{{\"a\":1}}\n7\n{}\n", u64::MAX);
        let (bytes, _) = run(&encoding(OutputFormat::Jsonl, None, None), &blocks);
        assert_eq!(String::from_utf8(bytes).expect("text"), plain);
        let (gz, _) = run(
            &encoding(OutputFormat::Jsonl, Some(Compression::Gzip), None),
            &blocks,
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .expect("gzip");
        assert_eq!(text, plain);
        let (zst, _) = run(
            &encoding(OutputFormat::Jsonl, Some(Compression::Zstd), None),
            &blocks,
        );
        assert_eq!(zstd::decode_all(&zst[..]).expect("zstd"), plain.as_bytes());
    }

    #[test]
    fn parquet_rows_fit_the_schema_or_are_refused_each_with_its_reason() {
        let schema = r#"{"id": "int64", "tags": ["string"], "geo": {"lat": "float64"}}"#;
        for compression in [None, Some(Compression::Gzip), Some(Compression::Zstd)] {
            let good: [&[u8]; 2] = [
                br#"{"id": 1, "tags": ["a", "b"], "geo": {"lat": 1.5}}"#,
                br#"{"id": 2}"#,
            ];
            let bad: [&[u8]; 6] = [
                br#"{"id": "x"}"#,
                br#"{"id": 3, "other": 1}"#,
                b"not json",
                br#"{"id": 4}{"id": 5}"#,
                b"",
                b"[1]",
            ];
            let mixed: Vec<Out<'_>> = [
                good[0], bad[0], bad[1], good[1], bad[2], bad[3], bad[4], bad[5],
            ]
            .into_iter()
            .map(Out::Record)
            .collect();
            let (bytes, refused) = run(
                &encoding(OutputFormat::Parquet, compression, Some(schema)),
                &[&mixed, &good.map(Out::Record)],
            );
            let places: Vec<usize> = refused[0].iter().map(|(n, _)| *n).collect();
            assert_eq!(places, [1, 2, 4, 5, 6, 7], "{refused:?}");
            assert!(
                refused[0].iter().all(|(_, r)| r.contains("does not fit")),
                "{refused:?}"
            );
            assert!(refused[1].is_empty());
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                bytes::Bytes::from(bytes),
            )
            .expect("a Parquet file")
            .build()
            .expect("a reader");
            let rows: usize = reader.map(|b| b.expect("a batch").num_rows()).sum();
            assert_eq!(rows, 4);
        }
    }

    #[test]
    fn numbers_are_rows_of_one_value() {
        let (bytes, refused) = run(
            &encoding(OutputFormat::Parquet, None, Some(r#"{"value": "uint64"}"#)),
            &[&[Out::Number(1), Out::Number(u64::MAX)]],
        );
        assert!(refused[0].is_empty(), "{refused:?}");
        let mut reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(bytes),
        )
        .expect("a Parquet file")
        .build()
        .expect("a reader");
        let batch = reader.next().expect("a batch").expect("no error");
        let values = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::UInt64Array>()
            .expect("uint64");
        assert_eq!(values.values().to_vec(), [1, u64::MAX]);
    }
}
