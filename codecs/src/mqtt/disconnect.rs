//! DISCONNECT and AUTH (AUTH exists only in MQTT 5).
//!
//! Both may omit their reason code when it is 0 and there are no properties; the encoder
//! uses that shortest form, as mosquitto and paho do.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{EncodeError, MqttError};
use super::properties::{
    properties_len, property_struct, put_properties, read_properties, with_prefix, Props,
};
use super::reason;
use super::types::{MqttString, ProtocolVersion, UserProperty};
use super::wire::Reader;

property_struct! {
    /// MQTT 5 DISCONNECT properties.
    DisconnectProperties {
        /// New session expiry (client → server only).
        SESSION_EXPIRY_INTERVAL => session_expiry_interval: Option<u32>,
        /// Another server to use (server → client only).
        SERVER_REFERENCE => server_reference: Option<MqttString>,
        /// A human-readable reason.
        REASON_STRING => reason_string: Option<MqttString>,
        /// User properties.
        USER_PROPERTY => user_properties: Vec<UserProperty>,
    }
}

property_struct! {
    /// MQTT 5 AUTH properties.
    AuthProperties {
        /// Authentication method; required unless the packet is the short form.
        AUTHENTICATION_METHOD => authentication_method: Option<MqttString>,
        /// Authentication data.
        AUTHENTICATION_DATA => authentication_data: Option<Bytes>,
        /// A human-readable reason.
        REASON_STRING => reason_string: Option<MqttString>,
        /// User properties.
        USER_PROPERTY => user_properties: Vec<UserProperty>,
    }
}

/// DISCONNECT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disconnect {
    /// MQTT 5 reason code (0 = normal disconnection, 4 = disconnect with will message).
    pub reason_code: u8,
    /// MQTT 5 properties.
    pub properties: Props<DisconnectProperties>,
}

/// AUTH.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    /// 0 success, 0x18 continue authentication, 0x19 re-authenticate.
    pub reason_code: u8,
    /// Properties.
    pub properties: Props<AuthProperties>,
}

impl Disconnect {
    /// A DISCONNECT with `reason_code` and no properties.
    pub fn new(reason_code: u8) -> Self {
        Self {
            reason_code,
            properties: Props::none(),
        }
    }

    pub(crate) fn decode(r: &mut Reader, v: ProtocolVersion) -> Result<Self, MqttError> {
        let mut disconnect = Self::default();
        if v.is_v5() && !r.is_empty() {
            disconnect.reason_code = r.u8("reason code")?;
            if !reason::valid_for_disconnect(disconnect.reason_code) {
                return Err(MqttError::InvalidReasonCode {
                    packet: r.packet(),
                    code: disconnect.reason_code,
                });
            }
            if !r.is_empty() {
                read_properties(r, &mut disconnect.properties)?;
            }
        }
        r.finish()?;
        Ok(disconnect)
    }

    pub(crate) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        if !v.is_v5() {
            if self.reason_code != reason::SUCCESS || !self.properties.is_empty() {
                return Err(EncodeError::NotRepresentable {
                    version: v,
                    what: "a DISCONNECT with a reason code or properties",
                });
            }
            return Ok(0);
        }
        Ok(match (self.reason_code, self.properties.is_empty()) {
            (reason::SUCCESS, true) => 0,
            (_, true) => 1,
            (_, false) => 1 + with_prefix(properties_len(&self.properties)?),
        })
    }

    pub(crate) fn write_body(&self, v: ProtocolVersion, dst: &mut BytesMut) {
        if !v.is_v5() || (self.reason_code == reason::SUCCESS && self.properties.is_empty()) {
            return;
        }
        dst.put_u8(self.reason_code);
        if !self.properties.is_empty() {
            put_properties(
                dst,
                properties_len(&self.properties).unwrap_or(0),
                &self.properties,
            );
        }
    }
}

impl Auth {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, MqttError> {
        let mut auth = Self::default();
        if !r.is_empty() {
            auth.reason_code = r.u8("reason code")?;
            if !reason::valid_for_auth(auth.reason_code) {
                return Err(MqttError::InvalidReasonCode {
                    packet: r.packet(),
                    code: auth.reason_code,
                });
            }
            read_properties(r, &mut auth.properties)?;
            r.finish()?;
        }
        Ok(auth)
    }

    pub(crate) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        if !v.is_v5() {
            return Err(EncodeError::NotRepresentable {
                version: v,
                what: "AUTH",
            });
        }
        if self.reason_code == reason::SUCCESS && self.properties.is_empty() {
            return Ok(0);
        }
        Ok(1 + with_prefix(properties_len(&self.properties)?))
    }

    pub(crate) fn write_body(&self, dst: &mut BytesMut) {
        if self.reason_code == reason::SUCCESS && self.properties.is_empty() {
            return;
        }
        dst.put_u8(self.reason_code);
        put_properties(
            dst,
            properties_len(&self.properties).unwrap_or(0),
            &self.properties,
        );
    }
}
