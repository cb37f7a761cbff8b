//! What the engine's driver (the bindings; a native test) reads and feeds besides submissions,
//! host answers and time: breaker and limit changes as typed events, the run slots' reports
//! and the timer they need, memory readings (when the engine wants one), calls guarded by a
//! breaker alone, the journal (head, export, verification), tasks and the figures `stats`
//! shows.
//!
//! The driver only translates: every decision — whether a breaker or a limit changed, whether
//! a task settled, when the run path needs the timer, when the memory gate needs a reading,
//! what an open breaker's refusal says — is made here, on enums; the driver turns the results
//! into JavaScript values and calls. So the driver never reaches through the engine into its
//! parts (controller, task table, journal).

use crate::control::{BreakerEvent, ControlStats, KeyId, LimitChange, Outcome, Verdict};
use crate::error::Error;
use crate::host::MemoryReading;
use crate::ids::{Priority, RunId, TaskId};
use crate::sessions::PoolCounters;
use crate::store::Head;

use super::{Engine, RunRequest};
use crate::engine::task::{TaskPhase, TaskRecord, TaskSpec};
use crate::engine::tasks::Counts;

/// The journal's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalStats {
    /// The last record's sequence number.
    pub seq: u64,
    /// Records kept (from the last checkpoint on).
    pub records: usize,
    /// Their bytes.
    pub bytes: u64,
    /// The fencing epoch of this engine.
    pub epoch: u64,
}

/// The engine's figures at one moment (what `stats()` shows, before naming).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineStats {
    /// Lanes, keys (with their breakers) and the memory gate.
    pub control: ControlStats,
    /// Pool sessions per state: warm, in use, parked, retiring, deleting.
    pub pool: (usize, usize, usize, usize, usize),
    /// The pool's counters over its life.
    pub pool_counters: PoolCounters,
    /// Tasks per state (by `TaskPhase` discriminant) and forgotten.
    pub tasks: Counts,
    /// Run slots waiting and running.
    pub runs: (usize, usize),
    /// Host calls pending.
    pub pending_calls: usize,
    /// The journal.
    pub journal: JournalStats,
    /// Bytes the task table and journal hold, and the budget new work is refused past.
    pub footprint: (u64, u64),
}

impl Engine {
    /// The keys whose breaker changed phase since the last call (a new key's only when it is
    /// not closed), in first-use order, and whether any breaker is not closed now (then keyed
    /// run work must read the clock: a closed breaker admits whatever the time).
    pub fn take_breaker_events(&mut self) -> (Vec<BreakerEvent>, bool) {
        self.controller.take_breaker_changes()
    }

    /// The effective limits (of lanes and keys) that changed since the last call, oldest first,
    /// each with its value before and after and its cause (see `control/limits.rs`).
    pub fn take_limit_events(&mut self) -> Vec<LimitChange> {
        self.controller.take_limit_changes()
    }

    /// Takes the run slots reported expired since the last call, each with its deadline (ms).
    /// Waiting ones stay held until [`Engine::release_run_expired`] gets them back.
    pub fn take_run_expired(&mut self) -> Vec<(RunId, u64)> {
        self.runs.take_expired()
    }

    /// The expiries in `delivered` reached their callers: the held slots' indices may be used
    /// again.
    pub fn release_run_expired(&mut self, delivered: &[(RunId, u64)]) {
        self.runs.release_expired(delivered);
    }

    /// Ready run slots not yet drained ([`Engine::drain_run_ready`]).
    pub fn run_ready_len(&self) -> usize {
        self.runs.ready_len()
    }

    /// When the timer must fire at the latest after `request` was submitted: the nearest run
    /// deadline, when it has one; and, when it waits (`waits`) on time rather than on a
    /// release — keyed work on a breaker's probe time, LOW work on the memory gate's reading
    /// going stale — the controller's next moment. `None`: no timer needed for it (other
    /// waiting work waits for a release, which pumps).
    #[inline]
    pub fn run_timer(&self, now: u64, request: &RunRequest, waits: bool) -> Option<u64> {
        let timed_wait = waits && (request.key.is_some() || request.priority == Priority::Low);
        if request.deadline_ms.is_none() && !timed_wait {
            return None;
        }
        self.run_timer_at(now, timed_wait)
    }

    #[inline(never)]
    fn run_timer_at(&self, now: u64, timed_wait: bool) -> Option<u64> {
        let control = if timed_wait {
            self.controller.next_deadline(now)
        } else {
            None
        };
        self.runs.next_deadline().into_iter().chain(control).min()
    }

    /// Takes a memory reading made at `now` (the memory gate's input).
    pub fn observe_memory(&mut self, now: u64, reading: MemoryReading) {
        self.controller.observe_memory(now, reading);
    }

    /// Whether the engine wants a host memory reading before the call the driver is about to
    /// make at `now`. The one rule for memory readings, stated here: **a fresh reading (at
    /// most one per ms) before any decision that could admit LOW work.** Every call that moves the
    /// engine can admit LOW work while some is pending — [`Engine::tick`] (a LOW task sent
    /// again after a 429, a retry, or a refusal of the gate goes back in line there),
    /// [`Engine::on_answer`], [`Engine::on_event`], [`Engine::cancel`], [`Engine::join`],
    /// [`Engine::run_end`] and every submission (a freed slot admits queued work, a success unblocks dependents) —
    /// so the driver asks before each, reads the host's memory when told to, and feeds it with
    /// [`Engine::observe_memory`] first ([`Engine::restore_fenced`] takes a reading for the
    /// restored LOW work it queues). LOW work is pending while a LOW task is queued
    /// (accepted, not admitted: in line, on a dependency, in a deque, or waiting to be sent
    /// again) or a LOW run task waits: two counts, so with none the answer is two loads.
    #[inline]
    pub fn memory_due(&self, now: u64) -> bool {
        self.memory_due_with(now, false)
    }

