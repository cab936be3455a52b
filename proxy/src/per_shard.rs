//! The shard ends of a process-wide reader's channels (`sessions::feed`,
//! `delivery::feed`): made together, each taken once by its shard.

use std::fmt;
use std::sync::Mutex;

/// One receiver per shard, each handed over once.
pub struct Receivers<R>(Mutex<Vec<Option<R>>>);

impl<R> Receivers<R> {
    /// Holds `receivers`, shard 0's first.
    pub fn new(receivers: Vec<R>) -> Self {
        Receivers(Mutex::new(receivers.into_iter().map(Some).collect()))
    }

    /// Shard `shard`'s receiver (`None` once taken, or for a shard that does not exist).
    pub fn take(&self, shard: usize) -> Option<R> {
        self.0
            .lock()
            .expect("the receivers' lock is never held across a panic")
            .get_mut(shard)?
            .take()
    }
}

impl<R> fmt::Debug for Receivers<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Receivers")
    }
}
