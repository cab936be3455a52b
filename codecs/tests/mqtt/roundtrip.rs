//! Round-trip property tests: every packet type, MQTT 3.1.1 and 5.0, encoded and decoded
//! back whole, split at every byte boundary, and fed one byte at a time.

use bytes::{Bytes, BytesMut};
use codecs::mqtt::*;
use codecs::Decoder;
use proptest::collection::vec;
use proptest::option::of as opt;
use proptest::prelude::*;

fn string() -> impl Strategy<Value = MqttString> {
    "[a-zA-Z0-9 /_é€😀-]{0,12}".prop_map(|s| MqttString::try_from(s).expect("no NUL"))
}

fn topic() -> impl Strategy<Value = MqttString> {
    "\\$?[a-z0-9]{1,5}(/[a-z0-9é]{0,5}){0,3}".prop_map(|s| MqttString::try_from(s).expect("no NUL"))
}

fn filter() -> impl Strategy<Value = TopicFilter> {
    let level = prop_oneof!["[a-z0-9]{0,4}", Just("+".to_owned())];
    (opt("[a-z]{1,5}"), vec(level, 1..4), any::<bool>()).prop_map(|(share, levels, hash)| {
        let mut f = levels.join("/");
        if hash {
            f.push_str("/#");
        }
        if f.is_empty() {
            f.push('#');
        }
        if let Some(group) = share {
            f = format!("$share/{group}/{f}");
        }
        TopicFilter::new(MqttString::try_from(f).expect("no NUL")).expect("valid filter")
    })
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn users() -> impl Strategy<Value = Vec<UserProperty>> {
    vec((string(), string()), 0..3)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn pid() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn codes(valid: fn(u8) -> bool) -> impl Strategy<Value = u8> {
    any::<u8>().prop_filter("allowed reason code", move |&c| valid(c))
}

fn ack_props(v5: bool) -> BoxedStrategy<AckProperties> {
    if !v5 {
        return Just(AckProperties::default()).boxed();
    }
    (opt(string()), users())
        .prop_map(|(reason_string, user_properties)| {
            let mut p = AckProperties::default();
            p.reason_string = reason_string;
            p.user_properties = user_properties;
            p
        })
        .boxed()
}

fn connect(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let v5 = v.is_v5();
    let props = (
        opt(any::<u32>()),
        opt(string()),
        opt(binary()),
        opt(0..=1u8),
        opt(0..=1u8),
        opt(1..=u16::MAX),
        opt(any::<u16>()),
        users(),
        opt(1..=u32::MAX),
    )
        .prop_map(|(se, am, ad, rpi, rri, rm, tam, up, mps)| {
            let mut p = ConnectProperties::default();
            (
                p.session_expiry_interval,
                p.authentication_method,
                p.authentication_data,
            ) = (se, am, ad);
            (
                p.request_problem_information,
                p.request_response_information,
            ) = (rpi, rri);
            (p.receive_maximum, p.topic_alias_maximum, p.user_properties) = (rm, tam, up);
            p.maximum_packet_size = mps;
            p
        });
    let will_props = (
        opt(0..=1u8),
        opt(any::<u32>()),
        opt(string()),
        opt(topic()),
        opt(binary()),
        opt(any::<u32>()),
        users(),
    )
        .prop_map(|(pfi, mei, ct, rt, cd, wdi, up)| {
            let mut p = WillProperties::default();
            (
                p.payload_format_indicator,
                p.message_expiry_interval,
                p.content_type,
            ) = (pfi, mei, ct);
            (p.response_topic, p.correlation_data, p.will_delay_interval) = (rt, cd, wdi);
            p.user_properties = up;
            p
        });
    let will = (topic(), binary(), qos(), any::<bool>(), will_props).prop_map(
        move |(topic, payload, qos, retain, p)| Will {
            topic,
            payload,
            qos,
            retain,
            properties: if v5 { p.into() } else { Props::none() },
        },
    );
    let client_id = "[a-zA-Z0-9-]{1,23}".prop_map(|s| MqttString::try_from(s).expect("no NUL"));
    (
        any::<bool>(),
        any::<u16>(),
        client_id,
        opt(will),
        opt(string()),
        opt(binary()),
        props,
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, props)| {
                // 3.1.1 allows a password only with a user name.
                let password = if v5 || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties: if v5 {
                        props
                    } else {
                        ConnectProperties::default()
                    },
                }))
            },
        )
        .boxed()
}

