use super::*;
use crate::config::{DEFAULT_MEMORY_BUDGET, RetentionConfig};
use crate::engine::task::TaskSpec;
use crate::host::{FailureClass, SessionId};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn spec() -> TaskSpec {
    TaskSpec::new("worker", "go")
}

fn s(id: &str) -> SessionId {
    SessionId(id.into())
}

/// Walks `task` from queued to running in `session`, one transition per ms from t = 2.
fn to_running(t: &mut TaskTable, task: TaskId, session: &str) {
    t.transition(2, task, TaskState::Admitted).unwrap();
    t.transition(
        3,
        task,
        TaskState::SessionAcquired {
            session: s(session),
        },
    )
    .unwrap();
    t.transition(
        4,
        task,
        TaskState::Dispatched {
            session: s(session),
            at_ms: 4,
        },
    )
    .unwrap();
    t.transition(
        5,
        task,
        TaskState::Running {
            session: s(session),
            at_ms: 4,
        },
    )
    .unwrap();
}

fn head_seq(t: &TaskTable) -> u64 {
    t.store().journal().head().seq
}

#[test]
fn each_submission_and_transition_is_one_journal_record() {
    let mut t = TaskTable::new();
    let (a, new) = t.submit(1, spec()).unwrap();
    assert!(new);
    assert_eq!(head_seq(&t), 1);
    to_running(&mut t, a, "x");
    let done = t
        .transition(
            6,
            a,
            TaskState::Succeeded {
                session: s("x"),
                text: "ok".into(),
            },
        )
        .unwrap();
    assert_eq!(head_seq(&t), 6);
    assert_eq!((done.attempts, done.created_ms, done.updated_ms), (1, 1, 6));
}

#[test]
fn an_illegal_transition_writes_nothing() {
    let mut t = TaskTable::new();
    let (a, _) = t.submit(1, spec()).unwrap();
    let err = t
        .transition(
            2,
            a,
            TaskState::Running {
                session: s("x"),
                at_ms: 1,
            },
        )
        .unwrap_err();
    assert_eq!(
        err,
        Error::IllegalTransition {
            task: a.get(),
            from: "queued",
            to: "running"
        }
    );
    assert_eq!(head_seq(&t), 1);
    assert_eq!(
        t.transition(2, TaskId(99), TaskState::Admitted)
            .unwrap_err()
            .code(),
        "UNKNOWN_TASK"
    );
    t.transition(
        3,
        a,
        TaskState::Cancelled {
            reason: "user".into(),
        },
    )
    .unwrap();
    assert_eq!(
        t.transition(4, a, TaskState::Admitted).unwrap_err().code(),
        "ILLEGAL_TRANSITION",
        "settled is final"
    );
}

#[test]
fn a_repeated_idempotency_key_returns_the_first_task() {
    let mut t = TaskTable::new();
    let mut keyed = spec();
    keyed.idempotency_key = Some("build-1".into());
    let (a, _) = t.submit(1, keyed.clone()).unwrap();
    let (b, new) = t.submit(2, keyed).unwrap();
    assert_eq!((b, new), (a, false));
    assert_eq!(head_seq(&t), 1, "nothing written");
}

#[test]
fn dependencies_must_exist_so_no_cycle_can_form() {
    let mut t = TaskTable::new();
    let (a, _) = t.submit(1, spec()).unwrap();
    let mut dependent = spec();
    dependent.depends_on = vec![a];
    let (b, _) = t.submit(2, dependent).unwrap();
    assert_eq!(t.dependents_of(a), vec![b]);
    let mut forward = spec();
    forward.depends_on = vec![TaskId(b.get() + 1)]; // itself, or anything not yet there
    assert_eq!(
        t.submit(3, forward).unwrap_err(),
        Error::input("dependsOn", format!("no task {}", b.get() + 1))
    );
    let mut follow = spec();
    follow.follow_up_of = Some(TaskId(50));
    assert_eq!(t.submit(3, follow).unwrap_err().code(), "INVALID_INPUT");
}

