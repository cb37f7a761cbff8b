//! The controller under seeded random operations, checked against a reference model after every
//! step; the LOW-wait bound under HIGH saturation; AIMD against a simulated backend.
//! Every random test prints its seed; rerun one with `FOREMAN_SEED=<seed>`.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};

use foreman::{
    Admission, Config, ConfigInput, Controller, FailureClass, FairnessInput, MemoryReading,
    Outcome, Permit, Priority, Request, TaskId, Ticket,
};

fn seeds(default: &[u64]) -> Vec<u64> {
    match std::env::var("FOREMAN_SEED") {
        Ok(s) => vec![s.parse().expect("FOREMAN_SEED is a number")],
        Err(_) => default.to_vec(),
    }
}

const AGENTS: [&str; 4] = ["planner", "worker", "reviewer", "explorer"];
const KEYS: [Option<&str>; 4] = [None, Some("a/limited"), Some("b/open"), Some("c/flaky")];

#[derive(Debug, Clone, PartialEq)]
enum State {
    Waiting,
    Running,
    Settled,
    Cancelled,
    Refused,
}

struct Task {
    state: State,
    lane: &'static str,
    key: Option<&'static str>,
    priority: Priority,
    seq: u64,
    ticket: Option<Ticket>,
}

fn lane_of(agent: &'static str) -> &'static str {
    if agent == "explorer" { "other" } else { agent }
}

/// One seeded run of `ops` random operations. Returns (admissions, settled) for the record.
fn run(seed: u64, ops: usize) -> (u64, u64) {
    let config = Config::from_input(ConfigInput {
        keys: Some([("a/limited".to_owned(), 3.0)].into()),
        ..ConfigInput::default()
    })
    .unwrap();
    let mut c = Controller::new(&config, seed);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut now = 0u64;
    let mut tasks: BTreeMap<u32, Task> = BTreeMap::new();
    let mut held: HashMap<u32, Permit> = HashMap::new();
    let mut next_id = 1u32;
    let mut seq = 0u64;
    // Last admitted submission number per (lane, key, level): FIFO among equals.
    let mut last_admitted: HashMap<(&str, Option<&str>, Priority), u64> = HashMap::new();
    // The model of the memory gate: (closed, reading time).
    let mut gate: (bool, Option<u64>) = (false, None);
    let gate_closed =
        |gate: (bool, Option<u64>), now: u64| gate.0 && gate.1.is_some_and(|t| now - t <= 10_000);
    let (mut admissions, mut settled) = (0u64, 0u64);
    let mut waiting = 0usize;
    let ctx = |i: usize| format!("seed {seed}, op {i}");

    for i in 0..ops {
        match rng.u32(0..100) {
            0..=34 => {
                let agent = AGENTS[rng.usize(0..4)];
                let key = KEYS[rng.usize(0..4)];
                let priority = Priority::ALL[rng.usize(0..3)];
                let fail_fast = rng.bool();
                let id = next_id;
                next_id += 1;
                seq += 1;
                let result = c.submit(
                    now,
                    Request {
                        task: TaskId(id),
                        agent,
                        key,
                        priority,
                        fail_fast,
                    },
                );
                let ticket = result.as_ref().ok().copied();
                let state = match result {
                    Ok(_) => State::Waiting,
                    Err(e) => {
                        match e.code() {
                            "MEMORY_PRESSURE" => {
                                assert_eq!(priority, Priority::Low, "{}", ctx(i));
                                assert!(
                                    gate_closed(gate, now),
                                    "{}: refused with the gate open",
                                    ctx(i)
                                );
                            }
                            "BREAKER_OPEN" => assert!(fail_fast && key.is_some(), "{}", ctx(i)),
                            other => panic!("{}: unexpected refusal {other}", ctx(i)),
                        }
                        State::Refused
                    }
                };
                if state == State::Waiting {
                    waiting += 1;
                }
                if priority == Priority::Low && state == State::Waiting {
                    assert!(
                        !gate_closed(gate, now),
                        "{}: LOW accepted with the gate closed",
                        ctx(i)
                    );
                }
                tasks.insert(
                    id,
                    Task {
                        state,
                        lane: lane_of(agent),
                        key,
                        priority,
                        seq,
                        ticket,
                    },
                );
            }
            35..=59 => {
                // Settle a random running task with a random outcome.
                let running: Vec<u32> = held.keys().copied().collect();
                if let Some(&id) = running.get(rng.usize(0..running.len().max(1))) {
                    let outcome = match rng.u32(0..10) {
                        0..=4 => Outcome::Success,
                        5 => Outcome::Failed(FailureClass::Upstream),
                        6 => Outcome::Failed(FailureClass::Timeout),
                        7 => Outcome::Failed(FailureClass::RateLimited),
                        8 => Outcome::Failed(FailureClass::Cancelled),
                        _ => Outcome::Failed(FailureClass::Invalid),
                    };
                    let permit = held.remove(&id).unwrap();
                    if rng.u32(0..10) == 0 {
                        drop(permit); // the task went away without an outcome
                    } else {
                        c.complete(now, permit, outcome);
                    }
                    tasks.get_mut(&id).unwrap().state = State::Settled;
                    settled += 1;
                }
            }
            60..=69 => {
                // Cancel a random id: waiting ones leave, others are not waiting.
                if next_id > 1 {
                    let id = rng.u32(1..next_id);
                    let t = tasks.get_mut(&id).unwrap();
                    let was_waiting = t.state == State::Waiting;
                    let cancelled = t.ticket.is_some_and(|ticket| c.cancel(ticket));
                    assert_eq!(cancelled, was_waiting, "{}: cancel {id}", ctx(i));
                    if was_waiting {
                        t.state = State::Cancelled;
                        waiting -= 1;
                    }
                }
            }
            70..=89 => now += rng.u64(1..4_000),
            90..=94 => now += rng.u64(4_000..40_000),
            _ => {
                let per_mille = rng.u64(600..950);
                c.observe_memory(now, MemoryReading::new(per_mille, 1000).unwrap());
                if per_mille >= 800 {
                    gate.0 = true;
                } else if per_mille < 750 {
                    gate.0 = false;
                }
                gate.1 = Some(now);
            }
        }

        // Pump, as a driver does after every change, and check each admission.
        let admitted: Vec<Admission> = c.admit(now);
        for a in admitted {
            let id = a.work.task().map_or(0, TaskId::get);
            let t = tasks
                .get_mut(&id)
                .unwrap_or_else(|| panic!("{}: unknown task admitted", ctx(i)));
            assert_eq!(
                t.state,
                State::Waiting,
                "{}: task {id} admitted twice or after leaving",
                ctx(i)
            );
            if t.priority == Priority::Low {
                assert!(
                    !gate_closed(gate, now),
                    "{}: LOW admitted while the gate is closed",
                    ctx(i)
                );
            }
            let last = last_admitted
                .entry((t.lane, t.key, t.priority))
                .or_insert(0);
            assert!(t.seq > *last, "{}: FIFO broken among equals", ctx(i));
            *last = t.seq;
            t.state = State::Running;
            waiting -= 1;
            held.insert(id, a.permit);
            admissions += 1;
        }

        // Invariants after every step.
        let stats = c.stats(now);
        for lane in &stats.lanes {
            assert!(
                lane.effective >= 1 && lane.effective <= lane.limit,
                "{}: {lane:?}",
                ctx(i)
            );
            let running = held
                .values()
                .filter(|p| lane_of_task(&tasks, p) == lane.name)
                .count() as u32;
            assert_eq!(
                lane.in_use,
                running,
                "{}: lane {} in use",
                ctx(i),
                lane.name
            );
            assert!(
                lane.in_use <= lane.limit,
                "{}: lane {} over its configured limit",
                ctx(i),
                lane.name
            );
        }
        for key in &stats.keys {
            if let (Some(limit), Some(effective)) = (key.limit, key.effective) {
                assert!(
                    effective >= 1 && effective <= limit && key.in_use <= limit,
                    "{}: {key:?}",
                    ctx(i)
                );
            }
        }
        assert_eq!(c.waiting(), waiting, "{}: waiting count", ctx(i));
    }

    // Drain: everything waiting is cancelled, everything running settles.
    for (&id, t) in tasks.iter_mut() {
        if t.state == State::Waiting {
            assert!(c.cancel(t.ticket.unwrap()), "seed {seed}: task {id}");
            t.state = State::Cancelled;
        }
    }
    for (id, permit) in held.drain() {
        c.complete(now, permit, Outcome::Success);
        tasks.get_mut(&id).unwrap().state = State::Settled;
    }
    let (issued, released) = c.permit_totals();
    assert_eq!(issued, released, "seed {seed}: leaked permits");
    assert_eq!(issued, admissions, "seed {seed}: one permit per admission");
    assert!(
        c.stats(now).lanes.iter().all(|l| l.in_use == 0),
        "seed {seed}"
    );
    assert!(
        tasks
            .values()
            .all(|t| matches!(t.state, State::Settled | State::Cancelled | State::Refused))
    );
    (admissions, settled)
}

fn lane_of_task(tasks: &BTreeMap<u32, Task>, permit: &Permit) -> &'static str {
    tasks[&permit.work().task().map_or(0, TaskId::get)].lane
}

