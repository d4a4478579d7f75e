//! A plugin's words, and a record's bytes, reach people only shown, never acted on: a
//! refusal that would clear the screen, retitle the window and forge a summary line, and
//! stdout that would forge a log line, go through every channel (the starter's summary, its
//! `--json`, its error, the worker's log, a `failed/` part, `batch-plugin run`) with every
//! control character escaped visibly (`batch_core::text::neutralised`).

mod support;

use std::sync::OnceLock;

use support::{DevServer, Node, Run};

fn server() -> &'static DevServer {
    static SERVER: OnceLock<DevServer> = OnceLock::new();
    SERVER.get_or_init(DevServer::start)
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| Node::start(server(), "words", &[("hostile_v2", "hostile_v2")], &[]))
}

const FORGE: &str = r#"{"forge": true}"#;

/// Whether `text` holds a character a terminal would act on (C0 and C1 controls, DEL), the
/// channel's own line breaks and tab separators aside when `lines` allows them.
fn acts(text: &str, lines: bool) -> Option<char> {
    text.chars()
        .find(|&c| c.is_control() && !(lines && matches!(c, '\n' | '\t')))
}

fn clean(channel: &str, text: &str) {
    assert_eq!(
        acts(text, true),
        None,
        "{channel} shows a control character:\n{text:?}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("Sum of all outputs: 31337")),
        "{channel} has a forged summary line:\n{text}"
    );
}

/// A lines source whose records hold escape sequences too.
fn source() -> (tempfile::TempDir, String) {
    let dir = support::data_dir();
    let path = dir.path().join("words.txt");
    std::fs::write(&path, "a\u{1b}]0;title\u{7}b\nplain\n").expect("write");
    let path = path.to_str().expect("utf-8").to_owned();
    (dir, path)
}

#[test]
fn tolerated_refusals_are_shown_escaped_in_the_summary_the_json_and_the_failed_part() {
    let node = node();
    let (dir, source) = source();
    let out = dir.path().join("out");
    let out_text = out.to_str().expect("utf-8");
    let args = [
        "--source",
        &source,
        "--format",
        "lines",
        "--plugin",
        "hostile_v2",
        "--plugin-config",
        FORGE,
        "--max-failures",
        "10",
        "--output",
        out_text,
    ];
    let run = node.run(&args);
    assert!(run.success, "{}", node.explain(&run));
    clean("the summary", &run.stdout);
    clean("the starter's stderr", &run.stderr);
    assert!(
        run.stdout
            .contains("\\u{1b}[2J\\u{1b}[H\\u{1b}]0;pwned\\u{7}\\rSum of all outputs: 31337"),
        "the words are shown:\n{}",
        run.stdout
    );
    // --json: a parser gets the words, escaped, not the acts.
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let json: Run = node.run(&json_args);
    assert!(json.success, "{}", node.explain(&json));
    let report: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("json");
    for sample in report["result"]["failures"]["samples"]
        .as_array()
        .expect("samples")
    {
        let reason = sample["reason"].as_str().expect("reason");
        assert_eq!(acts(reason, false), None, "{reason:?}");
    }
    // The failed part: a person reads it with `head`.
    let failed_dir = out.join("failed");
    for entry in std::fs::read_dir(&failed_dir).expect("failed/") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("part");
        clean("the failed part", &text);
        for line in text.lines() {
            let line: serde_json::Value = serde_json::from_str(line).expect("json line");
            for field in ["reason", "excerpt"] {
                let value = line[field].as_str().expect("text");
                assert_eq!(acts(value, false), None, "{field}: {value:?}");
            }
        }
        assert!(
            text.contains("a\\\\u{1b}]0;title\\\\u{7}b"),
            "the excerpt:\n{text}"
        );
    }
}

#[test]
fn a_failed_batch_and_the_workers_log_show_the_words_escaped() {
    let node = node();
    let run = node.run(&[
        "20",
        "--mode",
        "batch",
        "--plugin",
        "hostile_v2",
        "--plugin-config",
        FORGE,
    ]);
    assert!(!run.success, "{}", run.stdout);
    clean("the starter's error", &run.stderr);
    assert!(run.stderr.contains("\\u{1b}[2J"), "{}", run.stderr);
    let log = node.worker.log_text();
    clean("the worker's log", &log);
    assert!(
        !log.lines()
            .any(|l| l.starts_with("2026-12-02T00:00:00.000000Z ERROR")),
        "a forged log line:\n{log}"
    );
    assert!(
        log.contains("\\n2026-12-02T00:00:00.000000Z ERROR batch_worker: FORGED LINE"),
        "the plugin's stdout is logged, escaped, on the worker's own line:\n{log}"
    );
}

#[test]
fn batch_plugin_run_shows_the_words_escaped() {
    let plugin = support::built_plugin("hostile_v2");
    let (output, _, _) = support::run_offline(
        "batch-plugin",
        &[
            "run",
            plugin.to_str().expect("utf-8"),
            "--config",
            FORGE,
            "--range",
            "1..=3",
            "--cache-dir",
            "none",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    clean("batch-plugin's stdout", &stdout);
    clean("batch-plugin's stderr", &stderr);
    assert!(stdout.contains("\\u{1b}[2J"), "{stdout}");
}
