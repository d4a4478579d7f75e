//! Which records a split owns, from the bytes it reads: the rule of Hadoop's input splits.
//!
//! A split is the byte positions `first..=last` of an object (1-based, as a tree node's range).
//! A record (a line: its bytes up to and without `\n`, and without a `\r` before it) belongs to
//! the split holding its *first* byte. So every record belongs to exactly one split, whatever
//! the split sizes, and a split reads:
//! - from the byte before its first (position `first - 1`): when that byte is a line end, a
//!   record starts at `first`; otherwise the record in progress belongs to the split before,
//!   and everything up to the next line end is skipped;
//! - past `last`, to the end of the record that starts at or before `last` and straddles it.
//!
//! [`SplitRecords`] takes the bytes as they are read, in chunks of any size, and hands out each
//! record it owns with its index (the 1-based position of its first byte). It is pure: the
//! worker does the ranged reads ([`SplitRecords::read_from`] says where to start), and the
//! tests here cut every small input at every split and chunk boundary.
//!
//! A record is at most [`MAX_RECORD_BYTES`] long (without its line end): a longer one stops
//! the split as soon as it is seen to be longer, so a split's memory stays bounded whatever
//! the source holds (a file without line ends, say).

/// The longest record of a source, in bytes, without its line end.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// A record longer than the split's limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{}the record is longer than {limit} bytes, the limit of a record (a line without a line \
     end?)",
    match .start { Some(start) => format!("item {start}: "), None => String::new() }
)]
pub struct RecordTooLong {
    /// Where the record starts, when the split owns it (else it began in an earlier split).
    pub start: Option<u64>,
    pub limit: usize,
}

/// Hands out the records a split owns from the bytes read for it (see the module's docs).
#[derive(Debug)]
pub struct SplitRecords {
    first: u64,
    last: u64,
    /// The longest record handed out.
    limit: usize,
    /// The 1-based position of the next byte to be pushed.
    next: u64,
    state: State,
    /// The bytes of a record begun in an earlier chunk.
    carry: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Skipping the end of a record that began before the split.
    Skipping,
    /// At the start of a record, or inside one that began at `start` (1-based).
    InRecord { start: u64 },
    /// Past the last record this split owns.
    Done,
}

impl SplitRecords {
    /// For the split of byte positions `first..=last` (`1 <= first <= last`), with records of
    /// at most [`MAX_RECORD_BYTES`].
    pub fn new(first: u64, last: u64) -> Self {
        Self::with_limit(first, last, MAX_RECORD_BYTES)
    }

    /// [`Self::new`] with records of at most `limit` bytes (tests use small ones).
    pub fn with_limit(first: u64, last: u64, limit: usize) -> Self {
        assert!(1 <= first && first <= last, "bad split {first}..={last}");
        let (next, state) = if first == 1 {
            (1, State::InRecord { start: 1 })
        } else {
            // Read one byte before the split: it says whether a record starts at `first`.
            (first - 1, State::Skipping)
        };
        Self {
            first,
            last,
            limit,
            next,
            state,
            carry: Vec::new(),
        }
    }

    /// The 1-based position of the first byte to read (and push).
    pub fn read_from(&self) -> u64 {
        if self.first == 1 { 1 } else { self.first - 1 }
    }

    /// The 1-based position of the next byte [`Self::push`] expects.
    pub fn next_position(&self) -> u64 {
        self.next
    }

    /// Bytes held or skipped for the record in progress: how long it is so far (the caller
    /// bounds records by it).
    pub fn pending_len(&self) -> usize {
        match self.state {
            State::InRecord { .. } => self.carry.len(),
            State::Skipping => usize::try_from(self.next - self.read_from()).unwrap_or(usize::MAX),
            State::Done => 0,
        }
    }

    /// Where the record in progress starts, if the split owns it.
    pub fn pending_start(&self) -> Option<u64> {
        match self.state {
            State::InRecord { start } => Some(start),
            _ => None,
        }
    }

