//! The task table: every task's record in the MVCC store, one commit (and so one journal
//! record) per submission and per transition.
//!
//! A task is two keys: its spec (`s` + id: the prompt and every submitted field), written once
//! when it is submitted, and its state (`t` + id), rewritten by each transition — so a
//! transition journals only what changed, and the prompt and the result are each written once.
//! Settled tasks are forgotten by the retention rule ([`RetentionConfig`]): both keys and the
//! idempotency key go in one commit. The table keeps counters as tasks move (per state, bytes
//! held, settled tasks in settlement order), so stats and retention cost nothing per task held.
//!
//! Invariants:
//! 1. Every accepted task has exactly one record, in exactly one state.
//! 2. A transition is legal (`task::is_legal`) or refused with nothing written.
//! 3. A submission with an idempotency key already used returns the first task and writes
//!    nothing.
//! 4. Dependencies must name tasks that exist when the dependent is submitted, so the
//!    dependency graph can never have a cycle.
//! 5. `restore` rebuilds the table from a journal: settled and queued tasks are as they were;
//!    tasks admitted but never prompted go back to the queue; tasks that were prompted become
//!    `Unknown` to be reconciled with the host — or go back to the queue when their idempotency
//!    key says a re-run is safe. Each such change is itself journaled.
//! 6. The journal is checkpointed once the records since the last checkpoint outnumber
//!    `max(CHECKPOINT_MIN_RECORDS, 2 × keys)`: a restore replays at most about three times the
//!    live state, however long the engine has run, and the journal kept in memory stays
//!    proportional to the state. Checkpointing costs amortized O(1) hashed bytes per commit.
//!    The same holds for bytes: a checkpoint is also due once the records after the last one
//!    outweigh `max(CHECKPOINT_MIN_BYTES, state bytes)`, so the journal kept stays within about
//!    twice the state (and each byte journaled costs about two hashed).
//! 7. Retention forgets only settled tasks, oldest settlement first, never one an open task
//!    depends on (it is kept until its dependents settle), and never one settled in
//!    the current call ([`TaskTable::retire`] runs before a call's work), so whoever waits for
//!    a settlement reads it first. A forgotten id answers `TASK_FORGOTTEN`, never another task.
//! 8. Memory budget: a submission is refused with `ENGINE_FULL` (nothing written) when the
//!    state held twice (a checkpoint copies it), the journal kept and room for the open tasks'
//!    results (at most what retention keeps) would pass the budget with it.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::config::{DEFAULT_MEMORY_BUDGET, RetentionConfig};
use crate::error::Error;
use crate::host::SessionId;
use crate::ids::{Priority, TaskId};
use crate::store::{Head, Store, meta_key, task_key};

use super::task::{TaskRecord, TaskSpec, TaskState, decode_spec, decode_state, is_legal};

/// The prefix of task (state) keys in the store.
const TASK_PREFIX: &[u8] = b"t";
/// Fewest records between two checkpoints.
pub(crate) const CHECKPOINT_MIN_RECORDS: usize = 256;
/// Fewest journal bytes after a checkpoint before the next one is due.
pub(crate) const CHECKPOINT_MIN_BYTES: u64 = 1 << 20;
/// Bytes counted per task besides its values (keys, versions, map nodes).
const TASK_OVERHEAD: u64 = 160;
/// The metadata key of the fencing epoch.
const EPOCH_KEY: &str = "epoch";
/// The metadata key of the journal's origin (which engines may fence each other).
const ORIGIN_KEY: &str = "origin";
/// The metadata key of the count of tasks retention forgot.
const FORGOTTEN_KEY: &str = "forgotten";
/// The metadata key of the next task id (written when retention forgets tasks).
const NEXT_KEY: &str = "next";

/// The key of a task's spec: `b's'` followed by the id, big-endian.
#[inline(never)]
pub(crate) fn spec_key(task: TaskId) -> Vec<u8> {
    let mut k = Vec::with_capacity(5);
    k.push(b's');
    k.extend_from_slice(&task.get().to_be_bytes());
    k
}

/// Whether `record` is LOW work accepted and not admitted.
fn low_queued(record: &TaskRecord) -> bool {
    record.spec.priority == Priority::Low && record.state == TaskState::Queued
}

