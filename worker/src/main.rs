//! `worker`: connects to Temporal, hosts the batch workflow and the plugin activities, and runs
//! until Ctrl-C or SIGTERM, then shuts down gracefully (in-flight tasks finish or go back to
//! the server).

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use batch_core::connect::{ConnectOverrides, Connected, connect};
use batch_core::summary::render_plugin_list;
use batch_worker::activities::PluginActivities;
use batch_worker::memory;
use batch_worker::metrics::{CALL_LATENCY, CALL_LATENCY_BUCKETS, PluginMetrics};
use batch_worker::plugin_queues::{PluginQueueSettings, PluginQueues};
use batch_worker::plugins::cache::{self, ArtifactCache};
use batch_worker::plugins::http::HttpGrants;
use batch_worker::plugins::sandbox::{
    DEFAULT_COMPILE_TIMEOUT, DEFAULT_HTTP_CALLS, MAX_CPU_DEADLINE, default_calls_at_once,
};
use batch_worker::plugins::signing::TrustedKeys;
use batch_worker::plugins::store::PluginStore;
use batch_worker::plugins::{PluginRegistry, SandboxLimits, SandboxedEngine};
use batch_worker::renewal::{DEFAULT_RENEW_AFTER, Generation, StopSignal, run_renewing};
use batch_worker::workflow::{BatchProcessingWorkflow, ListPluginsWorkflow};
use clap::Parser;
use data_io::{Access, Grants};
use temporalio_common::telemetry::metrics::{CoreMeter, TemporalMeter};
use temporalio_common::telemetry::{
    HistogramBucketOverrides, PrometheusExporterOptions, TelemetryOptions,
    start_prometheus_metric_exporter, telemetry_init,
};
use temporalio_sdk::runtime::RuntimeOptions;
use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Temporal worker: batch tree workflow with wasm plugin leaves"
)]
struct Args {
    /// Task queue to poll.
    #[arg(long, env = "BATCH_TASK_QUEUE", default_value = batch_core::DEFAULT_TASK_QUEUE)]
    task_queue: String,
    /// Directory holding the plugins, one `<name>.wasm` file each. With --plugin-store it may
    /// be missing, and it serves only the names the store does not have.
    #[arg(long, env = "BATCH_PLUGINS_DIR", default_value = "target/plugins")]
    plugins_dir: PathBuf,
    /// A fleet's plugin store (a directory, file:// or s3://... URL, as `batch-plugin publish
    /// --store` wrote it): a name published there resolves to its newest version, and a
    /// pinned version this worker lacks is fetched from it on first use, checked against its
    /// sha256 before it is compiled, and kept in the cache.
    #[arg(long, env = "BATCH_PLUGIN_STORE", value_name = "URL")]
    plugin_store: Option<String>,
    /// An ed25519 public key (PEM) whose signatures this worker trusts: with any, it runs only
    /// plugin versions signed by one of them (`batch-plugin publish --sign-key`), and refuses
    /// every other version before it runs, naming its digest. Repeat it, or separate several
    /// files by commas in BATCH_TRUST_KEYS. Needs --plugin-store, where signatures are kept.
    #[arg(
        long,
        env = "BATCH_TRUST_KEYS",
        value_delimiter = ',',
        value_name = "FILE",
        requires = "plugin_store"
    )]
    trust_key: Vec<PathBuf>,
    /// Where plugin versions (bytes and compiled code) are kept by digest, so pinned batches
    /// survive file replacements and restarts, and restarts skip compilation. It must be
    /// private to this user (created 0700; refused if group/world-writable or another user's).
    /// Default: `$XDG_CACHE_HOME/batch-worker/plugins`, else `~/.cache/batch-worker/plugins`.
    #[arg(long, env = "BATCH_PLUGIN_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Keep plugin versions in memory only.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
    /// A place data batches may read (sources): an absolute directory or file, or a URL prefix
    /// (s3://bucket/in/, https://host:8443/data/). Repeat it, or separate several by commas in
    /// BATCH_ALLOW_READ. A batch's input only chooses among these places: a source outside
    /// them fails its batch, naming the place. Without any, the worker reads no data (range
    /// batches need none).
    #[arg(
        long,
        env = "BATCH_ALLOW_READ",
        value_delimiter = ',',
        value_name = "PREFIX"
    )]
    allow_read: Vec<String>,
    /// A place data batches may write (outputs, their failed/ reports and manifests), as
    /// --allow-read names places (BATCH_ALLOW_WRITE). Writing does not allow reading.
    #[arg(
        long,
        env = "BATCH_ALLOW_WRITE",
        value_delimiter = ',',
        value_name = "PREFIX"
    )]
    allow_write: Vec<String>,
    /// A host plugins may call over HTTP, HOST or HOST:PORT (no port: the scheme's own, 80 or 443).
    /// Repeat it, or separate several by commas in BATCH_ALLOW_HTTP. A batch names the hosts
    /// its plugin calls (starter --http-allow) and only chooses among these: another host
    /// fails the batch, naming it, before any item runs. Without any, plugins call nothing.
    #[arg(
        long,
        env = "BATCH_ALLOW_HTTP",
        value_delimiter = ',',
        value_name = "HOST[:PORT]"
    )]
    allow_http: Vec<String>,
    /// Calls of plugins that call services running at once (beside --plugin-calls: they spend
    /// their time waiting on responses, so they never take a computing call's slot). Default:
    /// 16 with --allow-http, else none.
    #[arg(long, env = "BATCH_HTTP_CALLS", value_parser = clap::value_parser!(u32).range(1..=1024))]
    http_calls: Option<u32>,
    /// Print the plugins in the plugins directory and the store (name, digest, size, input,
    /// interface) and exit.
    #[arg(long)]
    list_plugins: bool,
    /// Temporal server address (host:port). Default: Temporal's environment configuration
    /// (TEMPORAL_ADDRESS, profile in temporal.toml), else localhost:7233.
    #[arg(long)]
    address: Option<String>,
    /// Temporal namespace. Default: TEMPORAL_NAMESPACE or the profile's, else "default".
    #[arg(long)]
    namespace: Option<String>,
    /// This worker's identity in workflow histories (which worker ran which task).
    /// Default: `<pid>@<hostname>`.
    #[arg(long, env = "BATCH_WORKER_IDENTITY")]
    identity: Option<String>,
    /// Activities this worker runs at once.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_concurrent_activities: u32,
    /// Workflow tasks this worker processes at once.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(2..=10_000))]
    max_concurrent_workflow_tasks: u32,
    /// Activities a workflow task may hand straight to this worker (eager dispatch), skipping a
    /// task-queue round trip each. A leaf schedules all its items in one task, so a value of
    /// at least the batch size lets a whole leaf start without a round trip. 0 disables it.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=1000))]
    max_eager_activities: u32,
    /// Workflows kept in memory between their tasks (sticky cache). Bounds the worker's memory
    /// at any n; an evicted workflow is replayed from its (short) history when it next runs.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    max_cached_workflows: u32,
    /// Budget of one plugin call from the moment it starts executing (waiting for a call slot
    /// does not count), in milliseconds; a call past it fails its item. At most 20,000, so a
    /// call always ends within the activity timeouts it runs under.
    #[arg(long, env = "BATCH_PLUGIN_DEADLINE_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=MAX_CPU_DEADLINE.as_millis() as u64))]
    plugin_deadline_ms: u64,
    /// Plugin calls executing at once in this process, across all batches and task queues
    /// (other calls wait their turn, first come first served). Default: the number of cores.
    #[arg(long, env = "BATCH_PLUGIN_CALLS", value_parser = clap::value_parser!(u32).range(1..=1024))]
    plugin_calls: Option<u32>,
    /// Longest a new plugin may take to compile before it is rejected, in seconds.
    #[arg(long, env = "BATCH_PLUGIN_COMPILE_TIMEOUT_SECS", default_value_t = DEFAULT_COMPILE_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    plugin_compile_timeout_secs: u64,
    /// Plugins compiling at once (a new plugin or version is compiled once, on a core of its
    /// own, taking about ten times its size in memory); the others wait their turn.
    #[arg(long, env = "BATCH_PLUGIN_COMPILES", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=16))]
    plugin_compiles: u32,
    /// Cap on the sum of one plugin call's linear memories, in MiB.
    #[arg(long, env = "BATCH_PLUGIN_MEMORY_MIB", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    plugin_memory_mib: u64,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464), at /metrics: the SDK's
    /// worker, poller and RPC metrics (`temporal_*`) and the plugin metrics (`batch_plugin_*`).
    #[arg(long, env = "BATCH_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Activity tasks one SDK worker runs before the worker replaces it with a fresh one
    /// (in-flight tasks finish on the old one; cached workflows are replayed by the new one).
    /// Keeps memory bounded despite an SDK leak of ~300 bytes per activity task; each renewal
    /// delays a running batch by ~10 s.
    #[arg(long, env = "BATCH_RENEW_AFTER_ACTIVITIES", default_value_t = DEFAULT_RENEW_AFTER,
          value_parser = clap::value_parser!(u64).range(100..))]
    renew_after_activities: u64,
    /// How long in-flight activities get to finish after a shutdown signal.
    #[arg(long, default_value_t = 10)]
    shutdown_grace_secs: u64,
}

