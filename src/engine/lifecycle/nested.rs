//! Nested work: sub-agent tasks on the executor's slots, children at the owner end, waiting
//! parents lending their slot, idle slots stealing.
//!
//! Every admitted sub-agent task runs on a slot of its lane (see `executor/`): the controller
//! says *when* (a permit), the executor *where* (an idle slot, shortest deque first). What goes
//! through the deques, and why:
//!
//! - **Children.** A task submitted with `parent` = the session of an open task P that holds a
//!   slot in the same lane is P's child: instead of the controller's queue it goes to the back
//!   (owner end) of P's slot's deque, so a subtree finishes depth-first. A child whose lane
//!   differs from its parent's goes through the controller like any task (its parent may still
//!   wait on it: see joining). Dependencies are waited for first, as for any task.
//! - **Joining = lending.** [`Engine::join`] says that P's session blocks until the given
//!   children settle (the plugin's delegate in wait mode). P then lends its slot: the slot runs
//!   P's children one at a time from its deque's back, under P's lane permit — a child on a lent
//!   slot takes no second lane permit, so the lane is counted once. Its key is still the
//!   controller's to admit ([`Controller::admit_lent`](crate::control::Controller::admit_lent)): the breaker must let it through, and a
//!   limited key must have room unless a lender on the same slot already counts that key. The
//!   child's outcome feeds the key's breaker and adaptive limit like any task's.
//! - **Stealing.** A lent slot with an empty deque takes the oldest child (the front) of the
//!   fullest deque of its lane; an idle slot does the same with a lane permit the controller
//!   gives only when nothing waits in its queue for that lane ([`Controller::try_admit`](crate::control::Controller::try_admit)): queued
//!   work keeps its turn, and no slot idles while its lane has admissible children.
//! - **Resuming.** When P's joined children have all settled, P needs its slot back before its
//!   session continues: if the slot runs stolen work, P is first in line for it. The engine
//!   reports P in [`Engine::take_resumed`] only then (or when P settled meanwhile); the host
//!   must not let P's session go on (return the tool call) before that, or its requests would
//!   go past the lane's limit.
//! - A lender that settles while its slot still runs work leaves its (recorded) permit with the
//!   slot until the slot is idle: the lane stays counted once for the work on it.
//!
//! Lending is live state only: it is not journaled. After a restore, prompted tasks come back
//! `unknown` (their tool calls died with the process) and queued children as plain queued work.
//!
//! Run children (`run(fn, { parent: ctx })`, see `run_children.rs`) go through the same
//! slots and deques, as `Work::Run`: a parent run is put on a slot the first time it needs one
//! (a child in its lane, or a join). Plain runs never touch the executor: they keep their
//! two-call fast path.

use crate::control::{KeyId, Outcome, Permit};
use crate::engine::task::TaskSpec;
use crate::executor::Executor;
use crate::ids::{RunId, TaskId, Work};

use super::run_children::RunNests;
use super::{Engine, Live};

/// The engine's nested-work state.
#[derive(Debug)]
pub(super) struct Nested {
    pub(super) exec: Executor<Work>,
    /// Permits of lenders that settled while their slot still ran work, per slot.
    /// (A short list: one entry per lender that settled mid-lend.)
    pub(super) held: Vec<(usize, Permit)>,
    /// Parents whose join ended: they hold their slot again, or settled.
    resumed: Vec<TaskId>,
    /// Parent runs whose join ended, the same way.
    pub(super) runs_resumed: Vec<RunId>,
    /// Runs that are parents or children (plain runs are never here).
    pub(super) runs: RunNests,
}

impl Nested {
    /// One slot per unit of each lane's configured limit.
    pub(super) fn new(config: &crate::config::Config) -> Self {
        let capacities: Vec<usize> = config.lanes().values().map(|&n| n as usize).collect();
        Nested {
            exec: Executor::new(&capacities),
            held: Vec::new(),
            resumed: Vec::new(),
            runs_resumed: Vec::new(),
            runs: RunNests::default(),
        }
    }
}

