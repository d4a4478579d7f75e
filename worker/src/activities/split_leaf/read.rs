//! Reading a split: the objects it overlaps (one, or the pieces of a many-object source's
//! objects: [`batch_core::objects`]), each object's bytes from a [`Feed`] (ranged reads pinned
//! to its version, or a compressed object's decompressed stream, from its start or from a
//! frame's), records found by Hadoop's rule ([`SplitRecords`]) within the object, made items by
//! the source's format; or, for a retry batch's leaf, each listed record. The records go to the
//! plugin ([`super::run`]) 4 MiB at a time, and the leaf checkpoints between; the split's next
//! read runs while the plugin runs, so that reading (and decompressing) and computing overlap.

use std::sync::Arc;

use batch_core::Format;
use batch_core::frames::{FrameIndex, Sidecar};
use batch_core::objects::{ItemId, Listing};
use batch_core::source::Compression;
use batch_core::split::SplitRecords;
use bytes::{Buf as _, Bytes};
use data_io::decode::Decoder;
use data_io::frames::{Framed, GZI_SUFFIX, read_index};
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
pub(super) const PENDING_BYTES: usize = 4 * 1024 * 1024;

/// Where a split's bytes come from, in order.
trait Feed {
    /// The next bytes, or `None` at the object's end.
    async fn next(&mut self) -> Result<Option<Bytes>, SplitError>;
    /// The 1-based position of the next bytes (in the decompressed stream, if compressed): a
    /// checkpoint's progress.
    fn position(&self) -> u64;
}

/// One object of the source: where it is, what it is, and how its items are numbered.
pub(super) struct Object {
    pub(super) location: Location,
    pub(super) version: Option<String>,
    pub(super) size: u64,
    pub(super) compression: Option<Compression>,
    /// A gzip object's index beside it, as the starter read it.
    pub(super) gzi: Option<Sidecar>,
    /// Its ordinal in a many-object source: its items' indexes pack it ([`ItemId`]).
    pub(super) ordinal: Option<u32>,
}

impl Object {
    /// The index of the item at `position` in this object.
    fn index(&self, position: u64) -> u64 {
        match self.ordinal {
            Some(ordinal) => ItemId { ordinal, position }.index(),
            None => position,
        }
    }

    /// The position in this object of the item `index`.
    fn position(&self, index: u64) -> u64 {
        match self.ordinal {
            Some(_) => ItemId::of_index(index).position,
            None => index,
        }
    }

    fn ranges(&self, next: u64) -> Ranges<'_> {
        Ranges {
            object: self,
            next,
            end: self.size,
            step: READ_BYTES,
        }
    }

    /// The whole decompressed stream.
    fn decompressing(
        &self,
        compression: Compression,
        max_ratio: u32,
    ) -> Result<Decompressing<'_>, SplitError> {
        let decoder = Decoder::new(compression, max_ratio).map_err(|e| self.bad(e))?;
        Ok(Decompressing {
            stored: self.ranges(1),
            decoder: Some(decoder),
            input: Bytes::new(),
            ended: false,
            base: 0,
            skip: 0,
        })
    }

    /// The decompressed stream of a framed object from position `from` (1-based), decoded from
    /// the start of frame `frame` of `index`, to the end of its frames.
    fn decompressing_from(
        &self,
        compression: Compression,
        max_ratio: u32,
        index: Arc<FrameIndex>,
        frame: usize,
        from: u64,
    ) -> Result<Decompressing<'_>, SplitError> {
        let start = index.start(frame);
        let end = index.stored_end();
        let decoder =
            Decoder::framed(compression, max_ratio, index, frame).map_err(|e| self.bad(e))?;
        Ok(Decompressing {
            stored: Ranges {
                end,
                ..self.ranges(start.stored + 1)
            },
            decoder: Some(decoder),
            input: Bytes::new(),
            ended: false,
            base: start.decompressed,
            skip: from - 1 - start.decompressed,
        })
    }

    fn bad(&self, e: impl std::fmt::Display) -> DataError {
        let location = self.location.text();
        DataError::bad_source(location, format!("{location}: {e}"))
    }
}

/// The stored object's bytes from `next` to `end` (its end, or its frames' end), by ranged reads
/// pinned to its version.
struct Ranges<'a> {
    object: &'a Object,
    next: u64,
    end: u64,
    /// Bytes per read.
    step: u64,
}

impl Feed for Ranges<'_> {
    async fn next(&mut self) -> Result<Option<Bytes>, SplitError> {
        let object = self.object;
        if self.next > self.end {
            return Ok(None);
        }
        let last = (self.next + self.step - 1).min(self.end);
        let version = object.version.as_deref();
        let bytes = data_io::read::read_range(&object.location, version, self.next, last).await?;
        self.next = last + 1;
        Ok(Some(bytes))
    }

    fn position(&self) -> u64 {
        self.next
    }
}

