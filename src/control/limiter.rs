//! Adaptive concurrency limit (AIMD) under a configured ceiling.
//!
//! Additive increase: +1 after `grow_after` (default 3) consecutive successes observed while at
//! least half the effective limit was in use — a limit nobody is using says nothing about
//! capacity. Multiplicative decrease: ×0.5 (floor 1) on a counted failure or a rate limit, at
//! most once per `window_ms` (default 5 s), because one overload produces a burst of failures
//! that must count as one signal.
//!
//! Invariants:
//! 1. `1 ≤ effective ≤ configured` at all times; nothing raises `configured`.
//! 2. `effective` never grows on a success observed with less than half of it in use.
//! 3. At most one decrease per window: two decreases are ≥ `window_ms` apart.

use crate::config::AimdConfig;

/// One adaptive limit.
#[derive(Debug, Clone)]
pub(crate) struct Aimd {
    config: AimdConfig,
    configured: u32,
    effective: u32,
    streak: u32,
    last_decrease: Option<u64>,
}

impl Aimd {
    /// A limit starting at its ceiling `configured` (at least 1).
    pub(crate) fn new(configured: u32, config: AimdConfig) -> Self {
        let configured = configured.max(1);
        Aimd {
            config,
            configured,
            effective: configured,
            streak: 0,
            last_decrease: None,
        }
    }

    /// The ceiling.
    pub(crate) fn configured(&self) -> u32 {
        self.configured
    }

    /// The limit in force.
    pub(crate) fn effective(&self) -> u32 {
        self.effective
    }

    /// A success finished while `in_use` permits (itself included) were held. Returns whether
    /// the limit grew.
    pub(crate) fn on_success(&mut self, in_use: u32) -> bool {
        if !self.config.enabled {
            return false;
        }
        if u64::from(in_use) * 2 < u64::from(self.effective) {
            self.streak = 0; // invariant 2
            return false;
        }
        self.streak += 1;
        if self.streak < self.config.grow_after {
            return false;
        }
        self.streak = 0;
        if self.effective < self.configured {
            self.effective += 1;
            true
        } else {
            false
        }
    }

    /// A counted failure or a rate limit at `now`. Returns whether the limit shrank.
    pub(crate) fn on_backoff(&mut self, now: u64) -> bool {
        if !self.config.enabled {
            return false;
        }
        self.streak = 0;
        if let Some(last) = self.last_decrease {
            if now.saturating_sub(last) < self.config.window_ms {
                return false; // invariant 3
            }
        }
        self.last_decrease = Some(now);
        let halved = (self.effective / 2).max(1);
        let shrank = halved < self.effective;
        self.effective = halved;
        shrank
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn grows_by_one_after_three_busy_successes_up_to_the_ceiling() {
        let mut a = Aimd::new(4, AimdConfig::default());
        a.on_backoff(0);
        assert_eq!(a.effective(), 2);
        assert!(!a.on_success(1));
        assert!(!a.on_success(1));
        assert!(a.on_success(1), "1 of 2 in use is half");
        assert_eq!(a.effective(), 3);
        for _ in 0..30 {
            a.on_success(4);
        }
        assert_eq!(a.effective(), 4, "the ceiling holds");
    }

    #[test]
    fn never_grows_while_less_than_half_is_used() {
        let mut a = Aimd::new(10, AimdConfig::default());
        a.on_backoff(0);
        assert_eq!(a.effective(), 5);
        for _ in 0..100 {
            assert!(!a.on_success(2), "2 of 5 is less than half");
        }
        assert_eq!(a.effective(), 5);
    }

    #[test]
    fn decreases_at_most_once_per_window_and_never_below_one() {
        let mut a = Aimd::new(16, AimdConfig::default());
        assert!(a.on_backoff(1_000));
        assert!(!a.on_backoff(5_999));
        assert_eq!(a.effective(), 8);
        assert!(a.on_backoff(6_000));
        assert_eq!(a.effective(), 4);
        for t in 2..20 {
            a.on_backoff(t * 5_000 + 1_000);
        }
        assert_eq!(a.effective(), 1);
    }

    #[test]
    fn disabled_limits_stay_at_the_ceiling() {
        let mut a = Aimd::new(
            8,
            AimdConfig {
                enabled: false,
                ..AimdConfig::default()
            },
        );
        assert!(!a.on_backoff(0));
        assert_eq!(a.effective(), 8);
    }
}
