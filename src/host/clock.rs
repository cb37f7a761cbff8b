//! The engine's clock: what its timers, deadlines and records run on, made from the host's
//! readings so that the wall clock's steps do not move it.
//!
//! A host gives the wall clock (`now()`, epoch ms: what OpenCode stamps messages with) and may
//! give a monotonic one (`monotonic()`, e.g. `performance.now()`). The engine's time starts at
//! the first wall reading and then advances only by how far the *primary* source advanced: the
//! monotonic clock when there is one, else the wall clock.
//!
//! - A step **back** of the primary source holds the engine's time (never backwards) and
//!   re-bases on the new reading, so time goes on advancing from there: a 10 s NTP correction
//!   costs nothing instead of freezing the clock for 10 s.
//! - With a monotonic source, a step of the wall clock either way moves nothing: one reading a
//!   day ahead neither freezes nor expires anything. Without one, a forward step of the wall
//!   clock cannot be told from elapsed time (it advances timers); hosts should give `monotonic`.
//! - The wall clock is only used to compare message stamps: [`Clock::stamp`] puts a stamp on
//!   the engine's clock with the offset between the two at the last wall reading. The engine
//!   still allows `liveness.skewMs` between a stamp and its own time (clocks of the host and of
//!   the server, steps during a turn). It needs such a comparison only for a follow-up restored
//!   from a journal written before replies were recorded: otherwise it tells which turn wrote a
//!   reply without the clocks (see the engine's completion rule), so a step between a
//!   reply's writing and its reading cannot make a finished turn look unfinished, or an earlier
//!   turn's reply look new.
//!
//! Invariants:
//! 1. [`Clock::now`] never decreases.
//! 2. A reading that is not a finite number changes nothing.

/// The engine's clock. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Engine time, ms (fractions kept: a monotonic source reads in fractions of a ms).
    engine: f64,
    /// The primary source's last reading.
    last: Option<f64>,
    /// Engine time minus wall time at the last wall reading, ms.
    offset: f64,
    /// Whether the primary source is a monotonic clock.
    monotonic: bool,
    started: bool,
}

const MAX_MS: f64 = 9_007_199_254_740_991.0;

impl Clock {
    /// A clock fed by the wall clock alone, or with a monotonic source as its primary.
    pub fn new(monotonic: bool) -> Clock {
        Clock {
            monotonic,
            ..Clock::default()
        }
    }

    /// Whether a monotonic source drives it.
    pub fn is_monotonic(&self) -> bool {
        self.monotonic
    }

    /// Takes a reading of the wall clock and/or the monotonic one (either may be missing, e.g.
    /// a clock that threw) and returns the engine's time.
    pub fn read(&mut self, wall: Option<f64>, monotonic: Option<f64>) -> u64 {
        let wall = wall.filter(|w| w.is_finite() && (0.0..=MAX_MS).contains(w));
        let monotonic = monotonic.filter(|m| m.is_finite());
        if !self.started {
            let Some(w) = wall else {
                return self.now();
            };
            self.started = true;
            self.engine = w.floor();
        }
        let primary = if self.monotonic { monotonic } else { wall };
        if let Some(p) = primary {
            if let Some(last) = self.last {
                if p > last {
                    self.engine = (self.engine + (p - last)).min(MAX_MS);
                }
            }
            self.last = Some(p);
        }
        if let Some(w) = wall {
            self.offset = self.engine - w;
        }
        self.now()
    }

    /// A reading of the primary source alone (what run.js passes).
    pub fn read_primary(&mut self, reading: f64) -> u64 {
        if self.monotonic {
            self.read(None, Some(reading))
        } else {
            self.read(Some(reading), None)
        }
    }

    /// The engine's time now, ms.
    pub fn now(&self) -> u64 {
        self.engine.max(0.0) as u64
    }

    /// A wall-clock stamp (a message's `time.created`) on the engine's clock.
    pub fn stamp(&self, wall_ms: u64) -> u64 {
        let at = wall_ms as f64 + self.offset;
        at.clamp(0.0, MAX_MS) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::Clock;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const T0: f64 = 1_700_000_000_000.0;

    #[test]
    fn a_step_back_of_the_wall_clock_holds_then_advances_from_the_new_reading() {
        let mut c = Clock::new(false);
        assert_eq!(c.read(Some(T0), None), T0 as u64);
        assert_eq!(c.read(Some(T0 + 1_000.0), None), T0 as u64 + 1_000);
        // NTP steps 10 s back: the engine holds, then goes on by what passes.
        assert_eq!(c.read(Some(T0 - 9_000.0), None), T0 as u64 + 1_000);
        assert_eq!(c.read(Some(T0 - 8_000.0), None), T0 as u64 + 2_000);
        // A message stamped by the (stepped) wall clock a moment ago is a moment ago.
        assert_eq!(c.stamp((T0 - 8_500.0) as u64), T0 as u64 + 1_500);
    }

    #[test]
    fn with_a_monotonic_source_wall_steps_either_way_move_nothing() {
        let mut c = Clock::new(true);
        assert_eq!(c.read(Some(T0), Some(50.0)), T0 as u64);
        // One reading a day ahead, then back: the engine's time follows the monotonic clock.
        assert_eq!(
            c.read(Some(T0 + 86_400_000.0), Some(1_050.0)),
            T0 as u64 + 1_000
        );
        assert_eq!(c.read(Some(T0 + 2_000.0), Some(2_050.0)), T0 as u64 + 2_000);
        assert_eq!(c.read_primary(3_050.5), T0 as u64 + 3_000);
        // A failing wall clock does not stop it.
        assert_eq!(c.read(None, Some(4_050.0)), T0 as u64 + 4_000);
        assert_eq!(c.stamp((T0 + 1_500.0) as u64), T0 as u64 + 1_500);
    }

    #[test]
    fn unusable_readings_change_nothing_and_time_never_goes_back() {
        let mut c = Clock::new(false);
        assert_eq!(c.read(None, None), 0);
        c.read(Some(T0), None);
        for bad in [f64::NAN, f64::INFINITY, -1.0, 1e300] {
            assert_eq!(c.read(Some(bad), None), T0 as u64);
        }
        assert_eq!(c.read_primary(T0 - 5.0), T0 as u64);
    }
}
