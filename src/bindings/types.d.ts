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
  /** Memory in use and the budget, in bytes: the memory gate's input. Read by one rule: a
   * fresh reading (at most one per ms) before any decision that could admit LOW work — so
   * while LOW work is submitted or pending (queued, waiting on a dependency, or to be sent
   * again), before each timer tick, host answer, bus event, `delegate`, `cancel`, `join`, `run`
   * and end of a `run` task (at the clock reading the engine last saw: `run` reads no clock per
   * run); with no LOW work pending, never. Besides, by `stats()` and once
   * by the constructor (a check). One that disposes the engine stops the call that asked. */
  memory(): { used: number; limit: number };
  /** Creates a session; answers with its id (or a Session object with `id`). */
  createSession(input: { agent: string; parentID?: string; title: string }, callId: number): Promise<string | { id: string }> | undefined;
  /** The other session operations sub-agent tasks use. Optional for an engine that only runs
   * `run()` work; when present each must be a function (else INVALID_HOST), and a call to a missing one
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

/** A consistent view of the engine. */
export interface ForemanStats {
  version: string;
  now: number;
  memory: { used: number; limit: number; perMille: number };
  /** Host calls started and not answered. */
  pendingCalls: number;
  lanes: Array<{ name: string; limit: number; effective: number; inUse: number;
    queued: { high: number; normal: number; low: number } }>;
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
  /** Makes this run a child of a running run: the `ctx` that run's function received (or use
   * `ctx.run`). In the parent's lane the child waits at the owner end of the parent's slot's
   * deque (a subtree finishes depth-first, newest child first), not in the lane's queue; in
   * another lane it goes through the controller as usual. Anything but a context of this
   * engine rejects with INVALID_INPUT (`options.parent`). A child started after its parent
   * ended is a plain run. */
  parent?: RunContext;
}

/** What `run` passes to its function: that run's context, for starting and joining children.
 * A plain object made per run; call `run` and `join` as its methods (detached, or on a frozen
 * context, they reject with INVALID_INPUT, field `ctx` or `options.parent`). Its `_`-prefixed
 * fields are internal: a copy with them changed is not told apart from the context. */
export interface RunContext {
  /** Starts a child of this run: `engine.run(fn, { ...options, parent: this })`. */
  run<T>(fn: (ctx: RunContext) => T | PromiseLike<T>, options?: Omit<RunOptions, "parent">): Promise<T>;
  /** Waits on children of this run (the promises `run` returned for them) and lends them this
   * run's slot meanwhile: a child on it takes no second lane permit (the lane is counted once;
   * each child's key is still admitted by the controller), so a tree of runs that wait on
   * their children cannot deadlock a lane the way parents holding their slots would. Resolves
   * only once every child settled AND this run has its slot back, with the values in order;
   * rejects with the first rejection in order, also only then (a rejection does not end the
   * wait early: this run has no slot to go on with before). INVALID_INPUT (`promises`,
   * `promises[i]`) for anything but an array of this run's children; DISPOSED if the engine is
   * disposed while it waits. A parent whose deadline passed keeps running (and its children,
   * and its join); its caller has already been told TIMED_OUT. */
  join<T extends readonly unknown[]>(promises: T): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }>;
}

export interface TaskEvent { type: "task"; id: number; state: TaskStateName }
export interface BreakerEvent { type: "breaker"; key: string; state: BreakerStateName }
/** An adaptive limit changed: the effective limit of lane or provider/model key `name` went
 * `from` → `to` (never above its configured limit, never below 1). `rate_limited`, `upstream`
 * and `timeout` halve it (at most once per `adaptive.windowMs`); `recovery` raises it by one
 * after `adaptive.growAfter` successes with at least half of it in use. */
export interface LimitEvent {
  type: "limit"; scope: "lane" | "key"; name: string; from: number; to: number;
  cause: "rate_limited" | "upstream" | "timeout" | "recovery";
}

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
  run<T>(fn: (ctx: RunContext) => T | PromiseLike<T>, options?: RunOptions): Promise<T>;
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
