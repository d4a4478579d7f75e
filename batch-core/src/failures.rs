//! Items that failed for good, and how many of them a batch tolerates (`--max-failures`,
//! `--max-failure-ratio`).
//!
//! An item fails for good when the plugin refuses it, traps on it, runs past its deadline on it
//! or breaks the interface on it, or when its record cannot become an item (a CSV row that does
//! not fit the header): another attempt would only repeat it. Everything else (a plugin that
//! cannot be loaded or configured, a source that cannot be read, a worker's condition) is not
//! an item's failure and still fails the batch whatever the tolerance.
//!
//! Failures travel up the tree as [`Failures`]: counts by kind, the first [`SAMPLES`] items with
//! their reasons, and every failed item's index while there are at most [`KEPT_INDEXES`], so a
//! result stays a few kilobytes at any n. A batch with an output also writes every failure to a
//! `failed/` part per leaf ([`crate::output`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Failed items kept with their reasons in a result (the first ones, in item order).
pub const SAMPLES: usize = 10;
/// Failed items whose indexes a result keeps, so that `--retry-failed` can re-run them without
/// an output; past this many only the counts and samples are kept.
pub const KEPT_INDEXES: usize = 1_000;
/// Bytes of a failure's reason kept in a result or a `failed/` part.
pub const REASON_BYTES: usize = 512;
/// Bytes of an input kept as its excerpt in a `failed/` part.
pub const EXCERPT_BYTES: usize = 256;
/// One million: ratios are carried in parts per million, so configurations stay integers
/// (exactly comparable, hashable, the same in every client).
pub const PPM: u64 = 1_000_000;

pub use crate::failure_kind::FailureKind;

/// How many failed items a batch tolerates. With neither bound set nothing is tolerated: the
/// first failed item fails the batch, as it always did. With both, the stricter applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Tolerance {
    /// `--max-failures`: at most this many failed items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<u64>,
    /// `--max-failure-ratio`, in parts per million of the batch's items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failure_ppm: Option<u64>,
    /// The batch's items, when known before it starts (a range batch: n), so that the ratio
    /// bounds failures from the start. A data batch learns its item count only at the end,
    /// where its ratio is checked. Set by the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<u64>,
}

impl Tolerance {
    /// Neither bound is set: today's behaviour.
    pub fn is_none(&self) -> bool {
        self.max_failures.is_none() && self.max_failure_ppm.is_none()
    }

    /// Parses `--max-failure-ratio`: a fraction (`0.01`) or a percentage (`1%`), from 0 to 1,
    /// to a millionth.
    pub fn parse_ratio(text: &str) -> Result<u64, String> {
        let bad = || {
            format!(
                "invalid failure ratio {text:?}: expected a fraction from 0 to 1 (0.01) or a \
                 percentage (1%), to a millionth"
            )
        };
        let (number, scale) = match text.trim().strip_suffix('%') {
            Some(percent) => (percent.trim(), PPM / 100),
            None => (text.trim(), PPM),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        // Exact decimal arithmetic: whole * scale + fraction * scale / 10^len.
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let digits = fraction.trim_end_matches('0');
        let mut ppm = whole.checked_mul(scale).ok_or_else(bad)?;
        let mut unit = scale;
        for digit in digits.bytes() {
            if unit % 10 != 0 {
                return Err(bad()); // finer than a millionth
            }
            unit /= 10;
            ppm += u64::from(digit - b'0') * unit;
        }
        if ppm > PPM {
            return Err(format!(
                "invalid failure ratio {text:?}: it must be at most 1 (100%)"
            ));
        }
        Ok(ppm)
    }

    /// The most failed items allowed, when it is known before the end: the count, the ratio
    /// of a known item count, the smaller of both, or 0 when nothing is tolerated. `None` when
    /// only a ratio is set and the items are not known yet (a data batch before its end).
    pub fn limit(&self) -> Option<u64> {
        let by_ratio = match (self.max_failure_ppm, self.items) {
            (Some(ppm), Some(items)) => Some(ratio_of(items, ppm)),
            _ => None,
        };
        match (self.max_failures, by_ratio, self.max_failure_ppm) {
            (Some(count), Some(ratio), _) => Some(count.min(ratio)),
            (Some(count), None, _) => Some(count),
            (None, Some(ratio), _) => Some(ratio),
            (None, None, Some(_)) => None,
            (None, None, None) => Some(0),
        }
    }

    /// Whether `failed` items already exceed what the batch tolerates (so its work so far can
    /// be abandoned).
    pub fn exceeded_by(&self, failed: u64) -> bool {
        self.limit().is_some_and(|limit| failed > limit)
    }

    /// The check at the end of a batch, when its `items` are known: `Err` says why the batch
    /// fails.
    pub fn check_final(&self, failed: u64, items: u64) -> Result<(), String> {
        let known = Tolerance {
            items: Some(items),
            ..*self
        };
        match known.limit() {
            Some(limit) if failed > limit => Err(format!(
                "{failed} of {items} items failed, more than the batch tolerates ({})",
                known.describe()
            )),
            _ => Ok(()),
        }
    }

    /// The tolerance in words, for messages and the summary: "none", "at most 5 items",
    /// "at most 1% of the items (20 of 2000)", or both.
    pub fn describe(&self) -> String {
        let ratio = self.max_failure_ppm.map(|ppm| {
            let of = self
                .items
                .map(|items| format!(" ({} of {items})", ratio_of(items, ppm)))
                .unwrap_or_default();
            format!("at most {} of the items{of}", percent(ppm))
        });
        let count = self.max_failures.map(|n| format!("at most {n} items"));
        match (count, ratio) {
            (Some(count), Some(ratio)) => format!("{count} and {ratio}"),
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => "none".to_owned(),
        }
    }
}

/// `items × ppm / 10^6`, rounded down, exactly.
fn ratio_of(items: u64, ppm: u64) -> u64 {
    let exact = u128::from(items) * u128::from(ppm) / u128::from(PPM);
    u64::try_from(exact).unwrap_or(u64::MAX)
}

/// Parts per million as a percentage without trailing zeros: 10000 -> "1%", 2500 -> "0.25%".
pub fn percent(ppm: u64) -> String {
    let whole = ppm / 10_000;
    let fraction = ppm % 10_000;
    if fraction == 0 {
        format!("{whole}%")
    } else {
        let digits = format!("{fraction:04}");
        format!("{whole}.{}%", digits.trim_end_matches('0'))
    }
}

/// One failed item: its index (its position in a range, or its record's first byte in a data
/// source), the failure's kind and its reason (bounded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedItem {
    pub index: u64,
    pub kind: FailureKind,
    pub reason: String,
}

