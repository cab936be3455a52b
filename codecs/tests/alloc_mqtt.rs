//! Decoding a PUBLISH without MQTT 5 properties must not allocate: the topic and payload are
//! slices of the read buffer. With properties it allocates exactly once, the out-of-line
//! property struct (`Props`); their strings are slices too. Finding a message's subscribers
//! in a `SubscriptionIndex` must not allocate. A counting global allocator checks it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{BufMut, BytesMut};
use codecs::mqtt::{MqttCodec, Packet, ProtocolVersion, QoS, SubscriptionIndex};
use codecs::Decoder;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Only the test thread's allocations inside `count` are counted.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ACTIVE.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ACTIVE.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    ACTIVE.with(|a| a.set(true));
    f();
    ACTIVE.with(|a| a.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

/// A QoS 1 PUBLISH to `sensors/room1/temp` with a 100-byte payload and `props` (v5 only).
fn put_publish(buf: &mut BytesMut, packet_id: u16, props: Option<&[u8]>) {
    let topic = b"sensors/room1/temp";
    let props_len = props.map_or(0, |p| 1 + p.len());
    let remaining = 2 + topic.len() + 2 + props_len + 100;
    buf.put_u8(0x32);
    if remaining < 128 {
        buf.put_u8(remaining as u8);
    } else {
        buf.put_u8(0x80 | (remaining % 128) as u8);
        buf.put_u8((remaining / 128) as u8);
    }
    buf.put_u16(topic.len() as u16);
    buf.put_slice(topic);
    buf.put_u16(packet_id);
    if let Some(p) = props {
        buf.put_u8(p.len() as u8);
        buf.put_slice(p);
    }
    buf.put_slice(&[b'x'; 100]);
}

fn decode_1000(version: ProtocolVersion, props: Option<&[u8]>) -> usize {
    let mut codec = MqttCodec::with_version(version, MqttCodec::DEFAULT_MAX_PACKET_SIZE);
    let mut buf = BytesMut::new();
    for id in 1..=1001 {
        put_publish(&mut buf, id, props);
    }
    // The first split of a fresh BytesMut turns its Vec into a shared buffer (one
    // allocation per read buffer, not per packet), so decode one packet before counting.
    assert!(codec.decode(&mut buf).expect("decodes").is_some());
    count(|| {
        for id in 2..=1001u16 {
            match codec.decode(&mut buf) {
                Ok(Some(Packet::Publish(p))) => {
                    assert_eq!(
                        (p.packet_id, p.qos, p.payload.len()),
                        (id, QoS::AtLeastOnce, 100)
                    );
                    if props.is_some_and(|p| !p.is_empty()) {
                        assert_eq!(p.properties.message_expiry_interval, Some(60));
                        assert_eq!(p.properties.content_type.as_deref(), Some("text/plain"));
                    }
                }
                other => panic!("{other:?}"),
            }
        }
    })
}

#[test]
fn publish_decode_allocates_only_the_properties() {
    assert_eq!(
        decode_1000(ProtocolVersion::V3_1_1, None),
        0,
        "MQTT 3.1.1 QoS 1"
    );
    assert_eq!(
        decode_1000(ProtocolVersion::V5, Some(&[])),
        0,
        "MQTT 5 without properties"
    );
    let props: Vec<u8> = [
        &[0x01, 1][..],       // payload format indicator
        &[0x02, 0, 0, 0, 60], // message expiry interval
        &[0x03, 0, 10],       // content type
        b"text/plain",
    ]
    .concat();
    assert_eq!(
        decode_1000(ProtocolVersion::V5, Some(&props)),
        1000,
        "MQTT 5 with properties: one property struct per packet, nothing for its strings"
    );
    // The counter works: a user property allocates its Vec.
    let user: Vec<u8> = [&[0x26, 0, 1, b'k', 0, 1, b'v'][..]].concat();
    let with_user = [props.as_slice(), user.as_slice()].concat();
    assert!(
        count(|| {
            let mut codec = MqttCodec::with_version(ProtocolVersion::V5, 1 << 20);
            let mut buf = BytesMut::new();
            put_publish(&mut buf, 1, Some(&with_user));
            codec.decode(&mut buf).expect("decodes");
        }) > 0
    );
}

#[test]
fn subscription_matching_allocates_nothing() {
    let mut index = SubscriptionIndex::new();
    for device in 0..1000_u64 {
        index.insert(&format!("sensors/room{device}/temp"), device, 0_u8);
        index.insert(&format!("sensors/room{device}/#"), device, 1);
        index.insert(&format!("$share/g{}/sensors/+/temp", device % 4), device, 1);
    }
    index.insert("sensors/+/temp", 5000, 0);
    index.insert("#", 5001, 0);
    let topics = [
        "sensors/room1/temp",
        "sensors/room999/temp/x/y",
        "sensors/nowhere",
        "$SYS/broker/load",
        "a/b/c/d/e/f/g/h/i/j/k/l",
    ];
    let mut calls = 0;
    let allocations = count(|| {
        for topic in topics {
            index.matches(topic, |_, _, _| calls += 1);
            index.matches_shared(topic, |group| {
                let (_member, qos) = group.pick(calls);
                calls += 1 + usize::from(*qos);
            });
        }
    });
    assert_eq!(allocations, 0);
    assert!(calls > 10, "the topics matched something ({calls} calls)");
}
