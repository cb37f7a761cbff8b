//! The executor: cooperative, single-threaded, with one worker slot per unit of lane capacity.
//!
//! Jobs are futures kept in a `Slab`; a job's waker carries its [`JobId`] (slab index and
//! generation) and pushes it onto a ready list — no `Rc` cycles, no closures per wake. Each
//! slot has a local deque ([`Lanes`]):
//!
//! - the slot's owner pushes and pops at the **back**: a job woken or followed up runs next in
//!   the slot (and so the session) that ran it last — LIFO keeps work warm;
//! - a slot with nothing of its own **steals from the front** of the fullest deque of its lane:
//!   the oldest waiting work moves first, and no slot idles while compatible work waits.
//!
//! [`Executor::run_until_stalled`] polls ready jobs, one per slot in round-robin turns, until
//! nothing is ready or the budget is spent, so the host can yield to its event loop. There are
//! no timers inside.
//!
//! Invariants:
//! 1. A job is in at most one deque, and only while it is ready (its `queued` flag).
//! 2. A job runs only in slots of its own lane.
//! 3. A waker whose job finished (or whose slab slot was reused) wakes nothing.
//! 4. In every turn, a slot polls a job if any deque of its lane holds one.

mod lanes;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use slab::Slab;

pub(crate) use self::lanes::{Lanes, Steal};
use crate::error::Error;

/// A job's identity: slab index plus generation, so a stale id never names a new job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct JobId {
    index: u32,
    generation: u32,
}

type Job = Pin<Box<dyn Future<Output = ()>>>;

struct Entry {
    job: Job,
    generation: u32,
    lane: usize,
    /// The slot that ran it last (or was assigned at spawn): where it returns when woken.
    home: usize,
    queued: bool,
}

/// Jobs woken since the last turn.
#[derive(Default)]
struct Ready {
    jobs: Mutex<Vec<JobId>>,
}

struct JobWaker {
    job: JobId,
    ready: Arc<Ready>,
}

impl Wake for JobWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // A poisoned lock only means a panic elsewhere; the list itself is still sound.
        let mut jobs = self.ready.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.push(self.job);
    }
}

/// What one call to [`Executor::run_until_stalled`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RunReport {
    /// Polls made.
    pub polled: usize,
    /// Jobs that finished.
    pub finished: usize,
    /// Polls of a job taken from another slot's deque.
    pub stolen: usize,
    /// Whether ready work remains (the budget ran out first).
    pub more: bool,
}

/// Counters over the executor's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ExecStats {
    /// Slot turns in which the slot polled a job.
    pub busy_turns: u64,
    /// Slot turns in which the slot had nothing to do although its lane had ready work.
    /// Invariant 4 keeps this at zero.
    pub idle_turns_with_work: u64,
    /// Polls of stolen jobs.
    pub steals: u64,
}

/// The executor. See the module docs.
pub(crate) struct Executor {
    jobs: Slab<Entry>,
    lanes: Lanes<JobId>,
    lane_names: Vec<String>,
    ready: Arc<Ready>,
    cursor: usize,
    stats: ExecStats,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("jobs", &self.jobs.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl Executor {
    /// An executor with `capacity` slots per lane, e.g. `[("worker", 8), ("planner", 2)]`.
    /// A lane of capacity 0 gets one slot (it could not run anything otherwise).
    pub(crate) fn new<'a>(lanes: impl IntoIterator<Item = (&'a str, u32)>) -> Self {
        let (names, caps): (Vec<String>, Vec<usize>) = lanes
            .into_iter()
            .map(|(n, c)| (n.to_owned(), c.max(1) as usize))
            .unzip();
        Executor {
            jobs: Slab::new(),
            lanes: Lanes::new(&caps),
            lane_names: names,
            ready: Arc::new(Ready::default()),
            cursor: 0,
            stats: ExecStats::default(),
        }
    }

    /// Spawns `job` in `lane` on its least-loaded slot.
    pub(crate) fn spawn(
        &mut self,
        lane: &str,
        job: impl Future<Output = ()> + 'static,
    ) -> Result<JobId, Error> {
        let lane = self.lane(lane)?;
        let slot = self.lanes.least_loaded(lane);
        Ok(self.insert(lane, slot, Box::pin(job)))
    }

    /// Spawns `job` as a follow-up of `after`: in the slot that ran `after` last, at the back of
    /// its deque, so it runs next there (and so in the same warm session). Falls back to
    /// [`Executor::spawn`] when `after` is gone.
    pub(crate) fn spawn_after(
        &mut self,
        after: JobId,
        job: impl Future<Output = ()> + 'static,
    ) -> Result<JobId, Error> {
        match self.entry(after) {
            Some(e) => {
                let (lane, slot) = (e.lane, e.home);
                Ok(self.insert(lane, slot, Box::pin(job)))
            }
            None => Err(Error::input("after", "no such job")),
        }
    }

