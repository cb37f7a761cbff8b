// `Engine.prototype.run`: any async work under foreman's admission control, with two calls into
// WebAssembly per task (`runBegin`, `runEnd`), integer and handle arguments only. The closures,
// promises and results stay in JavaScript, in one array indexed by the slot WebAssembly hands out;
// the slots made ready by a call are written into a small u32 buffer in WebAssembly memory
// (count first), which this side reads without another call.
//
// NUMBERS_ONLY: every argument this side passes to an integer parameter is a whole number (a flag
// is 0 or 1, never `true`/`false`): JavaScriptCore (Bun) converts anything else on a slow path
// that costs ~50 ns per call, more than all of foreman's work for a task.

import { bad, foremanError, invalid, isArray, promiseOf, values } from "./boundary.js";

const STATE = Symbol("foreman.run");
// A slot's cells in `RunState.cells`: its work (a function while it waits, null once started
// with our promise, DIRECT once started directly, undefined when free), our promise's settle
// functions, its two reactions, and the id of its current use.
//
// A run id is the slot's index (its low 22 bits) with a generation above it: WebAssembly never
// hands out an index again while a report about its last use can still come, and every report
// (ready, expired) names the whole id, which is checked against the slot's `ID` cell — so a
// late report reaches only its own run.
const CELLS = 6;
const FN = 0;
const RESOLVE = 1;
const REJECT = 2;
const OK = 3;
const ERR = 4;
const ID = 5;
const INDEX = 0x3fffff;
const DIRECT = Symbol("direct");
// Set in what `runBegin` returns for a slot admitted at once with nothing else made ready: it is
// not in the ready buffer, this side starts it.
const ALONE = 0x40000000;
const then = Promise.prototype.then;
const PRIORITY = { high: 0, normal: 1, low: 2 };
const RUN_KEYS = new Set(["lane", "key", "priority", "deadlineMs", "failFast", "parent"]);

/** A lane or key name: a non-blank string of at most 256 characters. */
function isName(value) {
  return typeof value === "string" && value.trim() !== "" && value.length <= 256;
}

/** One options object `run` checked: its five fields as they were, and what they said. */
class Memo {
  constructor() {
    this.options = undefined;
    this.rawLane = undefined;
    this.rawKey = undefined;
    this.rawPriority = undefined;
    this.rawDeadline = undefined;
    this.rawFailFast = undefined;
    this.lane = 0;
    this.key = 0;
    this.priority = 1;
    this.failFast = 0;
    this.deadline = 0;
  }

  remember(o, lane, key, priority, failFast, deadline) {
    this.options = o;
    this.rawLane = o.lane;
    this.rawKey = o.key;
    this.rawPriority = o.priority;
    this.rawDeadline = o.deadlineMs;
    this.rawFailFast = o.failFast;
    this.lane = lane;
    this.key = key;
    this.priority = priority;
    this.failFast = failFast;
    this.deadline = deadline;
  }

  /** Whether `o`'s fields are still what they were (reading them may throw: a getter). An
   * object with a `parent` is never remembered: it is read again each time. */
  holds(o) {
    return (
      o.parent === undefined &&
      o.lane === this.rawLane &&
      o.key === this.rawKey &&
      o.priority === this.rawPriority &&
      o.deadlineMs === this.rawDeadline &&
      o.failFast === this.rawFailFast
    );
  }
}

