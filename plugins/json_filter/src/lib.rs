//! Filters JSON Lines records and projects them: keeps the records whose `field` equals
//! `equals` (any JSON value) and outputs, for each, a record holding only the `select`ed
//! fields (all fields when `select` is absent); other records are skipped.
//!
//! `--plugin-config '{"field": "country", "equals": "FR", "select": ["id", "amount"]}'`

use std::fmt;

use batch_plugin_sdk_v2::{Item, Output, text};
use serde::Deserialize;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
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
    let text = text(&item)?;
    // With `select`, only the filtered and selected fields are parsed, the others checked and
    // skipped; anything but a whole JSON object takes the full parse, which names the problem.
    let scanned = config
        .select
        .as_ref()
        .and_then(|select| scan_fields(text, &config.field, select).ok());
    let record: Map<String, Value> = match scanned {
        Some(record) => record,
        None => serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?,
    };
    Ok(project(config, record))
}

/// The output for `record`: skipped unless its `field` equals `equals`, else the record with
/// only the `select`ed fields (all of them without `select`).
fn project(config: &Config, record: Map<String, Value>) -> Output {
    if record.get(&config.field) != Some(&config.equals) {
        return Output::Skip;
    }
    let kept = match &config.select {
        None => record,
        Some(fields) => fields
            .iter()
            .filter_map(|f| record.get(f).map(|v| (f.clone(), v.clone())))
            .collect(),
    };
    Output::Record(Value::Object(kept).to_string().into_bytes())
}

/// The fields `field` and `select` of the JSON object `text` (the last of each, as a full
/// parse keeps), parsing only their values; `Err` for anything but a whole JSON object.
fn scan_fields(
    text: &str,
    field: &str,
    select: &[String],
) -> Result<Map<String, Value>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = FieldsOf { field, select }.deserialize(&mut de)?;
    de.end()?;
    Ok(fields)
}

/// Deserializes an object into some of its fields, skipping the others.
struct FieldsOf<'f> {
    field: &'f str,
    select: &'f [String],
}

impl<'de> DeserializeSeed<'de> for FieldsOf<'_> {
    type Value = Map<String, Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldsOf<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.field || self.select.iter().any(|s| *s == key) {
                fields.insert(key.into_owned(), map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(fields)
    }
}

batch_plugin_sdk_v2::export_plugin!(filter, configure = configure, input = json);

#[cfg(test)]
mod tests {
    use super::*;

    fn run(config: &str, record: &str) -> Result<Output, String> {
        let config = configure(Some(config))?;
        let data = Some(record.as_bytes().to_vec());
        filter(&config, Item { index: 1, data })
    }

    /// What the filter gives when it parses the whole record (the scan is what is tested).
    fn by_full_parse(config: &str, record: &str) -> Result<Output, String> {
        let config = configure(Some(config))?;
        let record: Map<String, Value> =
            serde_json::from_str(record).map_err(|e| format!("not a JSON object: {e}"))?;
        Ok(project(&config, record))
    }

    #[test]
    fn the_scan_gives_what_a_full_parse_gives() {
        let configs = [
            r#"{"field": "kind", "equals": "click", "select": ["id", "amount"]}"#,
            r#"{"field": "kind", "equals": "click", "select": ["kind", "kind"]}"#,
            r#"{"field": "kind", "equals": {"a": [1]}, "select": ["id"]}"#,
            r#"{"field": "kind", "equals": "click"}"#,
        ];
        let records = [
            r#"{"id":1,"kind":"click","amount":5,"note":"x"}"#,
            r#"{"id":1,"kind":"order","amount":5}"#,
            r#"{"id":1,"kind":"click","kind":"order"}"#,
            r#"{"id":1,"kind":"order","kind":"click","id":2}"#,
            r#"{"k\u0069nd":"click","id":{"nested":[1,2]}}"#,
            r#"{"kind":{"a":[1]},"id":3}"#,
            r#"{"kind":"click"} trailing"#,
            r#"{"kind":"click","x":}"#,
            "[1, 2]",
            "7",
        ];
        for config in configs {
            for record in records {
                let (got, want) = (run(config, record), by_full_parse(config, record));
                let shown = |r: &Result<Output, String>| match r {
                    Ok(Output::Record(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
                    other => format!("{other:?}"),
                };
                assert_eq!(shown(&got), shown(&want), "{config} on {record}");
            }
        }
    }
}
