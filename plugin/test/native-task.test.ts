// OpenCode's `task` tool under the engine's controller, against the real wasm package: the hook
// holds calls to the lane's limit, and every way a call can end gives its slot back once.
import { describe, expect, test } from "bun:test";
import { NativeTaskGate } from "../src/native-task.ts";
import { loadEngine } from "../src/wasm.ts";

function engineWith(config: Record<string, unknown>) {
  const Engine = loadEngine();
  return new Engine({ now: () => Date.now(), memory: () => ({ used: 1, limit: 10 }), createSession: () => undefined }, config);
}

const tick = () => new Promise((r) => setTimeout(r, 0));

/** Starts `before` for call `id` and reports when it returned. */
function launch(gate: NativeTaskGate, id: string, sessionID = "ses_parent", agent = "general") {
  const state = { started: false, error: undefined as unknown };
  const done = gate
    .before({ tool: "task", sessionID, callID: id }, { subagent_type: agent, prompt: "x", description: id })
    .then(
      () => void (state.started = true),
      (e) => void (state.error = e),
    );
  return { state, done };
}

function inUse(engine: ReturnType<typeof engineWith>, lane: string): number {
  return engine.stats().lanes.find((l) => l.name === lane)?.inUse ?? 0;
}

describe("native task gate", () => {
  test("holds task calls to the subagent's lane and starts the next when one returns", async () => {
    const engine = engineWith({ lanes: { general: 2 } });
    const gate = new NativeTaskGate(engine, () => undefined);
    const calls = ["a", "b", "c", "d"].map((id) => launch(gate, id));
    await tick();
    expect(calls.map((c) => c.state.started)).toEqual([true, true, false, false]);
    expect(inUse(engine, "general")).toBe(2);
    gate.after({ tool: "task", callID: "a" });
    await tick();
    expect(calls.map((c) => c.state.started)).toEqual([true, true, true, false]);
    gate.after({ tool: "task", callID: "a" }); // a second ending changes nothing
    await tick();
    expect(calls[3]!.state.started).toBe(false);
    for (const id of ["b", "c", "d"]) {
      gate.after({ tool: "task", callID: id });
      await tick();
    }
    expect(calls.every((c) => c.state.started)).toBe(true);
    expect(inUse(engine, "general")).toBe(0);
    expect(gate.open).toBe(0);
    engine.dispose();
  });

  test("other tools pass through untouched", async () => {
    const engine = engineWith({ lanes: { general: 1 } });
    const gate = new NativeTaskGate(engine, () => undefined);
    await gate.before({ tool: "bash", sessionID: "s", callID: "x" }, {});
    expect(gate.open).toBe(0);
    expect(inUse(engine, "general")).toBe(0);
    engine.dispose();
  });

  test("a failed call ends by its tool part, and a provider error counts for the model's breaker", async () => {
    const engine = engineWith({ lanes: { general: 8 }, breaker: { failureThreshold: 2 } });
    const gate = new NativeTaskGate(engine, () => "fake/model");
    for (const id of ["a", "b"]) {
      const c = launch(gate, id);
      await c.done;
      expect(c.state.started).toBe(true);
      gate.observe({
        type: "message.part.updated",
        properties: { part: { type: "tool", tool: "task", callID: id, state: { status: "error", error: "APIError 500: upstream down" } } },
      });
      await tick();
    }
    expect(engine.stats().keys.find((k) => k.name === "fake/model")?.breaker).toBe("open");
    expect(inUse(engine, "general")).toBe(0);
    engine.dispose();
  });

  test("an aborted parent frees every slot, including calls that still wait", async () => {
    const engine = engineWith({ lanes: { general: 2 } });
    const gate = new NativeTaskGate(engine, () => undefined);
    const calls = Array.from({ length: 8 }, (_, i) => launch(gate, `c${i}`));
    const other = launch(gate, "other", "ses_other");
    await tick();
    expect(calls.filter((c) => c.state.started).length).toBe(2);
    // The parent's turn ends (abort): OpenCode skips tool.execute.after, the session goes idle.
    gate.observe({ type: "session.idle", properties: { sessionID: "ses_parent" } });
    await tick();
    await tick();
    expect(other.state.started).toBe(true); // another session's call got a freed slot
    gate.observe({ type: "session.status", properties: { sessionID: "ses_other", status: { type: "idle" } } });
    await tick();
    expect(inUse(engine, "general")).toBe(0);
    expect(engine.stats().runs).toEqual({ waiting: 0, running: 0 });
    expect(gate.open).toBe(0);
    engine.dispose();
  });

  test("a refusal fails the call with the engine's error", async () => {
    const engine = engineWith({ lanes: { general: 1 } });
    const gate = new NativeTaskGate(engine, () => undefined);
    engine.dispose();
    const c = launch(gate, "late");
    await c.done;
    expect(c.state.started).toBe(false);
    expect((c.state.error as { code?: string }).code).toBe("DISPOSED");
    expect(gate.open).toBe(0);
  });
});