/// See [`Engine::ask`].
struct Ask {
    lane: crate::control::LaneId,
    key: Option<KeyId>,
    priority: crate::ids::Priority,
    lent: bool,
    covered: bool,
}

/// A task's place in the nesting.
#[derive(Debug, Default)]
pub(super) struct Place {
    /// The slot it runs on or lends.
    pub(super) slot: Option<usize>,
    /// The slot whose deque holds it (a queued child).
    pub(super) queued_in: Option<usize>,
    /// Joined children not settled yet.
    pub(super) awaiting: u32,
    /// The parent that joined it.
    pub(super) awaited_by: Option<Work>,
}

impl Place {
    /// What survives a retry (back to the queue): who waits on it.
    pub(super) fn for_retry(&self) -> Place {
        Place {
            awaited_by: self.awaited_by,
            ..Place::default()
        }
    }
}

impl Engine {
    /// The parent of a task of `spec` for nesting: the open task whose session is the spec's
    /// `parent`, when it holds a slot in the same lane; with that slot.
    fn nest_parent(&self, spec: &TaskSpec) -> Option<(TaskId, usize)> {
        let parent = *self.by_session.get(spec.parent.as_ref()?)?;
        let slot = self.live.get(&parent)?.place.slot?;
        let lane = self.controller.lane_id(&spec.agent).index();
        (self.nest.exec.lane_of(slot) == lane).then_some((parent, slot))
    }

    /// Queues `task` (of `spec`) as a child at the owner end of its parent's slot, when it is
    /// one (see the module docs). Returns whether it did.
    pub(super) fn enqueue_child(&mut self, task: TaskId, spec: &TaskSpec) -> bool {
        let Some((_, slot)) = self.nest_parent(spec) else {
            return false;
        };
        let Some(live) = self.live.get_mut(&task) else {
            return false;
        };
        if let Some(ticket) = live.ticket.take() {
            self.controller.cancel(ticket);
        }
        live.blocked_on_deps = false;
        live.place.queued_in = Some(slot);
        self.nest.exec.push_child(slot, Work::Task(task));
        true
    }

    /// Puts a task admitted by the controller on an idle slot of its lane.
    pub(super) fn place(&mut self, task: TaskId, agent: &str) {
        let lane = self.controller.lane_id(agent).index();
        let slot = self.nest.exec.place(lane, Work::Task(task));
        if let Some(l) = self.live.get_mut(&task) {
            l.place.slot = slot;
        }
    }

    /// The parent session's task `P` waits until `children` settle: each open child joins
    /// P's count, and P lends its slot to them (see the module docs). Returns the parents now
    /// lending (empty when no child is open or none has a parent task here; then the host just
    /// waits for each child). Ids must be tasks of this engine.
    pub fn join(&mut self, now: u64, children: &[TaskId]) -> Result<Vec<TaskId>, crate::Error> {
        self.at(now);
        for &child in children {
            if self.tasks.state(child).is_none() {
                return Err(self.tasks.missing(child));
            }
        }
        let mut lenders = Vec::new();
        for &child in children {
            let joined = self
                .live
                .get(&child)
                .is_none_or(|l| l.place.awaited_by.is_some());
            if !self.is_open(child) || joined {
                continue;
            }
            let Some(parent) = self
                .tasks
                .get(child)
                .and_then(|r| r.spec.parent)
                .and_then(|s| self.by_session.get(&s).copied())
                .filter(|p| *p != child && self.live.contains_key(p))
            else {
                continue;
            };
            if let Some(l) = self.live.get_mut(&child) {
                l.place.awaited_by = Some(Work::Task(parent));
            }
            let Some(p) = self.live.get_mut(&parent) else {
                continue;
            };
            p.place.awaiting += 1;
            if let Some(slot) = p.place.slot {
                // Lends it, or (lending already, its earlier children settled) waits again.
                self.nest.exec.lend(slot, Work::Task(parent));
                self.nest.exec.set_ready(slot, Work::Task(parent), false);
            }
            if !lenders.contains(&parent) {
                lenders.push(parent);
            }
        }
        self.fill_slots(now);
        Ok(lenders)
    }

