//! Parquet objects: their footer read pinned (bounded), the row groups a split owns (the one
//! holding a row group's first byte), each row group's column chunks fetched whole, then
//! decoded into rows written as JSON objects, one a line, by `arrow-json`, a bounded number of
//! bytes at a time. A row's index is its row number in the object (1-based).

use std::io::Cursor;
use std::sync::Arc;

use arrow_json::writer::{LineDelimited, WriterBuilder};
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};

use crate::{DataError, Location};

/// The longest footer (the file's metadata) read: a real file's is KBs to a few MBs.
pub const MAX_FOOTER_BYTES: u64 = 16 * 1024 * 1024;
/// The most bytes of one row group's column chunks held at once: a row group is fetched
/// whole (its columns compressed), then decoded a batch of rows at a time.
pub const MAX_ROW_GROUP_BYTES: u64 = 512 * 1024 * 1024;
/// Rows decoded at a time.
const BATCH_ROWS: usize = 1024;

/// A Parquet object's metadata, and the columns a batch reads from it.
#[derive(Clone)]
pub struct ParquetFile {
    pub metadata: Arc<ParquetMetaData>,
    /// The root columns read, by index.
    projection: Option<Vec<usize>>,
}

fn bad(location: &Location, reason: impl std::fmt::Display) -> DataError {
    DataError::bad_source(location.text(), format!("{}: {reason}", location.text()))
}

impl ParquetFile {
    /// Reads the footer of the object (`size` bytes, pinned to `version`) and finds the
    /// `columns` (all if `None`) in its schema.
    pub async fn open(
        location: &Location,
        version: Option<&str>,
        size: u64,
        columns: Option<&[String]>,
    ) -> Result<Self, DataError> {
        if size < 12 {
            return Err(bad(location, "not a Parquet file: too short"));
        }
        let tail = crate::read::read_range(location, version, size - 7, size).await?;
        if &tail[4..] != b"PAR1" {
            return Err(bad(
                location,
                "not a Parquet file (it does not end with PAR1; an encrypted footer is not read)",
            ));
        }
        let length = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
        if length > MAX_FOOTER_BYTES || length + 12 > size {
            return Err(bad(
                location,
                format!(
                    "its footer says {length} bytes, over the limit of {MAX_FOOTER_BYTES} or \
                     the file's {size}: not a Parquet file?"
                ),
            ));
        }
        let footer =
            crate::read::read_range(location, version, size - 8 - length + 1, size - 8).await?;
        let metadata = ParquetMetaDataReader::decode_metadata(&footer)
            .map_err(|e| bad(location, format!("its footer cannot be read: {e}")))?;
        let projection = match columns {
            None => None,
            Some(names) => {
                let schema = metadata.file_metadata().schema_descr();
                let fields = schema.root_schema().get_fields();
                let indices = names
                    .iter()
                    .map(|name| {
                        fields.iter().position(|f| f.name() == name).ok_or_else(|| {
                            let known: Vec<&str> = fields.iter().map(|f| f.name()).collect();
                            bad(
                                location,
                                format!(
                                    "it has no column {name:?} (its columns: {})",
                                    batch_core::text::bounded(&known.join(", "), 500)
                                ),
                            )
                        })
                    })
                    .collect::<Result<Vec<usize>, _>>()?;
                Some(indices)
            }
        };
        Ok(Self {
            metadata: Arc::new(metadata),
            projection,
        })
    }

    /// The row groups whose first byte (1-based) is in `first..=last`, each with its first
    /// row's number (1-based), in order.
    pub fn owned(&self, first: u64, last: u64) -> Vec<(usize, u64)> {
        let mut row = 1;
        let mut owned = Vec::new();
        for (index, group) in self.metadata.row_groups().iter().enumerate() {
            let start = group
                .columns()
                .iter()
                .map(|c| c.byte_range().0)
                .min()
                .unwrap_or(0)
                + 1;
            if (first..=last).contains(&start) {
                owned.push((index, row));
            }
            row += group.num_rows().max(0) as u64;
        }
        owned
    }

