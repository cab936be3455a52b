//! Client transports: plain TCP, or TLS terminated with rustls. Drivers read and write a
//! [`Stream`] and never know which one they hold; the TLS handshake runs in the
//! connection's own task, before its driver starts, bounded by a deadline.
//!
//! A TLS connection costs more memory than a plain one, idle or not: rustls keeps its
//! connection state and record buffers per connection. The idle-memory figures in
//! docs/benchmarks.md are for plain TCP.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{select, Either};
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use futures_rustls::TlsAcceptor;
use kafka_wire::tls::{self as pem, TlsFile};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use serde::Deserialize;

use crate::config::ListenerConfig;
use crate::runtime::{self, TcpStream};

/// `[listeners.tls]`: terminate TLS on this listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, RSA or SEC1).
    pub key_file: PathBuf,
    /// PEM CA bundle to verify client certificates against; absent: no client certificates.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// With `client_ca_file`: refuse clients that present no certificate (otherwise a
    /// certificate is verified when one is presented).
    #[serde(default = "default_true")]
    pub require_client_cert: bool,
    /// ALPN protocols offered, in order of preference (e.g. `["mqtt"]`); empty: no ALPN.
    #[serde(default)]
    pub alpn: Vec<String>,
    /// Time allowed for the TLS handshake.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_ms: u64,
}

fn default_true() -> bool {
    true
}
fn default_handshake_timeout() -> u64 {
    10_000
}

impl ListenerTls {
    /// Reads the files and builds the rustls server configuration. The error is a sentence
    /// naming the file and what is wrong with it.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, String> {
        let chain = pem::certificates(TlsFile::ServerCertificate, &self.cert_file)
            .map_err(|e| e.to_string())?;
        let key =
            pem::private_key(TlsFile::ServerKey, &self.key_file).map_err(|e| e.to_string())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let roots =
                    pem::ca_roots_from(TlsFile::ClientCa, path).map_err(|e| e.to_string())?;
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider);
                let verifier = if self.require_client_cert {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("the certificate and key do not go together: {e}"))?;
        config.alpn_protocols = self.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// Turns a socket accepted on `listener` into its driver's stream: as is, or after the TLS
/// handshake when the listener terminates TLS.
pub async fn accept(listener: &ListenerConfig, tcp: TcpStream) -> io::Result<Stream> {
    let (Some(config), Some(tls)) = (&listener.tls_config, &listener.tls) else {
        return Ok(Stream::Tcp(tcp));
    };
    let handshake = std::pin::pin!(TlsAcceptor::from(config.clone()).accept(tcp));
    let timer = std::pin::pin!(runtime::sleep(Duration::from_millis(
        tls.handshake_timeout_ms
    )));
    match select(handshake, timer).await {
        Either::Left((Ok(tls), _)) => Ok(Stream::Tls(Box::new(tls))),
        Either::Left((Err(e), _)) => Err(e),
        Either::Right(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the TLS handshake did not finish in time",
        )),
    }
}

/// A client connection as its driver sees it.
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<futures_rustls::server::TlsStream<TcpStream>>),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stream::Tcp(_) => "Stream::Tcp",
            Stream::Tls(_) => "Stream::Tls",
        })
    }
}

impl Stream {
    /// Ends our direction of the connection (TLS: after a close_notify), leaving the read
    /// side open so the client can still be drained.
    pub async fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s
                .shutdown(std::net::Shutdown::Write)
                .await
                .map_err(io::Error::from),
            Stream::Tls(s) => s.close().await,
        }
    }

    /// The client's TLS certificate (DER, leaf), verified in the handshake; `None` on plain
    /// TCP or when the client presented none.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        match self {
            Stream::Tcp(_) => None,
            Stream::Tls(s) => s
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|c| c.as_ref()),
        }
    }

    /// Writes all of `buf` and pushes it to the socket (TLS buffers records until flushed).
    pub async fn write_flushed(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_all(buf).await?;
        self.flush().await
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_close(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}
