//! Newline-delimited records over TCP.
//!
//! Each record is the bytes before a `\n`; a `\r` just before it is dropped too, so CRLF
//! clients work. An empty line is an empty record. A line longer than the limit is refused
//! as soon as the limit is passed without a newline, not after the line ends.
//!
//! Acknowledgements are lines too: `OK` for an accepted record, `ERR {reason}` for a
//! rejected one, in record order.

use bytes::{Bytes, BytesMut};

use crate::registry::Ack;
use crate::{Decoder, Encoder, ErrorAnswer, ProtocolError};

/// Why a line was refused. Raw TCP has no way to say so: the connection is closed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinesError {
    /// No newline within the limit.
    #[error("A line is longer than {max} bytes.")]
    LineTooLong {
        /// The limit, not counting the line ending.
        max: usize,
    },
    /// A record to send contains `\n` or ends with `\r`, so it would not come back whole.
    #[error("The record contains a line break and cannot be sent as one line.")]
    NewlineInRecord,
}

impl ProtocolError for LinesError {
    fn answer(&self) -> ErrorAnswer {
        ErrorAnswer::Close
    }
}

/// Decodes and encodes lines.
#[derive(Debug, Clone)]
pub struct LinesCodec {
    max_line: usize,
    // How much of the buffer is known to hold no newline, so a long line arriving in many
    // reads is scanned once. The caller only appends between `Ok(None)` calls.
    scanned: usize,
}

impl LinesCodec {
    /// A codec refusing lines over `max_line` bytes (not counting `\r\n`).
    pub fn new(max_line: usize) -> LinesCodec {
        LinesCodec {
            max_line,
            scanned: 0,
        }
    }

    /// The line limit.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Appends `OK\n` or `ERR {reason}\n` (line breaks in the reason become spaces).
    pub fn encode_ack(&self, ack: Ack<'_>, dst: &mut BytesMut) {
        match ack {
            Ack::Accepted => dst.extend_from_slice(b"OK\n"),
            Ack::Rejected { reason } => {
                dst.extend_from_slice(b"ERR ");
                let start = dst.len();
                dst.extend_from_slice(reason.as_bytes());
                for b in &mut dst[start..] {
                    if matches!(*b, b'\n' | b'\r') {
                        *b = b' ';
                    }
                }
                dst.extend_from_slice(b"\n");
            }
        }
    }
}

impl Decoder for LinesCodec {
    type Frame = Bytes;
    type Error = LinesError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, LinesError> {
        // The longest acceptable line plus "\r\n".
        let window = src.len().min(self.max_line.saturating_add(2));
        let from = self.scanned.min(window);
        let Some(i) = src[from..window].iter().position(|&b| b == b'\n') else {
            if window == self.max_line.saturating_add(2) {
                return Err(LinesError::LineTooLong { max: self.max_line });
            }
            self.scanned = window;
            return Ok(None);
        };
        let nl = from + i;
        let end = if nl > 0 && src[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        if end > self.max_line {
            return Err(LinesError::LineTooLong { max: self.max_line });
        }
        self.scanned = 0;
        let mut line = src.split_to(nl + 1).freeze();
        line.truncate(end);
        Ok(Some(line))
    }
}

impl Encoder<&[u8]> for LinesCodec {
    type Error = LinesError;

    fn encode(&mut self, line: &[u8], dst: &mut BytesMut) -> Result<(), LinesError> {
        if line.contains(&b'\n') || line.last() == Some(&b'\r') {
            return Err(LinesError::NewlineInRecord);
        }
        dst.reserve(line.len() + 1);
        dst.extend_from_slice(line);
        dst.extend_from_slice(b"\n");
        Ok(())
    }
}
