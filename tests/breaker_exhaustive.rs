//! The circuit breaker against a reference transition function, over every sequence of six
//! events from {ok, upstream-fail, timeout, rate-limited, cancel, try-acquire, tick 1 s,
//! tick 29 s, tick 30 s} (9⁶ = 531,441 sequences; shorter sequences are their prefixes).
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use foreman::{Breaker, BreakerConfig, BreakerState, FailureClass, Outcome, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Ok,
    Upstream,
    Timeout,
    RateLimited,
    Cancel,
    TryAcquire,
    Tick(u64),
}

const EVENTS: [Event; 9] = [
    Event::Ok,
    Event::Upstream,
    Event::Timeout,
    Event::RateLimited,
    Event::Cancel,
    Event::TryAcquire,
    Event::Tick(1_000),
    Event::Tick(29_000),
    Event::Tick(30_000),
];

/// The reference: the breaker's rules written as a table over (state, event), with the probe
/// tracked by the caller. Returns the next state and, for TryAcquire, whether the task may go
/// and whether it goes as the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ref {
    Closed(u32),
    Open {
        until: u64,
        trips: u32,
    },
    Half {
        trips: u32,
        probing: bool,
        wins: u32,
    },
}

fn reference(
    state: Ref,
    event: Event,
    now: u64,
    probe_outcome: bool,
) -> (Ref, Option<(bool, bool)>) {
    use Event::*;
    use Ref::*;
    let counted = matches!(event, Upstream | Timeout);
    match (state, event) {
        (s, Tick(_)) => (s, None),
        (Closed(n), TryAcquire) => (Closed(n), Some((true, false))),
        (Open { until, trips }, TryAcquire) if now >= until => (
            Half {
                trips,
                probing: true,
                wins: 0,
            },
            Some((true, true)),
        ),
        (Open { until, trips }, TryAcquire) => (Open { until, trips }, Some((false, false))),
        (
            Half {
                trips,
                probing: false,
                wins,
            },
            TryAcquire,
        ) => (
            Half {
                trips,
                probing: true,
                wins,
            },
            Some((true, true)),
        ),
        (s @ Half { probing: true, .. }, TryAcquire) => (s, Some((false, false))),
        (Closed(_), Ok) => (Closed(0), None),
        (Closed(n), _) if counted && n + 1 >= 5 => (
            Open {
                until: now + 30_000,
                trips: 1,
            },
            None,
        ),
        (Closed(n), _) if counted => (Closed(n + 1), None),
        (Closed(n), _) => (Closed(n), None),
        (Half { wins, .. }, Ok) if probe_outcome && wins + 1 >= 2 => (Closed(0), None),
        (Half { trips, wins, .. }, Ok) if probe_outcome => (
            Half {
                trips,
                probing: false,
                wins: wins + 1,
            },
            None,
        ),
        // Trip n ≥ 2 lasts min(5 min, 30 s·2ⁿ⁻¹)·(0.8 + 0.2·jitter); the runs here use jitter 0.5.
        (Half { trips, .. }, _) if probe_outcome && counted => {
            let base = (30_000u64 << trips).min(300_000);
            (
                Open {
                    until: now + base * 9 / 10,
                    trips: trips + 1,
                },
                None,
            )
        }
        (Half { trips, wins, .. }, _) if probe_outcome => (
            Half {
                trips,
                probing: false,
                wins,
            },
            None,
        ),
        (s, _) => (s, None),
    }
}

fn as_ref(state: BreakerState) -> Ref {
    match state {
        BreakerState::Closed { failures } => Ref::Closed(failures),
        BreakerState::Open { until, trips } => Ref::Open { until, trips },
        BreakerState::HalfOpen {
            trips,
            probing,
            successes,
        } => Ref::Half {
            trips,
            probing,
            wins: successes,
        },
    }
}

fn outcome(event: Event) -> Option<Outcome> {
    match event {
        Event::Ok => Some(Outcome::Success),
        Event::Upstream => Some(Outcome::Failed(FailureClass::Upstream)),
        Event::Timeout => Some(Outcome::Failed(FailureClass::Timeout)),
        Event::RateLimited => Some(Outcome::Failed(FailureClass::RateLimited)),
        Event::Cancel => Some(Outcome::Failed(FailureClass::Cancelled)),
        _ => None,
    }
}

