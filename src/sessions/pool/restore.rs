//! Sessions read back from a lost instance's journal: what the pool may hand a follow-up again.

use super::{Pool, SessionId, State};

impl Pool {
    /// Records a session a lost instance had parked (read back from its journal) after a turn
    /// it served that ended at `at`: parked again as it would be had the instance lived (one
    /// more turn if already so; within the per-agent bound and the turn limit; idle since
    /// `at`), unless it would have retired idle by `now` — then the pool does not take it, and
    /// the engine has it aborted and deleted with the sessions nobody owns.
    pub fn restored_parked(
        &mut self,
        id: &SessionId,
        agent: &str,
        parent: Option<SessionId>,
        at: u64,
        now: u64,
    ) {
        // A stamp ahead of `now` (the lost instance's clock ran ahead) counts as now.
        let at = at.min(now);
        if now - at >= self.config.idle_retire_ms {
            return;
        }
        match self.sessions.get_mut(id) {
            Some(e) if e.state == State::Parked => {
                e.state = State::InUse;
                e.turns += 1;
            }
            Some(_) => return,
            None => self.insert(id.clone(), agent, parent, State::InUse, 1, at),
        }
        self.release(id, true, at);
    }
}
