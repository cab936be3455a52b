//! The runtime seam: the only module of the proxy that names glommio. Shards (one executor
//! thread each), listening sockets, timers and task spawning go through here, so another
//! thread-per-core runtime could take its place.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::time::Duration;

use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use socket2::{Domain, Protocol, Socket, Type};

pub use glommio::net::{TcpListener, TcpStream};

/// Runs `shard` on `count` executor threads (pinned one per CPU when `pin`) and waits for
/// them all. Each call of `shard` builds one shard's future on its own thread.
pub fn run_shards<G, F>(count: usize, pin: bool, shard: G) -> anyhow::Result<()>
where
    G: FnOnce() -> F + Clone + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    let placement = if pin {
        PoolPlacement::MaxSpread(count, None)
    } else {
        PoolPlacement::Unbound(count)
    };
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name("sluice-shard")
        .on_all_shards(shard)
        .map_err(|e| anyhow::anyhow!("cannot start {count} shards: {e}"))?;
    for result in handles.join_all() {
        result.map_err(|e| anyhow::anyhow!("a shard failed: {e:?}"))?;
    }
    Ok(())
}

/// Spawns a task on this shard that runs on its own.
pub fn spawn<F>(future: F)
where
    F: Future<Output = ()> + 'static,
{
    glommio::spawn_local(future).detach();
}

/// Waits for `duration`.
pub async fn sleep(duration: Duration) {
    glommio::timer::sleep(duration).await;
}

/// Socket options of a listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenOptions {
    /// Listen backlog.
    pub backlog: i32,
}

/// Binds a listening socket with SO_REUSEPORT, so that every shard, and every sluice
/// process on the machine, can listen on the same address and the kernel spreads
/// connections among them.
pub fn listen(addr: SocketAddr, options: ListenOptions) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(options.backlog)?;
    let fd = socket.into_raw_fd();
    // SAFETY: `fd` is a listening TCP socket we own and hand over; nothing else closes it.
    Ok(unsafe { TcpListener::from_raw_fd(fd) })
}

/// Prepares an accepted client connection: no Nagle delay (acks go out at once).
pub fn prepare(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true).map_err(io::Error::from)
}
