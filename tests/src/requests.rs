//! Reading the Kafka requests that clients send through an observing [`crate::ChaosProxy`],
//! so a test can check what went on the wire (a Produce request's acks, its topics) rather
//! than only how the client behaved.
//!
//! The relay hands each chunk it reads from a client to a [`RequestReader`] before
//! forwarding it unchanged. The reader cuts the chunks into Kafka's length-prefixed request
//! frames and decodes them with `kafka-protocol`, independent of sluice's `kafka-wire`: the
//! header with the version the API key and version call for (flexible versions carry tagged
//! fields), and Produce requests' bodies. A frame it cannot decode is logged as an error,
//! for the test to fail on; the bytes are relayed all the same.

use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader};
use kafka_protocol::protocol::Decodable;

/// Frames larger than this are taken for a broken stream, not a request (Kafka's own
/// default `socket.request.max.bytes` is 100 MiB).
const MAX_FRAME: usize = 100 * 1024 * 1024;

/// One Produce request a client sent through the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedProduce {
    /// The relayed connection it came on, numbered from 1 in accept order.
    pub connection: u64,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// 0, 1 or -1 (all), as the request carries it.
    pub acks: i16,
    /// The request's topics, in request order.
    pub topics: Vec<String>,
}

/// What the relay saw: Produce requests and frames it could not decode.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    produce: Mutex<Vec<ObservedProduce>>,
    errors: Mutex<Vec<String>>,
}

impl RequestLog {
    pub(crate) fn produce_requests(&self) -> Vec<ObservedProduce> {
        self.produce.lock().expect("lock").clone()
    }

    pub(crate) fn errors(&self) -> Vec<String> {
        self.errors.lock().expect("lock").clone()
    }
}

/// Cuts one connection's client → broker bytes into request frames and logs them.
#[derive(Debug)]
pub(crate) struct RequestReader {
    connection: u64,
    pending: BytesMut,
    log: Arc<RequestLog>,
    /// Set after a frame length that cannot be right: the rest is not parsed.
    lost: bool,
}

impl RequestReader {
    pub(crate) fn new(connection: u64, log: Arc<RequestLog>) -> RequestReader {
        RequestReader {
            connection,
            pending: BytesMut::new(),
            log,
            lost: false,
        }
    }

    /// Takes the next bytes the client sent and logs every request they complete.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.lost {
            return;
        }
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= 4 {
            let len = i32::from_be_bytes(self.pending[..4].try_into().expect("4 bytes"));
            let len = match usize::try_from(len) {
                Ok(n) if n <= MAX_FRAME => n,
                _ => {
                    self.error(format!(
                        "a request frame of {len} bytes; not parsing further"
                    ));
                    self.lost = true;
                    self.pending.clear();
                    return;
                }
            };
            if self.pending.len() < 4 + len {
                return;
            }
            self.pending.advance(4);
            let frame = self.pending.split_to(len).freeze();
            if let Err(e) = self.request(frame) {
                self.error(format!("{e:#}"));
            }
        }
    }

    fn request(&self, mut frame: Bytes) -> Result<()> {
        if frame.len() < 4 {
            bail!("a request frame of {} bytes has no header", frame.len());
        }
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let api = ApiKey::try_from(key).map_err(|()| anyhow!("unknown API key {key}"))?;
        let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
            .with_context(|| format!("{api:?} v{version} request header"))?;
        if api != ApiKey::Produce {
            return Ok(());
        }
        let produce = ProduceRequest::decode(&mut frame, version).with_context(|| {
            format!(
                "Produce v{version} request, correlation id {}",
                header.correlation_id
            )
        })?;
        self.log
            .produce
            .lock()
            .expect("lock")
            .push(ObservedProduce {
                connection: self.connection,
                api_version: version,
                correlation_id: header.correlation_id,
                client_id: header.client_id.map(|s| s.to_string()),
                acks: produce.acks,
                topics: produce
                    .topic_data
                    .iter()
                    .map(|t| t.name.to_string())
                    .collect(),
            });
        Ok(())
    }

    fn error(&self, what: String) {
        self.log
            .errors
            .lock()
            .expect("lock")
            .push(format!("connection {}: {what}", self.connection));
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::produce_request::TopicProduceData;
    use kafka_protocol::messages::{ApiVersionsRequest, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::*;

    /// A request frame as a client writes it: length, header, body.
    fn frame(api: ApiKey, version: i16, correlation_id: i32, body: &impl Encodable) -> Vec<u8> {
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("t")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let mut out = (buf.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(&buf);
        out
    }

    fn produce(acks: i16, topics: &[&str]) -> ProduceRequest {
        ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(5000)
            .with_topic_data(
                topics
                    .iter()
                    .map(|t| {
                        TopicProduceData::default()
                            .with_name(TopicName(StrBytes::from_string((*t).to_owned())))
                    })
                    .collect(),
            )
    }

    #[test]
    fn frames_split_anywhere_are_read_with_flexible_and_fixed_headers() {
        let mut bytes = frame(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default());
        bytes.extend(frame(ApiKey::Produce, 9, 2, &produce(0, &["a", "b"])));
        bytes.extend(frame(ApiKey::Produce, 8, 3, &produce(-1, &["c"])));
        for chunk in [1, 3, 7, bytes.len()] {
            let log = Arc::new(RequestLog::default());
            let mut reader = RequestReader::new(1, log.clone());
            for piece in bytes.chunks(chunk) {
                reader.feed(piece);
            }
            assert_eq!(log.errors(), Vec::<String>::new());
            let seen: Vec<_> = log
                .produce_requests()
                .into_iter()
                .map(|p| (p.api_version, p.correlation_id, p.acks, p.topics))
                .collect();
            assert_eq!(
                seen,
                [
                    (9, 2, 0, vec!["a".to_owned(), "b".to_owned()]),
                    (8, 3, -1, vec!["c".to_owned()]),
                ],
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn a_frame_that_does_not_decode_is_an_error() {
        let log = Arc::new(RequestLog::default());
        let mut reader = RequestReader::new(7, log.clone());
        let mut bad = frame(ApiKey::Produce, 9, 1, &produce(1, &["a"]));
        bad.truncate(bad.len() - 3);
        let len = (bad.len() - 4) as i32;
        bad[..4].copy_from_slice(&len.to_be_bytes());
        reader.feed(&bad);
        reader.feed(&[0xff, 0xff, 0xff, 0xff]);
        let errors = log.errors();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("connection 7: Produce v9 request"));
        assert!(log.produce_requests().is_empty());
    }
}
