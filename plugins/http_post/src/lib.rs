//! POSTs each item to a service and outputs one field of its JSON answer:
//! `--plugin-config '{"url": "http://127.0.0.1:8080/items", "output_field": "id"}'`, in a batch
//! granted the host (`starter --http-allow 127.0.0.1:8080`, workers started with
//! `--allow-http 127.0.0.1:8080`).
//!
//! The request's body is the item's record (a JSON Lines line), or `{"item": N}` for a range
//! item. A 2xx answer's field is the output: a whole number from 0 to 2^64-1 as a number (the
//! summary sums them), anything else as a record (the field's JSON). Any other status, an
//! answer that is not JSON or lacks the field, or a failed request refuses the item with the
//! reason. The worker adds the item's `Idempotency-Key` to every request and retries transient
//! failures (see docs/plugins.md, "Call a service").

use batch_plugin_sdk_v2::http::{Url, post_json};
use batch_plugin_sdk_v2::{Item, Output};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    url: String,
    output_field: String,
}

struct Config {
    url: Url,
    output_field: String,
}

fn configure(config: Option<&str>) -> Result<Config, String> {
    let text = config.ok_or(
        "http_post needs a configuration, e.g. {\"url\": \"http://127.0.0.1:8080/items\", \
         \"output_field\": \"id\"}",
    )?;
    let settings: Settings =
        serde_json::from_str(text).map_err(|e| format!("bad http_post configuration: {e}"))?;
    Ok(Config {
        url: Url::parse(&settings.url)?,
        output_field: settings.output_field,
    })
}

fn post(config: &Config, item: Item) -> Result<Output, String> {
    let body = match item.data {
        Some(data) => data,
        None => format!("{{\"item\":{}}}", item.index).into_bytes(),
    };
    let response = post_json(&config.url, &body)?;
    if !(200..300).contains(&response.status) {
        return Err(format!("the service answered {}", response.status));
    }
    output_of(&response.body, &config.output_field)
}

/// The output for a 2xx answer's body.
fn output_of(body: &[u8], field: &str) -> Result<Output, String> {
    let answer: Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let value = answer
        .get(field)
        .ok_or_else(|| format!("the answer has no field {field:?}"))?;
    Ok(match value.as_u64() {
        Some(n) => Output::Number(n),
        None => Output::Record(value.to_string().into_bytes()),
    })
}

batch_plugin_sdk_v2::export_plugin!(post, configure = configure);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_a_number_and_anything_else_a_record() {
        assert!(matches!(
            output_of(br#"{"id": 7}"#, "id"),
            Ok(Output::Number(7))
        ));
        match output_of(br#"{"id": "a7"}"#, "id") {
            Ok(Output::Record(bytes)) => assert_eq!(bytes, br#""a7""#),
            _ => panic!("a string is a record"),
        }
        assert!(output_of(br#"{"id": -1}"#, "id").is_ok());
        assert!(
            output_of(br#"{"x": 1}"#, "id")
                .expect_err("fails")
                .contains("no field")
        );
        assert!(
            output_of(b"nope", "id")
                .expect_err("fails")
                .contains("not JSON")
        );
    }

    #[test]
    fn the_configuration_is_checked() {
        assert!(configure(None).is_err());
        assert!(configure(Some(r#"{"url": "ftp://x/", "output_field": "id"}"#)).is_err());
        assert!(
            configure(Some(
                r#"{"url": "http://x/", "output_field": "id", "y": 1}"#
            ))
            .is_err()
        );
        assert!(configure(Some(r#"{"url": "http://x/", "output_field": "id"}"#)).is_ok());
    }
}
