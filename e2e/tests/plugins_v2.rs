//! Interface v2 end to end: a real dev server, the real worker and starter. v1 and v2 plugins
//! side by side on one worker in every leaf mode, a configured plugin (`--plugin-config`: its
//! digest in the id and the summary, skips counted), records counted, and plugins built from
//! Python (componentize-py) and JavaScript (componentize-js) by `scripts/build-plugins.sh`.

mod support;

use std::sync::OnceLock;

use support::{DevServer, Node, sum_of_squares};

fn server() -> &'static DevServer {
    static SERVER: OnceLock<DevServer> = OnceLock::new();
    SERVER.get_or_init(DevServer::start)
}

/// One worker for the whole file, holding v1 and v2 plugins (Python and JavaScript included).
fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let plugins = [
            "square_number",
            "square_v2",
            "mod_filter",
            "py_square",
            "js_fizzbuzz",
        ];
        let plugins: Vec<(&str, &str)> = plugins.iter().map(|p| (*p, *p)).collect();
        // The compiled-code cache the plugin-host tests fill (worker/tests/plugin_v2.rs): the
        // Python and JavaScript plugins then load without ~20 s of compiling each.
        let cache = support::bin_dir().join("../plugin-test-cache");
        let cache = cache.to_str().expect("utf-8 path");
        Node::start(server(), "v2", &plugins, &["--cache-dir", cache])
    })
}

#[test]
fn v1_and_v2_plugins_run_side_by_side_in_every_leaf_mode() {
    let n = 300u64;
    let expected = sum_of_squares(u128::from(n));
    let items = n.to_string();
    for mode in ["item", "local", "batch"] {
        for plugin in ["square_number", "square_v2"] {
            let run = node().report(&[&items, "10", "5", "--plugin", plugin, "--mode", mode]);
            assert_eq!(run.outputs().sum, expected, "{plugin} in {mode} mode");
            assert_eq!(run.outputs().count, n);
            assert_eq!(run.result.config.plugin.name, plugin);
        }
    }
}

