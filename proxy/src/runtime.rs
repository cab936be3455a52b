//! The runtime seam: the only module of the proxy that names glommio. Shards (one executor
//! thread each), listening sockets, timers and task spawning go through here, so another
//! thread-per-core runtime could take its place.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};

use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use socket2::{Domain, Protocol, Socket, Type};

pub use glommio::net::{TcpListener, TcpStream};

/// Runs `shard` on `count` executor threads (pinned one per CPU when `pin`, io_uring rings
/// of `ring_depth` entries) and waits for them all. Each call of `shard` builds one
/// shard's future on its own thread.
pub fn run_shards<G, F>(count: usize, pin: bool, ring_depth: u32, shard: G) -> anyhow::Result<()>
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
        // glommio registers this much memory per shard with io_uring (pinned, so resident)
        // for file I/O buffers; sockets never use it and sluice does no file I/O, so the
        // minimum, not the default 10 MiB: 20 MiB less per process on two shards.
        .io_memory(IO_MEMORY)
        .ring_depth(ring_depth as usize)
        .on_all_shards(shard)
        .map_err(|e| anyhow::anyhow!("cannot start {count} shards: {e}"))?;
    for result in handles.join_all() {
        result.map_err(|e| anyhow::anyhow!("a shard failed: {e:?}"))?;
    }
    Ok(())
}

/// glommio's smallest I/O buffer area (it keeps at least 64 KiB).
const IO_MEMORY: usize = 64 << 10;

/// Spawns a task on this shard that runs on its own.
pub fn spawn<F>(future: F)
where
    F: Future<Output = ()> + 'static,
{
    glommio::spawn_local(future).detach();
}

/// Waits for a byte on `socket`, a connected Unix stream socket: `Ok(1)` with one read,
/// `Ok(0)` at end of file.
pub async fn read_byte(socket: std::os::unix::net::UnixStream) -> io::Result<usize> {
    use futures::AsyncReadExt;
    socket.set_nonblocking(true)?;
    // SAFETY: a connected Unix stream socket we own, handed over whole.
    let mut stream = unsafe { glommio::net::UnixStream::from_raw_fd(socket.into_raw_fd()) };
    stream.read(&mut [0u8]).await
}

/// Waits for `duration`.
pub async fn sleep(duration: Duration) {
    // Isolated: glommio's timer table grows with the timers armed at once (every
    // connection of a connect burst arms some) and shrinks when they are gone. kafka-wire's
    // own timers (request timeouts, linger) arm it too, not isolated: a resize they cause
    // lands in shared pages.
    crate::alloc::Isolated::new(glommio::timer::sleep(duration)).await;
}

/// Socket options of a listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenOptions {
    /// Listen backlog.
    pub backlog: i32,
}

/// Binds a listening socket with SO_REUSEPORT, so that every shard, and every sluice
/// process on the machine, can listen on the same address and the kernel spreads
/// connections among them. Accepted connections inherit its `TCP_NODELAY` (acks go out at
/// once), so accepting costs no `setsockopt` per connection.
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

/// A duplicate of `stream`'s file descriptor, to keep the socket open once the stream (and
/// with it glommio's state and pending readiness poll) is dropped: how a socket is taken
/// away from glommio. The caller briefly holds one more open file.
pub fn detach(stream: &TcpStream) -> io::Result<OwnedFd> {
    // SAFETY: the descriptor is open for as long as `stream` lives, which is past the
    // duplication.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    fd.try_clone_to_owned()
}

/// Hands a socket taken by [`detach`] back to glommio.
pub fn attach(fd: OwnedFd) -> TcpStream {
    // SAFETY: `fd` is a connected TCP socket that we own and give away here.
    unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) }
}

/// One epoll set watching many detached sockets for input (data, EOF or an error), each
/// under a key; waiting happens on the shard's blocking-thread pool, so the shard never
/// blocks. Each watch fires once (`EPOLLONESHOT`).
#[derive(Debug, Clone)]
pub struct Readiness {
    epoll: Arc<Epoll>,
}

