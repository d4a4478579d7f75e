//! `starter [N] [BATCH_SIZE] [MAX_CHILDREN] [--plugin NAME]`: validates the batch, starts its
//! root workflow (or attaches to it if that batch is already running), waits for the result
//! and prints the demo's summary block. A failed batch prints the reason and exits non-zero.

mod progress;
mod retry;
mod source;
mod web_ui;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use batch_core::connect::{ConnectOverrides, connect};
use batch_core::http::{HostPort, HttpPolicy};
use batch_core::ids::root_workflow_id;
use batch_core::objects::{ListingRef, MAX_INLINE_OBJECTS};
use batch_core::output_format::OutputEncoding;
use batch_core::summary::{render_plugin_list, render_summary};
use batch_core::workflow_ref::{BatchWorkflowRef, ListPluginsRef};
use batch_core::{
    BatchPlan, DEFAULT_PLUGIN, DEFAULT_TASK_QUEUE, Format, LeafMode, NodeInput, PluginConfig,
    PluginRef, TreeShape,
};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use temporalio_client::errors::WorkflowGetResultError;
use temporalio_client::{WorkflowGetResultOptions, WorkflowIdConflictPolicy, WorkflowStartOptions};

/// How long the starter keeps re-attaching to a batch while the server is unreachable.
const RECONNECT_FOR: std::time::Duration = std::time::Duration::from_secs(120);

const EXAMPLES: &str = "\
Examples:
  starter                        # 2000 numbers, batch_size 10, max_children 5 (the demo)
  starter 50                     # process 50 numbers
  starter 100 20                 # process 100 numbers with batch_size=20
  starter 1000 10 10             # 1000 numbers, batch_size=10, max_children=10
  starter 2000 --plugin cube     # the same tree, running the `cube` plugin
  starter 1000 --plugin mod_filter --plugin-config '{\"divisor\": 7}'   # a configured v2 plugin
  starter 2000 --mode local      # one local activity per item (no task-queue round trip)
  starter 100000000 1000000 10 --mode batch   # 10^8 items, one activity per leaf of 10^6
  starter 100000000 1000000 10 --mode batch --plan   # what that batch would do; starts nothing
  starter --source target/data/events.jsonl --plugin json_filter --plugin-config '{\"field\": \"kind\", \"equals\": \"click\"}' --output target/out/clicks-all
                                 # a JSON Lines file through a record plugin, outputs to a directory
  starter --source target/data/events.csv --plugin json_field --plugin-config '{\"field\": \"id\"}'
                                 # CSV rows reach JSON plugins as objects keyed by the header
  starter --source target/data/events.csv --plugin csv_to_json --plugin-config '{\"columns\": [\"id\", \"user\", \"country\", \"kind\", \"cents\", \"time\", \"note\"]}' --output target/out/renamed --plan
                                 # rows as written, renamed; --plan: what it would do
A worker reads and writes only what its operator granted (worker --allow-read, --allow-write).
Sources and outputs may also be s3://, gs://, az://, http(s):// or file:// URLs.";

#[derive(Debug, Parser)]
#[command(version, about = "Start a batch over the items 1..=N and print its summary", after_help = EXAMPLES)]
// One action per run: starting a batch (the default), or one of these.
#[command(group(clap::ArgGroup::new("action").multiple(false)
    .args(["attach", "cancel", "pause", "resume", "retry_failed", "list_plugins"])))]
