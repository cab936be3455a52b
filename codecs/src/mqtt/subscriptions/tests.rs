//! Subscription index tests: one per matching rule of MQTT 5 §4.7 and §4.8.2 (with the
//! spec's own examples), removal and pruning, hostile filters, and a proptest against
//! [`TopicFilter::matches`] as the reference.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::Index;

use super::*;
use crate::mqtt::{MqttString, TopicFilter};

/// Plain matches of `topic` as sorted (key, filter, value).
fn plain(index: &SubscriptionIndex<u64, u8>, topic: &str) -> Vec<(u64, String, u8)> {
    let mut out = Vec::new();
    index.matches(topic, |k, v, filter| out.push((*k, filter.to_owned(), *v)));
    out.sort();
    out
}

/// Shared matches as sorted (group, filter, members sorted).
type SharedMatches = Vec<(String, String, Vec<(u64, u8)>)>;

fn shared(index: &SubscriptionIndex<u64, u8>, topic: &str) -> SharedMatches {
    let mut out = Vec::new();
    index.matches_shared(topic, |g| {
        let mut members = g.members.to_vec();
        members.sort();
        out.push((g.name.to_owned(), g.filter.to_owned(), members));
    });
    out.sort();
    out
}

/// An index holding `filters`, each subscribed by the key equal to its position.
fn index_of(filters: &[&str]) -> SubscriptionIndex<u64, u8> {
    let mut index = SubscriptionIndex::new();
    for (key, filter) in filters.iter().enumerate() {
        assert_eq!(index.insert(filter, key as u64, 0), None, "{filter}");
    }
    index
}

/// The filters of `index` that match `topic`.
fn matching<'a>(
    index: &SubscriptionIndex<u64, u8>,
    filters: &[&'a str],
    topic: &str,
) -> Vec<&'a str> {
    let keys: Vec<u64> = plain(index, topic).into_iter().map(|(k, _, _)| k).collect();
    filters
        .iter()
        .enumerate()
        .filter(|(key, _)| keys.contains(&(*key as u64)))
        .map(|(_, filter)| *filter)
        .collect()
}

#[test]
fn s4_7_1_1_empty_levels_are_levels() {
    let filters = ["a//b", "a/b", "a/+/b", "+/+", "/+", "+", "/", "a/"];
    let index = index_of(&filters);
    assert_eq!(matching(&index, &filters, "a//b"), ["a//b", "a/+/b"]);
    assert_eq!(matching(&index, &filters, "a/b"), ["a/b", "+/+"]);
    // §4.7.1.3's examples: `+/+` and `/+` match `/finance`, `+` does not.
    assert_eq!(matching(&index, &filters, "/finance"), ["+/+", "/+"]);
    assert_eq!(matching(&index, &filters, "/"), ["+/+", "/+", "/"]);
    assert_eq!(matching(&index, &filters, "a/"), ["+/+", "a/"]);
}

#[test]
fn s4_7_1_2_multi_level_wildcard_includes_the_parent() {
    let filters = [
        "sport/tennis/player1/#",
        "sport/#",
        "#",
        "sport/tennis/#",
        "/#",
    ];
    let index = index_of(&filters);
    assert_eq!(
        matching(&index, &filters, "sport/tennis/player1"),
        ["sport/tennis/player1/#", "sport/#", "#", "sport/tennis/#"]
    );
    assert_eq!(
        matching(&index, &filters, "sport/tennis/player1/score/wimbledon"),
        ["sport/tennis/player1/#", "sport/#", "#", "sport/tennis/#"]
    );
    assert_eq!(matching(&index, &filters, "sport"), ["sport/#", "#"]);
    assert_eq!(matching(&index, &filters, "sports"), ["#"]);
    assert_eq!(matching(&index, &filters, "/"), ["#", "/#"]);
    assert_eq!(matching(&index, &filters, "/x/y"), ["#", "/#"]);
}

#[test]
fn s4_7_1_3_single_level_wildcard_is_exactly_one_level() {
    let filters = [
        "sport/tennis/+",
        "sport/+",
        "+",
        "+/tennis/#",
        "sport/+/player1",
    ];
    let index = index_of(&filters);
    assert_eq!(
        matching(&index, &filters, "sport/tennis/player1"),
        ["sport/tennis/+", "+/tennis/#", "sport/+/player1"]
    );
    assert_eq!(
        matching(&index, &filters, "sport/tennis/player1/ranking"),
        ["+/tennis/#"]
    );
    // `sport/+` does not match `sport` but does match `sport/`.
    assert_eq!(matching(&index, &filters, "sport"), ["+"]);
    assert_eq!(matching(&index, &filters, "sport/"), ["sport/+"]);
    assert_eq!(
        matching(&index, &filters, "sport//player1"),
        ["sport/+/player1"]
    );
    assert_eq!(matching(&index, &filters, "x/tennis"), ["+/tennis/#"]);
}

