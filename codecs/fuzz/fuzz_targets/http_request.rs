//! HTTP requests from arbitrary bytes, pipelined: limits hold and produce calls parse.
#![no_main]

use bytes::BytesMut;
use codecs::http::{HttpLimits, ProduceRequest, RequestDecoder, Response, ResponseEncoder};
use codecs::{Decoder, Encoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = HttpLimits {
        max_head_bytes: 2048,
        max_headers: 16,
        max_body_bytes: 1024,
        max_line_bytes: 64,
    };
    let mut dec = RequestDecoder::new(limits);
    let mut buf = BytesMut::from(data);
    let mut out = BytesMut::new();
    loop {
        let before = buf.len();
        match dec.decode(&mut buf) {
            Ok(Some(req)) => {
                assert!(req.body().len() <= limits.max_body_bytes);
                assert!(req.head_bytes().len() <= limits.max_head_bytes);
                let _ = req.headers().count();
                let _ = ProduceRequest::from_request(&req, "/topics/");
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                break;
            }
            Err(e) => {
                let _ = ResponseEncoder.encode(&Response::from(&e), &mut out);
                break;
            }
        }
    }
});
