//! The settings of the controller's parts: the breaker, the adaptive limit and the memory
//! gate. They are defined here, below the controller, so that [`Config`](super::Config) can
//! hold them without the configuration depending on the controller that reads it.

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive counted failures that open a closed breaker (default 5).
    pub failure_threshold: u32,
    /// The first open period, ms (default 30 000).
    pub open_ms: u64,
    /// The longest open period, ms (default 300 000).
    pub max_open_ms: u64,
    /// Probe successes that close a half-open breaker (default 2).
    pub close_after: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            open_ms: 30_000,
            max_open_ms: 300_000,
            close_after: 2,
        }
    }
}

/// AIMD settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AimdConfig {
    /// Whether the limit adapts at all; when off, `effective == configured`.
    pub enabled: bool,
    /// Consecutive qualifying successes per +1 (default 3).
    pub grow_after: u32,
    /// Minimum time between two decreases, ms (default 5 000).
    pub window_ms: u64,
}

impl Default for AimdConfig {
    fn default() -> Self {
        AimdConfig {
            enabled: true,
            grow_after: 3,
            window_ms: 5_000,
        }
    }
}

/// Gate settings, in per-mille of the host's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateConfig {
    /// Close at or above this (default 800 ‰).
    pub refuse_at_per_mille: u64,
    /// Open again below this (default 750 ‰).
    pub resume_below_per_mille: u64,
    /// A reading older than this no longer counts, ms (default 10 000).
    pub stale_ms: u64,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            refuse_at_per_mille: 800,
            resume_below_per_mille: 750,
            stale_ms: 10_000,
        }
    }
}
