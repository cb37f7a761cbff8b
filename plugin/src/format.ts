// Plain-text renderings of engine views, for tool output a model and a person can both read.
import type { ForemanStats } from "../../pkg/foreman.js";

/** `foreman_status`'s answer. */
export function formatStatus(stats: ForemanStats): string {
  const lanes = stats.lanes
    .map((l) => {
      const queued = l.queued.high + l.queued.normal + l.queued.low;
      return `${l.name} ${l.inUse}/${l.limit}` + (queued > 0 ? ` (+${queued} queued)` : "");
    })
    .join(", ");
  const t = stats.tasks;
  const mean = stats.sessions.meanCreateMs === null ? "n/a" : `${stats.sessions.meanCreateMs.toFixed(1)} ms`;
  return [
    `foreman v${stats.version} (wasm engine)`,
    `lanes (in use/limit): ${lanes}`,
    `tasks: ${t.queued} queued, ${t.running} running, ${t.succeeded} succeeded, ${t.failed} failed, ${t.cancelled} cancelled, ${t.timedOut} timed out`,
    `sessions: ${stats.sessions.created} created, ${stats.sessions.failed} failed, mean create ${mean}`,
    `host calls pending: ${stats.pendingCalls}`,
    `memory: ${(stats.memory.perMille / 10).toFixed(1)} % of ${Math.round(stats.memory.limit / 2 ** 20)} MiB`,
  ].join("\n");
}
