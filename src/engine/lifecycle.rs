//! The engine: sub-agent tasks from submission to settlement, over the host.
//!
//! It joins the pieces: the [`TaskTable`] (one journaled commit per transition), the
//! [`Controller`] (admission before any session exists), the session [`Pool`], and the host,
//! which it drives sans-I/O like the rest of the core: requests go to an outbox
//! ([`Engine::take_requests`]); answers come back by call id ([`Engine::on_answer`]),
//! bus events by session ([`Engine::on_event`]), and time by [`Engine::tick`], which
//! the host calls at [`Engine::next_deadline`].
//!
//! **Completion rule** (from the real server): a task is done only when the host reported idle
//! for its session after it was seen busy — or, with no busy seen, once `GRACE_MS` passed since
//! dispatch (the status map is empty for seconds after a prompt, exactly as when done) — and the
//! last assistant message is this turn's and final (completed, not stopped for tool calls).
//! It is this turn's unless it is the reply that ended the session's previous successful turn
//! (a follow-up may continue its predecessor's session): that reply's stamp as the server wrote
//! it is kept by the pool and journaled with the success, so neither clock steps nor a restore
//! can make an earlier turn's reply pass for this one's, or this one's look stale. Times are
//! compared only for a follow-up restored from a journal written before replies were recorded
//! (within `liveness.skewMs`); there the host's `now()` must be on the clock OpenCode stamps
//! messages with (epoch milliseconds). Its error, if any, classifies the outcome. Idles come twice after an abort or an
//! error: a second one finds the check already pending or the task settled, and does nothing.
//!
//! **Failures.** A prompt that ends in `APIError` is settled as failed: OpenCode already retried
//! it, so it is re-sent only when the task asked for `retries` (one retry layer). `retry`
//! statuses are a signal for the adaptive limit, never a failure. Session creation, which
//! OpenCode does not retry, is retried here with full-jitter backoff.
//!
//! **Prewarming.** After each admission, while work for the same lane is still queued, the
//! engine creates warm sessions for that task's (agent, parent) — at most the pool's
//! `warm_per_agent`, counting those already warm or being created, and never more than the
//! queued work — so the next admission finds an empty session ready instead of waiting for
//! `createSession`. Warm sessions are journaled like any other (a restore retires them), and
//! the pool retires those unused for 5 minutes. A lane shared by several agents counts all its
//! queued work, so it may warm a session for an agent that does not come; it is retired idle.
//!
//! Invariants:
//! 1. Every accepted task is in exactly one state; the permit is released once, by the move
//!    into a settled state (or back to the queue for a retry).
//! 2. A session is prompted only when the pool says it is free; it is never deleted while busy
//!    or within the quiet period (the pool decides).
//! 3. A dependent starts only after all its dependencies succeeded; a failed or cancelled
//!    dependency cancels it, with that reason.

use rustc_hash::FxHashMap;

use crate::config::{Config, LivenessConfig};
use crate::control::{Controller, KeyId, LaneId, Outcome, Permit, Request, Ticket, Work};
use crate::error::Error;
use crate::host::{
    CallId, FailureClass, HostEvent, HostOp, HostOutcome, HostReply, HostRequest, SessionHealth,
    SessionId,
};
use crate::ids::{Priority, TaskId};
use crate::sessions::{Acquired, Pool, PoolConfig};

use super::runs::Runs;
use super::task::{TaskPhase, TaskSpec, TaskState};
use super::tasks::TaskTable;

/// With no busy seen, an idle counts only this long after dispatch, ms.
pub(crate) const GRACE_MS: u64 = 5_000;
/// How often a dispatched task with no busy seen is checked, ms.
pub(crate) const POLL_MS: u64 = 5_000;
/// Attempts at creating a session before the task fails.
pub(crate) const CREATE_ATTEMPTS: u32 = 3;
/// How soon a task refused by the gate or a breaker after acceptance asks again, ms.
pub(crate) const REQUEUE_MS: u64 = 1_000;
/// Re-dispatches of a rate-limited prompt a task gets by default (its `retries`, if more).
/// OpenCode gives up on a 429 after ~6 s of its own retries; each re-dispatch covers that much
/// more of a storm, after the wait the provider asked for.
pub(crate) const RATE_LIMIT_REDISPATCHES: u32 = 3;
/// Full-jitter backoff base and cap, ms.
pub(crate) const BACKOFF_BASE_MS: u64 = 2_000;
/// See [`BACKOFF_BASE_MS`].
pub(crate) const BACKOFF_CAP_MS: u64 = 60_000;

/// What a host call was for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CallFor {
    Create(TaskId),
    Warm(String, Option<SessionId>),
    Prompt(TaskId),
    Abort(Option<TaskId>, SessionId),
    LastMessage(TaskId),
    Delete(SessionId),
    Check(SessionId),
    /// The liveness probe, with what it asked about (see `liveness.rs`).
    Statuses {
        tasks: Vec<(TaskId, SessionId)>,
        sessions: Vec<SessionId>,
    },
    /// A `createSession` that timed out: nobody waits for it, but a session it still makes is
    /// the engine's, and is retired (aborted, deleted after quiet) instead of left behind.
    LateCreate(String, Option<SessionId>),
}

/// What the engine keeps for a task that is not settled.
#[derive(Debug, Default)]
struct Live {
    ticket: Option<Ticket>,
    permit: Option<Permit>,
    seen_busy: bool,
    check_pending: bool,
    next_poll: Option<u64>,
    deadline_at: Option<u64>,
    retry_at: Option<u64>,
    create_attempts: u32,
    /// When the prompt was sent: the earliest a reply message can be stamped (the server may
    /// create it before its answer to the prompt reaches us).
    sent_at: Option<u64>,
    cancelling: Option<String>,
    /// A cancelled task settles `cancelled` by then, whether its abort answers or not.
    cancel_by: Option<u64>,
    blocked_on_deps: bool,
    /// When its session was last found idle (an idle event, or absent from the status map)
    /// since it was last seen busy.
    idle_at: Option<u64>,
    /// When a check first found its turn over (idle) with no final reply.
    unfinished_since: Option<u64>,
    /// It was restored from the journal: which session it runs in is not known here.
    restored: bool,
    /// Attempts that ended rate limited and were re-dispatched (kept across attempts).
    rate_limited: u32,
    /// Its slot, deque and joins (see `nested.rs`).
    place: nested::Place,
}

