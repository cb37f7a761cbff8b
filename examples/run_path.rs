//! The engine's work on the run path (`run(fn)` without a parent), for an instruction counter:
//! `N` run tasks submitted and ended, either admitted at once (`direct`: the path below the
//! limit) or through a full lane (`queued`: 8 running, 8 waiting; each end admits a waiter).
//! Instructions per task = (count at N − count at 0) / N, e.g. with valgrind:
//!
//! ```text
//! cargo build --release --example run_path
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/run_path 100000 direct
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/run_path 0 direct
//! ```
//! (callgrind prints "Collected : <instructions>"). The same file in an earlier checkout
//! measures that build: a count moves only with the code, not with the machine's load.
#![allow(clippy::unwrap_used, missing_docs)]

use foreman::{Config, Engine, Outcome, Priority, RunId, RunRequest};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let queued = args.next().as_deref() == Some("queued");
    let mut o = Engine::new(&Config::default(), 1);
    let request = RunRequest {
        lane: o.run_lane("worker"),
        key: None,
        priority: Priority::Normal,
        fail_fast: false,
        deadline_ms: None,
    };
    let mut ready = [0u32; 64];
    let mut running = std::collections::VecDeque::new();
    if queued {
        for _ in 0..16 {
            o.run_submit(1, request).unwrap();
        }
        let k = o.drain_run_ready(&mut ready);
        running.extend(ready[..k].iter().map(|&r| RunId::from_raw(r)));
    }
    for _ in 0..n {
        if queued {
            let slot = running.pop_front().unwrap();
            o.run_end(2, slot, Outcome::Success).unwrap();
            let k = o.drain_run_ready(&mut ready);
            running.extend(ready[..k].iter().map(|&r| RunId::from_raw(r)));
            o.run_submit(2, request).unwrap();
        } else {
            let slot = o.run_submit(2, request).unwrap();
            assert_eq!(o.drain_run_ready(&mut ready), 1);
            o.run_end(2, slot, Outcome::Success).unwrap();
        }
    }
    println!(
        "{} runs waiting, {} running",
        o.runs().counts().0,
        o.runs().counts().1
    );
}
