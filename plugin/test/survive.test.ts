// The plugin's hooks for surviving OpenCode: its own `task` tool goes through the engine's lanes,
// and a plugin started again in the same project finds the tasks of the one before.
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { foreman } from "../src/plugin.ts";

function client() {
  let n = 0;
  const ok = (data?: unknown) => ({ data, response: { status: 200 } });
  return {
    session: {
      create: async () => ok({ id: `ses_${++n}` }),
      promptAsync: async () => ({ data: undefined, response: { status: 204 } }),
      abort: async () => ok(true),
      delete: async () => ok(true),
      get: async (o: { path: { id: string } }) => ok({ id: o.path.id }),
      messages: async () => ok([]),
      status: async () => ok({}),
    },
    app: { log: async () => ({}) },
    tui: { showToast: async () => ({}) },
  };
}

const project = () => mkdtempSync(join(tmpdir(), "foreman-survive-"));
const input = (directory: string) => ({ client: client(), directory, worktree: directory }) as any;
const ctx = (sessionID: string) =>
  ({ sessionID, messageID: "m", agent: "build", directory: "/", worktree: "/", abort: new AbortController().signal, metadata() {}, ask: async () => {} }) as any;
const tick = () => new Promise((r) => setTimeout(r, 5));

async function taskCalls(options: Record<string, unknown>) {
  const hooks = await foreman(input(project()), options);
  const started: string[] = [];
  const call = (id: string) =>
    hooks["tool.execute.before"]!({ tool: "task", sessionID: "ses_p", callID: id }, { args: { subagent_type: "general", prompt: id, description: id } }).then(
      () => started.push(id),
      () => started.push(`${id} refused`),
    );
  const calls = ["a", "b", "c"].map(call);
  await tick();
  return { hooks, started, calls };
}

describe("plugin survival hooks", () => {
  test("OpenCode's task calls wait for their subagent's lane, and each return starts the next", async () => {
    const { hooks, started, calls } = await taskCalls({ lanes: { general: 1 }, persist: false });
    expect(started).toEqual(["a"]);
    await hooks["tool.execute.after"]!({ tool: "task", sessionID: "ses_p", callID: "a", args: {} }, { title: "", output: "", metadata: {} });
    await tick();
    expect(started).toEqual(["a", "b"]);
    // The parent's turn ends (an abort): the call still waiting is refused, so OpenCode never
    // creates its child session.
    await hooks.event!({ event: { type: "session.idle", properties: { sessionID: "ses_p" } } } as any);
    await Promise.all(calls);
    expect(started).toEqual(["a", "b", "c refused"]);
    await hooks.dispose!();
  });

  test("gateTask: false leaves OpenCode's task tool alone", async () => {
    const { hooks, started } = await taskCalls({ lanes: { general: 1 }, persist: false, gateTask: false });
    expect(started).toEqual(["a", "b", "c"]);
    await hooks.dispose!();
  });

  test("a plugin started again in the same project restores the tasks of the one before", async () => {
    const dir = project();
    const first = await foreman(input(dir), { lanes: { worker: 1 } });
    await first.tool!.foreman_delegate!.execute({ tasks: [{ agent: "worker", prompt: "one" }, { agent: "worker", prompt: "two" }] }, ctx("ses_user"));
    await tick();
    await first.dispose!();
    expect(existsSync(join(dir, ".opencode", "foreman", "head.json"))).toBe(true);
    const second = await foreman(input(dir), { lanes: { worker: 1 } });
    const listed = String(await second.tool!.foreman_list!.execute({}, ctx("ses_user")));
    expect(listed).toContain("#1");
    expect(listed).toContain("#2");
    // New work continues after the restored ids.
    const out = String(await second.tool!.foreman_delegate!.execute({ tasks: [{ agent: "worker", prompt: "three" }] }, ctx("ses_user")));
    expect(out).toContain("#3");
    await second.dispose!();
  });

  test("after retention forgot every settled task, a restarted plugin still numbers new tasks after the last one", async () => {
    const dir = project();
    const options = { lanes: { worker: 1 }, retention: { maxTasks: 1, maxAgeMs: 0 } };
    const first = await foreman(input(dir), options);
    await first.tool!.foreman_delegate!.execute({ tasks: [1, 2, 3, 4, 5].map((i) => ({ agent: "worker", prompt: `p${i}` })) }, ctx("ses_user"));
    await first.tool!.foreman_cancel!.execute({ ids: [1, 2, 3, 4, 5] }, ctx("ses_user"));
    await tick();
    await first.dispose!();
    const second = await foreman(input(dir), options);
    const out = String(await second.tool!.foreman_delegate!.execute({ tasks: [{ agent: "worker", prompt: "six" }, { agent: "worker", prompt: "seven", dependsOn: [0] }] }, ctx("ses_user")));
    expect(out).toContain("#6 ");
    expect(out).toContain("#7 ");
    await second.dispose!();
  });

  test("persist: false writes nothing in the project", async () => {
    const dir = project();
    const hooks = await foreman(input(dir), { persist: false });
    await hooks.tool!.foreman_delegate!.execute({ tasks: [{ agent: "worker", prompt: "x" }] }, ctx("ses_user"));
    await hooks.dispose!();
    expect(existsSync(join(dir, ".opencode"))).toBe(false);
  });
});
