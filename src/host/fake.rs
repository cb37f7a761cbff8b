//! `FakeHost`: a deterministic simulation of an OpenCode server, for tests and the demo.
//!
//! It answers host operations after seeded random latencies and emits the events the real
//! server emits, **in the real server's orders**, traps included:
//!
//! - after `prompt` (OpenCode's `promptAsync`) the answer comes at once, but the first `busy`
//!   only after a gap of up to `gap_max_ms` (seen ~3 s on a fresh instance) — meanwhile the
//!   session looks exactly like one that is done;
//! - a turn may stop for tool calls (`finish: "tool-calls"`, completed) before its final message;
//! - provider trouble shows first as `retry` statuses (OpenCode retries by itself), and a failure
//!   that outlasts the retries ends with an `APIError` on the message, a `session.error`, and
//!   **two** idles; an abort also ends with two idles and a `MessageAbortedError`;
//! - a hung turn stays busy until aborted.
//!
//! It also keeps score of what a careful client never does: prompting a busy session, deleting
//! a busy session, or deleting one within 10 s of its last idle (OpenCode is still writing it).
//!
//! Invariants:
//! 1. Same seed, same calls, same `advance` steps ⇒ the same deliveries in the same order.
//! 2. Deliveries come in time order, ties in scheduling order.
//! 3. Events of a turn that was aborted (or superseded) are never delivered.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use super::{
    AssistantMessage, CallId, FailureClass, Host, HostEvent, HostFailure, HostOp, HostOutcome,
    HostReply, HostRequest, MemoryReading, MessageError, SessionHealth, SessionId,
};
use crate::error::Error;

/// Latency and failure injection for quick operations (`createSession`, …).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpProfile {
    /// Shortest latency in ms.
    pub min_ms: u64,
    /// Longest latency in ms (uniform between the two).
    pub max_ms: u64,
    /// Probability in [0, 1] that the operation fails with an upstream error.
    pub failure_rate: f64,
    /// Probability in [0, 1] that it fails with a 429.
    pub rate_limit_rate: f64,
}

impl Default for OpProfile {
    fn default() -> Self {
        // Measured `session.create` on the real server: median 20–24 ms.
        OpProfile {
            min_ms: 15,
            max_ms: 30,
            failure_rate: 0.0,
            rate_limit_rate: 0.0,
        }
    }
}

/// How the turns of one agent behave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PromptProfile {
    /// Median turn duration, ms (durations are lognormal).
    pub median_ms: u64,
    /// Lognormal σ of the duration.
    pub sigma: f64,
    /// Longest gap between the prompt's acceptance and the first `busy`, ms.
    pub gap_max_ms: u64,
    /// Probability that the turn ends in an `APIError` 503 after OpenCode's retries.
    pub failure_rate: f64,
    /// Probability that the turn meets 429s (`retry` statuses) and then finishes normally.
    pub rate_limit_rate: f64,
    /// Probability that the turn hangs (busy until aborted).
    pub hang_rate: f64,
    /// Probability that the turn ends in `APIError` 429 after the retries.
    pub rate_limit_fail_rate: f64,
}

impl Default for PromptProfile {
    fn default() -> Self {
        PromptProfile {
            median_ms: 2_000,
            sigma: 0.6,
            gap_max_ms: 3_000,
            failure_rate: 0.0,
            rate_limit_rate: 0.0,
            hang_rate: 0.0,
            rate_limit_fail_rate: 0.0,
        }
    }
}

/// One thing the simulated server says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The answer to a call.
    Answer(CallId, HostOutcome),
    /// An event from the bus.
    Event(HostEvent),
}

/// Violations of the server's usage rules, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Violations {
    /// Prompts sent to a busy session.
    pub prompted_busy: u32,
    /// Deletes of a busy session.
    pub deleted_busy: u32,
    /// Deletes within 10 s of the session's last idle.
    pub deleted_too_soon: u32,
}

#[derive(Debug, Clone)]
struct Session {
    busy: bool,
    run: u32,
    run_started: u64,
    last: Option<AssistantMessage>,
    idle_at: u64,
    deleted: bool,
    /// The turn is blocked in a tool call: what it had left to say, ms after the block.
    tool: Option<Vec<(u64, Item)>>,
}

