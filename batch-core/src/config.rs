//! A batch's parameters and a tree node's input, with the validation every node applies.
//!
//! Validation lives here (not only in the starter) because any Temporal client may start the
//! workflow: the workflow validates its own input and fails fast with these messages.

use serde::{Deserialize, Serialize};

use crate::plan::ItemRange;
pub use crate::plugin_ref::{MAX_PLUGIN_NAME, PluginRef};

/// Largest n accepted. Every count fits a `u64` and every sum of `u64` outputs fits a `u128`
/// far beyond this; the bound keeps ids and JSON numbers readable and exact in any client.
pub const MAX_ITEMS: u64 = 1_000_000_000_000_000_000;
/// Largest fan-out of a node. Temporal allows 2,000 pending children per execution; staying
/// at half of that leaves room for retries and keeps each parent's history small.
pub const MAX_CHILDREN: u64 = 1_000;
/// Largest leaf in the per-item modes: a leaf holds one activity (or local activity) per item.
/// With the in-flight window below it never has more than `max_in_flight` pending at once, and
/// 1,000 items keep a leaf's history near 3,000 events (the limit is 51,200).
pub const MAX_BATCH_SIZE: u64 = 1_000;
/// Largest leaf in `batch` mode, where a leaf is one activity running the plugin over its range
/// in one instance (about 0.1 µs per item of overhead, heartbeating its progress).
pub const MAX_BATCH_SIZE_BATCH_MODE: u64 = 1_000_000_000;
/// Upper bound of the per-node in-flight window (Temporal allows 2,000 pending activities and
/// 2,000 pending children per execution).
pub const MAX_IN_FLIGHT: u64 = 1_000;
/// Default of the batch-wide cap on leaves running at once (see [`BatchConfig::max_leaves_in_flight`]).
/// 200 leaves of 10 items keep ~2,000 activities pending, twenty times a default worker's
/// slots, and about 250 workflows open (siblings share their ancestors): within a default
/// worker's sticky cache (1,000), so workflows are not evicted and replayed over and over
/// however large n is (the worker's memory with and without it: `docs/benchmarks.md`).
pub const DEFAULT_MAX_LEAVES_IN_FLIGHT: u64 = 200;
/// Upper bound of that cap.
pub const MAX_LEAVES_IN_FLIGHT: u64 = 100_000;
/// Most activities a batch may ask to have pending at once (leaves in flight times each
/// leaf's own window; one per leaf in `batch` mode): bounds the load any Temporal client can
/// put on the server and the workers with one workflow input. The defaults a client gets by
/// omitting the fields (200 leaves x a window of 1,000) are exactly at it.
pub const MAX_ACTIVITIES_IN_FLIGHT: u64 = 200_000;
/// Deepest nesting a node may claim. Every split at least halves a range (max_children >= 2),
/// so no batch of at most [`MAX_ITEMS`] (< 2^60) items is deeper than 60.
pub const MAX_DEPTH: u32 = 64;
/// Items of an `item` or `local` batch pending at once under the starter's default leaf budget
/// (200 leaves of 10 items). Counting leaves alone would let large leaves flood the server:
/// sticky tasks time out and workflows are replayed over and over, which costs time and worker
/// memory (figures at n=10^5 with leaves of 100: `docs/benchmarks.md`).
pub const DEFAULT_ITEMS_IN_FLIGHT: u64 = 2_000;

/// The starter's default `max_leaves_in_flight`: in `item` and `local` modes, enough leaves to
/// keep [`DEFAULT_ITEMS_IN_FLIGHT`] items pending (at least one leaf); in `batch` mode, where a
/// leaf is a single activity, [`DEFAULT_MAX_LEAVES_IN_FLIGHT`].
pub fn default_leaf_budget(mode: LeafMode, batch_size: u64) -> u64 {
    match mode {
        LeafMode::Item | LeafMode::Local => (DEFAULT_ITEMS_IN_FLIGHT / batch_size.max(1)).max(1),
        LeafMode::Batch => DEFAULT_MAX_LEAVES_IN_FLIGHT,
    }
}

