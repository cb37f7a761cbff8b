//! The session pool: which sessions the engine owns, what each may be used for, and when each
//! may be deleted. Pure bookkeeping — the engine performs the host calls the pool asks for.
//!
//! OpenCode has no API to make a used session empty again, so a session's life is one way:
//!
//! ```text
//!  (created) ──▶ Warm ──acquire──▶ InUse ──release──▶ Parked ──follow-up──▶ InUse …
//!                 │                   │ failed/cancelled    │ idle > 5 min, or 10 turns used
//!                 │ idle > 5 min,     ▼                     ▼
//!                 └ unhealthy ──▶ Retiring (abort sent if it may be busy)
//!                                    │ 10 s without activity, not busy
//!                                    ▼
//!                                 Deleting ──deleted──▶ (gone)
//! ```
//!
//! - A new task always gets an **empty** session: a `Warm` one (a *hit*) or a fresh one the
//!   engine creates (a *miss*). A `Parked` session is never handed to a new task.
//! - A follow-up may continue in its predecessor's session (*affinity*) while that session is
//!   `Parked` and has served fewer than `max_turns` turns.
//! - Warm sessions are made on demand: [`Pool::to_prewarm`] asks for at most `warm_per_agent`
//!   per (agent, parent), and never more than the work waiting for them.
//! - Parked sessions are bounded per agent by `parked_per_agent` (the pool's size, default 5):
//!   parking one more retires the agent's parked session unused longest, so a burst of short
//!   tasks leaves at most that many parked on the server.
//! - A parked session [held](Pool::hold) for a follow-up that will be sent again (its turn
//!   ended rate limited) is neither retired by that bound nor idle until the time it is held
//!   for (the retry's due time): its idle time counts from then. However long the provider
//!   asks to wait, and however many tasks of its agent finish meanwhile, a retry admitted when
//!   due finds its conversation.
//! - Warm and parked sessions are due a health check every `health_every_ms`
//!   ([`Pool::take_checks`]); the engine answers them all with its one liveness probe per
//!   interval (`sessionStatuses`), so their cost does not grow with their number.
//! - Deletion waits for `delete_quiet_ms` without activity and never happens while busy:
//!   OpenCode keeps writing a session's rows shortly after it reports idle.
//!
//! Invariants:
//! 1. Every session the pool has heard of is in exactly one state until `deleted`: no orphan.
//! 2. A session is `InUse` by at most one task.
//! 3. A session is never deleted while busy, nor within `delete_quiet_ms` of its last activity.

use rustc_hash::FxHashMap;

use crate::host::SessionId;

/// Pool settings (the design's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Warm sessions kept per (agent, parent), at most (default 5).
    pub warm_per_agent: u32,
    /// Turns one session serves before it is retired (default 10).
    pub max_turns: u32,
    /// Parked sessions kept per agent, at most (default 5, the pool's size per agent).
    pub parked_per_agent: u32,
    /// Interval between health checks of an owned session, ms (default 60 000).
    pub health_every_ms: u64,
    /// A warm or parked session unused this long is retired, ms (default 300 000).
    pub idle_retire_ms: u64,
    /// Quiet time before a retired session is deleted, ms (default 10 000).
    pub delete_quiet_ms: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            warm_per_agent: 5,
            max_turns: 10,
            parked_per_agent: 5,
            health_every_ms: 60_000,
            idle_retire_ms: 300_000,
            delete_quiet_ms: 10_000,
        }
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Empty, ready for a new task.
    Warm,
    /// Serving a task.
    InUse,
    /// Used, idle, kept for a follow-up.
    Parked,
    /// Waiting for quiet before deletion; `abort` says whether an abort must be sent first.
    Retiring {
        /// Whether the engine still has to abort it.
        abort: bool,
    },
    /// The engine asked the host to delete it.
    Deleting,
}

