//! Nested work: a tree of depth 3 and fan-out 4 (1 root, 4 + 16 parents below it, 64 leaves:
//! 85 tasks) in a lane of 4 (the `other` lane), every parent waiting on its children, against
//! the simulated OpenCode server. A parent's turn starts, delegates its 4 children and joins
//! them (`Engine::join`; its session blocks in the tool call at the server and makes no model
//! request), and goes on only once the engine reports it has its slot again
//! (`Engine::take_resumed`), for a short summary. Leaves' turns are lognormal (median 20 s),
//! parents' summaries median 2 s, with σ 0 (every leaf alike: the tree as the goal states it),
//! 0.2, 0.5 and then 0.8 (agent_load's spread: with 85 tasks on 4 slots, a long leaf that
//! starts late is a visible tail no online order avoids); the gap before `busy` is up to 3 s
//! at every σ.
//!
//! Beside the engine's ratio, two references on the same tree and the same measured work, each
//! a list scheduler of 4 slots that pays nothing between pieces: a clairvoyant one (longest path
//! to the end first, knowing every duration) and a blind one (the tree's shape only). The goal
//! of 1.05 sits between them: no online order knows how long a turn will run.
//!
//! Printed per seed: the makespan against its lower bound — the larger of (total work / 4) and
//! the critical path (a node's work plus its slowest child's path), a task's work being its turn
//! (prompt sent → settled) less the time its session was blocked; the most model requests in
//! flight in the lane at the server (never above 4); and the share of independent tasks that
//! ran in a session that held another task's conversation. Then a conversation phase (3
//! conversations of 4 turns, each turn a follow-up of the last, 2 independent tasks per round,
//! one agent): the share of follow-ups that ran in their predecessor's session, and of
//! independent tasks in a session that had held a conversation (from the prompts each session
//! received at the server).
//!
//! Then the same tree through a plain FIFO semaphore of 4 (each task holds its permit for its
//! whole life, parents while they wait, as p-limit does): it deadlocks, which the model shows by
//! running into its time bound with every permit held by a waiting parent.
//! Run with `make bench`; a simulation on a fake clock, so the figures are exact per seed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{HashMap, HashSet, VecDeque};

use foreman::{
    Config, Delivery, Engine, FakeHost, Host, HostEvent, HostOp, PromptProfile, SessionId, TaskId,
    TaskSpec, TaskState,
};

const FAN_OUT: usize = 4;
const DEPTH: usize = 3;
const LIMIT: usize = 4;

/// Node `i` of the tree in breadth-first order: its children are `4i + 1 ..= 4i + 4`.
fn nodes() -> usize {
    (0..=DEPTH).map(|d| FAN_OUT.pow(d as u32)).sum()
}

fn is_leaf(i: usize) -> bool {
    FAN_OUT * i + 1 >= nodes()
}

struct Sim {
    host: FakeHost,
    o: Engine,
    /// Node of each task, task of each node.
    node_of: HashMap<TaskId, usize>,
    task_of: HashMap<usize, TaskId>,
    /// Session → task, from the prompts sent.
    session_task: HashMap<SessionId, TaskId>,
    prompted_at: HashMap<TaskId, u64>,
    /// Blocked since, and blocked in all, per task.
    blocked_since: HashMap<TaskId, u64>,
    blocked: HashMap<TaskId, u64>,
    /// A parent's turn before it blocked (prompt sent → children delegated).
    before_block: HashMap<TaskId, u64>,
    delegated: HashSet<TaskId>,
    /// Sessions that held a conversation, and prompts into such a session.
    used_sessions: HashSet<SessionId>,
    reused: Vec<(TaskId, SessionId)>,
    most_requesting: usize,
}

