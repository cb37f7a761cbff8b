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
//! Invariants:
//! 1. No method here runs while the engine core is borrowed (see `engine` module docs).
//! 2. The clock reads monotonically: a reading below the previous one reads as the previous one.

use std::cell::Cell;

use js_sys::{Function, Object, Promise};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `Promise.prototype.then` with plain functions (js-sys's `then2` takes Rust closures, and
    /// a closure per call is what the by-id design avoids).
    type NativePromise;
    #[wasm_bindgen(method, js_name = then)]
    fn then_functions(this: &NativePromise, on_fulfilled: &JsValue, on_rejected: &JsValue);
}

use super::convert::{get, non_negative, set, type_name};
use crate::error::Error;
use crate::host::{Host, HostOp, HostOpKind, HostRequest, MemoryReading, SessionId};

/// The host's functions, checked once at construction.
pub(crate) struct HostFunctions {
    this: JsValue,
    now: Function,
    memory: Function,
    create_session: Function,
    /// The session operations, each optional until the engine needs it: a request for a
    /// missing one fails with class `invalid`.
    prompt: Option<Function>,
    abort: Option<Function>,
    delete_session: Option<Function>,
    last_assistant_message: Option<Function>,
    check_session: Option<Function>,
}

/// The host functions together with the engine's settle functions.
pub(crate) struct JsHost {
    f: HostFunctions,
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
            memory: function("memory")?,
            create_session: function(HostOpKind::CreateSession.name())?,
            prompt: optional(HostOpKind::Prompt)?,
            abort: optional(HostOpKind::Abort)?,
            delete_session: optional(HostOpKind::DeleteSession)?,
            last_assistant_message: optional(HostOpKind::LastAssistantMessage)?,
            check_session: optional(HostOpKind::CheckSession)?,
            this: host,
        })
    }
}

impl JsHost {
    /// Joins checked host functions with the functions that settle calls in the engine.
    pub(crate) fn new(f: HostFunctions, settle_ok: Function, settle_err: Function) -> Self {
        JsHost {
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
                // `then` with both handlers: a rejection is always handled here.
                Promise::resolve(&returned)
                    .unchecked_into::<NativePromise>()
                    .then_functions(ok.as_ref(), err.as_ref());
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

    /// A clock reading JavaScript took itself (the run path): monotonic like `now_ms`; a value
    /// that is not a usable time reads as the last good one.
    pub(crate) fn observe_now(&self, now: f64) -> u64 {
        let last = self.last_now.get();
        if !(0.0..=9_007_199_254_740_991.0).contains(&now) {
            return last;
        }
        let now = (now.floor() as u64).max(last);
        self.last_now.set(now);
        now
    }

    /// The host's `now` bound to the host, for JavaScript to read the clock without a call into
    /// WebAssembly.
    pub(crate) fn now_function(&self) -> Function {
        self.f.now.bind0(&self.f.this)
    }
}

impl Host for JsHost {
    fn now_ms(&self) -> Result<u64, Error> {
        let bad = |reason: String| Error::HostBadReading {
            reading: "now",
            reason,
        };
        let value = self
            .f
            .now
            .call0(&self.f.this)
            .map_err(|e| bad(format!("now() threw: {}", describe(&e))))?;
        let now = non_negative(&value).map_err(bad)?.max(self.last_now.get());
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
            .map_err(|e| bad(format!("memory() threw: {}", describe(&e))))?;
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

fn describe(thrown: &JsValue) -> String {
    get(thrown, "message")
        .as_string()
        .or_else(|| thrown.as_string())
        .unwrap_or_else(|| type_name(thrown))
}
