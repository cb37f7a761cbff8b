//! The concurrency controller: who may start, when.
//!
//! A task asks to start with its lane (from its agent type), its provider/model key (optional)
//! and a priority. It starts — is *admitted* and gets a [`Permit`] — when its lane has a free
//! slot under the lane's effective limit, its key (if limited) has one too, the key's breaker
//! lets it through, and, for LOW work, the memory gate is open. Everything is driven by the
//! caller: `submit`, `cancel`, `complete`, `observe_memory` change state, and `admit(now)`
//! returns the tasks that may start now. Nothing here keeps a timer; `next_deadline` says when
//! the controller would decide differently by itself (an open breaker's end, a stale reading),
//! so the host arms at most one timer.
//!
//! **Ordering.** Waiters sit in one FIFO per (lane, key) class and priority level. Among the
//! waiters that may start, the controller admits the highest priority, oldest first — except
//! that a lower level which has waited through `low_every` (K, default 8) admissions of higher
//! levels in its lane goes next (LOW before NORMAL when both are due). So with `p` LOW waiters
//! ahead of it in its lane, a LOW waiter is admitted within `(p + 1)·(K + 1)` admissions in its
//! lane once it can run (gate open, key available); in time, with the lane saturated by tasks of
//! at most `D` ms on `C` slots, within `⌈(p + 1)·(K + 1) / C⌉·D` ms.
//!
//! Invariants:
//! 1. Live permits per lane (key) never exceed its effective limit at the time they were issued,
//!    and effective limits never exceed configured ones.
//! 2. Every task is in at most one place: waiting, or holding a permit. What waits or holds
//!    one is a [`Work`]: a sub-agent task or a run slot, each in its own id space. Ids are the
//!    caller's to keep unique, waiting or running (the engine allocates them: sub-agent tasks
//!    from a counter and a state machine that submits a task only while it holds no permit, run
//!    tasks from a slab of slots), so neither a backlog nor the running set costs a per-task
//!    index on the dispatch path.
//! 3. Among waiters of one class and level, admission order is submission order (FIFO), whatever
//!    is cancelled in between.
//! 4. Refusals at submit create nothing: `MemoryPressure` for LOW work while the gate is closed,
//!    `BreakerOpen` for `fail_fast` work while its key's breaker refuses.

mod breaker;
mod gate;
mod limiter;
mod limits;
mod permit;
mod queue;
mod slots;

use rustc_hash::FxHashMap as HashMap;
use std::rc::Rc;

pub use self::breaker::{Breaker, BreakerEvent, BreakerPhase, BreakerState, Outcome, Verdict};
pub(crate) use self::gate::Gate;
pub(crate) use self::limiter::Aimd;
pub use self::limits::{LimitCause, LimitChange, LimitScope};
pub use self::permit::Permit;
pub(crate) use self::queue::{List, MAX_NODES, Nodes};

use self::permit::Ledger;
use crate::config::{AimdConfig, BreakerConfig, Config};
use crate::error::Error;
pub use crate::ids::Work;
use crate::ids::{Priority, TaskId};

/// Most distinct provider/model keys one controller tracks.
pub(crate) const MAX_KEYS: usize = 1024;

/// What a task asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The task.
    pub task: TaskId,
    /// Its agent type; decides the lane.
    pub agent: &'a str,
    /// Its provider/model key, e.g. `anthropic/claude-sonnet-4`.
    pub key: Option<&'a str>,
    /// Its priority.
    pub priority: Priority,
    /// Refuse at once (`BreakerOpen`) instead of waiting while the key's breaker refuses.
    pub fail_fast: bool,
}

/// A lane, resolved once from an agent type's name ([`Controller::lane_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneId(usize);

impl LaneId {
    /// The lane's index, in the order of the configuration's lanes (the executor's too).
    pub(crate) fn index(self) -> usize {
        self.0
    }
}

/// A provider/model key, resolved (and registered) once from its name
/// ([`Controller::key_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyId(usize);

impl KeyId {
    /// The key's index (what a permit counts).
    pub(crate) fn index(self) -> usize {
        self.0
    }
}

