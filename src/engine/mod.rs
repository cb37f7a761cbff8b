//! The engine core: turns user requests into host requests and host outcomes into results.
//!
//! The core is *sans-I/O*: it never calls the host. A method that needs the host queues a
//! [`HostRequest`] in the outbox; the driver (the JS bindings, a test, the demo) takes the outbox
//! with [`Engine::take_requests`] and starts each request **after** it has released its borrow of
//! the engine, so a host that calls back into the engine synchronously finds it free. Readings
//! (`now`, `memory`) are likewise taken by the driver and passed in.
//!
//! Invariants:
//! 1. Every pending call is in `calls` from the moment its request is queued until exactly one
//!    outcome is accepted for it; a second outcome is an `UnknownCall` error and changes nothing.
//! 2. Call ids are never reused while a call is pending (they count up, skipping pending ids on
//!    wrap-around).
//! 3. After `dispose`, every method refuses with `Disposed`, and no request is queued.

pub(crate) mod orchestrator;
pub(crate) mod runs;
pub(crate) mod task;
pub(crate) mod tasks;

use rustc_hash::FxHashMap;

use crate::config::Config;
use crate::error::Error;
use crate::host::{
    CallId, HostOp, HostOpKind, HostOutcome, HostReply, HostRequest, MemoryReading, SessionId,
};
use crate::sessions::{SessionBook, SessionCounters, SessionRecord};

/// Longest agent name or title accepted, in bytes.
const MAX_TEXT: usize = 4096;

/// A request to create a session, as a user of the engine states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSession {
    /// Agent type, e.g. `worker`. Decides the lane.
    pub agent: String,
    /// Parent session, so the child shows under it.
    pub parent: Option<SessionId>,
    /// Title; when absent the engine makes one (`foreman: <agent>`), because OpenCode would
    /// otherwise spend a model call on naming the session.
    pub title: Option<String>,
}

/// What a settled host call means for the caller that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// A session was created.
    SessionCreated(SessionId),
    /// The operation failed; the error is classified.
    Failed(Error),
}

#[derive(Debug)]
struct Pending {
    op: HostOpKind,
    agent: String,
    parent: Option<SessionId>,
    started_ms: u64,
}

/// Per-lane figures for the stats view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneStats {
    /// The lane name.
    pub name: String,
    /// The configured limit.
    pub limit: u32,
    /// Host calls pending for agents of this lane.
    pub pending_calls: u32,
}

/// A consistent view of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Host time of the view, ms.
    pub now_ms: u64,
    /// The memory reading of the view.
    pub memory: MemoryReading,
    /// Host calls started and not yet answered.
    pub pending_calls: u32,
    /// Sessions created and failed.
    pub sessions: SessionCounters,
    /// Lanes in name order.
    pub lanes: Vec<LaneStats>,
}

/// The engine core. See the module docs for how it is driven.
#[derive(Debug)]
pub struct Engine {
    config: Config,
    next_call: u32,
    calls: FxHashMap<CallId, Pending>,
    outbox: Vec<HostRequest>,
    sessions: SessionBook,
    disposed: bool,
}

