//! The topic-filter trie: one node per filter level, leaves of type `L` where filters end.
//!
//! A filter `a/+/c` is the path root → `a` → `+` → `c`, its leaf in the `exact` slot of the
//! last node. `a/#` ends in the `multi` slot of node `a` (and `#` in the root's), because `#`
//! matches from its parent level on: a topic reaching node `a` matches it whether or not
//! levels remain. So `#` needs no node of its own and a walk never looks past it.
//!
//! Filters may have tens of thousands of levels (a 65,535-byte string of `/`), so nothing
//! here recurses over levels: walks use an explicit stack and nodes drop iteratively.

use super::small_map::SmallMap;

pub(super) struct Trie<L> {
    root: Node<L>,
}

struct Node<L> {
    /// Literal next levels, by name (which may be empty: `a//b`).
    children: SmallMap<Box<str>, Node<L>>,
    /// The `+` next level. Boxed: a node cannot hold a node inline.
    plus: Option<Box<Node<L>>>,
    /// Filters ending at this level.
    exact: Option<Box<L>>,
    /// Filters that are this node's path followed by `/#`; at the root, `#`.
    multi: Option<Box<L>>,
}

/// One level of a filter, as the trie stores it.
#[derive(Clone, Copy)]
enum Step<'a> {
    Literal(&'a str),
    Plus,
}

/// Where a filter's leaf sits in its last node.
#[derive(Clone, Copy)]
enum End {
    Exact,
    Multi,
}

/// Splits a filter into the levels the trie walks and the slot its leaf takes.
///
/// Only a final `#` is a wildcard and only a whole-level `+`; anything else is a literal
/// level. Invalid filters (`a/#/b`, `a+`) therefore get a place in the trie that no valid
/// topic name reaches, instead of a panic.
fn parse(filter: &str) -> (Option<&str>, End) {
    if filter == "#" {
        (None, End::Multi)
    } else if let Some(parent) = filter.strip_suffix("/#") {
        (Some(parent), End::Multi)
    } else {
        (Some(filter), End::Exact)
    }
}

fn steps(path: Option<&str>) -> impl Iterator<Item = Step<'_>> {
    path.into_iter()
        .flat_map(|path| path.split('/'))
        .map(|level| match level {
            "+" => Step::Plus,
            literal => Step::Literal(literal),
        })
}

/// The first level of `levels` and what follows it (`None` when it was the last level).
fn split_level(levels: &str) -> (&str, Option<&str>) {
    // A byte scan: `split_once('/')` finds the byte and then compares the char's UTF-8 form
    // with a `memcmp` call, which was a third of the time of a match.
    match levels.bytes().position(|b| b == b'/') {
        Some(slash) => (&levels[..slash], Some(&levels[slash + 1..])),
        None => (levels, None),
    }
}

impl<L> Trie<L> {
    pub(super) fn new() -> Self {
        Self { root: Node::new() }
    }

    /// The leaf slot of `filter`, creating the nodes on its path.
    pub(super) fn slot_mut(&mut self, filter: &str) -> &mut Option<Box<L>> {
        let (path, end) = parse(filter);
        let mut node = &mut self.root;
        for step in steps(path) {
            node = match step {
                Step::Literal(level) => node
                    .children
                    .get_or_insert_with(level, || (level.into(), Node::new())),
                Step::Plus => node.plus.get_or_insert_with(|| Box::new(Node::new())),
            };
        }
        node.slot_mut(end)
    }

    /// Calls `f` with the leaf slot of `filter` if its path exists, then removes the nodes
    /// the call left empty. `None` when the path does not exist.
    pub(super) fn update<R>(
        &mut self,
        filter: &str,
        f: impl FnOnce(&mut Option<Box<L>>) -> R,
    ) -> Option<R> {
        let (path, end) = parse(filter);
        let mut node = &mut self.root;
        for step in steps(path) {
            node = node.child_mut(step)?;
        }
        let result = f(node.slot_mut(end));
        if node.is_empty() {
            self.prune(path);
        }
        Some(result)
    }

    /// Cuts off the empty tail of `path`, whose last node is empty: the run of nodes at its
    /// end that hold nothing but the path's next node.
    fn prune(&mut self, path: Option<&str>) {
        // Depth (root = 0) of the first node of that run; the root itself always stays.
        let mut cut = None;
        let mut node = &self.root;
        for (i, step) in steps(path).enumerate() {
            let Some(child) = node.child(step) else {
                return;
            };
            // Every node before the last has the path's next node as a branch, so one
            // branch means no other; the last node is empty (the caller checked).
            let only_path = child.exact.is_none() && child.multi.is_none() && child.branches() <= 1;
            cut = if only_path { cut.or(Some(i + 1)) } else { None };
            node = child;
        }
        let Some(cut) = cut else {
            return;
        };
        let mut parent = &mut self.root;
        let mut path_steps = steps(path);
        for step in path_steps.by_ref().take(cut - 1) {
            let Some(child) = parent.child_mut(step) else {
                return;
            };
            parent = child;
        }
        match path_steps.next() {
            Some(Step::Literal(level)) => drop(parent.children.remove(level)),
            Some(Step::Plus) => parent.plus = None,
            None => {}
        }
    }

