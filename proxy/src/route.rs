//! Routing: which Kafka topic, key and headers a client's message gets.
//!
//! Routes are compiled once per shard from the config. For an MQTT PUBLISH, the first route
//! of its listener whose topic filter matches wins; its key template is filled from the
//! topic and the connection, and the requested headers are stamped on the record. A route
//! whose `acks` differ from the process's names the acks level whose producer takes its
//! records ([`crate::shard::Shard::producer_for`]).

use codecs::mqtt::{Publish, TopicFilter};
use kafka_wire::partitioner::Partitioning;
use kafka_wire::record::Header;
use kafka_wire::Acks;

use crate::config::{topic_filter, Config, Protocol};

/// One piece of a key template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Topic,
    ClientId,
    Username,
    /// The N-th level of the MQTT topic (0-based); empty when the topic has fewer levels.
    TopicLevel(usize),
    /// The key the client sent with the record (stream listeners).
    RecordKey,
}

/// A record key built from `{topic}`, `{client_id}`, `{username}` and `{topic.N}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    parts: Vec<Part>,
}

impl KeyTemplate {
    /// Parses a template; the error says what is wrong.
    pub fn parse(template: &str) -> Result<KeyTemplate, String> {
        let parts = split_template(template, Part::Text, |name| {
            Ok(match name {
                "topic" => Part::Topic,
                "client_id" => Part::ClientId,
                "username" => Part::Username,
                "key" => Part::RecordKey,
                _ => match name.strip_prefix("topic.").map(str::parse::<usize>) {
                    Some(Ok(n)) => Part::TopicLevel(n),
                    _ => {
                        return Err(format!(
                            "uses {{{name}}}; known are {{topic}}, {{client_id}}, {{username}}, {{topic.N}}, {{key}}"
                        ))
                    }
                },
            })
        })?;
        Ok(KeyTemplate { parts })
    }

    /// Whether the key is just the MQTT topic (the common case: no allocation needed).
    pub fn is_topic(&self) -> bool {
        self.parts == [Part::Topic]
    }

    /// Whether the key is just the client's own record key.
    pub fn is_record_key(&self) -> bool {
        self.parts == [Part::RecordKey]
    }

    /// Whether the template produces no key.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Whether the template uses `{key}`.
    pub fn uses_record_key(&self) -> bool {
        self.parts.contains(&Part::RecordKey)
    }

    /// Whether the template uses MQTT topic or connection fields.
    pub fn uses_mqtt(&self) -> bool {
        self.parts
            .iter()
            .any(|p| !matches!(p, Part::Text(_) | Part::RecordKey))
    }

    /// Writes the key for `topic` (MQTT) or the client's `record_key` (streams) from the
    /// connection `conn` into `out`.
    pub fn render(
        &self,
        topic: &str,
        conn: &ConnInfo,
        record_key: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) {
        out.clear();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                Part::Topic => out.extend_from_slice(topic.as_bytes()),
                Part::ClientId => out.extend_from_slice(conn.client_id.as_bytes()),
                Part::Username => out.extend_from_slice(conn.username().unwrap_or("").as_bytes()),
                Part::TopicLevel(n) => {
                    out.extend_from_slice(topic.split('/').nth(*n).unwrap_or("").as_bytes())
                }
                Part::RecordKey => out.extend_from_slice(record_key.unwrap_or(b"")),
            }
        }
    }
}

/// Splits a template into its text and its `{name}` placeholders, in order: `text` makes a
/// part of literal text, `placeholder` one of a name (or says why the name is unknown).
pub(crate) fn split_template<P>(
    template: &str,
    text: impl Fn(String) -> P,
    placeholder: impl Fn(&str) -> Result<P, String>,
) -> Result<Vec<P>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(text(rest[..open].to_owned()));
        }
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("has an unclosed '{{' in {template:?}"))?;
        parts.push(placeholder(&rest[open + 1..open + close])?);
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("has a '}}' without '{{' in {template:?}"));
    }
    if !rest.is_empty() {
        parts.push(text(rest.to_owned()));
    }
    Ok(parts)
}

