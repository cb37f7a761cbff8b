use std::collections::HashMap;

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn id(s: &str) -> SessionId {
    SessionId(s.into())
}

fn parent() -> Option<SessionId> {
    Some(id("ses_parent"))
}

fn pool() -> Pool {
    Pool::new(PoolConfig::default())
}

#[test]
fn a_new_task_gets_a_warm_session_or_a_miss() {
    let mut p = pool();
    assert_eq!(p.acquire("worker", parent().as_ref(), 0), Acquired::Miss);
    p.created_warm(id("w1"), "worker", parent(), 0);
    assert_eq!(
        p.acquire("reviewer", parent().as_ref(), 1),
        Acquired::Miss,
        "another agent's session is not handed out"
    );
    assert_eq!(
        p.acquire("worker", None, 1),
        Acquired::Miss,
        "nor one under another parent"
    );
    assert_eq!(
        p.acquire("worker", parent().as_ref(), 1),
        Acquired::Hit(id("w1"))
    );
    assert_eq!(p.state(&id("w1")), Some(State::InUse));
    let c = p.counters();
    assert_eq!((c.hits, c.misses, c.creates), (1, 3, 1));
}

#[test]
fn a_used_session_is_never_handed_to_a_new_task() {
    let mut p = pool();
    p.created_in_use(id("s1"), "worker", parent(), 0);
    p.release(&id("s1"), true, 5);
    assert_eq!(p.state(&id("s1")), Some(State::Parked));
    assert_eq!(p.acquire("worker", parent().as_ref(), 6), Acquired::Miss);
}

#[test]
fn a_follow_up_continues_in_its_session_for_at_most_ten_turns() {
    let mut p = pool();
    p.created_in_use(id("s1"), "worker", parent(), 0);
    for turn in 2..=10 {
        p.release(&id("s1"), true, turn);
        assert!(p.acquire_affinity(&id("s1"), turn), "turn {turn}");
        assert!(
            !p.acquire_affinity(&id("s1"), turn),
            "in use by one task at a time"
        );
    }
    p.release(&id("s1"), true, 11);
    assert_eq!(
        p.state(&id("s1")),
        Some(State::Retiring { abort: false }),
        "ten turns used: retired"
    );
    assert!(!p.acquire_affinity(&id("s1"), 12));
    assert_eq!(p.counters().affinity_hits, 9);
}

#[test]
fn parked_sessions_are_bounded_per_agent_and_the_oldest_retires_first() {
    let mut p = pool();
    for i in 0..20u64 {
        let s = id(&format!("w{i:02}"));
        p.created_in_use(s.clone(), "worker", parent(), i);
        p.release(&s, true, i);
        let s = id(&format!("r{i:02}"));
        p.created_in_use(s.clone(), "reviewer", parent(), i);
        p.release(&s, true, i);
    }
    let parked = |p: &Pool, prefix: &str| -> Vec<String> {
        let mut v: Vec<String> = (0..20)
            .map(|i| format!("{prefix}{i:02}"))
            .filter(|s| p.state(&id(s)) == Some(State::Parked))
            .collect();
        v.sort();
        v
    };
    assert_eq!(parked(&p, "w"), ["w15", "w16", "w17", "w18", "w19"]);
    assert_eq!(parked(&p, "r"), ["r15", "r16", "r17", "r18", "r19"]);
    assert_eq!(p.state(&id("w00")), Some(State::Retiring { abort: false }));
    // Health checks cover only what stays parked: one per parked session, not per task run.
    assert_eq!(p.take_checks(61_000, 0).len(), 10);
}

#[test]
fn a_failed_task_retires_its_session_with_an_abort() {
    let mut p = pool();
    p.created_in_use(id("s1"), "worker", parent(), 0);
    p.release(&id("s1"), false, 1);
    assert_eq!(p.take_aborts(), vec![id("s1")]);
    assert!(p.take_aborts().is_empty(), "aborted once");
}

#[test]
fn deletion_waits_for_ten_quiet_seconds_and_never_while_busy() {
    let mut p = pool();
    p.created_in_use(id("s1"), "worker", parent(), 0);
    p.release(&id("s1"), false, 1_000);
    p.take_aborts();
    p.activity(&id("s1"), true, 2_000); // the abort made it busy for a moment
    assert!(p.take_deletions(60_000).is_empty(), "busy: never deleted");
    p.activity(&id("s1"), false, 61_000); // idle reported; OpenCode may still write rows
    assert!(
        p.take_deletions(70_999).is_empty(),
        "9.999 s of quiet is not enough"
    );
    assert_eq!(p.take_deletions(71_000), vec![id("s1")]);
    assert_eq!(p.state(&id("s1")), Some(State::Deleting));
    p.deleted(&id("s1"));
    assert!(p.is_empty());
    assert_eq!(p.counters().deletes, 1);
}

