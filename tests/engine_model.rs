//! The engine core under seeded random operations against the simulated server, checked after
//! every step: no leaked permit, no lost task, no double completion, no limit exceeded, no
//! orphan session, no misuse of the server — across crashes and restores — while the host
//! misbehaves: bus events lost, repeated and reordered, answers that never come or come late.
//! Every task settles within its deadline plus the liveness interval once dispatched, and after
//! the drain no session the engine knows of is left on the server.
//!
//! Time reaches the engine as it does from a JS host: through the engine's [`Clock`], fed by a
//! monotonic source (the true time) and a wall clock that random operations step — forward (a
//! day ahead for one reading, or for a while) and back (an NTP correction, persisting). The
//! server stamps messages on the wall clock (host and server share the machine's clock), and
//! the host puts the stamps on the engine's clock with [`Clock::stamp`], as the bindings do.
//! Every fourth seed is a host without a monotonic clock: there only steps back are tolerated
//! (a step forward cannot be told from elapsed time), and each costs the engine the time since
//! its previous reading, which the liveness check allows for.
//! Every run prints its seed; rerun one with `FOREMAN_SEED=<seed>`.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap, HashSet};

use foreman::{
    CallId, Clock, Config, Delivery, Engine, FailureClass, FakeHost, Host, HostReply, HostRequest,
    MemoryReading, Outcome, Priority, PromptProfile, RunId, RunRequest, SessionId, TaskId,
    TaskPhase, TaskSpec, TaskState, fake_violations_none,
};

/// The wall clock's epoch: true time 0 reads as this on a wall clock not stepped.
const T0: u64 = 1_700_000_000_000;
/// A forward step: the wall clock a day ahead.
const DAY: i64 = 86_400_000;

/// The machine's clocks as a JS host reads them: a monotonic one (the true time, the fake
/// server's) and a wall clock that random operations step; and the engine's [`Clock`] made of
/// them, as the bindings make it.
struct Clocks {
    /// The host gives `monotonic()`.
    monotonic: bool,
    engine: Clock,
    /// The wall clock's offset from true time: (true time from, offset ms), in time order. The
    /// server stamps messages on it.
    offsets: Vec<(u64, i64)>,
    /// A wall reading of the host this far ahead, once (the server's stamps are not).
    once: Option<i64>,
    /// The last reading: (true time, engine time); none since a restart.
    last: Option<(u64, u64)>,
    /// Engine time lost to steps back, ms, in total (a host without a monotonic clock only).
    lost: u64,
    /// Steps done: back, ahead once, ahead for a while.
    steps: [u64; 3],
}

impl Clocks {
    fn new(monotonic: bool) -> Self {
        Clocks {
            monotonic,
            engine: Clock::new(monotonic),
            offsets: vec![(0, 0)],
            once: None,
            last: None,
            lost: 0,
            steps: [0; 3],
        }
    }

    /// The wall clock at true time `t`, ms since the epoch.
    fn wall(&self, t: u64) -> u64 {
        let offset = self
            .offsets
            .iter()
            .rev()
            .find(|(from, _)| *from <= t)
            .map_or(0, |(_, o)| *o);
        (T0 as i64 + t as i64 + offset) as u64
    }

    /// One reading of the host's clocks at true time `t` (what `now()` and `monotonic()` give),
    /// on the engine's clock.
    fn read(&mut self, t: u64) -> u64 {
        let wall = self.wall(t) as i64 + self.once.take().unwrap_or(0);
        let mono = self.monotonic.then_some(t as f64 + 0.25);
        let now = self.engine.read(Some(wall as f64), mono);
        if let Some((t0, e0)) = self.last {
            assert!(now >= e0, "the engine's clock went back");
            assert!(
                now - e0 <= t - t0,
                "the engine's clock ran ahead of true time"
            );
            let lost = (t - t0) - (now - e0);
            assert!(
                !self.monotonic || lost == 0,
                "the engine's clock lost {lost} ms with a monotonic source"
            );
            self.lost += lost;
        }
        self.last = Some((t, now));
        now
    }

    /// A process restarts: its engine's clock starts again at the next wall reading.
    fn restart(&mut self) {
        self.engine = Clock::new(self.monotonic);
        self.once = None;
        self.last = None;
    }

    /// Whether a step forward for a while is in force, or one is scheduled.
    fn stepping(&self, t: u64) -> bool {
        self.offsets.last().is_some_and(|(from, _)| *from > t)
    }

