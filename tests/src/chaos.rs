//! A TCP relay that tests can cut: every connection through it can be broken at once, the
//! way a network partition or a broker crash breaks them, while the broker keeps running.
//!
//! Put it in front of the broker and make the broker advertise the relay's address
//! ([`crate::BrokerBuilder::behind`]), so that every client connection goes through it.
//!
//! Started with [`ChaosProxy::start_observing`], it also reads the requests clients send
//! (`requests.rs`) and keeps the Produce requests for the test to inspect, relaying
//! every byte unchanged.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::requests::{ObservedProduce, RequestLog, RequestReader};

/// A relay from a local port to `upstream`.
#[derive(Debug)]
pub struct ChaosProxy {
    addr: SocketAddr,
    upstream: Arc<Mutex<Option<SocketAddr>>>,
    live: Arc<Mutex<Vec<TcpStream>>>,
    stopped: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    requests: Option<Arc<RequestLog>>,
}

impl ChaosProxy {
    /// Starts a relay on a free loopback port. Its upstream is set later with
    /// [`ChaosProxy::set_upstream`] (the broker is started after the relay so that it can
    /// advertise the relay's address).
    pub fn start() -> io::Result<ChaosProxy> {
        ChaosProxy::run(None)
    }

    /// [`ChaosProxy::start`], and the relay reads the Kafka requests clients send
    /// ([`ChaosProxy::produce_requests`]).
    pub fn start_observing() -> io::Result<ChaosProxy> {
        ChaosProxy::run(Some(Arc::default()))
    }

    fn run(requests: Option<Arc<RequestLog>>) -> io::Result<ChaosProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let proxy = ChaosProxy {
            addr,
            upstream: Arc::new(Mutex::new(None)),
            live: Arc::new(Mutex::new(Vec::new())),
            stopped: Arc::new(AtomicBool::new(false)),
            accepted: Arc::new(AtomicU64::new(0)),
            requests,
        };
        let upstream = proxy.upstream.clone();
        let live = proxy.live.clone();
        let stopped = proxy.stopped.clone();
        let accepted = proxy.accepted.clone();
        let requests = proxy.requests.clone();
        thread::Builder::new()
            .name("chaos-proxy".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let Some(target) = *upstream.lock().expect("lock") else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(5))
                    else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let connection = accepted.fetch_add(1, Ordering::SeqCst) + 1;
                    {
                        let mut live = live.lock().expect("lock");
                        live.extend(client.try_clone().ok());
                        live.extend(server.try_clone().ok());
                    }
                    let reader = requests
                        .as_ref()
                        .map(|log| RequestReader::new(connection, log.clone()));
                    pump(&client, &server, reader);
                    pump(&server, &client, None);
                }
            })?;
        Ok(proxy)
    }

    /// The relay's address (what the broker should advertise).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where new connections are relayed to.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.upstream.lock().expect("lock") = Some(upstream);
    }

    /// The upstream slot, for [`crate::BrokerBuilder::behind`] to fill once tansu listens.
    pub(crate) fn upstream_slot(&self) -> Arc<Mutex<Option<SocketAddr>>> {
        self.upstream.clone()
    }

    /// Breaks every connection currently relayed (both directions, both ends). New
    /// connections are still accepted.
    pub fn cut(&self) -> usize {
        let mut live = self.live.lock().expect("lock");
        let n = live.len() / 2;
        for s in live.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        n
    }

    /// The Produce requests clients sent so far, in the order each connection sent them
    /// (connections interleaved as they were read). Empty unless started with
    /// [`ChaosProxy::start_observing`].
    pub fn produce_requests(&self) -> Vec<ObservedProduce> {
        self.requests
            .as_ref()
            .map(|log| log.produce_requests())
            .unwrap_or_default()
    }

    /// The request frames the relay could not decode (each naming its connection and
    /// why); a test that relies on [`ChaosProxy::produce_requests`] wants none.
    pub fn request_errors(&self) -> Vec<String> {
        self.requests
            .as_ref()
            .map(|log| log.errors())
            .unwrap_or_default()
    }

    /// Connections relayed since the start.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Copies `from` to `to` on a thread of its own, showing every chunk to `reader` before
/// it is forwarded (so a request is logged before the broker can answer it).
fn pump(from: &TcpStream, to: &TcpStream, mut reader: Option<RequestReader>) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    let _ = thread::Builder::new()
        .name("chaos-pump".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Some(reader) = &mut reader {
                            reader.feed(&buf[..n]);
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        });
}
