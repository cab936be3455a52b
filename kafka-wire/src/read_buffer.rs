//! A connection's read buffer: response frames split off as shared `Bytes`, and a large
//! frame's memory gone with the frame.

use bytes::{Bytes, BytesMut};

use crate::protocol::{self, WireError};

/// The read buffer of a broker connection.
///
/// Usually 64 KiB. A response larger than that gets an allocation of its exact size
/// (`split_frame` reserves it once the size prefix is in) and is read up to its end and no
/// further ([`ReadBuffer::want`]): bytes of the next frame in the same read would make that
/// allocation grow, copying the frame, to hold them. Once the large frame is split off, the
/// buffer starts afresh at 64 KiB, so the large allocation lives exactly as long as whoever
/// holds the frame. (A buffer that stayed grown kept the last large response resident until
/// a later read fit the usual size, which never came for the session topic's reader behind
/// a slow broker: every fetch answer was large.)
#[derive(Debug)]
pub(crate) struct ReadBuffer {
    buf: BytesMut,
    /// Bytes held after the last read, before frames were split off.
    held: usize,
}

impl ReadBuffer {
    /// The usual size.
    pub(crate) const USUAL: usize = 64 * 1024;

    pub(crate) fn new() -> ReadBuffer {
        ReadBuffer {
            buf: BytesMut::with_capacity(Self::USUAL),
            held: 0,
        }
    }

    /// The most the next read may append: up to the end of a large frame in progress,
    /// otherwise the usual size.
    pub(crate) fn want(&self) -> usize {
        match protocol::frame_len(&self.buf) {
            Some(len) if len > Self::USUAL => (len - self.buf.len()).min(Self::USUAL),
            _ => Self::USUAL,
        }
    }

    /// Appends bytes just read.
    pub(crate) fn filled(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.held = self.buf.len();
    }

    /// Takes the next whole frame (without its size prefix) off the front, if it has all
    /// arrived; once none is left, a buffer that grew for a large frame starts afresh.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Bytes>, WireError> {
        let frame = protocol::split_frame(&mut self.buf)?;
        if frame.is_none() && self.held > Self::USUAL && self.buf.is_empty() {
            self.buf = BytesMut::with_capacity(Self::USUAL);
            self.held = 0;
        }
        Ok(frame)
    }

    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(size: usize, fill: u8) -> Vec<u8> {
        let mut f = (size as i32).to_be_bytes().to_vec();
        f.resize(4 + size, fill);
        f
    }

    /// A large frame between small ones, arriving as a stream that gives each read as much
    /// as it asks for: every frame comes out whole; no read crosses the large frame's end;
    /// the large frame is held in an allocation of about its size (not doubled), and the
    /// buffer is back to its usual size once the frame is split off.
    #[test]
    fn a_large_frame_gets_its_own_allocation_and_takes_it_along() {
        let big = 300 * 1024;
        let mut stream = [frame(10, 1), frame(big, 2), frame(20, 3), frame(30, 4)].concat();
        let mut rb = ReadBuffer::new();
        let mut frames = Vec::new();
        let mut reads = Vec::new();
        let mut largest_capacity = 0;
        while !stream.is_empty() {
            let n = rb.want().min(stream.len());
            let chunk: Vec<u8> = stream.drain(..n).collect();
            rb.filled(&chunk);
            reads.push(n);
            largest_capacity = largest_capacity.max(rb.capacity());
            while let Some(f) = rb.next_frame().unwrap() {
                frames.push(f);
            }
            if reads.iter().sum::<usize>() == 4 + 10 + 4 + big {
                assert_eq!(
                    rb.capacity(),
                    ReadBuffer::USUAL,
                    "the large allocation stayed"
                );
            }
        }
        let sizes: Vec<usize> = frames.iter().map(|f| f.len()).collect();
        assert_eq!(sizes, vec![10, big, 20, 30]);
        assert!(frames[1].iter().all(|&b| b == 2));
        assert!(frames[3].iter().all(|&b| b == 4));
        // Read 1: the first 64 KiB (the small frame and the large one's start); then the
        // large frame to its end, no further; then the small frames after it.
        let to_big_end = 4 + 10 + 4 + big;
        assert_eq!(
            reads.iter().take(reads.len() - 1).sum::<usize>(),
            to_big_end
        );
        assert_eq!(*reads.last().unwrap(), 4 + 20 + 4 + 30);
        assert!(largest_capacity >= 4 + big && largest_capacity < 4 + big + ReadBuffer::USUAL);
        assert!(rb.capacity() <= ReadBuffer::USUAL);
    }

    /// Small frames never change the buffer's allocation, nor limit reads.
    #[test]
    fn small_frames_use_the_usual_buffer() {
        let mut rb = ReadBuffer::new();
        let stream = [frame(100, 1), frame(200, 2)].concat();
        assert_eq!(rb.want(), ReadBuffer::USUAL);
        rb.filled(&stream[..50]);
        assert!(rb.next_frame().unwrap().is_none());
        assert_eq!(rb.want(), ReadBuffer::USUAL);
        rb.filled(&stream[50..]);
        assert_eq!(rb.next_frame().unwrap().unwrap().len(), 100);
        assert_eq!(rb.next_frame().unwrap().unwrap().len(), 200);
        assert!(rb.next_frame().unwrap().is_none());
        assert!(rb.capacity() <= ReadBuffer::USUAL);
    }
}
