//! Parquet sources end to end: files written by pyarrow (`scripts/make-dataset.py parquet`),
//! typed and nested, with nulls; row groups as the splits; rows reaching JSON plugins as JSON
//! objects, compared value for value with what pyarrow reads from the same file through the
//! documented type mapping.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use support::{DevServer, Node, Report};

fn server() -> &'static DevServer {
    static SERVER: OnceLock<DevServer> = OnceLock::new();
    SERVER.get_or_init(DevServer::start)
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let plugins = [("json_filter", "json_filter"), ("json_field", "json_field")];
        Node::start(server(), "parquet", &plugins, &[])
    })
}

fn ok(args: &[&str]) -> Report {
    let mut args = args.to_vec();
    args.push("--json");
    let run = node().run(&args);
    assert!(run.success, "{}", node().explain(&run));
    run.report()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Runs `scripts/make-dataset.py` with `args`.
fn make_dataset(args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-dataset.py");
    let status = Command::new("python3")
        .arg(script)
        .args(args)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "make-dataset.py {args:?}");
}

/// The documented mapping of a value pyarrow gives to JSON, in Python: decimals as numbers,
/// timestamps as RFC 3339 text in UTC (what the plugin saw, read back from an output as the
/// string it is), lists as arrays, structs as objects, nulls kept.
const PY_VALUE: &str = r#"
import decimal, datetime
def value(v):
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, datetime.datetime):
        return v.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(v, list):
        return [value(x) for x in v]
    if isinstance(v, dict):
        return {k: value(x) for k, x in v.items()}
    return v
"#;

/// What pyarrow reads from `file`: the rows whose `kind` is `order`, projected on `columns`,
/// through the documented mapping (decimals as numbers, timestamps as RFC 3339 text in UTC,
/// lists as arrays, structs as objects, nulls kept), one JSON object a line.
fn reference_rows(file: &Path, columns: &[&str]) -> Vec<Value> {
    let program = format!(
        "{PY_VALUE}{}",
        r#"
import json, sys
import pyarrow.parquet as pq
table = pq.read_table(sys.argv[1])
columns = sys.argv[2].split(",")
for row in table.to_pylist():
    if row["kind"] == "order":
        print(json.dumps({c: value(row[c]) for c in columns}))
"#
    );
    let out = Command::new("python3")
        .args(["-c", &program, path_str(file), &columns.join(",")])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("json"))
        .collect()
}

fn lines_of(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|line| serde_json::from_str(line).expect("an output is JSON"))
        .collect()
}

/// 20,000 typed, nested rows in row groups of 1,000 (`make-dataset.py parquet`), under `dir`;
/// the rows whose `kind` is `order`, projected on seven columns, as pyarrow reads them; and the
/// json_filter configuration that keeps exactly those.
fn orders(dir: &Path) -> (std::path::PathBuf, Vec<Value>, String) {
    let file = dir.join("events.parquet");
    make_dataset(&["parquet", "20000", path_str(&file), "--row-group", "1000"]);
    let columns = ["id", "amount", "ts", "note", "tags", "geo", "country"];
    let expected = reference_rows(&file, &columns);
    let filter =
        serde_json::json!({"field": "kind", "equals": "order", "select": columns}).to_string();
    (file, expected, filter)
}

