//! The task store: multi-version records with snapshot isolation, and a hash-chained journal.
//!
//! # MVCC in one page
//!
//! Every committed write creates a new *version* of its key, stamped with the commit's sequence
//! number. A [`Snapshot`] is a sequence number: it sees, for each key, the newest version stamped
//! at or before it — so a reader never sees a half-applied commit, and never blocks a writer.
//! A [`Transaction`] reads at its snapshot (plus its own writes) and buffers writes; at commit
//! it is checked against every key it writes: if another transaction committed a newer version
//! of that key after the snapshot, the commit fails with `Conflict` (*first committer wins*).
//! This is snapshot isolation: dirty writes, dirty and intermediate reads, circular information
//! flow, lost updates and read skew cannot happen; *write skew* can (two transactions read an
//! overlapping set and write disjoint keys). To prevent a write skew, make both transactions
//! write one shared *guard* key — then the second to commit conflicts.
//!
//! # Garbage collection
//!
//! The *watermark* is the oldest live snapshot (or the last commit when none is live). A version
//! is garbage when a newer version of its key is at or below the watermark: no snapshot can see
//! it. Commits collect the keys they write; [`Store::gc`] sweeps all keys. So after `gc`, a key
//! holds at most `1 + (commits to it after the watermark)` versions, and a deleted key whose
//! tombstone is at or below the watermark holds none.
//!
//! Invariants:
//! 1. Versions of a key are in increasing sequence order; sequence numbers are 1, 2, 3, … over
//!    commits that write something (read-only commits write no record).
//! 2. Every commit that writes appends exactly one journal record, and `journal().head().seq`
//!    equals the last commit's sequence number.
//! 3. A snapshot's view never changes while it lives (GC keeps what it can see).

mod journal;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;

pub(crate) use self::journal::Journal;
#[cfg(test)]
use self::journal::encode_checkpoint;
pub use self::journal::{
    Decoded, Hash, Head, Verified, chain, decode_record, encode_record, frames, standalone_anchor,
    verify, verify_each, verify_standalone,
};
use crate::error::Error;
use crate::ids::TaskId;

/// The key of a task's record: `b't'` followed by the id, big-endian (so tasks scan in id order).
#[inline(never)]
pub fn task_key(task: TaskId) -> Vec<u8> {
    let mut k = Vec::with_capacity(5);
    k.push(b't');
    k.extend_from_slice(&task.get().to_be_bytes());
    k
}

/// The key of an engine metadata entry: `b'm'` followed by its name.
pub(crate) fn meta_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(b'm');
    k.extend_from_slice(name.as_bytes());
    k
}

#[derive(Debug, Clone)]
struct Version {
    seq: u64,
    value: Option<Rc<[u8]>>,
}

/// Live snapshots by sequence number, shared with every [`Snapshot`] so a dropped one
/// unregisters itself: `(seq, how many)`, ascending. A sorted vector, not a map: a handful
/// of sequence numbers are live at once and a new snapshot takes the newest, so it goes at the
/// end (and a map's code is kilobytes of the `.wasm`).
#[derive(Debug, Default)]
struct Registry {
    live: RefCell<Vec<(u64, usize)>>,
}

impl Registry {
    fn oldest(&self) -> Option<u64> {
        self.live.borrow().first().map(|&(seq, _)| seq)
    }

    /// One more live snapshot at `seq`.
    fn open(&self, seq: u64) {
        let mut live = self.live.borrow_mut();
        match live.binary_search_by_key(&seq, |&(s, _)| s) {
            Ok(i) => live[i].1 += 1,
            Err(i) => live.insert(i, (seq, 1)),
        }
    }

    /// One live snapshot at `seq` fewer.
    fn close(&self, seq: u64) {
        let mut live = self.live.borrow_mut();
        if let Ok(i) = live.binary_search_by_key(&seq, |&(s, _)| s) {
            live[i].1 -= 1;
            if live[i].1 == 0 {
                live.remove(i);
            }
        }
    }
}

/// A consistent read view. Cheap to take; dropping it lets GC reclaim what only it could see.
#[derive(Debug)]
pub struct Snapshot {
    seq: u64,
    registry: Rc<Registry>,
}

impl Snapshot {
    /// The last commit this snapshot sees.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Clone for Snapshot {
    fn clone(&self) -> Self {
        self.registry.open(self.seq);
        Snapshot {
            seq: self.seq,
            registry: Rc::clone(&self.registry),
        }
    }
}

impl Drop for Snapshot {
    #[inline(never)]
    fn drop(&mut self) {
        self.registry.close(self.seq);
    }
}

