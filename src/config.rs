//! Engine configuration: what the user may set, validated once into typed values.
//!
//! [`ConfigInput`] and the types of its nested objects are the one definition of what users write:
//! their serde derives (camelCase, every key optional, unknown keys refused so a typo never
//! silently falls back to a default) are what the JavaScript boundary reads, and a test checks
//! the TypeScript `ForemanConfig` against their fields (`tests/ts_types.rs`). Values are checked
//! once, by [`Config::from_input`], which names the offending key in its
//! [`Error::InvalidConfig`]. Defaults are those of the design:
//!
//! | key | default |
//! |---|---|
//! | `lanes` | planner 2, worker 8, reviewer 4, other 4 (agents without a lane share `other`) |
//! | `keys` | none: a provider/model key is unlimited unless listed, e.g. `{ "openai/gpt-5": 4 }` |
//! | `breaker` | `failureThreshold` 5, `openMs` 30 000, `maxOpenMs` 300 000, `closeAfter` 2 |
//! | `adaptive` | `enabled` true, `growAfter` 3, `windowMs` 5 000 |
//! | `pressure` | `refuseAt` 0.8, `resumeBelow` 0.75, `staleMs` 10 000 |
//! | `fairness` | `lowEvery` 8: a waiting lower level goes after 8 higher admissions in its lane |
//! | `liveness` | `intervalMs` 15 000, `callTimeoutMs` 30 000, `cancelMs` 10 000, `skewMs` 2 000 (see [`LivenessConfig`]) |
//! | `retention` | `maxTasks` 10 000, `maxAgeMs` 3 600 000, `maxBytes` 32 MiB, `resultBytes` 64 KiB |
//! | `memoryBudget` | 1 GiB: the engine's own footprint past which new work is `ENGINE_FULL` |
//!
//! Invariants:
//! 1. A `Config` only exists validated: every limit is in `1..=MAX_LIMIT`, every duration in
//!    `1..=MAX_MS`, and `resumeBelow ≤ refuseAt`.
//! 2. The lane `other` always exists.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::Error;

mod parts;

pub use self::parts::{AimdConfig, BreakerConfig, GateConfig};

/// The highest concurrency limit accepted anywhere: far above any provider's rate limit, low
/// enough that a typo (`80000`) is caught.
pub(crate) const MAX_LIMIT: u32 = 1024;

/// The longest duration accepted, ms (one day).
pub(crate) const MAX_MS: u32 = 86_400_000;

/// The lane agents without a lane of their own share.
pub(crate) const OTHER_LANE: &str = "other";

/// Configuration as the user writes it. Every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigInput {
    /// Concurrency per agent type, merged over the defaults: `{ worker: 16 }` in JavaScript,
    /// (name, limit) pairs here, applied in order (a name given twice: the last wins).
    #[serde(deserialize_with = "limits")]
    pub lanes: Option<Vec<(String, f64)>>,
    /// Concurrency per provider/model key, as `lanes`.
    #[serde(deserialize_with = "limits")]
    pub keys: Option<Vec<(String, f64)>>,
    /// Circuit-breaker settings.
    pub breaker: Option<BreakerInput>,
    /// Adaptive-limit settings.
    pub adaptive: Option<AdaptiveInput>,
    /// Memory-pressure gate settings.
    pub pressure: Option<PressureInput>,
    /// Priority fairness settings.
    pub fairness: Option<FairnessInput>,
    /// When settled tasks are forgotten.
    pub retention: Option<RetentionInput>,
    /// The engine's memory budget, bytes.
    pub memory_budget: Option<f64>,
    /// Liveness settings (probe interval, host-call timeout, cancel bound, clock skew).
    pub liveness: Option<LivenessInput>,
}

/// Reads an object of limits (`{ worker: 16 }`; `null` is absent) as (name, limit) pairs in the
/// order written. (Pairs rather than a map: the validated [`Config`] holds the map, and a second
/// map type would be a second copy of the B-tree's code in the `.wasm`, for input alone.)
fn limits<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<(String, f64)>>, D::Error> {
    use serde::de::{MapAccess, Visitor};
    struct Pairs;
    impl<'de> Visitor<'de> for Pairs {
        type Value = Option<Vec<(String, f64)>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of numbers")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut pairs = Vec::new();
            while let Some(pair) = map.next_entry()? {
                pairs.push(pair);
            }
            Ok(Some(pairs))
        }
    }
    d.deserialize_option(Pairs)
}