    /// [`Engine::memory_due`] before submitting `specs` at `now`: also when one of them is LOW
    /// work (the gate decides whether it is refused).
    pub fn memory_due_for(&self, now: u64, specs: &[TaskSpec]) -> bool {
        let low = specs.iter().any(|s| s.priority == Priority::Low);
        self.memory_due_with(now, low)
    }

    /// [`Engine::memory_due`] before submitting the run task `request` at `now`: also when it
    /// is LOW work. (Any submission may admit LOW work waiting in its lane.)
    #[inline]
    pub fn run_memory_due(&self, now: u64, request: &RunRequest) -> bool {
        self.memory_due_with(now, request.priority == Priority::Low)
    }

    /// Whether LOW work is accepted and not admitted (see [`Engine::memory_due`]). The run
    /// path asks this before [`Engine::run_memory_due`]; it passes no fresh time for most
    /// work and reads no clock per run (a host call costs about what the rest of it does), so there
    /// a reading "once per ms" is once per clock reading the engine has seen, and the timer,
    /// which reads the clock, refreshes both while LOW work waits.
    #[inline]
    pub fn low_pending(&self) -> bool {
        self.tasks.low_queued() != 0 || self.controller.low_waiting()
    }

    /// The rule, with `low` saying the call itself brings LOW work.
    #[inline]
    fn memory_due_with(&self, now: u64, low: bool) -> bool {
        let pending = low || self.tasks.low_queued() != 0;
        self.controller.memory_due(now, pending)
    }

    /// A call guarded by `key`'s breaker alone (no lane, no slot): whether it may go at `now` —
    /// `Ok(false)`, or `Ok(true)` as the half-open probe (end it with `probe = true`) — or
    /// `BREAKER_OPEN`. Its outcome counts like the key's tasks'.
    pub fn breaker_enter(&mut self, now: u64, key: KeyId) -> Result<bool, Error> {
        match self.controller.breaker_enter(now, key) {
            Verdict::Allow => Ok(false),
            Verdict::Probe => Ok(true),
            Verdict::Refuse { retry_at } => Err(Error::BreakerOpen {
                key: self.controller.key_name(key).to_owned(),
                retry_at_ms: retry_at,
            }),
        }
    }

    /// How a call let through by [`Engine::breaker_enter`] ended.
    pub fn breaker_exit(&mut self, now: u64, key: KeyId, probe: bool, outcome: Outcome) {
        self.controller.breaker_exit(now, key, probe, outcome);
    }

    /// The task `task` names (its prompt and result text included), or why there is none
    /// (`UNKNOWN_TASK`, `TASK_FORGOTTEN`).
    pub fn task(&self, task: TaskId) -> Result<TaskRecord, Error> {
        self.tasks
            .get_brief(task)
            .ok_or_else(|| self.tasks.missing(task))
    }

    /// The tasks in id order, each passed to `each`: the open ones only when `open` is set or
    /// `phase` is an open phase (read from the open set, no scan of the settled), else all
    /// held; filtered by `phase` and `agent` when given.
    pub fn task_list(
        &self,
        open: bool,
        phase: Option<TaskPhase>,
        agent: Option<&str>,
        mut each: impl FnMut(&TaskRecord),
    ) {
        let records = if open || phase.is_some_and(|p| !p.is_settled()) {
            self.tasks.open()
        } else {
            self.tasks.all_brief()
        };
        records
            .iter()
            .filter(|r| phase.is_none_or(|p| r.state.phase() == p))
            .filter(|r| agent.is_none_or(|a| r.spec.agent == a))
            .for_each(&mut each);
    }

    /// The figures at `now` (no host reading is taken here: feed one first with
    /// [`Engine::observe_memory`]).
    pub fn stats(&self, now: u64) -> EngineStats {
        EngineStats {
            control: self.controller.stats(now),
            pool: self.pool.census(),
            pool_counters: self.pool.counters(),
            tasks: self.tasks.counts(),
            runs: self.runs.counts(),
            pending_calls: self.pending_calls(),
            journal: JournalStats {
                seq: self.journal_head().seq,
                records: self.tasks.store().journal().len(),
                bytes: self.tasks.store().journal().bytes(),
                epoch: self.tasks.epoch(),
            },
            footprint: (self.tasks.footprint(), self.tasks.budget()),
        }
    }

    /// The journal's last record: what the host keeps outside the module to verify against.
    pub fn journal_head(&self) -> Head {
        self.tasks.store().journal().head()
    }

    /// This engine's fencing epoch (see `TaskTable::epoch`).
    pub fn epoch(&self) -> u64 {
        self.tasks.epoch()
    }

    /// The name of this engine's journal, which engines restored from it share.
    pub fn origin(&self) -> [u8; 16] {
        self.tasks.origin()
    }

    /// The byte length of the journal's export from `from_seq` (see
    /// [`Engine::export_journal`]).
    pub fn journal_export_len(&self, from_seq: u64) -> u64 {
        self.tasks.store().journal().export_len(from_seq)
    }

    /// The journal's frames with `seq ≥ from_seq`, piece by piece into `out` (no copy of the
    /// whole journal); returns how many frames.
    pub fn export_journal(&self, from_seq: u64, out: impl FnMut(&[u8])) -> u64 {
        self.tasks.store().journal().export_pieces(from_seq, out)
    }

    /// Re-verifies the journal kept in memory, every hash from its anchor to the head, in
    /// place: `JOURNAL_INVALID` on a mismatch.
    pub fn verify_journal(&self) -> Result<(), Error> {
        self.tasks.store().journal().verify_kept()
    }
}