#[derive(Debug, Clone)]
struct Entry {
    agent: String,
    parent: Option<SessionId>,
    state: State,
    turns: u32,
    busy: bool,
    /// Its last activity, or for one [held](Pool::hold) the time it is held for (later than
    /// now): it only moves forward until the session is taken again.
    last_activity: u64,
    last_check: u64,
    /// The stamp (`created_wall_ms`) of the reply that ended its last turn, as the engine read
    /// it: a follow-up continuing the session tells its own reply from this one by it.
    reply: Option<u64>,
    /// When it came into the pool (a counter), for a stable order of the map's entries.
    seq: u64,
}

/// Counters for the stats view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCounters {
    /// New tasks served by a warm session.
    pub hits: u64,
    /// New tasks that needed a fresh session.
    pub misses: u64,
    /// Sessions created for the pool.
    pub creates: u64,
    /// Follow-ups served in their predecessor's session.
    pub affinity_hits: u64,
    /// Sessions retired.
    pub retirements: u64,
    /// Sessions deleted.
    pub deletes: u64,
}

/// What `acquire` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// A warm session, now in use.
    Hit(SessionId),
    /// None warm: create one and report it with [`Pool::created_in_use`].
    Miss,
}

/// The pool. See the module docs.
#[derive(Debug, Default)]
pub struct Pool {
    config: PoolConfig,
    sessions: FxHashMap<SessionId, Entry>,
    counters: PoolCounters,
    /// Sessions retired with an abort owed, oldest first.
    aborts: Vec<SessionId>,
    next_seq: u64,
}

impl Pool {
    /// An empty pool.
    pub fn new(config: PoolConfig) -> Self {
        Pool {
            config,
            sessions: FxHashMap::default(),
            counters: PoolCounters::default(),
            aborts: Vec::new(),
            next_seq: 0,
        }
    }

    /// Hands a new task an empty session for `agent` under `parent`, if one is warm.
    pub fn acquire(&mut self, agent: &str, parent: Option<&SessionId>, now: u64) -> Acquired {
        // The longest-waiting warm session first, so none sits until it is retired idle.
        let warm = self
            .sessions
            .iter()
            .filter(|(_, e)| {
                e.state == State::Warm && e.agent == agent && e.parent.as_ref() == parent
            })
            .min_by(|(a, x), (b, y)| (x.last_activity, *a).cmp(&(y.last_activity, *b)))
            .map(|(id, _)| id.clone());
        match warm {
            Some(id) => {
                if let Some(e) = self.sessions.get_mut(&id) {
                    e.state = State::InUse;
                    e.turns = 1;
                    e.last_activity = now;
                }
                self.counters.hits += 1;
                Acquired::Hit(id)
            }
            None => {
                self.counters.misses += 1;
                Acquired::Miss
            }
        }
    }

    /// Continues in `session` for a follow-up, if it is parked and has turns left.
    pub fn acquire_affinity(&mut self, session: &SessionId, now: u64) -> bool {
        let max = self.config.max_turns;
        match self.sessions.get_mut(session) {
            Some(e) if e.state == State::Parked && !e.busy && e.turns < max => {
                e.state = State::InUse;
                e.turns += 1;
                e.last_activity = now;
                self.counters.affinity_hits += 1;
                true
            }
            _ => false,
        }
    }

    /// Records a session the engine created for a task that is using it now.
    pub fn created_in_use(
        &mut self,
        id: SessionId,
        agent: &str,
        parent: Option<SessionId>,
        now: u64,
    ) {
        self.insert(id, agent, parent, State::InUse, 1, now);
    }

    /// Records a session the engine created to keep warm.
    pub fn created_warm(
        &mut self,
        id: SessionId,
        agent: &str,
        parent: Option<SessionId>,
        now: u64,
    ) {
        self.insert(id, agent, parent, State::Warm, 0, now);
    }

