//! The JavaScript face of foreman: the `Engine` class. The only module that names
//! `wasm_bindgen` or `js_sys`.
//!
//! One engine drives two kinds of work through one controller: **sub-agent tasks**
//! (`delegate`, `wait`, `cancel`, `status`, `list`), which the orchestrator runs through the
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
//! Invariants:
//! 1. Every exported method takes `&self`, so JavaScript calling back in from a host function
//!    or a listener never meets a "recursive use" error.
//! 2. No `RefCell` borrow is held across a call into JavaScript: readings are taken before the
//!    core is borrowed; host requests are started, waiters settled and listeners called after
//!    it is released.
//! 3. Nothing here panics on any input: every JS value is checked into a typed value, and every
//!    failure is a JS `Error` with a stable `code`.
//! 4. A host call id names one pending call of one core (the session book of `createSession`, or
//!    the orchestrator); ids are the engine's, unique while pending.

mod api;
mod convert;
mod fence;
mod host;

use rustc_hash::FxHashMap;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use js_sys::{Array, Function, Object, Promise, Uint8Array};
use wasm_bindgen::prelude::*;

use self::api::{TaskInfo, ToJs, hex, to_value, unhex};
use self::convert::{class_of, failure, get, host_event, reply, set, to_js};
use self::host::{HostFunctions, JsHost};
use crate::config::Config;
use crate::control::{KeyId, LaneId, Outcome, Verdict};
use crate::engine::orchestrator::{Orchestrator, RunRequest};
use crate::engine::runs::RunId;
use crate::engine::{CreateSession, Engine as Core, Settled};
use crate::error::Error;
use crate::host::{CallId, Host, HostOpKind, HostOutcome, HostRequest, SessionId};
use crate::ids::Priority;
use crate::store::Head;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** What the engine needs from its environment. Operation functions receive the call id as their
 * last argument: return a promise (the engine settles the call from it), or return `undefined`
 * and later call `engine.resolve(callId, value)` / `engine.reject(callId, error)`. A rejection
 * is classified by its `class` ("upstream" | "rate_limited" | "timeout" | "cancelled" |
 * "invalid"), else `name` AbortError → cancelled, else `status`/`statusCode` (429 → rate_limited,
 * other 4xx → invalid), else upstream. */
export interface ForemanHost {
  /** Milliseconds since the epoch (`Date.now()`): the clock OpenCode stamps messages with. Without
   * `monotonic` it also drives timers and deadlines: a step back holds the engine's time (it
   * never goes back) and it goes on from the new reading; a step forward cannot be told from
   * elapsed time. */
  now(): number;
  /** A monotonic clock in ms (`() => performance.now()`), optional but recommended: when given,
   * timers and deadlines run on it and steps of the wall clock either way move nothing; `now()`
   * is then only compared with message stamps (within `liveness.skewMs`). */
  monotonic?(): number;
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
  /** The liveness probe: OpenCode's `session.status()` map, NON-IDLE sessions only (absent means
   * idle or gone). Called at most once per `liveness.intervalMs` for every running task and busy
   * pool session not heard from; without it the engine asks `lastAssistantMessage` /
   * `checkSession` per suspect. An `idle` entry (the SDK's type allows one) reads as absent. */
  sessionStatuses?(input: {}, callId: number): Promise<Record<string, { type: "busy" | "retry" | "idle"; attempt?: number; message?: string; next?: number }>> | undefined;
  /** Timers for the engine's one deadline timer; default: the global `setTimeout`/`clearTimeout`.
   * A host on a simulated clock supplies its own. */
  setTimer?(fn: () => void, ms: number): unknown;
  clearTimer?(handle: unknown): void;
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
  /** Liveness when the host misbehaves. `intervalMs` (15 000): running tasks and busy pool
   * sessions not heard from for this long are re-checked (one `sessionStatuses` call for all):
   * a lost `idle` costs at most this. `callTimeoutMs` (30 000): a host call not answered by then
   * fails with class "timeout". `cancelMs` (10 000): a cancelled running task settles
   * `cancelled` by then, abort answered or not. `skewMs` (2 000, may be 0): how much older than
   * the prompt a reply's stamp may be where times are compared (only a follow-up restored from
   * a journal written before replies were recorded; host and server clocks differ). */
  liveness?: { intervalMs?: number; callTimeoutMs?: number; cancelMs?: number; skewMs?: number };
  /** When settled tasks leave the engine (with their idempotency keys and dependency edges), as
   * soon as any limit is passed, oldest settlement first: more than `maxTasks` (10 000) settled
   * tasks held, settled more than `maxAgeMs` (3 600 000) ago, or more than `maxBytes` (32 MiB)
   * of them (prompts, results). A task an open task depends on stays until that one settles.
   * A forgotten id answers TASK_FORGOTTEN; `dependsOn` naming one is INVALID_INPUT saying so.
   * A result longer than `resultBytes` (65 536; 1 KiB..=1 MiB) is kept cut at that length, with
   * a note naming its full length and the session to read the rest from. The age is applied
   * whenever the engine acts (no timer while idle). */
  retention?: { maxTasks?: number; maxAgeMs?: number; maxBytes?: number; resultBytes?: number };
  /** The engine's own memory budget, bytes (default 1 GiB; 1 MiB..=3 GiB): new work that would
   * take the tasks held (counted twice: a checkpoint copies them), the journal kept and room for
   * every open task's result past it is refused with ENGINE_FULL; existing tasks, `wait`,
   * `cancel`, `journalExport` and `Engine.restore` keep working. */
  memoryBudget?: number;
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
  /** Host calls started and not answered. */
  pendingCalls: number;
  /** Sessions made through `createSession`. */
  sessions: { created: number; failed: number; meanCreateMs: number | null };
  lanes: Array<{ name: string; limit: number; effective: number; inUse: number;
    queued: { high: number; normal: number; low: number }; pendingCalls: number }>;
  keys: Array<{ name: string; limit: number | null; effective: number | null; inUse: number; queued: number;
    breaker: BreakerStateName; nextProbeAt: number | null }>;
  gate: { closed: boolean; stale: boolean; perMille: number | null };
  pool: { warm: number; inUse: number; parked: number; retiring: number; deleting: number;
    hits: number; misses: number; creates: number; affinityHits: number; retirements: number; deletes: number };
  /** Tasks held per state (counters kept as tasks move), and how many settled tasks retention
   * forgot over the journal's history. */
  tasks: { queued: number; running: number; succeeded: number; failed: number; cancelled: number;
    timedOut: number; unknown: number; forgotten: number };
  runs: { waiting: number; running: number };
  /** Records and bytes of the journal kept in memory; the fencing epoch. */
  journal: { seq: number; records: number; bytes: number; epoch: number };
  /** The engine's footprint (tasks held and journal, bytes) against its `memoryBudget`; the
   * module's linear memory (its high-water mark); whether a newer engine fenced this one out. */
  engine: { footprint: number; budget: number; wasmMemory: number; fenced: boolean };
}

