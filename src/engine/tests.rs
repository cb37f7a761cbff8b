use super::*;
use crate::host::{Delivery, FailureClass, FakeHost, Host, HostFailure, OpProfile};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn worker(title: Option<&str>) -> CreateSession {
    CreateSession {
        agent: "worker".into(),
        parent: Some(SessionId("ses_parent".into())),
        title: title.map(str::to_owned),
    }
}

fn created(id: &str) -> HostOutcome {
    HostOutcome::Ok(HostReply::SessionCreated(SessionId(id.into())))
}

/// Drives `engine` against `host` until every started call is answered.
fn drive(engine: &mut Engine, host: &FakeHost) -> Vec<Settled> {
    for request in engine.take_requests() {
        host.start(request);
    }
    let mut settled = Vec::new();
    while host.in_flight() > 0 {
        for delivery in host.advance(1) {
            if let Delivery::Answer(call, outcome) = delivery {
                let now = host.now_ms().unwrap();
                settled.push(engine.resolve(now, call, outcome).unwrap());
            }
        }
    }
    settled
}

#[test]
fn create_session_queues_one_request_with_a_default_title() {
    let mut e = Engine::new(Config::default());
    let call = e.create_session(0, worker(None)).unwrap();
    let requests = e.take_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].call, call);
    assert_eq!(
        requests[0].op,
        HostOp::CreateSession {
            agent: "worker".into(),
            parent: Some(SessionId("ses_parent".into())),
            title: "foreman: worker".into(),
        }
    );
    assert!(e.take_requests().is_empty());
}

#[test]
fn a_call_settles_once_and_only_once() {
    let mut e = Engine::new(Config::default());
    let call = e.create_session(0, worker(Some("t"))).unwrap();
    assert_eq!(
        e.resolve(5, call, created("s1")).unwrap(),
        Settled::SessionCreated(SessionId("s1".into()))
    );
    assert_eq!(
        e.resolve(6, call, created("s2")).unwrap_err(),
        Error::UnknownCall { call: call.get() }
    );
    assert_eq!(e.sessions().counters().created, 1);
    assert_eq!(e.sessions().counters().create_ms_total, 5);
}

#[test]
fn host_failures_keep_their_class() {
    let mut e = Engine::new(Config::default());
    let call = e.create_session(0, worker(None)).unwrap();
    let failure = HostFailure {
        class: FailureClass::RateLimited,
        message: "429".into(),
        retry_after_ms: Some(1000),
    };
    let settled = e.resolve(1, call, HostOutcome::Failed(failure)).unwrap();
    assert!(matches!(
        settled,
        Settled::Failed(Error::HostFailed {
            class: FailureClass::RateLimited,
            ..
        })
    ));
    assert_eq!(e.sessions().counters().failed, 1);
}

#[test]
fn a_duplicate_session_id_is_a_bad_reply() {
    let mut e = Engine::new(Config::default());
    let a = e.create_session(0, worker(None)).unwrap();
    let b = e.create_session(0, worker(None)).unwrap();
    e.resolve(1, a, created("same")).unwrap();
    let settled = e.resolve(1, b, created("same")).unwrap();
    assert!(matches!(
        settled,
        Settled::Failed(Error::HostBadReply { .. })
    ));
}

#[test]
fn empty_or_huge_text_is_invalid_input() {
    let mut e = Engine::new(Config::default());
    let empty = CreateSession {
        agent: " ".into(),
        parent: None,
        title: None,
    };
    assert_eq!(
        e.create_session(0, empty).unwrap_err().code(),
        "INVALID_INPUT"
    );
    let huge = worker(Some(&"x".repeat(MAX_TEXT + 1)));
    assert_eq!(
        e.create_session(0, huge).unwrap_err().code(),
        "INVALID_INPUT"
    );
    assert!(
        e.take_requests().is_empty(),
        "a refused request queues nothing"
    );
}

#[test]
fn call_ids_skip_pending_ids_on_wrap_around() {
    let mut e = Engine::new(Config::default());
    e.next_call = u32::MAX;
    let last = e.create_session(0, worker(None)).unwrap();
    assert_eq!(last, CallId(u32::MAX));
    let first = e.create_session(0, worker(None)).unwrap();
    assert_eq!(first, CallId(1), "0 is never an id");
    e.next_call = 1;
    let next = e.create_session(0, worker(None)).unwrap();
    assert_eq!(next, CallId(2), "1 is still pending");
}

#[test]
fn dispose_abandons_pending_calls_and_refuses_afterwards() {
    let mut e = Engine::new(Config::default());
    let call = e.create_session(0, worker(None)).unwrap();
    assert_eq!(e.dispose(), vec![call]);
    assert_eq!(
        e.create_session(0, worker(None)).unwrap_err(),
        Error::Disposed
    );
    assert_eq!(
        e.resolve(0, call, created("s")).unwrap_err(),
        Error::Disposed
    );
    assert!(e.dispose().is_empty(), "dispose is idempotent");
}

#[test]
fn stats_count_pending_calls_per_lane() {
    let mut e = Engine::new(Config::default());
    e.create_session(0, worker(None)).unwrap();
    e.create_session(
        0,
        CreateSession {
            agent: "explorer".into(),
            parent: None,
            title: None,
        },
    )
    .unwrap();
    let stats = e.stats(3, MemoryReading::new(1, 2).unwrap()).unwrap();
    let pending = |lane: &str| {
        stats
            .lanes
            .iter()
            .find(|l| l.name == lane)
            .unwrap()
            .pending_calls
    };
    assert_eq!(stats.pending_calls, 2);
    assert_eq!(
        (pending("worker"), pending("other"), pending("planner")),
        (1, 1, 0)
    );
}

#[test]
fn fake_host_round_trip_with_failures_is_deterministic() {
    let run = |seed| {
        let host = FakeHost::new(seed);
        host.set_create_session(OpProfile {
            failure_rate: 0.25,
            ..OpProfile::default()
        });
        let mut e = Engine::new(Config::default());
        for _ in 0..40 {
            e.create_session(host.now_ms().unwrap(), worker(None))
                .unwrap();
        }
        let settled = drive(&mut e, &host);
        let ok = settled
            .iter()
            .filter(|s| matches!(s, Settled::SessionCreated(_)))
            .count();
        assert_eq!(settled.len(), 40, "seed {seed}: every call settles");
        assert_eq!(ok as u64, host.sessions_created(), "seed {seed}");
        assert_eq!(
            e.sessions().counters().created,
            host.sessions_created(),
            "seed {seed}"
        );
        assert_eq!(e.stats(0, host.memory().unwrap()).unwrap().pending_calls, 0);
        settled
    };
    for seed in 0..20 {
        assert_eq!(run(seed), run(seed), "seed {seed}");
    }
}
