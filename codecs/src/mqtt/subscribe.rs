//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK.
//!
//! Topic filters are validated on decode (wildcard placement, shared subscription syntax);
//! a bad filter is answered with Topic Filter invalid (0x8F). Lists grow as entries are
//! read, never from a peer-supplied count, and an empty list is a Protocol Error.

use bytes::{BufMut, BytesMut};

use super::error::{EncodeError, MqttError};
use super::properties::{
    properties_len, property_struct, put_properties, read_properties, with_prefix, AckProperties,
    Props,
};
use super::publish::read_packet_id;
use super::reason;
use super::topic::TopicFilter;
use super::types::{ProtocolVersion, QoS, UserProperty};
use super::wire::{field_len, put_field, Reader};

property_struct! {
    /// MQTT 5 SUBSCRIBE properties.
    SubscribeProperties {
        /// Identifier the server attaches to messages matching these subscriptions.
        SUBSCRIPTION_IDENTIFIER => subscription_identifier: Option<u32>,
        /// User properties.
        USER_PROPERTY => user_properties: Vec<UserProperty>,
    }
}

property_struct! {
    /// MQTT 5 UNSUBSCRIBE properties.
    UnsubscribeProperties {
        /// User properties.
        USER_PROPERTY => user_properties: Vec<UserProperty>,
    }
}

/// When retained messages are sent for a new subscription (MQTT 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// Send retained messages at subscribe time.
    #[default]
    OnSubscribe = 0,
    /// Send them only if the subscription did not exist.
    OnNewSubscribe = 1,
    /// Do not send them.
    Never = 2,
}

/// Subscription options (MQTT 3.1.1 uses only `qos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS the client wants to receive.
    pub qos: QoS,
    /// Do not deliver the client's own publications back to it.
    pub no_local: bool,
    /// Keep the RETAIN flag of forwarded messages.
    pub retain_as_published: bool,
    /// When to send retained messages.
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    fn decode(byte: u8, v: ProtocolVersion) -> Result<Self, MqttError> {
        let reserved = if v.is_v5() { 0xC0 } else { 0xFC };
        if byte & reserved != 0 {
            return Err(MqttError::ReservedBits("subscription options"));
        }
        Ok(Self {
            qos: QoS::from_bits(byte & 0x03).ok_or(MqttError::InvalidQos)?,
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
            retain_handling: match (byte >> 4) & 0x03 {
                0 => RetainHandling::OnSubscribe,
                1 => RetainHandling::OnNewSubscribe,
                2 => RetainHandling::Never,
                _ => return Err(MqttError::Protocol("retain handling 3 is reserved")),
            },
        })
    }

    fn encode(self, v: ProtocolVersion) -> Result<u8, EncodeError> {
        let v5_bits = u8::from(self.no_local) << 2
            | u8::from(self.retain_as_published) << 3
            | (self.retain_handling as u8) << 4;
        if !v.is_v5() && v5_bits != 0 {
            return Err(EncodeError::NotRepresentable {
                version: v,
                what: "MQTT 5 subscription options",
            });
        }
        Ok(self.qos as u8 | v5_bits)
    }
}

/// One topic filter of a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The filter, possibly `$share/{group}/...`.
    pub filter: TopicFilter,
    /// Its options.
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier, echoed in SUBACK.
    pub packet_id: u16,
    /// The requested subscriptions, at least one.
    pub subscriptions: Vec<Subscription>,
    /// MQTT 5 properties.
    pub properties: SubscribeProperties,
}

/// SUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// The SUBSCRIBE's packet identifier.
    pub packet_id: u16,
    /// One code per subscription: the granted QoS (0–2) or a failure (≥ 0x80). On 3.1.1
    /// every failure is sent as 0x80.
    pub reason_codes: Vec<u8>,
    /// MQTT 5 properties.
    pub properties: Props<AckProperties>,
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier, echoed in UNSUBACK.
    pub packet_id: u16,
    /// The filters to remove, at least one.
    pub filters: Vec<TopicFilter>,
    /// MQTT 5 properties.
    pub properties: UnsubscribeProperties,
}

/// UNSUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// The UNSUBSCRIBE's packet identifier.
    pub packet_id: u16,
    /// MQTT 5: one reason code per filter. MQTT 3.1.1 UNSUBACK carries none.
    pub reason_codes: Vec<u8>,
    /// MQTT 5 properties.
    pub properties: Props<AckProperties>,
}

fn read_filter(r: &mut Reader) -> Result<TopicFilter, MqttError> {
    TopicFilter::new(r.string("topic filter")?).map_err(MqttError::TopicFilterInvalid)
}

fn read_codes(r: &mut Reader, valid: impl Fn(u8) -> bool) -> Result<Vec<u8>, MqttError> {
    if r.is_empty() {
        return Err(MqttError::Protocol(
            "an acknowledgement must carry reason codes",
        ));
    }
    let codes = r.rest();
    if let Some(&code) = codes.iter().find(|&&c| !valid(c)) {
        return Err(MqttError::InvalidReasonCode {
            packet: r.packet(),
            code,
        });
    }
    Ok(codes.to_vec())
}

fn v5_props_len(
    v: ProtocolVersion,
    props_empty: bool,
    len: impl FnOnce() -> Result<usize, EncodeError>,
) -> Result<usize, EncodeError> {
    if v.is_v5() {
        Ok(with_prefix(len()?))
    } else if props_empty {
        Ok(0)
    } else {
        Err(EncodeError::NotRepresentable {
            version: v,
            what: "properties",
        })
    }
}

fn filters_len<'a>(filters: impl Iterator<Item = &'a TopicFilter>) -> Result<usize, EncodeError> {
    let mut len = 0;
    for filter in filters {
        len += field_len("topic filter", filter.as_str().len())?;
    }
    Ok(len)
}

impl Subscribe {
    pub(crate) fn decode(r: &mut Reader, v: ProtocolVersion) -> Result<Self, MqttError> {
        let packet_id = read_packet_id(r)?;
        let mut properties = SubscribeProperties::default();
        if v.is_v5() {
            read_properties(r, &mut properties)?;
        }
        let mut subscriptions = Vec::new();
        while !r.is_empty() {
            let filter = read_filter(r)?;
            let options = SubscriptionOptions::decode(r.u8("subscription options")?, v)?;
            if options.no_local && filter.shared().is_some() {
                return Err(MqttError::Protocol(
                    "No Local must not be set on a shared subscription",
                ));
            }
            subscriptions.push(Subscription { filter, options });
        }
        if subscriptions.is_empty() {
            return Err(MqttError::Protocol("a SUBSCRIBE must carry a topic filter"));
        }
        Ok(Self {
            packet_id,
            subscriptions,
            properties,
        })
    }

    pub(crate) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.packet_id == 0 || self.subscriptions.is_empty() {
            return Err(EncodeError::Invalid(
                "SUBSCRIBE needs a packet id and a filter",
            ));
        }
        for s in &self.subscriptions {
            s.options.encode(v)?;
        }
        let props = v5_props_len(v, self.properties.is_empty(), || {
            properties_len(&self.properties)
        })?;
        let filters = filters_len(self.subscriptions.iter().map(|s| &s.filter))?;
        Ok(2 + props + filters + self.subscriptions.len())
    }

    pub(crate) fn write_body(&self, v: ProtocolVersion, dst: &mut BytesMut) {
        dst.put_u16(self.packet_id);
        if v.is_v5() {
            put_properties(
                dst,
                properties_len(&self.properties).unwrap_or(0),
                &self.properties,
            );
        }
        for s in &self.subscriptions {
            put_field(dst, s.filter.as_str().as_bytes());
            dst.put_u8(s.options.encode(v).unwrap_or(0));
        }
    }
}

impl SubAck {
    pub(crate) fn decode(r: &mut Reader, v: ProtocolVersion) -> Result<Self, MqttError> {
        let packet_id = read_packet_id(r)?;
        let mut properties = Props::none();
        if v.is_v5() {
            read_properties(r, &mut properties)?;
            let reason_codes = read_codes(r, reason::valid_for_suback)?;
            return Ok(Self {
                packet_id,
                reason_codes,
                properties,
            });
        }
        let reason_codes = read_codes(r, |c| matches!(c, 0..=2 | 0x80))?;
        Ok(Self {
            packet_id,
            reason_codes,
            properties,
        })
    }

