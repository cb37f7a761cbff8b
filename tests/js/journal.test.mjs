// An independent verifier of foreman's journal, written from the encoding documented in
// src/store/journal.rs and nothing else, using only Node's SHA-256. It checks journals the
// Rust store produced (a whole one, and one that starts at a checkpoint), replays them into a
// plain Map, and must detect 10,000 random tamperings of each.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { rng } from "./seeded.mjs";

const SEED = Number(process.env.FOREMAN_SEED ?? 20261124);

function sha256(...parts) {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

/** Splits an export into frames: u32 length, record, 32-byte hash. */
function frames(bytes) {
  const out = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  while (at < bytes.length) {
    if (at + 4 > bytes.length) throw new Error(`frame ${out.length + 1}: truncated length`);
    const len = view.getUint32(at);
    const end = at + 4 + len + 32;
    if (end > bytes.length) throw new Error(`frame ${out.length + 1}: truncated`);
    out.push({ record: bytes.subarray(at + 4, at + 4 + len), hash: bytes.subarray(at + 4 + len, end) });
    at = end;
  }
  return out;
}

/**
 * Decodes a record: seq u64, count u32, then changes sorted by unique key. A checkpoint's first
 * change is the marker (empty key, op 2, the previous record's hash as value).
 */
function decode(record) {
  const view = new DataView(record.buffer, record.byteOffset, record.byteLength);
  let at = 0;
  const need = (n) => { if (at + n > record.length) throw new Error("truncated record"); };
  need(12);
  const seq = view.getBigUint64(0);
  const count = view.getUint32(8);
  at = 12;
  const changes = [];
  let checkpoint = null;
  for (let i = 0; i < count; i++) {
    need(4);
    const klen = view.getUint32(at); at += 4;
    need(klen + 1);
    const key = record.subarray(at, at + klen); at += klen;
    const op = record[at]; at += 1;
    let value = null;
    if (op === 1 || op === 2) {
      need(4);
      const vlen = view.getUint32(at); at += 4;
      need(vlen);
      value = record.subarray(at, at + vlen); at += vlen;
    } else if (op !== 0) throw new Error(`unknown op ${op}`);
    if (op === 2) {
      if (i !== 0 || klen !== 0 || value.length !== 32) throw new Error("checkpoint marker out of place");
      checkpoint = value;
      continue;
    }
    if (checkpoint && op === 0) throw new Error("a delete inside a checkpoint");
    const prev = changes.at(-1);
    if (prev && Buffer.compare(prev.key, key) >= 0) throw new Error("changes not sorted by unique key");
    changes.push({ key, value });
  }
  if (at !== record.length) throw new Error("trailing bytes");
  return { seq, changes, checkpoint };
}

/**
 * Verifies an export that stands alone (from seq 1, or from a checkpoint, which carries its
 * predecessor's hash) against the head the host kept; returns the replayed state.
 */
function verify(bytes, head) {
  const all = frames(bytes);
  let seq = 0n;
  let hash = new Uint8Array(32);
  if (all.length > 0) {
    const first = decode(all[0].record);
    if (first.checkpoint) {
      seq = first.seq - 1n;
      hash = first.checkpoint;
    }
  }
  const state = new Map();
  for (const [i, f] of all.entries()) {
    const r = decode(f.record);
    if (r.seq !== seq + 1n) throw new Error(`record ${i + 1}: seq ${r.seq} after ${seq}`);
    if (r.checkpoint && Buffer.compare(r.checkpoint, hash) !== 0) throw new Error(`record ${i + 1}: checkpoint off the chain`);
    const expected = sha256(hash, Uint8Array.of(0), f.record);
    if (Buffer.compare(expected, f.hash) !== 0) throw new Error(`record ${i + 1}: hash mismatch`);
    if (r.checkpoint) state.clear();
    for (const c of r.changes) {
      const k = Buffer.from(c.key).toString("hex");
      if (c.value === null) state.delete(k); else state.set(k, Buffer.from(c.value).toString("hex"));
    }
    seq = r.seq;
    hash = f.hash;
  }
  if (seq !== BigInt(head.seq) || Buffer.from(hash).toString("hex") !== head.hash) {
    throw new Error(`journal ends at seq ${seq}, head is seq ${head.seq}`);
  }
  return state;
}

function rustJournal(seed, transactions, checkpointAfter = 0) {
  const args = [String(seed), String(transactions), String(checkpointAfter)];
  const out = execFileSync("cargo", ["run", "--quiet", "--example", "journal_export", "--", ...args], {
    encoding: "utf8",
    cwd: new URL("../..", import.meta.url).pathname,
  });
  const parsed = JSON.parse(out);
  return { bytes: Uint8Array.from(Buffer.from(parsed.export, "hex")), head: parsed.head, state: parsed.state };
}

const journals = [
  { name: "a whole journal", journal: rustJournal(SEED, 120), seq: 120 },
  { name: "a journal that starts at a checkpoint", journal: rustJournal(SEED, 120, 70), seq: 121 },
];

for (const { name, journal, seq } of journals) {
  test(`the JS verifier accepts ${name} from Rust and replays the same state`, () => {
    const state = verify(journal.bytes, journal.head);
    assert.equal(journal.head.seq, seq);
    assert.deepEqual(Object.fromEntries([...state].sort()), Object.fromEntries(Object.entries(journal.state).sort()));
    if (seq === 121) assert.notEqual(decode(frames(journal.bytes)[0].record).checkpoint, null);
  });

  test(`10,000 random tamperings of ${name} are all detected by the JS verifier (seed ${SEED})`, () => {
    const random = rng(SEED);
    const records = [];
    const view = new DataView(journal.bytes.buffer);
    for (let at = 0; at < journal.bytes.length; ) {
      const end = at + 4 + view.getUint32(at) + 32;
      records.push(journal.bytes.subarray(at, end));
      at = end;
    }
    const join = (parts) => Uint8Array.from(Buffer.concat(parts));
    const kinds = [0, 0, 0, 0];
    for (let n = 0; n < 10_000; n++) {
      const kind = random(4);
      kinds[kind]++;
      let tampered;
      if (kind === 0) {
        tampered = Uint8Array.from(journal.bytes);
        tampered[random(tampered.length)] ^= 1 << random(8);
      } else if (kind === 1) {
        const r = [...records];
        r.splice(random(r.length), 1);
        tampered = join(r);
      } else if (kind === 2) {
        const r = [...records];
        const a = random(r.length);
        const b = (a + 1 + random(r.length - 1)) % r.length;
        [r[a], r[b]] = [r[b], r[a]];
        tampered = join(r);
      } else {
        tampered = join(records.slice(0, random(records.length)));
      }
      assert.throws(() => verify(tampered, journal.head), undefined, `tampering ${n} (kind ${kind}) was not detected`);
    }
    assert.ok(kinds.every((k) => k > 2000), `every kind was tried: ${kinds}`);
  });
}

// The engine's own journal, read with the key layout documented in src/store/journal.rs
// ("What the engine's keys hold"): the chain verifies, a prompt and a result are each written
// once, every transition puts only a small state, and retention's deletes leave the replayed
// state equal to the tasks the engine still holds.
test("the JS verifier reads an engine's journal: specs once, small state puts, forgotten tasks deleted", async () => {
  const { FakeServer, loadEngine } = await import("./fake-server.mjs");
  const Engine = loadEngine();
  const server = new FakeServer({ turnMs: 1_000 });
  const engine = server.attach(new Engine(server.host(), { lanes: { worker: 4 }, retention: { maxTasks: 5 } }));
  const prompt = (i) => `prompt ${i} `.repeat(200);
  for (let i = 0; i < 12; i++) engine.delegate({ agent: "worker", prompt: prompt(i), idempotencyKey: `k${i}` });
  await server.advance(20_000);
  engine.delegate({ agent: "worker", prompt: "last" }); // lets retention act on the settled ones
  const bytes = engine.journalExport();
  const head = engine.journalHead();
  const state = verify(bytes, head);
  const text = (k) => Buffer.from(k).toString("latin1");
  const specPuts = new Map();
  const results = new Map();
  for (const f of frames(bytes)) {
    const r = decode(f.record);
    for (const c of r.changes) {
      const key = text(c.key);
      if (c.value === null) continue;
      if (key[0] === "s") specPuts.set(key, (specPuts.get(key) ?? 0) + 1);
      if (key[0] === "t") {
        assert.equal(c.value[0], 2, "task state format 2");
        if (c.value[1] === 5) {
          results.set(key, (results.get(key) ?? 0) + 1); // succeeded: the result, once
        } else {
          assert.ok(c.value.length < 200, `a state put of ${c.value.length} bytes`);
          assert.ok(!Buffer.from(c.value).toString().includes("prompt "), "a state never repeats the prompt");
        }
      }
    }
  }
  assert.ok([...specPuts.values()].every((n) => n === 1), "each spec is written once");
  assert.ok(results.size > 0 && [...results.values()].every((n) => n === 1), "each result is written once");
  const held = engine.list().map((t) => t.id).sort((a, b) => a - b);
  const keys = [...state.keys()].map((k) => Buffer.from(k, "hex"));
  const ids = (prefix) => keys.filter((k) => k[0] === prefix.charCodeAt(0) && k.length === 5).map((k) => k.readUInt32BE(1)).sort((a, b) => a - b);
  assert.deepEqual(ids("t"), held, "the replayed state holds exactly the tasks the engine holds");
  assert.deepEqual(ids("s"), held);
  assert.ok(held.length < 13 && engine.stats().tasks.forgotten > 0);
  const epoch = state.get(Buffer.from("mepoch").toString("hex"));
  assert.equal(epoch, "0".repeat(16), "a new engine's epoch is 0");
  const idem = keys.filter((k) => text(k).startsWith("midem/")).length;
  assert.equal(idem, held.filter((id) => id <= 12).length, "forgotten tasks' idempotency keys are gone");
  engine.dispose();
});
