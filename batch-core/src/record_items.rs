//! From a source's records to the items a plugin gets, by format ([`crate::source::Format`]):
//! lines as they are; JSON Lines without the blank lines; CSV rows as JSON objects keyed by
//! the header's names, so the JSON plugins serve both (or, for a plugin that takes CSV rows,
//! the rows as they are).
//!
//! A CSV row is one line. RFC 4180 lets a quoted field hold a line break, but a split cannot
//! tell, from its own bytes, whether it starts inside such a field: only a pass over every
//! byte before it can. Rather than read every CSV source twice, a row that opens a quoted
//! field and ends its line inside it is refused, and fails the batch whatever its tolerance:
//! its continuation lines would otherwise become rows that exist nowhere in the file, and the
//! real row would be lost. The row that opens the first such field always starts a line, so
//! every file that holds one is refused, at any split size (docs/operations.md).

use std::borrow::Cow;

use crate::plugin_input::PluginInput;
use crate::source::{DataSource, Format, SourceError};

/// Turns a source's records (from [`crate::split::SplitRecords`]) into plugin items.
#[derive(Debug, Clone)]
pub struct RecordItems {
    format: Format,
    /// CSV: the header's names, each already a JSON string followed by ':'.
    keys: Vec<String>,
    /// CSV: hand rows over as they are (a plugin that takes CSV rows), not as JSON objects.
    raw_rows: bool,
}

/// What one record is to the batch.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordItem<'a> {
    /// An item, with the bytes the plugin gets.
    Item(Cow<'a, [u8]>),
    /// Not an item: a blank JSON Lines line, an empty CSV line, the CSV header.
    NotAnItem,
    /// A CSV row that cannot be read against the header: the item fails with this reason.
    Bad(String),
    /// A record the batch cannot process at all (a CSV row with a line break in a quoted
    /// field): the batch fails, whatever its tolerance, with this reason.
    Fatal(String),
}

impl RecordItems {
    /// The items of `source` for a plugin that takes `input` (`None`: it did not say).
    pub fn new(source: &DataSource, input: Option<PluginInput>) -> Result<Self, SourceError> {
        let keys = match (source.format, &source.header) {
            (Format::Csv, Some(header)) => {
                let names =
                    csv_fields(header.as_bytes()).map_err(|reason| SourceError::Header {
                        location: source.location.clone(),
                        reason,
                    })?;
                names
                    .iter()
                    .map(|name| format!("{}:", json_string(name)))
                    .collect()
            }
            (Format::Csv, None) => {
                return Err(SourceError::Header {
                    location: source.location.clone(),
                    reason: "the first line (the header) is missing".into(),
                });
            }
            _ => Vec::new(),
        };
        Ok(Self {
            format: source.format,
            keys,
            raw_rows: input == Some(PluginInput::CsvRow),
        })
    }

    /// The item for the record at byte position `index`.
    pub fn item<'a>(&self, index: u64, record: &'a [u8]) -> RecordItem<'a> {
        match self.format {
            Format::Lines => RecordItem::Item(Cow::Borrowed(record)),
            Format::Jsonl if record.iter().all(u8::is_ascii_whitespace) => RecordItem::NotAnItem,
            Format::Jsonl | Format::Parquet => RecordItem::Item(Cow::Borrowed(record)),
            Format::Csv if index == 1 || record.is_empty() => RecordItem::NotAnItem,
            Format::Csv if ends_inside_quotes(record) => RecordItem::Fatal(format!(
                "the CSV row at byte {index} ({}) opens a quoted field that holds a line \
                 break: CSV sources take one row per line (a split cannot tell where a row with \
                 line breaks starts, so such rows would be lost or made up); remove the line \
                 breaks from quoted fields, or convert the file to JSON Lines",
                excerpt(record)
            )),
            Format::Csv if self.raw_rows => RecordItem::Item(Cow::Borrowed(record)),
            Format::Csv => match self.csv_object(record) {
                Ok(object) => RecordItem::Item(Cow::Owned(object)),
                Err(reason) => RecordItem::Bad(reason),
            },
        }
    }

    fn csv_object(&self, row: &[u8]) -> Result<Vec<u8>, String> {
        let fields = csv_fields(row)?;
        if fields.len() != self.keys.len() {
            return Err(format!(
                "the CSV row has {} fields, the header has {}",
                fields.len(),
                self.keys.len()
            ));
        }
        let mut object = String::with_capacity(row.len() * 2 + 2);
        object.push('{');
        for (i, (key, value)) in self.keys.iter().zip(&fields).enumerate() {
            if i > 0 {
                object.push(',');
            }
            object.push_str(key);
            object.push_str(&json_string(value));
        }
        object.push('}');
        Ok(object.into_bytes())
    }
}

/// The fields of one CSV line (RFC 4180 quoting, without line breaks in fields).
fn csv_fields(line: &[u8]) -> Result<Vec<String>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line);
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => Ok(record.iter().map(str::to_owned).collect()),
        Ok(false) => Ok(Vec::new()),
        Err(e) => Err(format!("the CSV row cannot be read: {e}")),
    }
}