/// Keys returned by one [`Readiness::wait`] at most.
const READY_BATCH: usize = 1024;

impl Readiness {
    /// A new, empty set.
    pub fn new() -> io::Result<Readiness> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        Ok(Readiness {
            epoll: Arc::new(epoll),
        })
    }

    /// Watches `fd` until it has input, then reports `key` once.
    pub fn watch(&self, fd: &OwnedFd, key: u64) -> io::Result<()> {
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLONESHOT;
        self.epoll.add(fd, EpollEvent::new(flags, key))?;
        Ok(())
    }

    /// Stops watching `fd` (before it is attached again or closed).
    pub fn unwatch(&self, fd: &OwnedFd) {
        // Fails only if it was not watched; either way it is not watched now.
        let _ = self.epoll.delete(fd);
    }

    /// The keys of sockets that got input, waiting at most `timeout` (an empty list then).
    /// The wait runs on a blocking thread: dropping the returned future before it is done
    /// loses what that wait reports, and a one-shot watch never fires again, so callers
    /// keep polling it to the end.
    pub fn wait(&self, timeout: Duration) -> impl Future<Output = Vec<u64>> {
        let epoll = self.epoll.clone();
        let ms = timeout.as_millis().min(isize::MAX as u128) as isize;
        glommio::executor().spawn_blocking(move || {
            let mut events = vec![EpollEvent::empty(); READY_BATCH];
            match epoll.wait(&mut events, ms) {
                Ok(n) => events[..n].iter().map(|e| e.data()).collect(),
                Err(_) => Vec::new(),
            }
        })
    }
}

/// Whether the kernel may back this process's memory with transparent huge pages
/// (`[server] transparent_huge_pages`). Huge pages spare TLB misses, but a 2 MiB page
/// stays resident while any of it is in use, so memory freed when idle connections park
/// would mostly stay resident; by default sluice turns them off for itself. Pages already
/// faulted in keep their size.
pub fn allow_huge_pages(allowed: bool) {
    if let Err(e) = nix::sys::prctl::set_thp_disable(!allowed) {
        tracing::warn!(error = %e, "cannot set transparent huge pages for this process");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt as _;

    /// A listener from [`listen`] accepts connections that arrive while its accept waits
    /// (glommio tries a direct accept first, then waits in io_uring), and what it accepts
    /// has Nagle off, inherited from it: nothing sets it per connection.
    #[test]
    fn accepts_wait_and_inherit_nodelay() {
        let worker = glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let addr = "127.0.0.1:0".parse().expect("address");
                let listener = listen(addr, ListenOptions { backlog: 16 }).expect("listen");
                let addr = listener.local_addr().expect("bound");
                let (tx, mut accepted) = futures::channel::mpsc::unbounded();
                glommio::spawn_local(async move {
                    // Sent before accepting; this task is waiting in the accept before
                    // the test's task, woken by the message, runs again. Likewise below.
                    tx.unbounded_send(None).expect("test running");
                    loop {
                        let stream = listener.accept().await.expect("accept");
                        tx.unbounded_send(Some(stream)).expect("test running");
                    }
                })
                .detach();
                async fn next<T>(rx: &mut futures::channel::mpsc::UnboundedReceiver<T>) -> T {
                    glommio::timer::timeout(Duration::from_secs(30), async {
                        Ok(rx.next().await.expect("accept task running"))
                    })
                    .await
                    .expect("within 30 s")
                }
                assert!(next(&mut accepted).await.is_none(), "accept task started");
                let mut clients = Vec::new();
                for _ in 0..2 {
                    clients.push(std::net::TcpStream::connect(addr).expect("connect"));
                    let stream = next(&mut accepted).await.expect("a stream");
                    // SAFETY: the descriptor stays open while `stream` lives, past this use.
                    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
                    let nodelay =
                        nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::TcpNoDelay)
                            .expect("TCP_NODELAY");
                    assert!(nodelay, "an accepted connection without TCP_NODELAY");
                }
                clients.len()
            })
            .expect("executor");
        assert_eq!(worker.join().expect("executor ran"), 2);
    }
}