/// What [`Controller::submit_or_admit`] did.
#[derive(Debug)]
pub enum Submitted {
    /// Admitted at once: the task may start.
    Admitted(Permit),
    /// Queued: it waits for [`Controller::admit`].
    Waiting(Ticket),
}

/// Work that may start now, with its permit.
#[derive(Debug)]
pub struct Admission {
    /// The task or run slot.
    pub work: Work,
    /// Its slot; drop it (or pass it to `complete`) when the task settles.
    pub permit: Permit,
}

#[derive(Debug)]
struct LaneState {
    name: String,
    limit: Aimd,
    queued: [u32; 3],
    /// Admissions of higher levels since each level was last served while it waited.
    debt: [u32; 3],
    /// The class of this lane's work without a key, once there is one (no hash lookup for the
    /// common case).
    plain: Option<usize>,
}

#[derive(Debug)]
struct KeyState {
    name: String,
    limit: Option<Aimd>,
    breaker: Breaker,
    queued: u32,
    /// The breaker's phase as last reported (see `take_breaker_changes`).
    reported: BreakerPhase,
}

#[derive(Debug)]
struct Class {
    lane: usize,
    key: Option<usize>,
    lists: [List; 3],
}

#[derive(Debug, Clone, Copy)]
struct Waiter {
    work: Work,
    seq: u64,
}

/// A waiting task's place in line: what `cancel` needs to unlink it in O(1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    class: u32,
    level: Priority,
    node: u32,
    seq: u64,
}

/// Per-lane figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneView {
    /// Lane name.
    pub name: String,
    /// Permits held.
    pub in_use: u32,
    /// Configured limit.
    pub limit: u32,
    /// Effective (adaptive) limit.
    pub effective: u32,
    /// Waiters per level, HIGH, NORMAL, LOW.
    pub queued: [u32; 3],
}

/// Per-key figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyView {
    /// Provider/model key.
    pub name: String,
    /// Permits held.
    pub in_use: u32,
    /// Configured limit, if any.
    pub limit: Option<u32>,
    /// Effective limit, if limited.
    pub effective: Option<u32>,
    /// Waiters for this key.
    pub queued: u32,
    /// Breaker state.
    pub breaker: BreakerState,
    /// When the breaker lets the next probe through, if it is open.
    pub next_probe_at: Option<u64>,
}

/// Memory-gate figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateView {
    /// Whether LOW work is refused now.
    pub closed: bool,
    /// Whether the last reading is stale (or missing).
    pub stale: bool,
    /// The last reading, per-mille of the limit.
    pub per_mille: Option<u64>,
}

/// A view of the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlStats {
    /// Lanes, in name order.
    pub lanes: Vec<LaneView>,
    /// Keys, in first-use order.
    pub keys: Vec<KeyView>,
    /// The memory gate.
    pub gate: GateView,
}

/// Admission order: (forced turn first, then level, then arrival); smaller goes first. The
/// third field is the waiter's node: its arrival is read only to break a tie between classes.
type Rank = (u8, u8, u32);

/// The controller. See the module docs.
#[derive(Debug)]
pub struct Controller {
    lanes: Vec<LaneState>,
    lane_index: HashMap<String, usize>,
    other_lane: usize,
    keys: Vec<KeyState>,
    key_index: HashMap<String, usize>,
    key_limits: HashMap<String, u32>,
    classes: Vec<Class>,
    class_index: HashMap<(usize, Option<usize>), usize>,
    nodes: Nodes<Waiter>,
    gate: Gate,
    ledger: Rc<Ledger>,
    breaker_config: BreakerConfig,
    aimd_config: AimdConfig,
    low_every: u32,
    seq: u64,
    rng: fastrand::Rng,
    /// Adaptive limit changes not taken yet (see `limits.rs`).
    limit_steps: std::collections::VecDeque<limits::Step>,
}

