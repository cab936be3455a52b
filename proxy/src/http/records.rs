//! The records of an HTTP produce request: the body as one record's value, or a batch as a
//! JSON array or newline-delimited JSON of `{"key", "value", "headers"}` objects.
//!
//! A batch is parsed whole before anything is sent, so a malformed batch produces nothing.
//! Strings without escapes are borrowed from the body; a value that is not a JSON string is
//! stored as its JSON text, exactly as sent.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// How a request body carries its records, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// Any other type (or none): the body is one record's value.
    Single,
    /// `application/json`: an array of record objects.
    JsonArray,
    /// `application/x-ndjson`: one record object per line.
    Ndjson,
}

impl BodyFormat {
    /// The format a `Content-Type` value names (parameters such as `charset` are ignored).
    pub fn from_content_type(value: Option<&[u8]>) -> BodyFormat {
        let Some(value) = value else {
            return BodyFormat::Single;
        };
        let media = value.split(|&b| b == b';').next().unwrap_or_default();
        let media = media.trim_ascii();
        if media.eq_ignore_ascii_case(b"application/json") {
            BodyFormat::JsonArray
        } else if media.eq_ignore_ascii_case(b"application/x-ndjson") {
            BodyFormat::Ndjson
        } else {
            BodyFormat::Single
        }
    }
}

/// One record of a batch; `None` key or value is a null one (a null value is a tombstone).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record<'a> {
    pub key: Option<Cow<'a, [u8]>>,
    pub value: Option<Cow<'a, [u8]>>,
    pub headers: Vec<RecordHeader<'a>>,
}

/// A record header: name and (possibly null) value.
pub type RecordHeader<'a> = (Cow<'a, str>, Option<Cow<'a, [u8]>>);

/// Why a batch body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Not a valid batch (400).
    #[error("{0}")]
    Invalid(String),
    /// More records than the listener allows (413).
    #[error("The batch has more than {max} records.")]
    TooMany {
        /// The limit.
        max: usize,
    },
}

impl BatchError {
    /// The HTTP status the refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            BatchError::Invalid(_) => 400,
            BatchError::TooMany { .. } => 413,
        }
    }
}

/// Parses a JSON-array or NDJSON batch of at most `max` records.
pub fn parse_batch(
    body: &[u8],
    format: BodyFormat,
    max: usize,
) -> Result<Vec<Record<'_>>, BatchError> {
    let mut out = Vec::new();
    match format {
        BodyFormat::Single => return Err(BatchError::Invalid("not a batch".into())),
        BodyFormat::JsonArray => {
            let mut de = serde_json::Deserializer::from_slice(body);
            let parsed = Batch { out: &mut out, max }
                .deserialize(&mut de)
                .and_then(|()| de.end());
            if out.len() > max {
                return Err(BatchError::TooMany { max });
            }
            parsed.map_err(|e| {
                BatchError::Invalid(format!(
                    "The body is not a JSON array of records {{\"key\", \"value\", \"headers\"}}: {e}."
                ))
            })?;
        }
        BodyFormat::Ndjson => {
            for (n, line) in body.split(|&b| b == b'\n').enumerate() {
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                if out.len() == max {
                    return Err(BatchError::TooMany { max });
                }
                let record: JsonRecord<'_> = serde_json::from_slice(line).map_err(|e| {
                    BatchError::Invalid(format!(
                        "Line {} is not a JSON record {{\"key\", \"value\", \"headers\"}}: {e}.",
                        n + 1
                    ))
                })?;
                out.push(record.into_record().map_err(BatchError::Invalid)?);
            }
        }
    }
    if out.is_empty() {
        return Err(BatchError::Invalid("The batch has no records.".into()));
    }
    Ok(out)
}

/// A record object as sent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRecord<'a> {
    #[serde(borrow, default)]
    key: Option<Text<'a>>,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    headers: Option<Headers<'a>>,
}

impl<'a> JsonRecord<'a> {
    fn into_record(self) -> Result<Record<'a>, String> {
        let value = match self.value {
            None => None,
            Some(raw) if raw.get().starts_with('"') => {
                let text: Text<'a> = serde_json::from_str(raw.get())
                    .map_err(|e| format!("A string value is invalid: {e}."))?;
                Some(bytes_of(text.0))
            }
            Some(raw) => Some(Cow::Borrowed(raw.get().as_bytes())),
        };
        Ok(Record {
            key: self.key.map(|k| bytes_of(k.0)),
            value,
            headers: self
                .headers
                .map(|h| h.0)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.map(bytes_of)))
                .collect(),
        })
    }
}

