//! Hermitage's anomalies, one test each, as scripts: `tN begin`, `tN get k`, `tN put k=v`,
//! `tN del k`, `tN scan p`, `tN commit`, `tN rollback`. `check` runs a script and compares the
//! lines it printed (reads and commit results) with the expectation.
use std::collections::HashMap;

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn run(script: &str) -> Vec<String> {
    let mut store = Store::new();
    let mut txns: HashMap<String, Transaction> = HashMap::new();
    let mut out = Vec::new();
    for step in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let mut words = step.splitn(3, ' ');
        let (t, op, arg) = (
            words.next().unwrap(),
            words.next().unwrap(),
            words.next().unwrap_or(""),
        );
        let text = |v: Option<Rc<[u8]>>| {
            v.map_or("none".to_owned(), |v| {
                String::from_utf8_lossy(&v).into_owned()
            })
        };
        match op {
            "begin" => {
                txns.insert(t.to_owned(), store.begin());
            }
            "get" => out.push(format!(
                "{t}: {arg} = {}",
                text(txns[t].get(&store, arg.as_bytes()))
            )),
            "scan" => {
                let items: Vec<String> = txns[t]
                    .scan(&store, arg.as_bytes())
                    .into_iter()
                    .map(|(k, v)| format!("{}={}", String::from_utf8_lossy(&k), text(Some(v))))
                    .collect();
                out.push(format!("{t}: {arg}* = [{}]", items.join(" ")));
            }
            "put" => {
                let (k, v) = arg.split_once('=').unwrap();
                txns.get_mut(t).unwrap().put(k.as_bytes(), v.as_bytes());
            }
            "del" => txns.get_mut(t).unwrap().delete(arg.as_bytes()),
            "commit" => {
                let result = txns.remove(t).unwrap().commit(&mut store);
                out.push(format!(
                    "{t}: {}",
                    result.map_or_else(|e| e.code().to_lowercase(), |_| "ok".into())
                ));
            }
            "rollback" => txns.remove(t).unwrap().rollback(),
            other => panic!("unknown op {other}"),
        }
    }
    out
}

fn check(script: &str, expected: &str) {
    let expected: Vec<&str> = expected
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(run(script), expected, "script: {script}");
}

const SETUP: &str = "t0 begin; t0 put x=10; t0 put y=20; t0 commit;";

#[test]
fn reader_does_not_see_uncommitted_write() {
    check("t1 begin; t1 put a=1; t2 begin; t2 get a", "t2: a = none");
}

#[test]
fn g0_dirty_write_is_prevented() {
    // Both write x and y; the second committer conflicts, so the writes never interleave.
    check(
        &format!(
            "{SETUP} t1 begin; t2 begin; t1 put x=11; t2 put x=12; t1 put y=21; t1 commit; t2 put y=22; t2 commit; t3 begin; t3 get x; t3 get y"
        ),
        "t0: ok; t1: ok; t2: conflict; t3: x = 11; t3: y = 21",
    );
}

#[test]
fn g1a_aborted_read_is_prevented() {
    check(
        &format!(
            "{SETUP} t1 begin; t2 begin; t1 put x=101; t2 get x; t1 rollback; t2 get x; t2 commit"
        ),
        "t0: ok; t2: x = 10; t2: x = 10; t2: ok",
    );
}

#[test]
fn g1b_intermediate_read_is_prevented() {
    check(
        &format!(
            "{SETUP} t1 begin; t2 begin; t1 put x=101; t2 get x; t1 put x=11; t1 commit; t2 get x; t2 commit"
        ),
        "t0: ok; t2: x = 10; t1: ok; t2: x = 10; t2: ok",
    );
}

#[test]
fn g1c_circular_information_flow_is_prevented() {
    check(
        &format!(
            "{SETUP} t1 begin; t2 begin; t1 put x=11; t2 put y=22; t1 get y; t2 get x; t1 commit; t2 commit"
        ),
        "t0: ok; t1: y = 20; t2: x = 10; t1: ok; t2: ok",
    );
}