/// The store. See the module docs.
#[derive(Debug, Default)]
pub struct Store {
    data: BTreeMap<Vec<u8>, Vec<Version>>,
    last_seq: u64,
    registry: Rc<Registry>,
    journal: Journal,
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Store::default()
    }

    /// A snapshot of everything committed so far.
    #[inline(never)]
    pub fn snapshot(&self) -> Snapshot {
        self.registry.open(self.last_seq);
        Snapshot {
            seq: self.last_seq,
            registry: Rc::clone(&self.registry),
        }
    }

    /// A transaction reading at a new snapshot.
    pub fn begin(&self) -> Transaction {
        Transaction {
            snapshot: self.snapshot(),
            writes: Writes::default(),
        }
    }

    /// The value of `key` as `snapshot` sees it.
    #[inline(never)]
    pub fn get(&self, snapshot: &Snapshot, key: &[u8]) -> Option<Rc<[u8]>> {
        visible(self.data.get(key)?, snapshot.seq)
    }

    /// The entries with keys starting with `prefix`, as `snapshot` sees them, in key order.
    pub fn scan(&self, snapshot: &Snapshot, prefix: &[u8]) -> Vec<(Vec<u8>, Rc<[u8]>)> {
        self.data
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, versions)| visible(versions, snapshot.seq).map(|v| (k.clone(), v)))
            .collect()
    }

    /// The last commit's sequence number.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Drops journal records the host has persisted, through `seq`.
    pub fn forget_journal_through(&mut self, seq: u64) {
        self.journal.forget_through(seq);
    }

    /// Removes every version no live snapshot can see.
    pub fn gc(&mut self) {
        let watermark = self.watermark();
        self.data.retain(|_, versions| collect(versions, watermark));
    }

    /// Versions stored, over all keys.
    pub fn version_count(&self) -> usize {
        self.data.values().map(Vec::len).sum()
    }

    /// Keys stored (including keys whose newest version is a tombstone still visible to some
    /// snapshot).
    pub fn key_count(&self) -> usize {
        self.data.len()
    }

    /// Journals a checkpoint: one record holding the whole state (see the journal's docs),
    /// after which the journal keeps only it and what follows. The data does not change.
    /// Returns its sequence number.
    #[inline(never)]
    pub fn checkpoint(&mut self) -> u64 {
        let seq = self.last_seq + 1;
        let snap = self.snapshot();
        let entries = self.scan(&snap, b"");
        drop(snap);
        self.journal
            .checkpoint(seq, entries.iter().map(|(k, v)| (k.as_slice(), &**v)));
        self.last_seq = seq;
        seq
    }

    /// Rebuilds a store from an export that stands alone (from seq 1, or from a checkpoint),
    /// verified against `expected_head`. The rebuilt store's export is byte-equal to `export`.
    pub fn replay(export: &[u8], expected_head: Head) -> Result<Store, Error> {
        Store::replay_frames(
            frames(export).map(|f| f.map(|(record, hash)| (record.to_vec(), hash))),
            expected_head,
        )
    }

    /// [`Store::replay`] from frames read one at a time — a record's bytes and its hash, in
    /// export order — so a caller reading an export from outside this memory never holds a
    /// second copy of it here: each record is verified, installed and kept as it arrives (the
    /// kept record is the buffer given, not a copy).
    pub fn replay_frames(
        frames: impl Iterator<Item = Result<(Vec<u8>, Hash), Error>>,
        expected_head: Head,
    ) -> Result<Store, Error> {
        let mut store = Store::default();
        let mut at = Head::GENESIS;
        let mut count = 0;
        for frame in frames {
            let (bytes, hash) = frame?;
            count += 1;
            if count == 1 {
                // A first record that is a checkpoint anchors the export with its carried hash.
                if let Ok(Decoded {
                    seq,
                    checkpoint: Some(prev),
                    ..
                }) = decode_record(&bytes)
                {
                    at = Head {
                        seq: seq.saturating_sub(1),
                        hash: prev,
                    };
                }
                store.journal = Journal::starting_at(at);
            }
            let record = journal::check_frame(count, &bytes, &hash, &mut at)?;
            let mut writes = Writes::default();
            let checkpoint = record.checkpoint.is_some();
            if checkpoint {
                // Whatever the checkpoint does not put is gone.
                for key in store.data.keys() {
                    writes.insert(key.clone(), None);
                }
            }
            for (k, v) in record.changes {
                writes.insert(k, v.map(Rc::from));
            }
            store.install(record.seq, writes);
            store
                .journal
                .push_verified(record.seq, bytes, hash, checkpoint);
        }
        journal::check_end(at, count, expected_head)?;
        Ok(store)
    }

    fn watermark(&self) -> u64 {
        self.registry
            .oldest()
            .map_or(self.last_seq, |oldest| oldest.min(self.last_seq))
    }

    /// Installs a change set as commit `seq` and journals it.
    fn apply(&mut self, seq: u64, writes: Writes) {
        self.journal.append(
            seq,
            writes.0.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
        );
        self.install(seq, writes);
    }

    /// Installs a change set as commit `seq`, without journaling it.
    fn install(&mut self, seq: u64, writes: Writes) {
        self.last_seq = seq;
        let watermark = self.watermark();
        for (key, value) in writes.0 {
            let version = Version { seq, value };
            // Only the keys written here can have become empty: no full sweep per commit.
            let emptied = match self.data.get_mut(&key) {
                Some(versions) => {
                    versions.push(version);
                    !collect(versions, watermark)
                }
                None => {
                    let mut versions = vec![version];
                    if collect(&mut versions, watermark) {
                        self.data.insert(key, versions);
                    }
                    continue;
                }
            };
            if emptied {
                self.data.remove(&key);
            }
        }
    }
}