impl Engine {
    /// An engine with a validated configuration.
    pub fn new(config: Config) -> Self {
        Engine {
            config,
            next_call: 1,
            calls: FxHashMap::default(),
            outbox: Vec::new(),
            sessions: SessionBook::default(),
            disposed: false,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Validates `request` and queues a `createSession` host request. Returns its call id; the
    /// outcome arrives through [`Engine::resolve`].
    pub fn create_session(&mut self, now_ms: u64, request: CreateSession) -> Result<CallId, Error> {
        self.ensure_live()?;
        check_text("agent", &request.agent)?;
        if let Some(parent) = &request.parent {
            check_text("parentID", parent.as_str())?;
        }
        let title = match request.title {
            Some(title) => {
                check_text("title", &title)?;
                title
            }
            None => format!("foreman: {}", request.agent),
        };
        let call = self.allocate_call();
        self.calls.insert(
            call,
            Pending {
                op: HostOpKind::CreateSession,
                agent: request.agent.clone(),
                parent: request.parent.clone(),
                started_ms: now_ms,
            },
        );
        self.outbox.push(HostRequest {
            call,
            op: HostOp::CreateSession {
                agent: request.agent,
                parent: request.parent,
                title,
            },
        });
        Ok(call)
    }

    /// Takes the queued host requests, oldest first. The caller starts them once it no longer
    /// borrows the engine.
    pub fn take_requests(&mut self) -> Vec<HostRequest> {
        std::mem::take(&mut self.outbox)
    }

    /// The kind of operation a pending call performs, so the driver can parse its reply.
    pub fn pending_op(&self, call: CallId) -> Option<HostOpKind> {
        self.calls.get(&call).map(|p| p.op)
    }

    /// Accepts the host's outcome for `call` and says what it means.
    pub fn resolve(
        &mut self,
        now_ms: u64,
        call: CallId,
        outcome: HostOutcome,
    ) -> Result<Settled, Error> {
        self.ensure_live()?;
        let pending = self
            .calls
            .remove(&call)
            .ok_or_else(|| Error::UnknownCall { call: call.get() })?;
        let latency = now_ms.saturating_sub(pending.started_ms);
        Ok(match (pending.op, outcome) {
            (HostOpKind::CreateSession, HostOutcome::Ok(HostReply::SessionCreated(id))) => {
                let record = SessionRecord {
                    agent: pending.agent,
                    parent: pending.parent,
                    created_at_ms: now_ms,
                };
                if self.sessions.record_created(id.clone(), record, latency) {
                    Settled::SessionCreated(id)
                } else {
                    self.sessions.record_failed();
                    Settled::Failed(Error::HostBadReply {
                        op: pending.op,
                        reason: format!("session id `{}` was already handed out", id.as_str()),
                    })
                }
            }
            (op, HostOutcome::Failed(failure)) => {
                self.sessions.record_failed();
                Settled::Failed(Error::HostFailed {
                    op,
                    class: failure.class,
                    message: failure.message,
                })
            }
            (op, HostOutcome::BadReply(reason)) => {
                self.sessions.record_failed();
                Settled::Failed(Error::HostBadReply { op, reason })
            }
            (op, HostOutcome::Ok(reply)) => {
                self.sessions.record_failed();
                Settled::Failed(Error::HostBadReply {
                    op,
                    reason: format!("unexpected reply: {}", reply.kind()),
                })
            }
        })
    }

    /// A view of the engine at `now_ms` with the host's `memory` reading.
    pub fn stats(&self, now_ms: u64, memory: MemoryReading) -> Result<Stats, Error> {
        self.ensure_live()?;
        let lanes = self
            .config
            .lanes()
            .iter()
            .map(|(name, &limit)| {
                let pending = self
                    .calls
                    .values()
                    .filter(|p| self.config.lane_of(&p.agent) == name)
                    .count();
                LaneStats {
                    name: name.clone(),
                    limit,
                    pending_calls: u32::try_from(pending).unwrap_or(u32::MAX),
                }
            })
            .collect();
        Ok(Stats {
            now_ms,
            memory,
            pending_calls: u32::try_from(self.calls.len()).unwrap_or(u32::MAX),
            sessions: self.sessions.counters(),
            lanes,
        })
    }

    /// The session book.
    pub fn sessions(&self) -> &SessionBook {
        &self.sessions
    }

    /// Stops the engine: pending calls are abandoned and returned so their waiters can be told.
    /// Idempotent.
    pub fn dispose(&mut self) -> Vec<CallId> {
        self.disposed = true;
        self.outbox.clear();
        std::mem::take(&mut self.calls).into_keys().collect()
    }

    /// Whether `dispose` was called.
    pub fn is_disposed(&self) -> bool {
        self.disposed
    }

    fn ensure_live(&self) -> Result<(), Error> {
        if self.disposed {
            Err(Error::Disposed)
        } else {
            Ok(())
        }
    }

    fn allocate_call(&mut self) -> CallId {
        // Count up; on wrap-around skip 0 and any id still pending (invariant 2). The loop ends:
        // fewer than u32::MAX calls can be pending.
        loop {
            let id = CallId(self.next_call);
            self.next_call = self.next_call.wrapping_add(1).max(1);
            if !self.calls.contains_key(&id) {
                return id;
            }
        }
    }
}

fn check_text(field: &str, value: &str) -> Result<(), Error> {
    check_len(field, value, MAX_TEXT)
}

/// `value` must have something besides white space, and at most `max` bytes.
pub(crate) fn check_len(field: &str, value: &str, max: usize) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(Error::input(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(Error::input(field, format!("must be at most {max} bytes")));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