/// How a leaf runs the plugin over its items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeafMode {
    /// One activity per item, as in the demo: each item is scheduled, retried and recorded on
    /// its own, and can run on any worker.
    #[default]
    Item,
    /// One local activity per item: run by the worker that runs the leaf, recorded as a marker,
    /// without a task-queue round trip.
    Local,
    /// One activity per leaf running the plugin over the whole range in a single instance,
    /// heartbeating its progress so that a retry resumes where the last attempt stopped.
    Batch,
}

impl LeafMode {
    pub const ALL: [LeafMode; 3] = [LeafMode::Item, LeafMode::Local, LeafMode::Batch];

    pub fn as_str(self) -> &'static str {
        match self {
            LeafMode::Item => "item",
            LeafMode::Local => "local",
            LeafMode::Batch => "batch",
        }
    }

    /// The largest leaf this mode allows.
    pub fn max_batch_size(self) -> u64 {
        match self {
            LeafMode::Item | LeafMode::Local => MAX_BATCH_SIZE,
            LeafMode::Batch => MAX_BATCH_SIZE_BATCH_MODE,
        }
    }
}

impl std::fmt::Display for LeafMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LeafMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LeafMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown mode {s:?}: expected item, local or batch"))
    }
}

fn default_max_in_flight() -> u64 {
    MAX_IN_FLIGHT
}

fn default_max_leaves_in_flight() -> u64 {
    DEFAULT_MAX_LEAVES_IN_FLIGHT
}
/// A plugin as a worker lists it: a loaded version, or why its file is not usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    /// sha256 of the version in service, when one loaded.
    pub digest: Option<String>,
    /// The interface it implements, e.g. `batch:plugin/compute@1.0.0`.
    pub interface: Option<String>,
    /// The items it takes, as it states them (`numbers`, `text`, `json`, `csv-row`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    pub size: Option<u64>,
    /// Why the file cannot be used (or why an older version is still in service).
    pub error: Option<String>,
}

/// The parameters of a whole batch, carried unchanged from the root to every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchConfig {
    /// A node whose range holds at most this many items is a leaf.
    pub batch_size: u64,
    /// An inner node starts at most this many children.
    pub max_children: u64,
    pub plugin: PluginRef,
    /// How leaves run the plugin.
    #[serde(default)]
    pub mode: LeafMode,
    /// At most this many children or activities of one node are in flight at once; the rest
    /// wait for a slot. Bounds the load a huge batch puts on the server.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u64,
    /// At most this many leaves of the whole batch run at once: each node shares its budget
    /// among its children ([`crate::plan::share_leaf_budget`]), so the workflows open at once
    /// stay under `max_leaves_in_flight × (depth + 1)` at any n. Bounds the server's load and
    /// the workers' cache, where `max_in_flight` alone bounds only one node.
    #[serde(default = "default_max_leaves_in_flight")]
    pub max_leaves_in_flight: u64,
    /// The plugin's configuration (`--plugin-config`), passed to every instance's `configure`
    /// (interface v2). Absent from the JSON when there is none, so a batch without one has
    /// exactly the payloads it always had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_config: Option<crate::PluginConfig>,
    /// Where the items come from when they are not the range `1..=n` (`--source`): then the
    /// tree's item positions are the object's byte positions, and each leaf is a split
    /// ([`crate::source`]). Absent from the JSON for a range batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::DataSource>,
    /// Where a data batch writes its outputs (`--output`): a directory or an object-store
    /// prefix ([`crate::output`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// How the output's parts are encoded (`--output-format`, `--output-compression`,
    /// `--output-schema`); absent from the JSON for plain JSON Lines, as outputs have always been.
    #[serde(
        default,
        skip_serializing_if = "crate::output_format::OutputEncoding::is_default"
    )]
    pub output_encoding: crate::output_format::OutputEncoding,
    /// How many failed items the batch tolerates (`--max-failures`, `--max-failure-ratio`);
    /// absent from the JSON when none, as a batch has always been.
    #[serde(default, skip_serializing_if = "crate::Tolerance::is_none")]
    pub tolerance: crate::Tolerance,
    /// A retry batch (`--retry-failed`): the earlier batch whose failed items it re-runs.
    /// Its items are then a list ([`NodeInput::items`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<crate::retry::RetryOf>,
    /// Outbound HTTP for the batch's plugin (`--http-allow`, `--rate-limit`, ...); absent from
    /// the JSON for a batch that calls nothing, as batches have always been.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<crate::http::HttpPolicy>,
}

