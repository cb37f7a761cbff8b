//! The one timer: armed for the engine's nearest deadline through the host's `setTimer` /
//! `clearTimer` when it has them, else the global `setTimeout` / `clearTimeout`; none while
//! nothing is pending. Its callback moves time on, takes the memory reading the engine asks
//! for (if it asks) and does what is due.

use std::rc::Weak;

use js_sys::Function;
use wasm_bindgen::prelude::*;

use super::convert::get;
use super::events::after;
use super::{Inner, convert, fenced};
use crate::Engine;
use crate::error::Error;
use crate::host::Host;

pub(super) struct Timers {
    set: Function,
    clear: Function,
    this: JsValue,
}

/// The host's timer functions, or the global ones.
pub(super) fn timers(host: &JsValue) -> Result<Timers, Error> {
    let own = |member: &str| -> Result<Option<Function>, Error> {
        let f = get(host, member);
        if f.is_undefined() {
            Ok(None)
        } else {
            convert::function(f)
                .map(Some)
                .ok_or_else(|| Error::InvalidHost {
                    member: member.into(),
                    reason: "must be a function".into(),
                })
        }
    };
    match (own("setTimer")?, own("clearTimer")?) {
        (Some(set), Some(clear)) => {
            return Ok(Timers {
                set,
                clear,
                this: host.clone(),
            });
        }
        (None, None) => {}
        (set, _) => {
            let (member, other) = if set.is_some() {
                ("clearTimer", "setTimer")
            } else {
                ("setTimer", "clearTimer")
            };
            return Err(Error::InvalidHost {
                member: member.into(),
                reason: format!("must be a function when `{other}` is given"),
            });
        }
    }
    let global: JsValue = js_sys::global().into();
    let set = convert::function(get(&global, "setTimeout"));
    let clear = convert::function(get(&global, "clearTimeout"));
    match (set, clear) {
        (Some(set), Some(clear)) => Ok(Timers {
            // setTimeout(fn, ms) and the host's setTimer(fn, ms) take the same arguments.
            set,
            clear,
            this: global,
        }),
        _ => Err(Error::InvalidHost {
            member: "setTimer".into(),
            reason: "no global setTimeout here: the host must supply setTimer and clearTimer"
                .into(),
        }),
    }
}

pub(super) fn clear_timer(inner: &Inner, handle: &JsValue) {
    let _ = inner.timers.clear.call1(&inner.timers.this, handle);
}

/// Arms the timer for `at` (host ms), replacing the armed one.
pub(super) fn arm(inner: &Inner, at: u64, now: u64) {
    let old = inner.timer.borrow_mut().take();
    if let Some((handle, _)) = old {
        clear_timer(inner, &handle);
    }
    let tick = inner.tick.borrow().clone();
    if let Some(tick) = tick {
        let delay = at.saturating_sub(now).min(2_147_483_647) as f64;
        if let Ok(handle) = inner
            .timers
            .set
            .call2(&inner.timers.this, &tick, &delay.into())
        {
            *inner.timer.borrow_mut() = Some((handle, at));
        }
    }
}

/// Re-arms the timer for the engine's nearest deadline, or clears it when nothing is due.
pub(super) fn rearm(inner: &Inner, now: u64) {
    if inner.disposed.get() {
        return;
    }
    let next = inner.core.borrow().next_deadline(now);
    let armed = inner.timer.borrow().as_ref().map(|(_, at)| *at);
    match (next, armed) {
        (Some(at), Some(cur)) if at == cur => {}
        (Some(at), _) => arm(inner, at, now),
        (None, Some(_)) => {
            let old = inner.timer.borrow_mut().take();
            if let Some((handle, _)) = old {
                clear_timer(inner, &handle);
            }
        }
        (None, None) => {}
    }
}

/// The run path's timer: arms it for `at` (the engine's `run_timer`) only when that comes
/// before the armed one.
pub(super) fn arm_at_most(inner: &Inner, now: u64, at: u64) {
    let armed = inner.timer.borrow().as_ref().map(|(_, at)| *at);
    if armed.is_none_or(|cur| at < cur) {
        arm(inner, at, now);
    }
}

/// The timer's callback: moves time on and does what is due.
pub(super) fn tick_function(weak: &Weak<Inner>) -> Function {
    let weak = weak.clone();
    let closure = Closure::<dyn Fn()>::new(move || {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        inner.timer.borrow_mut().take();
        if inner.disposed.get() || fenced(&inner).is_err() {
            return;
        }
        let now = inner
            .host
            .now_ms()
            .unwrap_or_else(|_| inner.host.last_now());
        if memory_if_due(&inner, now).is_err() {
            return; // disposed by the host's memory()
        }
        // `tick` fails only on a journal conflict, which a single writer cannot meet.
        let _ = inner.core.borrow_mut().tick(now);
        after(&inner);
    });
    closure.into_js_value().unchecked_into()
}

/// Feeds the memory gate a fresh reading — call it only when the engine asks
/// (`memory_due*`), or to show one (`stats`); a failing reading is skipped (the gate goes
/// stale). No borrow of the core is held across the host's `memory()`.
pub(super) fn observe_memory(inner: &Inner, now: u64) {
    if let Ok(reading) = inner.host.memory() {
        inner.core.borrow_mut().observe_memory(now, reading);
    }
}

/// Before a call that moves the engine at `now`: the reading it wants, if it wants one (the
/// rule: `Engine::memory_due`). `DISPOSED` when the host's `memory()` disposed the engine
/// meanwhile: the caller then does nothing more.
pub(super) fn memory_if_due(inner: &Inner, now: u64) -> Result<(), Error> {
    memory_when(inner, now, |o| o.memory_due(now))
}

/// [`memory_if_due`] with the engine's question given (`due`, e.g. `Engine::run_memory_due`
/// for one run): a reading when it says so, taken with no borrow held.
pub(super) fn memory_when(
    inner: &Inner,
    now: u64,
    due: impl FnOnce(&Engine) -> bool,
) -> Result<(), Error> {
    if due(&inner.core.borrow()) {
        observe_memory(inner, now);
        if inner.disposed.get() {
            return Err(Error::Disposed);
        }
    }
    Ok(())
}
