// A simulated OpenCode server: the one JavaScript stand-in for the real thing, used by the demo
// page (on real time) and by the JS tests through tests/js/fake-server.mjs (on a virtual clock).
// Everything the engine learns, it learns through the same host interface the plugin implements
// over the SDK (`host()`), and through the bus events the real server emits (`hostEvent`).
//
// What it simulates, after the facts verified against `opencode serve`:
// - sessions (`createSession`, `deleteSession`, `checkSession`, `lastAssistantMessage`), and
//   `sessionStatuses`, the `session.status()` map: non-idle sessions only;
// - `prompt` answers at once (promptAsync's 204); the turn turns busy after a gap, then ends with
//   an assistant message (`finish: "stop"`, `time.completed`) → status idle → `session.idle`;
// - a provider failure: OpenCode's own retries show as `retry` statuses (`attempt`, `message`,
//   `next`, honouring a 429's Retry-After), then the turn ends with `finish: "error"` and an
//   `APIError { statusCode, isRetryable }`, and idle arrives twice;
// - a hang: busy, and nothing more until aborted; abort: `MessageAbortedError`, idle twice;
// - per-agent turn latency drawn from a lognormal distribution; a memory reading.
//
// Determinism: every random draw of a turn comes from a generator seeded by (seed, prompt text,
// how many times that text was prompted before), never from a shared stream. So a run replays
// exactly on the virtual clock, and on real time each task's outcome is the same whatever order
// the engine ran things in (the demo's drop-and-restore check relies on it).
//
// Clocks: `clock: "virtual"` (the default) moves only when `advance(ms)` says so and fires the
// timers in order, letting promise reactions settle between them; `clock: "real"` reads
// `Date.now()` and schedules with `setTimeout`.