    /// The wall clock steps by `by` ms at true time `t` (not before the last step), until
    /// `until` (for ever without).
    fn step(&mut self, t: u64, by: i64, until: Option<u64>) {
        let base = self.offsets.last().map_or(0, |(_, o)| *o);
        self.offsets.push((t, base + by));
        if let Some(until) = until {
            self.offsets.push((until, base));
        }
    }
}

/// The host side: the simulated server plus the routing a JS host does with promises — an
/// answer goes to the instance that made the call, and a lost instance's answers go nowhere.
struct World {
    seed: u64,
    host: FakeHost,
    o: Engine,
    instance: u32,
    routes: HashMap<CallId, (u32, CallId)>,
    next_host_call: u32,
    /// Sessions created for calls of a lost instance: only a listing of the parent's children
    /// could find them, which the host interface does not offer.
    lost_to_crash: HashSet<SessionId>,
    settled: HashMap<TaskId, u32>,
    accepted: Vec<TaskId>,
    /// The host's misbehaviour.
    rng: fastrand::Rng,
    /// Deliveries held back, to be delivered after later ones (reordering).
    held: Vec<Delivery>,
    /// When each task was last dispatched, in true time, and the engine time lost to clock
    /// steps by then (cleared when it is queued again or settles).
    dispatched: HashMap<TaskId, (u64, u64)>,
    clocks: Clocks,

    /// Host misbehaviour done: events lost, repeated, reordered; answers dropped, delayed.
    mischief: [u64; 5],
    /// Parents blocked in a delegation tool call (their sessions), until the engine reports
    /// them resumed; and how many delegations and resumptions there were.
    blocked: HashMap<TaskId, SessionId>,
    nested: [u64; 3],
    /// `run()` work as run.js drives it: open runs (submitted, not ended nor expired while in
    /// line) and their state; children started, joins, resumptions.
    runs: BTreeMap<RunId, ModelRun>,
    run_counts: [u64; 3],
}

/// A run of the model's: what its function is doing.
#[derive(Debug, Clone, PartialEq)]
enum RunPhase {
    /// Submitted, not reported ready yet.
    Waiting,
    /// Its function at work: it may start children, join them or end.
    Working,
    /// In `join`, until the engine reports it resumed.
    Joined,
}

#[derive(Debug, Clone)]
struct ModelRun {
    phase: RunPhase,
    parent: Option<RunId>,
}

impl World {
    /// What run.js hears after each call: runs made ready start working, runs expired while
    /// still in line are gone (a running one keeps working), joined parents resumed go on.
    fn poll_runs(&mut self) {
        let mut ready = [0u32; 256];
        loop {
            let n = self.o.drain_run_ready(&mut ready);
            for raw in &ready[..n] {
                let r = self
                    .runs
                    .get_mut(&RunId::from_raw(*raw))
                    .expect("a ready run is open");
                assert_eq!(r.phase, RunPhase::Waiting, "a run reported ready twice");
                r.phase = RunPhase::Working;
            }
            if n < ready.len() {
                break;
            }
        }
        let expired = self.o.take_run_expired();
        for (id, _) in &expired {
            if self
                .runs
                .get(id)
                .is_some_and(|r| r.phase == RunPhase::Waiting)
            {
                self.runs.remove(id);
            }
        }
        self.o.release_run_expired(&expired);
        for id in self.o.take_runs_resumed() {
            if let Some(r) = self.runs.get_mut(&id) {
                assert_eq!(r.phase, RunPhase::Joined, "a run resumed that did not join");
                r.phase = RunPhase::Working;
                self.run_counts[2] += 1;
            }
        }
    }

    /// A reading of the host's clocks, on the engine's clock (each entry into the engine takes
    /// one, as the bindings do).
    fn now(&mut self) -> u64 {
        let t = self.true_now();
        self.clocks.read(t)
    }

    /// The true time (the fake server's clock).
    fn true_now(&self) -> u64 {
        self.host.now_ms().unwrap()
    }

    /// A reply's message stamps: the server wrote them on its wall clock when it made the
    /// message (the fake stamps true time); the host puts them on the engine's clock.
    fn stamped(&self, mut outcome: foreman::HostOutcome) -> foreman::HostOutcome {
        if let foreman::HostOutcome::Ok(HostReply::Message(Some(m))) = &mut outcome {
            m.created_wall_ms = self.clocks.wall(m.created_ms);
            m.created_ms = self.clocks.engine.stamp(m.created_wall_ms);
            m.completed_ms = m
                .completed_ms
                .map(|c| self.clocks.engine.stamp(self.clocks.wall(c)));
        }
        outcome
    }

