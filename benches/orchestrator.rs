//! Criterion benchmark of the orchestrator's own work per task, with a host that answers
//! everything at once (no latency, no simulator): submit → admit → create session → prompt →
//! busy → idle → last message → settle, journal included. Run with `make bench`.
#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use foreman::Config;
use foreman::engine::orchestrator::Orchestrator;
use foreman::engine::task::TaskSpec;
use foreman::host::{AssistantMessage, HostEvent, HostOp, HostOutcome, HostReply, SessionId};

/// Runs `n` tasks to completion; returns how many settled.
fn run(n: u32) -> usize {
    let mut o = Orchestrator::new(&Config::default(), 1);
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

criterion_group!(benches, engine_work_per_task);
criterion_main!(benches);
