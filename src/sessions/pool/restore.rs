//! Sessions read back from a lost instance's journal: what the pool may hand a follow-up again.

use super::{Pool, SessionId, State};

impl Pool {
    /// Records a session a lost instance had parked (read back from its journal) for a turn
    /// it served: parked again (one more turn if already so), within the per-agent bound and
    /// the turn limit.
    pub fn restored_parked(
        &mut self,
        id: &SessionId,
        agent: &str,
        parent: Option<SessionId>,
        now: u64,
    ) {
        match self.sessions.get_mut(id) {
            Some(e) if e.state == State::Parked => {
                e.state = State::InUse;
                e.turns += 1;
            }
            Some(_) => return,
            None => self.insert(id.clone(), agent, parent, State::InUse, 1, now),
        }
        self.release(id, true, now);
    }

    /// A session parked by [`Pool::restored_parked`] may still run a turn it served after: it
    /// is busy until the host says otherwise, and retired with an abort if `retire`.
    pub fn restored_busy(&mut self, id: &SessionId, retire: bool, now: u64) {
        if let Some(e) = self
            .sessions
            .get_mut(id)
            .filter(|e| e.state == State::Parked)
        {
            e.busy = true;
            self.health(id, !retire, now);
        }
    }
}
