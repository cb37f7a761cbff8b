//! The shapes JavaScript sees for tasks, stats and events, and the parsing of task specs.

use js_sys::{Array, Object};
use wasm_bindgen::prelude::*;

use super::convert::set;
use super::input::{Filter, read, read_plain};
use crate::config::ConfigInput;
use crate::control::ControlStats;
use crate::engine::task::{TaskPhase, TaskRecord, TaskSpec, TaskSpecInput, TaskState, whole};
use crate::engine::tasks::Counts;
use crate::error::Error;
use crate::ids::TaskId;
use crate::sessions::PoolCounters;

/// A task id from a JS value.
pub(crate) fn task_id(field: &str, value: &JsValue) -> Result<TaskId, Error> {
    match value.as_f64() {
        Some(n) => whole(field, n, u64::from(u32::MAX)).map(|n| TaskId(n as u32)),
        None => Err(Error::input(field, "must be a task id (a whole number)")),
    }
}

/// Reads one spec (a catching copy already), the `index`th of an array or the only one; errors
/// name the field under it (`specs[2].prompt`; the spec itself is `specs[2]`, or `spec`). The
/// path is written only for an error.
pub(crate) fn spec(value: JsValue, index: Option<usize>) -> Result<TaskSpec, Error> {
    let named = |field: String| match (index, field.is_empty()) {
        (None, true) => "spec".to_owned(),
        (None, false) => field,
        (Some(i), true) => format!("specs[{i}]"),
        (Some(i), false) => format!("specs[{i}].{field}"),
    };
    let input: TaskSpecInput = read_plain(value).map_err(|e| {
        let (path, reason) = e.into_parts();
        Error::InvalidInput {
            field: named(path),
            reason,
        }
    })?;
    TaskSpec::try_from(input).map_err(|e| match e {
        Error::InvalidInput { field, reason } => Error::InvalidInput {
            field: named(field),
            reason,
        },
        other => other,
    })
}

/// Reads a `list` filter; errors name `filter` or the key under it.
pub(crate) fn filter(value: &JsValue) -> Result<Filter, Error> {
    read(value).map_err(|e| {
        let (path, reason) = e.into_parts();
        Error::InvalidInput {
            field: if path.is_empty() {
                "filter".into()
            } else {
                format!("filter.{path}")
            },
            reason,
        }
    })
}

/// Reads a config object; errors name the key (`breaker.openMs`), or `config` itself.
pub(crate) fn config(value: &JsValue) -> Result<ConfigInput, Error> {
    read(value).map_err(|e| {
        let (path, reason) = e.into_parts();
        Error::InvalidConfig {
            key: if path.is_empty() {
                "config".into()
            } else {
                path
            },
            reason,
        }
    })
}

/// A task as JavaScript sees it.
pub(crate) struct TaskInfo {
    id: u32,
    agent: String,
    state: &'static str,
    priority: &'static str,
    attempts: u32,
    created_ms: f64,
    updated_ms: f64,
    model: Option<String>,
    parent_id: Option<String>,
    session_id: Option<String>,
    depends_on: Vec<u32>,
    result: Option<String>,
    error: Option<ErrorInfo>,
    reason: Option<String>,
}

struct ErrorInfo {
    class: &'static str,
    message: String,
}

impl From<&TaskRecord> for TaskInfo {
    fn from(r: &TaskRecord) -> Self {
        let session_id = match &r.state {
            TaskState::Unknown { session, .. } => session.as_ref().map(|s| s.as_str().to_owned()),
            other => other.session().map(|s| s.as_str().to_owned()),
        };
        let (result, error, reason) = match &r.state {
            TaskState::Succeeded { text, .. } => (Some(text.clone()), None, None),
            TaskState::Failed { class, message } => (
                None,
                Some(ErrorInfo {
                    class: class.name(),
                    message: message.clone(),
                }),
                None,
            ),
            TaskState::Cancelled { reason } => (None, None, Some(reason.clone())),
            _ => (None, None, None),
        };
        TaskInfo {
            id: r.id.get(),
            agent: r.spec.agent.clone(),
            state: r.state.name(),
            priority: r.spec.priority.name(),
            attempts: r.attempts,
            created_ms: r.created_ms as f64,
            updated_ms: r.updated_ms as f64,
            model: r.spec.model.clone(),
            parent_id: r.spec.parent.as_ref().map(|p| p.as_str().to_owned()),
            session_id,
            depends_on: r.spec.depends_on.iter().map(|d| d.get()).collect(),
            result,
            error,
            reason,
        }
    }
}

/// A value JavaScript gets as a plain object (built field by field: no serializer).
pub(crate) trait ToJs {
    fn to_js(&self) -> JsValue;
}

/// Builds a plain object.
struct Obj(Object);

