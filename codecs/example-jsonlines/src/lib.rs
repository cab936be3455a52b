//! An example sluice plug-in codec: JSON lines with a key field.
//!
//! It shows everything a third-party codec needs and nothing more: a type implementing
//! [`RecordCodec`], a [`CodecFactory`] that builds it from the listener's settings, and a
//! [`register`] function the binary calls once at startup. It only uses the public API of
//! the `codecs` crate; sluice's internals are not touched.
//!
//! # Format
//!
//! One JSON object per line (`\n` or `\r\n`):
//!
//! ```text
//! {"key": "device-7", "value": {"t": 21.5}, "headers": {"source": "lab"}}
//! ```
//!
//! - `key` (optional string): the record key; absent or `null` is Kafka's null key.
//! - `value` (required): a JSON string becomes its text, unquoted and unescaped; anything
//!   else (object, array, number, `true`, `false`, `null`) becomes its JSON text exactly as
//!   written in the line.
//! - `headers` (optional object of strings): record headers.
//!
//! Other fields are refused, so typos do not silently drop data. The value and key are
//! slices of the read buffer unless they contain JSON escapes.
//!
//! Acknowledgements are lines too: `{"ok":true}` or `{"ok":false,"error":"..."}`.
//! Records delivered to the client are written in the same shape as they are read.
//!
//! # Settings
//!
//! - `max_line_bytes`: the longest line accepted, default 65536.
//!
//! # Use
//!
//! ```
//! let mut registry = codecs::registry::CodecRegistry::with_builtins();
//! sluice_codec_jsonlines::register(&mut registry).unwrap();
//! let codec = registry.build("jsonlines", &codecs::registry::Settings::new()).unwrap();
//! # drop(codec);
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use codecs::lines::LinesCodec;
use codecs::registry::{
    Ack, CodecError, CodecFactory, CodecRegistry, RecordCodec, RecordFrame, RegistryError,
    SettingError, Settings,
};
use codecs::{Decoder, Encoder};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The name this codec is registered under.
pub const NAME: &str = "jsonlines";

/// Adds the `jsonlines` factory to `registry`.
pub fn register(registry: &mut CodecRegistry) -> Result<(), RegistryError> {
    registry.register(Box::new(JsonLinesFactory))
}

/// Builds [`JsonLinesCodec`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLinesFactory;

impl CodecFactory for JsonLinesFactory {
    fn name(&self) -> &str {
        NAME
    }

    fn build(&self, settings: &Settings) -> Result<Box<dyn RecordCodec>, SettingError> {
        settings.allow_only(&["max_line_bytes"])?;
        let max = settings.usize_or("max_line_bytes", 64 * 1024)?;
        Ok(Box::new(JsonLinesCodec::new(max)))
    }
}

/// The JSON lines codec for one connection.
#[derive(Debug, Clone)]
pub struct JsonLinesCodec {
    // Framing is the built-in lines codec: same limits, same CRLF handling.
    lines: LinesCodec,
}

impl JsonLinesCodec {
    /// A codec refusing lines over `max_line_bytes`.
    pub fn new(max_line_bytes: usize) -> JsonLinesCodec {
        JsonLinesCodec {
            lines: LinesCodec::new(max_line_bytes),
        }
    }
}

/// One line as written by the client; strings borrow from the line when they can.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    value: &'a RawValue,
    #[serde(borrow, default)]
    headers: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
}

impl RecordCodec for JsonLinesCodec {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RecordFrame>, CodecError> {
        let Some(line) = self.lines.decode(src)? else {
            return Ok(None);
        };
        let parsed: Line<'_> = serde_json::from_slice(&line)
            .map_err(|e| CodecError::malformed(format!("the line is not a record object ({e})")))?;
        let raw = parsed.value.get();
        let value = if raw.starts_with('"') {
            let text: Cow<'_, str> = serde_json::from_str(raw)
                .map_err(|e| CodecError::malformed(format!("the value string is invalid ({e})")))?;
            cow_bytes(&line, text)
        } else {
            line.slice_ref(raw.as_bytes())
        };
        let headers = parsed
            .headers
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.into_owned(), cow_bytes(&line, v)))
            .collect();
        Ok(Some(RecordFrame {
            key: parsed.key.map(|k| cow_bytes(&line, k)),
            value,
            headers,
        }))
    }

    fn encode_ack(&mut self, ack: Ack<'_>, dst: &mut BytesMut) -> Result<(), CodecError> {
        match ack {
            Ack::Accepted => dst.extend_from_slice(b"{\"ok\":true}\n"),
            Ack::Rejected { reason } => {
                dst.extend_from_slice(b"{\"ok\":false,\"error\":");
                dst.extend_from_slice(json_string(reason).as_bytes());
                dst.extend_from_slice(b"}\n");
            }
        }
        Ok(())
    }

    fn encode_record(&mut self, r: &RecordFrame, dst: &mut BytesMut) -> Result<(), CodecError> {
        let mut line = String::from("{");
        if let Some(key) = &r.key {
            line.push_str("\"key\":");
            line.push_str(&json_string(utf8(key, "key")?));
            line.push(',');
        }
        line.push_str("\"value\":");
        // A value that is already JSON (and not a string, which would lose its quotes on the
        // way back) is embedded as is; other text becomes a JSON string.
        match serde_json::from_slice::<&RawValue>(&r.value) {
            Ok(raw) if !raw.get().starts_with('"') => line.push_str(raw.get()),
            _ => line.push_str(&json_string(utf8(&r.value, "value")?)),
        }
        if !r.headers.is_empty() {
            line.push_str(",\"headers\":{");
            for (i, (name, value)) in r.headers.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                line.push_str(&json_string(name));
                line.push(':');
                line.push_str(&json_string(utf8(value, "header value")?));
            }
            line.push('}');
        }
        line.push('}');
        self.lines.encode(line.as_bytes(), dst)?;
        Ok(())
    }
}

/// A borrowed string is sliced out of the line (no copy); an unescaped one is owned.
fn cow_bytes(line: &Bytes, s: Cow<'_, str>) -> Bytes {
    match s {
        Cow::Borrowed(b) => line.slice_ref(b.as_bytes()),
        Cow::Owned(o) => Bytes::from(o),
    }
}

fn json_string(s: &str) -> String {
    // Serializing a str cannot fail.
    serde_json::to_string(s).unwrap_or_default()
}

fn utf8<'a>(b: &'a [u8], what: &str) -> Result<&'a str, CodecError> {
    std::str::from_utf8(b).map_err(|_| CodecError::Unencodable {
        reason: format!("the {what} is not UTF-8, which JSON cannot carry"),
    })
}
