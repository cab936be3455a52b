//! HTTP/1.1 request decoding: check-then-parse over a keep-alive, pipelined connection.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::chunked::{gather, ChunkScan};
use super::error::HttpError;
use crate::Decoder;

/// Headers parsed at most; the array lives on the stack, so this also caps the limit.
const HEADER_SLOTS: usize = 128;

/// Request size limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Request line plus headers, in bytes (431 beyond).
    pub max_head_bytes: usize,
    /// Header lines, and separately chunked trailer lines (431 beyond; capped at 128).
    pub max_headers: usize,
    /// Body size after de-chunking (413 beyond).
    pub max_body_bytes: usize,
    /// One chunk-size or trailer line (400 beyond).
    pub max_line_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 1024 * 1024,
            max_line_bytes: 4096,
        }
    }
}

/// One request. Method, path and headers are ranges into the head, a `Bytes` slice of the
/// read buffer; the body is a slice too unless it arrived in several chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    head: Bytes,
    method: Range<usize>,
    path: Range<usize>,
    version: u8,
    headers: Vec<(Range<usize>, Range<usize>)>,
    body: Bytes,
    chunked: bool,
    keep_alive: bool,
}

/// A header line's name and raw value.
pub type Header<'a> = (&'a str, &'a [u8]);

impl Request {
    /// The request line and headers as received, up to and including the blank line (for
    /// handing an upgrade request to the WebSocket handshake).
    pub fn head(&self) -> &Bytes {
        &self.head
    }

    /// The method, e.g. `POST`.
    pub fn method(&self) -> &str {
        self.str_at(&self.method)
    }

    /// The request target as sent, including any query string.
    pub fn target(&self) -> &str {
        self.str_at(&self.path)
    }

    /// The target without its query string.
    pub fn path(&self) -> &str {
        let t = self.target();
        t.split_once('?').map_or(t, |(p, _)| p)
    }

    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Every header line, in order, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = Header<'_>> + '_ {
        self.headers
            .iter()
            .map(|(n, v)| (self.str_at(n), &self.head[v.clone()]))
    }

    /// Every header line with its value as a zero-copy slice of the read buffer.
    pub fn header_slices(&self) -> impl Iterator<Item = (&str, Bytes)> + '_ {
        self.headers
            .iter()
            .map(|(n, v)| (self.str_at(n), self.head.slice(v.clone())))
    }

    /// The headers whose names start with `prefix` (ASCII case-insensitive): the rest of
    /// each name and its value as a zero-copy slice of the read buffer. Names are checked
    /// as bytes, and only a match is made a `str`.
    pub fn headers_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, Bytes)> + 'a {
        let prefix = prefix.as_bytes();
        self.headers.iter().filter_map(move |(n, v)| {
            let name = &self.head[n.clone()];
            let suffix = name
                .get(..prefix.len())
                .filter(|head| head.eq_ignore_ascii_case(prefix))
                .map(|_| &name[prefix.len()..])?;
            let suffix = std::str::from_utf8(suffix).ok()?;
            Some((suffix, self.head.slice(v.clone())))
        })
    }

    /// The first header called `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.value_range(name).map(|v| &self.head[v.clone()])
    }

    /// The first header called `name`, as a zero-copy slice of the read buffer.
    pub fn header_bytes(&self, name: &str) -> Option<Bytes> {
        self.value_range(name).map(|v| self.head.slice(v.clone()))
    }

    /// Where the value of the first header called `name` is; names are compared as bytes
    /// (a lookup runs several times per request: no UTF-8 check of every name each time).
    fn value_range(&self, name: &str) -> Option<&Range<usize>> {
        let name = name.as_bytes();
        self.headers
            .iter()
            .find(|(n, _)| self.head[n.clone()].eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The body, de-chunked.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Whether the body arrived with chunked transfer coding.
    pub fn is_chunked(&self) -> bool {
        self.chunked
    }

    /// Whether the connection stays open after the response: HTTP/1.1 unless
    /// `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// The exact bytes of the request line and headers.
    pub fn head_bytes(&self) -> &Bytes {
        &self.head
    }

    fn str_at(&self, r: &Range<usize>) -> &str {
        // Method, path and names were checked to be ASCII/UTF-8 when parsed.
        std::str::from_utf8(&self.head[r.clone()]).unwrap_or_default()
    }
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
}

/// Decodes requests one at a time; pipelined requests stay in the buffer for the next call.
///
/// Between calls that return `Ok(None)` the caller must only append to the buffer: the
/// decoder remembers how far it validated a chunked body, in offsets from its start.
#[derive(Debug, Clone, Default)]
pub struct RequestDecoder {
    limits: HttpLimits,
    scan: Option<ChunkScan>,
    continue_due: bool,
    continue_sent: bool,
}

impl RequestDecoder {
    /// A decoder with these limits.
    pub fn new(limits: HttpLimits) -> RequestDecoder {
        RequestDecoder {
            limits,
            ..RequestDecoder::default()
        }
    }

    /// Whether the driver should write `HTTP/1.1 100 Continue` now: the last call parsed a
    /// head with `Expect: 100-continue` whose body has not arrived. True once per request.
    pub fn take_continue(&mut self) -> bool {
        std::mem::take(&mut self.continue_due)
    }

    fn complete(&mut self) {
        self.scan = None;
        self.continue_due = false;
        self.continue_sent = false;
    }
}

impl Decoder for RequestDecoder {
    type Frame = Request;
    type Error = HttpError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Request>, HttpError> {
        let limits = self.limits;
        let max_headers = limits.max_headers.min(HEADER_SLOTS);
        let mut slots = [httparse::EMPTY_HEADER; HEADER_SLOTS];
        let mut req = httparse::Request::new(&mut slots[..max_headers]);
        let window = &src[..src.len().min(limits.max_head_bytes)];
        let head_len = match req.parse(window) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if src.len() >= limits.max_head_bytes => {
                return Err(HttpError::HeadTooLarge {
                    max: limits.max_head_bytes,
                })
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HttpError::TooManyHeaders { max: max_headers })
            }
            Err(httparse::Error::Version) => return Err(HttpError::HttpVersion),
            Err(_) => {
                return Err(HttpError::Malformed(
                    "the request line or a header is invalid",
                ))
            }
        };
        let head = Head::read(&req, window)?;
        // A declared body over the limit is refused now, not after it has been received.
        if let Framing::Length(n) = head.framing {
            if n > limits.max_body_bytes {
                return Err(HttpError::BodyTooLarge {
                    len: n as u64,
                    max: limits.max_body_bytes,
                });
            }
        }
        let available = src.len() - head_len;
        let body = match head.framing {
            Framing::Length(n) if available < n => None,
            Framing::Length(n) => Some((head_len + n, None)),
            Framing::Chunked => {
                let scan = match &mut self.scan {
                    Some(s) if s.start() == head_len => s,
                    slot => slot.insert(ChunkScan::new(head_len)),
                };
                scan.resume(src, &limits)?
                    .map(|end| (end, Some(scan.clone())))
            }
        };
        let Some((end, scan)) = body else {
            if head.expect_continue && !self.continue_sent {
                self.continue_due = true;
                self.continue_sent = true;
            }
            return Ok(None);
        };
        self.complete();
        let whole = src.split_to(end).freeze();
        let body = match (head.framing, scan) {
            (Framing::Length(_), _) => whole.slice(head_len..),
            (Framing::Chunked, Some(s)) => match s.single_chunk() {
                Some((at, len)) => whole.slice(at..at + len),
                None => gather(&whole, head_len, s.total())?.freeze(),
            },
            (Framing::Chunked, None) => Bytes::new(),
        };
        let mut head_bytes = whole;
        head_bytes.truncate(head_len);
        Ok(Some(Request {
            head: head_bytes,
            method: head.method,
            path: head.path,
            version: head.version,
            headers: head.headers,
            body,
            chunked: head.framing == Framing::Chunked,
            keep_alive: head.keep_alive,
        }))
    }
}