#[test]
fn a_million_random_operations_leak_no_permit_and_break_no_limit() {
    for seed in seeds(&[0x5EED_0001, 0x5EED_0002, 0x5EED_0003, 0x5EED_0004]) {
        println!("seed {seed}");
        let (admissions, settled) = run(seed, 250_000);
        assert!(
            admissions > 10_000 && settled > 10_000,
            "seed {seed}: the run did work ({admissions}, {settled})"
        );
    }
}

/// Under HIGH saturation, each LOW waiter is admitted within (p + 1)·(K + 1) admissions in its
/// lane, p being the LOW waiters ahead of it.
#[test]
fn low_work_waits_within_the_documented_bound_under_high_saturation() {
    for seed in seeds(&[7, 8, 9]) {
        println!("seed {seed}");
        let k = 8u64;
        let config = Config::from_input(ConfigInput {
            lanes: Some([("worker".to_owned(), 4.0)].into()),
            fairness: Some(FairnessInput {
                low_every: Some(k as f64),
            }),
            ..ConfigInput::default()
        })
        .unwrap();
        let mut c = Controller::new(&config, seed);
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut next = 1u32;
        let mut low_submitted: HashMap<u32, (u64, u64)> = HashMap::new(); // id → (admission count, LOW ahead)
        let mut held: Vec<Permit> = Vec::new();
        let mut admissions = 0u64;
        let mut max_ratio = 0.0f64;
        let mut low_done = 0;
        for step in 0..20_000 {
            // Keep HIGH saturated: always more HIGH waiting than slots.
            while c
                .stats(0)
                .lanes
                .iter()
                .find(|l| l.name == "worker")
                .unwrap()
                .queued[0]
                < 8
            {
                c.submit(
                    0,
                    Request {
                        task: TaskId(next),
                        agent: "worker",
                        key: None,
                        priority: Priority::High,
                        fail_fast: false,
                    },
                )
                .unwrap();
                next += 1;
            }
            if rng.u32(0..50) == 0 {
                let ahead = low_submitted.len() as u64;
                c.submit(
                    0,
                    Request {
                        task: TaskId(next),
                        agent: "worker",
                        key: None,
                        priority: Priority::Low,
                        fail_fast: false,
                    },
                )
                .unwrap();
                low_submitted.insert(next, (admissions, ahead));
                next += 1;
            }
            for a in c.admit(0) {
                admissions += 1;
                if let Some((at, ahead)) =
                    low_submitted.remove(&a.work.task().map_or(0, TaskId::get))
                {
                    let waited = admissions - at;
                    let bound = (ahead + 1) * (k + 1);
                    assert!(
                        waited <= bound,
                        "seed {seed}, step {step}: LOW waited {waited} admissions, bound {bound}"
                    );
                    max_ratio = max_ratio.max(waited as f64 / bound as f64);
                    low_done += 1;
                }
                held.push(a.permit);
            }
            // A random running task finishes.
            if !held.is_empty() {
                let p = held.swap_remove(rng.usize(0..held.len()));
                c.complete(0, p, Outcome::Success);
            }
        }
        println!(
            "seed {seed}: {low_done} LOW admitted under saturation, worst wait {:.2} of the bound, {} still waiting",
            max_ratio,
            low_submitted.len()
        );
        assert!(low_done > 200, "seed {seed}");
        assert!(low_submitted.len() <= 3, "seed {seed}: LOW work starved");
    }
}

