//! The client side of sluice's record listeners, for publishers that are not MQTT: a
//! length-prefixed (`--wire framed`), raw WebSocket (`--wire ws`) or HTTP (`--wire http`:
//! one `POST` per record, pipelined) connection writes one record per message and reads
//! one answer per record, in order, once Kafka has it. The framed and WebSocket sides come
//! from the codecs crate; HTTP's request and response heads are a few lines here.

use bytes::{Bytes, BytesMut};
use codecs::framed::{FramedCodec, FramedConfig, FramedRecord, LengthPrefix};
use codecs::ws::{Frame, FrameDecoder, FrameEncoder, MaskSource, Opcode, Role};
use codecs::{Decoder, Encoder};
use futures::AsyncWriteExt;
use glommio::net::TcpStream;

use super::conn::{read_some, Failure};
use super::Wire;

/// The WebSocket key of every upgrade (RFC 6455's example nonce): sluice checks its form,
/// and the load generator checks the accept value the server derives from it.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The longest upgrade response the load generator reads.
const MAX_RESPONSE_HEAD: usize = 4096;
/// The largest answer frame accepted (answers are a few dozen bytes of JSON).
const MAX_ANSWER: usize = 64 * 1024;

/// How one connection writes records and reads their answers.
#[derive(Debug)]
pub enum RecordClient {
    /// The bench's framed listener: a u32 prefix and a key header on records; answers in
    /// the same prefix, without a key: one status byte, 0 for accepted.
    Framed {
        records: FramedCodec,
        answers: FramedCodec,
    },
    /// Binary messages, masked; each answered with a text message,
    /// `{"partition":P,"offset":O}` or `{"error":…}`.
    Ws {
        frames: FrameEncoder,
        answers: FrameDecoder,
    },
    /// `POST {path}` with the record as the body and its key in `Sluice-Key`; each
    /// answered `200` with its partition and offset.
    Http { path: String },
}

impl RecordClient {
    /// The client of `wire` for connection `index` (`path`: the WebSocket upgrade's or the
    /// HTTP requests' path); `None` for MQTT.
    pub fn new(wire: Wire, index: u64, path: &str) -> Option<RecordClient> {
        match wire {
            Wire::Mqtt => None,
            Wire::Framed => {
                let config = FramedConfig {
                    prefix: LengthPrefix::U32,
                    keyed: true,
                    ..FramedConfig::default()
                };
                Some(RecordClient::Framed {
                    records: FramedCodec::new(config),
                    answers: FramedCodec::new(FramedConfig {
                        keyed: false,
                        ..config
                    }),
                })
            }
            Wire::Ws => Some(RecordClient::Ws {
                frames: FrameEncoder::client(MaskSource::new(index.wrapping_add(1))),
                answers: FrameDecoder::new(Role::Client, MAX_ANSWER),
            }),
            Wire::Http => Some(RecordClient::Http {
                path: path.to_owned(),
            }),
        }
    }

    /// Appends one record (`key` is used where the wire carries one).
    pub fn encode(&mut self, key: &Bytes, value: &[u8], out: &mut BytesMut) {
        match self {
            RecordClient::Framed { records, .. } => {
                let record = FramedRecord {
                    key: Some(key.clone()),
                    value: Bytes::copy_from_slice(value),
                };
                records.encode(record, out).expect("a record encodes");
            }
            RecordClient::Ws { frames, .. } => frames
                .encode(Frame::binary(Bytes::copy_from_slice(value)), out)
                .expect("a binary frame encodes"),
            RecordClient::Http { path } => {
                use std::fmt::Write as _;
                let mut head = String::with_capacity(128);
                let _ = write!(
                    head,
                    "POST {path} HTTP/1.1\r\nHost: sluice\r\nSluice-Key: {}\r\nContent-Length: {}\r\n\r\n",
                    String::from_utf8_lossy(key),
                    value.len()
                );
                out.extend_from_slice(head.as_bytes());
                out.extend_from_slice(value);
            }
        }
    }

