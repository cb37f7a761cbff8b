//! The JavaScript face of foreman: the `Engine` class. The only module that names
//! `wasm_bindgen`, `js_sys` or `serde_wasm_bindgen`.
//!
//! Invariants:
//! 1. Every exported method takes `&self`, so JavaScript calling back in from a host function
//!    never meets a "recursive use" error.
//! 2. No `RefCell` borrow is held across a call into JavaScript: readings are taken before the
//!    core is borrowed, host requests are started and waiters are settled after it is released.
//! 3. Nothing here panics on any input: every JS value is checked into a typed value, and every
//!    failure is a JS `Error` with a stable `code`.

mod convert;
mod host;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

use js_sys::{Function, Promise};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use self::convert::{failure, from_js, reply, to_js};
use self::host::{HostFunctions, JsHost};
use crate::config::{CONFIG_SCHEMA, Config, ConfigInput};
use crate::engine::{CreateSession, Engine as Core, Settled};
use crate::error::Error;
use crate::host::{CallId, Host, HostOutcome, SessionId};

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** What the engine needs from its environment. Operation functions receive the call id as their
 * last argument: return a promise (the engine settles the call from it), or return `undefined`
 * and later call `engine.resolve(callId, value)` / `engine.reject(callId, error)`. A rejection
 * is classified by its `class` ("upstream" | "rate_limited" | "timeout" | "cancelled" |
 * "invalid"), else `name` AbortError → cancelled, else `status`/`statusCode` (429 → rate_limited,
 * other 4xx → invalid), else upstream. */
export interface ForemanHost {
  /** Milliseconds since the epoch (`Date.now()`): the clock OpenCode stamps messages with. Read
   * monotonically: a reading below the previous one counts as the previous one. */
  now(): number;
  /** Memory in use and the budget, in bytes. */
  memory(): { used: number; limit: number };
  /** Creates a session; answers with its id (or a Session object with `id`). */
  createSession(input: { agent: string; parentID?: string; title: string }, callId: number): Promise<string | { id: string }> | undefined;
  /** The session operations sub-agent tasks use. Optional while only `createSession` is used;
   * when present each must be a function (else INVALID_HOST), and a call to a missing one
   * fails with class "invalid". */
  prompt?(input: { sessionID: string; agent: string; model?: string; text: string }, callId: number): Promise<unknown> | undefined;
  abort?(input: { sessionID: string }, callId: number): Promise<unknown> | undefined;
  deleteSession?(input: { sessionID: string }, callId: number): Promise<unknown> | undefined;
  /** The newest assistant message (`{ info, parts }` or its `info`), or null before the first. */
  lastAssistantMessage?(input: { sessionID: string }, callId: number): Promise<unknown> | undefined;
  checkSession?(input: { sessionID: string }, callId: number): Promise<"busy" | "idle" | "gone"> | undefined;
}

/** Engine configuration. Every key is optional; unknown keys are refused with code
 * INVALID_CONFIG naming the key (e.g. `breaker.openMs`). */
export interface ForemanConfig {
  /** Concurrency per agent type, merged over the defaults planner 2, worker 8, reviewer 4,
   * other 4. Whole numbers in 1..=1024. Agents without a lane share `other`. */
  lanes?: Record<string, number>;
  /** Concurrency per provider/model key, e.g. `{ "anthropic/claude-sonnet-4": 4 }`. Keys not
   * listed are unlimited (but still have a circuit breaker). */
  keys?: Record<string, number>;
  /** Per-key circuit breaker. Opens after `failureThreshold` (5) consecutive upstream errors or
   * timeouts, stays open `openMs` (30 000; ×2 with jitter on repeated trips, up to `maxOpenMs`
   * 300 000), then lets one probe at a time through; `closeAfter` (2) probe successes close it. */
  breaker?: { failureThreshold?: number; openMs?: number; maxOpenMs?: number; closeAfter?: number };
  /** Adaptive limits (AIMD) under the configured ones: +1 after `growAfter` (3) successes while
   * at least half is in use, ×0.5 on an upstream error, timeout or 429, at most once per
   * `windowMs` (5 000). */
  adaptive?: { enabled?: boolean; growAfter?: number; windowMs?: number };
  /** Memory gate: LOW work is refused at `refuseAt` (0.8) of the host's limit and accepted again
   * below `resumeBelow` (0.75); a reading older than `staleMs` (10 000) no longer counts. */
  pressure?: { refuseAt?: number; resumeBelow?: number; staleMs?: number };
  /** A waiting lower priority goes after `lowEvery` (8) higher-priority admissions. */
  fairness?: { lowEvery?: number };
}