impl Sim {
    fn new(seed: u64, sigma: f64) -> Self {
        let host = FakeHost::new(seed);
        let profile = |median_ms| PromptProfile {
            median_ms,
            sigma,
            gap_max_ms: 3_000,
            ..PromptProfile::default()
        };
        host.set_prompt_profile("leaf", profile(20_000));
        host.set_prompt_profile("parent", profile(2_000));
        Sim {
            host,
            o: Engine::new(&Config::default(), seed),
            node_of: HashMap::new(),
            task_of: HashMap::new(),
            session_task: HashMap::new(),
            prompted_at: HashMap::new(),
            blocked_since: HashMap::new(),
            blocked: HashMap::new(),
            before_block: HashMap::new(),
            delegated: HashSet::new(),
            used_sessions: HashSet::new(),
            reused: Vec::new(),
            most_requesting: 0,
        }
    }

    fn now(&self) -> u64 {
        self.host.now_ms().unwrap()
    }

    fn submit(&mut self, node: usize, parent: Option<SessionId>) -> TaskId {
        let agent = if is_leaf(node) { "leaf" } else { "parent" };
        let mut spec = TaskSpec::new(agent, format!("node {node}"));
        spec.parent = parent;
        let id = self.o.submit(self.now(), spec).unwrap();
        self.node_of.insert(id, node);
        self.task_of.insert(node, id);
        id
    }

    /// Starts what the engine asked for; unblocks parents it resumed.
    fn flush(&mut self) {
        let t = self.now();
        for r in self.o.take_requests() {
            if let HostOp::Prompt { session, .. } = &r.op {
                let task = self.task_of_prompt(&r.op);
                if !self.used_sessions.insert(session.clone()) {
                    self.reused.push((task, session.clone()));
                }
                self.session_task.insert(session.clone(), task);
                self.prompted_at.insert(task, t);
            }
            self.host.start(r);
        }
        for parent in self.o.take_resumed() {
            if let Some(since) = self.blocked_since.remove(&parent) {
                *self.blocked.entry(parent).or_default() += t - since;
                let session = self.session_of(parent).unwrap();
                assert!(self.host.unblock(&session));
            }
        }
    }

    fn task_of_prompt(&self, op: &HostOp) -> TaskId {
        let HostOp::Prompt { text, .. } = op else {
            unreachable!()
        };
        // Prompts are unique per task ("node i" or "follow-up i" / "alone i").
        self.o
            .tasks()
            .all()
            .into_iter()
            .filter(|r| !r.state.is_settled() && r.spec.prompt == *text)
            .map(|r| r.id)
            .next()
            .unwrap()
    }

    fn session_of(&self, task: TaskId) -> Option<SessionId> {
        self.o.tasks().get(task)?.state.session().cloned()
    }

    /// A parent's turn started: it delegates its children and waits on them.
    fn busy(&mut self, session: SessionId) {
        let Some(&task) = self.session_task.get(&session) else {
            return;
        };
        let Some(&node) = self.node_of.get(&task) else {
            return;
        };
        if is_leaf(node) || !self.delegated.insert(task) {
            return;
        }
        let children: Vec<TaskId> = (1..=FAN_OUT)
            .map(|k| self.submit(FAN_OUT * node + k, Some(session.clone())))
            .collect();
        assert!(self.host.block(&session));
        self.blocked_since.insert(task, self.now());
        self.before_block
            .insert(task, self.now() - self.prompted_at[&task]);
        let lenders = self.o.join(self.now(), &children).unwrap();
        assert_eq!(lenders, vec![task]);
    }

    fn requesting(&self) -> usize {
        self.session_task
            .keys()
            .filter(|s| self.host.is_requesting(s))
            .count()
    }

