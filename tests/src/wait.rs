//! Waiting on conditions with deadlines, the only synchronisation tests use.

use std::thread;
use std::time::{Duration, Instant};

/// Polls `cond` until it returns true or `deadline` has passed; returns whether it did.
///
/// The poll interval starts at 1 ms and backs off to 50 ms, so fast conditions cost little
/// latency and slow ones little CPU.
pub fn poll_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(1);
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= end {
            return false;
        }
        thread::sleep(pause.min(end - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Polls `cond` until it returns true; panics naming `what` if `deadline` passes first.
///
/// ```
/// use std::time::Duration;
/// let mut n = 0;
/// sluice_tests::wait_until(Duration::from_secs(5), "n reaches 3", || {
///     n += 1;
///     n >= 3
/// });
/// ```
#[track_caller]
pub fn wait_until(deadline: Duration, what: &str, cond: impl FnMut() -> bool) {
    if !poll_until(deadline, cond) {
        panic!("timed out after {deadline:?} waiting until {what}");
    }
}
