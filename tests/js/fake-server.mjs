// A small simulated OpenCode server for the JS tests, on a virtual clock: sessions, prompts that
// turn busy after a gap and finish with an assistant message, aborts (idle twice), failures, and
// bus events delivered to the engine through `hostEvent`. It is also the engine's host (clock,
// memory, timers), so a test moves time explicitly and runs deterministically.
import { readFileSync } from "node:fs";
import { initSync, Engine } from "../../pkg/foreman.js";

let loaded = false;
/** The Engine class with the wasm module instantiated (once per process). */
export function loadEngine() {
  if (!loaded) {
    initSync({ module: readFileSync(new URL("../../pkg/foreman_bg.wasm", import.meta.url)) });
    loaded = true;
  }
  return Engine;
}

/** Lets promise reactions run (host answers, engine settlements). */
export const settle = () => new Promise((resolve) => setImmediate(resolve));

export class FakeServer {
  constructor({ turnMs = 1_000, gapMs = 200, fail = () => null, hang = () => false } = {}) {
    this.clock = 1_700_000_000_000;
    this.turnMs = turnMs;
    this.gapMs = gapMs;
    this.fail = fail; // (text) => null | { status } : how a turn ends
    this.hang = hang; // (text) => true: the turn never ends until aborted
    this.timers = new Map();
    this.nextTimer = 1;
    this.sessions = new Map();
    this.nextSession = 1;
    this.engine = null;
    this.calls = [];
    this.memoryUsed = 100;
  }

  /** The host object an Engine is built with. */
  host() {
    return {
      now: () => this.clock,
      memory: () => ({ used: this.memoryUsed, limit: 1000 }),
      setTimer: (fn, ms) => this.schedule(ms, fn, "engine"),
      clearTimer: (id) => this.timers.delete(id),
      createSession: (input) => this.createSession(input),
      prompt: (input) => this.prompt(input),
      abort: (input) => this.abort(input),
      deleteSession: (input) => this.deleteSession(input),
      lastAssistantMessage: (input) => this.lastMessage(input),
      checkSession: (input) => this.checkSession(input),
      sessionStatuses: (input) => this.sessionStatuses(input),
    };
  }

  attach(engine) {
    this.engine = engine;
    return engine;
  }

  schedule(ms, fn, owner = "server") {
    const id = this.nextTimer++;
    this.timers.set(id, { at: this.clock + Math.max(0, ms), fn, owner });
    return id;
  }

  /** Timers the engine has armed. */
  engineTimers() {
    return [...this.timers.values()].filter((t) => t.owner === "engine").length;
  }

  /** Moves the clock forward by `ms`, firing timers in order and letting promises settle. */
  async advance(ms) {
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

  createSession(input) {
    this.calls.push(["createSession", input]);
    const id = `ses_${String(this.nextSession++).padStart(4, "0")}`;
    this.sessions.set(id, { id, agent: input.agent, parentID: input.parentID, busy: false, messages: [], turn: null });
    return Promise.resolve({ id, title: input.title });
  }

  prompt({ sessionID, text }) {
    this.calls.push(["prompt", sessionID, text]);
    const s = this.sessions.get(sessionID);
    if (!s) return Promise.reject(Object.assign(new Error("not found"), { status: 404 }));
    if (s.busy) throw new Error(`prompted busy session ${sessionID}`);
    const created = this.clock;
    s.busy = true;
    s.turn = [
      this.schedule(this.gapMs, () => this.emit("session.status", { sessionID, status: { type: "busy" } })),
    ];
    if (!this.hang(text)) {
      s.turn.push(
        this.schedule(this.turnMs, () => {
          const failure = this.fail(text);
          s.busy = false;
          s.turn = null;
          const info = { role: "assistant", time: { created, completed: this.clock }, finish: failure ? "error" : "stop" };
          if (failure) info.error = { name: "APIError", data: { message: "provider failed", statusCode: failure.status } };
          s.messages.push({ info, parts: [{ type: "text", text: `done: ${text}` }] });
          this.emit("session.status", { sessionID, status: { type: "idle" } });
          this.emit("session.idle", { sessionID });
          if (failure) this.emit("session.idle", { sessionID });
        }),
      );
    }
    return Promise.resolve(undefined);
  }

  abort({ sessionID }) {
    this.calls.push(["abort", sessionID]);
    const s = this.sessions.get(sessionID);
    if (s?.busy) {
      for (const t of s.turn ?? []) this.timers.delete(t);
      s.busy = false;
      s.turn = null;
      s.messages.push({
        info: { role: "assistant", time: { created: this.clock, completed: this.clock }, finish: "error", error: { name: "MessageAbortedError", data: { message: "aborted" } } },
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
    const s = this.sessions.get(sessionID);
    if (!s) return Promise.reject(Object.assign(new Error("not found"), { status: 404 }));
    return Promise.resolve(s.messages.at(-1) ?? null);
  }

  checkSession({ sessionID }) {
    const s = this.sessions.get(sessionID);
    return Promise.resolve(!s ? "gone" : s.busy ? "busy" : "idle");
  }

  /** OpenCode's `session.status()`: the non-idle sessions only. */
  sessionStatuses() {
    this.calls.push(["sessionStatuses"]);
    const map = {};
    for (const s of this.sessions.values()) if (s.busy) map[s.id] = { type: "busy" };
    return Promise.resolve(map);
  }

  prompts() {
    return this.calls.filter(([op]) => op === "prompt").length;
  }
}
