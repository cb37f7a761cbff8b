//! The journal: one record per commit, chained by SHA-256 so any change to history shows.
//!
//! # Encoding (version 1)
//!
//! All integers are unsigned big-endian. A **record** is the canonical encoding of one commit:
//!
//! ```text
//! record  = seq:u64  count:u32  change{count}
//! change  = key_len:u32  key:byte{key_len}  op:u8  [value_len:u32  value:byte{value_len}]
//!           op 0 = delete (no value), op 1 = put (value follows),
//!           op 2 = checkpoint marker (value follows: the previous record's 32-byte hash)
//! ```
//!
//! Changes are sorted by key bytes (lexicographic) and keys are unique, so one change set has
//! exactly one encoding. `seq` is the commit's sequence number: 1 for the first commit, then +1.
//!
//! A **checkpoint** is a record whose first change is the marker: empty key, op 2, and as value
//! the hash of the record before it (`hash(seq − 1)`). Every other change in it is a put, and
//! together they are the *whole* state: applying a checkpoint deletes every key it does not put.
//! Because it carries its predecessor's hash, a checkpoint anchors itself: an export may begin
//! with one, and a restore replays only the checkpoint and what follows. Within an export, a
//! checkpoint's carried hash must equal the chain's hash at that point.
//!
//! The **chain**: `hash(seq) = SHA-256(hash(seq − 1) ‖ 0x00 ‖ record)`, with `hash(0)` = 32 zero
//! bytes. The `0x00` byte separates record hashing from any other use of the hash (as RFC 6962
//! prefixes leaves with 0x00). The **head** is `(seq, hash)` of the last record; the host keeps a
//! copy outside the module, so a truncated or rewritten journal cannot also rewrite the head.
//!
//! An **export** is a sequence of frames, one per record, oldest first:
//!
//! ```text
//! frame = record_len:u32  record:byte{record_len}  hash:byte{32}
//! ```
//!
//! To verify an export without this library: start from the anchor `(seq, hash)` — `(0, 32 zero
//! bytes)` for an export of the whole journal, `(seq − 1, carried hash)` for one that begins
//! with a checkpoint — and for each frame check that the record's `seq` is the previous seq + 1,
//! recompute the hash as above and compare it with the frame's; at the end, the last
//! `(seq, hash)` must equal the head the host kept.
//!
//! # What the engine's keys hold (task format 2)
//!
//! The chain above covers any key-value store. The engine writes these keys (`id` a task id,
//! u32 big-endian; strings are `u32` length + UTF-8; `opt` is a 0/1 byte, then the value when 1):
//!
//! ```text
//! "s" id        spec, written once when the task is submitted:
//!               0x02 agent:str prompt:str priority:u8 deadline_ms:u64 model:opt(str)
//!               parent:opt(str) idempotency_key:opt(str) deps:u32 dep:u32{deps} retries:u32
//!               fail_fast:u8 follow_up_of:opt(u32)
//! "t" id        state, rewritten by each transition (small; a success's result once):
//!               0x02 tag:u8 fields attempts:u32 created_ms:u64 updated_ms:u64
//!               tag 0 queued, 1 admitted, 8 timed_out: no fields; 2 session_acquired: session:str;
//!               3 dispatched, 4 running: session:str at_ms:u64; 5 succeeded: session:str
//!               result:str (cut to `retention.resultBytes`, ending with a note naming the full
//!               length and the session); 6 failed: class:u8 message:str; 7 cancelled:
//!               reason:str; 9 unknown: session:opt(str) at_ms:u64
//! "midem/" key  the task id (u32) an idempotency key names
//! "msession/" s a session the engine created and has not seen deleted: empty, or u64 (8 bytes,
//!               big-endian) the server's stamp of the reply that ended its last successful
//!               turn (a follow-up continuing the session tells its own reply from it)
//! "mepoch"      the fencing epoch, u64: 0 for a new engine; each restore writes one above the
//!               journal's and above any the host or this module knows for the journal
//! "morigin"     16 bytes naming the journal; engines restored from it share it
//! "mforgotten"  u64: settled tasks the retention rule forgot, over the journal's history
//! "mnext"       u32: the next task id (written when tasks are forgotten: ids are never reused)
//! ```
//!
//! So a transition journals only what changed — one small put of `"t" id` — and a prompt and a
//! result are each in the journal once. Retention forgets a settled task with one record that
//! deletes its `"s"`, `"t"` and idempotency keys and rewrites `"mforgotten"` and `"mnext"`.
//! A checkpoint holds only what is live, so what a restore replays follows the tasks held, not
//! the history.
//!
//! Invariants:
//! 1. Records are appended in seq order with no gaps; `head` is the last record's.
//! 2. `verify` accepts an export iff it is exactly the records `anchor.seq + 1 ..= head.seq`.
//! 3. The records from the last checkpoint on (or from seq 1 when there is none) rebuild the
//!    whole state; [`Journal::checkpoint`] forgets the records before it.

