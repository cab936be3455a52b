//! The record-stream connection driver: a client sends records in a record codec's format
//! (`framed`, `lines`, or a plugged-in codec from the codec registry) and each becomes a
//! Kafka record on the listener's one route. With `acks = true` every record is answered,
//! in order, once Kafka acknowledged it (or with a rejection); without, records are
//! produced without an answer.
//!
//! Record codecs carry no credentials: a listener with `auth = "client_cert"` takes the
//! verified TLS client certificate's common name as the principal (stamped as
//! `sluice.principal` when the route asks for `principal`), and its `acl` must allow the
//! route's topic, else the connection is closed before anything is read.
//!
//! Reads go through the shard's scratch buffer as for MQTT, so an idle connection holds no
//! read buffer; while the producer's budget is used up the connection stops reading.

use std::collections::VecDeque;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use bytes::BytesMut;
use codecs::registry::{Ack, CodecRegistry, RecordFrame};
use futures_lite::AsyncWriteExt;
use kafka_wire::record::Header;
use kafka_wire::{DeliveryFuture, ProducerRecord};
use tracing::debug;

use crate::auth::{Credentials, ShardAuth};
use crate::config::{codec_settings, ListenerConfig};
use crate::driver::{self, Input};
use crate::metrics::ErrorKind;
use crate::route::{ConnInfo, HeaderField, Routes};
use crate::runtime::TcpStream;
use crate::shard::Shard;
use crate::transport::Stream;

/// One stream listener of a shard.
#[derive(Debug)]
pub struct StreamListener {
    /// Index in the config (and in the metrics).
    pub index: usize,
    /// Settings.
    pub config: ListenerConfig,
    /// The listener's route.
    pub routes: Routes,
    /// Where codecs come from.
    pub registry: Arc<CodecRegistry>,
    /// Its authentication (client certificates) and ACL, with this shard's cache.
    pub auth: Option<ShardAuth>,
}

enum Event {
    Read(io::Result<usize>),
    Acked(
        Instant,
        Result<kafka_wire::RecordMetadata, kafka_wire::Error>,
    ),
    Shutdown,
}

/// Serves one client connection until it ends.
pub async fn serve(tcp: TcpStream, shard: Rc<Shard>, listener: Rc<StreamListener>) {
    let span = driver::conn_span!(listener, tcp, principal = tracing::field::Empty);
    let id = shard.next_conn_id();
    let driver = async {
        let mut stream = driver::secure(&listener.config, tcp).await?;
        let result = run(&mut stream, &shard, &listener, id).await;
        let _ = stream.close().await;
        result
    };
    driver::track(&shard, listener.index, span, driver).await;
    shard.shutdown.unregister(id);
}

