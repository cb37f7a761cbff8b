//! Replies recorded per session: the server's stamp of the reply that ended a session's last
//! successful turn, journaled with the success as the session key's value (see
//! `store::journal`), so a follow-up continuing the session — restored from the journal or not —
//! tells its own reply from its predecessor's without comparing clocks. A follow-up whose turn
//! ended in an error and that is sent again in the same session records that error's stamp the
//! same way, with its requeue.

use super::{TaskTable, is_legal, session_key, truncate};
use crate::engine::task::{TaskRecord, TaskState};
use crate::error::Error;
use crate::host::SessionId;
use crate::ids::TaskId;

impl TaskTable {
    /// [`TaskTable::transition`], recording in the same commit the server's stamp of the reply
    /// that ended `reply`'s session's turn (a session still held), so a follow-up continuing
    /// the session, restored or not, tells its own reply from it ([`TaskTable::reply_of`]).
    pub fn transition_replied(
        &mut self,
        now_ms: u64,
        task: TaskId,
        to: TaskState,
        reply: Option<(&SessionId, u64)>,
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
        record.state = match to {
            TaskState::Succeeded { session, text } => TaskState::Succeeded {
                text: truncate(text, self.retention.result_bytes as usize, &session),
                session,
            },
            to => to,
        };
        record.updated_ms = now_ms;
        let extra = reply.map(|(s, stamp)| (session_key(s), stamp.to_be_bytes().to_vec()));
        let extra = extra.filter(|(k, _)| self.store.get(&self.store.snapshot(), k).is_some());
        self.write(&record, extra)?;
        Ok(record)
    }

    /// Whether the engine created `session` and has not seen it gone.
    pub fn has_session(&self, session: &SessionId) -> bool {
        let snap = self.store.snapshot();
        self.store.get(&snap, &session_key(session)).is_some()
    }

    /// The server's stamp of the reply that ended `session`'s last recorded turn, as recorded
    /// by [`TaskTable::transition_replied`], if any.
    pub fn reply_of(&self, session: &SessionId) -> Option<u64> {
        let snap = self.store.snapshot();
        let value = self.store.get(&snap, &session_key(session))?;
        <[u8; 8]>::try_from(&*value).ok().map(u64::from_be_bytes)
    }
}
