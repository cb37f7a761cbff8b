// Unit tests of the plugin under Bun (OpenCode's runtime), against the real wasm package. The
// OpenCode server itself is exercised by tests/e2e; here the SDK client is a recording stand-in.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { addAgents, modelOf } from "../src/agents.ts";
import { formatStatus, taskResult } from "../src/format.ts";
import { createHost, HostCallError, memoryReading, splitModel, type SessionClient } from "../src/host.ts";
import { GATHER_MS, Notifier } from "../src/notify.ts";
import { DEFAULT_SETTINGS, parseOptions } from "../src/options.ts";
import { foreman } from "../src/plugin.ts";
import { loadEngine } from "../src/wasm.ts";

type Reply = Awaited<ReturnType<SessionClient["session"]["create"]>>;

function recordingClient(replies: Reply[]) {
  const calls: unknown[] = [];
  const client = {
    session: {
      async create(options: unknown) {
        calls.push(options);
        const reply = replies.shift();
        if (!reply) throw new Error("no reply scripted");
        return reply;
      },
    },
    app: { log: async () => ({}) },
  };
  return { client, calls };
}

const cargoVersion = /^version = "(.+)"$/m.exec(readFileSync(new URL("../../Cargo.toml", import.meta.url), "utf8"))?.[1];

describe("wasm under Bun", () => {
  test("the engine loads and reports the crate version", () => {
    expect(loadEngine().version()).toBe(cargoVersion!);
  });

  test("run() is typed and holds its lane's limit under Bun", async () => {
    const Engine = loadEngine();
    const engine = new Engine(
      { now: () => Date.now(), memory: () => ({ used: 1, limit: 10 }), createSession: () => undefined },
      { lanes: { io: 3 } },
    );
    let active = 0;
    let peak = 0;
    const work = async (i: number): Promise<number> => {
      active++;
      peak = Math.max(peak, active);
      await new Promise((r) => setTimeout(r, 1));
      active--;
      return i * 2;
    };
    const results: number[] = await Promise.all(
      Array.from({ length: 30 }, (_, i) => engine.run(() => work(i), { lane: "io", priority: i % 2 ? "high" : "low" })),
    );
    expect(results[29]).toBe(58);
    expect(peak).toBe(3);
    const breaker = engine.breaker("p/m");
    const fromBreaker: string = await breaker.execute(async () => "through");
    expect(fromBreaker).toBe("through");
    expect(breaker.key).toBe("p/m");
    const ids = engine.delegate([{ agent: "worker", prompt: "a" }]) as number[];
    expect(engine.status(ids[0]!).state).toBe("admitted"); // its session is being created
    expect(engine.stats().tasks.running).toBe(1);
    engine.dispose();
    await expect(engine.run(() => 1)).rejects.toMatchObject({ code: "DISPOSED" });
  });
});

describe("host", () => {
  test("createSession sends parent, title and directory, and answers the id", async () => {
    const { client, calls } = recordingClient([{ data: { id: "ses_1" }, response: { status: 200 } }]);
    const host = createHost(client, "/work/project");
    const made = await host.createSession({ agent: "worker", parentID: "ses_parent", title: "t" }, 1);
    expect(typeof made === "string" ? made : made?.id).toBe("ses_1");
    expect(calls).toEqual([{ body: { parentID: "ses_parent", title: "t", agent: "worker" }, query: { directory: "/work/project" } }]);
  });

  test("an SDK error result becomes a host error with its status, which the engine classifies", async () => {
    const { client } = recordingClient([
      { error: { name: "TooManyRequests" }, response: { status: 429 } },
      { error: { name: "NotFoundError", data: { message: "no parent" } }, response: { status: 404 } },
      { error: { name: "UnknownError" }, response: { status: 500 } },
      { error: { name: "NotFoundError", data: { message: "no parent" } }, response: { status: 404 } },
    ]);
    const host = createHost(client, "/p");
    const statuses = [];
    for (let i = 0; i < 3; i++) {
      const err = await Promise.resolve(host.createSession({ agent: "worker", title: "t" }, i + 1)).catch((e: any) => e);
      expect(err).toBeInstanceOf(HostCallError);
      statuses.push(err.status);
    }
    expect(statuses).toEqual([429, 404, 500]);
    // Through the engine: a 404 is `invalid`, so the task fails at once (no retry).
    const engine = new (loadEngine())(host);
    const id = engine.delegate({ agent: "worker", prompt: "p" }) as number;
    const info = await engine.wait(id);
    expect(info.state).toBe("failed");
    expect(info.error?.class).toBe("invalid");
    engine.dispose();
  });

  test("a thrown HostCallError keeps its status", () => {
    const e = new HostCallError("x", 429, null);
    expect(e.status).toBe(429);
    expect(e.name).toBe("HostCallError");
  });

  test("memory readings are positive and within the limit's scale", () => {
    const m = memoryReading();
    expect(m.used).toBeGreaterThan(0);
    expect(m.limit).toBeGreaterThan(m.used / 4);
  });
});


