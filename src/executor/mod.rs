//! The executor: where, and in what order, admitted sub-agent tasks run inside their lane.
//!
//! The controller decides **when** work may start (how many per lane and key, priorities,
//! breakers, the memory gate); the executor decides **where** and **in what order** inside a
//! lane. It is sans-I/O and knows nothing of sessions or permits: the engine drives it with task
//! ids (`T`) and keeps the permits (see `engine/lifecycle/nested.rs`).
//!
//! Each lane has one worker **slot** per unit of its configured capacity. A slot has
//!
//! - an **occupant**: the task running on it (whose session may make model requests);
//! - a stack of **lenders**: tasks that wait on their children (their sessions block in a tool
//!   call and make no requests) and lent the slot to that work meanwhile — the bottom one holds
//!   the slot's lane permit, so a lane is counted once per slot however deep the nesting;
//! - a **deque** ([`Lanes`]) of queued children: a running task's own children are pushed at
//!   the back (the owner end).
//!
//! When a slot is free (no occupant) it takes, in this order:
//!
//! 1. its top lender back, once that lender's children all settled ([`Executor::resume`]): a
//!    parent is first in line for its own slot, before any other work;
//! 2. while it is lent, the back of its own deque (LIFO: the lender's newest child, so a
//!    subtree finishes depth-first), else the oldest entry — the front — of the fullest deque of
//!    its lane (a steal), so a lent slot whose lender's deque is empty never idles while its
//!    lane has children waiting;
//! 3. idle (no lender either), the same deque work, but only with a lane permit the engine gets
//!    from the controller for it ([`Executor::next_for`] says what it would take).
//!
//! Invariants:
//! 1. A task is in at most one place: one deque, or one slot (as occupant or lender).
//! 2. A slot has at most one occupant; a task leaves a slot only by [`Executor::leave`] (it
//!    settled, or went back to the queue for a retry) or by lending it.
//! 3. Work taken by a slot comes from its own lane's deques only.
//! 4. A lender takes its slot back only when the slot has no occupant and the lender is on top
//!    of the stack: it never shares its slot with running work.

mod lanes;

pub(crate) use self::lanes::{Lanes, Steal};

#[derive(Debug, Clone)]
struct Slot<T> {
    occupant: Option<T>,
    /// Tasks waiting on their children, bottom first; `true` once one may resume.
    lenders: Vec<(T, bool)>,
}

/// The slots and deques of every lane. See the module docs.
#[derive(Debug)]
pub(crate) struct Executor<T> {
    lanes: Lanes<T>,
    slots: Vec<Slot<T>>,
}

impl<T: Copy + PartialEq> Executor<T> {
    /// `capacities[i]` slots for lane `i` (at least one each).
    pub(crate) fn new(capacities: &[usize]) -> Self {
        let lanes = Lanes::new(capacities);
        let slots = (0..lanes.slot_count())
            .map(|_| Slot {
                occupant: None,
                lenders: Vec::new(),
            })
            .collect();
        Executor { lanes, slots }
    }

    /// The slots of `lane`.
    #[cfg(test)]
    pub(crate) fn slots_of(&self, lane: usize) -> std::ops::Range<usize> {
        self.lanes.slots_of(lane)
    }

    /// Number of lanes' slots in all.
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The lane `slot` serves.
    pub(crate) fn lane_of(&self, slot: usize) -> usize {
        self.lanes.lane_of(slot)
    }

    /// Children queued in all deques.
    pub(crate) fn queued(&self) -> usize {
        self.lanes.total()
    }

    /// Children queued in `lane`'s deques.
    #[cfg(test)]
    pub(crate) fn queued_in(&self, lane: usize) -> usize {
        self.lanes.lane_len(lane)
    }

    /// The task running on `slot`.
    pub(crate) fn occupant(&self, slot: usize) -> Option<T> {
        self.slots.get(slot).and_then(|s| s.occupant)
    }