#[test]
fn restore_keeps_settled_work_requeues_unprompted_work_and_marks_prompted_work_unknown() {
    let mut t = TaskTable::new();
    let ids: Vec<TaskId> = (0..6)
        .map(|i| {
            let mut sp = spec();
            if i == 5 {
                sp.idempotency_key = Some("safe".into());
            }
            t.submit(1, sp).unwrap().0
        })
        .collect();
    // 0 queued; 1 admitted; 2 session acquired; 3 running; 4 failed; 5 running but idempotent.
    t.transition(2, ids[1], TaskState::Admitted).unwrap();
    t.transition(2, ids[2], TaskState::Admitted).unwrap();
    t.transition(3, ids[2], TaskState::SessionAcquired { session: s("s2") })
        .unwrap();
    for &i in &[ids[3], ids[5]] {
        to_running(&mut t, i, "s3");
    }
    t.transition(
        2,
        ids[4],
        TaskState::Failed {
            class: FailureClass::Invalid,
            message: "bad".into(),
        },
    )
    .unwrap();
    let export = t.store().journal().export(1);
    let head = t.store().journal().head();

    let (r, restored) = restore(&export, head, 100).unwrap();
    let state = |i: usize| r.get(ids[i]).unwrap().state;
    assert_eq!(state(0), TaskState::Queued);
    assert_eq!(state(1), TaskState::Queued);
    assert_eq!(state(2), TaskState::Queued);
    assert_eq!(
        state(3),
        TaskState::Unknown {
            session: Some(s("s3")),
            at_ms: 4
        }
    );
    assert_eq!(
        state(4),
        TaskState::Failed {
            class: FailureClass::Invalid,
            message: "bad".into()
        }
    );
    assert_eq!(
        state(5),
        TaskState::Queued,
        "an idempotent task may run again"
    );
    assert_eq!(restored.unknown, vec![ids[3]]);
    assert_eq!(restored.requeued, vec![ids[1], ids[2], ids[5]]);
    assert_eq!(restored.orphan_sessions, vec![s("s2"), s("s3")]);
    assert_eq!(
        r.store().journal().head().seq,
        head.seq + 5,
        "each restore change is journaled, and the new epoch"
    );

    // New ids continue after the old ones, and a second restore changes nothing more.
    let mut r = r;
    let (next, _) = r.submit(101, spec()).unwrap();
    assert_eq!(next, TaskId(ids[5].get() + 1));
    let (again, restored) = restore(
        &r.store().journal().export(1),
        r.store().journal().head(),
        200,
    )
    .unwrap();
    assert_eq!(restored.unknown, vec![ids[3]]);
    assert!(restored.requeued.is_empty());
    assert_eq!(again.all(), r.all());
}

#[test]
fn restore_refuses_a_tampered_journal() {
    let mut t = TaskTable::new();
    t.submit(1, spec()).unwrap();
    let mut export = t.store().journal().export(1);
    let last = export.len() - 40;
    export[last] ^= 1;
    assert_eq!(
        restore(&export, t.store().journal().head(), 2)
            .unwrap_err()
            .code(),
        "JOURNAL_INVALID"
    );
}

#[test]
fn the_journal_is_checkpointed_so_a_restore_replays_a_bounded_tail() {
    let mut t = TaskTable::new();
    let mut max_kept = 0;
    for i in 0..600u32 {
        let (id, _) = t.submit(1, spec()).unwrap();
        to_running(&mut t, id, &format!("s{i}"));
        t.transition(
            6,
            id,
            TaskState::Succeeded {
                session: s(&format!("s{i}")),
                text: "ok".into(),
            },
        )
        .unwrap();
        let keys = t.store().key_count();
        let kept = t.store().journal().len();
        assert!(
            kept <= CHECKPOINT_MIN_RECORDS.max(2 * keys) + 1,
            "{kept} records kept for {keys} keys"
        );
        max_kept = max_kept.max(kept);
    }
    // 600 tasks × 6 commits = 3,600 records written; far fewer kept.
    assert!(t.store().last_seq() > 3_600);
    // Two keys per task (spec and state): at most twice as many records as keys.
    assert!(max_kept <= 2_401, "{max_kept}");
    let export = t.store().journal().export(0);
    let head = t.store().journal().head();
    let (restored, what) = restore(&export, head, 9).unwrap();
    assert_eq!(restored.all(), t.all());
    assert_eq!(what, Restored::default());
    // New ids continue after the restored ones.
    let mut restored = restored;
    let (id, _) = restored.submit(10, spec()).unwrap();
    assert_eq!(id, TaskId(601));
}

