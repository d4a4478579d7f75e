//! What a plugin's items are, as the plugin states it, and which sources give such items.
//!
//! A plugin states its input in a custom section of its WebAssembly, named
//! [`SECTION`] and holding one of the names below (the Rust SDK writes it from
//! `export_plugin!(f, input = json)`). The worker reads it when it loads the plugin and
//! refuses a batch whose source gives other items, before any item runs, naming both. A v1
//! plugin takes numbers; a v2 plugin that states nothing takes whatever the source gives.

use crate::source::Format;

/// The custom section that holds a plugin's input.
pub const SECTION: &str = "batch-plugin:input";

/// The items a plugin takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginInput {
    /// Item numbers without data: the items `1..=n` of a range batch.
    Numbers,
    /// Any record's bytes (a line, a JSON value, a CSV row as a JSON object).
    Text,
    /// A JSON value per item: JSON Lines, or CSV rows as JSON objects keyed by the header.
    Json,
    /// A CSV row as it is in the file (its fields quoted as written): lines, or the rows of a
    /// CSV source, its header left out.
    CsvRow,
}

impl PluginInput {
    pub const ALL: [PluginInput; 4] = [
        PluginInput::Numbers,
        PluginInput::Text,
        PluginInput::Json,
        PluginInput::CsvRow,
    ];

    /// The name a plugin states (and `--list-plugins` shows).
    pub fn as_str(self) -> &'static str {
        match self {
            PluginInput::Numbers => "numbers",
            PluginInput::Text => "text",
            PluginInput::Json => "json",
            PluginInput::CsvRow => "csv-row",
        }
    }

    /// The input named `text` (a plugin's custom section), if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.as_str() == text)
    }

    fn what(self) -> &'static str {
        match self {
            PluginInput::Numbers => "numbers (the items 1..=N of a range batch)",
            PluginInput::Text => "records as text",
            PluginInput::Json => "JSON records",
            PluginInput::CsvRow => "CSV rows",
        }
    }

    /// Whether a batch over `source` (`None`: a range of numbers) gives this plugin the items
    /// it takes; if not, why, and what would.
    pub fn accepts(self, source: Option<Format>) -> Result<(), String> {
        use PluginInput as I;
        let refusal = match (self, source) {
            (I::Numbers, None)
            | (I::Text, Some(_))
            | (I::Json, Some(Format::Jsonl | Format::Csv | Format::Parquet))
            | (I::CsvRow, Some(Format::Lines | Format::Csv)) => return Ok(()),
            (I::Numbers, Some(_)) => "a --source gives records: run a record plugin over it",
            (_, None) => "a range batch gives numbers without data: give it a --source",
            (I::Json, Some(Format::Lines)) => {
                "lines are text: if each line is JSON, read the source with --format jsonl"
            }
            (I::CsvRow, Some(Format::Jsonl)) => {
                "JSON Lines are not CSV rows: use a JSON plugin (json_field, json_filter)"
            }
            (I::CsvRow, Some(Format::Parquet)) => {
                "Parquet rows come as JSON objects: use a JSON plugin (json_field, json_filter)"
            }
        };
        let given = match source {
            None => "a range batch".to_owned(),
            Some(format) => format!("a {format} source"),
        };
        Err(format!(
            "it takes {}, which {given} does not give: {refusal}",
            self.what()
        ))
    }
}

impl std::fmt::Display for PluginInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_of_input_and_source_is_decided() {
        use PluginInput as I;
        let sources = [
            None,
            Some(Format::Lines),
            Some(Format::Jsonl),
            Some(Format::Csv),
            Some(Format::Parquet),
        ];
        let accepted: Vec<(I, Option<Format>)> = I::ALL
            .into_iter()
            .flat_map(|i| sources.map(|s| (i, s)))
            .filter(|&(i, s)| i.accepts(s).is_ok())
            .collect();
        assert_eq!(
            accepted,
            [
                (I::Numbers, None),
                (I::Text, Some(Format::Lines)),
                (I::Text, Some(Format::Jsonl)),
                (I::Text, Some(Format::Csv)),
                (I::Text, Some(Format::Parquet)),
                (I::Json, Some(Format::Jsonl)),
                (I::Json, Some(Format::Csv)),
                (I::Json, Some(Format::Parquet)),
                (I::CsvRow, Some(Format::Lines)),
                (I::CsvRow, Some(Format::Csv)),
            ]
        );
        assert_eq!(
            I::Json.accepts(None).expect_err("refused"),
            "it takes JSON records, which a range batch does not give: a range batch gives \
             numbers without data: give it a --source"
        );
        for input in I::ALL {
            assert_eq!(PluginInput::parse(input.as_str()), Some(input));
        }
        assert_eq!(PluginInput::parse("xml"), None);
    }
}