/// Row groups are the splits, at every split size each row group is read once, and the rows
/// reach the plugin as JSON objects equal to pyarrow's through the documented mapping, nested
/// columns and nulls included; `--columns` reads only those.
#[test]
fn parquet_rows_reach_json_plugins_as_pyarrow_reads_them() {
    let scratch = support::data_dir();
    let (file, expected, filter) = orders(scratch.path());
    let size = std::fs::metadata(&file).expect("file").len();
    for split in [size.to_string(), "16384".to_owned()] {
        let out = scratch.path().join(format!("out-{split}"));
        let run = ok(&[
            "--source",
            path_str(&file),
            "--plugin",
            "json_filter",
            "--plugin-config",
            &filter,
            "--output",
            path_str(&out),
            "--split-size",
            &split,
        ]);
        assert_eq!(run.outputs().count, 20_000, "split {split}");
        let got = lines_of(&support::data::parts_of(&out));
        assert_eq!(got.len(), expected.len(), "split {split}");
        for (n, (got, want)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "row {n} of the kept ones, split {split}");
        }
    }
    // `--columns`: only those reach the plugin; an item's index is its row number.
    let run = ok(&[
        "--source",
        path_str(&file),
        "--columns",
        "id",
        "--plugin",
        "json_field",
        "--plugin-config",
        r#"{"field": "id"}"#,
    ]);
    assert_eq!(run.outputs().count, 20_000);
    assert_eq!(run.outputs().sum, 20_000 * 20_001 / 2);
    let missing = node().run(&[
        "--source",
        path_str(&file),
        "--columns",
        "id,nope",
        "--plugin",
        "json_field",
    ]);
    assert!(!missing.success);
    assert!(
        missing.stderr.contains("it has no column \"nope\""),
        "{}",
        missing.stderr
    );
}

/// A prefix of Parquet objects is one source, object by object, row group by row group; a
/// file that is not Parquet (cut short, say) fails the batch naming it.
#[test]
fn a_prefix_of_parquet_objects_and_a_broken_one() {
    let scratch = support::data_dir();
    let dir = scratch.path().join("lake");
    std::fs::create_dir(&dir).expect("dir");
    for (name, rows) in [
        ("a.parquet", "3000"),
        ("b.parquet", "1"),
        ("c.parquet", "7000"),
    ] {
        make_dataset(&[
            "parquet",
            rows,
            path_str(&dir.join(name)),
            "--row-group",
            "500",
        ]);
    }
    let run = ok(&[
        "--source",
        &format!("{}/", path_str(&dir)),
        "--plugin",
        "json_field",
        "--plugin-config",
        r#"{"field": "id"}"#,
        "--split-size",
        "8192",
    ]);
    assert_eq!(run.outputs().count, 10_001);
    let sum: u128 = [3000u128, 1, 7000].iter().map(|n| n * (n + 1) / 2).sum();
    assert_eq!(run.outputs().sum, sum);

    let whole = std::fs::read(dir.join("a.parquet")).expect("file");
    let cut = scratch.path().join("cut.parquet");
    std::fs::write(&cut, &whole[..whole.len() - 100]).expect("write");
    let run = node().run(&["--source", path_str(&cut), "--plugin", "json_field"]);
    assert!(!run.success);
    assert!(
        run.stderr
            .contains(&format!("{}: not a Parquet file", path_str(&cut))),
        "{}",
        run.stderr
    );
}

