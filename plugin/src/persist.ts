// Durable engine state under the project's `.opencode/foreman/`: the journal survives a restart
// of OpenCode, and the engine is restored from it at plugin start.
//
// Files (all written as a temp file, then renamed into place, so a reader never sees half of one):
//   journal-<seq>.bin   a journal export (`engine.journalExport()`), one file per saved generation
//   head.json           the commit record: which journal file is current, its byte length and
//                       SHA-256, and the engine's journal head `(seq, hash)`
//   head.prev.json      the commit record before it (the last good state if the newest is bad)
//   lock.json           who owns this journal: `{ pid, epoch, since }`
//
// Invariants:
// 1. A generation is committed only by renaming its head into place, after its journal file is
//    complete; the previous generation's files are deleted only after that.
// 2. A journal whose length or SHA-256 differs from its head, or that the engine refuses
//    (`JOURNAL_INVALID`: a torn record, a head that does not match), is never loaded: it is
//    logged, moved aside as `*.corrupt-<time>`, and the previous generation is tried.
// 3. One OpenCode process at a time owns a journal (the lock). A second process on the same
//    project keeps a journal of its own under `instances/<pid>/`; it adopts an orphaned one (its
//    owner's process is gone) at start.
// 4. Saves are batched: at most one write per `saveDelayMs` after a change, never on the path of
//    a task transition.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Engine, ForemanConfig, ForemanHost, JournalHead } from "../../pkg/foreman.js";

/** A committed generation. */
interface Commit {
  file: string;
  bytes: number;
  sha256: string;
  head: JournalHead;
}

/** A line for the plugin's log. */
export type Log = (level: "info" | "warn" | "error", message: string) => void;

/** What `openJournal` found and made. */
export interface Opened {
  engine: Engine;
  store: JournalStore;
  /** How the engine came to be: restored from which generation, or new. */
  origin: "restored" | "restored-previous" | "new";
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === "EPERM";
  }
}

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch {
    return undefined;
  }
}

function writeAtomic(path: string, data: string | Uint8Array): void {
  const temp = `${path}.tmp-${process.pid}`;
  writeFileSync(temp, data);
  renameSync(temp, path);
}

/** The journal files of one engine in `dir`. */
export class JournalStore {
  readonly dir: string;
  readonly #log: Log;
  readonly #delayMs: number;
  #engine: Engine | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #savedSeq = -1;
  #closed = false;

  constructor(dir: string, log: Log, saveDelayMs = 200) {
    this.dir = dir;
    this.#log = log;
    this.#delayMs = saveDelayMs;
  }

  /** The newest generation that loads, as an engine; else none. */
  load(host: ForemanHost, config: ForemanConfig, Engine: typeof import("../../pkg/foreman.js").Engine): { engine: Engine; previous: boolean } | undefined {
    for (const [name, previous] of [["head.json", false], ["head.prev.json", true]] as const) {
      const path = join(this.dir, name);
      if (!existsSync(path)) continue;
      const commit = readJson<Commit>(path);
      const problem = this.#check(commit);
      if (problem === undefined && commit) {
        try {
          const journal = readFileSync(join(this.dir, commit.file));
          const engine = Engine.restore(journal, commit.head, host, config);
          this.#savedSeq = commit.head.seq;
          return { engine, previous };
        } catch (e) {
          const code = (e as { code?: string }).code;
          // A bad config or host is the caller's error, not the journal's: never set it aside.
          if (code !== "JOURNAL_INVALID") throw e;
          this.#reject(name, commit, `the engine refused it (${code}): ${(e as Error).message}`);
          continue;
        }
      }
      this.#reject(name, commit, problem ?? "unreadable");
    }
    return undefined;
  }

  /** Saves `engine`'s journal after each change, batched. */
  attach(engine: Engine): void {
    this.#engine = engine;
    engine.on("task", () => this.schedule());
    this.schedule();
  }

