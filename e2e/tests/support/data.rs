//! The data tests' dataset and checks, shared by tests/data.rs and tests/faults.rs: generated
//! JSON Lines, the outputs json_filter must give for them (computed here, not by the system
//! under test), and the checks of a manifest against its parts.

use serde_json::{Value, json};

pub const FILTER: &str = r#"{"field": "country", "equals": "FR", "select": ["id", "amount"]}"#;

/// `n` JSON Lines records, deterministic, with a blank line every 97 records (not an item)
/// and no line end after the last.
pub fn events(n: u64) -> Vec<u8> {
    let mut text = String::new();
    for id in 1..=n {
        let country = ["FR", "DE", "US"][(id * 7 % 3) as usize];
        let amount = id * 37 % 101;
        text.push_str(&format!(
            "{{\"id\":{id},\"country\":\"{country}\",\"amount\":{amount},\"note\":\"n{id}\"}}"
        ));
        if id < n {
            text.push('\n');
        }
        if id % 97 == 0 {
            text.push_str("  \n");
        }
    }
    text.into_bytes()
}

/// What json_filter with [`FILTER`] outputs for `events`, computed here: the FR records'
/// id and amount (serde_json writes an object's keys in order), one per line.
pub fn expected_filter_output(data: &[u8]) -> (Vec<u8>, u64, u64) {
    let mut out = Vec::new();
    let (mut items, mut kept) = (0, 0);
    for line in data.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        items += 1;
        let record: Value = serde_json::from_slice(line).expect("json");
        if record["country"] == "FR" {
            kept += 1;
            let projected = json!({"id": record["id"], "amount": record["amount"]});
            out.extend_from_slice(projected.to_string().as_bytes());
            out.push(b'\n');
        }
    }
    (out, items, kept)
}

/// Checks a manifest against the source and the parts: counts, digests, contiguous splits
/// covering the source, each part's size; returns the parts' names in order.
pub fn check_manifest(
    manifest: &Value,
    source_size: u64,
    items: u64,
    records: u64,
    read_part: &dyn Fn(&str) -> Vec<u8>,
) -> Vec<u8> {
    assert_eq!(manifest["manifest_version"], 1);
    assert_eq!(manifest["items"], items, "{manifest:#}");
    assert_eq!(manifest["records"], records);
    assert_eq!(manifest["skipped"], items - records);
    assert_eq!(manifest["failed"], 0);
    assert_eq!(manifest["source"]["size"], source_size);
    assert_eq!(
        manifest["plugin"]["digest"],
        super::sha256_of(&super::built_plugin("json_filter"))
    );
    let parts = manifest["parts"].as_array().expect("parts");
    let mut next = 1;
    let mut concatenated = Vec::new();
    let (mut part_items, mut part_bytes) = (0, 0);
    for part in parts {
        assert_eq!(part["first"], next, "parts are contiguous: {part}");
        next = part["last"].as_u64().expect("last") + 1;
        let name = part["name"].as_str().expect("name");
        let bytes = read_part(name);
        assert_eq!(part["bytes"], bytes.len() as u64, "{name}");
        part_items += part["items"].as_u64().expect("items");
        part_bytes += bytes.len() as u64;
        concatenated.extend(bytes);
    }
    assert_eq!(next, source_size + 1, "the parts cover the source");
    assert_eq!(part_items, items);
    assert_eq!(manifest["bytes"], part_bytes);
    concatenated
}

/// The parts of the output directory `out`, concatenated in their names' order (source order).
pub fn parts_of(out: &std::path::Path) -> Vec<u8> {
    names_in(out)
        .iter()
        .filter(|name| name.starts_with("part-"))
        .flat_map(|name| std::fs::read(out.join(name)).expect("part"))
        .collect()
}

/// The names in `dir`, sorted.
pub fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("a directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The output directory `out` of a json_filter batch (with [`FILTER`]) over `data`: its
/// manifest checked against the parts, the parts concatenated against the outputs computed
/// here, and the directory holding exactly the manifest's files (no staged file, one part per
/// leaf). Returns the manifest.
pub fn check_filter_output_dir(out: &std::path::Path, data: &[u8]) -> Value {
    let (expected, items, kept) = expected_filter_output(data);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).expect("the manifest"))
            .expect("manifest json");
    let concatenated = check_manifest(&manifest, data.len() as u64, items, kept, &|name| {
        std::fs::read(out.join(name)).expect("part")
    });
    assert!(
        concatenated == expected,
        "the parts, concatenated, are the outputs in source order"
    );
    let mut listed: Vec<String> = manifest["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_owned())
        .collect();
    listed.push("_manifest.json".into());
    listed.sort();
    assert_eq!(
        names_in(out),
        listed,
        "the output holds exactly the manifest's files"
    );
    manifest
}

