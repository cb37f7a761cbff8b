//! `JsHost`: the [`Host`] trait implemented over a JavaScript object of functions.
//!
//! The host object has `now()`, `memory()` and one async function per operation
//! (`createSession(input, callId)`). An operation function may answer in either of two ways:
//! - return a promise (or any value): the engine settles the call from it, or
//! - return `undefined` and later call `engine.resolve(callId, value)` / `engine.reject(callId,
//!   error)`: the by-id path, which passes only integers across the boundary.
//!
//! A synchronous throw is a rejection. Whichever answer comes first settles the call; later
//! ones are ignored on the promise path and refused with `UNKNOWN_CALL` on the by-id path.
//!
//! Time: `now()` is the wall clock (epoch ms); an optional `monotonic()` (e.g.
//! `performance.now()`) drives the engine's timers and deadlines when present. Both go through
//! [`Clock`], which takes steps of the wall clock either way without freezing or jumping.
//!
//! Invariants:
//! 1. No method here runs while the engine core is borrowed (see `engine` module docs).
//! 2. The engine's time never goes back (see [`Clock`]).

use std::cell::{Cell, RefCell};

use js_sys::{Function, Object};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/src/bindings/boundary.js")]
extern "C" {
    /// Follows whatever a host function returned with two plain functions (js-sys's `then2`
    /// takes Rust closures, and a closure per call is what the by-id design avoids), without
    /// ever throwing: a promise whose own `then` throws, or a revoked proxy, becomes a rejection.
    fn follow(value: &JsValue, on_fulfilled: &JsValue, on_rejected: &JsValue);
}

use super::convert::{get, non_negative, set, type_name};
use crate::error::Error;
use crate::host::{
    Clock, Host, HostOp, HostOpKind, HostOutcome, HostReply, HostRequest, MemoryReading, SessionId,
};

/// The host's functions, checked once at construction.
pub(crate) struct HostFunctions {
    this: JsValue,
    now: Function,
    /// A monotonic clock (ms), optional.
    monotonic: Option<Function>,
    memory: Function,
    create_session: Function,
    /// The session operations, each optional until the engine needs it: a request for a
    /// missing one fails with class `invalid`.
    prompt: Option<Function>,
    abort: Option<Function>,
    delete_session: Option<Function>,
    last_assistant_message: Option<Function>,
    check_session: Option<Function>,
    /// The liveness probe; without it the engine checks suspects one `checkSession` each.
    session_statuses: Option<Function>,
}

/// The host functions together with the engine's settle functions.
pub(crate) struct JsHost {
    f: HostFunctions,
    clock: RefCell<Clock>,
    last_now: Cell<u64>,
    /// Called with `(callId, value)` when an operation's promise fulfils.
    settle_ok: Function,
    /// Called with `(callId, error)` when it rejects.
    settle_err: Function,
}

impl HostFunctions {
    /// Checks that `host` is an object with the functions the engine needs.
    pub(crate) fn new(host: JsValue) -> Result<Self, Error> {
        if !host.is_object() || host.is_null() {
            return Err(Error::InvalidHost {
                member: "host".into(),
                reason: format!("must be an object of functions, got {}", type_name(&host)),
            });
        }
        let function = |member: &str| -> Result<Function, Error> {
            let value = get(&host, member);
            let name = type_name(&value);
            super::convert::function(value).ok_or_else(|| Error::InvalidHost {
                member: member.into(),
                reason: format!("must be a function, got {name}"),
            })
        };
        let optional = |kind: HostOpKind| -> Result<Option<Function>, Error> {
            let value = get(&host, kind.name());
            if value.is_undefined() {
                Ok(None)
            } else {
                function(kind.name()).map(Some)
            }
        };
        Ok(HostFunctions {
            now: function("now")?,
            monotonic: {
                let value = get(&host, "monotonic");
                if value.is_undefined() {
                    None
                } else {
                    Some(function("monotonic")?)
                }
            },
            memory: function("memory")?,
            create_session: function(HostOpKind::CreateSession.name())?,
            prompt: optional(HostOpKind::Prompt)?,
            abort: optional(HostOpKind::Abort)?,
            delete_session: optional(HostOpKind::DeleteSession)?,
            last_assistant_message: optional(HostOpKind::LastAssistantMessage)?,
            check_session: optional(HostOpKind::CheckSession)?,
            session_statuses: optional(HostOpKind::SessionStatuses)?,
            this: host,
        })
    }
}

impl JsHost {
    /// Joins checked host functions with the functions that settle calls in the engine.
    pub(crate) fn new(f: HostFunctions, settle_ok: Function, settle_err: Function) -> Self {
        JsHost {
            clock: RefCell::new(Clock::new(f.monotonic.is_some())),
            f,
            last_now: Cell::new(0),
            settle_ok,
            settle_err,
        }
    }

