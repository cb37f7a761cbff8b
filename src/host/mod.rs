//! The host: what JavaScript supplies to the engine, seen from plain Rust.
//!
//! The engine never performs I/O. It asks the host for two readings (`now`, `memory`) and for
//! operations (create a session, …). An operation is a [`HostRequest`] tagged with a [`CallId`];
//! the host starts it and later reports its [`HostOutcome`] back to the engine *by that id*
//! (`Engine::resolve`). So the hot path passes integers, never closures, and the engine core can be
//! driven identically by the JS host, by tests and by the deterministic [`FakeHost`]. Besides
//! answers, the host forwards [`HostEvent`]s from OpenCode's bus (busy, retry, idle, error,
//! deleted), and [`AssistantMessage`] carries what the completion rule reads.
//!
//! Invariants:
//! 1. A `CallId` names one request for its whole life; ids are not reused while a call is pending.
//! 2. The host answers each request at most once; an answer for an unknown or settled id is an
//!    `UnknownCall` error and changes nothing.
//! 3. Readings are validated where they enter (`MemoryReading::new`): the core sees only
//!    well-formed values.

mod clock;
mod fake;

pub use self::clock::Clock;

use std::fmt;

pub use self::fake::{Delivery, FakeHost, OpProfile, PromptProfile, Violations};

/// No violations: what a careful client leaves in [`FakeHost::violations`].
pub fn fake_violations_none() -> Violations {
    Violations::default()
}

use crate::error::Error;
pub(crate) use crate::error::{FailureClass, HostOpKind};

/// Identifies one host operation from request to outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u32);

impl CallId {
    /// The integer JavaScript sees.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call#{}", self.0)
    }
}

/// An OpenCode session id, as the host reported it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub String);

impl SessionId {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One operation, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostOp {
    /// Create an (empty) session for `agent`, under `parent` when given.
    CreateSession {
        /// The agent type the session is for, e.g. `worker`.
        agent: String,
        /// The parent session, so the sub-agent shows under the orchestrating session.
        parent: Option<SessionId>,
        /// The title; OpenCode asks a model for one when it is missing, so there always is one.
        title: String,
    },
    /// Send `text` to `session` as `agent`, with `model` (`provider/model`) when set.
    Prompt {
        /// The session; never a busy one (OpenCode would join the running turn).
        session: SessionId,
        /// The agent that answers.
        agent: String,
        /// `provider/model`, or the agent's default.
        model: Option<String>,
        /// The prompt.
        text: String,
    },
    /// Abort whatever `session` is running.
    Abort {
        /// The session.
        session: SessionId,
    },
    /// Delete `session` (after abort and quiet; never while busy).
    DeleteSession {
        /// The session.
        session: SessionId,
    },
    /// Fetch the newest assistant message of `session`.
    LastAssistantMessage {
        /// The session.
        session: SessionId,
    },
    /// Check that `session` exists, and whether it is busy.
    CheckSession {
        /// The session.
        session: SessionId,
    },
    /// The statuses of every non-idle session (one call for all of them).
    SessionStatuses,
}

impl HostOp {
    /// Which kind of operation this is.
    pub fn kind(&self) -> HostOpKind {
        match self {
            HostOp::CreateSession { .. } => HostOpKind::CreateSession,
            HostOp::Prompt { .. } => HostOpKind::Prompt,
            HostOp::Abort { .. } => HostOpKind::Abort,
            HostOp::DeleteSession { .. } => HostOpKind::DeleteSession,
            HostOp::LastAssistantMessage { .. } => HostOpKind::LastAssistantMessage,
            HostOp::CheckSession { .. } => HostOpKind::CheckSession,
            HostOp::SessionStatuses => HostOpKind::SessionStatuses,
        }
    }

