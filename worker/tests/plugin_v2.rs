//! Interface v2 without a Temporal server: blocks of items, records, skips, configuration,
//! isolation between instances, the deny-all WASI, and plugins built from Python
//! (componentize-py) and JavaScript (componentize-js), all beside v1 plugins in one registry.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use batch_core::{Output, Outputs, PluginConfig};
use batch_worker::plugins::cache::ArtifactCache;
use batch_worker::plugins::{
    Interface, Item, LoadedPlugin, PluginError, PluginRegistry, SandboxLimits, SandboxedEngine,
};
use common::built_plugin;

const LIMITS: SandboxLimits = SandboxLimits {
    cpu_deadline: Duration::from_millis(500),
    memory_bytes: 64 << 20,
    calls_at_once: 2,
    compile_timeout: Duration::from_secs(300),
    compiles_at_once: 1,
    http_calls_at_once: 0,
};

/// A registry over a scratch directory holding copies of the named plugins, with the compiled
/// code cached across test runs (the Python and JavaScript plugins take ~20 s each to compile).
fn registry(plugins: &[(&str, &str)]) -> (tempfile::TempDir, PluginRegistry) {
    let dir = tempfile::tempdir().expect("temp dir");
    for (from, name) in plugins {
        let built = built_plugin(from, name);
        std::fs::copy(&built, dir.path().join(built.file_name().expect("name"))).expect("copy");
    }
    let engine = SandboxedEngine::new(LIMITS).expect("engine");
    let cache_dir = built_plugin("plugins", "square_number")
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join("plugin-test-cache");
    let cache = ArtifactCache::open(cache_dir, engine.engine()).expect("cache");
    let registry = PluginRegistry::open(dir.path(), engine, Some(cache)).expect("registry");
    (dir, registry)
}

fn config(json: &str) -> PluginConfig {
    PluginConfig::parse(json).expect("valid configuration")
}

fn session_outputs(
    plugin: &Arc<LoadedPlugin>,
    config: Option<&PluginConfig>,
    items: &[Item],
) -> Result<Vec<Output>, PluginError> {
    let slot = plugin.engine().call_slot_blocking();
    plugin.session(slot, config)?.process(items)
}

fn lines(texts: &[&str]) -> Vec<Item> {
    texts
        .iter()
        .zip(1..)
        .map(|(text, index)| Item {
            index,
            data: Some(text.as_bytes().to_vec()),
        })
        .collect()
}

fn record(text: &str) -> Output {
    Output::Record(text.as_bytes().to_vec())
}

#[test]
fn v1_and_v2_plugins_run_side_by_side_and_agree() {
    let (_dir, registry) = registry(&[("plugins", "square_number"), ("plugins", "square_v2")]);
    let v1 = registry.resolve("square_number").expect("v1 loads");
    let v2 = registry.resolve("square_v2").expect("v2 loads");
    assert_eq!(v1.interface(), Interface::V1);
    assert_eq!(v2.interface(), Interface::V2);
    // One call of 4096 items (v2) against 4096 calls (v1): the same outputs.
    let mut a = v1
        .session(v1.engine().call_slot_blocking(), None)
        .expect("v1");
    let mut b = v2
        .session(v2.engine().call_slot_blocking(), None)
        .expect("v2");
    let from_v1 = a.process_range(1, 4096).expect("v1 block");
    let from_v2 = b.process_range(1, 4096).expect("v2 block");
    assert_eq!(from_v1, from_v2);
    assert_eq!(from_v2[4095], Output::Number(4096 * 4096));
    // The first refusal in a block names its item.
    let err = b
        .process_range(u64::from(u32::MAX) - 1, 3)
        .expect_err("the last item overflows");
    assert!(
        matches!(&err, PluginError::Refused { item, message, .. }
            if *item == u64::from(u32::MAX) + 1 && message.ends_with("squared overflows u64")),
        "{err}"
    );
    // A v1 plugin takes numbers only, and no configuration. (The two sessions hold both call
    // slots: give them back first.)
    drop((a, b));
    let err = session_outputs(&v1, None, &lines(&["7"])).expect_err("a record");
    assert!(err.message().contains("takes numbers only"), "{err}");
    let err = session_outputs(&v1, Some(&config("{}")), &[]).expect_err("configured");
    assert!(
        err.message().contains(
            "which takes no configuration (--plugin-config needs batch:plugin/compute@2.0.0)"
        ),
        "{err}"
    );
}

