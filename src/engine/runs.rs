//! Run tasks: any asynchronous work of the caller's (a JavaScript function) admitted by the
//! same controller as sub-agent tasks — the same lanes, priorities, permits, breakers, adaptive
//! limits and memory gate — but not journaled: a run task lives only as long as its caller's
//! promise, so there is nothing to restore.
//!
//! A run task is a slot. The caller submits it (it waits, or is admitted at once), runs its work
//! when the slot is reported ready, and ends it with the outcome; ending releases the permit and
//! may make other slots ready. In the controller a slot waits and holds its permit as
//! [`Work::Run`](crate::control::Work), a sub-agent task as `Work::Task`: the two id spaces
//! never share a number's bits.
//!
//! **Deadlines** run from submission. A slot still waiting at its deadline leaves the queue and
//! is reported expired; a running one is reported expired (its caller is told at once) but
//! keeps its permit until the work ends — a late finisher still occupies its slot, so the limits
//! hold — and then counts as a timeout for the breaker and the adaptive limit.
//!
//! **Ids carry a generation.** A slot's id ([`RunId`]) is its index in the slab together with
//! how many times that index was used before, so an answer, a ready report or an expiry meant for
//! an earlier use of the index reaches nothing (`end`, `cancel` and an admission compare the
//! whole id). And an index is not handed out again while a report about its last use may still
//! be on its way: a waiting slot that expires is *held* (it owns nothing — its ticket went back
//! to the controller) until the caller says its expiry was delivered ([`Runs::release_expired`]),
//! so a run submitted by a host function between the two cannot receive the old one's expiry.
//!
//! **Children.** A run started with a parent (another running run: `run(fn, { parent: ctx })`)
//! is nested: in its parent's lane it is queued in the parent's slot's deque instead of the
//! controller's queue, and a parent that joins its children lends them its slot (see
//! `lifecycle/nested.rs`). Plain runs never touch that state: one flag read at their end.
//!
//! Invariants:
//! 1. A slot is waiting (holds a ticket), queued (a child in its parent's slot's deque: holds
//!    neither until a slot takes it), running (holds a permit) or held after its expiry (holds
//!    neither), until ended or released.
//! 2. A permit is released exactly once: by `end`, or by dropping a slot that is removed.
//! 3. Every run id is reported ready at most once, and expired at most once.
//! 4. A run id is never issued twice while any report about it can still arrive: its index is
//!    not reused before its end or the release of its expiry, and each reuse changes its
//!    generation.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use slab::Slab;

use crate::control::{Permit, Submitted, Ticket};
use crate::ids::RunId;

/// The most run tasks that can exist at once (waiting or running).
pub(crate) const MAX_RUNS: usize = crate::ids::RUN_INDEX_MASK as usize;

/// Where a slot stands.
#[derive(Debug)]
enum Stand {
    /// In line, with its place.
    Waiting(Ticket),
    /// A child queued in its parent's slot's deque (the executor's): no ticket, no permit yet.
    Queued,
    /// Admitted, holding its permit.
    Running(Permit),
    /// Expired while waiting; held until its expiry was delivered (module docs).
    Held,
}

#[derive(Debug)]
struct Slot {
    stand: Stand,
    id: RunId,
    expired: bool,
    /// It is a parent or a child (see `lifecycle/nested.rs`): its end, or its expiry while in
    /// line, has the nesting to update. Plain runs never look further.
    nested: bool,
    /// Its deadline as given (ms from submission; at most a day), for the expiry report.
    deadline_ms: u32,
}