    /// Drives until every task settled.
    fn drain(&mut self) {
        loop {
            self.flush();
            if self.o.open_tasks() == 0 {
                break;
            }
            let now = self.now();
            let next = [self.host.next_due(), self.o.next_deadline(now)]
                .into_iter()
                .flatten()
                .min()
                .expect("stalled: nothing due while tasks are open")
                .max(now);
            for d in self.host.advance(next - now) {
                let t = self.now();
                match d {
                    Delivery::Answer(call, outcome) => self.o.on_answer(t, call, outcome).unwrap(),
                    Delivery::Event(e) => {
                        let busy = match &e {
                            HostEvent::Busy(s) => Some(s.clone()),
                            _ => None,
                        };
                        self.o.on_event(t, e).unwrap();
                        self.flush();
                        if let Some(s) = busy {
                            self.busy(s);
                        }
                    }
                }
                self.flush();
                self.most_requesting = self.most_requesting.max(self.requesting());
                if let Err(e) = self.o.check_slots(t) {
                    panic!("at {t} ms: {e}");
                }
            }
            let t = self.now();
            self.o.tick(t).unwrap();
        }
    }

    /// Work of `task`: its turn less the time it was blocked.
    fn work(&self, task: TaskId) -> u64 {
        let r = self.o.tasks().get(task).unwrap();
        assert!(
            matches!(r.state, TaskState::Succeeded { .. }),
            "{task:?} ended {:?}",
            r.state
        );
        r.updated_ms - self.prompted_at[&task] - self.blocked.get(&task).copied().unwrap_or(0)
    }

    /// The critical path below and including `node`.
    fn path(&self, node: usize) -> u64 {
        let own = self.work(self.task_of[&node]);
        if is_leaf(node) {
            return own;
        }
        own + (1..=FAN_OUT)
            .map(|k| self.path(FAN_OUT * node + k))
            .max()
            .unwrap()
    }
}

/// A clairvoyant reference on the same tree and the same measured work: 4 slots, and each idle
/// slot takes the ready piece with the longest path to the end (a parent's turn up to its
/// delegation, a leaf, a parent's summary), knowing every duration in advance and paying
/// nothing between pieces. No online scheduler knows the durations; its makespan over the same
/// lower bound shows how much of the gap is the tail of the durations rather than the engine.
///
/// With `know` false it is the blind reference instead: the same zero-cost list scheduler
/// without durations, ranking pieces by the tree's shape only (summaries first, then parents'
/// turns shallowest first, then leaves): what any online order could hope for at best,
/// engine costs aside.
fn clairvoyant(sim: &Sim, know: bool) -> u64 {
    let n = nodes();
    let work: Vec<u64> = (0..n).map(|i| sim.work(sim.task_of[&i])).collect();
    let before: Vec<u64> = (0..n)
        .map(|i| match sim.before_block.get(&sim.task_of[&i]) {
            Some(&b) if !is_leaf(i) => b.min(work[i]),
            _ => work[i],
        })
        .collect();
    // (rank, node, is the summary) of pieces ready to run; (end, node, is the summary) running.
    let depth = |mut i: usize| {
        let mut d = 0;
        while i > 0 {
            i = (i - 1) / FAN_OUT;
            d += 1;
        }
        d
    };
    let rank = |i: usize| {
        if know {
            sim.path(i)
        } else {
            100 * (DEPTH - depth(i)) as u64 + 1
        }
    };
    let mut ready = vec![(rank(0), 0, false)];
    let mut running: Vec<(u64, usize, bool)> = Vec::new();
    let mut left = vec![FAN_OUT; n];
    let mut now = 0;
    loop {
        while running.len() < LIMIT && !ready.is_empty() {
            let best = (0..ready.len()).max_by_key(|&k| ready[k].0).unwrap();
            let (_, node, summary) = ready.swap_remove(best);
            let took = if summary {
                work[node] - before[node]
            } else {
                before[node]
            };
            running.push((now + took, node, summary));
        }
        let Some(first) = (0..running.len()).min_by_key(|&k| running[k].0) else {
            return now;
        };
        let (end, node, summary) = running.swap_remove(first);
        now = end;
        if !summary && !is_leaf(node) {
            ready.extend((1..=FAN_OUT).map(|k| {
                let child = FAN_OUT * node + k;
                (rank(child), child, false)
            }));
        } else if node > 0 {
            let parent = (node - 1) / FAN_OUT;
            left[parent] -= 1;
            if left[parent] == 0 {
                let post = work[parent] - before[parent];
                ready.push((if know { post } else { 1000 }, parent, true));
            }
        }
    }
}