class RunState {
  constructor(engine) {
    this.engine = engine;
    // What JS keeps per slot, side by side in one array (a slot's six cells share a cache
    // line or two, which matters when a backlog is admitted out of order): see `FN` … `ID`.
    // The reactions are made once per slot: slots are reused, so are they.
    this.cells = [];
    this.lanes = new Map();
    this.keys = new Map();
    this.queue = [];
    this.head = 0;
    this.tail = 0;
    // The last few options objects checked, and what each said (callers pass a handful of
    // objects again and again: one per lane or priority). One passed again with its five
    // fields unchanged is not re-checked for unknown keys.
    this.memos = [new Memo(), new Memo(), new Memo(), new Memo()];
    this.nextMemo = 0;
    this.draining = false;
    this.gone = false;
    this.breakers = new Map();
    // Parent runs waiting in `ctx.join` for their slot back: id → [resolve, reject] pairs.
    this.resumers = new Map();
    const setup = engine.runSetup(
      () => this.collect(),
      (slot, afterMs) => this.expire(slot, afterMs),
      () => this.disposed(),
      (id) => this.resumed(id),
    );
    this.memory = setup.memory;
    this.ptr = setup.ptr;
    this.cap = setup.cap;
    const now = setup.now;
    // The host's clock; one that throws reads as "no new reading" (NaN: the engine keeps its
    // last good one).
    this.now = () => {
      try {
        return now();
      } catch {
        return NaN;
      }
    };
    this.view = new Uint32Array(this.memory.buffer, this.ptr, this.cap);
    this.flags = new Uint32Array(this.memory.buffer, this.ptr + 4 * this.cap, 1);
  }

  /** A context's `_state` stays out of `JSON.stringify(ctx)` and is one word in `console.log`. */
  toJSON() {
    return undefined;
  }

  [Symbol.for("nodejs.util.inspect.custom")]() {
    return "[foreman run state]";
  }

  /** Whether some key's breaker is open or half-open (then a keyed call needs the time). */
  breakerNotClosed() {
    this.fresh();
    return this.flags[0] !== 0;
  }

  /** The ready buffer's view, made again when memory grew (which detaches views). */
  fresh() {
    let view = this.view;
    if (view.length === 0) {
      view = this.view = new Uint32Array(this.memory.buffer, this.ptr, this.cap);
      this.flags = new Uint32Array(this.memory.buffer, this.ptr + 4 * this.cap, 1);
    }
    return view;
  }

  /** Moves the slots the last call made ready into the launch queue, then launches. */
  collect() {
    const view = this.fresh();
    const n = view[0];
    if (n === 0 && this.head === this.tail) return; // nothing made ready, nothing to launch
    view[0] = 0; // read once: a slot id is never launched twice
    for (let i = 1; i <= n; i++) this.queue[this.tail++] = view[i];
    if (n === this.cap - 1) {
      this.engine.runDrain();
      this.collect();
      return;
    }
    this.launch();
  }

  launch() {
    if (this.draining) return; // the outer loop launches what a re-entrant call queued
    this.draining = true;
    try {
      while (this.head < this.tail) {
        const slot = this.queue[this.head++];
        this.start(slot);
      }
    } finally {
      this.head = this.tail = 0;
      this.draining = false;
    }
  }

  start(id) {
    const cells = this.cells;
    const at = (id & INDEX) * CELLS;
    const fn = cells[at + FN];
    if (typeof fn !== "function" || cells[at + ID] !== id) return;
    cells[at + FN] = null; // started
    let result;
    try {
      result = fn(context(this, id));
    } catch (error) {
      this.finish(at, false, error);
      return;
    }
    if (result === null || (typeof result !== "object" && typeof result !== "function")) {
      this.finish(at, true, result);
      return;
    }
    this.react(result, at);
  }

  /** Chains the slot's reactions (made on its first use) to the work's result. */
  react(result, at) {
    const cells = this.cells;
    let ok = cells[at + OK];
    if (ok === undefined) {
      ok = cells[at + OK] = (value) => this.done(at, true, value);
      cells[at + ERR] = (error) => this.done(at, false, error);
    }
    return then.call(promiseOf(result), ok, cells[at + ERR]);
  }

  /**
   * The work of a started slot settled. Started directly, the reaction's own result is the
   * caller's (so it returns the value or throws the error); otherwise our promise is settled.
   */
  done(at, ok, value) {
    if (this.cells[at + FN] === DIRECT) {
      this.cells[at + FN] = undefined;
      this.end(this.cells[at + ID], ok, value);
      if (ok) return value;
      throw value;
    }
    this.finish(at, ok, value);
    return undefined;
  }