/// `data` cut into `n` pieces (about; fewer if it has fewer lines), each ending at a line's
/// end: the objects of a many-object source whose records, in order, are `data`'s.
pub fn at_line_ends(data: &[u8], n: usize) -> Vec<Vec<u8>> {
    let step = data.len().div_ceil(n.max(1)).max(1);
    let mut pieces = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let cut = rest
            .iter()
            .skip(step)
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |p| p + step + 1);
        let (piece, after) = rest.split_at(cut);
        pieces.push(piece.to_vec());
        rest = after;
    }
    pieces
}

/// `data` gzip-compressed in `members` members, one after the other (as `cat a.gz b.gz`,
/// pigz and bgzip write them).
pub fn gzip_members(data: &[u8], members: usize) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::new();
    for piece in data.chunks(data.len().div_ceil(members).max(1)) {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(piece).expect("compressed");
        out.extend(encoder.finish().expect("compressed"));
    }
    out
}

/// `data` zstd-compressed in `frames` frames, one after the other.
pub fn zstd_frames(data: &[u8], frames: usize) -> Vec<u8> {
    data.chunks(data.len().div_ceil(frames).max(1))
        .flat_map(|piece| zstd::stream::encode_all(piece, 3).expect("compressed"))
        .collect()
}

/// `data` as a seekable zstd stream (zstd's seekable format): independent frames of the
/// decompressed sizes in `sizes`, taken in turn (0 makes an empty frame), then the seek table
/// listing them. Its frames' bytes are [`zstd_seekable_frames`].
pub fn zstd_seekable(data: &[u8], sizes: &[usize]) -> Vec<u8> {
    let frames = zstd_seekable_frames(data, sizes);
    let mut out: Vec<u8> = frames.iter().flat_map(|(f, _)| f.clone()).collect();
    let entries: Vec<u8> = frames
        .iter()
        .flat_map(|(f, d)| [(f.len() as u32).to_le_bytes(), (*d as u32).to_le_bytes()])
        .flatten()
        .collect();
    out.extend(0x184D_2A5Eu32.to_le_bytes());
    out.extend((entries.len() as u32 + 9).to_le_bytes());
    out.extend(entries);
    out.extend((frames.len() as u32).to_le_bytes());
    out.push(0);
    out.extend(0x8F92_EAB1u32.to_le_bytes());
    out
}

/// The frames of [`zstd_seekable`]: each one's bytes and its decompressed size.
pub fn zstd_seekable_frames(data: &[u8], sizes: &[usize]) -> Vec<(Vec<u8>, usize)> {
    let mut frames = Vec::new();
    let mut rest = data;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, after) = rest.split_at(size.min(rest.len()));
        let frame = zstd::stream::encode_all(piece, 3).expect("compressed");
        frames.push((frame, piece.len()));
        rest = after;
    }
    frames
}

/// `data` as gzip members of the decompressed sizes in `sizes`, taken in turn, and its bgzip
/// index (`.gzi`: the count, then each member's start after the first, stored and
/// decompressed, all 8-byte little-endian).
pub fn gzip_indexed(data: &[u8], sizes: &[usize]) -> (Vec<u8>, Vec<u8>) {
    let (mut gz, mut starts) = (Vec::new(), Vec::new());
    let mut at = 0;
    for &size in sizes.iter().cycle() {
        if at == data.len() {
            break;
        }
        let piece = &data[at..(at + size).min(data.len())];
        if !gz.is_empty() {
            starts.extend((gz.len() as u64).to_le_bytes());
            starts.extend((at as u64).to_le_bytes());
        }
        gz.extend(gzip_members(piece, 1));
        at += piece.len();
    }
    let mut gzi = ((starts.len() / 16) as u64).to_le_bytes().to_vec();
    gzi.extend(starts);
    (gz, gzi)
}
