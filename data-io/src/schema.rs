//! A Parquet output's schema as text (`--output-schema`, and the one a batch infers): a JSON
//! object of columns in order, each a type name, `[T]` (a list of T) or an object (a struct of
//! its fields, in order). Type names: `null`, `bool`, `int8`..`int64`, `uint8`..`uint64`,
//! `float32`, `float64`, `string`, `binary`, `date32`, `timestamp[s|ms|us|ns]` (optionally
//! `timestamp[us, UTC]`, any time zone), `decimal(P, S)` (P up to 38). Every column is nullable:
//! a missing field is a null.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use batch_core::output_format::{MAX_SCHEMA_BYTES, MAX_SCHEMA_FIELDS};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// Why a schema's text is not a schema, or none can be inferred.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("the output schema is not valid: {0}")]
    Invalid(String),
    #[error("the output schema is {0} bytes; the largest is {MAX_SCHEMA_BYTES}")]
    TooLarge(usize),
    #[error("the output schema has over {MAX_SCHEMA_FIELDS} columns and fields")]
    TooManyFields,
    #[error(
        "no output schema can be inferred: the first outputs hold no JSON object or number \
         ({0}); give one with --output-schema"
    )]
    NothingToInfer(String),
}

/// A type as the text writes it, before it becomes an Arrow type.
enum Written {
    Name(String),
    List(Box<Written>),
    Struct(Vec<(String, Written)>),
}

impl<'de> serde::Deserialize<'de> for Written {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Of;
        impl<'de> Visitor<'de> for Of {
            type Value = Written;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a type name, [type] or an object of fields")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<Written, E> {
                Ok(Written::Name(name.to_owned()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Written, A::Error> {
                let item = seq
                    .next_element::<Written>()?
                    .ok_or_else(|| de::Error::custom("a list type is [item type], not []"))?;
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom("a list type has one item type"));
                }
                Ok(Written::List(Box::new(item)))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Written, A::Error> {
                let mut fields: Vec<(String, Written)> = Vec::new();
                while let Some((name, written)) = map.next_entry::<String, Written>()? {
                    if fields.iter().any(|(n, _)| *n == name) {
                        return Err(de::Error::custom(format!("the field {name:?} twice")));
                    }
                    fields.push((name, written));
                }
                Ok(Written::Struct(fields))
            }
        }
        deserializer.deserialize_any(Of)
    }
}

/// Parses a schema's text.
pub fn parse(text: &str) -> Result<Schema, SchemaError> {
    if text.len() > MAX_SCHEMA_BYTES {
        return Err(SchemaError::TooLarge(text.len()));
    }
    let written: Written =
        serde_json::from_str(text).map_err(|e| SchemaError::Invalid(e.to_string()))?;
    let Written::Struct(columns) = written else {
        return Err(SchemaError::Invalid(
            "it is a JSON object of columns, e.g. {\"id\": \"int64\", \"tags\": [\"string\"]}"
                .into(),
        ));
    };
    if columns.is_empty() {
        return Err(SchemaError::Invalid("it has no column".into()));
    }
    let mut count = 0;
    let fields = fields(columns, &mut count)?;
    Ok(Schema::new(fields))
}

fn fields(written: Vec<(String, Written)>, count: &mut usize) -> Result<Fields, SchemaError> {
    written
        .into_iter()
        .map(|(name, written)| {
            *count += 1;
            if *count > MAX_SCHEMA_FIELDS {
                return Err(SchemaError::TooManyFields);
            }
            if name.is_empty() {
                return Err(SchemaError::Invalid("a field with no name".into()));
            }
            Ok(Arc::new(Field::new(name, data_type(written, count)?, true)))
        })
        .collect()
}

fn data_type(written: Written, count: &mut usize) -> Result<DataType, SchemaError> {
    match written {
        Written::Name(name) => named(&name).ok_or_else(|| {
            SchemaError::Invalid(format!(
                "unknown type {:?} (types: null, bool, int8..int64, uint8..uint64, float32, \
                 float64, string, binary, date32, timestamp[s|ms|us|ns], decimal(P, S), [T], \
                 {{fields}})",
                batch_core::text::shown(&name, 64)
            ))
        }),
        Written::List(item) => Ok(DataType::List(Arc::new(Field::new(
            "item",
            data_type(*item, count)?,
            true,
        )))),
        Written::Struct(written) if written.is_empty() => {
            Err(SchemaError::Invalid("a struct with no field".into()))
        }
        Written::Struct(written) => Ok(DataType::Struct(fields(written, count)?)),
    }
}