  finish(at, ok, value) {
    const cells = this.cells;
    const slot = cells[at + ID];
    const resolve = cells[at + RESOLVE];
    const reject = cells[at + REJECT];
    cells[at + FN] = cells[at + RESOLVE] = cells[at + REJECT] = undefined;
    // A failure here means the engine was disposed meanwhile: the work's own result still
    // reaches its caller.
    const ready = ok ? this.engine.runEnd(slot) : this.engine.runFail(slot, value, this.now());
    if (resolve !== undefined) {
      if (ok) resolve(value);
      else reject(value);
    }
    // Nothing made ready: nothing to read (and nothing queued here: a launch loop that called
    // this goes on by itself).
    if (ready !== 0) this.collect();
  }

  /**
   * Runs `fn` at once in the slot just admitted for it (no deadline, nothing else ready): the
   * caller gets the work's own promise chained once, not a second promise of ours.
   */
  direct(slot, fn) {
    let result;
    try {
      result = fn(context(this, slot));
    } catch (error) {
      this.end(slot, false, error);
      return Promise.reject(error);
    }
    if (result === null || (typeof result !== "object" && typeof result !== "function")) {
      this.end(slot, true, result);
      return Promise.resolve(result);
    }
    const cells = this.cells;
    const at = (slot & INDEX) * CELLS;
    while (cells.length < at + CELLS) cells.push(undefined);
    cells[at + FN] = DIRECT;
    cells[at + ID] = slot;
    return this.react(result, at);
  }

  /** Ends a slot whose work finished (no caller promise of ours to settle). */
  end(slot, ok, value) {
    const ready = ok ? this.engine.runEnd(slot) : this.engine.runFail(slot, value, this.now());
    if (ready !== 0) this.collect();
  }

  expire(slot, afterMs) {
    const cells = this.cells;
    const at = (slot & INDEX) * CELLS;
    if (cells[at + ID] !== slot) return; // not this use of the slot (see `ID`)
    const reject = cells[at + REJECT];
    // A waiting slot is gone; a running one keeps its slot until the work ends, but its caller
    // hears now.
    if (typeof cells[at + FN] === "function") cells[at + FN] = undefined;
    cells[at + RESOLVE] = cells[at + REJECT] = undefined;
    if (reject !== undefined) {
      reject(foremanError("TIMED_OUT", `not done within its ${afterMs} ms deadline`, { afterMs }));
    }
  }

  /** Parent run `id` has its slot back (or ended): its joins go on (see `join`). */
  resumed(id) {
    const waiters = this.resumers.get(id);
    if (waiters === undefined) return;
    this.resumers.delete(id);
    for (const [resolve] of waiters) resolve();
  }

  /** Adds (`on`) or removes a join's `[resolve, reject]` waiting for run `id`'s slot back. */
  park(id, waiter, on) {
    const waiters = this.resumers.get(id) ?? [];
    if (on) this.resumers.set(id, [...waiters, waiter]);
    else if (waiters.length > 1) this.resumers.set(id, waiters.filter((w) => w !== waiter));
    else this.resumers.delete(id);
  }

  /**
   * Keeps `fn` in slot `slot` until it is started, and returns the promise its caller gets;
   * `alone`: admitted at once with nothing else ready, so it is queued here to start.
   */
  hold(fn, slot, alone) {
    const cells = this.cells;
    const at = (slot & INDEX) * CELLS;
    // A new slot is the next one: the array grows by whole slots, never with holes (a holey or
    // sparse array is slower to read in every engine).
    while (cells.length < at + CELLS) cells.push(undefined);
    cells[at + FN] = fn;
    cells[at + ID] = slot;
    capturing = this;
    capturingSlot = slot;
    const promise = new Promise(capture);
    capturing = null;
    if (alone) this.queue[this.tail++] = slot;
    return promise;
  }

  disposed() {
    this.gone = true;
    const error = foremanError("DISPOSED", "the engine was disposed");
    for (const [, reject] of [...this.resumers.values()].flat()) reject(error);
    this.resumers.clear();
    const cells = this.cells;
    for (let at = 0; at < cells.length; at += CELLS) {
      if (typeof cells[at + FN] === "function") {
        const reject = cells[at + REJECT];
        cells[at + FN] = cells[at + RESOLVE] = cells[at + REJECT] = undefined;
        if (reject !== undefined) reject(error);
      }
    }
  }