#[inline(never)]
fn idem_key(key: &str) -> Vec<u8> {
    meta_key(&format!("idem/{key}"))
}

fn u64_of(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes).map_or(0, u64::from_be_bytes)
}

/// A settled task the table still holds.
#[derive(Debug, Clone, Copy)]
struct Kept {
    id: TaskId,
    settled_ms: u64,
    bytes: u64,
}
/// The metadata prefix of sessions the engine created.
const SESSION_PREFIX: &str = "session/";

#[inline(never)]
fn session_key(session: &SessionId) -> Vec<u8> {
    meta_key(&format!("{SESSION_PREFIX}{}", session.as_str()))
}

/// What a restore found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Tasks now `Unknown`, to reconcile with the host.
    pub unknown: Vec<TaskId>,
    /// Tasks put back in the queue.
    pub requeued: Vec<TaskId>,
    /// Sessions of requeued tasks, to abort and retire.
    pub orphan_sessions: Vec<SessionId>,
}

/// Tasks per state (indexed by the state's tag) and what retention forgot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Tasks held per state tag (`TaskState::tag`).
    pub by_state: [u64; 10],
    /// Settled tasks forgotten by retention, over the journal's whole history.
    pub forgotten: u64,
}

/// The task table. See the module docs.
#[derive(Debug)]
pub struct TaskTable {
    store: Store,
    next_id: u32,
    retention: RetentionConfig,
    budget: u64,
    /// Tasks not settled, with their dependencies. (Every map here has the one type the
    /// engine's dependents map has too: one copy of its code in the `.wasm`.)
    open: FxHashMap<TaskId, Vec<TaskId>>,
    /// Open tasks depending on each task: a task with any is not forgotten.
    pins: FxHashMap<TaskId, Vec<TaskId>>,
    /// Settled tasks held, oldest settlement first.
    settled: VecDeque<Kept>,
    settled_bytes: u64,
    counts: Counts,
    /// LOW tasks queued: a memory reading is due before deciding them (`Engine::memory_due`).
    low_queued: u32,
    /// Bytes of every task held (spec, state, overhead).
    bytes: u64,
    epoch: u64,
    origin: [u8; 16],
    /// Whether the epoch and origin are in the store yet (written with the first commit).
    meta_written: bool,
}

impl Default for TaskTable {
    fn default() -> Self {
        TaskTable::new()
    }
}

impl TaskTable {
    /// An empty table with the default retention and budget.
    pub fn new() -> Self {
        TaskTable::with_limits(RetentionConfig::default(), DEFAULT_MEMORY_BUDGET, [0; 16])
    }

    /// An empty table forgetting settled tasks by `retention`, refusing work past `budget`
    /// bytes, whose journal is named `origin` (engines restored from it share the name, so a
    /// newer epoch fences an older one: see [`TaskTable::epoch`]).
    pub fn with_limits(retention: RetentionConfig, budget: u64, origin: [u8; 16]) -> Self {
        TaskTable {
            store: Store::new(),
            next_id: 1,
            retention,
            budget,
            open: FxHashMap::default(),
            pins: FxHashMap::default(),
            settled: VecDeque::new(),
            settled_bytes: 0,
            counts: Counts::default(),
            low_queued: 0,
            bytes: 0,
            epoch: 0,
            origin,
            meta_written: false,
        }
    }

    /// The fencing epoch: 0 for a new engine's journal; every restore takes one above both the
    /// journal's and the floor it is given, and journals it. Of engines sharing an
    /// [`TaskTable::origin`], only the one with the highest epoch may act.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The journal's name, shared by every engine restored from it.
    pub fn origin(&self) -> [u8; 16] {
        self.origin
    }

    /// Counters kept as tasks move (no scan).
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Tasks not settled, in id order.
    pub fn open_ids(&self) -> Vec<TaskId> {
        // (`u64`s: the one element type the crate sorts; see `Engine::tick`.)
        let mut ids: Vec<u64> = self.open.keys().map(|t| u64::from(t.get())).collect();
        ids.sort_unstable();
        ids.into_iter().map(|t| TaskId(t as u32)).collect()
    }

    /// Settled tasks held.
    pub fn settled_count(&self) -> usize {
        self.settled.len()
    }