/// A compressed object's decompressed stream: its stored bytes read by [`Ranges`], decoded on
/// the blocking pool, [`DECODED_BYTES`] at a time; from its start, or from a frame's.
struct Decompressing<'a> {
    stored: Ranges<'a>,
    /// Taken while it decodes on the blocking pool.
    decoder: Option<Decoder>,
    /// Stored bytes read and not yet decoded.
    input: Bytes,
    /// Every stored byte has been read.
    ended: bool,
    /// The decompressed offset where the decoder started (a frame's start).
    base: u64,
    /// Decompressed bytes still to drop before the first one handed out.
    skip: u64,
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
            let location = self.stored.object.location.text();
            let bad = |e| DataError::bad_source(location, format!("{location}: {e}"));
            let (used, out) = decoded.map_err(bad)?;
            self.input.advance(used);
            let at_end = self.ended && self.input.is_empty() && out.is_empty();
            if at_end {
                decoder.finish().map_err(bad)?;
            }
            self.decoder = Some(decoder);
            let mut out = Bytes::from(out);
            let skipped = out
                .len()
                .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
            out.advance(skipped);
            self.skip -= skipped as u64;
            if !out.is_empty() {
                return Ok(Some(out));
            }
            if at_end {
                return Ok(None);
            }
        }
    }

    fn position(&self) -> u64 {
        self.base + self.decoder.as_ref().map_or(0, Decoder::produced) + 1
    }
}

/// Which of the records read become items: all of them, or a retry's list (of positions in
/// the object).
pub(super) enum Select<'l> {
    All,
    Listed {
        list: &'l [u64],
        /// The listed items found so far.
        found: usize,
        error: Option<SplitError>,
    },
}