/// A task's transition, for listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskEvent {
    /// The task.
    pub task: TaskId,
    /// Its new state.
    pub state: TaskPhase,
}

/// The engine core. See the module docs.
#[derive(Debug)]
pub struct Engine {
    tasks: TaskTable,
    controller: Controller,
    pool: Pool,
    live: FxHashMap<TaskId, Live>,
    calls: FxHashMap<CallId, CallFor>,
    by_session: FxHashMap<SessionId, TaskId>,
    /// Open tasks waiting on each task, so a settlement finds its dependents without a scan.
    dependents: FxHashMap<TaskId, Vec<TaskId>>,
    outbox: Vec<HostRequest>,
    events: Vec<TaskEvent>,
    next_call: u32,
    rng: fastrand::Rng,
    /// Warm sessions being created, per (agent, parent).
    warming: FxHashMap<(String, Option<SessionId>), u32>,
    runs: Runs,
    /// Scratch for admissions (kept to avoid an allocation per pump).
    admitted: Vec<crate::control::Admission>,
    /// Probe interval, host-call timeout, cancel bound, clock skew.
    liveness: LivenessConfig,
    /// The latest time the engine was given (to stamp host calls with their deadline).
    clock: u64,
    /// When each pending host call times out.
    call_due: FxHashMap<CallId, u64>,
    /// When the liveness probe runs next (none while there is nothing to watch).
    next_probe: Option<u64>,
    /// A `sessionStatuses` call is pending.
    probing: bool,
    /// When the last probe was started.
    last_probe: Option<u64>,
    /// The stamp of the reply a success (or a follow-up's requeue in its conversation, see
    /// `fail_or_retry`) is about to be journaled with.
    reply_note: Option<(SessionId, u64)>,
    /// The host has no `sessionStatuses`: suspects are checked one by one.
    no_statuses: bool,
    /// The executor's slots and deques, lenders' kept permits, parents resumed.
    nest: nested::Nested,
}

/// Options of a run task (see [`Engine::run_submit`]).
#[derive(Debug, Clone, Copy)]
pub struct RunRequest {
    /// The lane ([`Engine::run_lane`]).
    pub lane: LaneId,
    /// The provider/model key, for its limit and breaker ([`Engine::run_key`]).
    pub key: Option<KeyId>,
    /// Its priority.
    pub priority: Priority,
    /// Refuse at once while the key's breaker refuses, instead of waiting.
    pub fail_fast: bool,
    /// Ms from submission it must end by.
    pub deadline_ms: Option<u64>,
}