#[test]
fn a_configured_plugin_keeps_counts_exact_and_names_its_configuration() {
    // The same configuration spelled two ways is one batch: the second run attaches to the
    // first's workflow id.
    let spellings = [r#"{"divisor": 7}"#, "{ \"divisor\":7 }"];
    let mut ids = Vec::new();
    for (mode, config) in [("batch", spellings[0]), ("item", spellings[1])] {
        let run = node().report(&[
            "1000",
            "10",
            "5",
            "--plugin",
            "mod_filter",
            "--mode",
            mode,
            "--plugin-config",
            config,
        ]);
        // Multiples of 7 up to 1000: 7 x (1 + ... + 142); the other 858 items are skipped.
        assert_eq!(run.outputs().sum, 71071);
        assert_eq!(run.outputs().count, 1000);
        assert_eq!(run.outputs().skipped, 858);
        let config = run.result.config.plugin_config.as_ref().expect("a config");
        assert_eq!((config.digest.len(), config.json.len()), (64, 13));
        let id = run.workflow_id.clone();
        assert!(
            id.starts_with(&format!(
                "batch-processing-mod_filter.cfg{}-1000-",
                &config.digest[..12]
            )),
            "{id}"
        );
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "batch and item mode are different batches");

    // Records: counted with their bytes.
    let run = node().report(&[
        "100",
        "--plugin",
        "mod_filter",
        "--mode",
        "batch",
        "--plugin-config",
        r#"{"divisor": 50, "output": "record"}"#,
    ]);
    // {"n":50,"quotient":1} and {"n":100,"quotient":2}: 21 and 22 bytes.
    assert_eq!((run.outputs().records, run.outputs().record_bytes), (2, 43));
    assert_eq!(run.outputs().skipped, 98);
}

#[test]
fn bad_configurations_are_refused_with_the_reason() {
    // Before anything starts: not JSON, too large.
    let run = node().run(&[
        "10",
        "--plugin",
        "mod_filter",
        "--plugin-config",
        "{divisor: 7}",
    ]);
    assert!(!run.success);
    assert!(
        run.stderr.contains(
            "invalid value '{divisor: 7}' for '--plugin-config <JSON|@FILE>': the plugin \
             configuration is not valid JSON: key must be a string at line 1 column 2"
        ),
        "{}",
        run.stderr
    );
    let big = format!("\"{}\"", "x".repeat(20_000));
    let run = node().run(&["10", "--plugin", "mod_filter", "--plugin-config", &big]);
    assert!(!run.success);
    assert!(
        run.stderr.contains(
            "the plugin configuration is 20002 bytes (normalized), over the limit of 16384"
        ),
        "{}",
        run.stderr
    );
    // Refused by the plugin, or given to a v1 plugin: the batch fails at once, naming why.
    let run = node().run(&[
        "10",
        "--plugin",
        "mod_filter",
        "--plugin-config",
        r#"{"divisor": 0}"#,
    ]);
    assert!(!run.success, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("refused its configuration: divisor must be at least 1"),
        "{}",
        node().explain(&run)
    );
    let run = node().run(&["10", "--plugin-config", "{}"]);
    assert!(!run.success, "{}", run.stdout);
    assert!(
        run.stderr.contains(
            "implements batch:plugin/compute@1.0.0, which takes no configuration \
             (--plugin-config needs batch:plugin/compute@2.0.0)"
        ),
        "{}",
        node().explain(&run)
    );
}

#[test]
fn python_and_javascript_plugins_run_batches() {
    // Python (CPython in the component), item mode: one fresh instance per item.
    let run = node().report(&["100", "10", "5", "--plugin", "py_square"]);
    assert_eq!(run.outputs().sum, sum_of_squares(100));
    let run = node().report(&[
        "100",
        "--plugin",
        "py_square",
        "--mode",
        "batch",
        "--plugin-config",
        r#"{"offset": 1}"#,
    ]);
    // (n+1)^2 for n in 1..=100: the squares of 2..=101.
    assert_eq!(run.outputs().sum, sum_of_squares(101) - 1);
    assert!(
        node()
            .worker
            .log_text()
            .contains("py_square configured with offset 1"),
        "the plugin's stdout reaches the worker's log"
    );

    // JavaScript (SpiderMonkey in the component): FizzBuzz over 1..=30, local mode.
    let run = node().report(&[
        "30",
        "10",
        "5",
        "--plugin",
        "js_fizzbuzz",
        "--mode",
        "local",
    ]);
    // 14 multiples of 3 or 5 become records: 8 Fizz, 4 Buzz, 2 FizzBuzz (64 bytes); the other
    // 16 items are numbers: 465 - 225.
    assert_eq!(
        (run.outputs().records, run.outputs().record_bytes),
        (14, 64)
    );
    assert_eq!(run.outputs().sum, 240);
    assert_eq!(run.outputs().count, 30);
}

/// A JavaScript plugin's instance grows with every record it is given (the toolchain's
/// bindings: ~0.75 KB a record through `process`, ~0.2 KB through `records`); a data split's
/// spans are bounded by a count of records too, so a file of 400,000 short lines, which would
/// take one instance past the memory cap either way, runs whole.
#[test]
fn a_javascript_plugin_runs_a_file_of_many_short_records() {
    // Through js_fizzbuzz's `records` export: upper case grows "ß" into "SS".
    let scratch = support::data_dir();
    let path = scratch.path().join("short.txt");
    let out = scratch.path().join("out");
    std::fs::write(&path, "ab\n".repeat(399_999) + "straße\n").expect("write");
    let run = node().report(&[
        "--source",
        path.to_str().expect("utf-8"),
        "--format",
        "lines",
        "--plugin",
        "js_fizzbuzz",
        "--output",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(run.outputs().count, 400_000);
    assert_eq!(
        (run.outputs().records, run.outputs().record_bytes),
        (400_000, 799_998 + 7),
        "every line, in upper case"
    );
    let parts = support::data::parts_of(&out);
    assert!(
        parts == ("AB\n".repeat(399_999) + "STRASSE\n").as_bytes(),
        "the parts hold every line in upper case, in order"
    );
}

#[test]
fn a_python_plugin_runs_json_records_in_blocks_and_refuses_bad_ones_where_they_are() {
    // 20,000 records through py_square's `records` export (blocks of up to 4,096 in one
    // call), two of them refused where they stand: every other record is output, in order.
    let scratch = support::data_dir();
    let source = scratch.path().join("numbers.jsonl");
    let out = scratch.path().join("out");
    let bad = [4_096u64, 12_345];
    let (mut text, mut expected) = (String::new(), String::new());
    for n in 1..=20_000u64 {
        if bad.contains(&n) {
            text.push_str("{\"m\":1}\n");
            continue;
        }
        text.push_str(&format!("{{\"n\":{n},\"k\":\"é\"}}\n"));
        expected.push_str(&format!(
            "{{\"n\":{n},\"k\":\"\\u00e9\",\"square\":{}}}\n",
            n * n
        ));
    }
    std::fs::write(&source, &text).expect("write");
    let run = node().report(&[
        "--source",
        source.to_str().expect("utf-8"),
        "--plugin",
        "py_square",
        "--output",
        out.to_str().expect("utf-8"),
        "--max-failures",
        "2",
    ]);
    assert_eq!(run.outputs().records, 19_998);
    assert_eq!(run.result.failures.count, 2);
    let parts = support::data::parts_of(&out);
    assert!(
        parts == expected.as_bytes(),
        "the parts hold every other record, squared, in source order"
    );
    let failed = std::fs::read_to_string(
        out.join("failed").join(
            support::data::names_in(&out.join("failed"))
                .first()
                .expect("a failed part"),
        ),
    )
    .expect("failed part");
    assert!(
        failed.contains("not a JSON object with a field n: KeyError('n')"),
        "{failed}"
    );
}