#[test]
fn record_plugins_transform_filter_and_convert_with_their_configuration() {
    let (_dir, registry) = registry(&[
        ("plugins", "mod_filter"),
        ("plugins", "json_field"),
        ("plugins", "json_filter"),
        ("plugins", "csv_to_json"),
    ]);
    let resolve = |name| registry.resolve(name).expect(name);

    let range: Vec<Item> = (1..=7).map(|index| Item { index, data: None }).collect();
    let mod_filter = resolve("mod_filter");
    assert_eq!(
        session_outputs(&mod_filter, Some(&config(r#"{"divisor": 3}"#)), &range).expect("ok"),
        [
            Output::Skip,
            Output::Skip,
            Output::Number(3),
            Output::Skip,
            Output::Skip,
            Output::Number(6),
            Output::Skip
        ]
    );
    let as_records = config(r#"{"divisor": 3, "output": "record"}"#);
    assert_eq!(
        session_outputs(&mod_filter, Some(&as_records), &range[..3]).expect("ok"),
        [
            Output::Skip,
            Output::Skip,
            record(r#"{"n":3,"quotient":1}"#)
        ]
    );
    let err = session_outputs(&mod_filter, None, &range).expect_err("unconfigured");
    assert!(
        err.message().ends_with(
            "refused its configuration: mod_filter needs a configuration, e.g. {\"divisor\": 7}"
        ),
        "{err}"
    );
    let err =
        session_outputs(&mod_filter, Some(&config(r#"{"divisor": 0}"#)), &range).expect_err("zero");
    assert!(
        err.message().ends_with("divisor must be at least 1"),
        "{err}"
    );

    let records = lines(&[
        r#"{"id":1,"country":"FR","amount":30}"#,
        r#"{"id":2,"country":"DE","amount":12}"#,
        r#"{"id":3,"country":"FR","amount":5,"note":"x"}"#,
    ]);
    let amounts = session_outputs(
        &resolve("json_field"),
        Some(&config(r#"{"field":"amount"}"#)),
        &records,
    )
    .expect("ok");
    assert_eq!(
        amounts,
        [Output::Number(30), Output::Number(12), Output::Number(5)]
    );
    let filtered = session_outputs(
        &resolve("json_filter"),
        Some(&config(
            r#"{"field":"country","equals":"FR","select":["id","amount"]}"#,
        )),
        &records,
    )
    .expect("ok");
    assert_eq!(
        filtered,
        [
            record(r#"{"amount":30,"id":1}"#),
            Output::Skip,
            record(r#"{"amount":5,"id":3}"#)
        ]
    );
    let err = session_outputs(
        &resolve("json_field"),
        Some(&config(r#"{"field":"id"}"#)),
        &lines(&[r#"{"id":1}"#, r#"{"id":-4}"#]),
    )
    .expect_err("negative");
    assert!(
        matches!(&err, PluginError::Refused { item: 2, message, .. }
            if message == r#"field "id" is -4, not a whole number from 0 to 2^64-1"#),
        "{err}"
    );

    let csv = resolve("csv_to_json");
    let columns = config(r#"{"columns":["id","name","city"]}"#);
    assert_eq!(
        session_outputs(
            &csv,
            Some(&columns),
            &lines(&["1,Ada,London", r#"2,"Lovelace, Ada","New ""York""""#])
        )
        .expect("ok"),
        [
            record(r#"{"city":"London","id":"1","name":"Ada"}"#),
            record(r#"{"city":"New \"York\"","id":"2","name":"Lovelace, Ada"}"#)
        ]
    );
    let err = session_outputs(&csv, Some(&columns), &lines(&["1,2"])).expect_err("short row");
    assert!(
        err.message()
            .ends_with("refused item 1: the row has 2 fields, the header 3 columns"),
        "{err}"
    );
}

/// Which items share an instance: those of one session (a `batch`-mode slice); a call in
/// `item` or `local` mode (`call_with`) is an instance of its own. `hostile_v2` answers item
/// ...7 with how many items its instance has seen.
#[test]
fn nothing_survives_an_instance() {
    let (_dir, registry) = registry(&[("test-plugins", "hostile_v2")]);
    let hostile = registry.resolve("hostile_v2").expect("loads");
    for _ in 0..3 {
        assert_eq!(hostile.call(17).expect("fresh instance"), 1);
    }
    let range = |first, last| -> Vec<Item> {
        (first..=last)
            .map(|index| Item { index, data: None })
            .collect()
    };
    let mut session = hostile
        .session(hostile.engine().call_slot_blocking(), None)
        .expect("session");
    // 16 and 17 in one block, then 26 and 27: the instance has seen 2, then 12 items.
    assert_eq!(
        session.process(&range(16, 17)).expect("ok"),
        [Output::Number(16), Output::Number(2)]
    );
    assert_eq!(
        session
            .process(&range(18, 27))
            .expect_err("28 is fine, 21 loops")
            .message(),
        session_error_for_loop()
    );
    drop(session);
    let mut session = hostile
        .session(hostile.engine().call_slot_blocking(), None)
        .expect("a new session");
    assert_eq!(
        session.process(&range(26, 27)).expect("ok"),
        [Output::Number(26), Output::Number(2)]
    );
}

fn session_error_for_loop() -> String {
    let digest = sha256_of_built("test-plugins", "hostile_v2");
    format!(
        "plugin hostile_v2@sha256:{digest} exceeded its CPU deadline of 500 ms on items 18..=27 \
         (one call)"
    )
}

fn sha256_of_built(dir: &str, name: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(
        std::fs::read(built_plugin(dir, name)).expect("read"),
    ))
}

#[test]
fn a_plugin_that_breaks_the_contract_fails_its_block() {
    let (_dir, registry) = registry(&[("test-plugins", "hostile_v2")]);
    let hostile = registry.resolve("hostile_v2").expect("loads");
    let items: Vec<Item> = (16..=19)
        .filter(|i| i % 10 != 8)
        .map(|index| Item { index, data: None })
        .collect();
    let err = session_outputs(&hostile, Some(&config(r#"{"short":true}"#)), &items)
        .expect_err("one result short");
    assert!(
        err.message()
            .ends_with("returned 2 results for a block of 3 items (items 16..=19 (one call))"),
        "{err}"
    );
    let err = session_outputs(&hostile, Some(&config(r#"{"refuse":true}"#)), &items)
        .expect_err("configuration refused");
    assert!(
        err.message().ends_with(
            "refused its configuration: hostile_v2 refuses every configuration it is told to"
        ),
        "{err}"
    );
    // A 6 MiB refusal is cut to 2 KiB, saying how long it was.
    let err = hostile.call(8).expect_err("huge refusal");
    assert!(
        err.message().len() < 3 << 10
            && err.message().ends_with("[truncated: 6291456 bytes in all]"),
        "{}",
        err.message().len()
    );
}

/// Range blocks go through the optional `ranges` export (outputs in columns) when a plugin has
/// it, as every Rust SDK plugin does; what comes out equals `compute.process` item by item
/// (a reversed block is not a range, so it takes that path), for numbers, records, skips and
/// refusals, and aggregated by the batch-mode hot path.
#[test]
fn range_blocks_in_columns_equal_processing_item_by_item() {
    let (_dir, registry) = registry(&[("plugins", "square_v2"), ("plugins", "mod_filter")]);
    let numbers = config(r#"{"divisor": 7}"#);
    let records = config(r#"{"divisor": 7, "output": "record"}"#);
    for (name, config, first) in [
        ("square_v2", None, 1),
        // The last items of this block overflow: refusals in the errors column.
        ("square_v2", None, u64::from(u32::MAX) - 500),
        ("mod_filter", Some(&numbers), 1),
        ("mod_filter", Some(&records), 1),
    ] {
        let plugin = registry.resolve(name).expect(name);
        assert!(plugin.has_ranges(), "{name} is built with the Rust SDK");
        let block: Vec<Item> = (first..first + 1000)
            .map(|index| Item { index, data: None })
            .collect();
        let mut reversed = block.clone();
        reversed.reverse();
        let mut session = plugin
            .session(plugin.engine().call_slot_blocking(), config)
            .expect("session");
        let in_columns: Vec<String> = outcomes(session.process_each(&block).expect("columns"));
        let mut item_by_item = outcomes(session.process_each(&reversed).expect("items"));
        item_by_item.reverse();
        assert_eq!(in_columns, item_by_item, "{name} {config:?} from {first}");

        // The hot path's aggregate equals adding the outputs one by one, up to the first
        // refusal, which fails the block with its item.
        let mut aggregated = Outputs::default();
        let hot = session.process_range_into(first, 1000, &mut aggregated, &mut Vec::new(), None);
        let mut one_by_one = Outputs::default();
        let mut first_refusal = None;
        for outcome in session
            .process_each(&reversed)
            .expect("items")
            .into_iter()
            .rev()
        {
            match outcome {
                Ok(output) => one_by_one.add(&output),
                Err(e) => {
                    first_refusal = Some(e.to_string());
                    break;
                }
            }
        }
        assert_eq!(hot.err().map(|e| e.to_string()), first_refusal, "{name}");
        assert_eq!(aggregated, one_by_one, "{name} {config:?} from {first}");
    }
}

/// Records through the `records` export (one buffer in, columns out) give exactly what
/// `compute.process` gives for them: a block with one range item appended is not a record
/// block, so it takes that path.
#[test]
fn record_blocks_in_columns_equal_processing_through_compute() {
    let (_dir, registry) = registry(&[
        ("plugins", "json_field"),
        ("plugins", "json_filter"),
        ("plugins", "csv_to_json"),
    ]);
    let json: Vec<String> = (1..=300)
        .map(|i| match i % 7 {
            0 => "not json".to_owned(),
            1 => format!(r#"{{"kind":"click","amount":{i},"id":"{i}"}}"#),
            2 => format!(
                r#"{{"kind":"order","amount":"{i}","note":"{}"}}"#,
                "é".repeat(i % 5)
            ),
            3 => String::new(),
            _ => format!(r#"{{"kind":"click","amount":-{i}}}"#),
        })
        .collect();
    let csv: Vec<String> = (1..=300).map(|i| format!("{i},\"a,{i}\"")).collect();
    let field = config(r#"{"field": "amount"}"#);
    let filter = config(r#"{"field": "kind", "equals": "click", "select": ["id", "amount"]}"#);
    let columns = config(r#"{"columns": ["n", "text"]}"#);
    for (name, config, texts) in [
        ("json_field", &field, &json),
        ("json_filter", &filter, &json),
        ("csv_to_json", &columns, &csv),
    ] {
        let plugin = registry.resolve(name).expect(name);
        assert!(plugin.has_records(), "{name} is built with the Rust SDK");
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let block = lines(&texts);
        let mut mixed = block.clone();
        mixed.push(Item {
            index: 301,
            data: None,
        });
        let mut session = plugin
            .session(plugin.engine().call_slot_blocking(), Some(config))
            .expect("session");
        let in_columns = outcomes(session.process_each(&block).expect("columns"));
        let mut through_compute = outcomes(session.process_each(&mixed).expect("compute"));
        through_compute.pop();
        assert_eq!(in_columns, through_compute, "{name}");
    }
}

/// A plugin's record columns are checked as its range columns are, and their ends too.
#[test]
fn record_columns_that_disagree_fail_their_block() {
    let (_dir, registry) = registry(&[("test-plugins", "hostile_v2")]);
    let hostile = registry.resolve("hostile_v2").expect("loads");
    let items: Vec<Item> = [19, 20]
        .map(|index| Item {
            index,
            data: Some(b"{}".to_vec()),
        })
        .to_vec();
    for (config, expected) in [
        (r#"{"short":true}"#, SHORT_19_20),
        (r#"{"mismatched":true}"#, MISMATCHED_19_20),
        (
            r#"{"bad_ends":true}"#,
            "returned inconsistent columns for items 19..=20 (one call): an output record \
             ends at 0, after one that ends at 4, in 4 bytes of output records",
        ),
    ] {
        let err = session_outputs(&hostile, Some(&self::config(config)), &items)
            .expect_err("broken columns");
        assert!(err.message().ends_with(expected), "{config}: {err}");
    }
    assert_eq!(
        session_outputs(&hostile, None, &items).expect("kept"),
        [Output::Number(19), Output::Number(20)]
    );
}

fn outcomes(results: Vec<Result<Output, PluginError>>) -> Vec<String> {
    results
        .into_iter()
        .map(|r| match r {
            Ok(output) => format!("{output:?}"),
            Err(e) => e.to_string(),
        })
        .collect()
}

/// What `hostile_v2` configured `{"short": true}` makes of a block of items 19 and 20.
const SHORT_19_20: &str = "returned 1 results for a block of 2 items (items 19..=20 (one call))";
/// What `hostile_v2` configured `{"mismatched": true}` makes of a block of items 19 and 20.
const MISMATCHED_19_20: &str =
    "returned inconsistent columns for items 19..=20 (one call): 2 items of kind 0, but 1 numbers";

/// A plugin's columns are checked before anything is counted: their lengths must agree with
/// the block and with each other.
#[test]
fn columns_that_disagree_fail_their_block() {
    let (_dir, registry) = registry(&[("test-plugins", "hostile_v2")]);
    let hostile = registry.resolve("hostile_v2").expect("loads");
    // Items 19 and 20 are returned unchanged when the plugin keeps the contract.
    for (config, expected) in [
        (r#"{"short":true}"#, SHORT_19_20),
        (r#"{"mismatched":true}"#, MISMATCHED_19_20),
    ] {
        let config = self::config(config);
        let mut session = hostile
            .session(hostile.engine().call_slot_blocking(), Some(&config))
            .expect("session");
        let mut outputs = Outputs::default();
        let err = session
            .process_range_into(19, 2, &mut outputs, &mut Vec::new(), None)
            .expect_err("broken columns");
        assert!(err.message().ends_with(expected), "{err}");
        assert_eq!(
            outputs,
            Outputs::default(),
            "nothing is counted from broken columns"
        );
        let err = session.process_range(19, 2).expect_err("broken columns");
        assert!(err.message().ends_with(expected), "{err}");
    }
    let mut session = hostile
        .session(hostile.engine().call_slot_blocking(), None)
        .expect("session");
    assert_eq!(
        session.process_range(19, 2).expect("kept"),
        [Output::Number(19), Output::Number(20)]
    );
}

/// What the deny-all WASI answers a `wasm32-wasip2` plugin (fixture `wasi_probe`).
#[test]
fn the_deny_all_wasi_grants_nothing_and_never_blocks() {
    let (_dir, registry) = registry(&[("test-plugins", "wasi_probe")]);
    let probe = registry.resolve("wasi_probe").expect("loads");
    assert!(
        probe
            .imports()
            .iter()
            .any(|i| i.starts_with("wasi:filesystem/")),
        "{:?}",
        probe.imports()
    );
    let answer = |item: u64| {
        let mut slot = probe.engine().call_slot_blocking();
        probe.call_with(&mut slot, None, item).expect("answers")
    };
    let text = |item: u64| match answer(item) {
        Output::Record(bytes) => String::from_utf8(bytes).expect("utf-8"),
        other => panic!("item {item}: {other:?}"),
    };
    // Printing, even 1 MiB, succeeds: output is captured and bounded, never an error.
    assert_eq!(answer(1), Output::Number(1));
    assert_eq!(answer(2), Output::Number(2));
    assert_eq!(answer(3), Output::Number(0), "no environment or arguments");
    assert!(text(4).starts_with("denied: "), "{}", text(4));
    assert!(text(5).starts_with("denied: "), "{}", text(5));
    assert!(text(6).starts_with("denied: "), "{}", text(6));
    // An hour's sleep returns at once: no host call can outlast the CPU deadline.
    let started = Instant::now();
    assert_eq!(answer(7), Output::Number(7));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        answer(8),
        Output::Number(946_684_800),
        "the frozen wall clock"
    );
    // Deterministic randomness: the same "random" hash in every instance.
    assert_eq!(answer(9), answer(9));
    assert_eq!(answer(10), Output::Number(0), "the frozen monotonic clock");
}

/// A Python plugin (componentize-py, CPython inside) and a JavaScript one (componentize-js,
/// SpiderMonkey inside), built from source by scripts/build-plugins.sh.
#[test]
fn python_and_javascript_plugins_compute_records_and_numbers() {
    let (_dir, registry) = registry(&[("plugins", "py_square"), ("plugins", "js_fizzbuzz")]);
    let python = registry
        .resolve("py_square")
        .expect("the Python plugin loads");
    assert_eq!(python.interface(), Interface::V2);
    let range: Vec<Item> = (1..=1000).map(|index| Item { index, data: None }).collect();
    let squares = session_outputs(&python, None, &range).expect("squares");
    let sum: u64 = squares
        .iter()
        .map(|o| match o {
            Output::Number(n) => *n,
            other => panic!("{other:?}"),
        })
        .sum();
    assert_eq!(sum, 333_833_500);
    let offset = config(r#"{"offset": 1}"#);
    assert_eq!(
        session_outputs(
            &python,
            Some(&offset),
            &lines(&[r#"{"n": 3, "name": "a"}"#])
        )
        .expect("a record"),
        [record(r#"{"n":3,"name":"a","square":16}"#)]
    );
    let err =
        session_outputs(&python, Some(&offset), &lines(&["{}", "oops"])).expect_err("refused");
    assert!(
        matches!(&err, PluginError::Refused { item: 1, message, .. }
            if message.starts_with("not a JSON object with a field n: KeyError('n')")),
        "{err}"
    );
    let err = session_outputs(&python, Some(&config(r#"{"offset": -1}"#)), &range)
        .expect_err("bad configuration");
    assert!(
        err.message().ends_with(
            r#"refused its configuration: py_square takes {"offset": <a whole number >= 0>} only"#
        ),
        "{err}"
    );

    let js = registry
        .resolve("js_fizzbuzz")
        .expect("the JavaScript plugin loads");
    let outputs = session_outputs(&js, None, &range[..15]).expect("fizzbuzz");
    assert_eq!(outputs[2], record("Fizz"));
    assert_eq!(outputs[4], record("Buzz"));
    assert_eq!(outputs[14], record("FizzBuzz"));
    assert_eq!(outputs[13], Output::Number(14));
    let outputs = session_outputs(&js, Some(&config(r#"{"fizz": 2, "buzz": 7}"#)), &range)
        .expect("configured");
    let records = outputs
        .iter()
        .filter(|o| matches!(o, Output::Record(_)))
        .count();
    // Multiples of 2 or 7 among 1..=1000: 500 + 142 - 71.
    assert_eq!(records, 571);
    let err = session_outputs(&js, Some(&config(r#"{"fizz": 0}"#)), &range).expect_err("bad");
    assert!(
        err.message().contains("js_fizzbuzz takes {\"fizz\": n"),
        "{err}"
    );
}