#[test]
fn p4_lost_update_is_prevented() {
    // Both read x and write x + 1: the second committer conflicts instead of losing the first.
    check(
        &format!(
            "{SETUP} t1 begin; t2 begin; t1 get x; t2 get x; t1 put x=11; t2 put x=11; t1 commit; t2 commit"
        ),
        "t0: ok; t1: x = 10; t2: x = 10; t1: ok; t2: conflict",
    );
}

#[test]
fn g_single_read_skew_is_prevented() {
    check(
        &format!(
            "{SETUP} t1 begin; t2 begin; t1 get x; t2 put x=12; t2 put y=18; t2 commit; t1 get y; t1 scan "
        ),
        "t0: ok; t1: x = 10; t2: ok; t1: y = 20; t1: * = [x=10 y=20]",
    );
}

#[test]
fn write_skew_is_allowed_by_snapshot_isolation() {
    // Invariant x + y ≥ 0 ... each checks it and moves 30 out of a different key: both commit.
    check(
        &format!(
            "{SETUP} t1 begin; t2 begin; t1 get x; t1 get y; t2 get x; t2 get y; t1 put x=-20; t2 put y=-20; t1 commit; t2 commit"
        ),
        "t0: ok; t1: x = 10; t1: y = 20; t2: x = 10; t2: y = 20; t1: ok; t2: ok",
    );
}

#[test]
fn write_skew_is_prevented_by_a_guard_record() {
    // The same, but each also writes the shared guard key: the second committer conflicts.
    check(
        &format!(
            "{SETUP} t1 begin; t2 begin; t1 get x; t1 get y; t2 get x; t2 get y; t1 put x=-20; t1 put guard=t1; t2 put y=-20; t2 put guard=t2; t1 commit; t2 commit"
        ),
        "t0: ok; t1: x = 10; t1: y = 20; t2: x = 10; t2: y = 20; t1: ok; t2: conflict",
    );
}

#[test]
fn a_transaction_reads_its_own_writes_and_deletes() {
    check(
        &format!("{SETUP} t1 begin; t1 put z=1; t1 del x; t1 get z; t1 get x; t1 scan "),
        "t0: ok; t1: z = 1; t1: x = none; t1: * = [y=20 z=1]",
    );
}

#[test]
fn a_conflict_changes_nothing_and_writes_no_record() {
    let mut store = Store::new();
    let mut a = store.begin();
    let mut b = store.begin();
    a.put(b"k".to_vec(), &b"a"[..]);
    b.put(b"k".to_vec(), &b"b"[..]);
    b.put(b"other".to_vec(), &b"b"[..]);
    assert_eq!(a.commit(&mut store), Ok(1));
    assert_eq!(b.commit(&mut store).unwrap_err().code(), "CONFLICT");
    assert_eq!(store.journal().head().seq, 1);
    assert_eq!(store.get(&store.snapshot(), b"other"), None);
}

#[test]
fn gc_keeps_what_live_snapshots_see_and_reclaims_the_rest() {
    let mut store = Store::new();
    let put = |store: &mut Store, v: &str| {
        let mut t = store.begin();
        t.put(b"k".to_vec(), v.as_bytes());
        t.commit(store).unwrap();
    };
    put(&mut store, "1");
    let old = store.snapshot();
    for v in 2..=10 {
        put(&mut store, &v.to_string());
    }
    assert_eq!(
        &*store.get(&old, b"k").unwrap(),
        b"1",
        "the old snapshot still sees its version"
    );
    assert_eq!(store.version_count(), 10);
    drop(old);
    store.gc();
    assert_eq!(store.version_count(), 1, "only the newest version is left");
    let mut t = store.begin();
    t.delete(b"k".to_vec());
    t.commit(&mut store).unwrap();
    assert_eq!(store.key_count(), 0, "a tombstone nobody needs is dropped");
}

