//! The example plug-in, driven only through the registry and the public traits, as the
//! proxy would.

use bytes::{Bytes, BytesMut};
use codecs::registry::{
    Ack, CodecError, CodecRegistry, RecordCodec, RecordFrame, RegistryError, Settings,
};
use proptest::prelude::*;

fn codec(settings: Settings) -> Box<dyn RecordCodec> {
    let mut r = CodecRegistry::with_builtins();
    sluice_codec_jsonlines::register(&mut r).unwrap();
    r.build("jsonlines", &settings).unwrap()
}

fn decode_all(c: &mut Box<dyn RecordCodec>, wire: &[u8]) -> Result<Vec<RecordFrame>, CodecError> {
    let mut buf = BytesMut::from(wire);
    let mut out = Vec::new();
    while let Some(r) = c.decode(&mut buf)? {
        out.push(r);
    }
    Ok(out)
}

#[test]
fn it_is_registered_by_name_next_to_the_builtins() {
    let mut r = CodecRegistry::with_builtins();
    sluice_codec_jsonlines::register(&mut r).unwrap();
    assert_eq!(
        r.names().collect::<Vec<_>>(),
        ["framed", "jsonlines", "lines"]
    );
    assert!(matches!(
        sluice_codec_jsonlines::register(&mut r),
        Err(RegistryError::Duplicate { .. })
    ));
    assert!(r
        .validate("jsonlines", &Settings::new().with("max_line", "5"))
        .is_err());
}

#[test]
fn keys_values_and_headers_are_read() {
    let wire = b"{\"key\":\"device-7\",\"value\":{\"t\": 21.5},\"headers\":{\"source\":\"lab\"}}\r\n{\"value\":\"plain \\\"text\\\"\"}\n{\"key\":null,\"value\":[1,2]}\n";
    let mut buf = BytesMut::from(&wire[..]);
    let (start, len) = (buf.as_ptr() as usize, buf.len());
    let mut c = codec(Settings::new());
    let first = c.decode(&mut buf).unwrap().unwrap();
    assert_eq!(first.key.as_deref(), Some(&b"device-7"[..]));
    assert_eq!(
        &first.value[..],
        b"{\"t\": 21.5}",
        "non-string values are their JSON text as written"
    );
    assert_eq!(
        first.headers,
        [("source".to_owned(), Bytes::from_static(b"lab"))]
    );
    let p = first.value.as_ptr() as usize;
    assert!(
        p >= start && p < start + len,
        "the value was copied instead of sliced"
    );
    let second = c.decode(&mut buf).unwrap().unwrap();
    assert_eq!(
        (second.key, &second.value[..]),
        (None, &b"plain \"text\""[..])
    );
    let third = c.decode(&mut buf).unwrap().unwrap();
    assert_eq!((third.key, &third.value[..]), (None, &b"[1,2]"[..]));
    assert!(c.decode(&mut buf).unwrap().is_none());
}

#[test]
fn bad_lines_are_refused() {
    let mut c = codec(Settings::new().with("max_line_bytes", "40"));
    for (name, wire) in [
        ("not JSON", &b"hello\n"[..]),
        ("no value", b"{\"key\":\"k\"}\n"),
        ("an unknown field", b"{\"value\":1,\"vaule\":2}\n"),
        ("a key that is not a string", b"{\"key\":7,\"value\":1}\n"),
        ("an empty line", b"\n"),
    ] {
        assert!(
            matches!(decode_all(&mut c, wire), Err(CodecError::Malformed { .. })),
            "{name}"
        );
    }
    let long = format!("{{\"value\":\"{}\"}}\n", "x".repeat(40));
    assert!(matches!(
        decode_all(&mut c, long.as_bytes()),
        Err(CodecError::TooLarge { .. })
    ));
}

#[test]
fn acks_are_json_lines() {
    let mut c = codec(Settings::new());
    let mut out = BytesMut::new();
    c.encode_ack(Ack::Accepted, &mut out).unwrap();
    c.encode_ack(
        Ack::Rejected {
            reason: "topic \"x\" is unknown",
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(
        &out[..],
        b"{\"ok\":true}\n{\"ok\":false,\"error\":\"topic \\\"x\\\" is unknown\"}\n"
    );
}

#[test]
fn a_partial_line_waits_and_consumes_nothing() {
    let mut c = codec(Settings::new());
    let mut buf = BytesMut::from(&b"{\"value\":1"[..]);
    assert!(c.decode(&mut buf).unwrap().is_none());
    assert_eq!(buf.len(), 10);
}

proptest! {
    #[test]
    fn delivered_records_read_back_the_same(
        key in proptest::option::of("\\PC{0,12}"),
        value in prop_oneof!["\\PC{0,20}", Just("{\"a\":[1,2,{}]}".to_owned()), Just("42".to_owned())],
        headers in proptest::collection::btree_map("[a-z]{1,5}", "\\PC{0,8}", 0..3),
    ) {
        let rec = RecordFrame {
            key: key.map(Bytes::from),
            value: Bytes::from(value),
            headers: headers.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect(),
        };
        let mut c = codec(Settings::new());
        let mut wire = BytesMut::new();
        c.encode_record(&rec, &mut wire).unwrap();
        let back = decode_all(&mut c, &wire).unwrap();
        prop_assert_eq!(back, vec![rec]);
    }
}
