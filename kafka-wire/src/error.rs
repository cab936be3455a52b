//! Errors of the Kafka client, with the broker, topic and partition they concern.
//!
//! Kafka's own error codes come from one table, [`KafkaCode`] (the `kafka-protocol` crate's
//! table of every code with its retriable flag, as the Java client defines it). Everything
//! else (I/O, timeouts, malformed responses, security) has its own variant, and
//! [`Error::is_retriable`] says whether retrying the same request may succeed.

use std::{fmt, io, sync::Arc, time::Duration};

pub use kafka_protocol::error::ResponseError as KafkaCode;

use crate::record::RecordError;
use crate::sasl::SaslError;
use crate::tls::TlsError;

/// Where in the cluster an error happened: enough context for an operator to act on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// `host:port` of the broker the request went to, if any.
    pub broker: Option<Arc<str>>,
    /// The topic concerned, if any.
    pub topic: Option<Arc<str>>,
    /// The partition concerned, if any.
    pub partition: Option<i32>,
}

impl Context {
    /// Context naming only a broker.
    pub fn broker(addr: &Arc<str>) -> Self {
        Context {
            broker: Some(addr.clone()),
            ..Context::default()
        }
    }

    /// Adds the topic to this context.
    pub fn with_topic(mut self, topic: &str) -> Self {
        self.topic = Some(Arc::from(topic));
        self
    }

    /// Adds the topic and partition to this context.
    pub fn with_partition(mut self, topic: &str, partition: i32) -> Self {
        self.topic = Some(Arc::from(topic));
        self.partition = Some(partition);
        self
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = " (";
        if let Some(t) = &self.topic {
            write!(f, "{sep}topic {t}")?;
            sep = ", ";
            if let Some(p) = self.partition {
                write!(f, " partition {p}")?;
            }
        }
        if let Some(b) = &self.broker {
            write!(f, "{sep}broker {b}")?;
            sep = ", ";
        }
        if sep == ", " {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// An error of the Kafka client. Cheap to clone: one failed batch reports the same error to
/// every record in it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker answered with a Kafka error code.
    #[error("Kafka refused the request: {code}{context}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Kafka {
        /// The error code from the response.
        code: KafkaCode,
        /// The broker's error message, when it sent one.
        detail: Option<Arc<str>>,
        /// Where it happened.
        context: Context,
    },
    /// Connecting to, reading from or writing to a broker failed.
    #[error("I/O with the broker failed{context}: {source}")]
    Io {
        /// The underlying error.
        source: Arc<io::Error>,
        /// Where it happened.
        context: Context,
    },
    /// The connection closed while this request was waiting for its response.
    #[error("the connection closed before the broker answered{context}: {reason}")]
    Disconnected {
        /// Why the connection closed.
        reason: Arc<str>,
        /// Where it happened.
        context: Context,
    },
    /// No response came within the request timeout; the connection is closed.
    #[error("{api} request got no response within {after:?}{context}")]
    Timeout {
        /// The API that timed out.
        api: &'static str,
        /// The timeout that expired.
        after: Duration,
        /// Where it happened.
        context: Context,
    },
    /// The broker sent bytes that are not a valid response.
    #[error("the broker sent a malformed response{context}: {detail}")]
    Protocol {
        /// What was wrong.
        detail: Arc<str>,
        /// Where it happened.
        context: Context,
    },
    /// The broker supports no version of an API we need.
    #[error("the broker supports no usable version of {api}{context}")]
    UnsupportedVersion {
        /// The API name.
        api: &'static str,
        /// Where it happened.
        context: Context,
    },
    /// The topic does not exist (after a metadata refresh).
    #[error("topic {topic} does not exist")]
    UnknownTopic {
        /// The topic name.
        topic: Arc<str>,
    },
    /// A partition number outside the topic's partitions.
    #[error("topic {topic} has no partition {partition} (it has {count})")]
    UnknownPartition {
        /// The topic name.
        topic: Arc<str>,
        /// The partition asked for.
        partition: i32,
        /// How many partitions the topic has.
        count: u32,
    },
    /// No broker could be reached.
    #[error("no broker could be reached: {0}")]
    NoBroker(Arc<str>),
    /// SASL authentication failed.
    #[error("SASL authentication failed{context}: {source}")]
    Sasl {
        /// The mechanism's error.
        source: Arc<SaslError>,
        /// Where it happened.
        context: Context,
    },
    /// TLS configuration or handshake failed.
    #[error("TLS failed{context}: {source}")]
    Tls {
        /// The TLS error.
        source: Arc<TlsError>,
        /// Where it happened.
        context: Context,
    },
    /// A record batch could not be built or read.
    #[error("record batch error{context}: {source}")]
    Record {
        /// The record layer's error.
        source: Arc<RecordError>,
        /// Where it happened.
        context: Context,
    },
    /// A record waited longer than the delivery timeout without being acknowledged.
    #[error("the record was not acknowledged within the delivery timeout of {0:?}")]
    DeliveryTimeout(Duration),
    /// The producer or client was closed.
    #[error("the producer is closed")]
    Closed,
    /// A setting is invalid.
    #[error("invalid client configuration: {0}")]
    Config(Arc<str>),
}

impl Error {
    /// Whether the same request may succeed if retried (after a metadata refresh, a reconnect
    /// or a backoff).
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { code, .. } => code.is_retriable(),
            Error::Io { .. } | Error::Disconnected { .. } | Error::Timeout { .. } => true,
            Error::NoBroker(_) => true,
            Error::UnknownTopic { .. } => true,
            _ => false,
        }
    }

    /// The Kafka error code, if this is a broker refusal.
    pub fn kafka_code(&self) -> Option<KafkaCode> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether this error means our view of the cluster is stale (leader moved, topic
    /// created or deleted, broker gone), so metadata should be refreshed before retrying.
    pub fn invalidates_metadata(&self) -> bool {
        match self {
            Error::Kafka { code, .. } => matches!(
                code,
                KafkaCode::NotLeaderOrFollower
                    | KafkaCode::LeaderNotAvailable
                    | KafkaCode::UnknownTopicOrPartition
                    | KafkaCode::FencedLeaderEpoch
                    | KafkaCode::UnknownLeaderEpoch
                    | KafkaCode::NotEnoughReplicas
                    | KafkaCode::KafkaStorageError
                    | KafkaCode::UnknownTopicId
            ),
            Error::Io { .. } | Error::Disconnected { .. } | Error::Timeout { .. } => true,
            Error::UnknownTopic { .. } | Error::UnknownPartition { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn kafka(code: KafkaCode, detail: Option<&str>, context: Context) -> Self {
        Error::Kafka {
            code,
            detail: detail.filter(|d| !d.is_empty()).map(Arc::from),
            context,
        }
    }

    pub(crate) fn protocol(detail: impl Into<String>, context: Context) -> Self {
        Error::Protocol {
            detail: Arc::from(detail.into()),
            context,
        }
    }

    pub(crate) fn io(source: io::Error, context: Context) -> Self {
        Error::Io {
            source: Arc::new(source),
            context,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Turns a response error code into `Ok(())` or a [`Error::Kafka`].
pub(crate) fn check(
    code: i16,
    detail: Option<&str>,
    context: impl FnOnce() -> Context,
) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(Error::kafka(
            KafkaCode::try_from_code(code).unwrap_or(KafkaCode::Unknown(code)),
            detail,
            context(),
        ))
    }
}
