//! Liveness: the engine keeps going when the host misbehaves.
//!
//! - **Lost, repeated or reordered events.** While any task runs (its session was seen busy) or
//!   any pool session is believed busy, a probe runs every liveness interval
//!   (`liveness.intervalMs`): one `sessionStatuses` call for all of them (OpenCode's
//!   `session.status()`, which lists the non-idle sessions), then, only for the tasks absent
//!   from the answer, the per-task follow-up: its last assistant message (the completion rule
//!   decides). A pool session absent from the answer is idle (or gone) and marked so. So a lost
//!   `idle` costs at most one interval, and a stray busy cannot keep a pool session from
//!   retirement.
//! - **Pool health.** Warm and parked sessions are due a health check every minute (the pool's
//!   `health_every_ms`); the same probe answers them all: a probe is started for them when one
//!   is due and none is armed, never sooner than an interval after the last. A session in the
//!   answer exists; one absent is idle or gone — a gone one is found by its `session.deleted`
//!   event or when it is deleted (a 404 counts as deleted). No session gets a call of its own:
//!   after a burst, health costs at most one host call per interval, whatever the number
//!   parked. A probe that fails (timeout, upstream) settles nothing and retires nothing.
//! - **Hosts without `sessionStatuses`** (the call fails with class `invalid`) are asked per
//!   suspect instead, from then on: `lastAssistantMessage` for tasks, `checkSession` for pool
//!   sessions, busy ones each interval and warm or parked ones once a minute — bounded by the
//!   pool's size (`parked_per_agent` per agent, `warm_per_agent` per agent and parent), not by
//!   the work done.
//! - **Turns that died.** A running task whose session is found idle with no final reply, and
//!   still so one interval later, settles failed (class `invalid`: it counts for no breaker and
//!   is not re-sent): OpenCode stopped mid-turn, e.g. killed and restarted while the journal
//!   had it running. Without this it would wait for its deadline.
//! - **Calls that never answer.** Every host call has a timeout (`liveness.callTimeoutMs`); a
//!   call that passes it is answered here with class `timeout`, and what it was for moves on as
//!   after any failure of that class (a session creation is retried, a prompt fails or retries
//!   as the task allows, a check is asked again). A timed-out `createSession` keeps listening:
//!   a session it makes after all is retired, never left on the server.
//! - **Cancels settle.** A cancelled running task settles `cancelled` when its abort is
//!   confirmed, or `liveness.cancelMs` after the cancel at the latest (see `tick`).
//!
//! Invariants:
//! 1. At most one `sessionStatuses` call is pending, and at most one is started per interval.
//! 2. No probe and no timer while nothing is watched (no running task, no busy pool session)
//!    but the one at the next health check of a warm or parked session.
//! 3. A call is answered at most once: by the host, or by its timeout (never both).

use super::{CallFor, Engine};
use crate::engine::task::TaskState;
use crate::error::Error;
use crate::host::{
    CallId, FailureClass, HostFailure, HostOp, HostOpKind, HostOutcome, HostReply, SessionId,
};
use crate::ids::TaskId;

impl Engine {
    /// Arms the probe if something is to be watched and it is not armed.
    pub(super) fn watch(&mut self, now: u64) {
        if self.next_probe.is_none() {
            self.next_probe = Some(now.saturating_add(self.liveness.interval_ms));
        }
    }

    /// Whether anything needs the probe: a task whose session was seen busy (or is being
    /// reconciled), or a pool session believed busy.
    fn watching(&self) -> bool {
        self.live.values().any(|l| l.seen_busy) || self.pool.has_busy()
    }

    /// Runs the probe when it is due, and re-arms it while something is watched. A health
    /// check due arms it too, an interval after the last probe at the soonest.
    pub(super) fn probe_if_due(&mut self, now: u64) {
        if self.next_probe.is_none() && self.pool.next_check().is_some_and(|at| at <= now) {
            let soonest = self
                .last_probe
                .map_or(now, |last| last.saturating_add(self.liveness.interval_ms));
            self.next_probe = Some(soonest.max(now));
        }
        if self.next_probe.is_some_and(|p| p <= now) {
            self.next_probe = None;
            self.probe(now);
        }
        if self.next_probe.is_none() && self.watching() {
            self.watch(now);
        }
    }

    /// Asks about every running task (not being checked already) and every pool session
    /// believed busy: whatever was lost since the last probe is found by this one, so a lost
    /// event costs at most an interval.
    fn probe(&mut self, now: u64) {
        let mut ids: Vec<u64> = self
            .live
            .iter()
            .filter(|(_, l)| l.seen_busy && !l.check_pending)
            .map(|(id, _)| u64::from(id.get()))
            .collect();
        ids.sort_unstable();
        let tasks: Vec<(TaskId, SessionId)> = ids
            .into_iter()
            .filter_map(|id| {
                let task = TaskId(id as u32);
                match self.tasks.state(task)? {
                    TaskState::Dispatched { session, .. }
                    | TaskState::Running { session, .. }
                    | TaskState::Unknown {
                        session: Some(session),
                        ..
                    } => Some((task, session)),
                    _ => None,
                }
            })
            .collect();
        if self.probing {
            // The last probe is still pending (it times out by `callTimeoutMs`): health checks
            // due wait for the next interval.
            if self.pool.next_check().is_some_and(|at| at <= now) {
                self.watch(now);
            }
            return;
        }
        let mut sessions = self.pool.suspects(now, 0);
        // Health checks due before the next probe could run are asked now: after one round,
        // the pool's checks fall due together, one probe a minute.
        for session in self.pool.take_checks(now, self.liveness.interval_ms) {
            if !sessions.contains(&session) {
                sessions.push(session);
            }
        }
        if tasks.is_empty() && sessions.is_empty() {
            return;
        }
        if self.no_statuses {
            self.ask_each(tasks, sessions);
        } else {
            self.probing = true;
            self.last_probe = Some(now);
            self.call(
                CallFor::Statuses { tasks, sessions },
                HostOp::SessionStatuses,
            );
        }
    }