struct Args {
    /// Number of items to process (1..=N).
    #[arg(default_value = "2000", value_parser = parse_count, allow_negative_numbers = true)]
    n: u64,
    /// Items per leaf workflow (one activity each).
    #[arg(default_value = "10", value_parser = parse_count, allow_negative_numbers = true)]
    batch_size: u64,
    /// Children per inner workflow.
    #[arg(default_value = "5", value_parser = parse_count, allow_negative_numbers = true)]
    max_children: u64,
    /// Plugin to run on each item: NAME (its current version, in the workers' plugin store or
    /// plugins directory, pinned when the batch starts) or NAME@sha256:HEX (that exact
    /// version, e.g. to roll back to one listed by `batch-plugin versions NAME`).
    #[arg(long, default_value = DEFAULT_PLUGIN, value_name = "NAME[@sha256:HEX]",
          value_parser = PluginRef::from_arg)]
    plugin: PluginRef,
    /// The plugin's configuration: JSON text, or @FILE to read it from a file (at most 16 KiB
    /// normalized). Checked before the batch starts, passed to every instance's `configure`
    /// (interface v2 plugins), shown in the summary by digest; part of the batch's identity.
    #[arg(long, value_name = "JSON|@FILE", value_parser = PluginConfig::from_arg)]
    plugin_config: Option<PluginConfig>,
    /// How leaves run the plugin: `item` (one activity per item, the demo), `local` (one local
    /// activity per item) or `batch` (one activity per leaf, the plugin looping over the range
    /// in one instance; allows batch sizes up to 10^9).
    #[arg(long, default_value = "item")]
    mode: LeafMode,
    /// At most this many children or activities of one workflow run at once (1..=1000).
    #[arg(long, default_value_t = batch_core::config::MAX_IN_FLIGHT, value_parser = parse_count, allow_negative_numbers = true)]
    max_in_flight: u64,
    /// At most this many leaves of the whole batch run at once (1..=100000): bounds the
    /// workflows open at once, hence the server's load and the workers' cache, at any n.
    /// Default: 2000 / batch_size in `item` and `local` modes (200 leaves of 10 items), 200 in
    /// `batch` mode.
    #[arg(long, value_parser = parse_count, allow_negative_numbers = true)]
    max_leaves_in_flight: Option<u64>,
    /// Read the items from this file or object instead of the range 1..=N: a path, or a
    /// file://, s3://, gs://, az:// or http(s):// URL (credentials and endpoints from the
    /// environment, as each store's own tools read them). The tree splits the object's bytes:
    /// one `batch`-mode leaf per split, reading only its split; an item's index is the byte
    /// position of its first byte. A directory or prefix (ending with /) or a glob ('*', '?',
    /// '**'; quoted) reads every object in it or matching, in name order, as one source
    /// (empty and hidden ones left out; an item's index is then object:position). The workers
    /// must be granted it (worker --allow-read).
    #[arg(long, value_name = "PATH|URL")]
    source: Option<String>,
    /// How the source's bytes become items: `lines`, `jsonl` (blank lines skipped), `csv`
    /// (a header line, then one row per line; each row given to the plugin as a JSON object,
    /// or as written to a plugin that takes CSV rows; a quoted field may not hold a line
    /// break) or `parquet` (each row a JSON object; row groups are the splits). Default: from
    /// the source's name (.jsonl/.ndjson, .csv, .parquet/.parq, else lines).
    #[arg(long, requires = "source")]
    format: Option<Format>,
    /// How the source is stored: `gzip` or `zstd` (decompressed as it is read; an item's index
    /// is then the position of its first byte in the decompressed stream; read whole by one
    /// leaf, since a compressed stream cannot be entered in the middle, unless it is made of
    /// frames: a seekable zstd stream, or gzip members indexed by NAME.gzi beside it, as
    /// `bgzip -i` writes), or `none` (read as stored). Default: from the source's name
    /// (.gz/.gzip, .zst/.zstd), else from its first bytes.
    #[arg(long, requires = "source", value_name = "gzip|zstd|none")]
    compression: Option<source::CompressionArg>,
    /// A Parquet source's columns to read (by name, comma-separated; nested ones whole); each
    /// row reaches the plugin as a JSON object of them. Default: every column.
    #[arg(
        long,
        requires = "source",
        value_name = "NAME,...",
        value_delimiter = ','
    )]
    columns: Option<Vec<String>>,
    /// A compressed source may decompress to at most this many times its compressed size
    /// (past its first 64 MiB): a stream that gives more (a decompression bomb) fails the
    /// batch. Default: 250.
    #[arg(long, requires = "source", value_name = "RATIO",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(batch_core::source::MAX_RATIO_LIMIT)))]
    max_decompression_ratio: Option<u32>,
    /// Write the outputs to this directory or object-store prefix: one part per split, in
    /// source order, then `_manifest.json`, which marks the output complete. The workers must
    /// be granted it (worker --allow-write).
    #[arg(long, value_name = "DIR|URL")]
    output: Option<String>,
    /// How the parts are written: `jsonl` (one output a line: a record's bytes, a number in
    /// decimal) or `parquet` (a file per split, every output a row of the output's one schema,
    /// a number the row {"value": N}; an output that does not fit the schema is a failed item,
    /// with the reason). Default: jsonl.
    #[arg(long, requires = "output", value_name = "jsonl|parquet")]
    output_format: Option<batch_core::output_format::OutputFormat>,
    /// Compress the parts: `gzip` or `zstd` (a JSON Lines part as one stream, named .gz or
    /// .zst; a Parquet part's column chunks) or `none`. Default: none.
    #[arg(long, requires = "output", value_name = "gzip|zstd|none")]
    output_compression: Option<source::CompressionArg>,
    /// A Parquet output's schema: a JSON object of columns and their types, e.g.
    /// '{"id": "int64", "tags": ["string"], "geo": {"lat": "float64"}}' (types in
    /// docs/operations.md), or @FILE. Default: inferred from the outputs of the source's first
    /// records, before the tree starts.
    #[arg(long, requires = "output", value_name = "JSON|@FILE")]
    output_schema: Option<String>,
    /// Bytes per split (one leaf each) of a --source, stored. Default: 64 MiB, or 8 MiB for
    /// sources that expand when read (compressed objects, Parquet), raised to keep a batch at
    /// 2000 parts at most.
    #[arg(long, value_name = "BYTES", requires = "source", value_parser = parse_count)]
    split_size: Option<u64>,
    /// Tolerate up to N items that fail for good (the plugin refuses them, traps or runs past
    /// its deadline on them, or their record is malformed): they are counted, reported (the
    /// summary, --json, and a failed/ part per split with --output) and left out, and the
    /// batch stops as soon as more fail. Default: none (the first failed item fails the
    /// batch). Part of the batch's identity.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    max_failures: Option<u64>,
    /// Tolerate failed items up to this share of the batch's items: a fraction (0.01) or a
    /// percentage (1%). With --max-failures too, the stricter applies. A data batch knows its
    /// item count only at its end, so there the ratio is checked then (add --max-failures to
    /// stop early).
    #[arg(long, value_name = "RATIO", value_parser = batch_core::Tolerance::parse_ratio)]
    max_failure_ratio: Option<u64>,
    /// Let the plugin call this host over HTTP: HOST or HOST:PORT (no port: the scheme's own, 80 or
    /// 443). Repeat it for several. The workers must grant it (worker --allow-http): another
    /// host fails the batch, naming it, before any item runs. For `batch` mode and data
    /// sources: each call takes one item, and every request carries the header
    /// `Idempotency-Key: <batch id>/<item>/<n>` (the item's n-th request, the same on every
    /// retry) and the batch's user agent.
    #[arg(long, value_name = "HOST[:PORT]", value_parser = parse_host)]
    http_allow: Vec<HostPort>,
    /// The most requests per second the whole batch sends, across every worker and leaf
    /// (each of the leaves in flight takes an equal share; --max-leaves-in-flight is lowered to
    /// N when not given). Halved for a while after a 429 or 503. Default: no limit.
    #[arg(long, value_name = "N/s", requires = "http_allow", value_parser = parse_rate)]
    rate_limit: Option<u32>,
    /// The most requests the whole batch has in flight at once, shared like --rate-limit.
    /// Default: one per leaf in flight.
    #[arg(long, value_name = "N", requires = "http_allow",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(batch_core::http::MAX_CONCURRENT)))]
    max_concurrent_requests: Option<u32>,
    /// How long one request may wait for its response (not plugin CPU), in milliseconds.
    /// A request that fails transiently (no connection, a timeout, 429, 5xx) is tried up to 4
    /// times, then its item's leaf is retried. Default: 30000.
    #[arg(long, value_name = "MS", requires = "http_allow",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(batch_core::http::MAX_TIMEOUT_MS)))]
    request_timeout_ms: Option<u32>,
    /// Start a batch over exactly the failed items of the completed batch with this root
    /// workflow id (from its failed/ parts, or from its result when it had no output), with
    /// the plugin's current version (or --plugin, --plugin-config, --mode if given), in the
    /// batch's leaf size (100 records a leaf for a data batch). A data batch's retry needs its
    /// own --output: the two outputs together hold every item once.
    #[arg(long, value_name = "WORKFLOW_ID")]
    retry_failed: Option<String>,
    /// Cancel the batch with this root workflow id: the root and every descendant workflow,
    /// and the plugin calls they run, stop; its output gets no manifest (incomplete). Waits
    /// until the root has closed.
    #[arg(long, value_name = "WORKFLOW_ID")]
    cancel: Option<String>,
    /// Pause the batch with this root workflow id: its workflows start no new children, items
    /// or leaves (work already running finishes), until --resume. The pause passes from each
    /// workflow to its running children.
    #[arg(long, value_name = "WORKFLOW_ID")]
    pause: Option<String>,
    /// Resume a batch paused with --pause.
    #[arg(long, value_name = "WORKFLOW_ID")]
    resume: Option<String>,
    /// Print the result as one JSON object (for scripts) instead of the summary block.
    #[arg(long)]
    json: bool,
    /// Print what the batch would do (the tree, the work per leaf, the largest history against
    /// Temporal's limits, the work in flight) and exit, starting nothing: needs no server.
    #[arg(long, conflicts_with = "no_wait")]
    plan: bool,
    /// Start the batch, print its workflow id and how to follow it, and exit.
    #[arg(long)]
    no_wait: bool,
    /// Wait for the batch with this root workflow id (started earlier, e.g. with --no-wait)
    /// and print its summary; N, BATCH_SIZE, MAX_CHILDREN and --plugin are not used.
    #[arg(long, value_name = "WORKFLOW_ID")]
    attach: Option<String>,
    /// List the plugins a worker on the task queue offers (asked through Temporal) and exit.
    #[arg(long)]
    list_plugins: bool,
    /// Root workflow id. Default: batch-processing-{N}-b{BATCH}-c{CHILDREN}, with the plugin's
    /// name after `batch-processing-` when it is not square_number, and `.cfg{DIGEST}` after
    /// the plugin's name when the batch has a --plugin-config.
    #[arg(long)]
    workflow_id: Option<String>,
    /// Task queue the workers poll.
    #[arg(long, env = "BATCH_TASK_QUEUE", default_value = DEFAULT_TASK_QUEUE)]
    task_queue: String,
    /// Temporal server address (host:port). Default: Temporal's environment configuration
    /// (TEMPORAL_ADDRESS, profile in temporal.toml), else localhost:7233.
    #[arg(long)]
    address: Option<String>,
    /// Temporal namespace. Default: TEMPORAL_NAMESPACE or the profile's, else "default".
    #[arg(long)]
    namespace: Option<String>,
    /// Base address of the Temporal Web UI, for the link to the batch. Default: found for a
    /// local dev server (its port + 1000, when it answers) and for Temporal Cloud.
    #[arg(long, env = "TEMPORAL_UI_URL", value_name = "URL", value_parser = parse_ui_url)]
    ui_url: Option<String>,
}

