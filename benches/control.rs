//! Criterion benchmarks of the concurrency controller. Run with `make bench`.
//!
//! - `acquire_release`: submit one task, admit it, complete it (lane with free slots).
//! - `breaker_check`: one breaker verdict (closed breaker).
//! - `enqueue_dequeue/{10k,100k}`: with N tasks already queued behind a full lane, submit one
//!   more and let one finish so one waiter is admitted — the per-task cost at that backlog.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use foreman::{Breaker, BreakerConfig, Config, Controller, Outcome, Priority, Request, TaskId};

fn request(id: u32, priority: Priority) -> Request<'static> {
    Request {
        task: TaskId(id),
        agent: "worker",
        key: Some("openai/gpt"),
        priority,
        fail_fast: false,
    }
}

fn acquire_release(c: &mut Criterion) {
    let mut ctl = Controller::new(&Config::default(), 1);
    let mut id = 0u32;
    c.bench_function("acquire_release", |b| {
        b.iter(|| {
            id = id.wrapping_add(1);
            ctl.submit(0, request(id, Priority::Normal)).unwrap();
            let mut admitted = ctl.admit(0);
            let a = admitted.pop().unwrap();
            ctl.complete(0, a.permit, Outcome::Success);
        });
    });
}

fn breaker_check(c: &mut Criterion) {
    let breaker = Breaker::new(BreakerConfig::default());
    c.bench_function("breaker_check", |b| {
        b.iter(|| black_box(breaker.check(black_box(12_345))))
    });
}

fn enqueue_dequeue(c: &mut Criterion) {
    let mut group = c.benchmark_group("enqueue_dequeue");
    for backlog in [10_000u32, 100_000] {
        let mut ctl = Controller::new(&Config::default(), 1);
        let levels = Priority::ALL;
        let mut running = Vec::new();
        for id in 0..backlog {
            ctl.submit(0, request(id, levels[(id % 3) as usize]))
                .unwrap();
            running.extend(ctl.admit(0));
        }
        let mut id = backlog;
        group.bench_with_input(BenchmarkId::from_parameter(backlog), &backlog, |b, _| {
            b.iter(|| {
                id += 1;
                ctl.submit(0, request(id, levels[(id % 3) as usize]))
                    .unwrap();
                let done = running.remove(0);
                ctl.complete(0, done.permit, Outcome::Success);
                running.extend(ctl.admit(0));
            });
        });
    }
    group.finish();
}

criterion_group!(benches, acquire_release, breaker_check, enqueue_dequeue);
criterion_main!(benches);
