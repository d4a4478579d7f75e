//! How many items the host hands a plugin per call (interface v2).
//!
//! Large blocks amortize the cost of a call (entering wasm, lowering arguments) over many
//! items; but a call is also the unit of the CPU deadline, so a block must finish well within
//! it even for a slow plugin. The sizer therefore starts with one item, and after each call
//! sizes the next block so that it takes about [`BlockSizer::target`] at the measured time per
//! item, growing at most twofold per call, up to [`MAX_BLOCK_ITEMS`] (and the caller stops a
//! block earlier once its data reaches [`MAX_BLOCK_BYTES`]).

use std::time::Duration;

/// Most items in one call.
pub const MAX_BLOCK_ITEMS: usize = 4096;
/// Items of a range (or a retry's list) that share one plugin instance in a `batch`-mode
/// leaf: a count, never a time, so which items share an instance is the same on every run
/// whatever the load (a plugin that keeps state in its instance gives the same outputs).
/// Large enough that a fresh instance per span (~20 us) costs a fast plugin well under a
/// nanosecond per item; a span is also the unit a resumed leaf restarts from.
pub const SPAN_ITEMS: usize = 65_536;
/// A block stops growing once its items' data reaches this many bytes (a single item larger
/// than this is still sent, alone).
pub const MAX_BLOCK_BYTES: usize = 1 << 20;

/// Sizes consecutive blocks of one plugin instance.
#[derive(Debug, Clone)]
pub struct BlockSizer {
    next: usize,
    target: Duration,
}

impl BlockSizer {
    /// Blocks meant to take about `target` each; the first holds one item.
    pub fn new(target: Duration) -> Self {
        Self { next: 1, target }
    }

    /// A sizer for a CPU deadline: blocks aim at a tenth of it, and at most 50 ms, so a plugin
    /// whose items vary tenfold in cost still ends its blocks in time, and a `batch`-mode slice
    /// (2 s) is cut into many blocks.
    pub fn for_deadline(deadline: Duration) -> Self {
        Self::new((deadline / 10).min(Duration::from_millis(50)))
    }

    pub fn target(&self) -> Duration {
        self.target
    }

    /// Items for the next block.
    pub fn next_len(&self) -> usize {
        self.next
    }

    /// Learns from a block of `items` items that took `took`.
    pub fn record(&mut self, items: usize, took: Duration) {
        if items == 0 {
            return;
        }
        let per_item = took.as_nanos() / items as u128;
        let fitting = match self.target.as_nanos().checked_div(per_item) {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            // Too fast to measure: as many as allowed.
            None => usize::MAX,
        };
        self.next = fitting
            .min(items.saturating_mul(2))
            .clamp(1, MAX_BLOCK_ITEMS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn fast_plugins_grow_to_the_largest_block_by_doubling() {
        let mut sizer = BlockSizer::new(50 * MS);
        let mut sizes = vec![sizer.next_len()];
        while sizer.next_len() < MAX_BLOCK_ITEMS {
            let n = sizer.next_len();
            sizer.record(n, Duration::from_nanos(20 * n as u64));
            sizes.push(sizer.next_len());
        }
        assert_eq!(sizes.len(), 13, "{sizes:?}");
        assert_eq!(sizes[..4], [1, 2, 4, 8]);
        // A zero-time block (coarse clock) does not divide by zero.
        sizer.record(4096, Duration::ZERO);
        assert_eq!(sizer.next_len(), MAX_BLOCK_ITEMS);
    }

    #[test]
    fn slow_plugins_get_blocks_that_fit_the_target() {
        let mut sizer = BlockSizer::new(50 * MS);
        // 30 ms per item: one item per block, never more.
        for _ in 0..5 {
            sizer.record(sizer.next_len(), 30 * MS);
            assert_eq!(sizer.next_len(), 1);
        }
        // 2 ms per item: 25 per block, reached by doubling.
        let mut sizer = BlockSizer::new(50 * MS);
        for _ in 0..10 {
            let n = sizer.next_len();
            sizer.record(n, 2 * MS * n as u32);
        }
        assert_eq!(sizer.next_len(), 25);
        // A plugin that slows down shrinks its blocks at once.
        sizer.record(25, 25 * 20 * MS);
        assert_eq!(sizer.next_len(), 2);
        sizer.record(0, Duration::from_secs(9));
        assert_eq!(sizer.next_len(), 2, "an empty block teaches nothing");
    }

    #[test]
    fn the_target_follows_the_deadline() {
        assert_eq!(
            BlockSizer::for_deadline(Duration::from_secs(1)).target(),
            50 * MS
        );
        assert_eq!(BlockSizer::for_deadline(100 * MS).target(), 10 * MS);
        assert_eq!(
            BlockSizer::for_deadline(MS).target(),
            Duration::from_micros(100)
        );
    }
}