/// The run slots. See the module docs.
#[derive(Debug, Default)]
pub struct Runs {
    slots: Slab<Slot>,
    /// The next generation of each index ever used.
    generations: Vec<u8>,
    ready: Vec<u32>,
    expired: Vec<(RunId, u64)>,
    deadlines: BinaryHeap<Reverse<(u64, RunId)>>,
    running: usize,
    held: usize,
    /// Nested slots that left the line by expiring (see [`Runs::take_left`]).
    left: Vec<RunId>,
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
        place: impl FnOnce(RunId) -> Result<Submitted, E>,
    ) -> Option<Result<RunId, E>> {
        self.insert_stand(deadline, |id| {
            Ok(match place(id)? {
                Submitted::Admitted(permit) => Stand::Running(permit),
                Submitted::Waiting(ticket) => Stand::Waiting(ticket),
            })
        })
    }

    /// Places a new child in a deque (the engine pushes its id there): it holds neither a
    /// ticket nor a permit until a slot takes it ([`Runs::admitted`]). `None` when
    /// [`MAX_RUNS`] slots exist.
    pub fn insert_queued(&mut self, deadline: Option<(u64, u64)>) -> Option<RunId> {
        self.insert_stand(deadline, |_| Ok::<_, ()>(Stand::Queued))
            .and_then(Result::ok)
    }

    #[inline]
    fn insert_stand<E>(
        &mut self,
        deadline: Option<(u64, u64)>,
        place: impl FnOnce(RunId) -> Result<Stand, E>,
    ) -> Option<Result<RunId, E>> {
        if self.slots.len() >= MAX_RUNS {
            return None;
        }
        let entry = self.slots.vacant_entry();
        let index = entry.key();
        if index >= self.generations.len() {
            self.generations.resize(index + 1, 0);
        }
        let id = RunId::new(index, self.generations.get(index).copied().unwrap_or(0));
        let stand = match place(id) {
            Ok(stand) => stand,
            Err(e) => return Some(Err(e)),
        };
        if let Stand::Running(_) = stand {
            self.running += 1;
            self.ready.push(id.get());
        }
        let nested = matches!(stand, Stand::Queued);
        entry.insert(Slot {
            stand,
            id,
            expired: false,
            nested,
            deadline_ms: deadline.map_or(0, |(_, ms)| u32::try_from(ms).unwrap_or(u32::MAX)),
        });
        if let Some((at, _)) = deadline {
            self.deadlines.push(Reverse((at, id)));
        }
        Some(Ok(id))
    }

    fn get_mut(&mut self, id: RunId) -> Option<&mut Slot> {
        self.slots.get_mut(id.index()).filter(|s| s.id == id)
    }

    /// Removes the slot of `id` (which exists) and moves its index to the next generation.
    fn remove(&mut self, id: RunId) -> Slot {
        if let Some(g) = self.generations.get_mut(id.index()) {
            *g = id.generation().wrapping_add(1);
        }
        self.slots.remove(id.index())
    }

    /// Gives an admitted slot its permit and reports it ready. A slot that is gone (or an
    /// earlier use of its index) drops the permit, which releases it.
    pub fn admitted(&mut self, id: RunId, permit: Permit) {
        if let Some(s) = self.get_mut(id) {
            if matches!(s.stand, Stand::Waiting(_) | Stand::Queued) {
                s.stand = Stand::Running(permit);
                self.running += 1;
                self.ready.push(id.get());
            }
        }
    }

    /// Ends a running slot.
    pub fn end(&mut self, id: RunId) -> Option<Ended> {
        if !matches!(self.get_mut(id)?.stand, Stand::Running(_)) {
            return None;
        }
        let s = self.remove(id);
        self.running -= 1;
        match s.stand {
            Stand::Running(permit) => Some(Ended {
                permit,
                expired: s.expired,
            }),
            _ => None,
        }
    }

    /// Takes a waiting or queued slot out of line; returns its ticket to cancel with the
    /// controller (`None` inside for a queued child), and whether it was nested.
    pub fn cancel(&mut self, id: RunId) -> Option<(Option<Ticket>, bool)> {
        if !matches!(self.get_mut(id)?.stand, Stand::Waiting(_) | Stand::Queued) {
            return None;
        }
        let s = self.remove(id);
        match s.stand {
            Stand::Waiting(ticket) => Some((Some(ticket), s.nested)),
            _ => Some((None, s.nested)),
        }
    }

    /// Whether `id` is running (admitted, not ended).
    pub fn is_running(&self, id: RunId) -> bool {
        self.permit(id).is_some()
    }

    /// The permit of running slot `id`.
    pub fn permit(&self, id: RunId) -> Option<&Permit> {
        match &self.slots.get(id.index()).filter(|s| s.id == id)?.stand {
            Stand::Running(permit) => Some(permit),
            _ => None,
        }
    }

    /// Whether the slot at `id`'s index is nested (its end goes through the nesting). Reads
    /// the flag only: an id of an earlier use is refused by [`Runs::end`] after.
    #[inline]
    pub fn is_nested(&self, id: RunId) -> bool {
        self.slots.get(id.index()).is_some_and(|s| s.nested)
    }

    /// Marks `id` as a parent or a child: its end goes through the nesting.
    pub fn mark_nested(&mut self, id: RunId) {
        if let Some(s) = self.get_mut(id) {
            s.nested = true;
        }
    }

    /// Nested slots that expired while in line (in a queue or a deque) since the last call:
    /// they will never run, so their parents stop waiting on them.
    pub fn take_left(&mut self) -> Vec<RunId> {
        std::mem::take(&mut self.left)
    }

    /// Slots whose deadline is at or before `now`: waiting ones leave the line (their tickets
    /// are returned, to cancel) and are held until [`Runs::release_expired`]; running ones are
    /// marked. All are reported expired.
    pub fn expire(&mut self, now: u64) -> Vec<Ticket> {
        let mut tickets = Vec::new();
        while let Some(&Reverse((at, id))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(s) = self.get_mut(id) else {
                continue;
            };
            if s.expired {
                continue;
            }
            s.expired = true;
            let ms = u64::from(s.deadline_ms);
            if let Stand::Waiting(_) | Stand::Queued = s.stand {
                if let Stand::Waiting(ticket) = std::mem::replace(&mut s.stand, Stand::Held) {
                    tickets.push(ticket);
                }
                if s.nested {
                    self.left.push(id);
                }
                self.held += 1;
            }
            self.expired.push((id, ms));
        }
        tickets
    }

    /// Frees the slots of expiries that were delivered (held waiting slots; running ones stay
    /// until they end).
    pub fn release_expired(&mut self, delivered: &[(RunId, u64)]) {
        for &(id, _) in delivered {
            if self
                .get_mut(id)
                .is_some_and(|s| matches!(s.stand, Stand::Held))
            {
                self.remove(id);
                self.held -= 1;
            }
        }
    }

    /// The earliest deadline still pending (possibly of a slot already ended: waking early is
    /// harmless).
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.peek().map(|Reverse((at, _))| *at)
    }

    /// Moves up to `out.len()` ready slots into `out`, oldest first; returns how many. What
    /// does not fit stays, in order, for the next call: nothing is dropped.
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

    /// Takes the ready list when it is exactly `id` (just admitted, nothing else made ready):
    /// the caller starts it itself. False, and nothing taken, otherwise.
    pub fn take_ready_alone(&mut self, id: RunId) -> bool {
        let alone = self.ready.as_slice() == [id.get()];
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
    /// Waiting ones stay held until [`Runs::release_expired`] gets them back.
    pub fn take_expired(&mut self) -> Vec<(RunId, u64)> {
        std::mem::take(&mut self.expired)
    }

    /// Whether any slot expired since the last `take_expired`.
    pub fn has_expired(&self) -> bool {
        !self.expired.is_empty()
    }

    /// Slots waiting and running (held expired slots are neither).
    pub fn counts(&self) -> (usize, usize) {
        (self.slots.len() - self.running - self.held, self.running)
    }
}