    /// The next answer in `buf`: `Some(())` for an accepted record, `None` when more bytes
    /// are needed, an error for a refused record or anything else (a close, a bad frame).
    pub fn next_answer(&mut self, buf: &mut BytesMut) -> Result<Option<()>, ()> {
        match self {
            RecordClient::Framed { answers, .. } => match answers.decode(buf) {
                Ok(Some(a)) if a.value.first() == Some(&0) => Ok(Some(())),
                Ok(Some(_)) | Err(_) => Err(()),
                Ok(None) => Ok(None),
            },
            RecordClient::Ws { answers, .. } => match answers.decode_mut(buf) {
                Ok(Some(f))
                    if f.opcode == Opcode::Text && f.payload.starts_with(b"{\"partition\"") =>
                {
                    Ok(Some(()))
                }
                Ok(Some(_)) | Err(_) => Err(()),
                Ok(None) => Ok(None),
            },
            RecordClient::Http { .. } => match response(buf)? {
                Some(200) => Ok(Some(())),
                Some(_) => Err(()),
                None => Ok(None),
            },
        }
    }
}

/// Takes the next whole HTTP response off `buf` and returns its status; `None` while it is
/// incomplete; an error for one that cannot be read (no `Content-Length`, a head too long).
fn response(buf: &mut BytesMut) -> Result<Option<u16>, ()> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_RESPONSE_HEAD {
            Err(())
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| ())?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or(())?;
    let body: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .ok_or(())?;
    let whole = end + 4 + body;
    if buf.len() < whole {
        return Ok(None);
    }
    let _ = buf.split_to(whole);
    Ok(Some(status))
}

/// The WebSocket upgrade on `path`: the request, then a `101` whose accept value matches
/// [`WS_KEY`]. Bytes after the response's head (early frames) stay in `rbuf`.
pub async fn upgrade(
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    path: &str,
) -> Result<(), Failure> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: sluice\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    // The first write waits for the non-blocking connect to complete.
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|_| Failure::Closed)?;
    let head_len = loop {
        if let Some(end) = rbuf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if rbuf.len() > MAX_RESPONSE_HEAD {
            return Err(Failure::Closed);
        }
        if read_some(stream, rbuf, 1024).await.unwrap_or(0) == 0 {
            return Err(Failure::Closed);
        }
    };
    let head = rbuf.split_to(head_len);
    accepted(&head).then_some(()).ok_or(Failure::Refused)
}

/// Whether an upgrade response's head switches protocols with the accept value of
/// [`WS_KEY`].
fn accepted(head: &[u8]) -> bool {
    let Ok(head) = std::str::from_utf8(head) else {
        return false;
    };
    let mut lines = head.split("\r\n");
    let switching = lines
        .next()
        .is_some_and(|status| status.split(' ').nth(1) == Some("101"));
    let expected = codecs::ws::handshake::accept_key(WS_KEY);
    switching
        && lines.any(|l| {
            l.split_once(':').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == expected
            })
        })
}

#[cfg(test)]
mod tests {
    use codecs::registry::Ack;
    use codecs::ws::UpgradeRequest;

    use super::*;

    /// What a framed publisher writes is what sluice's listener (u32 prefix, key header)
    /// reads, and sluice's answers read back as accepted or not, in order.
    #[test]
    fn framed_records_and_answers_round_trip_with_the_listener_codec() {
        let mut client = RecordClient::new(Wire::Framed, 7, "").unwrap();
        let mut listener = FramedCodec::new(FramedConfig {
            prefix: LengthPrefix::U32,
            keyed: true,
            ..FramedConfig::default()
        });
        let mut wire = BytesMut::new();
        let key = Bytes::from_static(b"bench/7");
        client.encode(&key, b"first", &mut wire);
        client.encode(&key, b"second", &mut wire);
        let first = listener.decode(&mut wire).unwrap().unwrap();
        let second = listener.decode(&mut wire).unwrap().unwrap();
        assert_eq!(first.key.as_deref(), Some(&b"bench/7"[..]));
        assert_eq!(
            (&first.value[..], &second.value[..]),
            (&b"first"[..], &b"second"[..])
        );

        let mut answers = BytesMut::new();
        listener.encode_ack(Ack::Accepted, &mut answers).unwrap();
        listener
            .encode_ack(Ack::Rejected { reason: "no" }, &mut answers)
            .unwrap();
        assert_eq!(client.next_answer(&mut answers), Ok(Some(())));
        assert_eq!(client.next_answer(&mut answers), Err(()));
        assert_eq!(client.next_answer(&mut answers), Ok(None));
    }

