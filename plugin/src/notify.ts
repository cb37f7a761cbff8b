// Telling the parent what happened. When background tasks settle, their parent session gets ONE
// synthetic message (`synthetic: true` text through `promptAsync`: hidden in the TUI, read by
// the model) listing what settled and what still runs.
//
// Invariants:
// 1. Never prompt a busy session: OpenCode would write the message and join the running turn.
//    A parent is busy from its `busy`/`retry` status until its `idle`; before sending, the
//    server's status map is asked again.
// 2. At most one notification per idle period: after one is sent, the next waits until the
//    parent was seen busy again (the notification's own turn) and then idle. If no busy shows
//    within `REARM_MS` (the prompt never started a turn), the parent counts as idle again.
// 3. Batched and de-duplicated: settlements are collected per parent and sent together after
//    a short quiet (`GATHER_MS`); a task is listed as settled at most once.
import type { SessionStatus } from "./host.ts";

/** How long settlements gather before a notification goes out, ms. */
export const GATHER_MS = 250;
/** After a notification, how long to wait for the parent's busy before treating it as idle, ms. */
export const REARM_MS = 15_000;

export interface NotifierClient {
  session: {
    promptAsync?(options: {
      path: { id: string };
      query?: { directory?: string };
      body: { parts: Array<{ type: "text"; text: string; synthetic?: boolean }>; agent?: string; model?: { providerID: string; modelID: string } };
    }): Promise<{ error?: unknown; response?: { status: number } }>;
    status?(options?: { query?: { directory?: string } }): Promise<{ data?: Record<string, SessionStatus> }>;
  };
}

/** How a session's last turn ran. */
export interface Turn {
  agent?: string;
  model?: { providerID: string; modelID: string };
}

interface ParentState {
  /** Time a notification was sent in this idle period, if one was. */
  notifiedAt: number | undefined;
  pending: Set<number>;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** When the armed timer fires. */
  due: number;
  sending: boolean;
}

export class Notifier {
  private readonly parents = new Map<string, ParentState>();
  /** Sessions whose last status was busy or retry (any session: a parent may be busy before
   * its first task settles). */
  private readonly busy = new Set<string>();
  /** Notifications sent, per parent (for tests and status). */
  sent = 0;

  constructor(
    private readonly client: NotifierClient,
    private readonly directory: string,
    /** The text listing `settled` task ids for `parentID`, or undefined to send nothing. */
    private readonly render: (parentID: string, settled: number[]) => string | undefined,
    private readonly log: (level: "debug" | "info" | "warn" | "error", message: string) => void,
    /** The agent and model the parent last ran with (a prompt without them would switch it to
     * the defaults). */
    private readonly turnOf: (sessionID: string) => Turn | undefined = () => undefined,
    private readonly now: () => number = Date.now,
  ) {}

  private state(parentID: string): ParentState {
    let s = this.parents.get(parentID);
    if (!s) {
      s = { notifiedAt: undefined, pending: new Set(), timer: undefined, due: 0, sending: false };
      this.parents.set(parentID, s);
    }
    return s;
  }

  /** A bus status of any session. */
  status(sessionID: string, type: string) {
    const s = this.parents.get(sessionID);
    if (type === "busy" || type === "retry") {
      this.busy.add(sessionID);
      if (s) s.notifiedAt = undefined; // its turn started: the next idle period may get one
    } else if (type === "idle") {
      this.busy.delete(sessionID);
      if (s?.pending.size) this.schedule(sessionID, s);
    }
  }

  /** Task `id` of `parentID` settled. */
  settled(parentID: string, id: number) {
    const s = this.state(parentID);
    s.pending.add(id);
    this.schedule(parentID, s);
  }

  /** A parent session is gone: nothing more is sent to it. */
  forget(sessionID: string) {
    const s = this.parents.get(sessionID);
    if (s?.timer) clearTimeout(s.timer);
    this.parents.delete(sessionID);
    this.busy.delete(sessionID);
  }

  dispose() {
    for (const s of this.parents.values()) if (s.timer) clearTimeout(s.timer);
    this.parents.clear();
    this.busy.clear();
  }

  /** Arms the flush timer `ms` from now, unless it is armed to fire sooner. */
  private schedule(parentID: string, s: ParentState, ms = GATHER_MS) {
    const due = this.now() + ms;
    if (s.timer) {
      if (s.due <= due) return;
      clearTimeout(s.timer);
    }
    s.due = due;
    s.timer = setTimeout(() => {
      s.timer = undefined;
      void this.flush(parentID, s);
    }, ms);
  }

  private async flush(parentID: string, s: ParentState) {
    if (s.sending || !s.pending.size || this.busy.has(parentID)) return; // a later idle flushes
    if (s.notifiedAt !== undefined) {
      const waited = this.now() - s.notifiedAt;
      if (waited < REARM_MS) return this.schedule(parentID, s, REARM_MS - waited);
      s.notifiedAt = undefined;
    }
    s.sending = true;
    try {
      // Invariant 1: ask the server too; the bus may not have told us yet.
      const map = (await this.client.session.status?.({ query: { directory: this.directory } }))?.data ?? {};
      const st = map[parentID];
      if (st && st.type !== "idle") {
        this.busy.add(parentID);
        return;
      }
      const ids = [...s.pending];
      const text = this.render(parentID, ids);
      s.pending.clear();
      if (text === undefined) return;
      const turn = this.turnOf(parentID);
      const r = await this.client.session.promptAsync?.({
        path: { id: parentID },
        query: { directory: this.directory },
        body: {
          parts: [{ type: "text", text, synthetic: true }],
          ...(turn?.agent ? { agent: turn.agent } : {}),
          ...(turn?.model ? { model: turn.model } : {}),
        },
      });
      if (r?.error !== undefined) {
        if (r.response?.status === 404) return this.forget(parentID);
        for (const id of ids) s.pending.add(id);
        this.log("warn", `notifying ${parentID} failed: ${JSON.stringify(r.error)}`);
        return this.schedule(parentID, s, REARM_MS);
      }
      s.notifiedAt = this.now();
      this.sent++;
    } catch (e) {
      this.log("warn", `notifying ${parentID} failed: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      s.sending = false;
      if (s.pending.size && !this.busy.has(parentID)) this.schedule(parentID, s);
    }
  }
}
