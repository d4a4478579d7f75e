//! Filters JSON Lines records and projects them: keeps the records whose `field` equals
//! `equals` (any JSON value) and outputs, for each, a record holding only the `select`ed
//! fields (all fields when `select` is absent); other records are skipped.
//!
//! `--plugin-config '{"field": "country", "equals": "FR", "select": ["id", "amount"]}'`

use batch_plugin_sdk_v2::{Item, Output, json, text};
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    field: String,
    equals: Value,
    select: Option<Vec<String>>,
}

/// The configuration, with the names a record is scanned for: `field`, then `select`'s.
struct Filter {
    config: Config,
    names: Vec<String>,
}

fn configure(config: Option<&str>) -> Result<Filter, String> {
    let text = config.ok_or(
        "json_filter needs a configuration, e.g. {\"field\": \"country\", \"equals\": \"FR\"}",
    )?;
    let config: Config =
        serde_json::from_str(text).map_err(|e| format!("bad json_filter configuration: {e}"))?;
    let names = std::iter::once(&config.field)
        .chain(config.select.iter().flatten())
        .cloned()
        .collect();
    Ok(Filter { config, names })
}

fn filter(filter: &Filter, item: Item) -> Result<Output, String> {
    let text = text(&item)?;
    let config = &filter.config;
    // With `select`, only the filtered and selected fields are parsed, the others checked and
    // skipped; anything but a whole JSON object takes the full parse, which names the problem.
    if let Some(select) = &config.select
        && let Ok(mut values) = json::fields_of(text, &filter.names)
    {
        if values[0].as_ref() != Some(&config.equals) {
            return Ok(Output::Skip);
        }
        let kept = select.iter().zip(&mut values[1..]);
        let kept = kept.filter_map(|(name, value)| Some((name.clone(), value.take()?)));
        return Ok(output_record(kept.collect()));
    }
    let record: Map<String, Value> =
        serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
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
    output_record(kept)
}

/// An output record: the fields as one JSON object.
fn output_record(fields: Map<String, Value>) -> Output {
    Output::Record(Value::Object(fields).to_string().into_bytes())
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
        let filter = configure(Some(config))?;
        let record: Map<String, Value> =
            serde_json::from_str(record).map_err(|e| format!("not a JSON object: {e}"))?;
        Ok(project(&filter.config, record))
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
