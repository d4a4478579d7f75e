//! Re-running only the failed items of an earlier batch (`starter --retry-failed BATCH`).
//!
//! A retry batch is a batch over an explicit, sorted list of item indexes: the earlier batch's
//! failed items, read from its `failed/` parts (a batch with an output) or from its result
//! (without an output, while it kept every index: [`crate::failures::KEPT_INDEXES`]). The tree
//! runs over the list's positions `1..=k` exactly as over a range, and every node carries only
//! its own slice of the list ([`child_items`]), so a node's input stays small and the whole
//! list travels once per level. A leaf processes exactly its slice: range items by index, a data
//! source's records at their byte positions. The earlier output and the retry's output together
//! hold every item once: the earlier one without the failed items, the retry's with exactly
//! them.

use serde::{Deserialize, Serialize};

use crate::plugin_ref::PluginRef;

/// Most items a retry batch takes: the list travels in the workflows' inputs (about 12 bytes
/// an item in JSON, so at most ~240 KB at the root, against Temporal's 2 MB payload limit).
pub const MAX_RETRY_ITEMS: usize = 20_000;

/// Records per leaf of a retried data batch: a leaf reads each record at its position (one
/// ranged read each), so leaves are small enough for their reads to run on many workers.
pub const DATA_RETRY_LEAF: u64 = 100;

/// What a retry batch re-runs, for its summary and manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryOf {
    /// The earlier batch's root workflow id.
    pub batch: String,
    /// The plugin that failed them (pinned by digest), to state beside the one retrying them.
    pub plugin: PluginRef,
    /// How many of its items failed, all of which this batch re-runs.
    pub failed: u64,
}

/// Why a retry cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryError {
    #[error(
        "a retry batch's items must be sorted item indexes from 1 to {max} without repeats; \
         item {item} at position {position} is not"
    )]
    Unsorted {
        position: usize,
        item: u64,
        max: u64,
    },
    #[error("a node of positions {first}..={last} holds {got} items")]
    Length { first: u64, last: u64, got: usize },
    #[error(
        "batch {batch} has {count} failed items; --retry-failed takes at most {MAX_RETRY_ITEMS} \
         (they travel in the workflows' inputs): narrow the batch, or re-run it"
    )]
    TooMany { batch: String, count: u64 },
    #[error(
        "batch {batch} kept only the first failed items' details ({count} failed, over {kept}): \
         without --output its report holds counts and samples. Run it again with --output to \
         keep every failed item"
    )]
    Incomplete {
        batch: String,
        count: u64,
        kept: usize,
    },
    #[error("{part}, line {line}: not a failed-item line ({reason})")]
    BadReport {
        part: String,
        line: usize,
        reason: String,
    },
}

/// Checks a node's list: one index per position of `first..=last`, strictly increasing,
/// each from 1 to `max` (a range's [`crate::config::MAX_ITEMS`] or a data source's size).
pub fn validate_items(items: &[u64], first: u64, last: u64, max: u64) -> Result<(), RetryError> {
    let want = last.checked_sub(first).map(|d| d + 1);
    if want != Some(items.len() as u64) {
        return Err(RetryError::Length {
            first,
            last,
            got: items.len(),
        });
    }
    let mut previous = 0;
    for (position, &item) in items.iter().enumerate() {
        if item <= previous || item > max {
            return Err(RetryError::Unsorted {
                position: position + first as usize,
                item,
                max,
            });
        }
        previous = item;
    }
    Ok(())
}

/// The slice of a node's `items` (positions `first..`) for its child of positions
/// `child_first..=child_last`.
pub fn child_items(items: &[u64], first: u64, child_first: u64, child_last: u64) -> Vec<u64> {
    let from = (child_first - first) as usize;
    let to = (child_last - first) as usize;
    items[from..=to].to_vec()
}

/// A retry batch's root id: `batch-processing-retry.{12 hex digits}-{k}-{leaf}{size}-c{c}`,
/// the digits of the sha256 of the earlier batch's id and of what the retry runs (`what`: the
/// plugin, its configuration, the tolerance, the output). No plugin name contains '.', so no
/// other batch's id starts with a retry's, and retrying the same items the same way again
/// attaches to the same batch.
pub fn retry_workflow_id(earlier: &str, what: &[&str], shape: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in std::iter::once(earlier).chain(what.iter().copied()) {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-retry.{hex}-{shape}", crate::ids::ROOT_ID_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_sorted_bounded_and_as_long_as_its_range() {
        assert_eq!(validate_items(&[3, 9, 10], 1, 3, 10), Ok(()));
        assert_eq!(validate_items(&[3, 9, 10], 5, 7, 10), Ok(()));
        assert!(matches!(
            validate_items(&[3, 9], 1, 3, 10),
            Err(RetryError::Length { got: 2, .. })
        ));
        assert!(matches!(
            validate_items(&[3, 3, 4], 1, 3, 10),
            Err(RetryError::Unsorted {
                position: 2,
                item: 3,
                ..
            })
        ));
        assert!(matches!(
            validate_items(&[0], 1, 1, 10),
            Err(RetryError::Unsorted { item: 0, .. })
        ));
        assert!(matches!(
            validate_items(&[11], 1, 1, 10),
            Err(RetryError::Unsorted { item: 11, .. })
        ));
        assert!(validate_items(&[], 2, 1, 10).is_err());
    }

    /// Slicing a list among the children of every node of a tree gives each leaf exactly its
    /// positions' items, and all leaves together the whole list, in order.
    #[test]
    fn children_slices_cover_the_list_in_order() {
        use crate::plan::{NodePlan, plan_node};
        let list: Vec<u64> = (1..=997).map(|i| i * 7 + i % 3).collect();
        let mut leaves = Vec::new();
        let mut stack = vec![(crate::ItemRange::new(1, list.len() as u64), list.clone())];
        while let Some((range, items)) = stack.pop() {
            validate_items(&items, range.first, range.last, u64::MAX).expect("valid");
            match plan_node(range, 10, 5) {
                NodePlan::Leaf(_) => leaves.push((range.first, items)),
                NodePlan::Split(children) => {
                    for child in children {
                        let slice = child_items(&items, range.first, child.first, child.last);
                        stack.push((child, slice));
                    }
                }
            }
        }
        leaves.sort();
        let all: Vec<u64> = leaves.into_iter().flat_map(|(_, items)| items).collect();
        assert_eq!(all, list);
    }

    #[test]
    fn retry_ids_depend_on_the_batch_and_what_runs() {
        let a = retry_workflow_id("batch-processing-2000-b10-c5", &["picky", ""], "20-b10-c5");
        assert!(a.starts_with("batch-processing-retry."), "{a}");
        assert!(a.ends_with("-20-b10-c5"), "{a}");
        assert_eq!(
            a,
            retry_workflow_id("batch-processing-2000-b10-c5", &["picky", ""], "20-b10-c5")
        );
        assert_ne!(
            a,
            retry_workflow_id("batch-processing-2000-b10-c5", &["picky", "x"], "20-b10-c5")
        );
        assert_ne!(
            a,
            retry_workflow_id("batch-processing-200-b10-c5", &["picky", ""], "20-b10-c5")
        );
    }
}
