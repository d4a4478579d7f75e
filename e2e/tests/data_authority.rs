//! Data authority and data correctness end to end: a worker reads and writes only what its
//! operator granted (`--allow-read`, `--allow-write`), checked where it opens a place, for
//! batches started by the starter and for forged inputs started straight on the server by
//! another Temporal client (the `temporal` CLI); nothing outside the grants is read,
//! connected to or created. And no record is silently wrong: CSV rows with line breaks in
//! quoted fields are refused at every split size, the record limit is the documented one, a
//! local source rewritten in place is detected, plugins get the items they state they take.

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use support::{DevServer, Node, Run, Worker};

fn server() -> &'static DevServer {
    static SERVER: OnceLock<DevServer> = OnceLock::new();
    SERVER.get_or_init(DevServer::start)
}

/// A TCP port that counts the connections it gets (and answers none): a place no request may
/// reach.
struct Recorder {
    port: u16,
    connections: Arc<AtomicUsize>,
}

fn recorder() -> &'static Recorder {
    static RECORDER: OnceLock<Recorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        Recorder { port, connections }
    })
}

/// An HTTP server that answers every request with a redirect to the recorder.
fn redirector() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let target = format!("http://127.0.0.1:{}/secret.jsonl", recorder().port);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = [0; 4096];
                let _ = stream.read(&mut request);
                let _ = write!(
                    stream,
                    "HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\n\
                     Connection: close\r\n\r\n"
                );
            }
        });
        port
    })
}

/// The test's data: `in/` (granted for reading), `out/` (granted for writing), and `secret/`
/// and `elsewhere/` beside them (granted for nothing), all under the e2e data root.
struct Places {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Places {
    fn path(&self, rest: &str) -> PathBuf {
        self.root.join(rest)
    }

    fn text(&self, rest: &str) -> String {
        self.path(rest).to_str().expect("utf-8").to_owned()
    }
}

fn places() -> &'static Places {
    static PLACES: OnceLock<Places> = OnceLock::new();
    PLACES.get_or_init(|| {
        let dir = support::data_dir();
        let root = std::fs::canonicalize(dir.path()).expect("resolves");
        for sub in ["in", "out", "secret"] {
            std::fs::create_dir(root.join(sub)).expect("dir");
        }
        std::fs::write(
            root.join("secret/passwd.csv"),
            "user,password\nalice,hunter2\n",
        )
        .expect("secret");
        std::fs::write(root.join("in/events.jsonl"), support::data::events(300)).expect("in");
        // A link inside the granted directory that leads outside it.
        std::os::unix::fs::symlink(root.join("secret"), root.join("in/link")).expect("link");
        Places { _dir: dir, root }
    })
}

const PLUGINS: [(&str, &str); 5] = [
    ("json_field", "json_field"),
    ("json_filter", "json_filter"),
    ("csv_to_json", "csv_to_json"),
    ("picky", "picky"),
    ("square_number", "square_number"),
];

/// A worker granted `in/` to read, `out/` to write, and the redirector's HTTP server to read.
fn granted() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let redirector = format!("http://127.0.0.1:{}/", redirector());
        let (read, write) = (places().text("in"), places().text("out"));
        let args = [
            "--allow-read",
            &read,
            "--allow-read",
            &redirector,
            "--allow-write",
            &write,
        ];
        // Plain HTTP allowed (the stores' own setting), so the redirector can be reached.
        let plugins = tempfile::tempdir().expect("plugins dir");
        for (name, as_name) in PLUGINS {
            support::install_plugin(plugins.path(), name, as_name);
        }
        let env = [("ALLOW_HTTP", "true")];
        let worker = Worker::builder(server(), "granted", plugins.path())
            .args(&args)
            .env(&env)
            .start();
        Node {
            server: server(),
            queue: "granted".into(),
            plugins,
            worker,
        }
    })
}

/// A worker granted nothing (an empty grant is none).
fn ungranted() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| Node::start(server(), "ungranted", &PLUGINS, &["--allow-read="]))
}

fn refused(run: &Run, node: &Node, expected: &str) {
    assert!(!run.success, "refused: {}", node.explain(run));
    assert!(
        run.stderr.contains(expected),
        "expected {expected:?} in:\n{}",
        node.explain(run)
    );
}

