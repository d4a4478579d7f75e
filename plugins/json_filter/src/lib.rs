//! Filters JSON Lines records and projects them: keeps the records whose `field` equals
//! `equals` (any JSON value) and outputs, for each, a record holding only the `select`ed
//! fields (all fields when `select` is absent); other records are skipped.
//!
//! `--plugin-config '{"field": "country", "equals": "FR", "select": ["id", "amount"]}'`

use batch_plugin_sdk_v2::{Item, Output, text};
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    field: String,
    equals: Value,
    select: Option<Vec<String>>,
}

fn configure(config: Option<&str>) -> Result<Config, String> {
    let text = config.ok_or(
        "json_filter needs a configuration, e.g. {\"field\": \"country\", \"equals\": \"FR\"}",
    )?;
    serde_json::from_str(text).map_err(|e| format!("bad json_filter configuration: {e}"))
}

fn filter(config: &Config, item: Item) -> Result<Output, String> {
    let record: Map<String, Value> =
        serde_json::from_str(text(&item)?).map_err(|e| format!("not a JSON object: {e}"))?;
    if record.get(&config.field) != Some(&config.equals) {
        return Ok(Output::Skip);
    }
    let kept = match &config.select {
        None => record,
        Some(fields) => fields
            .iter()
            .filter_map(|f| record.get(f).map(|v| (f.clone(), v.clone())))
            .collect(),
    };
    Ok(Output::Record(Value::Object(kept).to_string().into_bytes()))
}

batch_plugin_sdk_v2::export_plugin!(filter, configure = configure, input = json);
