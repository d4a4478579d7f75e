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

/// What pyarrow reads from `file`: the rows whose `kind` is `order`, projected on `columns`,
/// through the documented mapping (decimals as numbers, timestamps as RFC 3339 text in UTC,
/// lists as arrays, structs as objects, nulls kept), one JSON object a line.
fn reference_rows(file: &Path, columns: &[&str]) -> Vec<Value> {
    let program = r#"
import json, sys
import pyarrow.parquet as pq
table = pq.read_table(sys.argv[1])
columns = sys.argv[2].split(",")
def value(v):
    import decimal, datetime
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, datetime.datetime):
        return v.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(v, list):
        return [value(x) for x in v]
    if isinstance(v, dict):
        return {k: value(x) for k, x in v.items()}
    return v
for row in table.to_pylist():
    if row["kind"] == "order":
        print(json.dumps({c: value(row[c]) for c in columns}))
"#;
    let out = Command::new("python3")
        .args(["-c", program, path_str(file), &columns.join(",")])
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

/// Row groups are the splits, at every split size each row group is read once, and the rows
/// reach the plugin as JSON objects equal to pyarrow's through the documented mapping, nested
/// columns and nulls included; `--columns` reads only those.
#[test]
fn parquet_rows_reach_json_plugins_as_pyarrow_reads_them() {
    let scratch = support::data_dir();
    let file = scratch.path().join("events.parquet");
    make_dataset(&["parquet", "20000", path_str(&file), "--row-group", "1000"]);
    let columns = ["id", "amount", "ts", "note", "tags", "geo", "country"];
    let expected = reference_rows(&file, &columns);
    let filter =
        serde_json::json!({"field": "kind", "equals": "order", "select": columns}).to_string();
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