/// `liveness` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct LivenessInput {
    /// Interval of the liveness probe, ms.
    pub interval_ms: Option<f64>,
    /// Timeout of every host call, ms.
    pub call_timeout_ms: Option<f64>,
    /// Longest a cancel of a running task waits for its abort, ms.
    pub cancel_ms: Option<f64>,
    /// Clock skew allowed between message stamps and the engine's clock, ms.
    pub skew_ms: Option<f64>,
}

/// How the engine stays live when the host misbehaves (lost or reordered events, calls that
/// never answer, clock steps). Defaults in brackets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessConfig {
    /// Every running task and every pool session believed busy that was not heard from for this
    /// long is re-checked, in one `sessionStatuses` call for all of them [15 000 ms]: a lost or
    /// reordered `idle` costs at most this.
    pub interval_ms: u64,
    /// A host call not answered within this fails with class `timeout` [30 000 ms].
    pub call_timeout_ms: u64,
    /// A cancelled running task settles `cancelled` when its abort is confirmed, or after this
    /// at the latest [10 000 ms].
    pub cancel_ms: u64,
    /// How much older than the prompt (or newer than now) a reply message's stamp may be and
    /// still count, where times are compared: only for a follow-up restored from a journal
    /// written before replies were recorded (the host's and the server's clocks may differ by
    /// this) [2 000 ms]. Elsewhere replies are told apart by identity, not time. Keep it small:
    /// such a follow-up whose predecessor's final message was stamped within this of the new
    /// prompt could be read as the new turn's answer.
    pub skew_ms: u64,
}

impl Default for LivenessConfig {
    fn default() -> Self {
        LivenessConfig {
            interval_ms: 15_000,
            call_timeout_ms: 30_000,
            cancel_ms: 10_000,
            skew_ms: 2_000,
        }
    }
}

/// `retention` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct RetentionInput {
    /// Settled tasks kept, at most.
    pub max_tasks: Option<f64>,
    /// A settled task is forgotten this long after it settled, ms.
    pub max_age_ms: Option<f64>,
    /// Bytes of settled tasks kept (prompt, result, fields), at most.
    pub max_bytes: Option<f64>,
    /// A result longer than this is kept truncated, bytes.
    pub result_bytes: Option<f64>,
}

/// When settled tasks leave the engine, and how much of a result is kept. A settled task is
/// forgotten — its record, idempotency key and dependency edges, in one journaled commit — as
/// soon as any limit is passed, oldest settlement first. The age is applied whenever the engine
/// does something (a submission, a settlement, a timer): an idle engine arms no timer for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Settled tasks kept, at most (default 10 000).
    pub max_tasks: u32,
    /// Ms after settling a task is forgotten (default one hour).
    pub max_age_ms: u64,
    /// Bytes of settled tasks kept, at most (default 32 MiB).
    pub max_bytes: u64,
    /// Bytes of a result kept; a longer one is cut at a character boundary and ends with a
    /// note naming its full length and the session to read the rest from (default 64 KiB).
    pub result_bytes: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_tasks: 10_000,
            max_age_ms: 3_600_000,
            max_bytes: 32 << 20,
            result_bytes: 64 << 10,
        }
    }
}

/// The default memory budget, bytes (1 GiB: wasm32's memory ends at 4 GiB, and a checkpoint
/// and an export need room beside the state).
pub(crate) const DEFAULT_MEMORY_BUDGET: u64 = 1 << 30;

/// `breaker` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct BreakerInput {
    /// Consecutive counted failures that open the breaker.
    pub failure_threshold: Option<f64>,
    /// First open period, ms.
    pub open_ms: Option<f64>,
    /// Longest open period, ms.
    pub max_open_ms: Option<f64>,
    /// Probe successes that close it.
    pub close_after: Option<f64>,
}

/// `adaptive` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct AdaptiveInput {
    /// Whether limits adapt.
    pub enabled: Option<bool>,
    /// Consecutive successes per +1.
    pub grow_after: Option<f64>,
    /// Minimum time between decreases, ms.
    pub window_ms: Option<f64>,
}

/// `pressure` as written; fractions of the host's memory limit.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PressureInput {
    /// Refuse LOW work at or above this fraction.
    pub refuse_at: Option<f64>,
    /// Accept it again below this fraction.
    pub resume_below: Option<f64>,
    /// Readings older than this are stale, ms.
    pub stale_ms: Option<f64>,
}

/// `fairness` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct FairnessInput {
    /// Higher-priority admissions after which a waiting lower level goes.
    pub low_every: Option<f64>,
}

/// Validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    lanes: BTreeMap<String, u32>,
    keys: BTreeMap<String, u32>,
    /// Circuit-breaker settings.
    pub breaker: BreakerConfig,
    /// Adaptive-limit settings.
    pub adaptive: AimdConfig,
    /// Memory-pressure gate settings.
    pub pressure: GateConfig,
    /// Higher-priority admissions after which a waiting lower level goes (K).
    pub low_every: u32,
    /// Liveness settings.
    pub liveness: LivenessConfig,
    /// When settled tasks are forgotten.
    pub retention: RetentionConfig,
    /// The engine's memory budget, bytes.
    pub memory_budget: u64,
}

impl Default for Config {
    fn default() -> Self {
        // Inserted one by one, not collected: collecting a map sorts its entries first, which
        // would bring a sort and a bulk build into the `.wasm` for these four alone.
        let mut lanes = BTreeMap::new();
        for (name, limit) in [
            ("planner", 2),
            ("worker", 8),
            ("reviewer", 4),
            (OTHER_LANE, 4),
        ] {
            lanes.insert(name.to_owned(), limit);
        }
        Config {
            lanes,
            keys: BTreeMap::new(),
            breaker: BreakerConfig::default(),
            adaptive: AimdConfig::default(),
            pressure: GateConfig::default(),
            low_every: 8,
            liveness: LivenessConfig::default(),
            retention: RetentionConfig::default(),
            memory_budget: DEFAULT_MEMORY_BUDGET,
        }
    }
}

impl Config {
    /// Validates user input over the defaults.
    pub fn from_input(input: ConfigInput) -> Result<Self, Error> {
        let mut c = Config::default();
        limits_into(&mut c.lanes, "lanes", input.lanes)?;
        limits_into(&mut c.keys, "keys", input.keys)?;
        // An absent object reads as all its keys absent: the checks between keys below then
        // compare defaults, which pass.
        let (b, a, p) = (
            input.breaker.unwrap_or_default(),
            input.adaptive.unwrap_or_default(),
            input.pressure.unwrap_or_default(),
        );
        let (f, l, r) = (
            input.fairness.unwrap_or_default(),
            input.liveness.unwrap_or_default(),
            input.retention.unwrap_or_default(),
        );
        // Whole numbers, each with its key and range (one table: each check is one loop step,
        // not a copy of the check).
        let (breaker, liveness) = (&mut c.breaker, &mut c.liveness);
        for (target, key, value, min, max) in [
            (
                &mut breaker.failure_threshold,
                "breaker.failureThreshold",
                b.failure_threshold,
                1,
                1000,
            ),
            (
                &mut breaker.close_after,
                "breaker.closeAfter",
                b.close_after,
                1,
                1000,
            ),
            (
                &mut c.adaptive.grow_after,
                "adaptive.growAfter",
                a.grow_after,
                1,
                1000,
            ),
            (
                &mut c.low_every,
                "fairness.lowEvery",
                f.low_every,
                1,
                1_000_000,
            ),
            (
                &mut c.retention.max_tasks,
                "retention.maxTasks",
                r.max_tasks,
                0,
                1_000_000,
            ),
            (
                &mut c.retention.result_bytes,
                "retention.resultBytes",
                r.result_bytes,
                1024,
                1 << 20,
            ),
        ] {
            if let Some(v) = value {
                *target = whole_number(key, v, min, max)?;
            }
        }
        for (target, key, value, min, max) in [
            (&mut breaker.open_ms, "breaker.openMs", b.open_ms, 1, MAX_MS),
            (
                &mut breaker.max_open_ms,
                "breaker.maxOpenMs",
                b.max_open_ms,
                1,
                MAX_MS,
            ),
            (
                &mut c.adaptive.window_ms,
                "adaptive.windowMs",
                a.window_ms,
                1,
                MAX_MS,
            ),
            (
                &mut c.pressure.stale_ms,
                "pressure.staleMs",
                p.stale_ms,
                1,
                MAX_MS,
            ),
            (
                &mut liveness.interval_ms,
                "liveness.intervalMs",
                l.interval_ms,
                1,
                MAX_MS,
            ),
            (
                &mut liveness.call_timeout_ms,
                "liveness.callTimeoutMs",
                l.call_timeout_ms,
                1,
                MAX_MS,
            ),
            (
                &mut liveness.cancel_ms,
                "liveness.cancelMs",
                l.cancel_ms,
                1,
                MAX_MS,
            ),
            (
                &mut liveness.skew_ms,
                "liveness.skewMs",
                l.skew_ms,
                0,
                MAX_MS,
            ),
            (
                &mut c.retention.max_age_ms,
                "retention.maxAgeMs",
                r.max_age_ms,
                0,
                30 * MAX_MS,
            ),
            (
                &mut c.retention.max_bytes,
                "retention.maxBytes",
                r.max_bytes,
                0,
                2 << 30,
            ),
            (
                &mut c.memory_budget,
                "memoryBudget",
                input.memory_budget,
                1 << 20,
                3 << 30,
            ),
        ] {
            if let Some(v) = value {
                *target = u64::from(whole_number(key, v, min, max)?);
            }
        }
        if c.breaker.max_open_ms < c.breaker.open_ms {
            return Err(Error::config(
                "breaker.maxOpenMs",
                "must be at least breaker.openMs",
            ));
        }
        if let Some(enabled) = a.enabled {
            c.adaptive.enabled = enabled;
        }
        for (target, key, value) in [
            (
                &mut c.pressure.refuse_at_per_mille,
                "pressure.refuseAt",
                p.refuse_at,
            ),
            (
                &mut c.pressure.resume_below_per_mille,
                "pressure.resumeBelow",
                p.resume_below,
            ),
        ] {
            if let Some(v) = value {
                *target = fraction(key, v)?;
            }
        }
        if c.pressure.resume_below_per_mille > c.pressure.refuse_at_per_mille {
            return Err(Error::config(
                "pressure.resumeBelow",
                "must not exceed pressure.refuseAt",
            ));
        }
        Ok(c)
    }

