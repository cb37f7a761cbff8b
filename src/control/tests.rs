use std::collections::HashMap;

use super::*;
use crate::config::ConfigInput;
use crate::host::{FailureClass, MemoryReading};
use crate::ids::RunId;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// A controller with its permits held by task id, and a clock.
struct Sim {
    c: Controller,
    now: u64,
    held: HashMap<u32, Permit>,
    tickets: HashMap<u32, Ticket>,
}

const UPSTREAM: Outcome = Outcome::Failed(FailureClass::Upstream);
const RATE_LIMITED: Outcome = Outcome::Failed(FailureClass::RateLimited);

fn sim_with(f: impl FnOnce(&mut ConfigInput)) -> Sim {
    let mut input = ConfigInput::default();
    f(&mut input);
    Sim {
        c: Controller::new(&Config::from_input(input).unwrap(), 1),
        now: 0,
        held: HashMap::new(),
        tickets: HashMap::new(),
    }
}

fn sim() -> Sim {
    sim_with(|_| {})
}

impl Sim {
    fn submit_full(
        &mut self,
        id: u32,
        agent: &str,
        key: Option<&str>,
        p: Priority,
        fail_fast: bool,
    ) -> Result<(), Error> {
        let ticket = self.c.submit(
            self.now,
            Request {
                task: TaskId(id),
                agent,
                key,
                priority: p,
                fail_fast,
            },
        )?;
        self.tickets.insert(id, ticket);
        Ok(())
    }

    fn cancel(&mut self, id: u32) -> bool {
        let ticket = self.tickets[&id];
        self.c.cancel(ticket)
    }

    fn submit(&mut self, id: u32, agent: &str, p: Priority) {
        self.submit_full(id, agent, None, p, false).unwrap();
    }

    fn submit_key(&mut self, id: u32, key: &str) {
        self.submit_full(id, "worker", Some(key), Priority::Normal, false)
            .unwrap();
    }

    /// Admits and returns the admitted ids in order.
    fn admit(&mut self) -> Vec<u32> {
        let admitted = self.c.admit(self.now);
        admitted
            .into_iter()
            .map(|a| {
                let id = a.work.task().map_or(0, TaskId::get);
                self.held.insert(id, a.permit);
                id
            })
            .collect()
    }

    fn complete(&mut self, id: u32, outcome: Outcome) {
        let permit = self.held.remove(&id).expect("task holds a permit");
        self.c.complete(self.now, permit, outcome);
    }

    fn lane(&self, name: &str) -> LaneView {
        self.c
            .stats(self.now)
            .lanes
            .into_iter()
            .find(|l| l.name == name)
            .unwrap()
    }

    fn breaker(&self, key: &str) -> BreakerState {
        self.c.breaker(key).unwrap().state()
    }
}

#[test]
fn admits_up_to_the_lane_limit_and_a_release_wakes_the_next() {
    let mut s = sim();
    for id in 1..=4 {
        s.submit(id, "planner", Priority::Normal);
    }
    assert_eq!(s.admit(), [1, 2], "planner lane holds 2");
    assert_eq!(s.admit(), Vec::<u32>::new());
    s.complete(1, Outcome::Success);
    assert_eq!(s.admit(), [3]);
    assert_eq!(s.lane("planner").in_use, 2);
}

#[test]
fn unknown_agents_run_in_the_other_lane() {
    let mut s = sim();
    for id in 1..=6 {
        s.submit(id, "explorer", Priority::Normal);
    }
    assert_eq!(s.admit().len(), 4);
    assert_eq!(s.lane("other").in_use, 4);
}

#[test]
fn high_goes_before_normal_before_low_and_fifo_within_a_level() {
    let mut s = sim_with(|i| i.lanes = Some([("worker".into(), 1.0)].into()));
    s.submit(1, "worker", Priority::Normal);
    assert_eq!(s.admit(), [1]);
    for (id, p) in [
        (2, Priority::Low),
        (3, Priority::Normal),
        (4, Priority::High),
        (5, Priority::Normal),
        (6, Priority::High),
    ] {
        s.submit(id, "worker", p);
    }
    let mut order = Vec::new();
    let mut running = 1;
    for _ in 0..5 {
        s.complete(running, Outcome::Success);
        let next = s.admit();
        assert_eq!(next.len(), 1);
        running = next[0];
        order.push(running);
    }
    assert_eq!(order, [4, 6, 3, 5, 2]);
}