impl BatchConfig {
    /// What each leaf's activity gets of the batch's HTTP, if it has any.
    pub fn http_task(&self) -> Option<crate::http::HttpTask> {
        self.http.clone().map(|policy| crate::http::HttpTask {
            leaves_in_flight: policy.leaves_in_flight(self.max_leaves_in_flight),
            policy,
        })
    }
}

/// The input of one tree node: a range of items, never the items themselves, so it stays a
/// few dozen bytes at any n.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInput {
    pub first: u64,
    pub last: u64,
    /// Nesting level of this node; the root is 0.
    #[serde(default)]
    pub depth: u32,
    pub config: BatchConfig,
    /// How many leaves this subtree may run at once; the root's is the batch's
    /// `max_leaves_in_flight` (absent from a root's input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_budget: Option<u64>,
    /// A retry batch's items at this node's positions `first..=last` (see [`crate::retry`]):
    /// sorted item indexes (of a range, or byte positions of a data source's records). Absent
    /// for every other batch, whose items are the positions themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<u64>>,
}

impl NodeInput {
    /// The root of a batch over items `1..=n`.
    pub fn root(n: u64, batch_size: u64, max_children: u64, plugin: &str) -> Self {
        Self {
            first: 1,
            last: n,
            depth: 0,
            config: BatchConfig {
                batch_size,
                max_children,
                plugin: PluginRef::named(plugin),
                mode: LeafMode::Item,
                max_in_flight: MAX_IN_FLIGHT,
                max_leaves_in_flight: DEFAULT_MAX_LEAVES_IN_FLIGHT,
                plugin_config: None,
                source: None,
                output: None,
                output_encoding: Default::default(),
                tolerance: crate::Tolerance::default(),
                retry_of: None,
                http: None,
            },
            leaf_budget: None,
            items: None,
        }
    }

    /// The leaves this node's subtree may run at once.
    pub fn leaf_budget(&self) -> u64 {
        self.leaf_budget.unwrap_or(self.config.max_leaves_in_flight)
    }

    pub fn range(&self) -> ItemRange {
        ItemRange::new(self.first, self.last)
    }