impl Engine {
    /// An engine for `config`; `seed` drives jitter and names its journal (the origin
    /// engines restored from it share: see `TaskTable::epoch`).
    pub fn new(config: &Config, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x6A09_E667_F3BC_C908);
        let mut origin = [0u8; 16];
        origin[..8].copy_from_slice(&rng.u64(..).to_be_bytes());
        origin[8..].copy_from_slice(&rng.u64(..).to_be_bytes());
        Self::with_origin(config, seed, origin)
    }

    /// An engine for `config` whose journal is named `origin` (the bindings draw it at
    /// random, so two engines made at the same time never share one).
    pub fn with_origin(config: &Config, seed: u64, origin: [u8; 16]) -> Self {
        Self::with_table(
            config,
            seed,
            TaskTable::with_limits(config.retention, config.memory_budget, origin),
        )
    }

    fn with_table(config: &Config, seed: u64, tasks: TaskTable) -> Self {
        Engine {
            tasks,
            controller: Controller::new(config, seed),
            pool: Pool::new(PoolConfig::default()),
            live: FxHashMap::default(),
            calls: FxHashMap::default(),
            by_session: FxHashMap::default(),
            dependents: FxHashMap::default(),
            outbox: Vec::new(),
            events: Vec::new(),
            next_call: 1,
            rng: fastrand::Rng::with_seed(seed ^ 0x9E37_79B9_7F4A_7C15),
            warming: FxHashMap::default(),
            runs: Runs::default(),
            admitted: Vec::new(),
            liveness: config.liveness,
            clock: 0,
            call_due: FxHashMap::default(),
            next_probe: None,
            probing: false,
            last_probe: None,
            reply_note: None,
            no_statuses: false,
            nest: nested::Nested::new(config),
        }
    }

    /// Whether [`Engine::submit`] would accept `spec` now, without submitting it: its
    /// validation, the controller's refusals, and the tasks it names. A batch is checked whole
    /// with this before any of it is submitted.
    /// `earlier` specs of the same batch come before it: a dependency on one of the ids they
    /// will get (the next ids, in order) is accepted.
    pub fn admissible(&self, now: u64, spec: &TaskSpec, earlier: u32) -> Result<(), Error> {
        let next = self.tasks.next_id();
        let batch = |task: TaskId| task.get() >= next && task.get() - next < earlier;
        spec.validate()?;
        self.check_admission(now, spec)?;
        for dep in &spec.depends_on {
            if !self.tasks.has(*dep) && !batch(*dep) {
                return Err(Error::input("dependsOn", self.tasks.missing_reason(*dep)));
            }
        }
        if let Some(prev) = spec.follow_up_of {
            if !self.tasks.has(prev) && !batch(prev) {
                return Err(Error::input("followUpOf", self.tasks.missing_reason(prev)));
            }
        }
        Ok(())
    }

    /// The controller's refusals at submit (memory pressure for LOW work, an open breaker with
    /// `fail_fast`), checked before anything is written.
    #[inline(never)]
    fn check_admission(&self, now: u64, spec: &TaskSpec) -> Result<(), Error> {
        self.controller.check(
            now,
            &spec.agent,
            spec.model.as_deref(),
            spec.priority,
            spec.fail_fast,
        )
    }

    /// Accepts a task. It waits for its dependencies, then for admission.
    /// Refusals (`MEMORY_PRESSURE` for LOW work, `BREAKER_OPEN` with `fail_fast`, invalid input)
    /// create no task.
    pub fn submit(&mut self, now: u64, spec: TaskSpec) -> Result<TaskId, Error> {
        self.at(now);
        spec.validate()?;
        self.retire(now)?;
        self.check_admission(now, &spec)?;
        let deps = spec.depends_on.clone();
        let (id, new) = self.tasks.submit(now, spec)?;
        if !new {
            return Ok(id);
        }
        self.emit(id, TaskPhase::Queued);
        self.live.insert(id, Live::default());
        for dep in &deps {
            self.dependents.entry(*dep).or_default().push(id);
        }
        // A dependency that already failed cancels the task at once.
        for dep in &deps {
            if let Some(state) = self.tasks.state(*dep) {
                if state.is_settled() && !matches!(state, TaskState::Succeeded { .. }) {
                    self.cancel_with(now, id, dependency_failed(*dep))?;
                    return Ok(id);
                }
            }
        }
        self.enqueue(now, id)?;
        self.pump(now);
        Ok(id)
    }

    /// Cancels a task: a queued one at once; an admitted one when its session arrives; a
    /// running one by aborting it through the host and settling when the abort is confirmed.
    /// Returns false when the task is already settled.
    pub fn cancel(&mut self, now: u64, task: TaskId) -> Result<bool, Error> {
        self.at(now);
        let state = self
            .tasks
            .state(task)
            .ok_or_else(|| self.tasks.missing(task))?;
        if state.is_settled() {
            return Ok(false);
        }
        self.cancel_with(now, task, "cancelled by the user".into())?;
        self.pump(now);
        Ok(true)
    }

    /// The host's answer to call `call`.
    pub fn on_answer(&mut self, now: u64, call: CallId, outcome: HostOutcome) -> Result<(), Error> {
        self.at(now);
        self.retire(now)?;
        let purpose = self
            .calls
            .remove(&call)
            .ok_or_else(|| Error::UnknownCall { call: call.get() })?;
        self.call_due.remove(&call);
        self.answer(now, purpose, outcome)
    }

    /// Handles the outcome of a call made for `purpose` (an answer, or a timeout).
    fn answer(&mut self, now: u64, purpose: CallFor, outcome: HostOutcome) -> Result<(), Error> {
        match (purpose, outcome) {
            (CallFor::Create(task), HostOutcome::Ok(HostReply::SessionCreated(session))) => {
                self.tasks.record_session(&session)?;
                let (agent, parent) = self
                    .tasks
                    .get_brief(task)
                    .map(|r| (r.spec.agent, r.spec.parent))
                    .unwrap_or_default();
                self.pool
                    .created_in_use(session.clone(), &agent, parent, now);
                if self.live.get(&task).is_some_and(|l| l.cancelling.is_some())
                    || !self.is_open(task)
                {
                    self.pool.release(&session, false, now);
                    let reason = self
                        .live
                        .get(&task)
                        .and_then(|l| l.cancelling.clone())
                        .unwrap_or_default();
                    if self.is_open(task) {
                        self.settle(now, task, TaskState::Cancelled { reason })?;
                    }
                } else {
                    self.acquired(now, task, session)?;
                }
            }
            (CallFor::Warm(agent, parent), outcome) => {
                let key = (agent, parent);
                if let Some(n) = self.warming.get_mut(&key) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.warming.remove(&key);
                    }
                }
                if let HostOutcome::Ok(HostReply::SessionCreated(session)) = outcome {
                    self.tasks.record_session(&session)?;
                    let (agent, parent) = key;
                    self.pool.created_warm(session, &agent, parent, now);
                }
            }
            (CallFor::Create(task), outcome) => {
                let class = failure_class(&outcome);
                let attempts = self.live.get(&task).map_or(0, |l| l.create_attempts);
                if self.live.get(&task).is_some_and(|l| l.cancelling.is_some()) {
                    let reason = self
                        .live
                        .get(&task)
                        .and_then(|l| l.cancelling.clone())
                        .unwrap_or_default();
                    self.settle(now, task, TaskState::Cancelled { reason })?;
                } else if matches!(
                    class,
                    FailureClass::Upstream | FailureClass::RateLimited | FailureClass::Timeout
                ) && attempts < CREATE_ATTEMPTS
                {
                    let delay = self.backoff(attempts);
                    if let Some(l) = self.live.get_mut(&task) {
                        l.retry_at = Some(now + delay);
                    }
                } else {
                    self.settle(
                        now,
                        task,
                        TaskState::Failed {
                            class,
                            message: describe(&outcome),
                        },
                    )?;
                }
            }
            (CallFor::Prompt(task), HostOutcome::Ok(_)) => {
                let record = self.tasks.get_brief(task);
                if let Some((TaskState::SessionAcquired { session }, deadline)) =
                    record.map(|r| (r.state, r.spec.deadline_ms))
                {
                    let at_ms = self.live.get(&task).and_then(|l| l.sent_at).unwrap_or(now);
                    self.transition(
                        now,
                        task,
                        TaskState::Dispatched {
                            session: session.clone(),
                            at_ms,
                        },
                    )?;
                    // Busy may arrive before the prompt's own answer: then it is running already.
                    if self.live.get(&task).is_some_and(|l| l.seen_busy) {
                        self.transition(now, task, TaskState::Running { session, at_ms })?;
                    }
                    if let Some(l) = self.live.get_mut(&task) {
                        l.deadline_at = Some(now + deadline);
                        l.next_poll = Some(now + GRACE_MS);
                    }
                    self.watch(now);
                }
            }
            (CallFor::Prompt(task), outcome) => {
                if self.is_open(task) {
                    let class = failure_class(&outcome);
                    let wait = match &outcome {
                        HostOutcome::Failed(f) => f.retry_after_ms,
                        _ => None,
                    };
                    self.fail_or_retry(now, task, class, describe(&outcome), wait, None)?;
                }
            }
            (CallFor::LastMessage(task), outcome) => {
                if let Some(l) = self.live.get_mut(&task) {
                    l.check_pending = false;
                }
                // A check that timed out or failed upstream says nothing: the liveness probe
                // asks again. Not found (or nonsense) while reconciling: the outcome is lost.
                let inconclusive = matches!(
                    &outcome,
                    HostOutcome::Failed(f) if !matches!(f.class, FailureClass::Invalid)
                );
                let unknown = matches!(self.tasks.state(task), Some(TaskState::Unknown { .. }));
                if let HostOutcome::Ok(HostReply::Message(message)) = outcome {
                    self.judge(now, task, message)?;
                } else if inconclusive && unknown {
                    // Reconciling and the host did not say: the probe watches it like a running
                    // task and asks again.
                    if let Some(l) = self.live.get_mut(&task) {
                        l.seen_busy = true;
                    }
                    self.watch(now);
                } else if unknown {
                    // Reconciling, and the session is gone: the outcome is lost.
                    self.settle(
                        now,
                        task,
                        TaskState::Failed {
                            class: FailureClass::Invalid,
                            message: "its session is gone".into(),
                        },
                    )?;
                }
            }
            (CallFor::Abort(Some(task), session), outcome) => {
                self.aborted(&session, &outcome, now);
                // The abort is confirmed: a cancelled task settles now.
                if let Some(reason) = self.live.get(&task).and_then(|l| l.cancelling.clone()) {
                    if self.is_open(task) {
                        self.settle(now, task, TaskState::Cancelled { reason })?;
                    }
                }
            }
            (CallFor::Abort(None, session), outcome) => self.aborted(&session, &outcome, now),
            // A session already gone (404) counts as deleted.
            (CallFor::Delete(session), HostOutcome::Ok(_)) => self.gone(&session)?,
            (CallFor::Delete(session), HostOutcome::Failed(f))
                if f.class == FailureClass::Invalid =>
            {
                self.gone(&session)?
            }
            (CallFor::Delete(session), _) => self.pool.delete_failed(&session, now),
            (CallFor::Check(session), HostOutcome::Ok(HostReply::Health(h))) => {
                self.pool.health(&session, h != SessionHealth::Gone, now);
                if h == (SessionHealth::Exists { busy: false }) {
                    // Idle now, whatever busy an event said before (a lost or reordered idle).
                    self.pool.settled_idle(&session, now);
                }
                if h == SessionHealth::Gone {
                    self.gone(&session)?;
                }
            }
            (CallFor::Check(session), _) => self.pool.health(&session, false, now),
            (CallFor::Statuses { tasks, sessions }, outcome) => {
                self.on_statuses(now, tasks, sessions, outcome)?
            }
            (CallFor::LateCreate(agent, parent), outcome) => {
                if let HostOutcome::Ok(HostReply::SessionCreated(session)) = outcome {
                    self.tasks.record_session(&session)?;
                    self.pool
                        .created_in_use(session.clone(), &agent, parent, now);
                    self.pool.release(&session, false, now);
                }
            }
        }
        self.pump(now);
        Ok(())
    }

    /// A bus event from the host.
    pub fn on_event(&mut self, now: u64, event: HostEvent) -> Result<(), Error> {
        self.at(now);
        let session = event.session().clone();
        let task = self
            .by_session
            .get(&session)
            .copied()
            .filter(|t| self.is_open(*t));
        match event {
            HostEvent::Busy(_) | HostEvent::Retry { .. } => {
                self.pool.activity(&session, true, now);
                // Busy with no idle after it (lost, or reordered before it) is re-checked.
                self.watch(now);
                if let Some(task) = task {
                    if let HostEvent::Retry { .. } = event {
                        if let Some(permit) = self.live.get(&task).and_then(|l| l.permit.as_ref()) {
                            self.controller.rate_limited(now, permit);
                        }
                    }
                    if let Some(l) = self.live.get_mut(&task) {
                        l.seen_busy = true;
                        l.idle_at = None;
                        l.unfinished_since = None;
                    }
                    if let Some(TaskState::Dispatched { session, at_ms }) = self.tasks.state(task) {
                        self.transition(now, task, TaskState::Running { session, at_ms })?;
                    }
                }
            }
            HostEvent::Idle(_) => {
                self.pool.activity(&session, false, now);
                if let Some(task) = task {
                    self.found_idle(now, task);
                    let (seen_busy, pending) = self
                        .live
                        .get(&task)
                        .map_or((false, true), |l| (l.seen_busy, l.check_pending));
                    let at = match self.tasks.state(task) {
                        Some(
                            TaskState::Dispatched { at_ms, .. } | TaskState::Running { at_ms, .. },
                        ) => Some(at_ms),
                        _ => None,
                    };
                    // The early-idle trap: before busy and within the grace, idle means nothing.
                    if let Some(at) = at {
                        if !pending && (seen_busy || now >= at + GRACE_MS) {
                            self.check(task, session);
                        }
                    }
                }
            }
            HostEvent::Error { .. } => self.pool.activity(&session, false, now),
            HostEvent::Deleted(_) => {
                self.gone(&session)?;
                if let Some(task) = task {
                    self.settle(
                        now,
                        task,
                        TaskState::Failed {
                            class: FailureClass::Invalid,
                            message: "its session was deleted".into(),
                        },
                    )?;
                }
                self.by_session.remove(&session);
            }
        }
        self.pump(now);
        Ok(())
    }

    /// Moves time to `now`: deadlines, grace checks, retries, pool upkeep, breaker and gate ends.
    pub fn tick(&mut self, now: u64) -> Result<(), Error> {
        self.at(now);
        self.retire(now)?;
        for ticket in self.runs.expire(now) {
            self.controller.cancel(ticket);
        }
        let left = self.runs.take_left();
        if !left.is_empty() {
            self.runs_left_line(now, &left);
        }
        self.expire_calls(now)?;
        // In id order (submission order), whatever the map's order: each entry is the id over
        // two bits of what is due, so a sort of plain integers orders them (the crate sorts only
        // `u64`s: every other element type would add its own copy of the sort to the `.wasm`).
        let mut due: Vec<u64> = self
            .live
            .iter()
            .filter_map(|(id, l)| {
                let due = if l.cancel_by.is_some_and(|c| c <= now) {
                    Due::Cancel
                } else if l.deadline_at.is_some_and(|d| d <= now) {
                    Due::Deadline
                } else if l.retry_at.is_some_and(|r| r <= now) {
                    Due::Retry
                } else if l.next_poll.is_some_and(|p| p <= now) && !l.seen_busy && !l.check_pending
                {
                    Due::Poll
                } else {
                    return None;
                };
                Some(u64::from(id.get()) << 2 | due as u64)
            })
            .collect();
        due.sort_unstable();
        for entry in due {
            let task = TaskId((entry >> 2) as u32);
            let due = match entry & 3 {
                0 => Due::Deadline,
                1 => Due::Retry,
                2 => Due::Poll,
                _ => Due::Cancel,
            };
            match due {
                Due::Cancel => {
                    // The abort did not answer in time (or the session never came): the
                    // cancel stands anyway; the session is retired by the pool.
                    let reason = self.live.get(&task).and_then(|l| l.cancelling.clone());
                    if let Some(reason) = reason {
                        self.settle(now, task, TaskState::Cancelled { reason })?;
                    }
                }
                Due::Deadline => self.time_out(now, task)?,
                Due::Retry => {
                    if let Some(l) = self.live.get_mut(&task) {
                        l.retry_at = None;
                    }
                    match self.tasks.state(task) {
                        Some(TaskState::Admitted) => self.create_session(task),
                        Some(TaskState::Queued) => self.enqueue(now, task)?,
                        _ => {}
                    }
                }
                Due::Poll => {
                    if let Some(l) = self.live.get_mut(&task) {
                        l.next_poll = Some(now + POLL_MS);
                    }
                    if let Some(s) = self.tasks.state(task).and_then(|s| s.session().cloned()) {
                        self.check(task, s);
                    }
                }
            }
        }
        self.pool_upkeep(now);
        self.probe_if_due(now);
        self.pump(now);
        Ok(())
    }

    /// Whether requests, task events, limit changes or resumed parent runs wait to be taken.
    pub fn has_output(&self) -> bool {
        !self.outbox.is_empty()
            || !self.events.is_empty()
            || self.controller.has_limit_changes()
            || self.has_runs_resumed()
    }

    /// Takes the queued host requests, oldest first.
    pub fn take_requests(&mut self) -> Vec<HostRequest> {
        std::mem::take(&mut self.outbox)
    }

    /// Takes the task transitions since the last call, for listeners.
    pub fn take_events(&mut self) -> Vec<TaskEvent> {
        std::mem::take(&mut self.events)
    }

    /// The earliest time `tick` has something to do.
    pub fn next_deadline(&self, now: u64) -> Option<u64> {
        let tasks = self.live.values().flat_map(|l| {
            let poll = l.next_poll.filter(|_| !l.seen_busy && !l.check_pending);
            [l.deadline_at, l.retry_at, poll, l.cancel_by]
        });
        tasks
            .flatten()
            .chain(self.call_due.values().min().copied())
            // The probe, or when it must be armed for the pool's health checks.
            .chain(self.next_probe.or_else(|| self.pool.next_check()))
            .chain(self.runs.next_deadline())
            .chain(self.controller.next_deadline(now))
            .chain(self.pool.next_deadline())
            .min()
    }

    /// The task table (records, journal), for inspection: a driver asks the engine
    /// (`driver.rs`) instead of reaching in.
    pub fn tasks(&self) -> &TaskTable {
        &self.tasks
    }

    /// The controller (stats, permits), for inspection.
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// The session pool, for inspection.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Tasks not settled.
    pub fn open_tasks(&self) -> usize {
        self.live.len()
    }

    // ---- internals ----

    /// Lets retention forget the settled tasks it lets go — only while no task event waits to
    /// be taken, so whoever takes a settlement's event reads the task first.
    fn retire(&mut self, now: u64) -> Result<(), Error> {
        if self.events.is_empty() {
            for task in self.tasks.retire(now)? {
                self.dependents.remove(&task);
            }
        }
        Ok(())
    }

    fn is_open(&self, task: TaskId) -> bool {
        self.live.contains_key(&task)
    }

    /// `session` no longer exists: out of the pool and out of the journal's list.
    #[inline(never)]
    fn gone(&mut self, session: &SessionId) -> Result<(), Error> {
        self.pool.deleted(session);
        self.tasks.forget_session(session)
    }

    #[inline(never)]
    fn emit(&mut self, task: TaskId, state: TaskPhase) {
        self.events.push(TaskEvent { task, state });
    }

    /// `stamp` is the server's stamp of the reply that ended `session`'s last turn: the pool
    /// keeps it, and the next success or requeue journals it (see `transition`), so the turn
    /// after tells its own reply from this one, restored or not.
    fn note_reply(&mut self, session: &SessionId, stamp: u64) {
        self.pool.replied(session, stamp);
        self.reply_note = Some((session.clone(), stamp));
    }

    fn transition(&mut self, now: u64, task: TaskId, to: TaskState) -> Result<(), Error> {
        let phase = to.phase();
        // The last reply's stamp goes with a success, or with the requeue of a follow-up sent
        // again in its conversation (`fail_or_retry`).
        let reply = match &to {
            TaskState::Succeeded { .. } | TaskState::Queued => self.reply_note.take(),
            _ => None,
        };
        self.tasks
            .transition_replied(now, task, to, reply.as_ref().map(|(s, at)| (s, *at)))?;
        self.emit(task, phase);
        Ok(())
    }

    fn call(&mut self, purpose: CallFor, op: HostOp) {
        // Count up; on wrap-around skip 0 and any id still pending: the id is the one the host
        // sees, so it names one pending call. The loop ends: fewer than u32::MAX are pending.
        let call = loop {
            let call = CallId(self.next_call);
            self.next_call = self.next_call.wrapping_add(1).max(1);
            if !self.calls.contains_key(&call) {
                break call;
            }
        };
        self.calls.insert(call, purpose);
        self.call_due.insert(
            call,
            self.clock.saturating_add(self.liveness.call_timeout_ms),
        );
        self.outbox.push(HostRequest { call, op });
    }

    /// Moves the engine's own notion of the latest time forward.
    #[inline]
    fn at(&mut self, now: u64) {
        self.clock = self.clock.max(now);
    }

    /// Puts a queued task in line with the controller once its dependencies succeeded.
    fn enqueue(&mut self, now: u64, task: TaskId) -> Result<(), Error> {
        let Some(record) = self.tasks.get_brief(task) else {
            return Ok(());
        };
        let ready = record
            .spec
            .depends_on
            .iter()
            .all(|d| matches!(self.tasks.state(*d), Some(TaskState::Succeeded { .. })));
        if !ready {
            if let Some(l) = self.live.get_mut(&task) {
                l.blocked_on_deps = true;
            }
            return Ok(());
        }
        if self.enqueue_child(task, &record.spec) {
            return Ok(());
        }
        let request = Request {
            task,
            agent: &record.spec.agent,
            key: record.spec.model.as_deref(),
            priority: record.spec.priority,
            fail_fast: record.spec.fail_fast,
        };
        match self.controller.submit(now, request) {
            Ok(ticket) => {
                if let Some(l) = self.live.get_mut(&task) {
                    l.ticket = Some(ticket);
                    l.blocked_on_deps = false;
                }
                Ok(())
            }
            // A failFast task asking again (a retry) while its model's breaker is open.
            Err(e @ Error::BreakerOpen { .. }) if record.spec.fail_fast => {
                let message = format!(
                    "BREAKER_OPEN: {e}; the task asked to fail fast instead of waiting for a probe"
                );
                self.settle(
                    now,
                    task,
                    TaskState::Failed {
                        class: FailureClass::Upstream,
                        message,
                    },
                )
            }
            // Refused now (the gate closed, or the breaker opened, since it was accepted): it
            // stays queued and asks again shortly.
            Err(Error::MemoryPressure { .. } | Error::BreakerOpen { .. }) => {
                if let Some(l) = self.live.get_mut(&task) {
                    l.retry_at = Some(now + REQUEUE_MS);
                }
                Ok(())
            }
            Err(e) => self.settle(
                now,
                task,
                TaskState::Failed {
                    class: FailureClass::Invalid,
                    message: e.to_string(),
                },
            ),
        }
    }

    /// Admits what may start and starts it.
    #[inline]
    fn pump(&mut self, now: u64) {
        // The check inlined where it is called, the work out of line: a run task ending with
        // nobody waiting pays two loads, not a call that saves and restores registers.
        if self.controller.waiting() != 0 || self.pool.has_aborts() || self.nest.exec.queued() != 0
        {
            self.pump_waiting(now);
        }
    }

    #[inline(never)]
    fn pump_waiting(&mut self, now: u64) {
        self.at(now);
        let mut admitted = std::mem::take(&mut self.admitted);
        self.controller.admit_into(now, &mut admitted);
        for admission in admitted.drain(..) {
            match admission.work {
                Work::Run(slot) => self.runs.admitted(slot, admission.permit),
                Work::Task(task) => self.start_admitted(now, task, admission.permit, true),
            }
        }
        self.admitted = admitted;
        if self.nest.exec.queued() != 0 {
            self.fill_slots(now);
        }
        if self.pool.has_aborts() {
            self.abort_retired();
        }
    }

    /// A sub-agent task was admitted: it goes on a slot of its lane (`place`: an idle one;
    /// otherwise the executor put it on one already), then takes a pooled session or has one
    /// created. Kept out of line so the run-task path through `pump` stays small.
    #[inline(never)]
    fn start_admitted(&mut self, now: u64, task: TaskId, permit: Permit, place: bool) {
        if let Some(l) = self.live.get_mut(&task) {
            l.ticket = None;
            l.permit = Some(permit);
        } else {
            return; // settled meanwhile: dropping the permit releases it
        }
        let Some(record) = self.tasks.get_brief(task) else {
            return;
        };
        if place {
            self.place(task, &record.spec.agent);
        }
        if self.transition(now, task, TaskState::Admitted).is_err() {
            return;
        }
        let follow = record
            .spec
            .follow_up_of
            .and_then(|p| self.tasks.state(p))
            .and_then(|s| s.session().cloned());
        if let Some(session) = follow.filter(|s| self.pool.acquire_affinity(s, now)) {
            let _ = self.acquired(now, task, session);
            return;
        }
        match self
            .pool
            .acquire(&record.spec.agent, record.spec.parent.as_ref(), now)
        {
            Acquired::Hit(session) => {
                let _ = self.acquired(now, task, session);
            }
            Acquired::Miss => self.create_session(task),
        }
        self.prewarm(&record.spec.agent, record.spec.parent.as_ref());
    }

    /// Aborts the turns of sessions retired while busy.
    #[inline(never)]
    fn abort_retired(&mut self) {
        for session in self.pool.take_aborts() {
            self.call(
                CallFor::Abort(None, session.clone()),
                HostOp::Abort { session },
            );
        }
    }

    /// Time-driven pool upkeep (idle retirements, deletions after quiet): these scan the pool,
    /// so they run on `tick`, at the pool's own deadlines, not on every event. Health checks of
    /// warm and parked sessions ride on the liveness probe (see `liveness.rs`).
    fn pool_upkeep(&mut self, now: u64) {
        self.pool.tick(now);
        for session in self.pool.take_deletions(now) {
            self.call(
                CallFor::Delete(session.clone()),
                HostOp::DeleteSession { session },
            );
        }
    }

    /// Creates warm sessions for (`agent`, `parent`) while work for its lane is queued (see
    /// the module docs).
    fn prewarm(&mut self, agent: &str, parent: Option<&SessionId>) {
        let queued = self.controller.queued_for(agent);
        if queued == 0 {
            return;
        }
        let key = (agent.to_owned(), parent.cloned());
        let creating = self.warming.get(&key).copied().unwrap_or(0);
        let want = self
            .pool
            .to_prewarm(agent, parent, queued)
            .saturating_sub(creating);
        if want == 0 {
            return;
        }
        *self.warming.entry(key).or_default() += want;
        for _ in 0..want {
            self.call(
                CallFor::Warm(agent.to_owned(), parent.cloned()),
                HostOp::CreateSession {
                    agent: agent.to_owned(),
                    parent: parent.cloned(),
                    title: format!("foreman: {agent} (warm)"),
                },
            );
        }
    }

    fn create_session(&mut self, task: TaskId) {
        let Some(record) = self.tasks.get_brief(task) else {
            return;
        };
        if let Some(l) = self.live.get_mut(&task) {
            l.create_attempts += 1;
        }
        let title = format!("foreman: {} #{}", record.spec.agent, task.get());
        self.call(
            CallFor::Create(task),
            HostOp::CreateSession {
                agent: record.spec.agent,
                parent: record.spec.parent,
                title,
            },
        );
    }

    fn acquired(&mut self, now: u64, task: TaskId, session: SessionId) -> Result<(), Error> {
        self.by_session.insert(session.clone(), task);
        self.transition(
            now,
            task,
            TaskState::SessionAcquired {
                session: session.clone(),
            },
        )?;
        if let Some(l) = self.live.get_mut(&task) {
            l.sent_at = Some(now);
        }
        let Some(record) = self.tasks.get(task) else {
            return Ok(());
        };
        let op = HostOp::Prompt {
            session,
            agent: record.spec.agent,
            model: record.spec.model,
            text: record.spec.prompt,
        };
        self.call(CallFor::Prompt(task), op);
        Ok(())
    }

    /// The task's session was found idle (an idle event, or absent from the status map).
    pub(super) fn found_idle(&mut self, now: u64, task: TaskId) {
        if let Some(l) = self.live.get_mut(&task) {
            l.idle_at = Some(now);
        }
    }

    fn check(&mut self, task: TaskId, session: SessionId) {
        if let Some(l) = self.live.get_mut(&task) {
            if l.check_pending {
                return;
            }
            l.check_pending = true;
        }
        self.call(
            CallFor::LastMessage(task),
            HostOp::LastAssistantMessage { session },
        );
    }

    /// Applies the completion rule to the last assistant message.
    fn judge(
        &mut self,
        now: u64,
        task: TaskId,
        message: Option<crate::host::AssistantMessage>,
    ) -> Result<(), Error> {
        let Some(record) = self.tasks.get_brief(task) else {
            return Ok(());
        };
        let (session, at) = match &record.state {
            TaskState::Dispatched { session, at_ms } | TaskState::Running { session, at_ms } => {
                (session.clone(), *at_ms)
            }
            TaskState::Unknown {
                session: Some(session),
                at_ms,
            } => (session.clone(), *at_ms),
            _ => return Ok(()),
        };
        // Which turn wrote the last assistant message: this one's, unless it is the reply that
        // ended the session's previous turn — a follow-up may continue its predecessor's
        // session — told by the server's stamp as written (`created_wall_ms`), which the pool
        // and the journal keep for the session (recorded with the success), not by times:
        // steps of either clock do not matter. A session with no such reply served no earlier
        // successful turn (a new task always gets an empty session, a retry a new one; only a
        // success parks a session for a follow-up — and a follow-up's error for its retry, with
        // the error's stamp, see `fail_or_retry`). Only a follow-up shown by its predecessor's
        // record to continue its session, restored from a journal with no reply recorded for it
        // (written before replies were recorded), compares times: its reply must be stamped at
        // or after the prompt and not after now, on the engine's clock, within the skew
        // allowance (`liveness.skewMs`).
        let skew = self.liveness.skew_ms;
        let previous = self
            .pool
            .reply(&session)
            .or_else(|| self.tasks.reply_of(&session));
        // A follow-up in its predecessor's session: the conversation it continues.
        let conversation = record
            .spec
            .follow_up_of
            .and_then(|p| self.tasks.state(p))
            .is_some_and(|p| p.session() == Some(&session));
        let legacy =
            previous.is_none() && self.live.get(&task).is_some_and(|l| l.restored) && conversation;
        let own = |m: &crate::host::AssistantMessage| match previous {
            Some(stamp) => m.created_wall_ms != stamp,
            None if !legacy => true,
            None => {
                m.created_ms.saturating_add(skew) >= at && m.created_ms <= now.saturating_add(skew)
            }
        };
        let Some(message) = message.filter(|m| own(m) && m.is_final()) else {
            if matches!(record.state, TaskState::Unknown { .. }) {
                // Still running after a restart: watch it again.
                self.transition(now, task, TaskState::Running { session, at_ms: at })?;
                if let Some(l) = self.live.get_mut(&task) {
                    l.seen_busy = true;
                    l.deadline_at = Some(now + record.spec.deadline_ms);
                }
            }
            if let TaskState::Running { .. } = record.state {
                // Its turn is over (the session is idle) and no final reply came: seen so twice,
                // an interval apart, the turn died — OpenCode stopped mid-turn, e.g. a restart
                // whose journal had it running. Its outcome is unknown: not sent again.
                let interval = self.liveness.interval_ms;
                let dead = self.live.get_mut(&task).is_some_and(|l| {
                    l.idle_at.is_some() && now >= *l.unfinished_since.get_or_insert(now) + interval
                });
                if dead {
                    return self.settle(
                        now,
                        task,
                        TaskState::Failed {
                            class: FailureClass::Invalid,
                            message: "its session went idle without finishing the turn (OpenCode \
                                      stopped mid-turn?); the outcome is unknown and the prompt \
                                      was not sent again"
                                .into(),
                        },
                    );
                }
            }
            return Ok(()); // not done yet: a later idle (or poll) checks again
        };
        match message.error {
            None => {
                // The reply a follow-up in this session must tell its own from, journaled with
                // the success.
                self.note_reply(&session, message.created_wall_ms);
                self.settle(
                    now,
                    task,
                    TaskState::Succeeded {
                        session,
                        text: message.text,
                    },
                )
            }
            Some(error) => {
                let class = error.class();
                if class == FailureClass::Cancelled {
                    let reason = self
                        .live
                        .get(&task)
                        .and_then(|l| l.cancelling.clone())
                        .unwrap_or_else(|| "aborted".into());
                    self.settle(now, task, TaskState::Cancelled { reason })
                } else {
                    // The turn is over: a follow-up sent again continues its conversation, and
                    // must tell its own reply from this one.
                    let kept = conversation.then_some(message.created_wall_ms);
                    let message = error.to_string();
                    self.fail_or_retry(now, task, class, message, error.retry_after_ms(), kept)
                }
            }
        }
    }

    /// The deadline passed: the task settles (or retries), and its session, released as failed,
    /// is aborted by the pool before it is deleted after quiet.
    fn time_out(&mut self, now: u64, task: TaskId) -> Result<(), Error> {
        let Some(record) = self.tasks.get_brief(task) else {
            return Ok(());
        };
        if let Some(reason) = self.live.get(&task).and_then(|l| l.cancelling.clone()) {
            // Cancelled before its deadline: it settles as the user asked, abort or not.
            return self.settle(now, task, TaskState::Cancelled { reason });
        }
        // Work whose outcome is unknown (after a restart) is not re-run on a deadline.
        if matches!(record.state, TaskState::Unknown { .. }) {
            return self.settle(
                now,
                task,
                TaskState::Failed {
                    class: FailureClass::Timeout,
                    message: "deadline passed before its outcome could be read".into(),
                },
            );
        }
        let rate_limited = self.live.get(&task).map_or(0, |l| l.rate_limited);
        if record.attempts.saturating_sub(rate_limited) <= record.spec.retries {
            return self.fail_or_retry(
                now,
                task,
                FailureClass::Timeout,
                "deadline passed".into(),
                None,
                None, // its turn may still run: the session is aborted
            );
        }
        self.settle(now, task, TaskState::TimedOut)
    }

    fn cancel_with(&mut self, now: u64, task: TaskId, reason: String) -> Result<(), Error> {
        let Some(state) = self.tasks.state(task) else {
            return Ok(());
        };
        let bound = now.saturating_add(self.liveness.cancel_ms);
        if let Some(l) = self.live.get_mut(&task) {
            l.cancelling = Some(reason.clone());
            l.cancel_by = Some(l.cancel_by.map_or(bound, |b| b.min(bound)));
        }
        match state {
            TaskState::Queued => {
                if let Some(ticket) = self.live.get_mut(&task).and_then(|l| l.ticket.take()) {
                    self.controller.cancel(ticket);
                }
                self.settle(now, task, TaskState::Cancelled { reason })
            }
            // Settles when its session arrives (or fails to) — or now, between creation attempts.
            TaskState::Admitted if self.live.get(&task).is_some_and(|l| l.retry_at.is_some()) => {
                self.settle(now, task, TaskState::Cancelled { reason })
            }
            TaskState::Admitted => Ok(()),
            TaskState::SessionAcquired { .. } => {
                self.settle(now, task, TaskState::Cancelled { reason })
            }
            TaskState::Dispatched { session, .. } | TaskState::Running { session, .. } => {
                self.call(
                    CallFor::Abort(Some(task), session.clone()),
                    HostOp::Abort { session },
                );
                Ok(())
            }
            TaskState::Unknown { .. } => self.settle(now, task, TaskState::Cancelled { reason }),
            _ => Ok(()),
        }
    }

    /// Settles a task: one commit, its permit back, its session released, its dependents told.
    fn settle(&mut self, now: u64, task: TaskId, state: TaskState) -> Result<(), Error> {
        let outcome = match &state {
            TaskState::Succeeded { .. } => Outcome::Success,
            TaskState::Failed { class, .. } => Outcome::Failed(*class),
            TaskState::Cancelled { .. } => Outcome::Failed(FailureClass::Cancelled),
            TaskState::TimedOut => Outcome::Failed(FailureClass::Timeout),
            _ => return Ok(()),
        };
        let succeeded = outcome == Outcome::Success;
        if let Some(ticket) = self.live.get_mut(&task).and_then(|l| l.ticket.take()) {
            self.controller.cancel(ticket);
        }
        let counted = outcome.is_counted_failure()
            && self.live.get(&task).is_some_and(|l| l.permit.is_some());
        let parent_slot = self.child_settling(Work::Task(task));
        self.release(now, task, outcome, succeeded);
        self.transition(now, task, state)?;
        if let Some(mut live) = self.live.remove(&task) {
            let place = nested::take_place(&mut live);
            self.settled_nested(now, task, &place, parent_slot);
        }
        for dependent in self.dependents.remove(&task).unwrap_or_default() {
            if !self.is_open(dependent) {
                continue;
            }
            if succeeded {
                if self.live.get(&dependent).is_some_and(|l| l.blocked_on_deps) {
                    self.enqueue(now, dependent)?;
                }
            } else {
                self.cancel_with(now, dependent, dependency_failed(task))?;
            }
        }
        if counted {
            self.fail_fast_if_open(now, task)?;
        }
        Ok(())
    }

    /// Returns the permit with `outcome` and hands the session back to the pool.
    fn release(&mut self, now: u64, task: TaskId, outcome: Outcome, succeeded: bool) {
        self.leave_slot(now, task, outcome);
        if let Some(permit) = self.live.get_mut(&task).and_then(|l| l.permit.take()) {
            self.controller.complete(now, permit, outcome);
        }
        if let Some(session) = self.tasks.state(task).and_then(|s| s.session().cloned()) {
            self.pool.release(&session, succeeded, now);
            if self.by_session.get(&session) == Some(&task) {
                self.by_session.remove(&session);
            }
        }
    }

    /// An abort answered (or gave up on): the session's turn ended by now at the latest, so
    /// its quiet period before deletion counts from now — even when the idle events that
    /// follow an abort are lost.
    #[inline(never)]
    fn aborted(&mut self, session: &SessionId, outcome: &HostOutcome, now: u64) {
        if matches!(outcome, HostOutcome::Ok(_)) {
            self.pool.activity(session, false, now);
        } else {
            self.pool.settled_idle(session, now);
        }
    }

    /// Full jitter: uniform in [0, min(cap, base·2^attempt)].
    fn backoff(&mut self, attempt: u32) -> u64 {
        let ceiling = BACKOFF_BASE_MS
            .saturating_mul(1u64 << attempt.min(20))
            .min(BACKOFF_CAP_MS);
        self.rng.u64(0..=ceiling)
    }
}

/// Why a task whose dependency `dep` did not succeed is cancelled (one copy of the format).
#[cold]
#[inline(never)]
fn dependency_failed(dep: TaskId) -> String {
    format!("dependency {} did not succeed", dep.get())
}

#[derive(Debug, Clone, Copy)]
enum Due {
    Deadline = 0,
    Retry = 1,
    Poll = 2,
    Cancel = 3,
}

fn failure_class(outcome: &HostOutcome) -> FailureClass {
    match outcome {
        HostOutcome::Failed(f) => f.class,
        _ => FailureClass::Invalid,
    }
}

fn describe(outcome: &HostOutcome) -> String {
    match outcome {
        HostOutcome::Failed(f) => f.message.clone(),
        HostOutcome::BadReply(r) => format!("bad reply: {r}"),
        HostOutcome::Ok(r) => format!("unexpected reply: {}", r.kind()),
    }
}

mod driver;
mod liveness;
mod nested;
mod restore;
mod retry;
mod run_children;
mod run_path;

pub use self::driver::{EngineStats, JournalStats};
#[cfg(test)]
mod tests;
