//! Host calls coming back: a host answers a call by settling the promise its operation returned
//! (two long-lived settle functions, bound to the call id) or by `resolve` / `reject` with the
//! id; either way the answer is parsed by the kind of the engine's pending call and handed
//! to it once. Bus events (`hostEvent`) come in here too.

use std::rc::Weak;

use js_sys::Function;
use wasm_bindgen::prelude::*;

use super::convert::{failure, host_event, reply, to_js};
use super::events::after;
use super::timer::memory_if_due;
use super::{Inner, JsEngine, js};
use crate::error::Error;
use crate::host::Host;
use crate::host::{CallId, HostOpKind, HostOutcome};

pub(super) fn call_id_of(value: &JsValue) -> Result<CallId, Error> {
    let n = value
        .as_f64()
        .filter(|n| n.fract() == 0.0 && *n >= 1.0 && *n <= f64::from(u32::MAX));
    n.map(|n| CallId(n as u32))
        .ok_or_else(|| Error::input("callId", "must be a call id the engine passed to the host"))
}

pub(super) fn settle(
    inner: &Inner,
    call: CallId,
    answer: Result<JsValue, JsValue>,
) -> Result<(), Error> {
    if inner.disposed.get() {
        return Err(Error::Disposed);
    }
    let op = inner
        .core
        .borrow()
        .pending_op(call)
        .ok_or_else(|| Error::UnknownCall { call: call.get() })?;
    // A clock that fails now still settles the call, at the last good reading.
    let now = inner
        .host
        .now_ms()
        .unwrap_or_else(|_| inner.host.last_now());
    let outcome = inner.host.on_engine_clock(outcome_of(op, &answer));
    memory_if_due(inner, now)?;
    inner.core.borrow_mut().on_answer(now, call, outcome)?;
    after(inner);
    Ok(())
}

pub(super) fn outcome_of(op: HostOpKind, answer: &Result<JsValue, JsValue>) -> HostOutcome {
    match answer {
        Ok(value) => reply(op, value),
        Err(error) => HostOutcome::Failed(failure(error)),
    }
}

/// The two functions a host promise's reactions call. They hold the engine weakly and live as
/// long as JavaScript references them, so a reaction after the engine is freed does nothing.
pub(super) fn settle_functions(weak: &Weak<Inner>) -> (Function, Function) {
    let make = |fulfilled: bool| -> Function {
        let weak = weak.clone();
        let closure = Closure::<dyn Fn(u32, JsValue)>::new(move |call: u32, value: JsValue| {
            if let Some(inner) = weak.upgrade() {
                let answer = if fulfilled { Ok(value) } else { Err(value) };
                // A second answer for a settled call is ignored on the promise path.
                let _ = settle(&inner, CallId(call), answer);
            }
        });
        closure.into_js_value().unchecked_into()
    };
    (make(true), make(false))
}

#[wasm_bindgen(js_class = Engine)]
impl JsEngine {
    /// Settles call `callId` with `value`, for hosts that answer by id. Throws `UNKNOWN_CALL` when
    /// no such call is pending.
    pub fn resolve(&self, call_id: JsValue, value: JsValue) -> Result<(), JsValue> {
        let call = js(call_id_of(&call_id))?;
        js(settle(&self.inner, call, Ok(value)))
    }

    /// Fails call `callId` with `error`, for hosts that answer by id. Throws `UNKNOWN_CALL` when
    /// no such call is pending.
    pub fn reject(&self, call_id: JsValue, error: JsValue) -> Result<(), JsValue> {
        let call = js(call_id_of(&call_id))?;
        js(settle(&self.inner, call, Err(error)))
    }

    /// Feeds one OpenCode bus event (pass every event the plugin's `event` hook receives):
    /// `session.status`, `session.idle`, `session.error` and `session.deleted` move sub-agent
    /// tasks; the rest are ignored. Throws `INVALID_INPUT` for a malformed event of those kinds.
    #[wasm_bindgen(js_name = hostEvent)]
    pub fn host_event(&self, event: JsValue) -> Result<(), JsValue> {
        self.live()?;
        let parsed = host_event(&event).map_err(|reason| to_js(&Error::input("event", reason)))?;
        let Some(parsed) = parsed else {
            return Ok(());
        };
        // An event is never dropped for a clock that fails now: it is handled at the last good
        // reading (the event happened; only its time is uncertain).
        let now = self
            .inner
            .host
            .now_ms()
            .unwrap_or_else(|_| self.inner.host.last_now());
        js(memory_if_due(&self.inner, now))?;
        js(self.inner.core.borrow_mut().on_event(now, parsed))?;
        after(&self.inner);
        Ok(())
    }
}