/// What pyarrow reads from an output's Parquet parts, in the manifest's order: the rows as
/// JSON (through the same mapping as [`reference_rows`]), and each part's schema as pyarrow
/// prints it.
fn parquet_output(out: &Path) -> (Vec<Value>, Vec<String>) {
    let program = format!(
        "{PY_VALUE}{}",
        r#"
import json, sys
import pyarrow.parquet as pq
out = sys.argv[1]
manifest = json.load(open(out + "/_manifest.json"))
for part in manifest["parts"]:
    table = pq.read_table(out + "/" + part["name"])
    print(json.dumps({"schema": str(table.schema).replace("\n", "; ")}))
    for row in table.to_pylist():
        print(json.dumps({"row": {k: value(v) for k, v in row.items()}}))
"#
    );
    let run = Command::new("python3")
        .args(["-c", &program, path_str(out)])
        .output()
        .expect("python3 runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (mut rows, mut schemas) = (Vec::new(), Vec::new());
    for line in String::from_utf8(run.stdout).expect("utf-8").lines() {
        let mut value: Value = serde_json::from_str(line).expect("json");
        match value.get("schema") {
            Some(schema) => schemas.push(schema.as_str().expect("text").to_owned()),
            None => rows.push(value["row"].take()),
        }
    }
    (rows, schemas)
}

fn manifest_of(out: &Path) -> Value {
    let text = std::fs::read(out.join("_manifest.json")).expect("a manifest");
    serde_json::from_slice(&text).expect("json")
}

/// Parquet in, Parquet out: the schema inferred once, from the first outputs, before the tree
/// starts, and every part (one per split, many splits) written with it; pyarrow reads back
/// exactly the rows the plugin gave (the JSON Lines output of the same batch), nested values
/// and nulls included. Numbers are rows `{"value": n}`.
#[test]
fn a_parquet_output_has_one_inferred_schema_and_the_plugin_s_rows() {
    let scratch = support::data_dir();
    let (file, expected, filter) = orders(scratch.path());
    let out = scratch.path().join("out-parquet");
    for compression in ["zstd", "none"] {
        let _ = std::fs::remove_dir_all(&out);
        let run = ok(&[
            "--source",
            path_str(&file),
            "--plugin",
            "json_filter",
            "--plugin-config",
            &filter,
            "--output",
            path_str(&out),
            "--output-format",
            "parquet",
            "--output-compression",
            compression,
            "--split-size",
            "16384",
        ]);
        assert_eq!(run.outputs().count, 20_000);
        assert_eq!(run.outputs().records, expected.len() as u64);
        let manifest = manifest_of(&out);
        let parts = manifest["parts"].as_array().expect("parts");
        assert!(parts.len() > 5, "many splits: {}", parts.len());
        assert!(
            parts
                .iter()
                .all(|p| p["name"].as_str().expect("name").ends_with(".parquet")),
            "{manifest:#}"
        );
        let schema = manifest["output_encoding"]["schema"]
            .as_str()
            .expect("the manifest holds the inferred schema");
        assert!(
            schema.contains(r#""tags": ["string"]"#) && schema.contains(r#""geo": {"#),
            "{schema}"
        );
        let (rows, schemas) = parquet_output(&out);
        assert!(
            schemas.windows(2).all(|w| w[0] == w[1]),
            "one schema: {schemas:?}"
        );
        assert_eq!(rows.len(), expected.len());
        for (n, (got, want)) in rows.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "row {n}, {compression}");
        }
    }
    // Numbers: rows of one column.
    let numbers = scratch.path().join("out-numbers");
    let run = ok(&[
        "--source",
        path_str(&file),
        "--columns",
        "id",
        "--plugin",
        "json_field",
        "--plugin-config",
        r#"{"field": "id"}"#,
        "--output",
        path_str(&numbers),
        "--output-format",
        "parquet",
    ]);
    assert_eq!(run.outputs().sum, 20_000 * 20_001 / 2);
    let (rows, _) = parquet_output(&numbers);
    let sum: u64 = rows
        .iter()
        .map(|r| r["value"].as_u64().expect("a number"))
        .sum();
    assert_eq!((rows.len(), sum), (20_000, 20_000 * 20_001 / 2));
}

