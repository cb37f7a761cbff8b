//! Criterion benchmark of the engine's own work per task, with a host that answers
//! everything at once (no latency, no simulator): submit → admit → create session → prompt →
//! busy → idle → last message → settle, journal included. Run with `make bench`.
#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use foreman::{
    AssistantMessage, Config, Engine, HostEvent, HostOp, HostOutcome, HostReply, Outcome, Priority,
    RunId, RunRequest, SessionId, TaskSpec,
};

/// Runs `n` tasks to completion; returns how many settled.
fn run(n: u32) -> usize {
    let mut o = Engine::new(&Config::default(), 1);
    let mut now = 1;
    let mut sessions = 0u32;
    for _ in 0..n {
        o.submit(now, TaskSpec::new("worker", "go")).unwrap();
    }
    loop {
        let requests = o.take_requests();
        if requests.is_empty() {
            break;
        }
        now += 1;
        for r in requests {
            match r.op {
                HostOp::CreateSession { .. } => {
                    sessions += 1;
                    let id = SessionId(format!("s{sessions}"));
                    o.on_answer(now, r.call, HostOutcome::Ok(HostReply::SessionCreated(id)))
                        .unwrap();
                }
                HostOp::Prompt { session, .. } => {
                    o.on_answer(now, r.call, HostOutcome::Ok(HostReply::Done))
                        .unwrap();
                    o.on_event(now, HostEvent::Busy(session.clone())).unwrap();
                    o.on_event(now, HostEvent::Idle(session)).unwrap();
                }
                HostOp::LastAssistantMessage { .. } => {
                    let m = AssistantMessage {
                        created_ms: now - 1,
                        created_wall_ms: now - 1,
                        completed_ms: Some(now),
                        finish: Some("stop".into()),
                        error: None,
                        text: String::new(),
                    };
                    o.on_answer(now, r.call, HostOutcome::Ok(HostReply::Message(Some(m))))
                        .unwrap();
                }
                _ => o
                    .on_answer(now, r.call, HostOutcome::Ok(HostReply::Done))
                    .unwrap(),
            }
        }
    }
    n as usize - o.open_tasks()
}

fn engine_work_per_task(c: &mut Criterion) {
    assert_eq!(run(1_000), 1_000);
    let mut group = c.benchmark_group("engine_work");
    group.sample_size(10);
    group.bench_function("1000_tasks", |b| b.iter(|| run(1_000)));
    group.finish();
}

/// An engine with the default config, and a plain NORMAL run task for its `worker` lane.
fn run_setup() -> (Engine, RunRequest) {
    let o = Engine::new(&Config::default(), 1);
    let request = RunRequest {
        lane: o.run_lane("worker"),
        key: None,
        priority: Priority::Normal,
        fail_fast: false,
        deadline_ms: None,
    };
    (o, request)
}

/// A run task's engine work (the path `run(fn)` takes, no journal): in steady state at limit 8
/// with 8 more waiting, each iteration ends one running task (admitting a waiter) and submits
/// one, so it measures one task's submit + end.
fn run_task_work(c: &mut Criterion) {
    let (mut o, request) = run_setup();
    let mut ready = [0u32; 64];
    let mut running = std::collections::VecDeque::new();
    for _ in 0..16 {
        o.run_submit(1, request).unwrap();
    }
    let n = o.drain_run_ready(&mut ready);
    running.extend(ready[..n].iter().map(|&r| RunId::from_raw(r)));
    assert_eq!(running.len(), 8);
    c.bench_function("run_task/submit_and_end", |b| {
        b.iter(|| {
            let slot = running.pop_front().unwrap();
            o.run_end(2, slot, Outcome::Success).unwrap();
            let n = o.drain_run_ready(&mut ready);
            running.extend(ready[..n].iter().map(|&r| RunId::from_raw(r)));
            o.run_submit(2, request).unwrap();
        })
    });
}

/// A run task admitted at once (its lane has room, nobody waits: the path `run(fn)` takes below
/// the limit), then ended: one task's submit + end with no queueing.
fn run_task_direct(c: &mut Criterion) {
    let (mut o, request) = run_setup();
    let mut ready = [0u32; 64];
    c.bench_function("run_task/admitted_at_once", |b| {
        b.iter(|| {
            let slot = o.run_submit(2, request).unwrap();
            assert_eq!(o.drain_run_ready(&mut ready), 1);
            o.run_end(2, slot, Outcome::Success).unwrap();
        })
    });
}

criterion_group!(
    benches,
    engine_work_per_task,
    run_task_work,
    run_task_direct
);
criterion_main!(benches);
