//! Permits: the right of one task to hold one slot of its lane (and of its key, when the key
//! is limited).
//!
//! A [`Permit`] is created only by the controller's admission and released only by its `Drop`:
//! it is neither `Clone` nor `Copy`, and releasing consumes it, so a double or stray release
//! cannot be written. Whether the task succeeded, failed, timed out, was cancelled while running,
//! or the permit was simply dropped, the slot comes back exactly once.
//!
//! Invariants:
//! 1. `in_use` of a lane (key) equals the number of live permits for it.
//! 2. `issued − released` equals the number of live permits.
//! 3. A dropped permit is reported to the controller (`Release`) so a probe that ended without
//!    an outcome frees the breaker for the next probe.

use rustc_hash::FxHashSet;
use std::cell::RefCell;
use std::rc::Rc;

use crate::ids::TaskId;

/// What the controller learns when a permit goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Release {
    pub(crate) key: Option<usize>,
    pub(crate) probe: bool,
    pub(crate) outcome_recorded: bool,
}

#[derive(Debug, Default)]
struct Counts {
    lanes: Vec<u32>,
    keys: Vec<u32>,
    issued: u64,
    released: u64,
    releases: Vec<Release>,
    live: FxHashSet<TaskId>,
}

/// The shared count of live permits.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    counts: RefCell<Counts>,
}

impl Ledger {
    pub(crate) fn grow(&self, lanes: usize, keys: usize) {
        let mut c = self.counts.borrow_mut();
        if c.lanes.len() < lanes {
            c.lanes.resize(lanes, 0);
        }
        if c.keys.len() < keys {
            c.keys.resize(keys, 0);
        }
    }

    pub(crate) fn lane_in_use(&self, lane: usize) -> u32 {
        self.counts.borrow().lanes.get(lane).copied().unwrap_or(0)
    }

    pub(crate) fn key_in_use(&self, key: usize) -> u32 {
        self.counts.borrow().keys.get(key).copied().unwrap_or(0)
    }

    /// (issued, released) over the ledger's life.
    pub(crate) fn totals(&self) -> (u64, u64) {
        let c = self.counts.borrow();
        (c.issued, c.released)
    }

    pub(crate) fn take_releases(&self) -> Vec<Release> {
        let mut c = self.counts.borrow_mut();
        if c.releases.is_empty() {
            Vec::new()
        } else {
            std::mem::take(&mut c.releases)
        }
    }

    /// Whether `task` holds a live permit.
    pub(crate) fn is_live(&self, task: TaskId) -> bool {
        self.counts.borrow().live.contains(&task)
    }

    fn acquire(&self, task: TaskId, lane: usize, key: Option<usize>) {
        let mut c = self.counts.borrow_mut();
        c.live.insert(task);
        if let Some(n) = c.lanes.get_mut(lane) {
            *n += 1;
        }
        if let Some(n) = key.and_then(|k| c.keys.get_mut(k)) {
            *n += 1;
        }
        c.issued += 1;
    }

    fn release(&self, task: TaskId, lane: usize, release: Release) {
        let mut c = self.counts.borrow_mut();
        c.live.remove(&task);
        if let Some(n) = c.lanes.get_mut(lane) {
            *n = n.saturating_sub(1);
        }
        if let Some(n) = release.key.and_then(|k| c.keys.get_mut(k)) {
            *n = n.saturating_sub(1);
        }
        c.released += 1;
        // Only an abandoned probe needs the controller's attention afterwards.
        if release.probe && !release.outcome_recorded {
            c.releases.push(release);
        }
    }
}

/// One task's slot. Dropping it releases the slot, exactly once.
#[derive(Debug)]
#[must_use = "dropping a permit releases its slot at once"]
pub struct Permit {
    task: TaskId,
    lane: usize,
    key: Option<usize>,
    probe: bool,
    outcome_recorded: bool,
    ledger: Rc<Ledger>,
}

impl Permit {
    pub(crate) fn issue(
        ledger: &Rc<Ledger>,
        task: TaskId,
        lane: usize,
        key: Option<usize>,
        probe: bool,
    ) -> Self {
        ledger.acquire(task, lane, key);
        Permit {
            task,
            lane,
            key,
            probe,
            outcome_recorded: false,
            ledger: Rc::clone(ledger),
        }
    }

    /// The task holding the permit.
    pub fn task(&self) -> TaskId {
        self.task
    }

    /// Whether the task was admitted as its key's half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    pub(crate) fn lane(&self) -> usize {
        self.lane
    }

    pub(crate) fn key(&self) -> Option<usize> {
        self.key
    }

    pub(crate) fn mark_recorded(&mut self) {
        self.outcome_recorded = true;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let release = Release {
            key: self.key,
            probe: self.probe,
            outcome_recorded: self.outcome_recorded,
        };
        self.ledger.release(self.task, self.lane, release);
    }
}
