//! Lanes: one run queue per worker slot, grouped by lane.
//!
//! Invariants:
//! 1. The owner pushes and pops at the back (LIFO: the follow-up runs in the warm slot).
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

    /// The slot of `lane` with the shortest deque (lowest index on ties).
    pub(crate) fn least_loaded(&self, lane: usize) -> usize {
        let slots = self.lane_slots[lane].clone();
        slots
            .clone()
            .min_by_key(|&s| self.deques[s].len())
            .unwrap_or(slots.start)
    }

    /// Pushes at the back of `slot`'s deque.
    pub(crate) fn push_back(&mut self, slot: usize, item: T) {
        self.deques[slot].push_back(item);
        self.lane_len[self.slot_lane[slot]] += 1;
        self.total += 1;
    }

    /// The owner's pop from the back, else a steal from the front of the fullest deque in the
    /// same lane.
    pub(crate) fn take(&mut self, slot: usize) -> Option<(T, Steal)> {
        let lane = self.slot_lane[slot];
        let (item, how) = match self.deques[slot].pop_back() {
            Some(item) => (item, Steal::Own),
            None => {
                let victim = self.lane_slots[lane]
                    .clone()
                    .max_by_key(|&s| (self.deques[s].len(), std::cmp::Reverse(s)))?;
                (self.deques[victim].pop_front()?, Steal::Stolen)
            }
        };
        self.lane_len[lane] -= 1;
        self.total -= 1;
        Some((item, how))
    }
}
