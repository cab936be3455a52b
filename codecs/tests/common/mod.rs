//! Helpers shared by the integration tests.
#![allow(dead_code)] // Each test binary uses a different subset.

use bytes::BytesMut;
use codecs::Decoder;

/// Decodes every frame from `bytes` given at once; fails if bytes are left over.
pub fn decode_whole<D: Decoder>(dec: &mut D, bytes: &[u8]) -> Result<Vec<D::Frame>, D::Error> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(f) = dec.decode(&mut buf)? {
        out.push(f);
    }
    assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    Ok(out)
}

/// Feeds `bytes` one at a time, decoding after each. Checks that every `Ok(None)` left the
/// buffer exactly as it was (consumed nothing).
pub fn decode_bytewise<D: Decoder>(dec: &mut D, bytes: &[u8]) -> Result<Vec<D::Frame>, D::Error> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for &b in bytes {
        buf.extend_from_slice(&[b]);
        loop {
            let before = buf.clone();
            match dec.decode(&mut buf)? {
                Some(f) => out.push(f),
                None => {
                    assert_eq!(buf, before, "Ok(None) consumed bytes");
                    break;
                }
            }
        }
    }
    assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    Ok(out)
}

/// Whether `inner` points into `outer`'s memory (a slice, not a copy).
pub fn is_slice_of(inner: &[u8], outer_start: *const u8, outer_len: usize) -> bool {
    let s = inner.as_ptr() as usize;
    let o = outer_start as usize;
    inner.is_empty() || (s >= o && s + inner.len() <= o + outer_len)
}
