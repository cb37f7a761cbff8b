//! Run children: `run()` work started from inside a running `run()` with a parent
//! (`run(fn, { parent: ctx })`), on the executor's slots like sub-agent children.
//!
//! - **Placement.** A parent run has no slot while it runs alone (plain runs keep their fast
//!   path: a controller permit, no executor). The first time it needs one — a child in its
//!   lane, or a join — it is put on an idle slot of its lane. One is always free: each busy
//!   slot holds one permit counting the lane, and the parent's own permit counts the lane
//!   without a slot, so idle slots ≥ slot-less runs holding permits. (After a restore past
//!   capacity there may be none: then the child is a plain run and a join lends nothing.)
//! - **Children in the parent's lane** go to the back (owner end) of the parent's slot's deque:
//!   no ticket, no permit until a slot takes them — the parent's slot once it lends it (newest
//!   first: depth-first), or an idle slot of the lane stealing the oldest with a lane permit the
//!   controller gives only when its queue holds nothing for that lane. The refusals a submit
//!   makes (`MEMORY_PRESSURE` for LOW work, `BREAKER_OPEN` with `failFast`) are made at once.
//!   **Children in another lane** go through the controller like any run.
//! - **Joining = lending.** [`Engine::run_join`] says the parent waits on some of its children:
//!   it lends its slot to them (a child on it takes no second lane count; its key is still
//!   admitted: `admit_lent`) and is reported in [`Engine::take_runs_resumed`] once they all
//!   ended *and* it has its slot back (or it ended itself). The JS `join` resolves only then.
//! - **Ends.** A child that ends, or expires while still in line, counts for its parent's
//!   join. A parent that ends while lending (it did not wait for its join) leaves its permit,
//!   outcome recorded, with the slot until the slot is idle, as a task does.
//! - **Decisions.** A child started after its parent ended, or from a parent still waiting,
//!   is a plain run (like a sub-agent child whose parent task is no longer open). A parent's
//!   deadline does not end its children: JavaScript cannot stop a function, so the parent's
//!   work keeps its slot until it returns, and its children run on. A child that fails is a
//!   failure for its key's breaker and adaptive limit like any run; the join still waits for
//!   the others (the parent has no slot to go on with before that).

use crate::control::{KeyId, LaneId, Outcome, Permit};
use crate::error::Error;
use crate::ids::{Priority, RunId, Work};

use super::nested::Place;
use super::{Engine, RunRequest};
use crate::engine::runs::MAX_RUNS;

/// A nested run's admission inputs (to ask the controller when a slot takes it) and place.
#[derive(Debug)]
pub(crate) struct RunNest {
    /// Its lane, key and priority, when it is a child (a parent that is no one's child is
    /// never in a deque, so never asked for).
    pub(super) ask: Option<(LaneId, Option<KeyId>, Priority)>,
    /// The run it was started under, if any (none for a parent that is no one's child).
    parent: Option<RunId>,
    pub(super) place: Place,
}

/// The nested runs' entries, at their run's slot index (a vector, not a hash map, keeps the
/// module small; boxed, it costs a word per index the run slab already holds); each entry
/// names its run, generation included.
#[derive(Debug, Default)]
pub(crate) struct RunNests {
    entries: Vec<Option<Box<(RunId, RunNest)>>>,
}

impl RunNests {
    pub(super) fn get(&self, id: &RunId) -> Option<&RunNest> {
        match self.entries.get(id.index()).and_then(Option::as_deref) {
            Some((r, n)) if r == id => Some(n),
            _ => None,
        }
    }

    pub(super) fn get_mut(&mut self, id: &RunId) -> Option<&mut RunNest> {
        match self
            .entries
            .get_mut(id.index())
            .and_then(Option::as_deref_mut)
        {
            Some((r, n)) if r == id => Some(n),
            _ => None,
        }
    }

    fn insert(&mut self, id: RunId, nest: RunNest) {
        if self.entries.len() <= id.index() {
            self.entries.resize_with(id.index() + 1, || None);
        }
        self.entries[id.index()] = Some(Box::new((id, nest)));
    }

    fn remove(&mut self, id: &RunId) -> Option<RunNest> {
        self.get(id)?;
        self.entries.get_mut(id.index())?.take().map(|e| e.1)
    }

    /// Every nested run, with its entry.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&RunId, &RunNest)> {
        self.entries.iter().flatten().map(|e| (&e.0, &e.1))
    }
}

impl Engine {
    /// Starts a run task that is a child of running run `parent` (see the module docs): in the
    /// parent's lane it is queued at the owner end of the parent's slot, in another lane it is
    /// submitted as usual; with no running `parent` it is a plain run. Refusals are the
    /// controller's, as for [`Engine::run_submit`].
    pub fn run_submit_child(
        &mut self,
        now: u64,
        request: RunRequest,
        parent: RunId,
    ) -> Result<RunId, Error> {
        let Some(parent_lane) = self.runs.permit(parent).map(Permit::lane) else {
            return self.run_submit(now, request);
        };
        let same_lane = request.lane.index() == parent_lane;
        let slot = if same_lane {
            self.run_slot(parent)
        } else {
            None
        };
        let id = match slot {
            Some(slot) => {
                self.controller
                    .check_to(now, request.key, request.priority, request.fail_fast)?;
                let deadline = request.deadline_ms.map(|ms| (now.saturating_add(ms), ms));
                let Some(id) = self.runs.insert_queued(deadline) else {
                    return Err(Error::QueueFull {
                        limit: MAX_RUNS as u64,
                    });
                };
                self.nest.exec.push_child(slot, Work::Run(id));
                id
            }
            None => self.run_submit(now, request)?,
        };
        self.runs.mark_nested(id);
        self.nest.runs.insert(
            id,
            RunNest {
                ask: Some((request.lane, request.key, request.priority)),
                parent: Some(parent),
                place: Place {
                    queued_in: slot,
                    ..Place::default()
                },
            },
        );
        if slot.is_some() {
            self.fill_slots(now);
        }
        Ok(id)
    }