    /// Parents whose join ended since the last call: each holds its slot again (or settled).
    /// Until a parent is reported here its session must not continue.
    pub fn take_resumed(&mut self) -> Vec<TaskId> {
        std::mem::take(&mut self.nest.resumed)
    }

    /// Whether `task` waits on joined children or for its slot back.
    pub fn is_lending(&self, task: TaskId) -> bool {
        self.live.get(&task).is_some_and(|l| {
            l.place.awaiting > 0
                || l.place
                    .slot
                    .is_some_and(|s| self.nest.exec.lenders(s).any(|t| t == Work::Task(task)))
        })
    }

    /// Permits slots keep for lenders that settled while work still ran on their slot (each
    /// counts its lane until the slot is idle).
    pub fn kept_permits(&self) -> usize {
        self.nest.held.len()
    }

    /// The slot `task` runs on or lends, if any.
    pub fn slot_of(&self, task: TaskId) -> Option<usize> {
        self.live.get(&task).and_then(|l| l.place.slot)
    }

    /// Checks the executor's invariants against the engine's tasks and runs: every slot's
    /// occupant and lenders are open tasks (or running runs) that know their slot, every queued
    /// child knows its deque, nothing is in two places, and no slot is free while its lane has a
    /// child it could take now. A description of the first violation found.
    pub fn check_slots(&mut self, now: u64) -> Result<(), String> {
        let mut seen = rustc_hash::FxHashSet::default();
        let exec = &self.nest.exec;
        for slot in 0..exec.slot_count() {
            for w in exec.occupant(slot).into_iter().chain(exec.lenders(slot)) {
                if !seen.insert(w) {
                    return Err(format!("{w:?} placed twice"));
                }
                if self.place_of(w).and_then(|p| p.slot) != Some(slot) {
                    return Err(format!("{w:?} on slot {slot} does not know it"));
                }
            }
        }
        let queued = self
            .live
            .iter()
            .map(|(t, l)| (Work::Task(*t), &l.place))
            .chain(
                self.nest
                    .runs
                    .iter()
                    .map(|(r, n)| (Work::Run(*r), &n.place)),
            );
        for (w, place) in queued {
            if let Some(slot) = place.queued_in {
                if !seen.insert(w) {
                    return Err(format!("{w:?} queued and placed"));
                }
                if exec.next_for(slot).is_none() {
                    return Err(format!("{w:?} queued in an empty lane"));
                }
            }
        }
        if seen.len() != self.placed_count() {
            return Err("a slot or deque holds work that is not open".into());
        }
        let free: Vec<(usize, Work)> = (0..exec.slot_count())
            .filter(|&s| exec.is_idle(s) || exec.is_lent_free(s))
            .filter_map(|s| exec.next_for(s).map(|(child, ..)| (s, child)))
            .collect();
        for (slot, child) in free {
            if self.could_start(now, slot, child) {
                return Err(format!(
                    "slot {slot} is free while {child:?} could run on it"
                ));
            }
        }
        Ok(())
    }

    /// Tasks and runs the executor holds (occupants, lenders, queued children).
    fn placed_count(&self) -> usize {
        let exec = &self.nest.exec;
        (0..exec.slot_count())
            .map(|s| exec.occupant(s).into_iter().count() + exec.lenders(s).count())
            .sum::<usize>()
            + exec.queued()
    }

    /// The nesting place of a task or a nested run.
    pub(super) fn place_of(&self, w: Work) -> Option<&Place> {
        match w {
            Work::Task(t) => self.live.get(&t).map(|l| &l.place),
            Work::Run(r) => self.nest.runs.get(&r).map(|n| &n.place),
        }
    }

