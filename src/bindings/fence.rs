//! Fencing: of the engines restored from one journal, only the newest acts.
//!
//! Every journal is named by an *origin* drawn at random when its first engine is made, and
//! carries a fencing *epoch*: 0 for a new engine; each `Engine.restore` takes one above the
//! journal's, above the head's `epoch` when the host kept one, and above every epoch claimed for
//! that origin in this module — and journals it. An engine whose origin has a higher epoch
//! claimed than its own is *fenced*: it starts no host call (no prompt, no abort, no delete),
//! refuses `delegate`, `cancel` and `createSession` with `FENCED`, and rejects its task waiters
//! with `FENCED`; reading (`status`, `list`, `stats`, `journalExport`) still works. Engines in
//! one module see each other's claims here; across processes, the host holds the epoch: it
//! keeps `journalHead().epoch` beside the journal, passes the head to `Engine.restore`, and
//! tells an engine still running elsewhere with `engine.fence(epoch)`.

use std::cell::RefCell;

use crate::error::Error;

thread_local! {
    /// The highest epoch claimed per origin in this module, for origins restored at least once
    /// (a list: a process restores few journals).
    static CLAIMS: RefCell<Vec<([u8; 16], u64)>> = const { RefCell::new(Vec::new()) };
}

/// A random origin for a new journal (`Math.random`, 2 × 52 bits, and the time: two engines
/// made in one millisecond never share one).
pub(crate) fn random_origin(now: u64) -> [u8; 16] {
    let draw = || (js_sys::Math::random() * (1u64 << 52) as f64) as u64;
    let mut origin = [0u8; 16];
    origin[..8].copy_from_slice(&(draw() ^ now.rotate_left(52)).to_be_bytes());
    origin[8..].copy_from_slice(&draw().to_be_bytes());
    origin
}

/// The highest epoch claimed for `origin` in this module (0 when none).
pub(crate) fn highest(origin: [u8; 16]) -> u64 {
    CLAIMS.with(|c| {
        c.borrow()
            .iter()
            .find(|(o, _)| *o == origin)
            .map_or(0, |(_, e)| *e)
    })
}

/// Claims `epoch` for `origin` (a lower claim changes nothing).
pub(crate) fn claim(origin: [u8; 16], epoch: u64) {
    CLAIMS.with(|c| {
        let mut c = c.borrow_mut();
        match c.iter_mut().find(|(o, _)| *o == origin) {
            Some((_, e)) => *e = (*e).max(epoch),
            None if epoch > 0 => c.push((origin, epoch)),
            None => {}
        }
    });
}

/// `FENCED` when an engine of `origin` at `epoch` is fenced out.
pub(crate) fn check(origin: [u8; 16], epoch: u64) -> Result<(), Error> {
    let newer = highest(origin);
    if newer > epoch {
        Err(Error::Fenced { epoch, newer })
    } else {
        Ok(())
    }
}