    /// Running run `parent` waits until `children` (runs started under it) end: it lends its
    /// slot to them. Returns whether it waits: false when none of them is still open (or
    /// `parent` is not running), and then the caller need not wait for
    /// [`Engine::take_runs_resumed`]. Children of another parent, unknown ids and children
    /// already joined are passed over.
    pub fn run_join(&mut self, now: u64, parent: RunId, children: &[RunId]) -> bool {
        if !self.runs.is_running(parent) {
            return false;
        }
        let mut joined = 0u32;
        for &child in children {
            let Some(n) = self.nest.runs.get_mut(&child) else {
                continue; // ended already
            };
            if n.parent != Some(parent) || n.place.awaited_by.is_some() {
                continue;
            }
            n.place.awaited_by = Some(Work::Run(parent));
            joined += 1;
        }
        if joined == 0 {
            return false;
        }
        let slot = self.run_slot(parent);
        if let Some(p) = self.nest.runs.get_mut(&parent) {
            p.place.awaiting += joined;
        }
        if let Some(slot) = slot {
            // Lends it, or (lending already: a second join) waits again.
            self.nest.exec.lend(slot, Work::Run(parent));
            self.nest.exec.set_ready(slot, Work::Run(parent), false);
            self.fill_slots(now);
        }
        true
    }

    /// Parent runs whose join ended since the last call: each holds its slot again (or
    /// ended). Until a parent is reported here its work must not go on.
    pub fn take_runs_resumed(&mut self) -> Vec<RunId> {
        std::mem::take(&mut self.nest.runs_resumed)
    }

    /// Whether some parent run's join ended and has not been taken.
    pub fn has_runs_resumed(&self) -> bool {
        !self.nest.runs_resumed.is_empty()
    }

    /// The slot running run `parent` holds, put on an idle one of its lane the first time.
    fn run_slot(&mut self, parent: RunId) -> Option<usize> {
        if let Some(slot) = self.nest.runs.get(&parent).and_then(|n| n.place.slot) {
            return Some(slot);
        }
        let lane = self.runs.permit(parent)?.lane();
        let slot = self.nest.exec.place(lane, Work::Run(parent))?;
        self.runs.mark_nested(parent);
        match self.nest.runs.get_mut(&parent) {
            Some(n) => n.place.slot = Some(slot),
            None => self.nest.runs.insert(
                parent,
                RunNest {
                    ask: None,
                    parent: None,
                    place: Place {
                        slot: Some(slot),
                        ..Place::default()
                    },
                },
            ),
        }
        Some(slot)
    }

    /// [`Engine::run_end`] of a nested run: its parent's join counts it, it leaves its slot
    /// (a lender's lane-counting permit may stay with the slot, outcome recorded), its
    /// parent's slot goes back to the parent if it may resume, and what may start starts. Out
    /// of line: a plain run's end pays only the flag test that leads here.
    #[inline(never)]
    pub(super) fn run_end_nested(
        &mut self,
        now: u64,
        id: RunId,
        outcome: Outcome,
    ) -> Result<(), Error> {
        let ended = self
            .runs
            .end(id)
            .ok_or_else(|| Error::input("run", format!("run {} is not running", id.get())))?;
        let outcome = if ended.expired {
            Outcome::Failed(crate::error::FailureClass::Timeout)
        } else {
            outcome
        };
        let permit = ended.permit;
        let parent_slot = self.child_settling(Work::Run(id));
        let place = self
            .nest
            .runs
            .remove(&id)
            .map(|n| n.place)
            .unwrap_or_default();
        if place.awaiting > 0 {
            self.resumed(Work::Run(id)); // it ended while waiting: its join is over
        }
        let w = Work::Run(id);
        let permit = self.leave(now, w, place.queued_in, place.slot, Some(permit), outcome);
        if let Some(permit) = permit {
            // Not `complete`: a third caller would have it kept out of line on the run path.
            self.controller.record(now, &mut { permit }, outcome);
        }
        if let Some(slot) = parent_slot {
            self.fill(now, slot);
        }
        self.pump(now);
        Ok(())
    }

    /// Nested runs that left the line without running (expired, or cancelled): their parents
    /// stop waiting on them and their deque places are freed.
    pub(super) fn runs_left_line(&mut self, now: u64, left: &[RunId]) {
        for &id in left {
            let parent_slot = self.child_settling(Work::Run(id));
            if let Some(n) = self.nest.runs.remove(&id) {
                if let Some(q) = n.place.queued_in {
                    self.nest.exec.unqueue(q, Work::Run(id));
                }
            }
            if let Some(slot) = parent_slot {
                self.fill(now, slot);
            }
        }
    }
}

#[cfg(test)]
mod tests;
