//! The run path: `run(fn)` and `breaker(key)` are JavaScript (`run.js`, installed on the
//! class's prototype once); they call these methods with integers and handles — twice per task
//! (`runBegin`, `runEnd`) — and read the slots made ready from a buffer in wasm memory. None of
//! them is part of the typed API.

use std::cell::{Cell, RefMut};

use js_sys::{Function, Object};
use wasm_bindgen::prelude::*;

use super::convert::{class_of, set, to_js};
use super::events::after;
use super::timer::{arm_at_most, memory_if_due, memory_when};
use super::{Inner, JsEngine, js};
use crate::control::{KeyId, Outcome};
use crate::engine::lifecycle::{Engine, RunRequest};
use crate::error::Error;
use crate::ids::{Priority, RunId};

#[wasm_bindgen(module = "/src/bindings/run.js")]
extern "C" {
    #[wasm_bindgen(js_name = installRun)]
    fn install_run(keeper: &JsValue);
    #[wasm_bindgen(js_name = placeholderHost)]
    fn placeholder_host() -> JsValue;
}

thread_local! {
    static RUN_INSTALLED: Cell<bool> = const { Cell::new(false) };
}

/// Installs `Engine.prototype.run` (see `run.js`) once, before the first engine is handed out:
/// a placeholder engine, turned into its JS object, hands over the class's prototype, and is
/// kept for the module's life (see `installRun` for why).
pub(super) fn install_run_once() {
    if RUN_INSTALLED.with(|i| i.replace(true)) {
        return;
    }
    if let Ok((engine, ..)) = JsEngine::assemble(placeholder_host(), None) {
        install_run(&engine.into());
    }
}

/// Words of the ready buffer: a count, then the slots one call can report ready. The word after
/// them says whether any key's breaker is not closed (1), so run.js reads the clock for keyed
/// work only then (a closed breaker admits whatever the time).
pub(super) const RUN_BUFFER: usize = 256;

/// Set in what `runBegin` returns when the slot was admitted at once and nothing else became
/// ready: it is not in the ready buffer, and the caller starts it (run.js's common case, which
/// then reads no memory). Slots at or above it are always reported through the buffer.
pub(super) const RUN_ALONE: u32 = 1 << 30;

/// The functions run.js registered once (`runSetup`): told when slots became ready, when a
/// waiting slot's deadline passed, when the engine was disposed, and when a parent run's join
/// ended.
pub(super) struct RunHooks {
    pub(super) wake: Function,
    pub(super) expire: Function,
    pub(super) disposed: Function,
    /// Told the id of a parent run whose join ended (see `run_join`).
    pub(super) resumed: Function,
}

/// The index of `item` in `items`, added at the end if it is not there (run.js's lane and key
/// indices: a handful of entries).
pub(super) fn index_of<T: PartialEq>(items: &mut Vec<T>, item: T) -> u32 {
    match items.iter().position(|i| *i == item) {
        Some(index) => index as u32,
        None => {
            items.push(item);
            (items.len() - 1) as u32
        }
    }
}

/// Appends the ready run slots to the buffer after those run.js has not read yet (count
/// first), as many as fit; returns the count it holds now. Never overwrites an unread entry:
/// what does not fit stays on the engine's ready list, and a full buffer tells run.js to
/// ask for the rest (`runDrain`) once it has read it. So no ready slot is lost, at any count.
pub(super) fn write_ready(inner: &Inner, o: &mut Engine) -> u32 {
    if o.run_ready_len() == 0 {
        // Nothing to add (a run ending with nobody waiting): the count as it is.
        return inner.run_buffer.borrow().first().copied().unwrap_or(0);
    }
    append_ready(inner, o)
}

/// `write_ready`'s work when slots are ready: one copy, out of line, for its five callers
/// (the check before it is the run path's common case and stays inline).
#[inline(never)]
fn append_ready(inner: &Inner, o: &mut Engine) -> u32 {
    let mut buffer = inner.run_buffer.borrow_mut();
    let Some((count, slots)) = buffer
        .get_mut(..RUN_BUFFER)
        .and_then(|b| b.split_first_mut())
    else {
        return 0;
    };
    let unread = (*count as usize).min(slots.len());
    if let Some(free) = slots.get_mut(unread..) {
        *count = (unread + o.drain_run_ready(free)) as u32;
    }
    *count
}

/// How many ready slots the buffer holds that run.js has not read.
pub(super) fn unread(inner: &Inner) -> u32 {
    inner.run_buffer.borrow().first().copied().unwrap_or(0)
}

