// The tools a model uses: foreman_delegate, foreman_result, foreman_status, foreman_list and
// foreman_cancel. Arguments are typed with `tool.schema` (zod); values the engine checks (ranges,
// references) are refused with the engine's code and the argument's path, and a refused call
// changes nothing. Outputs are plain text, one line per task, ids first.
import { tool } from "@opencode-ai/plugin";
import type { Engine, TaskInfo } from "../../pkg/foreman.js";
import { Board, settled, ToolInputError, type TaskArg } from "./board.ts";
import { formatStatus, RESULT_CHARS, taskLine, taskResult, type SessionReadings } from "./format.ts";

const z = tool.schema;

/** Longest a `foreman_result` call blocks, ms. */
const MAX_BLOCK_MS = 30 * 60_000;

export interface ToolDeps {
  engine: Engine;
  board: Board;
  /** Called after a batch is launched (toasts). */
  launched(ids: number[], mode: "background" | "wait"): void;
  /** What the host measured about sessions. */
  readings?(): SessionReadings;
}

const idArg = z.union([z.number().int(), z.string()]);

/** Turns a thrown refusal into the message a model reads: code, field, reason. `now` is the
 * engine's clock, to say when an open breaker lets a probe through. */
function refusal(e: unknown, now?: number): Error {
  if (e instanceof ToolInputError) return new Error(`${e.code} (${e.field}): ${e.message}`);
  const err = e as { code?: string; field?: string; message?: string; key?: string; retryAt?: number | null };
  if (err && typeof err === "object" && err.code === "BREAKER_OPEN" && typeof err.key === "string") {
    const when = typeof err.retryAt === "number" && now !== undefined ? `the next probe goes in ${Math.max(0, Math.ceil((err.retryAt - now) / 1000))} s` : "a probe is deciding";
    return new Error(`BREAKER_OPEN: ${err.key} keeps failing and its circuit breaker is open (${when}); a task with failFast is refused while it is, and nothing was launched. Launch without failFast to wait for it.`);
  }
  if (err && typeof err === "object" && typeof err.code === "string") {
    return new Error(`${err.code}${err.field ? ` (${err.field})` : ""}: ${err.message ?? ""}`);
  }
  return e instanceof Error ? e : new Error(String(e));
}

function until<T>(promise: Promise<T>, ms: number, signal: AbortSignal | undefined): Promise<T | "timeout" | "aborted"> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done("timeout"), ms);
    const onAbort = () => done("aborted");
    function done(v: T | "timeout" | "aborted") {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      resolve(v);
    }
    if (signal?.aborted) return done("aborted");
    signal?.addEventListener("abort", onAbort, { once: true });
    promise.then(done, (e) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      reject(e);
    });
  });
}

