//! Process liveness through the session topic: every process writes a heartbeat, and the
//! live process with the smallest identifier acts for the dead ones (their sessions' wills,
//! marked disconnected) and ends expired sessions.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use kafka_wire::ProducerRecord;
use tracing::{debug, warn};

use super::{
    now_ms, process_id, SessionStore, Stored, StoredWill, DEAD_AFTER, HEARTBEAT_EVERY,
    HEARTBEAT_PREFIX,
};
use crate::runtime;

/// How often the designated process looks for the sessions of dead processes and expired
/// ones.
const ACT_EVERY: Duration = Duration::from_secs(1);

impl SessionStore {
    /// This process's identifier (the first part of its owner strings).
    fn process(&self) -> &str {
        process_id()
    }

    /// Runs on one shard per process for its whole life: writes this process's heartbeat
    /// (in a task of its own, so that a long round of the work below never delays it and
    /// makes this process look dead), and, each second, when this is the live process with
    /// the smallest identifier,
    /// publishes the wills of sessions whose process stopped beating (`publish` writes the
    /// will's records and returns once Kafka has them), then marks those sessions
    /// disconnected on the dead owner's behalf, so no other process publishes them again.
    pub async fn watch_processes<F, Fut>(self: Rc<Self>, publish: F)
    where
        F: Fn(String, StoredWill) -> Fut,
        Fut: std::future::Future<Output = kafka_wire::Result<()>>,
    {
        self.ensure_loaded().await;
        runtime::spawn(self.clone().beat());
        loop {
            for (client_id, state) in self.orphans() {
                if let Some(will) = state.will.clone() {
                    let due = state.at_ms + u64::from(will.delay_s) * 1000;
                    if now_ms() < due {
                        continue;
                    }
                    tracing::info!(client_id, owner = %state.owner, "publishing the will of a session whose process died");
                    if let Err(e) = publish(client_id.clone(), *will).await {
                        warn!(client_id, error = %e, "cannot publish an orphaned will; retrying");
                        continue;
                    }
                }
                let ended = Stored {
                    connected: false,
                    will: None,
                    at_ms: now_ms(),
                    ..state
                };
                let write = if ended.expiry_s > 0 {
                    self.save(&client_id, Some(&ended)).await
                } else {
                    self.save(&client_id, None).await
                };
                if let Err(e) = write {
                    warn!(client_id, error = %e, "cannot end an orphaned session");
                }
            }
            for (client_id, state) in self.expired() {
                // Emptied rather than deleted: the record is a save by the session's own
                // generation and owner, so a claim that got in first makes it stale, where
                // a null record would delete the new owner's state.
                let ended = Stored {
                    subs: Vec::new(),
                    cursor: BTreeMap::new(),
                    ..state
                };
                debug!(client_id, "session expired");
                if let Err(e) = self.save(&client_id, Some(&ended)).await {
                    warn!(client_id, error = %e, "cannot end an expired session");
                }
            }
            runtime::sleep(ACT_EVERY).await;
        }
    }

    /// Writes this process's heartbeat every `HEARTBEAT_EVERY`.
    async fn beat(self: Rc<Self>) {
        let key = format!("{HEARTBEAT_PREFIX}{}", self.process());
        loop {
            let beat = serde_json::json!({ "heartbeat_ms": now_ms() }).to_string();
            let sent = self
                .producer
                .send(ProducerRecord {
                    topic: &self.topic,
                    partition: None,
                    key: Some(key.as_bytes()),
                    value: Some(beat.as_bytes()),
                    headers: &[],
                    timestamp: None,
                    partitioning: None,
                })
                .await;
            if let Err(e) = sent {
                debug!(error = %e, "heartbeat not sent");
            }
            runtime::sleep(HEARTBEAT_EVERY).await;
        }
    }

    /// Whether this process acts for the others (the live process with the smallest
    /// identifier), once it has known the topic for long enough to tell who is alive.
    fn designated(&self) -> bool {
        let Some(loaded_at) = self.loaded_at.get() else {
            return false;
        };
        let beats = self.heartbeats.borrow();
        let me = self.process();
        let smallest_live = beats
            .iter()
            .filter(|(_, t)| t.elapsed() < DEAD_AFTER)
            .map(|(p, _)| p.as_str())
            .chain(std::iter::once(me))
            .min()
            .unwrap_or(me);
        smallest_live == me && loaded_at.elapsed() >= DEAD_AFTER
    }

    /// Disconnected sessions past their expiry that still hold subscriptions or a cursor,
    /// when this process is the one to end them.
    fn expired(&self) -> Vec<(String, Stored)> {
        if !self.designated() {
            return Vec::new();
        }
        let now = now_ms();
        self.cache
            .borrow()
            .iter()
            .filter(|(_, s)| s.expired(now) && !(s.subs.is_empty() && s.cursor.is_empty()))
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect()
    }

    /// Connected sessions whose process is dead, when this process is the one to act on
    /// them.
    fn orphans(&self) -> Vec<(String, Stored)> {
        if !self.designated() {
            return Vec::new();
        }
        let beats = self.heartbeats.borrow();
        let me = self.process();
        let alive = |p: &str| p == me || beats.get(p).is_some_and(|t| t.elapsed() < DEAD_AFTER);
        self.cache
            .borrow()
            .iter()
            .filter(|(_, s)| s.connected)
            .filter(|(_, s)| !alive(s.owner.split('/').next().unwrap_or_default()))
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect()
    }
}
