//! What a node returns, and how the results of consecutive ranges merge.
//!
//! Results are statistics, never lists of outputs: a node's result has the same small size at
//! any n (the demo returns every output and hits Temporal's 2 MB payload limit near n=190k).

use serde::{Deserialize, Serialize};

use crate::config::BatchConfig;
use crate::plan::ItemRange;

/// How many outputs are kept from each end of the batch, as the demo prints.
pub const EDGE_LEN: usize = 10;

/// What a plugin produced for one item (interface v1 produces only numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Number(u64),
    /// A record's bytes (a JSON object, a CSV row, ...).
    Record(Vec<u8>),
    /// The plugin dropped the item (a filter that did not match).
    Skip,
}

/// What an item produced, as an item activity returns it to the workflow: a number as the
/// bare number (the payload interface-v1 workers always returned, so recorded histories still
/// replay), a record by its size only (the record itself goes to the batch's output, never
/// into the workflow's history), or a skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ItemOutcome {
    Number(u64),
    Other(OtherOutcome),
}

/// See [`ItemOutcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtherOutcome {
    Record { bytes: u64 },
    Skip,
}

impl From<&Output> for ItemOutcome {
    fn from(output: &Output) -> Self {
        match output {
            Output::Number(n) => Self::Number(*n),
            Output::Record(bytes) => Self::Other(OtherOutcome::Record {
                bytes: bytes.len() as u64,
            }),
            Output::Skip => Self::Other(OtherOutcome::Skip),
        }
    }
}

