//! Run tasks (`run(fn)` in JavaScript) against a model: seeded submits with lanes, keys,
//! priorities, deadlines and fail-fast; ends with every outcome; cancels; time moving on. After
//! every step: a slot is reported ready only while it waits and at most once, expired at most
//! once; no lane or limited key has more running than its limit; the controller's permits in
//! use equal the model's running slots; and once the work is drained nothing is left.
//! `FOREMAN_SEED=n FOREMAN_OPS=k` replays one run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use foreman::{Config, ConfigInput, Engine, FailureClass, Outcome, Priority, RunId, RunRequest};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stand {
    Waiting,
    Running,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    stand: Stand,
    lane: usize,
    key: Option<usize>,
    expired: bool,
}

const LANES: [(&str, u32); 3] = [("a", 3), ("b", 2), ("other", 4)];
const KEYS: [&str; 2] = ["k1", "k2"];
const K1_LIMIT: u32 = 2;

struct Model {
    o: Engine,
    now: u64,
    slots: BTreeMap<RunId, Slot>,
    /// Expiries taken and not yet delivered (a host function may run between the two).
    undelivered: Vec<(RunId, u64)>,
    /// Of those, the ones that were waiting: their indices must not be reused before delivery.
    held: Vec<RunId>,
    /// Ids that ended, were cancelled or expired while waiting: they must reach nothing.
    stale: Vec<RunId>,
    reported_ready: u64,
    /// Expired while waiting (left the queue) and while running.
    expired: [u64; 2],
}

impl Model {
    fn new(seed: u64) -> Model {
        let input = ConfigInput {
            lanes: Some(
                LANES
                    .iter()
                    .map(|(n, l)| ((*n).to_owned(), f64::from(*l)))
                    .collect(),
            ),
            keys: Some([("k1".to_owned(), f64::from(K1_LIMIT))].into()),
            ..ConfigInput::default()
        };
        let config = Config::from_input(input).expect("a valid config");
        Model {
            o: Engine::new(&config, seed),
            now: 1,
            slots: BTreeMap::new(),
            undelivered: Vec::new(),
            held: Vec::new(),
            stale: Vec::new(),
            reported_ready: 0,
            expired: [0; 2],
        }
    }

    /// Takes what the engine reported and checks it against the model.
    fn observe(&mut self, step: &str) {
        let mut out = [0u32; 64];
        loop {
            let n = self.o.drain_run_ready(&mut out);
            for slot in out[..n].iter().map(|&r| RunId::from_raw(r)) {
                let s = self
                    .slots
                    .get_mut(&slot)
                    .unwrap_or_else(|| panic!("{step}: unknown slot {slot:?} reported ready"));
                assert_eq!(s.stand, Stand::Waiting, "{step}: slot {slot:?} ready twice");
                s.stand = Stand::Running;
                self.reported_ready += 1;
            }
            if n < out.len() {
                break;
            }
        }
        let expired = self.o.take_run_expired();
        self.undelivered.extend(expired.iter().copied());
        for (slot, _) in expired {
            let s = self
                .slots
                .get_mut(&slot)
                .unwrap_or_else(|| panic!("{step}: unknown slot {slot:?} expired"));
            assert!(!s.expired, "{step}: slot {slot:?} expired twice");
            match s.stand {
                Stand::Waiting => {
                    self.slots.remove(&slot); // left the queue
                    self.stale.push(slot);
                    self.held.push(slot);
                    self.expired[0] += 1;
                }
                Stand::Running => {
                    s.expired = true;
                    self.expired[1] += 1;
                }
            }
        }
        self.check(step);
    }

    /// The slots that stand so, in id order.
    fn standing(&self, stand: Stand) -> Vec<RunId> {
        self.slots
            .iter()
            .filter(|(_, s)| s.stand == stand)
            .map(|(id, _)| *id)
            .collect()
    }

