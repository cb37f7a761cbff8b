//! Tasks as the store keeps them: the spec a user submitted, the state it is in, and the rules
//! for moving between states.
//!
//! ```text
//! Queued ─▶ Admitted ─▶ SessionAcquired ─▶ Dispatched ─▶ Running ─▶ Succeeded
//!   │           │              │                │            │ ╲
//!   │           └──────────────┴────────────────┴────────────┴──▶ Failed | Cancelled | TimedOut
//!   │                                           └──▶ Succeeded (idle after the grace period)
//!   └──▶ Cancelled (cancelled while queued, or a dependency did not succeed)
//! any started state ─▶ Queued (a retry: a new attempt)
//! Unknown (set by a restore for work in flight) ─▶ Running | Succeeded | Failed | Cancelled
//! ```
//!
//! Invariants:
//! 1. Only the transitions above are legal; settled states (Succeeded, Failed, Cancelled,
//!    TimedOut) are final.
//! 2. A record has one canonical encoding (`encode`), and `decode(encode(r)) == r`.
//! 3. A spec is valid before it is a task: every field checked, named in the error.

use crate::codec::{Reader, Writer};
use crate::error::Error;
use crate::host::{FailureClass, SessionId};
use crate::ids::{Priority, TaskId};

/// Longest prompt accepted, bytes (1 MiB).
pub(crate) const MAX_PROMPT: usize = 1 << 20;
/// Longest short text field (agent, model, ids, keys), bytes.
pub(crate) const MAX_NAME: usize = 256;
/// Most dependencies of one task.
pub(crate) const MAX_DEPS: usize = 256;
/// Most retries a task may ask for.
pub(crate) const MAX_RETRIES: u32 = 10;
/// The longest deadline, ms (one day); the default is 30 min.
pub(crate) const MAX_DEADLINE_MS: u64 = 86_400_000;
/// The default deadline, ms.
pub(crate) const DEFAULT_DEADLINE_MS: u64 = 30 * 60_000;

/// What a user asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    /// Agent type; decides the lane.
    pub agent: String,
    /// The prompt.
    pub prompt: String,
    /// Priority.
    pub priority: Priority,
    /// Time allowed from dispatch to settlement, ms.
    pub deadline_ms: u64,
    /// `provider/model`; also the key of its limit and breaker.
    pub model: Option<String>,
    /// The orchestrating session the sub-agent runs under.
    pub parent: Option<SessionId>,
    /// A key that makes a repeated submission return the first task instead of a new one, and
    /// that marks the task safe to re-run after a crash.
    pub idempotency_key: Option<String>,
    /// Tasks that must succeed before this one starts.
    pub depends_on: Vec<TaskId>,
    /// Extra attempts after an upstream failure or timeout (default 0: one retry layer is
    /// OpenCode's own). A rate-limited turn is sent again up to
    /// `max(retries, RATE_LIMIT_REDISPATCHES)` times (see the engine's retry layer).
    pub retries: u32,
    /// Refuse at once instead of waiting while the model's breaker is open (and fail, queued,
    /// when it opens).
    pub fail_fast: bool,
    /// Continue in this task's session (a follow-up), when it is free.
    pub follow_up_of: Option<TaskId>,
}

impl TaskSpec {
    /// A spec with the defaults: NORMAL, 30 min deadline, no model, parent, deps or retries.
    pub fn new(agent: impl Into<String>, prompt: impl Into<String>) -> Self {
        TaskSpec {
            agent: agent.into(),
            prompt: prompt.into(),
            priority: Priority::Normal,
            deadline_ms: DEFAULT_DEADLINE_MS,
            model: None,
            parent: None,
            idempotency_key: None,
            depends_on: Vec::new(),
            retries: 0,
            fail_fast: false,
            follow_up_of: None,
        }
    }

