//! Unit tests of the session rules (no Kafka).

use super::{Stored, StoredSub};

#[test]
fn a_resuming_claim_keeps_the_session_it_supersedes_a_clean_one_does_not() {
    let saved = Stored {
        gen: 1,
        owner: "a/0/1".into(),
        subs: vec![StoredSub {
            filter: "t/#".into(),
            qos: 1,
            ..StoredSub::default()
        }],
        cursor: [("mqtt-messages".to_owned(), [(0, 42)].into())].into(),
        expiry_s: 60,
        connected: true,
        at_ms: 1_000,
        ..Stored::default()
    };
    let claim = |gen, resumes, at_ms| Stored {
        gen,
        owner: format!("b/0/{gen}"),
        expiry_s: 60,
        connected: true,
        at_ms,
        resumes,
        ..Stored::default()
    };
    // A claim whose connection never saved, then the next one: the subscriptions and
    // cursor are still there for it.
    let abandoned = Stored::claimed(claim(2, true, 2_000), Some(&saved));
    assert_eq!(abandoned.subs, saved.subs);
    assert_eq!(abandoned.cursor, saved.cursor);
    assert_eq!(abandoned.gen, 2);
    let next = Stored::claimed(claim(3, true, 3_000), Some(&abandoned));
    assert_eq!(next.subs, saved.subs);
    // A clean start, or a session that had expired, starts empty.
    assert!(Stored::claimed(claim(2, false, 2_000), Some(&saved))
        .subs
        .is_empty());
    let gone = Stored {
        connected: false,
        ..saved.clone()
    };
    assert!(Stored::claimed(claim(2, true, 62_000), Some(&gone))
        .subs
        .is_empty());
    assert!(Stored::claimed(claim(2, true, 2_000), None).subs.is_empty());
}

#[test]
fn sessions_expire_only_when_disconnected_past_their_interval() {
    let s = Stored {
        expiry_s: 10,
        at_ms: 1_000,
        ..Stored::default()
    };
    assert!(!s.expired(10_999));
    assert!(s.expired(11_000));
    let connected = Stored {
        connected: true,
        ..s.clone()
    };
    assert!(!connected.expired(u64::MAX));
    let forever = Stored {
        expiry_s: u32::MAX,
        ..s
    };
    assert!(!forever.expired(u64::MAX));
}

#[test]
fn state_round_trips_through_json() {
    let mut s = Stored {
        gen: 3,
        owner: "p/0/7".into(),
        subs: vec![StoredSub {
            filter: "a/+".into(),
            qos: 1,
            id: Some(7),
            ..Default::default()
        }],
        expiry_s: 60,
        connected: true,
        at_ms: 5,
        ..Stored::default()
    };
    s.cursor
        .entry("mqtt-messages".into())
        .or_default()
        .insert(2, 41);
    let json = serde_json::to_vec(&s).unwrap();
    assert_eq!(serde_json::from_slice::<Stored>(&json).unwrap(), s);
}
