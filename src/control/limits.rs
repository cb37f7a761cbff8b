//! The limits that move by themselves, and the readings the memory gate wants.
//!
//! **Adaptive limits.** A lane's effective limit adapts for its work without a limited key; a
//! limited key's adapts for its work (the provider is what pushes back). Exactly these move
//! one ([`LimitCause`]):
//! - a rate limit — a task or run slot that ended `rate_limited`, a breaker-guarded call that
//!   did ([`Controller::breaker_exit`], a limited key only), or a running task the host is
//!   retrying after a 429 ([`Controller::rate_limited`]) — halves it;
//! - an upstream error or a timeout ended the same ways halves it too (at most one decrease
//!   per window for all three: see `limiter.rs`);
//! - successes with at least half the limit in use raise it by one, up to the configured
//!   ceiling (recovery).
//!
//! Each change is recorded as a [`LimitChange`] for the driver to take
//! ([`Controller::take_limit_changes`]), as breaker changes are. The memory gate changes no
//! limit: it refuses LOW work while closed (its state is in `stats`), so it has no cause here.
//!
//! **Memory readings.** The rule is the engine's (`Engine::memory_due`): a fresh reading (at
//! most one per ms) before any decision that could admit LOW work. The controller's part
//! ([`Controller::memory_due`]): a reading is due when LOW work is pending — the caller's
//! `low`, or LOW work waiting in a lane here — and the gate has none made at that same ms (a
//! second one would say nothing new).
//!
//! Invariants:
//! 1. A change is recorded exactly when an effective limit changes, with its value before and
//!    after, in the order they happened.
//! 2. At most [`MAX_PENDING`] changes wait to be taken: past it the oldest is dropped (a
//!    driver that never takes them costs bounded memory; the limit itself is in `stats`).

use std::collections::VecDeque;

use super::{Aimd, Controller, KeyId, Outcome, Permit};
use crate::error::FailureClass;
use crate::host::MemoryReading;

/// Most limit changes kept until taken.
pub(crate) const MAX_PENDING: usize = 1024;

/// Which kind of limit changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    /// A lane's (an agent type's, or `other`).
    Lane,
    /// A provider/model key's.
    Key,
}

impl LimitScope {
    /// `lane` or `key`: the name JavaScript sees.
    pub fn name(self) -> &'static str {
        match self {
            LimitScope::Lane => "lane",
            LimitScope::Key => "key",
        }
    }
}

/// Why an adaptive limit changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitCause {
    /// Work met a rate limit (429, or the host retrying after one): halved.
    RateLimited,
    /// Work failed upstream (5xx, network, provider error): halved.
    Upstream,
    /// Work timed out: halved.
    Timeout,
    /// Successes with at least half of the limit in use: raised by one.
    Recovery,
}

impl LimitCause {
    /// The cause of a decrease for `outcome`, if it is a backoff signal.
    fn of(outcome: Outcome) -> Option<LimitCause> {
        match outcome {
            Outcome::Failed(FailureClass::RateLimited) => Some(LimitCause::RateLimited),
            Outcome::Failed(FailureClass::Upstream) => Some(LimitCause::Upstream),
            Outcome::Failed(FailureClass::Timeout) => Some(LimitCause::Timeout),
            _ => None,
        }
    }

    /// `rate_limited`, `upstream`, `timeout` or `recovery`: the name JavaScript sees.
    pub fn name(self) -> &'static str {
        match self {
            LimitCause::RateLimited => "rate_limited",
            LimitCause::Upstream => "upstream",
            LimitCause::Timeout => "timeout",
            LimitCause::Recovery => "recovery",
        }
    }
}

/// An effective limit changed (see [`Controller::take_limit_changes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitChange {
    /// A lane's or a key's.
    pub scope: LimitScope,
    /// The lane's or key's name.
    pub name: String,
    /// The effective limit before.
    pub from: u32,
    /// The effective limit after.
    pub to: u32,
    /// Why.
    pub cause: LimitCause,
}

/// The limit that adapts, by index (names are read when the change is taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Adaptive {
    Lane(usize),
    Key(usize),
}

/// A change not taken yet.
#[derive(Debug, Clone, Copy)]
pub(super) struct Step {
    limit: Adaptive,
    from: u32,
    to: u32,
    cause: LimitCause,
}

