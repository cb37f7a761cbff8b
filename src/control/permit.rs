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

use super::Work;

/// What the controller learns when a permit goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Release {
    pub(crate) key: Option<usize>,
    pub(crate) probe: bool,
    pub(crate) outcome_recorded: bool,
}

/// The shared count of live permits. Counts are cells sized once (every lane at construction,
/// room for [`MAX_KEYS`](super::MAX_KEYS) keys), so issuing and releasing touch no borrow flag.
#[derive(Debug)]
pub(crate) struct Ledger {
    lanes: Box<[Cell<u32>]>,
    keys: Box<[Cell<u32>]>,
    issued: Cell<u64>,
    released: Cell<u64>,
    /// Abandoned probes, for the controller to look at.
    releases: RefCell<Vec<Release>>,
    /// Whether `releases` has entries (read on every controller call without a borrow).
    pending: Cell<bool>,
}

impl Ledger {
    pub(crate) fn new(lanes: usize, keys: usize) -> Self {
        Ledger {
            lanes: (0..lanes).map(|_| Cell::new(0)).collect(),
            keys: (0..keys).map(|_| Cell::new(0)).collect(),
            issued: Cell::new(0),
            released: Cell::new(0),
            releases: RefCell::new(Vec::new()),
            pending: Cell::new(false),
        }
    }

    pub(crate) fn lane_in_use(&self, lane: usize) -> u32 {
        self.lanes.get(lane).map_or(0, Cell::get)
    }

    pub(crate) fn key_in_use(&self, key: usize) -> u32 {
        self.keys.get(key).map_or(0, Cell::get)
    }

    /// (issued, released) over the ledger's life.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (self.issued.get(), self.released.get())
    }

    /// Whether permits went that the controller must look at ([`Ledger::take_releases`]).
    pub(crate) fn has_releases(&self) -> bool {
        self.pending.get()
    }

    pub(crate) fn take_releases(&self) -> Vec<Release> {
        self.pending.set(false);
        std::mem::take(&mut self.releases.borrow_mut())
    }

    fn acquire(&self, lane: Option<usize>, key: Option<usize>) {
        if let Some(n) = lane.and_then(|l| self.lanes.get(l)) {
            n.set(n.get() + 1);
        }
        if let Some(n) = key.and_then(|k| self.keys.get(k)) {
            n.set(n.get() + 1);
        }
        self.issued.set(self.issued.get() + 1);
    }

    fn release(&self, lane: Option<usize>, key: Option<usize>, release: Release) {
        if let Some(n) = lane.and_then(|l| self.lanes.get(l)) {
            n.set(n.get().saturating_sub(1));
        }
        if let Some(n) = key.and_then(|k| self.keys.get(k)) {
            n.set(n.get().saturating_sub(1));
        }
        self.released.set(self.released.get() + 1);
        // Only an abandoned probe needs the controller's attention afterwards.
        if release.probe && !release.outcome_recorded {
            self.releases.borrow_mut().push(release);
            self.pending.set(true);
        }
    }
}

/// One task's slot. Dropping it releases the slot, exactly once.
#[derive(Debug)]
#[must_use = "dropping a permit releases its slot at once"]
pub struct Permit {
    work: Work,
    lane: usize,
    key: Option<usize>,
    probe: bool,
    outcome_recorded: bool,
    /// Whether it counts against its lane (false: it runs on a slot another task's permit
    /// holds — a lent slot — so the lane is counted once, by that permit).
    counts_lane: bool,
    /// Whether it counts against its key (false: a task on a lent slot whose lender's permit
    /// already counts that key, and makes no request while it waits).
    counts_key: bool,
    ledger: Rc<Ledger>,
}

impl Permit {
    pub(crate) fn issue(
        ledger: &Rc<Ledger>,
        work: Work,
        lane: usize,
        key: Option<usize>,
        probe: bool,
    ) -> Self {
        Self::issue_counted(ledger, work, lane, key, probe, true, true)
    }

    /// A permit that counts against its lane and key only where told (see `counts_lane`).
    pub(crate) fn issue_counted(
        ledger: &Rc<Ledger>,
        work: Work,
        lane: usize,
        key: Option<usize>,
        probe: bool,
        counts_lane: bool,
        counts_key: bool,
    ) -> Self {
        let counts_key = counts_key && key.is_some();
        ledger.acquire(counts_lane.then_some(lane), key.filter(|_| counts_key));
        Permit {
            work,
            lane,
            key,
            probe,
            outcome_recorded: false,
            counts_lane,
            counts_key,
            ledger: Rc::clone(ledger),
        }
    }

    /// Whether it counts against its lane (false on a lent slot).
    pub fn counts_lane(&self) -> bool {
        self.counts_lane
    }

    /// The key it counts against, if any.
    pub(crate) fn counted_key(&self) -> Option<usize> {
        self.key.filter(|_| self.counts_key)
    }

    /// The task or run slot holding the permit.
    pub fn work(&self) -> Work {
        self.work
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
        self.ledger.release(
            self.counts_lane.then_some(self.lane),
            self.counted_key(),
            release,
        );
    }
}