    fn check(&self, step: &str) {
        let stats = self.o.controller().stats(self.now);
        for (i, (name, limit)) in LANES.iter().enumerate() {
            let running = self
                .slots
                .values()
                .filter(|s| s.lane == i && s.stand == Stand::Running)
                .count() as u32;
            assert!(running <= *limit, "{step}: lane {name}: {running} running");
            let view = stats
                .lanes
                .iter()
                .find(|l| l.name == *name)
                .expect("every lane in stats");
            assert_eq!(view.in_use, running, "{step}: lane {name}: permits in use");
        }
        let k1 = self
            .slots
            .values()
            .filter(|s| s.key == Some(0) && s.stand == Stand::Running)
            .count() as u32;
        assert!(k1 <= K1_LIMIT, "{step}: key k1: {k1} running");
        let waiting = self
            .slots
            .values()
            .filter(|s| s.stand == Stand::Waiting)
            .count();
        let running = self.slots.len() - waiting;
        assert_eq!(
            self.o.runs().counts(),
            (waiting, running),
            "{step}: waiting and running slots"
        );
    }
}

fn play(seed: u64, ops: usize) -> [u64; 4] {
    let mut m = Model::new(seed);
    let mut rng = fastrand::Rng::with_seed(seed);
    let lanes: Vec<_> = LANES.iter().map(|(n, _)| m.o.run_lane(n)).collect();
    let keys: Vec<_> = KEYS
        .iter()
        .map(|k| m.o.run_key(k).expect("a valid key"))
        .collect();
    let mut refused = 0u64;
    for op in 0..ops {
        let step = format!("seed {seed}, op {op}");
        // Now and then a submit is not followed by reading what became ready, so the next
        // submit meets an undrained ready list (as when more slots were ready than run.js's
        // buffer holds).
        let mut lazy = false;
        match rng.u32(0..100) {
            0..45 => {
                let lane = rng.usize(0..LANES.len());
                let key = match rng.u32(0..3) {
                    0 => None,
                    k => Some(k as usize - 1),
                };
                let request = RunRequest {
                    lane: lanes[lane],
                    key: key.map(|k| keys[k]),
                    priority: Priority::ALL[rng.usize(0..3)],
                    fail_fast: rng.u32(0..4) == 0,
                    deadline_ms: (rng.u32(0..4) == 0).then(|| rng.u64(1..400)),
                };
                match m.o.run_submit(m.now, request) {
                    Ok(slot) => {
                        assert!(
                            !m.slots.keys().any(|s| s.index() == slot.index()),
                            "{step}: slot {slot:?} reused while live"
                        );
                        assert!(
                            !m.held.iter().any(|s| s.index() == slot.index()),
                            "{step}: slot {slot:?} reused before its expiry was delivered"
                        );
                        assert!(!m.stale.contains(&slot), "{step}: id {slot:?} issued twice");
                        m.slots.insert(
                            slot,
                            Slot {
                                stand: Stand::Waiting,
                                lane,
                                key,
                                expired: false,
                            },
                        );
                        // run.js's common case: a slot admitted at once with nothing else made
                        // ready is taken off the ready list and started by the caller.
                        if rng.bool() && m.o.take_run_ready_alone(slot) {
                            if let Some(s) = m.slots.get_mut(&slot) {
                                s.stand = Stand::Running;
                            }
                            m.reported_ready += 1;
                        }
                        lazy = rng.u32(0..3) == 0;
                    }
                    Err(e) => {
                        assert!(
                            matches!(e.code(), "BREAKER_OPEN" | "MEMORY_PRESSURE"),
                            "{step}: refused with {e}"
                        );
                        refused += 1;
                    }
                }
            }
            45..80 => {
                let running = m.standing(Stand::Running);
                if let Some(&slot) = running.get(rng.usize(0..running.len().max(1))) {
                    let outcome = match rng.u32(0..10) {
                        0..6 => Outcome::Success,
                        6..8 => Outcome::Failed(FailureClass::Upstream),
                        8 => Outcome::Failed(FailureClass::RateLimited),
                        _ => Outcome::Failed(FailureClass::Invalid),
                    };
                    m.o.run_end(m.now, slot, outcome)
                        .unwrap_or_else(|e| panic!("{step}: ending running slot {slot:?}: {e}"));
                    m.slots.remove(&slot);
                    m.stale.push(slot);
                }
            }
            80..88 => {
                m.observe(&step); // what is "waiting" must be known before cancelling it
                let waiting = m.standing(Stand::Waiting);
                if let Some(&slot) = waiting.get(rng.usize(0..waiting.len().max(1))) {
                    assert!(
                        m.o.run_cancel(m.now, slot),
                        "{step}: cancelling waiting slot {slot:?}"
                    );
                    m.slots.remove(&slot);
                    m.stale.push(slot);
                }
                // A running slot cannot be cancelled: it ends when its work does.
                if let Some((&slot, _)) = m.slots.iter().find(|(_, s)| s.stand == Stand::Running) {
                    assert!(
                        !m.o.run_cancel(m.now, slot),
                        "{step}: cancelled running slot"
                    );
                }
            }
            88..92 => {
                // The expiries taken so far reach run.js.
                let delivered = std::mem::take(&mut m.undelivered);
                m.held.clear();
                m.o.release_run_expired(&delivered);
            }
            92..95 => {
                // A late answer or report for an earlier use of a slot reaches nothing.
                if let Some(&old) = m.stale.get(rng.usize(0..m.stale.len().max(1))) {
                    assert!(
                        m.o.run_end(m.now, old, Outcome::Success).is_err(),
                        "{step}: a stale id ended a run"
                    );
                    assert!(!m.o.run_cancel(m.now, old), "{step}: a stale id cancelled");
                }
            }
            _ => {
                m.now += rng.u64(0..250);
                m.o.tick(m.now).expect("tick");
            }
        }
        // Generations are 8 bits: an id comes back after 256 further uses of its index, so
        // only ids fewer than that many uses old are held to "reaches nothing".
        if m.stale.len() > 200 {
            m.stale.drain(..100);
        }
        if !lazy {
            m.observe(&step);
        }
    }
    // Drain: end what runs, let time pass (breakers reopen for probes, deadlines fire).
    for round in 0..1_000 {
        if m.slots.is_empty() {
            break;
        }
        let step = format!("seed {seed}, drain round {round}");
        let running = m.standing(Stand::Running);
        for slot in running {
            m.o.run_end(m.now, slot, Outcome::Success)
                .unwrap_or_else(|e| panic!("{step}: ending {slot:?}: {e}"));
            m.slots.remove(&slot);
            m.observe(&step);
        }
        m.now += 60_000;
        m.o.tick(m.now).expect("tick");
        m.observe(&step);
        let delivered = std::mem::take(&mut m.undelivered);
        m.held.clear();
        m.o.release_run_expired(&delivered);
    }
    assert!(
        m.slots.is_empty(),
        "seed {seed}: {} slots never drained",
        m.slots.len()
    );
    assert_eq!(m.o.runs().counts(), (0, 0));
    let stats = m.o.controller().stats(m.now);
    assert!(
        stats.lanes.iter().all(|l| l.in_use == 0),
        "seed {seed}: a permit leaked"
    );
    assert!(
        stats.keys.iter().all(|k| k.in_use == 0),
        "seed {seed}: a key permit leaked"
    );
    [m.reported_ready, refused, m.expired[0], m.expired[1]]
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn run_tasks_hold_limits_report_each_slot_once_and_leak_nothing() {
    let ops = env("FOREMAN_OPS").unwrap_or(5_000) as usize;
    let seeds = match env("FOREMAN_SEED") {
        Some(seed) => seed..=seed,
        None => 1..=40,
    };
    let mut totals = [0u64; 4];
    for seed in seeds {
        for (t, n) in totals.iter_mut().zip(play(seed, ops)) {
            *t += n;
        }
    }
    let [started, refused, expired_waiting, expired_running] = totals;
    eprintln!(
        "run model: {started} slots started, {refused} refused, {expired_waiting} expired \
         waiting, {expired_running} expired running"
    );
    // The runs did something: most submits started, the breakers refused some fail-fast work
    // (upstream failures open them), and deadlines passed both in line and while running.
    assert!(started > 10_000, "{started} started");
    assert!(refused > 0, "no refusal in any run");
    assert!(
        expired_waiting > 0 && expired_running > 0,
        "no deadline passed"
    );
}