fn connack(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    if !v.is_v5() {
        return (any::<bool>(), 0..=5u8)
            .prop_map(|(sp, code)| {
                Packet::ConnAck(Box::new(ConnAck {
                    session_present: sp && code == 0,
                    code,
                    properties: ConnAckProperties::default(),
                }))
            })
            .boxed();
    }
    let a = (
        opt(any::<u32>()),
        opt(string()),
        opt(any::<u16>()),
        opt(string()),
        opt(binary()),
        opt(string()),
        opt(string()),
        opt(string()),
    );
    let b = (
        opt(1..=u16::MAX),
        opt(any::<u16>()),
        opt(0..=1u8),
        opt(0..=1u8),
        users(),
        opt(1..=u32::MAX),
        opt(0..=1u8),
        opt(0..=1u8),
        opt(0..=1u8),
    );
    (any::<bool>(), codes(reason::valid_for_connack), a, b)
        .prop_map(|(sp, code, a, b)| {
            let mut p = ConnAckProperties::default();
            (
                p.session_expiry_interval,
                p.assigned_client_identifier,
                p.server_keep_alive,
            ) = (a.0, a.1, a.2);
            (
                p.authentication_method,
                p.authentication_data,
                p.response_information,
            ) = (a.3, a.4, a.5);
            (p.server_reference, p.reason_string) = (a.6, a.7);
            (
                p.receive_maximum,
                p.topic_alias_maximum,
                p.maximum_qos,
                p.retain_available,
            ) = (b.0, b.1, b.2, b.3);
            (p.user_properties, p.maximum_packet_size) = (b.4, b.5);
            p.wildcard_subscription_available = b.6;
            p.subscription_identifiers_available = b.7;
            p.shared_subscription_available = b.8;
            Packet::ConnAck(Box::new(ConnAck {
                session_present: sp && code == 0,
                code,
                properties: p,
            }))
        })
        .boxed()
}

fn publish(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let v5 = v.is_v5();
    let props = (
        opt(0..=1u8),
        opt(any::<u32>()),
        opt(string()),
        opt(topic()),
        opt(binary()),
        vec(1..=268_435_455u32, 0..3),
        opt(1..=u16::MAX),
        users(),
    )
        .prop_map(|(pfi, mei, ct, rt, cd, si, ta, up)| {
            let mut p = PublishProperties::default();
            (
                p.payload_format_indicator,
                p.message_expiry_interval,
                p.content_type,
            ) = (pfi, mei, ct);
            (
                p.response_topic,
                p.correlation_data,
                p.subscription_identifiers,
            ) = (rt, cd, si);
            (p.topic_alias, p.user_properties) = (ta, up);
            p
        });
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic(),
        pid(),
        binary(),
        props,
        any::<bool>(),
    )
        .prop_map(
            move |(qos, dup, retain, topic, id, payload, props, alias_only)| {
                let properties = if v5 {
                    props
                } else {
                    PublishProperties::default()
                };
                // MQTT 5 may send an empty topic when a topic alias stands in for it.
                let topic = if alias_only && properties.topic_alias.is_some() {
                    MqttString::new()
                } else {
                    topic
                };
                let at_most_once = qos == QoS::AtMostOnce;
                Packet::Publish(Publish {
                    dup: dup && !at_most_once,
                    qos,
                    retain,
                    topic,
                    packet_id: if at_most_once { 0 } else { id },
                    payload,
                    properties: properties.into(),
                })
            },
        )
        .boxed()
}