#[test]
fn cancel_removes_exactly_that_waiter() {
    let mut s = sim_with(|i| i.lanes = Some([("worker".into(), 1.0)].into()));
    for id in 1..=5 {
        s.submit(id, "worker", Priority::Normal);
    }
    assert_eq!(s.admit(), [1]);
    assert!(s.cancel(3));
    assert!(!s.cancel(3), "a second cancel finds nothing");
    s.submit(9, "worker", Priority::Normal);
    assert!(
        !s.cancel(3),
        "a stale ticket never matches a new waiter in its slot"
    );
    assert!(!s.cancel(1), "a running task is not waiting");
    let mut order = Vec::new();
    let mut running = 1;
    while s.c.waiting() > 0 {
        s.complete(running, Outcome::Success);
        running = s.admit()[0];
        order.push(running);
    }
    assert_eq!(order, [2, 4, 5, 9]);
}

#[test]
fn low_goes_after_k_higher_admissions_in_its_lane() {
    let mut s = sim_with(|i| {
        i.lanes = Some([("worker".into(), 1.0)].into());
        i.fairness = Some(crate::config::FairnessInput {
            low_every: Some(3.0),
        });
    });
    s.submit(100, "worker", Priority::Low);
    for id in 1..=10 {
        s.submit(id, "worker", Priority::High);
    }
    let mut order: Vec<u32> = vec![];
    for _ in 0..11 {
        let next = s.admit();
        order.extend(&next);
        s.complete(next[0], Outcome::Success);
    }
    // The LOW waiter was present from the start: after 3 HIGH admissions it is owed a turn.
    assert_eq!(order, [1, 2, 3, 100, 4, 5, 6, 7, 8, 9, 10]);
}

#[test]
fn a_key_limit_caps_work_across_lanes() {
    let mut s = sim_with(|i| i.keys = Some([("openai/gpt".into(), 2.0)].into()));
    s.submit_full(1, "worker", Some("openai/gpt"), Priority::Normal, false)
        .unwrap();
    s.submit_full(2, "reviewer", Some("openai/gpt"), Priority::Normal, false)
        .unwrap();
    s.submit_full(3, "planner", Some("openai/gpt"), Priority::Normal, false)
        .unwrap();
    s.submit_full(4, "planner", Some("anthropic/x"), Priority::Normal, false)
        .unwrap();
    assert_eq!(
        s.admit(),
        [1, 2, 4],
        "a blocked key does not block other keys"
    );
    s.complete(2, Outcome::Success);
    assert_eq!(s.admit(), [3]);
}

#[test]
fn the_gate_refuses_low_work_only_and_holds_queued_low_work() {
    let mut s = sim();
    s.submit(1, "worker", Priority::Low);
    s.c.observe_memory(0, MemoryReading::new(800, 1000).unwrap());
    let err = s
        .submit_full(2, "worker", None, Priority::Low, false)
        .unwrap_err();
    assert_eq!(
        err,
        Error::MemoryPressure {
            used: 800,
            limit: 1000
        }
    );
    s.submit(3, "worker", Priority::Normal);
    s.submit(4, "worker", Priority::High);
    assert_eq!(
        s.admit(),
        [4, 3],
        "queued LOW does not start while the gate is closed"
    );
    s.c.observe_memory(0, MemoryReading::new(760, 1000).unwrap());
    assert_eq!(
        s.admit(),
        Vec::<u32>::new(),
        "inside the band the gate stays closed"
    );
    s.c.observe_memory(0, MemoryReading::new(749, 1000).unwrap());
    assert_eq!(s.admit(), [1]);
}

