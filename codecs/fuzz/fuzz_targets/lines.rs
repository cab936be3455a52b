//! Lines from arbitrary bytes: no line holds a newline or exceeds the limit.
#![no_main]

use bytes::BytesMut;
use codecs::lines::LinesCodec;
use codecs::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut codec = LinesCodec::new(64);
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match codec.decode(&mut buf) {
            Ok(Some(line)) => {
                assert!(line.len() <= 64 && !line.contains(&b'\n'));
                assert!(before - buf.len() <= 64 + 2);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                break;
            }
            Err(_) => break,
        }
    }
});
