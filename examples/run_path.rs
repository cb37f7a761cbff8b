#![allow(clippy::unwrap_used, missing_docs)]
use foreman::engine::orchestrator::{Orchestrator, RunRequest};
use foreman::{Config, Priority};
fn main() {
    let mut o = Orchestrator::new(&Config::default(), 1);
    let mut out = [0u32; 64];
    let req = RunRequest {
        lane: "worker",
        key: None,
        priority: Priority::Normal,
        fail_fast: false,
        deadline_ms: None,
    };
    for _ in 0..3 {
        let n = 5_000_000u64;
        let t = std::time::Instant::now();
        for i in 0..n {
            let s = o.run_submit(i, req).unwrap();
            o.drain_run_ready(&mut out);
            o.run_end(i, s, foreman::control::Outcome::Success).unwrap();
            o.drain_run_ready(&mut out);
        }
        println!(
            "{:.1} ns per task",
            t.elapsed().as_nanos() as f64 / n as f64
        );
    }
}