#[test]
fn idle_sessions_retire_after_five_minutes() {
    let mut p = pool();
    p.created_warm(id("w"), "worker", parent(), 0);
    p.created_in_use(id("s"), "worker", parent(), 0);
    p.release(&id("s"), true, 100_000);
    p.tick(299_999);
    assert_eq!(p.state(&id("w")), Some(State::Warm));
    p.tick(300_000);
    assert_eq!(p.state(&id("w")), Some(State::Retiring { abort: false }));
    assert_eq!(
        p.state(&id("s")),
        Some(State::Parked),
        "parked later, retires later"
    );
    p.tick(400_000);
    assert_eq!(p.state(&id("s")), Some(State::Retiring { abort: false }));
}

#[test]
fn a_session_held_for_a_retry_outlasts_the_parked_bound_and_idles_from_the_retry() {
    let mut p = pool();
    p.created_in_use(id("held"), "worker", parent(), 0);
    p.release(&id("held"), true, 0);
    p.hold(&id("held"), 600_000);
    // Six more parked for the agent: the bound of five retires others, never the held one.
    for i in 1..=6u64 {
        let s = id(&format!("w{i}"));
        p.created_in_use(s.clone(), "worker", parent(), i);
        p.release(&s, true, i);
    }
    assert_eq!(p.state(&id("held")), Some(State::Parked));
    assert_eq!(p.state(&id("w1")), Some(State::Retiring { abort: false }));
    assert_eq!(p.census().2, 5, "held sessions count towards the bound");
    // Idle from the retry it is held for, not from its last activity.
    let mut unused = pool();
    unused.created_in_use(id("held"), "worker", parent(), 0);
    unused.release(&id("held"), true, 0);
    unused.hold(&id("held"), 600_000);
    assert_eq!(unused.next_deadline(), Some(900_000));
    unused.tick(900_000);
    assert_eq!(
        unused.state(&id("held")),
        Some(State::Retiring { abort: false })
    );
    p.tick(599_999);
    assert_eq!(p.state(&id("held")), Some(State::Parked));
    // Continuing it ends the hold: parked again, it idles from its last activity.
    assert!(p.acquire_affinity(&id("held"), 500_000));
    p.release(&id("held"), true, 500_000);
    p.tick(800_000);
    assert_eq!(p.state(&id("held")), Some(State::Retiring { abort: false }));
}

#[test]
fn a_session_held_while_in_use_is_spared_by_the_bound_its_release_applies() {
    let mut p = pool();
    // Five parked and held already (five follow-ups rate limited together).
    for i in 0..5u64 {
        let s = id(&format!("h{i}"));
        p.created_in_use(s.clone(), "worker", parent(), i);
        p.hold(&s, 60_000);
        p.release(&s, true, i);
    }
    // A sixth is held before its release parks it: the bound has no one to retire.
    p.created_in_use(id("h5"), "worker", parent(), 10);
    p.hold(&id("h5"), 60_000);
    p.release(&id("h5"), true, 10);
    for i in 0..6 {
        assert_eq!(p.state(&id(&format!("h{i}"))), Some(State::Parked), "h{i}");
    }
    // Once their retries are due, the bound applies again at the next park.
    p.created_in_use(id("w"), "worker", parent(), 60_001);
    p.release(&id("w"), true, 60_001);
    assert_eq!(p.census().2, 5);
}

#[test]
fn sessions_restored_parked_keep_their_turns_the_bound_and_their_idle_time() {
    let mut p = pool();
    let now = 1_000_000;
    // Eight conversations of one agent read back, oldest first; the first served 10 turns; the
    // last finished longer ago than the pool keeps a session idle.
    for _ in 0..10 {
        p.restored_parked(&id("c0"), "worker", parent(), now - 60_000, now);
    }
    for i in 1..7u64 {
        p.restored_parked(
            &id(&format!("c{i}")),
            "worker",
            parent(),
            now - 60_000 + i,
            now,
        );
    }
    p.restored_parked(&id("old"), "worker", parent(), now - 300_000, now);
    assert_eq!(
        p.state(&id("c0")),
        Some(State::Retiring { abort: false }),
        "10 turns"
    );
    assert_eq!(
        p.state(&id("c1")),
        Some(State::Retiring { abort: false }),
        "bound"
    );
    assert_eq!(
        p.state(&id("old")),
        None,
        "not taken: it would have retired idle"
    );
    assert_eq!(p.census().2, 5);
    // Idle since its turn ended, as if the instance had lived.
    p.tick(now + 240_002);
    assert_eq!(p.state(&id("c2")), Some(State::Retiring { abort: false }));
    assert_eq!(p.state(&id("c6")), Some(State::Parked));
    assert!(p.acquire_affinity(&id("c6"), now + 240_003));
}

