//! MQTT 5 reason codes, which reason codes each packet type may carry, and the mapping to
//! the MQTT 3.1.1 CONNACK return codes.
//!
//! Reason codes are plain `u8`s on the packets (the wire value): MQTT 3.1.1 SUBACK return
//! codes are a subset of the MQTT 5 ones, and CONNACK carries the 3.1.1 return code or the
//! MQTT 5 reason code depending on the connection's version.

/// Success, Normal disconnection, Granted QoS 0.
pub const SUCCESS: u8 = 0x00;
/// Granted QoS 1.
pub const GRANTED_QOS_1: u8 = 0x01;
/// Granted QoS 2.
pub const GRANTED_QOS_2: u8 = 0x02;
/// Disconnect with Will Message.
pub const DISCONNECT_WITH_WILL: u8 = 0x04;
/// No matching subscribers.
pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
/// No subscription existed.
pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
/// Continue authentication.
pub const CONTINUE_AUTHENTICATION: u8 = 0x18;
/// Re-authenticate.
pub const RE_AUTHENTICATE: u8 = 0x19;
/// Unspecified error (also the MQTT 3.1.1 SUBACK failure code).
pub const UNSPECIFIED_ERROR: u8 = 0x80;
/// Malformed Packet.
pub const MALFORMED_PACKET: u8 = 0x81;
/// Protocol Error.
pub const PROTOCOL_ERROR: u8 = 0x82;
/// Implementation specific error.
pub const IMPLEMENTATION_SPECIFIC_ERROR: u8 = 0x83;
/// Unsupported Protocol Version.
pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
/// Client Identifier not valid.
pub const CLIENT_IDENTIFIER_NOT_VALID: u8 = 0x85;
/// Bad User Name or Password.
pub const BAD_USER_NAME_OR_PASSWORD: u8 = 0x86;
/// Not authorized.
pub const NOT_AUTHORIZED: u8 = 0x87;
/// Server unavailable.
pub const SERVER_UNAVAILABLE: u8 = 0x88;
/// Server busy.
pub const SERVER_BUSY: u8 = 0x89;
/// Banned.
pub const BANNED: u8 = 0x8A;
/// Server shutting down.
pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
/// Bad authentication method.
pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
/// Keep Alive timeout.
pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
/// Session taken over.
pub const SESSION_TAKEN_OVER: u8 = 0x8E;
/// Topic Filter invalid.
pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
/// Topic Name invalid.
pub const TOPIC_NAME_INVALID: u8 = 0x90;
/// Packet Identifier in use.
pub const PACKET_IDENTIFIER_IN_USE: u8 = 0x91;
/// Packet Identifier not found.
pub const PACKET_IDENTIFIER_NOT_FOUND: u8 = 0x92;
/// Receive Maximum exceeded.
pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
/// Topic Alias invalid.
pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
/// Packet too large.
pub const PACKET_TOO_LARGE: u8 = 0x95;
/// Message rate too high.
pub const MESSAGE_RATE_TOO_HIGH: u8 = 0x96;
/// Quota exceeded.
pub const QUOTA_EXCEEDED: u8 = 0x97;
/// Administrative action.
pub const ADMINISTRATIVE_ACTION: u8 = 0x98;
/// Payload format invalid.
pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
/// Retain not supported.
pub const RETAIN_NOT_SUPPORTED: u8 = 0x9A;
/// QoS not supported.
pub const QOS_NOT_SUPPORTED: u8 = 0x9B;
/// Use another server.
pub const USE_ANOTHER_SERVER: u8 = 0x9C;
/// Server moved.
pub const SERVER_MOVED: u8 = 0x9D;
/// Shared Subscriptions not supported.
pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0x9E;
/// Connection rate exceeded.
pub const CONNECTION_RATE_EXCEEDED: u8 = 0x9F;
/// Maximum connect time.
pub const MAXIMUM_CONNECT_TIME: u8 = 0xA0;
/// Subscription Identifiers not supported.
pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: u8 = 0xA1;
/// Wildcard Subscriptions not supported.
pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0xA2;

/// Whether `code` may appear in an MQTT 5 CONNACK (spec table 3.1.2.1).
pub fn valid_for_connack(code: u8) -> bool {
    matches!(
        code,
        0x00 | 0x80..=0x8A | 0x8C | 0x90 | 0x95 | 0x97 | 0x99..=0x9D | 0x9F
    )
}

/// Whether `code` may appear in an MQTT 5 PUBACK or PUBREC.
pub fn valid_for_puback(code: u8) -> bool {
    matches!(
        code,
        0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99
    )
}

/// Whether `code` may appear in an MQTT 5 PUBREL or PUBCOMP.
pub fn valid_for_pubrel(code: u8) -> bool {
    matches!(code, 0x00 | 0x92)
}

/// Whether `code` may appear in an MQTT 5 SUBACK.
pub fn valid_for_suback(code: u8) -> bool {
    matches!(
        code,
        0x00..=0x02 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91 | 0x97 | 0x9E | 0xA1 | 0xA2
    )
}

/// Whether `code` may appear in an MQTT 5 UNSUBACK.
pub fn valid_for_unsuback(code: u8) -> bool {
    matches!(code, 0x00 | 0x11 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91)
}

/// Whether `code` may appear in an MQTT 5 DISCONNECT.
pub fn valid_for_disconnect(code: u8) -> bool {
    matches!(
        code,
        0x00 | 0x04 | 0x80..=0x83 | 0x87 | 0x89 | 0x8B | 0x8D..=0x90 | 0x93..=0xA2
    )
}

/// Whether `code` may appear in an MQTT 5 AUTH.
pub fn valid_for_auth(code: u8) -> bool {
    matches!(code, 0x00 | 0x18 | 0x19)
}

/// The MQTT 3.1 / 3.1.1 CONNACK return code that says the same as an MQTT 5 CONNACK reason
/// code, or `None` when 3.1.1 has no such answer and the connection is simply closed.
pub fn v3_connack_code(reason: u8) -> Option<u8> {
    match reason {
        SUCCESS => Some(0),
        UNSUPPORTED_PROTOCOL_VERSION => Some(1),
        CLIENT_IDENTIFIER_NOT_VALID => Some(2),
        SERVER_UNAVAILABLE
        | SERVER_BUSY
        | SERVER_SHUTTING_DOWN
        | USE_ANOTHER_SERVER
        | SERVER_MOVED
        | CONNECTION_RATE_EXCEEDED => Some(3),
        BAD_USER_NAME_OR_PASSWORD | BAD_AUTHENTICATION_METHOD => Some(4),
        NOT_AUTHORIZED | BANNED => Some(5),
        _ => None,
    }
}