use sha2::{Digest, Sha256};

use crate::codec::{Reader, Writer};

use crate::error::Error;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// `(seq, hash)` of a journal position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Sequence number of the last record (0 before any).
    pub seq: u64,
    /// Its chained hash.
    pub hash: Hash,
}

impl Head {
    /// The position before the first record.
    pub const GENESIS: Head = Head {
        seq: 0,
        hash: [0; 32],
    };
}

/// One change: a put (`Some(value)`) or a delete (`None`).
pub(crate) type Change = (Vec<u8>, Option<Vec<u8>>);

/// Op code of the checkpoint marker.
const OP_CHECKPOINT: u8 = 2;

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Sequence number.
    pub seq: u64,
    /// For a checkpoint, the hash of the record before it.
    pub checkpoint: Option<Hash>,
    /// The changes (for a checkpoint: the puts that make up the whole state).
    pub changes: Vec<Change>,
}

/// One committed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// Sequence number.
    pub seq: u64,
    /// Canonical bytes.
    pub bytes: Vec<u8>,
    /// Chained hash.
    pub hash: Hash,
}

/// Encodes a change set as a record. `changes` must be sorted by key with unique keys (the
/// order a transaction keeps its writes in).
pub fn encode_record<'a>(
    seq: u64,
    changes: impl ExactSizeIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) -> Vec<u8> {
    let mut w = Writer::with_capacity(16);
    w.u64(seq);
    w.u32(changes.len() as u32);
    for (key, value) in changes {
        w.chunk(key);
        match value {
            None => w.u8(0),
            Some(v) => {
                w.u8(1);
                w.chunk(v);
            }
        }
    }
    w.0
}

/// Encodes a checkpoint at `seq` following a record hashed `prev`, holding the whole state
/// `entries` (sorted by unique key).
pub(crate) fn encode_checkpoint<'a>(
    seq: u64,
    prev: &Hash,
    entries: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])> + Clone,
) -> Vec<u8> {
    // Sized exactly first: a checkpoint is as large as the state, and growing it by doubling
    // would hold up to 1.5 times more at once.
    let size: usize = entries.clone().map(|(k, v)| 9 + k.len() + v.len()).sum();
    let mut w = Writer::with_capacity(12 + 9 + 32 + size);
    w.u64(seq);
    w.u32(entries.len() as u32 + 1);
    w.chunk(&[]);
    w.u8(OP_CHECKPOINT);
    w.chunk(prev);
    for (key, value) in entries {
        w.chunk(key);
        w.u8(1);
        w.chunk(value);
    }
    w.0
}

