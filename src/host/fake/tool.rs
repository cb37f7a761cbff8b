//! A turn blocked in a tool call: a sub-agent delegation in wait mode. The session stays busy
//! but makes no model request until the tool call returns.

use super::{FakeHost, Item};
use crate::host::SessionId;

impl FakeHost {
    /// Whether `session` is busy and not blocked in a tool call: a turn whose model request is
    /// in flight (what a provider's concurrency limit counts).
    pub fn is_requesting(&self, session: &SessionId) -> bool {
        self.sessions
            .borrow()
            .get(session)
            .is_some_and(|s| s.busy && !s.deleted && s.tool.is_none())
    }

    /// The busy `session`'s turn blocks in a tool call (a sub-agent delegation in wait mode):
    /// it stays busy but makes no model request, and what its turn had left to say waits until
    /// [`FakeHost::unblock`]. False when it is not busy, or already blocked.
    pub fn block(&self, session: &SessionId) -> bool {
        let now = self.clock.get();
        let mut sessions = self.sessions.borrow_mut();
        let Some(s) = sessions.get_mut(session) else {
            return false;
        };
        if !s.busy || s.deleted || s.tool.is_some() {
            return false;
        }
        let run = s.run;
        let mut queue = self.queue.borrow_mut();
        let mut held = Vec::new();
        let mut i = 0;
        while i < queue.len() {
            let ours = match &queue[i].2 {
                Item::Retry(x, r, ..) | Item::Step(x, r, _) | Item::Finish(x, r, _) => {
                    x == session && *r == run
                }
                _ => false,
            };
            if ours {
                let (due, _, item) = queue.swap_remove(i);
                held.push((due.saturating_sub(now), item));
            } else {
                i += 1;
            }
        }
        held.sort_by_key(|(after, _)| *after);
        s.tool = Some(held);
        true
    }

    /// The tool call of a blocked `session` returns: its turn goes on where it stopped. False
    /// when it was not blocked.
    pub fn unblock(&self, session: &SessionId) -> bool {
        let held = self
            .sessions
            .borrow_mut()
            .get_mut(session)
            .and_then(|s| s.tool.take());
        let Some(held) = held else {
            return false;
        };
        for (after, item) in held {
            self.schedule(after, item);
        }
        true
    }
}