fn named(name: &str) -> Option<DataType> {
    let simple = match name {
        "null" => DataType::Null,
        "bool" => DataType::Boolean,
        "int8" => DataType::Int8,
        "int16" => DataType::Int16,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float32" => DataType::Float32,
        "float64" => DataType::Float64,
        "string" => DataType::Utf8,
        "binary" => DataType::Binary,
        "date32" => DataType::Date32,
        _ => return parametrised(name),
    };
    Some(simple)
}

fn parametrised(name: &str) -> Option<DataType> {
    if let Some(inner) = name
        .strip_prefix("timestamp[")
        .and_then(|n| n.strip_suffix(']'))
    {
        let (unit, zone) = match inner.split_once(',') {
            Some((unit, zone)) => (unit.trim(), Some(zone.trim()).filter(|z| !z.is_empty())),
            None => (inner.trim(), None),
        };
        let unit = match unit {
            "s" => TimeUnit::Second,
            "ms" => TimeUnit::Millisecond,
            "us" => TimeUnit::Microsecond,
            "ns" => TimeUnit::Nanosecond,
            _ => return None,
        };
        return Some(DataType::Timestamp(unit, zone.map(Arc::from)));
    }
    let inner = name.strip_prefix("decimal(")?.strip_suffix(')')?;
    let (precision, scale) = inner.split_once(',')?;
    let precision: u8 = precision.trim().parse().ok()?;
    let scale: i8 = scale.trim().parse().ok()?;
    let valid = (1..=38).contains(&precision) && scale >= 0 && scale as u8 <= precision;
    valid.then_some(DataType::Decimal128(precision, scale))
}

/// The schema's text, as [`parse`] reads it; `None` for a type the text cannot write (never
/// one of those inference gives or [`parse`] makes).
pub fn text(schema: &Schema) -> Option<String> {
    let mut out = String::new();
    write_fields(&mut out, schema.fields())?;
    Some(out)
}

fn write_fields(out: &mut String, fields: &Fields) -> Option<()> {
    out.push('{');
    for (n, field) in fields.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        out.push_str(&serde_json::to_string(field.name()).ok()?);
        out.push_str(": ");
        write_type(out, field.data_type())?;
    }
    out.push('}');
    Some(())
}

fn write_type(out: &mut String, data_type: &DataType) -> Option<()> {
    let name = match data_type {
        DataType::Null => "null",
        DataType::Boolean => "bool",
        DataType::Int8 => "int8",
        DataType::Int16 => "int16",
        DataType::Int32 => "int32",
        DataType::Int64 => "int64",
        DataType::UInt8 => "uint8",
        DataType::UInt16 => "uint16",
        DataType::UInt32 => "uint32",
        DataType::UInt64 => "uint64",
        DataType::Float32 => "float32",
        DataType::Float64 => "float64",
        DataType::Utf8 => "string",
        DataType::Binary => "binary",
        DataType::Date32 => "date32",
        DataType::Timestamp(unit, zone) => {
            let unit = match unit {
                TimeUnit::Second => "s",
                TimeUnit::Millisecond => "ms",
                TimeUnit::Microsecond => "us",
                TimeUnit::Nanosecond => "ns",
            };
            let zone = zone
                .as_deref()
                .map(|z| format!(", {z}"))
                .unwrap_or_default();
            out.push_str(&serde_json::to_string(&format!("timestamp[{unit}{zone}]")).ok()?);
            return Some(());
        }
        DataType::Decimal128(precision, scale) => {
            let _ = write!(out, "\"decimal({precision}, {scale})\"");
            return Some(());
        }
        DataType::List(item) => {
            out.push('[');
            write_type(out, item.data_type())?;
            out.push(']');
            return Some(());
        }
        DataType::Struct(fields) => return write_fields(out, fields),
        _ => return None,
    };
    let _ = write!(out, "\"{name}\"");
    Some(())
}