fn bytes_of(s: Cow<'_, str>) -> Cow<'_, [u8]> {
    match s {
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    }
}

/// A JSON string, borrowed from the body unless it had escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// Record headers in the order sent (repeats kept, as Kafka allows).
type HeaderList<'a> = Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>;

struct Headers<'a>(HeaderList<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for Headers<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Headers<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of header names to string (or null) values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers<'a>, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<Text<'a>, Option<Text<'a>>>()? {
                    out.push((k.0, v.map(|t| t.0)));
                }
                Ok(Headers(out))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// Reads a JSON array's records into `out`, stopping after `max + 1`.
struct Batch<'v, 'a> {
    out: &'v mut Vec<Record<'a>>,
    max: usize,
}

impl<'de> DeserializeSeed<'de> for Batch<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Batch<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(r) = seq.next_element::<JsonRecord<'de>>()? {
            self.out.push(r.into_record().map_err(de::Error::custom)?);
            if self.out.len() > self.max {
                return Err(de::Error::custom("too many records"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Option<Cow<'_, [u8]>> {
        Some(Cow::Borrowed(s.as_bytes()))
    }

    #[test]
    fn content_types_pick_the_format() {
        let f = |v: &str| BodyFormat::from_content_type(Some(v.as_bytes()));
        assert_eq!(f("application/json"), BodyFormat::JsonArray);
        assert_eq!(f("Application/JSON; charset=utf-8"), BodyFormat::JsonArray);
        assert_eq!(f("application/x-ndjson"), BodyFormat::Ndjson);
        assert_eq!(f("text/plain"), BodyFormat::Single);
        assert_eq!(BodyFormat::from_content_type(None), BodyFormat::Single);
    }

    #[test]
    fn json_arrays_give_keys_values_and_headers_in_order() {
        let body = br#"[
            {"key": "k1", "value": "plain", "headers": {"a": "1", "b": null, "a": "2"}},
            {"value": {"t": 21.5, "ok": [true]}},
            {"key": "k\u00e9", "value": "line\nbreak"},
            {"value": 42},
            {"key": null, "value": null}
        ]"#;
        let r = parse_batch(body, BodyFormat::JsonArray, 10).unwrap();
        assert_eq!(r.len(), 5);
        assert_eq!(r[0].key, b("k1"));
        assert_eq!(r[0].value, b("plain"));
        assert!(matches!(r[0].value, Some(Cow::Borrowed(_))), "no copy");
        let names: Vec<_> = r[0]
            .headers
            .iter()
            .map(|(k, v)| (&**k, v.clone()))
            .collect();
        assert_eq!(names, vec![("a", b("1")), ("b", None), ("a", b("2"))]);
        assert_eq!(
            r[1].value,
            b(r#"{"t": 21.5, "ok": [true]}"#),
            "JSON text as sent"
        );
        assert_eq!(r[2].key, b("ké"));
        assert_eq!(r[2].value, b("line\nbreak"));
        assert_eq!(r[3].value, b("42"));
        assert_eq!(r[4], Record::default());
    }

    #[test]
    fn ndjson_reads_one_record_per_line() {
        let body = b"{\"key\":\"a\",\"value\":\"1\"}\r\n\n{\"value\":[1,2]}\n";
        let r = parse_batch(body, BodyFormat::Ndjson, 10).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].key.clone(), r[0].value.clone()), (b("a"), b("1")));
        assert_eq!(r[1].value, b("[1,2]"));
    }

    #[test]
    fn bad_batches_say_what_is_wrong() {
        let err = |body: &str, f| parse_batch(body.as_bytes(), f, 3).unwrap_err();
        let json = BodyFormat::JsonArray;
        assert_eq!(err("[", json).status(), 400);
        assert_eq!(err("{\"value\":\"x\"}", json).status(), 400);
        assert!(err("[{\"vaule\":1}]", json).to_string().contains("vaule"));
        assert!(err("[{\"key\":1}]", json).to_string().contains("string"));
        assert!(err("[{\"headers\":{\"h\":1}}]", json)
            .to_string()
            .contains("header"));
        assert!(err("[] x", json).to_string().contains("trailing"));
        assert!(err("[]", json).to_string().contains("no records"));
        assert_eq!(err("[{},{},{},{}]", json), BatchError::TooMany { max: 3 });
        let nd = BodyFormat::Ndjson;
        assert!(err("{}\n{oops}\n", nd).to_string().contains("Line 2"));
        assert_eq!(err("{}\n{}\n{}\n{}\n", nd).status(), 413);
        assert_eq!(err("\n\n", nd).status(), 400);
    }
}
