//! The host: what JavaScript supplies to the engine, seen from plain Rust.
//!
//! The engine never performs I/O. It asks the host for two readings (`now`, `memory`) and for
//! operations (create a session, …). An operation is a [`HostRequest`] tagged with a [`CallId`];
//! the host starts it and later reports its [`HostOutcome`] back to the engine *by that id*
//! (`Engine::resolve`). So the hot path passes integers, never closures, and the engine core can be
//! driven identically by the JS host, by tests and by the deterministic [`FakeHost`].
//!
//! Invariants:
//! 1. A `CallId` names one request for its whole life; ids are not reused while a call is pending.
//! 2. The host answers each request at most once; an answer for an unknown or settled id is an
//!    `UnknownCall` error and changes nothing.
//! 3. Readings are validated where they enter (`MemoryReading::new`): the core sees only
//!    well-formed values.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;

use crate::error::Error;

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

/// The kinds of operation the engine can ask of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HostOpKind {
    /// `createSession(agent, parent, title)` → session id.
    CreateSession,
}

impl HostOpKind {
    /// The name of the host method that performs this operation.
    pub fn name(self) -> &'static str {
        match self {
            HostOpKind::CreateSession => "createSession",
        }
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
}

impl HostOp {
    /// Which kind of operation this is.
    pub fn kind(&self) -> HostOpKind {
        match self {
            HostOp::CreateSession { .. } => HostOpKind::CreateSession,
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
    pub fn per_mille(self) -> u64 {
        // u128: `used * 1000` must not overflow for any u64 reading.
        ((u128::from(self.used) * 1000) / u128::from(self.limit)).min(u128::from(u64::MAX)) as u64
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

/// Simulated cost of one kind of host operation.
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

/// A deterministic simulated host: a fake clock that moves only when told, a settable memory
/// reading, and operations that complete after a seeded random latency.
///
/// Invariants:
/// 1. Same seed, same calls, same `advance` steps ⇒ same outcomes in the same order.
/// 2. Outcomes are delivered in order of completion time, ties by call id.
#[derive(Debug)]
pub struct FakeHost {
    clock: Cell<u64>,
    memory: Cell<MemoryReading>,
    rng: RefCell<fastrand::Rng>,
    create_session: Cell<OpProfile>,
    in_flight: RefCell<Vec<(u64, CallId, HostOutcome)>>,
    started: RefCell<VecDeque<HostRequest>>,
    sessions_created: Cell<u64>,
}

impl FakeHost {
    /// A simulator seeded with `seed`, clock at 0, 25 % of a 1 GiB memory budget in use.
    pub fn new(seed: u64) -> Self {
        FakeHost {
            clock: Cell::new(0),
            memory: Cell::new(MemoryReading {
                used: 256 << 20,
                limit: 1 << 30,
            }),
            rng: RefCell::new(fastrand::Rng::with_seed(seed)),
            create_session: Cell::new(OpProfile::default()),
            in_flight: RefCell::new(Vec::new()),
            started: RefCell::new(VecDeque::new()),
            sessions_created: Cell::new(0),
        }
    }

    /// Sets how `createSession` behaves from now on.
    pub fn set_create_session(&self, profile: OpProfile) {
        self.create_session.set(profile);
    }

    /// Sets the memory reading the host reports.
    pub fn set_memory(&self, reading: MemoryReading) {
        self.memory.set(reading);
    }

    /// Number of operations started and not yet delivered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.borrow().len()
    }

    /// Every request started so far, oldest first, for assertions.
    pub fn started(&self) -> Vec<HostRequest> {
        self.started.borrow().iter().cloned().collect()
    }

    /// Sessions the simulated server actually created.
    pub fn sessions_created(&self) -> u64 {
        self.sessions_created.get()
    }

    /// Moves the clock forward by `ms` and returns the outcomes that completed meanwhile, in
    /// completion order (ties by call id).
    pub fn advance(&self, ms: u64) -> Vec<(CallId, HostOutcome)> {
        let now = self.clock.get().saturating_add(ms);
        self.clock.set(now);
        let mut in_flight = self.in_flight.borrow_mut();
        in_flight.sort_by_key(|(due, call, _)| (*due, *call));
        let ready = in_flight
            .iter()
            .take_while(|(due, _, _)| *due <= now)
            .count();
        in_flight
            .drain(..ready)
            .map(|(_, call, outcome)| (call, outcome))
            .collect()
    }

    fn simulate(&self, op: &HostOp) -> (u64, HostOutcome) {
        let mut rng = self.rng.borrow_mut();
        match op {
            HostOp::CreateSession { agent, .. } => {
                let p = self.create_session.get();
                let latency = rng.u64(p.min_ms..=p.max_ms.max(p.min_ms));
                let roll = rng.f64();
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
                    let n = self.sessions_created.get() + 1;
                    self.sessions_created.set(n);
                    HostOutcome::Ok(HostReply::SessionCreated(SessionId(format!(
                        "ses_{agent}_{n}"
                    ))))
                };
                (latency, outcome)
            }
        }
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> Result<u64, Error> {
        Ok(self.clock.get())
    }

    fn memory(&self) -> Result<MemoryReading, Error> {
        Ok(self.memory.get())
    }

    fn start(&self, request: HostRequest) {
        let (latency, outcome) = self.simulate(&request.op);
        let due = self.clock.get().saturating_add(latency);
        self.in_flight
            .borrow_mut()
            .push((due, request.call, outcome));
        self.started.borrow_mut().push_back(request);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn create(call: u32) -> HostRequest {
        HostRequest {
            call: CallId(call),
            op: HostOp::CreateSession {
                agent: "worker".into(),
                parent: None,
                title: "t".into(),
            },
        }
    }

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
    }

    #[test]
    fn status_classification_follows_the_failure_table() {
        assert_eq!(FailureClass::from_status(429), FailureClass::RateLimited);
        assert_eq!(FailureClass::from_status(404), FailureClass::Invalid);
        assert_eq!(FailureClass::from_status(408), FailureClass::Timeout);
        assert_eq!(FailureClass::from_status(503), FailureClass::Upstream);
    }

    #[test]
    fn fake_host_delivers_nothing_before_its_latency() {
        let host = FakeHost::new(7);
        host.set_create_session(OpProfile {
            min_ms: 20,
            max_ms: 20,
            ..OpProfile::default()
        });
        host.start(create(1));
        assert!(host.advance(19).is_empty());
        let done = host.advance(1);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].0, CallId(1));
        assert_eq!(host.now_ms().unwrap(), 20);
    }

    #[test]
    fn fake_host_is_deterministic_per_seed() {
        let run = |seed| {
            let host = FakeHost::new(seed);
            host.set_create_session(OpProfile {
                failure_rate: 0.3,
                ..OpProfile::default()
            });
            (0..50).for_each(|i| host.start(create(i)));
            host.advance(1_000)
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }
}