    /// A task is done with `session`. A success parks it for follow-ups (or retires it when its
    /// turns are used up); a failure or cancel retires it, with an abort when it may be busy.
    #[inline(never)]
    pub fn release(&mut self, session: &SessionId, succeeded: bool, now: u64) {
        let max = self.config.max_turns;
        let Some(e) = self.sessions.get_mut(session) else {
            return;
        };
        if e.state != State::InUse {
            return;
        }
        e.last_activity = e.last_activity.max(now); // a hold (see `hold`) stays
        if succeeded && e.turns < max {
            e.state = State::Parked;
            let agent = e.agent.clone();
            self.bound_parked(&agent, now);
        } else {
            let abort = !succeeded || e.busy;
            e.state = State::Retiring { abort };
            self.counters.retirements += 1;
            if abort {
                self.aborts.push(session.clone());
            }
        }
    }

    /// Keeps `session` (in use, about to be released as kept, or parked) for a retry due at
    /// `until`: until then it is not retired by the parked bound, and its idle time counts
    /// from then. Continuing it ends the hold.
    pub fn hold(&mut self, session: &SessionId, until: u64) {
        if let Some(e) = self.sessions.get_mut(session) {
            if matches!(e.state, State::InUse | State::Parked) {
                e.last_activity = e.last_activity.max(until);
            }
        }
    }

    /// Retires `agent`'s parked sessions unused longest, none held at `now`, until at most
    /// `parked_per_agent` stay parked (held ones counted). Costs one pass over the pool, which
    /// this bound keeps small.
    fn bound_parked(&mut self, agent: &str, now: u64) {
        let limit = self.config.parked_per_agent as usize;
        loop {
            let mut parked = 0;
            let mut oldest: Option<(u64, u64, &SessionId)> = None;
            for (id, e) in &self.sessions {
                if e.state == State::Parked && e.agent == agent {
                    parked += 1;
                    if e.last_activity <= now
                        && oldest.is_none_or(|(at, seq, _)| (e.last_activity, e.seq) < (at, seq))
                    {
                        oldest = Some((e.last_activity, e.seq, id));
                    }
                }
            }
            let Some((_, _, id)) = oldest.filter(|_| parked > limit) else {
                return;
            };
            let id = id.clone();
            if let Some(e) = self.sessions.get_mut(&id) {
                e.state = State::Retiring { abort: e.busy };
                self.counters.retirements += 1;
                if e.busy {
                    self.aborts.push(id);
                }
            }
        }
    }

    /// Host activity on `session` (a status or message event); `busy` as the host reports.
    pub fn activity(&mut self, session: &SessionId, busy: bool, now: u64) {
        if let Some(e) = self.sessions.get_mut(session) {
            e.busy = busy;
            e.last_activity = e.last_activity.max(now);
        }
    }

    /// The host says `session` is idle now (the liveness probe found it so): a busy that an
    /// event reported, with its idle lost or delivered first, no longer holds it.
    pub fn settled_idle(&mut self, session: &SessionId, now: u64) {
        if let Some(e) = self.sessions.get_mut(session) {
            if e.busy {
                e.busy = false;
                e.last_activity = e.last_activity.max(now);
            }
        }
    }

    /// Sessions not serving a task that an event last said were busy and that nothing was
    /// heard from for `quiet` ms, oldest first: the liveness probe asks about them.
    pub fn suspects(&self, now: u64, quiet: u64) -> Vec<SessionId> {
        let out = self
            .sessions
            .iter()
            .filter(|(_, e)| {
                e.busy && e.state != State::InUse && now.saturating_sub(e.last_activity) >= quiet
            })
            .map(|(id, _)| id.clone())
            .collect();
        self.oldest_first(out)
    }

    /// Whether any session not serving a task is believed busy (the probe must keep watching).
    pub fn has_busy(&self) -> bool {
        self.sessions
            .values()
            .any(|e| e.busy && e.state != State::InUse)
    }

    /// The host deleted `session` (its own `session.deleted` event, or our delete succeeded).
    pub fn deleted(&mut self, session: &SessionId) {
        if self.sessions.remove(session).is_some() {
            self.counters.deletes += 1;
        }
    }