impl Controller {
    /// Feeds `outcome` of the work `permit` admitted to the limit that adapts for it.
    pub(super) fn adapt(&mut self, now: u64, permit: &Permit, outcome: Outcome) {
        let limit = self.adaptive_for(permit);
        if outcome == Outcome::Success {
            let in_use = match limit {
                Adaptive::Key(k) => self.ledger.key_in_use(k),
                Adaptive::Lane(l) => self.ledger.lane_in_use(l),
            };
            let Some(aimd) = self.aimd(limit) else {
                return;
            };
            let from = aimd.effective();
            if aimd.on_success(in_use) {
                let to = aimd.effective();
                self.push_step(limit, from, to, LimitCause::Recovery);
            }
        } else if let Some(cause) = LimitCause::of(outcome) {
            self.back_off(now, limit, cause);
        }
    }

    /// A running task met a rate limit that the host is retrying by itself (OpenCode's `retry`
    /// status): the adaptive limit backs off, the breaker does not count it, and the task keeps
    /// its permit.
    pub fn rate_limited(&mut self, now: u64, permit: &Permit) {
        let limit = self.adaptive_for(permit);
        self.back_off(now, limit, LimitCause::RateLimited);
    }

    /// The limit that adapts for `permit`'s work: its key's when the key is limited, else its
    /// lane's.
    fn adaptive_for(&self, permit: &Permit) -> Adaptive {
        match permit.key().filter(|&k| self.keys[k].limit.is_some()) {
            Some(k) => Adaptive::Key(k),
            None => Adaptive::Lane(permit.lane()),
        }
    }

    /// A breaker-guarded call's `outcome` (no slot held): a backoff signal backs off the key's
    /// limit, if it has one; nothing else changes limits.
    pub(super) fn adapt_key(&mut self, now: u64, key: KeyId, outcome: Outcome) {
        if let Some(cause) = LimitCause::of(outcome) {
            // A key without a limit has no `aimd`: `back_off` leaves it be.
            self.back_off(now, Adaptive::Key(key.index()), cause);
        }
    }

    fn back_off(&mut self, now: u64, limit: Adaptive, cause: LimitCause) {
        let Some(aimd) = self.aimd(limit) else {
            return;
        };
        let from = aimd.effective();
        if aimd.on_backoff(now) {
            let to = aimd.effective();
            self.push_step(limit, from, to, cause);
        }
    }

    fn aimd(&mut self, limit: Adaptive) -> Option<&mut Aimd> {
        match limit {
            Adaptive::Lane(l) => self.lanes.get_mut(l).map(|s| &mut s.limit),
            Adaptive::Key(k) => self.keys.get_mut(k).and_then(|s| s.limit.as_mut()),
        }
    }

    #[inline(never)]
    fn push_step(&mut self, limit: Adaptive, from: u32, to: u32, cause: LimitCause) {
        let pending: &mut VecDeque<Step> = &mut self.limit_steps;
        if pending.len() >= MAX_PENDING {
            pending.pop_front(); // invariant 2
        }
        pending.push_back(Step {
            limit,
            from,
            to,
            cause,
        });
    }

    /// Whether limit changes wait to be taken.
    pub fn has_limit_changes(&self) -> bool {
        !self.limit_steps.is_empty()
    }

    /// The effective limits that changed since the last call, oldest first, each with its
    /// lane's or key's name, its value before and after, and why.
    pub fn take_limit_changes(&mut self) -> Vec<LimitChange> {
        if self.limit_steps.is_empty() {
            return Vec::new();
        }
        let steps = std::mem::take(&mut self.limit_steps);
        steps
            .into_iter()
            .map(|s| {
                let (scope, name) = match s.limit {
                    Adaptive::Lane(l) => (LimitScope::Lane, self.lanes[l].name.clone()),
                    Adaptive::Key(k) => (LimitScope::Key, self.keys[k].name.clone()),
                };
                LimitChange {
                    scope,
                    name,
                    from: s.from,
                    to: s.to,
                    cause: s.cause,
                }
            })
            .collect()
    }

    /// Whether the memory gate wants a host reading at `now`: LOW work is pending — `low`
    /// (the caller knows of some: being submitted, or held back by the engine) or LOW work
    /// waiting in a lane — and it has no reading made at `now`. See the module docs.
    #[inline]
    pub fn memory_due(&self, now: u64, low: bool) -> bool {
        (low || self.low_waiting()) && self.gate.last().is_none_or(|(at, _)| at != now)
    }

    /// Takes a memory reading made at `now`.
    pub fn observe_memory(&mut self, now: u64, reading: MemoryReading) {
        self.gate.observe(now, reading);
    }
}