    /// Checks every field (invariant 3). Dependencies are checked against the store by the
    /// registry, which knows which ids exist.
    pub fn validate(&self) -> Result<(), Error> {
        name("agent", &self.agent)?;
        if self.prompt.trim().is_empty() {
            return Err(Error::input("prompt", "must not be empty"));
        }
        if self.prompt.len() > MAX_PROMPT {
            return Err(Error::input(
                "prompt",
                format!("must be at most {MAX_PROMPT} bytes"),
            ));
        }
        if self.deadline_ms == 0 || self.deadline_ms > MAX_DEADLINE_MS {
            return Err(Error::input(
                "deadlineMs",
                format!("must be in 1..={MAX_DEADLINE_MS}"),
            ));
        }
        if let Some(model) = &self.model {
            name("model", model)?;
            if !model.contains('/') {
                return Err(Error::input("model", "must be `provider/model`"));
            }
        }
        if let Some(parent) = &self.parent {
            name("parentID", parent.as_str())?;
        }
        if let Some(key) = &self.idempotency_key {
            name("idempotencyKey", key)?;
        }
        if self.depends_on.len() > MAX_DEPS {
            return Err(Error::input(
                "dependsOn",
                format!("at most {MAX_DEPS} dependencies"),
            ));
        }
        // (`u64`s: the one element type the crate sorts; see `Engine::tick`.)
        let mut deps: Vec<u64> = self.depends_on.iter().map(|d| u64::from(d.get())).collect();
        deps.sort_unstable();
        if deps.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::input("dependsOn", "lists a task twice"));
        }
        if self.retries > MAX_RETRIES {
            return Err(Error::input(
                "retries",
                format!("must be at most {MAX_RETRIES}"),
            ));
        }
        Ok(())
    }
}

fn name(field: &str, value: &str) -> Result<(), Error> {
    super::check_len(field, value, MAX_NAME)
}

/// Where a task is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting for admission (and for its dependencies).
    Queued,
    /// Holds a permit; no session yet.
    Admitted,
    /// Has an empty session (from the pool or created), not prompted yet.
    SessionAcquired {
        /// The session.
        session: SessionId,
    },
    /// The prompt was accepted at `at_ms`; the host has not reported busy yet.
    Dispatched {
        /// The session.
        session: SessionId,
        /// Host time of dispatch.
        at_ms: u64,
    },
    /// The host reported the session busy (or retrying).
    Running {
        /// The session.
        session: SessionId,
        /// Host time of dispatch.
        at_ms: u64,
    },
    /// Done; the last assistant message's text.
    Succeeded {
        /// The session it ran in.
        session: SessionId,
        /// The result text.
        text: String,
    },
    /// Failed for good.
    Failed {
        /// How the failure counts.
        class: FailureClass,
        /// Why.
        message: String,
    },
    /// Cancelled: by the user, or because a dependency did not succeed.
    Cancelled {
        /// Why.
        reason: String,
    },
    /// The deadline passed; the session was aborted.
    TimedOut,
    /// In flight when the engine stopped; the outcome is not known until reconciled.
    Unknown {
        /// The session it was running in, if it had one.
        session: Option<SessionId>,
        /// Host time of its dispatch (the completion rule only accepts a message created at or
        /// after it); 0 when it was never dispatched.
        at_ms: u64,
    },
}

impl TaskState {
    /// The state without its data: what events carry and decisions look at.
    pub fn phase(&self) -> TaskPhase {
        match self {
            TaskState::Queued => TaskPhase::Queued,
            TaskState::Admitted => TaskPhase::Admitted,
            TaskState::SessionAcquired { .. } => TaskPhase::SessionAcquired,
            TaskState::Dispatched { .. } => TaskPhase::Dispatched,
            TaskState::Running { .. } => TaskPhase::Running,
            TaskState::Succeeded { .. } => TaskPhase::Succeeded,
            TaskState::Failed { .. } => TaskPhase::Failed,
            TaskState::Cancelled { .. } => TaskPhase::Cancelled,
            TaskState::TimedOut => TaskPhase::TimedOut,
            TaskState::Unknown { .. } => TaskPhase::Unknown,
        }
    }

