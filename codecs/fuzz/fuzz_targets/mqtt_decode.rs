//! Feeds arbitrary bytes to the MQTT decoder (server side expecting CONNECT, and codecs
//! already at 3.1.1 or 5.0), and checks that every packet it accepts re-encodes to bytes
//! that decode to the same packet. Decoded packets also drive a session, so the state
//! machine sees hostile sequences too.
#![no_main]

use bytes::BytesMut;
use codecs::mqtt::{
    encode_packet, Accept, Effect, KafkaAck, MqttCodec, Packet, ProtocolVersion, Session,
    SessionConfig,
};
use codecs::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let mut codec = match mode % 4 {
        0 => MqttCodec::server(1 << 16),
        1 => MqttCodec::with_version(ProtocolVersion::V3_1_1, 1 << 16),
        2 => MqttCodec::with_version(ProtocolVersion::V5, 1 << 16),
        _ => MqttCodec::with_version(ProtocolVersion::V3_1, 1 << 16),
    };
    let mut session = Session::new(SessionConfig::default(), 0);
    let mut effects = Vec::new();
    let mut buf = BytesMut::from(input);
    let mut now = 0;
    loop {
        let packet = match codec.decode(&mut buf) {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(error) => {
                let _ = codec.error_reply(&error);
                session.connection_lost(error.reason_code(), &mut effects);
                break;
            }
        };
        let version = codec.version().expect("a decoded packet fixes the version");
        let mut wire = BytesMut::new();
        encode_packet(&packet, version, u32::MAX, &mut wire).expect("decoded packets encode");
        let mut check = match &packet {
            Packet::Connect(_) => MqttCodec::server(u32::MAX),
            _ => MqttCodec::with_version(version, u32::MAX),
        };
        let again = check.decode(&mut wire).expect("re-encoded packet decodes");
        assert_eq!(again.as_ref(), Some(&packet));
        assert!(wire.is_empty());

        now += 1000;
        if mode & 0x80 == 0 {
            session.on_timeout(now, &mut effects);
        }
        session.handle(now, packet, &mut effects);
        for effect in std::mem::take(&mut effects) {
            match effect {
                Effect::Authenticate(_) => session.accept(now, Accept::default(), &mut effects),
                Effect::Publish(p) if p.packet_id != 0 => {
                    let ack = if mode & 0x40 == 0 {
                        KafkaAck::Written
                    } else {
                        KafkaAck::Failed { reason_code: 0x97 }
                    };
                    session.on_kafka_ack(p.packet_id, ack, &mut effects);
                }
                Effect::Subscribe(s) => {
                    session.suback(s.packet_id, vec![0; s.subscriptions.len()], &mut effects)
                }
                Effect::Send(reply) => {
                    let mut out = BytesMut::new();
                    encode_packet(&reply, session.version(), u32::MAX, &mut out)
                        .expect("session replies encode");
                }
                _ => {}
            }
        }
    }
});
