//! Data batches end to end (`--source`, `--output`): a real dev server, the real worker and
//! starter, record plugins, local files and an S3-compatible server (s3s-fs from crates.io,
//! `s3_test_server`). Every output is checked byte for byte against what the test computes
//! from the data it generated, and every manifest field against the data and the parts.

mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use support::data::{
    FILTER, check_filter_output_dir, check_manifest, events, expected_filter_output, gzip_indexed,
    gzip_members, parts_of, zstd_frames, zstd_seekable, zstd_seekable_frames,
};
use support::{DevServer, Node, Report, S3Server, Starter};

fn server() -> &'static DevServer {
    static SERVER: OnceLock<DevServer> = OnceLock::new();
    SERVER.get_or_init(DevServer::start)
}

fn s3() -> &'static S3Server {
    static S3: OnceLock<S3Server> = OnceLock::new();
    S3.get_or_init(|| S3Server::start(&["data"]))
}

const PLUGINS: [(&str, &str); 2] = [("json_filter", "json_filter"), ("json_field", "json_field")];

/// One worker for the file, which can reach the S3 server.
fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let env = s3().env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let dir = tempfile::tempdir().expect("plugins dir");
        for (name, as_name) in PLUGINS {
            support::install_plugin(dir.path(), name, as_name);
        }
        // The test's data directory, and the S3 server's bucket.
        let mut grants = support::default_grants();
        grants.extend(
            ["--allow-read", "s3://data/", "--allow-write", "s3://data/"].map(String::from),
        );
        let grants: Vec<&str> = grants.iter().map(String::as_str).collect();
        let worker = support::Worker::builder(server(), "data", dir.path())
            .args(&grants)
            .env(&env)
            .start();
        Node {
            server: server(),
            queue: "data".into(),
            plugins: dir,
            worker,
        }
    })
}

/// The starter on the data node's queue, with the S3 server's settings.
fn starter(args: &[&str]) -> Starter {
    node();
    Starter::on(server(), "data").args(args).env(&s3().env())
}

/// The finished batch's typed result (`--json`); a failed run shows the worker's log too.
fn ok(starter: Starter) -> Report {
    let run = starter.args(&["--json"]).run();
    assert!(run.success, "{}", node().explain(&run));
    run.report()
}