#[derive(Debug, Clone)]
enum Item {
    Answer(CallId, HostOutcome),
    /// Answered from the session's state at delivery time.
    Query(CallId, HostOp),
    Busy(SessionId, u32),
    Retry(SessionId, u32, u32, u64),
    Step(SessionId, u32, AssistantMessage),
    Finish(SessionId, u32, AssistantMessage),
    Idle(SessionId),
}

/// The simulator. See the module docs.
#[derive(Debug)]
pub struct FakeHost {
    clock: Cell<u64>,
    memory: Cell<MemoryReading>,
    memory_per_busy: Cell<u64>,
    rng: RefCell<fastrand::Rng>,
    ops: Cell<OpProfile>,
    prompts: RefCell<BTreeMap<String, PromptProfile>>,
    queue: RefCell<Vec<(u64, u64, Item)>>,
    seq: Cell<u64>,
    sessions: RefCell<BTreeMap<SessionId, Session>>,
    started: RefCell<Vec<HostRequest>>,
    created: Cell<u64>,
    violations: Cell<Violations>,
}

impl FakeHost {
    /// A simulator seeded with `seed`, clock at 0, 25 % of a 1 GiB budget in use.
    pub fn new(seed: u64) -> Self {
        FakeHost {
            clock: Cell::new(0),
            memory: Cell::new(MemoryReading {
                used: 256 << 20,
                limit: 1 << 30,
            }),
            memory_per_busy: Cell::new(0),
            rng: RefCell::new(fastrand::Rng::with_seed(seed)),
            ops: Cell::new(OpProfile::default()),
            prompts: RefCell::new(BTreeMap::new()),
            queue: RefCell::new(Vec::new()),
            seq: Cell::new(0),
            sessions: RefCell::new(BTreeMap::new()),
            started: RefCell::new(Vec::new()),
            created: Cell::new(0),
            violations: Cell::new(Violations::default()),
        }
    }

    /// Sets how `createSession` (and the other quick operations' latency) behave.
    pub fn set_create_session(&self, profile: OpProfile) {
        self.ops.set(profile);
    }

    /// Sets how turns of `agent` behave (`"*"` for agents without a profile of their own).
    pub fn set_prompt_profile(&self, agent: &str, profile: PromptProfile) {
        self.prompts.borrow_mut().insert(agent.to_owned(), profile);
    }

    /// Sets the memory reading the host reports when no session is busy.
    pub fn set_memory(&self, reading: MemoryReading) {
        self.memory.set(reading);
    }

    /// Adds `bytes` to the reading per busy session (a memory curve that follows the load).
    pub fn set_memory_per_busy(&self, bytes: u64) {
        self.memory_per_busy.set(bytes);
    }

    /// Operations started and events scheduled but not yet delivered.
    pub fn in_flight(&self) -> usize {
        self.queue.borrow().len()
    }

    /// Every request started so far, oldest first.
    pub fn started(&self) -> Vec<HostRequest> {
        self.started.borrow().clone()
    }

    /// Sessions the simulated server created.
    pub fn sessions_created(&self) -> u64 {
        self.created.get()
    }