    /// A health check answered; an unhealthy session that is not in use is retired.
    #[inline(never)]
    pub fn health(&mut self, session: &SessionId, healthy: bool, now: u64) {
        let Some(e) = self.sessions.get_mut(session) else {
            return;
        };
        e.last_check = now;
        if !healthy && matches!(e.state, State::Warm | State::Parked) {
            e.state = State::Retiring { abort: true };
            self.counters.retirements += 1;
            self.aborts.push(session.clone());
        }
    }

    /// Moves time to `now`: warm and parked sessions idle for `idle_retire_ms` retire (a held
    /// one counts its idle time from the time it is held for).
    pub fn tick(&mut self, now: u64) {
        let idle = self.config.idle_retire_ms;
        for (id, e) in self.sessions.iter_mut() {
            if matches!(e.state, State::Warm | State::Parked)
                && now.saturating_sub(e.last_activity) >= idle
            {
                e.state = State::Retiring { abort: e.busy };
                self.counters.retirements += 1;
                if e.busy {
                    self.aborts.push(id.clone());
                }
            }
        }
    }

    /// Whether retired sessions wait for their turns to be aborted ([`Pool::take_aborts`]).
    pub fn has_aborts(&self) -> bool {
        !self.aborts.is_empty()
    }

    /// Sessions to abort now (retiring and possibly busy). Marks them aborted, and busy until
    /// the abort is answered ([`Pool::activity`]) or the host says they are idle
    /// ([`Pool::settled_idle`]): their quiet period counts from then, so no deletion comes
    /// before the turn's last writes even when the idles that follow an abort are lost.
    /// Costs the number of sessions retired since the last call, not the pool's size.
    pub fn take_aborts(&mut self) -> Vec<SessionId> {
        let mut out = Vec::new();
        if self.aborts.is_empty() {
            return out;
        }
        for id in std::mem::take(&mut self.aborts) {
            if let Some(e) = self.sessions.get_mut(&id) {
                if e.state == (State::Retiring { abort: true }) {
                    e.state = State::Retiring { abort: false };
                    e.busy = true;
                    out.push(id);
                }
            }
        }
        out
    }

    /// Sessions that may be deleted at `now`: retiring, aborted, not busy, quiet for
    /// `delete_quiet_ms`. Marks them `Deleting`.
    pub fn take_deletions(&mut self, now: u64) -> Vec<SessionId> {
        let quiet = self.config.delete_quiet_ms;
        let mut out = Vec::new();
        for (id, e) in self.sessions.iter_mut() {
            if e.state == (State::Retiring { abort: false })
                && !e.busy
                && now.saturating_sub(e.last_activity) >= quiet
            {
                e.state = State::Deleting;
                out.push(id.clone());
            }
        }
        self.oldest_first(out)
    }

    /// A delete failed: the session waits for quiet again.
    pub fn delete_failed(&mut self, session: &SessionId, now: u64) {
        if let Some(e) = self.sessions.get_mut(session) {
            if e.state == State::Deleting {
                e.state = State::Retiring { abort: false };
                e.last_activity = now;
            }
        }
    }

    /// When the next health check of a warm or parked session is due.
    #[inline(never)]
    pub fn next_check(&self) -> Option<u64> {
        let every = self.config.health_every_ms;
        self.sessions
            .values()
            .filter(|e| matches!(e.state, State::Warm | State::Parked))
            .map(|e| e.last_check + every)
            .min()
    }

    /// Owned sessions due a health check by `now + ahead` (warm and parked ones). Marks them
    /// checked at `now`.
    pub fn take_checks(&mut self, now: u64, ahead: u64) -> Vec<SessionId> {
        let every = self.config.health_every_ms;
        let by = now.saturating_add(ahead);
        let mut out = Vec::new();
        for (id, e) in self.sessions.iter_mut() {
            if matches!(e.state, State::Warm | State::Parked)
                && by.saturating_sub(e.last_check) >= every
            {
                e.last_check = now;
                out.push(id.clone());
            }
        }
        self.oldest_first(out)
    }