/// Puts `bytes` at `location` in the S3 test server, through the S3 protocol, as any client
/// would.
fn upload(location: &str, bytes: Vec<u8>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let at = data_io::Location::open_with(location, data_io::Authority::User, s3().options())
        .expect("s3 location");
    runtime
        .block_on(data_io::write::put(&at, bytes))
        .expect("upload");
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn a_jsonl_file_becomes_an_output_directory_with_a_manifest() {
    let scratch = support::data_dir();
    let source = scratch.path().join("events.jsonl");
    let data = events(20_000);
    std::fs::write(&source, &data).expect("write source");
    let out = scratch.path().join("out");
    let run = ok(starter(&[
        "--source",
        path_str(&source),
        "--plugin",
        "json_filter",
        "--plugin-config",
        FILTER,
        "--output",
        path_str(&out),
        "--split-size",
        "65536",
    ]));
    let (expected, items, kept) = expected_filter_output(&data);
    let outputs = run.outputs();
    assert_eq!(outputs.count, items);
    assert_eq!(
        (outputs.records, outputs.record_bytes),
        (kept, (expected.len() - kept as usize) as u64)
    );
    assert_eq!(outputs.skipped, items - kept);
    let manifest = check_filter_output_dir(&out, &data);
    let shape = batch_core::TreeShape::of(data.len() as u64, 65536, 5);
    let parts = manifest["parts"].as_array().expect("parts").len();
    assert_eq!(parts as u64, shape.leaves, "one part per leaf");
    assert_eq!(run.result.workflows, shape.workflows);
    assert_eq!(run.result.config.output.as_deref(), Some(path_str(&out)));
    assert_eq!(run.result.parts.len(), parts);
    assert_eq!(
        batch_core::output::total_bytes(&run.result.parts),
        expected.len() as u64
    );
}

#[test]
fn csv_rows_reach_json_plugins_as_objects_and_a_bad_row_is_named() {
    let scratch = support::data_dir();
    let source = scratch.path().join("orders.csv");
    let mut csv = String::from("id,country,amount\r\n");
    let mut expected = Vec::new();
    for id in 1..=3000u64 {
        let country = if id % 4 == 0 { "FR" } else { "\"D,E\"" };
        csv.push_str(&format!("{id},{country},{}\r\n", id % 10));
        if id % 4 == 0 {
            expected.extend_from_slice(
                format!("{{\"amount\":\"{}\",\"id\":\"{id}\"}}\n", id % 10).as_bytes(),
            );
        }
    }
    std::fs::write(&source, &csv).expect("write source");
    let out = scratch.path().join("out");
    let run = ok(starter(&[
        "--source",
        path_str(&source),
        "--plugin",
        "json_filter",
        "--plugin-config",
        FILTER,
        "--output",
        path_str(&out),
        "--split-size",
        "8192",
    ]));
    assert_eq!(run.outputs().count, 3000);
    assert_eq!(run.outputs().skipped, 2250);
    let concatenated = parts_of(&out);
    assert_eq!(
        String::from_utf8_lossy(&concatenated),
        String::from_utf8_lossy(&expected)
    );

    // A row that does not fit the header fails the batch, naming the row by its position.
    let bad = scratch.path().join("bad.csv");
    let text = "id,country,amount\n1,FR,3\n2,FR\n";
    std::fs::write(&bad, text).expect("write");
    let failed = starter(&[
        "--source",
        path_str(&bad),
        "--plugin",
        "json_filter",
        "--plugin-config",
        FILTER,
    ])
    .run();
    assert!(!failed.success, "{}", failed.stdout);
    let position = text.find("2,FR").expect("the bad row") + 1;
    assert!(
        failed.stderr.contains(&format!(
            "item {position}: the CSV row has 2 fields, the header has 3"
        )),
        "{}",
        failed.stderr
    );
}

#[test]
fn an_s3_compatible_store_is_source_and_sink() {
    let data = events(8_000);
    let source_url = "s3://data/in/events.jsonl";
    upload(source_url, data.clone());
    assert_eq!(
        std::fs::read(s3().file("data", "in/events.jsonl")).expect("stored"),
        data
    );
    let run = ok(starter(&[
        "--source",
        source_url,
        "--plugin",
        "json_filter",
        "--plugin-config",
        FILTER,
        "--output",
        "s3://data/out/",
        "--split-size",
        "32768",
    ]));
    let (expected, items, kept) = expected_filter_output(&data);
    assert_eq!(run.outputs().count, items);
    let manifest_location = data_io::Location::open_with(
        "s3://data/out/_manifest.json",
        data_io::Authority::User,
        s3().options(),
    )
    .expect("location");
    let manifest = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(data_io::write::get(&manifest_location))
        .expect("the manifest, read back through S3");
    let manifest: Value = serde_json::from_slice(&manifest).expect("json");
    assert_eq!(manifest["source"]["location"], source_url);
    let out_dir: PathBuf = s3().file("data", "out");
    let concatenated = check_manifest(&manifest, data.len() as u64, items, kept, &|name| {
        std::fs::read(out_dir.join(name)).expect("part stored by the S3 server")
    });
    assert!(
        concatenated == expected,
        "S3 parts, concatenated, are the outputs"
    );

    // A source the worker cannot find fails its batch at once (not after five attempts),
    // naming the location.
    let missing = starter(&[
        "--source",
        "s3://data/in/none.jsonl",
        "--plugin",
        "json_field",
    ])
    .run();
    assert!(!missing.success);
    assert!(
        missing
            .stderr
            .contains("s3://data/in/none.jsonl: cannot read the source: not found"),
        "{}",
        missing.stderr
    );
}

/// A gzip or zstd source (several members or frames, known by its name, by `--compression`
/// or by its first bytes; local or in S3) gives exactly the outputs of its decompressed bytes,
/// read whole by one leaf; a compressed CSV's header comes from its stream.
#[test]
fn compressed_sources_give_the_outputs_of_their_decompressed_bytes() {
    let scratch = support::data_dir();
    let data = events(20_000);
    let (expected, items, kept) = expected_filter_output(&data);
    let filter = |source: &str, out: &str, extra: &[&str]| {
        let mut args = vec![
            "--source",
            source,
            "--plugin",
            "json_filter",
            "--plugin-config",
            FILTER,
            "--output",
            out,
        ];
        args.extend_from_slice(extra);
        ok(starter(&args))
    };
    let cases = [
        ("events.jsonl.gz", gzip_members(&data, 3), "gzip", &[][..]),
        ("events.jsonl.zst", zstd_frames(&data, 4), "zstd", &[][..]),
        // No extension: the first bytes say zstd; the format is given.
        (
            "events-zst",
            zstd_frames(&data, 1),
            "zstd",
            &["--format", "jsonl"][..],
        ),
        (
            "events.bin",
            gzip_members(&data, 1),
            "gzip",
            &["--compression", "gzip", "--format", "jsonl"][..],
        ),
    ];
    for (name, stored, compression, extra) in cases {
        let source = scratch.path().join(name);
        std::fs::write(&source, &stored).expect("write source");
        let out = scratch.path().join(format!("out-{name}"));
        let run = filter(path_str(&source), path_str(&out), extra);
        assert_eq!(run.outputs().count, items, "{name}");
        assert_eq!(run.result.workflows, 1, "{name}: one leaf reads it whole");
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).expect("manifest"))
                .expect("json");
        assert_eq!(manifest["source"]["compression"], compression, "{name}");
        let parts = check_manifest(&manifest, stored.len() as u64, items, kept, &|part| {
            std::fs::read(out.join(part)).expect("part")
        });
        assert!(
            parts == expected,
            "{name}: the outputs of the decompressed bytes"
        );
    }

    // A CSV's header is its stream's first line.
    let mut csv = String::from("id,country,amount\r\n");
    for id in 1..=3000u64 {
        csv.push_str(&format!(
            "{id},{},{}\r\n",
            ["FR", "DE"][(id % 2) as usize],
            id % 10
        ));
    }
    let source = scratch.path().join("orders.csv.gz");
    std::fs::write(&source, gzip_members(csv.as_bytes(), 2)).expect("write source");
    let out = scratch.path().join("out-csv");
    let run = filter(path_str(&source), path_str(&out), &[]);
    assert_eq!((run.outputs().count, run.outputs().records), (3000, 1500));
    let expected_csv: String = (1..=3000u64)
        .filter(|id| id % 2 == 0)
        .map(|id| format!("{{\"amount\":\"{}\",\"id\":\"{id}\"}}\n", id % 10))
        .collect();
    assert_eq!(String::from_utf8_lossy(&parts_of(&out)), expected_csv);

    // Through the S3 protocol.
    upload("s3://data/in/events.jsonl.zst", zstd_frames(&data, 5));
    let run = filter("s3://data/in/events.jsonl.zst", "s3://data/out-zst/", &[]);
    assert_eq!(run.outputs().count, items);
    let out_dir: PathBuf = s3().file("data", "out-zst");
    assert!(
        parts_of(&out_dir) == expected,
        "S3: the decompressed bytes' outputs"
    );
}

