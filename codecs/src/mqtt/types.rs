//! Small value types shared by every MQTT packet: the protocol version, QoS levels and
//! [`MqttString`], the zero-copy UTF-8 string every topic, client id and property string is
//! decoded into.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// The MQTT protocol level a connection speaks, fixed by its CONNECT packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1 (protocol name `MQIsdp`, level 3).
    V3_1,
    /// MQTT 3.1.1 (protocol name `MQTT`, level 4).
    V3_1_1,
    /// MQTT 5.0 (protocol name `MQTT`, level 5).
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte carried in CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Self::V3_1 => 3,
            Self::V3_1_1 => 4,
            Self::V5 => 5,
        }
    }

    /// The protocol name carried in CONNECT.
    pub fn protocol_name(self) -> &'static str {
        match self {
            Self::V3_1 => "MQIsdp",
            Self::V3_1_1 | Self::V5 => "MQTT",
        }
    }

    /// Whether packets carry reason codes and properties.
    pub fn is_v5(self) -> bool {
        self == Self::V5
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V3_1 => "MQTT 3.1",
            Self::V3_1_1 => "MQTT 3.1.1",
            Self::V5 => "MQTT 5.0",
        })
    }
}

/// Quality of service of a PUBLISH or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum QoS {
    /// QoS 0: fire and forget, no packet identifier.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: acknowledged by PUBACK.
    AtLeastOnce = 1,
    /// QoS 2: PUBREC / PUBREL / PUBCOMP handshake.
    ExactlyOnce = 2,
}

impl QoS {
    /// Parses the two QoS bits; 3 is not a QoS.
    #[inline]
    pub fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            0 => Some(Self::AtMostOnce),
            1 => Some(Self::AtLeastOnce),
            2 => Some(Self::ExactlyOnce),
            _ => None,
        }
    }
}

/// Why a byte string is not an MQTT UTF-8 Encoded String.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidString {
    /// Not well-formed UTF-8 (this includes encoded surrogates, which MQTT forbids).
    #[error("the string is not well-formed UTF-8")]
    Utf8,
    /// Contains U+0000, which MQTT forbids in every string.
    #[error("the string contains the null character U+0000")]
    Null,
}

/// Checks the MQTT rules for UTF-8 Encoded Strings: well-formed UTF-8 (no surrogates) and no
/// U+0000. The rules that are only SHOULD-level (control characters, non-characters) are
/// left to the application.
#[inline]
pub(crate) fn check_utf8(bytes: &[u8]) -> Result<(), InvalidString> {
    // Topics and ids are nearly always ASCII: one pass checks "ASCII and not NUL".
    if is_plain_ascii(bytes, false) {
        return Ok(());
    }
    // `from_utf8` rejects encoded surrogates (ED A0..BF xx) and overlong forms.
    if std::str::from_utf8(bytes).is_err() {
        return Err(InvalidString::Utf8);
    }
    if bytes.contains(&0) {
        return Err(InvalidString::Null);
    }
    Ok(())
}

/// Whether every byte of `bytes` is ASCII other than NUL and, with `no_wildcards`, other
/// than `+` and `#`: then it is a valid MQTT string (and, if non-empty, topic name). This is
/// the common case for topics, ids and property strings, so it is checked eight bytes at a
/// time; callers run the precise checks only when it fails, to say what is wrong.
#[inline]
pub(crate) fn is_plain_ascii(bytes: &[u8], no_wildcards: bool) -> bool {
    const LO: u64 = u64::from_ne_bytes([0x01; 8]);
    const HI: u64 = u64::from_ne_bytes([0x80; 8]);
    // Non-zero iff some byte of `w` is zero (the classic "haszero" bit trick).
    let has_zero = |w: u64| w.wrapping_sub(LO) & !w & HI;
    let bad = |w: u64| {
        let mut bad = (w & HI) | has_zero(w);
        if no_wildcards {
            bad |= has_zero(w ^ (LO * u64::from(b'+'))) | has_zero(w ^ (LO * u64::from(b'#')));
        }
        bad
    };
    let word = |chunk: &[u8]| u64::from_ne_bytes(chunk.try_into().unwrap_or([0; 8]));
    if bytes.len() < 8 {
        return bytes
            .iter()
            .all(|&b| b.wrapping_sub(1) < 0x7F && !(no_wildcards && (b == b'+' || b == b'#')));
    }
    let mut acc = 0;
    for chunk in bytes.chunks_exact(8) {
        acc |= bad(word(chunk));
    }
    // The last eight bytes overlap the chunks above; they cover any remainder.
    acc |= bad(word(&bytes[bytes.len() - 8..]));
    acc == 0
}

/// An MQTT UTF-8 Encoded String backed by [`Bytes`], usually a slice of the read buffer.
///
/// The invariant (checked on every construction) is that the bytes are well-formed UTF-8
/// without U+0000, so [`MqttString::as_str`] is free. Cloning is a reference-count increment.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MqttString(Bytes);

impl MqttString {
    /// An empty string.
    pub const fn new() -> Self {
        Self(Bytes::new())
    }

    /// Wraps `bytes` after checking the MQTT string rules.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, InvalidString> {
        check_utf8(&bytes)?;
        Ok(Self(bytes))
    }

    /// Wraps a static string after checking it contains no U+0000.
    pub fn from_static(s: &'static str) -> Result<Self, InvalidString> {
        Self::from_bytes(Bytes::from_static(s.as_bytes()))
    }

    /// Wraps bytes the caller has already validated with [`check_utf8`].
    #[inline]
    pub(crate) fn from_checked(bytes: Bytes) -> Self {
        debug_assert!(check_utf8(&bytes).is_ok());
        Self(bytes)
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor checks that the bytes are valid UTF-8 (`check_utf8`,
        // `from_checked` callers, or a `&str`/`String` source) and `Bytes` is immutable.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes (a cheap clone of the buffer slice).
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Unwraps the underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for MqttString {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for MqttString {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for MqttString {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for MqttString {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl TryFrom<&str> for MqttString {
    type Error = InvalidString;

    fn try_from(s: &str) -> Result<Self, InvalidString> {
        if s.contains('\0') {
            return Err(InvalidString::Null);
        }
        Ok(Self(Bytes::copy_from_slice(s.as_bytes())))
    }
}

impl TryFrom<String> for MqttString {
    type Error = InvalidString;

    fn try_from(s: String) -> Result<Self, InvalidString> {
        if s.contains('\0') {
            return Err(InvalidString::Null);
        }
        Ok(Self(Bytes::from(s)))
    }
}

/// A user property: a name / value pair of MQTT strings, kept in wire order.
pub type UserProperty = (MqttString, MqttString);

#[cfg(test)]
mod tests {
    use super::is_plain_ascii;

    #[test]
    fn plain_ascii_scan_finds_every_bad_byte_at_every_position() {
        for len in 0..=24 {
            let base: Vec<u8> = (0..len).map(|i| b"a/$*\x01\x7F,"[i % 7]).collect();
            assert!(is_plain_ascii(&base, true), "{base:?}");
            for pos in 0..len {
                for (bad, only_a_wildcard) in [
                    (0u8, false),
                    (0x80, false),
                    (0xC3, false),
                    (0xFF, false),
                    (b'+', true),
                    (b'#', true),
                ] {
                    let mut s = base.clone();
                    s[pos] = bad;
                    assert!(!is_plain_ascii(&s, true), "{s:?}");
                    assert_eq!(is_plain_ascii(&s, false), only_a_wildcard, "{s:?}");
                }
            }
        }
    }
}
