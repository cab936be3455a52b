//! CONNECT: who the client is (its client identifier, assigned when empty), whether the
//! listener lets it in, and its claim on the session in Kafka, then the CONNACK.

use codecs::mqtt::{Accept, Connect, MqttString, ProtocolVersion};
use tracing::{debug, warn};

use super::{reason, Authorization, Conn};
use crate::metrics::ErrorKind;

impl Conn {
    /// Handles a CONNECT the session accepted as well-formed: authenticates it, claims
    /// the session and answers with CONNACK (or a refusal), resuming a persistent
    /// session's subscriptions and deliveries.
    pub(super) async fn connect(&mut self, connect: Box<Connect>) {
        self.core.info.client_id = connect.client_id.as_str().into();
        let username = connect.username.as_ref().map(|u| u.as_str());
        self.core.info.set_username(username);
        let mut accept = Accept::default();
        if self.core.info.client_id.is_empty() {
            // MQTT 3.1.1 §3.1.3-6 and MQTT 5 §3.1.3-6: the server assigns one.
            let id = self.core.shard.assign_client_id();
            if connect.protocol == ProtocolVersion::V5 {
                accept.assigned_client_id = MqttString::try_from(id.clone()).ok();
            }
            self.core.info.client_id = id.into();
        }
        tracing::Span::current().record("client_id", &*self.core.info.client_id);
        if let Some(max) = connect.properties.receive_maximum {
            self.core.client_receive_maximum = max;
        }
        if let Some(auth) = &self.core.listener.auth {
            let certificate = self.core.info.principal();
            match auth.connect(&connect, &self.core.info.client_id, certificate) {
                Ok(authorized) => {
                    self.core.info.set_principal(authorized.principal);
                    let expires_s = self.token_expiry(authorized.until);
                    self.core.granted =
                        (authorized.acl.is_some() || expires_s.is_some()).then(|| {
                            Box::new(Authorization {
                                acl: authorized.acl,
                                expires_s,
                            })
                        });
                }
                Err((reason_code, why)) => {
                    debug!(reason_code, why, "CONNECT refused");
                    self.core.shard.metrics.error(ErrorKind::Auth);
                    self.core.session.refuse(reason_code, &mut self.effects);
                    return;
                }
            }
        }
        let resumed = match Box::pin(self.claim(&connect)).await {
            Ok(resumed) => resumed,
            Err(e) => {
                warn!(client_id = %self.core.info.client_id, error = %e, "cannot claim the session");
                self.core
                    .session
                    .refuse(reason::SERVER_UNAVAILABLE, &mut self.effects);
                return;
            }
        };
        accept.session_present = resumed.is_some();
        let now = self.core.shard.now_ms();
        self.core.session.accept(now, accept, &mut self.effects);
        if let Some(state) = resumed {
            Box::pin(self.resume(state)).await;
        }
    }
}
