//! Keeps the items that are multiples of a configured divisor and skips the others:
//! `--plugin-config '{"divisor": 7}'` (numbers: the item itself) or
//! `'{"divisor": 7, "output": "record"}'` (a JSON record `{"n":14,"quotient":2}` per kept item).

use batch_plugin_sdk_v2::{Item, Output};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    divisor: u64,
    #[serde(default)]
    output: Emit,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Emit {
    #[default]
    Number,
    Record,
}

fn configure(config: Option<&str>) -> Result<Config, String> {
    let text = config.ok_or("mod_filter needs a configuration, e.g. {\"divisor\": 7}")?;
    let config: Config =
        serde_json::from_str(text).map_err(|e| format!("bad mod_filter configuration: {e}"))?;
    if config.divisor == 0 {
        return Err("divisor must be at least 1".into());
    }
    Ok(config)
}

fn keep_multiples(config: &Config, item: Item) -> Result<Output, String> {
    let n = item.index;
    if !n.is_multiple_of(config.divisor) {
        return Ok(Output::Skip);
    }
    Ok(match config.output {
        Emit::Number => Output::Number(n),
        Emit::Record => Output::Record(
            serde_json::json!({"n": n, "quotient": n / config.divisor})
                .to_string()
                .into_bytes(),
        ),
    })
}

batch_plugin_sdk_v2::export_plugin!(keep_multiples, configure = configure, input = numbers);