#[test]
fn sessions_due_come_oldest_first_whatever_their_names() {
    let mut p = pool();
    let names: Vec<String> = (0..40).map(|i| format!("ses_{}", (i * 17) % 40)).collect();
    for n in &names {
        p.created_warm(id(n), "worker", parent(), 0);
    }
    let due: Vec<String> = p.take_checks(60_000, 0).into_iter().map(|s| s.0).collect();
    assert_eq!(due, names, "health checks in arrival order");
}

#[test]
fn health_checks_come_every_minute_and_retire_the_unhealthy() {
    let mut p = pool();
    p.created_warm(id("w"), "worker", parent(), 0);
    assert_eq!(p.next_check(), Some(60_000));
    assert!(p.take_checks(44_999, 15_000).is_empty());
    assert!(p.take_checks(59_999, 0).is_empty());
    assert_eq!(p.take_checks(60_000, 0), vec![id("w")]);
    assert_eq!(p.next_check(), Some(120_000));
    assert!(
        p.take_checks(60_001, 0).is_empty(),
        "checked: next one in a minute"
    );
    p.health(&id("w"), false, 60_100);
    assert_eq!(p.state(&id("w")), Some(State::Retiring { abort: true }));
    assert_eq!(
        p.next_deadline(),
        None,
        "an abort is due now, not at a deadline"
    );
}

#[test]
fn prewarming_follows_demand_up_to_five() {
    let mut p = pool();
    assert_eq!(
        p.to_prewarm("worker", parent().as_ref(), 0),
        0,
        "no waiting work, no warm session"
    );
    assert_eq!(p.to_prewarm("worker", parent().as_ref(), 3), 3);
    assert_eq!(p.to_prewarm("worker", parent().as_ref(), 50), 5);
    p.created_warm(id("w1"), "worker", parent(), 0);
    assert_eq!(p.to_prewarm("worker", parent().as_ref(), 50), 4);
}

#[test]
fn random_lives_leave_no_orphan_and_break_no_deletion_rule() {
    for seed in 0..30u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut p = pool();
        let mut now = 0u64;
        let mut last_activity: HashMap<SessionId, (u64, bool)> = HashMap::new();
        let mut made = 0u32;
        for _ in 0..3_000 {
            now += rng.u64(0..20_000);
            let ids: Vec<SessionId> = last_activity.keys().cloned().collect();
            let pick = |rng: &mut fastrand::Rng| ids.get(rng.usize(0..ids.len().max(1))).cloned();
            match rng.u32(0..9) {
                0 => {
                    made += 1;
                    let s = SessionId(format!("s{made}"));
                    if rng.bool() {
                        p.created_warm(s.clone(), "worker", None, now)
                    } else {
                        p.created_in_use(s.clone(), "worker", None, now)
                    }
                    last_activity.insert(s, (now, false));
                }
                1 => {
                    if let Acquired::Hit(s) = p.acquire("worker", None, now) {
                        last_activity.entry(s).and_modify(|a| a.0 = now);
                    }
                }
                2 => {
                    if let Some(s) = pick(&mut rng) {
                        let in_use = p.state(&s) == Some(State::InUse);
                        p.release(&s, rng.bool(), now);
                        if rng.bool() {
                            p.hold(&s, now + rng.u64(0..900_000));
                        }
                        if in_use {
                            last_activity.entry(s).and_modify(|a| a.0 = now);
                        }
                    }
                }
                3 => {
                    if let Some(s) = pick(&mut rng) {
                        if p.acquire_affinity(&s, now) {
                            last_activity.entry(s).and_modify(|a| a.0 = now);
                        }
                    }
                }
                4 => {
                    if let Some(s) = pick(&mut rng) {
                        let busy = rng.bool();
                        p.activity(&s, busy, now);
                        last_activity.insert(s, (now, busy));
                    }
                }
                5 => {
                    if let Some(s) = pick(&mut rng) {
                        p.health(&s, rng.u32(0..4) > 0, now);
                    }
                }
                6 => p.tick(now),
                7 => {
                    p.take_aborts();
                    p.take_checks(now, 0);
                }
                _ => {
                    for s in p.take_deletions(now) {
                        let (at, busy) = last_activity[&s];
                        assert!(!busy, "seed {seed}: deleting busy {s:?}");
                        assert!(
                            now - at >= 10_000,
                            "seed {seed}: deleting {s:?} {} ms after activity",
                            now - at
                        );
                        if rng.u32(0..5) == 0 {
                            p.delete_failed(&s, now);
                            last_activity.entry(s).and_modify(|a| a.0 = now);
                        } else {
                            p.deleted(&s);
                            last_activity.remove(&s);
                        }
                    }
                }
            }
            let (w, u, k, r, d) = p.census();
            assert_eq!(w + u + k + r + d, p.len(), "seed {seed}");
            assert_eq!(
                p.len(),
                last_activity.len(),
                "seed {seed}: every created session is accounted for"
            );
            let c = p.counters();
            assert_eq!(c.creates - c.deletes, p.len() as u64, "seed {seed}");
        }
    }
}