/// Starts `BatchProcessingWorkflow` with `input` straight on the server (not through the
/// starter) and waits: whether it completed, and what the CLI printed.
fn forged(queue: &str, id: &str, input: &Value) -> (bool, String) {
    server().execute_batch(queue, id, input)
}

/// A data batch's root input, as any client could write it: one leaf over `size` bytes.
fn data_input(location: &str, format: &str, size: u64, output: Option<&str>) -> Value {
    let mut config = json!({
        "batch_size": size,
        "max_children": 5,
        "plugin": {"name": "picky"},
        "mode": "batch",
        "source": {"location": location, "format": format, "size": size},
    });
    if let Some(output) = output {
        config["output"] = json!(output);
    }
    json!({"first": 1, "last": size, "config": config})
}

#[test]
fn a_worker_without_grants_reads_and_writes_no_data_and_says_how_to_grant() {
    let node = ungranted();
    let out = places().path("out/never");
    let run = node.run(&[
        "--source",
        &places().text("in/events.jsonl"),
        "--plugin",
        "json_field",
        "--plugin-config",
        r#"{"field": "amount"}"#,
        "--output",
        out.to_str().expect("utf-8"),
    ]);
    refused(
        &run,
        node,
        "reading it is not granted: this worker is granted no reading of data",
    );
    assert!(
        run.stderr
            .contains("grants places with `worker --allow-read PREFIX` (or BATCH_ALLOW_READ"),
        "{}",
        run.stderr
    );
    assert!(!out.exists(), "nothing created");
    // A range batch (the demo) needs no grant.
    let demo = node.report(&["50"]);
    assert_eq!(demo.outputs().sum, 42925);
}

#[test]
fn sources_and_outputs_outside_the_grants_are_refused_through_the_starter() {
    let node = granted();
    let p = places();
    let secret = node.run(&[
        "--source",
        &p.text("secret/passwd.csv"),
        "--plugin",
        "csv_to_json",
        "--plugin-config",
        r#"{"columns": ["user", "password"]}"#,
    ]);
    refused(&secret, node, "passwd.csv: reading it is not granted");
    assert!(
        secret.stderr.contains(&format!(
            "this worker's --allow-read grants are {}",
            p.text("in")
        )),
        "{}",
        secret.stderr
    );
    assert!(!secret.stdout.contains("hunter2") && !secret.stderr.contains("hunter2"));
    // `in` grants `in/...`, not `inside/...`.
    std::fs::create_dir_all(p.path("inside")).expect("dir");
    std::fs::write(p.path("inside/x.jsonl"), b"{\"amount\": 1}\n").expect("write");
    let beside = node.run(&[
        "--source",
        &p.text("inside/x.jsonl"),
        "--plugin",
        "json_field",
        "--plugin-config",
        r#"{"field": "amount"}"#,
    ]);
    refused(&beside, node, "x.jsonl: reading it is not granted");
    // An output outside: refused before anything is read or created.
    let deep = p.path("elsewhere/newdir/deep/inside");
    let outside = node.run(&[
        "--source",
        &p.text("in/events.jsonl"),
        "--plugin",
        "json_field",
        "--plugin-config",
        r#"{"field": "amount"}"#,
        "--output",
        deep.to_str().expect("utf-8"),
    ]);
    refused(&outside, node, "inside: writing it is not granted");
    assert!(!p.path("elsewhere").exists(), "no directory created");
}