impl Obj {
    fn new() -> Self {
        Obj(Object::new())
    }
    fn set(self, key: &str, value: impl Into<JsValue>) -> Self {
        set(&self.0, key, &value.into());
        self
    }
    /// Omitted when `None`.
    fn opt(self, key: &str, value: Option<impl Into<JsValue>>) -> Self {
        match value {
            Some(v) => self.set(key, v),
            None => self,
        }
    }
    /// `null` when `None`.
    fn nullable(self, key: &str, value: Option<impl Into<JsValue>>) -> Self {
        match value {
            Some(v) => self.set(key, v),
            None => self.set(key, JsValue::NULL),
        }
    }
    fn done(self) -> JsValue {
        self.0.into()
    }
}

impl<T: ToJs> ToJs for Vec<T> {
    fn to_js(&self) -> JsValue {
        self.iter().map(ToJs::to_js).collect::<Array>().into()
    }
}

/// The JS value of `value` (never fails; the `Result` keeps call sites uniform).
pub(crate) fn to_value<T: ToJs>(value: &T) -> Result<JsValue, Error> {
    Ok(value.to_js())
}

impl ToJs for TaskInfo {
    fn to_js(&self) -> JsValue {
        Obj::new()
            .set("id", self.id)
            .set("agent", self.agent.as_str())
            .set("state", self.state)
            .set("priority", self.priority)
            .set("attempts", self.attempts)
            .set("createdMs", self.created_ms)
            .set("updatedMs", self.updated_ms)
            .opt("model", self.model.as_deref())
            .opt("parentID", self.parent_id.as_deref())
            .opt("sessionID", self.session_id.as_deref())
            .set(
                "dependsOn",
                self.depends_on
                    .iter()
                    .map(|d| JsValue::from(*d))
                    .collect::<Array>(),
            )
            .opt("result", self.result.as_deref())
            .opt(
                "error",
                self.error.as_ref().map(|e| {
                    Obj::new()
                        .set("class", e.class)
                        .set("message", e.message.as_str())
                        .done()
                }),
            )
            .opt("reason", self.reason.as_deref())
            .done()
    }
}

impl ToJs for LaneInfo {
    fn to_js(&self) -> JsValue {
        Obj::new()
            .set("name", self.name.as_str())
            .set("limit", self.limit)
            .set("effective", self.effective)
            .set("inUse", self.in_use)
            .set(
                "queued",
                Obj::new()
                    .set("high", self.queued.high)
                    .set("normal", self.queued.normal)
                    .set("low", self.queued.low)
                    .done(),
            )
            .done()
    }
}

impl ToJs for KeyInfo {
    fn to_js(&self) -> JsValue {
        Obj::new()
            .set("name", self.name.as_str())
            .nullable("limit", self.limit)
            .nullable("effective", self.effective)
            .set("inUse", self.in_use)
            .set("queued", self.queued)
            .set("breaker", self.breaker)
            .nullable("nextProbeAt", self.next_probe_at)
            .done()
    }
}

impl ToJs for PoolInfo {
    fn to_js(&self) -> JsValue {
        Obj::new()
            .set("warm", self.warm as f64)
            .set("inUse", self.in_use as f64)
            .set("parked", self.parked as f64)
            .set("retiring", self.retiring as f64)
            .set("deleting", self.deleting as f64)
            .set("hits", self.hits)
            .set("misses", self.misses)
            .set("creates", self.creates)
            .set("affinityHits", self.affinity_hits)
            .set("retirements", self.retirements)
            .set("deletes", self.deletes)
            .done()
    }
}

impl ToJs for TaskCounts {
    fn to_js(&self) -> JsValue {
        Obj::new()
            .set("queued", self.queued as f64)
            .set("running", self.running as f64)
            .set("succeeded", self.succeeded as f64)
            .set("failed", self.failed as f64)
            .set("cancelled", self.cancelled as f64)
            .set("timedOut", self.timed_out as f64)
            .set("unknown", self.unknown as f64)
            .set("forgotten", self.forgotten as f64)
            .done()
    }
}

impl ToJs for GateInfo {
    fn to_js(&self) -> JsValue {
        Obj::new()
            .set("closed", self.closed)
            .set("stale", self.stale)
            .nullable("perMille", self.per_mille)
            .done()
    }
}

impl ToJs for RunInfo {
    fn to_js(&self) -> JsValue {
        Obj::new()
            .set("waiting", self.waiting as f64)
            .set("running", self.running as f64)
            .done()
    }
}

impl ToJs for JournalInfo {
    fn to_js(&self) -> JsValue {
        Obj::new()
            .set("seq", self.seq)
            .set("records", self.records as f64)
            .set("bytes", self.bytes as f64)
            .set("epoch", self.epoch as f64)
            .done()
    }
}

pub(crate) struct LaneInfo {
    pub name: String,
    pub limit: u32,
    pub effective: u32,
    pub in_use: u32,
    pub queued: Queued,
}

pub(crate) struct Queued {
    pub high: u32,
    pub normal: u32,
    pub low: u32,
}