/// Decodes a record, checking that it is canonical.
pub fn decode_record(bytes: &[u8]) -> Result<Decoded, String> {
    let mut r = Reader::new(bytes);
    let seq = r.u64()?;
    let count = r.u32()?;
    let mut changes: Vec<Change> = Vec::new();
    let mut checkpoint = None;
    for i in 0..count {
        let key = r.chunk()?.to_vec();
        let value = match r.u8()? {
            0 if checkpoint.is_some() => return Err("a delete inside a checkpoint".into()),
            0 => None,
            1 => Some(r.chunk()?.to_vec()),
            OP_CHECKPOINT if i == 0 && key.is_empty() => {
                let prev = r.chunk()?;
                checkpoint = Some(
                    Hash::try_from(prev)
                        .map_err(|_| format!("a checkpoint carries {} bytes", prev.len()))?,
                );
                continue;
            }
            OP_CHECKPOINT => return Err("a checkpoint marker out of place".into()),
            op => return Err(format!("unknown op {op}")),
        };
        if changes.last().is_some_and(|(prev, _)| *prev >= key) {
            return Err("changes are not sorted by unique key".into());
        }
        changes.push((key, value));
    }
    if r.remaining() != 0 {
        return Err(format!("{} trailing bytes", r.remaining()));
    }
    Ok(Decoded {
        seq,
        checkpoint,
        changes,
    })
}

/// `SHA-256(prev ‖ 0x00 ‖ record)`.
pub fn chain(prev: &Hash, record: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update([0u8]);
    h.update(record);
    h.finalize().into()
}

/// The journal of one store.
#[derive(Debug, Clone)]
pub struct Journal {
    anchor: Head,
    records: Vec<Record>,
    /// Bytes of the export of every record kept (frames included).
    bytes: u64,
    /// Of those, the bytes after the last checkpoint kept.
    tail_bytes: u64,
}

impl Default for Journal {
    fn default() -> Self {
        Journal::starting_at(Head::GENESIS)
    }
}

/// Bytes a record takes in an export: its length, itself, its hash.
fn frame_len(record: &[u8]) -> u64 {
    record.len() as u64 + 36
}

impl Journal {
    /// The last record's position.
    pub fn head(&self) -> Head {
        self.records.last().map_or(self.anchor, |r| Head {
            seq: r.seq,
            hash: r.hash,
        })
    }

    /// Appends the record for commit `seq` with `changes`; returns its hash.
    pub(crate) fn append<'a>(
        &mut self,
        seq: u64,
        changes: impl ExactSizeIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> Hash {
        let bytes = encode_record(seq, changes);
        let hash = chain(&self.head().hash, &bytes);
        self.bytes += frame_len(&bytes);
        self.tail_bytes += frame_len(&bytes);
        self.records.push(Record { seq, bytes, hash });
        hash
    }

