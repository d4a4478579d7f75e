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

/// Hands out the records a split owns from the bytes read for it (see the module's docs).
#[derive(Debug)]
pub struct SplitRecords {
    first: u64,
    last: u64,
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
    /// For the split of byte positions `first..=last` (`1 <= first <= last`).
    pub fn new(first: u64, last: u64) -> Self {
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
    /// bytes)` for each complete record the split owns, in order.
    pub fn push(&mut self, mut chunk: &[u8], record: &mut impl FnMut(u64, &[u8])) {
        while !chunk.is_empty() {
            match self.state {
                State::Done => return,
                State::Skipping => match memchr(chunk) {
                    None => {
                        self.next += chunk.len() as u64;
                        return;
                    }
                    Some(end) => {
                        let start = self.next + end as u64 + 1;
                        self.next = start;
                        chunk = &chunk[end + 1..];
                        self.state = self.owned_from(start);
                    }
                },
                State::InRecord { start } => match memchr(chunk) {
                    None => {
                        self.carry.extend_from_slice(chunk);
                        self.next += chunk.len() as u64;
                        return;
                    }
                    Some(end) => {
                        if self.carry.is_empty() {
                            record(start, trim_cr(&chunk[..end]));
                        } else {
                            self.carry.extend_from_slice(&chunk[..end]);
                            record(start, trim_cr(&self.carry));
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
    }

    /// The end of the object: hands out the last record if it has no line end. An object
    /// that ends with a line end has no empty record after it.
    pub fn finish(&mut self, record: &mut impl FnMut(u64, &[u8])) {
        if let State::InRecord { start } = self.state
            && start < self.next
        {
            record(start, trim_cr(&self.carry));
            self.carry.clear();
        }
        self.state = State::Done;
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

fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
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
            split.push(&data[at..end], &mut record);
            at = end;
        }
        split.finish(&mut record);
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
        split.push(&data[..9], &mut |i, r| seen.push((i, r.to_vec())));
        assert_eq!(seen, [(1, b"one".to_vec()), (5, b"two".to_vec())]);
        assert!(split.is_done(), "the record at 9 is the next split's");
        assert_eq!(split.pending_len(), 0);
    }

    #[test]
    fn the_record_in_progress_is_measured() {
        let mut split = SplitRecords::new(1, 100);
        split.push(
            b"ab
cdef",
            &mut |_, _| {},
        );
        assert_eq!((split.pending_len(), split.pending_start()), (4, Some(4)));
        let mut later = SplitRecords::new(3, 100);
        later.push(b"xyz", &mut |_, _| {});
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
}
