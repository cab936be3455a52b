//! One connection to one broker, driven over TCP or TLS.
//!
//! A [`Connection`] is a cheap handle (shard-local, `Rc`) that many tasks share: each
//! request is encoded straight into the connection's write buffer, registered in the
//! in-flight queue ([`crate::protocol::InFlight`]), and answered when the reader task sees its
//! response. Several requests may be in flight at once. A request that gets no answer within
//! the request timeout closes the connection (responses are ordered, so one lost response
//! makes every later one unusable), and when the stream breaks every waiting request fails
//! at once with the reason, never hangs.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};
use tracing::{debug, warn};

use crate::error::{check, Context, Error, KafkaCode, Result};
use crate::protocol::{self, ApiVersions, InFlight, Pending};
use crate::read_buffer::ReadBuffer;
use crate::rt;
use crate::sasl::{SaslConfig, SaslSession, SaslStep};
use crate::trim::Trim;

/// How to open a connection: identity, timeouts and security.
#[derive(Clone, Debug)]
pub(crate) struct ConnectOptions {
    pub client_id: StrBytes,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub tls_server_name: Option<String>,
    pub sasl: Option<SaslConfig>,
}

trait Stream: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Stream for T {}

type Reply = oneshot::Sender<Result<Bytes>>;

/// The write buffers' usual size.
const WRITE_BUFFER: usize = 16 * 1024;

struct Shared {
    versions: ApiVersions,
    in_flight: InFlight<Reply>,
    write_buf: BytesMut,
    writer_waker: Option<Waker>,
    closed: Option<Error>,
    stop_reader: Option<oneshot::Sender<()>>,
}

/// A connection to one broker, shared by the tasks of one shard.
#[derive(Clone)]
pub struct Connection {
    shared: Rc<RefCell<Shared>>,
    addr: Arc<str>,
    client_id: StrBytes,
    request_timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.shared.borrow();
        f.debug_struct("Connection")
            .field("broker", &self.addr)
            .field("in_flight", &s.in_flight.len())
            .field("closed", &s.closed.is_some())
            .finish()
    }
}

impl Connection {
    /// Connects to `addr`, negotiates API versions and authenticates.
    pub(crate) async fn open(
        name: Arc<str>,
        addr: SocketAddr,
        options: &ConnectOptions,
    ) -> Result<Connection> {
        let ctx = || Context::broker(&name);
        let tcp = rt::connect(addr, options.connect_timeout)
            .await
            .map_err(|e| Error::io(e, ctx()))?;
        let stream: Box<dyn Stream> = match &options.tls {
            None => Box::new(tcp),
            Some(config) => {
                let host = options
                    .tls_server_name
                    .clone()
                    .unwrap_or_else(|| host_of(&name).to_owned());
                let server_name = rustls::pki_types::ServerName::try_from(host).map_err(|e| {
                    Error::Config(Arc::from(format!(
                        "invalid TLS server name for {name}: {e}"
                    )))
                })?;
                let connector = futures_rustls::TlsConnector::from(config.clone());
                let handshake = connector.connect(server_name, tcp);
                let tls = rt::timeout(options.connect_timeout, handshake)
                    .await
                    .ok_or_else(|| Error::Timeout {
                        api: "TLS handshake",
                        after: options.connect_timeout,
                        context: ctx(),
                    })?
                    .map_err(|e| Error::io(e, ctx()))?;
                Box::new(tls)
            }
        };
        let conn = Connection::start(name.clone(), stream, options);
        conn.negotiate_versions().await?;
        if let Some(sasl) = &options.sasl {
            conn.authenticate(sasl).await?;
        }
        debug!(broker = %name, "connected");
        Ok(conn)
    }

    fn start(addr: Arc<str>, stream: Box<dyn Stream>, options: &ConnectOptions) -> Connection {
        let (reader, writer) = stream.split();
        let (stop_tx, stop_rx) = oneshot::channel();
        let conn = Connection {
            shared: Rc::new(RefCell::new(Shared {
                versions: ApiVersions::unnegotiated(),
                in_flight: InFlight::default(),
                write_buf: BytesMut::with_capacity(WRITE_BUFFER),
                writer_waker: None,
                closed: None,
                stop_reader: Some(stop_tx),
            })),
            addr,
            client_id: options.client_id.clone(),
            request_timeout: options.request_timeout,
        };
        rt::spawn(conn.clone().write_loop(writer));
        rt::spawn(conn.clone().read_loop(reader, stop_rx));
        conn
    }

    /// The broker's `host:port`.
    pub fn broker(&self) -> &Arc<str> {
        &self.addr
    }