fn main() -> ExitCode {
    // Before any thread exists (see `memory`).
    memory::limit_arenas();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async_main())
}

async fn async_main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole cause chain on one line, like the starter; no backtrace for bad input.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    init_logging();
    let args = Args::parse();
    let limits = sandbox_limits(&args)?;
    let grants = Arc::new(
        Grants::new(&args.allow_read, &args.allow_write)
            .map_err(anyhow::Error::msg)
            .context("--allow-read / --allow-write")?,
    );
    let http_grants = HttpGrants::new(&args.allow_http)
        .map_err(anyhow::Error::msg)
        .context("--allow-http")?;
    let registry = open_registry(&args, limits)?;
    if args.list_plugins {
        print!("{}", render_plugin_list(&registry.list()?));
        return Ok(());
    }
    // In the background: reading a large plugin's file must not hold up the start.
    let listing = registry.clone();
    tokio::task::spawn_blocking(move || log_plugins(&listing));
    memory::start_trimming();

    let telemetry = Telemetry::start(args.metrics_addr)?;
    let overrides = ConnectOverrides {
        address: args.address.clone(),
        namespace: args.namespace.clone(),
        identity: args.identity.clone(),
        metrics_meter: telemetry.sdk_meter.clone(),
    };
    let connected = connect(&overrides).await?;
    let runtime = Runtime::from_current_tokio(
        RuntimeOptions::builder()
            .telemetry_options(telemetry.options())
            .build()
            .map_err(anyhow::Error::msg)?,
    )?;
    let activities = PluginActivities::new(
        registry.clone(),
        grants.clone(),
        telemetry.plugin_metrics(),
        &args.task_queue,
        Some(connected.client.clone()),
    )
    .with_http_grants(http_grants.clone());
    let mut plugin_queues = PluginQueues::new(
        &runtime,
        connected.client.clone(),
        activities.clone(),
        registry.clone(),
        plugin_queue_settings(&args, &overrides),
    );
    plugin_queues.serve_new_plugins().await;

    let stop_worker = StopSignal::default();
    stop_on_signal(stop_worker.clone(), plugin_queues.stop_handle());
    log_started(&args, &connected, &registry, limits, &grants);
    tracing::info!(
        allow_http = %describe_hosts(&http_grants),
        http_calls = limits.http_calls_at_once,
        "HTTP grants (the hosts plugins may call)"
    );
    // The first generation uses the connection made above; later ones connect anew.
    let first_client = Cell::new(Some(connected.client.clone()));
    let build = |_generation: u64| {
        let (args, runtime, overrides, activities) = (&args, &runtime, &overrides, &activities);
        let first = first_client.take();
        async move {
            let client = match first {
                Some(client) => client,
                None => connect(overrides).await?.client,
            };
            let (activities, activity_tasks) = activities.for_new_generation(Some(client.clone()));
            let worker = Worker::new(runtime, client, batch_worker_options(args, activities)?)?;
            Ok(Generation::of(worker, activity_tasks))
        }
    };
    plugin_queues
        .run_beside(run_renewing(
            "batch",
            build,
            args.renew_after_activities,
            stop_worker,
        ))
        .await?;
    tracing::info!("worker stopped");
    Ok(())
}

