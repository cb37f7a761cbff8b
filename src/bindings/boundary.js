// Boundary helpers: reading arbitrary JavaScript values without letting their traps (proxies,
// getters, thenables) escape into WebAssembly as exceptions, and the typed errors JavaScript
// callers get. Imported by convert.rs, host.rs and run.js.

const then = Promise.prototype.then;

const MAX_NODES = 100_000;
const MAX_DEPTH = 64;

/**
 * A copy of `value` made of plain data (objects, arrays, primitives; functions kept as they
 * are), read inside a `try`: a proxy or getter that throws, a cycle, or too deep or too large a
 * value gives `{ error }` instead of an exception inside WebAssembly.
 */
export function safeClone(value) {
  let nodes = 0;
  const seen = new Set();
  const copy = (v, depth) => {
    if (v === null || (typeof v !== "object" && typeof v !== "function")) return v;
    if (typeof v === "function") return v;
    if (++nodes > MAX_NODES) throw new Error(`more than ${MAX_NODES} values`);
    if (depth > MAX_DEPTH) throw new Error(`nested deeper than ${MAX_DEPTH}`);
    if (seen.has(v)) throw new Error("a cycle");
    seen.add(v);
    let out;
    if (Array.isArray(v)) {
      out = [];
      for (let i = 0; i < v.length; i++) out.push(copy(v[i], depth + 1));
    } else if (v instanceof Uint8Array) {
      out = v;
    } else {
      out = {};
      for (const key of Object.keys(v)) out[key] = copy(v[key], depth + 1);
    }
    seen.delete(v);
    return out;
  };
  try {
    return { value: copy(value, 0) };
  } catch (error) {
    let message;
    try {
      message = String(error?.message ?? error);
    } catch {
      message = "it could not be read";
    }
    return { error: `could not be read: ${message}` };
  }
}

/**
 * The work's result as a promise: a native one as it is, anything else adopted (a thenable is
 * followed; an object whose `then` cannot be read — a proxy's trap — makes a rejection, never
 * an exception here).
 */
export function promiseOf(result) {
  try {
    if (result instanceof Promise) return result;
  } catch {
    // `instanceof` ran a trap that threw: adopt it like any other object.
  }
  return Promise.resolve(result);
}

/** `Array.isArray(value)`, false when the check throws (a revoked proxy). */
export function isArray(value) {
  try {
    return Array.isArray(value);
  } catch {
    return false;
  }
}

/**
 * Calls `ok(value)` or `err(error)` once with what a host function returned, later (as a promise
 * reaction), whatever it is: a native promise is followed with the native `then` (its own `then`,
 * possibly a throwing one, is never called), anything else is adopted with `Promise.resolve`
 * (a thenable is followed; one whose `then` throws rejects). A value whose adoption itself throws
 * (a revoked proxy, a throwing `constructor` getter) rejects with that error. Never throws.
 */
export function follow(value, ok, err) {
  let promise;
  try {
    promise = value instanceof Promise ? value : Promise.resolve(value);
    then.call(promise, ok, err);
    return;
  } catch (error) {
    promise = Promise.reject(error);
  }
  then.call(promise, ok, err);
}

/**
 * Whether `value` is a real `Uint8Array` whose bytes can be read: not a proxy of one (its
 * `Symbol.toStringTag` getter answers only for real typed arrays) and not detached (`slice`
 * validates that). Never throws.
 */
export function readableBytes(value) {
  try {
    if (Object.prototype.toString.call(value) !== "[object Uint8Array]") return false;
    Uint8Array.prototype.slice.call(value, 0, 0);
    return true;
  } catch {
    return false;
  }
}

/** A typed error (`name` ForemanError, a stable `code`), with `extra` fields. */
export function foremanError(code, message, extra) {
  const e = new Error(message);
  e.name = "ForemanError";
  e.code = code;
  return Object.assign(e, extra);
}

/** `INVALID_INPUT` naming the field and why. */
export function invalid(field, reason) {
  return foremanError("INVALID_INPUT", `invalid input \`${field}\`: ${reason}`, { field });
}

/** [`invalid`], rejected. */
export function bad(field, reason) {
  return Promise.reject(invalid(field, reason));
}

/** `ctx.join`'s result: the values in order, or the first rejection in order. */
export function values(results) {
  const out = [];
  for (const r of results) {
    if (r.status === "rejected") throw r.reason;
    out.push(r.value);
  }
  return out;
}
