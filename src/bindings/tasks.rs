//! Sub-agent tasks through the JavaScript API: `delegate`, `wait`, `join`, `resumed`, `cancel`,
//! `status`, `list`, and the `stats` view.

use std::cell::RefCell;

use js_sys::{Array, Object, Promise};
use rustc_hash::FxHashMap;
use wasm_bindgen::prelude::*;

use super::api::{TaskInfo, ToJs, to_value};
use super::convert::{set, to_js};
use super::events::after;
use super::timer::{memory_if_due, observe_memory};
use super::{
    FilterObject, JsEngine, PromiseTaskInfo, PromiseVoid, SpecsObject, StatsObject, TaskIdArray,
    TaskIds, TaskInfoArray, TaskInfoObject, Waiter, api, convert, fenced, js,
};
use crate::error::Error;
use crate::host::Host;

pub(super) struct StatsDto {
    version: &'static str,
    now: f64,
    memory: MemoryDto,
    pending_calls: u32,
    lanes: Vec<api::LaneInfo>,
    keys: Vec<api::KeyInfo>,
    gate: api::GateInfo,
    pool: api::PoolInfo,
    tasks: api::TaskCounts,
    runs: api::RunInfo,
    journal: api::JournalInfo,
    engine: api::EngineInfo,
}

pub(super) struct MemoryDto {
    used: f64,
    limit: f64,
    per_mille: f64,
}

impl ToJs for StatsDto {
    fn to_js(&self) -> JsValue {
        let obj = Object::new();
        let put = |k: &str, v: JsValue| set(&obj, k, &v);
        put("version", self.version.into());
        put("now", self.now.into());
        let memory = Object::new();
        set(&memory, "used", &self.memory.used.into());
        set(&memory, "limit", &self.memory.limit.into());
        set(&memory, "perMille", &self.memory.per_mille.into());
        put("memory", memory.into());
        put("pendingCalls", self.pending_calls.into());
        put("lanes", self.lanes.to_js());
        put("keys", self.keys.to_js());
        put("gate", self.gate.to_js());
        put("pool", self.pool.to_js());
        put("tasks", self.tasks.to_js());
        put("runs", self.runs.to_js());
        put("journal", self.journal.to_js());
        put("engine", self.engine.to_js());
        obj.into()
    }
}

/// After the engine moved: start its host requests, tell run.js about ready and expired
/// run slots, settle task waiters, call listeners, and re-arm the timer. Nothing is borrowed
/// while JavaScript runs (invariant 2); a re-entrant call does its own pass.
/// Bytes of the module's linear memory (its high-water mark: wasm memory never shrinks).
pub(super) fn wasm_memory_bytes() -> f64 {
    wasm_bindgen::memory()
        .unchecked_into::<js_sys::WebAssembly::Memory>()
        .buffer()
        .unchecked_into::<js_sys::ArrayBuffer>()
        .byte_length() as f64
}