    /// Checks everything a node relies on; the message says what is wrong and what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.first == 0 {
            return Err(ConfigError::FirstItemZero);
        }
        if self.last < self.first {
            return Err(ConfigError::EmptyRange {
                first: self.first,
                last: self.last,
            });
        }
        if self.last > MAX_ITEMS {
            return Err(ConfigError::TooManyItems(self.last));
        }
        validate_batch_size(self.config.batch_size, self.config.mode)?;
        validate_max_in_flight(self.config.max_in_flight)?;
        validate_max_leaves_in_flight(self.config.max_leaves_in_flight)?;
        if let Some(budget) = self.leaf_budget
            && !(1..=self.config.max_leaves_in_flight).contains(&budget)
        {
            return Err(ConfigError::LeafBudget {
                got: budget,
                max: self.config.max_leaves_in_flight,
            });
        }
        validate_max_children(self.config.max_children)?;
        validate_activities_in_flight(&self.config)?;
        if self.depth > MAX_DEPTH {
            return Err(ConfigError::Depth(self.depth));
        }
        validate_plugin_name(&self.config.plugin.name)?;
        if let Some(digest) = &self.config.plugin.digest {
            validate_digest(digest)?;
        }
        if let Some(config) = &self.config.plugin_config {
            config.validate()?;
        }
        validate_data(&self.config)?;
        if let Some(http) = &self.config.http {
            if self.config.mode != LeafMode::Batch {
                return Err(crate::http::HttpError::Mode(self.config.mode).into());
            }
            http.validate(http.leaves_in_flight(self.config.max_leaves_in_flight))?;
            if self.config.output_encoding.needs_schema() {
                return Err(crate::http::HttpError::SchemaInference.into());
            }
        }
        let source = self.config.source.as_ref();
        match &self.items {
            Some(items) => {
                let max_item = source.map_or(MAX_ITEMS, |s| s.max_index());
                crate::retry::validate_items(items, self.first, self.last, max_item)?;
            }
            None if self.last > source.map_or(MAX_ITEMS, |s| s.size) => {
                return Err(ConfigError::BeyondSource {
                    last: self.last,
                    size: source.map_or(MAX_ITEMS, |s| s.size),
                });
            }
            None => {}
        }
        if self.config.retry_of.is_some() != self.items.is_some() {
            return Err(ConfigError::RetryItems);
        }
        Ok(())
    }
}

/// Checks a batch's source and output: a data source runs in `batch` mode, an output needs a
/// data source, and both locations are well formed.
pub fn validate_data(config: &BatchConfig) -> Result<(), ConfigError> {
    use crate::source::{SourceError, validate_location};
    if let Some(source) = &config.source {
        source.validate()?;
        if config.mode != LeafMode::Batch {
            return Err(SourceError::Mode(config.mode).into());
        }
    }
    if let Some(output) = &config.output {
        if config.source.is_none() {
            return Err(SourceError::OutputWithoutSource.into());
        }
        validate_location(output)?;
    }
    if !config.output_encoding.is_default() && config.output.is_none() {
        return Err(ConfigError::EncodingWithoutOutput);
    }
    config.output_encoding.validate()?;
    Ok(())
}

/// Why a batch or node input is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("n must be at least 1 (got 0): a batch processes the items 1..=n")]
    NoItems,
    #[error(transparent)]
    PluginConfig(#[from] crate::plugin_config::PluginConfigError),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error("the range ends at byte {last}, past the source's {size} bytes")]
    BeyondSource { last: u64, size: u64 },
    #[error(transparent)]
    Retry(#[from] crate::retry::RetryError),
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    #[error(transparent)]
    Encoding(#[from] crate::output_format::EncodingError),
    #[error("an output format, compression or schema needs an output (--output)")]
    EncodingWithoutOutput,
    #[error("a retry batch (retry_of) and only a retry batch has a list of items")]
    RetryItems,
    #[error("n must be at most {MAX_ITEMS} (got {0})")]
    TooManyItems(u64),
    #[error("the first item must be at least 1 (got 0): items are numbered from 1")]
    FirstItemZero,
    #[error("the range {first}..={last} is empty: last must be at least first")]
    EmptyRange { first: u64, last: u64 },
    #[error("batch_size must be between 1 and {max} in {mode} mode (got {got})")]
    BatchSize { got: u64, max: u64, mode: LeafMode },
    #[error("max_in_flight must be between 1 and {MAX_IN_FLIGHT} (got {0})")]
    MaxInFlight(u64),
    #[error("max_leaves_in_flight must be between 1 and {MAX_LEAVES_IN_FLIGHT} (got {0})")]
    MaxLeavesInFlight(u64),
    #[error("leaf_budget must be between 1 and the batch's max_leaves_in_flight {max} (got {got})")]
    LeafBudget { got: u64, max: u64 },
    #[error(
        "the batch asks for up to {got} activities in flight (max_leaves_in_flight {leaves} x \
         {per_leaf} per leaf), over the limit of {MAX_ACTIVITIES_IN_FLIGHT}: lower \
         max_leaves_in_flight or max_in_flight"
    )]
    ActivitiesInFlight {
        got: u64,
        leaves: u64,
        per_leaf: u64,
    },
    #[error("depth must be at most {MAX_DEPTH} (got {0}): no batch nests deeper")]
    Depth(u32),
    #[error(
        "max_children must be between 2 and {MAX_CHILDREN} (got {0}): a node with fewer than 2 \
         children would never shrink its range"
    )]
    MaxChildren(u64),
    #[error(
        "plugin name {0:?} is invalid: use 1 to {MAX_PLUGIN_NAME} lowercase letters, digits or \
         '_', starting with a letter (for example square_number)"
    )]
    PluginName(String),
    #[error("plugin digest {0:?} is invalid: expected 64 lowercase hex digits (sha256)")]
    PluginDigest(String),
}