    fn flush(&mut self) {
        // A parent's tool call returns only once the engine says it has its slot again.
        for parent in self.o.take_resumed() {
            if let Some(session) = self.blocked.remove(&parent) {
                self.host.unblock(&session);
                self.nested[1] += 1;
            }
        }
        for r in self.o.take_requests() {
            self.next_host_call += 1;
            let id = CallId(self.next_host_call);
            self.routes.insert(id, (self.instance, r.call));
            self.host.start(HostRequest { call: id, op: r.op });
        }
        let at = (self.true_now(), self.clocks.lost);
        for e in self.o.take_events() {
            if e.state.is_settled() {
                *self.settled.entry(e.task).or_default() += 1;
                self.dispatched.remove(&e.task);
                if e.state == TaskPhase::Failed {
                    if let Some(TaskState::Failed { message, .. }) =
                        self.o.tasks().get(e.task).map(|r| r.state)
                    {
                        // The fake server's turns never die: a finished turn's reply was
                        // misjudged (e.g. read across a clock step, or after a restore).
                        assert!(
                            !message.contains("without finishing"),
                            "seed {}: task {:?} finished but was judged dead",
                            self.seed,
                            e.task
                        );
                    }
                }
            } else if e.state == TaskPhase::Dispatched {
                self.dispatched.insert(e.task, at);
            } else if e.state == TaskPhase::Queued {
                self.dispatched.remove(&e.task);
            }
        }
    }

    fn advance(&mut self, ms: u64) {
        let until = self.true_now() + ms;
        loop {
            self.flush();
            let t = self.true_now();
            let now = self.now();
            // The engine's next deadline, in true time (the engine's clock runs at its rate).
            let engine_due = self.o.next_deadline(now).map(|d| t + d.saturating_sub(now));
            let next = [self.host.next_due(), engine_due]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(until)
                .clamp(t, until);
            let mut deliveries = self.host.advance(next - t);
            // Now and then what was held back comes after what came since (reordered).
            if !self.held.is_empty() && self.rng.u32(0..4) == 0 {
                deliveries.append(&mut self.held);
            }
            for d in deliveries {
                let t = self.now();
                // The host misbehaves: an event lost, repeated or held back; an answer that
                // never comes (the call times out) or comes after later deliveries.
                let roll = self.rng.u32(0..1000);
                let d = match d {
                    Delivery::Event(e) if roll < 40 => {
                        self.mischief[0] += 1;
                        let _ = e; // lost
                        continue;
                    }
                    Delivery::Event(e) if roll < 60 => {
                        self.mischief[1] += 1;
                        if let Err(err) = self.o.on_event(t, e.clone()) {
                            panic!("seed {}: event {e:?}: {err}", self.seed);
                        }
                        Delivery::Event(e)
                    }
                    d @ Delivery::Event(_) if roll < 100 => {
                        self.mischief[2] += 1;
                        self.held.push(d);
                        continue;
                    }
                    Delivery::Answer(call, outcome) if roll < 15 => {
                        self.mischief[3] += 1;
                        self.routes.remove(&call);
                        if let foreman::HostOutcome::Ok(foreman::HostReply::SessionCreated(s)) =
                            outcome
                        {
                            // Nothing on the host interface could find it again.
                            self.lost_to_crash.insert(s);
                        }
                        continue;
                    }
                    d @ Delivery::Answer(..) if roll < 40 => {
                        self.mischief[4] += 1;
                        self.held.push(d);
                        continue;
                    }
                    d => d,
                };
                match d {
                    Delivery::Answer(call, outcome) => {
                        let (instance, own) = self.routes.remove(&call).unwrap();
                        if instance == self.instance {
                            let outcome = self.stamped(outcome);
                            match self.o.on_answer(t, own, outcome.clone()) {
                                // A late answer to a call the engine gave up on (timed out).
                                Err(e) if e.code() == "UNKNOWN_CALL" => {}
                                Err(e) => panic!("seed {}: answer {outcome:?}: {e}", self.seed),
                                Ok(()) => {}
                            }
                        } else if let foreman::HostOutcome::Ok(
                            foreman::HostReply::SessionCreated(s),
                        ) = outcome
                        {
                            self.lost_to_crash.insert(s);
                        }
                    }
                    Delivery::Event(e) => {
                        if let Err(err) = self.o.on_event(t, e.clone()) {
                            panic!("seed {}: event {e:?}: {err}", self.seed);
                        }
                    }
                }
                self.flush();
            }
            let now = self.now();
            if let Err(e) = self.o.tick(now) {
                panic!("seed {}: tick: {e}", self.seed);
            }
            self.flush();
            if self.true_now() >= until {
                return;
            }
        }
    }