#[test]
fn forged_inputs_sent_straight_to_the_server_are_refused_where_the_worker_opens_them() {
    granted();
    let p = places();
    let size = std::fs::metadata(p.path("secret/passwd.csv"))
        .expect("size")
        .len();
    let cases = [
        // The secret itself, by its path, through the link inside `in/`, by `..`, by URL.
        (p.text("secret/passwd.csv"), "reading it is not granted"),
        (p.text("in/link/passwd.csv"), "it resolves to"),
        (
            p.text("in/../secret/passwd.csv"),
            "reading it is not granted",
        ),
        (p.text("in//link/./passwd.csv"), "it resolves to"),
        (
            format!("file://{}", p.text("secret/passwd.csv")),
            "reading it is not granted",
        ),
        (
            format!("file://{}", p.text("in/%2e%2e/secret/passwd.csv")),
            "reading it is not granted",
        ),
        // The network: a place no grant names is never connected to.
        (
            format!("http://127.0.0.1:{}/latest/meta-data", recorder().port),
            "reading it is not granted",
        ),
        (
            format!("http://0x7f.1:{}/x.jsonl", recorder().port),
            "reading it is not granted",
        ),
        (
            format!(
                "http://127.0.0.1:{}@127.0.0.1:{}/x",
                redirector(),
                recorder().port
            ),
            "may not hold a user or a password",
        ),
    ];
    for (n, (location, expected)) in cases.iter().enumerate() {
        let input = data_input(location, "lines", size, None);
        let (ok, text) = forged("granted", &format!("forged-read-{n}"), &input);
        assert!(!ok && text.contains(expected), "{location}: {text}");
        assert!(!text.contains("hunter2"), "{location}: {text}");
    }
    for (n, output) in [
        p.text("elsewhere/forged"),
        p.text("out/../elsewhere/forged"),
        p.text("out/link-to-nowhere/../../elsewhere/forged"),
    ]
    .iter()
    .enumerate()
    {
        let size = std::fs::metadata(p.path("in/events.jsonl"))
            .expect("size")
            .len();
        let input = data_input(&p.text("in/events.jsonl"), "jsonl", size, Some(output));
        let (ok, text) = forged("granted", &format!("forged-write-{n}"), &input);
        assert!(!ok, "{output}: {text}");
        assert!(
            text.contains("writing it is not granted") || text.contains("cannot resolve"),
            "{output}: {text}"
        );
        assert!(!p.path("elsewhere").exists(), "{output}: nothing created");
    }
    // A granted server that redirects to an ungranted one: the redirect is not followed.
    let redirected = format!("http://127.0.0.1:{}/data.jsonl", redirector());
    let input = data_input(&redirected, "jsonl", 100, None);
    let (ok, text) = forged("granted", "forged-redirect", &input);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "redirected to http://127.0.0.1:{}/secret.jsonl, which is not followed",
            recorder().port
        )),
        "{text}"
    );
    assert_eq!(
        recorder().connections.load(Ordering::SeqCst),
        0,
        "no request reached an ungranted place"
    );
}

/// Writes `text` as a CSV file under `in/` and runs `args` over it at each split size: the
/// runs, in order.
fn runs_over(name: &str, text: &str, splits: &[u64], args: &[&str]) -> Vec<(u64, Run)> {
    let path = places().path(&format!("in/{name}"));
    std::fs::write(&path, text).expect("write");
    splits
        .iter()
        .map(|&split| {
            let split_text = split.to_string();
            let mut all = vec![
                "--source",
                path.to_str().expect("utf-8"),
                "--split-size",
                &split_text,
            ];
            all.extend_from_slice(args);
            (split, granted().run(&all))
        })
        .collect()
}

#[test]
fn csv_rows_with_line_breaks_in_quoted_fields_are_refused_at_every_split_size() {
    // The issue's file: the row `x,"1` opens a field that ends on the next line.
    let four = "a,k\n1,1\nx,\"1\n2,1\"\n3,1\n";
    let splits: Vec<u64> = (1..=four.len() as u64).collect();
    let args = ["--plugin", "picky", "--max-failures", "100"];
    for (split, run) in runs_over("four.csv", four, &splits, &args) {
        assert!(!run.success, "split {split}: {}", run.stdout);
        assert!(
            run.stderr.contains(
                "item 9: the CSV row at byte 9 (\"x,\\\"1\") opens a quoted field that holds \
                 a line break"
            ),
            "split {split}: {}",
            run.stderr
        );
    }
    // A larger file: the broken row deep inside, splits cutting everywhere.
    let mut big = String::from("id,note\n");
    for i in 0..400 {
        if i == 271 {
            big.push_str("271,\"first line\nsecond line, \"\"quoted\"\"\"\n");
        } else {
            big.push_str(&format!("{i},\"a, b\"\n"));
        }
    }
    for (split, run) in runs_over("big.csv", &big, &[7, 64, 333, 1000, 4096, 1 << 20], &args) {
        assert!(!run.success, "split {split}: {}", run.stdout);
        assert!(
            run.stderr
                .contains("opens a quoted field that holds a line break"),
            "split {split}: {}",
            run.stderr
        );
    }
}