    /// The engine's footprint as the table counts it: the tasks held and the journal kept,
    /// bytes.
    pub fn footprint(&self) -> u64 {
        self.bytes + self.store.journal().bytes()
    }

    /// The memory budget, bytes.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Whether `task` was issued here and is gone (forgotten by retention).
    #[inline(never)]
    pub fn was_forgotten(&self, task: TaskId) -> bool {
        task.get() >= 1 && task.get() < self.next_id && self.get(task).is_none()
    }

    /// Why a dependency or follow-up on `task`, not held, cannot be accepted.
    pub fn missing_reason(&self, task: TaskId) -> String {
        if self.was_forgotten(task) {
            format!(
                "task {} settled and was forgotten by the retention rule: its outcome is not known any more",
                task.get()
            )
        } else {
            format!("no task {}", task.get())
        }
    }

    /// `UNKNOWN_TASK` or `TASK_FORGOTTEN` for a task not held.
    pub fn missing(&self, task: TaskId) -> Error {
        if self.was_forgotten(task) {
            Error::TaskForgotten { task: task.get() }
        } else {
            Error::UnknownTask { task: task.get() }
        }
    }

    /// Invariant 8: whether `extra` more bytes of work fit the budget.
    fn check_budget(&self, extra: u64) -> Result<(), Error> {
        // Room for the results still to come: each open task's, capped, but never more than
        // retention lets settled tasks hold.
        let reserve = (self.open.len() as u64 * (u64::from(self.retention.result_bytes) + 512))
            .min(self.retention.max_bytes);
        let need = 2 * self.bytes + self.store.journal().bytes() + 3 * (extra + reserve);
        if need > self.budget {
            return Err(Error::EngineFull {
                footprint: self.footprint(),
                budget: self.budget,
            });
        }
        Ok(())
    }

    /// A transaction that carries the epoch and origin when nothing was committed yet.
    fn begin(&mut self) -> crate::store::Transaction {
        let mut txn = self.store.begin();
        if !self.meta_written {
            txn.put(meta_key(EPOCH_KEY), self.epoch.to_be_bytes().to_vec());
            txn.put(meta_key(ORIGIN_KEY), self.origin.to_vec());
            self.meta_written = true;
        }
        txn
    }

    /// Validates and records a new task in `Queued`. Returns its id and whether it is new
    /// (false when the idempotency key was used before).
    pub fn submit(&mut self, now_ms: u64, spec: TaskSpec) -> Result<(TaskId, bool), Error> {
        spec.validate()?;
        let idem = spec.idempotency_key.as_deref().map(idem_key);
        if let Some(key) = &idem {
            let snap = self.store.snapshot();
            if let Some(bytes) = self.store.get(&snap, key) {
                let id = <[u8; 4]>::try_from(&*bytes)
                    .map(u32::from_be_bytes)
                    .unwrap_or(0);
                return Ok((TaskId(id), false));
            }
        }
        for dep in &spec.depends_on {
            if !self.has(*dep) {
                return Err(Error::input("dependsOn", self.missing_reason(*dep)));
            }
        }
        if let Some(prev) = spec.follow_up_of {
            if !self.has(prev) {
                return Err(Error::input("followUpOf", self.missing_reason(prev)));
            }
        }
        if self.next_id == u32::MAX {
            // Every id JavaScript can be given is used (ids are never reused).
            return Err(Error::QueueFull {
                limit: u64::from(u32::MAX - 1),
            });
        }
        let id = TaskId(self.next_id);
        let record = TaskRecord {
            id,
            spec,
            state: TaskState::Queued,
            attempts: 0,
            created_ms: now_ms,
            updated_ms: now_ms,
        };
        let spec_bytes = record.encode_spec();
        let state_bytes = record.encode_state();
        let bytes = (spec_bytes.len() + state_bytes.len()) as u64 + TASK_OVERHEAD;
        self.check_budget(bytes)?;
        let mut txn = self.begin();
        txn.put(spec_key(id), spec_bytes);
        txn.put(task_key(id), state_bytes);
        if let Some(key) = idem {
            txn.put(key, id.get().to_be_bytes().to_vec());
        }
        txn.commit(&mut self.store)?;
        self.next_id += 1;
        self.bytes += bytes;
        self.pin(id, &record.spec.depends_on);
        self.counts.by_state[0] += 1;
        self.low_queued += u32::from(low_queued(&record));
        self.maybe_checkpoint();
        Ok((id, true))
    }