/// A seekable zstd source (independent frames listed by a seek table) is split by its frames,
/// locally, in S3 and as one object of many: records crossing frames, frames shorter than a
/// record and empty frames give exactly the outputs of the decompressed bytes; a seek table
/// that does not describe the object, or whose frames are not the stream's, fails the batch.
#[test]
fn seekable_zstd_sources_are_split_by_their_frames() {
    let scratch = support::data_dir();
    let data = events(20_000);
    let (expected, items, kept) = expected_filter_output(&data);
    let sizes = [7_000, 133, 0, 25_000, 1, 60_000];
    let stored = zstd_seekable(&data, &sizes);
    let frames = zstd_seekable_frames(&data, &sizes).len();
    let run_filter = |source: &str, out: &str, extra: &[&str]| {
        let mut args = vec!["--source", source, "--plugin", "json_filter"];
        args.extend(["--plugin-config", FILTER, "--output", out]);
        args.extend_from_slice(extra);
        starter(&args)
    };
    let source = scratch.path().join("events.jsonl.zst");
    std::fs::write(&source, &stored).expect("write source");
    let split = ["--split-size", "10000"];
    let plan = run_filter(
        path_str(&source),
        "/unused",
        &[&split[..], &["--plan"]].concat(),
    )
    .run();
    assert!(plan.success, "{}", plan.stderr);
    let said = format!("a zstd stream of {frames} independent frames");
    assert!(plan.stdout.contains(&said), "{}", plan.stdout);

    let out = scratch.path().join("out");
    let run = ok(run_filter(path_str(&source), path_str(&out), &split));
    assert_eq!(run.outputs().count, items);
    assert!(
        run.result.parts.len() > 8,
        "split by frames: {:?}",
        run.result
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["source"]["frames"], frames as u64);
    let parts = check_manifest(&manifest, stored.len() as u64, items, kept, &|part| {
        std::fs::read(out.join(part)).expect("part")
    });
    assert!(parts == expected, "the outputs of the decompressed bytes");

    // Through the S3 protocol, and as the second object of a prefix.
    let halves = dealt(&data, 2);
    let uploads = [
        ("s3://data/seekable/events.jsonl.zst", stored.clone()),
        ("s3://data/seekable-prefix/a.jsonl", halves[0].clone()),
        (
            "s3://data/seekable-prefix/b.jsonl.zst",
            zstd_seekable(&halves[1], &sizes),
        ),
    ];
    for (location, bytes) in uploads {
        upload(location, bytes);
    }
    for (source, out) in [
        ("s3://data/seekable/events.jsonl.zst", "out-seekable"),
        ("s3://data/seekable-prefix/", "out-seekable-prefix"),
    ] {
        let url = format!("s3://data/{out}/");
        let run = ok(run_filter(source, &url, &split));
        assert_eq!(run.outputs().count, items, "{source}");
        assert!(run.result.parts.len() > 8, "{source}: {:?}", run.result);
        assert!(
            parts_of(&s3().file("data", out)) == expected,
            "{source}: the outputs of the decompressed bytes"
        );
    }

    // Two frames' sizes traded: the index still adds up, but its frames are not the stream's.
    let table = stored.len() - (8 + 8 * frames + 9);
    let entry = |k: usize| table + 8 + 8 * k + 4;
    let mut traded = stored.clone();
    let size = |bytes: &[u8], at: usize| {
        u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
    };
    for (k, change) in [(3, -1i64), (4, 1)] {
        let new = (i64::from(size(&stored, entry(k))) + change) as u32;
        traded[entry(k)..entry(k) + 4].copy_from_slice(&new.to_le_bytes());
    }
    // The last frame said to be empty: whoever holds the end reads on, and finds it is not.
    let mut short_end = stored.clone();
    short_end[entry(frames - 1)..entry(frames - 1) + 4].copy_from_slice(&0u32.to_le_bytes());
    // A frame's stored size one more: the index does not describe the object.
    let mut longer = stored.clone();
    let at = entry(0) - 4;
    longer[at..at + 4].copy_from_slice(&(size(&stored, at) + 1).to_le_bytes());
    for (name, bytes, said) in [
        ("traded.jsonl.zst", traded, "does not match the index"),
        ("short-end.jsonl.zst", short_end, "does not match the index"),
        (
            "longer.jsonl.zst",
            longer,
            "its frame index does not describe the object",
        ),
    ] {
        let source = scratch.path().join(name);
        std::fs::write(&source, &bytes).expect("write source");
        let out = scratch.path().join(format!("out-{name}"));
        let run = run_filter(path_str(&source), path_str(&out), &split).run();
        assert!(!run.success, "{name}: {}", run.stdout);
        assert!(
            run.stderr.contains(path_str(&source)) && run.stderr.contains(said),
            "{name}: {}",
            node().explain(&run)
        );
    }
}