pub(crate) struct KeyInfo {
    pub name: String,
    pub limit: Option<u32>,
    pub effective: Option<u32>,
    pub in_use: u32,
    pub queued: u32,
    pub breaker: &'static str,
    pub next_probe_at: Option<f64>,
}

pub(crate) struct PoolInfo {
    pub warm: usize,
    pub in_use: usize,
    pub parked: usize,
    pub retiring: usize,
    pub deleting: usize,
    pub hits: f64,
    pub misses: f64,
    pub creates: f64,
    pub affinity_hits: f64,
    pub retirements: f64,
    pub deletes: f64,
}

#[derive(Default)]
pub(crate) struct TaskCounts {
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub timed_out: u64,
    pub unknown: u64,
    pub forgotten: u64,
}

pub(crate) struct GateInfo {
    pub closed: bool,
    pub stale: bool,
    pub per_mille: Option<f64>,
}

pub(crate) struct RunInfo {
    pub waiting: usize,
    pub running: usize,
}

pub(crate) struct JournalInfo {
    pub seq: f64,
    pub records: usize,
    pub bytes: u64,
    pub epoch: u64,
}

/// The engine's own memory: its footprint, budget and the module's memory.
pub(crate) struct EngineInfo {
    pub footprint: u64,
    pub budget: u64,
    pub wasm_memory: f64,
    pub fenced: bool,
}

impl ToJs for EngineInfo {
    fn to_js(&self) -> JsValue {
        Obj::new()
            .set("footprint", self.footprint as f64)
            .set("budget", self.budget as f64)
            .set("wasmMemory", self.wasm_memory)
            .set("fenced", self.fenced)
            .done()
    }
}

/// The lanes, keys and gate of the controller as JavaScript sees them.
pub(crate) fn control_info(stats: ControlStats) -> (Vec<LaneInfo>, Vec<KeyInfo>, GateInfo) {
    let lanes = stats
        .lanes
        .into_iter()
        .map(|l| LaneInfo {
            name: l.name,
            limit: l.limit,
            effective: l.effective,
            in_use: l.in_use,
            queued: Queued {
                high: l.queued[0],
                normal: l.queued[1],
                low: l.queued[2],
            },
        })
        .collect();
    let keys = stats
        .keys
        .into_iter()
        .map(|k| KeyInfo {
            name: k.name,
            limit: k.limit,
            effective: k.effective,
            in_use: k.in_use,
            queued: k.queued,
            breaker: k.breaker.name(),
            next_probe_at: k.next_probe_at.map(|t| t as f64),
        })
        .collect();
    let gate = GateInfo {
        closed: stats.gate.closed,
        stale: stats.gate.stale,
        per_mille: stats.gate.per_mille.map(|p| p as f64),
    };
    (lanes, keys, gate)
}

/// Counts of tasks per state group, from the counters the table keeps as tasks move (no scan).
/// Indexed by `TaskPhase`'s discriminant: 0 queued, 1–4 admitted … running, 5 succeeded,
/// 6 failed, 7 cancelled, 8 timed out, 9 unknown.
pub(crate) fn task_counts(c: Counts) -> TaskCounts {
    let n = c.by_state;
    TaskCounts {
        queued: n[0],
        running: n[1] + n[2] + n[3] + n[4],
        succeeded: n[5],
        failed: n[6],
        cancelled: n[7],
        timed_out: n[8],
        unknown: n[9],
        forgotten: c.forgotten,
    }
}

/// Pool figures: sessions per state (warm, in use, parked, retiring, deleting) and counters.
pub(crate) fn pool_info(
    (warm, in_use, parked, retiring, deleting): (usize, usize, usize, usize, usize),
    c: PoolCounters,
) -> PoolInfo {
    PoolInfo {
        warm,
        in_use,
        parked,
        retiring,
        deleting,
        hits: c.hits as f64,
        misses: c.misses as f64,
        creates: c.creates as f64,
        affinity_hits: c.affinity_hits as f64,
        retirements: c.retirements as f64,
        deletes: c.deletes as f64,
    }
}

/// The task phase JavaScript calls `name` (a `list` filter's `state`), if any.
pub(crate) fn phase_named(name: &str) -> Option<TaskPhase> {
    TaskPhase::ALL.into_iter().find(|p| p.name() == name)
}

/// Hex of a hash.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A 32-byte hash from 64 hex digits.
pub(crate) fn unhex(field: &str, text: &str) -> Result<[u8; 32], Error> {
    let bad = || Error::input(field, "must be 64 hex digits");
    if text.len() != 64 || !text.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        // `get`, not `[..]`: ASCII, so every pair is there; no str-slicing panic path (its
        // message machinery is kilobytes of the .wasm).
        let pair = text.get(2 * i..2 * i + 2).ok_or_else(bad)?;
        *o = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
    }
    Ok(out)
}
