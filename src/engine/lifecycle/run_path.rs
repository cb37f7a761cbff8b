//! Plain run tasks (`run()` work without a parent): names resolved once, submit, end, cancel
//! and the ready list run.js reads. Every call is integers in, integers out; a run holds a
//! controller permit and no executor slot (children and joins: `run_children.rs`). Kept small
//! and inlined where it pays: runBegin + runEnd are P6's measure.

use crate::control::{KeyId, LaneId, Outcome, Submitted};
use crate::error::Error;
use crate::host::FailureClass;
use crate::ids::{RunId, Work};

use super::{Engine, RunRequest};
use crate::engine::runs::{MAX_RUNS, Runs};

impl Engine {
    /// The lane an agent type's run tasks go to (unknown names share `other`); resolve it once.
    pub fn run_lane(&self, agent: &str) -> LaneId {
        self.controller.lane_id(agent)
    }

    /// The provider/model key called `name`, registered on first use; resolve it once.
    pub fn run_key(&mut self, name: &str) -> Result<KeyId, Error> {
        self.controller.key_id(name)
    }

    /// Queues a run task (see the `runs` module); it may be ready at once
    /// ([`Engine::drain_run_ready`]). Refusals are the controller's (`MEMORY_PRESSURE`,
    /// `BREAKER_OPEN`, `QUEUE_FULL`) and queue nothing.
    #[inline]
    pub fn run_submit(&mut self, now: u64, request: RunRequest) -> Result<RunId, Error> {
        let deadline = request.deadline_ms.map(|ms| (now.saturating_add(ms), ms));
        let controller = &mut self.controller;
        let mut room = false;
        let placed = self.runs.insert_with(deadline, |slot| {
            let submitted = controller.submit_or_admit(
                now,
                Work::Run(slot),
                request.lane,
                request.key,
                request.priority,
                request.fail_fast,
            )?;
            if let Submitted::Waiting(ticket) = &submitted {
                room = controller.has_room(ticket);
            }
            Ok(submitted)
        });
        // (`let … else`, not `ok_or`: an eagerly built error costs its drop on every call.)
        let Some(placed) = placed else {
            return Err(Error::QueueFull {
                limit: MAX_RUNS as u64,
            });
        };
        let slot = placed?;
        // With its lane full it waits for a release (which pumps); no need to look now.
        if room {
            self.pump(now);
        }
        Ok(slot)
    }

    /// Ends a running run task with how its work went; frees its permit for the next.
    pub fn run_end(&mut self, now: u64, slot: RunId, outcome: Outcome) -> Result<(), Error> {
        if self.runs.is_nested(slot) {
            // Integers only, before the slot is taken: the plain path stays a lean leaf.
            return self.run_end_nested(now, slot, outcome);
        }
        let ended = self
            .runs
            .end(slot)
            .ok_or_else(|| Error::input("run", format!("run {} is not running", slot.get())))?;
        let outcome = if ended.expired {
            Outcome::Failed(FailureClass::Timeout)
        } else {
            outcome
        };
        self.controller.complete(now, ended.permit, outcome);
        self.pump(now);
        Ok(())
    }

    /// Takes a waiting run task out of line. False when it is not waiting.
    pub fn run_cancel(&mut self, now: u64, slot: RunId) -> bool {
        match self.runs.cancel(slot) {
            Some((ticket, nested)) => {
                if let Some(ticket) = ticket {
                    self.controller.cancel(ticket);
                }
                if nested {
                    self.runs_left_line(now, &[slot]);
                }
                self.pump(now);
                true
            }
            None => false,
        }
    }

    /// Takes the ready run slots when they are exactly `slot` (see `Runs::take_ready_alone`).
    pub fn take_run_ready_alone(&mut self, slot: RunId) -> bool {
        self.runs.take_ready_alone(slot)
    }

    /// Moves ready run slots into `out`; returns how many.
    pub fn drain_run_ready(&mut self, out: &mut [u32]) -> usize {
        self.runs.drain_ready(out)
    }

    /// The run slots (for inspection: counts).
    pub fn runs(&self) -> &Runs {
        &self.runs
    }
}
