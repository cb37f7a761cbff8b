use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// A simulator with one created session `s` (call 1) and the given turn profile.
fn with_session(seed: u64, profile: PromptProfile) -> (FakeHost, SessionId) {
    let host = FakeHost::new(seed);
    host.set_prompt_profile("*", profile);
    host.start(HostRequest {
        call: CallId(1),
        op: HostOp::CreateSession {
            agent: "worker".into(),
            parent: None,
            title: "t".into(),
        },
    });
    let d = host.advance(100);
    let Delivery::Answer(_, HostOutcome::Ok(HostReply::SessionCreated(s))) = &d[0] else {
        panic!("{d:?}")
    };
    (host, s.clone())
}

/// Turns that start at once and never finish.
fn hung() -> PromptProfile {
    PromptProfile {
        hang_rate: 1.0,
        gap_max_ms: 0,
        ..PromptProfile::default()
    }
}

fn call(host: &FakeHost, id: u32, op: HostOp) {
    host.start(HostRequest {
        call: CallId(id),
        op,
    });
}

fn prompt(s: &SessionId) -> HostOp {
    HostOp::Prompt {
        session: s.clone(),
        agent: "worker".into(),
        model: None,
        text: "go".into(),
    }
}

fn events(d: &[Delivery]) -> Vec<String> {
    d.iter()
        .filter_map(|x| match x {
            Delivery::Event(HostEvent::Busy(_)) => Some("busy".into()),
            Delivery::Event(HostEvent::Idle(_)) => Some("idle".into()),
            Delivery::Event(HostEvent::Retry { attempt, .. }) => Some(format!("retry{attempt}")),
            Delivery::Event(HostEvent::Error { error, .. }) => {
                Some(format!("error:{:?}", error.class()))
            }
            Delivery::Event(HostEvent::Deleted(_)) => Some("deleted".into()),
            Delivery::Answer(..) => None,
        })
        .collect()
}

fn last_message(host: &FakeHost, s: &SessionId, id: u32) -> Option<AssistantMessage> {
    call(
        host,
        id,
        HostOp::LastAssistantMessage { session: s.clone() },
    );
    host.advance(100).into_iter().find_map(|d| match d {
        Delivery::Answer(c, HostOutcome::Ok(HostReply::Message(m))) if c == CallId(id) => Some(m),
        _ => None,
    })?
}

#[test]
fn a_prompt_is_accepted_at_once_but_busy_comes_after_a_gap() {
    let profile = PromptProfile {
        gap_max_ms: 3_000,
        median_ms: 60_000,
        sigma: 0.0,
        ..PromptProfile::default()
    };
    // Find a seed whose gap is long enough to see the quiet window.
    let (host, s) = (0..50)
        .map(|seed| with_session(seed, profile))
        .find(|(h, s)| {
            call(h, 2, prompt(s));
            let d = h.advance(50);
            d.iter().any(|x| {
                matches!(
                    x,
                    Delivery::Answer(CallId(2), HostOutcome::Ok(HostReply::Done))
                )
            }) && !h.is_busy(s)
        })
        .expect("some seed has a gap");
    assert!(
        !host.is_busy(&s),
        "accepted, yet not busy: this looks exactly like done"
    );
    let d = host.advance(3_000);
    assert_eq!(events(&d), ["busy"]);
}

#[test]
fn a_normal_turn_goes_busy_then_idle_once_with_a_final_message_made_after_dispatch() {
    let (host, s) = with_session(
        3,
        PromptProfile {
            median_ms: 5_000,
            sigma: 0.2,
            ..PromptProfile::default()
        },
    );
    let dispatched = host.now_ms().unwrap();
    call(&host, 2, prompt(&s));
    let d = host.advance(60_000);
    assert_eq!(events(&d), ["busy", "idle"]);
    let m = last_message(&host, &s, 3).unwrap();
    assert!(m.is_final() && m.error.is_none());
    assert!(m.created_ms >= dispatched);
}

#[test]
fn tool_call_steps_leave_a_completed_but_not_final_message_mid_turn() {
    let profile = PromptProfile {
        median_ms: 30_000,
        sigma: 0.0,
        gap_max_ms: 0,
        ..PromptProfile::default()
    };
    let seen = (0..40).any(|seed| {
        let (host, s) = with_session(seed, profile);
        call(&host, 2, prompt(&s));
        host.advance(20_000);
        last_message(&host, &s, 3).is_some_and(|m| m.completed_ms.is_some() && !m.is_final())
    });
    assert!(seen, "some turns stop for tool calls first");
}

#[test]
fn a_failed_turn_retries_then_errors_and_idles_twice() {
    let (host, s) = with_session(
        5,
        PromptProfile {
            failure_rate: 1.0,
            ..PromptProfile::default()
        },
    );
    call(&host, 2, prompt(&s));
    let d = host.advance(120_000);
    assert_eq!(
        events(&d),
        [
            "busy",
            "retry1",
            "retry2",
            "retry3",
            "error:Upstream",
            "idle",
            "idle"
        ]
    );
    let m = last_message(&host, &s, 3).unwrap();
    assert_eq!(m.error.map(|e| e.class()), Some(FailureClass::Upstream));
}

