//! Length-prefixed frames from arbitrary bytes; the first byte picks the framing. Every
//! decoded record must re-encode to the bytes it came from.
#![no_main]

use bytes::BytesMut;
use codecs::framed::{FramedCodec, FramedConfig, LengthPrefix};
use codecs::{Decoder, Encoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let cfg = FramedConfig {
        prefix: if mode & 1 == 0 {
            LengthPrefix::U16
        } else {
            LengthPrefix::U32
        },
        keyed: mode & 2 != 0,
        max_frame_size: 4096,
    };
    let mut codec = FramedCodec::new(cfg);
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match codec.decode(&mut buf) {
            Ok(Some(rec)) => {
                let consumed = &data[data.len() - before..data.len() - buf.len()];
                let mut again = BytesMut::new();
                codec
                    .encode(&rec, &mut again)
                    .expect("a decoded record re-encodes");
                assert_eq!(&again[..], consumed);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                break;
            }
            Err(_) => break,
        }
    }
});