#[wasm_bindgen(js_class = Engine)]
impl JsEngine {
    /// Sets up the run path: the hooks Rust calls (slots ready, a deadline passed, disposed) and
    /// what JS needs (wasm memory, the ready buffer's address and length, the host clock).
    #[wasm_bindgen(js_name = runSetup, skip_typescript)]
    pub fn run_setup(
        &self,
        wake: Function,
        expire: Function,
        disposed: Function,
        resumed: Function,
    ) -> Result<JsValue, JsValue> {
        self.live()?;
        *self.inner.run_hooks.borrow_mut() = Some(RunHooks {
            wake,
            expire,
            disposed,
            resumed,
        });
        let obj = Object::new();
        set(&obj, "memory", &wasm_bindgen::memory());
        let ptr = self.inner.run_buffer.borrow().as_ptr() as usize as f64;
        set(&obj, "ptr", &ptr.into());
        set(&obj, "cap", &(RUN_BUFFER as f64).into());
        set(&obj, "now", &self.inner.host.now_function());
        Ok(obj.into())
    }

    /// The index of a lane name for `runBegin`.
    #[wasm_bindgen(js_name = runLane, skip_typescript)]
    pub fn run_lane(&self, name: String) -> u32 {
        let lane = self.inner.core.borrow().run_lane(&name);
        index_of(&mut self.inner.run_lanes.borrow_mut(), lane)
    }

    /// The index of a key name for `runBegin` (from 1; 0 is "no key"), or `u32::MAX` with the
    /// error kept for `runError` (an invalid name, or too many keys).
    #[wasm_bindgen(js_name = runKey, skip_typescript)]
    pub fn run_key(&self, name: String) -> u32 {
        let key = self.inner.core.borrow_mut().run_key(&name);
        let index = key
            .map_err(|e| to_js(&e))
            .map(|key| index_of(&mut self.inner.run_keys.borrow_mut(), key) + 1);
        self.keep_error(index, u32::MAX)
    }

    /// Queues a run task; returns its slot, or `u32::MAX` with the error kept for `runError`
    /// (a plain integer return keeps the glue to one call). The slots made ready are in the
    /// buffer — except a slot admitted at once with nothing else made ready, returned with bit
    /// 30 (`RUN_ALONE`) set instead. `fail_fast` is 0 or 1, not a JS boolean: JavaScriptCore
    /// takes a slow path (~50 ns) for any argument of an `i32` parameter that is not a whole
    /// number.
    #[wasm_bindgen(js_name = runBegin, skip_typescript)]
    pub fn run_begin(
        &self,
        lane: u32,
        key: u32,
        priority: u32,
        fail_fast: u32,
        deadline_ms: f64,
        now: f64,
    ) -> u32 {
        let begin = || -> Result<u32, JsValue> {
            self.live()?;
            let now = self.inner.host.observe_now(now);
            let (slot, timer) = {
                let (mut o, request) =
                    self.run_start(now, lane, key, priority, fail_fast, deadline_ms)?;
                let slot = js(o.run_submit(now, request))?;
                let (slot, waits) = if o.take_run_ready_alone(slot) {
                    (slot.get() | RUN_ALONE, false)
                } else {
                    (slot.get(), write_ready(&self.inner, &mut o) == 0)
                };
                (slot, o.run_timer(now, &request, waits))
            };
            if let Some(at) = timer {
                arm_at_most(&self.inner, now, at);
            }
            Ok(slot)
        };
        self.keep_error(begin(), u32::MAX)
    }

    /// What `runBegin` and `runChild` start with: the run's options from run.js's integers and
    /// the engine, borrowed. A run that may decide on LOW work (it is LOW, or LOW work is
    /// pending) first gets the memory reading the engine asks for (`Engine::memory_due`'s
    /// rule), taken with no borrow held, for the host may call back in: at the call's own time
    /// (run.js passes a fresh one only where it needs one, else the last reading stands). The
    /// run path reads no clock per run (a host call costs about what the rest of a run does in
    /// wasm), so a reading here is at most one per clock reading the engine has seen, and the
    /// timer, which reads the clock, asks for one while LOW work waits. Fails when the host's
    /// `memory()` disposed the engine.
    #[inline(always)]
    fn run_start(
        &self,
        now: u64,
        lane: u32,
        key: u32,
        priority: u32,
        fail_fast: u32,
        deadline_ms: f64,
    ) -> Result<(RefMut<'_, Engine>, RunRequest), JsValue> {
        let o = self.inner.core.borrow_mut();
        let request = self.run_request(&o, lane, key, priority, fail_fast, deadline_ms);
        if request.priority != Priority::Low && !o.low_pending() {
            return Ok((o, request));
        }
        drop(o);
        self.memory_for_run(now, &request)?;
        Ok((self.inner.core.borrow_mut(), request))
    }

    /// `run_start`'s rare part, out of line.
    #[inline(never)]
    fn memory_for_run(&self, now: u64, request: &RunRequest) -> Result<(), JsValue> {
        js(memory_when(&self.inner, now, |o| {
            o.run_memory_due(now, request)
        }))
    }

