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

use crate::control::{Permit, Submitted, Ticket};

/// The bit that marks a run task's id in the controller.
pub const RUN_BIT: u32 = 1 << 31;

/// The most run tasks that can exist at once (waiting or running).
pub const MAX_RUNS: usize = (RUN_BIT - 1) as usize;

/// Where a slot stands.
#[derive(Debug)]
enum Stand {
    /// In line, with its place.
    Waiting(Ticket),
    /// Admitted, holding its permit.
    Running(Permit),
}

#[derive(Debug)]
struct Slot {
    stand: Stand,
    /// Distinguishes this use of the slot from earlier ones (for stale deadline entries).
    generation: u64,
    expired: bool,
    /// Its deadline as given (ms from submission; at most a day), for the expiry report.
    deadline_ms: u32,
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
    /// Places a new slot: `place` gets its id and asks the controller, which admits it
    /// ([`Submitted::Admitted`]: reported ready) or queues it. `deadline` is the absolute host time
    /// it must end by and the ms it was given, if any. A refusal leaves nothing behind. `None`
    /// when [`MAX_RUNS`] slots exist.
    pub fn insert_with<E>(
        &mut self,
        deadline: Option<(u64, u64)>,
        place: impl FnOnce(u32) -> Result<Submitted, E>,
    ) -> Option<Result<u32, E>> {
        if self.slots.len() >= MAX_RUNS {
            return None;
        }
        let entry = self.slots.vacant_entry();
        let slot = entry.key() as u32;
        let stand = match place(slot) {
            Ok(Submitted::Admitted(permit)) => {
                self.running += 1;
                self.ready.push(slot);
                Stand::Running(permit)
            }
            Ok(Submitted::Waiting(ticket)) => Stand::Waiting(ticket),
            Err(e) => return Some(Err(e)),
        };
        self.generation += 1;
        let generation = self.generation;
        entry.insert(Slot {
            stand,
            generation,
            expired: false,
            deadline_ms: deadline.map_or(0, |(_, ms)| u32::try_from(ms).unwrap_or(u32::MAX)),
        });
        if let Some((at, _)) = deadline {
            self.deadlines.push(Reverse((at, slot, generation)));
        }
        Some(Ok(slot))
    }

    /// Gives an admitted slot its permit and reports it ready. A slot that is gone drops the
    /// permit, which releases it.
    pub fn admitted(&mut self, slot: u32, permit: Permit) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            s.stand = Stand::Running(permit);
            self.running += 1;
            self.ready.push(slot);
        }
    }

    /// Ends a running slot.
    pub fn end(&mut self, slot: u32) -> Option<Ended> {
        let running = self
            .slots
            .get(slot as usize)
            .is_some_and(|s| matches!(s.stand, Stand::Running(_)));
        if !running {
            return None;
        }
        let s = self.slots.remove(slot as usize);
        self.running -= 1;
        match s.stand {
            Stand::Running(permit) => Some(Ended {
                permit,
                expired: s.expired,
            }),
            _ => None,
        }
    }

    /// Takes a waiting slot out of line; returns its ticket to cancel with the controller.
    pub fn cancel(&mut self, slot: u32) -> Option<Ticket> {
        if !matches!(self.slots.get(slot as usize)?.stand, Stand::Waiting(_)) {
            return None;
        }
        match self.slots.remove(slot as usize).stand {
            Stand::Waiting(ticket) => Some(ticket),
            _ => None,
        }
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
            self.expired.push((slot, u64::from(s.deadline_ms)));
            if matches!(s.stand, Stand::Running(_)) {
                s.expired = true;
            } else if let Stand::Waiting(ticket) = self.slots.remove(slot as usize).stand {
                tickets.push(ticket);
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
        if let (Some(out), Some(ready)) = (out.get_mut(..n), self.ready.get(..n)) {
            out.copy_from_slice(ready);
        }
        if n == self.ready.len() {
            self.ready.clear();
        } else {
            self.ready.drain(..n);
        }
        n
    }

    /// Takes the ready list when it is exactly `slot` (just admitted, nothing else made ready):
    /// the caller starts it itself. False, and nothing taken, otherwise.
    pub fn take_ready_alone(&mut self, slot: u32) -> bool {
        let alone = self.ready.as_slice() == [slot];
        if alone {
            self.ready.clear();
        }
        alone
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
