//! Reads one JSON object per item (a JSON Lines record, or a CSV row as a JSON object) and
//! outputs the configured field as a number, so the batch's summary sums it:
//! `--plugin-config '{"field": "amount"}'`. The field may be a number or a string of decimal
//! digits (CSV fields are strings). A record without the field, or whose field is not a whole
//! number from 0 to 2^64-1, is refused with the reason.

use batch_plugin_sdk_v2::{Item, Output, json, text};
use serde::Deserialize;
use serde_json::Value;

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
    let text = text(&item)?;
    // The common case without building the record: its other fields are checked and skipped.
    // Anything else (not an object, bad JSON) takes the full parse, which names the problem.
    let scanned = json::fields_of(text, std::slice::from_ref(&config.field));
    let value = match scanned.ok().and_then(|mut values| values.pop().flatten()) {
        Some(value) => value,
        None => serde_json::from_str::<Value>(text)
            .map_err(|e| format!("not a JSON record: {e}"))?
            .get_mut(&config.field)
            .ok_or_else(|| format!("the record has no field {:?}", config.field))?
            .take(),
    };
    let number = match &value {
        Value::String(text) if text.bytes().all(|b| b.is_ascii_digit()) => text.parse().ok(),
        _ => value.as_u64(),
    };
    number.map(Output::Number).ok_or_else(|| {
        format!(
            "field {:?} is {value}, not a whole number from 0 to 2^64-1",
            config.field
        )
    })
}

batch_plugin_sdk_v2::export_plugin!(field_value, configure = configure, input = json);

#[cfg(test)]
mod tests {
    use super::*;

    fn field(record: &str) -> Result<u64, String> {
        let config = configure(Some(r#"{"field": "amount"}"#))?;
        let data = Some(record.as_bytes().to_vec());
        match field_value(&config, Item { index: 1, data })? {
            Output::Number(n) => Ok(n),
            _ => Err("not a number".into()),
        }
    }

    #[test]
    fn the_scan_finds_what_a_full_parse_finds() {
        assert_eq!(field(r#"{"id": {"amount": 1}, "amount": 7}"#), Ok(7));
        assert_eq!(
            field(r#"{"amount": 1, "amount": 2}"#),
            Ok(2),
            "the last one"
        );
        assert_eq!(field(r#"{"am\u006funt": 3}"#), Ok(3), "an escaped key");
        for (record, error) in [
            (r#"{"x": 1}"#, "the record has no field \"amount\""),
            ("[1]", "the record has no field \"amount\""),
            (
                r#"{"amount": 1} x"#,
                "not a JSON record: trailing characters",
            ),
            (
                r#"{"amount": 1, "x": }"#,
                "not a JSON record: expected value",
            ),
        ] {
            let e = field(record).expect_err(record);
            assert!(e.starts_with(error), "{record}: {e}");
        }
    }

    #[test]
    fn numbers_and_strings_of_digits_are_numbers() {
        assert_eq!(field(r#"{"amount": 12}"#), Ok(12));
        assert_eq!(field(r#"{"amount": "12"}"#), Ok(12));
        for bad in [
            r#"{"amount": "n/a"}"#,
            r#"{"amount": ""}"#,
            r#"{"amount": "-1"}"#,
            r#"{"amount": 1.5}"#,
            r#"{"amount": "99999999999999999999"}"#,
        ] {
            assert!(field(bad).is_err(), "{bad}");
        }
    }
}
