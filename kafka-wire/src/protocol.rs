//! The sans-IO half of a broker connection: request framing, response framing, correlation
//! ids, the in-flight queue and API version negotiation. No sockets here; [`crate::conn`]
//! drives this over a stream.
//!
//! Kafka answers requests on one connection in the order they were sent, so the in-flight
//! requests form a queue: a response whose correlation id is not the front's is a protocol
//! error that ends the connection.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// The error type of the `kafka-protocol` crate's encoders and decoders.
type ProtocolCodecError = anyhow::Error;

/// The largest response frame we accept (Kafka's own default `socket.request.max.bytes` is
/// 100 MiB; fetch responses are bounded by the fetch's `max_bytes`, far below this).
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// The API versions this client implements, lowest and highest. The version used on a
/// connection is the highest both sides support.
///
/// Produce stops at the last version that addresses topics by name (later ones address them
/// by topic id only). Fetch stops at v11, the last before flexible versions: tansu 0.6.0
/// sends tagged fields in Fetch v12+ responses that those versions do not define (the
/// node-endpoints tag of v16+), which a strict decoder must refuse; v11 carries everything
/// we read (isolation level, aborted transactions, log start offset).
pub(crate) const fn our_versions(key: ApiKey) -> Option<(i16, i16)> {
    Some(match key {
        ApiKey::ApiVersions => (0, 3),
        ApiKey::Metadata => (1, 12),
        ApiKey::Produce => (3, 12),
        ApiKey::Fetch => (4, 11),
        ApiKey::ListOffsets => (1, 8),
        ApiKey::InitProducerId => (0, 4),
        ApiKey::CreateTopics => (2, 7),
        ApiKey::DeleteTopics => (1, 5),
        ApiKey::SaslHandshake => (1, 1),
        ApiKey::SaslAuthenticate => (0, 2),
        // Consumer groups: the last versions before flexible encodings (tagged fields),
        // which carry everything a classic group member needs.
        ApiKey::FindCoordinator => (0, 2),
        ApiKey::JoinGroup => (1, 5),
        ApiKey::SyncGroup => (0, 3),
        ApiKey::Heartbeat => (0, 3),
        ApiKey::LeaveGroup => (0, 3),
        ApiKey::OffsetCommit => (2, 7),
        ApiKey::OffsetFetch => (1, 5),
        ApiKey::DescribeGroups => (0, 4),
        _ => return None,
    })
}

/// The version of each API to use with one broker: the highest both sides support.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApiVersions {
    versions: Vec<(i16, i16)>,
}

impl ApiVersions {
    /// Before negotiation: only ApiVersions itself, at v0 (which every broker answers).
    pub(crate) fn unnegotiated() -> Self {
        ApiVersions::default()
    }

    /// Intersects the broker's advertised ranges with ours.
    pub(crate) fn from_response(response: &ApiVersionsResponse) -> Self {
        let mut versions = Vec::new();
        for api in &response.api_keys {
            let Ok(key) = ApiKey::try_from(api.api_key) else {
                continue;
            };
            let Some((our_min, our_max)) = our_versions(key) else {
                continue;
            };
            let min = our_min.max(api.min_version);
            let max = our_max.min(api.max_version);
            if min <= max {
                versions.push((api.api_key, max));
            }
        }
        ApiVersions { versions }
    }

    /// The version to use for `key`, or `None` when there is no common version.
    pub(crate) fn version(&self, key: ApiKey) -> Option<i16> {
        if key == ApiKey::ApiVersions && self.versions.is_empty() {
            return Some(0);
        }
        self.versions
            .iter()
            .find(|(k, _)| *k == key as i16)
            .map(|(_, v)| *v)
    }
}

/// Why a request could not be encoded or a response decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("could not encode the {api} request: {detail}")]
    Encode { api: &'static str, detail: String },
    #[error("could not decode the {api} response: {detail}")]
    Decode { api: &'static str, detail: String },
    #[error("a response frame of {0} bytes is over the limit of {MAX_RESPONSE_BYTES} bytes")]
    FrameTooLarge(usize),
    #[error("a response frame declares a negative size ({0})")]
    NegativeSize(i32),
    #[error("got a response with correlation id {got}, expected {expected}")]
    CorrelationMismatch { got: i32, expected: i32 },
    #[error("got a response with correlation id {0} while no request was waiting")]
    Unsolicited(i32),
}

/// The name of an API, for errors and logs.
pub(crate) fn api_name(key: i16) -> &'static str {
    match ApiKey::try_from(key) {
        Ok(ApiKey::Produce) => "Produce",
        Ok(ApiKey::Fetch) => "Fetch",
        Ok(ApiKey::ListOffsets) => "ListOffsets",
        Ok(ApiKey::Metadata) => "Metadata",
        Ok(ApiKey::ApiVersions) => "ApiVersions",
        Ok(ApiKey::InitProducerId) => "InitProducerId",
        Ok(ApiKey::CreateTopics) => "CreateTopics",
        Ok(ApiKey::DeleteTopics) => "DeleteTopics",
        Ok(ApiKey::SaslHandshake) => "SaslHandshake",
        Ok(ApiKey::SaslAuthenticate) => "SaslAuthenticate",
        Ok(ApiKey::FindCoordinator) => "FindCoordinator",
        Ok(ApiKey::JoinGroup) => "JoinGroup",
        Ok(ApiKey::SyncGroup) => "SyncGroup",
        Ok(ApiKey::Heartbeat) => "Heartbeat",
        Ok(ApiKey::LeaveGroup) => "LeaveGroup",
        Ok(ApiKey::OffsetCommit) => "OffsetCommit",
        Ok(ApiKey::OffsetFetch) => "OffsetFetch",
        Ok(ApiKey::DescribeGroups) => "DescribeGroups",
        _ => "unknown API",
    }
}

