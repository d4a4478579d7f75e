//! Converts one CSV row per item into a JSON object keyed by the configured column names:
//! `--plugin-config '{"columns": ["id", "name", "amount"]}'`. It takes CSV rows as they are
//! written (`input = csv_row`): the rows of a CSV source (the worker leaves the header out,
//! and the columns rename its fields), or the lines of a lines source. Values stay strings,
//! as in the file; quoting follows RFC 4180 (the `csv` crate). A row with another number of
//! fields than columns is refused, naming both counts, and so is a row that ends inside a
//! quoted field (a field with a line break, which one row per item cannot hold).

use batch_plugin_sdk_v2::{Item, Output, text};
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    columns: Vec<String>,
}

fn configure(config: Option<&str>) -> Result<Config, String> {
    let text = config.ok_or("csv_to_json needs a configuration, e.g. {\"columns\": [\"id\"]}")?;
    let config: Config =
        serde_json::from_str(text).map_err(|e| format!("bad csv_to_json configuration: {e}"))?;
    if config.columns.is_empty() {
        return Err("columns must name at least one column".into());
    }
    Ok(config)
}

/// Whether a row ends inside a quoted field (RFC 4180: a quote opens one only at a field's
/// start; inside one, `""` is a quote and a lone `"` closes it).
fn ends_inside_quotes(row: &str) -> bool {
    let (mut at_start, mut quoted, mut after_quote) = (true, false, false);
    for c in row.bytes() {
        match (quoted, after_quote, c) {
            (true, false, b'"') => (quoted, after_quote) = (false, true),
            (true, false, _) => {}
            (false, true, b'"') => (quoted, after_quote) = (true, false),
            (false, _, b',') => (at_start, after_quote) = (true, false),
            (false, false, b'"') if at_start => (quoted, at_start) = (true, false),
            _ => (at_start, after_quote) = (false, false),
        }
    }
    quoted
}

fn row_to_json(config: &Config, item: Item) -> Result<Output, String> {
    let line = text(&item)?;
    if ends_inside_quotes(line) {
        return Err("the row ends inside a quoted field (a field with a line break?)".into());
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line.as_bytes());
    let row = reader
        .records()
        .next()
        .ok_or("the row is empty")?
        .map_err(|e| format!("not a CSV row: {e}"))?;
    if row.len() != config.columns.len() {
        return Err(format!(
            "the row has {} fields, the header {} columns",
            row.len(),
            config.columns.len()
        ));
    }
    let object: Map<String, Value> = config
        .columns
        .iter()
        .zip(row.iter())
        .map(|(column, value)| (column.clone(), Value::String(value.to_owned())))
        .collect();
    Ok(Output::Record(
        Value::Object(object).to_string().into_bytes(),
    ))
}

batch_plugin_sdk_v2::export_plugin!(row_to_json, configure = configure, input = csv_row);

#[cfg(test)]
mod tests {
    use super::*;

    fn row(line: &str) -> Result<String, String> {
        let config = configure(Some(r#"{"columns": ["a", "b"]}"#))?;
        let item = Item {
            index: 1,
            data: Some(line.as_bytes().to_vec()),
        };
        match row_to_json(&config, item)? {
            Output::Record(bytes) => Ok(String::from_utf8(bytes).expect("utf-8")),
            other => panic!("a record, not {other:?}"),
        }
    }

    #[test]
    fn rows_become_objects_and_open_quotes_are_refused() {
        assert_eq!(
            row(r#"1,"x, ""y""""#),
            Ok(r#"{"a":"1","b":"x, \"y\""}"#.into())
        );
        assert_eq!(
            row(r#"5" screen,2"#),
            Ok(r#"{"a":"5\" screen","b":"2"}"#.into())
        );
        for open in [r#"x,"1"#, r#"x,"a"""#, r#""a,b"#] {
            let err = row(open).expect_err(open);
            assert!(err.contains("ends inside a quoted field"), "{open}: {err}");
        }
        assert!(row("1,2,3").expect_err("three").contains("3 fields"));
    }
}