export type Priority = "high" | "normal" | "low";
export type FailureClass = "upstream" | "rate_limited" | "timeout" | "cancelled" | "invalid";
export type BreakerStateName = "closed" | "open" | "half_open";
export type TaskStateName = "queued" | "admitted" | "session_acquired" | "dispatched" | "running"
  | "succeeded" | "failed" | "cancelled" | "timed_out" | "unknown";

/** A sub-agent task to run in a new child session (or, with `followUpOf`, in the session of an
 * earlier task when it is free). */
export interface TaskSpec {
  /** Agent type; decides the lane. */
  agent: string;
  prompt: string;
  priority?: Priority;
  /** From dispatch to settlement; default 30 min, at most one day. */
  deadlineMs?: number;
  /** `provider/model`: the key of its limit and circuit breaker. */
  model?: string;
  /** The session the child shows under. */
  parentID?: string;
  /** A repeated `delegate` with this key returns the first task; marks it safe to re-run after a
   * restore. */
  idempotencyKey?: string;
  /** Tasks that must succeed first; a failed or cancelled one cancels this task. */
  dependsOn?: number[];
  /** Extra attempts after an upstream failure or timeout (0..=10; default 0). A turn that ends
   * rate limited (429) is sent again after the provider's Retry-After, in a fresh session,
   * up to 3 times or this many, whichever is more. */
  retries?: number;
  /** Refuse at once (BREAKER_OPEN) instead of waiting while the model's breaker is open; queued
   * when the breaker opens, it fails then with BREAKER_OPEN. */
  failFast?: boolean;
  followUpOf?: number;
}

/** A task as it stands. */
export interface TaskInfo {
  id: number;
  agent: string;
  state: TaskStateName;
  priority: Priority;
  /** Attempts started. */
  attempts: number;
  createdMs: number;
  updatedMs: number;
  model?: string;
  parentID?: string;
  sessionID?: string;
  dependsOn: number[];
  /** With `succeeded`: the sub-agent's last message text. */
  result?: string;
  /** With `failed`. */
  error?: { class: FailureClass; message: string };
  /** With `cancelled`. */
  reason?: string;
}

/** `open: true` lists only tasks not settled (read from the open set); otherwise every task
 * held, settled ones included until retention forgets them. */
export interface TaskFilter { state?: TaskStateName; agent?: string; open?: boolean }

/** Options of `run`. */
export interface RunOptions {
  /** Lane (an agent type's name, or any name: unknown names share `other`); default `other`. */
  lane?: string;
  /** Provider/model key: its limit and circuit breaker apply. */
  key?: string;
  priority?: Priority;
  /** From the call; on expiry the promise rejects with TIMED_OUT (work still running keeps its
   * slot until it ends, and counts as a timeout). */
  deadlineMs?: number;
  /** Reject at once with BREAKER_OPEN while the key's breaker is open, instead of waiting. */
  failFast?: boolean;
}

export interface TaskEvent { type: "task"; id: number; state: TaskStateName }
export interface BreakerEvent { type: "breaker"; key: string; state: BreakerStateName }

/** `(seq, hash)` of the journal's last record; keep it outside the engine to detect truncation.
 * `epoch` is the engine's fencing epoch: keep it too, and pass the head to `Engine.restore`,
 * which takes an epoch above it (and above the journal's, and above any engine restored from
 * the same journal in this module); an engine with a lower epoch is fenced out (FENCED). */
export interface JournalHead { seq: number; hash: string; epoch?: number }

export interface Engine {
  /** Runs `fn` when the lane (and key) has a free slot, in priority order; resolves or rejects
   * with its result. `fn` starts synchronously when a slot is free at once. A rejection is
   * classified like a host failure (`class`, `AbortError`, `status`) for the breaker and the
   * adaptive limit. Refusals (INVALID_INPUT, MEMORY_PRESSURE for LOW work, BREAKER_OPEN with
   * `failFast`, QUEUE_FULL, DISPOSED) reject the returned promise. */
  run<T>(fn: () => T | PromiseLike<T>, options?: RunOptions): Promise<T>;
  /** The circuit breaker of provider/model `key` on its own (the one the key's tasks share):
   * no lane, no slot, no queue. Throws INVALID_INPUT for a bad key. The same object is returned
   * for the same key. */
  breaker(key: string): ForemanBreaker;
}

/** A provider/model key's circuit breaker, for calls that need no concurrency limit. */
export interface ForemanBreaker {
  readonly key: string;
  /** Runs `fn` at once if the breaker lets it through (closed, or as the half-open probe);
   * otherwise rejects with BREAKER_OPEN (`retryAt`, ms, when known) without calling it. The result
   * counts like a `run` task's: upstream failures and timeouts open the breaker, a rate limit
   * backs off the key's adaptive limit, cancellations and invalid requests do not count.
   * After `dispose`, rejects with DISPOSED. */
  execute<T>(fn: () => T | PromiseLike<T>): Promise<T>;
}