/// A gzip source with a bgzip index beside it (`NAME.gzi`) is split by its members, locally and
/// in an S3 prefix (where the index is the object's, not an object of its own); an index whose
/// member starts are not the stream's fails the batch.
#[test]
fn indexed_gzip_sources_are_split_by_their_members() {
    let scratch = support::data_dir();
    let data = events(20_000);
    let (expected, items, _) = expected_filter_output(&data);
    let sizes = [9_000, 50, 30_000, 1];
    let (gz, gzi) = gzip_indexed(&data, &sizes);
    let run_filter = |source: &str, out: &str| {
        let mut args = vec!["--source", source, "--plugin", "json_filter"];
        args.extend(["--plugin-config", FILTER, "--output", out]);
        starter(&[&args[..], &["--split-size", "20000"]].concat())
    };
    let source = scratch.path().join("events.jsonl.gz");
    std::fs::write(&source, &gz).expect("write source");
    std::fs::write(scratch.path().join("events.jsonl.gz.gzi"), &gzi).expect("write index");
    let out = scratch.path().join("out");
    let run = ok(run_filter(path_str(&source), path_str(&out)));
    assert_eq!(run.outputs().count, items);
    assert!(
        run.result.parts.len() > 8,
        "split by members: {:?}",
        run.result
    );
    let source_said = run.result.config.source.as_ref().expect("a source");
    assert!(
        source_said.frames.is_some_and(|f| f > 100),
        "{source_said:?}"
    );
    assert!(
        parts_of(&out) == expected,
        "the outputs of the decompressed bytes"
    );

    let halves = dealt(&data, 2);
    let (b, b_gzi) = gzip_indexed(&halves[1], &sizes);
    for (location, bytes) in [
        ("s3://data/indexed/a.jsonl", halves[0].clone()),
        ("s3://data/indexed/b.jsonl.gz", b),
        ("s3://data/indexed/b.jsonl.gz.gzi", b_gzi),
    ] {
        upload(location, bytes);
    }
    let run = ok(run_filter("s3://data/indexed/", "s3://data/out-indexed/"));
    assert_eq!(run.outputs().count, items);
    assert!(run.result.parts.len() > 8, "{:?}", run.result);
    assert!(
        parts_of(&s3().file("data", "out-indexed")) == expected,
        "the prefix's outputs"
    );

    // The third member's start moved 3 bytes into it.
    let mut moved = gzi.clone();
    let at = 8 + 16 * 2;
    let start = u64::from_le_bytes(moved[at..at + 8].try_into().expect("8 bytes")) + 3;
    moved[at..at + 8].copy_from_slice(&start.to_le_bytes());
    let source = scratch.path().join("moved.jsonl.gz");
    std::fs::write(&source, &gz).expect("write source");
    std::fs::write(scratch.path().join("moved.jsonl.gz.gzi"), &moved).expect("write index");
    let run = run_filter(
        path_str(&source),
        path_str(&scratch.path().join("out-moved")),
    )
    .run();
    assert!(!run.success, "{}", run.stdout);
    assert!(
        run.stderr.contains(path_str(&source)) && run.stderr.contains("does not match the index"),
        "{}",
        node().explain(&run)
    );
}