/// What one run of the starter does: exactly one action (clap refuses two).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// Start a batch (or, with `--plan`, say what it would do) and wait for its summary.
    Start,
    /// Start a batch over the failed items of a completed one.
    RetryFailed(String),
    /// Wait for a running batch and print its summary.
    Attach(String),
    Cancel(String),
    Pause(String),
    Resume(String),
    ListPlugins,
}

/// Options every action takes: where the server is, and how to show a batch.
const CONNECTION: [&str; 4] = ["address", "namespace", "task_queue", "ui_url"];

impl Action {
    fn of(args: &Args) -> Self {
        let id = |id: &Option<String>| id.clone();
        if let Some(id) = id(&args.retry_failed) {
            Action::RetryFailed(id)
        } else if let Some(id) = id(&args.attach) {
            Action::Attach(id)
        } else if let Some(id) = id(&args.cancel) {
            Action::Cancel(id)
        } else if let Some(id) = id(&args.pause) {
            Action::Pause(id)
        } else if let Some(id) = id(&args.resume) {
            Action::Resume(id)
        } else if args.list_plugins {
            Action::ListPlugins
        } else {
            Action::Start
        }
    }

    /// The flag that chose it, for messages.
    fn flag(&self) -> &'static str {
        match self {
            Action::Start => "starting a batch",
            Action::RetryFailed(_) => "--retry-failed",
            Action::Attach(_) => "--attach",
            Action::Cancel(_) => "--cancel",
            Action::Pause(_) => "--pause",
            Action::Resume(_) => "--resume",
            Action::ListPlugins => "--list-plugins",
        }
    }

    /// The options that apply to it, besides [`CONNECTION`]'s (clap's argument ids).
    fn options(&self) -> &'static [&'static str] {
        match self {
            Action::Start => &[
                "n",
                "batch_size",
                "max_children",
                "plugin",
                "plugin_config",
                "mode",
                "max_in_flight",
                "max_leaves_in_flight",
                "source",
                "format",
                "compression",
                "max_decompression_ratio",
                "columns",
                "output",
                "output_format",
                "output_compression",
                "output_schema",
                "split_size",
                "max_failures",
                "max_failure_ratio",
                "http_allow",
                "rate_limit",
                "max_concurrent_requests",
                "request_timeout_ms",
                "json",
                "plan",
                "no_wait",
                "workflow_id",
            ],
            Action::RetryFailed(_) => &[
                "retry_failed",
                "max_children",
                "plugin",
                "plugin_config",
                "mode",
                "max_in_flight",
                "max_leaves_in_flight",
                "output",
                "output_format",
                "output_compression",
                "output_schema",
                "max_failures",
                "max_failure_ratio",
                "http_allow",
                "rate_limit",
                "max_concurrent_requests",
                "request_timeout_ms",
                "json",
                "plan",
                "no_wait",
                "workflow_id",
            ],
            Action::Attach(_) => &["attach", "json"],
            Action::Cancel(_) => &["cancel"],
            Action::Pause(_) => &["pause"],
            Action::Resume(_) => &["resume"],
            Action::ListPlugins => &["list_plugins"],
        }
    }

    /// Refuses an option given on the command line that does not apply to this action (it
    /// would be silently ignored), naming it and what the action takes.
    fn check(&self, matches: &clap::ArgMatches) -> anyhow::Result<()> {
        let command = Args::command();
        let flag_of = |id: &str| {
            command
                .get_arguments()
                .find(|a| a.get_id() == id)
                .map_or_else(|| id.to_owned(), describe_arg)
        };
        for id in matches.ids() {
            let id = id.as_str();
            let is_arg = command.get_arguments().any(|a| a.get_id() == id);
            if !is_arg
                || matches.value_source(id) != Some(ValueSource::CommandLine)
                || CONNECTION.contains(&id)
                || self.options().contains(&id)
            {
                continue;
            }
            let takes: Vec<String> = self
                .options()
                .iter()
                .filter(|o| {
                    !matches!(
                        **o,
                        "retry_failed" | "attach" | "cancel" | "pause" | "resume" | "list_plugins"
                    )
                })
                .map(|o| flag_of(o))
                .collect();
            let takes = if takes.is_empty() {
                "only the connection's options (--address, --namespace, --task-queue)".to_owned()
            } else {
                takes.join(", ")
            };
            anyhow::bail!(
                "{} does not apply to {}, which takes {takes}",
                flag_of(id),
                self.flag()
            );
        }
        Ok(())
    }
}