    /// The stable name JavaScript sees (its phase's).
    pub fn name(&self) -> &'static str {
        self.phase().name()
    }

    /// Whether the state is final.
    pub fn is_settled(&self) -> bool {
        self.phase().is_settled()
    }

    /// Whether a permit is held in this state. An `Unknown` task may still be running on the
    /// server, so it holds one too (the engine adopts it on restore).
    pub fn holds_permit(&self) -> bool {
        matches!(
            self,
            TaskState::Admitted
                | TaskState::SessionAcquired { .. }
                | TaskState::Dispatched { .. }
                | TaskState::Running { .. }
                | TaskState::Unknown { .. }
        )
    }

    /// The session the task uses, if any.
    pub fn session(&self) -> Option<&SessionId> {
        match self {
            TaskState::SessionAcquired { session }
            | TaskState::Dispatched { session, .. }
            | TaskState::Running { session, .. }
            | TaskState::Succeeded { session, .. } => Some(session),
            TaskState::Unknown { session, .. } => session.as_ref(),
            _ => None,
        }
    }

    /// The state's tag in the canonical encoding (0 = queued … 9 = unknown).
    pub fn tag(&self) -> u8 {
        self.phase() as u8
    }
}

/// Where a task is, without the state's data: the typed state task events carry
/// ([`TaskEvent`](super::lifecycle::TaskEvent)). Its discriminant is the state's tag in the
/// canonical encoding; [`TaskPhase::name`] is the one place the names JavaScript sees are
/// spelled (the core decides by the variant, never by the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskPhase {
    /// See [`TaskState::Queued`].
    Queued = 0,
    /// See [`TaskState::Admitted`].
    Admitted = 1,
    /// See [`TaskState::SessionAcquired`].
    SessionAcquired = 2,
    /// See [`TaskState::Dispatched`].
    Dispatched = 3,
    /// See [`TaskState::Running`].
    Running = 4,
    /// See [`TaskState::Succeeded`].
    Succeeded = 5,
    /// See [`TaskState::Failed`].
    Failed = 6,
    /// See [`TaskState::Cancelled`].
    Cancelled = 7,
    /// See [`TaskState::TimedOut`].
    TimedOut = 8,
    /// See [`TaskState::Unknown`].
    Unknown = 9,
}

impl TaskPhase {
    /// Every phase, in tag order.
    pub const ALL: [TaskPhase; 10] = [
        TaskPhase::Queued,
        TaskPhase::Admitted,
        TaskPhase::SessionAcquired,
        TaskPhase::Dispatched,
        TaskPhase::Running,
        TaskPhase::Succeeded,
        TaskPhase::Failed,
        TaskPhase::Cancelled,
        TaskPhase::TimedOut,
        TaskPhase::Unknown,
    ];

    /// The stable name JavaScript sees (`"queued"`, …, `"timed_out"`, `"unknown"`).
    pub fn name(self) -> &'static str {
        match self {
            TaskPhase::Queued => "queued",
            TaskPhase::Admitted => "admitted",
            TaskPhase::SessionAcquired => "session_acquired",
            TaskPhase::Dispatched => "dispatched",
            TaskPhase::Running => "running",
            TaskPhase::Succeeded => "succeeded",
            TaskPhase::Failed => "failed",
            TaskPhase::Cancelled => "cancelled",
            TaskPhase::TimedOut => "timed_out",
            TaskPhase::Unknown => "unknown",
        }
    }

    /// Whether the phase is final (succeeded, failed, cancelled, timed out).
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            TaskPhase::Succeeded | TaskPhase::Failed | TaskPhase::Cancelled | TaskPhase::TimedOut
        )
    }
}