/// `events`' lines dealt into `count` objects in order, each holding whole lines, every
/// third one without a line end after its last; with the lines joined by `\n` between objects,
/// they are the records of the whole.
fn dealt(data: &[u8], count: usize) -> Vec<Vec<u8>> {
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let per = lines.len().div_ceil(count);
    lines
        .chunks(per)
        .enumerate()
        .map(|(i, chunk)| {
            let mut object = chunk.join(&b'\n');
            if i % 3 != 0 {
                object.push(b'\n');
            }
            object
        })
        .collect()
}

/// Every object under a directory or an S3 prefix, or matching a glob, is one source: plain,
/// gzip and zstd objects mixed, empty ones skipped and counted, hidden ones left out; splits
/// cut across objects but records never do, and the outputs are exactly those of all the
/// records in name order. A listing too large for the inputs is stored beside the output.
#[test]
fn a_prefix_of_mixed_objects_is_one_source() {
    let scratch = support::data_dir();
    let dir = scratch.path().join("lake");
    let data = events(20_000);
    let (expected, items, kept) = expected_filter_output(&data);
    let objects = dealt(&data, 45);
    let mut names = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        let (name, stored) = match i % 3 {
            0 => (format!("day-{}/part-{i:03}.jsonl", i / 10), object.clone()),
            1 => (
                format!("day-{}/part-{i:03}.jsonl.gz", i / 10),
                gzip_members(object, 2),
            ),
            _ => (
                format!("day-{}/part-{i:03}.jsonl.zst", i / 10),
                zstd_frames(object, 2),
            ),
        };
        let path = dir.join(&name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        std::fs::write(&path, stored).expect("write object");
        names.push(name);
    }
    for empty in [
        "day-0/empty-1.jsonl",
        "day-2/empty-2.jsonl.gz",
        "empty-3.jsonl",
        "z/e4.jsonl",
        "z/e5.jsonl",
    ] {
        let path = dir.join(empty);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
        std::fs::write(&path, b"").expect("write empty");
    }
    // Hidden: an earlier output's manifest and staging, never read.
    std::fs::create_dir_all(dir.join(".staging")).expect("dirs");
    std::fs::write(dir.join(".staging/x.jsonl"), b"{\"country\":\"FR\"}\n").expect("hidden");
    std::fs::write(dir.join("_manifest.json"), b"{}").expect("hidden");
    let out = scratch.path().join("out");
    let run = ok(starter(&[
        "--source",
        &format!("{}/", path_str(&dir)),
        "--plugin",
        "json_filter",
        "--plugin-config",
        FILTER,
        "--output",
        path_str(&out),
        "--split-size",
        "16384",
    ]));
    assert_eq!(run.outputs().count, items);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).expect("manifest"))
            .expect("json");
    let source = &manifest["source"];
    assert_eq!(source["objects"]["count"], objects.len(), "{source:#}");
    assert_eq!(source["objects"]["empty"], 5);
    let stored_size: u64 = names
        .iter()
        .map(|n| std::fs::metadata(dir.join(n)).expect("object").len())
        .sum();
    let parts = check_manifest(&manifest, stored_size, items, kept, &|part| {
        std::fs::read(out.join(part)).expect("part")
    });
    assert!(
        parts == expected,
        "the outputs of every record, in name order"
    );
    let listing = source["objects"]["listing"]["stored"]["location"]
        .as_str()
        .expect("a stored listing");
    assert!(
        listing.starts_with(&format!("{}/_listing-", path_str(&out))),
        "{listing}"
    );
    assert_eq!(
        std::fs::read_to_string(listing)
            .expect("listing")
            .lines()
            .count(),
        objects.len()
    );

    // A glob: the gzip objects of every day.
    let glob = format!("{}/day-*/*.jsonl.gz", path_str(&dir));
    let run = ok(starter(&[
        "--source",
        &glob,
        "--plugin",
        "json_filter",
        "--plugin-config",
        FILTER,
    ]));
    let gz_items: u64 = objects
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 1)
        .map(|(_, o)| expected_filter_output(o).1)
        .sum();
    assert_eq!(run.outputs().count, gz_items);

    // The same objects under an S3 prefix (listed through the S3 protocol).
    for name in &names {
        let object = std::fs::read(dir.join(name)).expect("object");
        upload(&format!("s3://data/lake/{name}"), object);
    }
    let run = ok(starter(&[
        "--source",
        "s3://data/lake/",
        "--plugin",
        "json_filter",
        "--plugin-config",
        FILTER,
        "--output",
        "s3://data/out-lake/",
        "--split-size",
        "65536",
    ]));
    assert_eq!(run.outputs().count, items);
    assert!(
        parts_of(&s3().file("data", "out-lake")) == expected,
        "S3: the outputs of every record, in name order"
    );
}

