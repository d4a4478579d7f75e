//! The records of a split read so far and not yet run: items, records that cannot be items
//! (reported as failed items), and a record that fails the whole batch.

use batch_core::Tolerance;
use batch_core::failures::EXCERPT_BYTES;
use batch_core::record_items::{RecordItem, RecordItems};

use super::SplitError;
use crate::plugins::RecordBuffer;

/// A record that cannot become an item, with the start of its bytes.
pub(super) struct BadRecord {
    pub(super) index: u64,
    pub(super) reason: String,
    pub(super) excerpt: Vec<u8>,
}

/// The records read so far and not yet given to the plugin.
#[derive(Default)]
pub(super) struct Pending {
    /// The items, in one buffer.
    pub(super) records: RecordBuffer,
    pub(super) bad: Vec<BadRecord>,
    /// A record that fails the batch whatever its tolerance.
    fatal: Option<(u64, String)>,
}

impl Pending {
    /// Adds the record at `position` of its object, the item `index`, as the format makes
    /// it: an item, nothing (false: a blank line of JSON Lines, a CSV header), or a bad
    /// record.
    pub(super) fn add(
        &mut self,
        items: &RecordItems,
        position: u64,
        index: u64,
        record: &[u8],
    ) -> bool {
        match items.item(position, record) {
            RecordItem::Item(bytes) => self.records.push(index, &bytes),
            RecordItem::NotAnItem => return false,
            RecordItem::Bad(reason) => self.bad.push(BadRecord {
                index,
                reason,
                excerpt: record[..record.len().min(EXCERPT_BYTES)].to_vec(),
            }),
            RecordItem::Fatal(reason) => {
                self.fatal.get_or_insert((index, reason));
            }
        }
        true
    }

    /// A record that fails the batch whatever its tolerance.
    pub(super) fn fatal(&mut self, index: u64, reason: String) {
        self.fatal.get_or_insert((index, reason));
    }

    /// A record that fails the batch whatever its tolerance, or, without a tolerance, the
    /// first bad record: the failure, if any.
    pub(super) fn intolerable(&self, tolerance: &Tolerance) -> Option<SplitError> {
        if let Some((index, reason)) = &self.fatal {
            return Some(SplitError::BadSource {
                index: *index,
                reason: reason.clone(),
            });
        }
        let bad = self.bad.first().filter(|_| tolerance.is_none())?;
        Some(SplitError::BadRecord {
            index: bad.index,
            reason: bad.reason.clone(),
        })
    }

    /// Takes what was read, leaving nothing pending.
    pub(super) fn take(&mut self) -> (RecordBuffer, Vec<BadRecord>) {
        (
            std::mem::take(&mut self.records),
            std::mem::take(&mut self.bad),
        )
    }

    /// Bytes of the items' data.
    pub(super) fn bytes(&self) -> usize {
        self.records.bytes()
    }
}
