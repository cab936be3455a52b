//! When a connection authenticated with a JWT must end: its token's `exp` plus the leeway
//! it was accepted with, kept as whole seconds on the shard's clock ([`Shard::now_ms`],
//! the sessions' clock) so that it costs the connection 4 bytes.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use super::Conn;
use crate::driver;
#[cfg(doc)]
use crate::shard::Shard;

impl Conn {
    /// When the client's credentials expire (`until`, Unix seconds, from
    /// [`crate::auth::ShardAuth::verify_until`]; `None` never), rounded up to a second.
    pub(super) fn token_expiry(&self, until: Option<u64>) -> Option<NonZeroU32> {
        until.and_then(|until| {
            let left = driver::instant_of(until).saturating_duration_since(Instant::now());
            let at_ms = self.core.shard.now_ms() + left.as_millis() as u64;
            NonZeroU32::new(u32::try_from(at_ms / 1000 + 1).ok()?)
        })
    }

    /// How long the client's token has left (`None`: no token, or one that does not expire).
    pub(super) fn token_left(&self) -> Option<Duration> {
        let expires_s = self.core.granted.as_ref()?.expires_s?;
        let at_ms = u64::from(expires_s.get()) * 1000;
        Some(Duration::from_millis(
            at_ms.saturating_sub(self.core.shard.now_ms()),
        ))
    }
}