    /// The nesting place of a task or a nested run, to change.
    pub(super) fn place_mut(&mut self, w: Work) -> Option<&mut Place> {
        match w {
            Work::Task(t) => self.live.get_mut(&t).map(|l| &mut l.place),
            Work::Run(r) => self.nest.runs.get_mut(&r).map(|n| &mut n.place),
        }
    }

    /// Whether a lender on `slot` (or a permit the slot kept) already counts key `k`.
    fn key_covered(&self, slot: usize, k: KeyId) -> bool {
        let counts = |p: &Permit| p.counted_key() == Some(k.index());
        self.nest.exec.lenders(slot).any(|w| {
            let permit = match w {
                Work::Task(t) => self.live.get(&t).and_then(|l| l.permit.as_ref()),
                Work::Run(r) => self.runs.permit(r),
            };
            permit.is_some_and(counts)
        }) || self.nest.held.iter().any(|(s, p)| *s == slot && counts(p))
    }

    /// What the controller is asked for `child` on free `slot`: its lane, key, priority,
    /// whether the slot is lent and whether a lender there counts the key already.
    fn ask(&mut self, slot: usize, child: Work) -> Option<Ask> {
        let (lane, key, priority) = match child {
            Work::Task(t) => {
                let record = self.tasks.get_brief(t)?;
                let key = match record.spec.model.as_deref() {
                    Some(name) => Some(self.controller.key_id(name).ok()?),
                    None => None,
                };
                let lane = self.controller.lane_id(&record.spec.agent);
                (lane, key, record.spec.priority)
            }
            Work::Run(r) => self.nest.runs.get(&r)?.ask?,
        };
        Some(Ask {
            lane,
            key,
            priority,
            lent: self.nest.exec.is_lent_free(slot),
            covered: key.is_some_and(|k| self.key_covered(slot, k)),
        })
    }

    /// A permit for `child` to run on free `slot`: a lent one on a lent slot (no second lane
    /// count), a lane permit on an idle one; `None` when the controller says not now.
    fn try_permit(&mut self, now: u64, slot: usize, child: Work) -> Option<Permit> {
        let a = self.ask(slot, child)?;
        if a.lent {
            self.controller
                .admit_lent(now, child, a.lane, a.key, a.covered, a.priority)
        } else {
            self.controller
                .try_admit(now, child, a.lane, a.key, a.priority)
        }
    }

    /// Whether [`Engine::try_permit`] would give a permit now (nothing is issued).
    fn could_start(&mut self, now: u64, slot: usize, child: Work) -> bool {
        self.ask(slot, child).is_some_and(|a| {
            self.controller
                .could_admit(now, a.lane, a.key, a.priority, a.lent, a.covered)
        })
    }

    /// Gives every free slot what it may take now: its lender back, else a child (own deque's
    /// back, else a steal) with a permit for it.
    pub(super) fn fill_slots(&mut self, now: u64) {
        for slot in 0..self.nest.exec.slot_count() {
            self.fill(now, slot);
        }
    }

    pub(super) fn fill(&mut self, now: u64, slot: usize) {
        if let Some(parent) = self.nest.exec.resume(slot) {
            self.resumed(parent);
            return;
        }
        let exec = &self.nest.exec;
        if !(exec.is_idle(slot) || exec.is_lent_free(slot)) {
            return;
        }
        let Some((child, deque, how)) = exec.next_for(slot) else {
            self.drop_held(slot);
            return;
        };
        let Some(permit) = self.try_permit(now, slot, child) else {
            self.drop_held(slot);
            return;
        };
        self.nest.exec.take(slot, deque, how);
        if let Some(p) = self.place_mut(child) {
            p.queued_in = None;
            p.slot = Some(slot);
        }
        match child {
            Work::Task(t) => self.start_admitted(now, t, permit, false),
            Work::Run(r) => self.runs.admitted(r, permit),
        }
    }