/// Runs one sequence through both; returns the first divergence.
fn divergence(seq: &[Event], prefill: u32) -> Option<String> {
    let mut breaker = Breaker::new(BreakerConfig::default());
    let mut model = Ref::Closed(0);
    let mut now = 0u64;
    // Optionally start from 4 counted failures so that sequences reach Open and HalfOpen.
    for _ in 0..prefill {
        breaker.on_outcome(now, Outcome::Failed(FailureClass::Upstream), false, 0.5);
        model = reference(model, Event::Upstream, now, false).0;
    }
    let mut probe_in_flight = false;
    for (i, &event) in seq.iter().enumerate() {
        if let Event::Tick(ms) = event {
            now += ms;
        }
        let (next, verdict) = reference(
            model,
            event,
            now,
            probe_in_flight && outcome(event).is_some(),
        );
        match event {
            Event::TryAcquire => {
                let v = breaker.check(now);
                let got = (!matches!(v, Verdict::Refuse { .. }), v == Verdict::Probe);
                breaker.on_start(v);
                if Some(got) != verdict {
                    return Some(format!(
                        "step {i} {event:?}: verdict {v:?}, reference {verdict:?}"
                    ));
                }
                probe_in_flight |= got.1;
            }
            e => {
                if let Some(o) = outcome(e) {
                    breaker.on_outcome(now, o, probe_in_flight, 0.5);
                    probe_in_flight = false;
                }
            }
        }
        model = next;
        if as_ref(breaker.state()) != model {
            return Some(format!(
                "step {i} {event:?}: state {:?}, reference {model:?}",
                breaker.state()
            ));
        }
    }
    None
}

/// Runs all 9⁶ sequences from `prefill` counted failures and asserts no divergence.
fn check_every_sequence(prefill: u32) {
    let mut count = 0;
    let mut failures = Vec::new();
    let mut seq = [Event::Ok; 6];
    for n in 0..9u32.pow(6) {
        let mut x = n;
        for slot in seq.iter_mut() {
            *slot = EVENTS[(x % 9) as usize];
            x /= 9;
        }
        count += 1;
        if let Some(d) = divergence(&seq, prefill) {
            failures.push(format!("{seq:?}: {d}"));
        }
    }
    assert_eq!(count, 531_441);
    assert!(
        failures.is_empty(),
        "{} divergences, first: {}",
        failures.len(),
        failures[0]
    );
}

#[test]
fn breaker_matches_the_reference_on_every_sequence_of_six_events() {
    check_every_sequence(0);
}

#[test]
fn breaker_matches_the_reference_from_four_failures() {
    // From 4 counted failures, six events reach Open, HalfOpen, probes and closing.
    check_every_sequence(4);
}

#[test]
fn the_thirty_second_boundary_is_pinned() {
    for (at, verdict) in [
        (
            29_999,
            Verdict::Refuse {
                retry_at: Some(30_000),
            },
        ),
        (30_000, Verdict::Probe),
        (30_001, Verdict::Probe),
    ] {
        let mut b = Breaker::new(BreakerConfig::default());
        for _ in 0..5 {
            b.on_outcome(0, Outcome::Failed(FailureClass::Upstream), false, 0.5);
        }
        assert_eq!(b.check(at), verdict, "at {at} ms");
    }
}

#[test]
fn repeated_trips_double_with_jitter_up_to_five_minutes() {
    let mut b = Breaker::new(BreakerConfig::default());
    let mut now = 0;
    for _ in 0..5 {
        b.on_outcome(now, Outcome::Failed(FailureClass::Upstream), false, 0.0);
    }
    let mut lengths = vec![];
    for trip in 2..=8 {
        let BreakerState::Open { until, .. } = b.state() else {
            panic!("open")
        };
        lengths.push(until - now);
        now = until;
        let v = b.check(now);
        b.on_start(v);
        // Jitter 0.0 gives the shortest duration, 0.8 of the doubled base.
        b.on_outcome(
            now,
            Outcome::Failed(FailureClass::Upstream),
            true,
            if trip % 2 == 0 { 0.0 } else { 0.999_999 },
        );
    }
    assert_eq!(lengths[0], 30_000);
    assert_eq!(lengths[1], 48_000, "60 s × 0.8");
    assert_eq!(lengths[2], 119_999, "120 s × ~1.0");
    assert_eq!(lengths[3], 192_000, "240 s × 0.8");
    for l in &lengths[4..] {
        assert!(
            (240_000..=300_000).contains(l),
            "capped at 5 min with jitter: {l}"
        );
    }
}
