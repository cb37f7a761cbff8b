//! Session bookkeeping: which OpenCode sessions the engine created, for whom, and what it cost.
//!
//! [`SessionBook`] records every session created through `Engine::createSession` (sessions the
//! caller owns); [`Pool`] keeps the sessions the engine itself owns for sub-agent tasks, from
//! warm to deleted. Both only record; the engine performs the I/O.
//!
//! Invariants:
//! 1. A session id is recorded at most once; a duplicate id from the host is refused.
//! 2. `created + failed` equals the number of creations the host has answered.

mod pool;

use rustc_hash::FxHashMap;

pub(crate) use self::pool::{Acquired, Pool, PoolConfig};
use crate::host::SessionId;

/// What the book knows of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The agent type it was created for.
    pub agent: String,
    /// The parent session, when there is one.
    pub parent: Option<SessionId>,
    /// Host time when it was created, in ms.
    pub created_at_ms: u64,
}

/// Counters for the stats view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounters {
    /// Sessions the host created for the engine.
    pub created: u64,
    /// Creations the host failed.
    pub failed: u64,
    /// Sum of creation latencies (request → answer), ms.
    pub create_ms_total: u64,
}

/// The sessions the engine created.
#[derive(Debug, Default)]
pub struct SessionBook {
    sessions: FxHashMap<SessionId, SessionRecord>,
    counters: SessionCounters,
}

impl SessionBook {
    /// Records a session the host created after `latency_ms`. Returns false (and records
    /// nothing) when the id is already known.
    pub fn record_created(
        &mut self,
        id: SessionId,
        record: SessionRecord,
        latency_ms: u64,
    ) -> bool {
        if self.sessions.contains_key(&id) {
            return false;
        }
        self.sessions.insert(id, record);
        self.counters.created += 1;
        self.counters.create_ms_total = self.counters.create_ms_total.saturating_add(latency_ms);
        true
    }

    /// Records a failed creation.
    pub fn record_failed(&mut self) {
        self.counters.failed += 1;
    }

    /// The record for `id`, if the engine created it.
    pub fn get(&self, id: &SessionId) -> Option<&SessionRecord> {
        self.sessions.get(id)
    }

    /// The counters.
    pub fn counters(&self) -> SessionCounters {
        self.counters
    }

    /// Number of sessions recorded.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is recorded.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn record() -> SessionRecord {
        SessionRecord {
            agent: "worker".into(),
            parent: None,
            created_at_ms: 5,
        }
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let mut book = SessionBook::default();
        assert!(book.record_created(SessionId("s1".into()), record(), 10));
        assert!(!book.record_created(SessionId("s1".into()), record(), 10));
        assert_eq!(book.counters().created, 1);
        assert_eq!(book.len(), 1);
    }

    #[test]
    fn latencies_add_up() {
        let mut book = SessionBook::default();
        book.record_created(SessionId("a".into()), record(), 10);
        book.record_created(SessionId("b".into()), record(), 30);
        book.record_failed();
        let c = book.counters();
        assert_eq!((c.created, c.failed, c.create_ms_total), (2, 1, 40));
    }
}