impl FailedItem {
    pub fn new(index: u64, kind: FailureKind, reason: &str) -> Self {
        Self {
            index,
            kind,
            reason: crate::text::shown(reason, REASON_BYTES),
        }
    }
}

/// The failed items of a contiguous run of items, in item order (see the module's
/// documentation). Absent from JSON when empty, so results without failures are unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    pub count: u64,
    /// Failed items per kind.
    pub by_kind: BTreeMap<FailureKind, u64>,
    /// The first [`SAMPLES`] failed items, in item order.
    pub samples: Vec<FailedItem>,
    /// Every failed item's index, in order, while there are at most [`KEPT_INDEXES`]; empty
    /// past that ([`Failures::indexes_complete`] says which).
    pub indexes: Vec<u64>,
}

impl Failures {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether [`Self::indexes`] lists every failed item.
    pub fn indexes_complete(&self) -> bool {
        self.indexes.len() as u64 == self.count
    }

    /// Appends the failure of the item that follows the ones already counted.
    pub fn push(&mut self, item: FailedItem) {
        self.count += 1;
        *self.by_kind.entry(item.kind).or_default() += 1;
        if self.count <= KEPT_INDEXES as u64 {
            self.indexes.push(item.index);
        } else {
            self.indexes.clear();
        }
        if self.samples.len() < SAMPLES {
            self.samples.push(item);
        }
    }

    /// The failures of `self`'s items followed by `next`'s items.
    pub fn then(mut self, next: Failures) -> Failures {
        let count = self.count + next.count;
        if count <= KEPT_INDEXES as u64 {
            self.indexes.extend(next.indexes);
        } else {
            self.indexes.clear();
        }
        self.count = count;
        for (kind, n) in next.by_kind {
            *self.by_kind.entry(kind).or_default() += n;
        }
        let room = SAMPLES.saturating_sub(self.samples.len());
        self.samples.extend(next.samples.into_iter().take(room));
        self
    }

    /// Why the items `first..=last` fail their batch: how many failed against what it
    /// tolerates, and the first of them.
    pub fn exceeded_message(&self, tolerance: &Tolerance, first: u64, last: u64) -> String {
        format!(
            "{} items in {first}..={last} failed, more than the batch tolerates ({}){}",
            self.count,
            tolerance.describe(),
            self.first_failed()
        )
    }

    /// "; first, item 5: reason" (the first failed item), or nothing: the end of a message.
    pub fn first_failed(&self) -> String {
        self.samples
            .first()
            .map(|item| format!("; first, item {}: {}", item.index, item.reason))
            .unwrap_or_default()
    }