/// How an argument is written on the command line: `--source`, or `N` for a positional one.
fn describe_arg(arg: &clap::Arg) -> String {
    match arg.get_long() {
        Some(long) => format!("--{long}"),
        None => arg
            .get_value_names()
            .and_then(|names| names.first())
            .map_or_else(
                || arg.get_id().to_string().to_uppercase(),
                |n| n.to_string(),
            ),
    }
}

impl Args {
    /// `--output-format`, `--output-compression` and `--output-schema`, checked (a schema's
    /// text is read, parsed and written back in its one spelling).
    fn output_encoding(&self) -> anyhow::Result<OutputEncoding> {
        use batch_core::output_format::{MAX_SCHEMA_BYTES, OutputFormat};
        let format = self.output_format.unwrap_or_default();
        let schema = match &self.output_schema {
            None => None,
            Some(_) if format != OutputFormat::Parquet => {
                anyhow::bail!(
                    "--output-schema applies to a Parquet output (--output-format parquet)"
                )
            }
            Some(arg) => {
                let text = batch_core::plugin_config::text_arg(arg, MAX_SCHEMA_BYTES)
                    .map_err(|e| anyhow::anyhow!("--output-schema: {e}"))?;
                let schema = data_io::schema::parse(&text)?;
                Some(data_io::schema::text(&schema).ok_or_else(|| {
                    anyhow::anyhow!("--output-schema: a type the schema cannot write")
                })?)
            }
        };
        Ok(OutputEncoding {
            format,
            compression: self
                .output_compression
                .and_then(source::CompressionArg::compression),
            schema,
        })
    }

    /// Whether any of the output encoding's options was given.
    fn output_encoding_given(&self) -> bool {
        self.output_format.is_some()
            || self.output_compression.is_some()
            || self.output_schema.is_some()
    }

    /// The batch's outbound HTTP from `--http-allow` and its limits, into `config` (a retry
    /// keeps the earlier batch's unless they are given), with the leaves in flight lowered to
    /// what the limits can share when `--max-leaves-in-flight` is not given.
    fn apply_http(&self, config: &mut batch_core::BatchConfig) {
        if !self.http_allow.is_empty() {
            config.http = Some(HttpPolicy {
                rate_limit: self.rate_limit,
                max_concurrent: self.max_concurrent_requests,
                timeout_ms: self
                    .request_timeout_ms
                    .unwrap_or(batch_core::http::DEFAULT_TIMEOUT_MS),
                ..HttpPolicy::allowing(self.http_allow.clone())
            });
        }
        if let Some(max) = config.http.as_ref().and_then(HttpPolicy::max_leaves)
            && self.max_leaves_in_flight.is_none()
        {
            config.max_leaves_in_flight = config.max_leaves_in_flight.min(max);
        }
    }