    /// Whether the connection has closed (it cannot be used again).
    pub fn is_closed(&self) -> bool {
        self.shared.borrow().closed.is_some()
    }

    /// Number of requests waiting for a response.
    pub fn in_flight(&self) -> usize {
        self.shared.borrow().in_flight.len()
    }

    /// The negotiated version of `key`, if the broker supports one we implement.
    pub(crate) fn version(&self, key: ApiKey) -> Option<i16> {
        self.shared.borrow().versions.version(key)
    }

    fn context(&self) -> Context {
        Context::broker(&self.addr)
    }

    /// Sends `request` at the negotiated version and waits for its response.
    pub async fn request<R: Request>(&self, request: &R) -> Result<R::Response> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| self.unsupported(R::KEY))?;
        let version = self.version(key).ok_or_else(|| self.unsupported(R::KEY))?;
        self.request_at(request, version).await
    }

    /// Sends `request` at `version` and waits for its response.
    pub(crate) async fn request_at<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<R::Response> {
        let reply = self
            .enqueue(request, version, true)?
            .expect("a reply was asked for");
        let api = protocol::api_name(R::KEY);
        let frame = match rt::timeout(self.request_timeout, reply).await {
            None => {
                let err = Error::Timeout {
                    api,
                    after: self.request_timeout,
                    context: self.context(),
                };
                self.close(err.clone());
                return Err(err);
            }
            Some(Err(_canceled)) => return Err(self.closed_error()),
            Some(Ok(result)) => result?,
        };
        protocol::decode_response::<R>(frame, version)
            .map_err(|e| Error::protocol(e.to_string(), self.context()))
    }

    /// Sends `request` without waiting for (or expecting) a response: Produce with acks=0.
    pub(crate) fn send_only<R: Request>(&self, request: &R) -> Result<()> {
        let key = ApiKey::try_from(R::KEY).map_err(|_| self.unsupported(R::KEY))?;
        let version = self.version(key).ok_or_else(|| self.unsupported(R::KEY))?;
        self.enqueue(request, version, false).map(|_| ())
    }

    fn unsupported(&self, key: i16) -> Error {
        Error::UnsupportedVersion {
            api: protocol::api_name(key),
            context: self.context(),
        }
    }

    fn closed_error(&self) -> Error {
        self.shared
            .borrow()
            .closed
            .clone()
            .unwrap_or_else(|| Error::Disconnected {
                reason: Arc::from("the connection was dropped"),
                context: self.context(),
            })
    }

    fn enqueue<R: Request>(
        &self,
        request: &R,
        version: i16,
        expect_reply: bool,
    ) -> Result<Option<oneshot::Receiver<Result<Bytes>>>> {
        let mut s = self.shared.borrow_mut();
        if let Some(err) = &s.closed {
            return Err(err.clone());
        }
        let correlation_id = s.in_flight.next_correlation_id();
        let mark = s.write_buf.len();
        if let Err(e) = protocol::encode_request(
            &mut s.write_buf,
            request,
            version,
            correlation_id,
            &self.client_id,
        ) {
            s.write_buf.truncate(mark);
            return Err(Error::protocol(e.to_string(), self.context()));
        }
        let rx = if expect_reply {
            let (tx, rx) = oneshot::channel();
            s.in_flight.push(Pending {
                correlation_id,
                reply: tx,
            });
            Some(rx)
        } else {
            s.in_flight.push_unanswered(correlation_id);
            None
        };
        if let Some(w) = s.writer_waker.take() {
            w.wake();
        }
        Ok(rx)
    }

    /// Closes the connection: every waiting request fails with `reason`.
    pub fn close(&self, reason: Error) {
        let (pending, stop) = {
            let mut s = self.shared.borrow_mut();
            if s.closed.is_some() {
                return;
            }
            s.closed = Some(reason.clone());
            let pending: Vec<_> = s.in_flight.drain().collect();
            if let Some(w) = s.writer_waker.take() {
                w.wake();
            }
            (pending, s.stop_reader.take())
        };
        if !pending.is_empty() {
            warn!(broker = %self.addr, waiting = pending.len(), error = %reason, "connection closed with requests in flight");
        }
        for p in pending {
            let _ = p.reply.send(Err(reason.clone()));
        }
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
    }

    async fn write_loop(self, mut writer: WriteHalf<Box<dyn Stream>>) {
        let mut out = BytesMut::with_capacity(WRITE_BUFFER);
        // `out` and the shared `write_buf` swap at every write, so trimming `out` after
        // each write reaches both.
        let mut trim = Trim::new(WRITE_BUFFER);
        loop {
            let more = futures::future::poll_fn(|cx| {
                let mut s = self.shared.borrow_mut();
                if s.closed.is_some() {
                    return Poll::Ready(false);
                }
                if s.write_buf.is_empty() {
                    s.writer_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                std::mem::swap(&mut out, &mut s.write_buf);
                Poll::Ready(true)
            })
            .await;
            if !more {
                break;
            }
            let written = async {
                writer.write_all(&out).await?;
                writer.flush().await
            }
            .await;
            if let Err(e) = written {
                self.close(Error::io(e, self.context()));
                break;
            }
            let held = out.len();
            out.clear();
            trim.after_use(&mut out, held);
        }
        let _ = writer.close().await;
    }

    async fn read_loop(self, mut reader: ReadHalf<Box<dyn Stream>>, stop: oneshot::Receiver<()>) {
        let mut stop = stop;
        let mut buf = ReadBuffer::new();
        let mut scratch = vec![0u8; ReadBuffer::USUAL];
        loop {
            let read = {
                let read = std::pin::pin!(reader.read(&mut scratch[..buf.want()]));
                match futures::future::select(read, &mut stop).await {
                    futures::future::Either::Left((r, _)) => r,
                    futures::future::Either::Right(_) => return,
                }
            };
            let n = match read {
                Ok(0) => {
                    self.close(Error::Disconnected {
                        reason: Arc::from("the broker closed the connection"),
                        context: self.context(),
                    });
                    return;
                }
                Ok(n) => n,
                Err(e) => {
                    self.close(Error::io(e, self.context()));
                    return;
                }
            };
            buf.filled(&scratch[..n]);
            if let Err(e) = self.dispatch(&mut buf) {
                self.close(e);
                return;
            }
        }
    }

    /// Hands every whole response frame in `buf` to the request waiting for it.
    fn dispatch(&self, buf: &mut ReadBuffer) -> Result<()> {
        let protocol_err = |e: protocol::WireError| Error::protocol(e.to_string(), self.context());
        while let Some(frame) = buf.next_frame().map_err(protocol_err)? {
            let correlation_id = protocol::peek_correlation_id(&frame).map_err(protocol_err)?;
            let pending = self
                .shared
                .borrow_mut()
                .in_flight
                .complete(correlation_id)
                .map_err(protocol_err)?;
            // `None`: an answer to a request sent without expecting one, dropped. The caller
            // may have given up (dropped its future); that is not an error either.
            if let Some(pending) = pending {
                let _ = pending.reply.send(Ok(frame));
            }
        }
        Ok(())
    }

    async fn negotiate_versions(&self) -> Result<()> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice-kafka-wire"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        // Ask at our highest version; a broker that does not know it answers with
        // UNSUPPORTED_VERSION in the v0 format, and we ask again at v0.
        let response = match self.request_at(&request, 3).await {
            Ok(r) if r.error_code == 0 => r,
            Ok(r) if r.error_code == KafkaCode::UnsupportedVersion.code() => {
                self.request_at(&request, 0).await?
            }
            Ok(r) => {
                check(r.error_code, None, || self.context())?;
                r
            }
            Err(Error::Protocol { .. }) if !self.is_closed() => {
                self.request_at(&request, 0).await?
            }
            Err(e) => return Err(e),
        };
        check(response.error_code, None, || self.context())?;
        self.shared.borrow_mut().versions = ApiVersions::from_response(&response);
        Ok(())
    }

    async fn authenticate(&self, config: &SaslConfig) -> Result<()> {
        let sasl_err = |e| Error::Sasl {
            source: Arc::new(e),
            context: self.context(),
        };
        let handshake = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(config.mechanism.name()));
        let response = self.request(&handshake).await?;
        check(response.error_code, None, || self.context()).map_err(|e| {
            let offered: Vec<&str> = response.mechanisms.iter().map(|m| m.as_str()).collect();
            Error::Config(Arc::from(format!(
                "{e}; the broker offers the SASL mechanisms [{}]",
                offered.join(", ")
            )))
        })?;
        let mut session = SaslSession::new(config);
        let mut message = session.initial_response();
        loop {
            let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message));
            let response = self.request(&request).await?;
            check(
                response.error_code,
                response.error_message.as_deref(),
                || self.context(),
            )?;
            match session.step(&response.auth_bytes).map_err(sasl_err)? {
                SaslStep::Respond(next) => message = next,
                SaslStep::Done => break,
            }
        }
        debug!(broker = %self.addr, mechanism = %config.mechanism, "authenticated");
        Ok(())
    }
}

/// The host part of `host:port` (IPv6 literals in brackets included).
fn host_of(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    }
}
