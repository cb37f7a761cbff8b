//! Prints a journal made by random transactions, for verifiers outside this crate:
//! `cargo run --example journal_export -- <seed> <transactions> [<checkpoint after>]` prints
//! one JSON line
//! `{"export": "<hex>", "head": {"seq": N, "hash": "<hex>"}, "state": {"<hex key>": "<hex value>"}}`.
#![allow(clippy::unwrap_used)]

use std::fmt::Write;

use foreman::Store;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let count: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    // With a checkpoint, the export starts at it (the records before are forgotten).
    let checkpoint_after: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut store = Store::new();
    for i in 0..count {
        let mut t = store.begin();
        for _ in 0..rng.u32(1..=4) {
            let key = format!("t{}", rng.u32(0..20)).into_bytes();
            if rng.u32(0..5) == 0 {
                t.delete(key);
            } else {
                t.put(key, format!("value {i} {}", rng.u32(..)).into_bytes());
            }
        }
        t.commit(&mut store).unwrap();
        if checkpoint_after > 0 && i + 1 == checkpoint_after {
            store.checkpoint();
        }
    }
    let head = store.journal().head();
    let snap = store.snapshot();
    let state: Vec<String> = store
        .scan(&snap, b"")
        .iter()
        .map(|(k, v)| format!("\"{}\": \"{}\"", hex(k), hex(v)))
        .collect();
    println!(
        "{{\"export\": \"{}\", \"head\": {{\"seq\": {}, \"hash\": \"{}\"}}, \"state\": {{{}}}}}",
        hex(&store.journal().export(0)),
        head.seq,
        hex(&head.hash),
        state.join(", ")
    );
}
