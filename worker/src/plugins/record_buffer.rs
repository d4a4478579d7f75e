//! Records in one buffer, as a data split reads them: each record's index and where its bytes
//! end, with no allocation per record. A block of them is copied out as one buffer for a
//! plugin's `records` export ([`RecordBuffer::block`], which wasmtime then copies into the
//! instance); a plugin without it gets them as items.

use std::ops::Range;

use super::interface::{Item, RecordBlock};

/// Records in one buffer.
#[derive(Default)]
pub struct RecordBuffer {
    indexes: Vec<u64>,
    data: Vec<u8>,
    /// Where each record's bytes end in `data`.
    ends: Vec<usize>,
}

impl RecordBuffer {
    /// The records of `items`, or `None` if one of them has no data (a range item).
    pub fn of_items(items: &[Item]) -> Option<Self> {
        let mut records = Self::default();
        for item in items {
            records.push(item.index, item.data.as_deref()?);
        }
        Some(records)
    }

    /// Adds the record at `index` with its bytes.
    pub fn push(&mut self, index: u64, bytes: &[u8]) {
        self.indexes.push(index);
        self.data.extend_from_slice(bytes);
        self.ends.push(self.data.len());
    }

    pub fn len(&self) -> usize {
        self.indexes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indexes.is_empty()
    }

    /// Bytes of all the records' data.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// The `n`-th record's index.
    pub fn index(&self, n: usize) -> u64 {
        self.indexes[n]
    }

    /// The `n`-th record's bytes.
    pub fn data(&self, n: usize) -> &[u8] {
        &self.data[self.start(n)..self.ends[n]]
    }

    fn start(&self, n: usize) -> usize {
        n.checked_sub(1).map_or(0, |before| self.ends[before])
    }

    /// The records of `range` as items.
    pub fn items(&self, range: Range<usize>) -> Vec<Item> {
        range
            .map(|n| Item {
                index: self.index(n),
                data: Some(self.data(n).to_vec()),
            })
            .collect()
    }

    /// The records of `range` as `records.process-records` takes them (their bytes in one
    /// buffer, where each ends counted from the first's start), or `None` if their bytes pass
    /// what 32-bit ends address.
    pub fn block(&self, range: Range<usize>) -> Option<RecordBlock> {
        let (Some(first), Some(last)) = (range.clone().next(), range.clone().next_back()) else {
            return Some(RecordBlock {
                indexes: Vec::new(),
                data: Vec::new(),
                ends: Vec::new(),
            });
        };
        let start = self.start(first);
        let end = self.ends[last];
        u32::try_from(end - start).ok()?;
        Some(RecordBlock {
            indexes: self.indexes[range.clone()].to_vec(),
            data: self.data[start..end].to_vec(),
            // Within 32 bits: checked above.
            ends: self.ends[range]
                .iter()
                .map(|&e| (e - start) as u32)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_holds_its_records_and_their_ends_from_its_start() {
        let mut records = RecordBuffer::default();
        for (index, bytes) in [(1, &b"ab"[..]), (4, b""), (5, b"cde"), (9, b"f")] {
            records.push(index, bytes);
        }
        assert_eq!((records.len(), records.bytes()), (4, 6));
        assert_eq!((records.index(2), records.data(2)), (5, &b"cde"[..]));
        let block = records.block(1..4).expect("small");
        assert_eq!(block.indexes, [4, 5, 9]);
        assert_eq!(block.data, b"cdef");
        assert_eq!(block.ends, [0, 3, 4]);
        let items = records.items(0..2);
        assert_eq!(items[0].data.as_deref(), Some(&b"ab"[..]));
        assert_eq!(
            (items[1].index, items[1].data.as_deref()),
            (4, Some(&b""[..]))
        );
        let again = RecordBuffer::of_items(&items).expect("records");
        assert_eq!(again.data(0), b"ab");
        assert!(
            RecordBuffer::of_items(&[Item {
                index: 1,
                data: None
            }])
            .is_none()
        );
        assert!(records.block(2..2).expect("empty").indexes.is_empty());
    }
}
