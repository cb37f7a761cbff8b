//! The JavaScript face of foreman: the `Engine` class. The only module that names
//! `wasm_bindgen` or `js_sys`.
//!
//! One engine drives two kinds of work through one controller: **sub-agent tasks**
//! (`delegate`, `wait`, `cancel`, `status`, `list`), which the core engine runs through the
//! host and journals; and **run tasks** (`run(fn)`), any async JavaScript work under the same
//! admission control, not journaled. `run` itself is JavaScript (`run.js`, installed on the
//! class's prototype at start): its closures stay in JS and it calls into WebAssembly twice per
//! task with integers and handles (`runBegin`, `runEnd`).
//!
//! Timers: the engine arms at most one, for its nearest deadline (a task's deadline, a grace
//! check, a retry, a breaker's probe time, pool upkeep), through the host's `setTimer` /
//! `clearTimer` when it has them, else the global `setTimeout` / `clearTimeout`. With nothing
//! pending no timer is armed; `dispose` clears it.
//!
//! The files translate, each for one concern: this one holds the class, its state (`Inner`),
//! construction, restore and dispose; `types.d.ts` the TypeScript types; `tasks.rs` and
//! `journal.rs` the task and journal methods; `calls.rs` host answers and bus events coming in;
//! `events.rs` what the core did going out (host requests, events, waiters); `timer.rs` the one
//! timer; `run.rs` the run path run.js drives; `input.rs` config, task specs and filters in
//! (read with serde into the core's types); `api.rs` / `convert.rs` other JS values in and out;
//! `host.rs` the host as the core sees it; `fence.rs` the module's fencing claims.
//!
//! Invariants:
//! 1. Every exported method takes `&self`, so JavaScript calling back in from a host function
//!    or a listener never meets a "recursive use" error.
//! 2. No `RefCell` borrow is held across a call into JavaScript: readings are taken before the
//!    core is borrowed; host requests are started, waiters settled and listeners called after
//!    it is released.
//! 3. Nothing here panics on any input: every JS value is checked into a typed value, and every
//!    failure is a JS `Error` with a stable `code`.
//! 4. A host call id names one pending call of the core engine (the one core, with the one
//!    call table): the host sees the engine's own id, unique while pending; nothing here
//!    keeps a second table or translates ids.

mod api;
mod calls;
mod convert;
mod events;
mod fence;
mod host;
mod input;
mod journal;
mod run;
mod tasks;
mod timer;

use rustc_hash::FxHashMap;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use js_sys::{Function, Uint8Array};
use wasm_bindgen::prelude::*;

use self::api::unhex;
use self::calls::settle_functions;
use self::convert::{get, to_js};
use self::events::{EventKind, after};
use self::host::{HostFunctions, JsHost};
use self::run::{RUN_BUFFER, RunHooks, install_run_once};
use self::timer::{Timers, clear_timer, tick_function, timers};
use crate::config::Config;
use crate::control::{KeyId, LaneId};
use crate::engine::lifecycle::Engine;
use crate::error::Error;
use crate::host::{Host, MemoryReading};
use crate::store::Head;

/// The TypeScript types of the API (`ForemanHost`, `ForemanConfig`, `TaskSpec`, …), kept in
/// `types.d.ts` and appended to the generated `foreman.d.ts`.
#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = include_str!("types.d.ts");

