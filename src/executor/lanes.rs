//! Lanes: one run queue (deque) per worker slot, grouped by lane.
//!
//! Invariants:
//! 1. The owner pushes and pops at the back (LIFO: a task's newest child runs first, so a
//!    subtree finishes depth-first).
//! 2. Thieves take from the front (FIFO: the oldest waiting work moves first), and only from
//!    slots of their own lane, choosing the fullest deque.
//! 3. `total` and each lane's length equal the entries in its deques.

use std::collections::VecDeque;
use std::ops::Range;

/// How a slot got its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Steal {
    /// From its own deque's back.
    Own,
    /// From the front of another slot's deque in the same lane.
    Stolen,
}

/// The deques of every slot.
#[derive(Debug)]
pub(crate) struct Lanes<T> {
    deques: Vec<VecDeque<T>>,
    slot_lane: Vec<usize>,
    lane_slots: Vec<Range<usize>>,
    lane_len: Vec<usize>,
    total: usize,
}

impl<T> Lanes<T> {
    /// `capacities[i]` slots for lane `i` (at least one each).
    pub(crate) fn new(capacities: &[usize]) -> Self {
        let mut slot_lane = Vec::new();
        let mut lane_slots = Vec::new();
        for (lane, &cap) in capacities.iter().enumerate() {
            let start = slot_lane.len();
            slot_lane.extend(std::iter::repeat_n(lane, cap.max(1)));
            lane_slots.push(start..slot_lane.len());
        }
        Lanes {
            deques: slot_lane.iter().map(|_| VecDeque::new()).collect(),
            slot_lane,
            lane_slots,
            lane_len: vec![0; capacities.len()],
            total: 0,
        }
    }

    /// Slots in all lanes.
    pub(crate) fn slot_count(&self) -> usize {
        self.deques.len()
    }

    /// The lane a slot serves.
    pub(crate) fn lane_of(&self, slot: usize) -> usize {
        self.slot_lane[slot]
    }

    /// Entries waiting in a lane's deques.
    #[cfg(test)]
    pub(crate) fn lane_len(&self, lane: usize) -> usize {
        self.lane_len.get(lane).copied().unwrap_or(0)
    }

    /// Entries waiting in all deques.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Entries in one slot's deque.
    pub(crate) fn len(&self, slot: usize) -> usize {
        self.deques[slot].len()
    }

    /// Pushes at the back of `slot`'s deque.
    pub(crate) fn push_back(&mut self, slot: usize, item: T) {
        self.deques[slot].push_back(item);
        self.lane_len[self.slot_lane[slot]] += 1;
        self.total += 1;
    }

    /// Where `slot` would take its next entry from: its own deque's back, else the front of
    /// the fullest deque of its lane (lowest index on ties). Nothing is removed.
    pub(crate) fn next_for(&self, slot: usize) -> Option<(usize, Steal)> {
        if !self.deques[slot].is_empty() {
            return Some((slot, Steal::Own));
        }
        let lane = self.slot_lane[slot];
        let victim = self.lane_slots[lane]
            .clone()
            .max_by_key(|&s| (self.deques[s].len(), std::cmp::Reverse(s)))?;
        (!self.deques[victim].is_empty()).then_some((victim, Steal::Stolen))
    }

    /// The entry [`Lanes::pop`] with the same arguments would remove.
    pub(crate) fn peek(&self, deque: usize, how: Steal) -> Option<&T> {
        match how {
            Steal::Own => self.deques[deque].back(),
            Steal::Stolen => self.deques[deque].front(),
        }
    }

    /// Removes the back (`Own`) or the front (`Stolen`) of `deque`.
    pub(crate) fn pop(&mut self, deque: usize, how: Steal) -> Option<T> {
        let item = match how {
            Steal::Own => self.deques[deque].pop_back(),
            Steal::Stolen => self.deques[deque].pop_front(),
        }?;
        self.lane_len[self.slot_lane[deque]] -= 1;
        self.total -= 1;
        Some(item)
    }

    /// The owner's pop from the back, else a steal from the front of the fullest deque in the
    /// same lane.
    #[cfg(test)]
    pub(crate) fn take(&mut self, slot: usize) -> Option<(T, Steal)> {
        let (deque, how) = self.next_for(slot)?;
        self.pop(deque, how).map(|item| (item, how))
    }

    /// The slots of `lane`.
    pub(crate) fn slots_of(&self, lane: usize) -> Range<usize> {
        self.lane_slots.get(lane).cloned().unwrap_or(0..0)
    }
}

impl<T: PartialEq> Lanes<T> {
    /// Removes `item` from `slot`'s deque (a queued child cancelled). Returns whether it was
    /// there.
    pub(crate) fn remove(&mut self, slot: usize, item: &T) -> bool {
        let Some(i) = self.deques[slot].iter().position(|x| x == item) else {
            return false;
        };
        self.deques[slot].remove(i);
        self.lane_len[self.slot_lane[slot]] -= 1;
        self.total -= 1;
        true
    }
}

#[cfg(test)]
impl<T: Copy> Lanes<T> {
    /// The entries of `slot`'s deque, front first.
    pub(crate) fn deques_of(&self, slot: usize) -> Vec<T> {
        self.deques[slot].iter().copied().collect()
    }
}