impl Controller {
    /// A controller for `config`; `seed` drives the breaker's jitter (deterministic per seed).
    pub fn new(config: &Config, seed: u64) -> Self {
        let lanes: Vec<LaneState> = config
            .lanes()
            .iter()
            .map(|(name, &limit)| LaneState {
                name: name.clone(),
                limit: Aimd::new(limit, config.adaptive),
                queued: [0; 3],
                debt: [0; 3],
                plain: None,
            })
            .collect();
        let lane_index: HashMap<String, usize> = lanes
            .iter()
            .enumerate()
            .map(|(i, l)| (l.name.clone(), i))
            .collect();
        let other_lane = lane_index
            .get(crate::config::OTHER_LANE)
            .copied()
            .unwrap_or(0);
        let ledger = Rc::new(Ledger::new(lanes.len(), MAX_KEYS));
        Controller {
            lanes,
            lane_index,
            other_lane,
            keys: Vec::new(),
            key_index: HashMap::default(),
            key_limits: config.keys().iter().map(|(k, v)| (k.clone(), *v)).collect(),
            classes: Vec::new(),
            class_index: HashMap::default(),
            nodes: Nodes::default(),
            gate: Gate::new(config.pressure),
            ledger,
            breaker_config: config.breaker,
            aimd_config: config.adaptive,
            low_every: config.low_every,
            seq: 0,
            rng: fastrand::Rng::with_seed(seed),
            limit_steps: Default::default(),
        }
    }

    /// Queues a task. Refuses LOW work while the memory gate is closed, and `fail_fast` work
    /// while its key's breaker refuses; a refusal queues nothing.
    pub fn submit(&mut self, now: u64, request: Request<'_>) -> Result<Ticket, Error> {
        let lane = self.lane_id(request.agent);
        let key = match request.key {
            Some(name) => Some(self.key_id(name)?),
            None => None,
        };
        self.submit_to(
            now,
            Work::Task(request.task),
            lane,
            key,
            request.priority,
            request.fail_fast,
        )
    }

    /// The lane `agent` runs in (its own, or `other`).
    pub fn lane_id(&self, agent: &str) -> LaneId {
        LaneId(
            self.lane_index
                .get(agent)
                .copied()
                .unwrap_or(self.other_lane),
        )
    }

    /// The name of `key`.
    pub fn key_name(&self, key: KeyId) -> &str {
        self.keys.get(key.0).map_or("", |k| k.name.as_str())
    }

    /// The key called `name`, registered on first use. Fails for a name that is empty or longer
    /// than 256 bytes, or past `MAX_KEYS` distinct keys.
    pub fn key_id(&mut self, name: &str) -> Result<KeyId, Error> {
        self.intern_key(name).map(KeyId)
    }

    /// [`Controller::submit_to`], admitting at once when that is what submitting and then
    /// calling [`Controller::admit`] would do for this task: nothing waits in its lane, the lane
    /// (and the key, if limited) has a free slot, and the key's breaker lets it through. Then
    /// the task never enters a queue (no node, no scan); otherwise it waits as with `submit_to`.
    /// Refusals are the same. Waiters of other lanes are not looked at: a submit never makes
    /// one admissible (releases and time do, and those call `admit`).
    #[inline]
    pub fn submit_or_admit(
        &mut self,
        now: u64,
        work: Work,
        lane_id: LaneId,
        key_id: Option<KeyId>,
        priority: Priority,
        fail_fast: bool,
    ) -> Result<Submitted, Error> {
        if let Some(permit) = self.try_admit(now, work, lane_id, key_id, priority) {
            return Ok(Submitted::Admitted(permit));
        }
        self.submit_to(now, work, lane_id, key_id, priority, fail_fast)
            .map(Submitted::Waiting)
    }