#[wasm_bindgen]
extern "C" {
    /// A host object (TypeScript: `ForemanHost`).
    #[wasm_bindgen(typescript_type = "ForemanHost")]
    pub type HostObject;
    /// A config object (TypeScript: `ForemanConfig`).
    #[wasm_bindgen(typescript_type = "ForemanConfig | undefined")]
    pub type ConfigObject;
    /// A stats object (TypeScript: `ForemanStats`).
    #[wasm_bindgen(typescript_type = "ForemanStats")]
    pub type StatsObject;
    /// `TaskSpec | TaskSpec[]`.
    #[wasm_bindgen(typescript_type = "TaskSpec | TaskSpec[]")]
    pub type SpecsObject;
    /// `number | number[]`.
    #[wasm_bindgen(typescript_type = "number | number[]")]
    pub type TaskIds;
    /// `TaskInfo`.
    #[wasm_bindgen(typescript_type = "TaskInfo")]
    pub type TaskInfoObject;
    /// `TaskInfo[]`.
    #[wasm_bindgen(typescript_type = "TaskInfo[]")]
    pub type TaskInfoArray;
    /// `Promise<TaskInfo>`.
    #[wasm_bindgen(typescript_type = "Promise<TaskInfo>")]
    pub type PromiseTaskInfo;
    /// `number[]`.
    #[wasm_bindgen(typescript_type = "number[]")]
    pub type TaskIdArray;
    /// `Promise<void>`.
    #[wasm_bindgen(typescript_type = "Promise<void>")]
    pub type PromiseVoid;
    /// `TaskFilter | undefined`.
    #[wasm_bindgen(typescript_type = "TaskFilter | undefined")]
    pub type FilterObject;
    /// `JournalHead`.
    #[wasm_bindgen(typescript_type = "JournalHead")]
    pub type HeadObject;
    /// `"task"`, `"breaker"` or `"limit"`.
    #[wasm_bindgen(typescript_type = "\"task\" | \"breaker\" | \"limit\"")]
    pub type EventName;
    /// A listener.
    #[wasm_bindgen(typescript_type = "(event: TaskEvent | BreakerEvent | LimitEvent) => void")]
    pub type Listener;
    /// `number | undefined`.
    #[wasm_bindgen(typescript_type = "number | undefined")]
    pub type FromSeq;
    /// A journal export.
    #[wasm_bindgen(typescript_type = "Uint8Array")]
    pub type JournalBytes;
    /// An unsubscribe function.
    #[wasm_bindgen(typescript_type = "() => void")]
    pub type Unsubscribe;
}

type Waiter = (Function, Function);

/// Seed of the engine's jitter (mixed with the clock at construction).
const SEED: u64 = 0x5EED_F0E3_A11C_E5ED;

struct Inner {
    core: RefCell<Engine>,
    host: JsHost,
    timers: Timers,
    /// The timer's callback (made once) and the armed timer, if any: (handle, host time).
    tick: RefCell<Option<Function>>,
    timer: RefCell<Option<(JsValue, u64)>>,
    /// The JS promises waiting on tasks, by task id.
    task_waiters: RefCell<FxHashMap<u32, Vec<Waiter>>>,
    /// The JS promises waiting for a joining parent to have its slot back, by its task id.
    resume_waiters: RefCell<FxHashMap<u32, Vec<Waiter>>>,
    listeners: RefCell<Vec<(u32, EventKind, Function)>>,
    next_listener: Cell<u32>,
    /// Whether any breaker was not closed at the last look (then every run end looks again).
    breaker_not_closed: Cell<bool>,
    run_hooks: RefCell<Option<RunHooks>>,
    run_buffer: RefCell<Vec<u32>>,
    /// Lanes and keys resolved for run tasks; run.js refers to them by index (lane 0 is
    /// `other`; keys from 1: 0 is "no key").
    run_lanes: RefCell<Vec<LaneId>>,
    run_keys: RefCell<Vec<KeyId>>,
    run_error: RefCell<Option<JsValue>>,
    disposed: Cell<bool>,
    /// This engine's fencing epoch and its journal's highest claim (see `fence`).
    fence: RefCell<fence::Fence>,
}

/// The foreman engine, driven by a JavaScript host.
#[wasm_bindgen(js_name = Engine)]
pub struct JsEngine {
    inner: Rc<Inner>,
}

fn js<T>(result: Result<T, Error>) -> Result<T, JsValue> {
    result.map_err(|e| to_js(&e))
}

#[wasm_bindgen(js_class = Engine)]
impl JsEngine {
    /// Creates an engine over `host` with `config` (optional). Throws a `ForemanError` with code
    /// `INVALID_HOST` or `INVALID_CONFIG` (naming the `member` or `key`) when either is unusable;
    /// the host's `now()` and `memory()` are read once to check them.
    #[wasm_bindgen(constructor)]
    pub fn new(host: HostObject, config: Option<ConfigObject>) -> Result<JsEngine, JsValue> {
        install_run_once();
        let (engine, config, _) = js(JsEngine::assemble(host.into(), config))?;
        let now = js(engine.inner.host.now_ms())?;
        let origin = fence::random_origin(now);
        *engine.inner.core.borrow_mut() = Engine::with_origin(&config, now ^ SEED, origin);
        *engine.inner.fence.borrow_mut() = fence::Fence::join(origin, 0);
        Ok(engine)
    }