    /// The session the operation acts on (none for `CreateSession`).
    pub fn session(&self) -> Option<&SessionId> {
        match self {
            HostOp::CreateSession { .. } | HostOp::SessionStatuses => None,
            HostOp::Prompt { session, .. }
            | HostOp::Abort { session }
            | HostOp::DeleteSession { session }
            | HostOp::LastAssistantMessage { session }
            | HostOp::CheckSession { session } => Some(session),
        }
    }
}

/// A request for the host to start an operation and report back by `call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRequest {
    /// The id the outcome must carry.
    pub call: CallId,
    /// What to do.
    pub op: HostOp,
}

/// A successful answer, typed by operation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostReply {
    /// The session `createSession` made.
    SessionCreated(SessionId),
    /// `prompt`, `abort` or `deleteSession` was accepted.
    Done,
    /// `lastAssistantMessage`: the newest assistant message, or `None` before the first.
    Message(Option<AssistantMessage>),
    /// `checkSession`.
    Health(SessionHealth),
    /// `sessionStatuses`: the sessions that are not idle, each with whether OpenCode is
    /// retrying a provider error in it (`retry`) rather than plainly `busy`. A session absent
    /// from the list is idle or gone.
    Statuses(Vec<(SessionId, bool)>),
}

impl HostReply {
    /// The reply's kind, for an error that says a reply did not fit its request.
    pub fn kind(&self) -> &'static str {
        match self {
            HostReply::SessionCreated(_) => "a created session",
            HostReply::Done => "done",
            HostReply::Message(_) => "a message",
            HostReply::Health(_) => "a health check",
            HostReply::Statuses(_) => "session statuses",
        }
    }
}

/// What `checkSession` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionHealth {
    /// The session exists; `busy` as its status says.
    Exists {
        /// Whether it is busy (or retrying).
        busy: bool,
    },
    /// The session no longer exists.
    Gone,
}

/// The error OpenCode put on an assistant message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// `MessageAbortedError`: the turn was aborted.
    Aborted,
    /// `APIError` from the provider, after OpenCode's own retries.
    Api {
        /// The HTTP status, when known.
        status: Option<u16>,
        /// The provider's message.
        message: String,
        /// How long the provider asked to wait before the next request (its last answer's
        /// `retry-after-ms` or `retry-after` header), ms.
        retry_after_ms: Option<u64>,
    },
    /// Any other error (agent errors, output length, …).
    Other {
        /// The error's name.
        name: String,
        /// Its message.
        message: String,
    },
}

impl MessageError {
    /// How the failure counts: aborted → cancelled; an API 429 → rate limited; other API
    /// statuses by [`FailureClass::from_status`] (no status → upstream); anything else is an
    /// agent error → invalid.
    pub fn class(&self) -> FailureClass {
        match self {
            MessageError::Aborted => FailureClass::Cancelled,
            MessageError::Api {
                status: Some(s), ..
            } => FailureClass::from_status(*s),
            MessageError::Api { status: None, .. } => FailureClass::Upstream,
            MessageError::Other { .. } => FailureClass::Invalid,
        }
    }

    /// How long the provider asked to wait, ms, when it said.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            MessageError::Api { retry_after_ms, .. } => *retry_after_ms,
            _ => None,
        }
    }
}

impl std::fmt::Display for MessageError {
    /// What a failed task's message says: `APIError 503: overloaded`, `aborted`,
    /// `MessageOutputLengthError: …`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageError::Aborted => f.write_str("aborted"),
            MessageError::Api {
                status: Some(s),
                message,
                ..
            } => write!(f, "APIError {s}: {message}"),
            MessageError::Api {
                status: None,
                message,
                ..
            } => write!(f, "APIError: {message}"),
            MessageError::Other { name, message } => write!(f, "{name}: {message}"),
        }
    }
}

/// The parts of an assistant message the completion rule reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssistantMessage {
    /// When it was created, on the engine's clock (the host converts the server's stamp: see
    /// [`Clock::stamp`]).
    pub created_ms: u64,
    /// When it was created as the server stamped it (`time.created`, its wall clock), as read:
    /// not converted, so it tells one message from another whatever the clocks did since.
    pub created_wall_ms: u64,
    /// When it was completed, if it was.
    pub completed_ms: Option<u64>,
    /// The finish reason (`stop`, `tool-calls`, `length`, …).
    pub finish: Option<String>,
    /// The error on it, if any.
    pub error: Option<MessageError>,
    /// Its text, for the task's result.
    pub text: String,
}