/// `TaskTable::restore` with the default limits and no epoch floor.
fn restore(export: &[u8], head: Head, now: u64) -> Result<(TaskTable, Restored), Error> {
    TaskTable::restore(
        export,
        head,
        now,
        RetentionConfig::default(),
        DEFAULT_MEMORY_BUDGET,
        |_| 0,
    )
}

fn settle_ok(t: &mut TaskTable, now: u64, text: &str) -> TaskId {
    let mut sp = spec();
    sp.prompt = "p".repeat(1000);
    let (id, _) = t.submit(now, sp).unwrap();
    to_running(t, id, "x");
    t.transition(
        now,
        id,
        TaskState::Succeeded {
            session: s("x"),
            text: text.into(),
        },
    )
    .unwrap();
    id
}

#[test]
fn a_transition_journals_the_state_only_and_the_prompt_is_written_once() {
    let mut t = TaskTable::new();
    let mut sp = spec();
    sp.prompt = "unique prompt text ".repeat(50);
    let (id, _) = t.submit(1, sp.clone()).unwrap();
    to_running(&mut t, id, "x");
    t.transition(
        6,
        id,
        TaskState::Succeeded {
            session: s("x"),
            text: "the result".into(),
        },
    )
    .unwrap();
    let export = t.store().journal().export(0);
    let count = |needle: &[u8]| {
        export
            .windows(needle.len())
            .filter(|w| *w == needle)
            .count()
    };
    assert_eq!(
        count(sp.prompt.as_bytes()),
        1,
        "the prompt is journaled once"
    );
    assert_eq!(count(b"the result"), 1, "the result is journaled once");
    // Each transition's record is small: the state alone.
    assert!(export.len() < sp.prompt.len() + 1_000, "{}", export.len());
}

#[test]
fn retention_forgets_the_oldest_settled_tasks_with_their_keys_by_count_age_and_bytes() {
    let retention = RetentionConfig {
        max_tasks: 3,
        max_age_ms: 1_000,
        max_bytes: 64 << 20,
        result_bytes: 1024,
    };
    let mut t = TaskTable::with_limits(retention, DEFAULT_MEMORY_BUDGET, [1; 16]);
    let mut sp = spec();
    sp.idempotency_key = Some("k".into());
    let (first, _) = t.submit(1, sp.clone()).unwrap();
    t.transition(2, first, TaskState::Cancelled { reason: "x".into() })
        .unwrap();
    let ids: Vec<TaskId> = (0..3).map(|i| settle_ok(&mut t, 10 + i, "ok")).collect();
    let (open, _) = t.submit(20, spec()).unwrap();
    assert_eq!(
        t.retire(20).unwrap(),
        vec![first],
        "four settled, three kept"
    );
    assert!(t.was_forgotten(first));
    assert_eq!(t.missing(first).code(), "TASK_FORGOTTEN");
    assert_eq!(t.missing(TaskId(99)).code(), "UNKNOWN_TASK");
    // Its idempotency key went with it: the key makes a new task now.
    let (again, new) = t.submit(21, sp).unwrap();
    assert!(new && again != first);
    // A dependent of a forgotten task is refused with a clear reason.
    let mut dep = spec();
    dep.depends_on = vec![first];
    let err = t.submit(22, dep).unwrap_err();
    assert!(err.to_string().contains("forgotten"), "{err}");
    // Age: an hour later every settled task goes; the open ones stay.
    assert_eq!(t.retire(10_000).unwrap(), ids);
    assert!(t.get(open).is_some());
    let c = t.counts();
    assert_eq!(c.forgotten, 4);
    assert_eq!(c.by_state[0], 2, "two queued");
    assert_eq!(c.by_state.iter().sum::<u64>(), 2);
    assert_eq!(t.settled_count(), 0);
    // A restore keeps the counts and never reuses an id.
    let (mut r, _) = restore(
        &t.store().journal().export(0),
        t.store().journal().head(),
        10_001,
    )
    .unwrap();
    assert_eq!(r.counts(), t.counts());
    let (next, _) = r.submit(10_002, spec()).unwrap();
    assert_eq!(next.get(), again.get() + 1);
    assert_eq!(r.missing(first).code(), "TASK_FORGOTTEN");
}

