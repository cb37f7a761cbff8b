// The foreman host for OpenCode: the engine asks, this file does the I/O with the plugin's V1 SDK
// client and reports back. Every failed call is thrown as a `HostCallError` carrying the HTTP
// `status`, so the engine classifies it (429 → rate_limited, other 4xx → invalid, else upstream).
//
// Decisions the engine leaves to its host:
// 1. Titles. The engine names a task's session `foreman: <agent> #<task>`; the plugin knows the
//    task's `description` and passes a `titleOf` that turns that into the title a person reads
//    in the session list. Warm sessions (made ahead by the pool) are titled
//    `foreman: warm <agent> session (unused)` and renamed to their task's title when first used.
// 2. Warm sessions only where they pay. The pool asks for warm sessions so a queued task skips
//    `session.create` when its turn comes; that saves one create's latency per task, and costs
//    an extra child session that may never be used. The host measures `session.create` (a
//    moving mean over task sessions) and makes warm sessions only while it takes at least
//    `warmAboveMs` (default 100 ms, a noticeable share of a task's start: a prompt's round trip
//    is ~110-185 ms on a local server, create ~20 ms); otherwise it declines the request
//    (class `cancelled`, which the pool takes as "no warm session") and tasks create their own.
// 3. Keeping what users read. A session that ran a task stays when the engine retires it (users
//    open it to see what the sub-agent did), unless the `cleanup` option is on; a warm session
//    that never ran anything is always deleted when retired, so the session list never fills
//    with empty children.
import { constrainedMemory, memoryUsage } from "node:process";
import { totalmem } from "node:os";
import type { ForemanHost } from "../../pkg/foreman.js";

type Result<T> = Promise<{ data?: T; error?: unknown; response?: { status: number } }>;

/** A session's non-idle status, as `session.status()` reports it. */
export type SessionStatus = { type: "busy" | "retry" | "idle"; attempt?: number; message?: string; next?: number };

/** The part of the OpenCode SDK client (V1) the plugin uses. */
export interface SessionClient {
  session: {
    create(options: { body?: { parentID?: string; title?: string }; query?: { directory?: string } }): Result<{ id: string }>;
    promptAsync?(options: {
      path: { id: string };
      query?: { directory?: string };
      body: {
        agent?: string;
        model?: { providerID: string; modelID: string };
        parts: Array<{ type: "text"; text: string; synthetic?: boolean }>;
      };
    }): Result<unknown>;
    abort?(options: { path: { id: string }; query?: { directory?: string } }): Result<unknown>;
    delete?(options: { path: { id: string }; query?: { directory?: string } }): Result<unknown>;
    get?(options: { path: { id: string }; query?: { directory?: string } }): Result<{ id: string; parentID?: string; title?: string }>;
    update?(options: { path: { id: string }; query?: { directory?: string }; body?: { title?: string } }): Result<unknown>;
    messages?(options: { path: { id: string }; query?: { directory?: string; limit?: number } }): Result<Array<{ info: { role: string }; parts: unknown[] }>>;
    status?(options?: { query?: { directory?: string } }): Result<Record<string, SessionStatus>>;
  };
}

/** An error from an SDK call, carrying what the engine classifies by. */
export class HostCallError extends Error {
  override name = "HostCallError";
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly detail: unknown,
  ) {
    super(message);
  }
}

/** Bytes in use by this process and the budget: the container's limit when there is one,
 * else the machine's memory. The resident set alone (`memoryUsage.rss()`), not
 * `memoryUsage()`, which also gathers the JS heap's statistics: the engine asks for a reading
 * before each decision that could admit LOW work, up to one a millisecond. */
export function memoryReading(): { used: number; limit: number } {
  const total = totalmem();
  const constrained = typeof constrainedMemory === "function" ? constrainedMemory() : 0;
  const limit = constrained && constrained > 0 && constrained < total ? constrained : total;
  return { used: memoryUsage.rss(), limit };
}

