//! MQTT 5 properties: the identifier table, the shared decode loop and encoder, and one
//! struct per packet kind listing exactly the properties that packet may carry.
//!
//! Decoding checks, for every property, that the identifier exists and is allowed in the
//! packet (else Malformed Packet), that single-valued properties appear once (else Protocol
//! Error), and the value ranges the spec fixes (0/1 flags, non-zero Receive Maximum,
//! Maximum Packet Size, Subscription Identifier and Topic Alias). Strings and binary values
//! are slices of the packet: a packet's properties cost one allocation, their struct
//! ([`Props`]), plus a `Vec` for user properties or subscription identifiers.
//!
//! Peers write properties in no fixed order (mosquitto follows its command line, the broker
//! its own). So that a decoded packet re-encodes byte for byte, each property struct
//! remembers the order identifiers first appeared in ([`PropertyOrder`], 16 inline bytes,
//! no allocation); the encoder follows it and writes anything else in ascending identifier
//! order, which is also the order for structs built by hand. Repeated properties (user
//! properties, subscription identifiers) are written together at their first position.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{EncodeError, MqttError};
use super::types::{MqttString, UserProperty};
use super::wire::{field_len, put_field, put_varint, varint_len, Reader, VARINT_MAX};

/// Payload Format Indicator.
pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
/// Message Expiry Interval.
pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
/// Content Type.
pub const CONTENT_TYPE: u8 = 0x03;
/// Response Topic.
pub const RESPONSE_TOPIC: u8 = 0x08;
/// Correlation Data.
pub const CORRELATION_DATA: u8 = 0x09;
/// Subscription Identifier.
pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
/// Session Expiry Interval.
pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
/// Assigned Client Identifier.
pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
/// Server Keep Alive.
pub const SERVER_KEEP_ALIVE: u8 = 0x13;
/// Authentication Method.
pub const AUTHENTICATION_METHOD: u8 = 0x15;
/// Authentication Data.
pub const AUTHENTICATION_DATA: u8 = 0x16;
/// Request Problem Information.
pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
/// Will Delay Interval.
pub const WILL_DELAY_INTERVAL: u8 = 0x18;
/// Request Response Information.
pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
/// Response Information.
pub const RESPONSE_INFORMATION: u8 = 0x1A;
/// Server Reference.
pub const SERVER_REFERENCE: u8 = 0x1C;
/// Reason String.
pub const REASON_STRING: u8 = 0x1F;
/// Receive Maximum.
pub const RECEIVE_MAXIMUM: u8 = 0x21;
/// Topic Alias Maximum.
pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
/// Topic Alias.
pub const TOPIC_ALIAS: u8 = 0x23;
/// Maximum QoS.
pub const MAXIMUM_QOS: u8 = 0x24;
/// Retain Available.
pub const RETAIN_AVAILABLE: u8 = 0x25;
/// User Property.
pub const USER_PROPERTY: u8 = 0x26;
/// Maximum Packet Size.
pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
/// Wildcard Subscription Available.
pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
/// Subscription Identifier Available.
pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
/// Shared Subscription Available.
pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// The wire type of a property value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Byte,
    U16,
    U32,
    VarInt,
    Str,
    Bin,
    Pair,
}

fn kind(id: u8) -> Option<Kind> {
    Some(match id {
        PAYLOAD_FORMAT_INDICATOR
        | REQUEST_PROBLEM_INFORMATION
        | REQUEST_RESPONSE_INFORMATION
        | MAXIMUM_QOS
        | RETAIN_AVAILABLE
        | WILDCARD_SUBSCRIPTION_AVAILABLE
        | SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | SHARED_SUBSCRIPTION_AVAILABLE => Kind::Byte,
        SERVER_KEEP_ALIVE | RECEIVE_MAXIMUM | TOPIC_ALIAS_MAXIMUM | TOPIC_ALIAS => Kind::U16,
        MESSAGE_EXPIRY_INTERVAL
        | SESSION_EXPIRY_INTERVAL
        | WILL_DELAY_INTERVAL
        | MAXIMUM_PACKET_SIZE => Kind::U32,
        SUBSCRIPTION_IDENTIFIER => Kind::VarInt,
        CONTENT_TYPE
        | RESPONSE_TOPIC
        | ASSIGNED_CLIENT_IDENTIFIER
        | AUTHENTICATION_METHOD
        | RESPONSE_INFORMATION
        | SERVER_REFERENCE
        | REASON_STRING => Kind::Str,
        CORRELATION_DATA | AUTHENTICATION_DATA => Kind::Bin,
        USER_PROPERTY => Kind::Pair,
        _ => return None,
    })
}