    /// Whether `job` is still alive (not finished).
    pub(crate) fn contains(&self, job: JobId) -> bool {
        self.entry(job).is_some()
    }

    /// The slot that ran `job` last.
    pub(crate) fn home_of(&self, job: JobId) -> Option<usize> {
        self.entry(job).map(|e| e.home)
    }

    /// Whether no job is alive.
    pub(crate) fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Counters.
    pub(crate) fn stats(&self) -> ExecStats {
        self.stats
    }

    /// Polls one ready job, if there is one. Returns whether it polled.
    pub(crate) fn try_run_one(&mut self) -> bool {
        self.run_until_stalled(1).polled == 1
    }

    /// Polls ready jobs until none is ready or `budget` polls were made.
    pub(crate) fn run_until_stalled(&mut self, budget: usize) -> RunReport {
        let mut report = RunReport::default();
        loop {
            self.collect_woken();
            if report.polled >= budget {
                report.more = self.lanes.total() > 0;
                return report;
            }
            // One turn: every slot, starting after the last one served, takes one job.
            let slots = self.lanes.slot_count();
            let mut polled_this_turn = false;
            for step in 0..slots {
                if report.polled >= budget {
                    break;
                }
                let slot = (self.cursor + step) % slots;
                let Some((job, how)) = self.lanes.take(slot) else {
                    if self.lanes.lane_len(self.lanes.lane_of(slot)) > 0 {
                        self.stats.idle_turns_with_work += 1;
                    }
                    continue;
                };
                self.stats.busy_turns += 1;
                if how == Steal::Stolen {
                    self.stats.steals += 1;
                    report.stolen += 1;
                }
                report.polled += 1;
                polled_this_turn = true;
                if self.poll(job, slot) {
                    report.finished += 1;
                }
            }
            self.cursor = (self.cursor + 1) % slots.max(1);
            if !polled_this_turn && self.ready_is_empty() {
                report.more = false;
                return report;
            }
        }
    }

    fn lane(&self, name: &str) -> Result<usize, Error> {
        self.lane_names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::input("lane", format!("no lane `{name}`")))
    }

    fn entry(&self, job: JobId) -> Option<&Entry> {
        self.jobs
            .get(job.index as usize)
            .filter(|e| e.generation == job.generation)
    }

    fn insert(&mut self, lane: usize, slot: usize, job: Job) -> JobId {
        let vacant = self.jobs.vacant_entry();
        let index = vacant.key() as u32;
        // Generations count per slab index so a reused index gets a fresh id.
        let generation = GENERATIONS.with(|g| g.next());
        let id = JobId { index, generation };
        vacant.insert(Entry {
            job,
            generation,
            lane,
            home: slot,
            queued: true,
        });
        self.lanes.push_back(slot, id);
        id
    }

    /// Polls `job` in `slot`; returns whether it finished.
    fn poll(&mut self, job: JobId, slot: usize) -> bool {
        let Some(entry) = self
            .jobs
            .get_mut(job.index as usize)
            .filter(|e| e.generation == job.generation)
        else {
            return false;
        };
        entry.queued = false;
        entry.home = slot;
        let waker = Waker::from(Arc::new(JobWaker {
            job,
            ready: Arc::clone(&self.ready),
        }));
        let mut cx = Context::from_waker(&waker);
        if entry.job.as_mut().poll(&mut cx) == Poll::Ready(()) {
            self.jobs.remove(job.index as usize);
            true
        } else {
            false
        }
    }

    /// Moves woken jobs to the back of their home slot's deque (invariant 1 and 3).
    fn collect_woken(&mut self) {
        let woken = std::mem::take(&mut *self.ready.jobs.lock().unwrap_or_else(|e| e.into_inner()));
        for job in woken {
            if let Some(entry) = self
                .jobs
                .get_mut(job.index as usize)
                .filter(|e| e.generation == job.generation)
            {
                if !entry.queued {
                    entry.queued = true;
                    self.lanes.push_back(entry.home, job);
                }
            }
        }
    }

    fn ready_is_empty(&self) -> bool {
        self.ready.jobs.lock().map_or(true, |j| j.is_empty())
    }
}

/// A process-wide generation counter: ids differ across executors and across slab reuse.
struct Generations(std::cell::Cell<u32>);

impl Generations {
    fn next(&self) -> u32 {
        let g = self.0.get().wrapping_add(1);
        self.0.set(g);
        g
    }
}

thread_local! {
    static GENERATIONS: Generations = const { Generations(std::cell::Cell::new(0)) };
}

#[cfg(test)]
mod tests;