/** What the host needs to know from the rest of the plugin. */
export interface HostOptions {
  /** The title for a task's session, from the engine's `foreman: <agent> #<task>`; undefined
   * keeps the engine's. Called after the call that submitted the task has returned. */
  titleOf?(taskId: number, agent: string): string | undefined;
  /** The task a session was acquired for (to rename a warm session when it is first used). */
  taskOfSession?(sessionID: string): number | undefined;
  /** Delete sessions that ran tasks when the engine retires them (default: keep them). */
  cleanup?: boolean;
  /** Make warm sessions only while `session.create` takes at least this long on average, ms
   * (default 100; 0: always). */
  warmAboveMs?: number;
}

/** Weight of the newest `session.create` in the moving mean. */
const CREATE_MEAN_WEIGHT = 0.2;

/** How many of a session's newest messages `lastAssistantMessage` reads: the final answer
 * and, at most, the user message and a tool step before it. */
const LAST_MESSAGES = 4;

/** Runs one SDK call; a result with `error` (or no data where data is needed) throws. */
async function call<T>(what: string, result: Result<T>, needData = false): Promise<T> {
  let r: Awaited<Result<T>>;
  try {
    r = await result;
  } catch (e) {
    // A thrown fetch error (connection refused, reset): the server is unreachable.
    throw new HostCallError(`${what} failed: ${e instanceof Error ? e.message : String(e)}`, undefined, e);
  }
  const status = r.response?.status;
  if (r.error !== undefined || (status !== undefined && status >= 400) || (needData && r.data === undefined)) {
    throw new HostCallError(`${what} failed${status ? ` (HTTP ${status})` : ""}: ${describe(r.error)}`, status, r.error);
  }
  return r.data as T;
}

function missing(op: string): never {
  throw new HostCallError(`the OpenCode client has no ${op}`, 400, null);
}

/** Splits `provider/model` at its first slash (model ids may contain more). */
export function splitModel(model: string): { providerID: string; modelID: string } | undefined {
  const cut = model.indexOf("/");
  if (cut <= 0 || cut === model.length - 1) return undefined;
  return { providerID: model.slice(0, cut), modelID: model.slice(cut + 1) };
}

const TASK_TITLE = /^foreman: (.+) #(\d+)$/;
const WARM_TITLE = /^foreman: (.+) \(warm\)$/;

