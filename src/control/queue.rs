//! Wait lists: FIFO queues with O(1) push, pop and removal of any entry.
//!
//! All lists share one `Slab` of nodes; each list is a doubly linked chain through it, so a
//! cancelled waiter is unlinked in O(1) wherever it stands. The controller keeps one list per
//! (lane, key) class and priority level — one FIFO per level, never a sorted array.
//!
//! Invariants:
//! 1. A node is in exactly one list from `push_back` until `pop_front` or `remove`.
//! 2. `len` of a list equals the number of nodes chained from its `head`.
//! 3. A node key is never reused while its node is linked (the slab frees it on unlink only).

use slab::Slab;

/// The "no node" link.
const NIL: u32 = u32::MAX;

/// Most nodes the slab may hold: links are `u32`, and `NIL` is reserved.
pub(crate) const MAX_NODES: usize = (u32::MAX - 1) as usize;

/// One FIFO chained through a [`Nodes`] slab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct List {
    head: u32,
    tail: u32,
    len: u32,
}

impl Default for List {
    fn default() -> Self {
        List {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

impl List {
    /// Entries in the list.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the list is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The oldest entry's key.
    pub(crate) fn front(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }
}

/// Links are `u32` so a node stays small: a long backlog is walked from its cold front, and
/// every byte saved is cache saved.
#[derive(Debug)]
struct Node<T> {
    value: T,
    prev: u32,
    next: u32,
}

/// The node storage shared by many lists.
#[derive(Debug)]
pub(crate) struct Nodes<T> {
    slab: Slab<Node<T>>,
}

impl<T> Default for Nodes<T> {
    fn default() -> Self {
        Nodes { slab: Slab::new() }
    }
}

impl<T> Nodes<T> {
    /// Appends `value` to `list`; returns its key, or gives the value back when the slab is
    /// full ([`MAX_NODES`]).
    pub(crate) fn push_back(&mut self, list: &mut List, value: T) -> Result<u32, T> {
        if self.slab.len() >= MAX_NODES {
            return Err(value);
        }
        let key = self.slab.insert(Node {
            value,
            prev: list.tail,
            next: NIL,
        }) as u32;
        if list.tail == NIL {
            list.head = key;
        } else if let Some(node) = self.slab.get_mut(list.tail as usize) {
            node.next = key;
        }
        list.tail = key;
        list.len += 1;
        Ok(key)
    }

    /// Removes and returns the oldest entry of `list`.
    pub(crate) fn pop_front(&mut self, list: &mut List) -> Option<T> {
        let key = list.front()?;
        self.remove(list, key)
    }

    /// Unlinks entry `key` from `list` (the list it was pushed to) and returns it. Returns
    /// `None` for a key that is not linked.
    pub(crate) fn remove(&mut self, list: &mut List, key: u32) -> Option<T> {
        let node = self.slab.try_remove(key as usize)?;
        if node.prev == NIL {
            list.head = node.next;
        } else if let Some(p) = self.slab.get_mut(node.prev as usize) {
            p.next = node.next;
        }
        if node.next == NIL {
            list.tail = node.prev;
        } else if let Some(n) = self.slab.get_mut(node.next as usize) {
            n.prev = node.prev;
        }
        list.len -= 1;
        Some(node.value)
    }

    /// The entry under `key`, if linked.
    pub(crate) fn get(&self, key: u32) -> Option<&T> {
        self.slab.get(key as usize).map(|n| &n.value)
    }

    /// Entries of `list`, oldest first.
    #[cfg(test)]
    pub(crate) fn iter<'a>(&'a self, list: &List) -> impl Iterator<Item = (u32, &'a T)> + 'a {
        let mut cursor = list.head;
        std::iter::from_fn(move || {
            let key = cursor;
            let node = self.slab.get(key as usize)?;
            cursor = node.next;
            Some((key, &node.value))
        })
    }

    /// Linked nodes in all lists.
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    /// Whether no node is linked.
    pub(crate) fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn contents(nodes: &Nodes<u32>, list: &List) -> Vec<u32> {
        nodes.iter(list).map(|(_, v)| *v).collect()
    }

    #[test]
    fn pops_in_arrival_order() {
        let (mut nodes, mut list) = (Nodes::default(), List::default());
        for v in 1..=4 {
            nodes.push_back(&mut list, v).unwrap();
        }
        assert_eq!(nodes.pop_front(&mut list), Some(1));
        assert_eq!(contents(&nodes, &list), [2, 3, 4]);
        assert_eq!(list.len(), 3);
    }

    #[test]
    fn removing_a_middle_entry_removes_exactly_that_entry() {
        let (mut nodes, mut list) = (Nodes::default(), List::default());
        let keys: Vec<_> = (1..=5)
            .map(|v| nodes.push_back(&mut list, v).unwrap())
            .collect();
        assert_eq!(nodes.remove(&mut list, keys[2]), Some(3));
        assert_eq!(nodes.remove(&mut list, keys[2]), None, "already removed");
        assert_eq!(nodes.remove(&mut list, keys[0]), Some(1));
        assert_eq!(nodes.remove(&mut list, keys[4]), Some(5));
        assert_eq!(contents(&nodes, &list), [2, 4]);
        assert_eq!(list.len(), 2);
        nodes.push_back(&mut list, 6).unwrap();
        assert_eq!(contents(&nodes, &list), [2, 4, 6]);
    }

    #[test]
    fn lists_sharing_nodes_stay_separate() {
        let mut nodes = Nodes::default();
        let (mut a, mut b) = (List::default(), List::default());
        nodes.push_back(&mut a, 1).unwrap();
        let kb = nodes.push_back(&mut b, 10).unwrap();
        nodes.push_back(&mut a, 2).unwrap();
        nodes.remove(&mut b, kb);
        assert!(b.is_empty());
        assert_eq!(contents(&nodes, &a), [1, 2]);
        assert_eq!(nodes.len(), 2);
    }
}
