//! Reading a split: its bytes, from a [`Feed`] (ranged reads pinned to the source's version,
//! or a compressed object's decompressed stream), records found by Hadoop's rule
//! ([`SplitRecords`]), made items by the source's format; or, for a retry batch's leaf, each
//! listed record. The records go to the plugin ([`super::run`]) 4 MiB at a time, and the leaf
//! checkpoints between; the split's next read runs while the plugin runs, so that reading (and
//! decompressing) and computing overlap.

use batch_core::record_items::RecordItems;
use batch_core::source::Compression;
use batch_core::split::SplitRecords;
use bytes::{Buf as _, Bytes};
use data_io::decode::Decoder;
use data_io::{DataError, Location};
use temporalio_sdk::activities::ActivityError;

use super::output::SplitOutput;
use super::pending::Pending;
use super::{SplitError, SplitRun};
use crate::activities::checkpoint::{self, heartbeating};
use crate::activities::on_blocking_pool;

/// Bytes read per ranged read.
const READ_BYTES: u64 = 4 * 1024 * 1024;
/// Decompressed bytes handed out at a time.
const DECODED_BYTES: usize = 4 * 1024 * 1024;
/// Bytes of a ranged read for one listed record (a retry batch's leaf), more if it is longer.
const RECORD_READ_BYTES: u64 = 64 * 1024;
/// Bytes of records read before they go to the plugin (one call slot, one heartbeat).
const PENDING_BYTES: usize = 4 * 1024 * 1024;

/// Where a split's bytes come from, in order.
trait Feed {
    /// The next bytes, or `None` at the object's end.
    async fn next(&mut self) -> Result<Option<Bytes>, SplitError>;
    /// The 1-based position of the next bytes (in the decompressed stream, if compressed): a
    /// checkpoint's progress.
    fn position(&self) -> u64;
}

/// The stored object's bytes from `next` to its end, by ranged reads pinned to its version.
struct Ranges<'a> {
    source: &'a Location,
    version: Option<&'a str>,
    next: u64,
    size: u64,
}

impl Feed for Ranges<'_> {
    async fn next(&mut self) -> Result<Option<Bytes>, SplitError> {
        if self.next > self.size {
            return Ok(None);
        }
        let last = (self.next + READ_BYTES - 1).min(self.size);
        let bytes = data_io::read::read_range(self.source, self.version, self.next, last).await?;
        self.next = last + 1;
        Ok(Some(bytes))
    }

    fn position(&self) -> u64 {
        self.next
    }
}

/// A compressed object's decompressed stream: its stored bytes read by [`Ranges`], decoded on
/// the blocking pool, [`DECODED_BYTES`] at a time.
struct Decompressing<'a> {
    stored: Ranges<'a>,
    /// Taken while it decodes on the blocking pool.
    decoder: Option<Decoder>,
    /// Stored bytes read and not yet decoded.
    input: Bytes,
    /// Every stored byte has been read.
    ended: bool,
}

impl Feed for Decompressing<'_> {
    async fn next(&mut self) -> Result<Option<Bytes>, SplitError> {
        loop {
            if self.input.is_empty() && !self.ended {
                match self.stored.next().await? {
                    Some(bytes) => self.input = bytes,
                    None => self.ended = true,
                }
            }
            let mut decoder = self.decoder.take().expect("a decoder between calls");
            let input = self.input.clone();
            let (decoder, decoded) = on_blocking_pool(move || {
                let mut out = Vec::with_capacity(DECODED_BYTES);
                let decoded = decoder
                    .decode_into(&input, &mut out, DECODED_BYTES)
                    .map(|used| (used, out));
                Ok((decoder, decoded))
            })
            .await?;
            let location = self.stored.source.text();
            let bad = |e| DataError::bad_source(location, format!("{location}: {e}"));
            let (used, out) = decoded.map_err(bad)?;
            self.input.advance(used);
            let at_end = self.ended && self.input.is_empty() && out.is_empty();
            if at_end {
                decoder.finish().map_err(bad)?;
            }
            self.decoder = Some(decoder);
            if !out.is_empty() {
                return Ok(Some(out.into()));
            }
            if at_end {
                return Ok(None);
            }
        }
    }

    fn position(&self) -> u64 {
        self.decoder.as_ref().map_or(0, Decoder::produced) + 1
    }
}

/// Which of the records read become items: all of them, or a retry's list.
enum Select<'l> {
    All,
    Listed {
        list: &'l [u64],
        /// The listed items found so far.
        found: usize,
        error: Option<SplitError>,
    },
}

impl Select<'_> {
    fn take(&mut self, pending: &mut Pending, items: &RecordItems, index: u64, record: &[u8]) {
        let Select::Listed { list, found, error } = self else {
            pending.add(items, index, record);
            return;
        };
        let Some(&wanted) = list.get(*found).filter(|_| error.is_none()) else {
            return;
        };
        if index < wanted {
            return;
        }
        if index > wanted {
            *error = Some(not_a_record(wanted));
            return;
        }
        *found += 1;
        // An earlier batch never reported a line that is not an item.
        if !pending.add(items, index, record) {
            *error = Some(blank(index));
        }
    }

    /// Every listed item was found: read no more.
    fn is_done(&self) -> bool {
        matches!(self, Select::Listed { list, found, .. } if *found == list.len())
    }

    /// A listed item that is not a record, once the split has been read to its end.
    fn error(&mut self, ended: bool) -> Option<SplitError> {
        let Select::Listed { list, found, error } = self else {
            return None;
        };
        error.take().or_else(|| {
            list.get(*found)
                .filter(|_| ended)
                .map(|&index| not_a_record(index))
        })
    }
}