/** A stand-in for the V1 SDK client: every call is recorded; sessions are numbered; `status`
 * answers `busy` for the sessions in `busy`; `get` answers 404 for the ones in `gone`. */
function fakeClient() {
  const calls: Array<[string, any]> = [];
  const busy = new Set<string>();
  const gone = new Set<string>();
  const messages = new Map<string, any[]>();
  let n = 0;
  const ok = (data?: unknown) => ({ data, response: { status: 200 } });
  const client = {
    session: {
      async create(o: any) {
        calls.push(["create", o]);
        return ok({ id: `ses_${++n}` });
      },
      async promptAsync(o: any) {
        calls.push(["promptAsync", o]);
        if (gone.has(o.path.id)) return { error: { name: "NotFoundError" }, response: { status: 404 } };
        return { data: undefined, response: { status: 204 } };
      },
      async abort(o: any) {
        calls.push(["abort", o]);
        return ok(true);
      },
      async delete(o: any) {
        calls.push(["delete", o]);
        return ok(true);
      },
      async update(o: any) {
        calls.push(["update", o]);
        return ok({});
      },
      async get(o: any) {
        calls.push(["get", o]);
        return gone.has(o.path.id) ? { error: { name: "NotFoundError" }, response: { status: 404 } } : ok({ id: o.path.id });
      },
      async messages(o: any) {
        calls.push(["messages", o]);
        return ok(messages.get(o.path.id) ?? []);
      },
      async status(o: any) {
        calls.push(["status", o]);
        return ok(Object.fromEntries([...busy].map((id) => [id, { type: "busy" }])));
      },
    },
    app: { log: async () => ({}) },
    tui: {
      async showToast(o: any) {
        calls.push(["toast", o]);
        return ok(true);
      },
    },
  };
  // The real SDK's methods read `this`: so do these, and a detached call fails as it would there.
  const session = client.session as Record<string, (o: any) => Promise<unknown>>;
  for (const [name, method] of Object.entries(session)) {
    session[name] = function (this: unknown, o: any) {
      if (this !== session) throw new TypeError(`session.${name} called without its object`);
      return method(o);
    };
  }
  return { client, calls, busy, gone, messages };
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
/** Each plugin instance gets a project folder of its own: its journal is kept there. */
const input = (client: unknown) => {
  const directory = mkdtempSync(join(tmpdir(), "foreman-plugin-"));
  return { client, directory, worktree: directory } as any;
};
const ctx = (sessionID: string, abort = new AbortController().signal) => ({ sessionID, messageID: "m", agent: "build", directory: "/p", worktree: "/p", abort, metadata() {}, ask: async () => {} }) as any;

describe("host operations", () => {
  test("prompt sends agent, the model split at its first slash, and one text part", async () => {
    const { client, calls } = fakeClient();
    const host = createHost(client as any, "/p");
    await host.prompt!({ sessionID: "ses_9", agent: "worker", model: "openrouter/anthropic/claude", text: "hi" }, 1);
    expect(calls).toEqual([
      ["promptAsync", { path: { id: "ses_9" }, query: { directory: "/p" }, body: { agent: "worker", model: { providerID: "openrouter", modelID: "anthropic/claude" }, parts: [{ type: "text", text: "hi" }] } }],
    ]);
    expect(splitModel("nomodel")).toBeUndefined();
    await expect(host.prompt!({ sessionID: "s", agent: "w", model: "bad", text: "x" }, 2)).rejects.toMatchObject({ status: 400 });
  });

  test("errors keep their HTTP status", async () => {
    const { client, gone } = fakeClient();
    gone.add("ses_x");
    const host = createHost(client as any, "/p");
    await expect(host.prompt!({ sessionID: "ses_x", agent: "w", text: "x" }, 1)).rejects.toMatchObject({ name: "HostCallError", status: 404 });
  });

  test("lastAssistantMessage reads a few newest messages and answers the last assistant one", async () => {
    const { client, calls, messages } = fakeClient();
    const host = createHost(client as any, "/p");
    expect(await host.lastAssistantMessage!({ sessionID: "ses_1" }, 1)).toBeNull();
    messages.set("ses_1", [{ info: { role: "assistant", id: "a1" }, parts: [] }, { info: { role: "user", id: "u" }, parts: [] }, { info: { role: "assistant", id: "a2" }, parts: [] }]);
    expect(((await host.lastAssistantMessage!({ sessionID: "ses_1" }, 2)) as any).info.id).toBe("a2");
    expect(calls[0]).toEqual(["messages", { path: { id: "ses_1" }, query: { directory: "/p", limit: 4 } }]);
  });

  test("checkSession: busy from the status map, then idle or gone from session.get", async () => {
    const { client, busy, gone } = fakeClient();
    const host = createHost(client as any, "/p");
    busy.add("ses_b");
    gone.add("ses_g");
    expect(await host.checkSession!({ sessionID: "ses_b" }, 1)).toBe("busy");
    expect(await host.checkSession!({ sessionID: "ses_i" }, 2)).toBe("idle");
    expect(await host.checkSession!({ sessionID: "ses_g" }, 3)).toBe("gone");
    expect(await host.sessionStatuses({})).toEqual({ ses_b: { type: "busy" } });
  });

  test("sessions that ran tasks stay unless cleanup is on; unused warm sessions are deleted", async () => {
    const { client, calls } = fakeClient();
    const host = createHost(client as any, "/p", { warmAboveMs: 0 });
    const warm = await host.createSession({ agent: "worker", title: "foreman: worker (warm)" }, 1);
    expect(calls[0]![1].body).toEqual({ title: "foreman: warm worker session (unused)", agent: "worker" });
    const used = await host.createSession({ agent: "worker", title: "foreman: worker #1" }, 2);
    await host.deleteSession!({ sessionID: used as string }, 3);
    await host.deleteSession!({ sessionID: warm as string }, 4);
    expect(calls.filter(([k]) => k === "delete").map(([, o]) => o.path.id)).toEqual([warm]);
    const cleaning = createHost(client as any, "/p", { cleanup: true });
    await cleaning.deleteSession!({ sessionID: "ses_used" }, 5);
    expect(calls.filter(([k]) => k === "delete").length).toBe(2);
  });
});

test("warm sessions are made only while session.create is slow enough for them to pay", async () => {
  const { client } = fakeClient();
  const slow = { session: { ...client.session, create: async (o: any) => (await tick(30), client.session.create(o)) } };
  const host = createHost(slow as any, "/p", { warmAboveMs: 20 });
  const warm = { agent: "worker", title: "foreman: worker (warm)" };
  await expect(host.createSession(warm, 1)).rejects.toMatchObject({ class: "cancelled" }); // nothing measured yet
  await host.createSession({ agent: "worker", title: "foreman: worker #1" }, 2);
  expect(host.createMs()!).toBeGreaterThanOrEqual(25);
  expect(await host.createSession(warm, 3)).toMatch(/^ses_/);
  const fast = createHost(client as any, "/p", { warmAboveMs: 20 });
  await fast.createSession({ agent: "worker", title: "foreman: worker #1" }, 4);
  await expect(fast.createSession(warm, 5)).rejects.toMatchObject({ class: "cancelled" });
});

describe("options", () => {
  test("the plugin's own options are checked with the engine's error shape", () => {
    expect(parseOptions(undefined).settings).toEqual(DEFAULT_SETTINGS);
    expect(parseOptions({ notify: false, maxDepth: 3, lanes: { worker: 2 } })).toEqual({
      settings: { ...DEFAULT_SETTINGS, notify: false, maxDepth: 3 },
      engine: { lanes: { worker: 2 } },
    });
    for (const [bad, key] of [[{ maxDepth: 0 }, "maxDepth"], [{ agents: "yes" }, "agents"], [[1], "options"]] as const) {
      let err: any;
      try {
        parseOptions(bad);
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({ name: "ForemanError", code: "INVALID_CONFIG", key });
    }
  });
});

describe("agents", () => {
  test("foreman's agents are added where the user has none, and the user's stay as written", () => {
    const config: any = { agent: { reviewer: { prompt: "mine" } }, default_agent: "build" };
    expect(addAgents(config)).toEqual(["commander", "planner", "worker"]);
    expect(config.agent.reviewer).toEqual({ prompt: "mine" });
    expect(config.agent.commander.mode).toBe("primary");
    expect(config.default_agent).toBe("build");
    expect(modelOf({ model: "a/b", agent: { worker: { model: "c/d" } } } as any, "worker")).toBe("c/d");
    expect(modelOf({ model: "a/b" } as any, "planner")).toBe("a/b");
  });
});

describe("plugin", () => {
  test("foreman_status answers from the engine", async () => {
    const { client } = fakeClient();
    const hooks = await foreman(input(client), { lanes: { worker: 16 } });
    const out = await hooks.tool!.foreman_status!.execute({}, ctx("ses_p"));
    expect(out).toContain(`foreman v${cargoVersion} (wasm engine)`);
    expect(out).toContain("lanes (in use/limit): commander 0/2, other 0/4, planner 0/2, reviewer 0/4, worker 0/16");
    expect(out).toContain("sessions: 0 created, mean create n/a; warm sessions only above 100 ms");
    await hooks.dispose!();
  });

  test("a bad option fails the load with the engine's typed error", async () => {
    const { client } = fakeClient();
    const err = await foreman(input(client), { lanes: { worker: -1 } }).catch((e) => e);
    expect(err).toMatchObject({ name: "ForemanError", code: "INVALID_CONFIG", key: "lanes.worker" });
    expect(err.message).toStartWith("INVALID_CONFIG: invalid config `lanes.worker`");
    const own = await foreman(input(client), { maxDepth: 99 }).catch((e) => e);
    expect(own).toMatchObject({ name: "ForemanError", code: "INVALID_CONFIG", key: "maxDepth" });
  });

  test("delegate titles child sessions by description, links in-call dependencies, and refuses a bad batch whole", async () => {
    const { client, calls } = fakeClient();
    const hooks = await foreman(input(client), {});
    const t = hooks.tool!;
    const out = await t.foreman_delegate!.execute(
      { tasks: [{ agent: "worker", prompt: "a", description: "first part" }, { agent: "worker", prompt: "b", dependsOn: [0] }] },
      ctx("ses_parent"),
    );
    expect(out).toContain('#1 admitted · worker · "first part"');
    expect(out).toContain('#2 queued · worker · "b"');
    await tick();
    const created = calls.filter(([k]) => k === "create").map(([, o]) => o.body);
    expect(created[0]).toEqual({ title: "first part (foreman #1 worker)", parentID: "ses_parent", agent: "worker" });
    const bad = await t.foreman_delegate!.execute({ tasks: [{ agent: "worker", prompt: "c" }, { agent: "worker", prompt: "d", retries: 99 }] }, ctx("ses_parent")).catch((e: Error) => e);
    expect(String(bad)).toContain("INVALID_INPUT (tasks[1].retries)");
    const badIndex = await t.foreman_delegate!.execute({ tasks: [{ agent: "worker", prompt: "c", dependsOn: [0] }] }, ctx("ses_parent")).catch((e: Error) => e);
    expect(String(badIndex)).toContain("INVALID_INPUT (tasks[0].dependsOn[0])");
    const list = await t.foreman_list!.execute({ parent: "this" }, ctx("ses_parent"));
    expect(String(list).split("\n")[0]).toBe("2 tasks:");
    await hooks.dispose!();
  });

  test("nesting stops at maxDepth, and cancelling a task cancels what it launched", async () => {
    const { client, calls } = fakeClient();
    const hooks = await foreman(input(client), { maxDepth: 2 });
    const t = hooks.tool!;
    await t.foreman_delegate!.execute({ tasks: [{ agent: "worker", prompt: "top" }] }, ctx("ses_user"));
    await tick(5);
    const top = calls.filter(([k]) => k === "promptAsync").map(([, o]) => o.path.id)[0];
    expect(top).toBe("ses_1");
    await t.foreman_delegate!.execute({ tasks: [{ agent: "worker", prompt: "mid" }] }, ctx("ses_1"));
    await tick(5);
    const deep = await t.foreman_delegate!.execute({ tasks: [{ agent: "worker", prompt: "deep" }] }, ctx("ses_2")).catch((e: Error) => e);
    expect(String(deep)).toContain("DEPTH_LIMIT (parent)");
    const out = await t.foreman_cancel!.execute({ ids: [1] }, ctx("ses_user"));
    expect(out).toBe("Cancelled 1 task(s): #1.\nAlso cancelled what they launched: #2.");
    await tick(5);
    expect([...new Set(calls.filter(([k]) => k === "abort").map(([, o]) => o.path.id))].sort()).toEqual(["ses_1", "ses_2"]);
    await hooks.dispose!();
  });

  test("mode wait from a running task's session lends its slot: a child runs in a full lane", async () => {
    const { client, calls } = fakeClient();
    const hooks = await foreman(input(client), { lanes: { worker: 1 } });
    const t = hooks.tool!;
    await t.foreman_delegate!.execute({ tasks: [{ agent: "worker", prompt: "top" }] }, ctx("ses_user"));
    await tick(5);
    const prompted = () => calls.filter(([k]) => k === "promptAsync").map(([, o]) => o.path.id);
    expect(prompted()).toEqual(["ses_1"]);
    // Task #1 holds the lane's only slot; its session delegates in wait mode and blocks.
    const abort = new AbortController();
    const waiting = t.foreman_delegate!.execute({ tasks: [{ agent: "worker", prompt: "child" }], mode: "wait" }, ctx("ses_1", abort.signal)).catch((e: Error) => e);
    for (let i = 0; i < 10; i++) await tick(5);
    expect(prompted()).toEqual(["ses_1", "ses_2"]); // the child runs on #1's lent slot
    const stats = await t.foreman_status!.execute({}, ctx("ses_user"));
    expect(String(stats)).toContain("worker 1/1");
    abort.abort();
    expect(String(await waiting)).toContain("Interrupted: cancelled 1 open task(s) (#2)");
    await hooks.dispose!();
  });

  test("mode wait: interrupting the tool call cancels what it waits for", async () => {
    const { client, calls } = fakeClient();
    const hooks = await foreman(input(client), { lanes: { worker: 1 } });
    const abort = new AbortController();
    const waiting = hooks.tool!.foreman_delegate!.execute({ tasks: [{ agent: "worker", prompt: "a" }, { agent: "worker", prompt: "b" }], mode: "wait" }, ctx("ses_p", abort.signal)).catch((e: Error) => e);
    await tick(5);
    abort.abort();
    expect(String(await waiting)).toBe("Error: Interrupted: cancelled 2 open task(s) (#1, #2).");
    expect(calls.filter(([k]) => k === "toast").map(([, o]) => o.body.message)).toEqual(["launched 2 tasks (worker ×2), waiting for them"]);
    const list = await hooks.tool!.foreman_list!.execute({ state: "cancelled" }, ctx("ses_p"));
    expect(String(list)).toContain("#2 cancelled"); // it was queued: cancelled at once (#1 settles once its abort is confirmed)
    await hooks.dispose!();
  });

  test("a model whose breaker opens: failed tasks still name their session, queued failFast work fails, a failFast launch is refused with the probe time", async () => {
    const { client } = fakeClient();
    // Every prompt to this model fails upstream (HTTP 500 from promptAsync).
    const prompt = client.session.promptAsync;
    client.session.promptAsync = function (this: unknown, o: any) {
      return o.body.model?.modelID === "down" ? Promise.resolve({ error: { name: "UnknownError" }, response: { status: 500 } }) : prompt.call(this, o);
    } as any;
    const hooks = await foreman(input(client), { keys: { "p/down": 1 }, breaker: { openMs: 60_000 } });
    const t = hooks.tool!;
    const tasks = [0, 1, 2, 3, 4].map((i) => ({ agent: "worker", prompt: `fail ${i}`, description: `fail ${i}`, model: "p/down" }));
    await t.foreman_delegate!.execute({ tasks: [...tasks, { agent: "worker", prompt: "queued", description: "queued fast", model: "p/down", failFast: true }] }, ctx("ses_p"));
    for (let i = 0; i < 50; i++) await tick(5);
    const list = String(await t.foreman_list!.execute({}, ctx("ses_p")));
    for (let id = 1; id <= 5; id++) expect(list).toMatch(new RegExp(`^#${id} failed · worker · "fail \\d" · session ses_\\d+ · upstream: `, "m"));
    expect(list).toMatch(/^#6 failed · worker · "queued fast" · upstream: BREAKER_OPEN: the circuit breaker of p\/down opened while it waited/m);
    const refused = await t.foreman_delegate!.execute({ tasks: [{ agent: "worker", prompt: "x", model: "p/down", failFast: true }] }, ctx("ses_p")).catch((e: Error) => e);
    expect(String(refused)).toMatch(/BREAKER_OPEN: p\/down keeps failing and its circuit breaker is open \(the next probe goes in (59|60) s\); .*nothing was launched/);
    await hooks.dispose!();
  });

  test("a deleted parent session cancels its queued tasks", async () => {
    const { client } = fakeClient();
    const hooks = await foreman(input(client), { lanes: { worker: 1 } });
    await hooks.tool!.foreman_delegate!.execute({ tasks: [{ agent: "worker", prompt: "a" }, { agent: "worker", prompt: "b" }] }, ctx("ses_gone"));
    await hooks.event!({ event: { type: "session.deleted", properties: { info: { id: "ses_gone" } } } as any });
    const out = await hooks.tool!.foreman_result!.execute({ ids: [2] }, ctx("ses_gone"));
    expect(String(out)).toStartWith("#2 cancelled");
    await hooks.dispose!();
  });

  test("FOREMAN_TRACE_FILE traces every task transition with its time; unset, nothing is written", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "foreman-trace-")), "trace.jsonl");
    const { client } = fakeClient();
    const before = process.env.FOREMAN_TRACE_FILE;
    process.env.FOREMAN_TRACE_FILE = file;
    const traced = input(client);
    let hooks;
    try {
      hooks = await foreman(traced, {});
    } finally {
      if (before === undefined) delete process.env.FOREMAN_TRACE_FILE;
      else process.env.FOREMAN_TRACE_FILE = before;
    }
    const t0 = Date.now();
    const untraced = await foreman(input(fakeClient().client), {});
    await untraced.tool!.foreman_delegate!.execute({ tasks: [{ agent: "worker", prompt: "not traced" }] }, ctx("ses_other"));
    await hooks.tool!.foreman_delegate!.execute({ tasks: [{ agent: "worker", prompt: "a" }] }, ctx("ses_p"));
    await tick(5);
    await hooks.tool!.foreman_cancel!.execute({ ids: [1] }, ctx("ses_p"));
    await tick(5);
    const lines = readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const states = lines.map((l) => l.state);
    expect(states.slice(0, 4)).toEqual(["queued", "admitted", "session_acquired", "dispatched"]);
    // Only the traced instance writes; each line carries its time and the engine's.
    expect(lines.every((l) => l.id === 1 && l.at >= t0 && l.at <= Date.now() && typeof l.updatedMs === "number" && l.directory === traced.directory)).toBe(true);
    expect(lines.find((l) => l.state === "dispatched").sessionID).toBe("ses_1");
    await hooks.dispose!();
    await untraced.dispose!();
  });

  test("the entry module exports only the plugin module", async () => {
    const entry = await import("../index.ts");
    expect(Object.keys(entry)).toEqual(["default"]);
    expect(entry.default.id).toBe("foreman");
    expect(typeof entry.default.server).toBe("function");
  });
});

