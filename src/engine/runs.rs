//! Run tasks: any asynchronous work of the caller's (a JavaScript function) admitted by the
//! same controller as sub-agent tasks — the same lanes, priorities, permits, breakers, adaptive
//! limits and memory gate — but not journaled: a run task lives only as long as its caller's
//! promise, so there is nothing to restore.
//!
//! A run task is a slot. The caller submits it (it waits, or is admitted at once), runs its work
//! when the slot is reported ready, and ends it with the outcome; ending releases the permit and
//! may make other slots ready. In the controller a slot is the task id `RUN_BIT | slot`, which
//! no sub-agent task id can be (those count up from 1 and stay below `RUN_BIT`).
//!
//! **Deadlines** run from submission. A slot still waiting at its deadline leaves the queue and
//! is reported expired; a running one is reported expired (its caller is told at once) but
//! keeps its permit until the work ends — a late finisher still occupies its slot, so the limits
//! hold — and then counts as a timeout for the breaker and the adaptive limit.
//!
//! Invariants:
//! 1. A slot is waiting (holds a ticket) or running (holds a permit), never both, until ended.
//! 2. A permit is released exactly once: by `end`, or by dropping a slot that is removed.
//! 3. Every slot id is reported ready at most once, and expired at most once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use slab::Slab;

use crate::control::{Permit, Ticket};

/// The bit that marks a run task's id in the controller.
pub const RUN_BIT: u32 = 1 << 31;

/// The most run tasks that can exist at once (waiting or running).
pub const MAX_RUNS: usize = (RUN_BIT - 1) as usize;

#[derive(Debug)]
struct Slot {
    ticket: Option<Ticket>,
    permit: Option<Permit>,
    /// Distinguishes this use of the slot from earlier ones (for stale deadline entries).
    generation: u64,
    expired: bool,
    deadline_ms: u64,
}

/// The run slots. See the module docs.
#[derive(Debug, Default)]
pub struct Runs {
    slots: Slab<Slot>,
    ready: Vec<u32>,
    expired: Vec<(u32, u64)>,
    deadlines: BinaryHeap<Reverse<(u64, u32, u64)>>,
    generation: u64,
    running: usize,
}

/// What a finished slot had.
#[derive(Debug)]
pub struct Ended {
    /// Its permit, to complete with the controller.
    pub permit: Permit,
    /// Whether its deadline passed while it ran.
    pub expired: bool,
}

impl Runs {
    /// Reserves a slot; `deadline` is the absolute host time it must end by, if any.
    pub fn insert(&mut self, deadline: Option<(u64, u64)>) -> Option<u32> {
        if self.slots.len() >= MAX_RUNS {
            return None;
        }
        self.generation += 1;
        let generation = self.generation;
        let slot = self.slots.insert(Slot {
            ticket: None,
            permit: None,
            generation,
            expired: false,
            deadline_ms: deadline.map_or(0, |(_, ms)| ms),
        }) as u32;
        if let Some((at, _)) = deadline {
            self.deadlines.push(Reverse((at, slot, generation)));
        }
        Some(slot)
    }

    /// Records the ticket of a waiting slot.
    pub fn waiting(&mut self, slot: u32, ticket: Ticket) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            s.ticket = Some(ticket);
        }
    }

    /// Frees a slot that never got in line (the controller refused it).
    pub fn abandon(&mut self, slot: u32) {
        if self
            .slots
            .get(slot as usize)
            .is_some_and(|s| s.permit.is_none())
        {
            self.slots.remove(slot as usize);
        }
    }

    /// Gives an admitted slot its permit and reports it ready. A slot that is gone drops the
    /// permit, which releases it.
    pub fn admitted(&mut self, slot: u32, permit: Permit) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            s.ticket = None;
            s.permit = Some(permit);
            self.running += 1;
            self.ready.push(slot);
        }
    }

    /// Ends a running slot.
    pub fn end(&mut self, slot: u32) -> Option<Ended> {
        let running = self
            .slots
            .get(slot as usize)
            .is_some_and(|s| s.permit.is_some());
        if !running {
            return None;
        }
        let s = self.slots.remove(slot as usize);
        self.running -= 1;
        s.permit.map(|permit| Ended {
            permit,
            expired: s.expired,
        })
    }

    /// Takes a waiting slot out of line; returns its ticket to cancel with the controller.
    pub fn cancel(&mut self, slot: u32) -> Option<Ticket> {
        let ticket = self.slots.get_mut(slot as usize)?.ticket.take()?;
        self.slots.remove(slot as usize);
        Some(ticket)
    }

    /// Slots whose deadline is at or before `now`: waiting ones are removed and their tickets
    /// returned (to cancel); running ones are marked. All are reported expired.
    pub fn expire(&mut self, now: u64) -> Vec<Ticket> {
        let mut tickets = Vec::new();
        while let Some(&Reverse((at, slot, generation))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(s) = self.slots.get_mut(slot as usize) else {
                continue;
            };
            if s.generation != generation || s.expired {
                continue;
            }
            self.expired.push((slot, s.deadline_ms));
            if let Some(ticket) = s.ticket.take() {
                self.slots.remove(slot as usize);
                tickets.push(ticket);
            } else {
                s.expired = true;
            }
        }
        tickets
    }

    /// The earliest deadline still pending (possibly of a slot already ended: waking early is
    /// harmless).
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Moves up to `out.len()` ready slots into `out`, oldest first; returns how many.
    pub fn drain_ready(&mut self, out: &mut [u32]) -> usize {
        let n = self.ready.len().min(out.len());
        for (o, slot) in out.iter_mut().zip(self.ready.drain(..n)) {
            *o = slot;
        }
        n
    }

    /// Ready slots not yet drained.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Takes the slots reported expired since the last call, with each one's deadline (ms).
    pub fn take_expired(&mut self) -> Vec<(u32, u64)> {
        std::mem::take(&mut self.expired)
    }

    /// Whether any slot expired since the last `take_expired`.
    pub fn has_expired(&self) -> bool {
        !self.expired.is_empty()
    }

    /// Slots waiting and running.
    pub fn counts(&self) -> (usize, usize) {
        (self.slots.len() - self.running, self.running)
    }
}
