// Reads the engine's journal export (its documented byte format, src/store/journal.rs) for the
// journal tail view, and makes the one-byte forgery the tamper button verifies. The page never
// judges a journal itself: verification is the engine's (`verify`, `Engine.restore`).
//
// frame  = record_len:u32 record:byte{record_len} hash:byte{32}
// record = seq:u64 count:u32 change{count}
// change = key_len:u32 key:byte{key_len} op:u8 [value_len:u32 value:byte{value_len}]

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/** The frames of an export: `{ seq, changes: [{ key, op, size }], hash, start, length }`. */
export function parseFrames(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const frames = [];
  let at = 0;
  while (at + 4 <= bytes.length) {
    const length = view.getUint32(at);
    const start = at + 4;
    if (start + length + 32 > bytes.length || length < 12) break;
    const seq = view.getUint32(start) * 2 ** 32 + view.getUint32(start + 4);
    const count = view.getUint32(start + 8);
    const changes = [];
    let p = start + 12;
    for (let i = 0; i < count && p < start + length; i++) {
      const keyLength = view.getUint32(p);
      const key = bytes.subarray(p + 4, p + 4 + keyLength);
      const keyLast = keyLength > 0 ? p + 3 + keyLength : null;
      p += 4 + keyLength;
      const op = bytes[p];
      p += 1;
      let size = 0;
      let value = null;
      if (op !== 0) {
        size = view.getUint32(p);
        value = p + 4;
        p += 4 + size;
      }
      changes.push({ key: describeKey(key), op: op === 0 ? "delete" : op === 1 ? "put" : "checkpoint", size, value, keyLast });
    }
    frames.push({ seq, changes, hash: hex(bytes.subarray(start + length, start + length + 32)), start, length });
    at = start + length + 32;
  }
  return frames;
}

/** A store key as people read it: `task 17`, or a metadata name (`session/ses_0003`). */
export function describeKey(key) {
  if (key.length === 5 && key[0] === 0x74) {
    return `task ${new DataView(key.buffer, key.byteOffset, 5).getUint32(1)}`;
  }
  if (key.length > 0 && key[0] === 0x6d) return new TextDecoder().decode(key.subarray(1));
  return key.length === 0 ? "∅" : hex(key);
}

/** One line for a record's changes. */
export function describeChanges(changes) {
  if (changes[0]?.op === "checkpoint") return `checkpoint: the whole state (${changes.length - 1} puts)`;
  return changes.map((c) => `${c.op} ${c.key}${c.op === "put" ? ` (${c.size} B)` : ""}`).join(", ");
}

/** A copy of `bytes` with one bit of the record with sequence `seq` flipped — inside the value
 * of a put, else inside a key, so the record still reads and only the chain can tell — or null
 * when the export holds no such record. */
export function tamper(bytes, seq) {
  const frame = parseFrames(bytes).find((f) => f.seq === seq);
  if (!frame) return null;
  const put = frame.changes.find((c) => c.op !== "delete" && c.size > 0);
  const keyed = frame.changes.find((c) => c.keyLast != null);
  const at = put ? put.value + put.size - 1 : keyed ? keyed.keyLast : frame.start + frame.length - 1;
  const copy = Uint8Array.from(bytes);
  copy[at] ^= 0x01;
  return copy;
}
