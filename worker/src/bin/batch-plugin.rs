//! `batch-plugin`: a plugin author's loop without a Temporal server.
//!
//! - `batch-plugin check FILE`: loads the file exactly as the worker would (same sandbox, same
//!   limits) and reports its interface, imports, size, digest and compile time, or why the
//!   worker would reject it.
//! - `batch-plugin run FILE [--config JSON|@FILE] (--range A..=B | --lines FILE|-)
//!   [--allow-http HOST[:PORT]]`: runs the plugin on the given items in blocks, as a
//!   `batch`-mode leaf does (one item per call for a plugin that calls services), and prints one line
//!   per item (`index<TAB>kind<TAB>value`, refusals included), the time and memory of each
//!   block on stderr, and the counts (`Numbers: 3`, `Skipped: 3`, `Failed: 0`). It exits
//!   non-zero only when a call fails as a whole (a trap, the deadline).
//! - `batch-plugin publish FILE --store URL [--name NAME] [--sign-key FILE]`: checks FILE as
//!   `check` does, then publishes it to a fleet's plugin store as NAME's current version.
//! - `batch-plugin versions NAME --store URL [--json]`: NAME's published versions, newest first.
//! - `batch-plugin keygen --out PREFIX`: an ed25519 key pair for signing (`PREFIX.key`,
//!   `PREFIX.pub`).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use batch_core::blocks::{BlockSizer, MAX_BLOCK_BYTES};
use batch_core::http::{HttpPolicy, HttpTask};
use batch_core::{Output, Outputs, PluginConfig};
use batch_worker::plugins::cache::{self, ArtifactCache};
use batch_worker::plugins::http::{HttpGrants, LeafHttp};
use batch_worker::plugins::registry::read_plugin_file;
use batch_worker::plugins::signing::Signer;
use batch_worker::plugins::store::{PluginStore, Published};
use batch_worker::plugins::{
    Item, LoadedPlugin, PluginBytes, RecordBuffer, SandboxLimits, SandboxedEngine,
};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Check and run a batch plugin on your own inputs, with the worker's sandbox, no server"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load FILE as the worker would and report what it is, or why it would be rejected.
    Check {
        file: PathBuf,
        #[command(flatten)]
        limits: Limits,
    },
    /// Run FILE on items and print each output or error.
    Run {
        file: PathBuf,
        /// The plugin's configuration: JSON text or @FILE (as `starter --plugin-config`).
        #[arg(long, value_name = "JSON|@FILE", value_parser = PluginConfig::from_arg)]
        config: Option<PluginConfig>,
        /// Range items FIRST..=LAST (or FIRST..LAST, exclusive), as a batch over 1..=N has.
        #[arg(long, value_name = "FIRST..=LAST", conflicts_with = "lines")]
        range: Option<String>,
        /// Record items: the lines of FILE (`-` for stdin), numbered from 1.
        #[arg(long, value_name = "FILE")]
        lines: Option<PathBuf>,
        /// Most items per call (default: sized from the deadline, up to 4096, as the worker).
        #[arg(long)]
        block: Option<usize>,
        /// Let the plugin call HOST or HOST:PORT (repeatable), as a batch started with
        /// `--http-allow` on a worker granting it: one item per call, each request with the
        /// item's `Idempotency-Key` (batch `batch-plugin`).
        #[arg(long, value_name = "HOST[:PORT]")]
        allow_http: Vec<String>,
        #[command(flatten)]
        limits: Limits,
    },
    /// Check FILE as the worker would, then publish it to a plugin store as NAME's current
    /// version (its bytes by digest, then a record naming it: the name moves in one write).
    Publish {
        file: PathBuf,
        /// The plugin store: a directory, file:// or s3://... URL (workers' --plugin-store).
        #[arg(long, env = "BATCH_PLUGIN_STORE", value_name = "URL")]
        store: String,
        /// The plugin's name (default: FILE's name without its extension).
        #[arg(long)]
        name: Option<String>,
        /// Sign the version with this ed25519 private key (PEM), for workers that trust it.
        #[arg(long, value_name = "FILE")]
        sign_key: Option<PathBuf>,
        /// Who publishes, as the record says (default: user@host).
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        limits: Limits,
    },
    /// List plugin NAME's versions in a plugin store, newest (current) first.
    Versions {
        name: String,
        #[arg(long, env = "BATCH_PLUGIN_STORE", value_name = "URL")]
        store: String,
        /// One JSON array of records instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Make an ed25519 key pair: PREFIX.key (private, mode 0600) and PREFIX.pub (public).
    Keygen {
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct Limits {
    /// Compiled plugins are kept here, as the worker keeps them (the worker's default cache:
    /// a plugin checked here loads at once in a worker on this machine). `none` compiles
    /// every time.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// CPU deadline of one call (a block), in milliseconds (the worker's default: 1000).
    #[arg(long, default_value_t = 1000)]
    deadline_ms: u64,
    /// Memory cap of one instance, in MiB (the worker's default: 64).
    #[arg(long, default_value_t = 64)]
    memory_mib: usize,
}

impl Limits {
    fn engine(&self) -> anyhow::Result<SandboxedEngine> {
        SandboxedEngine::new(SandboxLimits {
            cpu_deadline: Duration::from_millis(self.deadline_ms),
            memory_bytes: self.memory_mib << 20,
            calls_at_once: 1,
            ..SandboxLimits::default()
        })
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // What a WASI plugin prints (stdout, stderr) reaches the terminal as the worker logs it.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,plugin_output=info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: piped or captured output holds no escape sequences.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            // The plugin's words may be in it: shown, never acted on by a terminal.
            eprintln!(
                "error: {}",
                batch_core::text::neutralised(&format!("{e:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Check { file, limits } => {
            check(&file, &limits)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            file,
            config,
            range,
            lines,
            block,
            allow_http,
            limits,
        } => {
            let items = match (range, lines) {
                (Some(range), None) => Items::Range(parse_range(&range)?),
                (None, Some(path)) => Items::Lines(path),
                _ => bail!("give the items: --range FIRST..=LAST or --lines FILE (- for stdin)"),
            };
            let plugin = Arc::new(load(&file, &limits)?);
            let http = http_leaf(&allow_http)?;
            run_items(&plugin, config.as_ref(), http, items, block)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Publish {
            file,
            store,
            name,
            sign_key,
            by,
            limits,
        } => {
            publish(&file, &store, name, sign_key.as_deref(), by, &limits)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Versions { name, store, json } => {
            versions(&name, &store, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen { out } => {
            let with = |extension: &str| {
                let mut path = out.clone().into_os_string();
                path.push(extension);
                PathBuf::from(path)
            };
            let (private, public) = (with(".key"), with(".pub"));
            let id = Signer::generate(&private, &public)?;
            println!("Private key: {} (keep it secret)", private.display());
            println!(
                "Public key: {} (give it to workers: --trust-key)",
                public.display()
            );
            println!("Key id: {id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn publish(
    file: &Path,
    store: &str,
    name: Option<String>,
    sign_key: Option<&Path>,
    by: Option<String>,
    limits: &Limits,
) -> anyhow::Result<()> {
    let name = match name {
        Some(name) => name,
        None => file
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_owned)
            .context("give the plugin's name: --name NAME")?,
    };
    batch_core::config::validate_plugin_name(&name)?;
    let signer = sign_key.map(Signer::read).transpose()?;
    // Checked as `check` does (it loads, and one instance fits the limits), then the bytes
    // checked are the bytes published.
    let bytes = read(file)?;
    let plugin = load_bytes(file, &bytes, limits)?;
    let mut slot = plugin.engine().call_slot_blocking();
    plugin
        .instantiated_memory(&mut slot)
        .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    drop(slot);
    let by = by.unwrap_or_else(publisher);
    let runtime = store_runtime()?;
    let store = PluginStore::open(store)?;
    let published = runtime.block_on(store.publish(&name, &bytes, &by, signer.as_ref()))?;
    println!(
        "Published {name}@sha256:{} ({} bytes) to {}",
        published.digest,
        published.size,
        store.text()
    );
    for key in &published.signed_by {
        println!("Signed by: key {key}");
    }
    // What workers resolve the name to now: this version, unless a later publish won.
    match runtime.block_on(store.current(&name))? {
        Some(current) if current.digest != published.digest => println!(
            "Current version of {name}: sha256:{} (published at {} by {}, after this one)",
            current.digest, current.published_at, current.published_by
        ),
        _ => println!("Current version of {name}: sha256:{}", published.digest),
    }
    Ok(())
}

/// `user@host`, from the environment and the kernel.
fn publisher() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{host}")
}

/// A runtime for the store's requests (this tool is otherwise synchronous).
fn store_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn versions(name: &str, store: &str, json: bool) -> anyhow::Result<()> {
    let runtime = store_runtime()?;
    let store = PluginStore::open(store)?;
    let versions: Vec<Published> = runtime.block_on(store.versions(name))?;
    if json {
        println!("{}", serde_json::to_string(&versions)?);
        return Ok(());
    }
    if versions.is_empty() {
        bail!("plugin {name:?} has no versions in {}", store.text());
    }
    println!(
        "{name} in {} (newest first; signers as each record states them, verified by every worker that trusts a key):",
        store.text()
    );
    for (i, v) in versions.iter().enumerate() {
        let signed = match v.signed_by.as_slice() {
            [] => "unsigned".to_owned(),
            keys => format!("signed by {}", keys.join(", ")),
        };
        let current = if i == 0 { "  (current)" } else { "" };
        println!(
            "sha256:{}  {} bytes  {}  by {}  {signed}{current}",
            v.digest, v.size, v.published_at, v.published_by
        );
    }
    Ok(())
}

fn read(file: &Path) -> anyhow::Result<PluginBytes> {
    let bytes =
        read_plugin_file(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(PluginBytes::new(bytes))
}

fn load(file: &Path, limits: &Limits) -> anyhow::Result<LoadedPlugin> {
    load_bytes(file, &read(file)?, limits)
}

/// `file`'s `bytes`, loaded as the worker loads a plugin.
fn load_bytes(file: &Path, bytes: &PluginBytes, limits: &Limits) -> anyhow::Result<LoadedPlugin> {
    let engine = limits.engine()?;
    let cache_dir = match &limits.cache_dir {
        Some(dir) if dir.as_os_str() == "none" => None,
        Some(dir) => Some(dir.clone()),
        None => cache::default_dir(),
    };
    let cache = cache_dir
        .map(|dir| ArtifactCache::open(dir, engine.engine()))
        .transpose()?;
    let name = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .to_owned();
    LoadedPlugin::load(&engine, cache.as_ref(), &name, file, bytes)
        .map_err(|e| anyhow::anyhow!("{}", e.message()))
}

fn check(file: &Path, limits: &Limits) -> anyhow::Result<()> {
    let started = Instant::now();
    let plugin = load(file, limits)?;
    let took = started.elapsed();
    // One instantiation, as every call makes: proves the plugin fits the per-call limits.
    let mut slot = plugin.engine().call_slot_blocking();
    let memory = plugin
        .instantiated_memory(&mut slot)
        .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    println!("File: {}", file.display());
    let mut interfaces = vec![plugin.interface().name().to_owned()];
    if plugin.has_ranges() {
        let name = batch_worker::plugins::interface::V2_RANGES;
        interfaces.push(format!("{name} (range blocks in columns)"));
    }
    if plugin.has_records() {
        let name = batch_worker::plugins::interface::V2_RECORDS;
        interfaces.push(format!("{name} (record blocks in columns)"));
    }
    println!("Interface: {}", interfaces.join(", "));
    match plugin.input() {
        Some(input) => println!("Input: {input}"),
        None => println!("Input: any (the plugin states none: it is given what a source gives)"),
    }
    println!("Digest: sha256:{}", plugin.digest());
    println!("Size: {} bytes", plugin.size());
    let imports = plugin.imports();
    if imports.is_empty() {
        println!("Imports: none");
    } else {
        println!(
            "Imports: {} (WASI 0.2, linked deny-all)",
            imports.join(", ")
        );
    }
    println!(
        "Load: {:.1} s (compiling, or from the cache)",
        took.as_secs_f64()
    );
    println!(
        "Instance memory: {:.1} MiB at start (cap {} MiB)",
        memory as f64 / f64::from(1 << 20),
        limits.memory_mib
    );
    println!("ok: the worker would load this plugin");
    Ok(())
}

enum Items {
    Range((u64, u64)),
    Lines(PathBuf),
}

/// Runs every item, printing outputs on stdout and block figures on stderr, then the counts.
/// Refused items are outputs of the plugin (printed, counted); a call that fails as a whole
/// (a trap, the deadline) ends the run with an error.
fn run_items(
    plugin: &Arc<LoadedPlugin>,
    config: Option<&PluginConfig>,
    http: Option<Arc<LeafHttp>>,
    items: Items,
    block: Option<usize>,
) -> anyhow::Result<()> {
    let mut session = plugin
        .session_calling(plugin.engine().call_slot_blocking(), config, http)
        .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    let mut sizer = BlockSizer::for_deadline(plugin.cpu_deadline());
    // A plugin that calls services gets one item per call, as in a worker: its requests are
    // the item's.
    let one_per_call = session.calls_services();
    let next_block = |sizer: &BlockSizer| match one_per_call {
        true => 1,
        false => block.unwrap_or(sizer.next_len()).max(1),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut counts = Outputs::default();
    let mut failed = 0u64;
    let mut source = ItemSource::new(items)?;
    loop {
        let block = source.next_block(next_block(&sizer))?;
        if block.is_empty() {
            break;
        }
        // Records go through the worker's own path: one buffer, `records` when exported.
        let records = RecordBuffer::of_items(&block);
        session = session
            .renewed_if_worn(config)
            .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        let started = Instant::now();
        session.begin_item(block[0].index);
        let results = match &records {
            Some(records) => session.process_records(records, 0..records.len()),
            None => session.process_each(&block),
        };
        let results = session.end_item(block[0].index, results);
        let took = started.elapsed();
        sizer.record(block.len(), took);
        let span = format!("{}..={}", block[0].index, block[block.len() - 1].index);
        let results = match results {
            Ok(results) => results,
            Err(e) => {
                out.flush()?;
                eprintln!("block {span}: {}", e.message());
                bail!("the call failed; the instance is unusable after a trap or deadline");
            }
        };
        for (item, result) in block.iter().zip(results) {
            if let Ok(output) = &result {
                counts.add(output);
            }
            match result {
                Ok(Output::Number(n)) => writeln!(out, "{}\tnumber\t{n}", item.index)?,
                // A record's bytes are the plugin's: shown escaped, one line each.
                Ok(Output::Record(bytes)) => writeln!(
                    out,
                    "{}\trecord\t{}",
                    item.index,
                    batch_core::text::neutralised(&String::from_utf8_lossy(&bytes))
                )?,
                Ok(Output::Skip) => writeln!(out, "{}\tskip", item.index)?,
                Err(e) => {
                    failed += 1;
                    writeln!(out, "{}\terror\t{}", item.index, e.message())?;
                }
            }
        }
        out.flush()?;
        eprintln!(
            "block {span}: {} items in {:.3} ms ({:.0} ns/item), memory {:.1} MiB",
            block.len(),
            took.as_secs_f64() * 1e3,
            took.as_nanos() as f64 / block.len() as f64,
            session.memory_bytes() as f64 / f64::from(1 << 20)
        );
    }
    println!("Items: {}", counts.count + failed);
    println!("Numbers: {}", counts.numbers());
    println!("Sum: {}", counts.sum);
    println!(
        "Records: {} ({} bytes)",
        counts.records, counts.record_bytes
    );
    println!("Skipped: {}", counts.skipped);
    println!("Failed: {failed}");
    Ok(())
}

/// The HTTP of a run granted `hosts` (none: a plugin that calls services is refused).
fn http_leaf(hosts: &[String]) -> anyhow::Result<Option<Arc<LeafHttp>>> {
    if hosts.is_empty() {
        return Ok(None);
    }
    let grants = HttpGrants::new(hosts).map_err(anyhow::Error::msg)?;
    let task = HttpTask {
        policy: HttpPolicy::allowing(grants.hosts().to_vec()),
        leaves_in_flight: 1,
    };
    Ok(Some(grants.leaf(&task, "batch-plugin")?))
}

/// Items in blocks: a range, or the lines of a file or stdin (bounded per block in bytes).
struct ItemSource {
    range: Option<(u64, u64)>,
    lines: Option<Box<dyn BufRead>>,
    next_index: u64,
}

impl ItemSource {
    fn new(items: Items) -> anyhow::Result<Self> {
        Ok(match items {
            Items::Range((first, last)) => Self {
                range: Some((first, last)),
                lines: None,
                next_index: first,
            },
            Items::Lines(path) => {
                let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
                    Box::new(std::io::BufReader::new(std::io::stdin()))
                } else {
                    Box::new(std::io::BufReader::new(
                        std::fs::File::open(&path)
                            .with_context(|| format!("cannot open {}", path.display()))?,
                    ))
                };
                Self {
                    range: None,
                    lines: Some(reader),
                    next_index: 1,
                }
            }
        })
    }

    fn next_block(&mut self, len: usize) -> anyhow::Result<Vec<Item>> {
        let mut block = Vec::new();
        if let Some((_, last)) = self.range {
            while block.len() < len && self.next_index <= last {
                block.push(Item {
                    index: self.next_index,
                    data: None,
                });
                self.next_index += 1;
            }
            return Ok(block);
        }
        let Some(reader) = self.lines.as_mut() else {
            return Ok(block);
        };
        let mut bytes = 0;
        while block.len() < len && bytes < MAX_BLOCK_BYTES {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
            bytes += line.len();
            block.push(Item {
                index: self.next_index,
                data: Some(line),
            });
            self.next_index += 1;
        }
        Ok(block)
    }
}

/// `A..=B` or `A..B` (exclusive), items from 1.
fn parse_range(text: &str) -> anyhow::Result<(u64, u64)> {
    let number = |s: &str| -> anyhow::Result<u64> {
        s.trim()
            .parse()
            .with_context(|| format!("{s:?} is not a whole number (in range {text:?})"))
    };
    let (first, last) = if let Some((a, b)) = text.split_once("..=") {
        (number(a)?, number(b)?)
    } else if let Some((a, b)) = text.split_once("..") {
        let end = number(b)?;
        (
            number(a)?,
            end.checked_sub(1).context("the range is empty")?,
        )
    } else {
        let n = number(text)?;
        (n, n)
    };
    if first == 0 || last < first {
        bail!("the range {text:?} is empty or starts at 0: items are numbered from 1");
    }
    Ok((first, last))
}
