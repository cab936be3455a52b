//! What every connection driver (MQTT, HTTP, record streams) shares: reading into the
//! shard's scratch buffer, turning what was read into decodable input without pinning memory
//! between packets, and the per-connection accounting around the driver.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::FutureExt as _;
use futures_lite::AsyncRead;
use kafka_wire::{DeliveryFuture, RecordMetadata};
use tracing::{debug, Instrument, Span};

use crate::auth::ShardAuth;
use crate::config::ListenerConfig;
use crate::metrics::ErrorKind;
use crate::runtime::TcpStream;
use crate::shard::Shard;
use crate::transport::{self, Stream};

/// Bytes the arena grows by when a read does not fit.
const ARENA_BLOCK: usize = 64 * 1024;

/// Reads whatever `stream` has into the shard's scratch buffer. glommio's read is
/// readiness-based, so nothing is held while the socket has no data.
pub fn poll_read(
    shard: &Shard,
    stream: &mut (impl AsyncRead + Unpin),
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let mut scratch = shard.scratch.borrow_mut();
    let read = Pin::new(stream).poll_read(cx, &mut scratch[..]);
    if matches!(read, Poll::Ready(Ok(n)) if n > 0) {
        shard.mark_read();
    }
    read
}

/// The bytes a driver decodes after a read: the new bytes behind the tail of an incomplete
/// frame, or, when there was no tail, a slice of the shard's arena block so decoded payloads
/// are `Bytes` slices of it.
#[derive(Debug)]
pub struct Input {
    data: BytesMut,
    from_arena: bool,
}

impl Input {
    /// Takes the `n` bytes just read into the shard's scratch buffer, behind `pending`.
    pub fn take(shard: &Shard, pending: &mut BytesMut, n: usize) -> Input {
        let scratch = shard.scratch.borrow();
        if pending.is_empty() {
            let mut arena = shard.arena.borrow_mut();
            if arena.capacity() < n {
                arena.reserve(n.max(ARENA_BLOCK));
            }
            arena.extend_from_slice(&scratch[..n]);
            Input {
                data: arena.split(),
                from_arena: true,
            }
        } else {
            let mut data = std::mem::take(pending);
            data.extend_from_slice(&scratch[..n]);
            Input {
                data,
                from_arena: false,
            }
        }
    }

    /// Input already in a buffer of its own (bytes that arrived with a handshake).
    pub fn owned(data: BytesMut) -> Input {
        Input {
            data,
            from_arena: false,
        }
    }

    /// What the connection keeps after decoding: nothing (no memory) between frames; an
    /// incomplete frame's tail in a buffer of its own, so the arena block is not pinned by a
    /// slow client; a tail already in its own buffer keeps growing there (no re-copy per
    /// read of a large frame).
    pub fn into_tail(self) -> BytesMut {
        match (self.data.is_empty(), self.from_arena) {
            (true, _) => BytesMut::new(),
            (false, true) => BytesMut::from(&self.data[..]),
            (false, false) => self.data,
        }
    }
}

impl Deref for Input {
    type Target = BytesMut;
    fn deref(&self) -> &BytesMut {
        &self.data
    }
}

impl DerefMut for Input {
    fn deref_mut(&mut self) -> &mut BytesMut {
        &mut self.data
    }
}

/// Runs the listener's transport handshake (TLS) on an accepted socket. Boxed: the
/// handshake's state is large and would otherwise make every connection's task larger for
/// its whole life.
pub async fn secure(
    listener: &ListenerConfig,
    tcp: TcpStream,
) -> Result<Stream, (ErrorKind, String)> {
    Box::pin(transport::accept(listener, tcp))
        .await
        .map_err(|e| (ErrorKind::Tls, e.to_string()))
}

/// On a `client_cert` listener, the principal named by the connection's verified client
/// certificate; `None` elsewhere, and when the certificate names none (logged here; the
/// driver refuses the client when it asks for something).
pub fn certificate(auth: Option<&ShardAuth>, stream: &Stream) -> Option<String> {
    match auth?.certificate(stream.peer_certificate())? {
        Ok(principal) => Some(principal),
        Err(e) => {
            debug!(reason = %e, "the client certificate names no principal");
            None
        }
    }
}

/// The monotonic time of `unix_secs` (when credentials expire), for a connection's timer.
pub fn instant_of(unix_secs: u64) -> Instant {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Instant::now() + Duration::from_secs(unix_secs).saturating_sub(now)
}