/// A given schema: an output that does not fit it (a wrong type, a field it lacks, not a JSON
/// object) is a failed item of kind OutputOutsideSchema with the reason, in the failed/ part,
/// and every other output is a row; without a tolerance, the batch fails naming the item. A
/// schema that is not one is refused by the starter, naming why.
#[test]
fn outputs_outside_a_given_schema_are_failed_items() {
    let scratch = support::data_dir();
    let source = scratch.path().join("mixed.jsonl");
    let mut text = String::new();
    for id in 1..=3000u64 {
        let amount = match id % 1000 {
            7 => "\"seven\"".to_owned(),
            _ => (id % 50).to_string(),
        };
        text.push_str(&format!(
            "{{\"id\":{id},\"country\":\"FR\",\"amount\":{amount}}}\n"
        ));
    }
    std::fs::write(&source, text).expect("write");
    let schema = scratch.path().join("schema.json");
    std::fs::write(&schema, r#"{"id": "int64", "amount": "int32"}"#).expect("write");
    let filter = support::data::FILTER;
    let out = scratch.path().join("out");
    let run = ok(&[
        "--source",
        path_str(&source),
        "--plugin",
        "json_filter",
        "--plugin-config",
        filter,
        "--output",
        path_str(&out),
        "--output-format",
        "parquet",
        "--output-schema",
        &format!("@{}", path_str(&schema)),
        "--max-failures",
        "10",
        "--split-size",
        "20000",
    ]);
    let failures = &run.result.failures;
    assert_eq!(failures.count, 3, "{failures:?}");
    assert_eq!(
        failures
            .by_kind
            .get(&batch_core::FailureKind::OutputOutsideSchema),
        Some(&3)
    );
    assert!(
        failures.samples[0]
            .reason
            .contains("does not fit the output's schema"),
        "{failures:?}"
    );
    let (rows, _) = parquet_output(&out);
    assert_eq!(rows.len(), 2997);
    assert!(rows.iter().all(|r| r["amount"].is_u64()));
    // Without a tolerance: the batch fails, naming the item.
    let strict = node().run(&[
        "--source",
        path_str(&source),
        "--plugin",
        "json_filter",
        "--plugin-config",
        filter,
        "--output",
        path_str(&scratch.path().join("strict")),
        "--output-format",
        "parquet",
        "--output-schema",
        r#"{"id": "int64", "amount": "int32"}"#,
    ]);
    assert!(!strict.success);
    assert!(
        strict.stderr.contains("OutputOutsideSchema") || strict.stderr.contains("does not fit"),
        "{}",
        strict.stderr
    );
    for (schema, says) in [
        (r#"{"id": "int65"}"#, "unknown type \"int65\""),
        (r#"["int8"]"#, "a JSON object of columns"),
    ] {
        let refused = node().run(&[
            "--source",
            path_str(&source),
            "--plugin",
            "json_filter",
            "--output",
            path_str(&scratch.path().join("never")),
            "--output-format",
            "parquet",
            "--output-schema",
            schema,
        ]);
        assert!(!refused.success);
        assert!(refused.stderr.contains(says), "{}", refused.stderr);
    }
}

/// `--output-compression`: JSON Lines parts as one gzip or zstd stream each (named .gz,
/// .zst), which decompress to the plain output's bytes.
#[test]
fn compressed_outputs_decompress_to_the_plain_output() {
    use std::io::Read as _;
    let scratch = support::data_dir();
    let source = scratch.path().join("events.jsonl");
    std::fs::write(&source, support::data::events(30_000)).expect("write");
    let run_to = |out: &Path, compression: &str| {
        let run = ok(&[
            "--source",
            path_str(&source),
            "--plugin",
            "json_filter",
            "--plugin-config",
            support::data::FILTER,
            "--output",
            path_str(out),
            "--output-compression",
            compression,
            "--split-size",
            "100000",
        ]);
        assert_eq!(run.outputs().count, 30_000);
    };
    let plain = scratch.path().join("plain");
    run_to(&plain, "none");
    let plain = support::data::parts_of(&plain);
    assert!(!plain.is_empty());
    for (compression, extension) in [("gzip", ".gz"), ("zstd", ".zst")] {
        let out = scratch.path().join(compression);
        run_to(&out, compression);
        let manifest = manifest_of(&out);
        let mut text = Vec::new();
        for part in manifest["parts"].as_array().expect("parts") {
            let name = part["name"].as_str().expect("name");
            assert!(name.ends_with(extension), "{name}");
            let bytes = std::fs::read(out.join(name)).expect("part");
            assert_eq!(part["bytes"], bytes.len() as u64);
            match compression {
                "gzip" => {
                    flate2::read::GzDecoder::new(&bytes[..])
                        .read_to_end(&mut text)
                        .expect("gzip");
                }
                _ => text.extend(zstd::decode_all(&bytes[..]).expect("zstd")),
            }
        }
        assert_eq!(text, plain, "{compression}");
    }
}