/// AIMD against a backend that answers 429 to any call started while more than K calls run:
/// the effective limit settles near K although the configured ceiling is much higher.
#[test]
fn the_adaptive_limit_settles_near_a_backend_capacity() {
    for (seed, capacity) in [(11u64, 10u32), (12, 16), (13, 24)] {
        println!("seed {seed}, capacity {capacity}");
        let config = Config::from_input(ConfigInput {
            lanes: Some([("worker".to_owned(), 64.0)].into()),
            ..ConfigInput::default()
        })
        .unwrap();
        let mut c = Controller::new(&config, seed);
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut next = 1u32;
        // Running calls: (finish time, permit, rejected by the backend).
        let mut running: Vec<(u64, Permit, bool)> = Vec::new();
        let mut now = 0u64;
        let end = 30 * 60_000;
        let (mut weighted, mut span) = (0f64, 0f64);
        while now < end {
            while c.waiting() < 64 {
                c.submit(
                    now,
                    Request {
                        task: TaskId(next),
                        agent: "worker",
                        key: None,
                        priority: Priority::Normal,
                        fail_fast: false,
                    },
                )
                .unwrap();
                next += 1;
            }
            for a in c.admit(now) {
                let overloaded = running.len() as u32 >= capacity;
                // Calls take 2–20 s; a rejected one answers 429 within 0.2–1 s.
                let took = if overloaded {
                    rng.u64(100..300)
                } else {
                    rng.u64(500..2_000)
                };
                running.push((now + took, a.permit, overloaded));
            }
            let (i, _) = running.iter().enumerate().min_by_key(|(_, r)| r.0).unwrap();
            let (at, permit, rejected) = running.swap_remove(i);
            let effective = c
                .stats(now)
                .lanes
                .iter()
                .find(|l| l.name == "worker")
                .unwrap()
                .effective;
            if now >= end / 3 {
                weighted += f64::from(effective) * (at - now) as f64;
                span += (at - now) as f64;
            }
            now = at;
            let outcome = if rejected {
                Outcome::Failed(FailureClass::RateLimited)
            } else {
                Outcome::Success
            };
            c.complete(now, permit, outcome);
        }
        let mean = weighted / span;
        println!(
            "capacity {capacity}: time-weighted effective limit over the last two thirds {mean:.2}"
        );
        let k = f64::from(capacity);
        assert!(
            (mean - k).abs() <= 0.2 * k,
            "seed {seed}: mean limit {mean:.2} not within ±20 % of {capacity}"
        );
    }
}