/// Writes `out` to the client and empties it, counting the bytes on `listener`; a buffer
/// that grew large is released rather than kept by an idle connection.
pub async fn flush(
    shard: &Shard,
    listener: usize,
    stream: &mut Stream,
    out: &mut BytesMut,
) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    stream.write_flushed(out).await?;
    shard.metrics.listeners[listener]
        .bytes_out
        .fetch_add(out.len() as u64, Ordering::Relaxed);
    if out.capacity() > 64 * 1024 {
        *out = BytesMut::new();
    } else {
        out.clear();
    }
    Ok(())
}

/// Takes the oldest of a connection's records awaiting Kafka off `queue` if its
/// acknowledgement is already in (with the time its frame was read). One Kafka answer
/// acknowledges many records: a driver answers each it gets from here before its next
/// [`flush`], so the answers to one Kafka response leave in one write, not one each.
pub fn next_acked(
    queue: &mut VecDeque<(Instant, DeliveryFuture)>,
) -> Option<(Instant, kafka_wire::Result<RecordMetadata>)> {
    let (received, front) = queue.front_mut()?;
    let received = *received;
    // Polled with a no-op waker: a pending front is polled again, with the task's waker,
    // by the driver's next wait.
    let result = front.now_or_never()?;
    queue.pop_front();
    Some((received, result))
}

/// A connection's span: its listener, its peer and any extra fields.
///
/// Connection spans are at debug level: at the default `info` they are disabled, so the peer
/// is never formatted and the span costs nothing; enabled, the subscriber keeps ~400 bytes
/// per live span, which a million idle connections cannot afford. Logs above debug inside
/// a connection name the client themselves.
macro_rules! conn_span {
    ($listener:expr, $tcp:expr $(, $($field:tt)*)?) => {
        tracing::debug_span!(
            "conn",
            listener = %$listener.config.name,
            peer = %$crate::driver::peer(&$tcp)
            $(, $($field)*)?
        )
    };
}
pub(crate) use conn_span;

/// The peer's address, for the connection's span.
pub fn peer(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Runs a connection's driver inside `span`, counting the connection on its listener and
/// logging the error that ended it once, at this boundary.
pub async fn track<F>(shard: &Shard, listener: usize, span: Span, driver: F)
where
    F: Future<Output = Result<(), (ErrorKind, String)>>,
{
    let lm = &shard.metrics.listeners[listener];
    lm.connections_open.fetch_add(1, Ordering::Relaxed);
    lm.connections_total.fetch_add(1, Ordering::Relaxed);
    if let Err((kind, e)) = driver.instrument(span.clone()).await {
        ended(shard, &span, kind, &e);
    }
    lm.connections_open.fetch_sub(1, Ordering::Relaxed);
}

/// Counts and logs (once, inside the connection's span) the error that ended a connection.
pub fn ended(shard: &Shard, span: &Span, kind: ErrorKind, error: &str) {
    shard.metrics.error(kind);
    let _enter = span.enter();
    debug!(error, "connection ended");
}

/// A shard-wide flag that wakes every connection when it is set.
#[derive(Debug, Default)]
pub struct ShutdownSignal {
    set: Cell<bool>,
    /// One waker per waiting connection, by connection number.
    wakers: RefCell<HashMap<u64, std::task::Waker>>,
}

impl ShutdownSignal {
    /// Whether shutdown has begun.
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Asks for connection `id` to be woken when shutdown begins.
    pub fn register(&self, id: u64, cx: &Context<'_>) {
        let mut wakers = self.wakers.borrow_mut();
        match wakers.get_mut(&id) {
            Some(w) if w.will_wake(cx.waker()) => {}
            Some(w) => *w = cx.waker().clone(),
            None => {
                // Isolated: the table grows with the connections active at once.
                crate::alloc::isolated(|| wakers.insert(id, cx.waker().clone()));
            }
        }
    }

    /// Forgets connection `id` (it ended, or parked: the parking lot wakes parked
    /// connections itself). A table left mostly empty by a burst of them shrinks, so
    /// that idle connections do not keep the capacity their connect burst needed.
    pub fn unregister(&self, id: u64) {
        let mut wakers = self.wakers.borrow_mut();
        if wakers.remove(&id).is_some()
            && wakers.capacity() > 64
            && wakers.len() < wakers.capacity() / 4
        {
            let len = wakers.len();
            crate::alloc::isolated(|| wakers.shrink_to(len * 2));
        }
    }

    /// Begins shutdown and wakes everyone waiting.
    pub fn set(&self) {
        self.set.set(true);
        for (_, w) in self.wakers.borrow_mut().drain() {
            w.wake();
        }
    }
}