#[test]
fn clean_csv_rows_and_csv_to_json_give_exact_outputs_at_many_split_sizes() {
    // Quoted commas and quotes, CRLF line ends, an empty line: every row exactly once.
    let mut text = String::from("user,password\r\n");
    let mut expected = String::new();
    for i in 0..300 {
        if i % 50 == 7 {
            text.push_str("\r\n");
        }
        text.push_str(&format!("\"u{i}, \"\"x\"\"\",p{i}\r\n"));
        expected.push_str(&format!(
            "{{\"login\":\"u{i}, \\\"x\\\"\",\"secret\":\"p{i}\"}}\n"
        ));
    }
    let out = places().path("out/users");
    let out_text = out.to_str().expect("utf-8").to_owned();
    for split in [10, 61, 500, 4096, 1 << 20] {
        let _ = std::fs::remove_dir_all(&out);
        let args = [
            "--plugin",
            "csv_to_json",
            "--plugin-config",
            r#"{"columns": ["login", "secret"]}"#,
            "--output",
            &out_text,
            "--json",
        ];
        let (_, run) = runs_over("users.csv", &text, &[split], &args)
            .pop()
            .expect("one run");
        assert!(run.success, "split {split}: {}", granted().explain(&run));
        assert_eq!(run.report().outputs().count, 300, "split {split}");
        let mut parts: Vec<PathBuf> = std::fs::read_dir(&out)
            .expect("out")
            .map(|e| e.expect("entry").path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
            })
            .collect();
        parts.sort();
        let got: String = parts
            .iter()
            .map(|p| std::fs::read_to_string(p).expect("part"))
            .collect();
        assert!(got == expected, "split {split}: got\n{got}");
    }
}

#[test]
fn a_plugin_gets_only_the_items_it_states_it_takes() {
    let node = granted();
    let p = places();
    let jsonl = p.text("in/events.jsonl");
    for (args, expected) in [
        (
            vec![
                "--source",
                &jsonl,
                "--plugin",
                "csv_to_json",
                "--plugin-config",
                r#"{"columns": ["a"]}"#,
            ],
            "it takes CSV rows, which a jsonl source does not give",
        ),
        (
            vec![
                "--source",
                &jsonl,
                "--format",
                "lines",
                "--plugin",
                "json_field",
                "--plugin-config",
                r#"{"field": "amount"}"#,
            ],
            "read the source with --format jsonl",
        ),
        (
            vec!["--source", &jsonl, "--plugin", "square_number"],
            "it takes numbers (the items 1..=N of a range batch), which a jsonl source does not give",
        ),
        (
            vec![
                "100",
                "--plugin",
                "json_field",
                "--plugin-config",
                r#"{"field": "amount"}"#,
            ],
            "it takes JSON records, which a range batch does not give",
        ),
    ] {
        let run = node.run(&args);
        refused(&run, node, expected);
    }
}

#[test]
fn the_record_limit_is_the_documented_one() {
    let limit = batch_core::split::MAX_RECORD_BYTES;
    let p = places();
    for (extra, ok) in [(0, true), (1, false)] {
        let path = p.path(&format!("in/long-{extra}.txt"));
        let mut text = b"a\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', limit + extra));
        text.extend_from_slice(b"\r\nb\n");
        std::fs::write(&path, &text).expect("write");
        let run = granted().run(&[
            "--source",
            path.to_str().expect("utf-8"),
            "--format",
            "lines",
            "--plugin",
            "picky",
            "--split-size",
            "4194304",
            "--json",
        ]);
        if ok {
            assert!(run.success, "{}", granted().explain(&run));
            assert_eq!(run.report().outputs().count, 3);
        } else {
            refused(
                &run,
                granted(),
                "item 3: the record is longer than 16777216 bytes, the limit of a record",
            );
        }
    }
}

