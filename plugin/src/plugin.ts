// The plugin function: one engine per OpenCode instance (project directory), its host built on
// the plugin's SDK client, the tools that expose it, the agents, the bus events forwarded to the
// engine, toasts, and the notifications that tell a parent session what its tasks did.
//
// Options come from the plugin entry in opencode.json, `["…/plugin/index.ts", { lanes: {…} }]`:
// the engine's `ForemanConfig` plus the plugin's own keys (see options.ts). A bad option fails
// the plugin load with a typed error (`INVALID_CONFIG` naming the key, the code also leading its
// message), which OpenCode logs as `failed to load plugin`; the tools are then not offered. Nothing is written to stdout or stderr: logs go to `client.app.log`.
//
// Timing trace, off by default: with the environment variable `FOREMAN_TRACE_FILE` set to a path
// when OpenCode starts, every task transition the engine reports is appended to that file as a
// JSON line `{"at":<epoch ms when the plugin heard it>,"id":…,"state":…,"sessionID":…,
// "updatedMs":<the engine's own time of the change>,"directory":<the project>}`. It exists so a benchmark outside the
// process (`benches/e2e/p8.mjs`) can see when the engine settled a task; nothing reads it back.
import type { Config, Hooks, Plugin } from "@opencode-ai/plugin";
import type { TaskInfo } from "../../pkg/foreman.js";
import { addAgents, AGENT_LANES, modelOf } from "./agents.ts";
import { Board, settled } from "./board.ts";
import { notification } from "./format.ts";
import { createHost, type SessionClient } from "./host.ts";
import { Notifier, type NotifierClient, type Turn } from "./notify.ts";
import { parseOptions } from "./options.ts";
import { tools } from "./tools.ts";
import { join } from "node:path";
import { appendFileSync } from "node:fs";
import { NativeTaskGate } from "./native-task.ts";
import { openJournal, releaseLock, type JournalStore } from "./persist.ts";
import { loadEngine } from "./wasm.ts";

type Level = "debug" | "info" | "warn" | "error";

/** Sessions whose last turn is remembered (for notices); the least recent go first. */
const MAX_TURNS = 1000;

interface PluginClient {
  app: { log(options: { body: { service: string; level: Level; message: string } }): Promise<unknown> };
  tui?: { showToast(options: { body: { title?: string; message: string; variant: "info" | "success" | "warning" | "error"; duration?: number } }): Promise<unknown> };
}

/** One line of the timing trace (see the header); a failed write is dropped, never thrown. */
function trace(file: string, directory: string, id: number, state: string, t: TaskInfo | undefined) {
  const line = { at: Date.now(), id, state, sessionID: t?.sessionID, updatedMs: t?.updatedMs, directory };
  try {
    appendFileSync(file, JSON.stringify(line) + "\n");
  } catch {
    // The trace is a measurement aid: losing a line must not disturb the plugin.
  }
}

