// Unit tests of the plugin under Bun (OpenCode's runtime), against the real wasm package. The
// OpenCode server itself is exercised by tests/e2e; here the SDK client is a recording stand-in.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { formatStatus } from "../src/format.ts";
import { createHost, HostCallError, memoryReading, type SessionClient } from "../src/host.ts";
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
    const engine = new (loadEngine())(createHost(client, "/work/project"));
    const id = await engine.createSession({ agent: "worker", parentID: "ses_parent", title: "t" });
    expect(id).toBe("ses_1");
    expect(calls).toEqual([{ body: { parentID: "ses_parent", title: "t" }, query: { directory: "/work/project" } }]);
    expect(engine.stats().sessions.created).toBe(1);
  });

  test("an SDK error result becomes a classified engine error", async () => {
    const { client } = recordingClient([
      { error: { name: "TooManyRequests" }, response: { status: 429 } },
      { error: { name: "NotFoundError", data: { message: "no parent" } }, response: { status: 404 } },
      { error: { name: "UnknownError" }, response: { status: 500 } },
    ]);
    const engine = new (loadEngine())(createHost(client, "/p"));
    const classes = [];
    for (let i = 0; i < 3; i++) {
      const err = await engine.createSession({ agent: "worker" }).catch((e: any) => e);
      expect(err.code).toBe("HOST_FAILED");
      classes.push(err.class);
    }
    expect(classes).toEqual(["rate_limited", "invalid", "upstream"]);
    expect(engine.stats().sessions.failed).toBe(3);
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

describe("plugin", () => {
  const input = (client: unknown) => ({ client, directory: "/p", worktree: "/p" }) as any;

  test("foreman_status answers from the engine", async () => {
    const { client } = recordingClient([]);
    const hooks = await foreman(input(client), { lanes: { worker: 16 } });
    const out = await hooks.tool!.foreman_status.execute({}, {} as any);
    expect(out).toContain(`foreman v${cargoVersion} (wasm engine)`);
    expect(out).toContain("lanes (in use/limit): other 0/4, planner 0/2, reviewer 0/4, worker 0/16");
    expect(out).toContain("sessions: 0 created, 0 failed, mean create n/a");
    await hooks.dispose!();
  });

  test("a bad option fails the load with the engine's typed error", async () => {
    const { client } = recordingClient([]);
    const err = await foreman(input(client), { lanes: { worker: -1 } }).catch((e) => e);
    expect(err.name).toBe("ForemanError");
    expect(err.code).toBe("INVALID_CONFIG");
    expect(err.key).toBe("lanes.worker");
  });

  test("the entry module exports only the plugin module", async () => {
    const entry = await import("../index.ts");
    expect(Object.keys(entry)).toEqual(["default"]);
    expect(entry.default.id).toBe("foreman");
    expect(typeof entry.default.server).toBe("function");
  });
});

describe("format", () => {
  test("status renders every figure", () => {
    const text = formatStatus({
      version: "9.9.9",
      now: 1,
      memory: { used: 512 * 2 ** 20, limit: 1024 * 2 ** 20, perMille: 500 },
      pendingCalls: 2,
      sessions: { created: 3, failed: 1, meanCreateMs: 20.25 },
      lanes: [
        { name: "worker", limit: 8, effective: 8, inUse: 3, queued: { high: 1, normal: 2, low: 0 }, pendingCalls: 2 },
        { name: "planner", limit: 2, effective: 2, inUse: 0, queued: { high: 0, normal: 0, low: 0 }, pendingCalls: 0 },
      ],
      keys: [],
      gate: { closed: false, stale: false, perMille: 500 },
      pool: { warm: 0, inUse: 3, parked: 0, retiring: 0, deleting: 0, hits: 0, misses: 3, creates: 3, affinityHits: 0, retirements: 0, deletes: 0 },
      tasks: { queued: 3, running: 3, succeeded: 4, failed: 1, cancelled: 0, timedOut: 0, unknown: 0, forgotten: 0 },
      runs: { waiting: 0, running: 0 },
      journal: { seq: 40, records: 40, bytes: 4096, epoch: 0 },
      engine: { footprint: 8192, budget: 2 ** 30, wasmMemory: 2 ** 20, fenced: false },
    });
    expect(text).toBe(
      [
        "foreman v9.9.9 (wasm engine)",
        "lanes (in use/limit): worker 3/8 (+3 queued), planner 0/2",
        "tasks: 3 queued, 3 running, 4 succeeded, 1 failed, 0 cancelled, 0 timed out",
        "sessions: 3 created, 1 failed, mean create 20.3 ms",
        "host calls pending: 2",
        "memory: 50.0 % of 1024 MiB",
      ].join("\n"),
    );
  });
});