    /// Appends a checkpoint at `seq` holding the whole state `entries`, then forgets every
    /// record before it (they rebuild nothing the checkpoint does not). Returns its hash.
    pub(crate) fn checkpoint<'a>(
        &mut self,
        seq: u64,
        entries: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])> + Clone,
    ) -> Hash {
        let prev = self.head();
        let bytes = encode_checkpoint(seq, &prev.hash, entries);
        let hash = chain(&prev.hash, &bytes);
        self.records.clear();
        self.anchor = prev;
        self.bytes = frame_len(&bytes);
        self.tail_bytes = 0;
        self.records.push(Record { seq, bytes, hash });
        hash
    }

    /// A journal whose first record will follow `anchor`.
    pub(crate) fn starting_at(anchor: Head) -> Journal {
        Journal {
            anchor,
            records: Vec::new(),
            bytes: 0,
            tail_bytes: 0,
        }
    }

    /// Appends an already verified record as it is (`checkpoint`: whether it is one).
    pub(crate) fn push_verified(&mut self, seq: u64, bytes: Vec<u8>, hash: Hash, checkpoint: bool) {
        self.bytes += frame_len(&bytes);
        self.tail_bytes = if checkpoint {
            0
        } else {
            self.tail_bytes + frame_len(&bytes)
        };
        self.records.push(Record { seq, bytes, hash });
    }

    /// Bytes of an export of every record kept.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes of the records after the last checkpoint kept (all of them without one).
    pub fn tail_bytes(&self) -> u64 {
        self.tail_bytes
    }

    /// The export of the records with `seq ≥ from_seq` (as [`Journal::export`]), handed to
    /// `out` piece by piece — a frame's length, its record, its hash — so a caller can copy it
    /// out of this memory without building a second copy of the journal in it. Returns the
    /// export's length.
    pub fn export_pieces(&self, from_seq: u64, mut out: impl FnMut(&[u8])) -> u64 {
        let mut n = 0;
        for r in self.records.iter().filter(|r| r.seq >= from_seq) {
            out(&(r.bytes.len() as u32).to_be_bytes());
            out(&r.bytes);
            out(&r.hash);
            n += frame_len(&r.bytes);
        }
        n
    }

    /// Bytes of the export from `from_seq` ([`Journal::export`]'s length).
    pub fn export_len(&self, from_seq: u64) -> u64 {
        self.records
            .iter()
            .filter(|r| r.seq >= from_seq)
            .map(|r| frame_len(&r.bytes))
            .sum()
    }

    /// Re-verifies the records kept, in place (no copy): every seq follows, every hash chains
    /// from the anchor, every record decodes canonically.
    pub fn verify_kept(&self) -> Result<(), Error> {
        let mut at = self.anchor;
        for (i, r) in self.records.iter().enumerate() {
            check_frame(i as u64 + 1, &r.bytes, &r.hash, &mut at)?;
        }
        Ok(())
    }

    /// The records with `seq ≥ from_seq`, as export frames. When `from_seq` is older than the
    /// first record kept (a checkpoint forgot it), the export begins at that record: a host
    /// that appends exports to a file sees a seq that does not follow its last and replaces the
    /// file from there.
    pub fn export(&self, from_seq: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for r in self.records.iter().filter(|r| r.seq >= from_seq) {
            out.extend_from_slice(&(r.bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(&r.bytes);
            out.extend_from_slice(&r.hash);
        }
        out
    }

    /// The anchor: the position before the first record kept.
    pub fn anchor(&self) -> Head {
        self.anchor
    }

    /// Drops the records up to and including `seq` (the host has persisted them); the head and
    /// later exports are unchanged, and the anchor moves to `seq`.
    pub fn forget_through(&mut self, seq: u64) {
        let keep_from = self.records.partition_point(|r| r.seq <= seq);
        if keep_from > 0 {
            let last = &self.records[keep_from - 1];
            self.anchor = Head {
                seq: last.seq,
                hash: last.hash,
            };
            let dropped: u64 = self
                .records
                .drain(..keep_from)
                .map(|r| frame_len(&r.bytes))
                .sum();
            self.bytes -= dropped;
            self.tail_bytes = self.tail_bytes.min(self.bytes);
        }
    }

    /// Records kept in memory.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is kept.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Splits an export into frames (record, hash), borrowing from it; an error names the 1-based
/// frame that is cut short.
pub fn frames(export: &[u8]) -> impl Iterator<Item = Result<(&[u8], Hash), Error>> {
    let mut r = Reader::new(export);
    let mut index = 0u64;
    std::iter::from_fn(move || {
        if r.remaining() == 0 {
            return None;
        }
        index += 1;
        let bad = |reason: String| Error::JournalInvalid {
            record: index,
            reason,
        };
        let frame = r
            .chunk()
            .map_err(bad)
            .and_then(|record| Ok((record, r.array().map_err(bad)?)));
        if frame.is_err() {
            r = Reader::new(&[]);
        }
        Some(frame)
    })
}

/// Checks one frame (1-based `index` in its export) against the chain position `at`, then
/// moves `at` to it. Returns the decoded record.
pub(crate) fn check_frame(
    index: u64,
    bytes: &[u8],
    hash: &Hash,
    at: &mut Head,
) -> Result<Decoded, Error> {
    let bad = |reason: String| Error::JournalInvalid {
        record: index,
        reason,
    };
    let record = decode_record(bytes).map_err(bad)?;
    if record.seq != at.seq + 1 {
        return Err(bad(format!("seq {} follows {}", record.seq, at.seq)));
    }
    if record.checkpoint.is_some_and(|prev| prev != at.hash) {
        return Err(bad(
            "the checkpoint carries another hash than the chain's".into()
        ));
    }
    if chain(&at.hash, bytes) != *hash {
        return Err(bad("hash does not match the chain".into()));
    }
    *at = Head {
        seq: record.seq,
        hash: *hash,
    };
    Ok(record)
}

/// The error for an export that verified up to `at` (after `count` frames) but does not end
/// at `expected_head`, if it does not.
pub(crate) fn check_end(at: Head, count: u64, expected_head: Head) -> Result<(), Error> {
    if at == expected_head {
        return Ok(());
    }
    let reason = if at.seq == expected_head.seq {
        format!("the hash at seq {} differs from the head's", at.seq)
    } else {
        format!(
            "the journal ends at seq {} but the head is seq {}",
            at.seq, expected_head.seq
        )
    };
    Err(Error::JournalInvalid {
        record: count + 1,
        reason,
    })
}

/// Verifies `export` from `anchor` to `expected_head` in one pass over it, calling `each` with
/// every verified frame (its bytes, hash and content) in order; the error names the first bad
/// record (1-based position in the export). A checkpoint inside must carry the chain's hash
/// there. Nothing is copied: a caller that keeps what `each` is given holds the only copy.
pub fn verify_each(
    export: &[u8],
    anchor: Head,
    expected_head: Head,
    mut each: impl FnMut(Verified<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut at = anchor;
    let mut count = 0;
    for frame in frames(export) {
        let (bytes, hash) = frame?;
        count += 1;
        let record = check_frame(count, bytes, &hash, &mut at)?;
        each(Verified {
            bytes,
            hash,
            record,
        })?;
    }
    check_end(at, count, expected_head)
}

/// Verifies `export` from `anchor` to `expected_head` (see [`verify_each`]); returns how many
/// records it holds.
pub fn verify(export: &[u8], anchor: Head, expected_head: Head) -> Result<u64, Error> {
    let mut n = 0;
    verify_each(export, anchor, expected_head, |_| {
        n += 1;
        Ok(())
    })?;
    Ok(n)
}

/// The anchor of an export that stands alone: `(0, zeros)` for one that starts at seq 1 (or is
/// empty), `(seq − 1, carried hash)` for one that starts with a checkpoint.
pub fn standalone_anchor(export: &[u8]) -> Result<Head, Error> {
    let Some(first) = frames(export).next() else {
        return Ok(Head::GENESIS);
    };
    let (record, _) = first?;
    let first =
        decode_record(record).map_err(|reason| Error::JournalInvalid { record: 1, reason })?;
    Ok(match first.checkpoint {
        Some(prev) => Head {
            seq: first.seq.saturating_sub(1),
            hash: prev,
        },
        None => Head::GENESIS,
    })
}

/// Verifies an export that stands alone: one that starts at seq 1, or with a checkpoint (whose
/// carried hash anchors it), against `expected_head`; returns how many records it holds.
pub fn verify_standalone(export: &[u8], expected_head: Head) -> Result<u64, Error> {
    verify(export, standalone_anchor(export)?, expected_head)
}

/// A verified frame: the record's bytes, its hash and what it says.
#[derive(Debug, Clone)]
pub struct Verified<'a> {
    /// The record's canonical bytes.
    pub bytes: &'a [u8],
    /// Its chained hash.
    pub hash: Hash,
    /// Its decoded content.
    pub record: Decoded,
}
