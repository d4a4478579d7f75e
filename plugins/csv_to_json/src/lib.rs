//! Converts one CSV row per item into a JSON object keyed by the configured column names (the
//! file's header row): `--plugin-config '{"columns": ["id", "name", "amount"]}'`. Values stay
//! strings, as in the file; quoting follows RFC 4180 (the `csv` crate). A row with another
//! number of fields than columns is refused, naming both counts.

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

fn row_to_json(config: &Config, item: Item) -> Result<Output, String> {
    let line = text(&item)?;
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

batch_plugin_sdk_v2::export_plugin!(row_to_json, configure = configure);