async fn run(
    stream: &mut Stream,
    shard: &Rc<Shard>,
    listener: &StreamListener,
    id: u64,
) -> Result<(), (ErrorKind, String)> {
    let config = &listener.config;
    let name = config
        .codec
        .as_deref()
        .expect("validated: stream listeners name a codec");
    let mut codec = listener
        .registry
        .build(name, &codec_settings(&config.codec_settings))
        .map_err(|e| (ErrorKind::Protocol, e.to_string()))?;
    let route = listener.routes.single().expect("validated: one route");
    let mut info = ConnInfo::default();
    info.set_principal(authenticate(
        stream,
        listener.auth.as_ref(),
        &route.kafka_topic,
    )?);
    let lm = &shard.metrics.listeners[listener.index];
    let mut pending = BytesMut::new();
    let mut out = BytesMut::new();
    let mut acks: VecDeque<(Instant, DeliveryFuture)> = VecDeque::new();
    let mut key = Vec::new();
    let mut reading = true;
    loop {
        driver::flush(shard, listener.index, stream, &mut out)
            .await
            .map_err(|e| (ErrorKind::Io, e.to_string()))?;
        if !reading && acks.is_empty() {
            return Ok(());
        }
        let event = futures::future::poll_fn(|cx| {
            if let Some((received, front)) = acks.front_mut() {
                if let Poll::Ready(r) = Pin::new(front).poll(cx) {
                    let received = *received;
                    acks.pop_front();
                    return Poll::Ready(Event::Acked(received, r));
                }
            }
            if shard.shutdown.is_set() && reading {
                return Poll::Ready(Event::Shutdown);
            }
            shard.shutdown.register(id, cx);
            if reading {
                return driver::poll_read(shard, stream, cx).map(Event::Read);
            }
            Poll::Pending
        })
        .await;
        match event {
            Event::Shutdown => reading = false,
            Event::Read(Ok(0)) => reading = false,
            Event::Read(Err(e)) => return Err((ErrorKind::Io, e.to_string())),
            Event::Read(Ok(n)) => {
                lm.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                let mut data = Input::take(shard, &mut pending, n);
                let decoded = loop {
                    match codec.decode(&mut data) {
                        Ok(Some(frame)) => {
                            lm.frames_in.fetch_add(1, Ordering::Relaxed);
                            let delivery = produce(shard, route, &info, &frame, &mut key).await;
                            match delivery {
                                Ok(d) => acks.push_back((Instant::now(), d)),
                                Err(e) => {
                                    shard.metrics.records_failed.fetch_add(1, Ordering::Relaxed);
                                    if config.acks {
                                        let reason = e.to_string();
                                        let _ = codec.encode_ack(
                                            Ack::Rejected { reason: &reason },
                                            &mut out,
                                        );
                                    }
                                }
                            }
                        }
                        Ok(None) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                };
                pending = data.into_tail();
                if let Err(e) = decoded {
                    // Record protocols have no error answer: acknowledge what was accepted
                    // and close.
                    reading = false;
                    shard.metrics.error(ErrorKind::Protocol);
                    debug!(error = %e, "malformed input; closing after the pending acks");
                }
            }
            Event::Acked(received, result) => {
                // And every other record already acknowledged (`driver::next_acked`).
                let mut next = Some((received, result));
                while let Some((received, result)) = next.take() {
                    let m = &shard.metrics;
                    let ack = match &result {
                        Ok(_) => {
                            m.records_produced.fetch_add(1, Ordering::Relaxed);
                            m.produce_latency(received.elapsed());
                            Ack::Accepted
                        }
                        Err(_) => {
                            m.records_failed.fetch_add(1, Ordering::Relaxed);
                            Ack::Rejected {
                                reason: "Kafka did not accept the record",
                            }
                        }
                    };
                    if config.acks {
                        codec
                            .encode_ack(ack, &mut out)
                            .map_err(|e| (ErrorKind::Protocol, e.to_string()))?;
                    }
                    next = driver::next_acked(&mut acks);
                }
            }
        }
    }
}

/// The principal of a connection (`None` on a listener without `auth`), or why it is
/// refused: no usable certificate, or an ACL that does not let it write `topic`.
fn authenticate(
    stream: &Stream,
    auth: Option<&ShardAuth>,
    topic: &str,
) -> Result<Option<String>, (ErrorKind, String)> {
    let Some(auth) = auth else {
        return Ok(None);
    };
    let credentials = stream
        .peer_certificate()
        .map_or(Credentials::None, Credentials::Certificate);
    let principal = auth
        .verify(credentials)
        .map_err(|e| (ErrorKind::Auth, format!("authentication failed: {e}")))?;
    tracing::Span::current().record("principal", principal.as_deref());
    if !auth.topic_acl(principal.as_deref()).may_write(topic) {
        let who = principal.as_deref().unwrap_or("an anonymous client");
        return Err((
            ErrorKind::Auth,
            format!("the acl does not let {who:?} write topic {topic}"),
        ));
    }
    Ok(principal)
}

async fn produce(
    shard: &Shard,
    route: &crate::route::Route,
    info: &ConnInfo,
    frame: &RecordFrame,
    key: &mut Vec<u8>,
) -> kafka_wire::Result<DeliveryFuture> {
    let record_key = frame.key.as_deref();
    let key: Option<&[u8]> = if route.key.is_record_key() {
        record_key
    } else if route.key.is_empty() {
        None
    } else {
        route.key.render("", info, record_key, key);
        Some(key)
    };
    let mut headers: Vec<Header<'_>> = frame
        .headers
        .iter()
        .map(|(k, v)| Header {
            key: k,
            value: Some(v),
        })
        .collect();
    if route.headers.contains(&HeaderField::Listener) {
        headers.push(Header {
            key: "sluice.listener",
            value: Some(route.listener.as_bytes()),
        });
    }
    if let (true, Some(p)) = (
        route.headers.contains(&HeaderField::Principal),
        info.principal(),
    ) {
        headers.push(Header {
            key: "sluice.principal",
            value: Some(p.as_bytes()),
        });
    }
    shard
        .producer_for(route)
        .send(ProducerRecord {
            topic: &route.kafka_topic,
            partition: None,
            key,
            value: Some(&frame.value),
            headers: &headers,
            timestamp: None,
            partitioning: route.partitioning,
        })
        .await
}