impl Select<'_> {
    /// Takes the record at `position` of `object` if it is selected.
    pub(super) fn take(
        &mut self,
        run: &SplitRun<'_>,
        pending: &mut Pending,
        object: &Object,
        position: u64,
        record: &[u8],
    ) {
        let index = object.index(position);
        if let Select::Listed { list, found, error } = self {
            let Some(&wanted) = list.get(*found).filter(|_| error.is_none()) else {
                return;
            };
            if position < wanted {
                return;
            }
            if position > wanted {
                *error = Some(not_a_record(object.index(wanted)));
                return;
            }
            *found += 1;
            // An earlier batch never reported a line that is not an item.
            if !run.add(pending, object, position, record) {
                *error = Some(blank(index));
            }
            return;
        }
        run.add(pending, object, position, record);
    }

    /// Every listed item was found: read no more.
    pub(super) fn is_done(&self) -> bool {
        matches!(self, Select::Listed { list, found, .. } if *found == list.len())
    }

    /// A listed item that is not a record, once the object has been read to its end.
    pub(super) fn error(&mut self, object: &Object, ended: bool) -> Option<SplitError> {
        let Select::Listed { list, found, error } = self else {
            return None;
        };
        error.take().or_else(|| {
            list.get(*found)
                .filter(|_| ended)
                .map(|&position| not_a_record(object.index(position)))
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
    /// Adds a record of `object` to `pending` (see [`Pending::add`]); in a many-object CSV
    /// source, checks each object's header against the batch's.
    fn add(&self, pending: &mut Pending, object: &Object, position: u64, record: &[u8]) -> bool {
        let index = object.index(position);
        let source = &self.task.source;
        if position == 1 && object.ordinal.is_some() && source.format == Format::Csv {
            let header = record.strip_suffix(b"\r").unwrap_or(record);
            if source.header.as_deref().map(str::as_bytes) != Some(header) {
                pending.fatal(
                    index,
                    format!(
                        "{}: its header is not the first object's (CSV objects of one source \
                         share their header)",
                        object.location.text()
                    ),
                );
            }
            return false;
        }
        pending.add(&self.items, position, index, record)
    }

    /// The objects of the split, each with the bytes of it the split holds.
    async fn pieces(&self) -> Result<Vec<(Object, u64, u64)>, SplitError> {
        let task = self.task;
        let Some(listing) = &self.listing else {
            let object = self.single()?;
            return Ok(vec![(object, task.first, task.last)]);
        };
        listing
            .pieces(task.first, task.last)
            .into_iter()
            .map(|piece| {
                Ok((
                    self.object(listing, piece.ordinal)?,
                    piece.first,
                    piece.last,
                ))
            })
            .collect()
    }

    /// A single-object source's object.
    fn single(&self) -> Result<Object, SplitError> {
        let source = &self.task.source;
        Ok(Object {
            location: self.source.clone(),
            version: source.version.clone(),
            size: source.size,
            compression: source.compression,
            gzi: source.gzi.clone(),
            ordinal: None,
        })
    }

    /// Where `object`'s `.gzi` is: beside it, under the grants as any location.
    fn gzi_location(&self, object: &Object) -> Result<Location, DataError> {
        match (&self.listing, object.ordinal) {
            (Some(listing), Some(ordinal)) => {
                let name = &listing.entries[ordinal as usize].name;
                self.source.object(&format!("{name}{GZI_SUFFIX}"))
            }
            _ => self.source.sibling(GZI_SUFFIX),
        }
    }

    /// The object `ordinal` of a many-object source, opened under the grants as any source.
    fn object(&self, listing: &Arc<Listing>, ordinal: u32) -> Result<Object, SplitError> {
        let entry = &listing.entries[ordinal as usize];
        Ok(Object {
            location: self.source.object(&entry.name)?,
            version: entry.version.clone(),
            size: entry.size,
            compression: entry.compression,
            gzi: entry.gzi.clone(),
            ordinal: Some(ordinal),
        })
    }

    /// Checks that an object starts as the batch reads it: a compressed object read as stored
    /// would give compressed bytes as records.
    async fn check(&self, object: &Object) -> Result<(), SplitError> {
        let version = object.version.as_deref();
        data_io::read::check_stored(&object.location, version, object.size, object.compression)
            .await?;
        Ok(())
    }

    /// Reads the split and runs the plugin over its records, writing the outputs. A
    /// compressed object is read whole by the split that holds its first byte, the others
    /// owning none of it, unless it is made of frames ([`batch_core::frames`]).
    pub(super) async fn read_split(&self, out: &mut SplitOutput) -> Result<(), SplitError> {
        let mut pending = Pending::default();
        for (object, first, last) in self.pieces().await? {
            if self.sampled(&pending) {
                break;
            }
            self.check(&object).await?;
            let select = Select::All;
            self.read_object(&object, first, last, select, &mut pending, out)
                .await?;
        }
        self.flush(&mut pending, out).await
    }

    /// The records of `object` whose first byte is in `first..=last`; if it is compressed, the
    /// records of the frames whose first stored byte is, or without frames all of them, read
    /// from its start, if `first` is 1, and none if not.
    async fn read_object(
        &self,
        object: &Object,
        first: u64,
        last: u64,
        select: Select<'_>,
        pending: &mut Pending,
        out: &mut SplitOutput,
    ) -> Result<(), SplitError> {
        if self.task.source.format == Format::Parquet {
            return self
                .read_parquet(object, first, last, select, pending, out)
                .await;
        }
        match object.compression {
            None => {
                let mut split = SplitRecords::new(first, last);
                let mut feed = object.ranges(split.read_from());
                self.read_feed(object, &mut split, &mut feed, select, pending, out)
                    .await
            }
            Some(compression) => {
                let max_ratio = self.task.source.max_ratio();
                // A split holding all of the object reads it whole; splits sharing it read its
                // index, if it has one, to share its frames.
                let index = match first == 1 && last >= object.size {
                    true => None,
                    false => {
                        let framed = Framed {
                            location: &object.location,
                            version: object.version.as_deref(),
                            size: object.size,
                            compression,
                            max_ratio,
                            gzi: object.gzi.as_ref(),
                        };
                        let read = read_index(&framed, || self.gzi_location(object));
                        heartbeating(self.ctx, &first, read).await?
                    }
                };
                let (mut split, mut feed) = match index {
                    None if first == 1 => (
                        whole_stream(),
                        object.decompressing(compression, max_ratio)?,
                    ),
                    None => return Ok(()),
                    Some(index) => {
                        let Some(owned) = index.owned(first, last) else {
                            return Ok(());
                        };
                        let split = SplitRecords::new(owned.first, owned.last);
                        let from = split.read_from();
                        let feed = object.decompressing_from(
                            compression,
                            max_ratio,
                            index,
                            owned.from,
                            from,
                        )?;
                        (split, feed)
                    }
                };
                self.read_feed(object, &mut split, &mut feed, select, pending, out)
                    .await
            }
        }
    }

    /// A retry batch's leaf: runs the listed records as [`Self::read_split`] does a split's,
    /// object by object. A stored object's are each read where it starts; a compressed
    /// object's stream is read once, from its start to the last listed record.
    pub(super) async fn read_listed(
        &self,
        list: &[u64],
        out: &mut SplitOutput,
    ) -> Result<(), SplitError> {
        let mut pending = Pending::default();
        let mut rest = list;
        while let Some(&index) = rest.first() {
            let object = match &self.listing {
                None => self.single()?,
                Some(listing) => {
                    let ordinal = ItemId::of_index(index).ordinal;
                    if ordinal as usize >= listing.entries.len() {
                        return Err(not_a_record(index));
                    }
                    self.object(listing, ordinal)?
                }
            };
            let ordinal = object.ordinal;
            let count = rest
                .iter()
                .take_while(|&&i| ordinal.is_none_or(|o| ItemId::of_index(i).ordinal == o))
                .count();
            let positions: Vec<u64> = rest[..count].iter().map(|&i| object.position(i)).collect();
            rest = &rest[count..];
            self.check(&object).await?;
            match object.compression {
                None => {
                    self.read_each(&object, &positions, &mut pending, out)
                        .await?
                }
                Some(_) => {
                    let select = Select::Listed {
                        list: &positions,
                        found: 0,
                        error: None,
                    };
                    self.read_object(&object, 1, object.size, select, &mut pending, out)
                        .await?;
                }
            }
        }
        self.flush(&mut pending, out).await
    }

    /// The records `split` owns from `feed`'s bytes of `object`, those `select` takes added to
    /// `pending`, which runs through the plugin (while the next bytes are read) each time it
    /// holds [`PENDING_BYTES`].
    async fn read_feed(
        &self,
        object: &Object,
        split: &mut SplitRecords,
        feed: &mut impl Feed,
        mut select: Select<'_>,
        pending: &mut Pending,
        out: &mut SplitOutput,
    ) -> Result<(), SplitError> {
        let task = self.task;
        loop {
            if let Some(e) = pending.intolerable(&task.tolerance) {
                return Err(e);
            }
            if let Some(e) = select.error(object, split.is_done()) {
                return Err(e);
            }
            if split.is_done() || select.is_done() || self.sampled(pending) {
                return Ok(());
            }
            let position = feed.position();
            // A slow store must not look like a lost worker: heartbeat while the read waits.
            let read = heartbeating(self.ctx, &position, feed.next());
            let bytes = if pending.bytes() >= PENDING_BYTES {
                // The next read while the plugin runs over what was read so far.
                let (flushed, bytes) = tokio::join!(self.flush(pending, out), read);
                flushed?;
                let leaf = format!(
                    "split {}..={}, {} at {position}",
                    task.first,
                    task.last,
                    object.location.text()
                );
                checkpoint::pass(self.ctx, position, &leaf)
                    .await
                    .map_err(SplitError::Activity)?;
                bytes?
            } else {
                read.await?
            };
            let mut collect = |position, record: &[u8]| {
                select.take(self, pending, object, position, record);
            };
            let pushed = match bytes {
                Some(bytes) => split.push(&bytes, &mut collect),
                None => split.finish(&mut collect),
            };
            // A record that fails the batch comes first, even before a longer one after it.
            if let Some(e) = pending.intolerable(&task.tolerance) {
                return Err(e);
            }
            pushed.map_err(|e| record_too_long(object, e))?;
        }
    }

    /// A stored object's listed records (positions), each read where it starts.
    async fn read_each(
        &self,
        object: &Object,
        positions: &[u64],
        pending: &mut Pending,
        out: &mut SplitOutput,
    ) -> Result<(), SplitError> {
        for &position in positions {
            let index = object.index(position);
            let record =
                heartbeating(self.ctx, &index, self.read_record_at(object, position)).await?;
            if !self.add(pending, object, position, &record) {
                return Err(blank(index));
            }
            if let Some(e) = pending.intolerable(&self.task.tolerance) {
                return Err(e);
            }
            if pending.bytes() >= PENDING_BYTES {
                self.flush(pending, out).await?;
                if self.ctx.is_cancelled() {
                    return Err(SplitError::Activity(ActivityError::cancelled()));
                }
            }
        }
        Ok(())
    }

    /// The record that starts at byte `position` of `object` (without its line end): the
    /// split `position..=position` owns exactly that record, so [`SplitRecords`] finds its
    /// end, whatever its length.
    async fn read_record_at(&self, object: &Object, position: u64) -> Result<Vec<u8>, SplitError> {
        let mut split = SplitRecords::new(position, position);
        let mut feed = Ranges {
            step: RECORD_READ_BYTES,
            ..object.ranges(split.read_from())
        };
        let mut found = None;
        while found.is_none() && !split.is_done() {
            let pushed = match feed.next().await? {
                Some(bytes) => split.push(&bytes, &mut |_, record| found = Some(record.to_vec())),
                None => split.finish(&mut |_, record| found = Some(record.to_vec())),
            };
            pushed.map_err(|e| record_too_long(object, e))?;
        }
        found.ok_or_else(|| not_a_record(object.index(position)))
    }
}

/// A record too long, numbered by its item's index.
fn record_too_long(object: &Object, e: batch_core::split::RecordTooLong) -> SplitError {
    batch_core::split::RecordTooLong {
        start: e.start.map(|position| object.index(position)),
        ..e
    }
    .into()
}