    /// The tasks lending `slot`, bottom first.
    pub(crate) fn lenders(&self, slot: usize) -> impl Iterator<Item = T> + '_ {
        self.slots
            .get(slot)
            .into_iter()
            .flat_map(|s| s.lenders.iter().map(|(t, _)| *t))
    }

    /// No occupant and no lender: the slot holds no permit.
    pub(crate) fn is_idle(&self, slot: usize) -> bool {
        self.slots
            .get(slot)
            .is_some_and(|s| s.occupant.is_none() && s.lenders.is_empty())
    }

    /// No occupant, but a lender: the slot runs work under its lender's permit.
    pub(crate) fn is_lent_free(&self, slot: usize) -> bool {
        self.slots
            .get(slot)
            .is_some_and(|s| s.occupant.is_none() && !s.lenders.is_empty())
    }

    /// Places an admitted task on an idle slot of `lane`: the one with the shortest deque
    /// (lowest index on ties). `None` when every slot of the lane is in use (only for work
    /// adopted after a restore beyond the configured capacity).
    pub(crate) fn place(&mut self, lane: usize, task: T) -> Option<usize> {
        let slot = self
            .lanes
            .slots_of(lane)
            .filter(|&s| self.is_idle(s))
            .min_by_key(|&s| self.lanes.len(s))?;
        self.slots[slot].occupant = Some(task);
        Some(slot)
    }

    /// Pushes `task`, a child of the task on or lending `slot`, at the back of its deque.
    pub(crate) fn push_child(&mut self, slot: usize, task: T) {
        self.lanes.push_back(slot, task);
    }

    /// Removes a queued child from `slot`'s deque; whether it was there.
    pub(crate) fn unqueue(&mut self, slot: usize, task: T) -> bool {
        self.lanes.remove(slot, &task)
    }

    /// What a free `slot` would take from the deques (own back, else a steal), without taking.
    pub(crate) fn next_for(&self, slot: usize) -> Option<(T, usize, Steal)> {
        let (deque, how) = self.lanes.next_for(slot)?;
        self.lanes.peek(deque, how).map(|t| (*t, deque, how))
    }

    /// Takes what [`Executor::next_for`] named onto free `slot` as its occupant.
    pub(crate) fn take(&mut self, slot: usize, deque: usize, how: Steal) -> Option<T> {
        if self.slots.get(slot)?.occupant.is_some() {
            return None;
        }
        let task = self.lanes.pop(deque, how)?;
        self.slots[slot].occupant = Some(task);
        Some(task)
    }

    /// The occupant of `slot`, `task`, waits on its children: it becomes the top lender and the
    /// slot is free for them. False (nothing changes) when `task` is not the occupant.
    pub(crate) fn lend(&mut self, slot: usize, task: T) -> bool {
        let Some(s) = self.slots.get_mut(slot) else {
            return false;
        };
        if s.occupant != Some(task) {
            return false;
        }
        s.occupant = None;
        s.lenders.push((task, false));
        true
    }

    /// `task`, lending `slot`, may have it back (its children settled), or may not any more
    /// (it waits on more children).
    pub(crate) fn set_ready(&mut self, slot: usize, task: T, ready: bool) {
        if let Some(s) = self.slots.get_mut(slot) {
            for (t, r) in &mut s.lenders {
                if *t == task {
                    *r = ready;
                }
            }
        }
    }

    /// Gives a free `slot` back to its top lender when that one may resume: returns it, now the
    /// occupant again.
    pub(crate) fn resume(&mut self, slot: usize) -> Option<T> {
        let s = self.slots.get_mut(slot)?;
        if s.occupant.is_some() || !s.lenders.last().is_some_and(|(_, r)| *r) {
            return None;
        }
        let (task, _) = s.lenders.pop()?;
        s.occupant = Some(task);
        Some(task)
    }

    /// `task` leaves `slot` (settled, or back to the queue): as its occupant or a lender.
    /// Returns whether it was there.
    pub(crate) fn leave(&mut self, slot: usize, task: T) -> bool {
        let Some(s) = self.slots.get_mut(slot) else {
            return false;
        };
        if s.occupant == Some(task) {
            s.occupant = None;
            return true;
        }
        let before = s.lenders.len();
        s.lenders.retain(|(t, _)| *t != task);
        s.lenders.len() != before
    }
}

#[cfg(test)]
mod tests;