    /// Rebuilds an engine from a journal export (`journalExport()` of the lost instance, or the
    /// frames a host appended, from its last checkpoint) verified against the `head` kept
    /// outside it. Settled tasks are as they were; work that was in flight is `unknown` until
    /// reconciled through the host (finished → settled from its last message, still running →
    /// watched again, gone → failed; not reconciled by its deadline → failed with class
    /// `timeout`); idempotent work is re-run. Throws `JOURNAL_INVALID` naming
    /// the first bad record.
    pub fn restore(
        journal: JournalBytes,
        head: HeadObject,
        host: HostObject,
        config: Option<ConfigObject>,
    ) -> Result<JsEngine, JsValue> {
        install_run_once();
        let journal: JsValue = journal.into();
        // Checked through the catching path: a proxy of a Uint8Array or a detached one is refused
        // here, not met as an exception inside WebAssembly.
        if !convert::is_bytes(&journal) {
            return Err(to_js(&Error::input(
                "journal",
                "must be a Uint8Array whose bytes can be read (not a proxy, not detached)",
            )));
        }
        let journal: Uint8Array = journal.unchecked_into();
        let head_value: JsValue = head.into();
        let head = js(parse_head(&head_value))?;
        let head_epoch = js(parse_epoch(&head_value))?;
        let (engine, config, memory) = js(JsEngine::assemble(host.into(), config))?;
        let now = js(engine.inner.host.now_ms())?;
        // Read frame by frame from the JS array: the export is never copied here whole.
        let store = js(crate::store::Store::replay_frames(
            js_frames(&journal),
            head,
        ))?;
        let (core, _) = js(Engine::restore_fenced(
            &config,
            now ^ SEED,
            store,
            now,
            Some(memory), // the constructor's check: restored LOW work is decided with it
            |origin| fence::highest(origin).max(head_epoch),
        ))?;
        *engine.inner.fence.borrow_mut() = fence::Fence::join(core.origin(), core.epoch());
        *engine.inner.core.borrow_mut() = core;
        after(&engine.inner);
        Ok(engine)
    }

    /// The crate version.
    #[wasm_bindgen(js_name = version)]
    pub fn version() -> String {
        env!("CARGO_PKG_VERSION").into()
    }

    /// Stops the engine: task waiters and waiting `run` work reject with `DISPOSED`; answers to
    /// pending host calls are refused; the timer is cleared and listeners dropped; later calls throw `DISPOSED`.
    /// Sub-agent sessions are left as they are on the server (a restore from the journal
    /// reconciles them). Idempotent.
    pub fn dispose(&self) {
        if self.inner.disposed.replace(true) {
            return;
        }
        let waiters = take_waiters(&self.inner);
        self.inner.listeners.borrow_mut().clear();
        let timer = self.inner.timer.borrow_mut().take();
        if let Some((handle, _)) = timer {
            clear_timer(&self.inner, &handle);
        }
        let hooks = self.inner.run_hooks.borrow_mut().take();
        let error = to_js(&Error::Disposed);
        for (_, reject) in waiters {
            let _ = reject.call1(&JsValue::NULL, &error);
        }
        if let Some(h) = hooks {
            let _ = h.disposed.call0(&JsValue::NULL);
        }
        self.inner.tick.borrow_mut().take();
    }
}

impl JsEngine {
    /// Checks `config` and `host` and builds the engine; the host's `now()` and `memory()` are
    /// read once to check them.
    fn assemble(
        host: JsValue,
        config: Option<ConfigObject>,
    ) -> Result<(JsEngine, Config, MemoryReading), Error> {
        let config = config.map_or(JsValue::UNDEFINED, Into::into);
        let input = api::config(&config)?;
        let config = Config::from_input(input)?;
        let timers = timers(&host)?;
        let functions = HostFunctions::new(host)?;
        let core = Engine::new(&config, SEED);
        // Run lane 0, what `run` uses without a lane: `other`.
        let other = core.run_lane(crate::config::OTHER_LANE);
        let inner = Rc::new_cyclic(|weak: &Weak<Inner>| {
            let (ok, err) = settle_functions(weak);
            Inner {
                core: RefCell::new(core),
                host: JsHost::new(functions, ok, err),
                timers,
                tick: RefCell::new(Some(tick_function(weak))),
                timer: RefCell::new(None),
                task_waiters: RefCell::new(FxHashMap::default()),
                resume_waiters: RefCell::new(FxHashMap::default()),
                listeners: RefCell::new(Vec::new()),
                next_listener: Cell::new(1),
                breaker_not_closed: Cell::new(false),
                run_hooks: RefCell::new(None),
                run_buffer: RefCell::new(vec![0; RUN_BUFFER + 1]),
                run_lanes: RefCell::new(vec![other]),
                run_keys: RefCell::new(Vec::new()),
                run_error: RefCell::new(None),
                disposed: Cell::new(false),
                fence: RefCell::new(fence::Fence::none()),
            }
        });
        let engine = JsEngine { inner };
        engine.inner.host.now_ms()?;
        let memory = engine.inner.host.memory()?;
        Ok((engine, config, memory))
    }

