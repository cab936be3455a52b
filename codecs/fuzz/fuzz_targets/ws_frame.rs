//! WebSocket frames from arbitrary bytes, as a server and as a client, through the message
//! assembler and the MQTT byte stream. Every frame a server decodes must re-encode (with its
//! own mask) to exactly the bytes it was decoded from.
#![no_main]

use bytes::BytesMut;
use codecs::ws::{ByteStream, FrameDecoder, FrameEncoder, MaskSource, MessageAssembler, Role};
use codecs::{Decoder, Encoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut dec = FrameDecoder::new(Role::Server, 1 << 16);
    let mut asm = MessageAssembler::new(1 << 17);
    let mut enc = FrameEncoder::client(MaskSource::new(1));
    loop {
        let before = buf.len();
        match dec.decode(&mut buf) {
            Ok(Some(frame)) => {
                let consumed = &data[data.len() - before..data.len() - buf.len()];
                let mut again = BytesMut::new();
                enc.encode(&frame, &mut again)
                    .expect("a decoded frame re-encodes");
                assert_eq!(&again[..], consumed, "re-encoding changed the bytes");
                if asm.push(frame).is_err() {
                    break;
                }
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                break;
            }
            Err(_) => break,
        }
    }

    let mut buf = BytesMut::from(data);
    let mut dec = FrameDecoder::new(Role::Client, 1 << 16);
    let mut stream = ByteStream::new(1 << 17);
    while let Ok(Some(frame)) = dec.decode_mut(&mut buf) {
        if stream.push(frame).is_err() {
            break;
        }
        let n = stream.buffered().min(7);
        let _ = stream.buffer_mut().split_to(n);
    }
});