#[test]
fn next_deadline_names_a_stale_gate_and_an_open_breaker() {
    let mut s = sim();
    s.submit(1, "worker", Priority::Low);
    s.c.observe_memory(1_000, MemoryReading::new(900, 1000).unwrap());
    assert_eq!(s.c.next_deadline(1_000), Some(11_001));
    s.now = 11_001;
    assert_eq!(s.admit(), [1], "a stale reading no longer holds LOW work");
    for id in 10..15 {
        s.submit_key(id, "p/m");
    }
    s.admit();
    for id in 10..15 {
        s.complete(id, UPSTREAM);
    }
    s.submit_key(20, "p/m");
    assert_eq!(s.c.next_deadline(s.now), Some(s.now + 30_000));
}

#[test]
fn breaker_changes_are_reported_once_per_phase_change() {
    let mut s = sim();
    s.submit_key(1, "a/m");
    for id in 2..=6 {
        s.submit_key(id, "p/m");
    }
    s.admit();
    assert_eq!(
        s.c.take_breaker_changes(),
        (vec![], false),
        "new keys, closed"
    );
    for id in 2..=6 {
        s.complete(id, UPSTREAM);
    }
    let changed = |phase| {
        vec![BreakerEvent {
            key: "p/m".to_string(),
            phase,
        }]
    };
    let open = (changed(BreakerPhase::Open), true);
    assert_eq!(s.c.take_breaker_changes(), open);
    assert_eq!(s.c.take_breaker_changes(), (vec![], true), "told once");
    s.now += 30_000;
    s.submit_key(7, "p/m");
    assert_eq!(s.admit(), [7], "the probe");
    let half = (changed(BreakerPhase::HalfOpen), true);
    assert_eq!(s.c.take_breaker_changes(), half);
}

#[test]
fn the_breaker_opens_after_five_counted_failures_and_lets_one_probe_through() {
    let mut s = sim();
    for id in 1..=5 {
        s.submit_key(id, "p/m");
    }
    assert_eq!(s.admit().len(), 5);
    for id in 1..=4 {
        s.complete(id, UPSTREAM);
    }
    assert_eq!(s.breaker("p/m"), BreakerState::Closed { failures: 4 });
    s.complete(5, Outcome::Failed(FailureClass::Timeout));
    assert_eq!(
        s.breaker("p/m"),
        BreakerState::Open {
            until: 30_000,
            trips: 1
        }
    );
    for id in 6..=8 {
        s.submit_key(id, "p/m");
    }
    let err = s
        .submit_full(9, "worker", Some("p/m"), Priority::Normal, true)
        .unwrap_err();
    assert_eq!(
        err,
        Error::BreakerOpen {
            key: "p/m".into(),
            retry_at_ms: Some(30_000)
        }
    );
    s.now = 29_999;
    assert_eq!(s.admit(), Vec::<u32>::new());
    s.now = 30_000;
    assert_eq!(s.admit(), [6], "one probe");
    assert!(s.held[&6].is_probe());
    assert_eq!(s.admit(), Vec::<u32>::new(), "the others keep waiting");
    s.complete(6, Outcome::Success);
    assert_eq!(s.admit(), [7], "second probe");
    s.complete(7, Outcome::Success);
    assert_eq!(s.breaker("p/m"), BreakerState::Closed { failures: 0 });
    assert_eq!(s.admit(), [8]);
}

#[test]
fn cancels_and_rate_limits_never_open_the_breaker() {
    let mut s = sim();
    for id in 1..=20 {
        s.submit_key(id, "p/m");
    }
    s.admit();
    for id in 1..=8 {
        let outcome = if id % 2 == 0 {
            RATE_LIMITED
        } else {
            Outcome::Failed(FailureClass::Cancelled)
        };
        s.complete(id, outcome);
        s.admit();
    }
    assert_eq!(s.breaker("p/m"), BreakerState::Closed { failures: 0 });
}