impl AssistantMessage {
    /// Whether the turn is over: completed, and not stopped for tool calls (the model will go
    /// on after the tools answer).
    pub fn is_final(&self) -> bool {
        self.completed_ms.is_some() && self.finish.as_deref() != Some("tool-calls")
    }
}

/// Events the host forwards from OpenCode's bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// `session.status` busy.
    Busy(SessionId),
    /// `session.status` retry: OpenCode is retrying a provider error itself.
    Retry {
        /// The session.
        session: SessionId,
        /// OpenCode's attempt number.
        attempt: u32,
        /// When it retries next, host ms.
        next_ms: u64,
    },
    /// `session.status` idle / `session.idle`. Arrives twice after an abort or an error.
    Idle(SessionId),
    /// `session.error`.
    Error {
        /// The session.
        session: SessionId,
        /// The error.
        error: MessageError,
    },
    /// `session.deleted`.
    Deleted(SessionId),
}

impl HostEvent {
    /// The session the event is about.
    pub fn session(&self) -> &SessionId {
        match self {
            HostEvent::Busy(s) | HostEvent::Idle(s) | HostEvent::Deleted(s) => s,
            HostEvent::Retry { session, .. } | HostEvent::Error { session, .. } => session,
        }
    }
}

/// A failed host operation, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFailure {
    /// How it counts.
    pub class: FailureClass,
    /// The host's message, for people.
    pub message: String,
    /// When the host said how long to wait (Retry-After), in milliseconds.
    pub retry_after_ms: Option<u64>,
}

/// What the host reports for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostOutcome {
    /// The operation succeeded with this value.
    Ok(HostReply),
    /// The operation failed.
    Failed(HostFailure),
    /// The host answered, but not with a value of the shape the operation needs.
    BadReply(String),
}

/// A memory reading from the host, in bytes: `used` of `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryReading {
    used: u64,
    limit: u64,
}

impl MemoryReading {
    /// Validates a reading: the limit must be positive. `used` may exceed `limit` (the host is
    /// over its budget), which simply reads as pressure above 100 %.
    pub fn new(used: u64, limit: u64) -> Result<Self, Error> {
        if limit == 0 {
            return Err(Error::HostBadReading {
                reading: "memory",
                reason: "limit must be greater than 0".into(),
            });
        }
        Ok(MemoryReading { used, limit })
    }

    /// Bytes in use.
    pub fn used(self) -> u64 {
        self.used
    }

    /// The budget in bytes.
    pub fn limit(self) -> u64 {
        self.limit
    }

    /// `used / limit` in per-mille (0‥∞), integer so comparisons at thresholds are exact.
    /// Exactly `used * 1000 / limit` (saturating at `u64::MAX`) for any u64 reading, without
    /// 128-bit division: its runtime routine would be a kilobyte of the `.wasm`.
    pub fn per_mille(self) -> u64 {
        if let Some(scaled) = self.used.checked_mul(1000) {
            return scaled / self.limit;
        }
        let limit = self.limit;
        let (whole, mut rest) = (self.used / limit, self.used % limit);
        // `rest / limit` to three decimals by long division; `10 * rest` (which may not fit)
        // is ten additions modulo `limit`, each counting a wrap as one unit of the digit.
        let mut fraction = 0;
        for _ in 0..3 {
            let (mut digit, mut acc) = (0, 0u64);
            for _ in 0..10 {
                if acc >= limit - rest {
                    acc -= limit - rest;
                    digit += 1;
                } else {
                    acc += rest;
                }
            }
            fraction = fraction * 10 + digit;
            rest = acc;
        }
        whole.saturating_mul(1000).saturating_add(fraction)
    }
}