/// The schema's text of the outputs `rows` (JSON texts; those that are not a JSON object are left out,
/// they will fail as items): every field seen, with the type that holds every value seen
/// (`arrow-json`'s inference: integers int64, other numbers float64, a field only ever null is
/// `null`).
pub fn infer<'a>(rows: impl IntoIterator<Item = &'a [u8]>) -> Result<String, SchemaError> {
    let mut seen = 0;
    let values: Vec<serde_json::Value> = rows
        .into_iter()
        .inspect(|_| seen += 1)
        .filter_map(|row| serde_json::from_slice::<serde_json::Value>(row).ok())
        .filter(serde_json::Value::is_object)
        .collect();
    if values.is_empty() {
        return Err(SchemaError::NothingToInfer(format!("{seen} outputs")));
    }
    let schema = arrow_json::reader::infer_json_schema_from_iterator(
        values.iter().map(Ok::<_, arrow_schema::ArrowError>),
    )
    .map_err(|e| SchemaError::NothingToInfer(e.to_string()))?;
    // Checked as a given schema is: writable as text, and bounded.
    let written = text(&schema)
        .ok_or_else(|| SchemaError::NothingToInfer("a type the schema cannot name".into()))?;
    parse(&written)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_reads_back_as_it_was_written() {
        let written = r#"{"id": "int64", "name": "string", "tags": ["string"], "geo": {"lat": "float64", "lon": "float64"}, "at": "timestamp[ms, UTC]", "day": "date32", "cents": "decimal(12, 2)", "n": "uint64", "none": "null", "ok": "bool", "blob": "binary", "deep": [[{"x": "int8"}]]}"#;
        let schema = parse(written).expect("parses");
        assert_eq!(schema.fields().len(), 12);
        assert_eq!(
            schema.field_with_name("at").expect("a field").data_type(),
            &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
        );
        assert_eq!(text(&schema).as_deref(), Some(written));
    }

    #[test]
    fn a_schema_that_is_not_one_is_refused_naming_why() {
        for (text, says) in [
            (r#"["int8"]"#, "a JSON object of columns"),
            ("{}", "no column"),
            (r#"{"a": "int65"}"#, "unknown type \"int65\""),
            (r#"{"a": "decimal(39, 2)"}"#, "unknown type"),
            (r#"{"a": "decimal(5, 6)"}"#, "unknown type"),
            (r#"{"a": "timestamp[h]"}"#, "unknown type"),
            (r#"{"a": []}"#, "not []"),
            (r#"{"a": ["int8", "int8"]}"#, "one item type"),
            (r#"{"a": {}}"#, "a struct with no field"),
            (r#"{"a": "int8", "a": "bool"}"#, "twice"),
            (r#"{"": "int8"}"#, "no name"),
            (r#"{"a": 5}"#, "a type name"),
            ("not json", "not valid"),
        ] {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn a_schema_past_its_bounds_is_refused() {
        let wide: Vec<String> = (0..=MAX_SCHEMA_FIELDS)
            .map(|n| format!("\"c{n}\": \"int8\""))
            .collect();
        let wide = format!("{{{}}}", wide.join(", "));
        assert_eq!(parse(&wide), Err(SchemaError::TooManyFields));
        // Nested fields count too.
        let nested: Vec<String> = (0..MAX_SCHEMA_FIELDS)
            .map(|n| format!("\"c{n}\": \"int8\""))
            .collect();
        let nested = format!("{{\"s\": {{{}}}}}", nested.join(", "));
        assert_eq!(parse(&nested), Err(SchemaError::TooManyFields));
        let long = format!("{{\"a\": \"{}\"}}", "x".repeat(MAX_SCHEMA_BYTES));
        assert!(matches!(parse(&long), Err(SchemaError::TooLarge(_))));
        let deep = format!("{{\"a\": {}\"int8\"{}}}", "[".repeat(200), "]".repeat(200));
        assert!(
            parse(&deep).is_err(),
            "nesting is bounded by the JSON parser"
        );
    }

    #[test]
    fn a_schema_is_inferred_from_objects_and_their_values() {
        let rows: [&[u8]; 4] = [
            br#"{"id": 1, "name": "a", "tags": ["x"], "geo": {"lat": 1.5}}"#,
            br#"{"id": 2, "score": 2.5, "none": null}"#,
            b"not json",
            b"17",
        ];
        let shown = infer(rows).expect("inferred");
        for column in [
            r#""id": "int64""#,
            r#""name": "string""#,
            r#""tags": ["string"]"#,
            r#""geo": {"lat": "float64"}"#,
            r#""score": "float64""#,
            r#""none": "null""#,
        ] {
            assert!(shown.contains(column), "{column} in {shown}");
        }
        let e = infer([b"1".as_slice(), b"x"]).expect_err("nothing to infer");
        assert!(e.to_string().contains("2 outputs"), "{e}");
    }
}