#[test]
fn s4_7_2_wildcards_do_not_match_dollar_topics() {
    let filters = [
        "#",
        "+/monitor/Clients",
        "$SYS/#",
        "$SYS/monitor/+",
        "+",
        "+/#",
        "a/+",
    ];
    let index = index_of(&filters);
    assert_eq!(
        matching(&index, &filters, "$SYS/monitor/Clients"),
        ["$SYS/#", "$SYS/monitor/+"]
    );
    assert_eq!(matching(&index, &filters, "$SYS"), ["$SYS/#"]);
    // Only the first level is special.
    assert_eq!(matching(&index, &filters, "a/$x"), ["#", "+/#", "a/+"]);

    let mut index = SubscriptionIndex::new();
    index.insert("$share/g/#", 1, 0);
    index.insert("$share/g/$SYS/#", 2, 0);
    assert_eq!(
        shared(&index, "$SYS/x"),
        [("g".into(), "$SYS/#".into(), vec![(2, 0)])]
    );
}

#[test]
fn s4_7_3_levels_are_case_sensitive_text() {
    let filters = ["ACCOUNTS", "Accounts payable", "accounts/+"];
    let index = index_of(&filters);
    assert_eq!(matching(&index, &filters, "ACCOUNTS"), ["ACCOUNTS"]);
    assert_eq!(matching(&index, &filters, "Accounts"), Vec::<&str>::new());
    assert_eq!(
        matching(&index, &filters, "Accounts payable"),
        ["Accounts payable"]
    );
}

#[test]
fn s3_8_4_a_second_subscription_to_a_filter_replaces_the_first() {
    let mut index = SubscriptionIndex::new();
    assert_eq!(index.insert("a/+", 7, 1), None);
    assert_eq!(index.insert("a/+", 7, 2), Some(1));
    assert_eq!(index.insert("$share/g/a/+", 7, 1), None);
    assert_eq!(index.insert("$share/g/a/+", 7, 2), Some(1));
    assert_eq!(index.len(), 2);
    assert_eq!(plain(&index, "a/b"), [(7, "a/+".into(), 2)]);
    assert_eq!(
        shared(&index, "a/b"),
        [("g".into(), "a/+".into(), vec![(7, 2)])]
    );
}

#[test]
fn s3_3_4_each_key_and_filter_is_reported_once() {
    let mut index = SubscriptionIndex::new();
    for filter in ["a/+", "a/#", "#", "+/b", "a/b"] {
        index.insert(filter, 1, 0);
        index.insert(filter, 2, 0);
    }
    let got = plain(&index, "a/b");
    assert_eq!(got.len(), 10);
    let mut pairs: Vec<_> = got.iter().map(|(k, f, _)| (*k, f.as_str())).collect();
    pairs.dedup();
    assert_eq!(pairs.len(), 10);
}

#[test]
fn s4_8_2_shared_subscriptions_are_reported_per_group() {
    let mut index = SubscriptionIndex::new();
    index.insert("$share/g1/a/+", 1, 0);
    index.insert("$share/g1/a/+", 2, 1);
    index.insert("$share/g2/a/+", 3, 0);
    index.insert("$share/g1/a/#", 4, 0);
    index.insert("a/+", 5, 0);
    assert_eq!(plain(&index, "a/b"), [(5, "a/+".into(), 0)]);
    assert_eq!(
        shared(&index, "a/b"),
        [
            ("g1".into(), "a/#".into(), vec![(4, 0)]),
            ("g1".into(), "a/+".into(), vec![(1, 0), (2, 1)]),
            ("g2".into(), "a/+".into(), vec![(3, 0)]),
        ]
    );

    // Members keep their join order, so a counter picks them in turn.
    let mut picked = Vec::new();
    for n in 0..4 {
        index.matches_shared("a/b", |g| {
            if g.name == "g1" && g.filter == "a/+" {
                picked.push(g.pick(n).0);
            }
        });
    }
    assert_eq!(picked, [1, 2, 1, 2]);

    // An emptied group is gone; the other group on the same filter stays.
    assert_eq!(index.remove("$share/g1/a/+", 1), Some(0));
    assert_eq!(index.remove("$share/g1/a/+", 2), Some(1));
    assert_eq!(index.remove("$share/g1/a/+", 2), None);
    assert_eq!(
        shared(&index, "a/b"),
        [
            ("g1".into(), "a/#".into(), vec![(4, 0)]),
            ("g2".into(), "a/+".into(), vec![(3, 0)]),
        ]
    );
}

