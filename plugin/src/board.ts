// The board: what the plugin knows about tasks beyond the engine's view of them — who asked for
// each (the calling session), what it is called (its description), which call launched it, and
// how deep in a delegation tree it sits — and the operations the tools share: delegate a batch,
// cancel a task with everything it started, cancel the tasks of a deleted session.
//
// Invariants:
// 1. A batch is checked whole before anything is submitted: a bad task changes nothing (the
//    engine validates every spec of one `delegate` call before submitting any; references
//    this plugin resolves — indexes within the call, earlier ids, depth — are checked first).
// 2. The engine is the only owner of task state; the board keeps only labels and tree links,
//    and reads states from the engine when it needs them.
// 3. Task ids are issued by the engine in order, one up from the last; the board is the only
//    caller of `delegate`, so it knows the ids a batch will get before submitting it (the last
//    issued id is found by asking the engine, since retention forgets settled tasks), and
//    checks that it got them.
import type { Engine, TaskInfo, TaskSpec } from "../../pkg/foreman.js";

/** One task of a `foreman_delegate` call, as the tool receives it. */
export interface TaskArg {
  agent: string;
  prompt: string;
  description?: string;
  priority?: "high" | "normal" | "low";
  model?: string;
  /** Numbers: indexes of tasks in the same call; strings `#12` / `12`: ids of earlier tasks. */
  dependsOn?: Array<number | string>;
  /** The id of an earlier task whose session this one continues. */
  followUp?: number | string;
  retries?: number;
  deadlineMs?: number;
  failFast?: boolean;
}

/** What the board keeps per task. */
export interface TaskLabel {
  description: string;
  parentID: string;
  /** The `delegate` call that launched it. */
  batch: number;
  /** Whether the parent hears about its settlement through a notification. */
  notify: boolean;
  /** The session it last ran in: the engine names none once a task failed or timed out (and
   * an attempt sent again runs in a new one), but a person still wants to open it. */
  session?: string;
  depth: number;
}