    /// The per-session follow-up, for suspects (or for all, without `sessionStatuses`).
    fn ask_each(&mut self, tasks: Vec<(TaskId, SessionId)>, sessions: Vec<SessionId>) {
        for (task, session) in tasks {
            if self.is_open(task) && self.by_session.get(&session) == Some(&task) {
                self.check(task, session);
            }
        }
        for session in sessions {
            self.call(
                CallFor::Check(session.clone()),
                HostOp::CheckSession { session },
            );
        }
    }

    /// The probe's answer.
    pub(super) fn on_statuses(
        &mut self,
        now: u64,
        tasks: Vec<(TaskId, SessionId)>,
        sessions: Vec<SessionId>,
        outcome: HostOutcome,
    ) -> Result<(), Error> {
        self.probing = false;
        match outcome {
            HostOutcome::Ok(HostReply::Statuses(busy)) => {
                let busy: rustc_hash::FxHashSet<&SessionId> = busy.iter().map(|(s, _)| s).collect();
                let mut suspects = Vec::new();
                for (task, session) in tasks {
                    // Absent: idle or gone — its last message says whether it finished.
                    if !busy.contains(&session) {
                        self.found_idle(now, task);
                        suspects.push((task, session));
                    }
                }
                for session in &sessions {
                    // In the map it exists; absent, it is idle (or gone: see the module docs).
                    if !busy.contains(session) {
                        self.pool.settled_idle(session, now);
                    }
                    self.pool.health(session, true, now);
                }
                self.ask_each(suspects, Vec::new());
            }
            HostOutcome::Failed(f) if f.class == FailureClass::Invalid => {
                // No `sessionStatuses` (or it cannot answer): one check per suspect, now and
                // from now on.
                self.no_statuses = true;
                self.ask_each(tasks, sessions);
            }
            // A timeout, an upstream failure or a bad reply: the next interval asks again.
            _ => {}
        }
        Ok(())
    }

    /// Answers every call whose timeout passed with class `timeout`.
    pub(super) fn expire_calls(&mut self, now: u64) -> Result<(), Error> {
        let mut due: Vec<u64> = self
            .call_due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(call, _)| u64::from(call.get()))
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        due.sort_unstable();
        let ms = self.liveness.call_timeout_ms;
        for call in due.into_iter().map(|c| CallId(c as u32)) {
            self.call_due.remove(&call);
            let Some(purpose) = self.calls.remove(&call) else {
                continue;
            };
            // Creations may still make a session: keep listening for one (the call stays
            // pending). Anything else is forgotten: a late answer is refused as unknown.
            match &purpose {
                CallFor::Create(task) => {
                    let (agent, parent) = self
                        .tasks
                        .get(*task)
                        .map(|r| (r.spec.agent, r.spec.parent))
                        .unwrap_or_default();
                    self.calls.insert(call, CallFor::LateCreate(agent, parent));
                }
                CallFor::Warm(agent, parent) => {
                    self.calls
                        .insert(call, CallFor::LateCreate(agent.clone(), parent.clone()));
                }
                _ => {}
            }
            let outcome = HostOutcome::Failed(HostFailure {
                class: FailureClass::Timeout,
                message: format!("no answer within {ms} ms"),
                retry_after_ms: None,
            });
            self.answer(now, purpose, outcome)?;
        }
        Ok(())
    }

    /// The kind of host operation pending call `call` performs (to parse its answer), or none
    /// when no such call is pending (answered, forgotten after its timeout, or never made).
    pub fn pending_op(&self, call: CallId) -> Option<HostOpKind> {
        self.calls.get(&call).map(CallFor::kind)
    }

    /// Host calls pending (answered neither by the host nor by a timeout).
    pub fn pending_calls(&self) -> usize {
        self.calls.len()
    }

    /// The liveness settings.
    pub fn liveness(&self) -> crate::config::LivenessConfig {
        self.liveness
    }
}

impl CallFor {
    /// The host operation a call made for this purpose performs.
    fn kind(&self) -> HostOpKind {
        match self {
            CallFor::Create(_) | CallFor::Warm(..) | CallFor::LateCreate(..) => {
                HostOpKind::CreateSession
            }
            CallFor::Prompt(_) => HostOpKind::Prompt,
            CallFor::Abort(..) => HostOpKind::Abort,
            CallFor::LastMessage(_) => HostOpKind::LastAssistantMessage,
            CallFor::Delete(_) => HostOpKind::DeleteSession,
            CallFor::Check(_) => HostOpKind::CheckSession,
            CallFor::Statuses { .. } => HostOpKind::SessionStatuses,
        }
    }
}