    /// [`Controller::submit`] with the lane and key already resolved (the dispatch path of run
    /// tasks: no name lookups per task).
    pub fn submit_to(
        &mut self,
        now: u64,
        work: Work,
        lane_id: LaneId,
        key_id: Option<KeyId>,
        priority: Priority,
        fail_fast: bool,
    ) -> Result<Ticket, Error> {
        self.collect_releases();
        let (lane, key) = self.resolve(lane_id, key_id);
        self.check_pressure(now, priority)?;
        if let Some(k) = key {
            if fail_fast {
                if let Verdict::Refuse { retry_at } = self.keys[k].breaker.check(now) {
                    return Err(Error::BreakerOpen {
                        key: self.keys[k].name.clone(),
                        retry_at_ms: retry_at,
                    });
                }
            }
            self.keys[k].queued += 1;
        }
        let class = self.class_of(lane, key);
        self.seq += 1;
        let level = priority;
        let waiter = Waiter {
            work,
            seq: self.seq,
        };
        let Ok(node) = self
            .nodes
            .push_back(&mut self.classes[class].lists[level.index()], waiter)
        else {
            if let Some(k) = key {
                self.keys[k].queued -= 1;
            }
            return Err(Error::QueueFull {
                limit: MAX_NODES as u64,
            });
        };
        self.lanes[lane].queued[level.index()] += 1;
        Ok(Ticket {
            class: class as u32,
            level,
            node,
            seq: self.seq,
        })
    }

    /// A permit for work that is already running without one (found running after a restore):
    /// issued at once, counted against the limits, so new work waits until it fits.
    pub fn adopt(&mut self, task: TaskId, agent: &str, key: Option<&str>) -> Result<Permit, Error> {
        self.collect_releases();
        let LaneId(lane) = self.lane_id(agent);
        let key = match key {
            Some(name) => Some(self.intern_key(name)?),
            None => None,
        };
        Ok(Permit::issue(
            &self.ledger,
            Work::Task(task),
            lane,
            key,
            false,
        ))
    }

    /// `MemoryPressure` for LOW work while the gate is closed.
    fn check_pressure(&self, now: u64, priority: Priority) -> Result<(), Error> {
        if priority == Priority::Low && self.gate.is_closed(now) {
            let (used, limit) = self
                .gate
                .last()
                .map_or((0, 0), |(_, r)| (r.used(), r.limit()));
            return Err(Error::MemoryPressure { used, limit });
        }
        Ok(())
    }

    /// The refusals `submit` would make for such a request, without queuing anything.
    pub fn check(
        &self,
        now: u64,
        agent: &str,
        key: Option<&str>,
        priority: Priority,
        fail_fast: bool,
    ) -> Result<(), Error> {
        let _ = agent; // every agent has a lane (its own or `other`)
        self.check_pressure(now, priority)?;
        if let (Some(name), true) = (key, fail_fast) {
            if let Some(&k) = self.key_index.get(name) {
                if let Verdict::Refuse { retry_at } = self.keys[k].breaker.check(now) {
                    return Err(Error::BreakerOpen {
                        key: name.to_owned(),
                        retry_at_ms: retry_at,
                    });
                }
            }
        }
        Ok(())
    }

    /// Removes the waiting task `ticket` names. Returns false when it is no longer waiting
    /// (admitted, or already cancelled); a running task is cancelled by settling it and dropping
    /// its permit.
    pub fn cancel(&mut self, ticket: Ticket) -> bool {
        self.collect_releases();
        // The sequence number is unique per submission: a stale ticket whose slot was reused by
        // another waiter does not match.
        if self
            .nodes
            .get(ticket.node)
            .is_none_or(|w| w.seq != ticket.seq)
        {
            return false;
        }
        let Some(class) = self.classes.get_mut(ticket.class as usize) else {
            return false;
        };
        if self
            .nodes
            .remove(&mut class.lists[ticket.level.index()], ticket.node)
            .is_none()
        {
            return false;
        }
        let (lane, key) = (class.lane, class.key);
        self.dequeued(lane, key, ticket.level);
        true
    }

    /// Admits every waiter that may start at `now`, in order. Call after any change.
    pub fn admit(&mut self, now: u64) -> Vec<Admission> {
        let mut admitted = Vec::new();
        self.admit_into(now, &mut admitted);
        admitted
    }

