//! The WebSocket session state machine: ping/pong, close handshake, keepalive timers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use codecs::ws::{CloseFrame, Effect, Frame, Message, Opcode, SessionConfig, WsError, WsSession};

fn drain(s: &mut WsSession) -> Vec<Effect> {
    std::iter::from_fn(|| s.poll_effect()).collect()
}

fn close_frame(code: u16) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Bytes::new(),
    }))
}

#[test]
fn a_ping_is_answered_with_a_pong_carrying_the_same_data() {
    let now = Instant::now();
    let mut s = WsSession::new(SessionConfig::default(), now);
    assert_eq!(
        s.on_message(Message::Ping(Bytes::from_static(b"42")), now),
        None
    );
    assert_eq!(
        drain(&mut s),
        [Effect::Send(Frame::new(Opcode::Pong, &b"42"[..]))]
    );
}

#[test]
fn data_is_delivered_while_open() {
    let now = Instant::now();
    let mut s = WsSession::new(SessionConfig::default(), now);
    let m = Message::Binary(Bytes::from_static(b"x"));
    assert_eq!(s.on_message(m.clone(), now), Some(m));
    assert!(drain(&mut s).is_empty());
}

#[test]
fn a_peer_close_is_echoed_with_its_code_then_the_transport_closes() {
    let now = Instant::now();
    let mut s = WsSession::new(SessionConfig::default(), now);
    s.on_message(close_frame(4001), now);
    assert_eq!(
        drain(&mut s),
        [Effect::Send(Frame::close(4001, "")), Effect::CloseTransport]
    );
    assert!(s.is_closed());
    // Nothing is delivered or answered after the close.
    assert_eq!(s.on_message(Message::Ping(Bytes::new()), now), None);
    assert!(drain(&mut s).is_empty());
}

#[test]
fn a_close_without_status_is_echoed_empty() {
    let now = Instant::now();
    let mut s = WsSession::new(SessionConfig::default(), now);
    s.on_message(Message::Close(None), now);
    assert_eq!(
        drain(&mut s),
        [
            Effect::Send(Frame::new(Opcode::Close, Bytes::new())),
            Effect::CloseTransport
        ]
    );
}

#[test]
fn our_close_waits_for_the_peer_and_drops_data_meanwhile() {
    let now = Instant::now();
    let mut s = WsSession::new(SessionConfig::default(), now);
    s.close(1001, "shutting down", now);
    assert_eq!(
        drain(&mut s),
        [Effect::Send(Frame::close(1001, "shutting down"))]
    );
    assert_eq!(
        s.on_message(Message::Text(Bytes::from_static(b"late")), now),
        None
    );
    assert!(!s.is_closed());
    s.on_message(close_frame(1001), now);
    assert_eq!(drain(&mut s), [Effect::CloseTransport]);
    assert!(s.is_closed());
}

#[test]
fn our_close_times_out_if_the_peer_never_answers() {
    let now = Instant::now();
    let cfg = SessionConfig {
        ping_interval: None,
        close_timeout: Duration::from_secs(2),
    };
    let mut s = WsSession::new(cfg, now);
    s.close(1000, "", now);
    drain(&mut s);
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(2)));
    s.handle_timeout(now + Duration::from_secs(1));
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(now + Duration::from_secs(2));
    assert_eq!(drain(&mut s), [Effect::CloseTransport]);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn decode_errors_close_with_their_code() {
    let now = Instant::now();
    for (err, code) in [
        (WsError::InvalidUtf8, 1007),
        (WsError::MessageTooLarge { len: 10, max: 5 }, 1009),
        (WsError::UnexpectedContinuation, 1002),
        (WsError::UnsupportedData, 1003),
    ] {
        let mut s = WsSession::new(SessionConfig::default(), now);
        s.on_error(&err, now);
        let effects = drain(&mut s);
        let [Effect::Send(f)] = &effects[..] else {
            panic!("{effects:?}")
        };
        assert_eq!(f.opcode, Opcode::Close);
        assert_eq!(
            u16::from_be_bytes([f.payload[0], f.payload[1]]),
            code,
            "{err}"
        );
    }
}

#[test]
fn an_idle_peer_is_pinged_then_closed_with_1001_if_it_stays_silent() {
    let t0 = Instant::now();
    let sec = Duration::from_secs(1);
    let cfg = SessionConfig {
        ping_interval: Some(10 * sec),
        close_timeout: 5 * sec,
    };
    let mut s = WsSession::new(cfg, t0);
    assert_eq!(s.poll_timeout(), Some(t0 + 10 * sec));
    s.handle_timeout(t0 + 9 * sec);
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(t0 + 10 * sec);
    assert_eq!(
        drain(&mut s),
        [Effect::Send(Frame::new(Opcode::Ping, Bytes::new()))]
    );
    // A pong resets the timer.
    s.on_message(Message::Pong(Bytes::new()), t0 + 11 * sec);
    assert_eq!(s.poll_timeout(), Some(t0 + 21 * sec));
    s.handle_timeout(t0 + 21 * sec);
    assert_eq!(drain(&mut s).len(), 1);
    s.handle_timeout(t0 + 31 * sec);
    assert_eq!(drain(&mut s), [Effect::Send(Frame::close(1001, "no pong"))]);
}