describe("parent notifications", () => {
  test("one notice per idle period, never while busy, batched", async () => {
    const { client, calls, busy } = fakeClient();
    const turn = { agent: "commander", model: { providerID: "p", modelID: "m" } };
    const n = new Notifier(client as any, "/p", (_p, ids) => `[foreman] ${ids.join(",")}`, () => {}, () => turn);
    const sent = () => calls.filter(([k]) => k === "promptAsync").map(([, o]) => o.body.parts[0].text);
    n.status("ses_p", "busy");
    n.settled("ses_p", 1);
    n.settled("ses_p", 2);
    await tick(GATHER_MS + 50);
    expect(sent()).toEqual([]); // busy: nothing sent
    n.status("ses_p", "idle");
    await tick(GATHER_MS + 50);
    expect(sent()).toEqual(["[foreman] 1,2"]);
    n.settled("ses_p", 3);
    await tick(GATHER_MS + 50);
    expect(sent()).toHaveLength(1); // same idle period: waits
    n.status("ses_p", "busy");
    n.status("ses_p", "idle");
    await tick(GATHER_MS + 50);
    expect(sent()).toEqual(["[foreman] 1,2", "[foreman] 3"]);
    // The server's own status map is asked too: busy there means wait.
    n.status("ses_p", "busy");
    n.status("ses_p", "idle");
    busy.add("ses_p");
    n.settled("ses_p", 4);
    await tick(GATHER_MS + 50);
    expect(sent()).toHaveLength(2);
    // Synthetic, and as the parent's own agent and model (not the defaults).
    expect(calls.filter(([k]) => k === "promptAsync").every(([, o]) => o.body.parts[0].synthetic === true && o.body.agent === "commander" && o.body.model.modelID === "m")).toBe(true);
    n.dispose();
  });
});

