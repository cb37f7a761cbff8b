//! Fencing: of the engines restored from one journal, only the newest acts.
//!
//! Every journal is named by an *origin* drawn at random when its first engine is made, and
//! carries a fencing *epoch*: 0 for a new engine; each `Engine.restore` takes one above the
//! journal's, above the head's `epoch` when the host kept one, and above every epoch claimed for
//! that origin in this module — and journals it. An engine whose origin has a higher epoch
//! claimed than its own is *fenced*: it starts no host call (no prompt, no abort, no delete),
//! refuses `delegate`, `cancel` and `createSession` with `FENCED`, and rejects its task waiters
//! with `FENCED`; reading (`status`, `list`, `stats`, `journalExport`) still works. Engines in
//! one module see each other's claims here (while any engine of the journal lives); across processes, the host holds the epoch: it
//! keeps `journalHead().epoch` beside the journal, passes the head to `Engine.restore`, and
//! tells an engine still running elsewhere with `engine.fence(epoch)`.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use crate::error::Error;

/// An origin and the highest epoch claimed for it, held by its living engines.
type Claim = ([u8; 16], Weak<Cell<u64>>);

thread_local! {
    /// Per origin with a living engine: the highest epoch claimed, shared with each of its
    /// engines (a check is one read, whatever the number of engines or journals). Entries
    /// whose engines are all gone are dropped when the next one is added.
    static CLAIMS: RefCell<Vec<Claim>> = const { RefCell::new(Vec::new()) };
}

/// An engine's view of its journal's claims: its own epoch and the highest claimed.
#[derive(Debug)]
pub(crate) struct Fence {
    epoch: u64,
    highest: Rc<Cell<u64>>,
}

impl Fence {
    /// An engine of no journal yet (replaced by [`Fence::join`]).
    pub(crate) fn none() -> Fence {
        Fence {
            epoch: 0,
            highest: Rc::new(Cell::new(0)),
        }
    }

    /// Joins the engines of `origin` at `epoch`, claiming it.
    pub(crate) fn join(origin: [u8; 16], epoch: u64) -> Fence {
        let highest = CLAIMS.with(|c| {
            let mut c = c.borrow_mut();
            if let Some(cell) = c
                .iter()
                .find(|(o, _)| *o == origin)
                .and_then(|(_, w)| w.upgrade())
            {
                return cell;
            }
            c.retain(|(_, w)| w.strong_count() > 0);
            let cell = Rc::new(Cell::new(0));
            c.push((origin, Rc::downgrade(&cell)));
            cell
        });
        highest.set(highest.get().max(epoch));
        Fence { epoch, highest }
    }

    /// Claims `epoch` for this engine's journal (a lower claim changes nothing).
    pub(crate) fn claim(&self, epoch: u64) {
        self.highest.set(self.highest.get().max(epoch));
    }

    /// `FENCED` when a newer engine holds this journal.
    pub(crate) fn check(&self) -> Result<(), Error> {
        let newer = self.highest.get();
        if newer > self.epoch {
            Err(Error::Fenced {
                epoch: self.epoch,
                newer,
            })
        } else {
            Ok(())
        }
    }
}

/// The highest epoch claimed for `origin` by engines still alive in this module (0 when none).
pub(crate) fn highest(origin: [u8; 16]) -> u64 {
    CLAIMS.with(|c| {
        c.borrow()
            .iter()
            .find(|(o, _)| *o == origin)
            .and_then(|(_, w)| w.upgrade())
            .map_or(0, |cell| cell.get())
    })
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