struct Tree {
    ratio: f64,
    /// The clairvoyant and the blind references' makespans over the same bound.
    clairvoyant: f64,
    blind: f64,
    makespan_s: f64,
    bound_s: f64,
    most_requesting: usize,
    reused: usize,
}

fn tree(seed: u64, sigma: f64) -> (Tree, Sim) {
    let mut sim = Sim::new(seed, sigma);
    let start = sim.now();
    sim.submit(0, None);
    sim.drain();
    let end = (0..nodes())
        .map(|n| sim.o.tasks().get(sim.task_of[&n]).unwrap().updated_ms)
        .max()
        .unwrap();
    let total: u64 = (0..nodes()).map(|n| sim.work(sim.task_of[&n])).sum();
    let bound = (total as f64 / LIMIT as f64).max(sim.path(0) as f64);
    let makespan = (end - start) as f64;
    let t = Tree {
        ratio: makespan / bound,
        clairvoyant: clairvoyant(&sim, true) as f64 / bound,
        blind: clairvoyant(&sim, false) as f64 / bound,
        makespan_s: makespan / 1e3,
        bound_s: bound / 1e3,
        most_requesting: sim.most_requesting,
        reused: sim.reused.len(),
    };
    (t, sim)
}

/// Conversations: 3 of 4 turns each (every turn after the first a follow-up of the one before,
/// submitted once it succeeded), and 2 independent tasks alongside each round, all of one agent
/// (so one pool): (follow-ups in their predecessor's session, follow-ups, independent tasks in a
/// session that held a conversation, independent tasks).
fn follow_ups(sim: &mut Sim) -> (usize, usize, usize, usize) {
    sim.reused.clear();
    let mut last: Vec<Option<TaskId>> = vec![None; 3];
    let (mut own, mut follows) = (0, 0);
    let mut alone = HashSet::new();
    for round in 0..4 {
        let mut this_round = Vec::new();
        for (c, prev) in last.iter_mut().enumerate() {
            let mut spec = TaskSpec::new("talk", format!("conversation {c} turn {round}"));
            spec.follow_up_of = *prev;
            let id = sim.o.submit(sim.now(), spec).unwrap();
            this_round.push((id, prev.and_then(|p| sim.session_of(p))));
            *prev = Some(id);
        }
        for k in 0..2 {
            let spec = TaskSpec::new("talk", format!("alone {round} {k}"));
            alone.insert(sim.o.submit(sim.now(), spec).unwrap());
        }
        sim.drain();
        for (id, before) in this_round {
            if let Some(before) = before {
                follows += 1;
                own += usize::from(sim.session_of(id) == Some(before));
            }
        }
    }
    let alone_reused = sim.reused.iter().filter(|(t, _)| alone.contains(t)).count();
    (own, follows, alone_reused, alone.len())
}