/// Logs to stderr, `RUST_LOG` choosing the level; colours only on a terminal.
fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,temporalio_sdk_core=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The sandboxed engine, its compiled-code cache and the plugins directory's registry.
fn open_registry(args: &Args, limits: SandboxLimits) -> anyhow::Result<Arc<PluginRegistry>> {
    let engine = SandboxedEngine::new(limits)?;
    let cache = open_cache(args, engine.engine())?;
    let store = args
        .plugin_store
        .as_deref()
        .map(PluginStore::open)
        .transpose()
        .context("--plugin-store")?;
    let trusted = TrustedKeys::read(&args.trust_key).context("--trust-key")?;
    Ok(Arc::new(PluginRegistry::open_with_store(
        &args.plugins_dir,
        engine,
        cache,
        store,
        trusted,
    )?))
}

fn plugin_queue_settings(args: &Args, overrides: &ConnectOverrides) -> PluginQueueSettings {
    PluginQueueSettings {
        home_queue: args.task_queue.clone(),
        // Routed work is the exception: a few slots, so a busy worker does not take more
        // than it can run while other holders are idle.
        slots: (args.max_concurrent_activities as usize / 4).max(1),
        graceful_shutdown: Duration::from_secs(args.shutdown_grace_secs),
        overrides: overrides.clone(),
        renew_after: args.renew_after_activities,
    }
}