/** A refusal of a tool call: `code` and `field` as the engine names them. */
export class ToolInputError extends Error {
  override name = "ForemanError";
  constructor(
    readonly code: string,
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/** The tool-facing field name of an engine field path: `specs[2].prompt` → `tasks[2].prompt`. */
export function toolField(field: unknown): string {
  return typeof field === "string" ? field.replace(/^specs/, "tasks") : "tasks";
}

export class Board {
  readonly labels = new Map<number, TaskLabel>();
  /** Task by session, for the sessions tasks ran in (learned from task events). */
  readonly bySession = new Map<string, number>();
  /** Open tasks launched in each batch. */
  readonly batches = new Map<number, { parentID: string; ids: number[] }>();
  private lastId = 0;
  private nextBatch = 1;

  constructor(
    private readonly engine: Engine,
    /** Most levels of sub-agents below a session no foreman task runs in. */
    readonly maxDepth: number,
    /** The model a task of `agent` runs on when it names none (the agent's, else the default). */
    private readonly modelOf: (agent: string) => string | undefined = () => undefined,
  ) {}

  /** Whether the engine has issued `id` (a task it holds, or one retention forgot). */
  private issued(id: number): boolean {
    try {
      this.engine.status(id);
      return true;
    } catch (e) {
      return (e as { code?: string }).code === "TASK_FORGOTTEN";
    }
  }

  /** Brings `lastId` up to the engine's last issued id. Ids are issued in order and every id
   * below the next one is held or forgotten, so a galloping then binary search finds it in a
   * few `status` calls, whatever retention dropped (after a restart the tasks that would have
   * told are often gone). */
  private syncLastId(): void {
    let lo = this.lastId;
    let step = 1;
    while (this.issued(lo + step)) {
      lo += step;
      step *= 2;
    }
    let hi = lo + step; // not issued
    while (hi - lo > 1) {
      const mid = lo + Math.floor((hi - lo) / 2);
      if (this.issued(mid)) lo = mid;
      else hi = mid;
    }
    this.lastId = lo;
  }

  /** Labels for the open tasks of an engine restored from its journal (the board itself is
   * not journaled): their parent hears of them as of any other, under their agent's name. */
  adoptRestored(): void {
    this.syncLastId();
    for (const t of this.engine.list()) {
      if ((settled(t.state) && t.state !== "unknown") || this.labels.has(t.id) || !t.parentID) continue;
      this.labels.set(t.id, { description: `${t.agent} task (restored)`, parentID: t.parentID, batch: 0, notify: true, depth: 1 });
    }
  }

  /** The task that ran (or runs) in `sessionID`, if any. */
  taskOf(sessionID: string): number | undefined {
    const known = this.bySession.get(sessionID);
    if (known !== undefined) return known;
    for (const t of this.engine.list()) if (t.sessionID) this.bySession.set(t.sessionID, t.id);
    return this.bySession.get(sessionID);
  }

  /** How many foreman tasks `sessionID` is below: 0 for a session a person started. */
  depthOf(sessionID: string): number {
    const task = this.taskOf(sessionID);
    if (task === undefined) return 0;
    return this.labels.get(task)?.depth ?? 1;
  }

  /** The title of a task's session. */
  title(id: number): string | undefined {
    const label = this.labels.get(id);
    if (!label) return undefined;
    const info = this.info(id);
    return `${label.description} (foreman #${id}${info ? ` ${info.agent}` : ""})`;
  }

  info(id: number): TaskInfo | undefined {
    try {
      return this.withSession(this.engine.status(id));
    } catch {
      return undefined;
    }
  }

  /** `t`, naming the session a settled task last ran in when the engine no longer does. */
  withSession(t: TaskInfo): TaskInfo {
    if (t.sessionID || !settled(t.state)) return t;
    const session = this.labels.get(t.id)?.session;
    return session ? { ...t, sessionID: session } : t;
  }

  /** Resolves one id argument (`12`, `"12"` or `"#12"`) to a known task id. */
  resolveId(value: number | string, field: string): number {
    const id = typeof value === "number" ? value : Number(String(value).replace(/^#/, ""));
    if (!Number.isInteger(id) || id <= 0) throw new ToolInputError("INVALID_INPUT", field, `${field}: expected a task id like 12 or "#12", got ${JSON.stringify(value)}`);
    if (!this.info(id)) throw new ToolInputError("UNKNOWN_TASK", field, `${field}: no task #${id}`);
    return id;
  }

  /** Submits one call's tasks for `parentID`; returns their ids in order (see invariant 1). */
  delegate(parentID: string, tasks: TaskArg[], options: { notify: boolean }): number[] {
    if (tasks.length === 0) throw new ToolInputError("INVALID_INPUT", "tasks", "tasks: give at least one task");
    const depth = this.depthOf(parentID) + 1;
    if (depth > this.maxDepth) {
      throw new ToolInputError(
        "DEPTH_LIMIT",
        "parent",
        `nesting limit reached: this session is already ${depth - 1} level(s) of delegation deep (maxDepth ${this.maxDepth}); do the work here instead of delegating it`,
      );
    }
    this.syncLastId();
    const first = this.lastId + 1;
    const specs: TaskSpec[] = tasks.map((t, i) => {
      const at = `tasks[${i}]`;
      const deps = (t.dependsOn ?? []).map((d, j) => {
        const field = `${at}.dependsOn[${j}]`;
        if (typeof d === "number") {
          if (!Number.isInteger(d) || d < 0 || d >= i) {
            throw new ToolInputError("INVALID_INPUT", field, `${field}: a number is the index of an earlier task in this call (0..${i - 1}), got ${d}; give an earlier call's task id as a string like "#12"`);
          }
          return first + d;
        }
        return this.resolveId(d, field);
      });
      const spec: TaskSpec = { agent: t.agent, prompt: t.prompt, parentID };
      if (t.priority !== undefined) spec.priority = t.priority;
      const model = t.model ?? this.modelOf(t.agent);
      if (model !== undefined) spec.model = model;
      if (deps.length) spec.dependsOn = deps;
      if (t.followUp !== undefined) spec.followUpOf = this.resolveId(t.followUp, `${at}.followUp`);
      if (t.retries !== undefined) spec.retries = t.retries;
      if (t.deadlineMs !== undefined) spec.deadlineMs = t.deadlineMs;
      if (t.failFast !== undefined) spec.failFast = t.failFast;
      return spec;
    });
    const batch = this.nextBatch++;
    // Labels go in before the engine sees the tasks: it may ask for a session at once.
    tasks.forEach((t, i) => {
      this.labels.set(first + i, { description: describe(t), parentID, batch, notify: options.notify, depth });
    });
    let ids: number[];
    try {
      ids = this.engine.delegate(specs) as number[];
    } catch (e) {
      tasks.forEach((_, i) => this.labels.delete(first + i));
      const submitted = (e as { submitted?: number[] }).submitted ?? [];
      for (const id of submitted) this.engine.cancel(id);
      const err = e as { code?: string; field?: string; message?: string };
      // A breaker refusal keeps the engine's error: its key and probe time make the message.
      if (err.code === "BREAKER_OPEN") throw e;
      throw new ToolInputError(err.code ?? "INVALID_INPUT", toolField(err.field), (err.message ?? String(e)).replace(/specs\[/g, "tasks["));
    }
    if (ids.some((id, i) => id !== first + i)) {
      // Invariant 3 broke (another caller of the engine): dependency links may be wrong.
      for (const id of ids) this.engine.cancel(id);
      throw new ToolInputError("CONFLICT", "tasks", `the engine issued ids ${ids.join(", ")}, expected ${first}..; nothing was run, try again`);
    }
    this.lastId = ids[ids.length - 1]!;
    this.batches.set(batch, { parentID, ids: [...ids] });
    return ids;
  }

  /** Open tasks whose parent session is `sessionID`. */
  openChildren(sessionID: string): number[] {
    return this.engine
      .list({ open: true })
      .filter((t) => t.parentID === sessionID && !settled(t.state))
      .map((t) => t.id);
  }

  /** Cancels `ids` and, below each, every open task started from its session (depth first).
   * Returns the ids that were still open. */
  cancelTree(ids: number[], seen = new Set<number>()): number[] {
    const cancelled: number[] = [];
    for (const id of ids) {
      if (seen.has(id)) continue;
      seen.add(id);
      const info = this.info(id);
      if (!info) continue;
      if (info.sessionID) cancelled.push(...this.cancelTree(this.openChildren(info.sessionID), seen));
      if (!settled(info.state) && this.engine.cancel(id)) cancelled.push(id);
    }
    return cancelled;
  }

  /** A session was deleted: every open task it started is cancelled, with their descendants. */
  sessionDeleted(sessionID: string): number[] {
    return this.cancelTree(this.openChildren(sessionID));
  }
}

/** Whether a task state is final. */
export function settled(state: string): boolean {
  return state === "succeeded" || state === "failed" || state === "cancelled" || state === "timed_out" || state === "unknown";
}

function describe(t: TaskArg): string {
  const text = (t.description ?? "").trim() || t.prompt.trim().split("\n")[0]!;
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