    /// Moves `task` to `to` at `now_ms` (one commit). Entering `Admitted` counts an attempt.
    pub fn transition(
        &mut self,
        now: u64,
        task: TaskId,
        to: TaskState,
    ) -> Result<TaskRecord, Error> {
        self.transition_replied(now, task, to, None)
    }

    /// The id the next submitted task gets.
    pub fn next_id(&self) -> u32 {
        self.next_id
    }

    /// Whether `task` is held (open or settled, not forgotten).
    pub fn has(&self, task: TaskId) -> bool {
        let snap = self.store.snapshot();
        self.store.get(&snap, &task_key(task)).is_some()
    }

    /// The latest record of `task`.
    #[inline(never)]
    pub fn get(&self, task: TaskId) -> Option<TaskRecord> {
        let snap = self.store.snapshot();
        let state = self.store.get(&snap, &task_key(task))?;
        let spec = self.store.get(&snap, &spec_key(task))?;
        TaskRecord::decode(task, &spec, &state).ok()
    }

    /// The latest record of `task` with its prompt left empty (for views that do not show it:
    /// no copy of the prompt is made).
    #[inline(never)]
    pub fn get_brief(&self, task: TaskId) -> Option<TaskRecord> {
        let snap = self.store.snapshot();
        let state = self.store.get(&snap, &task_key(task))?;
        let spec = self.store.get(&snap, &spec_key(task))?;
        TaskRecord::decode_brief(task, &spec, &state).ok()
    }

    /// Every task held, in id order, with prompts left empty (see [`TaskTable::get_brief`]).
    pub fn all_brief(&self) -> Vec<TaskRecord> {
        self.scan_records(TaskRecord::decode_brief)
    }

    /// LOW tasks queued: accepted and not admitted (waiting in line, on a dependency, in a
    /// deque, or to be sent again).
    pub fn low_queued(&self) -> u32 {
        self.low_queued
    }

    /// The state of `task`, without its spec (no prompt is copied).
    pub fn state(&self, task: TaskId) -> Option<TaskState> {
        let snap = self.store.snapshot();
        let state = self.store.get(&snap, &task_key(task))?;
        decode_state(&state).ok().map(|(s, ..)| s)
    }

    /// The spec of `task`.
    pub fn spec(&self, task: TaskId) -> Option<TaskSpec> {
        let snap = self.store.snapshot();
        let spec = self.store.get(&snap, &spec_key(task))?;
        decode_spec(&spec).ok()
    }

    /// Every task held, in id order, from one snapshot.
    pub fn all(&self) -> Vec<TaskRecord> {
        self.scan_records(TaskRecord::decode)
    }

    /// Every task held, in id order, from one snapshot, each decoded by `decode`.
    fn scan_records<E>(
        &self,
        decode: impl Fn(TaskId, &[u8], &[u8]) -> Result<TaskRecord, E>,
    ) -> Vec<TaskRecord> {
        let snap = self.store.snapshot();
        self.store
            .scan(&snap, TASK_PREFIX)
            .into_iter()
            .filter_map(|(k, state)| {
                let id = TaskId(u32::from_be_bytes(<[u8; 4]>::try_from(&k[1..]).ok()?));
                let spec = self.store.get(&snap, &spec_key(id))?;
                decode(id, &spec, &state).ok()
            })
            .collect()
    }

    /// The open tasks (not settled), in id order, prompts left empty.
    pub fn open(&self) -> Vec<TaskRecord> {
        self.open_ids()
            .into_iter()
            .filter_map(|id| self.get_brief(id))
            .collect()
    }

