//! Engine configuration: what the user may set, validated once into typed values.
//!
//! [`ConfigInput`] is the shape users write (camelCase in JavaScript); unknown keys are refused so a
//! typo never silently falls back to a default. [`Config::from_input`] checks every value and
//! names the offending key in its [`Error::InvalidConfig`].
//!
//! Invariants:
//! 1. A `Config` only exists validated: every lane limit is in `1..=MAX_LIMIT`.
//! 2. The lane `other` always exists; agents without a lane of their own share it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::Error;

/// The highest concurrency limit accepted anywhere: far above any provider's rate limit, low
/// enough that a typo (`80000`) is caught.
pub const MAX_LIMIT: u32 = 1024;

/// The lane agents without a lane of their own share.
pub const OTHER_LANE: &str = "other";

/// Configuration as the user writes it. Every field is optional; missing fields take the defaults
/// documented on [`Config`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigInput {
    /// Concurrency per agent type, merged over the defaults, e.g. `{ worker: 16 }`.
    pub lanes: Option<BTreeMap<String, f64>>,
}

/// Validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    lanes: BTreeMap<String, u32>,
}

impl Default for Config {
    /// Lanes planner 2, worker 8, reviewer 4, other 4.
    fn default() -> Self {
        let lanes = [
            ("planner", 2),
            ("worker", 8),
            ("reviewer", 4),
            (OTHER_LANE, 4),
        ]
        .into_iter()
        .map(|(name, limit)| (name.to_owned(), limit))
        .collect();
        Config { lanes }
    }
}

impl Config {
    /// Validates user input over the defaults.
    pub fn from_input(input: ConfigInput) -> Result<Self, Error> {
        let mut config = Config::default();
        for (name, limit) in input.lanes.unwrap_or_default() {
            let key = format!("lanes.{name}");
            validate_name(&key, &name)?;
            let limit = whole_number(&key, limit, 1, MAX_LIMIT)?;
            config.lanes.insert(name, limit);
        }
        Ok(config)
    }

    /// The lanes and their configured limits, by name.
    pub fn lanes(&self) -> &BTreeMap<String, u32> {
        &self.lanes
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

fn validate_name(key: &str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(Error::config(
            key,
            "names are 1–64 characters of A–Z, a–z, 0–9, - _ . /",
        ))
    }
}

/// Checks that a JavaScript number is a whole number in `min..=max`.
pub(crate) fn whole_number(key: &str, value: f64, min: u32, max: u32) -> Result<u32, Error> {
    if !value.is_finite() || value.fract() != 0.0 {
        return Err(Error::config(
            key,
            format!("must be a whole number, got {value}"),
        ));
    }
    if value < f64::from(min) || value > f64::from(max) {
        return Err(Error::config(
            key,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    Ok(value as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn lanes(pairs: &[(&str, f64)]) -> Result<Config, Error> {
        let lanes = pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        Config::from_input(ConfigInput { lanes: Some(lanes) })
    }

    #[test]
    fn defaults_follow_the_design() {
        let c = Config::default();
        assert_eq!(c.lanes()["planner"], 2);
        assert_eq!(c.lanes()["worker"], 8);
        assert_eq!(c.lanes()["reviewer"], 4);
        assert_eq!(c.lanes()[OTHER_LANE], 4);
    }

    #[test]
    fn user_lanes_merge_over_defaults() {
        let c = lanes(&[("worker", 16.0), ("scout", 3.0)]).unwrap();
        assert_eq!(c.lanes()["worker"], 16);
        assert_eq!(c.lanes()["scout"], 3);
        assert_eq!(c.lanes()["planner"], 2);
    }

    #[test]
    fn bad_limits_name_their_key() {
        for bad in [0.0, -1.0, 2.5, f64::NAN, f64::INFINITY, 1025.0] {
            let err = lanes(&[("worker", bad)]).unwrap_err();
            assert_eq!(err.code(), "INVALID_CONFIG");
            assert!(
                matches!(&err, Error::InvalidConfig { key, .. } if key == "lanes.worker"),
                "{err}"
            );
        }
    }

    #[test]
    fn bad_lane_names_are_refused() {
        for bad in ["", "has space", "é", &"x".repeat(65)] {
            assert_eq!(lanes(&[(bad, 1.0)]).unwrap_err().code(), "INVALID_CONFIG");
        }
    }

    #[test]
    fn unknown_agents_share_the_other_lane() {
        let c = Config::default();
        assert_eq!(c.lane_of("worker"), "worker");
        assert_eq!(c.lane_of("explorer"), OTHER_LANE);
    }
}
