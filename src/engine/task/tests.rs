use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn field_of(err: Error) -> String {
    match err {
        Error::InvalidInput { field, .. } => field,
        other => panic!("not an input error: {other}"),
    }
}

fn session() -> SessionId {
    SessionId("ses_1".into())
}

/// One of every state.
fn every_state() -> Vec<TaskState> {
    vec![
        TaskState::Queued,
        TaskState::Admitted,
        TaskState::SessionAcquired { session: session() },
        TaskState::Dispatched {
            session: session(),
            at_ms: 5,
        },
        TaskState::Running {
            session: session(),
            at_ms: 5,
        },
        TaskState::Succeeded {
            session: session(),
            text: "ok".into(),
        },
        TaskState::Failed {
            class: FailureClass::Upstream,
            message: "503".into(),
        },
        TaskState::Cancelled {
            reason: "user".into(),
        },
        TaskState::TimedOut,
        TaskState::Unknown {
            session: Some(session()),
            at_ms: 5,
        },
    ]
}

#[test]
fn every_bad_field_is_named() {
    let ok = TaskSpec::new("worker", "do it");
    assert!(ok.validate().is_ok());
    type Mutation = Box<dyn Fn(&mut TaskSpec)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("agent", Box::new(|s| s.agent = " ".into())),
        ("prompt", Box::new(|s| s.prompt = String::new())),
        (
            "prompt",
            Box::new(|s| s.prompt = "x".repeat(MAX_PROMPT + 1)),
        ),
        ("deadlineMs", Box::new(|s| s.deadline_ms = 0)),
        (
            "deadlineMs",
            Box::new(|s| s.deadline_ms = MAX_DEADLINE_MS + 1),
        ),
        ("model", Box::new(|s| s.model = Some("no-slash".into()))),
        (
            "parentID",
            Box::new(|s| s.parent = Some(SessionId(String::new()))),
        ),
        (
            "idempotencyKey",
            Box::new(|s| s.idempotency_key = Some("k".repeat(MAX_NAME + 1))),
        ),
        (
            "dependsOn",
            Box::new(|s| s.depends_on = vec![TaskId(1), TaskId(1)]),
        ),
        ("retries", Box::new(|s| s.retries = MAX_RETRIES + 1)),
    ];
    for (field, mutate) in cases {
        let mut spec = ok.clone();
        mutate(&mut spec);
        assert_eq!(field_of(spec.validate().unwrap_err()), field);
    }
}

#[test]
fn legal_transitions_are_exactly_the_documented_ones() {
    // (from, to) by state name; everything else is illegal.
    let allowed: &[(&str, &str)] = &[
        ("queued", "admitted"),
        ("queued", "cancelled"),
        ("queued", "failed"),
        ("admitted", "session_acquired"),
        ("session_acquired", "dispatched"),
        ("dispatched", "running"),
        ("dispatched", "succeeded"),
        ("running", "succeeded"),
        ("unknown", "running"),
        ("unknown", "succeeded"),
        ("unknown", "failed"),
        ("unknown", "cancelled"),
        ("unknown", "queued"),
    ];
    let started = ["admitted", "session_acquired", "dispatched", "running"];
    let mut checked = 0;
    for from in every_state() {
        for to in every_state() {
            let (f, t) = (from.name(), to.name());
            let expected = allowed.contains(&(f, t))
                || (started.contains(&f)
                    && ["failed", "cancelled", "timed_out", "queued"].contains(&t));
            assert_eq!(is_legal(&from, &to), expected, "{f} → {t}");
            checked += 1;
        }
    }
    assert_eq!(checked, 100);
}

#[test]
fn records_round_trip_in_every_state() {
    let mut spec = TaskSpec::new("worker", "prompt ✓");
    spec.model = Some("openai/gpt-5".into());
    spec.parent = Some(SessionId("ses_parent".into()));
    spec.idempotency_key = Some("k1".into());
    spec.depends_on = vec![TaskId(3), TaskId(9)];
    spec.retries = 2;
    spec.fail_fast = true;
    spec.follow_up_of = Some(TaskId(2));
    spec.priority = Priority::Low;
    for state in every_state() {
        let r = TaskRecord {
            id: TaskId(7),
            spec: spec.clone(),
            state,
            attempts: 3,
            created_ms: 10,
            updated_ms: 20,
        };
        let (spec_bytes, state_bytes) = (r.encode_spec(), r.encode_state());
        assert_eq!(
            TaskRecord::decode(r.id, &spec_bytes, &state_bytes).unwrap(),
            r
        );
        assert!(
            !state_bytes
                .windows(r.spec.prompt.len())
                .any(|w| w == r.spec.prompt.as_bytes()),
            "a state never carries the prompt again"
        );
        for bytes in [&spec_bytes, &state_bytes] {
            let cut = &bytes[..bytes.len() - 1];
            let mut longer = bytes.clone();
            longer.push(0);
            for bad in [cut, longer.as_slice()] {
                let (sp, st) = if bytes == &spec_bytes {
                    (bad, state_bytes.as_slice())
                } else {
                    (spec_bytes.as_slice(), bad)
                };
                assert!(
                    TaskRecord::decode(r.id, sp, st).is_err(),
                    "truncated or longer"
                );
            }
        }
    }
}

#[test]
fn only_started_states_hold_a_permit() {
    let holding: Vec<&str> = every_state()
        .iter()
        .filter(|s| s.holds_permit())
        .map(|s| s.name())
        .collect();
    assert_eq!(
        holding,
        [
            "admitted",
            "session_acquired",
            "dispatched",
            "running",
            "unknown"
        ]
    );
    let settled: Vec<&str> = every_state()
        .iter()
        .filter(|s| s.is_settled())
        .map(|s| s.name())
        .collect();
    assert_eq!(settled, ["succeeded", "failed", "cancelled", "timed_out"]);
}