/// On Ctrl-C or SIGTERM: stop taking work, let in-flight tasks finish (the grace period).
fn stop_on_signal(worker: StopSignal, plugin_queues: impl Fn() + Send + 'static) {
    tokio::spawn(async move {
        wait_for_shutdown_signal().await;
        tracing::info!("shutdown requested: finishing in-flight tasks");
        worker.stop();
        plugin_queues();
    });
}

/// The one line that says where the worker serves and with which limits.
fn log_started(
    args: &Args,
    connected: &Connected,
    registry: &PluginRegistry,
    limits: SandboxLimits,
    grants: &Grants,
) {
    tracing::info!(
        allow_read = %grants.describe(Access::Read),
        allow_write = %grants.describe(Access::Write),
        "data grants (what data batches may read and write)"
    );
    tracing::info!(
        address = %connected.address,
        namespace = %connected.namespace,
        identity = args.identity.as_deref().unwrap_or("(pid@hostname)"),
        task_queue = %args.task_queue,
        plugins_dir = %registry.dir().display(),
        plugin_store = registry.store().map_or("(none)", |s| s.text()),
        trusted_keys = %registry.trusted_key_ids(),
        plugin_deadline_ms = args.plugin_deadline_ms,
        plugin_memory_mib = args.plugin_memory_mib,
        plugin_calls = limits.calls_at_once,
        plugin_memory_bound_mib = limits.memory_bound() >> 20,
        plugin_cache = %registry.cache_dir().map_or("(none)".into(), |d| d.display().to_string()),
        max_concurrent_activities = args.max_concurrent_activities,
        max_concurrent_workflow_tasks = args.max_concurrent_workflow_tasks,
        "worker started"
    );
}

/// The granted hosts, for the log.
fn describe_hosts(grants: &HttpGrants) -> String {
    match grants.hosts() {
        [] => "(none)".into(),
        hosts => hosts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The sandbox's limits, from the flags.
fn sandbox_limits(args: &Args) -> anyhow::Result<SandboxLimits> {
    Ok(SandboxLimits {
        cpu_deadline: Duration::from_millis(args.plugin_deadline_ms),
        memory_bytes: usize::try_from(args.plugin_memory_mib << 20)
            .context("--plugin-memory-mib is too large for this machine")?,
        calls_at_once: args.plugin_calls.unwrap_or_else(default_calls_at_once),
        compile_timeout: Duration::from_secs(args.plugin_compile_timeout_secs),
        compiles_at_once: args.plugin_compiles,
        http_calls_at_once: match args.allow_http.iter().any(|h| !h.trim().is_empty()) {
            true => args.http_calls.unwrap_or(DEFAULT_HTTP_CALLS),
            false => 0,
        },
    })
}

/// The compiled-plugin cache: `--cache-dir`, else the user's cache directory; none with
/// `--no-cache` or when no home directory is known. An unsafe directory stops the worker.
fn open_cache(args: &Args, engine: &wasmtime::Engine) -> anyhow::Result<Option<ArtifactCache>> {
    if args.no_cache {
        return Ok(None);
    }
    let Some(dir) = args.cache_dir.clone().or_else(cache::default_dir) else {
        tracing::warn!("no plugin cache: neither XDG_CACHE_HOME nor HOME is set (use --cache-dir)");
        return Ok(None);
    };
    Ok(Some(ArtifactCache::open(dir, engine)?))
}

/// The batch queue's worker: the workflows and the activities, with the limits of `args`.
fn batch_worker_options(
    args: &Args,
    activities: PluginActivities,
) -> anyhow::Result<WorkerOptions> {
    let tuner = TunerHolder::builder()
        .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(
            args.max_concurrent_workflow_tasks as usize,
        ))
        .activity_task_slot_supplier(FixedSizeSlotSupplier::new(
            args.max_concurrent_activities as usize,
        ))
        .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(
            args.max_concurrent_activities as usize,
        ))
        .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
        .build();
    Ok(WorkerOptions::new(&args.task_queue)
        .register_workflow::<BatchProcessingWorkflow>()?
        .register_workflow::<ListPluginsWorkflow>()?
        .register_activities(activities)
        .tuner(tuner)
        .max_cached_workflows(args.max_cached_workflows as usize)
        .max_heartbeat_throttle_interval(batch_worker::activities::HEARTBEAT_THROTTLE)
        .max_eager_activity_reservations_per_workflow_task(args.max_eager_activities as usize)
        .graceful_shutdown_period(Duration::from_secs(args.shutdown_grace_secs))
        .build())
}

