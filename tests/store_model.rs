//! The store against a `BTreeMap` model: seeded random interleavings of transactions, journal
//! tampering, and replay at random cut points. Every random test prints its seed; rerun one
//! with `FOREMAN_SEED=<seed>`.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};

use foreman::journal::{Head, frames, verify};
use foreman::{Store, Transaction};

type State = BTreeMap<Vec<u8>, Vec<u8>>;

fn seeds(default: &[u64]) -> Vec<u64> {
    match std::env::var("FOREMAN_SEED") {
        Ok(s) => vec![s.parse().expect("FOREMAN_SEED is a number")],
        Err(_) => default.to_vec(),
    }
}

struct Open {
    txn: Transaction,
    snapshot: u64,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    ops_left: u32,
}

/// Runs `count` random transactions interleaved by a seeded scheduler; checks every read
/// against the model at the transaction's snapshot and every commit's verdict against the
/// model's first-committer-wins rule. Returns the store, the model state after each commit,
/// the head after each commit, and (commits, conflicts).
fn random_history(seed: u64, count: usize) -> (Store, Vec<State>, Vec<Head>, (u64, u64)) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut store = Store::new();
    let mut history: Vec<State> = vec![State::new()];
    let mut heads = vec![Head::GENESIS];
    let mut last_write: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut open: Vec<Open> = Vec::new();
    let (mut started, mut commits, mut conflicts) = (0usize, 0u64, 0u64);
    let mut unique = 0u64;
    while started < count || !open.is_empty() {
        if started < count && (open.len() < 2 || (open.len() < 5 && rng.u32(0..3) == 0)) {
            let txn = store.begin();
            let snapshot = txn.snapshot().seq();
            assert_eq!(snapshot, store.last_seq(), "seed {seed}");
            open.push(Open {
                txn,
                snapshot,
                writes: BTreeMap::new(),
                ops_left: rng.u32(2..=6),
            });
            started += 1;
            continue;
        }
        let i = rng.usize(0..open.len());
        let o = &mut open[i];
        if o.ops_left > 0 {
            o.ops_left -= 1;
            let key = format!("k{}", rng.u32(0..5)).into_bytes();
            let model_read = |o: &Open, key: &Vec<u8>| match o.writes.get(key) {
                Some(own) => own.clone(),
                None => history[o.snapshot as usize].get(key).cloned(),
            };
            match rng.u32(0..4) {
                0 => {
                    let got = o.txn.get(&store, &key).map(|v| v.to_vec());
                    assert_eq!(
                        got,
                        model_read(o, &key),
                        "seed {seed}: read at snapshot {}",
                        o.snapshot
                    );
                }
                1 => {
                    unique += 1;
                    let value = format!("w{unique}").into_bytes();
                    o.txn.put(key.clone(), value.clone());
                    o.writes.insert(key, Some(value));
                }
                2 => {
                    // List append: read, then write the list with a unique element added.
                    let got = o.txn.get(&store, &key).map(|v| v.to_vec());
                    assert_eq!(got, model_read(o, &key), "seed {seed}: read before append");
                    unique += 1;
                    let mut value = got.unwrap_or_default();
                    value.extend_from_slice(format!(",a{unique}").as_bytes());
                    o.txn.put(key.clone(), value.clone());
                    o.writes.insert(key, Some(value));
                }
                _ => {
                    o.txn.delete(key.clone());
                    o.writes.insert(key, None);
                }
            }
            continue;
        }
        let o = open.swap_remove(i);
        let should_conflict = o
            .writes
            .keys()
            .any(|k| last_write.get(k).is_some_and(|&s| s > o.snapshot));
        let read_only = o.writes.is_empty();
        match o.txn.commit(&mut store) {
            Ok(seq) if read_only => assert_eq!(seq, o.snapshot, "seed {seed}"),
            Ok(seq) => {
                assert!(
                    !should_conflict,
                    "seed {seed}: missed conflict at commit {seq}"
                );
                assert_eq!(seq as usize, history.len(), "seed {seed}: commit order");
                let mut next = history.last().unwrap().clone();
                for (k, v) in o.writes {
                    last_write.insert(k.clone(), seq);
                    match v {
                        Some(v) => next.insert(k, v),
                        None => next.remove(&k),
                    };
                }
                history.push(next);
                heads.push(store.journal().head());
                commits += 1;
            }
            Err(e) => {
                assert_eq!(e.code(), "CONFLICT", "seed {seed}");
                assert!(should_conflict, "seed {seed}: false abort");
                conflicts += 1;
            }
        }
    }
    (store, history, heads, (commits, conflicts))
}