/// 100,000 objects (the most one source may hold) plan, start and run within Temporal's
/// payload limits: their listing is stored beside the output, and the inputs carry its
/// location and sha256 only.
#[test]
fn a_hundred_thousand_objects_run_as_one_source() {
    let scratch = support::data_dir();
    let dir = scratch.path().join("many");
    let count = batch_core::objects::MAX_OBJECTS;
    for sub in 0..100 {
        std::fs::create_dir_all(dir.join(format!("{sub:02}"))).expect("dir");
    }
    for id in 0..count {
        let country = if id % 4 == 0 { "FR" } else { "DE" };
        let line = format!(
            "{{\"id\":{id},\"country\":\"{country}\",\"amount\":{}}}\n",
            id % 7
        );
        let name = format!("{:02}/{id:06}.jsonl", id % 100);
        std::fs::write(dir.join(name), line).expect("object");
    }
    let out = scratch.path().join("out");
    let source = format!("{}/", path_str(&dir));
    let args = [
        "--source",
        source.as_str(),
        "--plugin",
        "json_filter",
        "--plugin-config",
        FILTER,
        "--output",
        path_str(&out),
        "--split-size",
        "262144",
    ];
    let plan = starter(&args).args(&["--plan"]).run();
    assert!(plan.success, "{}", plan.stderr);
    assert!(
        plan.stdout
            .contains(&format!("Objects: {count} under {source} in name order")),
        "{}",
        plan.stdout
    );
    assert!(!out.exists(), "--plan writes nothing");
    let run = ok(starter(&args));
    assert_eq!(run.outputs().count, count as u64);
    assert_eq!(run.outputs().records, count.div_ceil(4) as u64);
    // Every workflow's input, as the server holds it, is small whatever the count.
    let input = server().cli(&[
        "workflow",
        "show",
        "--workflow-id",
        &run.workflow_id,
        "--output",
        "json",
    ]);
    let history = String::from_utf8_lossy(&input.stdout);
    assert!(
        history.len() < 1 << 20,
        "{} bytes of history",
        history.len()
    );
}