    pub(crate) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.packet_id == 0 || self.reason_codes.is_empty() {
            return Err(EncodeError::Invalid("SUBACK needs a packet id and a code"));
        }
        if !v.is_v5() && self.reason_codes.iter().any(|&c| (3..0x80).contains(&c)) {
            return Err(EncodeError::NotRepresentable {
                version: v,
                what: "a SUBACK code other than a granted QoS or a failure",
            });
        }
        let props = v5_props_len(v, self.properties.is_empty(), || {
            properties_len(&self.properties)
        })?;
        Ok(2 + props + self.reason_codes.len())
    }

    pub(crate) fn write_body(&self, v: ProtocolVersion, dst: &mut BytesMut) {
        dst.put_u16(self.packet_id);
        if v.is_v5() {
            put_properties(
                dst,
                properties_len(&self.properties).unwrap_or(0),
                &self.properties,
            );
            dst.put_slice(&self.reason_codes);
        } else {
            // 3.1.1 has a single failure code; every MQTT 5 failure reason maps onto it.
            for &code in &self.reason_codes {
                dst.put_u8(code.min(reason::UNSPECIFIED_ERROR));
            }
        }
    }
}

impl Unsubscribe {
    pub(crate) fn decode(r: &mut Reader, v: ProtocolVersion) -> Result<Self, MqttError> {
        let packet_id = read_packet_id(r)?;
        let mut properties = UnsubscribeProperties::default();
        if v.is_v5() {
            read_properties(r, &mut properties)?;
        }
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(read_filter(r)?);
        }
        if filters.is_empty() {
            return Err(MqttError::Protocol(
                "an UNSUBSCRIBE must carry a topic filter",
            ));
        }
        Ok(Self {
            packet_id,
            filters,
            properties,
        })
    }

    pub(crate) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.packet_id == 0 || self.filters.is_empty() {
            return Err(EncodeError::Invalid(
                "UNSUBSCRIBE needs a packet id and a filter",
            ));
        }
        let props = v5_props_len(v, self.properties.is_empty(), || {
            properties_len(&self.properties)
        })?;
        Ok(2 + props + filters_len(self.filters.iter())?)
    }

    pub(crate) fn write_body(&self, v: ProtocolVersion, dst: &mut BytesMut) {
        dst.put_u16(self.packet_id);
        if v.is_v5() {
            put_properties(
                dst,
                properties_len(&self.properties).unwrap_or(0),
                &self.properties,
            );
        }
        for filter in &self.filters {
            put_field(dst, filter.as_str().as_bytes());
        }
    }
}

impl UnsubAck {
    pub(crate) fn decode(r: &mut Reader, v: ProtocolVersion) -> Result<Self, MqttError> {
        let packet_id = read_packet_id(r)?;
        let mut properties = Props::none();
        let mut reason_codes = Vec::new();
        if v.is_v5() {
            read_properties(r, &mut properties)?;
            reason_codes = read_codes(r, reason::valid_for_unsuback)?;
        }
        r.finish()?;
        Ok(Self {
            packet_id,
            reason_codes,
            properties,
        })
    }

    pub(crate) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.packet_id == 0 {
            return Err(EncodeError::Invalid("packet identifier 0"));
        }
        if !v.is_v5() {
            // 3.1.1 UNSUBACK has no codes: every unsubscribe "succeeds".
            return v5_props_len(v, self.properties.is_empty(), || Ok(0)).map(|_| 2);
        }
        if self.reason_codes.is_empty() {
            return Err(EncodeError::Invalid(
                "an MQTT 5 UNSUBACK needs reason codes",
            ));
        }
        Ok(2 + with_prefix(properties_len(&self.properties)?) + self.reason_codes.len())
    }

    pub(crate) fn write_body(&self, v: ProtocolVersion, dst: &mut BytesMut) {
        dst.put_u16(self.packet_id);
        if v.is_v5() {
            put_properties(
                dst,
                properties_len(&self.properties).unwrap_or(0),
                &self.properties,
            );
            dst.put_slice(&self.reason_codes);
        }
    }
}