/** Input of `createSession`. */
export interface CreateSessionInput {
  agent: string;
  parentID?: string;
  /** Defaults to `foreman: <agent>` (OpenCode would otherwise ask a model for a title). */
  title?: string;
}

/** A consistent view of the engine. */
export interface ForemanStats {
  version: string;
  now: number;
  memory: { used: number; limit: number; perMille: number };
  pendingCalls: number;
  sessions: { created: number; failed: number; meanCreateMs: number | null };
  lanes: Array<{ name: string; limit: number; pendingCalls: number }>;
}

/** Every error foreman throws or rejects with. `code` is stable. */
export interface ForemanError extends Error {
  name: "ForemanError";
  code: "INVALID_CONFIG" | "INVALID_HOST" | "INVALID_INPUT" | "HOST_FAILED" | "HOST_BAD_REPLY"
      | "HOST_BAD_READING" | "MEMORY_PRESSURE" | "BREAKER_OPEN" | "QUEUE_FULL" | "CONFLICT" | "JOURNAL_INVALID"
      | "UNKNOWN_TASK" | "ILLEGAL_TRANSITION" | "UNKNOWN_CALL" | "DISPOSED";
  /** With HOST_FAILED: how the failure counts. */
  class?: "upstream" | "rate_limited" | "timeout" | "cancelled" | "invalid";
}
"#;

#[wasm_bindgen]
extern "C" {
    /// A host object (TypeScript: `ForemanHost`).
    #[wasm_bindgen(typescript_type = "ForemanHost")]
    pub type HostObject;
    /// A config object (TypeScript: `ForemanConfig`).
    #[wasm_bindgen(typescript_type = "ForemanConfig | undefined")]
    pub type ConfigObject;
    /// A `createSession` input (TypeScript: `CreateSessionInput`).
    #[wasm_bindgen(typescript_type = "CreateSessionInput")]
    pub type CreateSessionObject;
    /// A stats object (TypeScript: `ForemanStats`).
    #[wasm_bindgen(typescript_type = "ForemanStats")]
    pub type StatsObject;
    /// `Promise<string>` in TypeScript.
    #[wasm_bindgen(typescript_type = "Promise<string>")]
    pub type PromiseString;
}

type Waiter = (Function, Function);

/// The keys `CreateSessionInput` accepts.
const CREATE_SESSION_SCHEMA: &[(&str, &[&str])] = &[("", &["agent", "parentID", "title"])];

struct Inner {
    core: RefCell<Core>,
    host: JsHost,
    /// The JS promises waiting on host calls, by call id.
    waiters: RefCell<BTreeMap<u32, Waiter>>,
}

