//! Criterion benchmarks of the MVCC store. Run with `make bench`.
//!
//! - `commit_one_record`: begin, put one task record (64-byte value), commit (journal included).
//! - `snapshot_read`: one `get` through a snapshot over 10k keys.
//! - `journal_append_hash`: encode and hash one 64-byte record onto the chain.
//!   Bytes per stored version are printed once (`bytes_per_version`).
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use foreman::journal::{chain, encode_record, task_key};
use foreman::{Store, TaskId};

fn commit_one_record(c: &mut Criterion) {
    let mut store = Store::new();
    let value = vec![7u8; 64];
    let mut i = 0u32;
    c.bench_function("commit_one_record", |b| {
        b.iter(|| {
            i = (i + 1) % 10_000;
            let mut t = store.begin();
            t.put(task_key(TaskId(i)), value.as_slice());
            black_box(t.commit(&mut store).unwrap());
        });
    });
    // Bytes per stored version, computed from the layout: a version is (seq: u64, value:
    // Option<Rc<[u8]>>) in its key's Vec, and the value lives in an Rc allocation with two
    // counters. A new key adds its own Vec<u8> and the Vec of versions. Allocator slack and the
    // B-tree's node slack are not included; the journal record is counted separately.
    let version = 24 + 16 + value.len();
    let key = 24 + 5 + 24;
    println!(
        "bytes_per_version: {version} for a new version of an existing key, {} for a new key (64-byte value, 5-byte key)",
        version + key
    );
}

fn snapshot_read(c: &mut Criterion) {
    let mut store = Store::new();
    for i in 0..10_000u32 {
        let mut t = store.begin();
        t.put(task_key(TaskId(i)), vec![1u8; 64]);
        t.commit(&mut store).unwrap();
    }
    let snap = store.snapshot();
    let key = task_key(TaskId(5_000));
    c.bench_function("snapshot_read", |b| {
        b.iter(|| black_box(store.get(&snap, black_box(&key))))
    });
}

fn journal_append_hash(c: &mut Criterion) {
    let key = task_key(TaskId(1));
    let value = vec![9u8; 64];
    let mut prev = [0u8; 32];
    let mut seq = 0u64;
    c.bench_function("journal_append_hash", |b| {
        b.iter(|| {
            seq += 1;
            let bytes = encode_record(
                seq,
                std::iter::once((key.as_slice(), Some(value.as_slice()))),
            );
            prev = chain(&prev, &bytes);
            black_box(prev);
        });
    });
}

criterion_group!(
    benches,
    commit_one_record,
    snapshot_read,
    journal_append_hash
);
criterion_main!(benches);