    /// Queues a run task that is a child of run `parent` (a run id; see
    /// `engine/lifecycle/run_children.rs`), with `runBegin`'s other arguments; returns its slot,
    /// always reported ready through the buffer, or `u32::MAX` with the error kept for
    /// `runError`.
    #[allow(clippy::too_many_arguments)]
    #[wasm_bindgen(js_name = runChild, skip_typescript)]
    pub fn run_child(
        &self,
        parent: u32,
        lane: u32,
        key: u32,
        priority: u32,
        fail_fast: u32,
        deadline_ms: f64,
        now: f64,
    ) -> u32 {
        let begin = || -> Result<u32, JsValue> {
            self.live()?;
            let now = self.inner.host.observe_now(now);
            let (slot, timer, busy) = {
                let (mut o, request) =
                    self.run_start(now, lane, key, priority, fail_fast, deadline_ms)?;
                let slot = js(o.run_submit_child(now, request, RunId::from_raw(parent)))?;
                let waits = write_ready(&self.inner, &mut o) == 0;
                (
                    slot.get(),
                    o.run_timer(now, &request, waits),
                    o.has_output(),
                )
            };
            if let Some(at) = timer {
                arm_at_most(&self.inner, now, at);
            }
            if busy {
                after(&self.inner);
            }
            Ok(slot)
        };
        self.keep_error(begin(), u32::MAX)
    }

    /// Run `parent` waits on `children` (runs started under it) and lends them its slot:
    /// 1 when it waits (run.js then waits for its `resumed` hook), 0 when none of them is still
    /// open or `parent` is not running.
    #[wasm_bindgen(js_name = runJoin, skip_typescript)]
    pub fn run_join(&self, parent: u32, children: Vec<u32>) -> u32 {
        if self.live().is_err() {
            return 0;
        }
        let now = self.inner.host.observe_now(f64::NAN);
        // Lending may admit LOW children: the reading the engine asks for (see
        // `Engine::memory_due`), at the last clock reading, as at `runEnd`.
        if memory_if_due(&self.inner, now).is_err() {
            return 0;
        }
        let children: Vec<RunId> = children.into_iter().map(RunId::from_raw).collect();
        let waits = self
            .inner
            .core
            .borrow_mut()
            .run_join(now, RunId::from_raw(parent), &children);
        after(&self.inner);
        u32::from(waits)
    }

    /// The error of the last `runBegin`, `runEnd` or `runFail` that failed.
    #[wasm_bindgen(js_name = runError, skip_typescript)]
    pub fn run_error(&self) -> JsValue {
        self.inner
            .run_error
            .borrow_mut()
            .take()
            .unwrap_or(JsValue::UNDEFINED)
    }

    /// Ends a running run task that succeeded, at the last clock reading (a success needs no
    /// fresh time: nothing it records is timed — unless LOW work is pending, when the clock
    /// and then memory are read first: see `Engine::memory_due`); the slots made ready are in the buffer, and
    /// their count is returned (`u32::MAX`, with the error kept for `runError`, on failure):
    /// when it is 0 run.js has nothing to read.
    #[wasm_bindgen(js_name = runEnd, skip_typescript)]
    pub fn run_end(&self, slot: u32) -> u32 {
        self.end_run(RunId::from_raw(slot), Outcome::Success, f64::NAN)
    }

    /// Ends a running run task that failed with `error` (classified like a host failure).
    #[wasm_bindgen(js_name = runFail, skip_typescript)]
    pub fn run_fail(&self, slot: u32, error: JsValue, now: f64) -> u32 {
        self.end_run(
            RunId::from_raw(slot),
            Outcome::Failed(class_of(&error)),
            now,
        )
    }

    /// Whether a call guarded by the breaker of key `key` (a `runKey` index) may go: 0 yes, 1 yes
    /// as the half-open probe, `u32::MAX` no (the `BREAKER_OPEN` error kept for `runError`).
    #[wasm_bindgen(js_name = breakerEnter, skip_typescript)]
    pub fn breaker_enter(&self, key: u32, now: f64) -> u32 {
        let enter = || -> Result<u32, JsValue> {
            self.live()?;
            let now = self.inner.host.observe_now(now);
            let key = self.run_key_id(key)?;
            let probe = js(self.inner.core.borrow_mut().breaker_enter(now, key))?;
            if probe {
                after(&self.inner); // open → half-open: listeners hear it
            }
            Ok(u32::from(probe))
        };
        self.keep_error(enter(), u32::MAX)
    }