#[test]
fn a_dropped_probe_permit_lets_the_next_probe_through() {
    let mut s = sim_with(|i| {
        i.breaker = Some(crate::config::BreakerInput {
            failure_threshold: Some(1.0),
            ..Default::default()
        })
    });
    s.submit_key(1, "p/m");
    s.admit();
    s.complete(1, UPSTREAM);
    s.submit_key(2, "p/m");
    s.submit_key(3, "p/m");
    s.now = 30_000;
    assert_eq!(s.admit(), [2]);
    drop(s.held.remove(&2));
    assert_eq!(
        s.admit(),
        [3],
        "the abandoned probe freed the half-open breaker"
    );
}

#[test]
fn every_release_path_returns_exactly_one_permit() {
    let mut s = sim();
    let outcomes = [
        Outcome::Success,
        UPSTREAM,
        Outcome::Failed(FailureClass::Timeout),
        Outcome::Failed(FailureClass::Cancelled),
        RATE_LIMITED,
        Outcome::Failed(FailureClass::Invalid),
    ];
    for (i, outcome) in outcomes.iter().enumerate() {
        let id = i as u32 + 1;
        s.submit(id, "worker", Priority::Normal);
        assert_eq!(s.admit(), [id]);
        assert_eq!(s.lane("worker").in_use, 1);
        s.complete(id, *outcome);
        assert_eq!(s.lane("worker").in_use, 0, "{outcome:?}");
    }
    // Cancel while queued: no permit was ever issued.
    s.submit(50, "planner", Priority::Normal);
    s.submit(51, "planner", Priority::Normal);
    s.submit(52, "planner", Priority::Normal);
    assert_eq!(s.admit(), [50, 51]);
    assert!(s.cancel(52));
    // Dropped without an outcome.
    drop(s.held.remove(&50));
    assert_eq!(s.lane("planner").in_use, 1);
    s.complete(51, Outcome::Failed(FailureClass::Cancelled));
    let (issued, released) = s.c.permit_totals();
    assert_eq!((issued, released), (8, 8));
    assert_eq!(s.lane("planner").in_use + s.lane("worker").in_use, 0);
}

#[test]
fn rate_limits_shrink_the_limit_and_busy_successes_grow_it_back() {
    let mut s = sim();
    for id in 1..=40 {
        s.submit(id, "worker", Priority::Normal);
    }
    assert_eq!(s.admit().len(), 8);
    s.complete(1, RATE_LIMITED);
    assert_eq!(s.lane("worker").effective, 4);
    assert_eq!(
        s.admit(),
        Vec::<u32>::new(),
        "7 running over a limit of 4: nobody starts"
    );
    for id in 2..=5 {
        s.complete(id, Outcome::Success);
    }
    // 3 successes with ≥ 2 in use grew the limit to 5; 3 remain in use.
    assert_eq!(s.lane("worker").effective, 5);
    assert_eq!(s.admit().len(), 2);
    assert!(s.lane("worker").in_use <= s.lane("worker").effective);
}

#[test]
fn stats_show_queues_per_level_and_key_state() {
    let mut s = sim_with(|i| i.keys = Some([("p/m".into(), 3.0)].into()));
    s.submit(1, "worker", Priority::High);
    s.submit(2, "worker", Priority::Low);
    s.submit_key(3, "p/m");
    let stats = s.c.stats(0);
    let worker = stats.lanes.iter().find(|l| l.name == "worker").unwrap();
    assert_eq!(worker.queued, [1, 1, 1]);
    assert_eq!(stats.keys[0].limit, Some(3));
    assert_eq!(stats.keys[0].queued, 1);
    assert_eq!(stats.keys[0].breaker.name(), "closed");
    assert!(stats.gate.stale && !stats.gate.closed);
}

