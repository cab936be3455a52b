//! Decoding framed records, lines and single-frame binary WebSocket messages allocates
//! nothing per frame. A counting global allocator counts allocations made by this thread
//! while a test's measured section runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use codecs::framed::{FramedCodec, FramedConfig, FramedRecord, LengthPrefix};
use codecs::lines::LinesCodec;
use codecs::ws::{Frame, FrameDecoder, FrameEncoder, MaskSource, Message, MessageAssembler, Role};
use codecs::{Decoder, Encoder};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    COUNT.with(Cell::get)
}

const N: usize = 1000;

/// Decodes the first frame outside the measurement: the first `split_to` of a fresh
/// `BytesMut` turns its vector into a shared buffer, one allocation per read buffer, not
/// per frame. Every later frame must allocate nothing.
fn measure<D: Decoder>(mut dec: D, mut buf: BytesMut, mut check: impl FnMut(D::Frame)) -> usize
where
    D::Error: std::fmt::Debug,
{
    check(dec.decode(&mut buf).unwrap().unwrap());
    let mut frames = Vec::with_capacity(N);
    let n = allocations(|| {
        while let Some(f) = dec.decode(&mut buf).unwrap() {
            frames.push(f);
        }
    });
    assert_eq!(frames.len(), N - 1);
    frames.into_iter().for_each(&mut check);
    n
}

#[test]
fn framed_decoding_allocates_nothing_per_frame() {
    for (prefix, keyed) in [(LengthPrefix::U16, false), (LengthPrefix::U32, true)] {
        let cfg = FramedConfig {
            prefix,
            keyed,
            max_frame_size: 1024,
        };
        let mut codec = FramedCodec::new(cfg);
        let mut buf = BytesMut::new();
        let rec = FramedRecord {
            key: keyed.then(|| "device-1".into()),
            value: vec![7u8; 100].into(),
        };
        for _ in 0..N {
            codec.encode(&rec, &mut buf).unwrap();
        }
        let n = measure(codec, buf, |r| assert_eq!(r, rec));
        assert_eq!(n, 0, "{prefix:?} keyed={keyed}");
    }
}

#[test]
fn lines_decoding_allocates_nothing_per_line() {
    let mut buf = BytesMut::new();
    for i in 0..N {
        buf.extend_from_slice(if i % 2 == 0 {
            b"{\"t\":21.5}\n"
        } else {
            b"{\"t\":21.5}\r\n"
        });
    }
    let n = measure(LinesCodec::new(1024), buf, |l| {
        assert_eq!(&l[..], b"{\"t\":21.5}")
    });
    assert_eq!(n, 0);
}

#[test]
fn single_frame_binary_websocket_messages_allocate_nothing() {
    let mut enc = FrameEncoder::client(MaskSource::new(42));
    let mut buf = BytesMut::new();
    for _ in 0..N {
        enc.encode(&Frame::binary(vec![3u8; 200]), &mut buf)
            .unwrap();
    }
    let mut dec = FrameDecoder::new(Role::Server, 1 << 16);
    let mut asm = MessageAssembler::new(1 << 16);
    let first = dec.decode(&mut buf).unwrap().unwrap();
    assert!(matches!(asm.push(first).unwrap(), Some(Message::Binary(_))));
    let mut messages = Vec::with_capacity(N);
    let n = allocations(|| {
        while let Some(f) = dec.decode(&mut buf).unwrap() {
            messages.push(asm.push(f).unwrap());
        }
    });
    assert_eq!(n, 0);
    assert_eq!(messages.len(), N - 1);
    for m in messages {
        assert_eq!(m, Some(Message::Binary(vec![3u8; 200].into())));
    }
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the tests above against a counter that never counts.
    let n = allocations(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(64))));
    assert_eq!(n, 1);
}