#[test]
fn record_encoding_is_canonical_and_round_trips() {
    let changes: Vec<(&[u8], Option<&[u8]>)> = vec![(b"a", Some(b"1")), (b"b", None)];
    let bytes = encode_record(7, changes.into_iter());
    assert_eq!(
        bytes,
        [
            &7u64.to_be_bytes()[..],
            &2u32.to_be_bytes(),
            &1u32.to_be_bytes(),
            b"a",
            &[1],
            &1u32.to_be_bytes(),
            b"1",
            &1u32.to_be_bytes(),
            b"b",
            &[0]
        ]
        .concat()
    );
    let decoded = decode_record(&bytes).unwrap();
    assert_eq!(decoded.seq, 7);
    assert_eq!(decoded.checkpoint, None);
    assert_eq!(
        decoded.changes,
        vec![(b"a".to_vec(), Some(b"1".to_vec())), (b"b".to_vec(), None)]
    );
    let unsorted = encode_record(1, vec![(&b"b"[..], None), (&b"a"[..], None)].into_iter());
    assert!(
        decode_record(&unsorted).is_err(),
        "a non-canonical order is refused"
    );
}

#[test]
fn replay_rebuilds_a_byte_equal_journal_and_the_same_state() {
    let mut store = Store::new();
    for i in 0..20u32 {
        let mut t = store.begin();
        t.put(task_key(TaskId(i % 5)), format!("v{i}").into_bytes());
        if i % 7 == 0 {
            t.delete(meta_key("x"));
        } else {
            t.put(meta_key("x"), i.to_be_bytes().to_vec());
        }
        t.commit(&mut store).unwrap();
    }
    let export = store.journal().export(1);
    let replayed = Store::replay(&export, store.journal().head()).unwrap();
    assert_eq!(replayed.journal().export(1), export);
    let (a, b) = (store.snapshot(), replayed.snapshot());
    assert_eq!(store.scan(&a, b""), replayed.scan(&b, b""));
}

#[test]
fn forgetting_persisted_records_keeps_the_head_and_later_exports() {
    let mut store = Store::new();
    for i in 0..5u8 {
        let mut t = store.begin();
        t.put(vec![i], vec![i]);
        t.commit(&mut store).unwrap();
    }
    let head = store.journal().head();
    let tail = store.journal().export(4);
    store.forget_journal_through(3);
    assert_eq!(store.journal().head(), head);
    assert_eq!(store.journal().export(0), tail);
    assert_eq!(store.journal().anchor().seq, 3);
    assert!(verify(&tail, store.journal().anchor(), head).is_ok());
}

fn commit_put(store: &mut Store, key: &[u8], value: &[u8]) {
    let mut t = store.begin();
    t.put(key.to_vec(), value.to_vec());
    t.commit(store).unwrap();
}

fn commit_delete(store: &mut Store, key: &[u8]) {
    let mut t = store.begin();
    t.delete(key.to_vec());
    t.commit(store).unwrap();
}

fn state(store: &Store) -> Vec<(Vec<u8>, Rc<[u8]>)> {
    let snap = store.snapshot();
    store.scan(&snap, b"")
}

#[test]
fn a_checkpoint_alone_rebuilds_the_state_and_the_tail_follows_it() {
    let mut store = Store::new();
    for i in 0..10u8 {
        commit_put(&mut store, &[i % 4], &[i]);
    }
    commit_delete(&mut store, &[2]);
    let before = store.journal().export(0);
    let cp = store.checkpoint();
    assert_eq!(cp, 12);
    assert_eq!(
        store.journal().len(),
        1,
        "the records before it are forgotten"
    );
    commit_put(&mut store, &[9], b"after");
    commit_delete(&mut store, &[0]);
    let head = store.journal().head();
    let export = store.journal().export(0);

    let replayed = Store::replay(&export, head).unwrap();
    assert_eq!(state(&replayed), state(&store));
    assert_eq!(replayed.journal().export(0), export, "byte-equal");
    assert_eq!(replayed.journal().head(), head);
    assert_eq!(replayed.last_seq(), store.last_seq());

    // The whole history, checkpoint included, verifies from genesis and replays the same.
    let mut whole = before.clone();
    whole.extend_from_slice(&export);
    assert!(verify(&whole, Head::GENESIS, head).is_ok());
    assert_eq!(state(&Store::replay(&whole, head).unwrap()), state(&store));

    // Commits after a replayed checkpoint carry on the same chain.
    let mut again = Store::replay(&export, head).unwrap();
    commit_put(&mut again, &[7], b"x");
    commit_put(&mut store, &[7], b"x");
    assert_eq!(again.journal().head(), store.journal().head());
}

