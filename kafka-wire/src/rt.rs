//! The runtime seam: the only module of kafka-wire that names the async runtime.
//!
//! kafka-wire runs inside a glommio shard (one thread per core). Everything it needs from the
//! runtime (spawning a shard-local task, timers, a TCP connection) goes through these few
//! functions, so a different thread-per-core runtime could be put in their place.

use std::{future::Future, io, net::SocketAddr, time::Duration};

/// A TCP stream to a broker.
pub(crate) type TcpStream = glommio::net::TcpStream;

/// Spawns a task on the current shard that runs to completion on its own.
///
/// The task first runs on the executor's next turn, never inside this call: glommio polls a
/// new task at once, and callers spawn while holding shard-local state borrowed.
pub(crate) fn spawn<F>(future: F)
where
    F: Future<Output = ()> + 'static,
{
    glommio::spawn_local(async move {
        YieldOnce(false).await;
        future.await
    })
    .detach();
}

/// Returns `Pending` once (waking itself), then `Ready`.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

/// Waits for `duration`.
pub(crate) async fn sleep(duration: Duration) {
    glommio::timer::sleep(duration).await;
}

/// Runs `future`, giving up with `None` after `duration`.
pub(crate) async fn timeout<F: Future>(duration: Duration, future: F) -> Option<F::Output> {
    use futures::future::{select, Either};
    let timer = std::pin::pin!(sleep(duration));
    let future = std::pin::pin!(future);
    match select(future, timer).await {
        Either::Left((out, _)) => Some(out),
        Either::Right(_) => None,
    }
}

/// Opens a TCP connection with `TCP_NODELAY` set, within `connect_timeout`.
pub(crate) async fn connect(addr: SocketAddr, connect_timeout: Duration) -> io::Result<TcpStream> {
    let stream = glommio::net::TcpStream::connect_timeout(addr, connect_timeout)
        .await
        .map_err(io::Error::from)?;
    stream.set_nodelay(true).map_err(io::Error::from)?;
    Ok(stream)
}