describe("format", () => {
  test("status renders every figure", () => {
    const text = formatStatus(
      {
        version: "9.9.9",
        now: 10_000,
        memory: { used: 512 * 2 ** 20, limit: 1024 * 2 ** 20, perMille: 500 },
        pendingCalls: 2,
        lanes: [
          { name: "worker", limit: 8, effective: 4, inUse: 3, queued: { high: 1, normal: 2, low: 0 } },
          { name: "planner", limit: 2, effective: 2, inUse: 0, queued: { high: 0, normal: 0, low: 1 } },
        ],
        keys: [
          { name: "a/m", limit: 3, effective: 3, inUse: 3, queued: 2, breaker: "closed", nextProbeAt: null },
          { name: "b/m", limit: null, effective: null, inUse: 0, queued: 0, breaker: "open", nextProbeAt: 40_000 },
        ],
        gate: { closed: false, stale: false, perMille: 500 },
        pool: { warm: 1, inUse: 3, parked: 2, retiring: 0, deleting: 0, hits: 4, misses: 3, creates: 5, affinityHits: 0, retirements: 0, deletes: 1 },
        tasks: { queued: 3, running: 3, succeeded: 4, failed: 1, cancelled: 0, timedOut: 0, unknown: 0, forgotten: 0 },
        runs: { waiting: 0, running: 0 },
        journal: { seq: 40, records: 40, bytes: 4096, epoch: 0 },
        engine: { footprint: 8192, budget: 2 ** 30, wasmMemory: 2 ** 20, fenced: false },
      },
      { createMs: 21.25, warmAboveMs: 100 },
    );
    expect(text).toBe(
      [
        "foreman v9.9.9 (wasm engine)",
        "lanes (in use/limit): worker 3/4 of 8 (+3 queued), planner 0/2 (+1 queued)",
        "models (in use/limit): a/m 3/3 (+2 queued), b/m 0/unlimited, breaker open (probe in 30 s)",
        "queued by priority: 1 high, 2 normal, 1 low",
        "tasks: 3 queued, 3 running, 4 succeeded, 1 failed, 0 cancelled, 0 timed out",
        "sessions: 5 created, mean create 21.3 ms; warm sessions only above 100 ms",
        "pool: 1 warm, 3 in use, 2 parked, 4 reused, 1 deleted",
        "host calls pending: 2",
        "memory: 50.0 % of 1024 MiB, gate open",
      ].join("\n"),
    );
  });

  test("a long reply is cut with the session to read it in", () => {
    const info = { id: 7, agent: "worker", state: "succeeded", priority: "normal", attempts: 1, createdMs: 0, updatedMs: 2500, sessionID: "ses_7", dependsOn: [], result: "x".repeat(500) } as const;
    const text = taskResult(info as any, "long one", 100);
    expect(text.split("\n")[0]).toBe('#7 succeeded · worker · "long one" · session ses_7 · 1 attempt · 2.5 s');
    expect(text).toContain("[… truncated: 500 characters in all; the whole reply is in session ses_7]");
  });
});