    fn check(&mut self, seed: u64, op: usize, config: &Config) {
        let ctx = format!("seed {seed}, op {op}");
        let records: BTreeMap<TaskId, TaskState> = self
            .o
            .tasks()
            .all()
            .into_iter()
            .map(|r| (r.id, r.state))
            .collect();
        // No lost task: every accepted id has exactly one record, or settled and was forgotten
        // by the retention rule (which answers TASK_FORGOTTEN for it, never another task).
        let mut forgotten = 0;
        for id in &self.accepted {
            if !records.contains_key(id) {
                assert!(self.o.tasks().was_forgotten(*id), "{ctx}: task {id:?} lost");
                assert_eq!(self.o.tasks().missing(*id).code(), "TASK_FORGOTTEN");
                forgotten += 1;
            }
        }
        assert_eq!(records.len() + forgotten, self.accepted.len(), "{ctx}");
        // No double completion.
        for (id, n) in &self.settled {
            assert!(*n <= 1, "{ctx}: task {id:?} settled {n} times");
        }
        // Liveness: a dispatched task settles (or goes back to the queue for a retry) within
        // its deadline plus the liveness interval of true time, whatever the host lost and
        // however its wall clock stepped — plus, on a host without a monotonic clock, what the
        // engine's clock lost to steps back meanwhile (the time since the reading before each).
        let now = self.true_now();
        let slack = config.liveness.interval_ms;
        for (id, (at, lost)) in &self.dispatched {
            let Some(r) = self.o.tasks().get(*id) else {
                continue;
            };
            if r.state.is_settled() {
                continue;
            }
            let lost = self.clocks.lost - lost;
            assert!(
                now <= at + r.spec.deadline_ms + slack + lost,
                "{ctx}: task {id:?} dispatched at {at} still {} at {now} ({lost} ms lost to steps)",
                r.state.name()
            );
        }
        // No leaked permit: live permits are held exactly by tasks in started states.
        let (issued, released) = self.o.controller().permit_totals();
        // (A slot keeps the permit of a lender that settled while work still ran on it.)
        let holding = records.values().filter(|s| s.holds_permit()).count() as u64
            + self.o.kept_permits() as u64
            + self.o.runs().counts().1 as u64;
        if issued - released != holding {
            let lanes: Vec<(String, u32)> = self
                .o
                .controller()
                .stats(self.clocks.engine.now())
                .lanes
                .into_iter()
                .map(|l| (l.name, l.in_use))
                .collect();
            let states: Vec<String> = self
                .o
                .tasks()
                .all()
                .iter()
                .map(|r| format!("{}:{}:{}", r.id.get(), r.spec.agent, r.state.name()))
                .collect();
            panic!(
                "{ctx}: permits {} held, {holding} holders\nlanes {lanes:?}\nstates {states:?}",
                issued - released
            );
        }
        // No limit exceeded. After a restore, a parent that was lending its slot and its child
        // both hold adopted permits (the engine cannot know the parent's session is blocked);
        // the parent makes no request, so it is not counted here (the server-side count below
        // holds without exception).
        let blocked_restored: Vec<String> = self
            .blocked
            .iter()
            .filter(|(_, s)| self.host.is_busy(s) && !self.host.is_requesting(s))
            .filter_map(|(id, _)| self.o.tasks().get(*id))
            .filter(|r| matches!(r.state, TaskState::Unknown { .. }) || r.state.holds_permit())
            .map(|r| r.spec.agent)
            .collect();
        for lane in self.o.controller().stats(self.clocks.engine.now()).lanes {
            let limit = config.lanes()[&lane.name];
            let exempt = blocked_restored
                .iter()
                .filter(|a| {
                    **a == lane.name || (lane.name == "other" && !config.lanes().contains_key(*a))
                })
                .count() as u32;
            assert!(
                lane.in_use <= limit + exempt,
                "{ctx}: lane {} {} > {limit}",
                lane.name,
                lane.in_use
            );
        }
        // The executor: no task placed twice, every slot's tasks open and knowing their slot,
        // no free slot while its lane has a child it could start.
        let engine_now = self.clocks.engine.now();
        if let Err(e) = self.o.check_slots(engine_now) {
            panic!("{ctx}: executor: {e}");
        }
        // No session with two turns at once: one open task per session.
        let mut turns: HashMap<SessionId, TaskId> = HashMap::new();
        for (id, state) in &records {
            if state.is_settled() {
                continue;
            }
            if let Some(s) = state.session() {
                if let Some(other) = turns.insert(s.clone(), *id) {
                    panic!("{ctx}: session {s:?} runs {other:?} and {id:?} at once");
                }
            }
        }
        // No lane over its limit at the server: model requests in flight (sessions busy and
        // not blocked in a tool call) of each lane's open tasks — a lent slot counts once,
        // since its lender makes no request while it waits.
        let mut requesting: HashMap<String, u32> = HashMap::new();
        for (s, id) in &turns {
            if self.host.is_requesting(s) {
                let agent = self.o.tasks().get(*id).unwrap().spec.agent;
                let lane = if config.lanes().contains_key(&agent) {
                    agent
                } else {
                    "other".to_owned()
                };
                *requesting.entry(lane).or_default() += 1;
            }
        }
        for (lane, n) in &requesting {
            let limit = config.lanes()[lane];
            assert!(
                *n <= limit,
                "{ctx}: lane {lane}: {n} model requests in flight at the server > {limit}"
            );
        }
        // No orphan session: every live session is owned by the pool, or was lost in a crash
        // before its creation was answered.
        let in_flight: HashSet<SessionId> = self
            .held
            .iter()
            .filter_map(|d| match d {
                Delivery::Answer(
                    _,
                    foreman::HostOutcome::Ok(foreman::HostReply::SessionCreated(s)),
                ) => Some(s.clone()),
                _ => None,
            })
            .collect();
        for s in self.host.sessions_alive() {
            if self.o.pool().state(&s).is_none()
                && !self.lost_to_crash.contains(&s)
                && !in_flight.contains(&s)
            {
                let history: Vec<String> = self
                    .host
                    .started()
                    .iter()
                    .filter(|r| {
                        r.op.session() == Some(&s)
                            || matches!(&r.op, foreman::HostOp::CreateSession { .. })
                    })
                    .map(|r| format!("{:?}", r))
                    .collect();
                let tasks: Vec<String> = self
                    .o
                    .tasks()
                    .all()
                    .iter()
                    .filter(|r| r.state.session() == Some(&s))
                    .map(|r| format!("{:?}", r.state))
                    .collect();
                panic!("{ctx}: orphan session {s:?}\nrequests: {history:#?}\ntasks: {tasks:?}");
            }
        }
        assert_eq!(
            self.host.violations(),
            fake_violations_none(),
            "{ctx}: misuse of the server"
        );
    }
}