#[test]
fn remove_and_remove_all() {
    let mut index = SubscriptionIndex::new();
    index.insert("a/b", 1, 10);
    index.insert("a/#", 1, 11);
    index.insert("$share/g/a/b", 1, 12);
    index.insert("a/b", 2, 20);
    assert_eq!(index.len(), 4);
    assert_eq!(index.remove("a/b", 3), None);
    assert_eq!(index.remove("x/y", 1), None);
    assert_eq!(index.remove("a", 1), None);
    assert_eq!(index.remove("a/b", 1), Some(10));
    assert_eq!(index.remove("a/b", 1), None);
    assert_eq!(index.len(), 3);
    assert_eq!(index.remove_all(1), 2);
    assert_eq!(index.remove_all(1), 0);
    assert_eq!(plain(&index, "a/b"), [(2, "a/b".into(), 20)]);
    assert!(shared(&index, "a/b").is_empty());
    assert_eq!(index.len(), 1);
    assert_eq!(index.remove_all(2), 1);
    assert!(index.is_empty());
    assert!(index.by_key.is_empty());
}

#[test]
fn removal_prunes_empty_nodes() {
    let mut index = SubscriptionIndex::new();
    let empty = index.node_count();
    index.insert("a/b/c/d", 1, 0);
    index.insert("a/b/+/#", 1, 0);
    index.insert("$share/g/a/b/c", 1, 0);
    let full = index.node_count();
    index.insert("a/b/x/y", 2, 0);
    assert_eq!(index.node_count(), full + 2);
    index.remove("a/b/x/y", 2);
    assert_eq!(
        index.node_count(),
        full,
        "only x/y is cut off; a/b is still used"
    );
    // A leaf emptied in the middle of a path keeps the nodes below it.
    index.insert("a/b", 3, 0);
    index.remove("a/b", 3);
    assert_eq!(index.node_count(), full);
    index.remove_all(1);
    assert_eq!(index.node_count(), empty);

    // Churn does not grow the trie.
    for round in 0..3 {
        for key in 0..200_u64 {
            index.insert(&format!("devices/{key}/cmd/+"), key, round);
            index.insert(&format!("$share/g{}/devices/{key}/#", key % 3), key, round);
        }
        for key in 0..200 {
            assert_eq!(index.remove_all(key), 2);
        }
        assert_eq!(index.node_count(), empty);
        assert!(index.is_empty());
    }
}

#[test]
fn invalid_filters_are_stored_without_panicking() {
    let filters = [
        "a/#/b",
        "a+",
        "",
        "$share/g",
        "$share//a",
        "#/",
        "+#",
        "a/b#",
    ];
    let mut index = index_of(&filters);
    assert_eq!(matching(&index, &filters, "a/x/b"), Vec::<&str>::new());
    assert_eq!(matching(&index, &filters, "a"), Vec::<&str>::new());
    // `$share//a` has an empty share name; it is still a group.
    assert_eq!(shared(&index, "a"), [("".into(), "a".into(), vec![(4, 0)])]);
    assert_eq!(index.len(), filters.len());
    for (key, filter) in filters.iter().enumerate() {
        assert_eq!(index.remove(filter, key as u64), Some(0), "{filter}");
    }
    assert_eq!(index.node_count(), 2);
}

#[test]
fn deep_filters_and_topics_use_bounded_stack() {
    // The longest MQTT string is 65,535 bytes; every `/` adds a level. Running on a small
    // stack shows that insert, match, remove and drop do not recurse per level.
    let run = || {
        let slashes = "/".repeat(65_534);
        let pluses = format!("{}#", "+/".repeat(32_766));
        let mut index = SubscriptionIndex::new();
        index.insert(&slashes, 1, 0);
        index.insert(&pluses, 2, 0);
        index.insert(&format!("$share/g/{pluses}"), 3, 0);
        assert_eq!(plain(&index, &slashes).len(), 2);
        assert_eq!(shared(&index, &slashes).len(), 1);
        assert_eq!(index.remove(&slashes, 1), Some(0));
        assert_eq!(plain(&index, &slashes).len(), 1);
        // Dropped with a 32,767-level path still in it.
    };
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(run)
        .expect("spawns")
        .join()
        .expect("no stack overflow");
}

#[test]
fn many_children_and_subscribers_switch_to_hash_maps_and_back() {
    let mut index = SubscriptionIndex::new();
    for key in 0..100_u64 {
        index.insert(&format!("d/{key}"), key, 0);
        index.insert("all", key, 1);
    }
    assert_eq!(plain(&index, "d/42"), [(42, "d/42".into(), 0)]);
    assert_eq!(plain(&index, "all").len(), 100);
    for key in 0..98 {
        index.remove(&format!("d/{key}"), key);
        index.remove("all", key);
    }
    assert_eq!(plain(&index, "d/99"), [(99, "d/99".into(), 0)]);
    assert_eq!(
        plain(&index, "all"),
        [(98, "all".into(), 1), (99, "all".into(), 1)]
    );
}

