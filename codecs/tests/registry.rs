//! The codec registry: built-ins by name, settings checked like config, plug-ins added.

use bytes::{Bytes, BytesMut};
use codecs::registry::{
    Ack, CodecError, CodecFactory, CodecRegistry, RecordCodec, RecordFrame, RegistryError,
    SettingError, Settings,
};
use codecs::Decoder;

#[test]
fn builtins_are_registered_by_name() {
    let r = CodecRegistry::with_builtins();
    assert_eq!(r.names().collect::<Vec<_>>(), ["framed", "lines"]);
}

#[test]
fn framed_is_built_from_its_settings() {
    let r = CodecRegistry::with_builtins();
    let s = Settings::new()
        .with("prefix", "u16")
        .with("key", "true")
        .with("max_frame_bytes", "16");
    let mut c = r.build("framed", &s).unwrap();
    let mut buf = BytesMut::from(&[0, 5, 0, 1, b'k', b'v', b'w'][..]);
    let rec = c.decode(&mut buf).unwrap().unwrap();
    assert_eq!(
        rec,
        RecordFrame {
            key: Some(Bytes::from_static(b"k")),
            value: Bytes::from_static(b"vw"),
            headers: vec![]
        }
    );
    let mut out = BytesMut::new();
    c.encode_ack(Ack::Accepted, &mut out).unwrap();
    c.encode_record(&rec, &mut out).unwrap();
    assert_eq!(&out[..], [0, 1, 0, 0, 5, 0, 1, b'k', b'v', b'w']);
    // The limit from the settings applies.
    let err = c.decode(&mut BytesMut::from(&[0, 17][..])).unwrap_err();
    assert!(
        matches!(err, CodecError::TooLarge { size: 17, max: 16 }),
        "{err:?}"
    );
}

#[test]
fn lines_works_through_the_trait_object() {
    let r = CodecRegistry::with_builtins();
    let mut c = r.build("lines", &Settings::new()).unwrap();
    let mut buf = BytesMut::from(&b"a\r\nb\n"[..]);
    let values: Vec<Bytes> = std::iter::from_fn(|| c.decode(&mut buf).unwrap())
        .map(|r| r.value)
        .collect();
    assert_eq!(values, [Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
    let mut out = BytesMut::new();
    c.encode_ack(Ack::Rejected { reason: "nope" }, &mut out)
        .unwrap();
    assert_eq!(&out[..], b"ERR nope\n");
}

#[test]
fn bad_names_and_settings_are_named_in_the_error() {
    let r = CodecRegistry::with_builtins();
    let err = r.build("protobuf", &Settings::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "There is no codec named \"protobuf\"; known codecs are: framed, lines."
    );
    let err = r
        .validate("framed", &Settings::new().with("prefx", "u16"))
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::Settings { codec, source: SettingError::Unknown { key, .. } } if codec == "framed" && key == "prefx"),
        "{err:?}"
    );
    let err = r
        .validate("framed", &Settings::new().with("prefix", "u24"))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "The settings for codec \"framed\" are invalid: \"prefix\" = \"u24\" is invalid, expected u16 or u32."
    );
    let err = r
        .validate("lines", &Settings::new().with("max_line_bytes", "-1"))
        .unwrap_err();
    assert!(matches!(
        err,
        RegistryError::Settings {
            source: SettingError::Invalid { .. },
            ..
        }
    ));
}

/// A plug-in defined outside the crate, through the public traits only.
#[derive(Debug)]
struct Upper;

impl RecordCodec for Upper {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<RecordFrame>, CodecError> {
        if src.is_empty() {
            return Ok(None);
        }
        Ok(Some(RecordFrame {
            value: src.split().freeze(),
            ..RecordFrame::default()
        }))
    }
    fn encode_ack(&mut self, _: Ack<'_>, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(b"!");
        Ok(())
    }
    fn encode_record(&mut self, r: &RecordFrame, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(&r.value.to_ascii_uppercase());
        Ok(())
    }
}

#[derive(Debug)]
struct UpperFactory;

impl CodecFactory for UpperFactory {
    fn name(&self) -> &str {
        "upper"
    }
    fn build(&self, s: &Settings) -> Result<Box<dyn RecordCodec>, SettingError> {
        s.allow_only(&[])?;
        Ok(Box::new(Upper))
    }
}

#[test]
fn plug_ins_register_once_and_build_by_name() {
    let mut r = CodecRegistry::with_builtins();
    r.register(Box::new(UpperFactory)).unwrap();
    assert!(
        matches!(r.register(Box::new(UpperFactory)), Err(RegistryError::Duplicate { name }) if name == "upper")
    );
    let mut c = r.build("upper", &Settings::new()).unwrap();
    // The boxed codec is also a `Decoder`, so generic driver code runs it unchanged.
    let rec = Decoder::decode(&mut c, &mut BytesMut::from(&b"hi"[..]))
        .unwrap()
        .unwrap();
    let mut out = BytesMut::new();
    c.encode_record(&rec, &mut out).unwrap();
    assert_eq!(&out[..], b"HI");
    assert_eq!(r.names().collect::<Vec<_>>(), ["framed", "lines", "upper"]);
}