export function tools({ engine, board, launched, readings }: ToolDeps) {
  const label = (id: number) => board.labels.get(id)?.description;
  const ids = (values: Array<number | string>, field: string) => values.map((v, i) => board.resolveId(v, `${field}[${i}]`));

  return {
    foreman_delegate: tool({
      description: `Run work in parallel sub-agent sessions (foreman). Use it whenever a job splits into pieces that can proceed independently (reading or changing different files, researching separate questions, reviewing), or to run a long piece in the background while you continue.
- One call can launch many tasks: put them all in \`tasks\`. Each task needs \`agent\` (e.g. "worker", "planner", "reviewer", or any agent of this project) and a self-contained \`prompt\` (the sub-agent sees nothing of this conversation), plus a short \`description\` (its session's title).
- Order: \`dependsOn\` lists what must succeed first — a number is the index of an earlier task in the same call (0-based), a string "#12" is the id of a task from an earlier call. A failed dependency cancels its dependents.
- \`followUp\`: "#12" continues task 12's session (it keeps that conversation).
- mode "background" (default): answers at once with task ids; when tasks settle you get one notice listing them, then read replies with foreman_result. mode "wait": blocks until all settle and returns every reply in one answer (a foreman task waiting so lends its slot to its own tasks: nested delegation never deadlocks a lane).
- foreman runs at most the configured number per agent lane and per model at once and queues the rest by priority; launching many is fine.`,
      args: {
        tasks: z
          .array(
            z.object({
              agent: z.string().describe("Agent to run the task as: worker, planner, reviewer, or another agent of this project"),
              prompt: z.string().describe("Complete, self-contained instructions for the sub-agent"),
              description: z.string().optional().describe("3-8 words naming the task; becomes the session's title"),
              priority: z.enum(["high", "normal", "low"]).optional().describe("Queue priority (default normal)"),
              model: z.string().optional().describe("provider/model to run on (default: the agent's model)"),
              dependsOn: z.array(idArg).optional().describe("Indexes of earlier tasks in this call (numbers), or ids of earlier tasks (\"#12\")"),
              followUp: idArg.optional().describe("Id of an earlier task whose session this task continues (\"#12\")"),
              retries: z.number().int().optional().describe("Extra attempts after a provider failure or timeout (0-10, default 0)"),
              deadlineMs: z.number().int().optional().describe("Time limit from start, ms (default 30 min)"),
              failFast: z.boolean().optional().describe("Fail at once (BREAKER_OPEN) instead of waiting while its model's circuit breaker is open (default false: wait for the model to recover)"),
            }),
          )
          .describe("The tasks to launch, in order"),
        mode: z.enum(["background", "wait"]).optional().describe('"background" (default) answers at once; "wait" returns all results'),
        notify: z.boolean().optional().describe("Background mode: send a notice when tasks settle (default true)"),
      },
      async execute(args, ctx) {
        const mode = args.mode ?? "background";
        let launchedIds: number[];
        try {
          launchedIds = board.delegate(ctx.sessionID, args.tasks as TaskArg[], { notify: mode === "background" && args.notify !== false });
        } catch (e) {
          throw refusal(e, engine.stats().now);
        }
        launched(launchedIds, mode);
        if (mode === "background") {
          const lines = launchedIds.map((id) => taskLine(board.info(id)!, label(id)));
          const notice = args.notify === false ? "Read replies with foreman_result" : "You will get one notice when they settle; read replies with foreman_result";
          return `Launched ${launchedIds.length} task${launchedIds.length === 1 ? "" : "s"} in the background:\n${lines.join("\n")}\n${notice} (ids: ${launchedIds.join(", ")}).`;
        }
        // This session blocks in this tool call until they settle: when it is itself a foreman
        // task, it lends its slot to them (join), and its turn goes on only once the engine
        // says it has its slot again (resumed) — else its next model request would run next to
        // whatever took the slot meanwhile, past its lane's limit.
        let lenders: number[] = [];
        try {
          lenders = engine.join(launchedIds);
        } catch {
          // The tasks were just launched: join refuses only a disposed engine, which `wait`
          // reports below.
        }
        const all = Promise.all(launchedIds.map((id) => engine.wait(id))).then(async (infos) => {
          await Promise.all(lenders.map((id) => engine.resumed(id)));
          return infos;
        });
        const outcome = await until(all, MAX_BLOCK_MS, ctx.abort);
        if (outcome === "aborted" || outcome === "timeout") {
          const cancelled = board.cancelTree(launchedIds);
          throw new Error(`${outcome === "aborted" ? "Interrupted" : "Timed out"}: cancelled ${cancelled.length} open task(s) (${cancelled.map((i) => `#${i}`).join(", ")}).`);
        }
        const done = (outcome as TaskInfo[]).map((t) => board.withSession(t));
        const ok = done.filter((t) => t.state === "succeeded").length;
        return [`${done.length} task${done.length === 1 ? "" : "s"} settled: ${ok} succeeded, ${done.length - ok} did not.`, ...done.map((t) => taskResult(t, label(t.id)))].join("\n\n");
      },
    }),

    foreman_result: tool({
      description: `Read what foreman tasks produced: state, the sub-agent's final reply (long replies are cut, with the session id holding the whole of it), error class and message, attempts and time. Give \`ids\` (default: every task this session launched). With block: true it first waits until they settle (up to timeoutMs).`,
      args: {
        ids: z.array(idArg).optional().describe('Task ids, e.g. [3, 4] or ["#3"]; default: all of this session\'s tasks'),
        block: z.boolean().optional().describe("Wait for the tasks to settle first (default false)"),
        timeoutMs: z.number().int().optional().describe("Longest wait with block, ms (default 5 min, at most 30 min)"),
        maxChars: z.number().int().optional().describe(`Longest reply shown per task (default ${RESULT_CHARS})`),
      },
      async execute(args, ctx) {
        let wanted: number[];
        try {
          wanted = args.ids?.length ? ids(args.ids, "ids") : engine.list().filter((t) => t.parentID === ctx.sessionID).map((t) => t.id);
          if (args.timeoutMs !== undefined && (args.timeoutMs < 0 || args.timeoutMs > MAX_BLOCK_MS)) throw new ToolInputError("INVALID_INPUT", "timeoutMs", `timeoutMs: must be between 0 and ${MAX_BLOCK_MS}`);
          if (args.maxChars !== undefined && args.maxChars < 100) throw new ToolInputError("INVALID_INPUT", "maxChars", "maxChars: at least 100");
        } catch (e) {
          throw refusal(e);
        }
        if (!wanted.length) return "This session has launched no foreman tasks.";
        let note = "";
        if (args.block) {
          const outcome = await until(Promise.all(wanted.map((id) => engine.wait(id))), args.timeoutMs ?? 5 * 60_000, ctx.abort);
          if (outcome === "timeout") note = "\n\n(Stopped waiting: timeoutMs passed; tasks not settled keep running.)";
        }
        return wanted.map((id) => taskResult(board.info(id) ?? engine.status(id), label(id), args.maxChars ?? RESULT_CHARS)).join("\n\n") + note;
      },
    }),

    foreman_status: tool({
      description: "Show foreman's state: lanes per agent (in use/limit, queued), per-model limits and circuit breakers, queue per priority, the session pool, task counts and the memory gate, then this session's open tasks.",
      args: {},
      async execute(_args, ctx) {
        const open = engine.list().filter((t) => t.parentID === ctx.sessionID && !settled(t.state));
        const mine = open.length ? `\nopen tasks of this session (${open.length}):\n${open.map((t) => taskLine(t, label(t.id))).join("\n")}` : "";
        return formatStatus(engine.stats(), readings?.()) + mine;
      },
    }),

    foreman_list: tool({
      description: 'List foreman tasks, one line each (id, state, agent, description, session). Filter by state (queued, running, succeeded, failed, cancelled, timed_out, ...), agent, or parent ("this" = tasks this session launched, or a session id).',
      args: {
        state: z.string().optional().describe("Only tasks in this state"),
        agent: z.string().optional().describe("Only tasks of this agent"),
        parent: z.string().optional().describe('"this" or a session id; default: all tasks'),
      },
      async execute(args, ctx) {
        const parent = args.parent === "this" ? ctx.sessionID : args.parent;
        let list: TaskInfo[];
        try {
          const filter: { state?: TaskInfo["state"]; agent?: string } = {};
          if (args.state !== undefined) filter.state = args.state as TaskInfo["state"];
          if (args.agent !== undefined) filter.agent = args.agent;
          list = engine.list(filter).filter((t) => parent === undefined || t.parentID === parent).map((t) => board.withSession(t));
        } catch (e) {
          throw refusal(e);
        }
        if (!list.length) return "No tasks match.";
        return `${list.length} task${list.length === 1 ? "" : "s"}:\n${list.map((t) => taskLine(t, label(t.id))).join("\n")}`;
      },
    }),

    foreman_cancel: tool({
      description: "Cancel foreman tasks: queued ones never start; running ones have their session aborted. Everything a cancelled task launched is cancelled too, and tasks depending on it are cancelled. Give ids, or all: true for every open task this session launched.",
      args: {
        ids: z.array(idArg).optional().describe('Task ids, e.g. [3] or ["#3"]'),
        all: z.boolean().optional().describe("Cancel every open task this session launched"),
      },
      async execute(args, ctx) {
        let wanted: number[];
        try {
          if (!args.ids?.length && !args.all) throw new ToolInputError("INVALID_INPUT", "ids", "ids: give task ids, or all: true");
          wanted = [...(args.ids?.length ? ids(args.ids, "ids") : []), ...(args.all ? board.openChildren(ctx.sessionID) : [])];
        } catch (e) {
          throw refusal(e);
        }
        const cancelled = board.cancelTree(wanted);
        const asked = new Set(wanted);
        const below = cancelled.filter((id) => !asked.has(id));
        const already = wanted.filter((id) => !cancelled.includes(id));
        const lines = [`Cancelled ${cancelled.length - below.length} task(s)${cancelled.length - below.length ? `: ${cancelled.filter((id) => asked.has(id)).map((i) => `#${i}`).join(", ")}` : ""}.`];
        if (below.length) lines.push(`Also cancelled what they launched: ${below.map((i) => `#${i}`).join(", ")}.`);
        if (already.length) lines.push(`Already settled: ${already.map((i) => `#${i} (${engine.status(i).state})`).join(", ")}.`);
        return lines.join("\n");
      },
    }),
  };
}