/// What the head says, in offsets into the buffer.
#[derive(Debug)]
struct Head {
    method: Range<usize>,
    path: Range<usize>,
    version: u8,
    headers: Vec<(Range<usize>, Range<usize>)>,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

impl Head {
    fn read(req: &httparse::Request<'_, '_>, base: &[u8]) -> Result<Head, HttpError> {
        let limits_err = HttpError::Malformed("the request line is incomplete");
        let method = req.method.ok_or(limits_err.clone())?;
        let path = req.path.ok_or(limits_err.clone())?;
        let version = req.version.ok_or(limits_err)?;
        let mut length: Option<usize> = None;
        let mut bad_length = false;
        let mut chunked = None;
        let (mut close, mut keep_alive, mut expect_continue) = (false, false, false);
        let mut headers = Vec::with_capacity(req.headers.len());
        for h in req.headers.iter() {
            headers.push((range_of(base, h.name.as_bytes()), range_of(base, h.value)));
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                match parse_length(h.value) {
                    Some(n) if length.is_none_or(|l| l == n) => length = Some(n),
                    _ => bad_length = true,
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                let only_chunked =
                    chunked.is_none() && trim(h.value).eq_ignore_ascii_case(b"chunked");
                chunked = Some(only_chunked);
            } else if name.eq_ignore_ascii_case("connection") {
                close |= has_token(h.value, b"close");
                keep_alive |= has_token(h.value, b"keep-alive");
            } else if name.eq_ignore_ascii_case("expect") {
                expect_continue |= trim(h.value).eq_ignore_ascii_case(b"100-continue");
            }
        }
        if chunked.is_some() && (length.is_some() || bad_length) {
            return Err(HttpError::ConflictingFraming);
        }
        if bad_length {
            return Err(HttpError::BadContentLength);
        }
        let framing = match (chunked, length) {
            (Some(false), _) => return Err(HttpError::UnsupportedTransferEncoding),
            (Some(true), _) => Framing::Chunked,
            (None, Some(n)) => Framing::Length(n),
            (None, None) if matches!(method, "POST" | "PUT" | "PATCH") => {
                return Err(HttpError::LengthRequired {
                    method: method.to_owned(),
                })
            }
            (None, None) => Framing::Length(0),
        };
        Ok(Head {
            method: range_of(base, method.as_bytes()),
            path: range_of(base, path.as_bytes()),
            version,
            headers,
            framing,
            keep_alive: if version == 1 {
                !close
            } else {
                keep_alive && !close
            },
            expect_continue: expect_continue && version == 1,
        })
    }
}

/// The offsets of `part`, a subslice of `base` handed out by httparse.
fn range_of(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(base.as_ptr() as usize);
    start..start + part.len()
}

/// A Content-Length value: ASCII digits only, no sign, no list.
fn parse_length(v: &[u8]) -> Option<usize> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token))
}