    /// Whether every record this split owns has been handed out: read no more.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes the next bytes read (they follow the ones pushed before) and calls `record(index,
    /// bytes)` for each complete record the split owns, in order. Stops at a record longer
    /// than the limit (the records before it were handed out).
    pub fn push(
        &mut self,
        mut chunk: &[u8],
        record: &mut impl FnMut(u64, &[u8]),
    ) -> Result<(), RecordTooLong> {
        while !chunk.is_empty() {
            match self.state {
                State::Done => return Ok(()),
                State::Skipping => match line_end(chunk) {
                    None => {
                        self.next += chunk.len() as u64;
                        return self.check_pending();
                    }
                    Some(end) => {
                        let start = self.next + end as u64 + 1;
                        self.next = start;
                        chunk = &chunk[end + 1..];
                        self.state = self.owned_from(start);
                    }
                },
                State::InRecord { start } => match line_end(chunk) {
                    None => {
                        self.carry.extend_from_slice(chunk);
                        self.next += chunk.len() as u64;
                        return self.check_pending();
                    }
                    Some(end) => {
                        if self.carry.is_empty() {
                            self.hand_out(start, &chunk[..end], record)?;
                        } else {
                            self.carry.extend_from_slice(&chunk[..end]);
                            let carried = std::mem::take(&mut self.carry);
                            self.hand_out(start, &carried, record)?;
                            self.carry = carried;
                            self.carry.clear();
                        }
                        let next_start = self.next + end as u64 + 1;
                        self.next = next_start;
                        chunk = &chunk[end + 1..];
                        self.state = self.owned_from(next_start);
                    }
                },
            }
        }
        Ok(())
    }

    /// Hands out the record at `start` (its bytes up to its `\n`), if within the limit.
    fn hand_out(
        &self,
        start: u64,
        line: &[u8],
        record: &mut impl FnMut(u64, &[u8]),
    ) -> Result<(), RecordTooLong> {
        let line = trim_cr(line);
        if line.len() > self.limit {
            return Err(RecordTooLong {
                start: Some(start),
                limit: self.limit,
            });
        }
        record(start, line);
        Ok(())
    }

    /// The record in progress may still end with `\r` (not part of it): one byte more than
    /// the limit is held before it is known to be too long.
    fn check_pending(&self) -> Result<(), RecordTooLong> {
        if self.pending_len() > self.limit.saturating_add(1) {
            Err(RecordTooLong {
                start: self.pending_start(),
                limit: self.limit,
            })
        } else {
            Ok(())
        }
    }

    /// The end of the object: hands out the last record if it has no line end. An object
    /// that ends with a line end has no empty record after it.
    pub fn finish(&mut self, record: &mut impl FnMut(u64, &[u8])) -> Result<(), RecordTooLong> {
        let state = std::mem::replace(&mut self.state, State::Done);
        if let State::InRecord { start } = state
            && start < self.next
        {
            let carried = std::mem::take(&mut self.carry);
            self.hand_out(start, &carried, record)?;
        }
        Ok(())
    }

    /// The state at a record that starts at `start`: owned when `start` is within the split.
    fn owned_from(&self, start: u64) -> State {
        if start <= self.last {
            State::InRecord { start }
        } else {
            State::Done
        }
    }
}

