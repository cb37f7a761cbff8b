//! Memory-pressure gate: refuses LOW work before the host runs out of memory.
//!
//! The host reports `{used, limit}`. At ≥ `refuse_at` (default 80 %) the gate closes: LOW
//! submissions are refused with `MemoryPressure`, and queued LOW work does not start. Below
//! `resume_below` (default 75 %) it opens again; in between it keeps its state (hysteresis, so a
//! reading hovering at 80 % does not flap). HIGH and NORMAL are never refused by the gate.
//!
//! **Stale readings.** A reading older than `stale_ms` (default 10 s) is no longer evidence:
//! the gate then acts as if it had no reading and stays open, and `next_deadline` names the
//! moment a closed gate goes stale so the host can take a fresh reading in time. A fresh reading
//! resumes the hysteresis from the last state. So a host that stops reporting never starves LOW
//! work forever, and a host that reports keeps full control.
//!
//! Invariants:
//! 1. No LOW admission while a fresh reading is ≥ `refuse_at`.
//! 2. After closing, the gate reopens only on a fresh reading below `resume_below`, or when the
//!    last reading goes stale.

use crate::config::GateConfig;
use crate::host::MemoryReading;

/// The gate.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    config: GateConfig,
    closed: bool,
    last: Option<(u64, MemoryReading)>,
}

impl Gate {
    /// An open gate with no reading.
    pub(crate) fn new(config: GateConfig) -> Self {
        Gate {
            config,
            closed: false,
            last: None,
        }
    }

    /// Takes a reading made at `now`.
    pub(crate) fn observe(&mut self, now: u64, reading: MemoryReading) {
        let per_mille = reading.per_mille();
        if per_mille >= self.config.refuse_at_per_mille {
            self.closed = true;
        } else if per_mille < self.config.resume_below_per_mille {
            self.closed = false;
        }
        self.last = Some((now, reading));
    }

    /// Whether the last reading is older than `stale_ms` at `now` (or there is none).
    pub(crate) fn is_stale(&self, now: u64) -> bool {
        self.last
            .is_none_or(|(at, _)| now.saturating_sub(at) > self.config.stale_ms)
    }

    /// Whether LOW work is refused at `now`.
    pub(crate) fn is_closed(&self, now: u64) -> bool {
        self.closed && !self.is_stale(now)
    }

    /// The last reading and when it was made.
    pub(crate) fn last(&self) -> Option<(u64, MemoryReading)> {
        self.last
    }

    /// When a closed gate's reading goes stale (the first ms at which it is stale).
    pub(crate) fn next_deadline(&self, now: u64) -> Option<u64> {
        match self.last {
            Some((at, _)) if self.is_closed(now) => {
                Some(at.saturating_add(self.config.stale_ms + 1))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn reading(per_mille: u64) -> MemoryReading {
        MemoryReading::new(per_mille, 1000).unwrap()
    }

    #[test]
    fn closes_at_eighty_percent_and_reopens_only_below_seventy_five() {
        let mut g = Gate::new(GateConfig::default());
        g.observe(0, reading(799));
        assert!(!g.is_closed(0));
        g.observe(1, reading(800));
        assert!(g.is_closed(1));
        for pm in [799, 760, 750] {
            g.observe(2, reading(pm));
            assert!(g.is_closed(2), "{pm} ‰ is inside the hysteresis band");
        }
        g.observe(3, reading(749));
        assert!(!g.is_closed(3));
        g.observe(4, reading(790));
        assert!(!g.is_closed(4), "rising inside the band keeps it open");
    }

    #[test]
    fn a_stale_reading_no_longer_closes_the_gate() {
        let mut g = Gate::new(GateConfig::default());
        g.observe(1_000, reading(900));
        assert!(g.is_closed(11_000), "exactly 10 s old is still fresh");
        assert_eq!(g.next_deadline(11_000), Some(11_001));
        assert!(!g.is_closed(11_001), "older than 10 s is stale");
        g.observe(11_002, reading(780));
        assert!(
            g.is_closed(11_002),
            "a fresh reading in the band resumes the last state"
        );
    }

    #[test]
    fn no_reading_means_open() {
        let g = Gate::new(GateConfig::default());
        assert!(!g.is_closed(0));
        assert!(g.is_stale(0));
        assert_eq!(g.next_deadline(0), None);
    }
}
