//! Sending a task again after a failure, and failing work that asked not to wait.
//!
//! One retry layer (OpenCode already retried inside the session): a turn that ended rate
//! limited is re-dispatched by default, after the provider's Retry-After, in a fresh session;
//! an upstream failure or a timeout only when the task asked for `retries`. A follow-up whose
//! turn ended with the error is the exception: it is sent again in its conversation's session,
//! which holds what the follow-up continues (a fresh one would not). A failFast task queued for
//! a model whose breaker opens fails instead of waiting for the probe.

use super::{Engine, Live, RATE_LIMIT_REDISPATCHES};
use crate::control::{Outcome, Verdict};
use crate::engine::task::TaskState;
use crate::error::Error;
use crate::host::FailureClass;
use crate::ids::TaskId;

impl Engine {
    /// Sends the task again when its failure allows, otherwise fails it:
    /// - rate limited (OpenCode gave up on a 429 after its own retries): re-dispatched after the
    ///   wait the provider asked for (`retry_after_ms`; full-jitter backoff when it did not say),
    ///   up to [`RATE_LIMIT_REDISPATCHES`] times (or the task's `retries`, if more) — by default,
    ///   since a storm says nothing about the task;
    /// - upstream or timeout: only when the task asked for `retries` (OpenCode already retried);
    /// - anything else: failed.
    ///
    /// Either way the permit goes back at once (a task waiting to be sent again holds no slot).
    /// The session is released as failed, so the pool aborts it: the next attempt runs in a
    /// fresh session, and each session's transcript holds its prompt once, with the error that
    /// ended it or the answer. Unless `kept` (a follow-up whose turn ended with the error, idle
    /// in its conversation's session — its predecessor's session — and the server's stamp
    /// of that error) and it is sent again: then the session is parked and held for it (neither
    /// idle nor bounded out until the retry is due: [`crate::sessions::Pool::hold`]), and the next
    /// attempt continues the conversation (its transcript holds the failed prompt with its
    /// error, then the prompt again). The error's stamp is the session's last reply from then
    /// on, in the pool and journaled with the requeue, so that attempt — restored from the
    /// journal or not — never takes the error for its own reply.
    ///
    /// A task the user cancelled whose turn failed before the abort landed settles cancelled:
    /// it is never sent again.
    pub(super) fn fail_or_retry(
        &mut self,
        now: u64,
        task: TaskId,
        class: FailureClass,
        message: String,
        retry_after_ms: Option<u64>,
        kept: Option<u64>,
    ) -> Result<(), Error> {
        let Some(record) = self.tasks.get_brief(task) else {
            return Ok(());
        };
        let (rate_limited, cancelled) = self
            .live
            .get_mut(&task)
            .map_or((0, None), |l| (l.rate_limited, l.cancelling.take()));
        if let Some(reason) = cancelled {
            return self.settle(now, task, TaskState::Cancelled { reason });
        }
        let delay = match class {
            FailureClass::RateLimited
                if rate_limited < RATE_LIMIT_REDISPATCHES.max(record.spec.retries) =>
            {
                let backoff = self.backoff(rate_limited);
                Some((retry_after_ms.unwrap_or(backoff), rate_limited + 1))
            }
            FailureClass::Upstream | FailureClass::Timeout
                if record.attempts.saturating_sub(rate_limited) <= record.spec.retries =>
            {
                Some((self.backoff(record.attempts), rate_limited))
            }
            _ => None,
        };
        let Some((delay, rate_limited)) = delay else {
            return self.settle(now, task, TaskState::Failed { class, message });
        };
        let held = kept.zip(record.state.session().cloned());
        if let Some((stamp, session)) = &held {
            self.note_reply(session, *stamp);
            // Held before the release parks it, so the per-agent bound already spares it.
            self.pool.hold(session, now.saturating_add(delay));
        }
        self.release(now, task, Outcome::Failed(class), held.is_some());
        self.transition(now, task, TaskState::Queued)?;
        if let Some(l) = self.live.get_mut(&task) {
            *l = Live {
                retry_at: Some(now + delay),
                rate_limited,
                place: l.place.for_retry(),
                ..Live::default()
            };
        }
        self.fail_fast_if_open(now, task)
    }

    /// After a counted failure of `task`'s model: if that opened its breaker, the tasks queued
    /// for the model that asked for `failFast` fail now (`BREAKER_OPEN`) instead of waiting for
    /// a probe, as they would had they been submitted a moment later.
    pub(super) fn fail_fast_if_open(&mut self, now: u64, task: TaskId) -> Result<(), Error> {
        let Some(key) = self.tasks.get_brief(task).and_then(|r| r.spec.model) else {
            return Ok(());
        };
        let Some(Verdict::Refuse { .. }) = self.controller.breaker(&key).map(|b| b.check(now))
        else {
            return Ok(());
        };
        let mut waiting: Vec<u64> = self
            .live
            .iter()
            .filter(|(_, l)| l.permit.is_none() && l.cancelling.is_none())
            .filter_map(|(id, _)| {
                let r = self.tasks.get_brief(*id)?;
                (r.spec.fail_fast
                    && r.state == TaskState::Queued
                    && r.spec.model.as_deref() == Some(key.as_str()))
                .then_some(u64::from(id.get()))
            })
            .collect();
        waiting.sort_unstable();
        for id in waiting {
            let message = format!(
                "BREAKER_OPEN: the circuit breaker of {key} opened while it waited (it keeps \
                 failing), and the task asked to fail fast instead of waiting for a probe"
            );
            self.settle(
                now,
                TaskId(id as u32),
                TaskState::Failed {
                    class: FailureClass::Upstream,
                    message,
                },
            )?;
        }
        Ok(())
    }
}