#[test]
fn a_checkpoint_deletes_what_it_does_not_put() {
    // Keys deleted before a mid-journal checkpoint stay deleted; a checkpoint's content is the
    // whole state even when replayed on top of earlier records.
    let mut store = Store::new();
    commit_put(&mut store, b"a", b"1");
    commit_put(&mut store, b"b", b"2");
    commit_delete(&mut store, b"a");
    let before = store.journal().export(0);
    store.checkpoint();
    commit_put(&mut store, b"c", b"3");
    let mut whole = before;
    whole.extend_from_slice(&store.journal().export(0));
    let replayed = Store::replay(&whole, store.journal().head()).unwrap();
    assert_eq!(state(&replayed), state(&store));
    assert_eq!(state(&replayed).len(), 2);
}

#[test]
fn tampering_with_a_checkpoint_is_detected() {
    let mut store = Store::new();
    for i in 0..6u8 {
        commit_put(&mut store, &[i], &[i; 3]);
    }
    store.checkpoint();
    commit_put(&mut store, b"z", b"tail");
    let head = store.journal().head();
    let export = store.journal().export(0);
    assert!(Store::replay(&export, head).is_ok());
    // frame = len:4 | record | hash:32; record = seq:8 count:4 | marker: key_len:4 op:1 len:4 hash:32 | puts
    let marker_hash = 4 + 8 + 4 + 4 + 1 + 4;
    let first_value = marker_hash + 32 + 4 + 1 + 1 + 4;
    for (at, what) in [
        (marker_hash, "the carried hash"),
        (first_value, "a value"),
        (4 + 7, "the seq"),
    ] {
        let mut bad = export.clone();
        bad[at] ^= 1;
        let err = Store::replay(&bad, head).unwrap_err();
        assert_eq!(err.code(), "JOURNAL_INVALID", "{what}");
    }
    // Dropping the checkpoint leaves a tail that does not stand alone.
    let frames: Vec<(&[u8], Hash)> = frames(&export).collect::<Result<_, _>>().unwrap();
    let tail: Vec<u8> = [
        &(frames[1].0.len() as u32).to_be_bytes()[..],
        frames[1].0,
        &frames[1].1,
    ]
    .concat();
    assert!(Store::replay(&tail, head).is_err());
}

#[test]
fn a_checkpoint_marker_out_of_place_is_refused() {
    let prev = [7u8; 32];
    let cp = encode_checkpoint(3, &prev, vec![(&b"k"[..], &b"v"[..])].into_iter());
    let decoded = decode_record(&cp).unwrap();
    assert_eq!(decoded.checkpoint, Some(prev));
    assert_eq!(decoded.changes, vec![(b"k".to_vec(), Some(b"v".to_vec()))]);
    // A marker after another change, or with a short hash, is not canonical.
    let mut w = crate::codec::Writer::with_capacity(64);
    w.u64(3);
    w.u32(2);
    w.chunk(b"a");
    w.u8(1);
    w.chunk(b"1");
    w.chunk(b"");
    w.u8(2);
    w.chunk(&prev);
    assert!(decode_record(&w.0).is_err());
    let mut w = crate::codec::Writer::with_capacity(64);
    w.u64(3);
    w.u32(1);
    w.chunk(b"");
    w.u8(2);
    w.chunk(&prev[..31]);
    assert!(decode_record(&w.0).is_err());
}