/** Every error foreman throws or rejects with. `code` is stable. */
export interface ForemanError extends Error {
  name: "ForemanError";
  code: "INVALID_CONFIG" | "INVALID_HOST" | "INVALID_INPUT" | "HOST_FAILED" | "HOST_BAD_REPLY"
      | "HOST_BAD_READING" | "MEMORY_PRESSURE" | "BREAKER_OPEN" | "QUEUE_FULL" | "CONFLICT" | "JOURNAL_INVALID"
      | "UNKNOWN_TASK" | "TASK_FORGOTTEN" | "ENGINE_FULL" | "FENCED" | "ILLEGAL_TRANSITION"
      | "UNKNOWN_CALL" | "DISPOSED" | "TIMED_OUT";
  /** With HOST_FAILED: how the failure counts. */
  class?: "upstream" | "rate_limited" | "timeout" | "cancelled" | "invalid";
}
"#;

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
fn install_run_once() {
    if RUN_INSTALLED.with(|i| i.replace(true)) {
        return;
    }
    if let Ok(engine) = Engine::assemble(placeholder_host(), None) {
        install_run(&engine.into());
    }
}

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
    /// `TaskFilter | undefined`.
    #[wasm_bindgen(typescript_type = "TaskFilter | undefined")]
    pub type FilterObject;
    /// `JournalHead`.
    #[wasm_bindgen(typescript_type = "JournalHead")]
    pub type HeadObject;
    /// `"task"` or `"breaker"`.
    #[wasm_bindgen(typescript_type = "\"task\" | \"breaker\"")]
    pub type EventName;
    /// A listener.
    #[wasm_bindgen(typescript_type = "(event: TaskEvent | BreakerEvent) => void")]
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

/// The keys `CreateSessionInput` accepts.
const CREATE_SESSION_SCHEMA: &[(&str, &[&str])] = &[("", &["agent", "parentID", "title"])];

/// Seed of the orchestrator's jitter (mixed with the clock at construction).
const SEED: u64 = 0x5EED_F0E3_A11C_E5ED;

/// Words of the ready buffer: a count, then the slots one call can report ready. The word after
/// them says whether any key's breaker is not closed (1), so run.js reads the clock for keyed
/// work only then (a closed breaker admits whatever the time).
const RUN_BUFFER: usize = 256;

/// Set in what `runBegin` returns when the slot was admitted at once and nothing else became
/// ready: it is not in the ready buffer, and the caller starts it (run.js's common case, which
/// then reads no memory). Slots at or above it are always reported through the buffer.
const RUN_ALONE: u32 = 1 << 30;

