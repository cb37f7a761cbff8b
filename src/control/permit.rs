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

use std::cell::{Cell, RefCell};
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
}

/// The shared count of live permits.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    counts: RefCell<Counts>,
    /// Whether `releases` has entries (read on every controller call without a borrow).
    pending: Cell<bool>,
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

    /// Whether permits went that the controller must look at ([`Ledger::take_releases`]).
    pub(crate) fn has_releases(&self) -> bool {
        self.pending.get()
    }

    pub(crate) fn take_releases(&self) -> Vec<Release> {
        self.pending.set(false);
        std::mem::take(&mut self.counts.borrow_mut().releases)
    }

    fn acquire(&self, lane: usize, key: Option<usize>) {
        let mut c = self.counts.borrow_mut();
        if let Some(n) = c.lanes.get_mut(lane) {
            *n += 1;
        }
        if let Some(n) = key.and_then(|k| c.keys.get_mut(k)) {
            *n += 1;
        }
        c.issued += 1;
    }

    fn release(&self, lane: usize, release: Release) {
        let mut c = self.counts.borrow_mut();
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
            self.pending.set(true);
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
        ledger.acquire(lane, key);
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
        self.ledger.release(self.lane, release);
    }
}
