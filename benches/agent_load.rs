//! The simulated agent load: 1,000 tasks with lognormal turn times (median 20 s, σ 0.8) at
//! limit 8, against the simulated OpenCode server (gap before `busy` up to 3 s, session
//! creation latency, prewarming on). Prints, per seed, the makespan against its lower bound —
//! the larger of (total turn time / 8) and the longest turn, a turn being prompt sent → settled
//! — and slot utilization while a backlog exists; then the median ratio. Run with `make bench`.
//! This is a simulation on a fake clock, so the figures are exact and repeatable per seed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;

use foreman::{
    Config, Delivery, Engine, FakeHost, Host, HostOp, PromptProfile, SessionId, TaskSpec, TaskState,
};

const TASKS: usize = 1_000;
const LIMIT: u64 = 8;

struct Run {
    ratio: f64,
    utilization: f64,
    makespan_s: f64,
    bound_s: f64,
}

fn run(seed: u64) -> Run {
    let host = FakeHost::new(seed);
    host.set_prompt_profile(
        "*",
        PromptProfile {
            median_ms: 20_000,
            sigma: 0.8,
            gap_max_ms: 3_000,
            ..PromptProfile::default()
        },
    );
    let mut o = Engine::new(&Config::default(), seed);
    let mut prompted: HashMap<SessionId, u64> = HashMap::new();
    let start = host.now_ms().unwrap();
    let ids: Vec<_> = (0..TASKS)
        .map(|_| o.submit(start, TaskSpec::new("worker", "go")).unwrap())
        .collect();
    let (mut busy, mut backlog) = (0u64, 0u64);
    loop {
        for r in o.take_requests() {
            if let HostOp::Prompt { session, .. } = &r.op {
                prompted.insert(session.clone(), host.now_ms().unwrap());
            }
            host.start(r);
        }
        if o.open_tasks() == 0 {
            break;
        }
        let now = host.now_ms().unwrap();
        let waiting = o.controller().waiting() > 0;
        let in_use: u32 = o
            .controller()
            .stats(now)
            .lanes
            .iter()
            .map(|l| l.in_use)
            .sum();
        let next = [host.next_due(), o.next_deadline(now)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + 1)
            .max(now);
        for d in host.advance(next - now) {
            let t = host.now_ms().unwrap();
            match d {
                Delivery::Answer(call, outcome) => o.on_answer(t, call, outcome).unwrap(),
                Delivery::Event(e) => o.on_event(t, e).unwrap(),
            }
            for r in o.take_requests() {
                if let HostOp::Prompt { session, .. } = &r.op {
                    prompted.insert(session.clone(), t);
                }
                host.start(r);
            }
        }
        let t = host.now_ms().unwrap();
        o.tick(t).unwrap();
        if waiting {
            backlog += (t - now) * LIMIT;
            busy += (t - now) * u64::from(in_use);
        }
    }
    let mut turns = Vec::with_capacity(TASKS);
    let mut end = 0;
    for id in ids {
        let r = o.tasks().get(id).unwrap();
        let TaskState::Succeeded { session, .. } = &r.state else {
            panic!("task {id:?} ended {:?}", r.state);
        };
        turns.push(r.updated_ms - prompted[session]);
        end = end.max(r.updated_ms);
    }
    let bound =
        (turns.iter().sum::<u64>() as f64 / LIMIT as f64).max(*turns.iter().max().unwrap() as f64);
    let makespan = (end - start) as f64;
    Run {
        ratio: makespan / bound,
        utilization: busy as f64 / backlog.max(1) as f64,
        makespan_s: makespan / 1e3,
        bound_s: bound / 1e3,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (a filter) is ignored.
    println!("simulated agent load: {TASKS} lognormal tasks (median 20 s, σ 0.8), limit {LIMIT}");
    println!("seed  makespan s  lower bound s  ratio   utilization");
    let mut ratios = Vec::new();
    for seed in 1..=9 {
        let r = run(seed);
        println!(
            "{seed:>4}  {:>10.1}  {:>13.1}  {:>6.4}  {:>11.4}",
            r.makespan_s, r.bound_s, r.ratio, r.utilization
        );
        ratios.push(r.ratio);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    println!(
        "median makespan / lower bound {median:.4} (goal ≤ 1.03); worst {:.4}",
        ratios[ratios.len() - 1]
    );
}
