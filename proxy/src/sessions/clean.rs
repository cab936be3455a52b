//! Clean-session claims, written by one task per shard.
//!
//! A clean session without a will claims its client id in the background: the CONNACK does
//! not wait for Kafka. Each such claim used to be a task of its own, alive until Kafka
//! acknowledged the record, about 3 KB each; with a dozen processes sharing one loaded
//! broker, acknowledgements took seconds and those tasks tripled the memory of every
//! connection (200k idle connections over 12 processes: 5.1–5.2 KB each with a task per
//! claim, 1.7–1.9 KB with this writer). Now a claim is a queue entry, then an
//! acknowledgement awaited among all of the shard's others: tens of bytes until Kafka has
//! it.

use std::cell::RefCell;
use std::rc::Rc;
use std::task::Poll;

use futures::channel::mpsc::{self, UnboundedReceiver, UnboundedSender};
use futures::stream::{FuturesUnordered, StreamExt as _};
use futures::FutureExt as _;
use tracing::debug;

use super::{now_ms, SessionStore, Stored, StoredWill, TakeoverSignal};
use crate::runtime;

/// One clean-session claim waiting to be written.
pub(super) struct CleanClaim {
    pub(super) client_id: String,
    /// Carries the connection's number on the shard (its owner string is made when
    /// written).
    pub(super) signal: TakeoverSignal,
    pub(super) will: Option<StoredWill>,
}

/// The queue of a shard's clean-session claims; its writer starts with the first claim.
#[derive(Debug, Default)]
pub(super) struct CleanClaims {
    queue: RefCell<Option<UnboundedSender<CleanClaim>>>,
}

impl CleanClaims {
    /// Queues `claim` for `store`'s writer (in order: a client's later claim is written
    /// after its earlier one).
    pub(super) fn push(&self, store: &Rc<SessionStore>, claim: CleanClaim) {
        let mut queue = self.queue.borrow_mut();
        let sender = queue.get_or_insert_with(|| {
            let (sender, receiver) = mpsc::unbounded();
            // Isolated: a connect burst's claims fill record batches of tens of KB that
            // are freed once Kafka has them (`alloc`'s docs).
            runtime::spawn(crate::alloc::Isolated::new(write_all(
                store.clone(),
                receiver,
            )));
            sender
        });
        if let Err(e) = sender.unbounded_send(claim) {
            // The writer is gone only when its shard's executor is.
            debug!(client_id = %e.into_inner().client_id, "clean session claim not queued");
        }
    }
}

/// Writes the queued claims in order, each once the store has loaded (so its generation
/// follows every earlier claim), and keeps their acknowledgements until Kafka has them.
async fn write_all(store: Rc<SessionStore>, mut claims: UnboundedReceiver<CleanClaim>) {
    store.ensure_loaded().await;
    let mut acks = FuturesUnordered::new();
    loop {
        let next = std::future::poll_fn(|cx| {
            while let Poll::Ready(Some((client_id, result))) = acks.poll_next_unpin(cx) {
                if let Err(e) = result {
                    debug!(%client_id, error = %e, "clean session claim not written");
                }
            }
            claims.poll_next_unpin(cx)
        })
        .await;
        let Some(claim) = next else { return };
        let gen = store
            .cache
            .borrow()
            .get(&claim.client_id)
            .map_or(0, |s| s.gen)
            + 1;
        let state = Stored {
            gen,
            owner: store.owner(claim.signal.conn()),
            connected: true,
            at_ms: now_ms(),
            will: claim.will.map(Box::new),
            ..Stored::default()
        };
        // Registered first, so the claim finds it when it is applied.
        store.serve(&claim.client_id, claim.signal);
        match store.write(&claim.client_id, Some(&state)).await {
            Ok(ack) => {
                let client_id = claim.client_id;
                acks.push(ack.map(move |result| (client_id, result)));
            }
            Err(e) => {
                debug!(client_id = %claim.client_id, error = %e, "clean session claim not written")
            }
        }
    }
}