    /// Forgets the settled tasks the retention rule lets go at `now` (invariant 7), in one
    /// commit: their spec, state and idempotency keys. Returns them.
    pub fn retire(&mut self, now_ms: u64) -> Result<Vec<TaskId>, Error> {
        let r = self.retention;
        let mut out = Vec::new();
        let (mut count, mut bytes) = (self.settled.len(), self.settled_bytes);
        let mut pinned = 0;
        for kept in &self.settled {
            let old = now_ms.saturating_sub(kept.settled_ms) >= r.max_age_ms;
            if count <= r.max_tasks as usize && bytes <= r.max_bytes && !old {
                break;
            }
            if self.pins.contains_key(&kept.id) {
                // An open task waits on it: kept until that one settles.
                pinned += 1;
                continue;
            }
            out.push(*kept);
            count -= 1;
            bytes -= kept.bytes;
        }
        if out.is_empty() {
            return Ok(Vec::new());
        }
        let mut txn = self.begin();
        let mut tags = Vec::with_capacity(out.len());
        for kept in &out {
            let spec = self.spec(kept.id);
            tags.push(self.state(kept.id).map(|s| s.tag()));
            txn.delete(spec_key(kept.id));
            txn.delete(task_key(kept.id));
            if let Some(key) = spec.and_then(|s| s.idempotency_key) {
                txn.delete(idem_key(&key));
            }
        }
        let forgotten = self.counts.forgotten + out.len() as u64;
        txn.put(meta_key(FORGOTTEN_KEY), forgotten.to_be_bytes().to_vec());
        // Ids are never reused: a restore issues ids above this one even when the tasks with
        // the highest ids were forgotten.
        txn.put(meta_key(NEXT_KEY), self.next_id.to_be_bytes().to_vec());
        txn.commit(&mut self.store)?;
        if pinned == 0 {
            self.settled.drain(..out.len());
        } else {
            // `out` is a subsequence of `settled`, in its order.
            let mut next = out.iter().map(|k| k.id).peekable();
            self.settled.retain(|k| {
                let gone = next.peek() == Some(&k.id);
                if gone {
                    next.next();
                }
                !gone
            });
        }
        self.counts.forgotten = forgotten;
        for (kept, tag) in out.iter().zip(tags) {
            self.settled_bytes -= kept.bytes;
            self.bytes = self.bytes.saturating_sub(kept.bytes);
            if let Some(tag) = tag {
                self.counts.by_state[tag as usize] -= 1;
            }
        }
        self.maybe_checkpoint();
        Ok(out.into_iter().map(|k| k.id).collect())
    }

    /// Tasks that list `task` among their dependencies.
    pub fn dependents_of(&self, task: TaskId) -> Vec<TaskId> {
        self.all()
            .into_iter()
            .filter(|r| r.spec.depends_on.contains(&task))
            .map(|r| r.id)
            .collect()
    }

    /// Records that the engine created `session` (one commit), so a restore knows to retire it.
    pub fn record_session(&mut self, session: &SessionId) -> Result<(), Error> {
        let mut txn = self.begin();
        txn.put(session_key(session), Vec::new());
        txn.commit(&mut self.store)?;
        self.maybe_checkpoint();
        Ok(())
    }

    /// Records that `session` is gone (one commit).
    pub fn forget_session(&mut self, session: &SessionId) -> Result<(), Error> {
        let key = session_key(session);
        let snap = self.store.snapshot();
        if self.store.get(&snap, &key).is_none() {
            return Ok(());
        }
        drop(snap);
        let mut txn = self.store.begin();
        txn.delete(key);
        txn.commit(&mut self.store)?;
        self.maybe_checkpoint();
        Ok(())
    }

    /// Sessions the engine created and has not seen gone.
    pub fn sessions(&self) -> Vec<SessionId> {
        let snap = self.store.snapshot();
        let prefix = meta_key(SESSION_PREFIX);
        self.store
            .scan(&snap, &prefix)
            .into_iter()
            .filter_map(|(k, _)| {
                String::from_utf8(k[prefix.len()..].to_vec())
                    .ok()
                    .map(SessionId)
            })
            .collect()
    }

    /// The store underneath (journal, snapshots).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Rebuilds a table from an export that stands alone (from seq 1 or from a checkpoint),
    /// verified against `head` (invariant 5). Its epoch is one above the journal's and
    /// `epoch_floor(origin)` (the highest the caller knows of for that journal), journaled
    /// with the first change.
    pub fn restore(
        export: &[u8],
        head: Head,
        now_ms: u64,
        retention: RetentionConfig,
        budget: u64,
        epoch_floor: impl FnOnce([u8; 16]) -> u64,
    ) -> Result<(TaskTable, Restored), Error> {
        let store = Store::replay(export, head)?;
        TaskTable::from_store(store, now_ms, retention, budget, epoch_floor)
    }

