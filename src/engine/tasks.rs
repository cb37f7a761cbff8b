//! The task table: every task's record in the MVCC store, one commit (and so one journal
//! record) per submission and per transition.
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

use crate::error::Error;
use crate::host::SessionId;
use crate::ids::TaskId;
use crate::store::{Head, Store, meta_key, task_key};

use super::task::{TaskRecord, TaskSpec, TaskState, is_legal};

/// The prefix of task keys in the store.
const TASK_PREFIX: &[u8] = b"t";
/// Fewest records between two checkpoints.
pub const CHECKPOINT_MIN_RECORDS: usize = 256;
/// The metadata prefix of sessions the engine created.
const SESSION_PREFIX: &str = "session/";

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

/// The task table. See the module docs.
#[derive(Debug, Default)]
pub struct TaskTable {
    store: Store,
    next_id: u32,
}

impl TaskTable {
    /// An empty table.
    pub fn new() -> Self {
        TaskTable {
            store: Store::new(),
            next_id: 1,
        }
    }

    /// Validates and records a new task in `Queued`. Returns its id and whether it is new
    /// (false when the idempotency key was used before).
    pub fn submit(&mut self, now_ms: u64, spec: TaskSpec) -> Result<(TaskId, bool), Error> {
        spec.validate()?;
        let idem = spec
            .idempotency_key
            .as_ref()
            .map(|k| meta_key(&format!("idem/{k}")));
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
            if self.get(*dep).is_none() {
                return Err(Error::input("dependsOn", format!("no task {}", dep.get())));
            }
        }
        if let Some(prev) = spec.follow_up_of {
            if self.get(prev).is_none() {
                return Err(Error::input(
                    "followUpOf",
                    format!("no task {}", prev.get()),
                ));
            }
        }
        if self.next_id >= crate::engine::runs::RUN_BIT {
            // Ids at and above RUN_BIT name run tasks in the controller.
            return Err(Error::QueueFull {
                limit: u64::from(crate::engine::runs::RUN_BIT - 1),
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
        let mut txn = self.store.begin();
        txn.put(task_key(id), record.encode());
        if let Some(key) = idem {
            txn.put(key, id.get().to_be_bytes().to_vec());
        }
        txn.commit(&mut self.store)?;
        self.next_id += 1;
        self.maybe_checkpoint();
        Ok((id, true))
    }

    /// Moves `task` to `to` at `now_ms` (one commit). Entering `Admitted` counts an attempt.
    pub fn transition(
        &mut self,
        now_ms: u64,
        task: TaskId,
        to: TaskState,
    ) -> Result<TaskRecord, Error> {
        let mut record = self
            .get(task)
            .ok_or_else(|| Error::UnknownTask { task: task.get() })?;
        if !is_legal(&record.state, &to) {
            return Err(Error::IllegalTransition {
                task: task.get(),
                from: record.state.name(),
                to: to.name(),
            });
        }
        if to == TaskState::Admitted {
            record.attempts += 1;
        }
        record.state = to;
        record.updated_ms = now_ms;
        self.write(&record)?;
        Ok(record)
    }

    /// The latest record of `task`.
    pub fn get(&self, task: TaskId) -> Option<TaskRecord> {
        let snap = self.store.snapshot();
        self.store
            .get(&snap, &task_key(task))
            .and_then(|b| TaskRecord::decode(&b).ok())
    }

    /// Every task, in id order, from one snapshot.
    pub fn all(&self) -> Vec<TaskRecord> {
        let snap = self.store.snapshot();
        self.store
            .scan(&snap, TASK_PREFIX)
            .into_iter()
            .filter_map(|(_, b)| TaskRecord::decode(&b).ok())
            .collect()
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
        let mut txn = self.store.begin();
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
    /// verified against `head` (invariant 5).
    pub fn restore(export: &[u8], head: Head, now_ms: u64) -> Result<(TaskTable, Restored), Error> {
        let store = Store::replay(export, head)?;
        let mut table = TaskTable { store, next_id: 1 };
        let mut restored = Restored::default();
        for mut record in table.all() {
            table.next_id = table.next_id.max(record.id.get() + 1);
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
            table.write(&record)?;
        }
        Ok((table, restored))
    }

    fn write(&mut self, record: &TaskRecord) -> Result<(), Error> {
        let mut txn = self.store.begin();
        txn.put(task_key(record.id), record.encode());
        txn.commit(&mut self.store)?;
        self.maybe_checkpoint();
        Ok(())
    }

    /// Invariant 6.
    fn maybe_checkpoint(&mut self) {
        let due = CHECKPOINT_MIN_RECORDS.max(2 * self.store.key_count());
        if self.store.journal().len() > due {
            self.store.checkpoint();
        }
    }
}

#[cfg(test)]
mod tests;