#[test]
fn a_local_source_rewritten_in_place_fails_its_batch() {
    let p = places();
    let path = p.path("in/rewritten.jsonl");
    std::fs::write(&path, b"{\"amount\": 1}\n{\"amount\": 2}\n").expect("write");
    // Started on a queue no worker polls yet, so the rewrite happens before any leaf reads.
    let started = support::starter(
        server(),
        "late",
        &[
            "--source",
            path.to_str().expect("utf-8"),
            "--plugin",
            "json_field",
            "--plugin-config",
            r#"{"field": "amount"}"#,
            "--no-wait",
        ],
    );
    assert!(started.success, "{}", started.stderr);
    // The same size, the modification time put back: only the change time tells.
    let modified = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .expect("mtime");
    std::fs::write(&path, b"{\"amount\": 7}\n{\"amount\": 9}\n").expect("rewrite");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(modified))
        .expect("mtime put back");
    let plugins = tempfile::tempdir().expect("plugins");
    support::install_plugin(plugins.path(), "json_field", "json_field");
    let _worker = Worker::start(server(), "late", plugins.path());
    let attached = support::starter(server(), "late", &["--attach", started.stdout.trim()]);
    assert!(!attached.success, "{}", attached.stdout);
    assert!(
        attached
            .stderr
            .contains("the object changed since the batch started"),
        "{}",
        attached.stderr
    );
}

/// A many-object source's objects are each opened under the grants, whatever its listing
/// says: a forged input cannot reach an object outside them through its base, a name that
/// climbs out, a link inside a granted directory, or a stored listing that was changed.
#[test]
fn a_forged_listing_reaches_no_object_outside_the_grants() {
    granted();
    let p = places();
    let secret = std::fs::metadata(p.path("secret/passwd.csv"))
        .expect("size")
        .len();
    let many = |base: String, listing: Value| {
        let mut input = data_input(&base, "lines", secret, None);
        input["config"]["source"]["objects"] = json!({
            "base": base, "count": 1, "empty": 0, "listing": listing,
        });
        input
    };
    let inline = |name: &str| json!({"inline": [{"name": name, "size": secret}]});
    let cases = [
        (
            many(format!("{}/", p.text("secret")), inline("passwd.csv")),
            "reading it is not granted",
        ),
        (
            many(format!("{}/", p.text("in")), inline("../secret/passwd.csv")),
            "is not a plain relative name",
        ),
        (
            many(format!("{}/", p.text("in")), inline("link/passwd.csv")),
            "it resolves to",
        ),
    ];
    for (n, (input, expected)) in cases.iter().enumerate() {
        let (ok, text) = forged("granted", &format!("forged-listing-{n}"), input);
        assert!(!ok && text.contains(expected), "{expected}: {text}");
    }
    // A stored listing whose bytes are not the ones its sha256 names.
    let size = std::fs::metadata(p.path("in/events.jsonl"))
        .expect("size")
        .len();
    std::fs::write(
        p.path("in/_listing.jsonl"),
        format!("{{\"name\":\"events.jsonl\",\"size\":{size}}}\n"),
    )
    .expect("listing");
    let mut input = data_input(&format!("{}/", p.text("in")), "jsonl", size, None);
    input["config"]["source"]["objects"] = json!({
        "base": format!("{}/", p.text("in")), "count": 1, "empty": 0,
        "listing": {"stored": {"location": p.text("in/_listing.jsonl"), "sha256": "0".repeat(64)}},
    });
    let (ok, text) = forged("granted", "forged-listing-changed", &input);
    assert!(
        !ok && text.contains("the source's listing: the object changed"),
        "{text}"
    );
}

