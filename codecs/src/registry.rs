//! Record codecs chosen by name in the config, including codecs users write themselves.
//!
//! A record codec turns a byte stream into records (optional key, value, headers) and
//! writes acknowledgements back. It is object safe, so the proxy holds a
//! `Box<dyn RecordCodec>` per connection and never needs to know the concrete type. A
//! [`CodecFactory`] builds one from the listener's codec settings (a string map from the
//! config file); a [`CodecRegistry`] maps names to factories. Third-party codecs are crates
//! that implement these two traits and register their factory, see
//! `codecs/example-jsonlines`.
//!
//! The registry comes pre-loaded with the built-in record codecs `framed` and `lines`.
//! MQTT, WebSocket and HTTP are not record codecs: they have sessions, subscriptions and
//! protocol answers, so the proxy wires them directly rather than through this registry.

mod builtin;
mod settings;

use std::collections::BTreeMap;
use std::fmt;

use bytes::{Bytes, BytesMut};

use crate::{Decoder, ErrorAnswer, ProtocolError};

pub use builtin::{FramedFactory, FramedRecordCodec, LinesFactory, LinesRecordCodec};
pub use settings::{SettingError, Settings};

/// One record decoded from a client, ready for Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordFrame {
    /// The record key; `None` is Kafka's null key.
    pub key: Option<Bytes>,
    /// The record value, ideally a slice of the read buffer.
    pub value: Bytes,
    /// Record headers. Empty for most codecs, and an empty `Vec` does not allocate.
    pub headers: Vec<(String, Bytes)>,
}

/// The fate of a record, reported to the client once Kafka has answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack<'a> {
    /// Kafka acknowledged the record with the configured acks.
    Accepted,
    /// The record was refused (by routing, authorization or Kafka) and was not written.
    Rejected {
        /// A short, human-readable reason.
        reason: &'a str,
    },
}

/// A record codec's error. Record protocols have no error reply of their own, so the
/// connection is closed; a codec that can say "no" per record does it with [`Ack::Rejected`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A frame or record is over the codec's size limit.
    #[error("The record is at least {size} bytes, over the limit of {max}.")]
    TooLarge {
        /// The size seen so far.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The bytes do not follow the codec's format.
    #[error("The input is malformed: {reason}.")]
    Malformed {
        /// What was wrong, as a sentence fragment.
        reason: String,
    },
    /// A record or ack cannot be written in the codec's format.
    #[error("The record cannot be encoded: {reason}.")]
    Unencodable {
        /// What was wrong, as a sentence fragment.
        reason: String,
    },
    /// Anything else, from a third-party codec.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl CodecError {
    /// A malformed-input error with a reason.
    pub fn malformed(reason: impl Into<String>) -> CodecError {
        CodecError::Malformed {
            reason: reason.into(),
        }
    }
}

impl ProtocolError for CodecError {
    fn answer(&self) -> ErrorAnswer {
        ErrorAnswer::Close
    }
}

/// A record-oriented codec for one connection. Object safe: the proxy holds it boxed.
///
/// `decode` follows the crate contract: `Ok(None)` consumes nothing, sizes are checked
/// before waiting for or allocating a body, values are slices of `src`.
pub trait RecordCodec: fmt::Debug {
    /// Decodes the next record from the front of `src`.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RecordFrame>, CodecError>;

    /// Appends the acknowledgement for the oldest unacknowledged record. Acks are sent in
    /// record order.
    fn encode_ack(&mut self, ack: Ack<'_>, dst: &mut BytesMut) -> Result<(), CodecError>;

    /// Appends a Kafka record delivered to the client (the Kafka-to-client direction).
    fn encode_record(&mut self, record: &RecordFrame, dst: &mut BytesMut)
        -> Result<(), CodecError>;
}

impl Decoder for Box<dyn RecordCodec> {
    type Frame = RecordFrame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RecordFrame>, CodecError> {
        (**self).decode(src)
    }
}

/// Builds a [`RecordCodec`] for each connection of a listener that names it.
///
/// `Send + Sync` because one registry is built at startup and shared by every shard.
pub trait CodecFactory: fmt::Debug + Send + Sync {
    /// The name the config uses, e.g. `framed`.
    fn name(&self) -> &str;

    /// Checks settings once at startup, so a bad config fails before any client connects.
    /// The default builds and discards one codec.
    fn validate(&self, settings: &Settings) -> Result<(), SettingError> {
        self.build(settings).map(drop)
    }

    /// Builds a codec for one connection from the listener's settings.
    fn build(&self, settings: &Settings) -> Result<Box<dyn RecordCodec>, SettingError>;
}

/// Why a codec could not be found, registered or built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No codec by that name.
    #[error("There is no codec named \"{name}\"; known codecs are: {known}.")]
    UnknownCodec {
        /// The name asked for.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// A second factory tried to take a name.
    #[error("A codec named \"{name}\" is already registered.")]
    Duplicate {
        /// The contested name.
        name: String,
    },
    /// The codec refused its settings.
    #[error("The settings for codec \"{codec}\" are invalid: {source}")]
    Settings {
        /// The codec name.
        codec: String,
        /// What was wrong.
        #[source]
        source: SettingError,
    },
}

/// Names to factories.
#[derive(Debug, Default)]
pub struct CodecRegistry {
    factories: BTreeMap<String, Box<dyn CodecFactory>>,
}

impl CodecRegistry {
    /// An empty registry.
    pub fn empty() -> CodecRegistry {
        CodecRegistry::default()
    }

    /// A registry holding the built-in record codecs, `framed` and `lines`.
    pub fn with_builtins() -> CodecRegistry {
        let mut r = CodecRegistry::empty();
        r.factories.insert("framed".into(), Box::new(FramedFactory));
        r.factories.insert("lines".into(), Box::new(LinesFactory));
        r
    }

    /// Adds a factory under its own name; a name can be taken once.
    pub fn register(&mut self, factory: Box<dyn CodecFactory>) -> Result<(), RegistryError> {
        let name = factory.name().to_owned();
        if self.factories.contains_key(&name) {
            return Err(RegistryError::Duplicate { name });
        }
        self.factories.insert(name, factory);
        Ok(())
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.factories.keys().map(String::as_str)
    }

    /// Checks that `name` exists and accepts `settings` (for `--check` and startup).
    pub fn validate(&self, name: &str, settings: &Settings) -> Result<(), RegistryError> {
        self.factory(name)?
            .validate(settings)
            .map_err(|source| RegistryError::Settings {
                codec: name.to_owned(),
                source,
            })
    }

    /// Builds a codec for one connection.
    pub fn build(
        &self,
        name: &str,
        settings: &Settings,
    ) -> Result<Box<dyn RecordCodec>, RegistryError> {
        self.factory(name)?
            .build(settings)
            .map_err(|source| RegistryError::Settings {
                codec: name.to_owned(),
                source,
            })
    }

    fn factory(&self, name: &str) -> Result<&dyn CodecFactory, RegistryError> {
        self.factories
            .get(name)
            .map(|f| &**f)
            .ok_or_else(|| RegistryError::UnknownCodec {
                name: name.to_owned(),
                known: self.names().collect::<Vec<_>>().join(", "),
            })
    }
}