fn run(seed: u64, ops: usize) -> (usize, u32) {
    let mut config = Config::default();
    // Odd seeds forget settled tasks early (a few kept, for a minute), so restores, dependents
    // and idempotency keys meet forgotten tasks.
    if seed % 2 == 1 {
        config.retention.max_tasks = (seed % 7) as u32;
        config.retention.max_age_ms = 60_000;
    }
    let host = FakeHost::new(seed);
    host.set_prompt_profile(
        "*",
        PromptProfile {
            median_ms: 4_000,
            sigma: 0.7,
            gap_max_ms: 3_000,
            failure_rate: 0.05,
            rate_limit_rate: 0.1,
            hang_rate: 0.03,
            rate_limit_fail_rate: 0.02,
        },
    );
    host.set_memory_per_busy(20 << 20);
    let mut w = World {
        seed,
        host,
        o: Engine::new(&config, seed),
        instance: 0,
        routes: HashMap::new(),
        next_host_call: 0,
        lost_to_crash: HashSet::new(),
        settled: HashMap::new(),
        accepted: Vec::new(),
        rng: fastrand::Rng::with_seed(seed ^ 0xBAD_0057),
        held: Vec::new(),
        dispatched: HashMap::new(),
        clocks: Clocks::new(seed % 4 != 3),
        mischief: [0; 5],
        blocked: HashMap::new(),
        nested: [0; 3],
        runs: BTreeMap::new(),
        run_counts: [0; 3],
    };
    let mut rng = fastrand::Rng::with_seed(seed);
    let agents = ["planner", "worker", "reviewer", "explorer"];
    let models = [None, Some("a/one"), Some("b/two")];
    let mut crashes = 0;
    let mut last_checked_instance = 0;
    for op in 0..ops {
        match rng.u32(0..100) {
            0..=29 => {
                let mut spec = TaskSpec::new(agents[rng.usize(0..4)], "work");
                spec.priority = Priority::ALL[rng.usize(0..3)];
                spec.model = models[rng.usize(0..3)].map(str::to_owned);
                spec.deadline_ms = rng.u64(20_000..120_000);
                spec.retries = rng.u32(0..2);
                spec.fail_fast = rng.u32(0..10) == 0;
                if !w.accepted.is_empty() && rng.u32(0..4) == 0 {
                    spec.depends_on = vec![w.accepted[rng.usize(0..w.accepted.len())]];
                }
                // A follow-up continues its predecessor's session when that one is parked: its
                // reply is told from the predecessor's by the stamp, across clock steps.
                if !w.accepted.is_empty() && rng.u32(0..4) == 0 {
                    spec.follow_up_of = Some(w.accepted[rng.usize(0..w.accepted.len())]);
                }
                if rng.u32(0..20) == 0 {
                    spec.idempotency_key = Some(format!("k{}", rng.u32(0..50)));
                }
                let now = w.now();
                match w.o.submit(now, spec) {
                    Ok(id) => {
                        if !w.accepted.contains(&id) {
                            w.accepted.push(id);
                        }
                    }
                    // A dependency forgotten by retention is refused by name.
                    Err(e) if e.code() == "INVALID_INPUT" => {
                        assert!(
                            e.to_string().contains("forgotten"),
                            "seed {seed}, op {op}: {e}"
                        );
                    }
                    Err(e) => assert!(
                        matches!(e.code(), "MEMORY_PRESSURE" | "BREAKER_OPEN"),
                        "seed {seed}, op {op}: {e}"
                    ),
                }
            }
            30..=39 => {
                if !w.accepted.is_empty() {
                    let id = w.accepted[rng.usize(0..w.accepted.len())];
                    let now = w.now();
                    if let Err(e) = w.o.cancel(now, id) {
                        assert_eq!(e.code(), "TASK_FORGOTTEN", "seed {seed}, op {op}");
                    }
                }
            }
            40..=44 => {
                let used = rng.u64(500..950);
                let now = w.now();
                w.o.observe_memory(now, MemoryReading::new(used, 1_000).unwrap());
            }
            45 => {
                // The instance is lost; a new one restores from the journal the host kept.
                let export = w.o.tasks().store().journal().export(1);
                let head = w.o.tasks().store().journal().head();
                w.clocks.restart(); // a new process: its engine's clock starts again
                let now = w.now();
                let (o, _) =
                    Engine::restore(&config, seed + op as u64, &export, head, now).unwrap();
                w.o = o;
                w.instance += 1;
                crashes += 1;
                w.dispatched.clear(); // a restored task's clock starts again at reconciliation
                w.runs.clear(); // run tasks live only as long as their caller's promise
                // The lost instance's delegation tool calls never return: those parents stay
                // blocked until their deadline aborts them. The new instance knows nothing of
                // the lending (it is not journaled).
            }
            49..=53 => {
                // Nested work: a running task whose turn makes a model request delegates 1-4
                // children in its lane and waits on them (joins): its session blocks in the tool
                // call until the engine reports it has its slot again.
                let running: Vec<(TaskId, SessionId, String)> = w
                    .accepted
                    .iter()
                    .filter(|id| !w.blocked.contains_key(id))
                    .filter_map(|id| {
                        let r = w.o.tasks().get(*id)?;
                        let s = r.state.session()?.clone();
                        (!r.state.is_settled() && w.host.is_requesting(&s)).then_some((
                            *id,
                            s,
                            r.spec.agent,
                        ))
                    })
                    .collect();
                if !running.is_empty() {
                    let (parent, session, agent) = running[rng.usize(0..running.len())].clone();
                    let mut children = Vec::new();
                    for _ in 0..rng.usize(1..=4) {
                        let mut spec = TaskSpec::new(agent.clone(), "child");
                        spec.parent = Some(session.clone());
                        spec.model = models[rng.usize(0..3)].map(str::to_owned);
                        spec.deadline_ms = rng.u64(20_000..120_000);
                        let now = w.now();
                        match w.o.submit(now, spec) {
                            Ok(id) => {
                                w.accepted.push(id);
                                children.push(id);
                            }
                            Err(e) => assert!(
                                matches!(e.code(), "MEMORY_PRESSURE" | "BREAKER_OPEN"),
                                "seed {seed}, op {op}: {e}"
                            ),
                        }
                    }
                    let now = w.now();
                    let lenders = w.o.join(now, &children).unwrap();
                    w.flush();
                    if lenders.contains(&parent) && w.o.is_lending(parent) {
                        assert!(w.host.block(&session), "seed {seed}, op {op}");
                        w.blocked.insert(parent, session);
                        w.nested[0] += 1;
                    }
                }
            }
            54..=60 => {
                // `run()` work: start a run (a child of a working run, in its lane or another,
                // half the time), join a working run's open children, or end a working run
                // (a failure now and then), as run.js would.
                let working: Vec<RunId> = w
                    .runs
                    .iter()
                    .filter(|(_, r)| r.phase == RunPhase::Working)
                    .map(|(id, _)| *id)
                    .collect();
                let now = w.now();
                match rng.u32(0..3) {
                    0 => {
                        let request = RunRequest {
                            lane: w.o.run_lane(agents[rng.usize(0..4)]),
                            key: None,
                            priority: Priority::ALL[rng.usize(0..3)],
                            fail_fast: false,
                            deadline_ms: (rng.u32(0..8) == 0).then(|| rng.u64(1_000..30_000)),
                        };
                        let parent = (!working.is_empty() && rng.u32(0..4) != 0)
                            .then(|| working[rng.usize(0..working.len())]);
                        let started = match parent {
                            Some(p) => w.o.run_submit_child(now, request, p),
                            None => w.o.run_submit(now, request),
                        };
                        match started {
                            Ok(id) => {
                                let run = ModelRun {
                                    phase: RunPhase::Waiting,
                                    parent,
                                };
                                w.runs.insert(id, run);
                                w.run_counts[0] += u64::from(parent.is_some());
                            }
                            Err(e) => assert!(
                                matches!(e.code(), "MEMORY_PRESSURE" | "BREAKER_OPEN"),
                                "seed {seed}, op {op}: {e}"
                            ),
                        }
                    }
                    1 if !working.is_empty() => {
                        let parent = working[rng.usize(0..working.len())];
                        let kids: Vec<RunId> = w
                            .runs
                            .iter()
                            .filter(|(_, r)| r.parent == Some(parent))
                            .map(|(id, _)| *id)
                            .collect();
                        if w.o.run_join(now, parent, &kids) {
                            w.runs.get_mut(&parent).unwrap().phase = RunPhase::Joined;
                            w.run_counts[1] += 1;
                        } else {
                            assert!(kids.is_empty(), "seed {seed}, op {op}: open children");
                        }
                    }
                    _ if !working.is_empty() => {
                        let id = working[rng.usize(0..working.len())];
                        let outcome = if rng.u32(0..10) == 0 {
                            Outcome::Failed(FailureClass::Upstream)
                        } else {
                            Outcome::Success
                        };
                        w.o.run_end(now, id, outcome).unwrap();
                        w.runs.remove(&id);
                    }
                    _ => {}
                }
            }
            46 => {
                // NTP steps the wall clock back, for good (by up to 30 s), within the next 5 s:
                // between two readings of the host.
                let t = w.true_now();
                if !w.clocks.stepping(t) {
                    let at = t + rng.u64(0..5_000);
                    w.clocks.step(at, -(rng.i64(1_000..30_000)), None);
                    w.clocks.steps[0] += 1;
                }
            }
            47 if w.clocks.monotonic => {
                // One reading of the host's wall clock a day ahead.
                w.clocks.once = Some(DAY);
                w.clocks.steps[1] += 1;
            }
            48 if w.clocks.monotonic => {
                // The machine's wall clock a day ahead for a while (up to a minute), then back.
                let t = w.true_now();
                if !w.clocks.stepping(t) {
                    let at = t + rng.u64(0..5_000);
                    let until = at + rng.u64(1..60_000);
                    w.clocks.step(at, DAY, Some(until));
                    w.clocks.steps[2] += 1;
                }
            }
            _ => {
                let ms = rng.u64(1..8_000);
                w.advance(ms);
            }
        }
        w.flush();
        w.poll_runs();
        // Double completions are counted at every step; the full check (which reads every
        // record) runs every 25 operations and after every crash.
        assert!(
            w.settled.values().all(|n| *n <= 1),
            "seed {seed}, op {op}: a task settled twice"
        );
        if op % 25 == 0 || w.instance != last_checked_instance {
            w.check(seed, op, &config);
            last_checked_instance = w.instance;
        }
    }
    // Drain: nothing new; every run's function ends (children before the parents waiting on
    // them), then everything settles.
    for _ in 0..10_000 {
        w.poll_runs();
        let working = w
            .runs
            .iter()
            .find(|(_, r)| r.phase == RunPhase::Working)
            .map(|(id, _)| *id);
        match working {
            Some(id) => {
                let now = w.now();
                w.o.run_end(now, id, Outcome::Success).unwrap();
                w.runs.remove(&id);
                w.flush();
            }
            // Runs waiting on time (the memory gate's reading going stale, a deadline).
            None if !w.runs.is_empty() => w.advance(60_000),
            None => break,
        }
    }
    w.advance(3_600_000);
    w.poll_runs();
    assert!(
        w.runs.is_empty(),
        "seed {seed}: runs never started or resumed: {:?}",
        w.runs
    );
    w.check(seed, ops, &config);
    // And no session the engine knows of is left on the server past the pool's retirement.
    let left: Vec<SessionId> = w
        .host
        .sessions_alive()
        .into_iter()
        .filter(|s| !w.lost_to_crash.contains(s))
        .collect();
    assert!(
        left.is_empty(),
        "seed {seed}: sessions left after the drain: {left:?} ({:?})",
        left.iter().map(|s| w.o.pool().state(s)).collect::<Vec<_>>()
    );
    let open = w.o.open_tasks();
    let m = w.mischief;
    let c = w.clocks.steps;
    println!(
        "seed {seed}: host lost {} events, repeated {}, reordered {}; dropped {} answers, delayed {}; \
         wall clock ({}) stepped back {} times, a day ahead for one reading {}, for a while {}; \
         engine time lost to steps {} ms; {} parents joined children, {} resumed; \
         {} run children, {} run joins, {} resumed",
        m[0],
        m[1],
        m[2],
        m[3],
        m[4],
        if w.clocks.monotonic {
            "with a monotonic clock"
        } else {
            "alone"
        },
        c[0],
        c[1],
        c[2],
        w.clocks.lost,
        w.nested[0],
        w.nested[1],
        w.run_counts[0],
        w.run_counts[1],
        w.run_counts[2]
    );
    (open, crashes)
}