fn line_end(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record of `data` with its 1-based index, as a plain reading of the lines gives.
    fn all_records(data: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let mut records = Vec::new();
        let mut start = 0;
        for (i, &b) in data.iter().enumerate() {
            if b == b'\n' {
                records.push((start as u64 + 1, trim_cr(&data[start..i]).to_vec()));
                start = i + 1;
            }
        }
        if start < data.len() {
            records.push((start as u64 + 1, trim_cr(&data[start..]).to_vec()));
        }
        records
    }

    /// What split `first..=last` hands out reading `data` in chunks of `chunk` bytes, as the
    /// worker does: from `read_from`, until done or the end of the object.
    fn split_records(data: &[u8], first: u64, last: u64, chunk: usize) -> Vec<(u64, Vec<u8>)> {
        let mut split = SplitRecords::new(first, last);
        let mut out = Vec::new();
        let mut record = |i: u64, r: &[u8]| out.push((i, r.to_vec()));
        let mut at = usize::try_from(split.read_from() - 1).expect("no error");
        while !split.is_done() && at < data.len() {
            let end = (at + chunk).min(data.len());
            assert_eq!(split.next_position(), at as u64 + 1);
            split
                .push(&data[at..end], &mut record)
                .expect("no record over the limit");
            at = end;
        }
        split.finish(&mut record).expect("no record over the limit");
        out
    }

    /// Every split of `data` into consecutive splits of `size` bytes, read in chunks of
    /// `chunk`, hands out every record exactly once, in order, with its position.
    fn check_partition(data: &[u8], size: usize, chunk: usize) {
        let mut got = Vec::new();
        let len = data.len() as u64;
        let mut first = 1;
        while first <= len {
            let last = (first + size as u64 - 1).min(len);
            got.extend(split_records(data, first, last, chunk));
            first = last + 1;
        }
        assert_eq!(
            got,
            all_records(data),
            "data {:?}, splits of {size}, chunks of {chunk}",
            String::from_utf8_lossy(data)
        );
    }

    #[test]
    fn every_record_belongs_to_exactly_one_split_at_any_cut() {
        // Every string of up to 7 bytes over {a, \n, \r} (3^7 = 2187 strings), every split
        // size and chunk size up to its length.
        let alphabet = [b'a', b'\n', b'\r'];
        for len in 1..=7u32 {
            for code in 0..3u32.pow(len) {
                let data: Vec<u8> = (0..len)
                    .map(|i| alphabet[(code / 3u32.pow(i) % 3) as usize])
                    .collect();
                for size in 1..=data.len() {
                    for chunk in 1..=data.len() {
                        check_partition(&data, size, chunk);
                    }
                }
            }
        }
    }

    #[test]
    fn a_split_stops_reading_after_its_last_record() {
        let data = b"one\ntwo\nthree\nfour\n";
        // Split 1..=5 owns "one" (1) and "two" (5), which straddles its end.
        let mut split = SplitRecords::new(1, 5);
        let mut seen = Vec::new();
        split
            .push(&data[..9], &mut |i, r| seen.push((i, r.to_vec())))
            .expect("short records");
        assert_eq!(seen, [(1, b"one".to_vec()), (5, b"two".to_vec())]);
        assert!(split.is_done(), "the record at 9 is the next split's");
        assert_eq!(split.pending_len(), 0);
    }

    #[test]
    fn the_record_in_progress_is_measured() {
        let mut split = SplitRecords::new(1, 100);
        split
            .push(
                b"ab
cdef",
                &mut |_, _| {},
            )
            .expect("short records");
        assert_eq!((split.pending_len(), split.pending_start()), (4, Some(4)));
        let mut later = SplitRecords::new(3, 100);
        later.push(b"xyz", &mut |_, _| {}).expect("short records");
        assert_eq!((later.pending_len(), later.pending_start()), (3, None));
    }

    #[test]
    fn a_split_inside_one_long_record_owns_nothing() {
        let data = b"0123456789\n";
        assert_eq!(split_records(data, 3, 6, 4), []);
        assert_eq!(split_records(data, 1, 2, 4), [(1, b"0123456789".to_vec())]);
    }

    #[test]
    fn windows_line_ends_and_a_missing_last_line_end() {
        assert_eq!(
            split_records(b"a\r\nb\r\nc", 1, 8, 2),
            [(1, b"a".to_vec()), (4, b"b".to_vec()), (7, b"c".to_vec())]
        );
        assert_eq!(
            split_records(b"\n\n", 1, 2, 1),
            [(1, Vec::new()), (2, Vec::new())]
        );
    }

    /// Every record in `data` read by one split in chunks of `chunk` bytes, with a limit.
    fn read_with_limit(
        data: &[u8],
        first: u64,
        limit: usize,
        chunk: usize,
    ) -> Result<Vec<(u64, usize)>, RecordTooLong> {
        let mut split = SplitRecords::with_limit(first, data.len() as u64, limit);
        let mut out = Vec::new();
        let mut record = |i: u64, r: &[u8]| out.push((i, r.len()));
        let from = usize::try_from(split.read_from() - 1).expect("small");
        for piece in data[from..].chunks(chunk) {
            if split.is_done() {
                break;
            }
            split.push(piece, &mut record)?;
        }
        split.finish(&mut record)?;
        Ok(out)
    }

    #[test]
    fn a_record_of_the_limit_passes_and_one_byte_more_stops_the_split() {
        let limit = 8;
        for chunk in 1..=20 {
            for end in ["\n", "\r\n", ""] {
                let exact = format!("ab\n{}{end}cd\n", "x".repeat(limit));
                let expected = if end.is_empty() {
                    // No line end: "x...xcd" is one record, two bytes over.
                    Err(RecordTooLong {
                        start: Some(4),
                        limit,
                    })
                } else {
                    let next = 4 + (limit + end.len()) as u64;
                    Ok(vec![(1, 2), (4, limit), (next, 2)])
                };
                assert_eq!(
                    read_with_limit(exact.as_bytes(), 1, limit, chunk),
                    expected,
                    "chunks of {chunk}, line end {end:?}"
                );
                let over = format!("ab\n{}{end}", "x".repeat(limit + 1));
                assert_eq!(
                    read_with_limit(over.as_bytes(), 1, limit, chunk),
                    Err(RecordTooLong {
                        start: Some(4),
                        limit
                    }),
                    "chunks of {chunk}, line end {end:?}"
                );
            }
        }
        // A split that starts inside an overlong record stops too (memory stays bounded).
        let data = format!("{}\nz\n", "y".repeat(limit * 3));
        assert_eq!(
            read_with_limit(data.as_bytes(), 2, limit, 3),
            Err(RecordTooLong { start: None, limit })
        );
        assert_eq!(
            RecordTooLong {
                start: Some(7),
                limit: MAX_RECORD_BYTES
            }
            .to_string(),
            "item 7: the record is longer than 16777216 bytes, the limit of a record (a line \
             without a line end?)"
        );
    }
}