    /// `parent`'s join ended (it has its slot back, or settled): reported once.
    pub(super) fn resumed(&mut self, parent: Work) {
        match parent {
            Work::Task(t) if !self.nest.resumed.contains(&t) => self.nest.resumed.push(t),
            Work::Run(r) if !self.nest.runs_resumed.contains(&r) => {
                self.nest.runs_resumed.push(r);
            }
            _ => {}
        }
    }

    /// Releases the permits a slot kept for settled lenders once it is idle.
    fn drop_held(&mut self, slot: usize) {
        if self.nest.exec.is_idle(slot) {
            self.nest.held.retain(|(s, _)| *s != slot);
        }
    }

    /// `task` leaves its slot or deque (it settled, or goes back to the queue for a retry). A
    /// lender whose slot still runs work keeps the lane counted: its permit, with `outcome`
    /// recorded, stays with the slot until the slot is idle.
    pub(super) fn leave_slot(&mut self, now: u64, task: TaskId, outcome: Outcome) {
        let Some(l) = self.live.get_mut(&task) else {
            return;
        };
        let queued_in = l.place.queued_in.take();
        let slot = l.place.slot.take();
        let permit = l.permit.take();
        let kept = self.leave(now, Work::Task(task), queued_in, slot, permit, outcome);
        if let Some(l) = self.live.get_mut(&task) {
            l.permit = kept;
        }
    }

    /// `w` leaves deque `queued_in` and slot `slot`. A lender's lane-counting `permit` stays
    /// with a slot that still runs work (its outcome recorded); otherwise it is handed back.
    pub(super) fn leave(
        &mut self,
        now: u64,
        w: Work,
        queued_in: Option<usize>,
        slot: Option<usize>,
        permit: Option<Permit>,
        outcome: Outcome,
    ) -> Option<Permit> {
        if let Some(q) = queued_in {
            self.nest.exec.unqueue(q, w);
        }
        let Some(slot) = slot else {
            return permit;
        };
        let was_lender = self.nest.exec.lenders(slot).any(|t| t == w);
        self.nest.exec.leave(slot, w);
        if was_lender {
            self.resumed(w); // its join ended: it settled
        }
        let mut permit = permit;
        if was_lender && !self.nest.exec.is_idle(slot) {
            if let Some(mut p) = permit.take_if(|p| p.counts_lane()) {
                self.controller.record(now, &mut p, outcome);
                self.nest.held.push((slot, p));
            }
        }
        self.fill(now, slot);
        permit
    }

    /// `w` is about to settle (before its slot is freed): the parent that joined it counts
    /// it, and once all its children settled it is marked to resume — so that the slot this
    /// one frees goes to that parent first, not to other work. Returns the parent's slot, to
    /// be given back once this one left its own ([`Engine::settled_nested`]).
    pub(super) fn child_settling(&mut self, w: Work) -> Option<usize> {
        let parent = self.place_mut(w)?.awaited_by.take()?;
        let p = self.place_mut(parent)?;
        p.awaiting = p.awaiting.saturating_sub(1);
        if p.awaiting > 0 {
            return None;
        }
        match p.slot {
            Some(slot) => {
                self.nest.exec.set_ready(slot, parent, true);
                Some(slot)
            }
            // On no slot (adopted after a restore past capacity, or a parent run with no
            // slot free): nothing to wait for.
            None => {
                self.resumed(parent);
                None
            }
        }
    }

    /// After `task` settled: a lender that settled is reported (its join ended), and the slot
    /// of a parent whose children all settled goes back to it if it is free.
    pub(super) fn settled_nested(
        &mut self,
        now: u64,
        task: TaskId,
        place: &Place,
        parent_slot: Option<usize>,
    ) {
        if place.awaiting > 0 {
            self.resumed(Work::Task(task));
        }
        if let Some(slot) = parent_slot {
            self.fill(now, slot);
        }
    }
}

/// A task's nesting state as it settles (taken out of its `Live`).
pub(super) fn take_place(live: &mut Live) -> Place {
    std::mem::take(&mut live.place)
}
