//! Which Kafka topics back MQTT subscriptions, and the MQTT topic each of their records is
//! delivered under.
//!
//! Two kinds of Kafka topic feed subscribers:
//! - the topics MQTT routes write with the key `{topic}` (by default `mqtt-messages`): the
//!   record's key is its MQTT topic, so MQTT publish/subscribe works through Kafka;
//! - the topics of `[[reverse_routes]]`: records other producers write, whose MQTT topic a
//!   template builds from their key and headers, e.g. `shop/{header.region}/orders/{key}`
//!   for a Kafka topic `orders`.
//!
//! A record whose template needs a key or header it lacks, or whose MQTT topic comes out
//! invalid (wildcards, not UTF-8, empty), reaches no one.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use codecs::mqtt::{check_topic_name, MqttString};
use kafka_wire::record::Headers;

use crate::config::{Config, Protocol};
use crate::route::split_template;

/// One piece of an MQTT topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// The record's key.
    Key,
    /// The value of the record's header of this name.
    Header(String),
}

/// How a Kafka topic's records name their MQTT topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    parts: Vec<Part>,
}

impl TopicTemplate {
    /// The record's key is its MQTT topic.
    pub fn key() -> TopicTemplate {
        TopicTemplate {
            parts: vec![Part::Key],
        }
    }

    /// Parses a template of text, `{key}` and `{header.NAME}`; the error says what is
    /// wrong. Its text may not hold wildcards: what it names is a topic, not a filter.
    pub fn parse(template: &str) -> Result<TopicTemplate, String> {
        let parts = split_template(template, Part::Text, |name| match name {
            "key" => Ok(Part::Key),
            _ => match name.strip_prefix("header.") {
                Some(header) if !header.is_empty() => Ok(Part::Header(header.to_owned())),
                _ => Err(format!(
                    "uses {{{name}}}; known are {{key}} and {{header.NAME}}"
                )),
            },
        })?;
        if parts.is_empty() {
            return Err("is empty".into());
        }
        for part in &parts {
            if let Part::Text(text) = part {
                if text.contains(['+', '#', '\0']) {
                    return Err(format!(
                        "has {text:?}: an MQTT topic name holds no wildcards (+, #) or NUL"
                    ));
                }
            }
        }
        Ok(TopicTemplate { parts })
    }

    /// The MQTT topic a record with `key` and `headers` is delivered under, if it has
    /// what the template needs and the result is a valid topic name.
    pub fn topic(&self, key: Option<&Bytes>, headers: &Headers) -> Option<MqttString> {
        let name = match self.parts.as_slice() {
            // The common case shares the record's bytes.
            [Part::Key] => MqttString::from_bytes(key?.clone()).ok()?,
            parts => {
                let mut out = BytesMut::new();
                for part in parts {
                    match part {
                        Part::Text(text) => out.extend_from_slice(text.as_bytes()),
                        Part::Key => out.extend_from_slice(key?),
                        Part::Header(wanted) => {
                            let value = headers
                                .iter()
                                .flatten()
                                .find(|(name, _)| &name[..] == wanted.as_bytes())?
                                .1?;
                            out.extend_from_slice(&value);
                        }
                    }
                }
                MqttString::from_bytes(out.freeze()).ok()?
            }
        };
        check_topic_name(name.as_str()).ok()?;
        Some(name)
    }
}

/// The Kafka topics that back MQTT subscriptions, each with its template.
#[derive(Debug, Default)]
pub struct DeliveryTopics {
    templates: BTreeMap<String, Rc<TopicTemplate>>,
}

impl DeliveryTopics {
    /// From a validated config: the topics MQTT routes write with the key `{topic}`, and
    /// those of `[[reverse_routes]]`.
    pub fn new(config: &Config) -> DeliveryTopics {
        let mut templates = BTreeMap::new();
        for topic in keyed_by_topic(config) {
            templates.insert(topic, Rc::new(TopicTemplate::key()));
        }
        for r in &config.reverse_routes {
            let template = TopicTemplate::parse(&r.mqtt_topic).expect("validated");
            templates.insert(r.kafka_topic.clone(), Rc::new(template));
        }
        DeliveryTopics { templates }
    }

    /// The Kafka topics, sorted.
    pub fn names(&self) -> Vec<String> {
        self.templates.keys().cloned().collect()
    }

    /// Whether no Kafka topic backs subscriptions.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// The template of `topic` (one of [`DeliveryTopics::names`]).
    pub fn template(&self, topic: &str) -> Option<Rc<TopicTemplate>> {
        self.templates.get(topic).cloned()
    }
}

/// The Kafka topics MQTT routes write with the MQTT topic as key.
pub fn keyed_by_topic(config: &Config) -> Vec<String> {
    let mqtt: Vec<&str> = config
        .listeners
        .iter()
        .filter(|l| l.protocol == Protocol::Mqtt)
        .map(|l| l.name.as_str())
        .collect();
    let mut topics: Vec<String> = config
        .routes
        .iter()
        .filter(|r| mqtt.contains(&r.listener.as_str()))
        .filter(|r| r.key_template(Protocol::Mqtt) == "{topic}")
        .map(|r| r.kafka_topic.clone())
        .collect();
    topics.sort();
    topics.dedup();
    topics
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The MQTT topic `template` gives a record with `key` and `headers`.
    fn topic(template: &str, key: Option<&[u8]>, headers: &[(&str, &[u8])]) -> Option<String> {
        let record = super::super::test_record(key, headers);
        let template = TopicTemplate::parse(template).unwrap();
        template
            .topic(record.key.as_ref(), &record.headers)
            .map(|t| t.as_str().to_owned())
    }

    #[test]
    fn templates_fill_from_key_and_headers() {
        let region = [("region", &b"eu"[..])];
        assert_eq!(topic("{key}", Some(b"a/b"), &[]).as_deref(), Some("a/b"));
        assert_eq!(
            topic("shop/{header.region}/orders/{key}", Some(b"o-1"), &region).as_deref(),
            Some("shop/eu/orders/o-1")
        );
        assert_eq!(
            topic("fixed/topic", None, &[]).as_deref(),
            Some("fixed/topic")
        );
    }

    #[test]
    fn records_without_what_the_template_needs_reach_no_one() {
        assert_eq!(topic("{key}", None, &[]), None, "no key");
        assert_eq!(
            topic("x/{header.region}", Some(b"k"), &[]),
            None,
            "no header"
        );
        assert_eq!(
            topic("{key}", Some(b"a/+"), &[]),
            None,
            "a wildcard in the key"
        );
        assert_eq!(topic("{key}", Some(b"#"), &[]), None);
        assert_eq!(topic("{key}", Some(b""), &[]), None, "empty");
        assert_eq!(topic("{key}", Some(&[0xff]), &[]), None, "not UTF-8");
        let plus = [("region", &b"e+"[..])];
        assert_eq!(topic("x/{header.region}", Some(b"k"), &plus), None);
    }

    #[test]
    fn bad_templates_say_why() {
        let e = |t: &str| TopicTemplate::parse(t).unwrap_err();
        assert!(e("a/+/{key}").contains("wildcards"));
        assert!(e("{nope}").contains("{nope}"));
        assert!(e("{header.}").contains("{header.}"));
        assert!(e("").contains("empty"));
        assert!(e("{key").contains("unclosed"));
    }
}