/// A header a route can stamp on records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderField {
    /// `mqtt.client_id`: the client identifier.
    ClientId,
    /// `mqtt.username`: the authenticated user name.
    Username,
    /// `sluice.listener`: the listener's name.
    Listener,
    /// `mqtt.topic`: the MQTT topic.
    MqttTopic,
    /// Every MQTT 5 user property, as a header of the same name.
    UserProperties,
    /// `content-type`: the MQTT 5 content type.
    ContentType,
    /// `sluice.principal`: who the client authenticated as (username or JWT claim).
    Principal,
    /// `mqtt.qos`: the PUBLISH's QoS (`0`, `1` or `2`); delivery never exceeds it. A
    /// retained PUBLISH also gets `mqtt.retain` = `1` (for retain-as-published).
    Qos,
    /// `mqtt.message_expiry`: the MQTT 5 Message Expiry Interval, in seconds (decimal),
    /// counted from the record's timestamp; subscribers get what is left of it and
    /// nothing once it is over.
    MessageExpiry,
    /// `mqtt.response_topic`: the MQTT 5 Response Topic (request/response).
    ResponseTopic,
    /// `mqtt.correlation_data`: the MQTT 5 Correlation Data, as the bytes the client sent.
    CorrelationData,
    /// `mqtt.payload_format`: the MQTT 5 Payload Format Indicator (`0` bytes, `1` UTF-8).
    PayloadFormat,
}

impl HeaderField {
    /// Parses a config name.
    pub fn parse(name: &str) -> Result<HeaderField, String> {
        Ok(match name {
            "client_id" => HeaderField::ClientId,
            "username" => HeaderField::Username,
            "listener" => HeaderField::Listener,
            "mqtt_topic" => HeaderField::MqttTopic,
            "user_properties" => HeaderField::UserProperties,
            "content_type" => HeaderField::ContentType,
            "principal" => HeaderField::Principal,
            "qos" => HeaderField::Qos,
            "message_expiry" => HeaderField::MessageExpiry,
            "response_topic" => HeaderField::ResponseTopic,
            "correlation_data" => HeaderField::CorrelationData,
            "payload_format" => HeaderField::PayloadFormat,
            other => {
                return Err(format!(
                    "names an unknown header {other:?}; known are client_id, username, listener, mqtt_topic, user_properties, content_type, principal, qos, message_expiry, response_topic, correlation_data, payload_format"
                ))
            }
        })
    }
}

/// What a route needs to know about the connection a message came from. Every idle MQTT
/// connection keeps one, so it is 24 bytes: a boxed client id, and the rest of the
/// client's identity, which many clients do not have, behind one pointer.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// The MQTT client identifier.
    pub client_id: Box<str>,
    identity: Option<Box<Identity>>,
}

#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<ConnInfo>() == 24);

#[derive(Debug, Clone, Default)]
struct Identity {
    username: Option<Box<str>>,
    principal: Option<Box<str>>,
}

impl ConnInfo {
    /// The user name the client authenticated with.
    pub fn username(&self) -> Option<&str> {
        self.identity.as_ref()?.username.as_deref()
    }

    /// Who the client proved to be, when the listener authenticates.
    pub fn principal(&self) -> Option<&str> {
        self.identity.as_ref()?.principal.as_deref()
    }

    /// Sets (or clears) the user name.
    pub fn set_username(&mut self, username: Option<&str>) {
        self.identity_mut().username = username.map(Into::into);
        self.drop_empty_identity();
    }

    /// Sets (or clears) the principal.
    pub fn set_principal(&mut self, principal: Option<String>) {
        self.identity_mut().principal = principal.map(Into::into);
        self.drop_empty_identity();
    }

    fn identity_mut(&mut self) -> &mut Identity {
        self.identity.get_or_insert_default()
    }

    fn drop_empty_identity(&mut self) {
        if self
            .identity
            .as_ref()
            .is_some_and(|i| i.username.is_none() && i.principal.is_none())
        {
            self.identity = None;
        }
    }
}

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// MQTT routes match topics; a stream listener's one route has no filter.
    filter: Option<TopicFilter>,
    /// The name of the listener it belongs to (the `listener` header).
    pub listener: String,
    /// The Kafka topic.
    pub kafka_topic: String,
    /// The key template.
    pub key: KeyTemplate,
    /// Headers to stamp.
    pub headers: Vec<HeaderField>,
    /// How its records' partitions are chosen (`None`: by key, the producer's default).
    pub partitioning: Option<Partitioning>,
    /// The acks level of the producer its records go to, when it is not the process's
    /// (`None`: the process's producer).
    pub acks: Option<Acks>,
}