    /// "PluginRefusedItem 3, PluginTrapped 1", for the summary.
    pub fn kinds(&self) -> String {
        self.by_kind
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(index: u64) -> FailedItem {
        let kind = if index.is_multiple_of(2) {
            FailureKind::PluginRefusedItem
        } else {
            FailureKind::PluginTrapped
        };
        FailedItem::new(index, kind, "no")
    }

    #[test]
    fn ratios_parse_exactly_to_a_millionth() {
        for (text, ppm) in [
            ("0", 0),
            ("1", PPM),
            ("0.01", 10_000),
            (".5", 500_000),
            ("1%", 10_000),
            ("0.25%", 2_500),
            ("100%", PPM),
            ("0.000001", 1),
            ("0.0000010", 1),
            ("0.0001%", 1),
        ] {
            assert_eq!(Tolerance::parse_ratio(text), Ok(ppm), "{text}");
        }
        for text in [
            "",
            ".",
            "-1",
            "1.5",
            "101%",
            "0.0000001",
            "a",
            "1e-3",
            "0.00001%",
        ] {
            assert!(Tolerance::parse_ratio(text).is_err(), "{text}");
        }
    }

    #[test]
    fn the_limit_is_the_stricter_bound_known_so_far() {
        let none = Tolerance::default();
        assert_eq!(none.limit(), Some(0));
        assert!(none.exceeded_by(1) && !none.exceeded_by(0));
        let count = Tolerance {
            max_failures: Some(5),
            ..none
        };
        assert_eq!(count.limit(), Some(5));
        let ratio = Tolerance {
            max_failure_ppm: Some(10_000),
            ..none
        };
        assert_eq!(
            ratio.limit(),
            None,
            "a ratio of unknown items bounds nothing yet"
        );
        assert!(!ratio.exceeded_by(u64::MAX));
        let known = Tolerance {
            items: Some(2_000),
            ..ratio
        };
        assert_eq!(known.limit(), Some(20));
        let both = Tolerance {
            max_failures: Some(5),
            ..known
        };
        assert_eq!(both.limit(), Some(5));
        assert_eq!(
            Tolerance {
                max_failures: Some(50),
                ..known
            }
            .limit(),
            Some(20)
        );
    }

    #[test]
    fn the_final_check_applies_the_ratio_to_the_items_processed() {
        let ratio = Tolerance {
            max_failure_ppm: Some(10_000),
            ..Tolerance::default()
        };
        assert_eq!(ratio.check_final(10, 1_000), Ok(()));
        assert_eq!(
            ratio.check_final(11, 1_000),
            Err(
                "11 of 1000 items failed, more than the batch tolerates (at most 1% of the \
                 items (10 of 1000))"
                    .to_owned()
            )
        );
        assert!(Tolerance::default().check_final(1, 1).is_err());
        assert_eq!(Tolerance::default().check_final(0, 1), Ok(()));
    }

    #[test]
    fn percentages_print_without_trailing_zeros() {
        assert_eq!(percent(10_000), "1%");
        assert_eq!(percent(2_500), "0.25%");
        assert_eq!(percent(1), "0.0001%");
        assert_eq!(percent(PPM), "100%");
    }

    /// Merging the failures of consecutive runs, at every cut and across the index bound, is
    /// the same as pushing every failure in order.
    #[test]
    fn merged_failures_equal_failures_pushed_in_order() {
        for total in [0u64, 1, 9, 10, 11, 999, 1_000, 1_001, 2_500] {
            let mut whole = Failures::default();
            (1..=total).for_each(|i| whole.push(failed(i * 3)));
            assert_eq!(whole.count, total);
            assert_eq!(whole.indexes_complete(), total <= KEPT_INDEXES as u64);
            assert_eq!(whole.samples.len(), (total as usize).min(SAMPLES));
            for cut in [0, 1, total / 2, total.saturating_sub(1), total] {
                let cut = cut.min(total);
                let (mut a, mut b) = (Failures::default(), Failures::default());
                (1..=cut).for_each(|i| a.push(failed(i * 3)));
                (cut + 1..=total).for_each(|i| b.push(failed(i * 3)));
                assert_eq!(a.then(b), whole, "total {total}, cut {cut}");
            }
        }
    }

    #[test]
    fn reasons_are_bounded() {
        let item = FailedItem::new(1, FailureKind::PluginTrapped, &"x".repeat(10_000));
        assert!(
            item.reason.len() < REASON_BYTES + 64,
            "{}",
            item.reason.len()
        );
        assert!(item.reason.ends_with("[truncated: 10000 bytes in all]"));
    }

    #[test]
    fn only_an_items_own_failures_are_tolerated() {
        use FailureKind as K;
        assert!(K::PluginRefusedItem.is_item_failure() && K::BadRecord.is_item_failure());
        for kind in [
            K::PluginNotFound,
            K::DataUnavailable,
            K::PluginRefusedConfig,
            K::PluginHostBusy,
        ] {
            assert!(!kind.is_item_failure(), "{kind}");
        }
    }
}
