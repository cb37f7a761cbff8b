//! Circuit breaker for one provider/model key.
//!
//! ```text
//!            5 consecutive counted failures
//!   Closed ───────────────────────────────▶ Open(until = now + d(trips))
//!     ▲                                       │ a task asks at now ≥ until
//!     │ 2 probe successes                     ▼
//!     └──────────────────────────────── HalfOpen (one probe at a time)
//!                                             │ probe counted failure
//!                                             └──▶ Open(trips + 1)
//! ```
//!
//! *Counted* failures are upstream errors and timeouts. Rate limits, cancels and invalid tasks
//! never count: a 429 storm must slow us down (the limiter's job), not cut the provider off.
//!
//! Invariants:
//! 1. The open period is the half-open interval `[opened_at, until)`: at exactly `until` a task
//!    may probe. With the default 30 s: refused at 29.999 s, probe at 30.000 s and 30.001 s.
//! 2. At most one probe is in flight. While it is, other tasks for the key are refused.
//! 3. Only a probe's outcome moves a half-open breaker; outcomes of tasks admitted before the
//!    breaker opened are ignored while it is open or half-open.
//! 4. Open durations: the first trip lasts exactly `open_ms`; trip *n* ≥ 2 lasts
//!    `min(max_open_ms, open_ms·2ⁿ⁻¹)·u`, `u` uniform in [0.8, 1.0] (jitter, so the keys of one
//!    outage do not probe in lockstep), and never less than `open_ms`. Closing resets trips.

use crate::config::BreakerConfig;
use crate::host::FailureClass;

/// How a finished task went, as far as the breaker and the limiter care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded.
    Success,
    /// It failed with this class.
    Failed(FailureClass),
}

impl Outcome {
    /// Whether the breaker counts it (upstream errors and timeouts).
    pub fn is_counted_failure(self) -> bool {
        matches!(
            self,
            Outcome::Failed(FailureClass::Upstream | FailureClass::Timeout)
        )
    }
}

/// What the breaker says to a task that asks to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Closed: go.
    Allow,
    /// Open period over, or half-open with no probe in flight: go, as the probe.
    Probe,
    /// Open, or a probe is in flight: wait. `retry_at` is when the open period ends, if known.
    Refuse {
        /// Host time the open period ends, ms; `None` while a probe decides.
        retry_at: Option<u64>,
    },
}

/// The breaker's state, for stats and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Counting consecutive failures.
    Closed {
        /// Consecutive counted failures so far.
        failures: u32,
    },
    /// Refusing until `until`.
    Open {
        /// Host time the open period ends, ms.
        until: u64,
        /// Consecutive trips, 1 for the first.
        trips: u32,
    },
    /// Letting probes through one at a time.
    HalfOpen {
        /// Consecutive trips so far.
        trips: u32,
        /// Whether a probe is in flight.
        probing: bool,
        /// Probe successes so far.
        successes: u32,
    },
}

impl BreakerState {
    /// The phase, without the counters.
    pub fn phase(self) -> BreakerPhase {
        match self {
            BreakerState::Closed { .. } => BreakerPhase::Closed,
            BreakerState::Open { .. } => BreakerPhase::Open,
            BreakerState::HalfOpen { .. } => BreakerPhase::HalfOpen,
        }
    }

    /// `closed`, `open` or `half_open`.
    pub fn name(self) -> &'static str {
        self.phase().name()
    }
}

/// A breaker's state without its counters: what listeners are told when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerPhase {
    /// Admitting, counting failures.
    Closed,
    /// Refusing until its probe time.
    Open,
    /// Letting one probe through at a time.
    HalfOpen,
}

/// A provider/model key's breaker changed phase (see `Controller::take_breaker_changes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerEvent {
    /// The key.
    pub key: String,
    /// Its breaker's new phase.
    pub phase: BreakerPhase,
}

impl BreakerPhase {
    /// `closed`, `open` or `half_open`: the name JavaScript sees.
    pub fn name(self) -> &'static str {
        match self {
            BreakerPhase::Closed => "closed",
            BreakerPhase::Open => "open",
            BreakerPhase::HalfOpen => "half_open",
        }
    }
}