#[test]
fn retention_by_bytes_keeps_the_settled_tasks_within_the_limit() {
    let retention = RetentionConfig {
        max_tasks: 1_000_000,
        max_age_ms: 3_600_000,
        max_bytes: 20_000,
        result_bytes: 1024,
    };
    let mut t = TaskTable::with_limits(retention, DEFAULT_MEMORY_BUDGET, [1; 16]);
    for i in 0..100 {
        settle_ok(&mut t, i, "ok");
        t.retire(i).unwrap();
        assert!(t.settled_count() <= 20, "{}", t.settled_count());
    }
    assert!(t.settled_count() >= 10);
    assert_eq!(t.counts().forgotten as usize + t.settled_count(), 100);
}

#[test]
fn a_long_result_is_kept_truncated_with_the_session_to_read_the_rest() {
    let retention = RetentionConfig {
        result_bytes: 1024,
        ..RetentionConfig::default()
    };
    let mut t = TaskTable::with_limits(retention, DEFAULT_MEMORY_BUDGET, [1; 16]);
    let long = "é".repeat(2000); // 4000 bytes, two per character
    let id = settle_ok(&mut t, 1, &long);
    let Some(TaskState::Succeeded { text, .. }) = t.state(id) else {
        panic!("not succeeded");
    };
    assert!(text.starts_with(&"é".repeat(512)));
    assert!(text.ends_with("[truncated: 4000 bytes in all; read the rest from session x]"));
    assert!(text.len() < 1100);
    let short = settle_ok(&mut t, 2, "short");
    assert!(matches!(t.state(short), Some(TaskState::Succeeded { text, .. }) if text == "short"));
}

#[test]
fn past_the_memory_budget_a_submission_is_engine_full_and_nothing_is_written() {
    let mut t = TaskTable::with_limits(RetentionConfig::default(), 4 << 20, [1; 16]);
    let mut sp = spec();
    sp.prompt = "x".repeat(100_000);
    let mut accepted = Vec::new();
    let err = loop {
        match t.submit(1, sp.clone()) {
            Ok((id, _)) => accepted.push(id),
            Err(e) => break e,
        }
        assert!(accepted.len() < 100, "the budget never refused");
    };
    assert_eq!(err.code(), "ENGINE_FULL");
    assert!(t.footprint() <= 4 << 20);
    let seq = t.store().journal().head().seq;
    assert_eq!(t.submit(1, sp.clone()).unwrap_err().code(), "ENGINE_FULL");
    assert_eq!(t.store().journal().head().seq, seq, "nothing written");
    // Everything accepted is still there, and survives a restore.
    for id in &accepted {
        assert!(t.get(*id).is_some());
    }
    let (r, what) = restore(
        &t.store().journal().export(0),
        t.store().journal().head(),
        2,
    )
    .unwrap();
    assert_eq!(r.all().len(), accepted.len());
    assert_eq!(what.requeued.len(), 0);
}

#[test]
fn each_restore_takes_a_higher_epoch_than_the_journal_and_the_floor() {
    let mut t = TaskTable::with_limits(RetentionConfig::default(), DEFAULT_MEMORY_BUDGET, [7; 16]);
    t.submit(1, spec()).unwrap();
    assert_eq!(t.epoch(), 0);
    let (a, _) = restore(
        &t.store().journal().export(0),
        t.store().journal().head(),
        2,
    )
    .unwrap();
    assert_eq!((a.epoch(), a.origin()), (1, [7; 16]));
    let (b, _) = TaskTable::restore(
        &a.store().journal().export(0),
        a.store().journal().head(),
        3,
        RetentionConfig::default(),
        DEFAULT_MEMORY_BUDGET,
        |origin| if origin == [7; 16] { 5 } else { 0 },
    )
    .unwrap();
    assert_eq!((b.epoch(), b.origin()), (6, [7; 16]));
}

#[test]
fn a_journal_whose_task_records_are_in_another_format_is_refused() {
    let mut store = Store::new();
    let mut txn = store.begin();
    // A task record of the first format: version byte 1.
    txn.put(task_key(TaskId(1)), vec![1u8, 0, 0, 0, 1]);
    txn.commit(&mut store).unwrap();
    let export = store.journal().export(0);
    let err = restore(&export, store.journal().head(), 1).unwrap_err();
    assert_eq!(err.code(), "JOURNAL_INVALID");
    assert!(err.to_string().contains("format 2"), "{err}");
}