/// Whether a CSV line ends inside a quoted field, as RFC 4180 (and the `csv` crate) read it:
/// a quote opens a quoted field only at a field's start; inside one, `""` is a quote and a
/// lone `"` closes it.
pub fn ends_inside_quotes(line: &[u8]) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut state = State::FieldStart;
    for &b in line {
        state = match (state, b) {
            (State::FieldStart | State::Unquoted | State::QuoteInQuoted, b',') => State::FieldStart,
            (State::FieldStart, b'"') => State::Quoted,
            (State::Quoted, b'"') => State::QuoteInQuoted,
            (State::Quoted, _) => State::Quoted,
            (State::QuoteInQuoted, b'"') => State::Quoted,
            _ => State::Unquoted,
        };
    }
    state == State::Quoted
}

/// The start of a record, quoted and escaped for a message.
fn excerpt(record: &[u8]) -> String {
    const SHOWN: usize = 64;
    let text = String::from_utf8_lossy(&record[..record.len().min(SHOWN)]);
    let more = if record.len() > SHOWN { "..." } else { "" };
    format!("{text:?}{more}")
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(format: Format, header: Option<&str>) -> RecordItems {
        items_for(format, header, None)
    }

    fn items_for(format: Format, header: Option<&str>, input: Option<PluginInput>) -> RecordItems {
        RecordItems::new(
            &DataSource {
                location: "/d".into(),
                format,
                size: 1,
                version: None,
                header: header.map(str::to_owned),
                compression: None,
                max_ratio: None,
                objects: None,
                frames: None,
                gzi: None,
                columns: None,
            },
            input,
        )
        .expect("valid")
    }

    fn item(bytes: &[u8]) -> RecordItem<'_> {
        RecordItem::Item(Cow::Borrowed(bytes))
    }

    #[test]
    fn lines_are_items_as_they_are() {
        let lines = items(Format::Lines, None);
        assert_eq!(lines.item(1, b""), item(b""));
        assert_eq!(lines.item(5, b" x "), item(b" x "));
    }

    #[test]
    fn blank_json_lines_are_not_items() {
        let jsonl = items(Format::Jsonl, None);
        assert_eq!(jsonl.item(1, b"{\"a\":1}"), item(b"{\"a\":1}"));
        assert_eq!(jsonl.item(9, b" \t"), RecordItem::NotAnItem);
        assert_eq!(jsonl.item(9, b""), RecordItem::NotAnItem);
        // Not JSON: the plugin says so, with the item's index.
        assert_eq!(jsonl.item(3, b"nope"), item(b"nope"));
    }

    #[test]
    fn csv_rows_become_json_objects_in_the_headers_order() {
        let csv = items(Format::Csv, Some("id,name,\"note, quoted\""));
        assert_eq!(csv.item(1, b"id,name,note"), RecordItem::NotAnItem);
        assert_eq!(csv.item(40, b""), RecordItem::NotAnItem);
        let RecordItem::Item(object) = csv.item(20, b"7,\"Doe, J\",\"say \"\"hi\"\"\"") else {
            panic!("an item");
        };
        assert_eq!(
            std::str::from_utf8(&object).expect("no error"),
            r#"{"id":"7","name":"Doe, J","note, quoted":"say \"hi\""}"#
        );
        assert_eq!(
            csv.item(30, b"1,2"),
            RecordItem::Bad("the CSV row has 2 fields, the header has 3".into())
        );
    }

    #[test]
    fn a_plugin_that_takes_csv_rows_gets_them_as_they_are() {
        let csv = items_for(Format::Csv, Some("a,b"), Some(PluginInput::CsvRow));
        assert_eq!(csv.item(1, b"a,b"), RecordItem::NotAnItem, "the header");
        assert_eq!(csv.item(5, b"1,\"x, y\""), item(b"1,\"x, y\""));
        assert!(matches!(csv.item(9, b"2,\"open"), RecordItem::Fatal(_)));
    }

    #[test]
    fn a_row_that_opens_a_quoted_line_break_fails_the_batch() {
        let csv = items(Format::Csv, Some("a,k"));
        let RecordItem::Fatal(reason) = csv.item(9, b"x,\"1") else {
            panic!("refused");
        };
        assert!(
            reason.starts_with(
                "the CSV row at byte 9 (\"x,\\\"1\") opens a quoted field that holds a line break"
            ),
            "{reason}"
        );
        for (line, inside) in [
            (&b"a,b"[..], false),
            (b"\"a\",b", false),
            (b"\"a,b", true),
            (b"a,\"b\"\"", true),
            (b"a,\"b\"\"\"", false),
            (b"a,\"\"", false),
            (b"a,\"", true),
            (b"5\" screen,b", false),
            (b"a,x\"y", false),
            (b"\"a\"b,\"c", true),
            (b"\"\"\"", true),
        ] {
            assert_eq!(
                ends_inside_quotes(line),
                inside,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    /// The state machine reads quotes as the `csv` crate does: a line it ends inside quotes
    /// is one the crate, given a line break after it, reads as a row still going on.
    #[test]
    fn the_quote_rule_agrees_with_the_csv_crate() {
        let alphabet = [b'a', b',', b'"'];
        for len in 1..=7u32 {
            for code in 0..3u32.pow(len) {
                let line: Vec<u8> = (0..len)
                    .map(|i| alphabet[(code / 3u32.pow(i) % 3) as usize])
                    .collect();
                let mut text = line.clone();
                text.extend_from_slice(b"\nz\n");
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(&text[..]);
                let mut record = csv::ByteRecord::new();
                reader.read_byte_record(&mut record).expect("reads");
                let continued = reader.position().byte() > line.len() as u64 + 1;
                assert_eq!(
                    ends_inside_quotes(&line),
                    continued,
                    "{:?}",
                    String::from_utf8_lossy(&line)
                );
            }
        }
    }

    #[test]
    fn a_csv_source_needs_its_header() {
        let err = RecordItems::new(
            &DataSource {
                location: "/d.csv".into(),
                format: Format::Csv,
                size: 1,
                version: None,
                header: None,
                compression: None,
                max_ratio: None,
                objects: None,
                frames: None,
                gzi: None,
                columns: None,
            },
            None,
        )
        .expect_err("an error");
        assert_eq!(
            err.to_string(),
            "the CSV source /d.csv has no header: the first line (the header) is missing"
        );
    }

    /// What the splits of `data` in pieces of `size` bytes (read in chunks of `chunk`) give:
    /// whether any record is refused for a quoted line break, and the other records' items.
    fn through_splits(
        items: &RecordItems,
        data: &[u8],
        size: usize,
        chunk: usize,
    ) -> (bool, Vec<(u64, String)>) {
        let mut fatal = false;
        let mut got = Vec::new();
        let len = data.len() as u64;
        let mut first = 1;
        while first <= len {
            let last = (first + size as u64 - 1).min(len);
            let mut split = crate::split::SplitRecords::new(first, last);
            let mut record = |index: u64, bytes: &[u8]| match items.item(index, bytes) {
                RecordItem::Item(item) => {
                    got.push((index, String::from_utf8_lossy(&item).into_owned()));
                }
                RecordItem::Bad(reason) => got.push((index, reason)),
                RecordItem::NotAnItem => {}
                RecordItem::Fatal(_) => fatal = true,
            };
            let from = usize::try_from(split.read_from() - 1).expect("small");
            for piece in data[from..].chunks(chunk) {
                if split.is_done() {
                    break;
                }
                split.push(piece, &mut record).expect("short records");
            }
            split.finish(&mut record).expect("short records");
            first = last + 1;
        }
        (fatal, got)
    }

    /// Whether the `csv` crate, reading `data` from its start, finds a row whose fields hold
    /// a line break (an unterminated quote at the very end counts: given one more line, it
    /// would).
    fn has_quoted_line_break(data: &[u8]) -> bool {
        let mut text = data.to_vec();
        if !text.ends_with(b"\n") {
            text.push(b'\n');
        }
        text.extend_from_slice(b"z\n");
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&text[..]);
        let mut record = csv::ByteRecord::new();
        while reader.read_byte_record(&mut record).expect("reads") {
            let start = record.position().map_or(0, csv::Position::byte);
            let end = reader.position().byte();
            let raw = &text[usize::try_from(start).expect("small")..];
            let raw = &raw[..usize::try_from(end - start).expect("small")];
            // Blank lines before a row are skipped, not part of it.
            let body = raw.strip_suffix(b"\n").unwrap_or(raw);
            let body = &body[body.iter().take_while(|&&b| b == b'\n').count()..];
            if body.contains(&b'\n') {
                return true;
            }
        }
        false
    }

    /// Every CSV of up to 6 bytes after its header, over {a , " newline}, at every split size
    /// and several read sizes: a file with a quoted line break is refused by some split (so
    /// its batch fails) at every cut, and any other file gives the same rows at every cut as
    /// read whole: never a made-up or lost row.
    #[test]
    fn quoted_line_breaks_are_refused_at_every_cut_and_other_rows_are_exact() {
        let items = items(Format::Csv, Some("h,h"));
        let alphabet = [b'a', b',', b'"', b'\n'];
        let mut refused = 0;
        for len in 1..=6u32 {
            for code in 0..4u32.pow(len) {
                let mut data = b"h,h\n".to_vec();
                data.extend((0..len).map(|i| alphabet[(code / 4u32.pow(i) % 4) as usize]));
                let whole = through_splits(&items, &data, data.len(), data.len());
                let broken = has_quoted_line_break(&data);
                refused += usize::from(broken);
                for size in 1..=data.len() {
                    for chunk in [1, 3, data.len()] {
                        let cut = through_splits(&items, &data, size, chunk);
                        let shown = String::from_utf8_lossy(&data);
                        assert_eq!(
                            cut.0, broken,
                            "{shown:?}: splits of {size}, reads of {chunk}"
                        );
                        if !broken {
                            assert_eq!(cut, whole, "{shown:?}: splits of {size}, reads of {chunk}");
                        }
                    }
                }
            }
        }
        assert!(
            refused > 1000,
            "the alphabet makes many broken files: {refused}"
        );
    }
}