/// A circuit breaker. Time is passed in; nothing here reads a clock.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            state: BreakerState::Closed { failures: 0 },
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// What a task asking to start at `now` is told. Changes nothing.
    pub fn check(&self, now: u64) -> Verdict {
        match self.state {
            BreakerState::Closed { .. } => Verdict::Allow,
            BreakerState::Open { until, .. } if now >= until => Verdict::Probe,
            BreakerState::Open { until, .. } => Verdict::Refuse {
                retry_at: Some(until),
            },
            BreakerState::HalfOpen { probing: true, .. } => Verdict::Refuse { retry_at: None },
            BreakerState::HalfOpen { probing: false, .. } => Verdict::Probe,
        }
    }

    /// Records that a task started on `verdict` (as returned by [`Breaker::check`]).
    pub fn on_start(&mut self, verdict: Verdict) {
        if verdict != Verdict::Probe {
            return;
        }
        self.state = match self.state {
            BreakerState::Open { trips, .. } => BreakerState::HalfOpen {
                trips,
                probing: true,
                successes: 0,
            },
            BreakerState::HalfOpen {
                trips, successes, ..
            } => BreakerState::HalfOpen {
                trips,
                probing: true,
                successes,
            },
            closed => closed,
        };
    }

    /// Records a finished task. `probe` says whether it started as the probe; `jitter` is a
    /// number in [0, 1) used only when the breaker opens for the second time or more.
    pub fn on_outcome(&mut self, now: u64, outcome: Outcome, probe: bool, jitter: f64) {
        self.state = match (self.state, probe) {
            (BreakerState::Closed { failures }, _) => {
                if outcome == Outcome::Success {
                    BreakerState::Closed { failures: 0 }
                } else if outcome.is_counted_failure() {
                    let failures = failures + 1;
                    if failures >= self.config.failure_threshold {
                        self.open(now, 1, jitter)
                    } else {
                        BreakerState::Closed { failures }
                    }
                } else {
                    self.state
                }
            }
            (
                BreakerState::HalfOpen {
                    trips, successes, ..
                },
                true,
            ) => {
                if outcome == Outcome::Success {
                    if successes + 1 >= self.config.close_after {
                        BreakerState::Closed { failures: 0 }
                    } else {
                        BreakerState::HalfOpen {
                            trips,
                            probing: false,
                            successes: successes + 1,
                        }
                    }
                } else if outcome.is_counted_failure() {
                    self.open(now, trips + 1, jitter)
                } else {
                    BreakerState::HalfOpen {
                        trips,
                        probing: false,
                        successes,
                    }
                }
            }
            // Invariant 3: stragglers from before the trip do not move an open breaker.
            (state, _) => state,
        };
    }

    /// The probe ended without an outcome (its permit was dropped): let another probe go.
    pub fn abandon_probe(&mut self) {
        if let BreakerState::HalfOpen {
            trips, successes, ..
        } = self.state
        {
            self.state = BreakerState::HalfOpen {
                trips,
                probing: false,
                successes,
            };
        }
    }

    /// When the breaker next changes by itself (the end of an open period).
    pub fn next_deadline(&self) -> Option<u64> {
        match self.state {
            BreakerState::Open { until, .. } => Some(until),
            _ => None,
        }
    }

    fn open(&self, now: u64, trips: u32, jitter: f64) -> BreakerState {
        BreakerState::Open {
            until: now.saturating_add(self.open_duration(trips, jitter)),
            trips,
        }
    }

    /// Invariant 4.
    fn open_duration(&self, trips: u32, jitter: f64) -> u64 {
        let c = self.config;
        if trips <= 1 {
            return c.open_ms;
        }
        let doubled = c
            .open_ms
            .saturating_mul(1u64.checked_shl(trips - 1).unwrap_or(u64::MAX));
        let base = doubled.min(c.max_open_ms).max(c.open_ms);
        let factor = 0.8 + 0.2 * jitter.clamp(0.0, 1.0);
        ((base as f64 * factor) as u64).max(c.open_ms)
    }
}