/// A plain FIFO semaphore of 4 running the same tree: a task takes a permit to start and holds
/// it until it ends; a parent spawns its children at its start and ends only after all of them
/// (its summary after). Event-driven on a fake clock, bounded by `limit_ms`. Returns the time
/// it stopped, tasks finished, and permits held by parents waiting on children then.
fn semaphore(seed: u64, limit_ms: u64) -> (u64, usize, usize) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut lognormal = |median: f64| {
        let (u1, u2) = (1.0 - rng.f64(), rng.f64());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (median * (0.8 * z).exp()).max(1.0) as u64
    };
    let n = nodes();
    let mut queue: VecDeque<usize> = VecDeque::from([0]);
    let mut permits = LIMIT;
    // (time it ends, node) of running work; parents waiting hold their permit.
    let mut running: Vec<(u64, usize)> = Vec::new();
    let mut left_children = vec![0usize; n];
    let mut waiting_parents = 0usize;
    let mut done = 0usize;
    let mut now = 0u64;
    loop {
        while permits > 0 {
            let Some(node) = queue.pop_front() else { break };
            permits -= 1;
            if is_leaf(node) {
                running.push((now + lognormal(20_000.0), node));
            } else {
                left_children[node] = FAN_OUT;
                waiting_parents += 1;
                queue.extend((1..=FAN_OUT).map(|k| FAN_OUT * node + k));
            }
        }
        running.sort_by_key(|&(t, _)| std::cmp::Reverse(t));
        let Some((t, node)) = running.pop() else {
            // Nothing runs: every permit is held by a parent waiting for children that wait
            // for a permit. Time passes with nothing happening until the bound.
            return (limit_ms, done, waiting_parents);
        };
        if t > limit_ms {
            return (limit_ms, done, waiting_parents);
        }
        now = t;
        done += 1;
        permits += 1;
        if node > 0 {
            let parent = (node - 1) / FAN_OUT;
            left_children[parent] -= 1;
            if left_children[parent] == 0 {
                // Its summary runs on the permit it held all along.
                permits -= 1;
                waiting_parents -= 1;
                running.push((now + lognormal(2_000.0), parent));
            }
        }
        if done == n {
            return (now, done, 0);
        }
    }
}

fn main() {
    let n = nodes();
    println!(
        "nested work: a tree of depth {DEPTH}, fan-out {FAN_OUT} ({n} tasks: 1 + 4 + 16 + 64), \
         every parent waiting on its children, lane of {LIMIT}"
    );
    let mut last = None;
    for sigma in [0.0, 0.2, 0.5, 0.8] {
        println!("turn times lognormal, σ {sigma}");
        println!(
            "seed  makespan s  lower bound s  ratio   clairvoyant   blind  most in flight  \
             reused sessions"
        );
        let (mut ratios, mut oracle, mut blind) = (Vec::new(), Vec::new(), Vec::new());
        for seed in 1..=9 {
            let (t, sim) = tree(seed, sigma);
            println!(
                "{seed:>4}  {:>10.1}  {:>13.1}  {:>6.4}  {:>11.4}  {:>6.4}  {:>14}  {:>15}",
                t.makespan_s,
                t.bound_s,
                t.ratio,
                t.clairvoyant,
                t.blind,
                t.most_requesting,
                t.reused
            );
            oracle.push(t.clairvoyant);
            blind.push(t.blind);
            assert!(t.most_requesting <= LIMIT, "the lane went over its limit");
            ratios.push(t.ratio);
            last = Some((t, sim));
        }
        let spread = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            format!("median {:.4}, worst {:.4}", v[v.len() / 2], v[v.len() - 1])
        };
        println!(
            "σ {sigma}: makespan / lower bound {} (goal ≤ 1.05); clairvoyant reference {}; \
             blind reference {}",
            spread(&mut ratios),
            spread(&mut oracle),
            spread(&mut blind)
        );
    }
    let (_, mut sim) = last.unwrap();
    let (own, follows, alone_reused, alone) = follow_ups(&mut sim);
    println!(
        "follow-ups in their predecessor's session: {own}/{follows} ({:.0} %); independent \
         tasks in a session that held another task's conversation: {alone_reused}/{alone} \
         ({:.0} %) — counted at the server, from the prompts each session received",
        100.0 * own as f64 / follows as f64,
        100.0 * alone_reused as f64 / alone as f64
    );
    let bound_ms = 3_600_000;
    let (stopped, done, held) = semaphore(1, bound_ms);
    if done == n {
        println!(
            "plain FIFO semaphore of {LIMIT}: finished at {:.1} s",
            stopped as f64 / 1e3
        );
    } else {
        println!(
            "plain FIFO semaphore of {LIMIT}: DEADLOCK — {done}/{n} tasks finished when the \
             {:.0} s bound ran out, {held} permits of {LIMIT} held by parents waiting on \
             children that wait for a permit",
            stopped as f64 / 1e3
        );
    }
}
