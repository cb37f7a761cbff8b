//! Admission for the executor's slots: a child taken from a deque by an idle slot (a lane
//! permit, only when nothing waits in the controller's queue for that lane) or by a lent slot
//! (no second lane count; its key still admitted). See `engine/lifecycle/nested.rs`.

use super::{Controller, KeyId, LaneId, Permit, Verdict};
use crate::ids::{Priority, Work};

impl Controller {
    /// A permit for `task` now, without queuing it, when `submit_or_admit` would admit it at
    /// once: nothing waits in its lane, the lane and the key (if limited) have room, the
    /// breaker lets it through and, for LOW work, the gate is open. `None` otherwise. The
    /// executor's idle slots take their deques' work through it, so queued work keeps its
    /// turn before deque work of the same lane. Always inlined: on the run path (through
    /// `submit_or_admit`) a call that returns a permit through memory costs more than the
    /// check itself (P6).
    #[inline(always)]
    pub fn try_admit(
        &mut self,
        now: u64,
        work: Work,
        lane_id: LaneId,
        key_id: Option<KeyId>,
        priority: Priority,
    ) -> Option<Permit> {
        self.collect_releases();
        let (lane, key) = self.resolve(lane_id, key_id);
        let verdict = self.slot_verdict(now, lane, key, priority, false, false)?;
        if let Some(k) = key {
            self.keys[k].breaker.on_start(verdict);
        }
        let probe = verdict == Verdict::Probe;
        Some(Permit::issue(&self.ledger, work, lane, key, probe))
    }

    /// The refusals [`Controller::submit_to`] would make for such work — `MemoryPressure` for
    /// LOW work while the gate is closed, `BreakerOpen` for `fail_fast` work while its key's
    /// breaker refuses — queuing nothing (a run child queued in a deque instead).
    pub fn check_to(
        &self,
        now: u64,
        key_id: Option<KeyId>,
        priority: Priority,
        fail_fast: bool,
    ) -> Result<(), crate::error::Error> {
        self.check_pressure(now, priority)?;
        let key = key_id.map(|KeyId(k)| k).filter(|&k| k < self.keys.len());
        if let (Some(k), true) = (key, fail_fast) {
            if let super::Verdict::Refuse { retry_at } = self.keys[k].breaker.check(now) {
                return Err(crate::error::Error::BreakerOpen {
                    key: self.keys[k].name.clone(),
                    retry_at_ms: retry_at,
                });
            }
        }
        Ok(())
    }

    /// Whether [`Controller::try_admit`] (`lent` false) or [`Controller::admit_lent`] would
    /// give a permit now; nothing changes.
    pub fn could_admit(
        &self,
        now: u64,
        lane_id: LaneId,
        key_id: Option<KeyId>,
        priority: Priority,
        lent: bool,
        key_covered: bool,
    ) -> bool {
        let (lane, key) = self.resolve(lane_id, key_id);
        self.slot_verdict(now, lane, key, priority, lent, key_covered)
            .is_some()
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
        work: Work,
        lane_id: LaneId,
        key_id: Option<KeyId>,
        key_covered: bool,
        priority: Priority,
    ) -> Option<Permit> {
        self.collect_releases();
        let (lane, key) = self.resolve(lane_id, key_id);
        let verdict = self.slot_verdict(now, lane, key, priority, true, key_covered)?;
        if let Some(k) = key {
            self.keys[k].breaker.on_start(verdict);
        }
        let probe = verdict == Verdict::Probe;
        Some(Permit::issue_counted(
            &self.ledger,
            work,
            lane,
            key,
            probe,
            false,
            !key_covered,
        ))
    }

    /// The one rule behind the three above, changing nothing: `None` when the work may not
    /// start now, else the key's breaker verdict (`Allow` without a key). LOW work waits while
    /// the gate is closed. On its own slot (`lent` false) the lane must have room and nothing
    /// queued; on a lent slot the lane is already counted. A limited key must have room unless
    /// `key_covered` (a lender on the slot counts that key), when only its breaker decides.
    #[inline(always)]
    fn slot_verdict(
        &self,
        now: u64,
        lane: usize,
        key: Option<usize>,
        priority: Priority,
        lent: bool,
        key_covered: bool,
    ) -> Option<Verdict> {
        if priority == Priority::Low && self.gate.is_closed(now) {
            return None;
        }
        let lane_free = self.lanes[lane].queued == [0; 3] && self.lane_has_room(lane);
        if !(lent || lane_free) {
            return None;
        }
        match key {
            None => Some(Verdict::Allow),
            Some(k) if lent && key_covered => match self.keys[k].breaker.check(now) {
                Verdict::Refuse { .. } => None,
                v => Some(v),
            },
            Some(k) => self.key_verdict(now, k),
        }
    }
}
