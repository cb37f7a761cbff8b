//! Restoring an engine from its journal: unknown tasks reconciled through the host, queued
//! ones queued again, and the sessions the lost instance left on the server either parked again
//! (a finished task's conversation, for its follow-ups) or aborted and deleted.

use crate::config::Config;
use crate::engine::tasks::Restored;
use crate::error::Error;
use crate::host::{FailureClass, HostOp};

use super::{CallFor, Engine, Live, TaskState, TaskTable};

impl Engine {
    /// Rebuilds an engine from a journal (see `TaskTable::restore`): unknown tasks are
    /// reconciled through the host (their last message is read), requeued ones wait for
    /// admission again, sessions whose last turn succeeded are parked for follow-ups again, and
    /// sessions nobody owns any more are aborted and retired.
    pub fn restore(
        config: &Config,
        seed: u64,
        export: &[u8],
        head: crate::store::Head,
        now: u64,
    ) -> Result<(Self, Restored), Error> {
        let store = crate::store::Store::replay(export, head)?;
        Self::restore_fenced(config, seed, store, now, None, |_| 0)
    }

    /// [`Engine::restore`] from a verified replayed store: fencing epoch above `epoch_floor`'s
    /// and the journal's (`TaskTable::restore`); `memory` (read at `now`) decides LOW work.
    pub fn restore_fenced(
        config: &Config,
        seed: u64,
        store: crate::store::Store,
        now: u64,
        memory: Option<crate::host::MemoryReading>,
        epoch_floor: impl FnOnce([u8; 16]) -> u64,
    ) -> Result<(Self, Restored), Error> {
        let (tasks, restored) = TaskTable::from_store(
            store,
            now,
            config.retention,
            config.memory_budget,
            epoch_floor,
        )?;
        let mut o = Self::with_table(config, seed, tasks);
        o.clock = now;
        if let Some(reading) = memory {
            o.observe_memory(now, reading);
        }
        for record in o.tasks.all() {
            if !record.state.is_settled() {
                for dep in &record.spec.depends_on {
                    o.dependents.entry(*dep).or_default().push(record.id);
                }
            }
            match &record.state {
                TaskState::Queued => {
                    o.live.insert(record.id, Live::default());
                    o.enqueue(now, record.id)?;
                }
                TaskState::Unknown { session, .. } => {
                    // It may still be running: it counts against the limits until reconciled.
                    let permit = o.controller.adopt(
                        record.id,
                        &record.spec.agent,
                        record.spec.model.as_deref(),
                    )?;
                    let mut live = Live {
                        permit: Some(permit),
                        restored: true,
                        ..Live::default()
                    };
                    if let Some(s) = session {
                        o.pool.created_in_use(
                            s.clone(),
                            &record.spec.agent,
                            record.spec.parent.clone(),
                            now,
                        );
                        o.by_session.insert(s.clone(), record.id);
                        live.check_pending = true;
                        // Reconciled or not, it settles by its deadline from now.
                        live.deadline_at = Some(now.saturating_add(record.spec.deadline_ms));
                        o.live.insert(record.id, live);
                        o.place(record.id, &record.spec.agent);
                        o.call(
                            CallFor::LastMessage(record.id),
                            HostOp::LastAssistantMessage { session: s.clone() },
                        );
                    } else {
                        o.live.insert(record.id, live);
                        o.settle(
                            now,
                            record.id,
                            TaskState::Failed {
                                class: FailureClass::Invalid,
                                message: "lost in a restart before it had a session".into(),
                            },
                        )?;
                    }
                }
                _ => {}
            }
            o.adopt_session(&record, now);
        }
        // Every other session the lost instance created and did not see gone, except those of
        // tasks being reconciled, is nobody's now: the pool aborts it, then deletes it after
        // quiet.
        for s in o.tasks.sessions() {
            if o.pool.state(&s).is_none() {
                o.pool.created_in_use(s.clone(), "", None, now);
                o.pool.release(&s, false, now);
            }
        }
        o.pump(now);
        Ok((o, restored))
    }

    /// Restoring, in task order: a session the lost instance created and did not see gone,
    /// whose turn ended in a success, holds a conversation a follow-up may continue, so it is
    /// parked again as if the instance had lived: idle since that success (one idle past the
    /// pool's retirement is not taken), its turns the successes it served, the per-agent bound
    /// applied in task order — unless a follow-up of a success in it was sent and has not
    /// succeeded (failed, cancelled, timed out, or queued to be sent again): that follow-up's
    /// turn may still run there (a deadline's abort not landed), so the session is retired with
    /// an abort. That may cost a conversation the follow-up never touched (it ran in a fresh
    /// session) or one a rate-limited follow-up kept for its retry (which then runs in a fresh
    /// one): the journal does not say where a failed attempt ran, and a prompt into a session
    /// that may be busy is what this must never send.
    ///
    /// A task being reconciled in such a session takes it over (in use).
    #[inline(never)]
    fn adopt_session(&mut self, r: &crate::engine::task::TaskRecord, now: u64) {
        match &r.state {
            TaskState::Succeeded { session, .. } if self.tasks.has_session(session) => {
                let (agent, parent) = (&r.spec.agent, r.spec.parent.clone());
                self.pool
                    .restored_parked(session, agent, parent, r.updated_ms, now);
            }
            TaskState::Failed { .. }
            | TaskState::Cancelled { .. }
            | TaskState::TimedOut
            | TaskState::Queued
                if r.attempts > 0 =>
            {
                if let Some(s) = r
                    .spec
                    .follow_up_of
                    .and_then(|p| self.tasks.state(p))
                    .and_then(|p| p.session().cloned())
                {
                    // Retired with an abort (the pool's way for a parked session it cannot
                    // trust; one in use by a task being reconciled is left to it).
                    self.pool.health(&s, false, now);
                }
            }
            _ => {}
        }
    }
}