    /// Sessions that exist (created, not deleted).
    pub fn sessions_alive(&self) -> Vec<SessionId> {
        self.sessions
            .borrow()
            .iter()
            .filter(|(_, s)| !s.deleted)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether `session` is busy now.
    pub fn is_busy(&self, session: &SessionId) -> bool {
        self.sessions
            .borrow()
            .get(session)
            .is_some_and(|s| s.busy && !s.deleted)
    }

    /// Rule violations so far.
    pub fn violations(&self) -> Violations {
        self.violations.get()
    }

    /// When the next delivery is due, if any.
    pub fn next_due(&self) -> Option<u64> {
        self.queue.borrow().iter().map(|(due, _, _)| *due).min()
    }

    /// Moves the clock forward by `ms` and returns what the server said meanwhile, in order.
    pub fn advance(&self, ms: u64) -> Vec<Delivery> {
        let end = self.clock.get().saturating_add(ms);
        let mut out = Vec::new();
        loop {
            let next = {
                let mut q = self.queue.borrow_mut();
                let i = q
                    .iter()
                    .enumerate()
                    .filter(|(_, (due, _, _))| *due <= end)
                    .min_by_key(|(_, (due, seq, _))| (*due, *seq))
                    .map(|(i, _)| i);
                i.map(|i| q.swap_remove(i))
            };
            let Some((due, _, item)) = next else { break };
            self.clock.set(self.clock.get().max(due));
            self.apply(item, &mut out);
        }
        self.clock.set(end);
        out
    }

    fn schedule(&self, after: u64, item: Item) {
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        self.queue
            .borrow_mut()
            .push((self.clock.get().saturating_add(after), seq, item));
    }

    fn latency(&self) -> u64 {
        let p = self.ops.get();
        self.rng.borrow_mut().u64(p.min_ms..=p.max_ms.max(p.min_ms))
    }

    fn profile(&self, agent: &str) -> PromptProfile {
        let p = self.prompts.borrow();
        p.get(agent)
            .or_else(|| p.get("*"))
            .copied()
            .unwrap_or_default()
    }

    fn lognormal(&self, median: u64, sigma: f64) -> u64 {
        let mut rng = self.rng.borrow_mut();
        let (u1, u2) = (1.0 - rng.f64(), rng.f64());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        ((median as f64) * (sigma * z).exp()).max(1.0) as u64
    }

    fn violate(&self, f: impl FnOnce(&mut Violations)) {
        let mut v = self.violations.get();
        f(&mut v);
        self.violations.set(v);
    }

    fn message(
        &self,
        created: u64,
        completed: u64,
        finish: &str,
        error: Option<MessageError>,
    ) -> AssistantMessage {
        AssistantMessage {
            created_ms: created,
            created_wall_ms: created,
            completed_ms: Some(completed),
            finish: Some(finish.into()),
            error,
            text: format!("done at {completed}"),
        }
    }

    /// Plans one turn of `session` after an accepted prompt.
    fn plan_turn(&self, session: &SessionId, run: u32, agent: &str) {
        let p = self.profile(agent);
        let now = self.clock.get();
        let gap = self.rng.borrow_mut().u64(0..=p.gap_max_ms);
        let duration = self.lognormal(p.median_ms, p.sigma);
        let roll = self.rng.borrow_mut().f64();
        let created = now + gap;
        self.schedule(gap, Item::Busy(session.clone(), run));
        let mut t = gap;
        let mut retries = |n: u32, step: u64| {
            for attempt in 1..=n {
                t += step * u64::from(attempt);
                self.schedule(
                    t,
                    Item::Retry(session.clone(), run, attempt, now + t + step),
                );
            }
        };
        if roll < p.hang_rate {
            return; // busy until aborted
        }
        let (finish_at, message) = if roll < p.hang_rate + p.failure_rate {
            retries(3, 2_000);
            let err = MessageError::Api {
                status: Some(503),
                message: "simulated 503 after retries".into(),
                retry_after_ms: None,
            };
            (
                t + 1_000,
                self.message(created, now + t + 1_000, "error", Some(err)),
            )
        } else if roll < p.hang_rate + p.failure_rate + p.rate_limit_fail_rate {
            retries(3, 2_000);
            let err = MessageError::Api {
                status: Some(429),
                message: "simulated 429 after retries".into(),
                retry_after_ms: Some(1_000),
            };
            (
                t + 1_000,
                self.message(created, now + t + 1_000, "error", Some(err)),
            )
        } else {
            if roll < p.hang_rate + p.failure_rate + p.rate_limit_fail_rate + p.rate_limit_rate {
                retries(2, 1_000);
            }
            // Tool-call steps: completed messages that are not final.
            let steps = self.rng.borrow_mut().u32(0..=2);
            for s in 1..=steps {
                let at = t + duration * u64::from(s) / u64::from(steps + 1);
                self.schedule(
                    at,
                    Item::Step(
                        session.clone(),
                        run,
                        self.message(created, now + at, "tool-calls", None),
                    ),
                );
            }
            (
                t + duration,
                self.message(created, now + t + duration, "stop", None),
            )
        };
        self.schedule(finish_at, Item::Finish(session.clone(), run, message));
    }

    fn apply(&self, item: Item, out: &mut Vec<Delivery>) {
        let now = self.clock.get();
        match item {
            Item::Answer(call, outcome) => {
                if let HostOutcome::Ok(HostReply::SessionCreated(id)) = &outcome {
                    self.created.set(self.created.get() + 1);
                    let session = Session {
                        busy: false,
                        run: 0,
                        run_started: 0,
                        last: None,
                        idle_at: 0,
                        deleted: false,
                        tool: None,
                    };
                    self.sessions.borrow_mut().insert(id.clone(), session);
                }
                out.push(Delivery::Answer(call, outcome));
            }
            Item::Query(call, op) => {
                let outcome = self.query(&op, out);
                out.push(Delivery::Answer(call, outcome));
            }
            Item::Busy(s, run) => {
                if self.current(&s, run) {
                    self.with(&s, |x| x.busy = true);
                    out.push(Delivery::Event(HostEvent::Busy(s)));
                }
            }
            Item::Retry(s, run, attempt, next_ms) => {
                if self.current(&s, run) {
                    out.push(Delivery::Event(HostEvent::Retry {
                        session: s,
                        attempt,
                        next_ms,
                    }));
                }
            }
            Item::Step(s, run, message) => {
                if self.current(&s, run) {
                    self.with(&s, |x| x.last = Some(message));
                }
            }
            Item::Finish(s, run, message) => {
                if self.current(&s, run) {
                    let error = message.error.clone();
                    self.with(&s, |x| {
                        x.last = Some(message);
                        x.busy = false;
                        x.idle_at = now;
                    });
                    if let Some(error) = error {
                        out.push(Delivery::Event(HostEvent::Error {
                            session: s.clone(),
                            error,
                        }));
                        self.schedule(1, Item::Idle(s.clone())); // the second idle
                    }
                    out.push(Delivery::Event(HostEvent::Idle(s)));
                }
            }
            Item::Idle(s) => {
                if !self.sessions.borrow().get(&s).is_none_or(|x| x.deleted) {
                    self.with(&s, |x| x.idle_at = now);
                    out.push(Delivery::Event(HostEvent::Idle(s)));
                }
            }
        }
    }

    /// Answers an operation from the session's state now; some change it.
    fn query(&self, op: &HostOp, out: &mut Vec<Delivery>) -> HostOutcome {
        let now = self.clock.get();
        if let HostOp::SessionStatuses = op {
            // OpenCode's `session.status()`: the non-idle sessions only.
            let mut busy: Vec<(SessionId, bool)> = self
                .sessions
                .borrow()
                .iter()
                .filter(|(_, s)| s.busy && !s.deleted)
                .map(|(id, _)| (id.clone(), false))
                .collect();
            busy.sort();
            return HostOutcome::Ok(HostReply::Statuses(busy));
        }
        let Some(session) = op.session().cloned() else {
            return HostOutcome::BadReply("not a session operation".into());
        };
        let gone = || {
            HostOutcome::Failed(HostFailure {
                class: FailureClass::Invalid,
                message: "session not found".into(),
                retry_after_ms: None,
            })
        };
        let state = self.sessions.borrow().get(&session).cloned();
        let Some(state) = state.filter(|s| !s.deleted) else {
            return match op {
                HostOp::CheckSession { .. } => {
                    HostOutcome::Ok(HostReply::Health(SessionHealth::Gone))
                }
                _ => gone(),
            };
        };
        match op {
            HostOp::Prompt { agent, .. } => {
                if state.busy {
                    self.violate(|v| v.prompted_busy += 1);
                    return HostOutcome::Ok(HostReply::Done); // it joins the running turn
                }
                let run = state.run + 1;
                self.with(&session, |x| {
                    x.run = run;
                    x.run_started = now;
                });
                self.plan_turn(&session, run, agent);
                HostOutcome::Ok(HostReply::Done)
            }
            HostOp::Abort { .. } => {
                if state.busy || self.turn_pending(&session, state.run) {
                    let started = state.run_started;
                    let message = self.message(started, now, "error", Some(MessageError::Aborted));
                    self.with(&session, |x| {
                        x.run += 1; // the aborted turn's events are void
                        x.busy = false;
                        x.tool = None;
                        x.last = Some(message);
                        x.idle_at = now;
                    });
                    out.push(Delivery::Event(HostEvent::Idle(session.clone())));
                    self.schedule(1, Item::Idle(session));
                }
                HostOutcome::Ok(HostReply::Done)
            }
            HostOp::DeleteSession { .. } => {
                if state.busy {
                    self.violate(|v| v.deleted_busy += 1);
                } else if state.run > 0 && now.saturating_sub(state.idle_at) < 10_000 {
                    self.violate(|v| v.deleted_too_soon += 1);
                }
                self.with(&session, |x| {
                    x.deleted = true;
                    x.busy = false;
                    x.run += 1;
                });
                out.push(Delivery::Event(HostEvent::Deleted(session)));
                HostOutcome::Ok(HostReply::Done)
            }
            HostOp::LastAssistantMessage { .. } => HostOutcome::Ok(HostReply::Message(state.last)),
            HostOp::CheckSession { .. } => {
                HostOutcome::Ok(HostReply::Health(SessionHealth::Exists {
                    busy: state.busy,
                }))
            }
            HostOp::CreateSession { .. } | HostOp::SessionStatuses => {
                HostOutcome::BadReply("not a query".into())
            }
        }
    }

    /// Whether a turn of run `run` still has items queued (planned but not busy yet).
    fn turn_pending(&self, session: &SessionId, run: u32) -> bool {
        self.queue.borrow().iter().any(|(_, _, item)| match item {
            Item::Busy(s, r)
            | Item::Retry(s, r, _, _)
            | Item::Step(s, r, _)
            | Item::Finish(s, r, _) => s == session && *r == run,
            _ => false,
        })
    }

    fn current(&self, session: &SessionId, run: u32) -> bool {
        self.sessions
            .borrow()
            .get(session)
            .is_some_and(|s| s.run == run && !s.deleted)
    }

    fn with(&self, session: &SessionId, f: impl FnOnce(&mut Session)) {
        if let Some(s) = self.sessions.borrow_mut().get_mut(session) {
            f(s);
        }
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> Result<u64, Error> {
        Ok(self.clock.get())
    }

    fn memory(&self) -> Result<MemoryReading, Error> {
        let base = self.memory.get();
        let busy = self
            .sessions
            .borrow()
            .values()
            .filter(|s| s.busy && !s.deleted)
            .count() as u64;
        let used = base
            .used
            .saturating_add(busy.saturating_mul(self.memory_per_busy.get()));
        MemoryReading::new(used, base.limit)
    }

    fn start(&self, request: HostRequest) {
        let latency = self.latency();
        match &request.op {
            HostOp::CreateSession { agent, .. } => {
                let p = self.ops.get();
                let roll = self.rng.borrow_mut().f64();
                let outcome = if roll < p.failure_rate {
                    HostOutcome::Failed(HostFailure {
                        class: FailureClass::Upstream,
                        message: "simulated 503".into(),
                        retry_after_ms: None,
                    })
                } else if roll < p.failure_rate + p.rate_limit_rate {
                    HostOutcome::Failed(HostFailure {
                        class: FailureClass::RateLimited,
                        message: "simulated 429".into(),
                        retry_after_ms: Some(1_000),
                    })
                } else {
                    // Ids are unique per simulator: the call id is.
                    HostOutcome::Ok(HostReply::SessionCreated(SessionId(format!(
                        "ses_{agent}_{}",
                        request.call.get()
                    ))))
                };
                self.schedule(latency, Item::Answer(request.call, outcome));
            }
            // The server starts a prompt as soon as it receives it; its answer (204) reaches
            // the client later — so busy, and even the reply message, may come first.
            op @ HostOp::Prompt { .. } => {
                let mut events = Vec::new();
                let outcome = self.query(op, &mut events);
                self.schedule(latency, Item::Answer(request.call, outcome));
            }
            op => self.schedule(latency, Item::Query(request.call, op.clone())),
        }
        self.started.borrow_mut().push(request);
    }
}

mod tool;

#[cfg(test)]
mod tests;