    fn tolerance(&self) -> batch_core::Tolerance {
        batch_core::Tolerance {
            max_failures: self.max_failures,
            max_failure_ppm: self.max_failure_ratio,
            items: None,
        }
    }
}

fn parse_host(text: &str) -> Result<HostPort, String> {
    HostPort::parse(text).map_err(|e| e.to_string())
}

fn parse_rate(text: &str) -> Result<u32, String> {
    batch_core::http::parse_rate(text).map_err(|e| e.to_string())
}

fn parse_ui_url(text: &str) -> Result<String, String> {
    match temporalio_client::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(text.to_owned()),
        Ok(url) => Err(format!(
            "expected an http(s) address, got scheme {:?}",
            url.scheme()
        )),
        Err(e) => Err(format!("{text:?} is not an address: {e}")),
    }
}

/// Whole numbers only; the range checks (with their reasons) happen in `NodeInput::validate`.
fn parse_count(text: &str) -> Result<u64, String> {
    let value: i128 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    if value < 0 {
        return Err(format!("{value} is negative"));
    }
    u64::try_from(value).map_err(|_| format!("{value} is too large"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let matches = Args::command().get_matches();
    let explicit = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let given = Given {
        n: explicit("n"),
        batch_size: explicit("batch_size"),
        mode: explicit("mode"),
        plugin: explicit("plugin"),
    };
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    let action = Action::of(&args);
    let checked = action.check(&matches);
    let outcome = match checked {
        Ok(()) => run(args, action, given).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A failure's words may come from a plugin or a server: shown, never acted on.
            eprintln!(
                "error: {}",
                batch_core::text::neutralised(&format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

/// Which arguments with defaults were given on the command line.
struct Given {
    n: bool,
    batch_size: bool,
    mode: bool,
    plugin: bool,
}

/// A batch ready to start: its root input, its id, and how to describe it.
struct Batch {
    input: NodeInput,
    workflow_id: String,
}

fn range_batch(args: &Args) -> anyhow::Result<Batch> {
    batch_core::config::validate_n(args.n)?;
    let mut input = NodeInput::root(args.n, args.batch_size, args.max_children, "");
    input.config.plugin = args.plugin.clone();
    input.config.mode = args.mode;
    input.config.plugin_config = args.plugin_config.clone();
    input.config.max_in_flight = args.max_in_flight;
    input.config.tolerance = args.tolerance();
    input.config.max_leaves_in_flight = args
        .max_leaves_in_flight
        .unwrap_or_else(|| batch_core::config::default_leaf_budget(args.mode, args.batch_size));
    args.apply_http(&mut input.config);
    input.validate()?;
    let workflow_id = args.workflow_id.clone().unwrap_or_else(|| {
        root_workflow_id(
            args.n,
            args.batch_size,
            args.max_children,
            &args.plugin.id_part(),
            args.mode,
            args.plugin_config.as_ref(),
            &input.config.tolerance,
        )
    });
    Ok(Batch { input, workflow_id })
}

/// A batch over a file or an object: looks at it (size, version, CSV header) to plan the
/// tree over its bytes, and checks that the output location can be opened.
async fn data_batch(args: &Args, location: &str, given: &Given) -> anyhow::Result<Batch> {
    if given.n || given.batch_size {
        anyhow::bail!(
            "N and BATCH_SIZE do not apply to --source: the source's size is the tree's, and \
             --split-size sets the bytes per leaf"
        );
    }
    let mode = if given.mode {
        args.mode
    } else {
        LeafMode::Batch
    };
    let location = data_io::location::absolute(location)?;
    let output = match &args.output {
        Some(output) => {
            let output = data_io::location::absolute(output)?;
            data_io::Location::open(&output, data_io::Authority::User)?;
            Some(output)
        }
        None => None,
    };
    let source = if data_io::list::is_many(&location) {
        source::many(args, location, output.as_deref()).await?
    } else {
        source::single(args, location).await?
    };
    source.validate()?;
    // A compressed stream without frames cannot be entered in the middle.
    let whole = source.compression.filter(|_| source.frames.is_none());
    let split = match (whole, args.split_size) {
        (None, wanted) => batch_core::source::choose_split(
            source.size,
            wanted,
            source.default_split(),
            args.max_children,
        )?,
        (Some(compression), Some(_)) => anyhow::bail!(
            "--split-size does not apply to this {compression} source: a compressed stream \
             cannot be entered in the middle unless it is made of indexed frames (a seekable \
             zstd stream, gzip members with a .gzi index beside it), so one leaf reads it whole"
        ),
        (Some(_), None) => source.size,
    };
    let mut input = NodeInput::root(source.size, split, args.max_children, "");
    input.config.plugin = args.plugin.clone();
    input.config.mode = mode;
    input.config.plugin_config = args.plugin_config.clone();
    input.config.max_in_flight = args.max_in_flight;
    input.config.tolerance = args.tolerance();
    input.config.max_leaves_in_flight = args
        .max_leaves_in_flight
        .unwrap_or_else(|| batch_core::config::default_leaf_budget(mode, split));
    let encoding = args.output_encoding()?;
    // A batch's identity includes how it writes its output; the default leaves ids as they were.
    let identity = output.as_ref().map(|o| match encoding.is_default() {
        true => o.clone(),
        false => format!(
            "{o}\n{}",
            serde_json::to_string(&encoding).unwrap_or_default()
        ),
    });
    let workflow_id = args.workflow_id.clone().unwrap_or_else(|| {
        batch_core::ids::data_workflow_id(
            source.size,
            split,
            args.max_children,
            &args.plugin.id_part(),
            args.plugin_config.as_ref(),
            &input.config.tolerance,
            &source.short_digest(identity.as_deref()),
        )
    });
    input.config.source = Some(source);
    input.config.output = output;
    input.config.output_encoding = encoding;
    args.apply_http(&mut input.config);
    input.validate()?;
    Ok(Batch { input, workflow_id })
}

async fn run(args: Args, action: Action, given: Given) -> anyhow::Result<()> {
    let earlier = match &action {
        Action::ListPlugins => return list_plugins(&args).await,
        Action::Cancel(workflow_id) => return cancel(&args, workflow_id).await,
        Action::Pause(workflow_id) => return set_paused(&args, workflow_id, true).await,
        Action::Resume(workflow_id) => return set_paused(&args, workflow_id, false).await,
        Action::Attach(workflow_id) => return attach(&args, workflow_id).await,
        Action::RetryFailed(earlier) => Some(earlier),
        Action::Start => None,
    };
    let Batch { input, workflow_id } = match (earlier, &args.source) {
        (Some(earlier), _) => match retry::retry_batch(&args, &given, earlier).await? {
            Some(batch) => batch,
            None => {
                println!("Batch {earlier} has no failed items: nothing to retry");
                return Ok(());
            }
        },
        (None, Some(location)) => data_batch(&args, location, &given).await?,
        (None, None) => range_batch(&args)?,
    };
    start_and_report(&args, input, workflow_id).await
}

/// Waits for the running batch `workflow_id` and prints its summary.
async fn attach(args: &Args, workflow_id: &str) -> anyhow::Result<()> {
    let connected = connect_from(args).await?;
    let client = connected.client;
    let handle = client.get_workflow_handle::<BatchWorkflowRef>(workflow_id.to_owned());
    eprintln!("Waiting for batch {workflow_id}");
    let web_ui = web_ui_page(args, &connected.address, &connected.namespace, workflow_id).await;
    if let Some(page) = &web_ui {
        eprintln!("Web UI: {page}");
    }
    let progress = Progress {
        client: &client,
        total_workflows: None,
        items: 0,
    };
    wait_and_report(args, workflow_id, handle, progress, Instant::now(), web_ui).await
}

/// Plans, or starts (attaching to it if it is already running) and reports, the batch of root
/// `input` named `workflow_id`.
async fn start_and_report(
    args: &Args,
    input: NodeInput,
    workflow_id: String,
) -> anyhow::Result<()> {
    // Items of the tree: 1..=N, or a data source's bytes.
    let n = input.last;
    let config = &input.config;
    if args.plan {
        let plan = BatchPlan::of(n, config);
        if args.json {
            let mut json = serde_json::to_value(&plan)?;
            if let (Some(source), Some(object)) = (&config.source, json.as_object_mut()) {
                object.insert("source".into(), serde_json::to_value(source)?);
                object.insert("output".into(), serde_json::to_value(&config.output)?);
            }
            println!("{json}");
        } else {
            print!("{}", plan.render());
            if let Some(source) = &config.source {
                print!("{}", render_source_plan(source, config, &plan));
            }
        }
        return Ok(());
    }

    let connected = connect_from(args).await?;
    let client = connected.client;
    let web_ui = web_ui_page(args, &connected.address, &connected.namespace, &workflow_id).await;

    let started_at = Instant::now();
    let options = WorkflowStartOptions::new(args.task_queue.clone(), workflow_id.clone())
        // The id names the batch: starting a batch that is already running attaches to it
        // instead of failing or running it twice.
        .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
        // Shown by the Web UI and `temporal workflow describe`, like each child's.
        .static_summary(match (&config.retry_of, &config.source) {
            (Some(retry), _) => format!(
                "the {n} failed items of {} (plugin {}, {} mode)",
                retry.batch, config.plugin.name, config.mode
            ),
            (None, Some(source)) => format!(
                "{} ({}, bytes 1..={n}; splits of {} bytes, plugin {}, max children {})",
                source.location, source.format, config.batch_size, args.plugin, args.max_children
            ),
            (None, None) => format!(
                "items 1..={} (depth 0, {} mode, plugin {}, batch size {}, max children {})",
                args.n, args.mode, args.plugin, args.batch_size, args.max_children
            ),
        })
        .build();
    let mode = config.mode;
    let tree = TreeShape::of(n, config.batch_size, config.max_children);
    let input_source = match (&config.retry_of, &config.source) {
        (Some(retry), _) => Some(format!("the failed items of {}", retry.batch)),
        (None, source) => source.as_ref().map(|s| s.location.clone()),
    };
    let plugin = config.plugin.name.clone();
    let retrying = config.retry_of.is_some();
    let handle = client
        .start_workflow(BatchWorkflowRef, input, options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start batch {workflow_id}: {e}"))?;
    let what = match &input_source {
        Some(what) if retrying => format!("{what} ({n} items)"),
        Some(location) => format!("{location} ({n} bytes)"),
        None => format!("{n} items"),
    };
    eprintln!(
        "Started batch {workflow_id} (run {}) on task queue {}: {what}, plugin {plugin}, {mode} \
         mode",
        handle.run_id().unwrap_or("?"),
        args.task_queue,
    );
    if let Some(page) = &web_ui {
        eprintln!("Web UI: {page}");
    }

    if args.no_wait {
        println!("{workflow_id}");
        eprintln!(
            "Follow it with:\n  starter --attach {workflow_id}\n  temporal workflow describe \
             --workflow-id {workflow_id}\n  temporal workflow count --query \"WorkflowId = \
             '{workflow_id}' OR WorkflowId STARTS_WITH '{workflow_id}-'\""
        );
        return Ok(());
    }
    let progress = Progress {
        client: &client,
        total_workflows: Some(tree.workflows),
        items: n,
    };
    wait_and_report(args, &workflow_id, handle, progress, started_at, web_ui).await
}

/// What `--plan` adds for a data source: the object and how the tree splits it.
fn render_source_plan(
    source: &batch_core::DataSource,
    config: &batch_core::BatchConfig,
    plan: &BatchPlan,
) -> String {
    let splits = plan.leaves;
    let mut text = format!(
        "Source: {} ({}{})\n",
        source.location,
        source.describe(),
        source
            .version
            .as_ref()
            .map_or(String::new(), |v| format!(", version {v}")),
    );
    text.push_str(&match source.compression {
        None if source.format == batch_core::Format::Parquet => format!(
            "Splits: {splits} of at most {} bytes (one leaf and one activity each; a row group \
             belongs to the split holding its first byte; an item's index is its row number)\n",
            config.batch_size
        ),
        None => format!(
            "Splits: {splits} of at most {} bytes (one leaf and one activity each; a record \
             belongs to the split holding its first byte)\n",
            config.batch_size
        ),
        Some(compression) => match source.frames {
            None => format!(
                "Splits: 1 (a {compression} stream is read whole by one leaf, decompressed as \
                 it is read; an item's index is its position in the decompressed stream; more \
                 than {} times the stored size is refused as a decompression bomb)\n",
                source.max_ratio()
            ),
            Some(frames) => format!(
                "Splits: {splits} of at most {} stored bytes (a {compression} stream of \
                 {frames} independent frames, listed by {}: a frame belongs to the split \
                 holding its first byte, a record to the split whose frames hold its first \
                 byte; an item's index is its position in the decompressed stream; more than {} \
                 times the stored size is refused as a decompression bomb)\n",
                config.batch_size,
                match source.gzi {
                    Some(_) => format!("its index {}.gzi", source.location),
                    None => "its seek table".to_owned(),
                },
                source.max_ratio()
            ),
        },
    });
    if let Some(objects) = &source.objects {
        text.push_str(&match &objects.listing {
            ListingRef::Inline(_) => format!(
                "Objects: {} under {} in name order, listed now and pinned; the listing travels \
                 in the inputs (at most {MAX_INLINE_OBJECTS} objects); a record never crosses \
                 objects, a compressed object is read whole by the split holding its first \
                 byte unless it is made of indexed frames; an item's index is object:position\n",
                objects.count, objects.base
            ),
            ListingRef::Stored { location, .. } => format!(
                "Objects: {} under {} in name order, listed now and pinned; the listing is \
                 stored at {location} (written when the batch starts) and the inputs carry \
                 only its location and sha256, so every payload stays a few KB at any count; a \
                 record never crosses objects, a compressed object is read whole by the split \
                 holding its first byte unless it is made of indexed frames; an item's index \
                 is object:position\n",
                objects.count, objects.base
            ),
        });
    }
    match &config.output {
        Some(output) => text.push_str(&format!(
            "Output: {output} ({splits} parts{}, then {})\n",
            describe_encoding(&config.output_encoding),
            batch_core::source::MANIFEST_NAME
        )),
        None => text.push_str("Output: none (statistics only)\n"),
    }
    text
}

/// How the parts are written, for the plan ("" for plain JSON Lines).
fn describe_encoding(encoding: &OutputEncoding) -> String {
    use batch_core::output_format::OutputFormat;
    let compression = encoding.compression.map(|c| format!(", {c}"));
    let compression = compression.unwrap_or_default();
    match (encoding.format, &encoding.schema) {
        (OutputFormat::Jsonl, _) if compression.is_empty() => String::new(),
        (OutputFormat::Jsonl, _) => format!(" of JSON Lines{compression}"),
        (OutputFormat::Parquet, Some(schema)) => format!(
            " of Parquet{compression}, schema {}",
            batch_core::text::shown(schema, 1024)
        ),
        (OutputFormat::Parquet, None) => format!(
            " of Parquet{compression}, its schema inferred from the first {} outputs",
            batch_core::output_format::SCHEMA_SAMPLE_OUTPUTS
        ),
    }
}

/// What the progress bar needs to follow a batch.
struct Progress<'a> {
    client: &'a temporalio_client::Client,
    total_workflows: Option<u64>,
    items: u64,
}

/// Waits for the batch's result and prints it (summary block, or JSON with `--json`).
async fn wait_and_report(
    args: &Args,
    workflow_id: &str,
    handle: temporalio_client::WorkflowHandle<temporalio_client::Client, BatchWorkflowRef>,
    progress: Progress<'_>,
    started_at: Instant,
    web_ui: Option<String>,
) -> anyhow::Result<()> {
    // The batch lives on the server, not in this process: if the connection breaks (a server
    // restart, a network blip), wait again for the same workflow instead of giving up.
    let waiting = async {
        let mut lost_since: Option<Instant> = None;
        loop {
            match handle.get_result(WorkflowGetResultOptions::default()).await {
                Err(WorkflowGetResultError::Rpc(status))
                    if lost_since.is_none_or(|t| t.elapsed() < RECONNECT_FOR) =>
                {
                    lost_since.get_or_insert_with(Instant::now);
                    eprintln!(
                        "lost contact with the server while waiting ({}); waiting again",
                        status.message()
                    );
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                outcome => return outcome,
            }
        }
    };
    // A progress bar only for a person watching: not for --json, not into a pipe or a file.
    let outcome = if !args.json && std::io::stderr().is_terminal() {
        let follow = progress::follow(
            progress.client.clone(),
            workflow_id.to_owned(),
            progress.total_workflows,
            progress.items,
        );
        tokio::select! {
            outcome = waiting => outcome,
            () = follow => unreachable!("the progress loop only ends when dropped"),
        }
    } else {
        waiting.await
    };
    let result = match outcome {
        Ok(result) => result,
        Err(e) => anyhow::bail!("batch {workflow_id} failed: {}", describe_failure(&e)),
    };
    let wall = started_at.elapsed().as_secs_f64();
    if args.json {
        let report = serde_json::json!({
            "workflow_id": workflow_id,
            "wall_seconds": wall,
            "web_ui": web_ui,
            "result": result,
        });
        println!("{report}");
    } else {
        print!("{}", render_summary(workflow_id, &result));
        println!("Wall time: {wall:.2} s");
    }
    Ok(())
}

/// The root workflow's page in the Web UI, when there is a UI (see [`web_ui`]).
async fn web_ui_page(
    args: &Args,
    address: &str,
    namespace: &str,
    workflow_id: &str,
) -> Option<String> {
    let ui = web_ui::find(args.ui_url.as_deref(), address).await?;
    Some(web_ui::workflow_page(&ui, namespace, workflow_id))
}

async fn connect_from(args: &Args) -> anyhow::Result<batch_core::connect::Connected> {
    Ok(connect(&ConnectOverrides {
        address: args.address.clone(),
        namespace: args.namespace.clone(),
        ..ConnectOverrides::default()
    })
    .await?)
}

/// Asks a worker on the task queue for its plugins: a short workflow whose one activity lists
/// the plugins directory of whichever worker picks it up.
async fn list_plugins(args: &Args) -> anyhow::Result<()> {
    let client = connect_from(args).await?.client;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let workflow_id = format!("list-plugins-{}-{nanos}", std::process::id());
    let options = WorkflowStartOptions::new(args.task_queue.clone(), workflow_id.clone())
        // No worker on the queue must not mean waiting forever.
        .execution_timeout(std::time::Duration::from_secs(30))
        .build();
    let handle = client
        .start_workflow(ListPluginsRef, (), options)
        .await
        .map_err(|e| anyhow::anyhow!("cannot ask for plugins: {e}"))?;
    match handle.get_result(WorkflowGetResultOptions::default()).await {
        Ok(plugins) => {
            print!("{}", render_plugin_list(&plugins));
            Ok(())
        }
        Err(e) => anyhow::bail!(
            "no worker answered on task queue {} ({})",
            args.task_queue,
            describe_failure(&e)
        ),
    }
}

/// Cancels a batch and waits until its root has closed. A cancelled workflow closes without
/// waiting for its children, which the server then terminates (their parent-close policy),
/// down the tree; a running leaf's plugin call stops at its next heartbeat.
async fn cancel(args: &Args, workflow_id: &str) -> anyhow::Result<()> {
    let client = connect_from(args).await?.client;
    let handle = client.get_workflow_handle::<BatchWorkflowRef>(workflow_id.to_owned());
    handle
        .cancel(
            temporalio_client::WorkflowCancelOptions::builder()
                .reason("cancelled with starter --cancel".to_owned())
                .build(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot cancel batch {workflow_id}: {e}"))?;
    eprintln!("Cancelling batch {workflow_id}");
    match handle.get_result(WorkflowGetResultOptions::default()).await {
        Ok(_) => anyhow::bail!("batch {workflow_id} completed before it could be cancelled"),
        Err(e) if is_cancelled(&e) => {
            println!(
                "Batch {workflow_id} cancelled: its root has closed, and the server terminates \
                 the workflows still open under it; its output, if any, has no {} (incomplete)",
                batch_core::source::MANIFEST_NAME
            );
            Ok(())
        }
        Err(e) => anyhow::bail!(
            "batch {workflow_id} ended otherwise: {}",
            describe_failure(&e)
        ),
    }
}

/// Sends the pause signal to a batch's root, which passes it to its running children.
async fn set_paused(args: &Args, workflow_id: &str, paused: bool) -> anyhow::Result<()> {
    let client = connect_from(args).await?.client;
    let handle = client.get_workflow_handle::<BatchWorkflowRef>(workflow_id.to_owned());
    handle
        .signal(
            batch_core::workflow_ref::PauseSignal,
            paused,
            temporalio_client::WorkflowSignalOptions::default(),
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot {} batch {workflow_id}: {e}",
                if paused { "pause" } else { "resume" }
            )
        })?;
    if paused {
        println!(
            "Batch {workflow_id} pausing: its workflows start no new work (running items and \
             leaves finish). Resume it with: starter --resume {workflow_id}"
        );
    } else {
        println!("Batch {workflow_id} resumed");
    }
    Ok(())
}

fn is_cancelled(e: &WorkflowGetResultError) -> bool {
    matches!(e, WorkflowGetResultError::Cancelled { .. })
}

/// The failure and its causes, outermost first, without repeating a message.
fn describe_failure(e: &(dyn std::error::Error + 'static)) -> String {
    let mut messages: Vec<String> = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !messages.iter().any(|m| m.contains(&text)) {
            messages.push(text);
        }
        source = cause.source();
    }
    messages.join(": ")
}