/// Appends a size-prefixed request frame (header and body) to `buf`.
pub(crate) fn encode_request<R: Request>(
    buf: &mut BytesMut,
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
) -> Result<(), WireError> {
    let api = api_name(R::KEY);
    let err = |e: ProtocolCodecError| WireError::Encode {
        api,
        detail: e.to_string(),
    };
    let mut header = RequestHeader::default();
    header.request_api_key = R::KEY;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(client_id.clone());
    let header_version = R::header_version(version);

    let start = buf.len();
    buf.put_i32(0);
    header.encode(buf, header_version).map_err(err)?;
    request.encode(buf, version).map_err(err)?;
    let size = buf.len() - start - 4;
    let size = i32::try_from(size).map_err(|_| WireError::Encode {
        api,
        detail: format!("{size} bytes is too large for one request"),
    })?;
    buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// Takes one whole size-prefixed frame off the front of `buf`, or `None` if it has not all
/// arrived yet (nothing is consumed then).
pub(crate) fn split_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let size = usize::try_from(size).map_err(|_| WireError::NegativeSize(size))?;
    if size > MAX_RESPONSE_BYTES {
        return Err(WireError::FrameTooLarge(size));
    }
    if buf.len() < 4 + size {
        buf.reserve(4 + size - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size).freeze()))
}

/// The whole length (size prefix included) of the frame whose start `buf` holds, once its
/// size prefix has arrived; `None` before, or for a size `split_frame` refuses.
pub(crate) fn frame_len(buf: &[u8]) -> Option<usize> {
    let prefix: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let size = usize::try_from(i32::from_be_bytes(prefix)).ok()?;
    (size <= MAX_RESPONSE_BYTES).then_some(4 + size)
}

/// Reads the correlation id at the front of a response frame without consuming it.
pub(crate) fn peek_correlation_id(frame: &Bytes) -> Result<i32, WireError> {
    if frame.len() < 4 {
        return Err(WireError::Decode {
            api: "any",
            detail: "a response frame is shorter than its header".into(),
        });
    }
    Ok(i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]))
}

/// Decodes a response frame (header and body) for request type `R` at `version`.
pub(crate) fn decode_response<R: Request>(
    mut frame: Bytes,
    version: i16,
) -> Result<R::Response, WireError> {
    let api = api_name(R::KEY);
    let err = |e: ProtocolCodecError| WireError::Decode {
        api,
        detail: e.to_string(),
    };
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    ResponseHeader::decode(&mut frame, header_version).map_err(err)?;
    R::Response::decode(&mut frame, version).map_err(err)
}

/// One request waiting for its response.
#[derive(Debug)]
pub(crate) struct Pending<T> {
    pub correlation_id: i32,
    pub reply: T,
}

/// How many correlation ids of requests sent without expecting a response are remembered.
const UNANSWERED_KEPT: usize = 1024;

/// The requests in flight on one connection, in the order they were sent.
#[derive(Debug)]
pub(crate) struct InFlight<T> {
    queue: VecDeque<Pending<T>>,
    next_correlation_id: i32,
    /// The latest requests sent without expecting a response (Produce with acks=0), oldest
    /// first. Kafka never answers them, but some Kafka-compatible brokers do (tansu 0.6):
    /// such an answer is dropped instead of breaking the connection.
    unanswered: VecDeque<i32>,
}

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        InFlight {
            queue: VecDeque::new(),
            next_correlation_id: 0,
            unanswered: VecDeque::new(),
        }
    }
}

impl<T> InFlight<T> {
    /// Allocates the next correlation id (wrapping, never negative).
    pub(crate) fn next_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.checked_add(1).unwrap_or(0);
        id
    }

    /// Records a sent request that expects a response.
    pub(crate) fn push(&mut self, pending: Pending<T>) {
        self.queue.push_back(pending);
    }

    /// Records a sent request that expects no response.
    pub(crate) fn push_unanswered(&mut self, correlation_id: i32) {
        if self.unanswered.len() == UNANSWERED_KEPT {
            self.unanswered.pop_front();
        }
        self.unanswered.push_back(correlation_id);
    }

    /// Matches a response to the oldest request, which must carry the same correlation id;
    /// `None` for an answer to a request sent without expecting one, which is dropped.
    pub(crate) fn complete(
        &mut self,
        correlation_id: i32,
    ) -> Result<Option<Pending<T>>, WireError> {
        match self.queue.front() {
            Some(p) if p.correlation_id == correlation_id => {
                return Ok(self.queue.pop_front());
            }
            _ => {}
        }
        if let Some(at) = self.unanswered.iter().position(|&id| id == correlation_id) {
            // Answers come in order: those sent before it will not be answered any more.
            self.unanswered.drain(..=at);
            return Ok(None);
        }
        match self.queue.front() {
            None => Err(WireError::Unsolicited(correlation_id)),
            Some(p) => Err(WireError::CorrelationMismatch {
                got: correlation_id,
                expected: p.correlation_id,
            }),
        }
    }

    /// Removes every waiting request (the connection is gone).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Pending<T>> + '_ {
        self.queue.drain(..)
    }

    /// Number of requests waiting.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests;