  lane(name) {
    let index = this.lanes.get(name);
    if (index === undefined) {
      index = this.engine.runLane(name);
      this.lanes.set(name, index);
    }
    return index;
  }

  key(name) {
    let index = this.keys.get(name);
    if (index === undefined) {
      index = this.engine.runKey(name);
      if (index === 0xffffffff) throw this.engine.runError(); // too long a name, or too many keys
      this.keys.set(name, index);
    }
    return index;
  }
}

// The promise executor, one function for every call (a closure per call costs an allocation):
// `new Promise` calls it synchronously, so these say whose slot it is.
let capturing = null;
let capturingSlot = 0;
function capture(resolve, reject) {
  const at = (capturingSlot & INDEX) * CELLS;
  capturing.cells[at + RESOLVE] = resolve;
  capturing.cells[at + REJECT] = reject;
}

/**
 * A key's circuit breaker on its own (`engine.breaker(key)`). While every breaker of the engine
 * is closed (the flag word after the ready buffer says so), a call costs one call into
 * WebAssembly, at its end; otherwise it asks first (`breakerEnter`), which also admits the
 * half-open probe.
 */
class ForemanBreaker {
  constructor(engine, state, key, index) {
    this.engine = engine;
    this.state = state;
    this.key = key;
    this.index = index;
    const end = (probe) => [
      (value) => {
        engine.breakerOk(index, probe);
        return value;
      },
      (error) => {
        engine.breakerFail(index, probe, error, state.now());
        throw error;
      },
    ];
    [this.ok, this.err] = end(0);
    [this.probeOk, this.probeErr] = end(1);
    Object.freeze(this);
  }

  execute(fn) {
    const state = this.state;
    if (state.gone) return Promise.reject(foremanError("DISPOSED", "the engine was disposed"));
    if (typeof fn !== "function") return bad("fn", "must be a function");
    let probe = 0; // 0 or 1: see NUMBERS_ONLY
    if (state.breakerNotClosed()) {
      // Some breaker is open or half-open: this one may be.
      const verdict = this.engine.breakerEnter(this.index, state.now());
      if (verdict === 0xffffffff) return Promise.reject(this.engine.runError());
      probe = verdict; // 0, or 1 for the probe
    }
    let result;
    try {
      result = fn();
    } catch (error) {
      this.engine.breakerFail(this.index, probe, error, state.now());
      return Promise.reject(error);
    }
    if (result === null || (typeof result !== "object" && typeof result !== "function")) {
      this.engine.breakerOk(this.index, probe);
      return Promise.resolve(result);
    }
    return probe
      ? then.call(promiseOf(result), this.probeOk, this.probeErr)
      : then.call(promiseOf(result), this.ok, this.err);
  }
}

/** `Engine.prototype.breaker`: the breaker of provider/model `key` (one object per key). */
function breaker(key) {
  let state = this[STATE];
  if (state === undefined) state = this[STATE] = new RunState(this);
  let handle = state.breakers.get(key);
  if (handle === undefined) {
    if (!isName(key)) throw invalid("key", "must be a provider/model key");
    handle = new ForemanBreaker(this, state, key, state.key(key));
    state.breakers.set(key, handle);
  }
  return handle;
}