/// Every record of a decompressed stream, to its end: its length is unknown, and a stream
/// longer than its bound stops as a decompression bomb, never by being cut short.
fn whole_stream() -> SplitRecords {
    SplitRecords::new(1, u64::MAX)
}

fn not_a_record(index: u64) -> SplitError {
    SplitError::BadRecord {
        index,
        reason: "no record starts at this byte".into(),
    }
}

fn blank(index: u64) -> SplitError {
    SplitError::BadRecord {
        index,
        reason: "this line is not an item (blank)".into(),
    }
}

impl SplitRun<'_> {
    fn ranges(&self, next: u64) -> Ranges<'_> {
        Ranges {
            source: &self.source,
            version: self.task.source.version.as_deref(),
            next,
            size: self.task.source.size,
        }
    }

    fn decompressing(&self, compression: Compression) -> Result<Decompressing<'_>, SplitError> {
        let location = &self.task.source.location;
        let decoder = Decoder::new(compression, self.task.source.max_ratio())
            .map_err(|e| DataError::bad_source(location, format!("{location}: {e}")))?;
        Ok(Decompressing {
            stored: self.ranges(1),
            decoder: Some(decoder),
            input: Bytes::new(),
            ended: false,
        })
    }

    /// Reads the split and runs the plugin over its records, writing the outputs. A
    /// compressed object is read whole by the split that holds its first byte; the others
    /// own none of it.
    pub(super) async fn read_split(&self, out: &mut SplitOutput) -> Result<(), SplitError> {
        let task = self.task;
        match task.source.compression {
            None => {
                let mut split = SplitRecords::new(task.first, task.last);
                let mut feed = self.ranges(split.read_from());
                self.read_feed(&mut split, &mut feed, Select::All, out)
                    .await
            }
            Some(compression) if task.first == 1 => {
                let mut split = whole_stream();
                let mut feed = self.decompressing(compression)?;
                self.read_feed(&mut split, &mut feed, Select::All, out)
                    .await
            }
            Some(_) => Ok(()),
        }
    }

    /// A retry batch's leaf: runs the listed records as [`Self::read_split`] does a split's.
    /// A stored object's are each read where it starts; a compressed object's stream is read
    /// once, from its start to the last listed record.
    pub(super) async fn read_listed(
        &self,
        list: &[u64],
        out: &mut SplitOutput,
    ) -> Result<(), SplitError> {
        let Some(compression) = self.task.source.compression else {
            return self.read_each(list, out).await;
        };
        let mut split = whole_stream();
        let mut feed = self.decompressing(compression)?;
        let select = Select::Listed {
            list,
            found: 0,
            error: None,
        };
        self.read_feed(&mut split, &mut feed, select, out).await
    }

    /// The records `split` owns from `feed`'s bytes, those `select` takes run through the
    /// plugin.
    async fn read_feed(
        &self,
        split: &mut SplitRecords,
        feed: &mut impl Feed,
        mut select: Select<'_>,
        out: &mut SplitOutput,
    ) -> Result<(), SplitError> {
        let task = self.task;
        let mut pending = Pending::default();
        loop {
            if let Some(e) = pending.intolerable(&task.tolerance) {
                return Err(e);
            }
            if let Some(e) = select.error(split.is_done()) {
                return Err(e);
            }
            if split.is_done() || select.is_done() {
                return self.flush(&mut pending, out).await;
            }
            let position = feed.position();
            // A slow store must not look like a lost worker: heartbeat while the read waits.
            let read = heartbeating(self.ctx, &position, feed.next());
            let bytes = if pending.bytes() >= PENDING_BYTES {
                // The next read while the plugin runs over what was read so far.
                let (flushed, bytes) = tokio::join!(self.flush(&mut pending, out), read);
                flushed?;
                let leaf = format!("split {}..={}, next {position}", task.first, task.last);
                checkpoint::pass(self.ctx, position, &leaf)
                    .await
                    .map_err(SplitError::Activity)?;
                bytes?
            } else {
                read.await?
            };
            let mut collect = |index, record: &[u8]| {
                select.take(&mut pending, &self.items, index, record);
            };
            let pushed = match bytes {
                Some(bytes) => split.push(&bytes, &mut collect),
                None => split.finish(&mut collect),
            };
            // A record that fails the batch comes first, even before a longer one after it.
            if let Some(e) = pending.intolerable(&task.tolerance) {
                return Err(e);
            }
            pushed?;
        }
    }

    /// A stored object's listed records, each read where it starts.
    async fn read_each(&self, list: &[u64], out: &mut SplitOutput) -> Result<(), SplitError> {
        let mut pending = Pending::default();
        for (n, &index) in list.iter().enumerate() {
            let record = heartbeating(self.ctx, &index, self.read_record_at(index)).await?;
            if !pending.add(&self.items, index, &record) {
                return Err(blank(index));
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
        found.ok_or_else(|| not_a_record(index))
    }
}
