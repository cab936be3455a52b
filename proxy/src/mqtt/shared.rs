//! The MQTT connection as a member of shared subscriptions (`$share/{name}/{filter}`):
//! joining a share on SUBSCRIBE and on session resume. The share itself, a Kafka consumer
//! group, is [`crate::share`].

use std::rc::Rc;

use super::Conn;
use crate::delivery::{Granted, Mailbox};

impl Conn {
    /// Joins the share `subscription` with `granted`; its deliveries go to the
    /// connection's mailbox, which is returned. `None` when the share's consumer group
    /// could not be joined in time (the SUBACK says failure).
    pub(super) async fn subscribe_shared(
        &mut self,
        subscription: &str,
        granted: Granted,
    ) -> Option<Rc<Mailbox>> {
        let mailbox = self
            .core
            .shard
            .delivery
            .mailbox(self.core.id, &self.core.info.client_id);
        let window = usize::from(self.core.client_receive_maximum);
        let shares = self.core.shard.shares.clone();
        let joined = shares
            .subscribe(self.core.id, &mailbox, subscription, granted, window)
            .await;
        if !joined && self.core.subscriber.is_none() {
            // Nothing else will forget the mailbox made for it.
            self.core.shard.delivery.disconnect(self.core.id);
        }
        joined.then_some(mailbox)
    }

    /// A resumed persistent session joins its shares again.
    pub(super) async fn resume_shared(&mut self, subs: &[(String, Granted)]) {
        for (subscription, granted) in subs {
            if self
                .subscribe_shared(subscription, *granted)
                .await
                .is_none()
            {
                tracing::warn!(
                    subscription,
                    "a resumed shared subscription could not join its consumer group"
                );
            }
        }
    }
}

/// Whether a stored subscription is a shared one.
pub(super) fn is_shared(filter: &str) -> bool {
    filter.starts_with("$share/")
}