    /// The byte ranges (0-based, end exclusive) of row group `index`'s column chunks read.
    fn ranges(&self, index: usize) -> Vec<(u64, u64)> {
        let group = self.metadata.row_group(index);
        let schema = self.metadata.file_metadata().schema_descr();
        let mut ranges: Vec<(u64, u64)> = group
            .columns()
            .iter()
            .enumerate()
            .filter(|(leaf, _)| {
                self.projection
                    .as_ref()
                    .is_none_or(|roots| roots.contains(&schema.get_column_root_idx(*leaf)))
            })
            .map(|(_, c)| {
                let (start, len) = c.byte_range();
                (start, start + len)
            })
            .collect();
        ranges.sort_unstable();
        // Adjacent chunks in one read.
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }

    /// Fetches row group `index`'s column chunks (pinned), bounded by
    /// [`MAX_ROW_GROUP_BYTES`], and makes its rows' reader.
    pub async fn row_group(
        &self,
        location: &Location,
        version: Option<&str>,
        size: u64,
        index: usize,
    ) -> Result<Rows, DataError> {
        let ranges = self.ranges(index);
        let total: u64 = ranges.iter().map(|(s, e)| e - s).sum();
        if total > MAX_ROW_GROUP_BYTES {
            return Err(bad(
                location,
                format!(
                    "row group {index} needs {total} bytes in memory, over the limit of \
                     {MAX_ROW_GROUP_BYTES}: read fewer columns (--columns) or write smaller row \
                     groups"
                ),
            ));
        }
        let mut regions = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            if end > size || start >= end {
                return Err(bad(
                    location,
                    format!("row group {index}'s column chunk {start}..{end} is outside the file"),
                ));
            }
            let bytes = crate::read::read_range(location, version, start + 1, end).await?;
            regions.push((start, bytes));
        }
        let file = Regions { size, regions };
        let options = ArrowReaderOptions::new();
        let metadata = ArrowReaderMetadata::try_new(self.metadata.clone(), options)
            .map_err(|e| bad(location, e))?;
        let mask = match &self.projection {
            Some(roots) => {
                ProjectionMask::roots(self.metadata.file_metadata().schema_descr(), roots.clone())
            }
            None => ProjectionMask::all(),
        };
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata)
            .with_row_groups(vec![index])
            .with_projection(mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| bad(location, format!("row group {index}: {e}")))?;
        Ok(Rows {
            reader,
            location: location.text().to_owned(),
            index,
        })
    }
}

/// A row group's rows being decoded.
pub struct Rows {
    reader: ParquetRecordBatchReader,
    location: String,
    index: usize,
}

impl Rows {
    /// The next rows as JSON objects, one a line, until they hold at least `max` bytes or the
    /// row group ends (empty then).
    pub fn next_json(&mut self, max: usize) -> Result<Vec<u8>, DataError> {
        let mut out = Vec::new();
        let failed = |e: &dyn std::fmt::Display| {
            DataError::bad_source(
                &self.location,
                format!("{}: row group {}: {e}", self.location, self.index),
            )
        };
        while out.len() < max {
            let Some(batch) = self.reader.next() else {
                break;
            };
            let batch = batch.map_err(|e| failed(&e))?;
            let mut writer = WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, LineDelimited>(&mut out);
            writer.write(&batch).map_err(|e| failed(&e))?;
            writer.finish().map_err(|e| failed(&e))?;
        }
        Ok(out)
    }
}

/// The parts of a file fetched for one row group (its footer is decoded already).
struct Regions {
    size: u64,
    regions: Vec<(u64, Bytes)>,
}

impl Regions {
    fn region(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.regions
            .iter()
            .find(|(at, bytes)| *at <= start && start + length as u64 <= at + bytes.len() as u64)
            .map(|(at, bytes)| {
                let from = (start - at) as usize;
                bytes.slice(from..from + length)
            })
            .ok_or_else(|| {
                ParquetError::General(format!(
                    "bytes {start}..{} were not fetched (outside the row group's column chunks)",
                    start + length as u64
                ))
            })
    }
}

impl Length for Regions {
    fn len(&self) -> u64 {
        self.size
    }
}

impl ChunkReader for Regions {
    type T = Cursor<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let (at, bytes) = self
            .regions
            .iter()
            .find(|(at, bytes)| *at <= start && start < at + bytes.len() as u64)
            .ok_or_else(|| ParquetError::General(format!("byte {start} was not fetched")))?;
        Ok(Cursor::new(bytes.slice((start - at) as usize..)))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.region(start, length)
    }
}