/// The foreman engine, driven by a JavaScript host.
#[wasm_bindgen]
pub struct Engine {
    inner: Rc<Inner>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSessionDto {
    agent: String,
    #[serde(rename = "parentID")]
    parent_id: Option<String>,
    title: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatsDto {
    version: &'static str,
    now: f64,
    memory: MemoryDto,
    pending_calls: u32,
    sessions: SessionsDto,
    lanes: Vec<LaneDto>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MemoryDto {
    used: f64,
    limit: f64,
    per_mille: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionsDto {
    created: f64,
    failed: f64,
    mean_create_ms: Option<f64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LaneDto {
    name: String,
    limit: u32,
    pending_calls: u32,
}

#[wasm_bindgen]
impl Engine {
    /// Creates an engine over `host` with `config` (optional). Throws a `ForemanError` with code
    /// `INVALID_HOST` or `INVALID_CONFIG` (naming the `member` or `key`) when either is unusable;
    /// the host's `now()` and `memory()` are read once to check them.
    #[wasm_bindgen(constructor)]
    pub fn new(host: HostObject, config: Option<ConfigObject>) -> Result<Engine, JsValue> {
        let config = config.map_or(JsValue::UNDEFINED, Into::into);
        let input: ConfigInput = from_js(config, "config", CONFIG_SCHEMA, |key, reason| {
            Error::InvalidConfig { key, reason }
        })
        .map_err(|e| to_js(&e))?;
        let config = Config::from_input(input).map_err(|e| to_js(&e))?;
        let functions = HostFunctions::new(host.into()).map_err(|e| to_js(&e))?;
        let inner = Rc::new_cyclic(|weak: &Weak<Inner>| {
            let (ok, err) = settle_functions(weak);
            Inner {
                core: RefCell::new(Core::new(config)),
                host: JsHost::new(functions, ok, err),
                waiters: RefCell::new(BTreeMap::new()),
            }
        });
        let engine = Engine { inner };
        engine.inner.host.now_ms().map_err(|e| to_js(&e))?;
        engine.inner.host.memory().map_err(|e| to_js(&e))?;
        Ok(engine)
    }

    /// The crate version.
    #[wasm_bindgen(js_name = version)]
    pub fn version() -> String {
        env!("CARGO_PKG_VERSION").into()
    }

    /// Asks the host to create a session. Resolves with its id; rejects with a `ForemanError`
    /// (`INVALID_INPUT` at once; `HOST_FAILED` with a `class`, or `HOST_BAD_REPLY`, from the host).
    #[wasm_bindgen(js_name = createSession)]
    pub fn create_session(&self, input: CreateSessionObject) -> PromiseString {
        let promise = self
            .try_create_session(input.into())
            .unwrap_or_else(|e| Promise::reject(&e));
        promise.unchecked_into()
    }

    /// Settles call `callId` with `value`, for hosts that answer by id. Throws `UNKNOWN_CALL` when
    /// no such call is pending.
    pub fn resolve(&self, call_id: JsValue, value: JsValue) -> Result<(), JsValue> {
        let call = call_id_of(&call_id).map_err(|e| to_js(&e))?;
        self.settle(call, Ok(value)).map_err(|e| to_js(&e))
    }

    /// Fails call `callId` with `error`, for hosts that answer by id. Throws `UNKNOWN_CALL` when
    /// no such call is pending.
    pub fn reject(&self, call_id: JsValue, error: JsValue) -> Result<(), JsValue> {
        let call = call_id_of(&call_id).map_err(|e| to_js(&e))?;
        self.settle(call, Err(error)).map_err(|e| to_js(&e))
    }

    /// A consistent view of the engine, with fresh host readings.
    pub fn stats(&self) -> Result<StatsObject, JsValue> {
        let now = self.inner.host.now_ms().map_err(|e| to_js(&e))?;
        let memory = self.inner.host.memory().map_err(|e| to_js(&e))?;
        let stats = self
            .inner
            .core
            .borrow()
            .stats(now, memory)
            .map_err(|e| to_js(&e))?;
        let s = stats.sessions;
        let dto = StatsDto {
            version: env!("CARGO_PKG_VERSION"),
            now: stats.now_ms as f64,
            memory: MemoryDto {
                used: memory.used() as f64,
                limit: memory.limit() as f64,
                per_mille: memory.per_mille() as f64,
            },
            pending_calls: stats.pending_calls,
            sessions: SessionsDto {
                created: s.created as f64,
                failed: s.failed as f64,
                mean_create_ms: (s.created > 0)
                    .then(|| s.create_ms_total as f64 / s.created as f64),
            },
            lanes: stats
                .lanes
                .into_iter()
                .map(|l| LaneDto {
                    name: l.name,
                    limit: l.limit,
                    pending_calls: l.pending_calls,
                })
                .collect(),
        };
        let serializer = serde_wasm_bindgen::Serializer::json_compatible();
        dto.serialize(&serializer)
            .map(JsCast::unchecked_into)
            .map_err(|e| {
                to_js(&Error::InvalidInput {
                    field: "stats".into(),
                    reason: e.to_string(),
                })
            })
    }

    /// Stops the engine: pending calls reject with `DISPOSED`, later calls throw `DISPOSED`.
    /// Idempotent.
    pub fn dispose(&self) {
        let abandoned = self.inner.core.borrow_mut().dispose();
        let waiters: Vec<Waiter> = {
            let mut waiters = self.inner.waiters.borrow_mut();
            abandoned
                .iter()
                .filter_map(|c| waiters.remove(&c.get()))
                .collect()
        };
        let error = to_js(&Error::Disposed);
        for (_, reject) in waiters {
            let _ = reject.call1(&JsValue::NULL, &error);
        }
    }
}

impl Engine {
    fn try_create_session(&self, input: JsValue) -> Result<Promise, JsValue> {
        let dto: CreateSessionDto =
            from_js(input, "input", CREATE_SESSION_SCHEMA, |field, reason| {
                Error::InvalidInput { field, reason }
            })
            .map_err(|e| to_js(&e))?;
        let request = CreateSession {
            agent: dto.agent,
            parent: dto.parent_id.map(SessionId),
            title: dto.title,
        };
        let now = self.inner.host.now_ms().map_err(|e| to_js(&e))?;
        let (call, requests) = {
            let mut core = self.inner.core.borrow_mut();
            let call = core.create_session(now, request).map_err(|e| to_js(&e))?;
            (call, core.take_requests())
        };
        let mut waiter = None;
        let promise = Promise::new(&mut |resolve, reject| waiter = Some((resolve, reject)));
        if let Some(waiter) = waiter {
            self.inner.waiters.borrow_mut().insert(call.get(), waiter);
        }
        for request in requests {
            self.inner.host.start(request);
        }
        Ok(promise)
    }

    /// Accepts an answer for `call` from either path and settles its waiter.
    fn settle(&self, call: CallId, answer: Result<JsValue, JsValue>) -> Result<(), Error> {
        settle(&self.inner, call, answer)
    }
}

fn settle(inner: &Inner, call: CallId, answer: Result<JsValue, JsValue>) -> Result<(), Error> {
    // A clock that fails now still settles the call, at the last good reading.
    let now = inner
        .host
        .now_ms()
        .unwrap_or_else(|_| inner.host.last_now());
    let settled = {
        let mut core = inner.core.borrow_mut();
        if core.is_disposed() {
            return Err(Error::Disposed);
        }
        let op = core
            .pending_op(call)
            .ok_or(Error::UnknownCall { call: call.get() })?;
        let outcome = match &answer {
            Ok(value) => reply(op, value),
            Err(error) => HostOutcome::Failed(failure(error)),
        };
        core.resolve(now, call, outcome)?
    };
    let waiter = inner.waiters.borrow_mut().remove(&call.get());
    if let Some((resolve, reject)) = waiter {
        let _ = match settled {
            Settled::SessionCreated(id) => resolve.call1(&JsValue::NULL, &id.as_str().into()),
            Settled::Failed(error) => reject.call1(&JsValue::NULL, &to_js(&error)),
        };
    }
    Ok(())
}

/// The two functions a host promise's reactions call. They hold the engine weakly and live as
/// long as JavaScript references them, so a reaction after the engine is freed does nothing.
fn settle_functions(weak: &Weak<Inner>) -> (Function, Function) {
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

fn call_id_of(value: &JsValue) -> Result<CallId, Error> {
    let n = value
        .as_f64()
        .filter(|n| n.fract() == 0.0 && *n >= 1.0 && *n <= f64::from(u32::MAX));
    n.map(|n| CallId(n as u32))
        .ok_or_else(|| Error::input("callId", "must be a call id the engine passed to the host"))
}
