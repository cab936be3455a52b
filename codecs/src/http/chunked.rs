//! Chunked transfer coding (RFC 9112 §7.1): a resumable scan that validates the body
//! without consuming it, then a second pass that gathers the chunks once it is complete.

use bytes::BytesMut;

use super::error::HttpError;
use super::request::HttpLimits;

/// Progress through a chunked body, in offsets from the start of the read buffer, so a body
/// arriving in many reads is scanned once rather than from the start on every read.
#[derive(Debug, Clone)]
pub(super) struct ChunkScan {
    start: usize,
    pos: usize,
    total: u64,
    chunks: usize,
    first: (usize, usize),
    trailer_lines: usize,
    in_trailers: bool,
}

impl ChunkScan {
    /// A scan of the body starting at `start` (the end of the head).
    pub(super) fn new(start: usize) -> ChunkScan {
        ChunkScan {
            start,
            pos: start,
            total: 0,
            chunks: 0,
            first: (start, 0),
            trailer_lines: 0,
            in_trailers: false,
        }
    }

    /// Where the body starts.
    pub(super) fn start(&self) -> usize {
        self.start
    }

    /// Advances over what `buf` holds; returns the end of the body (after the trailers'
    /// empty line) once it is complete.
    pub(super) fn resume(
        &mut self,
        buf: &[u8],
        limits: &HttpLimits,
    ) -> Result<Option<usize>, HttpError> {
        loop {
            let Some(line_len) = find_line(&buf[self.pos..], limits.max_line_bytes)? else {
                return Ok(None);
            };
            let line = &buf[self.pos..self.pos + line_len];
            if self.in_trailers {
                self.pos += line_len + 2;
                if line.is_empty() {
                    return Ok(Some(self.pos));
                }
                self.trailer_lines += 1;
                if self.trailer_lines > limits.max_headers {
                    return Err(HttpError::TooManyHeaders {
                        max: limits.max_headers,
                    });
                }
                continue;
            }
            let size = parse_size(line)?;
            if size == 0 {
                self.pos += line_len + 2;
                self.in_trailers = true;
                continue;
            }
            let total = self.total.saturating_add(size);
            if total > limits.max_body_bytes as u64 {
                return Err(HttpError::BodyTooLarge {
                    len: total,
                    max: limits.max_body_bytes,
                });
            }
            // `size` is at most the body limit now, so it fits in usize.
            let size = size as usize;
            let data = self.pos + line_len + 2;
            if buf.len() < data + size + 2 {
                return Ok(None);
            }
            if &buf[data + size..data + size + 2] != b"\r\n" {
                return Err(HttpError::BadChunk("a chunk is not followed by CRLF"));
            }
            if self.chunks == 0 {
                self.first = (data, size);
            }
            self.chunks += 1;
            self.total = total;
            self.pos = data + size + 2;
        }
    }

    /// The body size in bytes.
    pub(super) fn total(&self) -> usize {
        // Bounded by the body limit in `resume`.
        self.total as usize
    }

    /// The single data chunk's range, when the body had at most one: it can be sliced out.
    pub(super) fn single_chunk(&self) -> Option<(usize, usize)> {
        (self.chunks <= 1).then_some(self.first)
    }
}

/// Copies the data of a complete, already validated chunked body at `buf[start..]`.
pub(super) fn gather(buf: &[u8], start: usize, total: usize) -> Result<BytesMut, HttpError> {
    let mut out = BytesMut::with_capacity(total);
    let mut pos = start;
    while out.len() < total {
        let line_len = find_line(&buf[pos..], usize::MAX)?
            .ok_or(HttpError::BadChunk("the body ended early"))?;
        let size = usize::try_from(parse_size(&buf[pos..pos + line_len])?)
            .map_err(|_| HttpError::BadChunk("a chunk size is too large"))?;
        let data = pos + line_len + 2;
        let chunk = buf
            .get(data..data + size)
            .ok_or(HttpError::BadChunk("the body ended early"))?;
        out.extend_from_slice(chunk);
        pos = data + size + 2;
    }
    Ok(out)
}

/// The length of the line at the front of `buf`, excluding its CRLF; `None` if incomplete.
fn find_line(buf: &[u8], max: usize) -> Result<Option<usize>, HttpError> {
    let window = &buf[..buf.len().min(max.saturating_add(2))];
    match window.iter().position(|&b| b == b'\n') {
        Some(0) => Err(HttpError::BadChunk("a line ends with a bare LF")),
        Some(i) if window[i - 1] == b'\r' => Ok(Some(i - 1)),
        Some(_) => Err(HttpError::BadChunk("a line ends with a bare LF")),
        None if window.len() >= max.saturating_add(2) => Err(HttpError::BadChunk(
            "a chunk-size or trailer line is too long",
        )),
        None => Ok(None),
    }
}

/// Parses `hex-size [; extensions]`.
fn parse_size(line: &[u8]) -> Result<u64, HttpError> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = trim_ows(digits);
    if digits.is_empty() || digits.len() > 15 {
        return Err(HttpError::BadChunk("a chunk size is empty or too long"));
    }
    let mut size = 0u64;
    for &d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(HttpError::BadChunk("a chunk size is not hexadecimal")),
        };
        // At most 15 digits, so this cannot overflow.
        size = size << 4 | u64::from(v);
    }
    if line.contains(&b'\r') {
        return Err(HttpError::BadChunk("a chunk-size line contains a bare CR"));
    }
    Ok(size)
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}