    /// [`Controller::admit`] into a vector the caller keeps (no allocation per call).
    pub fn admit_into(&mut self, now: u64, admitted: &mut Vec<Admission>) {
        self.collect_releases();
        if self.nodes.is_empty() {
            return; // nobody waits
        }
        let gate_closed = self.gate.is_closed(now);
        while let Some((class, level, verdict)) = self.best_candidate(now, gate_closed) {
            let c = &mut self.classes[class];
            let Some(waiter) = self.nodes.pop_front(&mut c.lists[level.index()]) else {
                break;
            };
            let (lane, key) = (c.lane, c.key);
            self.dequeued(lane, key, level);
            self.charge_debt(lane, level);
            if let Some(k) = key {
                self.keys[k].breaker.on_start(verdict);
            }
            let permit = Permit::issue(
                &self.ledger,
                waiter.work,
                lane,
                key,
                verdict == Verdict::Probe,
            );
            admitted.push(Admission {
                work: waiter.work,
                permit,
            });
        }
    }

    /// Records how a running task ended and releases its permit. Call `admit` afterwards: the
    /// freed slot (or a grown limit) may let waiters start.
    pub fn complete(&mut self, now: u64, mut permit: Permit, outcome: Outcome) {
        self.record(now, &mut permit, outcome);
        drop(permit);
        self.collect_releases();
    }

    /// Records how a running task ended without releasing its permit: the slot it holds is
    /// still in use (a task that settled while lending its slot to work still running there).
    /// Dropping the permit later releases it without a second outcome.
    pub fn record(&mut self, now: u64, permit: &mut Permit, outcome: Outcome) {
        self.collect_releases();
        self.adapt(now, permit, outcome);
        if let Some(k) = permit.key() {
            let jitter = self.rng.f64();
            self.keys[k]
                .breaker
                .on_outcome(now, outcome, permit.is_probe(), jitter);
        }
        permit.mark_recorded();
    }

    /// A call guarded by `key`'s breaker alone (no lane, no slot, no queue): whether it may go
    /// at `now`. `Allow`; `Probe`, when it is the half-open probe (end it with `probe = true`);
    /// or `Refuse`. The breaker is the one the key's tasks share: their outcomes and these calls'
    /// count alike.
    pub fn breaker_enter(&mut self, now: u64, key: KeyId) -> Verdict {
        self.collect_releases();
        let Some(k) = self.keys.get_mut(key.0) else {
            return Verdict::Allow;
        };
        let verdict = k.breaker.check(now);
        k.breaker.on_start(verdict);
        verdict
    }

    /// How a call let through by [`Controller::breaker_enter`] ended. A backoff signal — a rate
    /// limit, an upstream error or a timeout (`LimitCause`) — also backs off the key's adaptive
    /// limit, if it has one; a success raises no limit, since the call held no slot.
    pub fn breaker_exit(&mut self, now: u64, key: KeyId, probe: bool, outcome: Outcome) {
        let jitter = self.rng.f64();
        self.adapt_key(now, key, outcome);
        if let Some(k) = self.keys.get_mut(key.0) {
            k.breaker.on_outcome(now, outcome, probe, jitter);
        }
    }

    /// The earliest time after `now` at which `admit` could admit a waiter that it cannot admit
    /// now without any other event: the end of an open period of a key with waiters, or the
    /// moment a closed gate's reading goes stale while LOW work waits.
    #[inline(never)]
    pub fn next_deadline(&self, now: u64) -> Option<u64> {
        let breakers = self
            .keys
            .iter()
            .filter(|k| k.queued > 0)
            .filter_map(|k| k.breaker.next_deadline())
            .filter(|&t| t > now);
        let gate = if self.low_waiting() {
            self.gate.next_deadline(now)
        } else {
            None
        };
        breakers.chain(gate).min()
    }

