use super::*;
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

    let (r, restored) = TaskTable::restore(&export, head, 100).unwrap();
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
        head.seq + 4,
        "each restore change is journaled"
    );

    // New ids continue after the old ones, and a second restore changes nothing more.
    let mut r = r;
    let (next, _) = r.submit(101, spec()).unwrap();
    assert_eq!(next, TaskId(ids[5].get() + 1));
    let (again, restored) = TaskTable::restore(
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
        TaskTable::restore(&export, t.store().journal().head(), 2)
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
    assert!(max_kept <= 1_201, "{max_kept}");
    let export = t.store().journal().export(0);
    let head = t.store().journal().head();
    let (restored, what) = TaskTable::restore(&export, head, 9).unwrap();
    assert_eq!(restored.all(), t.all());
    assert_eq!(what, Restored::default());
    // New ids continue after the restored ones.
    let mut restored = restored;
    let (id, _) = restored.submit(10, spec()).unwrap();
    assert_eq!(id, TaskId(601));
}