    fn live(&self) -> Result<(), JsValue> {
        if self.inner.disposed.get() {
            Err(to_js(&Error::Disposed))
        } else {
            Ok(())
        }
    }

    /// `live`, and not fenced out by a newer engine restored from this journal.
    #[inline(never)]
    fn acting(&self) -> Result<(), JsValue> {
        self.live()?;
        js(fenced(&self.inner))
    }
}

/// The optional `epoch` of a head (0 when absent).
fn parse_epoch(value: &JsValue) -> Result<u64, Error> {
    let epoch = get(value, "epoch");
    if epoch.is_undefined() {
        return Ok(0);
    }
    epoch
        .as_f64()
        .filter(|n| n.is_finite() && *n >= 0.0 && n.fract() == 0.0 && *n <= 9.0e15)
        .map(|n| n as u64)
        .ok_or_else(|| Error::input("head.epoch", "must be a whole number ≥ 0"))
}

/// The frames of a journal export held in a JS array, read one at a time (a record is copied
/// into this memory once, and that copy is the one the journal keeps).
fn js_frames(
    array: &Uint8Array,
) -> impl Iterator<Item = Result<(Vec<u8>, crate::store::Hash), Error>> + '_ {
    let len = array.length();
    let mut at = 0u32;
    let mut index = 0u64;
    std::iter::from_fn(move || {
        if at >= len {
            return None;
        }
        index += 1;
        let cut = || Error::JournalInvalid {
            record: index,
            reason: "the export is cut short".into(),
        };
        let frame = (|| {
            if len - at < 4 {
                return Err(cut());
            }
            let mut n = [0u8; 4];
            array.subarray(at, at + 4).copy_to(&mut n);
            let n = u32::from_be_bytes(n);
            let start = at + 4;
            if len - start < 32 || len - start - 32 < n {
                return Err(cut());
            }
            let mut record = vec![0u8; n as usize];
            array.subarray(start, start + n).copy_to(&mut record);
            let mut hash = [0u8; 32];
            array.subarray(start + n, start + n + 32).copy_to(&mut hash);
            at = start + n + 32;
            Ok((record, hash))
        })();
        if frame.is_err() {
            at = len;
        }
        Some(frame)
    })
}

fn parse_head(value: &JsValue) -> Result<Head, Error> {
    let seq = get(value, "seq")
        .as_f64()
        .filter(|n| n.is_finite() && *n >= 0.0 && n.fract() == 0.0 && *n <= 9.0e15)
        .ok_or_else(|| Error::input("head.seq", "must be a whole number ≥ 0"))?;
    let hash = get(value, "hash")
        .as_string()
        .ok_or_else(|| Error::input("head.hash", "must be 64 hex digits"))?;
    Ok(Head {
        seq: seq as u64,
        hash: unhex("head.hash", &hash)?,
    })
}

/// `FENCED` when a newer engine was restored from this engine's journal (see `fence`).
#[inline(never)]
fn fenced(inner: &Inner) -> Result<(), Error> {
    inner.fence.borrow().check()
}

/// Everyone waiting on a task or on a parent's resume, taken out (dispose and fencing reject
/// them all).
fn take_waiters(inner: &Inner) -> Vec<Waiter> {
    let resume_waiters = std::mem::take(&mut *inner.resume_waiters.borrow_mut());
    std::mem::take(&mut *inner.task_waiters.borrow_mut())
        .into_values()
        .chain(resume_waiters.into_values())
        .flatten()
        .collect()
}

/// A fenced engine acts on nothing: the host calls its core asked for are dropped, its task
/// events go unheard, and whoever waits on its tasks gets `FENCED`.
fn fence_out(inner: &Inner, error: &Error) {
    {
        let mut o = inner.core.borrow_mut();
        o.take_requests();
        o.take_events();
    }
    let waiters = take_waiters(inner);
    let error = to_js(error);
    for (_, reject) in waiters {
        let _ = reject.call1(&JsValue::NULL, &error);
    }
}
