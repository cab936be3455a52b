//! The HTTP decode error and the status each variant is answered with.

use crate::{ErrorAnswer, ProtocolError};

/// Why an HTTP request was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The request line and headers did not end within the size limit (431).
    #[error("The request head is longer than {max} bytes.")]
    HeadTooLarge {
        /// The limit in bytes.
        max: usize,
    },
    /// More header lines (or chunked trailer lines) than the limit (431).
    #[error("The request has more than {max} header lines.")]
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// Not parseable as HTTP/1.x (400).
    #[error("The request is not valid HTTP: {0}.")]
    Malformed(&'static str),
    /// An HTTP version other than 1.0 or 1.1 (505).
    #[error("Only HTTP/1.0 and HTTP/1.1 are supported.")]
    HttpVersion,
    /// `Content-Length` was not a number, or two of them disagreed (400).
    #[error("The Content-Length header is invalid or repeated with different values.")]
    BadContentLength,
    /// Both `Content-Length` and `Transfer-Encoding` were sent, a smuggling vector (400).
    #[error("The request sends both Content-Length and Transfer-Encoding.")]
    ConflictingFraming,
    /// A transfer coding other than plain `chunked` (501).
    #[error("Only the \"chunked\" transfer coding is supported.")]
    UnsupportedTransferEncoding,
    /// A body-carrying method without `Content-Length` or chunked encoding (411).
    #[error("A {method} request needs a Content-Length or a chunked body.")]
    LengthRequired {
        /// The request method.
        method: String,
    },
    /// The body is (or grows) larger than the limit (413).
    #[error("The body is at least {len} bytes, over the limit of {max}.")]
    BodyTooLarge {
        /// The size known so far.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A chunk-size line or chunk terminator is malformed (400).
    #[error("The chunked body is malformed: {0}.")]
    BadChunk(&'static str),
    /// The method is not allowed on this path (405).
    #[error("{method} is not allowed here; use {allowed}.")]
    MethodNotAllowed {
        /// The request method.
        method: String,
        /// The allowed method.
        allowed: &'static str,
    },
    /// The path does not name a produce endpoint (404).
    #[error("No endpoint at {path}.")]
    NotFound {
        /// The request path.
        path: String,
    },
    /// The topic in the path is not a valid Kafka topic name (400).
    #[error("\"{topic}\" is not a valid Kafka topic name.")]
    BadTopic {
        /// The topic as given.
        topic: String,
    },
}

impl HttpError {
    /// The status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => 431,
            HttpError::HttpVersion => 505,
            HttpError::UnsupportedTransferEncoding => 501,
            HttpError::LengthRequired { .. } => 411,
            HttpError::BodyTooLarge { .. } => 413,
            HttpError::MethodNotAllowed { .. } => 405,
            HttpError::NotFound { .. } => 404,
            _ => 400,
        }
    }
}

impl ProtocolError for HttpError {
    fn answer(&self) -> ErrorAnswer {
        ErrorAnswer::HttpStatus(self.status())
    }
}