// The proptest: random filters, topics and insert/remove/remove_all sequences, checked
// against a plain map of subscriptions matched one by one with `TopicFilter::matches`.

const FILTER_LEVELS: &[&str] = &["a", "b", "", "$sys", "+"];
const TOPIC_LEVELS: &[&str] = &["a", "b", "", "$sys"];
const GROUPS: &[&str] = &["g1", "g2"];

fn arb_filter() -> impl Strategy<Value = String> {
    let levels = proptest::collection::vec(proptest::sample::select(FILTER_LEVELS), 0..4);
    let share = proptest::option::of(proptest::sample::select(GROUPS));
    (levels, any::<bool>(), share).prop_map(|(mut levels, hash, share)| {
        // A filter is at least one character: `` alone becomes `/#`.
        if hash || levels.concat().is_empty() {
            levels.push("#");
        }
        let filter = levels.join("/");
        match share {
            Some(group) => format!("$share/{group}/{filter}"),
            None => filter,
        }
    })
}

fn arb_topic() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(TOPIC_LEVELS), 1..5)
        .prop_map(|levels| levels.join("/"))
}

#[derive(Debug, Clone)]
enum Op {
    Insert(Index, u64, u8),
    Remove(Index, u64),
    RemoveAll(u64),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<Index>(), 0..4_u64, any::<u8>()).prop_map(|(f, k, v)| Op::Insert(f, k, v)),
        2 => (any::<Index>(), 0..4_u64).prop_map(|(f, k)| Op::Remove(f, k)),
        1 => (0..4_u64).prop_map(Op::RemoveAll),
    ]
}

type Model = BTreeMap<(String, u64), u8>;

fn expected_plain(model: &Model, topic: &str) -> Vec<(u64, String, u8)> {
    let mut out: Vec<_> = model
        .iter()
        .filter(|((filter, _), _)| split_shared(filter).is_none() && reference(filter, topic))
        .map(|((filter, key), value)| (*key, filter.clone(), *value))
        .collect();
    out.sort();
    out
}

fn expected_shared(model: &Model, topic: &str) -> SharedMatches {
    let mut groups: BTreeMap<(String, String), Vec<(u64, u8)>> = BTreeMap::new();
    for ((filter, key), value) in model {
        if let Some((group, inner)) = split_shared(filter) {
            if reference(filter, topic) {
                groups
                    .entry((group.to_owned(), inner.to_owned()))
                    .or_default()
                    .push((*key, *value));
            }
        }
    }
    groups
        .into_iter()
        .map(|((group, filter), mut members)| {
            members.sort();
            (group, filter, members)
        })
        .collect()
}

fn reference(filter: &str, topic: &str) -> bool {
    let filter = MqttString::try_from(filter).expect("test filter is a string");
    TopicFilter::new(filter)
        .expect("generated filters are valid")
        .matches(topic)
}

proptest! {
    #[test]
    fn index_agrees_with_matching_each_filter(
        filters in proptest::collection::vec(arb_filter(), 1..8),
        ops in proptest::collection::vec(arb_op(), 1..60),
        topics in proptest::collection::vec(arb_topic(), 1..12),
    ) {
        let mut index = SubscriptionIndex::new();
        let empty_nodes = index.node_count();
        let mut model = Model::new();
        for op in ops {
            match op {
                Op::Insert(f, key, value) => {
                    let filter = f.get(&filters);
                    prop_assert_eq!(
                        index.insert(filter, key, value),
                        model.insert((filter.clone(), key), value)
                    );
                }
                Op::Remove(f, key) => {
                    let filter = f.get(&filters);
                    prop_assert_eq!(index.remove(filter, key), model.remove(&(filter.clone(), key)));
                }
                Op::RemoveAll(key) => {
                    let before = model.len();
                    model.retain(|(_, k), _| *k != key);
                    prop_assert_eq!(index.remove_all(key), before - model.len());
                }
            }
            prop_assert_eq!(index.len(), model.len());
            for topic in &topics {
                prop_assert_eq!(plain(&index, topic), expected_plain(&model, topic), "{}", topic);
                prop_assert_eq!(shared(&index, topic), expected_shared(&model, topic), "{}", topic);
            }
        }
        for key in 0..4 {
            index.remove_all(key);
        }
        prop_assert!(index.is_empty());
        prop_assert_eq!(index.node_count(), empty_nodes);
    }
}