function run(fn, o) {
  let state = this[STATE];
  if (state === undefined) {
    try {
      state = this[STATE] = new RunState(this);
    } catch (error) {
      return Promise.reject(error);
    }
  }
  if (typeof fn !== "function") return bad("fn", "must be a function");
  let lane = 0, key = 0, priority = 1, failFast = 0, deadline = 0;
  let memo, stale;
  if (o !== undefined) {
    const memos = state.memos;
    for (let i = 0; i < memos.length; i++) {
      if (memos[i].options === o) {
        memo = memos[i];
        break;
      }
    }
    if (memo !== undefined) {
      try {
        if (!memo.holds(o)) {
          stale = memo; // changed since: checked again below, remembered in the same place
          memo = undefined;
        }
      } catch (error) {
        memo.options = undefined;
        return Promise.reject(error); // a getter of the caller's that throws
      }
    }
  }
  if (memo !== undefined) {
    // An options object seen before, unchanged: what it said then holds.
    lane = memo.lane;
    key = memo.key;
    priority = memo.priority;
    failFast = memo.failFast;
    deadline = memo.deadline;
  } else if (o !== undefined) {
    if (o === null || typeof o !== "object" || Array.isArray(o)) return bad("options", "must be a plain object");
    try {
      for (const k in o) {
        if (!RUN_KEYS.has(k)) return bad(`options.${k}`, `unknown key; expected one of: ${[...RUN_KEYS].join(", ")}`);
      }
      const l = o.lane;
      if (l !== undefined) {
        if (!isName(l)) return bad("options.lane", "must be a lane name");
        lane = state.lane(l);
      }
      const k = o.key;
      if (k !== undefined) {
        if (!isName(k)) return bad("options.key", "must be a provider/model key");
        key = state.key(k);
      }
      const p = o.priority;
      if (p !== undefined) {
        priority = typeof p === "string" ? PRIORITY[p] : undefined;
        if (priority === undefined || !Object.hasOwn(PRIORITY, p)) return bad("options.priority", "must be high, normal or low");
      }
      const d = o.deadlineMs;
      if (d !== undefined) {
        if (typeof d !== "number" || !Number.isInteger(d) || d < 1 || d > 86_400_000) return bad("options.deadlineMs", "must be a whole number in 1..=86400000");
        deadline = d;
      }
      const f = o.failFast;
      if (f !== undefined) {
        if (typeof f !== "boolean") return bad("options.failFast", "must be a boolean");
        failFast = f ? 1 : 0;
      }
      const parent = o.parent;
      if (parent !== undefined) {
        if (stale !== undefined) stale.options = undefined;
        return startChild(this, state, fn, parent, lane, key, priority, failFast, deadline);
      }
      let m = stale;
      if (m === undefined) {
        m = state.memos[state.nextMemo];
        state.nextMemo = (state.nextMemo + 1) % state.memos.length;
      }
      m.remember(o, lane, key, priority, failFast, deadline);
    } catch (error) {
      for (const m of state.memos) if (m.options === o) m.options = undefined;
      return Promise.reject(error); // a getter or proxy of the caller's that throws
    }
  }
  // Only a breaker that is not closed, the memory gate (LOW work) and a deadline need the time
  // now; other work is admitted on the engine's last reading (NaN says "no new reading").
  const now = (key !== 0 && state.breakerNotClosed()) || priority === 2 || deadline !== 0 ? state.now() : NaN;
  let slot = this.runBegin(lane, key, priority, failFast, deadline, now);
  let alone = false;
  if (slot >= ALONE) {
    if (slot === 0xffffffff) return Promise.reject(this.runError());
    slot -= ALONE;
    // Admitted at once and alone: run it now (the common case below the limit), unless it has
    // a deadline (its caller gets our promise, which the deadline can reject) or this is a
    // call from inside a launch (the outer loop starts it, in order).
    if (deadline === 0 && !state.draining) return state.direct(slot, fn);
    alone = true;
  }
  const promise = state.hold(fn, slot, alone);
  state.collect();
  return promise;
}

/**
 * What `run` passes to its function: the run's context (`RunContext` in types.d.ts). A plain
 * object literal, made per run: V8 allocates a literal cheaply wherever it is called from, while
 * `new` of a class (or a literal with symbol keys) at the megamorphic call site `start` becomes
 * costly once a process has run varied work (measured: P5's slot of 5 went from ~0.5 to ~1.8
 * µs a use, with a third of the time in the garbage collector). Its `_`-fields are internal.
 */
function context(state, id) {
  return { run: childRun, join, _state: state, _id: id, _kids: undefined };
}

/** The run state of `ctx` when it has a context's shape (one `context` made), else undefined. */
function stateOf(ctx) {
  if (ctx === null || typeof ctx !== "object" || ctx.join !== join || typeof ctx._id !== "number") return undefined;
  const state = ctx._state;
  return state instanceof RunState && (ctx._kids === undefined || ctx._kids instanceof Map) ? state : undefined;
}

const detached = (what) => bad("ctx", `${what} must be called as a method of the context a run received`);

