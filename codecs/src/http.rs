//! HTTP/1.1 for produce calls and Kafka-to-client streams.
//!
//! - [`RequestDecoder`] reads requests from a keep-alive, possibly pipelined connection:
//!   request line and headers with `httparse`, then a `Content-Length` or chunked body. Every
//!   limit is checked before the bytes it guards are awaited: head size and header count
//!   (431), body size (413), framing (400 for conflicting or invalid lengths, 411 when a body
//!   method has no length, 501 for transfer codings other than `chunked`), version (505).
//! - [`ProduceRequest`] reads a produce call out of a request: topic from the path, record
//!   key and headers from `Sluice-Key` / `Sluice-Header-*` headers, the body as the value.
//! - [`Response`] and [`ResponseEncoder`] write JSON responses; every [`HttpError`] has one.
//! - [`SseEncoder`] writes Server-Sent Events for Kafka-to-client streams.
//!
//! The head and a `Content-Length` or single-chunk body are `Bytes` slices of the read
//! buffer; only a body split into several chunks is copied, once, into a buffer whose size
//! was checked against the limit first.

mod chunked;
mod error;
mod produce;
mod request;
mod response;
mod sse;

pub use error::HttpError;
pub use produce::ProduceRequest;
pub use request::{Header, HttpLimits, Request, RequestDecoder};
pub use response::{write_json_string, Response, ResponseEncoder};
pub use sse::{SseEncoder, SseError, SseEvent};

/// The standard reason phrase for the statuses sluice sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}
