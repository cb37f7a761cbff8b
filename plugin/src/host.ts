// The foreman host for OpenCode: the engine asks, this file does the I/O with the plugin's SDK
// client, and reports back. Errors are thrown with the HTTP `status` so the engine classifies
// them (429 → rate_limited, other 4xx → invalid, else upstream).
import { constrainedMemory, memoryUsage } from "node:process";
import { totalmem } from "node:os";
import type { ForemanHost } from "../../pkg/foreman.js";

/** The part of the OpenCode SDK client (V1) the host uses. */
export interface SessionClient {
  session: {
    create(options: {
      body?: { parentID?: string; title?: string };
      query?: { directory?: string };
    }): Promise<{ data?: { id: string } | undefined; error?: unknown; response?: { status: number } }>;
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
 * else the machine's memory. */
export function memoryReading(): { used: number; limit: number } {
  const total = totalmem();
  const constrained = typeof constrainedMemory === "function" ? constrainedMemory() : 0;
  const limit = constrained && constrained > 0 && constrained < total ? constrained : total;
  return { used: memoryUsage().rss, limit };
}

/** A host that creates sessions in `directory` through `client`. */
export function createHost(client: SessionClient, directory: string): ForemanHost {
  return {
    // Epoch ms: the clock OpenCode stamps messages with, which the completion rule compares.
    now: () => Date.now(),
    memory: memoryReading,
    async createSession(input) {
      const result = await client.session.create({
        body: { parentID: input.parentID, title: input.title },
        query: { directory },
      });
      if (result.error !== undefined || !result.data?.id) {
        const status = result.response?.status;
        throw new HostCallError(`session.create failed${status ? ` (HTTP ${status})` : ""}: ${describe(result.error)}`, status, result.error);
      }
      return result.data.id;
    },
  };
}

function describe(error: unknown): string {
  if (error && typeof error === "object") {
    const e = error as { name?: string; data?: { message?: string }; message?: string };
    return [e.name, e.data?.message ?? e.message].filter(Boolean).join(": ") || JSON.stringify(error);
  }
  return String(error);
}
