//! WebSocket as a byte-stream transport, for MQTT over WebSocket.
//!
//! MQTT over WebSocket (MQTT 3.1.1 §6, MQTT 5.0 §6) sends packets in binary messages but
//! does not align them with frames: one frame may carry several packets and a packet may be
//! split across frames. [`ByteStream`] therefore ignores message boundaries and appends every
//! binary payload to one buffer that the MQTT decoder reads as if it were a TCP stream.

use bytes::BytesMut;

use super::error::WsError;
use super::frame::{Frame, FrameMut, Opcode};
use super::message::FragmentTracker;

/// Binary payloads joined into one stream buffer for a decoder running on top.
#[derive(Debug)]
pub struct ByteStream {
    fragments: FragmentTracker,
    buf: BytesMut,
    max_buffered: usize,
}

impl ByteStream {
    /// A stream that refuses to hold more than `max_buffered` undecoded bytes (1009); it should
    /// be at least the upper decoder's largest packet.
    pub fn new(max_buffered: usize) -> ByteStream {
        ByteStream {
            fragments: FragmentTracker::default(),
            buf: BytesMut::new(),
            max_buffered,
        }
    }

    /// Takes a decoded frame. Binary payloads (and their continuations) join the stream;
    /// control frames are handed back for the session; text is refused with 1003, as MQTT
    /// requires binary frames.
    ///
    /// When the stream is empty, as it is whenever the previous frames held whole packets,
    /// the payload becomes the stream buffer itself, so the upper decoder slices packets out
    /// of the socket read buffer without a copy. Only a packet split across frames is copied.
    pub fn push(&mut self, frame: FrameMut) -> Result<Option<Frame>, WsError> {
        if frame.opcode.is_control() {
            return Ok(Some(frame.freeze()));
        }
        if self.fragments.track(frame.opcode, frame.fin)? == Opcode::Text {
            return Err(WsError::UnsupportedData);
        }
        let len = self.buf.len() + frame.payload.len();
        if len > self.max_buffered {
            return Err(WsError::MessageTooLarge {
                len,
                max: self.max_buffered,
            });
        }
        if self.buf.is_empty() {
            self.buf = frame.payload;
        } else {
            self.buf.unsplit(frame.payload);
        }
        Ok(None)
    }

    /// The stream buffer for the upper decoder: it splits whole packets off the front.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes received but not yet decoded by the upper layer.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Drops the (empty) stream buffer's hold on the read buffer's memory, so an idle
    /// connection keeps no buffer alive. Does nothing while bytes are waiting.
    pub fn release_if_empty(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }
}