#[test]
fn a_hung_turn_stays_busy_until_aborted_then_idles_twice() {
    let (host, s) = with_session(6, hung());
    call(&host, 2, prompt(&s));
    let d = host.advance(3_600_000);
    assert_eq!(events(&d), ["busy"]);
    assert!(host.is_busy(&s));
    call(&host, 3, HostOp::Abort { session: s.clone() });
    let d = host.advance(1_000);
    assert_eq!(events(&d), ["idle", "idle"]);
    assert_eq!(
        last_message(&host, &s, 4).unwrap().error,
        Some(MessageError::Aborted)
    );
}

#[test]
fn an_abort_voids_the_rest_of_the_turn() {
    let (host, s) = with_session(
        7,
        PromptProfile {
            median_ms: 10_000,
            sigma: 0.0,
            gap_max_ms: 0,
            ..PromptProfile::default()
        },
    );
    call(&host, 2, prompt(&s));
    host.advance(1_000);
    call(&host, 3, HostOp::Abort { session: s.clone() });
    host.advance(1_000);
    let d = host.advance(60_000);
    assert!(
        events(&d).is_empty(),
        "no late busy or idle from the aborted turn: {:?}",
        events(&d)
    );
}

#[test]
fn deleting_busy_or_too_soon_is_counted_and_deleting_after_quiet_is_clean() {
    let (host, s) = with_session(8, hung());
    call(&host, 2, prompt(&s));
    host.advance(1_000);
    call(&host, 3, HostOp::DeleteSession { session: s.clone() });
    let d = host.advance(1_000);
    assert_eq!(events(&d), ["deleted"]);
    assert_eq!(host.violations().deleted_busy, 1);

    let profile = PromptProfile {
        median_ms: 1_000,
        sigma: 0.0,
        gap_max_ms: 0,
        ..PromptProfile::default()
    };
    let (host, s) = with_session(9, profile);
    call(&host, 2, prompt(&s));
    host.advance(5_000);
    call(&host, 3, HostOp::DeleteSession { session: s.clone() });
    host.advance(100);
    assert_eq!(
        host.violations().deleted_too_soon,
        1,
        "OpenCode is still writing after idle"
    );

    let (host, s) = with_session(10, profile);
    call(&host, 2, prompt(&s));
    host.advance(20_000);
    call(&host, 3, HostOp::DeleteSession { session: s.clone() });
    host.advance(100);
    assert_eq!(host.violations(), Violations::default());
    assert!(host.sessions_alive().is_empty());
}

#[test]
fn prompting_a_busy_session_is_counted() {
    let (host, s) = with_session(11, hung());
    call(&host, 2, prompt(&s));
    host.advance(1_000);
    call(&host, 3, prompt(&s));
    host.advance(1_000);
    assert_eq!(host.violations().prompted_busy, 1);
}

#[test]
fn memory_follows_the_busy_sessions() {
    let (host, s) = with_session(12, hung());
    host.set_memory(MemoryReading::new(100, 1_000).unwrap());
    host.set_memory_per_busy(50);
    assert_eq!(host.memory().unwrap().used(), 100);
    call(&host, 2, prompt(&s));
    host.advance(1_000);
    assert_eq!(host.memory().unwrap().used(), 150);
}

#[test]
fn checks_and_reads_of_a_deleted_session_say_gone() {
    let (host, s) = with_session(13, PromptProfile::default());
    call(&host, 2, HostOp::DeleteSession { session: s.clone() });
    host.advance(100);
    call(&host, 3, HostOp::CheckSession { session: s.clone() });
    call(
        &host,
        4,
        HostOp::LastAssistantMessage { session: s.clone() },
    );
    let d = host.advance(100);
    assert!(d.contains(&Delivery::Answer(
        CallId(3),
        HostOutcome::Ok(HostReply::Health(SessionHealth::Gone))
    )));
    assert!(d.iter().any(|x| matches!(x, Delivery::Answer(CallId(4), HostOutcome::Failed(f)) if f.class == FailureClass::Invalid)));
}

#[test]
fn the_simulation_is_deterministic_per_seed() {
    let run = |seed| {
        let host = FakeHost::new(seed);
        host.set_prompt_profile(
            "*",
            PromptProfile {
                failure_rate: 0.2,
                rate_limit_rate: 0.2,
                ..PromptProfile::default()
            },
        );
        host.set_create_session(OpProfile {
            failure_rate: 0.3,
            ..OpProfile::default()
        });
        for i in 0..30 {
            call(
                &host,
                i,
                HostOp::CreateSession {
                    agent: "w".into(),
                    parent: None,
                    title: "t".into(),
                },
            );
        }
        let mut out = host.advance(100);
        for (i, s) in host.sessions_alive().into_iter().enumerate() {
            call(&host, 100 + i as u32, prompt(&s));
        }
        out.extend(host.advance(600_000));
        out
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}