/// The routes of one listener, in config order.
#[derive(Debug, Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// Compiles the routes of `listener` (the config is validated already).
    pub fn for_listener(listener: &str, protocol: Protocol, config: &Config) -> Routes {
        Routes {
            routes: config
                .routes
                .iter()
                .filter(|r| r.listener == listener)
                .map(|r| Route {
                    listener: listener.to_owned(),
                    filter: r.mqtt_topic.as_deref().map(topic_filter),
                    kafka_topic: r.kafka_topic.clone(),
                    key: KeyTemplate::parse(r.key_template(protocol))
                        .expect("validated key template"),
                    headers: r
                        .headers
                        .iter()
                        .map(|h| HeaderField::parse(h).expect("validated header"))
                        .collect(),
                    partitioning: r.partitioning().expect("validated partitioner"),
                    acks: config.route_acks(r),
                })
                .collect(),
        }
    }

    /// The route for an MQTT topic, if any matches.
    pub fn find(&self, topic: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.filter.as_ref().is_some_and(|f| f.matches(topic)))
    }

    /// A stream listener's one route.
    pub fn single(&self) -> Option<&Route> {
        self.routes.first()
    }
}

/// The record headers `route` asks for, as (name, value) pairs borrowing from `publish`,
/// `conn` and `digits` (where a number is written as text).
pub fn headers<'a>(
    route: &'a Route,
    publish: &'a Publish,
    conn: &'a ConnInfo,
    digits: &'a mut Digits,
    out: &mut Vec<Header<'a>>,
) {
    out.clear();
    let mut digits = Some(digits);
    for field in &route.headers {
        match field {
            HeaderField::ClientId => out.push(header("mqtt.client_id", conn.client_id.as_bytes())),
            HeaderField::Username => {
                if let Some(u) = conn.username() {
                    out.push(header("mqtt.username", u.as_bytes()));
                }
            }
            HeaderField::Listener => out.push(header("sluice.listener", route.listener.as_bytes())),
            HeaderField::MqttTopic => {
                out.push(header("mqtt.topic", publish.topic.as_str().as_bytes()))
            }
            HeaderField::UserProperties => {
                for (k, v) in &publish.properties.user_properties {
                    out.push(header(k.as_str(), v.as_str().as_bytes()));
                }
            }
            HeaderField::ContentType => {
                if let Some(ct) = &publish.properties.content_type {
                    out.push(header("content-type", ct.as_str().as_bytes()));
                }
            }
            HeaderField::Principal => {
                if let Some(p) = conn.principal() {
                    out.push(header("sluice.principal", p.as_bytes()));
                }
            }
            HeaderField::Qos => {
                const QOS: [&[u8]; 3] = [b"0", b"1", b"2"];
                out.push(header("mqtt.qos", QOS[publish.qos as usize]));
                if publish.retain {
                    // For subscriptions with retain-as-published.
                    out.push(header("mqtt.retain", b"1"));
                }
            }
            HeaderField::MessageExpiry => {
                let interval = publish.properties.message_expiry_interval;
                if let (Some(seconds), Some(digits)) = (interval, digits.take()) {
                    out.push(header("mqtt.message_expiry", digits.format(seconds)));
                }
            }
            HeaderField::ResponseTopic => {
                if let Some(t) = &publish.properties.response_topic {
                    out.push(header("mqtt.response_topic", t.as_str().as_bytes()));
                }
            }
            HeaderField::CorrelationData => {
                if let Some(d) = &publish.properties.correlation_data {
                    out.push(header("mqtt.correlation_data", d));
                }
            }
            HeaderField::PayloadFormat => {
                const FORMAT: [&[u8]; 2] = [b"0", b"1"];
                if let Some(f) = publish.properties.payload_format_indicator {
                    out.push(header("mqtt.payload_format", FORMAT[usize::from(f != 0)]));
                }
            }
        }
    }
}

/// Room for a `u32` written in decimal (the one number a record's headers carry).
#[derive(Debug, Default)]
pub struct Digits([u8; 10]);

impl Digits {
    /// `n` in decimal.
    pub fn format(&mut self, mut n: u32) -> &[u8] {
        let mut at = self.0.len();
        loop {
            at -= 1;
            self.0[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                return &self.0[at..];
            }
        }
    }
}