    /// A WebSocket publisher's messages are masked binary frames a server decodes; the
    /// server's offset answers are accepted, its error answers and close frames are not.
    #[test]
    fn websocket_messages_and_answers_round_trip_with_the_server_codecs() {
        let mut client = RecordClient::new(Wire::Ws, 3, "/topics/t").unwrap();
        let mut wire = BytesMut::new();
        client.encode(&Bytes::new(), b"payload", &mut wire);
        let frame = FrameDecoder::new(Role::Server, 1 << 20)
            .decode_mut(&mut wire)
            .unwrap()
            .unwrap();
        assert_eq!(frame.opcode, Opcode::Binary);
        assert!(frame.mask.is_some(), "a client's frames are masked");
        assert_eq!(&frame.payload[..], b"payload");

        let mut server = FrameEncoder::server();
        let mut answers = BytesMut::new();
        for text in [
            &b"{\"partition\":0,\"offset\":41}"[..],
            b"{\"error\":\"no\",\"status\":503}",
        ] {
            server
                .encode(Frame::text(Bytes::copy_from_slice(text)), &mut answers)
                .unwrap();
        }
        server
            .encode(Frame::close(1001, "bye"), &mut answers)
            .unwrap();
        assert_eq!(client.next_answer(&mut answers), Ok(Some(())));
        assert_eq!(client.next_answer(&mut answers), Err(()));
        assert_eq!(client.next_answer(&mut answers), Err(()));
    }

    /// An HTTP publisher's request is one record with its key; pipelined answers are read
    /// one by one, whole, and only a 200 counts.
    #[test]
    fn http_requests_carry_one_record_and_answers_are_read_whole_in_order() {
        let mut client = RecordClient::new(Wire::Http, 0, "/topics/t").unwrap();
        let mut wire = BytesMut::new();
        client.encode(&Bytes::from_static(b"bench/0"), b"abc", &mut wire);
        assert_eq!(
            &wire[..],
            &b"POST /topics/t HTTP/1.1\r\nHost: sluice\r\nSluice-Key: bench/0\r\nContent-Length: 3\r\n\r\nabc"[..]
        );
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 26\r\n\r\n{\"partition\":0,\"offset\":7}";
        let busy =
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\nRetry-After: 1\r\n\r\n{}";
        let mut answers = BytesMut::new();
        answers.extend_from_slice(&ok[..ok.len() - 3]);
        assert_eq!(
            client.next_answer(&mut answers),
            Ok(None),
            "a partial body waits"
        );
        answers.extend_from_slice(&ok[ok.len() - 3..]);
        answers.extend_from_slice(busy);
        assert_eq!(client.next_answer(&mut answers), Ok(Some(())));
        assert_eq!(client.next_answer(&mut answers), Err(()));
        assert!(answers.is_empty());
    }

    /// The upgrade accepts a `101` carrying the accept value of its key, and nothing else.
    #[test]
    fn an_upgrade_response_must_switch_protocols_with_the_right_accept_value() {
        let request = UpgradeRequest {
            path: "/topics/t".to_owned(),
            host: "sluice".to_owned(),
            origin: None,
            key: WS_KEY.to_owned(),
            offered_protocols: Vec::new(),
            selected_protocol: None,
        };
        let mut head = BytesMut::new();
        request.write_accept(&mut head);
        assert!(accepted(&head));
        let wrong = String::from_utf8(head.to_vec())
            .unwrap()
            .replace(&request.accept_key(), "AAAA");
        assert!(!accepted(wrong.as_bytes()));
        assert!(!accepted(b"HTTP/1.1 404 Not Found\r\n\r\n"));
    }
}
