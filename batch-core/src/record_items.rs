//! From a source's records to the items a plugin gets, by format ([`crate::source::Format`]):
//! lines as they are; JSON Lines without the blank lines; CSV rows as JSON objects keyed by
//! the header's names, so the JSON plugins serve both.

use std::borrow::Cow;

use crate::source::{DataSource, Format, SourceError};

/// Turns a source's records (from [`crate::split::SplitRecords`]) into plugin items.
#[derive(Debug, Clone)]
pub struct RecordItems {
    format: Format,
    /// CSV: the header's names, each already a JSON string followed by ':'.
    keys: Vec<String>,
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
}

impl RecordItems {
    pub fn new(source: &DataSource) -> Result<Self, SourceError> {
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
        })
    }

    /// The item for the record at byte position `index`.
    pub fn item<'a>(&self, index: u64, record: &'a [u8]) -> RecordItem<'a> {
        match self.format {
            Format::Lines => RecordItem::Item(Cow::Borrowed(record)),
            Format::Jsonl if record.iter().all(u8::is_ascii_whitespace) => RecordItem::NotAnItem,
            Format::Jsonl => RecordItem::Item(Cow::Borrowed(record)),
            Format::Csv if index == 1 || record.is_empty() => RecordItem::NotAnItem,
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

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(format: Format, header: Option<&str>) -> RecordItems {
        RecordItems::new(&DataSource {
            location: "/d".into(),
            format,
            size: 1,
            version: None,
            header: header.map(str::to_owned),
        })
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
    fn a_csv_source_needs_its_header() {
        let err = RecordItems::new(&DataSource {
            location: "/d.csv".into(),
            format: Format::Csv,
            size: 1,
            version: None,
            header: None,
        })
        .expect_err("an error");
        assert_eq!(
            err.to_string(),
            "the CSV source /d.csv has no header: the first line (the header) is missing"
        );
    }
}
