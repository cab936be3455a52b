//! A produce call read out of an HTTP request.
//!
//! `POST {prefix}{topic}` with the record value as the body. The record key comes from the
//! `Sluice-Key` header and each `Sluice-Header-{name}: {value}` header becomes a record
//! header `{name}`. Routing rules in the proxy may still map the topic elsewhere; this only
//! reads what the client sent.

use bytes::Bytes;

use super::error::HttpError;
use super::request::Request;

/// The request header carrying the record key.
pub const KEY_HEADER: &str = "Sluice-Key";
/// The prefix of request headers that become record headers.
pub const RECORD_HEADER_PREFIX: &str = "Sluice-Header-";

/// The parts of a record a client asked to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRequest {
    /// The topic named in the path.
    pub topic: String,
    /// The record key, a slice of the request head.
    pub key: Option<Bytes>,
    /// Record headers, in request order; values are slices of the request head.
    pub headers: Vec<(String, Bytes)>,
    /// The record value: the request body.
    pub value: Bytes,
}

impl ProduceRequest {
    /// Reads a produce call from `req`, whose path must be `{prefix}{topic}`.
    pub fn from_request(req: &Request, prefix: &str) -> Result<ProduceRequest, HttpError> {
        let path = req.path();
        let topic = path
            .strip_prefix(prefix)
            .ok_or_else(|| HttpError::NotFound {
                path: path.to_owned(),
            })?;
        if !is_topic_name(topic) {
            return Err(HttpError::BadTopic {
                topic: topic.to_owned(),
            });
        }
        if req.method() != "POST" {
            return Err(HttpError::MethodNotAllowed {
                method: req.method().to_owned(),
                allowed: "POST",
            });
        }
        let mut headers = Vec::new();
        for (suffix, value) in req.headers_with_prefix(RECORD_HEADER_PREFIX) {
            if suffix.is_empty() {
                return Err(HttpError::Malformed("a record header has an empty name"));
            }
            headers.push((suffix.to_owned(), value));
        }
        Ok(ProduceRequest {
            topic: topic.to_owned(),
            key: req.header_bytes(KEY_HEADER),
            headers,
            value: req.body().clone(),
        })
    }
}

/// Kafka's topic name rule: 1 to 249 of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn is_topic_name(t: &str) -> bool {
    (1..=249).contains(&t.len())
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