  /** Asks for a save soon (one write per `saveDelayMs` at most). */
  schedule(): void {
    if (this.#closed || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.save();
    }, this.#delayMs);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /** Writes a new generation now if the journal moved since the last one. */
  save(): void {
    const engine = this.#engine;
    if (!engine) return;
    try {
      const head = engine.journalHead();
      if (head.seq === this.#savedSeq) return;
      const journal = engine.journalExport();
      mkdirSync(this.dir, { recursive: true });
      const file = `journal-${head.seq}.bin`;
      writeAtomic(join(this.dir, file), journal);
      const commit: Commit = { file, bytes: journal.length, sha256: sha256(journal), head };
      const current = join(this.dir, "head.json");
      if (existsSync(current)) renameSync(current, join(this.dir, "head.prev.json"));
      writeAtomic(current, JSON.stringify(commit));
      this.#savedSeq = head.seq;
      this.#prune();
    } catch (e) {
      this.#log("error", `foreman: could not save the journal in ${this.dir}: ${(e as Error).message}`);
    }
  }

  /** Final save; no more writes after it. */
  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.save();
    this.#closed = true;
  }

  #check(commit: Commit | undefined): string | undefined {
    if (!commit || typeof commit.file !== "string" || !/^journal-\d+\.bin$/.test(commit.file) || !commit.head) {
      return "its head record is unreadable";
    }
    const path = join(this.dir, commit.file);
    if (!existsSync(path)) return `${commit.file} is missing`;
    const bytes = readFileSync(path);
    if (bytes.length !== commit.bytes) return `${commit.file} has ${bytes.length} bytes, its head says ${commit.bytes} (cut short?)`;
    if (sha256(bytes) !== commit.sha256) return `${commit.file} does not match its head's SHA-256`;
    return undefined;
  }

  #reject(name: string, commit: Commit | undefined, why: string): void {
    const stamp = Date.now();
    this.#log("error", `foreman: not loading ${join(this.dir, name)}: ${why}; kept aside as *.corrupt-${stamp}`);
    for (const f of [name, commit?.file]) {
      if (f && existsSync(join(this.dir, f))) renameSync(join(this.dir, f), join(this.dir, `${f}.corrupt-${stamp}`));
    }
  }

  /** Deletes journal files that no head names. */
  #prune(): void {
    const keep = new Set<string>();
    for (const name of ["head.json", "head.prev.json"]) {
      const c = readJson<Commit>(join(this.dir, name));
      if (c?.file) keep.add(c.file);
    }
    for (const f of readdirSync(this.dir)) {
      if (/^journal-\d+\.bin$/.test(f) && !keep.has(f)) rmSync(join(this.dir, f), { force: true });
    }
  }
}

/** Takes `dir`'s lock when its owner is gone (or it has none); false while another lives. */
function takeLock(dir: string, epoch: number | undefined): boolean {
  const path = join(dir, "lock.json");
  const lock = readJson<{ pid: number }>(path);
  if (lock && lock.pid !== process.pid && processAlive(lock.pid)) return false;
  mkdirSync(dir, { recursive: true });
  writeAtomic(path, JSON.stringify({ pid: process.pid, epoch: epoch ?? null, since: new Date().toISOString() }));
  // Two processes may both have found the lock free: the last rename wins, and each reads back.
  return readJson<{ pid: number }>(path)?.pid === process.pid;
}

/** Releases `dir`'s lock if this process holds it. */
export function releaseLock(dir: string): void {
  const path = join(dir, "lock.json");
  if (readJson<{ pid: number }>(path)?.pid === process.pid) rmSync(path, { force: true });
}

/**
 * Opens the engine of `root` (the project's `.opencode/foreman`): the owned journal restored, or
 * an orphaned one adopted, or a new engine with a journal of its own.
 */
export function openJournal(
  root: string,
  host: ForemanHost,
  config: ForemanConfig,
  Engine: typeof import("../../pkg/foreman.js").Engine,
  log: Log,
  saveDelayMs?: number,
): Opened {
  const candidates = [root];
  const instances = join(root, "instances");
  if (existsSync(instances)) {
    for (const d of readdirSync(instances)) candidates.push(join(instances, d));
  }
  candidates.push(join(instances, String(process.pid)));
  for (const dir of candidates) {
    if (!takeLock(dir, undefined)) continue;
    const store = new JournalStore(dir, log, saveDelayMs);
    const loaded = store.load(host, config, Engine);
    const engine = loaded?.engine ?? new Engine(host, config);
    takeLock(dir, (engine.journalHead() as JournalHead & { epoch?: number }).epoch);
    store.attach(engine);
    if (dir !== root) log("info", `foreman: the project's journal is owned by another OpenCode process; this one keeps ${dir}`);
    return { engine, store, origin: loaded ? (loaded.previous ? "restored-previous" : "restored") : "new" };
  }
  // Unreachable while this process's own directory is a candidate; kept total for the type.
  const engine = new Engine(host, config);
  return { engine, store: new JournalStore(join(instances, String(process.pid)), log, saveDelayMs), origin: "new" };
}