    /// Calls `visit` with the leaf of every filter that matches `topic`, once each.
    ///
    /// Holds up to [`INLINE`] pending branches on the call's own stack; only a walk that
    /// needs more (a topic deeper than about that many levels) allocates.
    pub(super) fn walk<'t>(&'t self, topic: &str, mut visit: impl FnMut(&'t L)) {
        // MQTT-4.7.2-1: filters starting with a wildcard do not match topics starting with $.
        let wildcards = !topic.starts_with('$');
        let mut pending = Stack::new();
        if wildcards {
            if let Some(leaf) = &self.root.multi {
                visit(leaf);
            }
        }
        self.root.push_next(topic, wildcards, &mut pending);
        // Each node is reached by exactly one path and holds one leaf per slot, so no leaf is
        // visited twice.
        while let Some((node, rest)) = pending.pop() {
            if let Some(leaf) = &node.multi {
                visit(leaf);
            }
            match rest {
                Some(rest) => node.push_next(rest, true, &mut pending),
                None => {
                    if let Some(leaf) = &node.exact {
                        visit(leaf);
                    }
                }
            }
        }
    }

    /// Nodes in the trie, the root included.
    #[cfg(test)]
    pub(super) fn node_count(&self) -> usize {
        let mut count = 0;
        let mut pending = vec![&self.root];
        while let Some(node) = pending.pop() {
            count += 1;
            pending.extend(node.children.iter().map(|(_, child)| child));
            pending.extend(node.plus.as_deref());
        }
        count
    }
}

impl<L> Node<L> {
    fn new() -> Self {
        Self {
            children: SmallMap::default(),
            plus: None,
            exact: None,
            multi: None,
        }
    }

    fn slot_mut(&mut self, end: End) -> &mut Option<Box<L>> {
        match end {
            End::Exact => &mut self.exact,
            End::Multi => &mut self.multi,
        }
    }

    fn child(&self, step: Step<'_>) -> Option<&Self> {
        match step {
            Step::Literal(level) => self.children.get(level),
            Step::Plus => self.plus.as_deref(),
        }
    }

    fn child_mut(&mut self, step: Step<'_>) -> Option<&mut Self> {
        match step {
            Step::Literal(level) => self.children.get_mut(level),
            Step::Plus => self.plus.as_deref_mut(),
        }
    }

    fn branches(&self) -> usize {
        self.children.len() + usize::from(self.plus.is_some())
    }

    fn is_empty(&self) -> bool {
        self.exact.is_none() && self.multi.is_none() && self.branches() == 0
    }

    /// Pushes the nodes that match the first level of `levels`.
    fn push_next<'t, 's>(
        &'t self,
        levels: &'s str,
        plus: bool,
        pending: &mut Stack<(&'t Self, Option<&'s str>)>,
    ) {
        let (level, rest) = split_level(levels);
        if let Some(child) = self.children.get(level) {
            pending.push((child, rest));
        }
        if plus {
            if let Some(child) = &self.plus {
                pending.push((child, rest));
            }
        }
    }
}

impl<L> Drop for Node<L> {
    /// Drops the subtree one node at a time: the compiler's recursive drop would use stack
    /// in proportion to the depth of the trie.
    fn drop(&mut self) {
        if self.branches() == 0 {
            return;
        }
        let mut pending = Vec::new();
        self.children.drain_values_into(&mut pending);
        pending.extend(self.plus.take().map(|plus| *plus));
        while let Some(mut node) = pending.pop() {
            node.children.drain_values_into(&mut pending);
            pending.extend(node.plus.take().map(|plus| *plus));
            // `node` drops here without branches, so its own `drop` returns at once.
        }
    }
}

/// Pending branches a walk keeps without allocating.
const INLINE: usize = 16;

/// A LIFO stack that lives on the caller's stack up to [`INLINE`] entries and spills the
/// rest into a `Vec`. A walk pushes at most two entries per entry it pops, so it needs about
/// one entry per topic level.
struct Stack<T> {
    inline: [Option<T>; INLINE],
    len: usize,
    spill: Vec<T>,
}

impl<T: Copy> Stack<T> {
    fn new() -> Self {
        Self {
            inline: [None; INLINE],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, item: T) {
        if self.len < INLINE {
            self.inline[self.len] = Some(item);
            self.len += 1;
        } else {
            self.spill.push(item);
        }
    }

    fn pop(&mut self) -> Option<T> {
        if let Some(item) = self.spill.pop() {
            return Some(item);
        }
        self.len = self.len.checked_sub(1)?;
        self.inline[self.len].take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_spills_and_pops_in_order() {
        let mut stack = Stack::new();
        for i in 0..40 {
            stack.push(i);
        }
        for i in (0..40).rev() {
            assert_eq!(stack.pop(), Some(i));
        }
        assert_eq!(stack.pop(), None);
    }
}