/// Metrics: without `--metrics-addr` nothing is recorded; with it, one Prometheus endpoint
/// serves the SDK's metrics (prefixed `temporal_`) and the worker's own (`batch_plugin_*`).
struct Telemetry {
    core_meter: Option<Arc<dyn CoreMeter>>,
    /// Prefixed `temporal_`, with a `service_name` label: for the SDK's client.
    sdk_meter: Option<TemporalMeter>,
    /// Unprefixed: for our metrics.
    own_meter: Option<TemporalMeter>,
}

impl Telemetry {
    fn start(address: Option<SocketAddr>) -> anyhow::Result<Self> {
        let Some(address) = address else {
            return Ok(Self {
                core_meter: None,
                sdk_meter: None,
                own_meter: None,
            });
        };
        let exporter = PrometheusExporterOptions::builder()
            .socket_addr(address)
            // Prometheus conventions: seconds, `_seconds` and `_total` suffixes.
            .use_seconds_for_durations(true)
            .unit_suffix(true)
            .counters_total_suffix(true)
            .histogram_bucket_overrides(HistogramBucketOverrides {
                overrides: HashMap::from([(
                    CALL_LATENCY.to_owned(),
                    CALL_LATENCY_BUCKETS.to_vec(),
                )]),
            })
            .build();
        // Binds at once, so a port in use is reported here rather than lost in a task.
        let server = start_prometheus_metric_exporter(exporter)
            .with_context(|| format!("cannot serve metrics on {address}"))?;
        tracing::info!("serving metrics on http://{}/metrics", server.bound_addr);
        let core_meter: Arc<dyn CoreMeter> = server.meter;
        let instance = telemetry_init(
            TelemetryOptions::builder()
                .metrics(core_meter.clone())
                .build(),
        )?;
        Ok(Self {
            sdk_meter: instance.get_temporal_metric_meter(),
            own_meter: instance.get_metric_meter(),
            core_meter: Some(core_meter),
        })
    }

    /// For the SDK runtime (its workers' metrics).
    fn options(&self) -> TelemetryOptions {
        TelemetryOptions::builder()
            .maybe_metrics(self.core_meter.clone())
            .build()
    }

    fn plugin_metrics(&self) -> PluginMetrics {
        self.own_meter
            .clone()
            .map_or_else(PluginMetrics::disabled, PluginMetrics::new)
    }
}

/// Lists (and so pre-compiles) the plugins present at start, off the start-up path; bad files
/// are reported, not fatal: the directory may be fixed while the worker runs.
/// Logs the plugins directory's plugins, checked but not loaded: each is loaded (compiled,
/// or mapped from the cache) on its first use, and a file that is not a plugin is reported
/// now, by name, with the reason.
fn log_plugins(registry: &PluginRegistry) {
    let names = match registry.names() {
        Ok(names) => names,
        Err(e) => return tracing::error!("{}", e.message()),
    };
    if names.is_empty() && registry.store().is_none() {
        tracing::warn!(
            dir = %registry.dir().display(),
            "no plugins yet: build them with scripts/build-plugins.sh"
        );
        return;
    }
    let mut good = Vec::new();
    for name in names {
        match registry.check(&name) {
            Ok(()) => good.push(name),
            Err(e) => tracing::error!(plugin = %name, "{}", e.message()),
        }
    }
    if !good.is_empty() || registry.store().is_none() {
        tracing::info!(
            plugins = %good.join(", "),
            "plugins available (each loaded on its first use)"
        );
    }
    if let Some(store) = registry.store() {
        match registry.store_names() {
            Ok(names) => tracing::info!(
                store = store.text(),
                plugins = %names.join(", "),
                "plugins published in the store (each fetched on its first use)"
            ),
            Err(e) => tracing::error!("{}", e.message()),
        }
    }
}

async fn wait_for_shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM ({e}); Ctrl-C still works");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
