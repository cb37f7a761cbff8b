// Plain-text renderings of engine views, for tool output a model and a person can both read:
// one line per task, ids first (`#12`), so a model can pass them back to the other tools.
import type { ForemanStats, TaskInfo } from "../../pkg/foreman.js";

/** Longest reply text `foreman_result` shows per task by default, in characters. */
export const RESULT_CHARS = 4000;

/** What the host measured about sessions, for `foreman_status`. */
export interface SessionReadings {
  /** Moving mean of `session.create` for task sessions, ms. */
  createMs?: number | undefined;
  /** Warm sessions are made only while `createMs` is at least this. */
  warmAboveMs?: number;
}

/** `foreman_status`'s answer. */
export function formatStatus(stats: ForemanStats, readings: SessionReadings = {}): string {
  const lanes = stats.lanes
    .map((l) => {
      const queued = l.queued.high + l.queued.normal + l.queued.low;
      const limit = l.effective < l.limit ? `${l.effective} of ${l.limit}` : `${l.limit}`;
      return `${l.name} ${l.inUse}/${limit}` + (queued > 0 ? ` (+${queued} queued)` : "");
    })
    .join(", ");
  const queues = stats.lanes.reduce(
    (q, l) => ({ high: q.high + l.queued.high, normal: q.normal + l.queued.normal, low: q.low + l.queued.low }),
    { high: 0, normal: 0, low: 0 },
  );
  const keys = stats.keys.length
    ? stats.keys
        .map((k) => {
          const limit = k.limit === null ? "unlimited" : k.effective !== null && k.effective < k.limit ? `${k.effective} of ${k.limit}` : `${k.limit}`;
          const breaker = k.breaker === "closed" ? "" : `, breaker ${k.breaker}${k.nextProbeAt ? ` (probe in ${Math.max(0, Math.round((k.nextProbeAt - stats.now) / 1000))} s)` : ""}`;
          return `${k.name} ${k.inUse}/${limit}${k.queued ? ` (+${k.queued} queued)` : ""}${breaker}`;
        })
        .join(", ")
    : "none yet";
  const t = stats.tasks;
  const p = stats.pool;
  const meanMs = readings.createMs;
  const mean = meanMs === undefined ? "n/a" : `${meanMs.toFixed(1)} ms`;
  const warm = readings.warmAboveMs === undefined ? "" : readings.warmAboveMs === 0 ? "; warm sessions always" : `; warm sessions only above ${readings.warmAboveMs} ms`;
  const gate = stats.gate.closed ? "closed: LOW work refused" : stats.gate.stale ? "open (reading stale)" : "open";
  return [
    `foreman v${stats.version} (wasm engine)`,
    `lanes (in use/limit): ${lanes}`,
    `models (in use/limit): ${keys}`,
    `queued by priority: ${queues.high} high, ${queues.normal} normal, ${queues.low} low`,
    `tasks: ${t.queued} queued, ${t.running} running, ${t.succeeded} succeeded, ${t.failed} failed, ${t.cancelled} cancelled, ${t.timedOut} timed out`,
    `sessions: ${p.creates} created, mean create ${mean}${warm}`,
    `pool: ${p.warm} warm, ${p.inUse} in use, ${p.parked} parked, ${p.hits} reused, ${p.deletes} deleted`,
    `host calls pending: ${stats.pendingCalls}`,
    `memory: ${(stats.memory.perMille / 10).toFixed(1)} % of ${Math.round(stats.memory.limit / 2 ** 20)} MiB, gate ${gate}`,
  ].join("\n");
}

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

/** One line per task: `#3 running worker "Read the parser" (session ses_…)`. */
export function taskLine(t: TaskInfo, description: string | undefined): string {
  const parts = [`#${t.id} ${t.state}`, t.agent];
  if (description) parts.push(JSON.stringify(description));
  if (t.sessionID) parts.push(`session ${t.sessionID}`);
  if (t.state === "failed" && t.error) parts.push(`${t.error.class}: ${t.error.message}`);
  if (t.state === "cancelled" && t.reason) parts.push(`reason: ${t.reason}`);
  if (t.state === "timed_out") parts.push("deadline passed");
  return parts.join(" · ");
}

/** A settled or open task in full, for `foreman_result`. */
export function taskResult(t: TaskInfo, description: string | undefined, maxChars = RESULT_CHARS): string {
  const head = [
    `#${t.id} ${t.state}`,
    t.agent,
    ...(description ? [JSON.stringify(description)] : []),
    ...(t.sessionID ? [`session ${t.sessionID}`] : []),
    `${t.attempts} attempt${t.attempts === 1 ? "" : "s"}`,
    `${seconds(Math.max(0, t.updatedMs - t.createdMs))}${t.state === "succeeded" || t.state === "failed" || t.state === "cancelled" || t.state === "timed_out" ? "" : " so far"}`,
  ].join(" · ");
  const lines = [head];
  if (t.state === "succeeded") {
    const text = t.result ?? "";
    if (text.length > maxChars) {
      lines.push(text.slice(0, maxChars));
      lines.push(`[… truncated: ${text.length} characters in all; the whole reply is in session ${t.sessionID}]`);
    } else lines.push(text || "(empty reply)");
  } else if (t.state === "failed" && t.error) lines.push(`error (${t.error.class}): ${t.error.message}`);
  else if (t.state === "cancelled") lines.push(`cancelled: ${t.reason ?? "by request"}`);
  else if (t.state === "timed_out") lines.push("timed out: its deadline passed and its session was aborted");
  else lines.push("not settled yet");
  return lines.join("\n");
}

/** The synthetic message a parent gets when background tasks settle. */
export function notification(settled: Array<[TaskInfo, string | undefined]>, running: Array<[TaskInfo, string | undefined]>): string {
  const counts = new Map<string, number>();
  for (const [t] of settled) counts.set(t.state, (counts.get(t.state) ?? 0) + 1);
  const summary = [...counts].map(([s, n]) => `${n} ${s}`).join(", ");
  const lines = [`[foreman] ${settled.length} background task${settled.length === 1 ? "" : "s"} settled (${summary}):`];
  for (const [t, d] of settled) lines.push(`- ${taskLine(t, d)}`);
  if (running.length) {
    lines.push(`Still open (${running.length}):`);
    for (const [t, d] of running) lines.push(`- ${taskLine(t, d)}`);
  } else lines.push("Nothing else of yours is open.");
  lines.push(`Read replies with foreman_result (ids: ${settled.map(([t]) => t.id).join(", ")}).`);
  return lines.join("\n");
}