fn state_of(store: &Store) -> State {
    let snap = store.snapshot();
    store
        .scan(&snap, b"")
        .into_iter()
        .map(|(k, v)| (k, v.to_vec()))
        .collect()
}

#[test]
fn a_hundred_thousand_random_transactions_match_the_model() {
    for seed in seeds(&[0xC0FFEE]) {
        println!("seed {seed}");
        let (mut store, history, _, (commits, conflicts)) = random_history(seed, 100_000);
        println!("seed {seed}: {commits} commits, {conflicts} conflicts");
        assert!(
            commits > 10_000 && conflicts > 1_000,
            "seed {seed}: the run exercised both outcomes"
        );
        assert_eq!(state_of(&store), *history.last().unwrap());
        store.gc();
        assert!(
            store.version_count() <= 5,
            "seed {seed}: after gc each key has one version"
        );
    }
}

/// Frames of an export, to tamper with whole records.
fn split(export: &[u8]) -> Vec<Vec<u8>> {
    frames(export)
        .map(|frame| {
            let (record, hash) = frame.unwrap();
            [&(record.len() as u32).to_be_bytes()[..], record, &hash].concat()
        })
        .collect()
}

#[test]
fn ten_thousand_random_tamperings_are_all_detected() {
    for seed in seeds(&[42]) {
        println!("seed {seed}");
        let (store, _, _, _) = random_history(seed, 200);
        let export = store.journal().export(1);
        let head = store.journal().head();
        assert!(verify(&export, Head::GENESIS, head).is_ok());
        let records = split(&export);
        assert!(records.len() >= 20, "seed {seed}");
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut kinds = [0u32; 4];
        for n in 0..10_000 {
            let kind = rng.usize(0..4);
            kinds[kind] += 1;
            let tampered: Vec<u8> = match kind {
                0 => {
                    let mut t = export.clone();
                    let at = rng.usize(0..t.len());
                    t[at] ^= 1 << rng.u32(0..8);
                    t
                }
                1 => {
                    let mut r = records.clone();
                    r.remove(rng.usize(0..r.len()));
                    r.concat()
                }
                2 => {
                    let mut r = records.clone();
                    let a = rng.usize(0..r.len());
                    let b = (a + rng.usize(1..r.len())) % r.len();
                    r.swap(a, b);
                    r.concat()
                }
                _ => {
                    let keep = rng.usize(0..records.len());
                    records[..keep].concat()
                }
            };
            assert!(
                verify(&tampered, Head::GENESIS, head).is_err(),
                "seed {seed}: tampering {n} (kind {kind}) not detected"
            );
        }
        println!(
            "seed {seed}: detected 10000 of 10000 (bit flips, deletions, swaps, truncations: {kinds:?})"
        );
    }
}

#[test]
fn replay_at_random_cut_points_rebuilds_the_committed_state() {
    for seed in seeds(&[9001]) {
        println!("seed {seed}");
        let (store, history, heads, _) = random_history(seed, 2_000);
        let records = split(&store.journal().export(1));
        let mut rng = fastrand::Rng::with_seed(seed);
        for _ in 0..200 {
            let cut = rng.usize(0..=records.len());
            let prefix = records[..cut].concat();
            let replayed = Store::replay(&prefix, heads[cut]).unwrap();
            assert_eq!(state_of(&replayed), history[cut], "seed {seed}: cut {cut}");
            assert_eq!(
                replayed.journal().export(1),
                prefix,
                "seed {seed}: byte-equal export at cut {cut}"
            );
        }
    }
}
