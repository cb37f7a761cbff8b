// Plugin options: the engine's `ForemanConfig` keys (validated by the engine, which refuses an
// unknown key by name), plus the plugin's own, validated here with the same error shape
// (`ForemanError`, code `INVALID_CONFIG`, `key`). A bad option fails the plugin load.
import type { ForemanConfig } from "../../pkg/foreman.js";

export interface PluginSettings {
  /** Register the Commander, Planner, Worker and Reviewer agents (default true). */
  agents: boolean;
  /** Notify parent sessions when their background tasks settle (default true). */
  notify: boolean;
  /** Show toasts on launch, breaker trips and settled batches (default true). */
  toasts: boolean;
  /** Most levels of delegation below a person's session (default 2: a sub-agent may delegate
   * once more; its sub-agents may not). */
  maxDepth: number;
  /** Delete the sessions tasks ran in when the engine retires them (default false: they stay
   * for the user to read; unused warm sessions are always deleted). */
  cleanup: boolean;
  /** Make warm sessions ahead of queued tasks only while `session.create` takes at least this
   * long on average, ms (default 100; 0: always). */
  warmAboveMs: number;
}

export const DEFAULT_SETTINGS: PluginSettings = { agents: true, notify: true, toasts: true, maxDepth: 2, cleanup: false, warmAboveMs: 100 };

/** A config error shaped like the engine's. */
export function configError(key: string, reason: string): Error {
  const e = new Error(`INVALID_CONFIG: invalid config \`${key}\`: ${reason}`) as Error & { code: string; key: string };
  e.name = "ForemanError";
  e.code = "INVALID_CONFIG";
  e.key = key;
  return e;
}

/** Splits the options into the plugin's settings and the engine's config. */
export function parseOptions(options: unknown): { settings: PluginSettings; engine: ForemanConfig } {
  if (options === undefined || options === null) return { settings: { ...DEFAULT_SETTINGS }, engine: {} };
  if (typeof options !== "object" || Array.isArray(options)) throw configError("options", `must be an object, got ${Array.isArray(options) ? "an array" : typeof options}`);
  const { agents, notify, toasts, maxDepth, cleanup, warmAboveMs, ...engine } = options as Record<string, unknown>;
  const settings = { ...DEFAULT_SETTINGS };
  for (const [key, value] of Object.entries({ agents, notify, toasts, cleanup })) {
    if (value === undefined) continue;
    if (typeof value !== "boolean") throw configError(key, `expected true or false, got ${JSON.stringify(value)}`);
    settings[key as "agents"] = value;
  }
  if (maxDepth !== undefined) {
    if (typeof maxDepth !== "number" || !Number.isInteger(maxDepth) || maxDepth < 1 || maxDepth > 8) {
      throw configError("maxDepth", `must be a whole number between 1 and 8, got ${JSON.stringify(maxDepth)}`);
    }
    settings.maxDepth = maxDepth;
  }
  if (warmAboveMs !== undefined) {
    if (typeof warmAboveMs !== "number" || !Number.isFinite(warmAboveMs) || warmAboveMs < 0) {
      throw configError("warmAboveMs", `must be a number of milliseconds (0 or more), got ${JSON.stringify(warmAboveMs)}`);
    }
    settings.warmAboveMs = warmAboveMs;
  }
  return { settings, engine: engine as ForemanConfig };
}