/// The newest version at or before `seq`.
fn visible(versions: &[Version], seq: u64) -> Option<Rc<[u8]>> {
    versions
        .iter()
        .rev()
        .find(|v| v.seq <= seq)
        .and_then(|v| v.value.clone())
}

/// Drops the versions of one key that no snapshot at or after `watermark` can see. Returns
/// whether the key still has versions.
fn collect(versions: &mut Vec<Version>, watermark: u64) -> bool {
    // The newest version at or below the watermark is what the oldest snapshot sees; older ones
    // are invisible to everyone.
    if let Some(base) = versions.iter().rposition(|v| v.seq <= watermark) {
        versions.drain(..base);
        if versions.len() == 1 && versions[0].value.is_none() {
            versions.clear(); // a lone tombstone everyone sees: the key is gone
        }
    }
    !versions.is_empty()
}

/// A read-write transaction. Reads see its snapshot plus its own writes; writes are buffered
/// until `commit`.
#[derive(Debug)]
pub struct Transaction {
    snapshot: Snapshot,
    writes: Writes,
}

/// A transaction's buffered writes by key, ascending; `None` deletes. A sorted vector, not a
/// map: a transaction writes a few keys, a replayed checkpoint writes its keys in order (each
/// goes at the end), and a second map type would be kilobytes of the `.wasm`.
#[derive(Debug, Default)]
struct Writes(Vec<Write>);

/// One buffered write: a key and its new value, `None` for a delete.
type Write = (Vec<u8>, Option<Rc<[u8]>>);

impl Writes {
    fn find(&self, key: &[u8]) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_slice().cmp(key))
    }

    fn get(&self, key: &[u8]) -> Option<&Option<Rc<[u8]>>> {
        self.find(key)
            .ok()
            .and_then(|i| self.0.get(i))
            .map(|(_, v)| v)
    }

    /// Sets `key`, replacing an earlier write of it.
    fn insert(&mut self, key: Vec<u8>, value: Option<Rc<[u8]>>) {
        match self.find(&key) {
            Ok(i) => {
                if let Some(slot) = self.0.get_mut(i) {
                    slot.1 = value;
                }
            }
            Err(i) => self.0.insert(i, (key, value)),
        }
    }

    /// The writes from the first key at or after `from`, ascending.
    fn from(&self, from: &[u8]) -> &[Write] {
        let start = self.0.partition_point(|(k, _)| k.as_slice() < from);
        self.0.get(start..).unwrap_or_default()
    }
}

impl Transaction {
    /// The snapshot this transaction reads at.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Reads `key`.
    pub fn get(&self, store: &Store, key: &[u8]) -> Option<Rc<[u8]>> {
        match self.writes.get(key) {
            Some(own) => own.clone(),
            None => store.get(&self.snapshot, key),
        }
    }

    /// Reads the entries under `prefix`, own writes included.
    pub fn scan(&self, store: &Store, prefix: &[u8]) -> Vec<(Vec<u8>, Rc<[u8]>)> {
        let mut merged: BTreeMap<Vec<u8>, Rc<[u8]>> =
            store.scan(&self.snapshot, prefix).into_iter().collect();
        for (k, v) in self.writes.from(prefix) {
            if !k.starts_with(prefix) {
                break;
            }
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        merged.into_iter().collect()
    }

    /// Writes `value` under `key`.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Rc<[u8]>>) {
        self.writes.insert(key.into(), Some(value.into()));
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.writes.insert(key.into(), None);
    }

    /// Whether the transaction has written anything.
    pub fn is_read_only(&self) -> bool {
        self.writes.0.is_empty()
    }

    /// Commits: fails with `Conflict` (changing nothing) when another transaction committed a
    /// key this one writes after its snapshot. Returns the commit's sequence number (the
    /// snapshot's, for a read-only transaction, which writes no record).
    pub fn commit(self, store: &mut Store) -> Result<u64, Error> {
        if self.writes.0.is_empty() {
            return Ok(self.snapshot.seq);
        }
        for (key, _) in &self.writes.0 {
            let newest = store
                .data
                .get(key)
                .and_then(|v| v.last())
                .map_or(0, |v| v.seq);
            if newest > self.snapshot.seq {
                return Err(Error::Conflict {
                    key: String::from_utf8_lossy(key).into_owned(),
                });
            }
        }
        let seq = store.last_seq + 1;
        let Transaction { snapshot, writes } = self;
        drop(snapshot); // its own snapshot no longer holds the watermark back
        store.apply(seq, writes);
        Ok(seq)
    }

    /// Discards the writes.
    pub fn rollback(self) {}
}

#[cfg(test)]
mod tests;