/// What the engine needs from its environment.
///
/// Methods take `&self`: a JS host may call back into the engine while one of these runs, so an
/// implementation must not rely on exclusive access (see `bindings::JsHost`).
pub trait Host {
    /// Milliseconds on a monotonic clock chosen by the host.
    fn now_ms(&self) -> Result<u64, Error>;
    /// The current memory reading.
    fn memory(&self) -> Result<MemoryReading, Error>;
    /// Starts an operation. Its outcome comes back later through `Engine::resolve`.
    fn start(&self, request: HostRequest);
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn memory_reading_rejects_zero_limit() {
        assert_eq!(
            MemoryReading::new(1, 0).unwrap_err().code(),
            "HOST_BAD_READING"
        );
    }

    #[test]
    fn per_mille_is_exact_at_thresholds_and_never_overflows() {
        assert_eq!(MemoryReading::new(800, 1000).unwrap().per_mille(), 800);
        assert_eq!(MemoryReading::new(799, 1000).unwrap().per_mille(), 799);
        assert_eq!(
            MemoryReading::new(u64::MAX, 1).unwrap().per_mille(),
            u64::MAX
        );
        // Readings whose `used * 1000` does not fit in 64 bits, against 128-bit arithmetic.
        let exact = |used: u64, limit: u64| {
            ((u128::from(used) * 1000) / u128::from(limit)).min(u128::from(u64::MAX)) as u64
        };
        let big = [
            u64::MAX,
            u64::MAX - 1,
            u64::MAX / 1000 + 1,
            u64::MAX / 2 + 12_345,
            1 << 63,
            (1 << 62) + 7,
        ];
        let limits = [
            1,
            3,
            999,
            1000,
            1001,
            1 << 20,
            u64::MAX / 3,
            u64::MAX - 1,
            u64::MAX,
        ];
        for used in big {
            for limit in limits {
                let r = MemoryReading::new(used, limit).unwrap();
                assert_eq!(r.per_mille(), exact(used, limit), "{used} / {limit}");
            }
        }
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..100_000 {
            let used = rng.u64(u64::MAX / 1000..);
            let limit = rng.u64(1..);
            let r = MemoryReading::new(used, limit).unwrap();
            assert_eq!(r.per_mille(), exact(used, limit), "{used} / {limit}");
        }
    }

    #[test]
    fn status_classification_follows_the_failure_table() {
        assert_eq!(FailureClass::from_status(429), FailureClass::RateLimited);
        assert_eq!(FailureClass::from_status(404), FailureClass::Invalid);
        assert_eq!(FailureClass::from_status(408), FailureClass::Timeout);
        assert_eq!(FailureClass::from_status(503), FailureClass::Upstream);
    }

    #[test]
    fn message_errors_classify_as_the_design_says() {
        assert_eq!(MessageError::Aborted.class(), FailureClass::Cancelled);
        let api = |status| MessageError::Api {
            status,
            message: String::new(),
            retry_after_ms: None,
        };
        assert_eq!(api(Some(429)).class(), FailureClass::RateLimited);
        assert_eq!(api(Some(500)).class(), FailureClass::Upstream);
        assert_eq!(api(None).class(), FailureClass::Upstream);
        assert_eq!(api(Some(400)).class(), FailureClass::Invalid);
        let other = MessageError::Other {
            name: "MessageOutputLengthError".into(),
            message: String::new(),
        };
        assert_eq!(other.class(), FailureClass::Invalid);
    }

    #[test]
    fn a_message_stopped_for_tool_calls_is_not_final() {
        let m = |completed, finish: &str| AssistantMessage {
            created_ms: 1,
            created_wall_ms: 1,
            completed_ms: completed,
            finish: Some(finish.into()),
            error: None,
            text: String::new(),
        };
        assert!(m(Some(2), "stop").is_final());
        assert!(!m(Some(2), "tool-calls").is_final());
        assert!(!m(None, "stop").is_final());
    }
}