export const foreman: Plugin = async ({ client, directory }, options) => {
  const { settings, engine: engineConfig } = parseOptions(options);
  const lanes = engineConfig.lanes;
  if (settings.agents && (lanes === undefined || (typeof lanes === "object" && lanes !== null && !Array.isArray(lanes)))) {
    engineConfig.lanes = { ...AGENT_LANES, ...(lanes ?? {}) };
  }
  const c = client as unknown as PluginClient & SessionClient & NotifierClient;
  const log = (level: Level, message: string) => {
    c.app.log({ body: { service: "foreman", level, message } }).catch(() => {});
  };
  const toast = (message: string, variant: "info" | "success" | "warning" | "error") => {
    if (!settings.toasts) return;
    c.tui?.showToast({ body: { title: "foreman", message, variant } }).catch(() => {});
  };

  let config: Config | undefined;
  let board: Board | undefined;
  const Engine = loadEngine();
  const host = createHost(c, directory, {
    titleOf: (id) => board?.title(id),
    taskOfSession: (sessionID) => board?.taskOf(sessionID),
    cleanup: settings.cleanup,
    warmAboveMs: settings.warmAboveMs,
  });
  let engine: InstanceType<typeof Engine>;
  let store: JournalStore | undefined;
  const journalDir = join(directory, ".opencode", "foreman");
  try {
    if (settings.persist) {
      const opened = openJournal(journalDir, host, engineConfig, Engine, (level, message) => log(level, message));
      engine = opened.engine;
      store = opened.store;
      if (opened.origin !== "new") log("info", `foreman: restored ${engine.list().length} task(s) from ${opened.store.dir} (${opened.origin})`);
    } else {
      engine = new Engine(host, engineConfig);
    }
  } catch (e) {
    // OpenCode logs only the message of a plugin that fails to load: put the code in it.
    const err = e as { code?: unknown; message?: unknown };
    if (err && typeof err.code === "string" && typeof err.message === "string" && !err.message.startsWith(err.code)) {
      err.message = `${err.code}: ${err.message}`;
    }
    throw e;
  }
  board = new Board(engine, settings.maxDepth, (agent) => modelOf(config, agent));
  const b = board;
  b.adoptRestored();

  /** Each session's last turn (agent and model), from `chat.message`, for notices to it. */
  const turns = new Map<string, Turn>();
  const info = (id: number): [TaskInfo, string | undefined] | undefined => {
    const t = b.info(id);
    return t && [t, b.labels.get(id)?.description];
  };
  const notifier = new Notifier(
    c,
    directory,
    (parentID, ids) => {
      // A parent that is itself a finished task has nobody reading: its task's result is taken.
      const parentTask = b.taskOf(parentID);
      const pt = parentTask === undefined ? undefined : b.info(parentTask);
      if (pt && settled(pt.state)) return undefined;
      const done = ids.map(info).filter((x): x is [TaskInfo, string | undefined] => x !== undefined);
      const open = b.openChildren(parentID).map(info).filter((x): x is [TaskInfo, string | undefined] => x !== undefined);
      return done.length ? notification(done, open) : undefined;
    },
    log,
    (sessionID) => turns.get(sessionID),
  );

  const traceFile = process.env.FOREMAN_TRACE_FILE;
  engine.on("task", (event) => {
    if (event.type !== "task") return;
    if (traceFile) trace(traceFile, directory, event.id, event.state, b.info(event.id));
    const label = b.labels.get(event.id);
    if (!label) return;
    const t = b.info(event.id);
    if (t?.sessionID) {
      b.bySession.set(t.sessionID, event.id);
      label.session = t.sessionID;
    }
    if (!settled(event.state)) return;
    if (label.notify && settings.notify) notifier.settled(label.parentID, event.id);
    const batch = b.batches.get(label.batch);
    if (!batch) return;
    const states = batch.ids.map((id) => b.info(id)?.state ?? "unknown");
    if (!states.every(settled)) return;
    b.batches.delete(label.batch);
    const ok = states.filter((s) => s === "succeeded").length;
    const rest = states.length - ok;
    toast(
      `${states.length} task${states.length === 1 ? "" : "s"} settled: ${ok} succeeded${rest ? `, ${rest} did not` : ""}`,
      rest ? "warning" : "success",
    );
  });
  engine.on("breaker", (event) => {
    if (event.type !== "breaker") return;
    if (event.state === "open") {
      toast(`${event.key} keeps failing: its circuit breaker opened; new work for it waits for a probe`, "error");
      log("warn", `breaker of ${event.key} opened`);
    } else if (event.state === "closed") {
      toast(`${event.key} recovered: its circuit breaker closed; waiting work for it runs again`, "success");
      log("info", `breaker of ${event.key} closed`);
    }
  });

  const gate = settings.gateTask
    ? new NativeTaskGate(engine, (agent, sessionID) => {
        const own = modelOf(config, agent);
        if (own !== undefined) return own;
        const m = turns.get(sessionID)?.model;
        return m ? `${m.providerID}/${m.modelID}` : undefined;
      })
    : undefined;

  log("info", `foreman v${Engine.version()} ready in ${directory}`);

  const hooks: Hooks = {
    tool: tools({
      engine,
      board: b,
      readings: () => ({ createMs: host.createMs(), warmAboveMs: settings.warmAboveMs }),
      launched(ids, mode) {
        const agents = new Map<string, number>();
        for (const id of ids) {
          const a = b.info(id)?.agent ?? "?";
          agents.set(a, (agents.get(a) ?? 0) + 1);
        }
        const what = [...agents].map(([a, n]) => `${a} ×${n}`).join(", ");
        toast(`launched ${ids.length} task${ids.length === 1 ? "" : "s"} (${what})${mode === "wait" ? ", waiting for them" : ""}`, "info");
        log("info", `launched tasks ${ids.join(", ")} (${what}, ${mode})`);
      },
    }),
    async config(input) {
      config = input;
      if (!settings.agents) return;
      const added = addAgents(input);
      if (added.length) log("info", `agents added: ${added.join(", ")}`);
    },
    async "chat.message"(input) {
      turns.delete(input.sessionID); // re-inserted last: the map drops the least recent first
      turns.set(input.sessionID, { ...(input.agent ? { agent: input.agent } : {}), ...(input.model ? { model: input.model } : {}) });
      if (turns.size > MAX_TURNS) turns.delete(turns.keys().next().value!);
    },
    async "tool.execute.before"(input, output) {
      await gate?.before(input, output.args);
    },
    async "tool.execute.after"(input) {
      gate?.after(input);
    },
    async event({ event }) {
      try {
        engine.hostEvent(event);
      } catch (e) {
        log("debug", `event ${event.type} not taken: ${e instanceof Error ? e.message : String(e)}`);
      }
      gate?.observe(event as { type?: string; properties?: Record<string, unknown> });
      const e = event as { type: string; properties?: { sessionID?: string; status?: { type?: string }; info?: { id?: string } } };
      if (e.type === "session.status" && e.properties?.sessionID && e.properties.status?.type) {
        notifier.status(e.properties.sessionID, e.properties.status.type);
      } else if (e.type === "session.idle" && e.properties?.sessionID) {
        notifier.status(e.properties.sessionID, "idle");
      } else if (e.type === "session.deleted" && e.properties?.info?.id) {
        const id = e.properties.info.id;
        notifier.forget(id);
        turns.delete(id);
        const cancelled = b.sessionDeleted(id);
        if (cancelled.length) log("info", `session ${id} was deleted: cancelled its tasks ${cancelled.join(", ")}`);
      }
    },
    async dispose() {
      notifier.dispose();
      store?.close();
      engine.dispose();
      if (store) releaseLock(store.dir);
      // Warm sessions nobody used would stay in the user's list as empty children.
      await Promise.all(
        [...host.warm].map((id) => c.session.delete?.({ path: { id }, query: { directory } }).catch(() => undefined)),
      );
    },
  };
  return hooks;
};