/// Whether `from → to` is legal (invariant 1). A move to `Unknown` is a restore's, not a
/// transition. `Unknown → Queued` is a retry: reconciling found the attempt *finished* with a
/// retryable failure (so the retry re-runs nothing that might still be running).
pub(crate) fn is_legal(from: &TaskState, to: &TaskState) -> bool {
    use TaskState as S;
    let settle = |to: &S| matches!(to, S::Failed { .. } | S::Cancelled { .. } | S::TimedOut);
    match (from, to) {
        (s, _) if s.is_settled() => false,
        (_, S::Unknown { .. }) => false,
        (S::Queued, S::Admitted) => true,
        (S::Queued, S::Cancelled { .. }) => true,
        (S::Queued, S::Failed { .. }) => true,
        (S::Admitted, S::SessionAcquired { .. }) => true,
        (S::SessionAcquired { .. }, S::Dispatched { .. }) => true,
        (S::Dispatched { .. }, S::Running { .. }) => true,
        (S::Dispatched { .. } | S::Running { .. }, S::Succeeded { .. }) => true,
        (
            S::Admitted | S::SessionAcquired { .. } | S::Dispatched { .. } | S::Running { .. },
            S::Queued,
        ) => true,
        (
            S::Admitted | S::SessionAcquired { .. } | S::Dispatched { .. } | S::Running { .. },
            to,
        ) => settle(to),
        (
            S::Unknown { .. },
            S::Running { .. }
            | S::Succeeded { .. }
            | S::Failed { .. }
            | S::Cancelled { .. }
            | S::Queued,
        ) => true,
        _ => false,
    }
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// The task.
    pub id: TaskId,
    /// What was asked.
    pub spec: TaskSpec,
    /// Where it is.
    pub state: TaskState,
    /// Attempts started (a retry adds one).
    pub attempts: u32,
    /// Host time of submission.
    pub created_ms: u64,
    /// Host time of the last transition.
    pub updated_ms: u64,
}

impl TaskRecord {
    /// The spec's canonical bytes (invariant 2), stored once under the task's spec key when it
    /// is submitted: version byte 2, then the fields in order, integers big-endian, strings and
    /// lists length-prefixed with u32, options as a 0/1 byte. The id is in the key.
    pub fn encode_spec(&self) -> Vec<u8> {
        let s = &self.spec;
        let mut w = Writer::with_capacity(64 + s.prompt.len());
        w.u8(2);
        w.str(&s.agent);
        w.str(&s.prompt);
        w.u8(s.priority.index() as u8);
        w.u64(s.deadline_ms);
        w.opt_str(s.model.as_deref());
        w.opt_str(s.parent.as_ref().map(SessionId::as_str));
        w.opt_str(s.idempotency_key.as_deref());
        w.u32(s.depends_on.len() as u32);
        for d in &s.depends_on {
            w.u32(d.get());
        }
        w.u32(s.retries);
        w.u8(u8::from(s.fail_fast));
        match s.follow_up_of {
            Some(t) => {
                w.u8(1);
                w.u32(t.get());
            }
            None => w.u8(0),
        }
        w.0
    }

    /// The state's canonical bytes, written under the task's key by every transition: version
    /// byte 2, the state's tag and fields, attempts, created and updated times. Small, except a
    /// success's result (written once, when it settles).
    pub fn encode_state(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(48);
        w.u8(2);
        w.u8(self.state.tag());
        match &self.state {
            TaskState::Queued | TaskState::Admitted | TaskState::TimedOut => {}
            TaskState::SessionAcquired { session } => w.str(session.as_str()),
            TaskState::Dispatched { session, at_ms } | TaskState::Running { session, at_ms } => {
                w.str(session.as_str());
                w.u64(*at_ms);
            }
            TaskState::Succeeded { session, text } => {
                w.str(session.as_str());
                w.str(text);
            }
            TaskState::Failed { class, message } => {
                w.u8(class_tag(*class));
                w.str(message);
            }
            TaskState::Cancelled { reason } => w.str(reason),
            TaskState::Unknown { session, at_ms } => {
                w.opt_str(session.as_ref().map(SessionId::as_str));
                w.u64(*at_ms);
            }
        }
        w.u32(self.attempts);
        w.u64(self.created_ms);
        w.u64(self.updated_ms);
        w.0
    }

    /// Decodes a task's canonical spec and state bytes; anything else is refused.
    pub fn decode(id: TaskId, spec: &[u8], state: &[u8]) -> Result<TaskRecord, String> {
        Self::decode_with(id, decode_spec(spec)?, state)
    }

    /// [`TaskRecord::decode`] with the prompt left empty (checked, not copied).
    pub fn decode_brief(id: TaskId, spec: &[u8], state: &[u8]) -> Result<TaskRecord, String> {
        Self::decode_with(id, decode_spec_with(spec, false)?, state)
    }

    #[inline(never)]
    fn decode_with(id: TaskId, spec: TaskSpec, state: &[u8]) -> Result<TaskRecord, String> {
        let (state, attempts, created_ms, updated_ms) = decode_state(state)?;
        Ok(TaskRecord {
            id,
            spec,
            state,
            attempts,
            created_ms,
            updated_ms,
        })
    }
}