/// A compressed source that is corrupt, cut short or a decompression bomb fails its batch,
/// naming the object and where in the stream; the starter refuses what does not apply.
#[test]
fn a_corrupt_truncated_or_bomb_stream_fails_the_batch_naming_where() {
    let scratch = support::data_dir();
    let data = events(20_000);
    let mut corrupt = gzip_members(&data, 1);
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0xff;
    let truncated = zstd_frames(&data, 1);
    let truncated = truncated[..truncated.len() / 2].to_vec();
    // 100 MiB of line ends (no items: blank JSON Lines), ~10 KB of zstd.
    let bomb = zstd::stream::encode_all(&vec![b'\n'; 100 << 20][..], 3).expect("compressed");
    let cases = [
        (
            "corrupt.jsonl.gz",
            corrupt,
            "the gzip stream is corrupt in compressed bytes",
        ),
        (
            "truncated.jsonl.zst",
            truncated,
            "the zstd stream ends in the middle of a frame",
        ),
        (
            "bomb.jsonl.zst",
            bomb,
            "the zstd stream decompresses to more than 250 times its compressed size",
        ),
    ];
    for (name, stored, expected) in cases {
        let source = scratch.path().join(name);
        std::fs::write(&source, &stored).expect("write source");
        let run = starter(&["--source", path_str(&source), "--plugin", "json_field"]).run();
        assert!(!run.success, "{name}: {}", run.stdout);
        let named = format!("{}: {expected}", path_str(&source));
        assert!(
            run.stderr.contains(&named),
            "{name}: {}",
            node().explain(&run)
        );
    }
    let source = scratch.path().join("corrupt.jsonl.gz");
    let split = starter(&[
        "--source",
        path_str(&source),
        "--split-size",
        "4096",
        "--plan",
    ])
    .run();
    assert!(
        split
            .stderr
            .contains("--split-size does not apply to this gzip source"),
        "{}",
        split.stderr
    );
}

/// The worker's view of a source may differ from the starter's (another machine): a source
/// gone by the time a leaf reads it fails the batch promptly, naming the location, without
/// the five attempts a transient failure gets.
#[test]
fn a_source_a_worker_cannot_read_fails_the_batch_promptly_naming_it() {
    let scratch = support::data_dir();
    let source = scratch.path().join("gone.jsonl");
    std::fs::write(&source, events(100)).expect("write");
    // Started on a queue no worker polls yet, so that the source is gone before any leaf.
    let started = Starter::on(server(), "data-late")
        .args(&[
            "--source",
            path_str(&source),
            "--plugin",
            "json_field",
            "--no-wait",
        ])
        .within(Duration::from_secs(60))
        .run();
    assert!(started.success, "{}", started.stderr);
    std::fs::remove_file(&source).expect("remove");
    let plugins = tempfile::tempdir().expect("plugins");
    support::install_plugin(plugins.path(), "json_field", "json_field");
    let _worker = support::Worker::start(server(), "data-late", plugins.path());
    let id = started.stdout.trim();
    let began = std::time::Instant::now();
    let attached = Starter::on(server(), "data-late")
        .args(&["--attach", id])
        .within(Duration::from_secs(60))
        .run();
    assert!(!attached.success, "{}", attached.stdout);
    assert!(
        attached
            .stderr
            .contains(&format!("{}: cannot read bytes", source.display()))
            && attached.stderr.contains("not found"),
        "{}",
        attached.stderr
    );
    // Five attempts would take 1 + 2 + 4 + 8 s of backoff at least.
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "{:?}",
        began.elapsed()
    );
}

fn moto() -> &'static support::MotoServer {
    static MOTO: OnceLock<support::MotoServer> = OnceLock::new();
    MOTO.get_or_init(|| support::MotoServer::start(&["lake"]))
}

/// A worker on `queue` that reaches moto, granted its bucket.
fn moto_worker(queue: &str) -> support::Worker {
    let env = moto().env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let grants = ["--allow-read", "s3://lake/", "--allow-write", "s3://lake/"];
    support::Worker::builder(server(), queue, node().dir())
        .args(&grants)
        .env(&env)
        .start()
}