fn header<'a>(key: &'a str, value: &'a [u8]) -> Header<'a> {
    Header {
        key,
        value: Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteConfig;

    fn conn() -> ConnInfo {
        let mut info = ConnInfo {
            client_id: "dev-7".into(),
            ..ConnInfo::default()
        };
        info.set_username(Some("alice"));
        info
    }

    #[test]
    fn key_templates_fill_from_topic_and_connection() {
        let mut out = Vec::new();
        let t = KeyTemplate::parse("{client_id}:{topic.1}/{username}").unwrap();
        t.render("site/42/temp", &conn(), None, &mut out);
        assert_eq!(out, b"dev-7:42/alice");
        let t = KeyTemplate::parse("{topic}").unwrap();
        assert!(t.is_topic());
        t.render("a/b", &conn(), None, &mut out);
        assert_eq!(out, b"a/b");
        let t = KeyTemplate::parse("{topic.9}").unwrap();
        t.render("a/b", &conn(), None, &mut out);
        assert!(out.is_empty());
        let t = KeyTemplate::parse("dev-{key}").unwrap();
        assert!(t.uses_record_key() && !t.uses_mqtt());
        t.render("", &conn(), Some(b"42"), &mut out);
        assert_eq!(out, b"dev-42");
        assert!(KeyTemplate::parse("").unwrap().is_empty());
    }

    #[test]
    fn mqtt5_properties_become_the_headers_the_route_names() {
        let route = Route {
            filter: None,
            listener: "mqtt".into(),
            kafka_topic: "t".into(),
            key: KeyTemplate::parse("{topic}").unwrap(),
            headers: [
                "message_expiry",
                "response_topic",
                "correlation_data",
                "payload_format",
            ]
            .into_iter()
            .map(|h| HeaderField::parse(h).unwrap())
            .collect(),
            partitioning: None,
            acks: None,
        };
        let mut publish = Publish::default();
        let props = publish.properties.make_mut();
        props.message_expiry_interval = Some(4_294_967_295);
        props.response_topic = Some("replies/dev-7".try_into().unwrap());
        props.correlation_data = Some(bytes::Bytes::from_static(&[0, 255]));
        props.payload_format_indicator = Some(1);
        let (mut out, mut digits, conn) = (Vec::new(), Digits::default(), conn());
        headers(&route, &publish, &conn, &mut digits, &mut out);
        let pairs: Vec<(&str, &[u8])> = out.iter().map(|h| (h.key, h.value.unwrap())).collect();
        assert_eq!(
            pairs,
            [
                ("mqtt.message_expiry", &b"4294967295"[..]),
                ("mqtt.response_topic", b"replies/dev-7"),
                ("mqtt.correlation_data", &[0, 255]),
                ("mqtt.payload_format", b"1"),
            ]
        );
        // A PUBLISH without them gets none of these headers.
        let (mut out, mut digits, plain) = (Vec::new(), Digits::default(), Publish::default());
        headers(&route, &plain, &conn, &mut digits, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn digits_are_decimal() {
        let mut d = Digits::default();
        for n in [0, 7, 10, 300, 65_535, u32::MAX] {
            assert_eq!(d.format(n), n.to_string().as_bytes());
        }
    }

    #[test]
    fn bad_templates_say_why() {
        assert!(KeyTemplate::parse("{nope}").unwrap_err().contains("{nope}"));
        assert!(KeyTemplate::parse("{topic")
            .unwrap_err()
            .contains("unclosed"));
        assert!(KeyTemplate::parse("x}").unwrap_err().contains("without"));
        assert!(HeaderField::parse("color").unwrap_err().contains("color"));
    }

    #[test]
    fn first_matching_route_wins() {
        let mut config = Config::default_config();
        config.routes = vec![
            RouteConfig {
                listener: "mqtt".into(),
                mqtt_topic: Some("alerts/#".into()),
                kafka_topic: "alerts".into(),
                key: Some("{topic.1}".into()),
                headers: vec!["listener".into()],
                partitioner: None,
                partition: None,
                acks: Some("0".into()),
            },
            RouteConfig {
                listener: "mqtt".into(),
                mqtt_topic: Some("#".into()),
                kafka_topic: "mqtt-messages".into(),
                key: None,
                headers: vec![],
                partitioner: None,
                partition: None,
                acks: None,
            },
            RouteConfig {
                listener: "other".into(),
                mqtt_topic: Some("#".into()),
                kafka_topic: "elsewhere".into(),
                key: None,
                headers: vec![],
                partitioner: None,
                partition: None,
                acks: None,
            },
        ];
        let r = Routes::for_listener("mqtt", Protocol::Mqtt, &config);
        assert_eq!(r.find("alerts/fire").unwrap().kafka_topic, "alerts");
        assert_eq!(r.find("temp/1").unwrap().kafka_topic, "mqtt-messages");
        // Each route takes the producer of its acks level; `None` is the process's.
        assert_eq!(r.find("alerts/fire").unwrap().acks, Some(Acks::None));
        assert_eq!(r.find("temp/1").unwrap().acks, None);
        // `#` does not match `$` topics (MQTT 4.7.2).
        assert!(r.find("$SYS/x").is_none());
    }
}