#[derive(Debug, Clone, Copy)]
enum Route {
    /// A `createSession` of the session book.
    Book(CallId),
    /// A call of the orchestrator, and its kind (to parse the reply).
    Tasks(CallId, HostOpKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventKind {
    Task,
    Breaker,
}

struct RunHooks {
    wake: Function,
    expire: Function,
    disposed: Function,
}

struct Timers {
    set: Function,
    clear: Function,
    this: JsValue,
}

struct Inner {
    book: RefCell<Core>,
    orch: RefCell<Orchestrator>,
    host: JsHost,
    timers: Timers,
    /// The timer's callback (made once) and the armed timer, if any: (handle, host time).
    tick: RefCell<Option<Function>>,
    timer: RefCell<Option<(JsValue, u64)>>,
    routes: RefCell<FxHashMap<u32, Route>>,
    next_call: Cell<u32>,
    /// The JS promises waiting on `createSession` calls, by public call id.
    waiters: RefCell<FxHashMap<u32, Waiter>>,
    /// When each of the session book's calls times out: (host ms, public call id).
    book_due: RefCell<Vec<(u64, u32)>>,
    /// The JS promises waiting on tasks, by task id.
    task_waiters: RefCell<FxHashMap<u32, Vec<Waiter>>>,
    listeners: RefCell<Vec<(u32, EventKind, Function)>>,
    next_listener: Cell<u32>,
    breakers: RefCell<Vec<(String, &'static str)>>,
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
#[wasm_bindgen]
pub struct Engine {
    inner: Rc<Inner>,
}

struct StatsDto {
    version: &'static str,
    now: f64,
    memory: MemoryDto,
    pending_calls: u32,
    sessions: SessionsDto,
    lanes: Vec<api::LaneInfo>,
    keys: Vec<api::KeyInfo>,
    gate: api::GateInfo,
    pool: api::PoolInfo,
    tasks: api::TaskCounts,
    runs: api::RunInfo,
    journal: api::JournalInfo,
    engine: api::EngineInfo,
}

struct MemoryDto {
    used: f64,
    limit: f64,
    per_mille: f64,
}

struct SessionsDto {
    created: f64,
    failed: f64,
    mean_create_ms: Option<f64>,
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
        let sessions = Object::new();
        set(&sessions, "created", &self.sessions.created.into());
        set(&sessions, "failed", &self.sessions.failed.into());
        set(
            &sessions,
            "meanCreateMs",
            &self
                .sessions
                .mean_create_ms
                .map_or(JsValue::NULL, Into::into),
        );
        put("sessions", sessions.into());
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

fn js<T>(result: Result<T, Error>) -> Result<T, JsValue> {
    result.map_err(|e| to_js(&e))
}

#[wasm_bindgen]
impl Engine {
    /// Creates an engine over `host` with `config` (optional). Throws a `ForemanError` with code
    /// `INVALID_HOST` or `INVALID_CONFIG` (naming the `member` or `key`) when either is unusable;
    /// the host's `now()` and `memory()` are read once to check them.
    #[wasm_bindgen(constructor)]
    pub fn new(host: HostObject, config: Option<ConfigObject>) -> Result<Engine, JsValue> {
        install_run_once();
        let engine = js(Engine::assemble(host.into(), config))?;
        let now = js(engine.inner.host.now_ms())?;
        let config = engine.inner.book.borrow().config().clone();
        let origin = fence::random_origin(now);
        *engine.inner.orch.borrow_mut() = Orchestrator::with_origin(&config, now ^ SEED, origin);
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
    ) -> Result<Engine, JsValue> {
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
        let engine = js(Engine::assemble(host.into(), config))?;
        let now = js(engine.inner.host.now_ms())?;
        let config = engine.inner.book.borrow().config().clone();
        // Read frame by frame from the JS array: the export is never copied here whole.
        let store = js(crate::store::Store::replay_frames(
            js_frames(&journal),
            head,
        ))?;
        let (orch, _) = js(Orchestrator::restore_fenced(
            &config,
            now ^ SEED,
            store,
            now,
            |origin| fence::highest(origin).max(head_epoch),
        ))?;
        *engine.inner.fence.borrow_mut() =
            fence::Fence::join(orch.tasks().origin(), orch.tasks().epoch());
        *engine.inner.orch.borrow_mut() = orch;
        after(&engine.inner);
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
        js(self.inner.orch.borrow_mut().on_event(now, parsed))?;
        after(&self.inner);
        Ok(())
    }

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
                .map(|(i, v)| api::spec(v, &format!("specs[{i}]")))
                .collect::<Result<Vec<_>, _>>())?
        } else {
            vec![js(api::spec(value, ""))?]
        };
        let now = js(self.inner.host.now_ms())?;
        observe_memory(&self.inner, now);
        let mut ids = Vec::with_capacity(parsed.len());
        let mut failed = None;
        {
            let mut o = self.inner.orch.borrow_mut();
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

    /// Cancels a task: a queued one at once; a running one by aborting its session, settling when
    /// the abort is confirmed. Returns whether the task was still open. `UNKNOWN_TASK` for an
    /// id never issued.
    pub fn cancel(&self, id: JsValue) -> Result<bool, JsValue> {
        self.acting()?;
        let id = js(api::task_id("id", &id))?;
        let now = js(self.inner.host.now_ms())?;
        let open = js(self.inner.orch.borrow_mut().cancel(now, id))?;
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
        let filter = js(api::filter(filter.map_or(JsValue::UNDEFINED, Into::into)))?;
        let o = self.inner.orch.borrow();
        // Open tasks come from the open set; the settled ones held only when asked for.
        let records = if filter.open
            || filter.state.as_deref().is_some_and(|s| {
                matches!(
                    s,
                    "queued"
                        | "admitted"
                        | "session_acquired"
                        | "dispatched"
                        | "running"
                        | "unknown"
                )
            }) {
            o.tasks().open()
        } else {
            o.tasks().all_brief()
        };
        let infos: Vec<TaskInfo> = records
            .iter()
            .filter(|r| filter.state.as_deref().is_none_or(|s| r.state.name() == s))
            .filter(|r| filter.agent.as_deref().is_none_or(|a| r.spec.agent == a))
            .map(TaskInfo::from)
            .collect();
        js(to_value(&infos)).map(JsCast::unchecked_into)
    }

    /// A consistent view of the engine, with fresh host readings.
    pub fn stats(&self) -> Result<StatsObject, JsValue> {
        self.live()?;
        let now = js(self.inner.host.now_ms())?;
        let memory = js(self.inner.host.memory())?;
        self.inner
            .orch
            .borrow_mut()
            .controller_mut()
            .observe_memory(now, memory);
        let book = js(self.inner.book.borrow().stats(now, memory))?;
        let o = self.inner.orch.borrow();
        let pending_calls = self.inner.routes.borrow().len() as u32;
        let (lanes, keys, gate) = api::control_info(o.controller().stats(now), |name| {
            book.lanes
                .iter()
                .find(|l| l.name == name)
                .map_or(0, |l| l.pending_calls)
        });
        let (waiting, running) = o.runs().counts();
        let s = book.sessions;
        let dto = StatsDto {
            version: env!("CARGO_PKG_VERSION"),
            now: now as f64,
            memory: MemoryDto {
                used: memory.used() as f64,
                limit: memory.limit() as f64,
                per_mille: memory.per_mille() as f64,
            },
            pending_calls,
            sessions: SessionsDto {
                created: s.created as f64,
                failed: s.failed as f64,
                mean_create_ms: (s.created > 0)
                    .then(|| s.create_ms_total as f64 / s.created as f64),
            },
            lanes,
            keys,
            gate,
            pool: api::pool_info(&o),
            tasks: api::task_counts(&o),
            runs: api::RunInfo { waiting, running },
            journal: api::JournalInfo {
                seq: o.tasks().store().journal().head().seq as f64,
                records: o.tasks().store().journal().len(),
                bytes: o.tasks().store().journal().bytes(),
                epoch: o.tasks().epoch(),
            },
            engine: api::EngineInfo {
                footprint: o.tasks().footprint(),
                budget: o.tasks().budget(),
                wasm_memory: wasm_memory_bytes(),
                fenced: fenced(&self.inner).is_err(),
            },
        };
        js(to_value(&dto)).map(JsCast::unchecked_into)
    }

    /// Calls `listener` on every task transition (`"task"`: `{ type, id, state }`) or breaker
    /// transition (`"breaker"`: `{ type, key, state }`). A listener that throws is ignored.
    /// Returns a function that unsubscribes.
    pub fn on(&self, event: EventName, listener: Listener) -> Result<Unsubscribe, JsValue> {
        self.live()?;
        let event: JsValue = event.into();
        let kind = match event.as_string().as_deref() {
            Some("task") => EventKind::Task,
            Some("breaker") => EventKind::Breaker,
            _ => {
                return Err(to_js(&Error::input(
                    "event",
                    "must be \"task\" or \"breaker\"",
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

    /// The journal's frames with `seq ≥ fromSeq` (default: all kept; the engine keeps its
    /// records from the last checkpoint on, and an export from an older seq starts there).
    #[wasm_bindgen(js_name = journalExport)]
    #[allow(non_snake_case)]
    pub fn journal_export(&self, fromSeq: Option<FromSeq>) -> Result<Uint8Array, JsValue> {
        self.live()?;
        let from_seq: JsValue = fromSeq.map_or(JsValue::UNDEFINED, Into::into);
        let from = match from_seq.as_f64() {
            None if from_seq.is_undefined() => 0,
            Some(n) if n.is_finite() && n >= 0.0 && n.fract() == 0.0 => n as u64,
            _ => {
                return Err(to_js(&Error::input(
                    "fromSeq",
                    "must be a whole number ≥ 0",
                )));
            }
        };
        // Copied into the JS array piece by piece: no second copy of the journal in wasm memory.
        let o = self.inner.orch.borrow();
        let journal = o.tasks().store().journal();
        let out = Uint8Array::new_with_length(journal.export_len(from) as u32);
        let mut at = 0u32;
        journal.export_pieces(from, |piece| {
            let end = at + piece.len() as u32;
            out.subarray(at, end).copy_from(piece);
            at = end;
        });
        Ok(out)
    }

    /// `(seq, hash)` of the last journal record.
    #[wasm_bindgen(js_name = journalHead)]
    pub fn journal_head(&self) -> Result<HeadObject, JsValue> {
        self.live()?;
        let o = self.inner.orch.borrow();
        let head = o.tasks().store().journal().head();
        let obj = Object::new();
        set(&obj, "seq", &(head.seq as f64).into());
        set(&obj, "hash", &hex(&head.hash).into());
        set(&obj, "epoch", &(o.tasks().epoch() as f64).into());
        Ok(obj.unchecked_into())
    }

    /// Tells the engine that an engine restored from its journal holds fencing epoch `epoch`
    /// (the host learned it, e.g. from the head a newer process keeps). An epoch above this
    /// engine's fences it out: it no longer acts (see the README's fencing rule). Returns whether
    /// this engine is fenced. `INVALID_INPUT` unless `epoch` is a whole number ≥ 0.
    pub fn fence(&self, epoch: JsValue) -> Result<bool, JsValue> {
        self.live()?;
        let epoch = epoch
            .as_f64()
            .filter(|n| n.is_finite() && *n >= 0.0 && n.fract() == 0.0 && *n <= 9.0e15)
            .ok_or_else(|| to_js(&Error::input("epoch", "must be a whole number ≥ 0")))?;
        self.inner.fence.borrow().claim(epoch as u64);
        let fenced = fenced(&self.inner);
        if let Err(e) = &fenced {
            fence_out(&self.inner, e);
        }
        Ok(fenced.is_err())
    }

    /// Re-verifies the journal kept in memory (every hash, from its anchor to the head). Returns
    /// true or throws `JOURNAL_INVALID`.
    pub fn verify(&self) -> Result<bool, JsValue> {
        self.live()?;
        // In place: no copy of the journal.
        js(self
            .inner
            .orch
            .borrow()
            .tasks()
            .store()
            .journal()
            .verify_kept())?;
        Ok(true)
    }

    /// Stops the engine: pending `createSession` calls, task waiters and waiting `run` work reject
    /// with `DISPOSED`; the timer is cleared and listeners dropped; later calls throw `DISPOSED`.
    /// Sub-agent sessions are left as they are on the server (a restore from the journal
    /// reconciles them). Idempotent.
    pub fn dispose(&self) {
        if self.inner.disposed.replace(true) {
            return;
        }
        let abandoned = self.inner.book.borrow_mut().dispose();
        let waiters: Vec<Waiter> = {
            let mut waiters = self.inner.waiters.borrow_mut();
            let mut routes = self.inner.routes.borrow_mut();
            let mut out = Vec::new();
            for public in routes.keys().copied().collect::<Vec<_>>() {
                if let Some(Route::Book(c)) = routes.get(&public) {
                    if abandoned.contains(c) {
                        out.extend(waiters.remove(&public));
                    }
                }
            }
            routes.clear();
            out
        };
        let task_waiters: Vec<Waiter> = std::mem::take(&mut *self.inner.task_waiters.borrow_mut())
            .into_values()
            .flatten()
            .collect();
        self.inner.listeners.borrow_mut().clear();
        let timer = self.inner.timer.borrow_mut().take();
        if let Some((handle, _)) = timer {
            clear_timer(&self.inner, &handle);
        }
        let hooks = self.inner.run_hooks.borrow_mut().take();
        let error = to_js(&Error::Disposed);
        for (_, reject) in waiters.into_iter().chain(task_waiters) {
            let _ = reject.call1(&JsValue::NULL, &error);
        }
        if let Some(h) = hooks {
            let _ = h.disposed.call0(&JsValue::NULL);
        }
        self.inner.tick.borrow_mut().take();
    }

    // ---- the run path (called by run.js; not part of the typed API) ----

    /// Sets up the run path: the hooks Rust calls (slots ready, a deadline passed, disposed) and
    /// what JS needs (wasm memory, the ready buffer's address and length, the host clock).
    #[wasm_bindgen(js_name = runSetup, skip_typescript)]
    pub fn run_setup(
        &self,
        wake: Function,
        expire: Function,
        disposed: Function,
    ) -> Result<JsValue, JsValue> {
        self.live()?;
        *self.inner.run_hooks.borrow_mut() = Some(RunHooks {
            wake,
            expire,
            disposed,
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
        let lane = self.inner.orch.borrow().run_lane(&name);
        index_of(&mut self.inner.run_lanes.borrow_mut(), lane)
    }

    /// The index of a key name for `runBegin` (from 1; 0 is "no key"), or `u32::MAX` with the
    /// error kept for `runError` (an invalid name, or too many keys).
    #[wasm_bindgen(js_name = runKey, skip_typescript)]
    pub fn run_key(&self, name: String) -> u32 {
        let key = self.inner.orch.borrow_mut().run_key(&name);
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
            let priority = match priority {
                0 => Priority::High,
                2 => Priority::Low,
                _ => Priority::Normal,
            };
            let deadline = (deadline_ms >= 1.0).then_some(deadline_ms as u64);
            let (slot, waits) = {
                let mut o = self.inner.orch.borrow_mut();
                let lane = match self.inner.run_lanes.borrow().get(lane as usize) {
                    Some(&lane) => lane,
                    None => o.run_lane(crate::config::OTHER_LANE),
                };
                let key = self.run_key_at(key);
                let slot = js(o.run_submit(
                    now,
                    RunRequest {
                        lane,
                        key,
                        priority,
                        fail_fast: fail_fast != 0,
                        deadline_ms: deadline,
                    },
                ))?;
                if o.take_run_ready_alone(slot) {
                    (slot.get() | RUN_ALONE, false)
                } else {
                    (slot.get(), write_ready(&self.inner, &mut o) == 0)
                }
            };
            // Waiting work may wait on time, not only on a release — keyed work on a breaker's
            // probe time, LOW work on the memory gate's reading going stale: make sure the timer
            // covers the nearest such moment. Other waiting work waits for a release.
            let timed_wait = waits && (key != 0 || priority == Priority::Low);
            if deadline.is_some() || timed_wait {
                arm_at_most(&self.inner, now, timed_wait);
            }
            Ok(slot)
        };
        self.keep_error(begin(), u32::MAX)
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
    /// fresh time: nothing it records is timed); the slots made ready are in the buffer, and
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
            let verdict = self
                .inner
                .orch
                .borrow_mut()
                .controller_mut()
                .breaker_enter(now, key);
            match verdict {
                Verdict::Allow => Ok(0),
                Verdict::Probe => {
                    after(&self.inner); // open → half-open: listeners hear it
                    Ok(1)
                }
                Verdict::Refuse { retry_at } => {
                    let name = self
                        .inner
                        .orch
                        .borrow()
                        .controller()
                        .key_name(key)
                        .to_owned();
                    Err(to_js(&Error::BreakerOpen {
                        key: name,
                        retry_at_ms: retry_at,
                    }))
                }
            }
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
        let mut o = self.inner.orch.borrow_mut();
        write_ready(&self.inner, &mut o);
    }
}

impl Engine {
    /// Checks `config` and `host` and builds the engine; the host's `now()` and `memory()` are
    /// read once to check them.
    fn assemble(host: JsValue, config: Option<ConfigObject>) -> Result<Engine, Error> {
        let config = config.map_or(JsValue::UNDEFINED, Into::into);
        let input = api::config(config)?;
        let config = Config::from_input(input)?;
        let timers = timers(&host)?;
        let functions = HostFunctions::new(host)?;
        let orch = Orchestrator::new(&config, SEED);
        // Run lane 0, what `run` uses without a lane: `other`.
        let other = orch.run_lane(crate::config::OTHER_LANE);
        let inner = Rc::new_cyclic(|weak: &Weak<Inner>| {
            let (ok, err) = settle_functions(weak);
            Inner {
                book: RefCell::new(Core::new(config)),
                orch: RefCell::new(orch),
                host: JsHost::new(functions, ok, err),
                timers,
                tick: RefCell::new(Some(tick_function(weak))),
                timer: RefCell::new(None),
                routes: RefCell::new(FxHashMap::default()),
                next_call: Cell::new(1),
                waiters: RefCell::new(FxHashMap::default()),
                book_due: RefCell::new(Vec::new()),
                task_waiters: RefCell::new(FxHashMap::default()),
                listeners: RefCell::new(Vec::new()),
                next_listener: Cell::new(1),
                breakers: RefCell::new(Vec::new()),
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
        let engine = Engine { inner };
        engine.inner.host.now_ms()?;
        engine.inner.host.memory()?;
        Ok(engine)
    }

    /// The key at run.js's index `key` (from 1; 0, or an index never handed out, is none).
    fn run_key_at(&self, key: u32) -> Option<KeyId> {
        key.checked_sub(1)
            .and_then(|k| self.inner.run_keys.borrow().get(k as usize).copied())
    }

    fn run_key_id(&self, key: u32) -> Result<KeyId, JsValue> {
        self.run_key_at(key)
            .ok_or_else(|| to_js(&Error::input("key", "not a key of this engine")))
    }

    /// Ends a breaker-guarded call. Ignored after `dispose`: the caller's result stands.
    fn breaker_exit(&self, key: u32, probe: bool, outcome: Outcome, now: f64) {
        if self.inner.disposed.get() {
            return;
        }
        let now = self.inner.host.observe_now(now);
        let Ok(key) = self.run_key_id(key) else {
            return;
        };
        self.inner
            .orch
            .borrow_mut()
            .controller_mut()
            .breaker_exit(now, key, probe, outcome);
        if probe || outcome != Outcome::Success {
            after(&self.inner); // the breaker may have moved: events, and the flag run.js reads
        }
    }

    fn end_run(&self, slot: RunId, outcome: Outcome, now: f64) -> u32 {
        self.keep_error(self.try_end_run(slot, outcome, now), u32::MAX)
    }

    /// The run path's integer returns: the value, or `failed` with the error kept for
    /// `runError`.
    fn keep_error(&self, result: Result<u32, JsValue>, failed: u32) -> u32 {
        result.unwrap_or_else(|e| {
            *self.inner.run_error.borrow_mut() = Some(e);
            failed
        })
    }

    /// Ends a run slot; returns how many ready slots the buffer holds unread (0: nothing for
    /// run.js to read).
    fn try_end_run(&self, slot: RunId, outcome: Outcome, now: f64) -> Result<u32, JsValue> {
        self.live()?;
        let now = self.inner.host.observe_now(now);
        let (ready, busy) = {
            let mut o = self.inner.orch.borrow_mut();
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

    fn live(&self) -> Result<(), JsValue> {
        if self.inner.disposed.get() {
            Err(to_js(&Error::Disposed))
        } else {
            Ok(())
        }
    }

    /// `live`, and not fenced out by a newer engine restored from this journal.
    fn acting(&self) -> Result<(), JsValue> {
        self.live()?;
        js(fenced(&self.inner))
    }

    fn try_create_session(&self, input: JsValue) -> Result<Promise, JsValue> {
        self.acting()?;
        let wrap = |field: String, reason: String| Error::InvalidInput { field, reason };
        let f = js(convert::fields(
            input,
            "input",
            CREATE_SESSION_SCHEMA,
            &wrap,
        ))?;
        let request = CreateSession {
            agent: js(f.required_string("agent"))?,
            parent: js(f.string("parentID"))?.map(SessionId),
            title: js(f.string("title"))?,
        };
        let now = js(self.inner.host.now_ms())?;
        let (call, requests) = {
            let mut core = self.inner.book.borrow_mut();
            let call = js(core.create_session(now, request))?;
            (call, core.take_requests())
        };
        let mut waiter = None;
        let promise = Promise::new(&mut |resolve, reject| waiter = Some((resolve, reject)));
        let mut public_of_call = None;
        let starts: Vec<HostRequest> = requests
            .into_iter()
            .map(|r| {
                let public = route(&self.inner, Route::Book(r.call));
                if r.call == call {
                    public_of_call = Some(public);
                }
                HostRequest {
                    call: CallId(public),
                    op: r.op,
                }
            })
            .collect();
        if let (Some(waiter), Some(public)) = (waiter, public_of_call) {
            self.inner.waiters.borrow_mut().insert(public, waiter);
        }
        let timeout = self.inner.book.borrow().config().liveness.call_timeout_ms;
        self.inner.book_due.borrow_mut().extend(
            starts
                .iter()
                .map(|r| (now.saturating_add(timeout), r.call.get())),
        );
        for request in starts {
            self.inner.host.start(request);
        }
        rearm(&self.inner, self.inner.host.last_now());
        Ok(promise)
    }

    /// The record of the task `id` names: `DISPOSED`, `INVALID_INPUT` or `UNKNOWN_TASK` else.
    fn record(&self, id: &JsValue) -> Result<crate::engine::task::TaskRecord, JsValue> {
        self.live()?;
        let id = js(api::task_id("id", id))?;
        let o = self.inner.orch.borrow();
        o.tasks()
            .get_brief(id)
            .ok_or_else(|| to_js(&o.tasks().missing(id)))
    }

    fn try_wait(&self, id: &JsValue) -> Result<Promise, JsValue> {
        let record = self.record(id)?;
        let id = record.id;
        if record.state.is_settled() {
            return Ok(Promise::resolve(&js(to_value(&TaskInfo::from(&record)))?));
        }
        // A fenced engine will not settle it: the newer engine will.
        js(fenced(&self.inner))?;
        let mut waiter = None;
        let promise = Promise::new(&mut |resolve, reject| waiter = Some((resolve, reject)));
        if let Some(waiter) = waiter {
            self.inner
                .task_waiters
                .borrow_mut()
                .entry(id.get())
                .or_default()
                .push(waiter);
        }
        Ok(promise)
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

fn call_id_of(value: &JsValue) -> Result<CallId, Error> {
    let n = value
        .as_f64()
        .filter(|n| n.fract() == 0.0 && *n >= 1.0 && *n <= f64::from(u32::MAX));
    n.map(|n| CallId(n as u32))
        .ok_or_else(|| Error::input("callId", "must be a call id the engine passed to the host"))
}

/// Gives a core's call a public id (invariant 4).
fn route(inner: &Inner, to: Route) -> u32 {
    let mut routes = inner.routes.borrow_mut();
    loop {
        let id = inner.next_call.get();
        inner.next_call.set(id.wrapping_add(1).max(1));
        if let std::collections::hash_map::Entry::Vacant(slot) = routes.entry(id) {
            slot.insert(to);
            return id;
        }
    }
}

/// The host's timer functions, or the global ones.
fn timers(host: &JsValue) -> Result<Timers, Error> {
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

fn clear_timer(inner: &Inner, handle: &JsValue) {
    let _ = inner.timers.clear.call1(&inner.timers.this, handle);
}

/// Arms the timer for `at` (host ms), replacing the armed one.
fn arm(inner: &Inner, at: u64, now: u64) {
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

/// Re-arms the timer for the orchestrator's nearest deadline, or clears it when nothing is due.
fn rearm(inner: &Inner, now: u64) {
    if inner.disposed.get() {
        return;
    }
    let book = inner.book_due.borrow().iter().map(|(at, _)| *at).min();
    let next = inner
        .orch
        .borrow()
        .next_deadline(now)
        .into_iter()
        .chain(book)
        .min();
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

/// The run path's cheap check: arms the timer only when a run deadline (or, for work that
/// waits, the controller's next moment) comes before it.
fn arm_at_most(inner: &Inner, now: u64, waiting: bool) {
    let next = {
        let o = inner.orch.borrow();
        let control = if waiting {
            o.controller().next_deadline(now)
        } else {
            None
        };
        o.runs().next_deadline().into_iter().chain(control).min()
    };
    let armed = inner.timer.borrow().as_ref().map(|(_, at)| *at);
    if let Some(at) = next {
        if armed.is_none_or(|cur| at < cur) {
            arm(inner, at, now);
        }
    }
}

/// The timer's callback: moves time on and does what is due.
fn tick_function(weak: &Weak<Inner>) -> Function {
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
        observe_memory(&inner, now);
        expire_book_calls(&inner, now);
        // `tick` fails only on a journal conflict, which a single writer cannot meet.
        let _ = inner.orch.borrow_mut().tick(now);
        after(&inner);
    });
    closure.into_js_value().unchecked_into()
}

/// Fails the session book's calls that passed their timeout with class `timeout` (a later
/// answer from the host is refused as unknown).
fn expire_book_calls(inner: &Inner, now: u64) {
    let due: Vec<u32> = {
        let mut book_due = inner.book_due.borrow_mut();
        let due = book_due
            .iter()
            .filter(|(at, _)| *at <= now)
            .map(|(_, call)| *call)
            .collect();
        book_due.retain(|(at, _)| *at > now);
        due
    };
    for call in due {
        if !inner.routes.borrow().contains_key(&call) {
            continue; // answered
        }
        let error = js_sys::Error::new("no answer within the host-call timeout");
        set(error.as_ref(), "class", &"timeout".into());
        let _ = settle(inner, CallId(call), Err(error.into()));
    }
}

/// Feeds the memory gate a fresh reading; a failing reading is skipped (the gate goes stale).
fn observe_memory(inner: &Inner, now: u64) {
    if let Ok(reading) = inner.host.memory() {
        inner
            .orch
            .borrow_mut()
            .controller_mut()
            .observe_memory(now, reading);
    }
}

/// The index of `item` in `items`, added at the end if it is not there (run.js's lane and key
/// indices: a handful of entries).
fn index_of<T: PartialEq>(items: &mut Vec<T>, item: T) -> u32 {
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
/// what does not fit stays on the orchestrator's ready list, and a full buffer tells run.js to
/// ask for the rest (`runDrain`) once it has read it. So no ready slot is lost, at any count.
fn write_ready(inner: &Inner, o: &mut Orchestrator) -> u32 {
    let mut buffer = inner.run_buffer.borrow_mut();
    if o.runs().ready_len() == 0 {
        // Nothing to add (a run ending with nobody waiting): the count as it is.
        return buffer.first().copied().unwrap_or(0);
    }
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
fn unread(inner: &Inner) -> u32 {
    inner.run_buffer.borrow().first().copied().unwrap_or(0)
}

/// After the orchestrator moved: start its host requests, tell run.js about ready and expired
/// run slots, settle task waiters, call listeners, and re-arm the timer. Nothing is borrowed
/// while JavaScript runs (invariant 2); a re-entrant call does its own pass.
/// Bytes of the module's linear memory (its high-water mark: wasm memory never shrinks).
fn wasm_memory_bytes() -> f64 {
    wasm_bindgen::memory()
        .unchecked_into::<js_sys::WebAssembly::Memory>()
        .buffer()
        .unchecked_into::<js_sys::ArrayBuffer>()
        .byte_length() as f64
}

/// `FENCED` when a newer engine was restored from this engine's journal (see `fence`).
fn fenced(inner: &Inner) -> Result<(), Error> {
    inner.fence.borrow().check()
}

/// A fenced engine acts on nothing: the host calls its core asked for are dropped, its task
/// events go unheard, and whoever waits on its tasks gets `FENCED`.
fn fence_out(inner: &Inner, error: &Error) {
    {
        let mut o = inner.orch.borrow_mut();
        o.take_requests();
        o.take_events();
    }
    let waiters: Vec<Waiter> = std::mem::take(&mut *inner.task_waiters.borrow_mut())
        .into_values()
        .flatten()
        .collect();
    let error = to_js(error);
    for (_, reject) in waiters {
        let _ = reject.call1(&JsValue::NULL, &error);
    }
}

fn after(inner: &Inner) {
    if inner.disposed.get() {
        return;
    }
    if let Err(e) = fenced(inner) {
        fence_out(inner, &e);
        return;
    }
    let now = inner.host.last_now();
    let (requests, events, expired, ready, breakers) = {
        let mut o = inner.orch.borrow_mut();
        let forgotten = o.take_forgotten();
        if !forgotten.is_empty() {
            // Calls that timed out: a late answer is refused as unknown.
            inner.routes.borrow_mut().retain(
                |_, route| !matches!(route, Route::Tasks(own, _) if forgotten.contains(own)),
            );
        }
        let requests = o.take_requests();
        let events = o.take_events();
        let expired = o.runs_mut().take_expired();
        let ready = o.runs().ready_len() > 0;
        if ready {
            write_ready(inner, &mut o);
        }
        let breakers: Vec<(String, &'static str)> = o
            .controller()
            .breaker_states()
            .map(|(k, s)| (k.to_owned(), s.name()))
            .collect();
        (requests, events, expired, ready, breakers)
    };
    for r in requests {
        let public = route(inner, Route::Tasks(r.call, r.op.kind()));
        inner.host.start(HostRequest {
            call: CallId(public),
            op: r.op,
        });
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
        inner.orch.borrow_mut().runs_mut().release_expired(&expired);
    }
    let changed: Vec<(String, &'static str)> = {
        let mut known = inner.breakers.borrow_mut();
        let changed = breakers
            .iter()
            .filter(|(k, s)| {
                known
                    .iter()
                    .find(|(n, _)| n == k)
                    .map_or(*s != "closed", |(_, was)| was != s)
            })
            .cloned()
            .collect();
        let not_closed = breakers.iter().any(|(_, s)| *s != "closed");
        inner.breaker_not_closed.set(not_closed);
        if let Some(flag) = inner.run_buffer.borrow_mut().get_mut(RUN_BUFFER) {
            *flag = u32::from(not_closed);
        }
        *known = breakers;
        changed
    };
    for (key, state) in changed {
        let event = Object::new();
        set(&event, "type", &"breaker".into());
        set(&event, "key", &key.into());
        set(&event, "state", &state.into());
        emit(inner, EventKind::Breaker, &event);
    }
    for e in events {
        let event = Object::new();
        set(&event, "type", &"task".into());
        set(&event, "id", &e.task.get().into());
        set(&event, "state", &e.state.into());
        emit(inner, EventKind::Task, &event);
        if matches!(e.state, "succeeded" | "failed" | "cancelled" | "timed_out") {
            let waiters = inner.task_waiters.borrow_mut().remove(&e.task.get());
            if let Some(waiters) = waiters {
                let record = inner.orch.borrow().tasks().get_brief(e.task);
                let info = record.map(|r| to_value(&TaskInfo::from(&r)));
                for (resolve, reject) in waiters {
                    let _ = match &info {
                        Some(Ok(info)) => resolve.call1(&JsValue::NULL, info),
                        Some(Err(err)) => reject.call1(&JsValue::NULL, &to_js(err)),
                        None => reject.call1(
                            &JsValue::NULL,
                            &to_js(&Error::UnknownTask { task: e.task.get() }),
                        ),
                    };
                }
            }
        }
    }
    rearm(inner, now);
}

fn emit(inner: &Inner, kind: EventKind, event: &Object) {
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

fn settle(inner: &Inner, call: CallId, answer: Result<JsValue, JsValue>) -> Result<(), Error> {
    if inner.disposed.get() {
        return Err(Error::Disposed);
    }
    let route = inner
        .routes
        .borrow_mut()
        .remove(&call.get())
        .ok_or_else(|| Error::UnknownCall { call: call.get() })?;
    // A clock that fails now still settles the call, at the last good reading.
    let now = inner
        .host
        .now_ms()
        .unwrap_or_else(|_| inner.host.last_now());
    match route {
        Route::Book(own) => {
            inner
                .book_due
                .borrow_mut()
                .retain(|(_, c)| *c != call.get());
            let settled = {
                let mut core = inner.book.borrow_mut();
                let Some(op) = core.pending_op(own) else {
                    return Err(Error::UnknownCall { call: call.get() });
                };
                let outcome = outcome_of(op, &answer);
                core.resolve(now, own, outcome)?
            };
            let waiter = inner.waiters.borrow_mut().remove(&call.get());
            if let Some((resolve, reject)) = waiter {
                let _ = match settled {
                    Settled::SessionCreated(id) => {
                        resolve.call1(&JsValue::NULL, &id.as_str().into())
                    }
                    Settled::Failed(error) => reject.call1(&JsValue::NULL, &to_js(&error)),
                };
            }
            rearm(inner, now);
        }
        Route::Tasks(own, op) => {
            let outcome = inner.host.on_engine_clock(outcome_of(op, &answer));
            inner.orch.borrow_mut().on_answer(now, own, outcome)?;
            after(inner);
        }
    }
    Ok(())
}

fn outcome_of(op: HostOpKind, answer: &Result<JsValue, JsValue>) -> HostOutcome {
    match answer {
        Ok(value) => reply(op, value),
        Err(error) => HostOutcome::Failed(failure(error)),
    }
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