fn pub_ack(v: ProtocolVersion, kind: u8) -> BoxedStrategy<Packet> {
    let valid = if kind <= 5 {
        reason::valid_for_puback
    } else {
        reason::valid_for_pubrel
    };
    let code = if v.is_v5() {
        codes(valid).boxed()
    } else {
        Just(0).boxed()
    };
    (pid(), code, ack_props(v.is_v5()))
        .prop_map(move |(packet_id, reason_code, properties)| {
            let ack = PubAck {
                packet_id,
                reason_code,
                properties,
            };
            match kind {
                4 => Packet::PubAck(ack),
                5 => Packet::PubRec(ack),
                6 => Packet::PubRel(ack),
                _ => Packet::PubComp(ack),
            }
        })
        .boxed()
}

fn subscribe(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let v5 = v.is_v5();
    let options =
        (qos(), any::<bool>(), any::<bool>(), 0..3u8).prop_map(move |(qos, nl, rap, rh)| {
            SubscriptionOptions {
                qos,
                no_local: v5 && nl,
                retain_as_published: v5 && rap,
                retain_handling: match rh {
                    _ if !v5 => RetainHandling::OnSubscribe,
                    0 => RetainHandling::OnSubscribe,
                    1 => RetainHandling::OnNewSubscribe,
                    _ => RetainHandling::Never,
                },
            }
        });
    let sub = (filter(), options).prop_map(|(filter, mut options)| {
        // No Local on a shared subscription is a protocol error.
        options.no_local &= filter.shared().is_none();
        Subscription { filter, options }
    });
    let props = (opt(1..=268_435_455u32), users()).prop_map(move |(si, up)| {
        let mut p = SubscribeProperties::default();
        if v5 {
            (p.subscription_identifier, p.user_properties) = (si, up);
        }
        p
    });
    (pid(), vec(sub, 1..4), props)
        .prop_map(|(packet_id, subscriptions, properties)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                subscriptions,
                properties,
            })
        })
        .boxed()
}

fn suback(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let code = if v.is_v5() {
        codes(reason::valid_for_suback).boxed()
    } else {
        prop_oneof![Just(0u8), Just(1), Just(2), Just(0x80)].boxed()
    };
    (pid(), vec(code, 1..4), ack_props(v.is_v5()))
        .prop_map(|(packet_id, reason_codes, properties)| {
            Packet::SubAck(SubAck {
                packet_id,
                reason_codes,
                properties: properties.into(),
            })
        })
        .boxed()
}

fn unsubscribe(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let v5 = v.is_v5();
    (pid(), vec(filter(), 1..4), users())
        .prop_map(move |(packet_id, filters, up)| {
            let mut properties = UnsubscribeProperties::default();
            if v5 {
                properties.user_properties = up;
            }
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties,
            })
        })
        .boxed()
}

fn unsuback(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let v5 = v.is_v5();
    (
        pid(),
        vec(codes(reason::valid_for_unsuback), 1..4),
        ack_props(v5),
    )
        .prop_map(move |(packet_id, codes, properties)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                reason_codes: if v5 { codes } else { Vec::new() },
                properties: properties.into(),
            })
        })
        .boxed()
}

fn disconnect(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    if !v.is_v5() {
        return Just(Packet::Disconnect(Disconnect::default())).boxed();
    }
    (
        codes(reason::valid_for_disconnect),
        opt(any::<u32>()),
        opt(string()),
        opt(string()),
        users(),
    )
        .prop_map(|(code, se, sr, rs, up)| {
            let mut d = Disconnect::new(code);
            // Always allocated, even when every value is None: an empty set decodes as
            // none at all, and the two must compare equal.
            let p = d.properties.make_mut();
            (p.session_expiry_interval, p.server_reference) = (se, sr);
            (p.reason_string, p.user_properties) = (rs, up);
            Packet::Disconnect(d)
        })
        .boxed()
}

fn auth() -> BoxedStrategy<Packet> {
    (
        codes(reason::valid_for_auth),
        opt(string()),
        opt(binary()),
        opt(string()),
        users(),
    )
        .prop_map(|(reason_code, am, ad, rs, up)| {
            let mut properties = AuthProperties::default();
            (
                properties.authentication_method,
                properties.authentication_data,
            ) = (am, ad);
            (properties.reason_string, properties.user_properties) = (rs, up);
            Packet::Auth(Auth {
                reason_code,
                properties: properties.into(),
            })
        })
        .boxed()
}

fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let mut all = vec![
        connect(v),
        connack(v),
        publish(v),
        pub_ack(v, 4),
        pub_ack(v, 5),
        pub_ack(v, 6),
        pub_ack(v, 7),
        subscribe(v),
        suback(v),
        unsubscribe(v),
        unsuback(v),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(v),
    ];
    if v.is_v5() {
        all.push(auth());
    }
    proptest::strategy::Union::new(all).boxed()
}

/// A fresh codec in the state that expects `packet`.
fn codec_for(packet: &Packet, v: ProtocolVersion) -> MqttCodec {
    match packet {
        Packet::Connect(_) => MqttCodec::server(u32::MAX),
        _ => MqttCodec::with_version(v, u32::MAX),
    }
}

fn check_round_trip(packet: Packet, v: ProtocolVersion) -> Result<(), TestCaseError> {
    let mut wire = BytesMut::new();
    encode_packet(&packet, v, u32::MAX, &mut wire)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let bytes = wire.freeze();

    let mut buf = BytesMut::from(&bytes[..]);
    let decoded = codec_for(&packet, v)
        .decode(&mut buf)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(decoded.as_ref(), Some(&packet));
    prop_assert!(buf.is_empty());

    // Every split point: the prefix is "need more" and untouched, then the rest completes it.
    for split in 0..bytes.len() {
        let mut codec = codec_for(&packet, v);
        let mut buf = BytesMut::from(&bytes[..split]);
        prop_assert_eq!(
            codec
                .decode(&mut buf)
                .map_err(|e| TestCaseError::fail(e.to_string()))?,
            None
        );
        prop_assert_eq!(&buf[..], &bytes[..split]);
        buf.extend_from_slice(&bytes[split..]);
        let decoded = codec
            .decode(&mut buf)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded.as_ref(), Some(&packet));
    }

    // One byte at a time, followed by a second packet in the same buffer.
    let mut codec = codec_for(&packet, v);
    let mut buf = BytesMut::new();
    let mut seen = None;
    for &byte in bytes.iter() {
        prop_assert!(seen.is_none());
        buf.extend_from_slice(&[byte]);
        seen = codec
            .decode(&mut buf)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    prop_assert_eq!(seen.as_ref(), Some(&packet));
    buf.extend_from_slice(&[0xC0, 0x00]);
    prop_assert_eq!(
        codec
            .decode(&mut buf)
            .map_err(|e| TestCaseError::fail(e.to_string()))?,
        Some(Packet::PingReq)
    );
    Ok(())
}

proptest! {
    #[test]
    fn v311_round_trip(packet in packet(ProtocolVersion::V3_1_1)) {
        check_round_trip(packet, ProtocolVersion::V3_1_1)?;
    }

    #[test]
    fn v5_round_trip(packet in packet(ProtocolVersion::V5)) {
        check_round_trip(packet, ProtocolVersion::V5)?;
    }

    /// Re-encoding a decoded packet reproduces its bytes, whatever order its properties
    /// arrived in.
    #[test]
    fn v5_reencode_is_stable(packet in packet(ProtocolVersion::V5)) {
        let mut wire = BytesMut::new();
        encode_packet(&packet, ProtocolVersion::V5, u32::MAX, &mut wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let original = wire.clone().freeze();
        let decoded = codec_for(&packet, ProtocolVersion::V5).decode(&mut wire).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut again = BytesMut::new();
        encode_packet(&decoded.expect("whole packet"), ProtocolVersion::V5, u32::MAX, &mut again).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&again[..], &original[..]);
    }
}

#[test]
fn mqtt_3_1_connect_round_trips() {
    let packet = Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V3_1,
        clean_start: true,
        keep_alive: 60,
        client_id: MqttString::try_from("legacy").expect("id"),
        will: None,
        username: Some(MqttString::try_from("u").expect("name")),
        password: Some(Bytes::from_static(b"p")),
        properties: ConnectProperties::default(),
    }));
    check_round_trip(packet, ProtocolVersion::V3_1).expect("round trip");
}
