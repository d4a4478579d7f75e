//! Reading a few fields of a JSON object without building the rest (feature `json`).
//!
//! [`fields_of`] parses the values of the named fields and checks and skips every other one, so
//! a plugin that needs two fields of a wide record pays for two values, not for the record.
//! Keys are compared where they lie in the text: no key is copied (serde_json copies only a key
//! with escapes, to unescape it).

use std::fmt;

use serde::Deserializer as _;
use serde::de::{Deserialize, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The value of each of `names` in the JSON object `text`, in the order of `names` (`None`
/// for a field the object lacks; the last one when the object repeats a key, as a full parse
/// keeps). `Err` for anything but one whole, well-formed JSON object: what
/// `serde_json::from_str::<Map<String, Value>>` would refuse, this refuses too.
pub fn fields_of<N: AsRef<str>>(
    text: &str,
    names: &[N],
) -> Result<Vec<Option<Value>>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let values = de.deserialize_map(FieldsOf(names))?;
    de.end()?;
    Ok(values)
}

/// Visits an object, keeping the values of the named fields.
struct FieldsOf<'n, N>(&'n [N]);

impl<'de, N: AsRef<str>> Visitor<'de> for FieldsOf<'_, N> {
    type Value = Vec<Option<Value>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let names = self.0;
        let mut values = vec![None; names.len()];
        while let Some(found) = map.next_key_seed(KeyAmong(names))? {
            let Some(first) = found else {
                map.next_value::<Skipped>()?;
                continue;
            };
            let value: Value = map.next_value()?;
            // A name listed twice gets the value twice.
            let key = names[first].as_ref();
            for (name, slot) in names.iter().zip(&mut values).skip(first + 1) {
                if name.as_ref() == key {
                    *slot = Some(value.clone());
                }
            }
            values[first] = Some(value);
        }
        Ok(values)
    }
}

/// A value checked as a full parse checks it (strings' escapes, numbers' range, depth), and
/// dropped: serde's `IgnoredAny` would let serde_json skip it faster, but without those checks.
struct Skipped;

impl<'de> Deserialize<'de> for Skipped {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SkippedVisitor)
    }
}

struct SkippedVisitor;

impl<'de> Visitor<'de> for SkippedVisitor {
    type Value = Skipped;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_str<E>(self, _: &str) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_unit<E>(self) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skipped, A::Error> {
        while seq.next_element::<Skipped>()?.is_some() {}
        Ok(Skipped)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skipped, A::Error> {
        while map.next_key::<Skipped>()?.is_some() {
            map.next_value::<Skipped>()?;
        }
        Ok(Skipped)
    }
}

/// An object's key: which of the names it is (the first that equals it), if any.
struct KeyAmong<'n, N>(&'n [N]);

impl<'de, N: AsRef<str>> DeserializeSeed<'de> for KeyAmong<'_, N> {
    type Value = Option<usize>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, N: AsRef<str>> Visitor<'de> for KeyAmong<'_, N> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|name| name.as_ref() == key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    /// What a full parse of `text` gives for `names`.
    fn by_full_parse(text: &str, names: &[&str]) -> Result<Vec<Option<Value>>, String> {
        let record: Map<String, Value> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Ok(names.iter().map(|n| record.get(*n).cloned()).collect())
    }

    #[test]
    fn the_scan_finds_what_a_full_parse_finds() {
        let names: [&[&str]; 4] = [&["amount"], &["kind", "id"], &["id", "id"], &[]];
        let records = [
            r#"{"id": {"amount": 1}, "amount": 7}"#,
            r#"{"amount": 1, "amount": 2, "id": 3, "id": [4]}"#,
            r#"{"am\u006funt": 3, "k\u0069nd": "click"}"#,
            r#"{"kind": {"a": [1, {"b": null}]}, "id": "x\"y"}"#,
            r#"{}"#,
            r#"{"x": 1}"#,
            r#"{"amount": 1} x"#,
            r#"{"amount": 1, "x": }"#,
            r#"{"amount": 1, "x": "\ud800"}"#,
            r#"{"amount": 1,}"#,
            r#"{"amount": 1, "x": [1e400]}"#,
            r#"{"amount": 1, "x": {"\ud800": 1}}"#,
            r#"{"amount": 1, "x": 01}"#,
            r#"{"amount": "\u00e9", "x": "\n\"", "y": -0.5e-3, "z": [true, false, null]}"#,
            "[1]",
            "7",
            "",
        ];
        let deep = format!("{{\"x\": {}1{}}}", "[".repeat(200), "]".repeat(200));
        let records = records.iter().copied().chain([deep.as_str()]);
        for names in names {
            for record in records.clone() {
                let scanned = fields_of(record, names).map_err(|e| e.to_string());
                let full = by_full_parse(record, names);
                assert_eq!(
                    scanned.is_ok(),
                    full.is_ok(),
                    "{record} {names:?}: {scanned:?}"
                );
                if let (Ok(scanned), Ok(full)) = (scanned, full) {
                    assert_eq!(scanned, full, "{record} {names:?}");
                }
            }
        }
    }
}
