//! The subscription index: which subscribers a PUBLISH on a topic goes to.
//!
//! [`SubscriptionIndex`] maps topic filters to subscribers (a key `K` such as a connection or
//! session id) and their per-subscription value `V` (QoS, options, subscription identifier),
//! and finds every subscription whose filter matches a topic name.
//!
//! # Semantics (MQTT 5 §4.7, §4.8.2)
//!
//! - Levels are separated by `/`; an empty level is a level (`a//b` has three).
//! - `+` matches exactly one level, including an empty one (`a/+` matches `a/` but not
//!   `a`; `+/+` matches `/finance`).
//! - `#` matches its parent level and any number of levels below (`a/#` matches `a`,
//!   `a/b`, `a/b/c`; `#` matches every topic).
//! - A filter starting with a wildcard (`#`, `+`, `+/…`) does not match a topic starting
//!   with `$` (`$SYS/broker`); `$SYS/#` does.
//! - A key holds at most one subscription per filter: inserting again replaces the value.
//!   Matching reports each (key, filter) once, so a key whose filters `a/+` and `a/#` both
//!   match gets two calls; whether to deliver once or twice is the caller's choice (§3.3.4).
//! - `$share/{group}/{filter}` is a shared subscription. It is stored apart, keyed by
//!   (group, filter), and [`matches_shared`](SubscriptionIndex::matches_shared) reports each
//!   matching group with all its members so the caller can deliver to exactly one of them.
//!   [`matches`](SubscriptionIndex::matches) does not report shared subscriptions.
//!
//! Filters are expected to have been validated with
//! [`check_topic_filter`](super::check_topic_filter) and topics with
//! [`check_topic_name`](super::check_topic_name). The index does not check them again, and
//! does not panic on invalid ones: a `#` that is not the last level and a `+` or `#` inside a
//! level are literal text, which no valid topic name matches.
//!
//! # Complexity
//!
//! The index is a trie with one node per filter level (`trie`); a node's literal children
//! are a vector while there are up to eight of them and a hash map beyond (`small_map`, which
//! says why), so both the many one-child nodes of a deep filter and a level with 100,000
//! device ids stay cheap.
//!
//! - `matches` visits only nodes whose path matches a prefix of the topic: per level, the
//!   literal child (one lookup) and the `+` child of each node reached so far. The cost is
//!   roughly (topic levels × nodes reached per level) lookups plus one call per match, and
//!   does not depend on how many unrelated filters the index holds. It does not allocate
//!   unless more than 16 branches are pending at once, which takes a topic deeper than
//!   about 15 levels.
//! - `insert` and `remove` are one walk down the filter's levels and an expected O(1)
//!   update of the leaf; `remove` then cuts off the nodes it left empty, so memory follows
//!   the live subscriptions, not the churn. In a shared group, finding the member is
//!   linear in the group's size.
//! - `remove_all` does not scan the trie: every key keeps the set of its filters, and each
//!   is removed as by `remove`.
//!
//! # Memory
//!
//! Per distinct filter level (trie node): the level's name, about 64 bytes of node and map
//! entry, and a boxed leaf where a filter ends. Per distinct filter, the filter string once
//! (shared by its leaf and the per-key sets). Per subscription, `(K, V)` in the leaf and a
//! pointer in the key's set. `bench/benches/subscriptions.rs` measures the total.

mod small_map;
mod trie;

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use small_map::SmallMap;
use trie::Trie;

use super::topic::split_shared;

/// Topic-filter subscriptions by subscriber key, matched against topic names.
///
/// See the [module documentation](self) for the matching rules and costs.
///
/// ```
/// use codecs::mqtt::SubscriptionIndex;
///
/// let mut index = SubscriptionIndex::new();
/// index.insert("sensors/+/temp", 1_u64, 0_u8);
/// index.insert("sensors/#", 2, 1);
/// index.insert("$share/workers/sensors/#", 3, 1);
/// index.insert("$share/workers/sensors/#", 4, 1);
///
/// let mut to = Vec::new();
/// index.matches("sensors/kitchen/temp", |key, qos, _filter| to.push((*key, *qos)));
/// to.sort();
/// assert_eq!(to, [(1, 0), (2, 1)]);
///
/// let mut sequence = 0;
/// index.matches_shared("sensors/kitchen/temp", |group| {
///     let (key, _qos) = group.pick(sequence);
///     sequence += 1;
///     assert!(*key == 3 || *key == 4);
/// });
///
/// assert_eq!(index.remove_all(3), 1);
/// assert_eq!(index.len(), 3);
/// ```
pub struct SubscriptionIndex<K, V> {
    plain: Trie<Leaf<K, V>>,
    shared: Trie<Vec<Group<K, V>>>,
    /// Each key's filters as given to `insert`, so `remove_all` need not scan the tries.
    by_key: HashMap<K, SmallMap<Arc<str>, ()>>,
    len: usize,
}

/// The subscribers of one non-shared filter.
struct Leaf<K, V> {
    filter: Arc<str>,
    subscribers: SmallMap<K, V>,
}

/// One shared subscription: a share name on a filter, and its members.
struct Group<K, V> {
    /// `$share/{name}/{filter}`, as subscribed.
    subscription: Arc<str>,
    /// In the order they joined; never empty.
    members: Vec<(K, V)>,
}

/// A shared subscription that matches a topic, with all its members: deliver the message to
/// exactly one of them ([`pick`](Self::pick) chooses by a number the caller advances).
#[derive(Debug)]
#[non_exhaustive]
pub struct SharedGroup<'a, K, V> {
    /// The share name.
    pub name: &'a str,
    /// The filter after `$share/{name}/`.
    pub filter: &'a str,
    /// The members with their values, in the order they joined; never empty.
    pub members: &'a [(K, V)],
}

