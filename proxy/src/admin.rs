//! The admin listener: `/metrics` (Prometheus text), `/healthz` (the process runs) and
//! `/readyz` (every shard has reached Kafka). It runs on shard 0, parses requests with the
//! HTTP codec and answers with `Connection: close` after each response.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use codecs::http::{HttpLimits, RequestDecoder};
use codecs::{Decoder, ProtocolError};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use crate::metrics::Metrics;
use crate::runtime::{self, TcpListener, TcpStream};

/// Serves admin requests until the listener fails.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let metrics = Rc::new(metrics);
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let metrics = metrics.clone();
                runtime::spawn(async move {
                    if let Err(e) = handle(stream, &metrics).await {
                        debug!(error = %e, "admin request failed");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                runtime::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn response(status: u16, reason: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn handle(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut decoder = RequestDecoder::new(HttpLimits {
        max_body_bytes: 0,
        ..HttpLimits::default()
    });
    let mut buf = BytesMut::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let request = loop {
        match decoder.decode(&mut buf) {
            Ok(Some(r)) => break r,
            Ok(None) => {}
            Err(e) => {
                let status = match e.answer() {
                    codecs::ErrorAnswer::HttpStatus(s) => s,
                    _ => 400,
                };
                let body = format!("{e}\n");
                stream
                    .write_all(&response(
                        status,
                        codecs::http::reason_phrase(status),
                        "text/plain",
                        &body,
                    ))
                    .await?;
                return Ok(());
            }
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let reply = match (request.method(), request.path()) {
        ("GET", "/metrics") => response(200, "OK", "text/plain; version=0.0.4", &metrics.render()),
        ("GET", "/healthz") => response(200, "OK", "text/plain", "ok\n"),
        ("GET", "/readyz") if metrics.ready() => response(200, "OK", "text/plain", "ready\n"),
        ("GET", "/readyz") => response(
            503,
            "Service Unavailable",
            "text/plain",
            "kafka not reachable yet\n",
        ),
        ("GET", _) => response(
            404,
            "Not Found",
            "text/plain",
            "try /metrics, /healthz or /readyz\n",
        ),
        _ => response(405, "Method Not Allowed", "text/plain", "only GET\n"),
    };
    stream.write_all(&reply).await?;
    stream.close().await
}