#[wasm_bindgen(js_class = Engine)]
impl JsEngine {
    /// Submits sub-agent tasks; returns the id (or ids, for an array, in order). All or nothing:
    /// every spec is checked before any is submitted — a bad one throws `INVALID_INPUT` naming
    /// its field (`specs[2].prompt`; a `dependsOn` naming a task retention forgot says so), a
    /// refusal of the controller (`MEMORY_PRESSURE` for LOW work, `BREAKER_OPEN` with
    /// `failFast`) throws its error — and then nothing is submitted (the error's `submitted` is
    /// empty). Once submitted, every host call the batch needs is started: a host function that
    /// throws or returns a hostile value fails its own call. A refusal of the memory budget
    /// (`ENGINE_FULL`) found while submitting cancels what the batch submitted. A fenced engine
    /// throws `FENCED`.
    pub fn delegate(&self, specs: SpecsObject) -> Result<TaskIds, JsValue> {
        self.acting()?;
        let value =
            js(convert::plain(&specs.into()).map_err(|reason| Error::input("specs", reason)))?;
        let many = Array::is_array(&value);
        let parsed = if many {
            let array = Array::from(&value);
            if array.length() > 10_000 {
                return Err(to_js(&Error::input("specs", "at most 10000 per call")));
            }
            js(array
                .iter()
                .enumerate()
                .map(|(i, v)| api::spec(v, Some(i)))
                .collect::<Result<Vec<_>, _>>())?
        } else {
            vec![js(api::spec(value, None))?]
        };
        let now = js(self.inner.host.now_ms())?;
        if self.inner.core.borrow().memory_due_for(now, &parsed) {
            observe_memory(&self.inner, now);
            self.acting()?; // the host's memory() may have disposed the engine
        }
        let mut ids = Vec::with_capacity(parsed.len());
        let mut failed = None;
        {
            let mut o = self.inner.core.borrow_mut();
            // All or nothing: every spec is checked against the engine as it is before any is
            // submitted (a batch moves no breaker or gate between its specs).
            if let Some(e) = parsed
                .iter()
                .enumerate()
                .find_map(|(i, s)| o.admissible(now, s, i as u32).err())
            {
                failed = Some(e);
            } else {
                for spec in parsed {
                    match o.submit(now, spec) {
                        Ok(id) => ids.push(id.get()),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if failed.is_some() {
                    // Refused after all (a limit of the store): what was submitted of the batch
                    // is cancelled at once (a session already asked for is released on arrival).
                    for &id in &ids {
                        let _ = o.cancel(now, crate::ids::TaskId(id));
                    }
                }
            }
        }
        if let Some(e) = failed {
            let error = to_js(&e);
            set(error.unchecked_ref(), "submitted", &Array::new());
            after(&self.inner);
            return Err(error);
        }
        after(&self.inner);
        Ok(if many {
            ids.iter()
                .map(|&id| JsValue::from(id))
                .collect::<Array>()
                .unchecked_into()
        } else {
            JsValue::from(ids[0]).unchecked_into()
        })
    }

    /// Resolves with the task's info once it settles (succeeded, failed, cancelled, timed_out);
    /// at once for a settled task. Rejects with `UNKNOWN_TASK`, or `DISPOSED`.
    pub fn wait(&self, id: JsValue) -> PromiseTaskInfo {
        let promise = match self.try_wait(&id) {
            Ok(p) => p,
            Err(e) => Promise::reject(&e),
        };
        promise.unchecked_into()
    }

    /// Says that the session these tasks were delegated from (their `parentID`) now waits for
    /// them to settle — a delegate tool call in wait mode. That session's task (a running
    /// sub-agent task of this engine) lends its slot to them meanwhile, so nested delegation
    /// never deadlocks a lane. Returns the ids of the parent tasks now waiting (empty when no
    /// id is open or none has a parent task here: then just `wait` for them). Each parent's
    /// session must not go on — its tool call must not return — before `resumed(parent)`
    /// resolves: until then its slot may be running other work. `INVALID_INPUT`,
    /// `UNKNOWN_TASK`, `DISPOSED`.
    pub fn join(&self, ids: TaskIds) -> Result<TaskIdArray, JsValue> {
        self.acting()?;
        let ids: JsValue = ids.into();
        let ids = if Array::is_array(&ids) {
            let array: Array = ids.unchecked_into();
            js((0..array.length())
                .map(|i| api::task_id(&format!("ids[{i}]"), &array.get(i)))
                .collect::<Result<Vec<_>, _>>())?
        } else {
            vec![js(api::task_id("ids", &ids))?]
        };
        let now = js(self.inner.host.now_ms())?;
        js(memory_if_due(&self.inner, now))?;
        let lenders = js(self.inner.core.borrow_mut().join(now, &ids))?;
        after(&self.inner);
        Ok(lenders
            .iter()
            .map(|id| JsValue::from(id.get()))
            .collect::<Array>()
            .unchecked_into())
    }

    /// Resolves once task `id` holds its slot again after a `join` (all the tasks it joined
    /// settled and no other work runs on its slot), or settled: at once when it is not
    /// waiting. Rejects with `UNKNOWN_TASK`, or `DISPOSED`.
    pub fn resumed(&self, id: JsValue) -> PromiseVoid {
        let promise = match self.try_resumed(&id) {
            Ok(p) => p,
            Err(e) => Promise::reject(&e),
        };
        promise.unchecked_into()
    }

    /// Cancels a task: a queued one at once; a running one by aborting its session, settling when
    /// the abort is confirmed. Returns whether the task was still open. `UNKNOWN_TASK` for an
    /// id never issued.
    pub fn cancel(&self, id: JsValue) -> Result<bool, JsValue> {
        self.acting()?;
        let id = js(api::task_id("id", &id))?;
        let now = js(self.inner.host.now_ms())?;
        js(memory_if_due(&self.inner, now))?;
        let open = js(self.inner.core.borrow_mut().cancel(now, id))?;
        after(&self.inner);
        Ok(open)
    }

    /// The task's info. Throws `UNKNOWN_TASK`.
    pub fn status(&self, id: JsValue) -> Result<TaskInfoObject, JsValue> {
        let record = self.record(&id)?;
        js(to_value(&TaskInfo::from(&record))).map(JsCast::unchecked_into)
    }

    /// Every task (matching `filter`: `state` name and/or `agent`), in id order.
    pub fn list(&self, filter: Option<FilterObject>) -> Result<TaskInfoArray, JsValue> {
        self.live()?;
        let filter = js(api::filter(&filter.map_or(JsValue::UNDEFINED, Into::into)))?;
        // The `state` filter as a phase: `Some(None)` without one; a name no state has matches
        // no task.
        let phase = match filter.state.as_deref() {
            None => Some(None),
            Some(name) => api::phase_named(name).map(Some),
        };
        let mut infos: Vec<TaskInfo> = Vec::new();
        if let Some(phase) = phase {
            let agent = filter.agent.as_deref();
            let o = self.inner.core.borrow();
            o.task_list(filter.open, phase, agent, |r| infos.push(TaskInfo::from(r)));
        }
        js(to_value(&infos)).map(JsCast::unchecked_into)
    }

    /// A consistent view of the engine, with fresh host readings.
    pub fn stats(&self) -> Result<StatsObject, JsValue> {
        self.live()?;
        let now = js(self.inner.host.now_ms())?;
        let memory = js(self.inner.host.memory())?;
        self.inner.core.borrow_mut().observe_memory(now, memory);
        let stats = self.inner.core.borrow().stats(now);
        let (footprint, budget) = stats.footprint;
        let (waiting, running) = stats.runs;
        let (lanes, keys, gate) = api::control_info(stats.control);
        let dto = StatsDto {
            version: env!("CARGO_PKG_VERSION"),
            now: now as f64,
            memory: MemoryDto {
                used: memory.used() as f64,
                limit: memory.limit() as f64,
                per_mille: memory.per_mille() as f64,
            },
            pending_calls: stats.pending_calls as u32,
            lanes,
            keys,
            gate,
            pool: api::pool_info(stats.pool, stats.pool_counters),
            tasks: api::task_counts(stats.tasks),
            runs: api::RunInfo { waiting, running },
            journal: api::JournalInfo {
                seq: stats.journal.seq as f64,
                records: stats.journal.records,
                bytes: stats.journal.bytes,
                epoch: stats.journal.epoch,
            },
            engine: api::EngineInfo {
                footprint,
                budget,
                wasm_memory: wasm_memory_bytes(),
                fenced: fenced(&self.inner).is_err(),
            },
        };
        js(to_value(&dto)).map(JsCast::unchecked_into)
    }
}

impl JsEngine {
    /// The record of the task `id` names: `DISPOSED`, `INVALID_INPUT` or `UNKNOWN_TASK` else.
    pub(super) fn record(&self, id: &JsValue) -> Result<crate::engine::task::TaskRecord, JsValue> {
        self.live()?;
        let id = js(api::task_id("id", id))?;
        js(self.inner.core.borrow().task(id))
    }

    fn try_resumed(&self, id: &JsValue) -> Result<Promise, JsValue> {
        let record = self.record(id)?;
        if !self.inner.core.borrow().is_lending(record.id) {
            return Ok(Promise::resolve(&JsValue::UNDEFINED));
        }
        js(fenced(&self.inner))?;
        Ok(park(&self.inner.resume_waiters, record.id.get()))
    }

    pub(super) fn try_wait(&self, id: &JsValue) -> Result<Promise, JsValue> {
        let record = self.record(id)?;
        let id = record.id;
        if record.state.is_settled() {
            return Ok(Promise::resolve(&js(to_value(&TaskInfo::from(&record)))?));
        }
        // A fenced engine will not settle it: the newer engine will.
        js(fenced(&self.inner))?;
        Ok(park(&self.inner.task_waiters, id.get()))
    }
}

/// A pending promise whose resolve and reject functions wait in `waiters` under `id`, for
/// `after` to settle (or dispose and fencing to reject).
fn park(waiters: &RefCell<FxHashMap<u32, Vec<Waiter>>>, id: u32) -> Promise {
    let mut waiter = None;
    let promise = Promise::new(&mut |resolve, reject| waiter = Some((resolve, reject)));
    if let Some(waiter) = waiter {
        waiters.borrow_mut().entry(id).or_default().push(waiter);
    }
    promise
}