    /// [`TaskTable::restore`] from a store already replayed from a verified journal.
    pub fn from_store(
        store: Store,
        now_ms: u64,
        retention: RetentionConfig,
        budget: u64,
        epoch_floor: impl FnOnce([u8; 16]) -> u64,
    ) -> Result<(TaskTable, Restored), Error> {
        let mut table = TaskTable::with_limits(retention, budget, [0; 16]);
        table.store = store;
        let snap = table.store.snapshot();
        let meta = |key: &str| table.store.get(&snap, &meta_key(key));
        let stored_epoch = meta(EPOCH_KEY).map_or(0, |b| u64_of(&b));
        if let Some(origin) = meta(ORIGIN_KEY).and_then(|b| <[u8; 16]>::try_from(&*b).ok()) {
            table.origin = origin;
        }
        table.counts.forgotten = meta(FORGOTTEN_KEY).map_or(0, |b| u64_of(&b));
        drop(snap);
        table.epoch = stored_epoch.max(epoch_floor(table.origin)) + 1;
        let mut txn = table.store.begin();
        txn.put(meta_key(EPOCH_KEY), table.epoch.to_be_bytes().to_vec());
        txn.put(meta_key(ORIGIN_KEY), table.origin.to_vec());
        txn.commit(&mut table.store)?;
        table.meta_written = true;
        // Every task key must decode: a journal of another format is refused, not half read.
        let all = table.all();
        let keys = {
            let snap = table.store.snapshot();
            table.store.scan(&snap, TASK_PREFIX).len()
        };
        if all.len() != keys {
            return Err(Error::JournalInvalid {
                record: 0,
                reason: format!(
                    "{} of {keys} task records are not in task format 2 (a journal of an older engine?)",
                    keys - all.len()
                ),
            });
        }
        // Ids are never reused: the next is one above the highest ever issued, held or not.
        let mut next = 1;
        let mut settled = Vec::new();
        for record in all {
            next = next.max(record.id.get() + 1);
            let bytes =
                (record.encode_spec().len() + record.encode_state().len()) as u64 + TASK_OVERHEAD;
            table.bytes += bytes;
            table.counts.by_state[record.state.tag() as usize] += 1;
            table.low_queued += u32::from(low_queued(&record));
            if record.state.is_settled() {
                settled.push((record.updated_ms, record.id.get(), bytes));
            } else {
                table.pin(record.id, &record.spec.depends_on);
            }
        }
        table.next_id = next.max(table.next_id_floor());
        // Settlement order: each entry's time over its index, sorted as `u64`s (the one element
        // type the crate sorts). Times past 2^42 ms (year 2109) or more than 2^22 tasks held
        // keep id order.
        let mut order: Vec<u64> = settled
            .iter()
            .enumerate()
            .map(|(i, (ms, ..))| (*ms).min((1 << 42) - 1) << 22 | i as u64)
            .collect();
        if settled.len() < 1 << 22 {
            order.sort_unstable();
        }
        for key in order {
            let (settled_ms, id, bytes) = settled[(key & ((1 << 22) - 1)) as usize];
            table.settled_bytes += bytes;
            table.settled.push_back(Kept {
                id: TaskId(id),
                settled_ms,
                bytes,
            });
        }
        let mut restored = Restored::default();
        for mut record in table.all() {
            let idempotent = record.spec.idempotency_key.is_some();
            let session = record.state.session().cloned();
            record.state = match &record.state {
                TaskState::Admitted | TaskState::SessionAcquired { .. } => TaskState::Queued,
                TaskState::Dispatched { .. }
                | TaskState::Running { .. }
                | TaskState::Unknown { .. }
                    if idempotent =>
                {
                    TaskState::Queued
                }
                TaskState::Unknown { .. } => {
                    restored.unknown.push(record.id);
                    continue; // already journaled as unknown
                }
                TaskState::Dispatched { at_ms, .. } | TaskState::Running { at_ms, .. } => {
                    restored.unknown.push(record.id);
                    TaskState::Unknown {
                        session: session.clone(),
                        at_ms: *at_ms,
                    }
                }
                _ => continue,
            };
            if record.state == TaskState::Queued {
                restored.requeued.push(record.id);
                // The session it had is nobody's now: retire it.
                restored.orphan_sessions.extend(session);
            }
            record.updated_ms = now_ms;
            table.write(&record, None)?;
        }
        Ok((table, restored))
    }

