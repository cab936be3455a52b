//! What a Kafka record's headers say about its MQTT delivery: the QoS and retain flag it
//! was published with, its publisher (for no-local), and the MQTT 5 properties it carries.

use bytes::Bytes;
use codecs::mqtt::{MqttString, PublishProperties, QoS};

/// What a record's headers say about its MQTT delivery.
#[derive(Debug, Default)]
pub struct FromHeaders {
    /// `content-type` becomes the content type, and every header that is not sluice's own
    /// (`mqtt.*`, `sluice.*`) a user property, in order; headers that are not valid MQTT
    /// strings are skipped.
    pub properties: PublishProperties,
    /// `mqtt.qos`: the QoS it was published with; records without it count as QoS 2.
    pub qos: QoS,
    /// `mqtt.retain` = 1: published retained (for retain-as-published).
    pub retain: bool,
    /// `mqtt.client_id`: the publishing client (for no-local).
    pub client_id: Option<Bytes>,
}

/// Reads a record's headers.
pub fn from_headers(headers: &kafka_wire::record::Headers) -> FromHeaders {
    let mut props = PublishProperties::default();
    let mut qos = QoS::ExactlyOnce;
    let (mut retain, mut client_id) = (false, None);
    for header in headers.iter().flatten() {
        let (key, value) = header;
        let Some(value) = value else { continue };
        match &key[..] {
            b"mqtt.retain" => retain = &value[..] == b"1",
            b"mqtt.client_id" => client_id = Some(value.clone()),
            _ => {}
        }
        if &key[..] == b"mqtt.qos" {
            qos = match &value[..] {
                b"0" => QoS::AtMostOnce,
                b"1" => QoS::AtLeastOnce,
                _ => QoS::ExactlyOnce,
            };
            continue;
        }
        let Ok(value) = MqttString::from_bytes(value) else {
            continue;
        };
        match &key[..] {
            b"content-type" => props.content_type = Some(value),
            k if k.starts_with(b"mqtt.") || k.starts_with(b"sluice.") => {}
            _ => {
                if let Ok(name) = MqttString::from_bytes(key) {
                    props.user_properties.push((name, value));
                }
            }
        }
    }
    FromHeaders {
        properties: props,
        qos,
        retain,
        client_id,
    }
}