    /// `ids` in the order their sessions came into the pool, oldest first (the map's own order
    /// is arbitrary). Sorted as `u64`s — arrival over index — the one element type the crate
    /// sorts (each other type adds its own copy of the sort to the `.wasm`).
    fn oldest_first(&self, ids: Vec<SessionId>) -> Vec<SessionId> {
        const INDEX_BITS: u32 = 24;
        if ids.len() >= 1 << INDEX_BITS {
            return ids; // more sessions than any server holds: left in the map's order
        }
        let mut order: Vec<u64> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let seq = self.sessions.get(id).map_or(0, |e| e.seq);
                seq << INDEX_BITS | i as u64
            })
            .collect();
        order.sort_unstable();
        let mut ids: Vec<Option<SessionId>> = ids.into_iter().map(Some).collect();
        order
            .iter()
            .filter_map(|k| ids.get_mut((k & ((1 << INDEX_BITS) - 1)) as usize)?.take())
            .collect()
    }

    /// How many warm sessions to create for (`agent`, `parent`) when `waiting` new tasks for
    /// them are queued: up to `warm_per_agent`, minus those warm already.
    pub fn to_prewarm(&self, agent: &str, parent: Option<&SessionId>, waiting: u32) -> u32 {
        let warm = self
            .sessions
            .values()
            .filter(|e| e.state == State::Warm && e.agent == agent && e.parent.as_ref() == parent)
            .count() as u32;
        waiting.min(self.config.warm_per_agent).saturating_sub(warm)
    }

    /// When the pool next needs a tick: the earliest idle retirement or quiet deletion. (Health
    /// checks are asked for by the engine's liveness probe: see [`Pool::next_check`].)
    pub fn next_deadline(&self) -> Option<u64> {
        let c = self.config;
        self.sessions
            .values()
            .filter_map(|e| match e.state {
                State::Warm | State::Parked => {
                    Some(e.last_activity.saturating_add(c.idle_retire_ms))
                }
                State::Retiring { abort: false } if !e.busy => {
                    Some(e.last_activity + c.delete_quiet_ms)
                }
                _ => None,
            })
            .min()
    }

    /// Notes the stamp of the reply that ended `session`'s turn (see [`Pool::reply`]).
    pub fn replied(&mut self, session: &SessionId, stamp: u64) {
        if let Some(e) = self.sessions.get_mut(session) {
            e.reply = Some(stamp);
        }
    }

    /// The stamp of the reply that ended `session`'s last turn, if this pool saw it.
    pub fn reply(&self, session: &SessionId) -> Option<u64> {
        self.sessions.get(session).and_then(|e| e.reply)
    }

    /// The state of `session`, if the pool owns it.
    pub fn state(&self, session: &SessionId) -> Option<State> {
        self.sessions.get(session).map(|e| e.state)
    }

    /// Sessions per state: (warm, in use, parked, retiring, deleting).
    pub fn census(&self) -> (usize, usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0, 0);
        for e in self.sessions.values() {
            match e.state {
                State::Warm => c.0 += 1,
                State::InUse => c.1 += 1,
                State::Parked => c.2 += 1,
                State::Retiring { .. } => c.3 += 1,
                State::Deleting => c.4 += 1,
            }
        }
        c
    }

    /// Sessions owned.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether the pool owns no session.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The counters.
    pub fn counters(&self) -> PoolCounters {
        self.counters
    }

    fn insert(
        &mut self,
        id: SessionId,
        agent: &str,
        parent: Option<SessionId>,
        state: State,
        turns: u32,
        now: u64,
    ) {
        let entry = Entry {
            agent: agent.to_owned(),
            parent,
            state,
            turns,
            busy: false,
            last_activity: now,
            last_check: now,
            reply: None,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        if self.sessions.insert(id, entry).is_none() {
            self.counters.creates += 1;
        }
    }
}

mod restore;
#[cfg(test)]
mod tests;