pub fn validate_n(n: u64) -> Result<(), ConfigError> {
    match n {
        0 => Err(ConfigError::NoItems),
        n if n > MAX_ITEMS => Err(ConfigError::TooManyItems(n)),
        _ => Ok(()),
    }
}

pub fn validate_batch_size(batch_size: u64, mode: LeafMode) -> Result<(), ConfigError> {
    let max = mode.max_batch_size();
    if (1..=max).contains(&batch_size) {
        Ok(())
    } else {
        Err(ConfigError::BatchSize {
            got: batch_size,
            max,
            mode,
        })
    }
}

pub fn validate_max_in_flight(max_in_flight: u64) -> Result<(), ConfigError> {
    if (1..=MAX_IN_FLIGHT).contains(&max_in_flight) {
        Ok(())
    } else {
        Err(ConfigError::MaxInFlight(max_in_flight))
    }
}

pub fn validate_max_leaves_in_flight(max: u64) -> Result<(), ConfigError> {
    if (1..=MAX_LEAVES_IN_FLIGHT).contains(&max) {
        Ok(())
    } else {
        Err(ConfigError::MaxLeavesInFlight(max))
    }
}

/// Activities one leaf may have pending at once: its window over its items, or the one
/// activity of a `batch`-mode leaf.
pub fn activities_per_leaf(config: &BatchConfig) -> u64 {
    match config.mode {
        LeafMode::Item | LeafMode::Local => config.batch_size.min(config.max_in_flight),
        LeafMode::Batch => 1,
    }
}

/// See [`MAX_ACTIVITIES_IN_FLIGHT`].
pub fn validate_activities_in_flight(config: &BatchConfig) -> Result<(), ConfigError> {
    let per_leaf = activities_per_leaf(config);
    let got = config.max_leaves_in_flight.saturating_mul(per_leaf);
    if got <= MAX_ACTIVITIES_IN_FLIGHT {
        Ok(())
    } else {
        Err(ConfigError::ActivitiesInFlight {
            got,
            leaves: config.max_leaves_in_flight,
            per_leaf,
        })
    }
}

pub fn validate_max_children(max_children: u64) -> Result<(), ConfigError> {
    if (2..=MAX_CHILDREN).contains(&max_children) {
        Ok(())
    } else {
        Err(ConfigError::MaxChildren(max_children))
    }
}

/// Plugin names become file names and parts of workflow ids, so they are restricted to a
/// character set that can neither escape the plugins directory nor make two ids ambiguous
/// (no '-', which separates the parts of an id).
pub fn validate_plugin_name(name: &str) -> Result<(), ConfigError> {
    let mut chars = name.chars();
    let ok = name.len() <= MAX_PLUGIN_NAME
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::PluginName(name.to_owned()))
    }
}

