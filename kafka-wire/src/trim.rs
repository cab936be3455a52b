//! Write buffers that a burst of large requests grew, given back once the burst is over.

use std::time::{Duration, Instant};

use bytes::BytesMut;

/// Gives a connection's write buffer that a large request grew back its usual size once
/// such traffic stops: when an empty buffer is larger than usual and either the last
/// [`Trim::AFTER`] uses fit the usual size or the last large one was [`Trim::QUIET`] ago,
/// it is replaced by a new one of the usual size. A connection that keeps sending large
/// requests keeps its large buffer; one that had a burst of them (a producer after a
/// backlog drained) does not hold the burst's largest request for the rest of its life,
/// even when its next uses are seconds apart. (The read side needs no such rule: a large
/// response gets an allocation of its own, which leaves with the frame; see
/// `Connection::read_loop`.)
///
/// One `Trim` may serve buffers that take turns (a connection's two write buffers swap at
/// every write): each is replaced on its own turn.
#[derive(Debug)]
pub(crate) struct Trim {
    usual: usize,
    /// Uses in a row that fit `usual`.
    fits: u32,
    /// Whether a buffer grew past `usual` since one was last replaced. A `BytesMut` that
    /// split frames off reports only the capacity after its read position, so its
    /// `capacity()` alone can understate the allocation it keeps.
    grown: bool,
    /// When the last use that did not fit `usual` was seen.
    last_large: Option<Instant>,
}

impl Trim {
    /// Uses in a row that must fit the usual size before a grown buffer is replaced.
    pub(crate) const AFTER: u32 = 64;
    /// How long after the last large use a grown buffer is replaced at its next use that
    /// fits, however few uses came since.
    pub(crate) const QUIET: Duration = Duration::from_secs(1);

    pub(crate) fn new(usual: usize) -> Trim {
        Trim {
            usual,
            fits: 0,
            grown: false,
            last_large: None,
        }
    }

    /// Notes a use of `buf` that held `held` bytes at its fullest, and replaces `buf` if it
    /// is empty, larger than usual and no longer needs to be.
    pub(crate) fn after_use(&mut self, buf: &mut BytesMut, held: usize) {
        self.after_use_at(buf, held, Instant::now);
    }

    /// [`Self::after_use`] with the clock given: `now` is read only when a use is large
    /// or a grown buffer could be replaced, never on the usual path.
    fn after_use_at(&mut self, buf: &mut BytesMut, held: usize, now: impl FnOnce() -> Instant) {
        if held > self.usual {
            self.fits = 0;
            self.grown = true;
            self.last_large = Some(now());
            return;
        }
        self.fits = self.fits.saturating_add(1);
        if !buf.is_empty() || !(self.grown || buf.capacity() > self.usual) {
            return;
        }
        let quiet = || {
            self.last_large
                .is_none_or(|t| now().saturating_duration_since(t) >= Trim::QUIET)
        };
        if self.fits >= Trim::AFTER || quiet() {
            *buf = BytesMut::with_capacity(self.usual);
            self.grown = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grown(usual: usize) -> BytesMut {
        let mut buf = BytesMut::with_capacity(usual);
        buf.reserve(1 << 20);
        buf
    }

    /// A buffer grown by a large frame is replaced by one of the usual size after
    /// `Trim::AFTER` uses in a row that fit, not before, and not while it holds bytes; a
    /// large use in between starts the count again.
    #[test]
    fn a_grown_buffer_goes_back_to_its_usual_size_once_large_frames_stop() {
        // One instant for every use: never a quiet second, only the count.
        let now = Instant::now();
        let at = || now;
        let mut trim = Trim::new(1024);
        let mut buf = grown(1024);
        trim.after_use_at(&mut buf, 1 << 20, at);
        for _ in 0..Trim::AFTER - 1 {
            trim.after_use_at(&mut buf, 100, at);
        }
        assert!(buf.capacity() >= 1 << 20, "trimmed too early");
        trim.after_use_at(&mut buf, 5000, at);
        for _ in 0..Trim::AFTER - 1 {
            trim.after_use_at(&mut buf, 100, at);
        }
        assert!(
            buf.capacity() >= 1 << 20,
            "a large use did not restart the count"
        );
        buf.extend_from_slice(b"a partial frame");
        trim.after_use_at(&mut buf, 100, at);
        assert!(buf.capacity() >= 1 << 20, "trimmed a buffer holding bytes");
        buf.clear();
        trim.after_use_at(&mut buf, 100, at);
        assert_eq!(buf.capacity(), 1024);
        // Not grown since: nothing more to do, however many uses follow, and the clock is
        // not read for them.
        let before = buf.as_ptr();
        for _ in 0..2 * Trim::AFTER {
            trim.after_use_at(&mut buf, 100, || {
                unreachable!("the clock read on a usual use")
            });
        }
        assert_eq!(buf.as_ptr(), before, "replaced a buffer that had not grown");
    }

    /// Two buffers that take turns, both grown by the last large uses: both go back to the
    /// usual size, each on its own turn.
    #[test]
    fn buffers_that_take_turns_are_both_trimmed() {
        let now = Instant::now();
        let at = || now;
        let mut trim = Trim::new(1024);
        let mut bufs = [grown(1024), grown(1024)];
        trim.after_use_at(&mut bufs[0], 1 << 20, at);
        trim.after_use_at(&mut bufs[1], 1 << 20, at);
        for use_ in 0..2 * Trim::AFTER + 2 {
            trim.after_use_at(&mut bufs[use_ as usize % 2], 100, at);
        }
        for buf in &bufs {
            assert_eq!(buf.capacity(), 1024);
        }
    }

    /// A connection whose uses come seconds apart (a producer sending every few seconds)
    /// gives its grown buffer back at its first use that fits once `Trim::QUIET` has
    /// passed since the last large one, not 64 uses later; a large use in between waits
    /// again.
    #[test]
    fn a_grown_buffer_goes_back_after_a_quiet_spell() {
        let start = Instant::now();
        let at = |ms: u64| move || start + Duration::from_millis(ms);
        let mut trim = Trim::new(1024);
        let mut buf = grown(1024);
        trim.after_use_at(&mut buf, 1 << 20, at(0));
        trim.after_use_at(&mut buf, 100, at(500));
        assert!(buf.capacity() >= 1 << 20, "trimmed before the quiet spell");
        trim.after_use_at(&mut buf, 1 << 20, at(900));
        trim.after_use_at(&mut buf, 100, at(1_500));
        assert!(
            buf.capacity() >= 1 << 20,
            "a large use did not restart the wait"
        );
        buf.extend_from_slice(b"a partial frame");
        trim.after_use_at(&mut buf, 100, at(3_000));
        assert!(buf.capacity() >= 1 << 20, "trimmed a buffer holding bytes");
        buf.clear();
        trim.after_use_at(&mut buf, 100, at(3_000));
        assert_eq!(buf.capacity(), 1024);
    }
}
