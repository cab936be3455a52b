//! Shutdown as an event to wait for, not a flag to poll.
//!
//! SIGTERM and SIGINT (or a shard that cannot start) set the process's stop flag and write a
//! byte to one socket per shard and one for the shutdown watchdog. A shard waits for
//! shutdown by reading its socket, and the watchdog blocks on its own. Polling the flag
//! every 50 ms was a wake-up 20 times a second in each shard and in the watchdog thread, in
//! every one of the dozens of processes a machine of a million connections runs
//! (docs/architecture.md, "Shutdown"). The flag stays for code that only needs to look
//! (retry loops).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use signal_hook::consts::{SIGINT, SIGTERM};

use crate::runtime;

/// The process's shutdown: a flag, and one socket per waiter that a byte arrives on when it
/// is set.
#[derive(Debug)]
pub struct Stop {
    flag: Arc<AtomicBool>,
    /// Our ends of the waiters' sockets, written by [`Stop::trigger`] (the signal handlers
    /// write to duplicates of them).
    notify: Vec<UnixStream>,
    /// The waiters' ends, each taken once: one per shard by index, then the watchdog's.
    waits: Mutex<Vec<Option<UnixStream>>>,
}

impl Stop {
    /// A stop for `shards` shards and the watchdog, set by SIGTERM and SIGINT.
    pub fn new(shards: usize) -> io::Result<Arc<Stop>> {
        let flag = Arc::new(AtomicBool::new(false));
        // The flag first: a signal handler writes the byte after setting it, so a waiter
        // that wakes always finds the flag set.
        for signal in [SIGTERM, SIGINT] {
            signal_hook::flag::register(signal, flag.clone())?;
        }
        let mut notify = Vec::with_capacity(shards + 1);
        let mut waits = Vec::with_capacity(shards + 1);
        for _ in 0..=shards {
            let (ours, theirs) = UnixStream::pair()?;
            ours.set_nonblocking(true)?;
            for signal in [SIGTERM, SIGINT] {
                signal_hook::low_level::pipe::register(signal, ours.try_clone()?)?;
            }
            notify.push(ours);
            waits.push(Some(theirs));
        }
        Ok(Arc::new(Stop {
            flag,
            notify,
            waits: Mutex::new(waits),
        }))
    }

    /// The flag, for code that looks without waiting.
    pub fn flag(&self) -> &Arc<AtomicBool> {
        &self.flag
    }

    /// Begins shutdown from inside the process (a shard that cannot start).
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        for ours in &self.notify {
            // Full (a byte already waiting) or closed (the waiter is gone): nothing to do.
            let _ = (&*ours).write(&[1]);
        }
    }

    /// Waits, on shard `index`'s executor, until shutdown begins.
    pub async fn wait(&self, index: usize) {
        // A byte, end of file or an error: each means the stop was set or can no longer be
        // told, and either way it is time to stop.
        let _ = runtime::read_byte(self.take(index)).await;
    }

    /// Blocks the calling thread until shutdown begins (the watchdog).
    pub fn wait_blocking(&self) {
        let mut theirs = self.take(self.notify.len() - 1);
        let _ = theirs.read(&mut [0u8]);
    }

    fn take(&self, index: usize) -> UnixStream {
        self.waits.lock().expect("stop waiters")[index]
            .take()
            .expect("each waiter waits once")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trigger reaches every waiter: a shard and the watchdog's thread, and a shard that
    /// only starts waiting afterwards (its byte waits for it). A lost wake-up fails the test
    /// at its deadline instead of hanging it.
    #[test]
    fn a_trigger_wakes_every_waiter() {
        let stop = Stop::new(2).expect("stop");
        let (done, finished) = std::sync::mpsc::channel();
        let shard = |index: usize| {
            let (stop, done) = (stop.clone(), done.clone());
            std::thread::spawn(move || {
                runtime::run_shards(1, false, 64, move || async move { stop.wait(index).await })
                    .expect("shard");
                done.send(format!("shard {index}")).unwrap();
            })
        };
        let watchdog = {
            let (stop, done) = (stop.clone(), done.clone());
            std::thread::spawn(move || {
                stop.wait_blocking();
                done.send("watchdog".to_owned()).unwrap();
            })
        };
        let first = shard(0);
        stop.trigger();
        assert!(stop.flag().load(Ordering::SeqCst));
        let late = shard(1);
        let deadline = std::time::Duration::from_secs(60);
        let mut woken: Vec<String> = (0..3)
            .map(|_| finished.recv_timeout(deadline).expect("every waiter woken"))
            .collect();
        woken.sort();
        assert_eq!(woken, ["shard 0", "shard 1", "watchdog"]);
        for t in [first, late, watchdog] {
            t.join().unwrap();
        }
    }
}