/// `submit_or_admit` admits at once exactly when `submit` followed by `admit` would admit that
/// work: the two controllers below get the same seeded operations and must admit the same
/// tasks and run slots (each told apart by its variant), in the same order, at every step.
#[test]
fn submit_or_admit_matches_submit_then_admit() {
    for seed in 1..=20u64 {
        let config = |input: &mut ConfigInput| {
            input.lanes = Some([("a".to_owned(), 2.0), ("b".to_owned(), 3.0)].into());
            input.keys = Some([("k1".to_owned(), 1.0)].into());
        };
        let mut fast = sim_with(config);
        let mut slow = sim_with(config);
        let (a, b) = (fast.c.lane_id("a"), fast.c.lane_id("b"));
        let lanes = [a, b, fast.c.lane_id("other")];
        let keys = [
            None,
            Some(fast.c.key_id("k1").unwrap()),
            Some(fast.c.key_id("k2").unwrap()),
        ];
        slow.c.key_id("k1").unwrap();
        slow.c.key_id("k2").unwrap();
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut held: Vec<(Work, Permit, Permit)> = Vec::new();
        let mut admitted_fast = Vec::new();
        for id in 1..=400u32 {
            let now = u64::from(id) * 100;
            admitted_fast.clear();
            let roll = rng.u32(0..10);
            if roll < 6 || held.is_empty() {
                let (lane, key) = (lanes[rng.usize(0..3)], keys[rng.usize(0..3)]);
                let priority = Priority::ALL[rng.usize(0..3)];
                let fail_fast = rng.bool();
                // Tasks and run slots share numbers here on purpose: the variant tells them apart.
                let work = if rng.bool() {
                    Work::Task(TaskId(id))
                } else {
                    Work::Run(RunId::from_raw(id))
                };
                let f = fast
                    .c
                    .submit_or_admit(now, work, lane, key, priority, fail_fast);
                let s = slow.c.submit_to(now, work, lane, key, priority, fail_fast);
                assert_eq!(f.is_err(), s.is_err(), "seed {seed}, task {id}: refusals");
                match f {
                    Ok(Submitted::Admitted(p)) => admitted_fast.push((work, p)),
                    Ok(Submitted::Waiting(_)) | Err(_) => {}
                }
            } else {
                let (_, pf, ps) = held.swap_remove(rng.usize(0..held.len()));
                let outcome = [Outcome::Success, UPSTREAM, RATE_LIMITED][rng.usize(0..3)];
                fast.c.complete(now, pf, outcome);
                slow.c.complete(now, ps, outcome);
            }
            let admitted_slow = slow.c.admit(now);
            let mut more = Vec::new();
            fast.c.admit_into(now, &mut more);
            let fast_ids: Vec<Work> = admitted_fast
                .iter()
                .map(|(work, p)| {
                    assert_eq!(p.work(), *work, "seed {seed}: a permit names its work");
                    *work
                })
                .chain(more.iter().map(|a| a.work))
                .collect();
            let slow_ids: Vec<Work> = admitted_slow.iter().map(|a| a.work).collect();
            assert_eq!(fast_ids, slow_ids, "seed {seed}, step {id}: admissions");
            let fast_permits = admitted_fast
                .drain(..)
                .map(|(_, p)| p)
                .chain(more.into_iter().map(|a| a.permit));
            for (pf, s) in fast_permits.zip(admitted_slow) {
                held.push((s.work, pf, s.permit));
            }
        }
    }
}

/// The limit changes taken now, as (scope, name, from, to, cause).
fn changes(s: &mut Sim) -> Vec<(LimitScope, String, u32, u32, LimitCause)> {
    s.c.take_limit_changes()
        .into_iter()
        .map(|c| (c.scope, c.name, c.from, c.to, c.cause))
        .collect()
}