/** A host over the V1 SDK `client`, for sessions in `directory`. */
export function createHost(client: SessionClient, directory: string, options: HostOptions = {}): ForemanHost & {
  sessionStatuses(input: unknown): Promise<Record<string, SessionStatus>>;
  /** Sessions made ahead by the pool that have not run a task yet. */
  readonly warm: ReadonlySet<string>;
  /** Moving mean of `session.create` for task sessions, ms (undefined before the first). */
  createMs(): number | undefined;
} {
  const warmAboveMs = options.warmAboveMs ?? 100;
  let createMean: number | undefined;
  const query = { directory };
  const sdk = client.session;
  // The SDK's methods read `this`: each is called on the session object, never detached.
  const s = {
    create: (o: Parameters<typeof sdk.create>[0]) => sdk.create(o),
    promptAsync: sdk.promptAsync && ((o: Parameters<NonNullable<typeof sdk.promptAsync>>[0]) => sdk.promptAsync!(o)),
    abort: sdk.abort && ((o: Parameters<NonNullable<typeof sdk.abort>>[0]) => sdk.abort!(o)),
    delete: sdk.delete && ((o: Parameters<NonNullable<typeof sdk.delete>>[0]) => sdk.delete!(o)),
    get: sdk.get && ((o: Parameters<NonNullable<typeof sdk.get>>[0]) => sdk.get!(o)),
    update: sdk.update && ((o: Parameters<NonNullable<typeof sdk.update>>[0]) => sdk.update!(o)),
    messages: sdk.messages && ((o: Parameters<NonNullable<typeof sdk.messages>>[0]) => sdk.messages!(o)),
    status: sdk.status && ((o?: Parameters<NonNullable<typeof sdk.status>>[0]) => sdk.status!(o)),
  };
  const warm = new Set<string>();
  const statuses = async (): Promise<Record<string, SessionStatus>> =>
    (await call("session.status", (s.status ?? (() => missing("session.status")))({ query }), true)) ?? {};
  return {
    warm,
    createMs: () => createMean,
    // Epoch ms: the clock OpenCode stamps messages with, which the completion rule compares.
    now: () => Date.now(),
    // Timers and deadlines run on this one, so a wall-clock step (NTP, a suspended laptop
    // waking) moves none of them.
    monotonic: () => performance.now(),
    memory: memoryReading,
    async createSession(input) {
      let title = input.title;
      const task = TASK_TITLE.exec(title);
      const warming = WARM_TITLE.test(title);
      if (task && options.titleOf) {
        // The engine may ask from inside `delegate`, before the plugin has the task's id: let
        // that call return first.
        await Promise.resolve();
        title = options.titleOf(Number(task[2]), task[1]!) ?? title;
      } else if (warming) {
        if (warmAboveMs > 0 && (createMean === undefined || createMean < warmAboveMs)) {
          throw Object.assign(new HostCallError(`no warm session: session.create takes ${createMean?.toFixed(0) ?? "?"} ms, under ${warmAboveMs} ms`, undefined, null), { class: "cancelled" });
        }
        title = `foreman: warm ${input.agent} session (unused)`;
      }
      const body: { parentID?: string; title: string; agent?: string } = { title };
      if (input.parentID !== undefined) body.parentID = input.parentID;
      // The server takes `agent` too (the V1 types do not list it): the session opens as it.
      body.agent = input.agent;
      const started = performance.now();
      const created = await call("session.create", s.create({ body, query }), true);
      if (!warming) {
        const ms = performance.now() - started;
        createMean = createMean === undefined ? ms : createMean + CREATE_MEAN_WEIGHT * (ms - createMean);
      }
      if (!created?.id) throw new HostCallError("session.create answered no id", 502, created);
      if (warming) warm.add(created.id);
      return created.id;
    },
    async prompt(input) {
      const model = input.model === undefined ? undefined : splitModel(input.model);
      if (input.model !== undefined && !model) throw new HostCallError(`model must be provider/model, got ${input.model}`, 400, null);
      if (warm.delete(input.sessionID)) await renameWarm(input.sessionID);
      await call(
        "session.promptAsync",
        (s.promptAsync ?? (() => missing("session.promptAsync")))({
          path: { id: input.sessionID },
          query,
          body: { agent: input.agent, ...(model ? { model } : {}), parts: [{ type: "text", text: input.text }] },
        }),
      );
    },
    async abort(input) {
      await call("session.abort", (s.abort ?? (() => missing("session.abort")))({ path: { id: input.sessionID }, query }));
    },
    async deleteSession(input) {
      const unused = warm.delete(input.sessionID);
      if (!unused && !options.cleanup) return; // it ran a task: kept for the user to read
      await call("session.delete", (s.delete ?? (() => missing("session.delete")))({ path: { id: input.sessionID }, query }));
    },
    async lastAssistantMessage(input) {
      const messages = await call(
        "session.messages",
        (s.messages ?? (() => missing("session.messages")))({ path: { id: input.sessionID }, query: { directory, limit: LAST_MESSAGES } }),
        true,
      );
      for (let i = messages.length - 1; i >= 0; i--) if (messages[i]!.info.role === "assistant") return messages[i];
      return null;
    },
    async checkSession(input) {
      const map = await statuses();
      const status = map[input.sessionID];
      if (status && status.type !== "idle") return "busy";
      try {
        await call("session.get", (s.get ?? (() => missing("session.get")))({ path: { id: input.sessionID }, query }), true);
        return "idle";
      } catch (e) {
        if (e instanceof HostCallError && e.status === 404) return "gone";
        throw e;
      }
    },
    async sessionStatuses() {
      const map = await statuses();
      const busy: Record<string, SessionStatus> = {};
      for (const [id, status] of Object.entries(map)) if (status.type !== "idle") busy[id] = status;
      return busy;
    },
  };

  async function renameWarm(sessionID: string) {
    const task = options.taskOfSession?.(sessionID);
    const title = task === undefined ? undefined : options.titleOf?.(task, "");
    if (!title || !s.update) return;
    // A failed rename leaves the warm title; the task runs all the same.
    await s.update({ path: { id: sessionID }, query, body: { title } }).catch(() => undefined);
  }
}

function describe(error: unknown): string {
  if (error && typeof error === "object") {
    const e = error as { name?: string; data?: { message?: string }; message?: string };
    return [e.name, e.data?.message ?? e.message].filter(Boolean).join(": ") || JSON.stringify(error);
  }
  return String(error);
}
