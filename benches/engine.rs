//! Native benchmarks of the engine core. Run with `make bench`.
//!
//! `create_session_round_trip`: one `createSession` request queued, taken and resolved — the
//! engine's own work per host call, without any host latency.
#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use foreman::{Config, CreateSession, Engine, HostOutcome, HostReply, MemoryReading, SessionId};
use std::hint::black_box;

fn create_session_round_trip(c: &mut Criterion) {
    c.bench_function("create_session_round_trip", |b| {
        let mut engine = Engine::new(Config::default());
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            let request = CreateSession {
                agent: "worker".into(),
                parent: None,
                title: Some("t".into()),
            };
            let call = engine.create_session(n, request).unwrap();
            let requests = engine.take_requests();
            black_box(&requests);
            let reply = HostOutcome::Ok(HostReply::SessionCreated(SessionId(format!("s{n}"))));
            black_box(engine.resolve(n, call, reply).unwrap());
        });
    });
}

fn stats_view(c: &mut Criterion) {
    let engine = Engine::new(Config::default());
    let memory = MemoryReading::new(1 << 20, 1 << 30).unwrap();
    c.bench_function("stats_view", |b| {
        b.iter(|| black_box(engine.stats(1, memory).unwrap()))
    });
}

criterion_group!(benches, create_session_round_trip, stats_view);
criterion_main!(benches);
