//! A map that is a vector while small and a hash map once it grows.
//!
//! Most trie nodes have one or two children and most filters one subscriber; a few nodes
//! (`devices/{id}` under `devices`) and filters (`broadcast/#`) have thousands. A vector
//! scanned linearly is the smallest and, up to a handful of entries, the fastest form for
//! the first kind; a `HashMap` keeps the second kind O(1). The map switches at
//! [`GROW_AT`] entries and back at [`SHRINK_AT`], so churn around one size does not flap.
//!
//! The hash map uses std's keyed SipHash: keys are topic levels and client ids chosen by
//! peers, and an unkeyed hash would let a client crowd one bucket with colliding levels.

use std::borrow::Borrow;
use std::collections::{hash_map, HashMap};
use std::hash::Hash;
use std::{mem, slice};

/// Entries a vector holds before it becomes a hash map.
const GROW_AT: usize = 8;
/// Entries at or below which a hash map becomes a vector again.
const SHRINK_AT: usize = 4;

pub(super) enum SmallMap<K, V> {
    Few(Vec<(K, V)>),
    #[expect(
        clippy::box_collection,
        reason = "a node with few children, the common case, pays 24 bytes for the map, not 48"
    )]
    Many(Box<HashMap<K, V>>),
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl<K: Hash + Eq, V> SmallMap<K, V> {
    pub(super) fn len(&self) -> usize {
        match self {
            Self::Few(few) => few.len(),
            Self::Many(many) => many.len(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self {
            Self::Few(few) => few.iter().find(|(k, _)| k.borrow() == key).map(|(_, v)| v),
            Self::Many(many) => many.get(key),
        }
    }

    pub(super) fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self {
            Self::Few(few) => few
                .iter_mut()
                .find(|(k, _)| k.borrow() == key)
                .map(|(_, v)| v),
            Self::Many(many) => many.get_mut(key),
        }
    }

    /// The value under `key`, inserting `make()` first if there is none. `make` builds the
    /// owned key, so a lookup of an existing entry allocates nothing.
    pub(super) fn get_or_insert_with<Q>(&mut self, key: &Q, make: impl FnOnce() -> (K, V)) -> &mut V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.get(key).is_none() {
            let (k, v) = make();
            self.insert_new(k, v);
        }
        self.get_mut(key)
            .expect("the entry was found or has just been inserted")
    }

    /// Inserts or replaces; returns the replaced value.
    pub(super) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.get_mut(&key) {
            Some(old) => Some(mem::replace(old, value)),
            None => {
                self.insert_new(key, value);
                None
            }
        }
    }

    fn insert_new(&mut self, key: K, value: V) {
        match self {
            Self::Few(few) if few.len() < GROW_AT => {
                // Grow 1, 2, 4, 8 rather than Vec's 4, 8: most maps never pass one entry,
                // and a child entry is 64 bytes.
                if few.len() == few.capacity() {
                    few.reserve_exact(few.len().max(1));
                }
                few.push((key, value));
            }
            Self::Few(few) => {
                let mut many: HashMap<K, V> = mem::take(few).into_iter().collect();
                many.insert(key, value);
                *self = Self::Many(Box::new(many));
            }
            Self::Many(many) => {
                many.insert(key, value);
            }
        }
    }

    pub(super) fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self {
            Self::Few(few) => {
                let i = few.iter().position(|(k, _)| k.borrow() == key)?;
                let (_, v) = few.swap_remove(i);
                if few.is_empty() {
                    // Give the buffer back: emptied maps are the common leftover of churn.
                    *few = Vec::new();
                }
                Some(v)
            }
            Self::Many(many) => {
                let v = many.remove(key)?;
                if many.len() <= SHRINK_AT {
                    *self = Self::Few(mem::take(&mut **many).into_iter().collect());
                }
                Some(v)
            }
        }
    }

    pub(super) fn iter(&self) -> Iter<'_, K, V> {
        match self {
            Self::Few(few) => Iter::Few(few.iter()),
            Self::Many(many) => Iter::Many(many.iter()),
        }
    }

    /// Moves every value into `out`, leaving the map empty.
    pub(super) fn drain_values_into(&mut self, out: &mut Vec<V>) {
        match mem::take(self) {
            Self::Few(few) => out.extend(few.into_iter().map(|(_, v)| v)),
            Self::Many(many) => out.extend(many.into_values()),
        }
    }
}

pub(super) enum Iter<'a, K, V> {
    Few(slice::Iter<'a, (K, V)>),
    Many(hash_map::Iter<'a, K, V>),
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Few(few) => few.next().map(|(k, v)| (k, v)),
            Self::Many(many) => many.next(),
        }
    }
}
