//! Reads one JSON object per item (a JSON Lines record) and outputs the configured field as a
//! number, so the batch's summary sums it: `--plugin-config '{"field": "amount"}'`. A record
//! without the field, or whose field is not a whole number from 0 to 2^64-1, is refused with
//! the reason.

use batch_plugin_sdk_v2::{Item, Output, text};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    field: String,
}

fn configure(config: Option<&str>) -> Result<Config, String> {
    let text = config.ok_or("json_field needs a configuration, e.g. {\"field\": \"amount\"}")?;
    serde_json::from_str(text).map_err(|e| format!("bad json_field configuration: {e}"))
}

fn field_value(config: &Config, item: Item) -> Result<Output, String> {
    let record: serde_json::Value =
        serde_json::from_str(text(&item)?).map_err(|e| format!("not a JSON record: {e}"))?;
    let value = record
        .get(&config.field)
        .ok_or_else(|| format!("the record has no field {:?}", config.field))?;
    value.as_u64().map(Output::Number).ok_or_else(|| {
        format!(
            "field {:?} is {value}, not a whole number from 0 to 2^64-1",
            config.field
        )
    })
}

batch_plugin_sdk_v2::export_plugin!(field_value, configure = configure);
