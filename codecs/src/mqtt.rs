//! MQTT 3.1, 3.1.1 and 5.0: packets, properties, topic rules, the codec and the session.
//!
//! # Layers
//!
//! - [`MqttCodec`] turns bytes into [`Packet`]s and back ([`Decoder`](crate::Decoder) /
//!   [`Encoder`](crate::Encoder)). It enforces every MUST of the spec that can be checked
//!   on one packet (sizes, flags, UTF-8, property rules, topic syntax, reason codes) and
//!   reports violations as [`MqttError`], whose [`answer`](crate::ProtocolError::answer)
//!   is the MQTT 5 reason code to send.
//! - [`Session`] is the server-side protocol state machine: CONNECT/CONNACK, keepalive,
//!   the inbound QoS 1/2 flows tied to Kafka acknowledgements, receive maximum, topic
//!   aliases, SUBSCRIBE/UNSUBSCRIBE and DISCONNECT. It takes packets and `now` and emits
//!   [`Effect`]s for the connection driver; it never does I/O or reads a clock.
//! - [`SubscriptionIndex`] finds the subscriptions whose topic filters match a topic, for
//!   delivery: a trie of filter levels, with shared subscriptions kept per group.
//!
//! # Files
//!
//! `types` (version, QoS, [`MqttString`]), `wire` (readers and writers), `properties`,
//! `topic`, one file per packet family (`connect`, `publish`, `subscribe`, `disconnect`),
//! `packet` (the enum), `codec`, `error`, `reason`, `session`, `subscriptions` (the index).

pub mod codec;
pub mod connect;
pub mod disconnect;
pub mod error;
pub mod packet;
pub mod properties;
pub mod publish;
pub mod reason;
pub mod session;
pub mod subscribe;
pub mod subscriptions;
pub mod topic;
pub mod types;
mod wire;

pub use codec::{encode_packet, MqttCodec};
pub use connect::{ConnAck, ConnAckProperties, Connect, ConnectProperties, Will, WillProperties};
pub use disconnect::{Auth, AuthProperties, Disconnect, DisconnectProperties};
pub use error::{EncodeError, MqttError};
pub use packet::{Packet, PacketType};
pub use properties::{AckProperties, PropertyOrder, PropertyStruct, Props};
pub use publish::{PubAck, Publish, PublishProperties};
pub use session::{Accept, Effect, KafkaAck, Session, SessionConfig};
pub use subscribe::{
    RetainHandling, SubAck, Subscribe, SubscribeProperties, Subscription, SubscriptionOptions,
    UnsubAck, Unsubscribe, UnsubscribeProperties,
};
pub use subscriptions::{SharedGroup, SubscriptionIndex};
pub use topic::{check_topic_filter, check_topic_name, TopicFilter};
pub use types::{InvalidString, MqttString, ProtocolVersion, QoS, UserProperty};