/** mulberry32: a tiny seeded PRNG; `rng(seed)()` is a number in [0, 1). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a over a string, mixed with `seed`: the seed of one turn's generator. */
function hashSeed(seed, text, n) {
  let h = (0x811c9dc5 ^ Math.imul(seed >>> 0, 0x9e3779b1)) >>> 0;
  const s = `${text}\u0000${n}`;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** A standard normal draw (Box–Muller) from `random`. */
function normal(random) {
  const u = Math.max(random(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

const macrotask = typeof setImmediate === "function" ? (fn) => setImmediate(fn) : (fn) => setTimeout(fn, 0);

/** Lets promise reactions run (host answers, engine settlements). */
export const settle = () => new Promise((resolve) => macrotask(resolve));

/** Per-agent turn latency of the demo: median and lognormal sigma (a planner thinks longer). */
export const DEMO_LATENCY = {
  planner: { medianMs: 2_400, sigma: 0.45 },
  worker: { medianMs: 1_500, sigma: 0.6 },
  reviewer: { medianMs: 1_000, sigma: 0.35 },
  explorer: { medianMs: 700, sigma: 0.5 },
};

const notFound = () => Promise.reject(Object.assign(new Error("session not found"), { status: 404 }));

export class SimServer {
  /**
   * @param {object} options
   * @param {"virtual"|"real"} [options.clock] virtual (moved by `advance`) or real time
   * @param {number} [options.seed] seeds every turn's draws (with the prompt text)
   * @param {number} [options.turnMs] a fixed turn length, used for agents without a `latency` entry
   * @param {Record<string, {medianMs: number, sigma: number}>} [options.latency] lognormal per agent
   * @param {number} [options.latencyScale] multiplies every turn length, gap and retry delay
   * @param {number} [options.gapMs] from prompt to the first `busy`
   * @param {{failure?: number, rateLimit?: number, hang?: number}} [options.rates] per turn
   * @param {number} [options.providerRetries] OpenCode's own retries before a failure ends a turn
   * @param {number} [options.retryAfterMs] a 429's Retry-After
   * @param {number} [options.retryBaseMs] a 5xx's first backoff (doubling)
   * @param {(text: string) => null | {status: number}} [options.fail] forces a turn's failure
   * @param {(text: string) => boolean} [options.hang] forces a hang
   * @param {number} [options.memoryUsed] @param {number} [options.memoryLimit] the reading, bytes
   */
  constructor({
    clock = "virtual", seed = 1, turnMs = 1_000, latency = {}, latencyScale = 1, gapMs = 200,
    rates = {}, providerRetries = 2, retryAfterMs = 1_000, retryBaseMs = 500,
    fail = () => null, hang = () => false, memoryUsed = 100, memoryLimit = 1000,
  } = {}) {
    this.real = clock === "real";
    this.clock = 1_700_000_000_000;
    this.seed = seed;
    this.turnMs = turnMs;
    this.latency = latency;
    this.latencyScale = latencyScale;
    this.gapMs = gapMs;
    this.rates = { failure: 0, rateLimit: 0, hang: 0, ...rates };
    this.providerRetries = providerRetries;
    this.retryAfterMs = retryAfterMs;
    this.retryBaseMs = retryBaseMs;
    this.fail = fail;
    this.hang = hang;
    this.memoryUsed = memoryUsed;
    this.memoryLimit = memoryLimit;
    /** Models (`provider/model`) in an outage: every turn on them fails with a 503. */
    this.outages = new Set();
    this.timers = new Map();
    this.nextTimer = 1;
    this.sessions = new Map();
    this.nextSession = 1;
    this.engine = null;
    this.calls = [];
    this.prompted = new Map(); // text → times prompted
    /** Measured at the boundary: turns in flight now and at most, per agent and per model. */
    this.busy = { agent: new Map(), model: new Map() };
    this.maxBusy = { agent: new Map(), model: new Map() };
    this.turns = { ok: 0, failed: 0, rateLimited: 0, hung: 0, aborted: 0 };
    this.connection = null;
  }

  /** Milliseconds since the epoch on this server's clock. */
  now() {
    return this.real ? Date.now() : this.clock;
  }

  /** What messages are stamped with (`time.created`, `time.completed`): the machine's wall
   * clock, `now()` unless a test steps it (host and server share it). */
  stamp() {
    return this.now();
  }

  /**
   * The host object an Engine is built with: one connection. `drop()` cuts it as a lost
   * process would be cut: its timers are gone and its calls are never answered.
   */
  host() {
    const conn = { alive: true };
    this.connection = conn;
    const op = (fn) => (input) => (conn.alive ? fn(input) : new Promise(() => {}));
    return {
      now: () => this.now(),
      memory: () => ({ used: this.memoryUsed, limit: this.memoryLimit }),
      setTimer: (fn, ms) => this.schedule(ms, () => conn.alive && fn(), "engine"),
      clearTimer: (id) => this.cancel(id),
      createSession: op((input) => this.createSession(input)),
      prompt: op((input) => this.prompt(input)),
      abort: op((input) => this.abort(input)),
      deleteSession: op((input) => this.deleteSession(input)),
      lastAssistantMessage: op((input) => this.lastMessage(input)),
      checkSession: op((input) => this.checkSession(input)),
      sessionStatuses: op(() => this.sessionStatuses()),
    };
  }

  /** Sends this server's bus events to `engine`. */
  attach(engine) {
    this.engine = engine;
    return engine;
  }

  /** Loses the attached engine without warning: no more events, timers or answers reach it. */
  drop() {
    if (this.connection) this.connection.alive = false;
    this.engine = null;
    for (const [id, t] of this.timers) if (t.owner === "engine") this.cancel(id);
  }

  schedule(ms, fn, owner = "server") {
    const id = this.nextTimer++;
    const timer = { at: this.now() + Math.max(0, ms), fn, owner, handle: null };
    if (this.real) {
      timer.handle = setTimeout(() => {
        this.timers.delete(id);
        fn();
      }, Math.max(0, ms));
    }
    this.timers.set(id, timer);
    return id;
  }

  cancel(id) {
    const t = this.timers.get(id);
    if (t?.handle != null) clearTimeout(t.handle);
    this.timers.delete(id);
  }

  /** Timers the engine has armed. */
  engineTimers() {
    return [...this.timers.values()].filter((t) => t.owner === "engine").length;
  }

  /** Ends the simulation: the engine is dropped and no timer of the server fires any more. */
  close() {
    this.drop();
    for (const id of [...this.timers.keys()]) this.cancel(id);
  }

  /** Virtual clock only: moves time forward by `ms`, firing timers in order. */
  async advance(ms) {
    if (this.real) throw new Error("advance() is for the virtual clock");
    const until = this.clock + ms;
    await settle();
    for (;;) {
      let next = null;
      for (const [id, t] of this.timers) {
        if (t.at <= until && (next === null || t.at < next[1].at || (t.at === next[1].at && id < next[0]))) next = [id, t];
      }
      if (next === null) break;
      this.timers.delete(next[0]);
      this.clock = Math.max(this.clock, next[1].at);
      next[1].fn();
      await settle();
    }
    this.clock = until;
    await settle();
  }

  emit(type, properties) {
    this.engine?.hostEvent({ type, properties });
  }

  setStatus(s, status) {
    s.status = status;
    this.emit("session.status", { sessionID: s.id, status: status ?? { type: "idle" } });
  }

  createSession(input) {
    this.calls.push(["createSession", input]);
    const id = `ses_${String(this.nextSession++).padStart(4, "0")}`;
    this.sessions.set(id, { id, agent: input.agent, parentID: input.parentID, busy: false, status: null, messages: [], turn: null });
    return Promise.resolve({ id, title: input.title });
  }

  /** How one turn will go: drawn from (seed, text, times prompted), forced by `fail`/`hang`. */
  plan(text, agent, model) {
    const n = this.prompted.get(text) ?? 0;
    this.prompted.set(text, n + 1);
    const random = rng(hashSeed(this.seed, text, n));
    const profile = this.latency[agent];
    const base = profile ? profile.medianMs * Math.exp(profile.sigma * normal(random)) : this.turnMs;
    const ms = Math.max(1, Math.round(base * this.latencyScale));
    const roll = random();
    const forced = this.fail(text);
    if (forced) return { ms, status: forced.status, retries: 0 };
    if (this.hang(text)) return { ms, hang: true };
    if (model && this.outages.has(model)) return { ms: Math.ceil(ms / 4), status: 503, retries: 0 };
    const { failure, rateLimit, hang } = this.rates;
    if (roll < hang) return { ms, hang: true };
    if (roll < hang + failure) return { ms: Math.ceil(ms / 3), status: 503, retries: this.providerRetries };
    if (roll < hang + failure + rateLimit) return { ms: Math.ceil(ms / 3), status: 429, retries: this.providerRetries };
    return { ms };
  }

  /** Counts a turn in or out of flight for its agent and model, keeping the maxima. */
  count(s, delta) {
    for (const [kind, key] of [["agent", s.turnAgent], ["model", s.turnModel]]) {
      if (key == null) continue;
      const v = (this.busy[kind].get(key) ?? 0) + delta;
      this.busy[kind].set(key, v);
      if (v > (this.maxBusy[kind].get(key) ?? 0)) this.maxBusy[kind].set(key, v);
    }
  }

  prompt({ sessionID, text, agent, model }) {
    this.calls.push(["prompt", sessionID, text]);
    const s = this.sessions.get(sessionID);
    if (!s) return notFound();
    if (s.busy) throw new Error(`prompted busy session ${sessionID}`);
    const created = this.stamp();
    const plan = this.plan(text, agent ?? s.agent, model);
    s.busy = true;
    s.turnAgent = agent ?? s.agent;
    s.turnModel = model ?? null;
    this.count(s, 1);
    const scale = this.latencyScale;
    const gap = Math.round(this.gapMs * scale);
    s.turn = [this.schedule(gap, () => this.setStatus(s, { type: "busy" }))];
    if (plan.hang) {
      this.turns.hung += 1;
      return Promise.resolve(undefined);
    }
    // OpenCode retries a failing provider itself, showing each wait as a `retry` status.
    let at = Math.max(plan.ms, gap + 1);
    for (let attempt = 1; attempt <= (plan.retries ?? 0); attempt++) {
      const wait = Math.round((plan.status === 429 ? this.retryAfterMs : this.retryBaseMs * 2 ** (attempt - 1)) * scale);
      const message = plan.status === 429
        ? `Rate limited: retrying after ${Math.ceil(this.retryAfterMs / 1000)}s (Retry-After)`
        : `Service Unavailable (503): retrying in ${Math.ceil(wait / 1000)}s`;
      const next = at + wait;
      s.turn.push(this.schedule(at, () => this.setStatus(s, { type: "retry", attempt, message, next: this.now() + wait })));
      s.turn.push(this.schedule(next, () => this.setStatus(s, { type: "busy" })));
      at = next + plan.ms;
    }
    s.turn.push(this.schedule(at, () => this.finish(s, text, created, plan.status)));
    return Promise.resolve(undefined);
  }

  /** The busy session's turn blocks in a tool call (a delegation in wait mode): it stays busy
   * but makes no model request (it leaves the in-flight counts), and what its turn had left
   * waits until `unblock`. Returns false when it is not busy or already blocked. */
  block(sessionID) {
    const s = this.sessions.get(sessionID);
    if (!s?.busy || s.blocked) return false;
    const now = this.now();
    s.blocked = (s.turn ?? []).flatMap((id) => {
      const t = this.timers.get(id);
      if (!t) return [];
      this.cancel(id);
      return [[t.at - now, t.fn]];
    });
    s.turn = [];
    this.count(s, -1);
    return true;
  }

  /** The blocked session's tool call returns: its turn goes on where it stopped. */
  unblock(sessionID) {
    const s = this.sessions.get(sessionID);
    if (!s?.blocked) return false;
    const held = s.blocked;
    s.blocked = null;
    if (!s.busy) return true; // aborted meanwhile
    this.count(s, 1);
    s.turn = held.map(([ms, fn]) => this.schedule(ms, fn));
    return true;
  }

  /** The end of a turn: the assistant message, then idle (twice after an error). */
  finish(s, text, created, status) {
    for (const t of s.turn ?? []) this.cancel(t);
    s.busy = false;
    s.turn = null;
    this.count(s, -1);
    const [providerID, modelID] = (s.turnModel ?? "sim/default").split("/");
    const info = {
      id: `msg_${s.id}_${s.messages.length + 1}`, sessionID: s.id, role: "assistant", providerID, modelID,
      time: { created, completed: this.stamp() }, finish: status ? "error" : "stop",
    };
    if (status) {
      const data = { message: status === 429 ? "Rate limit exceeded" : "provider failed", statusCode: status, isRetryable: true };
      if (status === 429) data.responseHeaders = { "retry-after": String(Math.ceil(this.retryAfterMs / 1000)) };
      info.error = { name: "APIError", data };
      if (status === 429) this.turns.rateLimited += 1;
      else this.turns.failed += 1;
    } else {
      this.turns.ok += 1;
    }
    s.messages.push({ info, parts: [{ type: "text", text: `done: ${text}` }] });
    this.emit("message.updated", { info });
    this.setStatus(s, null);
    this.emit("session.idle", { sessionID: s.id });
    if (status) this.emit("session.idle", { sessionID: s.id });
  }

  abort({ sessionID }) {
    this.calls.push(["abort", sessionID]);
    const s = this.sessions.get(sessionID);
    if (s?.busy) {
      for (const t of s.turn ?? []) this.cancel(t);
      s.busy = false;
      s.status = null;
      s.turn = null;
      if (!s.blocked) this.count(s, -1); // a blocked turn was counted out already
      s.blocked = null;
      this.turns.aborted += 1;
      s.messages.push({
        info: { role: "assistant", time: { created: this.stamp(), completed: this.stamp() }, finish: "error", error: { name: "MessageAbortedError", data: { message: "aborted" } } },
        parts: [],
      });
      this.schedule(10, () => {
        this.emit("session.idle", { sessionID });
        this.emit("session.idle", { sessionID });
      });
    }
    return Promise.resolve(true);
  }

  deleteSession({ sessionID }) {
    this.calls.push(["deleteSession", sessionID]);
    const s = this.sessions.get(sessionID);
    if (s?.busy) throw new Error(`deleted busy session ${sessionID}`);
    this.sessions.delete(sessionID);
    return Promise.resolve(true);
  }

  lastMessage({ sessionID }) {
    this.calls.push(["lastAssistantMessage", sessionID]);
    const s = this.sessions.get(sessionID);
    if (!s) return notFound();
    return Promise.resolve(s.messages.at(-1) ?? null);
  }

  checkSession({ sessionID }) {
    this.calls.push(["checkSession", sessionID]);
    const s = this.sessions.get(sessionID);
    return Promise.resolve(!s ? "gone" : s.busy ? "busy" : "idle");
  }

  /** `session.status()`: the non-idle sessions only (busy, or retry with its attempt). */
  sessionStatuses() {
    this.calls.push(["sessionStatuses"]);
    const out = {};
    for (const s of this.sessions.values()) if (s.status) out[s.id] = { ...s.status };
    return Promise.resolve(out);
  }

  prompts() {
    return this.calls.filter(([op]) => op === "prompt").length;
  }
}