    /// Starts `request` and arranges for its answer to reach the engine.
    fn call(&self, request: HostRequest) {
        let call = JsValue::from(request.call.get());
        let input = Object::new();
        let function = match &request.op {
            HostOp::CreateSession {
                agent,
                parent,
                title,
            } => {
                set(&input, "agent", &agent.into());
                if let Some(parent) = parent {
                    set(&input, "parentID", &parent.as_str().into());
                }
                set(&input, "title", &title.into());
                Some(&self.f.create_session)
            }
            HostOp::Prompt {
                session,
                agent,
                model,
                text,
            } => {
                set(&input, "sessionID", &session.as_str().into());
                set(&input, "agent", &agent.into());
                if let Some(model) = model {
                    set(&input, "model", &model.into());
                }
                set(&input, "text", &text.into());
                self.f.prompt.as_ref()
            }
            HostOp::Abort { session } => self.session_input(&input, session, &self.f.abort),
            HostOp::DeleteSession { session } => {
                self.session_input(&input, session, &self.f.delete_session)
            }
            HostOp::LastAssistantMessage { session } => {
                self.session_input(&input, session, &self.f.last_assistant_message)
            }
            HostOp::CheckSession { session } => {
                self.session_input(&input, session, &self.f.check_session)
            }
            HostOp::SessionStatuses => self.f.session_statuses.as_ref(),
        };
        let settle = |f: &Function, v: &JsValue| {
            // The settle functions are ours and never throw.
            let _ = f.call2(&JsValue::NULL, &call, v);
        };
        let Some(function) = function else {
            let error = js_sys::Error::new(&format!(
                "the host has no `{}` function",
                request.op.kind().name()
            ));
            set(error.as_ref(), "class", &"invalid".into());
            settle(&self.settle_err, &error.into());
            return;
        };
        match function.call2(&self.f.this, &input, &call) {
            Err(thrown) => settle(&self.settle_err, &thrown),
            Ok(returned) if returned.is_undefined() => {} // the host answers by id
            Ok(returned) => {
                let ok = self.settle_ok.bind1(&JsValue::NULL, &call);
                let err = self.settle_err.bind1(&JsValue::NULL, &call);
                // Both handlers: a rejection is always handled here, and nothing throws.
                follow(&returned, ok.as_ref(), err.as_ref());
            }
        }
    }
}

impl JsHost {
    fn session_input<'a>(
        &self,
        input: &Object,
        session: &SessionId,
        f: &'a Option<Function>,
    ) -> Option<&'a Function> {
        set(input, "sessionID", &session.as_str().into());
        f.as_ref()
    }

    /// The last good clock reading.
    pub(crate) fn last_now(&self) -> u64 {
        self.last_now.get()
    }

    /// A clock reading JavaScript took itself (the run path) from [`JsHost::now_function`]'s
    /// source; a value that is not a usable time reads as the last good one.
    pub(crate) fn observe_now(&self, now: f64) -> u64 {
        if now.is_nan() {
            return self.last_now.get(); // "no new reading": the common case, kept cheap
        }
        let now = self.clock.borrow_mut().read_primary(now);
        self.last_now.set(now);
        now
    }

    /// The host's primary clock (`monotonic` when it has one, else `now`) bound to the host, for
    /// JavaScript to read the clock without a call into WebAssembly.
    pub(crate) fn now_function(&self) -> Function {
        self.f
            .monotonic
            .as_ref()
            .unwrap_or(&self.f.now)
            .bind0(&self.f.this)
    }

    /// A reply's message stamps put on the engine's clock (see [`Clock::stamp`]).
    pub(crate) fn on_engine_clock(&self, outcome: HostOutcome) -> HostOutcome {
        match outcome {
            HostOutcome::Ok(HostReply::Message(Some(mut m))) => {
                let clock = self.clock.borrow();
                m.created_ms = clock.stamp(m.created_ms);
                m.completed_ms = m.completed_ms.map(|c| clock.stamp(c));
                HostOutcome::Ok(HostReply::Message(Some(m)))
            }
            other => other,
        }
    }
}

impl Host for JsHost {
    fn now_ms(&self) -> Result<u64, Error> {
        let bad = |reason: String| Error::HostBadReading {
            reading: "now",
            reason,
        };
        let wall = self
            .f
            .now
            .call0(&self.f.this)
            .map_err(|e| threw("now", "now", &e))
            .and_then(|value| non_negative(&value).map_err(bad));
        let monotonic = match &self.f.monotonic {
            None => None,
            Some(f) => match f.call0(&self.f.this).map(|v| v.as_f64()) {
                Ok(Some(m)) if m.is_finite() => Some(m),
                Ok(_) => return Err(bad("monotonic() must return a finite number".into())),
                Err(e) => return Err(threw("now", "monotonic", &e)),
            },
        };
        // With a monotonic clock, a failing wall clock only leaves the stamp offset as it was.
        let wall = match (wall, monotonic) {
            (Ok(w), _) => Some(w as f64),
            (Err(_), Some(_)) => None,
            (Err(e), None) => return Err(e),
        };
        let now = self.clock.borrow_mut().read(wall, monotonic);
        self.last_now.set(now);
        Ok(now)
    }

    fn memory(&self) -> Result<MemoryReading, Error> {
        let bad = |reason: String| Error::HostBadReading {
            reading: "memory",
            reason,
        };
        let value = self
            .f
            .memory
            .call0(&self.f.this)
            .map_err(|e| threw("memory", "memory", &e))?;
        if !value.is_object() {
            return Err(bad(format!(
                "expected {{ used, limit }}, got {}",
                type_name(&value)
            )));
        }
        let used = non_negative(&get(&value, "used")).map_err(|r| bad(format!("used: {r}")))?;
        let limit = non_negative(&get(&value, "limit")).map_err(|r| bad(format!("limit: {r}")))?;
        MemoryReading::new(used, limit)
    }

    fn start(&self, request: HostRequest) {
        self.call(request);
    }
}

/// A bad `reading`: the host's function `call` threw `thrown`. Out of line: one copy of the
/// formatting for every reading.
#[cold]
#[inline(never)]
fn threw(reading: &'static str, call: &str, thrown: &JsValue) -> Error {
    Error::HostBadReading {
        reading,
        reason: format!("{call}() threw: {}", describe(thrown)),
    }
}

fn describe(thrown: &JsValue) -> String {
    get(thrown, "message")
        .as_string()
        .or_else(|| thrown.as_string())
        .unwrap_or_else(|| type_name(thrown))
}
