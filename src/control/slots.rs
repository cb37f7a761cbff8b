//! Admission for the executor's slots: a child taken from a deque by an idle slot (a lane
//! permit, only when nothing waits in the controller's queue for that lane) or by a lent slot
//! (no second lane count; its key still admitted). See `engine/lifecycle/nested.rs`.

use super::{Controller, KeyId, LaneId, Permit, Verdict};
use crate::ids::{Priority, TaskId, Work};

impl Controller {
    /// A permit for `task` now, without queuing it, when `submit_or_admit` would admit it at
    /// once: nothing waits in its lane, the lane and the key (if limited) have room, the
    /// breaker lets it through and, for LOW work, the gate is open. `None` otherwise. The
    /// executor's idle slots take their deques' work through it, so queued work keeps its
    /// turn before deque work of the same lane.
    pub fn try_admit(
        &mut self,
        now: u64,
        work: Work,
        lane_id: LaneId,
        key_id: Option<KeyId>,
        priority: Priority,
    ) -> Option<Permit> {
        self.collect_releases();
        let lane = lane_id.0.min(self.lanes.len().saturating_sub(1));
        let key = key_id.map(|KeyId(k)| k).filter(|&k| k < self.keys.len());
        let lane_free = self.lanes[lane].queued == [0; 3] && self.lane_has_room(lane);
        let gate_ok = priority != Priority::Low || !self.gate.is_closed(now);
        if !(lane_free && gate_ok) {
            return None;
        }
        let verdict = match key {
            None => Verdict::Allow,
            Some(k) => self.key_verdict(now, k)?,
        };
        if let Some(k) = key {
            self.keys[k].breaker.on_start(verdict);
        }
        let probe = verdict == Verdict::Probe;
        Some(Permit::issue(&self.ledger, work, lane, key, probe))
    }

    /// Whether [`Controller::try_admit`] (`lent` false) or [`Controller::admit_lent`] would
    /// give a permit now; nothing changes.
    pub fn could_admit(
        &self,
        now: u64,
        LaneId(lane): LaneId,
        key: Option<KeyId>,
        priority: Priority,
        lent: bool,
        key_covered: bool,
    ) -> bool {
        let lane = lane.min(self.lanes.len().saturating_sub(1));
        let key = key.map(|KeyId(k)| k).filter(|&k| k < self.keys.len());
        if priority == Priority::Low && self.gate.is_closed(now) {
            return false;
        }
        let lane_free = self.lanes[lane].queued == [0; 3] && self.lane_has_room(lane);
        if !(lent || lane_free) {
            return false;
        }
        match key {
            None => true,
            Some(k) if lent && key_covered => {
                !matches!(self.keys[k].breaker.check(now), Verdict::Refuse { .. })
            }
            Some(k) => self.key_verdict(now, k).is_some(),
        }
    }

    /// A permit for a task that runs on a lent slot: the slot's lane is already counted by the
    /// permit of the task lending it (waiting on its children, it makes no requests), so this
    /// one does not count the lane again. Its key still decides: the breaker must let it
    /// through, and the key's limit must have room — unless `key_covered`, when a lender on
    /// the same slot holds a count of that very key (counted once, like the lane). LOW work
    /// waits while the memory gate is closed. Its outcome feeds the key's breaker and the
    /// adaptive limit through [`Controller::complete`] like any permit's.
    pub fn admit_lent(
        &mut self,
        now: u64,
        task: TaskId,
        LaneId(lane): LaneId,
        key: Option<KeyId>,
        key_covered: bool,
        priority: Priority,
    ) -> Option<Permit> {
        self.collect_releases();
        let lane = lane.min(self.lanes.len().saturating_sub(1));
        let key = key.map(|KeyId(k)| k).filter(|&k| k < self.keys.len());
        if priority == Priority::Low && self.gate.is_closed(now) {
            return None;
        }
        let verdict = match key {
            None => Verdict::Allow,
            Some(k) if key_covered => match self.keys[k].breaker.check(now) {
                Verdict::Refuse { .. } => return None,
                v => v,
            },
            Some(k) => self.key_verdict(now, k)?,
        };
        if let Some(k) = key {
            self.keys[k].breaker.on_start(verdict);
        }
        let probe = verdict == Verdict::Probe;
        Some(Permit::issue_counted(
            &self.ledger,
            Work::Task(task),
            lane,
            key,
            probe,
            false,
            !key_covered,
        ))
    }
}