/** `ctx.run(fn, opts)`: `engine.run(fn, { ...opts, parent: ctx })`. */
function childRun(fn, o) {
  const state = stateOf(this);
  if (state === undefined) return detached("ctx.run");
  const engine = state.engine;
  if (o === undefined) return engine.run(fn, { parent: this });
  if (o === null || typeof o !== "object" || isArray(o)) return bad("options", "must be a plain object");
  let copy;
  try {
    copy = { ...o };
  } catch (error) {
    return Promise.reject(error); // a getter or proxy of the caller's that throws
  }
  if (copy.parent !== undefined && copy.parent !== this) return bad("options.parent", "ctx.run starts a child of ctx itself: leave parent out");
  copy.parent = this;
  return engine.run(fn, copy);
}

/** `ctx.join(promises)`: lends the run's slot to those children until they settle. */
function join(promises) {
  const state = stateOf(this);
  if (state === undefined) return detached("ctx.join");
  if (state.gone) return Promise.reject(foremanError("DISPOSED", "the engine was disposed"));
  if (!isArray(promises)) return bad("promises", "must be an array of promises this run's children returned");
  const list = [], ids = [];
  try {
    for (let i = 0; i < promises.length; i++) {
      const p = promises[i];
      const id = this._kids?.get(p);
      if (id === undefined) return bad(`promises[${i}]`, "not a promise of a child this run started");
      list.push(p);
      ids.push(id);
    }
  } catch (error) {
    return Promise.reject(error); // a proxy of the caller's that throws
  }
  // Parked first: a child may end (and the run be resumed) inside runJoin.
  let waiter, back = new Promise((resolve, reject) => state.park(this._id, (waiter = [resolve, reject]), true));
  if (state.engine.runJoin(this._id, ids) !== 1) back = state.park(this._id, waiter, false);
  return then.call(Promise.all([Promise.allSettled(list), back]), ([results]) => values(results));
}

/** `run`'s child path: `fn` as a child of context `ctx` (checked to be one of this engine's). */
function startChild(engine, state, fn, ctx, lane, key, priority, failFast, deadline) {
  if (stateOf(ctx) !== state) {
    return bad("options.parent", "must be the context a run of this engine passed to its function");
  }
  let kids = ctx._kids;
  if (kids === undefined) {
    try {
      kids = ctx._kids = new Map(); // before the child exists: a frozen context starts none
    } catch {
      return bad("options.parent", "a frozen or sealed context cannot start children");
    }
  }
  const now = (key !== 0 && state.breakerNotClosed()) || priority === 2 || deadline !== 0 ? state.now() : NaN;
  const slot = engine.runChild(ctx._id, lane, key, priority, failFast, deadline, now);
  if (slot === 0xffffffff) return Promise.reject(engine.runError());
  const promise = state.hold(fn, slot, false);
  kids.set(promise, slot);
  state.collect();
  return promise;
}

// Placeholder engines with run state, kept for the module's life. Optimized code for `run`
// depends on the shape of an engine that has run state; if every engine of that shape died
// (each one disposed and collected) the shape would go with them, and the next engine's first
// 100k tasks would pay for re-optimizing (measured: ~2× per task). Engines come in two shapes,
// made by `new Engine` and made by `Engine.restore`: one keeper of each.
let keepers = [];

/** Adds `run` to the Engine class, given a placeholder engine (kept; see `keepers`). */
export function installRun(engine) {
  const proto = Object.getPrototypeOf(engine);
  Object.defineProperty(proto, "run", { value: run, writable: true, configurable: true });
  Object.defineProperty(proto, "breaker", { value: breaker, writable: true, configurable: true });
  try {
    const made = new proto.constructor(placeholderHost());
    for (const e of [engine, made]) e[STATE] = new RunState(e);
    keepers = [engine, made];
  } catch {
    // Without keepers `run` works the same, only re-warms after engines come and go.
  }
}

/** A host for the placeholder engine `installRun` receives. */
export function placeholderHost() {
  return {
    now: () => 0,
    memory: () => ({ used: 0, limit: 1 }),
    createSession: () => undefined,
  };
}