/// Decodes a spec's canonical bytes ([`TaskRecord::encode_spec`]).
pub(crate) fn decode_spec(bytes: &[u8]) -> Result<TaskSpec, String> {
    decode_spec_with(bytes, true)
}

fn decode_spec_with(bytes: &[u8], with_prompt: bool) -> Result<TaskSpec, String> {
    let mut r = Reader::new(bytes);
    if r.u8()? != 2 {
        return Err("unknown task spec version".into());
    }
    let agent = r.str()?;
    let prompt = if with_prompt {
        r.str()?
    } else {
        std::str::from_utf8(r.chunk()?).map_err(|_| "a prompt that is not UTF-8")?;
        String::new()
    };
    let priority = *Priority::ALL.get(r.u8()? as usize).ok_or("bad priority")?;
    let deadline_ms = r.u64()?;
    let model = r.opt_str()?;
    let parent = r.opt_str()?.map(SessionId);
    let idempotency_key = r.opt_str()?;
    let n = r.u32()? as usize;
    if n > MAX_DEPS {
        return Err("too many dependencies".into());
    }
    let depends_on = (0..n)
        .map(|_| r.u32().map(TaskId))
        .collect::<Result<_, _>>()?;
    let retries = r.u32()?;
    let fail_fast = r.bool()?;
    let follow_up_of = if r.bool()? {
        Some(TaskId(r.u32()?))
    } else {
        None
    };
    if r.remaining() != 0 {
        return Err("trailing bytes".into());
    }
    Ok(TaskSpec {
        agent,
        prompt,
        priority,
        deadline_ms,
        model,
        parent,
        idempotency_key,
        depends_on,
        retries,
        fail_fast,
        follow_up_of,
    })
}

/// Decodes a state's canonical bytes ([`TaskRecord::encode_state`]): the state, attempts,
/// created and updated times.
pub(crate) fn decode_state(bytes: &[u8]) -> Result<(TaskState, u32, u64, u64), String> {
    let mut r = Reader::new(bytes);
    if r.u8()? != 2 {
        return Err("unknown task state version".into());
    }
    let state = match r.u8()? {
        0 => TaskState::Queued,
        1 => TaskState::Admitted,
        2 => TaskState::SessionAcquired {
            session: SessionId(r.str()?),
        },
        3 => TaskState::Dispatched {
            session: SessionId(r.str()?),
            at_ms: r.u64()?,
        },
        4 => TaskState::Running {
            session: SessionId(r.str()?),
            at_ms: r.u64()?,
        },
        5 => TaskState::Succeeded {
            session: SessionId(r.str()?),
            text: r.str()?,
        },
        6 => TaskState::Failed {
            class: class_of(r.u8()?)?,
            message: r.str()?,
        },
        7 => TaskState::Cancelled { reason: r.str()? },
        8 => TaskState::TimedOut,
        9 => TaskState::Unknown {
            session: r.opt_str()?.map(SessionId),
            at_ms: r.u64()?,
        },
        t => return Err(format!("unknown state {t}")),
    };
    let attempts = r.u32()?;
    let created_ms = r.u64()?;
    let updated_ms = r.u64()?;
    if r.remaining() != 0 {
        return Err("trailing bytes".into());
    }
    Ok((state, attempts, created_ms, updated_ms))
}

fn class_tag(c: FailureClass) -> u8 {
    match c {
        FailureClass::Upstream => 0,
        FailureClass::RateLimited => 1,
        FailureClass::Timeout => 2,
        FailureClass::Cancelled => 3,
        FailureClass::Invalid => 4,
    }
}

fn class_of(tag: u8) -> Result<FailureClass, String> {
    Ok(match tag {
        0 => FailureClass::Upstream,
        1 => FailureClass::RateLimited,
        2 => FailureClass::Timeout,
        3 => FailureClass::Cancelled,
        4 => FailureClass::Invalid,
        t => return Err(format!("unknown failure class {t}")),
    })
}

mod input;

pub use self::input::TaskSpecInput;
pub(crate) use self::input::whole;

#[cfg(test)]
mod tests;