pub fn validate_digest(digest: &str) -> Result<(), ConfigError> {
    let ok = digest.len() == 64
        && digest
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::PluginDigest(digest.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(n: u64, b: u64, c: u64, plugin: &str) -> NodeInput {
        NodeInput::root(n, b, c, plugin)
    }

    #[test]
    fn the_default_leaf_budget_keeps_two_thousand_items_pending_in_per_item_modes() {
        for mode in [LeafMode::Item, LeafMode::Local] {
            assert_eq!(default_leaf_budget(mode, 10), 200, "the demo's shape");
            assert_eq!(default_leaf_budget(mode, 100), 20);
            assert_eq!(default_leaf_budget(mode, 3), 666);
            assert_eq!(default_leaf_budget(mode, 1), 2_000);
            assert_eq!(default_leaf_budget(mode, 1_000), 2);
            assert_eq!(default_leaf_budget(mode, 5_000), 1, "at least one leaf");
            assert_eq!(default_leaf_budget(mode, 0), 2_000, "no division by zero");
        }
        assert_eq!(default_leaf_budget(LeafMode::Batch, 10), 200);
        assert_eq!(default_leaf_budget(LeafMode::Batch, 1_000_000), 200);
        for mode in LeafMode::ALL {
            for batch_size in [0, 1, 7, 10, 999, 1_000, MAX_BATCH_SIZE_BATCH_MODE] {
                let budget = default_leaf_budget(mode, batch_size);
                assert!(
                    validate_max_leaves_in_flight(budget).is_ok(),
                    "{mode:?} {batch_size}"
                );
            }
        }
    }

    #[test]
    fn accepts_the_demo_defaults_and_edges() {
        for input in [
            root(2000, 10, 5, "square_number"),
            root(1, 1, 2, "a"),
            root(MAX_ITEMS, MAX_BATCH_SIZE, MAX_CHILDREN, "cube_2"),
        ] {
            assert_eq!(input.validate(), Ok(()), "{input:?}");
        }
    }

    #[test]
    fn rejects_each_bad_field_with_its_own_message() {
        let cases = [
            (
                root(2000, 0, 5, "x"),
                "batch_size must be between 1 and 1000 in item mode (got 0)",
            ),
            (
                root(2000, 1001, 5, "x"),
                "batch_size must be between 1 and 1000 in item mode (got 1001)",
            ),
            (
                root(2000, 10, 0, "x"),
                "max_children must be between 2 and 1000 (got 0)",
            ),
            (
                root(2000, 10, 1, "x"),
                "max_children must be between 2 and 1000 (got 1)",
            ),
            (
                root(2000, 10, 1001, "x"),
                "max_children must be between 2 and 1000 (got 1001)",
            ),
            (root(MAX_ITEMS + 1, 10, 5, "x"), "n must be at most"),
            (root(2000, 10, 5, ""), "plugin name \"\" is invalid"),
            (root(2000, 10, 5, "../x"), "plugin name \"../x\" is invalid"),
            (
                root(2000, 10, 5, "/etc/passwd"),
                "plugin name \"/etc/passwd\" is invalid",
            ),
            (
                root(2000, 10, 5, "Square"),
                "plugin name \"Square\" is invalid",
            ),
            (root(2000, 10, 5, "a-b"), "plugin name \"a-b\" is invalid"),
            (root(2000, 10, 5, "1abc"), "plugin name \"1abc\" is invalid"),
        ];
        for (input, expected) in cases {
            let message = input.validate().expect_err("must be rejected").to_string();
            assert!(message.starts_with(expected), "{message:?} vs {expected:?}");
        }
    }

    #[test]
    fn activities_in_flight_and_depth_are_bounded_for_any_client() {
        let mut input = root(MAX_ITEMS, MAX_BATCH_SIZE, 5, "x");
        assert_eq!(input.validate(), Ok(()), "the defaults are at the bound");
        input.config.max_leaves_in_flight = 201;
        assert_eq!(
            input.validate().expect_err("over").to_string(),
            "the batch asks for up to 201000 activities in flight (max_leaves_in_flight 201 x \
             1000 per leaf), over the limit of 200000: lower max_leaves_in_flight or max_in_flight"
        );
        // The window, not the leaf size, is what a leaf keeps pending.
        input.config.max_in_flight = 10;
        assert_eq!(input.validate(), Ok(()));
        input.config.max_leaves_in_flight = MAX_LEAVES_IN_FLIGHT;
        input.config.max_in_flight = 3;
        assert!(input.validate().is_err(), "100,000 leaves x 3");
        // In batch mode a leaf is one activity.
        input.config.mode = LeafMode::Batch;
        assert_eq!(input.validate(), Ok(()));

        let mut deep = root(2000, 10, 5, "x");
        deep.depth = MAX_DEPTH;
        assert_eq!(deep.validate(), Ok(()));
        deep.depth = u32::MAX;
        assert_eq!(
            deep.validate().expect_err("too deep").to_string(),
            "depth must be at most 64 (got 4294967295): no batch nests deeper"
        );
    }

    #[test]
    fn batch_mode_allows_large_leaves_and_the_window_is_bounded() {
        let mut input = root(100_000_000, 1_000_000, 10, "square_number");
        assert!(input.validate().is_err());
        input.config.mode = LeafMode::Batch;
        assert_eq!(input.validate(), Ok(()));
        input.config.batch_size = MAX_BATCH_SIZE_BATCH_MODE + 1;
        assert!(
            input
                .validate()
                .expect_err("too big")
                .to_string()
                .contains("in batch mode")
        );
        input.config.batch_size = 10;
        input.config.max_in_flight = 0;
        assert_eq!(input.validate(), Err(ConfigError::MaxInFlight(0)));
        input.config.max_in_flight = MAX_IN_FLIGHT + 1;
        assert!(input.validate().is_err());
        for mode in LeafMode::ALL {
            assert_eq!(mode.as_str().parse::<LeafMode>(), Ok(mode));
            assert_eq!(serde_json::to_value(mode).expect("json"), mode.as_str());
        }
        assert!("fast".parse::<LeafMode>().is_err());
    }

    #[test]
    fn rejects_empty_and_zero_based_ranges() {
        let mut input = root(10, 10, 5, "x");
        input.first = 0;
        assert_eq!(input.validate(), Err(ConfigError::FirstItemZero));
        input.first = 11;
        assert_eq!(
            input.validate(),
            Err(ConfigError::EmptyRange {
                first: 11,
                last: 10
            })
        );
        assert_eq!(validate_n(0), Err(ConfigError::NoItems));
    }

    #[test]
    fn plugin_names_cannot_be_too_long_and_digests_must_be_sha256_hex() {
        assert!(validate_plugin_name(&"a".repeat(MAX_PLUGIN_NAME)).is_ok());
        assert!(validate_plugin_name(&"a".repeat(MAX_PLUGIN_NAME + 1)).is_err());
        assert!(validate_digest(&"ab".repeat(32)).is_ok());
        assert!(validate_digest(&"AB".repeat(32)).is_err());
        assert!(validate_digest("abc").is_err());
    }

    #[test]
    fn input_round_trips_through_json_and_depth_defaults_to_zero() {
        let input = root(2000, 10, 5, "square_number");
        let json = serde_json::to_string(&input).expect("serialize");
        assert_eq!(
            serde_json::from_str::<NodeInput>(&json).expect("parse"),
            input
        );
        let hand_written = r#"{"first":1,"last":5,"config":{"batch_size":2,"max_children":2,"plugin":{"name":"cube"}}}"#;
        let parsed: NodeInput = serde_json::from_str(hand_written).expect("parse");
        assert_eq!(parsed.depth, 0);
        assert_eq!(parsed.config.plugin, PluginRef::named("cube"));
        assert_eq!(parsed.config.mode, LeafMode::Item);
        assert_eq!(parsed.config.max_in_flight, MAX_IN_FLIGHT);
    }
}
