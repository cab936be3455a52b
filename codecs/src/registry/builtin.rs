//! The built-in record codecs, `framed` and `lines`, behind the plug-in traits.

use bytes::BytesMut;

use super::{Ack, CodecError, CodecFactory, RecordCodec, RecordFrame, SettingError, Settings};
use crate::framed::{FramedCodec, FramedConfig, FramedError, FramedRecord, LengthPrefix};
use crate::lines::{LinesCodec, LinesError};
use crate::{Decoder, Encoder};

impl From<FramedError> for CodecError {
    fn from(e: FramedError) -> CodecError {
        match e {
            FramedError::FrameTooLarge { len, max } => CodecError::TooLarge { size: len, max },
            e @ FramedError::KeyNotEncodable(_) => CodecError::Unencodable {
                reason: e.to_string(),
            },
            e => CodecError::malformed(e.to_string()),
        }
    }
}

impl From<LinesError> for CodecError {
    fn from(e: LinesError) -> CodecError {
        match e {
            LinesError::LineTooLong { max } => CodecError::TooLarge {
                size: max as u64 + 1,
                max: max as u64,
            },
            e => CodecError::Unencodable {
                reason: e.to_string(),
            },
        }
    }
}

/// `framed`: settings `prefix` (`u16` or `u32`, default `u32`), `key` (`true`/`false`,
/// default `false`) and `max_frame_bytes` (default 1 MiB).
#[derive(Debug, Clone, Copy, Default)]
pub struct FramedFactory;

impl CodecFactory for FramedFactory {
    fn name(&self) -> &str {
        "framed"
    }

    fn build(&self, s: &Settings) -> Result<Box<dyn RecordCodec>, SettingError> {
        s.allow_only(&["prefix", "key", "max_frame_bytes"])?;
        let prefix = match s.choice_or("prefix", "u32", &["u16", "u32"], "u16 or u32")? {
            "u16" => LengthPrefix::U16,
            _ => LengthPrefix::U32,
        };
        let config = FramedConfig {
            prefix,
            keyed: s.bool_or("key", false)?,
            max_frame_size: s
                .usize_or("max_frame_bytes", FramedConfig::default().max_frame_size)?,
        };
        Ok(Box::new(FramedRecordCodec(FramedCodec::new(config))))
    }
}

/// The `framed` codec as a [`RecordCodec`].
#[derive(Debug, Clone)]
pub struct FramedRecordCodec(pub FramedCodec);

impl RecordCodec for FramedRecordCodec {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RecordFrame>, CodecError> {
        Ok(self.0.decode(src)?.map(|r| RecordFrame {
            key: r.key,
            value: r.value,
            headers: Vec::new(),
        }))
    }

    fn encode_ack(&mut self, ack: Ack<'_>, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(self.0.encode_ack(ack, dst)?)
    }

    fn encode_record(&mut self, r: &RecordFrame, dst: &mut BytesMut) -> Result<(), CodecError> {
        // Headers have no place in this framing; they are dropped on the way to the client.
        let rec = FramedRecord {
            key: if self.0.config().keyed {
                r.key.clone()
            } else {
                None
            },
            value: r.value.clone(),
        };
        Ok(self.0.encode(&rec, dst)?)
    }
}

/// `lines`: setting `max_line_bytes` (default 64 KiB).
#[derive(Debug, Clone, Copy, Default)]
pub struct LinesFactory;

impl CodecFactory for LinesFactory {
    fn name(&self) -> &str {
        "lines"
    }

    fn build(&self, s: &Settings) -> Result<Box<dyn RecordCodec>, SettingError> {
        s.allow_only(&["max_line_bytes"])?;
        let max = s.usize_or("max_line_bytes", 64 * 1024)?;
        Ok(Box::new(LinesRecordCodec(LinesCodec::new(max))))
    }
}

/// The `lines` codec as a [`RecordCodec`]: no keys, no headers.
#[derive(Debug, Clone)]
pub struct LinesRecordCodec(pub LinesCodec);

impl RecordCodec for LinesRecordCodec {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RecordFrame>, CodecError> {
        Ok(self.0.decode(src)?.map(|value| RecordFrame {
            key: None,
            value,
            headers: Vec::new(),
        }))
    }

    fn encode_ack(&mut self, ack: Ack<'_>, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.0.encode_ack(ack, dst);
        Ok(())
    }

    fn encode_record(&mut self, r: &RecordFrame, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(self.0.encode(&r.value[..], dst)?)
    }
}
