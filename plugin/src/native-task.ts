// OpenCode's own `task` tool under foreman's controller.
//
// OpenCode calls the `tool.execute.before` hook and awaits it before the `task` tool creates its
// child session, so holding that hook until the engine admits the call puts native sub-agents
// under the same lanes, provider/model limits, priorities and breakers as foreman's own tasks:
// the lane is the call's `subagent_type`, the key the model the child will use, the priority
// NORMAL. The admission is a `run()` slot whose work is "until the call ends".
//
// The slot is released exactly once, by whichever of these comes first:
//   1. `tool.execute.after` for the call (OpenCode runs it only when the tool returned);
//   2. the call's tool part reaching `completed` or `error` (a `message.part.updated` event:
//      this is how a failed or aborted call ends, since `tool.execute.after` is skipped then);
//   3. the calling session going idle or being deleted (its turn is over, so every call it made
//      is over, whatever events were lost).
// A call still waiting for admission when 3 happens gives its slot back the moment it would have
// started. Refusals (a full queue, a closed engine) fail the tool call with the engine's error,
// which OpenCode shows on the tool part.
import type { Engine } from "../../pkg/foreman.js";

/** How a finished call counts for the key's breaker and adaptive limit. */
type Ending = { ok: true } | { ok: false; error: Error & { class?: string } };

interface Call {
  sessionID: string;
  /** Set once admitted: ends the slot's work. */
  end?: (ending: Ending) => void;
  /** Set when the call ended before it was admitted. */
  over?: Ending;
}

/** What the gate needs to know about the models in use. */
export interface ModelLookup {
  /** `provider/model` the child session of `agent` will use, when known. */
  (agent: string, parentSessionID: string): string | undefined;
}

/** Gate for OpenCode's `task` tool; one per engine. */
export class NativeTaskGate {
  readonly #engine: Pick<Engine, "run">;
  readonly #modelOf: ModelLookup;
  readonly #calls = new Map<string, Call>();

  constructor(engine: Pick<Engine, "run">, modelOf: ModelLookup) {
    this.#engine = engine;
    this.#modelOf = modelOf;
  }

  /** Calls admitted or waiting (for status and tests). */
  get open(): number {
    return this.#calls.size;
  }

  /** `tool.execute.before`: resolves when the call may start; throws the engine's refusal. */
  async before(input: { tool: string; sessionID: string; callID: string }, args: unknown): Promise<void> {
    if (input.tool !== "task" || this.#calls.has(input.callID)) return;
    const a = (args ?? {}) as { subagent_type?: unknown };
    const lane = typeof a.subagent_type === "string" && a.subagent_type.length > 0 ? a.subagent_type : "general";
    const key = this.#modelOf(lane, input.sessionID);
    const call: Call = { sessionID: input.sessionID };
    this.#calls.set(input.callID, call);
    let admitted!: () => void;
    const started = new Promise<void>((resolve) => (admitted = resolve));
    const slot = this.#engine.run(
      () => {
        admitted();
        // Ended while it waited: the slot goes back at once, counting for nothing.
        if (call.over) return Promise.reject(cancelled().error);
        return new Promise<void>((resolve, reject) => {
          call.end = (ending) => (ending.ok ? resolve() : reject(ending.error));
        });
      },
      key === undefined ? { lane, priority: "normal" } : { lane, key, priority: "normal" },
    );
    // The slot's own outcome is the call's, already reported to OpenCode: only forget it here.
    const forget = () => {
      if (this.#calls.get(input.callID) === call) this.#calls.delete(input.callID);
    };
    slot.then(forget, forget);
    await Promise.race([started, slot]);
    // Ended while it waited (its session's turn is over): OpenCode must not create the child.
    if (call.over) throw new Error("foreman: the calling session's turn ended before this task call was admitted");
  }

  /** `tool.execute.after`: the call returned. */
  after(input: { tool: string; callID: string }): void {
    if (input.tool === "task") this.#finish(input.callID, { ok: true });
  }

  /** Every bus event: tool parts that end, sessions that go idle or away. */
  observe(event: { type?: string; properties?: Record<string, unknown> }): void {
    const p = event.properties ?? {};
    switch (event.type) {
      case "message.part.updated": {
        const part = p.part as { type?: string; tool?: string; callID?: string; state?: { status?: string; error?: unknown } } | undefined;
        if (part?.type !== "tool" || part.tool !== "task" || typeof part.callID !== "string") return;
        if (part.state?.status === "completed") this.#finish(part.callID, { ok: true });
        else if (part.state?.status === "error") this.#finish(part.callID, failed(part.state.error));
        return;
      }
      case "session.idle":
      case "session.deleted": {
        const id = typeof p.sessionID === "string" ? p.sessionID : (p.info as { id?: unknown } | undefined)?.id;
        if (typeof id === "string") this.#endSession(id);
        return;
      }
      case "session.status": {
        const status = p.status as { type?: string } | undefined;
        if (status?.type === "idle" && typeof p.sessionID === "string") this.#endSession(p.sessionID);
        return;
      }
    }
  }

  #endSession(sessionID: string): void {
    for (const [callID, call] of this.#calls) {
      if (call.sessionID === sessionID) this.#finish(callID, cancelled());
    }
  }

  #finish(callID: string, ending: Ending): void {
    const call = this.#calls.get(callID);
    if (!call || call.over) return;
    call.over = ending;
    if (call.end) {
      const end = call.end;
      call.end = undefined;
      end(ending);
    }
  }
}

/** A turn that ended under the call: not the provider's fault. */
function cancelled(): { ok: false; error: Error & { class: string } } {
  const error = Object.assign(new Error("the calling session's turn ended"), { class: "cancelled" });
  return { ok: false, error };
}

/** A task call that failed: a provider error counts for the breaker, anything else does not. */
function failed(detail: unknown): Ending {
  const text = typeof detail === "string" ? detail : JSON.stringify(detail ?? "");
  const cls = /\b429\b|rate.?limit/i.test(text)
    ? "rate_limited"
    : /APIError|\b5\d\d\b|overloaded|server error/i.test(text)
      ? "upstream"
      : /cancel|abort/i.test(text)
        ? "cancelled"
        : "invalid";
  return { ok: false, error: Object.assign(new Error(text), { class: cls }) };
}