    /// A view of the controller at `now`.
    pub fn stats(&self, now: u64) -> ControlStats {
        let lanes = self
            .lanes
            .iter()
            .enumerate()
            .map(|(i, l)| LaneView {
                name: l.name.clone(),
                in_use: self.ledger.lane_in_use(i),
                limit: l.limit.configured(),
                effective: l.limit.effective(),
                queued: l.queued,
            })
            .collect();
        let keys = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| KeyView {
                name: k.name.clone(),
                in_use: self.ledger.key_in_use(i),
                limit: k.limit.as_ref().map(Aimd::configured),
                effective: k.limit.as_ref().map(Aimd::effective),
                queued: k.queued,
                breaker: k.breaker.state(),
                next_probe_at: k.breaker.next_deadline(),
            })
            .collect();
        let gate = GateView {
            closed: self.gate.is_closed(now),
            stale: self.gate.is_stale(now),
            per_mille: self.gate.last().map(|(_, r)| r.per_mille()),
        };
        ControlStats { lanes, keys, gate }
    }

    /// Tasks waiting.
    pub fn waiting(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the lane of the waiting task `ticket` names has a free slot now (a cheap hint:
    /// when false, admitting can wait for the next release).
    pub fn has_room(&self, ticket: &Ticket) -> bool {
        self.classes
            .get(ticket.class as usize)
            .is_some_and(|c| self.lane_has_room(c.lane))
    }

    /// Tasks waiting in the lane `agent` runs in, over all levels.
    pub fn queued_for(&self, agent: &str) -> u32 {
        let LaneId(lane) = self.lane_id(agent);
        self.lanes[lane].queued.iter().sum()
    }

    /// Whether the task `ticket` names is still waiting.
    pub fn is_waiting(&self, ticket: &Ticket) -> bool {
        self.nodes
            .get(ticket.node)
            .is_some_and(|w| w.seq == ticket.seq)
    }

    /// Permits issued and released over the controller's life.
    pub fn permit_totals(&self) -> (u64, u64) {
        self.ledger.totals()
    }

    /// The breaker of `key`, if the key was ever used.
    pub fn breaker(&self, key: &str) -> Option<&Breaker> {
        self.key_index.get(key).map(|&k| &self.keys[k].breaker)
    }

    /// The keys whose breaker changed phase since the last call (a new key's only when it is
    /// not closed), in first-use order, and whether any breaker is not closed now.
    pub fn take_breaker_changes(&mut self) -> (Vec<BreakerEvent>, bool) {
        let mut changed = Vec::new();
        let mut not_closed = false;
        for k in &mut self.keys {
            let phase = k.breaker.state().phase();
            not_closed |= phase != BreakerPhase::Closed;
            if phase != k.reported {
                k.reported = phase;
                changed.push(BreakerEvent {
                    key: k.name.clone(),
                    phase,
                });
            }
        }
        (changed, not_closed)
    }

    fn intern_key(&mut self, name: &str) -> Result<usize, Error> {
        if let Some(&k) = self.key_index.get(name) {
            return Ok(k);
        }
        if name.is_empty() || name.len() > 256 {
            return Err(Error::input("key", "must be 1–256 bytes"));
        }
        if self.keys.len() >= MAX_KEYS {
            return Err(Error::input(
                "key",
                format!("more than {MAX_KEYS} distinct provider/model keys"),
            ));
        }
        let k = self.keys.len();
        self.keys.push(KeyState {
            name: name.to_owned(),
            limit: self
                .key_limits
                .get(name)
                .map(|&l| Aimd::new(l, self.aimd_config)),
            breaker: Breaker::new(self.breaker_config),
            reported: BreakerPhase::Closed,
            queued: 0,
        });
        self.key_index.insert(name.to_owned(), k);
        Ok(k)
    }

    fn class_of(&mut self, lane: usize, key: Option<usize>) -> usize {
        if key.is_none() {
            if let Some(class) = self.lanes[lane].plain {
                return class;
            }
        }
        let class = *self.class_index.entry((lane, key)).or_insert_with(|| {
            self.classes.push(Class {
                lane,
                key,
                lists: [List::default(); 3],
            });
            self.classes.len() - 1
        });
        if key.is_none() {
            self.lanes[lane].plain = Some(class);
        }
        class
    }

    fn dequeued(&mut self, lane: usize, key: Option<usize>, level: Priority) {
        let l = &mut self.lanes[lane];
        l.queued[level.index()] -= 1;
        if l.queued[level.index()] == 0 {
            l.debt[level.index()] = 0; // nobody of this level waits: nothing is owed
        }
        if let Some(k) = key {
            self.keys[k].queued -= 1;
        }
    }

    fn charge_debt(&mut self, lane: usize, served: Priority) {
        let l = &mut self.lanes[lane];
        l.debt[served.index()] = 0;
        for lower in Priority::ALL.iter().filter(|p| **p > served) {
            if l.queued[lower.index()] > 0 {
                l.debt[lower.index()] += 1;
            }
        }
    }

    /// Whether `lane` has a permit to give under its effective limit.
    /// The lane and key indices of resolved ids. Ids come from this controller; one from
    /// another is kept in range, never a panic.
    #[inline]
    fn resolve(&self, LaneId(lane): LaneId, key: Option<KeyId>) -> (usize, Option<usize>) {
        let lane = lane.min(self.lanes.len().saturating_sub(1));
        let key = key.map(|KeyId(k)| k).filter(|&k| k < self.keys.len());
        (lane, key)
    }

    /// Whether LOW work waits in any lane (nothing waiting, the common case: one load).
    #[inline]
    pub(crate) fn low_waiting(&self) -> bool {
        self.waiting() != 0
            && self
                .lanes
                .iter()
                .any(|l| l.queued[Priority::Low.index()] > 0)
    }

    fn lane_has_room(&self, lane: usize) -> bool {
        self.ledger.lane_in_use(lane) < self.lanes[lane].limit.effective()
    }

    /// What key `k` says to one more task at `now`: `None` when its limit is reached or its
    /// breaker refuses, else the breaker's verdict (`Allow`, or `Probe` when half-open).
    fn key_verdict(&self, now: u64, k: usize) -> Option<Verdict> {
        let key = &self.keys[k];
        if key
            .limit
            .as_ref()
            .is_some_and(|l| self.ledger.key_in_use(k) >= l.effective())
        {
            return None;
        }
        match key.breaker.check(now) {
            Verdict::Refuse { .. } => None,
            v => Some(v),
        }
    }

    /// The submission order of the waiter at node `node` (`u64::MAX` for none).
    fn seq_of(&self, node: u32) -> u64 {
        self.nodes.get(node).map_or(u64::MAX, |w| w.seq)
    }

    /// The waiter to admit next, per the ordering in the module docs.
    fn best_candidate(&self, now: u64, gate_closed: bool) -> Option<(usize, Priority, Verdict)> {
        let mut best: Option<(Rank, usize, Priority, Verdict)> = None;
        for (ci, class) in self.classes.iter().enumerate() {
            if class.lists.iter().all(List::is_empty) {
                continue;
            }
            if !self.lane_has_room(class.lane) {
                continue;
            }
            let lane = &self.lanes[class.lane];
            let verdict = match class.key {
                Some(k) => match self.key_verdict(now, k) {
                    Some(v) => v,
                    None => continue,
                },
                None => Verdict::Allow,
            };
            for level in Priority::ALL {
                if level == Priority::Low && gate_closed {
                    continue;
                }
                let Some(front) = class.lists[level.index()].front() else {
                    continue;
                };
                let forced = level != Priority::High && lane.debt[level.index()] >= self.low_every;
                let rank = if forced {
                    (0, 2 - level.index() as u8, front)
                } else {
                    (1, level.index() as u8, front)
                };
                let better = match &best {
                    None => true,
                    Some((b, ..)) if (rank.0, rank.1) != (b.0, b.1) => {
                        (rank.0, rank.1) < (b.0, b.1)
                    }
                    // The same standing in two classes: the older waiter (the only case that
                    // reads the waiters themselves — with one class waiting, none is read).
                    Some((b, ..)) => self.seq_of(front) < self.seq_of(b.2),
                };
                if better {
                    best = Some((rank, ci, level, verdict));
                }
            }
        }
        best.map(|(_, class, level, verdict)| (class, level, verdict))
    }

    /// Applies permits dropped since the last call: a probe that ended without an outcome frees
    /// its breaker for the next probe.
    #[inline]
    fn collect_releases(&mut self) {
        if self.ledger.has_releases() {
            self.apply_releases();
        }
    }

    #[inline(never)]
    fn apply_releases(&mut self) {
        for release in self.ledger.take_releases() {
            if let Some(k) = release.key {
                if release.probe && !release.outcome_recorded {
                    self.keys[k].breaker.abandon_probe();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
