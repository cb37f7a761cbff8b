//! One error type for the whole engine, with stable codes.
//!
//! Every fallible operation in the core returns [`Result<T, Error>`]. Each variant says what the
//! caller should do next. [`Error::code`] is the contract with JavaScript: `bindings/` turns an
//! `Error` into a JS `Error` whose `code` property is that string, and the strings never change
//! meaning once released.
//!
//! [`FailureClass`] (how a host failure counts) and [`HostOpKind`] (which host operation failed)
//! live here, at the bottom, because an [`Error`] names them; the host interface re-exports them.

use std::fmt;

/// Why the engine refused or failed. `code()` is the contract with JavaScript.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot be used. Fix the named key; nothing was created.
    InvalidConfig {
        /// Dotted path of the offending key, e.g. `lanes.worker`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The host object does not provide what the engine needs. Fix the host; nothing was created.
    InvalidHost {
        /// The member that is missing or of the wrong type, e.g. `createSession`.
        member: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An argument cannot be used. Do not retry it unchanged.
    InvalidInput {
        /// The argument or field at fault.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A host operation failed. `class` says whether a retry can help.
    HostFailed {
        /// Which operation failed.
        op: HostOpKind,
        /// How the failure counts (upstream, rate limited, timeout, cancelled, invalid).
        class: FailureClass,
        /// The host's own message, for people.
        message: String,
    },
    /// The host answered an operation with a value of the wrong shape. Fix the host.
    HostBadReply {
        /// Which operation answered.
        op: HostOpKind,
        /// What was expected and what came instead.
        reason: String,
    },
    /// A host reading (`now`, `memory`) was unusable. Fix the host.
    HostBadReading {
        /// Which reading.
        reading: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// Host memory is at or above the gate's ceiling: LOW work is refused. Retry after load drops,
    /// or submit at a higher priority.
    MemoryPressure {
        /// Bytes in use at the last reading.
        used: u64,
        /// The host's limit at the last reading.
        limit: u64,
    },
    /// The provider/model key's circuit breaker is open and the task asked to fail fast.
    BreakerOpen {
        /// The key.
        key: String,
        /// When the breaker lets a probe through, host ms; `None` while a probe decides.
        retry_at_ms: Option<u64>,
    },
    /// The wait queue holds as many tasks as it can. Retry after some finish.
    QueueFull {
        /// The most tasks that can wait.
        limit: u64,
    },
    /// A concurrent transaction committed a key this one writes. Begin a new transaction.
    Conflict {
        /// The key (lossy UTF-8).
        key: String,
    },
    /// A journal failed verification. `record` is the 1-based position of the first bad record
    /// in the export (one past the last when the export ends early).
    JournalInvalid {
        /// The first bad record.
        record: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// No task has this id.
    UnknownTask {
        /// The id.
        task: u32,
    },
    /// The task settled and was forgotten by the retention rule (its record, idempotency key
    /// and dependency edges are gone). Keep what you need from `wait` or the `task` event.
    TaskForgotten {
        /// The id.
        task: u32,
    },
    /// Accepting this work would take the engine past its memory budget (`memoryBudget`):
    /// nothing was accepted. Existing tasks, export and restore keep working; retry after tasks
    /// settle and retention forgets them, or raise the budget.
    EngineFull {
        /// The engine's footprint, bytes.
        footprint: u64,
        /// Its budget, bytes.
        budget: u64,
    },
    /// A newer engine was restored from this engine's journal (a higher fencing epoch): this
    /// one no longer acts on the work. Use the newer engine.
    Fenced {
        /// This engine's epoch.
        epoch: u64,
        /// The newer epoch seen.
        newer: u64,
    },
    /// A task cannot move between these states (a bug in the caller; nothing was written).
    IllegalTransition {
        /// The task.
        task: u32,
        /// Its state.
        from: &'static str,
        /// The state asked for.
        to: &'static str,
    },
    /// No host call with this id is pending: it was settled already or never existed.
    UnknownCall {
        /// The id the host passed.
        call: u32,
    },
    /// The engine was disposed; create a new one.
    Disposed,
    /// Work given a deadline did not finish in time (it may still be running; its slot is held
    /// until it ends).
    TimedOut {
        /// The deadline it was given, ms.
        after_ms: u64,
    },
}

impl Error {
    /// The stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidConfig { .. } => "INVALID_CONFIG",
            Error::InvalidHost { .. } => "INVALID_HOST",
            Error::InvalidInput { .. } => "INVALID_INPUT",
            Error::HostFailed { .. } => "HOST_FAILED",
            Error::HostBadReply { .. } => "HOST_BAD_REPLY",
            Error::HostBadReading { .. } => "HOST_BAD_READING",
            Error::MemoryPressure { .. } => "MEMORY_PRESSURE",
            Error::BreakerOpen { .. } => "BREAKER_OPEN",
            Error::QueueFull { .. } => "QUEUE_FULL",
            Error::Conflict { .. } => "CONFLICT",
            Error::JournalInvalid { .. } => "JOURNAL_INVALID",
            Error::UnknownTask { .. } => "UNKNOWN_TASK",
            Error::TaskForgotten { .. } => "TASK_FORGOTTEN",
            Error::EngineFull { .. } => "ENGINE_FULL",
            Error::Fenced { .. } => "FENCED",
            Error::IllegalTransition { .. } => "ILLEGAL_TRANSITION",
            Error::UnknownCall { .. } => "UNKNOWN_CALL",
            Error::Disposed => "DISPOSED",
            Error::TimedOut { .. } => "TIMED_OUT",
        }
    }

    /// Shorthand for [`Error::InvalidConfig`].
    pub fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::InvalidInput`].
    #[cold]
    pub fn input(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig { key, reason } => write!(f, "invalid config `{key}`: {reason}"),
            Error::InvalidHost { member, reason } => write!(f, "invalid host `{member}`: {reason}"),
            Error::InvalidInput { field, reason } => write!(f, "invalid `{field}`: {reason}"),
            Error::HostFailed { op, class, message } => {
                write!(f, "host {} failed ({}): {message}", op.name(), class.name())
            }
            Error::HostBadReply { op, reason } => {
                write!(f, "host {} answered with a bad value: {reason}", op.name())
            }
            Error::HostBadReading { reading, reason } => {
                write!(f, "host reading `{reading}` is unusable: {reason}")
            }
            Error::MemoryPressure { used, limit } => {
                write!(
                    f,
                    "memory pressure: {used} of {limit} bytes in use; LOW work is refused"
                )
            }
            Error::BreakerOpen {
                key,
                retry_at_ms: Some(at),
            } => {
                write!(f, "circuit breaker for `{key}` is open until {at} ms")
            }
            Error::BreakerOpen {
                key,
                retry_at_ms: None,
            } => {
                write!(
                    f,
                    "circuit breaker for `{key}` is half-open and a probe is in flight"
                )
            }
            Error::QueueFull { limit } => write!(f, "the wait queue is full ({limit} tasks)"),
            Error::Conflict { key } => {
                write!(f, "write conflict on `{key}`: begin a new transaction")
            }
            Error::JournalInvalid { record, reason } => {
                write!(f, "journal record {record} is invalid: {reason}")
            }
            Error::UnknownTask { task } => write!(f, "no task {task}"),
            Error::TaskForgotten { task } => write!(
                f,
                "task {task} settled and was forgotten by the retention rule"
            ),
            Error::EngineFull { footprint, budget } => write!(
                f,
                "the engine is full: {footprint} bytes held, budget {budget}; nothing was accepted"
            ),
            Error::Fenced { epoch, newer } => write!(
                f,
                "fenced: an engine restored from this journal holds epoch {newer} (this one {epoch})"
            ),
            Error::IllegalTransition { task, from, to } => {
                write!(f, "task {task} cannot move from {from} to {to}")
            }
            Error::UnknownCall { call } => write!(f, "no host call {call} is pending"),
            Error::Disposed => write!(f, "the engine was disposed"),
            Error::TimedOut { after_ms } => write!(f, "not done within its {after_ms} ms deadline"),
        }
    }
}

impl std::error::Error for Error {}

/// The kinds of operation the engine can ask of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HostOpKind {
    /// `createSession(agent, parent, title)` → session id.
    CreateSession,
    /// `prompt(session, …)`: OpenCode's `promptAsync`, answered as soon as it is accepted.
    Prompt,
    /// `abort(session)`.
    Abort,
    /// `deleteSession(session)`.
    DeleteSession,
    /// `lastAssistantMessage(session)` → the newest assistant message, if any.
    LastAssistantMessage,
    /// `checkSession(session)` → whether it exists and is busy.
    CheckSession,
    /// `sessionStatuses()` → the status of every non-idle session (OpenCode's
    /// `session.status()`): the liveness probe, one call for all the sessions it checks.
    SessionStatuses,
}

impl HostOpKind {
    /// The name of the host method that performs this operation.
    pub fn name(self) -> &'static str {
        match self {
            HostOpKind::CreateSession => "createSession",
            HostOpKind::Prompt => "prompt",
            HostOpKind::Abort => "abort",
            HostOpKind::DeleteSession => "deleteSession",
            HostOpKind::LastAssistantMessage => "lastAssistantMessage",
            HostOpKind::CheckSession => "checkSession",
            HostOpKind::SessionStatuses => "sessionStatuses",
        }
    }
}

/// How a failure counts. It drives the breaker, the adaptive limit and retries differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// 5xx, provider `APIError`, network: counts against the breaker; may be retried.
    Upstream,
    /// 429 or the host's `retry` status: slows down, never opens the breaker.
    RateLimited,
    /// The deadline passed: counts against the breaker.
    Timeout,
    /// Cancelled by the user (`AbortError`, `MessageAbortedError`): counts nowhere.
    Cancelled,
    /// A 4xx other than 429, or an agent error: retrying unchanged cannot help.
    Invalid,
}

impl FailureClass {
    /// The stable name JavaScript sees in `error.class`.
    pub fn name(self) -> &'static str {
        match self {
            FailureClass::Upstream => "upstream",
            FailureClass::RateLimited => "rate_limited",
            FailureClass::Timeout => "timeout",
            FailureClass::Cancelled => "cancelled",
            FailureClass::Invalid => "invalid",
        }
    }

    /// Classifies an HTTP-like status code: 429 → rate limited, other 4xx → invalid (408 is a
    /// timeout), anything else → upstream.
    pub fn from_status(status: u16) -> Self {
        match status {
            429 => FailureClass::RateLimited,
            408 => FailureClass::Timeout,
            400..=499 => FailureClass::Invalid,
            _ => FailureClass::Upstream,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn codes_are_distinct() {
        let all = [
            Error::config("a", "b"),
            Error::InvalidHost {
                member: "m".into(),
                reason: "r".into(),
            },
            Error::input("f", "r"),
            Error::HostFailed {
                op: HostOpKind::CreateSession,
                class: FailureClass::Upstream,
                message: "m".into(),
            },
            Error::HostBadReply {
                op: HostOpKind::CreateSession,
                reason: "r".into(),
            },
            Error::HostBadReading {
                reading: "now",
                reason: "r".into(),
            },
            Error::MemoryPressure { used: 1, limit: 2 },
            Error::BreakerOpen {
                key: "k".into(),
                retry_at_ms: None,
            },
            Error::QueueFull { limit: 1 },
            Error::Conflict { key: "k".into() },
            Error::JournalInvalid {
                record: 1,
                reason: "r".into(),
            },
            Error::UnknownTask { task: 1 },
            Error::TaskForgotten { task: 1 },
            Error::EngineFull {
                footprint: 1,
                budget: 1,
            },
            Error::Fenced { epoch: 1, newer: 2 },
            Error::IllegalTransition {
                task: 1,
                from: "a",
                to: "b",
            },
            Error::UnknownCall { call: 1 },
            Error::Disposed,
            Error::TimedOut { after_ms: 1 },
        ];
        let mut codes: Vec<_> = all.iter().map(Error::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }

    #[test]
    fn display_names_the_key() {
        assert_eq!(
            Error::config("lanes.worker", "must be at least 1").to_string(),
            "invalid config `lanes.worker`: must be at least 1"
        );
    }
}