/// Statistics over the outputs of a contiguous run of items, in item order.
///
/// `count` is every item processed; `records` and `skipped` say how many of them produced a
/// record or were skipped, the rest produced numbers, which the other fields describe. The
/// record and skip counters are left out of JSON when zero, so a batch of numbers (the demo)
/// has exactly the payloads it always had.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outputs {
    pub count: u64,
    /// Exact sum. A sum of up to 2^64 outputs of up to 2^64 - 1 each always fits a `u128`.
    /// Carried as a decimal string in JSON so clients without 128-bit integers read it exactly.
    #[serde(with = "u128_string")]
    pub sum: u128,
    pub min: Option<u64>,
    pub max: Option<u64>,
    /// The first `EDGE_LEN` outputs, in item order.
    pub head: Vec<u64>,
    /// The last `EDGE_LEN` outputs, in item order.
    pub tail: Vec<u64>,
    /// Items that produced a record.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub records: u64,
    /// Bytes of all records produced.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub record_bytes: u64,
    /// Items the plugin skipped.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u64,
    /// The requests the plugin made for these items (a batch with `--http-allow`); absent
    /// from JSON when none.
    #[serde(default, skip_serializing_if = "crate::http::HttpCounts::is_empty")]
    pub http: crate::http::HttpCounts,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Outputs {
    /// Appends the output of the item that follows the ones already counted.
    pub fn push(&mut self, output: u64) {
        self.count += 1;
        self.sum += u128::from(output);
        self.min = Some(self.min.map_or(output, |m| m.min(output)));
        self.max = Some(self.max.map_or(output, |m| m.max(output)));
        if self.head.len() < EDGE_LEN {
            self.head.push(output);
        }
        if self.tail.len() == EDGE_LEN {
            self.tail.remove(0);
        }
        self.tail.push(output);
    }

    /// Appends the numbers of the next items, in order: the same as [`Self::push`] for each,
    /// in one tight pass (the hot path of a `batch`-mode leaf, a block at a time).
    pub fn extend_numbers(&mut self, numbers: &[u64]) {
        let Some(&first) = numbers.first() else {
            return;
        };
        let (mut sum, mut min, mut max) = (0u128, first, first);
        for &n in numbers {
            sum += u128::from(n);
            min = min.min(n);
            max = max.max(n);
        }
        self.count += numbers.len() as u64;
        self.sum += sum;
        self.min = Some(self.min.map_or(min, |m| m.min(min)));
        self.max = Some(self.max.map_or(max, |m| m.max(max)));
        let room = EDGE_LEN.saturating_sub(self.head.len());
        self.head.extend(numbers.iter().take(room));
        let last = &numbers[numbers.len().saturating_sub(EDGE_LEN)..];
        self.tail.extend_from_slice(last);
        let excess = self.tail.len().saturating_sub(EDGE_LEN);
        self.tail.drain(..excess);
    }

    /// Appends the output of the next item, whatever its kind.
    pub fn add(&mut self, output: &Output) {
        self.add_outcome(ItemOutcome::from(output));
    }

    /// Appends the outcome of the next item, whatever its kind.
    pub fn add_outcome(&mut self, outcome: ItemOutcome) {
        match outcome {
            ItemOutcome::Number(n) => self.push(n),
            ItemOutcome::Other(OtherOutcome::Record { bytes }) => {
                self.count += 1;
                self.records += 1;
                self.record_bytes += bytes;
            }
            ItemOutcome::Other(OtherOutcome::Skip) => {
                self.count += 1;
                self.skipped += 1;
            }
        }
    }

    /// Items that produced a number.
    pub fn numbers(&self) -> u64 {
        self.count - self.records - self.skipped
    }

    /// The statistics of `self`'s items followed by `next`'s items.
    pub fn then(mut self, next: Outputs) -> Outputs {
        self.count += next.count;
        self.records += next.records;
        self.record_bytes += next.record_bytes;
        self.skipped += next.skipped;
        self.http.add(&next.http);
        self.sum += next.sum;
        self.min = min_opt(self.min, next.min, u64::min);
        self.max = min_opt(self.max, next.max, u64::max);
        // A run shorter than EDGE_LEN keeps all its outputs in `head` and `tail`, so
        // concatenating and trimming gives exactly the edges of the combined run.
        let room = EDGE_LEN.saturating_sub(self.head.len());
        self.head.extend(next.head.iter().take(room));
        self.tail.extend(next.tail);
        let excess = self.tail.len().saturating_sub(EDGE_LEN);
        self.tail.drain(..excess);
        self
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>, pick: fn(u64, u64) -> u64) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The result of one tree node (and, at the root, of the whole batch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeResult {
    pub range: ItemRange,
    /// The batch's parameters, including the plugin (pinned by digest) that produced every
    /// output: a result describes itself, so a client that only knows the workflow id can
    /// print the whole summary.
    pub config: BatchConfig,
    pub outputs: Outputs,
    /// Deepest nesting level reached below (and including) this node; the root is 0.
    pub max_depth: u32,
    /// Workflows in this node's subtree, itself included.
    pub workflows: u64,
    /// Plugin activities run in this node's subtree (one per item in per-item mode).
    pub activities: u64,
    /// A data batch with an output: the parts written in this subtree, in source order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<crate::output::PartInfo>,
    /// Items of this subtree that failed for good and were tolerated (absent when none): with
    /// `outputs.count` they add up to the subtree's items.
    #[serde(default, skip_serializing_if = "crate::Failures::is_empty")]
    pub failures: crate::Failures,
    /// A data batch with an output: the `failed/` parts written in this subtree, in source
    /// order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_parts: Vec<crate::output::FailedPartInfo>,
}

impl NodeResult {
    /// A leaf's result: its own outputs, one workflow.
    pub fn leaf(
        range: ItemRange,
        depth: u32,
        config: BatchConfig,
        outputs: Outputs,
        activities: u64,
    ) -> Self {
        Self {
            range,
            config,
            outputs,
            max_depth: depth,
            workflows: 1,
            activities,
            parts: Vec::new(),
            failures: crate::Failures::default(),
            failed_parts: Vec::new(),
        }
    }

    /// An inner node's result from its children's results, given in item order.
    pub fn merge(
        range: ItemRange,
        depth: u32,
        config: BatchConfig,
        children: impl IntoIterator<Item = NodeResult>,
    ) -> Self {
        children.into_iter().fold(
            Self {
                range,
                config,
                outputs: Outputs::default(),
                max_depth: depth,
                workflows: 1,
                activities: 0,
                parts: Vec::new(),
                failures: crate::Failures::default(),
                failed_parts: Vec::new(),
            },
            |mut acc, child| {
                acc.parts.extend(child.parts);
                acc.failed_parts.extend(child.failed_parts);
                Self {
                    failures: acc.failures.then(child.failures),
                    outputs: acc.outputs.then(child.outputs),
                    max_depth: acc.max_depth.max(child.max_depth),
                    workflows: acc.workflows + child.workflows,
                    activities: acc.activities + child.activities,
                    ..acc
                }
            },
        )
    }
}

mod u128_string {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(value: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|e| D::Error::custom(format!("sum {text:?} is not a u128: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(values: impl IntoIterator<Item = u64>) -> Outputs {
        let mut o = Outputs::default();
        values.into_iter().for_each(|v| o.push(v));
        o
    }

    #[test]
    fn push_keeps_the_exact_edges_and_stats() {
        let o = outputs((1..=50).map(|i| i * i));
        assert_eq!(o.count, 50);
        assert_eq!(o.sum, 42925);
        assert_eq!((o.min, o.max), (Some(1), Some(2500)));
        assert_eq!(o.head, [1, 4, 9, 16, 25, 36, 49, 64, 81, 100]);
        assert_eq!(
            o.tail,
            [1681, 1764, 1849, 1936, 2025, 2116, 2209, 2304, 2401, 2500]
        );
    }

    /// Splitting a sequence anywhere, in any number of parts, and merging gives the same
    /// statistics as pushing it whole: the property the tree relies on.
    #[test]
    fn merging_any_split_equals_the_whole() {
        let values: Vec<u64> = (1..=37).map(|i| (i * 7919) % 101).collect();
        let whole = outputs(values.iter().copied());
        for a in 0..=values.len() {
            for b in a..=values.len() {
                let merged = outputs(values[..a].iter().copied())
                    .then(outputs(values[a..b].iter().copied()))
                    .then(outputs(values[b..].iter().copied()));
                assert_eq!(merged, whole, "split at {a},{b}");
            }
        }
        assert_eq!(
            Outputs::default().then(Outputs::default()),
            Outputs::default()
        );
    }

    #[test]
    fn sums_beyond_u64_are_exact_and_serialize_as_strings() {
        let mut o = outputs([u64::MAX, u64::MAX, 1]);
        assert_eq!(o.sum, 2 * u128::from(u64::MAX) + 1);
        o = o.then(outputs([u64::MAX]));
        let json = serde_json::to_value(&o).expect("serialize");
        assert_eq!(
            json["sum"],
            serde_json::json!((3 * u128::from(u64::MAX) + 1).to_string())
        );
        assert_eq!(serde_json::from_value::<Outputs>(json).expect("parse"), o);
        let bad = serde_json::json!({"count":1,"sum":"x","min":1,"max":1,"head":[],"tail":[]});
        let err = serde_json::from_value::<Outputs>(bad)
            .expect_err("bad sum")
            .to_string();
        assert!(err.contains("sum \"x\" is not a u128"), "{err}");
    }

    #[test]
    fn records_and_skips_are_counted_beside_numbers() {
        let items = [
            Output::Number(3),
            Output::Record(b"{\"a\":1}".to_vec()),
            Output::Skip,
            Output::Number(u64::MAX),
            Output::Record(Vec::new()),
        ];
        let mut whole = Outputs::default();
        items.iter().for_each(|o| whole.add(o));
        assert_eq!(
            (
                whole.count,
                whole.records,
                whole.record_bytes,
                whole.skipped
            ),
            (5, 2, 7, 1)
        );
        assert_eq!(whole.numbers(), 2);
        assert_eq!(whole.sum, 3 + u128::from(u64::MAX));
        assert_eq!(whole.head, [3, u64::MAX]);
        // Merging any split gives the whole, records and skips included.
        for at in 0..=items.len() {
            let mut left = Outputs::default();
            let mut right = Outputs::default();
            items[..at].iter().for_each(|o| left.add(o));
            items[at..].iter().for_each(|o| right.add(o));
            assert_eq!(left.then(right), whole, "split at {at}");
        }
        let json = serde_json::to_value(&whole).expect("serialize");
        assert_eq!(json["records"], 2);
        assert_eq!(
            serde_json::from_value::<Outputs>(json).expect("parse"),
            whole
        );
    }

    /// `extend_numbers` is `push` for each number, for every length and split.
    #[test]
    fn extending_with_numbers_equals_pushing_them() {
        let values: Vec<u64> = (1..=40).map(|i| (i * 7919) % 97).collect();
        for a in 0..=values.len() {
            for b in a..=values.len() {
                let mut extended = outputs(values[..a].iter().copied());
                extended.extend_numbers(&values[a..b]);
                extended.extend_numbers(&values[b..]);
                assert_eq!(
                    extended,
                    outputs(values.iter().copied()),
                    "split at {a},{b}"
                );
            }
        }
    }

    #[test]
    fn item_outcomes_keep_numbers_as_bare_numbers() {
        let json = |o: &Output| serde_json::to_string(&ItemOutcome::from(o)).expect("serialize");
        assert_eq!(json(&Output::Number(49)), "49");
        assert_eq!(
            json(&Output::Record(b"abc".to_vec())),
            r#"{"record":{"bytes":3}}"#
        );
        assert_eq!(json(&Output::Skip), r#""skip""#);
        for text in ["49", r#"{"record":{"bytes":3}}"#, r#""skip""#] {
            let parsed: ItemOutcome = serde_json::from_str(text).expect("parse");
            assert_eq!(serde_json::to_string(&parsed).expect("serialize"), text);
        }
        // What v1 workers recorded in histories: a bare u64, including the largest.
        let max: ItemOutcome = serde_json::from_str("18446744073709551615").expect("parse");
        assert_eq!(max, ItemOutcome::Number(u64::MAX));
    }

    /// A batch of numbers serializes exactly as before records existed: the same payloads in
    /// histories recorded by older workers, and the same `--json` output.
    #[test]
    fn numbers_only_serialize_without_the_new_counters() {
        let json = serde_json::to_string(&outputs([1, 4])).expect("serialize");
        assert_eq!(
            json,
            r#"{"count":2,"sum":"5","min":1,"max":4,"head":[1,4],"tail":[1,4]}"#
        );
    }

    #[test]
    fn merge_counts_workflows_depth_and_activities() {
        let config = crate::NodeInput::root(10, 4, 2, "square_number").config;
        let leaf = |first: u64, last: u64, depth| {
            let range = ItemRange::new(first, last);
            NodeResult::leaf(
                range,
                depth,
                config.clone(),
                outputs(range.items().map(|i| i * i)),
                range.len(),
            )
        };
        let left = NodeResult::merge(
            ItemRange::new(1, 8),
            1,
            config.clone(),
            [leaf(1, 4, 2), leaf(5, 8, 2)],
        );
        let root = NodeResult::merge(
            ItemRange::new(1, 10),
            0,
            config.clone(),
            [left, leaf(9, 10, 1)],
        );
        assert_eq!(root.workflows, 5);
        assert_eq!(root.activities, 10);
        assert_eq!(root.max_depth, 2);
        assert_eq!(root.outputs, outputs((1..=10).map(|i| i * i)));
    }
}