/// A source is read as the batch says it is stored, and every leaf checks its first bytes
/// against that, whatever client started the batch: a compressed source read as stored would
/// give compressed bytes as records, a stored one read as compressed would be garbage.
#[test]
fn a_source_read_other_than_it_is_stored_is_refused_by_the_starter_and_by_every_leaf() {
    let node = granted();
    let p = places();
    let mut xz = b"\xfd7zXZ\x00\x00\x04".to_vec();
    xz.extend_from_slice(b"compressed\nbytes\n".repeat(100).as_slice());
    std::fs::write(p.path("in/events.jsonl.xz"), &xz).expect("write");
    let run = node.run(&[
        "--source",
        &p.text("in/events.jsonl.xz"),
        "--plugin",
        "json_field",
    ]);
    refused(
        &run,
        node,
        "is xz-compressed: this engine decompresses gzip and zstd",
    );
    let plain = b"{\"amount\": 1}\n".repeat(300);
    std::fs::write(p.path("in/plain.jsonl"), &plain).expect("write");
    let run = node.run(&[
        "--source",
        &p.text("in/plain.jsonl"),
        "--compression",
        "zstd",
        "--plugin",
        "json_field",
    ]);
    refused(&run, node, "is not a zstd stream (it starts 7b 22 61 6d)");

    // Sent straight to the server, past the starter: a gzip stream said to be stored, by
    // every leaf, a split's or a retry's list of records (which reads only where its records
    // start, never byte 1); a stored object said to be gzip.
    let gz = support::data::gzip_members(&plain, 2);
    std::fs::write(p.path("in/events.jsonl.gz"), &gz).expect("write");
    let mut input = data_input(
        &p.text("in/events.jsonl.gz"),
        "lines",
        gz.len() as u64,
        None,
    );
    let (ok, text) = forged("granted", "forged-compressed", &input);
    assert!(
        !ok && text.contains("is gzip-compressed, and the batch reads it as stored"),
        "{text}"
    );
    let mut list = input.clone();
    list["last"] = json!(2);
    list["items"] = json!([11, 28]);
    list["config"]["retry_of"] =
        json!({"batch": "earlier", "plugin": {"name": "picky"}, "failed": 2});
    let (ok, text) = forged("granted", "forged-compressed-list", &list);
    assert!(
        !ok && text.contains("is gzip-compressed, and the batch reads it as stored"),
        "{text}"
    );
    let mut stored = data_input(&p.text("in/plain.jsonl"), "jsonl", plain.len() as u64, None);
    stored["config"]["source"]["compression"] = json!("gzip");
    let (ok, text) = forged("granted", "forged-not-compressed", &stored);
    assert!(!ok && text.contains("is not a gzip stream"), "{text}");

    // A finer tree than the starter makes over a compressed source (splits of 64 bytes):
    // the leaf holding its first byte reads it whole, the others nothing; every record once.
    input["config"]["source"]["compression"] = json!("gzip");
    input["config"]["source"]["format"] = json!("jsonl");
    input["config"]["batch_size"] = json!(64);
    input["config"]["plugin"] = json!({"name": "json_field"});
    let config = r#"{"field":"amount"}"#;
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(config))
    };
    input["config"]["plugin_config"] = json!({"json": config, "digest": digest});
    let (ok, text) = forged("granted", "forged-compressed-splits", &input);
    assert!(ok, "{text}");
    let compact: String = text.split_whitespace().collect();
    assert!(compact.contains("\"count\":300,"), "{text}");
}

/// An output encoding sent straight to the server, past the starter: a schema that is not
/// one is refused by the leaf that would write with it (nothing written), and one without a
/// Parquet output, without an output, or past its bound by the workflow itself.
#[test]
fn forged_output_encodings_are_refused_naming_why() {
    granted();
    let p = places();
    let size = std::fs::metadata(p.path("in/events.jsonl"))
        .expect("size")
        .len();
    let out = p.text("out/forged-schema");
    let input = |output: Option<&str>, encoding: Value| {
        let mut input = data_input(&p.text("in/events.jsonl"), "jsonl", size, output);
        input["config"]["output_encoding"] = encoding;
        input
    };
    let cases = [
        (
            input(
                Some(&out),
                json!({"format": "parquet", "schema": r#"{"a": "int65"}"#}),
            ),
            "unknown type \"int65\"",
        ),
        (
            input(Some(&out), json!({"schema": r#"{"a": "int8"}"#})),
            "an output schema is for Parquet outputs",
        ),
        (
            input(None, json!({"format": "parquet"})),
            "needs an output (--output)",
        ),
        (
            input(
                Some(&out),
                json!({"format": "parquet", "schema": "x".repeat(70_000)}),
            ),
            "the largest is 65536",
        ),
    ];
    for (n, (input, says)) in cases.iter().enumerate() {
        let (ok, text) = forged("granted", &format!("forged-encoding-{n}"), input);
        assert!(!ok && text.contains(says), "case {n}: {text}");
    }
    assert!(
        !p.path("out/forged-schema/_manifest.json").exists(),
        "nothing was written"
    );
}