    /// A call let through by `breakerEnter` succeeded (at the last clock reading); `probe` is 1
    /// for the half-open probe, else 0 (a number, see `runBegin`).
    #[wasm_bindgen(js_name = breakerOk, skip_typescript)]
    pub fn breaker_ok(&self, key: u32, probe: u32) {
        self.breaker_exit(key, probe != 0, Outcome::Success, f64::NAN);
    }

    /// A call let through by `breakerEnter` failed with `error` (classified like a host failure).
    #[wasm_bindgen(js_name = breakerFail, skip_typescript)]
    pub fn breaker_fail(&self, key: u32, probe: u32, error: JsValue, now: f64) {
        self.breaker_exit(key, probe != 0, Outcome::Failed(class_of(&error)), now);
    }

    /// Refills the buffer when more slots were ready than it holds.
    #[wasm_bindgen(js_name = runDrain, skip_typescript)]
    pub fn run_drain(&self) {
        let mut o = self.inner.core.borrow_mut();
        write_ready(&self.inner, &mut o);
    }
}

impl JsEngine {
    /// A run's options from run.js's integers (`runBegin`'s arguments).
    #[inline(always)]
    fn run_request(
        &self,
        o: &Engine,
        lane: u32,
        key: u32,
        priority: u32,
        fail_fast: u32,
        deadline_ms: f64,
    ) -> RunRequest {
        let priority = match priority {
            0 => Priority::High,
            2 => Priority::Low,
            _ => Priority::Normal,
        };
        let lane = match self.inner.run_lanes.borrow().get(lane as usize) {
            Some(&lane) => lane,
            None => o.run_lane(crate::config::OTHER_LANE),
        };
        RunRequest {
            lane,
            key: self.run_key_at(key),
            priority,
            fail_fast: fail_fast != 0,
            deadline_ms: (deadline_ms >= 1.0).then_some(deadline_ms as u64),
        }
    }

    /// The key at run.js's index `key` (from 1; 0, or an index never handed out, is none).
    pub(super) fn run_key_at(&self, key: u32) -> Option<KeyId> {
        key.checked_sub(1)
            .and_then(|k| self.inner.run_keys.borrow().get(k as usize).copied())
    }

    pub(super) fn run_key_id(&self, key: u32) -> Result<KeyId, JsValue> {
        self.run_key_at(key)
            .ok_or_else(|| to_js(&Error::input("key", "not a key of this engine")))
    }

    /// Ends a breaker-guarded call. Ignored after `dispose`: the caller's result stands.
    pub(super) fn breaker_exit(&self, key: u32, probe: bool, outcome: Outcome, now: f64) {
        if self.inner.disposed.get() {
            return;
        }
        let now = self.inner.host.observe_now(now);
        let Ok(key) = self.run_key_id(key) else {
            return;
        };
        self.inner
            .core
            .borrow_mut()
            .breaker_exit(now, key, probe, outcome);
        if probe || outcome != Outcome::Success {
            after(&self.inner); // the breaker may have moved: events, and the flag run.js reads
        }
    }

    pub(super) fn end_run(&self, slot: RunId, outcome: Outcome, now: f64) -> u32 {
        self.keep_error(self.try_end_run(slot, outcome, now), u32::MAX)
    }

    /// The run path's integer returns: the value, or `failed` with the error kept for
    /// `runError`.
    pub(super) fn keep_error(&self, result: Result<u32, JsValue>, failed: u32) -> u32 {
        result.unwrap_or_else(|e| {
            *self.inner.run_error.borrow_mut() = Some(e);
            failed
        })
    }

    /// Ends a run slot; returns how many ready slots the buffer holds unread (0: nothing for
    /// run.js to read).
    pub(super) fn try_end_run(
        &self,
        slot: RunId,
        outcome: Outcome,
        now: f64,
    ) -> Result<u32, JsValue> {
        self.live()?;
        let now = self.inner.host.observe_now(now);
        let (ready, busy) = {
            let mut o = self.inner.core.borrow_mut();
            if o.low_pending() {
                // The slot this frees may admit LOW work: the reading the engine asks for, at
                // the call's time (see `Engine::low_pending` for why no clock is read here).
                drop(o);
                js(memory_if_due(&self.inner, now))?;
                o = self.inner.core.borrow_mut();
            }
            js(o.run_end(now, slot, outcome))?;
            let ready = write_ready(&self.inner, &mut o);
            let busy = o.has_output()
                || outcome != Outcome::Success
                || self.inner.breaker_not_closed.get();
            (ready, busy)
        };
        if !busy {
            return Ok(ready);
        }
        // Something besides run slots moved (a sub-agent task was admitted, or a breaker may
        // have changed): the full pass, which may add to the buffer (never overwrite it) and
        // wake run.js, which may read it. What is still unread is what the caller reads.
        after(&self.inner);
        Ok(unread(&self.inner))
    }
}
