// The journal on disk, against the real wasm package: restored at start, torn files and heads
// that do not match are refused with a clear log line (the last good generation is used), and one
// process owns a project's journal at a time.
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ForemanHost } from "../../pkg/foreman.js";
import { openJournal, releaseLock } from "../src/persist.ts";
import { loadEngine } from "../src/wasm.ts";

/** A host whose sessions never come: delegated tasks wait at `admitted`, which is all a journal needs. */
const host: ForemanHost = { now: () => Date.now(), memory: () => ({ used: 1, limit: 10 }), createSession: () => undefined };

function fresh() {
  const root = join(mkdtempSync(join(tmpdir(), "foreman-persist-")), ".opencode", "foreman");
  const lines: string[] = [];
  const open = () => openJournal(root, host, {}, loadEngine(), (level, message) => lines.push(`${level}: ${message}`), 10_000);
  return { root, lines, open };
}

function prompts(engine: { list(): Array<{ id: number; agent: string }> }) {
  return engine.list().map((t) => `${t.id}:${t.agent}`);
}

describe("journal on disk", () => {
  test("an engine is restored with the tasks it had", () => {
    const { root, open } = fresh();
    const first = open();
    expect(first.origin).toBe("new");
    first.engine.delegate([{ agent: "worker", prompt: "one" }, { agent: "planner", prompt: "two" }]);
    first.store.close();
    const before = prompts(first.engine);
    first.engine.dispose();
    releaseLock(root);
    const again = open();
    expect(again.origin).toBe("restored");
    expect(prompts(again.engine)).toEqual(before);
    again.engine.dispose();
  });

  test("a journal cut in the middle of a record is refused, logged, and the last good state is used", () => {
    const { root, lines, open } = fresh();
    const first = open();
    first.engine.delegate({ agent: "worker", prompt: "kept" });
    first.store.save();
    const good = prompts(first.engine);
    first.engine.delegate({ agent: "worker", prompt: "lost with the torn file" });
    first.store.close();
    first.engine.dispose();
    releaseLock(root);
    const head = JSON.parse(readFileSync(join(root, "head.json"), "utf8"));
    const file = join(root, head.file);
    const bytes = readFileSync(file);
    writeFileSync(file, bytes.subarray(0, bytes.length - 7));
    const again = open();
    expect(again.origin).toBe("restored-previous");
    expect(prompts(again.engine)).toEqual(good);
    expect(lines.some((l) => l.startsWith("error:") && l.includes("cut short"))).toBe(true);
    expect(readdirSync(root).some((f) => f.includes(".corrupt-"))).toBe(true);
    again.engine.dispose();
  });

  test("a head that does not match its journal is refused by the engine, and the previous generation is used", () => {
    const { root, lines, open } = fresh();
    const first = open();
    first.engine.delegate({ agent: "worker", prompt: "a" });
    first.store.save();
    const good = prompts(first.engine);
    first.engine.delegate({ agent: "worker", prompt: "b" });
    first.store.close();
    first.engine.dispose();
    releaseLock(root);
    const path = join(root, "head.json");
    const commit = JSON.parse(readFileSync(path, "utf8"));
    commit.head.hash = commit.head.hash.replace(/^./, (c: string) => (c === "0" ? "1" : "0"));
    writeFileSync(path, JSON.stringify(commit));
    const again = open();
    expect(again.origin).toBe("restored-previous");
    expect(prompts(again.engine)).toEqual(good);
    expect(lines.some((l) => l.includes("the engine refused it (JOURNAL_INVALID)") && l.includes("differs from the head"))).toBe(true);
    again.engine.dispose();
  });

  test("a second process keeps its own journal; an orphaned one is adopted", () => {
    const { root, lines, open } = fresh();
    // A living owner: this test's parent process.
    writeFileSync(join(root, "..", "..", ".keep"), "");
    const owner = open();
    owner.engine.delegate({ agent: "worker", prompt: "owned" });
    owner.store.close();
    owner.engine.dispose();
    writeFileSync(join(root, "lock.json"), JSON.stringify({ pid: process.ppid, epoch: null, since: "" }));
    const second = open();
    expect(second.store.dir).toBe(join(root, "instances", String(process.pid)));
    expect(second.origin).toBe("new");
    expect(lines.some((l) => l.includes("owned by another OpenCode process"))).toBe(true);
    second.engine.dispose();
    // The owner's process is gone (a pid that has exited): its journal is adopted.
    const gone = spawnSync("true").pid!;
    writeFileSync(join(root, "lock.json"), JSON.stringify({ pid: gone, epoch: null, since: "" }));
    const third = open();
    expect(third.store.dir).toBe(root);
    expect(third.origin).toBe("restored");
    expect(third.engine.list().length).toBe(1);
    expect(JSON.parse(readFileSync(join(root, "lock.json"), "utf8")).pid).toBe(process.pid);
    third.engine.dispose();
    expect(existsSync(join(root, "head.json"))).toBe(true);
  });
});