/// Operations per run: a run is one engine (restored across its crashes) and one simulated
/// server. The total is split into runs so the live state stays small enough to check every
/// record every 25 operations; across runs, each seed gives a different world.
const OPS_PER_RUN: usize = 10_000;

#[test]
fn random_operations_with_crashes_keep_every_invariant() {
    // Debug builds (plain `cargo test`) run a short pass; `make test` also runs this file in
    // release with the full count: 1,000,000 operations in 100 runs of 10,000.
    let total: usize = std::env::var("FOREMAN_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            1_500
        } else {
            1_000_000
        });
    let runs: Vec<(u64, usize)> = match std::env::var("FOREMAN_SEED") {
        Ok(s) => vec![(s.parse().expect("FOREMAN_SEED is a number"), total)],
        Err(_) => (0..total.div_ceil(OPS_PER_RUN))
            .map(|i| {
                let ops = OPS_PER_RUN.min(total - i * OPS_PER_RUN);
                (1 + i as u64, ops)
            })
            .collect(),
    };
    println!(
        "{} runs, seeds {}..={}, {total} operations",
        runs.len(),
        runs[0].0,
        runs[runs.len() - 1].0
    );
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let results: Vec<(u64, usize, usize, u32)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let mine: Vec<(u64, usize)> =
                    runs.iter().copied().skip(t).step_by(threads).collect();
                scope.spawn(move || {
                    mine.into_iter()
                        .map(|(seed, ops)| {
                            let (open, crashes) = run(seed, ops);
                            (seed, ops, open, crashes)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .expect("a run failed; its seed is in the message above")
            })
            .collect()
    });
    let ops: usize = results.iter().map(|r| r.1).sum();
    let crashes: u32 = results.iter().map(|r| r.3).sum();
    for (seed, _, open, _) in &results {
        assert_eq!(*open, 0, "seed {seed}: every task settled");
    }
    assert_eq!(ops, total);
    println!(
        "{ops} operations in {} runs, {crashes} crashes and restores, every task settled after the drain",
        results.len()
    );
}