impl<'a, K, V> SharedGroup<'a, K, V> {
    /// Member `n` modulo the group's size: pass a counter for round robin, a hash of the
    /// publisher or topic for stickiness.
    pub fn pick(&self, n: usize) -> &'a (K, V) {
        &self.members[n % self.members.len()]
    }
}

impl<K: Copy + Eq + Hash, V> SubscriptionIndex<K, V> {
    /// An empty index.
    pub fn new() -> Self {
        Self {
            plain: Trie::new(),
            shared: Trie::new(),
            by_key: HashMap::new(),
            len: 0,
        }
    }

    /// Subscriptions held: (key, filter) pairs, shared ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the index holds no subscription.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Subscribes `key` to `filter` (plain or `$share/{group}/{filter}`) with `value`.
    /// Returns the previous value if `key` was already subscribed to `filter`.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let (old, subscription) = match split_shared(filter) {
            None => {
                let leaf = self.plain.slot_mut(filter).get_or_insert_with(|| {
                    Box::new(Leaf {
                        filter: filter.into(),
                        subscribers: SmallMap::default(),
                    })
                });
                let old = leaf.subscribers.insert(key, value);
                (old, &leaf.filter)
            }
            Some((_, inner)) => {
                let groups = self.shared.slot_mut(inner).get_or_insert_with(Box::default);
                let i = match groups.iter().position(|g| &*g.subscription == filter) {
                    Some(i) => i,
                    None => {
                        groups.push(Group {
                            subscription: filter.into(),
                            members: Vec::new(),
                        });
                        groups.len() - 1
                    }
                };
                let group = &mut groups[i];
                let old = match group.members.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, v)) => Some(std::mem::replace(v, value)),
                    None => {
                        group.members.push((key, value));
                        None
                    }
                };
                (old, &group.subscription)
            }
        };
        if old.is_none() {
            let subscription = Arc::clone(subscription);
            self.by_key.entry(key).or_default().insert(subscription, ());
            self.len += 1;
        }
        old
    }

    /// Unsubscribes `key` from `filter`; returns its value, or `None` if it was not
    /// subscribed.
    pub fn remove(&mut self, filter: &str, key: K) -> Option<V> {
        let value = self.remove_from_tries(filter, key)?;
        if let Some(filters) = self.by_key.get_mut(&key) {
            filters.remove(filter);
            if filters.is_empty() {
                self.by_key.remove(&key);
            }
        }
        Some(value)
    }

    /// Removes every subscription of `key` (its connection or session ended); returns how
    /// many there were. Costs what removing each of them does, whatever the index's size.
    pub fn remove_all(&mut self, key: K) -> usize {
        let Some(filters) = self.by_key.remove(&key) else {
            return 0;
        };
        let mut removed = 0;
        for (filter, ()) in filters.iter() {
            if self.remove_from_tries(filter, key).is_some() {
                removed += 1;
            }
        }
        removed
    }

    /// Calls `f(key, value, filter)` for every non-shared subscription whose filter matches
    /// `topic`, once per (key, filter). Shared subscriptions: [`matches_shared`](Self::matches_shared).
    pub fn matches<'s>(&'s self, topic: &str, mut f: impl FnMut(&'s K, &'s V, &'s str)) {
        self.plain.walk(topic, |leaf| {
            for (key, value) in leaf.subscribers.iter() {
                f(key, value, &leaf.filter);
            }
        });
    }

    /// Calls `f` once for every shared subscription (share name and filter) that matches
    /// `topic`, with all its members. The caller delivers to one member per call, for
    /// example [`group.pick(counter)`](SharedGroup::pick).
    pub fn matches_shared<'s>(&'s self, topic: &str, mut f: impl FnMut(SharedGroup<'s, K, V>)) {
        self.shared.walk(topic, |groups| {
            for group in groups {
                // Every stored subscription starts with `$share/{name}/`.
                let Some((name, filter)) = split_shared(&group.subscription) else {
                    continue;
                };
                f(SharedGroup {
                    name,
                    filter,
                    members: &group.members,
                });
            }
        });
    }

    /// Removes the subscription from the trie it lives in, leaving `by_key` to the caller.
    fn remove_from_tries(&mut self, filter: &str, key: K) -> Option<V> {
        let value = match split_shared(filter) {
            None => self.plain.update(filter, |slot| {
                let leaf = slot.as_mut()?;
                let value = leaf.subscribers.remove(&key);
                if leaf.subscribers.is_empty() {
                    *slot = None;
                }
                value
            }),
            Some((_, inner)) => self.shared.update(inner, |slot| {
                let groups = slot.as_mut()?;
                let g = groups.iter().position(|g| &*g.subscription == filter)?;
                let members = &mut groups[g].members;
                let m = members.iter().position(|(k, _)| *k == key)?;
                let (_, value) = members.remove(m);
                if members.is_empty() {
                    groups.swap_remove(g);
                }
                if groups.is_empty() {
                    *slot = None;
                }
                Some(value)
            }),
        }
        .flatten()?;
        self.len -= 1;
        Some(value)
    }

    /// Trie nodes (both tries, roots included): checks that removal prunes.
    #[cfg(test)]
    fn node_count(&self) -> usize {
        self.plain.node_count() + self.shared.node_count()
    }
}

impl<K: Copy + Eq + Hash, V> Default for SubscriptionIndex<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> fmt::Debug for SubscriptionIndex<K, V> {
    // A summary: a derived Debug would print the whole trie, recursively.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionIndex")
            .field("len", &self.len)
            .field("keys", &self.by_key.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
