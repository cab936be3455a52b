//! WebSocket upgrade requests from arbitrary bytes, in both listener modes.
#![no_main]

use bytes::BytesMut;
use codecs::ws::{HandshakeDecoder, Subprotocol};
use codecs::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for mode in [Subprotocol::Mqtt, Subprotocol::Raw] {
        let mut buf = BytesMut::from(data);
        let mut out = BytesMut::new();
        match HandshakeDecoder::new(mode, 4096, 32).decode(&mut buf) {
            Ok(Some(req)) => {
                assert!(buf.len() < data.len());
                req.write_accept(&mut out);
            }
            Ok(None) => assert_eq!(buf.len(), data.len(), "Ok(None) consumed bytes"),
            Err(e) => e.write_response(&mut out),
        }
    }
});