    /// The next id the journal's `next` metadata names (written when retention forgets tasks,
    /// so ids of forgotten tasks are not reused); 1 without it.
    fn next_id_floor(&self) -> u32 {
        let snap = self.store.snapshot();
        self.store
            .get(&snap, &meta_key(NEXT_KEY))
            .and_then(|b| <[u8; 4]>::try_from(&*b).ok())
            .map_or(1, u32::from_be_bytes)
    }

    /// Writes `record`, and `extra` (a key and its value) in the same commit.
    fn write(
        &mut self,
        record: &TaskRecord,
        extra: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), Error> {
        let key = task_key(record.id);
        let old = {
            let snap = self.store.snapshot();
            self.store.get(&snap, &key)
        };
        let old_tag = old
            .as_deref()
            .and_then(|b| decode_state(b).ok())
            .map(|(s, ..)| s.tag());
        let old_len = old.map_or(0, |b| b.len() as u64);
        let bytes = record.encode_state();
        let new_len = bytes.len() as u64;
        let mut txn = self.begin();
        txn.put(key, bytes);
        if let Some((k, v)) = extra {
            txn.put(k, v);
        }
        txn.commit(&mut self.store)?;
        self.bytes = (self.bytes + new_len).saturating_sub(old_len);
        if let Some(tag) = old_tag {
            self.counts.by_state[tag as usize] -= 1;
        }
        self.counts.by_state[record.state.tag() as usize] += 1;
        if record.spec.priority == Priority::Low {
            let was = old_tag == Some(super::task::TaskPhase::Queued as u8);
            self.low_queued =
                (self.low_queued + u32::from(low_queued(record))).saturating_sub(u32::from(was));
        }
        if record.state.is_settled() {
            if let Some(deps) = self.open.remove(&record.id) {
                self.unpin(record.id, deps);
                let bytes = self.spec_len(record.id) + new_len + TASK_OVERHEAD;
                self.settled_bytes += bytes;
                self.settled.push_back(Kept {
                    id: record.id,
                    settled_ms: record.updated_ms,
                    bytes,
                });
            }
        }
        self.maybe_checkpoint();
        Ok(())
    }

    /// Records open `task`, waiting on `deps` (they are not forgotten before it settles).
    fn pin(&mut self, task: TaskId, deps: &[TaskId]) {
        for dep in deps {
            self.pins.entry(*dep).or_default().push(task);
        }
        self.open.insert(task, deps.to_vec());
    }

    /// `task` settled: its dependencies may be forgotten once nothing else waits on them.
    fn unpin(&mut self, task: TaskId, deps: Vec<TaskId>) {
        for dep in deps {
            if let Some(waiting) = self.pins.get_mut(&dep) {
                waiting.retain(|t| *t != task);
                if waiting.is_empty() {
                    self.pins.remove(&dep);
                }
            }
        }
    }

    fn spec_len(&self, task: TaskId) -> u64 {
        let snap = self.store.snapshot();
        self.store
            .get(&snap, &spec_key(task))
            .map_or(0, |b| b.len() as u64)
    }

    /// Invariant 6.
    #[inline(never)]
    fn maybe_checkpoint(&mut self) {
        let due = CHECKPOINT_MIN_RECORDS.max(2 * self.store.key_count());
        let due_bytes = CHECKPOINT_MIN_BYTES.max(self.bytes);
        let journal = self.store.journal();
        if journal.len() > due || journal.tail_bytes() > due_bytes {
            self.store.checkpoint();
        }
    }
}

/// `text` cut to at most `max` bytes (at a character boundary) with a note naming its full
/// length and the session that holds all of it; as it is when it fits.
fn truncate(text: String, max: usize, session: &SessionId) -> String {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}\n[truncated: {} bytes in all; read the rest from session {}]",
        &text[..cut],
        text.len(),
        session.as_str()
    )
}

mod replies;
#[cfg(test)]
mod tests;
