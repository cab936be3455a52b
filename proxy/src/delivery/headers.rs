//! What a Kafka record's headers say about its MQTT delivery: the QoS and retain flag it
//! was published with, its publisher (for no-local), its expiry, and the MQTT 5 properties
//! it carries. The header names are the ones the routes write (`crate::route`), so any
//! Kafka producer can set them too.

use bytes::Bytes;
use codecs::mqtt::{check_topic_name, MqttString, PublishProperties, QoS};

/// What a record's headers say about its MQTT delivery.
#[derive(Debug, Default)]
pub struct FromHeaders {
    /// `content-type` becomes the content type, `mqtt.response_topic`,
    /// `mqtt.correlation_data` and `mqtt.payload_format` the properties of those names,
    /// and every header that is not sluice's own (`mqtt.*`, `sluice.*`) a user property,
    /// in order; headers that are not valid MQTT strings are skipped (a response topic
    /// also when it has wildcards).
    pub properties: PublishProperties,
    /// `mqtt.qos`: the QoS it was published with; records without it count as QoS 2.
    pub qos: QoS,
    /// `mqtt.retain` = 1: published retained (for retain-as-published).
    pub retain: bool,
    /// `mqtt.client_id`: the publishing client (for no-local).
    pub client_id: Option<Bytes>,
    /// `mqtt.message_expiry`: the MQTT 5 Message Expiry Interval, seconds.
    pub expiry_s: Option<u32>,
}

impl FromHeaders {
    /// When the message expires, in milliseconds since the Unix epoch, for a record
    /// stamped `timestamp`.
    pub fn expires_at(&self, timestamp: i64) -> Option<u64> {
        let seconds = self.expiry_s?;
        Some((timestamp.max(0) as u64).saturating_add(u64::from(seconds) * 1000))
    }
}

/// Reads a record's headers.
pub fn from_headers(headers: &kafka_wire::record::Headers) -> FromHeaders {
    let mut out = FromHeaders {
        qos: QoS::ExactlyOnce,
        ..FromHeaders::default()
    };
    let props = &mut out.properties;
    for header in headers.iter().flatten() {
        let (key, value) = header;
        let Some(value) = value else { continue };
        match &key[..] {
            b"mqtt.retain" => out.retain = &value[..] == b"1",
            b"mqtt.client_id" => out.client_id = Some(value.clone()),
            b"mqtt.qos" => {
                out.qos = match &value[..] {
                    b"0" => QoS::AtMostOnce,
                    b"1" => QoS::AtLeastOnce,
                    _ => QoS::ExactlyOnce,
                }
            }
            b"mqtt.message_expiry" => out.expiry_s = decimal(&value),
            b"mqtt.correlation_data" => props.correlation_data = Some(value.clone()),
            b"mqtt.payload_format" => {
                props.payload_format_indicator = match &value[..] {
                    b"0" => Some(0),
                    b"1" => Some(1),
                    _ => None,
                }
            }
            b"mqtt.response_topic" => {
                props.response_topic = MqttString::from_bytes(value.clone())
                    .ok()
                    .filter(|t| check_topic_name(t.as_str()).is_ok());
            }
            k if k.starts_with(b"mqtt.") || k.starts_with(b"sluice.") => {}
            k => {
                let Ok(value) = MqttString::from_bytes(value.clone()) else {
                    continue;
                };
                if k == b"content-type" {
                    props.content_type = Some(value);
                } else if let Ok(name) = MqttString::from_bytes(key.clone()) {
                    props.user_properties.push((name, value));
                }
            }
        }
    }
    out
}

/// A non-negative decimal `u32`, nothing else.
fn decimal(text: &[u8]) -> Option<u32> {
    std::str::from_utf8(text)
        .ok()
        .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(headers: &[(&str, &[u8])]) -> FromHeaders {
        from_headers(&super::super::test_record(Some(b"t"), headers).headers)
    }

    #[test]
    fn mqtt5_properties_come_back_from_the_headers_routes_write() {
        let m = read(&[
            ("mqtt.qos", b"1"),
            ("mqtt.message_expiry", b"300"),
            ("mqtt.response_topic", b"replies/dev-7"),
            ("mqtt.correlation_data", &[0, 159, 255]),
            ("mqtt.payload_format", b"1"),
            ("content-type", b"application/json"),
            ("trace", b"abc"),
            ("sluice.listener", b"mqtt"),
        ]);
        assert_eq!(m.qos, QoS::AtLeastOnce);
        assert_eq!(m.expiry_s, Some(300));
        assert_eq!(m.expires_at(1_000), Some(301_000));
        let p = &m.properties;
        assert_eq!(p.response_topic.as_ref().unwrap().as_str(), "replies/dev-7");
        assert_eq!(p.correlation_data.as_deref(), Some(&[0, 159, 255][..]));
        assert_eq!(p.payload_format_indicator, Some(1));
        assert_eq!(
            p.content_type.as_ref().unwrap().as_str(),
            "application/json"
        );
        assert_eq!(
            p.user_properties.len(),
            1,
            "sluice's own headers are not user properties"
        );
        assert_eq!(p.user_properties[0].0.as_str(), "trace");
    }

    #[test]
    fn headers_no_subscriber_could_be_sent_are_left_out() {
        let m = read(&[
            ("mqtt.message_expiry", b"-5"),
            ("mqtt.response_topic", b"replies/+"),
            ("mqtt.payload_format", b"7"),
            ("content-type", &[0xff]),
        ]);
        assert_eq!(m.expiry_s, None);
        assert_eq!(m.expires_at(1_000), None);
        assert!(m.properties.response_topic.is_none(), "wildcards");
        assert!(m.properties.payload_format_indicator.is_none());
        assert!(m.properties.content_type.is_none());
        assert_eq!(
            read(&[("mqtt.message_expiry", b"4294967296")]).expiry_s,
            None
        );
        assert_eq!(read(&[]).qos, QoS::ExactlyOnce);
    }
}
