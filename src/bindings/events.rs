//! What the core did, told to JavaScript after each borrow of it ends: host requests started,
//! run slots made ready or expired, breaker, limit and task events to listeners, task waiters
//! settled, the timer re-armed.

use std::rc::Rc;

use js_sys::{Function, Object};
use wasm_bindgen::prelude::*;

use super::api::{TaskInfo, to_value};
use super::convert::{set, to_js};
use super::run::{RUN_BUFFER, write_ready};
use super::timer::rearm;
use super::{EventName, Inner, JsEngine, Listener, Unsubscribe, convert, fence_out, fenced};
use crate::error::Error;
use crate::host::Host;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EventKind {
    Task,
    Breaker,
    Limit,
}

pub(super) fn after(inner: &Inner) {
    if inner.disposed.get() {
        return;
    }
    if let Err(e) = fenced(inner) {
        fence_out(inner, &e);
        return;
    }
    let now = inner.host.last_now();
    let (requests, events, expired, ready, breakers, limits, resumed) = {
        let mut o = inner.core.borrow_mut();
        let requests = o.take_requests();
        let events = o.take_events();
        let resumed = o.take_resumed();
        let expired = o.take_run_expired();
        let ready = o.run_ready_len() > 0;
        if ready {
            write_ready(inner, &mut o);
        }
        let breakers = o.take_breaker_events();
        let limits = o.take_limit_events();
        (requests, events, expired, ready, breakers, limits, resumed)
    };
    for r in requests {
        inner.host.start(r);
    }
    let hooks = inner
        .run_hooks
        .borrow()
        .as_ref()
        .map(|h| (h.wake.clone(), h.expire.clone()));
    if let Some((wake, expire)) = hooks {
        for &(slot, ms) in &expired {
            let _ = expire.call2(&JsValue::NULL, &slot.get().into(), &(ms as f64).into());
        }
        if ready {
            let _ = wake.call0(&JsValue::NULL);
        }
    }
    if !expired.is_empty() {
        // Delivered (or nobody to tell): the indices of the expired waiting slots may be used
        // again. Not before — a host function started above may have called `run`.
        inner.core.borrow_mut().release_run_expired(&expired);
    }
    let (changed, not_closed) = breakers;
    inner.breaker_not_closed.set(not_closed);
    if let Some(flag) = inner.run_buffer.borrow_mut().get_mut(RUN_BUFFER) {
        *flag = u32::from(not_closed);
    }
    for e in changed {
        let event = Object::new();
        set(&event, "type", &"breaker".into());
        set(&event, "key", &e.key.into());
        set(&event, "state", &e.phase.name().into());
        emit(inner, EventKind::Breaker, &event);
    }
    for e in limits {
        let event = Object::new();
        set(&event, "type", &"limit".into());
        set(&event, "scope", &e.scope.name().into());
        set(&event, "name", &e.name.into());
        set(&event, "from", &e.from.into());
        set(&event, "to", &e.to.into());
        set(&event, "cause", &e.cause.name().into());
        emit(inner, EventKind::Limit, &event);
    }
    for e in events {
        let event = Object::new();
        set(&event, "type", &"task".into());
        set(&event, "id", &e.task.get().into());
        set(&event, "state", &e.state.name().into());
        emit(inner, EventKind::Task, &event);
        if e.state.is_settled() {
            let waiters = inner.task_waiters.borrow_mut().remove(&e.task.get());
            if let Some(waiters) = waiters {
                let info = inner
                    .core
                    .borrow()
                    .task(e.task)
                    .and_then(|r| to_value(&TaskInfo::from(&r)));
                for (resolve, reject) in waiters {
                    let _ = match &info {
                        Ok(info) => resolve.call1(&JsValue::NULL, info),
                        Err(err) => reject.call1(&JsValue::NULL, &to_js(err)),
                    };
                }
            }
        }
    }
    // Parents that have their slot again (or settled): their `resumed` promises resolve, so
    // their sessions go on within the lane's limit. After the task waiters: a join's children
    // are settled first.
    for parent in resumed {
        let waiters = inner.resume_waiters.borrow_mut().remove(&parent.get());
        for (resolve, _) in waiters.into_iter().flatten() {
            let _ = resolve.call0(&JsValue::NULL);
        }
    }
    rearm(inner, now);
}

pub(super) fn emit(inner: &Inner, kind: EventKind, event: &Object) {
    let listeners: Vec<Function> = inner
        .listeners
        .borrow()
        .iter()
        .filter(|(_, k, _)| *k == kind)
        .map(|(_, _, f)| f.clone())
        .collect();
    for f in listeners {
        // A listener that throws does not stop the engine or the other listeners.
        let _ = f.call1(&JsValue::NULL, event);
    }
}

#[wasm_bindgen(js_class = Engine)]
impl JsEngine {
    /// Calls `listener` on every task transition (`"task"`: `{ type, id, state }`), breaker
    /// transition (`"breaker"`: `{ type, key, state }`) or change of an adaptive limit
    /// (`"limit"`: `{ type, scope, name, from, to, cause }`). A listener that throws is
    /// ignored. Returns a function that unsubscribes.
    pub fn on(&self, event: EventName, listener: Listener) -> Result<Unsubscribe, JsValue> {
        self.live()?;
        let event: JsValue = event.into();
        let kind = match event.as_string().as_deref() {
            Some("task") => EventKind::Task,
            Some("breaker") => EventKind::Breaker,
            Some("limit") => EventKind::Limit,
            _ => {
                return Err(to_js(&Error::input(
                    "event",
                    "must be \"task\", \"breaker\" or \"limit\"",
                )));
            }
        };
        let Some(listener) = convert::function(listener.into()) else {
            return Err(to_js(&Error::input("listener", "must be a function")));
        };
        let id = self.inner.next_listener.get();
        self.inner.next_listener.set(id.wrapping_add(1));
        self.inner.listeners.borrow_mut().push((id, kind, listener));
        let weak = Rc::downgrade(&self.inner);
        let off = Closure::<dyn Fn()>::new(move || {
            if let Some(inner) = weak.upgrade() {
                inner.listeners.borrow_mut().retain(|(l, _, _)| *l != id);
            }
        });
        Ok(off.into_js_value().unchecked_into())
    }
}