    /// The lanes and their configured limits, by name.
    pub fn lanes(&self) -> &BTreeMap<String, u32> {
        &self.lanes
    }

    /// The provider/model keys with a configured limit.
    pub fn keys(&self) -> &BTreeMap<String, u32> {
        &self.keys
    }

    /// The lane an agent type runs in: its own if configured, else `other`.
    pub fn lane_of<'a>(&'a self, agent: &'a str) -> &'a str {
        if self.lanes.contains_key(agent) {
            agent
        } else {
            OTHER_LANE
        }
    }
}

/// Checks (name, limit) pairs and sets them in `out` over what is there.
fn limits_into(
    out: &mut BTreeMap<String, u32>,
    prefix: &str,
    pairs: Option<Vec<(String, f64)>>,
) -> Result<(), Error> {
    for (name, limit) in pairs.unwrap_or_default() {
        // Checked under an empty key; the key (`lanes.worker`) is written only for an error.
        let checked = validate_name("", &name).and_then(|()| whole_number("", limit, 1, MAX_LIMIT));
        match checked {
            Ok(limit) => {
                out.insert(name, limit);
            }
            Err(Error::InvalidConfig { reason, .. }) => {
                return Err(Error::config(format!("{prefix}.{name}"), reason));
            }
            Err(other) => return Err(other),
        }
    }
    Ok(())
}

fn validate_name(key: &str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':' | '@'));
    if ok {
        Ok(())
    } else {
        Err(Error::config(
            key,
            "names are 1–128 characters of A–Z, a–z, 0–9, - _ . / : @",
        ))
    }
}

fn fraction(key: &str, value: f64) -> Result<u64, Error> {
    if !value.is_finite() || value <= 0.0 || value > 1.0 {
        return Err(Error::config(
            key,
            format!("must be a fraction in (0, 1], got {}", show_number(value)),
        ));
    }
    Ok((value * 1000.0).round() as u64)
}

/// A number for an error message, written with integer arithmetic: whole numbers as they are,
/// others to three decimals (`0.857`), very large ones as `≥ 2^63`. (Rust's float formatting
/// would add ~19 KB to the wasm module for error messages alone.)
pub(crate) fn show_number(n: f64) -> String {
    if n.is_nan() {
        return "NaN".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let sign = if n < 0.0 { "-" } else { "" };
    let a = n.abs();
    if a >= 9.2e18 {
        return format!("{sign}≥ 2^63");
    }
    let thousandths = (a * 1000.0).round() as u64;
    let (whole, frac) = (thousandths / 1000, thousandths % 1000);
    if a.fract() == 0.0 {
        format!("{sign}{}", a as u64)
    } else if frac == 0 {
        format!("{sign}{whole}.000…")
    } else {
        let digits = format!("{frac:03}");
        format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// Checks that a JavaScript number is a whole number in `min..=max`.
pub(crate) fn whole_number(key: &str, value: f64, min: u32, max: u32) -> Result<u32, Error> {
    if !value.is_finite() || value.fract() != 0.0 {
        return Err(Error::config(
            key,
            format!("must be a whole number, got {}", show_number(value)),
        ));
    }
    if value < f64::from(min) || value > f64::from(max) {
        return Err(Error::config(
            key,
            format!(
                "must be between {min} and {max}, got {}",
                show_number(value)
            ),
        ));
    }
    Ok(value as u32)
}

#[cfg(test)]
mod tests;