#[test]
fn a_429_storm_halves_a_lane_limit_once_per_window_told_as_changes_and_recovery_raises_it_back() {
    use LimitCause::{RateLimited, Recovery};
    let lane = |from, to, cause| (LimitScope::Lane, "worker".to_string(), from, to, cause);
    let mut s = sim();
    for id in 1..=60 {
        s.submit(id, "worker", Priority::Normal);
    }
    assert_eq!(s.admit(), (1..=8).collect::<Vec<_>>());
    assert_eq!(changes(&mut s), [], "nothing changed yet");
    for id in 1..=8 {
        s.complete(id, RATE_LIMITED);
    }
    assert_eq!(
        changes(&mut s),
        [lane(8, 4, RateLimited)],
        "eight 429s in one window: one decrease"
    );
    assert!(!s.c.has_limit_changes(), "taken once");
    assert_eq!(s.admit(), [9, 10, 11, 12]);
    s.now = 5_000;
    s.complete(9, RATE_LIMITED);
    assert_eq!(
        changes(&mut s),
        [lane(4, 2, RateLimited)],
        "the next window"
    );
    assert_eq!(s.lane("worker").effective, 2);
    // The storm is over: every success with the lane busy counts, three per step, up to 8.
    let mut running: std::collections::VecDeque<u32> = [10, 11, 12].into();
    let mut seen = Vec::new();
    while let Some(id) = running.pop_front() {
        s.complete(id, Outcome::Success);
        seen.extend(changes(&mut s));
        running.extend(s.admit());
    }
    let expected: Vec<_> = (2..8).map(|from| lane(from, from + 1, Recovery)).collect();
    assert_eq!(seen, expected, "one step at a time, never past the ceiling");
    assert_eq!(s.lane("worker").effective, 8);
}

#[test]
fn a_keys_limit_changes_with_its_cause_and_only_when_it_moves() {
    use LimitCause::{RateLimited, Timeout, Upstream};
    let key = |from, to, cause| (LimitScope::Key, "p/m".to_string(), from, to, cause);
    let mut s = sim_with(|i| i.keys = Some([("p/m".into(), 4.0)].into()));
    let p_m = s.c.key_id("p/m").unwrap();
    let free = s.c.key_id("free/m").unwrap();
    s.c.breaker_exit(0, free, false, RATE_LIMITED);
    assert_eq!(
        changes(&mut s),
        [],
        "a key without a limit has none to change"
    );
    s.c.breaker_exit(0, p_m, false, UPSTREAM);
    s.c.breaker_exit(10, p_m, false, RATE_LIMITED);
    assert_eq!(changes(&mut s), [key(4, 2, Upstream)], "once per window");
    s.now = 6_000;
    s.submit_key(1, "p/m");
    s.admit();
    s.c.rate_limited(s.now, &s.held[&1]);
    assert_eq!(
        changes(&mut s),
        [key(2, 1, RateLimited)],
        "the host retrying a 429"
    );
    s.now = 12_000;
    s.complete(1, Outcome::Failed(FailureClass::Timeout));
    assert_eq!(changes(&mut s), [], "1 is the floor: no change, no event");
    assert_eq!(
        s.lane("worker").effective,
        8,
        "the key's limit adapted, not the lane's"
    );
    s.now = 20_000;
    s.submit_key(2, "p/m");
    s.admit();
    s.now = 30_000;
    s.complete(2, Outcome::Failed(FailureClass::Cancelled));
    assert_eq!(changes(&mut s), [], "a cancel says nothing about capacity");
    s.c.breaker_exit(s.now, p_m, false, RATE_LIMITED);
    assert_eq!(changes(&mut s), [], "at the floor already");
    let names = [RateLimited, Upstream, Timeout, LimitCause::Recovery].map(LimitCause::name);
    assert_eq!(names, ["rate_limited", "upstream", "timeout", "recovery"]);
}

#[test]
fn the_gate_wants_a_reading_only_before_deciding_low_work_and_once_per_ms() {
    let mut s = sim();
    let reading = MemoryReading::new(100, 1000).unwrap();
    assert!(!s.c.memory_due(0, false), "no LOW work: no reading wanted");
    assert!(
        s.c.memory_due(0, true),
        "LOW work submitted without a reading"
    );
    s.c.observe_memory(5, reading);
    assert!(
        !s.c.memory_due(5, true),
        "a reading made this ms is as good"
    );
    assert!(s.c.memory_due(6, true), "a later decision wants its own");
    s.submit(1, "worker", Priority::High);
    assert!(
        !s.c.memory_due(6, false),
        "HIGH waiting: the gate has no say"
    );
    s.submit(2, "worker", Priority::Low);
    assert!(
        s.c.memory_due(6, false),
        "LOW waiting: a tick wants a reading"
    );
    assert_eq!(s.admit(), [1, 2]);
    assert!(!s.c.memory_due(7, false), "nothing LOW waits any more");
}