/// moto, a second and independent S3 implementation: a prefix of mixed objects (JSON Lines,
/// gzip, zstd, empty) listed and read through it, outputs written to it gzip-compressed and as
/// Parquet, read back through it; and an object replaced after the batch pinned it (moto
/// honours `If-Match`, as AWS does) fails the batch, naming the object, instead of mixing two
/// versions.
#[test]
fn moto_serves_a_prefix_batch_and_refuses_an_object_replaced_mid_batch() {
    use std::io::Read as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let at = |url: &str| {
        data_io::Location::open_with(url, data_io::Authority::User, moto().options())
            .expect("s3 location")
    };
    let data = events(20_000);
    let objects = support::data::at_line_ends(&data, 12);
    for (n, object) in objects.iter().enumerate() {
        let (name, bytes) = match n % 3 {
            0 => (format!("part-{n:02}.jsonl"), object.clone()),
            1 => (format!("part-{n:02}.jsonl.gz"), gzip_members(object, 2)),
            _ => (
                format!("part-{n:02}.jsonl.zst"),
                zstd::encode_all(&object[..], 3).expect("zstd"),
            ),
        };
        runtime
            .block_on(data_io::write::put(
                &at(&format!("s3://lake/in/{name}")),
                bytes,
            ))
            .expect("upload");
    }
    runtime
        .block_on(data_io::write::put(
            &at("s3://lake/in/part-99-empty.jsonl"),
            Vec::new(),
        ))
        .expect("upload");
    let _worker = moto_worker("moto");
    let moto_starter =
        |queue: &str, args: &[&str]| Starter::on(server(), queue).args(args).env(&moto().env());
    let (expected, items, kept) = expected_filter_output(&data);
    let run = moto_starter(
        "moto",
        &[
            "--source",
            "s3://lake/in/",
            "--plugin",
            "json_filter",
            "--plugin-config",
            FILTER,
            "--output",
            "s3://lake/out-gz/",
            "--output-compression",
            "gzip",
            "--split-size",
            "16384",
            "--json",
        ],
    )
    .run();
    assert!(run.success, "{}", node().explain(&run));
    assert_eq!(
        (run.report().outputs().count, run.report().outputs().records),
        (items, kept)
    );
    let manifest = runtime
        .block_on(data_io::write::get(&at("s3://lake/out-gz/_manifest.json")))
        .expect("the manifest, through moto");
    let manifest: Value = serde_json::from_slice(&manifest).expect("json");
    let mut text = Vec::new();
    for part in manifest["parts"].as_array().expect("parts") {
        let name = part["name"].as_str().expect("name");
        assert!(name.ends_with(".gz"), "{name}");
        let bytes = runtime
            .block_on(data_io::write::get(&at(&format!(
                "s3://lake/out-gz/{name}"
            ))))
            .expect("a part, through moto");
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut text)
            .expect("gzip");
    }
    assert!(
        text == expected,
        "the outputs of every record, in name order"
    );

    let run = moto_starter(
        "moto",
        &[
            "--source",
            "s3://lake/in/",
            "--plugin",
            "json_filter",
            "--plugin-config",
            FILTER,
            "--output",
            "s3://lake/out-pq/",
            "--output-format",
            "parquet",
            "--json",
        ],
    )
    .run();
    assert!(run.success, "{}", node().explain(&run));
    assert_eq!(run.report().outputs().records, kept);
    let manifest = runtime
        .block_on(data_io::write::get(&at("s3://lake/out-pq/_manifest.json")))
        .expect("the manifest, through moto");
    let manifest: Value = serde_json::from_slice(&manifest).expect("json");
    let schema = manifest["output_encoding"]["schema"]
        .as_str()
        .expect("the inferred schema");
    assert!(
        schema.contains(r#""id": "int64""#) && schema.contains(r#""amount": "int64""#),
        "{schema}"
    );

    // Replaced after the starter pinned it, before any leaf read it: the same size, another
    // ETag.
    let started = moto_starter(
        "moto-late",
        &[
            "--source",
            "s3://lake/in/",
            "--plugin",
            "json_filter",
            "--plugin-config",
            FILTER,
            "--no-wait",
        ],
    )
    .run();
    assert!(started.success, "{}", started.stderr);
    let mut replaced = objects[0].clone();
    replaced[2] = if replaced[2] == b'9' { b'8' } else { b'9' };
    runtime
        .block_on(data_io::write::put(
            &at("s3://lake/in/part-00.jsonl"),
            replaced,
        ))
        .expect("upload");
    let _late = moto_worker("moto-late");
    let attached = moto_starter("moto-late", &["--attach", started.stdout.trim()]).run();
    assert!(!attached.success, "{}", attached.stdout);
    assert!(
        attached.stderr.contains("part-00.jsonl")
            && attached
                .stderr
                .contains("the object changed since the batch started"),
        "{}",
        attached.stderr
    );
}