/// A decoded property value, before it is stored in its packet's property struct.
#[derive(Debug)]
pub(crate) enum Value {
    Int(u32),
    Str(MqttString),
    Bin(Bytes),
    Pair(MqttString, MqttString),
}

/// A borrowed property value, for encoding.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PropRef<'a> {
    Int(u32),
    Str(&'a MqttString),
    Bin(&'a Bytes),
    Pair(&'a MqttString, &'a MqttString),
}

/// The order in which property identifiers first appeared on the wire.
///
/// It is presentation, not content: two property sets with the same values compare equal
/// whatever their order. Up to 15 distinct identifiers are remembered; more (only possible
/// in a CONNACK) are written in ascending order.
#[derive(Clone, Copy, Default)]
pub struct PropertyOrder {
    /// Identifiers in order, 0-terminated (0 is not a property identifier). 15 rather than
    /// 16 keeps the struct at 16 bytes with the flag below.
    ids: [u8; 15],
    /// An acknowledgement carried a Property Length of 0 that it could have left out
    /// (MQTT.js writes PUBREL as `id 00 00`); the encoder writes it back.
    pub(crate) explicit_empty: bool,
}

impl PropertyOrder {
    /// No identifier seen.
    pub(crate) const EMPTY: Self = Self {
        ids: [0; 15],
        explicit_empty: false,
    };

    fn record(&mut self, id: u8) {
        for slot in &mut self.ids {
            if *slot == id {
                return;
            }
            if *slot == 0 {
                *slot = id;
                return;
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        self.ids.iter().copied().take_while(|&id| id != 0)
    }

    fn contains(&self, id: u8) -> bool {
        self.iter().any(|known| known == id)
    }
}

impl PartialEq for PropertyOrder {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for PropertyOrder {}

impl std::fmt::Debug for PropertyOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Storage for one property inside a property struct.
pub(crate) trait Slot {
    /// The slot holding nothing.
    const UNSET: Self;
    fn store(&mut self, id: u8, value: Value) -> Result<(), MqttError>;
    fn visit(&self, id: u8, f: &mut dyn FnMut(u8, PropRef<'_>));
    fn is_unset(&self) -> bool;
}

fn once<T>(slot: &mut Option<T>, id: u8, value: T) -> Result<(), MqttError> {
    if slot.is_some() {
        return Err(MqttError::DuplicateProperty { id });
    }
    *slot = Some(value);
    Ok(())
}

fn int(id: u8, value: Value) -> Result<u32, MqttError> {
    match value {
        Value::Int(v) => Ok(v),
        // The identifier table fixes the value type, so the wire cannot reach this arm.
        _ => Err(MqttError::InvalidPropertyValue { id, value: 0 }),
    }
}

macro_rules! int_slot {
    ($ty:ty) => {
        impl Slot for Option<$ty> {
            const UNSET: Self = None;
            fn store(&mut self, id: u8, value: Value) -> Result<(), MqttError> {
                let v = int(id, value)?;
                let v = <$ty>::try_from(v)
                    .map_err(|_| MqttError::InvalidPropertyValue { id, value: v })?;
                once(self, id, v)
            }
            fn visit(&self, id: u8, f: &mut dyn FnMut(u8, PropRef<'_>)) {
                if let Some(v) = *self {
                    f(id, PropRef::Int(u32::from(v)));
                }
            }
            fn is_unset(&self) -> bool {
                self.is_none()
            }
        }
    };
}

int_slot!(u8);
int_slot!(u16);
int_slot!(u32);

impl Slot for Option<MqttString> {
    const UNSET: Self = None;
    fn store(&mut self, id: u8, value: Value) -> Result<(), MqttError> {
        match value {
            Value::Str(s) => once(self, id, s),
            _ => Err(MqttError::InvalidPropertyValue { id, value: 0 }),
        }
    }
    fn visit(&self, id: u8, f: &mut dyn FnMut(u8, PropRef<'_>)) {
        if let Some(s) = self {
            f(id, PropRef::Str(s));
        }
    }
    fn is_unset(&self) -> bool {
        self.is_none()
    }
}

impl Slot for Option<Bytes> {
    const UNSET: Self = None;
    fn store(&mut self, id: u8, value: Value) -> Result<(), MqttError> {
        match value {
            Value::Bin(b) => once(self, id, b),
            _ => Err(MqttError::InvalidPropertyValue { id, value: 0 }),
        }
    }
    fn visit(&self, id: u8, f: &mut dyn FnMut(u8, PropRef<'_>)) {
        if let Some(b) = self {
            f(id, PropRef::Bin(b));
        }
    }
    fn is_unset(&self) -> bool {
        self.is_none()
    }
}

/// User properties: repeatable, kept in order.
impl Slot for Vec<UserProperty> {
    const UNSET: Self = Vec::new();
    fn store(&mut self, id: u8, value: Value) -> Result<(), MqttError> {
        match value {
            Value::Pair(k, v) => {
                self.push((k, v));
                Ok(())
            }
            _ => Err(MqttError::InvalidPropertyValue { id, value: 0 }),
        }
    }
    fn visit(&self, id: u8, f: &mut dyn FnMut(u8, PropRef<'_>)) {
        for (k, v) in self {
            f(id, PropRef::Pair(k, v));
        }
    }
    fn is_unset(&self) -> bool {
        self.is_empty()
    }
}

/// Subscription identifiers on a server-to-client PUBLISH: repeatable.
impl Slot for Vec<u32> {
    const UNSET: Self = Vec::new();
    fn store(&mut self, id: u8, value: Value) -> Result<(), MqttError> {
        self.push(int(id, value)?);
        Ok(())
    }
    fn visit(&self, id: u8, f: &mut dyn FnMut(u8, PropRef<'_>)) {
        for v in self {
            f(id, PropRef::Int(*v));
        }
    }
    fn is_unset(&self) -> bool {
        self.is_empty()
    }
}

/// A packet's property struct.
pub(crate) trait PropertySet {
    /// Stores a decoded property; `Ok(false)` when the packet does not allow it.
    fn store(&mut self, id: u8, value: Value) -> Result<bool, MqttError>;
    /// Calls `f` for every property present, in ascending identifier order.
    fn visit(&self, f: &mut dyn FnMut(u8, PropRef<'_>));
    /// Calls `f` for every value of property `id`.
    fn visit_id(&self, id: u8, f: &mut dyn FnMut(u8, PropRef<'_>));
    /// The wire order of the decoded properties.
    fn order(&self) -> &PropertyOrder;
    /// See [`PropertySet::order`].
    fn order_mut(&mut self) -> &mut PropertyOrder;
}

/// A property struct that [`Props`] can keep out of line. Every packet's property struct
/// implements it.
pub trait PropertyStruct: Default + 'static {
    /// The shared empty set an unset [`Props`] reads as.
    fn empty() -> &'static Self;
    /// Whether no property is set.
    fn is_unset(&self) -> bool;
}

/// A packet's MQTT 5 properties, kept behind a pointer that is null when there are none.
///
/// Packets travel by value from the decoder through the session to the proxy, and a
/// property struct is 40-180 bytes of slots that are nearly always empty (every 3.1.1
/// packet, most 5.0 ones). Out of line, a PUBLISH is 80 bytes instead of 248 and a
/// `Packet` 88. Reading sees an empty set when nothing is stored, so
/// `publish.properties.topic_alias` reads as before. Writing is explicit, because it
/// allocates the first time: [`Props::make_mut`], or [`Props::get_mut`] to change only what
/// is there. Equality compares contents: an unset `Props` equals an empty one.
#[derive(Clone, Default)]
pub struct Props<T>(Option<Box<T>>);

impl<T: PropertyStruct> Props<T> {
    /// No properties.
    pub const fn none() -> Self {
        Self(None)
    }

    /// The properties, allocated (empty) if there were none.
    pub fn make_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Box::default)
    }

    /// The properties, if any are stored.
    pub fn get_mut(&mut self) -> Option<&mut T> {
        self.0.as_deref_mut()
    }
}

impl<T: PropertyStruct> From<T> for Props<T> {
    /// Keeps `props` out of line, or stores nothing when it is empty.
    fn from(props: T) -> Self {
        Self((!props.is_unset()).then(|| Box::new(props)))
    }
}

impl<T: PropertyStruct> std::ops::Deref for Props<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        match &self.0 {
            Some(props) => props,
            None => T::empty(),
        }
    }
}

impl<T: PropertyStruct + PartialEq> PartialEq for Props<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: PropertyStruct + Eq> Eq for Props<T> {}

impl<T: PropertyStruct + std::fmt::Debug> std::fmt::Debug for Props<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// Decoding stores into the struct, allocating it on the first property; encoding reads
/// through it.
impl<T: PropertyStruct + PropertySet> PropertySet for Props<T> {
    fn store(&mut self, id: u8, value: Value) -> Result<bool, MqttError> {
        self.make_mut().store(id, value)
    }
    fn visit(&self, f: &mut dyn FnMut(u8, PropRef<'_>)) {
        (**self).visit(f);
    }
    fn visit_id(&self, id: u8, f: &mut dyn FnMut(u8, PropRef<'_>)) {
        (**self).visit_id(id, f);
    }
    fn order(&self) -> &PropertyOrder {
        (**self).order()
    }
    fn order_mut(&mut self) -> &mut PropertyOrder {
        self.make_mut().order_mut()
    }
}

/// Declares a property struct: each line maps an identifier to a public field.
macro_rules! property_struct {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$fmeta:meta])* $id:ident => $field:ident : $ty:ty, )* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            /// Wire order of the decoded properties, so they re-encode identically.
            pub(crate) order: $crate::mqtt::properties::PropertyOrder,
        }

        impl $name {
            /// Whether no property is set (then nothing but a zero length goes on the wire).
            pub fn is_empty(&self) -> bool {
                true $( && $crate::mqtt::properties::Slot::is_unset(&self.$field) )*
            }
        }

        impl $crate::mqtt::properties::PropertyStruct for $name {
            fn empty() -> &'static Self {
                static EMPTY: $name = $name {
                    $( $field: <$ty as $crate::mqtt::properties::Slot>::UNSET, )*
                    order: $crate::mqtt::properties::PropertyOrder::EMPTY,
                };
                &EMPTY
            }

            fn is_unset(&self) -> bool {
                self.is_empty()
            }
        }

        impl $crate::mqtt::properties::PropertySet for $name {
            fn store(
                &mut self,
                id: u8,
                value: $crate::mqtt::properties::Value,
            ) -> Result<bool, $crate::mqtt::MqttError> {
                match id {
                    $(
                        $crate::mqtt::properties::$id =>
                            $crate::mqtt::properties::Slot::store(&mut self.$field, id, value)
                                .map(|()| true),
                    )*
                    _ => Ok(false),
                }
            }

            fn visit(&self, f: &mut dyn FnMut(u8, $crate::mqtt::properties::PropRef<'_>)) {
                $(
                    $crate::mqtt::properties::Slot::visit(
                        &self.$field,
                        $crate::mqtt::properties::$id,
                        f,
                    );
                )*
            }

            fn visit_id(
                &self,
                id: u8,
                f: &mut dyn FnMut(u8, $crate::mqtt::properties::PropRef<'_>),
            ) {
                match id {
                    $(
                        $crate::mqtt::properties::$id =>
                            $crate::mqtt::properties::Slot::visit(&self.$field, id, f),
                    )*
                    _ => {}
                }
            }

            fn order(&self) -> &$crate::mqtt::properties::PropertyOrder {
                &self.order
            }

            fn order_mut(&mut self) -> &mut $crate::mqtt::properties::PropertyOrder {
                &mut self.order
            }
        }
    };
}
pub(crate) use property_struct;

/// Checks the value ranges the spec fixes for single properties.
fn check_value(id: u8, value: &Value) -> Result<(), MqttError> {
    let Value::Int(v) = *value else {
        return Ok(());
    };
    let bad = match kind(id) {
        Some(Kind::Byte) => v > 1,
        _ => {
            matches!(
                id,
                RECEIVE_MAXIMUM | MAXIMUM_PACKET_SIZE | SUBSCRIPTION_IDENTIFIER
            ) && v == 0
        }
    };
    if id == TOPIC_ALIAS && v == 0 {
        return Err(MqttError::TopicAliasInvalid { alias: 0, max: 0 });
    }
    if bad {
        return Err(MqttError::InvalidPropertyValue { id, value: v });
    }
    Ok(())
}

/// Reads a Property Length and the properties it covers into `props`.
#[inline]
pub(crate) fn read_properties(
    r: &mut Reader,
    props: &mut dyn PropertySet,
) -> Result<(), MqttError> {
    let len = r.varint("property length")?;
    if len == 0 {
        return Ok(());
    }
    read_property_list(r, len, props)
}

fn read_property_list(
    r: &mut Reader,
    len: u32,
    props: &mut dyn PropertySet,
) -> Result<(), MqttError> {
    let packet = r.packet();
    let len = usize::try_from(len).map_err(|_| MqttError::BadVarInt)?;
    let mut pr = Reader::new(r.take(len, "properties")?, packet);
    while !pr.is_empty() {
        let raw_id = pr.varint("property identifier")?;
        let not_allowed = || MqttError::PropertyNotAllowed { packet, id: raw_id };
        let id = u8::try_from(raw_id).map_err(|_| not_allowed())?;
        let value = match kind(id).ok_or_else(not_allowed)? {
            Kind::Byte => Value::Int(u32::from(pr.u8("property value")?)),
            Kind::U16 => Value::Int(u32::from(pr.u16("property value")?)),
            Kind::U32 => Value::Int(pr.u32("property value")?),
            Kind::VarInt => Value::Int(pr.varint("property value")?),
            Kind::Str => Value::Str(pr.string("property value")?),
            Kind::Bin => Value::Bin(pr.binary("property value")?),
            Kind::Pair => Value::Pair(
                pr.string("user property name")?,
                pr.string("user property value")?,
            ),
        };
        check_value(id, &value)?;
        if !props.store(id, value)? {
            return Err(not_allowed());
        }
        props.order_mut().record(id);
    }
    Ok(())
}

/// The encoded size of a property set's contents (without the Property Length prefix).
pub(crate) fn properties_len(props: &dyn PropertySet) -> Result<usize, EncodeError> {
    let mut total = 0usize;
    let mut error = None;
    props.visit(&mut |id, value| {
        let len = match (kind(id), value) {
            (Some(Kind::Byte), _) => Ok(1),
            (Some(Kind::U16), _) => Ok(2),
            (Some(Kind::U32), _) => Ok(4),
            (_, PropRef::Int(v)) if v > VARINT_MAX || v == 0 => {
                Err(EncodeError::ValueOutOfRange("subscription identifier"))
            }
            (_, PropRef::Int(v)) => Ok(varint_len(v)),
            (_, PropRef::Str(s)) => field_len("property string", s.len()),
            (_, PropRef::Bin(b)) => field_len("property binary data", b.len()),
            (_, PropRef::Pair(k, v)) => field_len("user property name", k.len())
                .and_then(|a| Ok(a + field_len("user property value", v.len())?)),
        };
        match len {
            Ok(len) => total += 1 + len,
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    });
    match error {
        Some(e) => Err(e),
        None if total > VARINT_MAX as usize => Err(EncodeError::ValueOutOfRange("property length")),
        None => Ok(total),
    }
}

/// Writes the Property Length (`len`, from [`properties_len`]) and the properties.
pub(crate) fn put_properties(dst: &mut BytesMut, len: usize, props: &dyn PropertySet) {
    put_varint(dst, u32::try_from(len).unwrap_or(VARINT_MAX));
    let order = *props.order();
    let mut put = |id: u8, value: PropRef<'_>| {
        dst.put_u8(id);
        match (kind(id), value) {
            (Some(Kind::Byte), PropRef::Int(v)) => dst.put_u8(v as u8),
            (Some(Kind::U16), PropRef::Int(v)) => dst.put_u16(v as u16),
            (Some(Kind::U32), PropRef::Int(v)) => dst.put_u32(v),
            (_, PropRef::Int(v)) => put_varint(dst, v),
            (_, PropRef::Str(s)) => put_field(dst, s.as_bytes()),
            (_, PropRef::Bin(b)) => put_field(dst, b),
            (_, PropRef::Pair(k, v)) => {
                put_field(dst, k.as_bytes());
                put_field(dst, v.as_bytes());
            }
        }
    };
    for id in order.iter() {
        props.visit_id(id, &mut put);
    }
    props.visit(&mut |id, value| {
        if !order.contains(id) {
            put(id, value);
        }
    });
}

/// The Variable Byte Integer size of a Property Length plus the properties.
pub(crate) fn with_prefix(len: usize) -> usize {
    varint_len(u32::try_from(len).unwrap_or(VARINT_MAX)) + len
}

property_struct! {
    /// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
    AckProperties {
        /// A human-readable reason.
        REASON_STRING => reason_string: Option<MqttString>,
        /// User properties.
        USER_PROPERTY => user_properties: Vec<UserProperty>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::PublishProperties;

    #[test]
    fn props_read_as_empty_until_written_and_compare_by_contents() {
        let mut props = Props::<PublishProperties>::none();
        assert!(props.is_empty() && props.content_type.is_none());
        assert!(props.get_mut().is_none(), "reading allocated nothing");
        assert!(Props::from(PublishProperties::default())
            .get_mut()
            .is_none());

        props.make_mut().topic_alias = Some(3);
        assert_eq!(props.topic_alias, Some(3));
        let same = PublishProperties {
            topic_alias: Some(3),
            ..Default::default()
        };
        assert_eq!(props, Props::from(same));

        props.get_mut().expect("stored").topic_alias = None;
        assert_eq!(props, Props::none(), "an empty stored set equals none");
        assert_eq!(
            format!("{props:?}"),
            format!("{:?}", PublishProperties::default())
        );
    }

    #[test]
    fn decoding_no_properties_stores_nothing() {
        let packet = bytes::Bytes::from_static(&[0x00]);
        let mut r = Reader::new(packet, crate::mqtt::PacketType::Publish);
        let mut props = Props::<PublishProperties>::none();
        read_properties(&mut r, &mut props).expect("a zero Property Length");
        assert!(props.get_mut().is_none());

        let packet = bytes::Bytes::from_static(&[0x03, TOPIC_ALIAS, 0x00, 0x07]);
        let mut r = Reader::new(packet, crate::mqtt::PacketType::Publish);
        read_properties(&mut r, &mut props).expect("a topic alias");
        assert_eq!(props.topic_alias, Some(7));
    }
}
