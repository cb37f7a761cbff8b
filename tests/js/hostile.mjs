// Hostile hosts for the liveness tests: wrappers over a FakeServer's host that lose, repeat or
// reorder bus events, never answer some calls, step the clock, or throw and reject with values
// that are hard to read (revoked proxies, promises whose `then` throws). They wrap the
// simulated server from the outside and leave its internals alone.

/** A revoked proxy: every operation on it throws a TypeError, even `Array.isArray`. */
export function revoked() {
  const { proxy, revoke } = Proxy.revocable({}, {});
  revoke();
  return proxy;
}

/**
 * A native promise whose own `then` throws (adopting it with `Promise.resolve` would call it);
 * it settles like `inner`.
 */
export function throwingThen(inner) {
  const p = inner.then((v) => v);
  p.then = () => {
    throw new Error("then trap");
  };
  return p;
}

/** A promise that never settles. */
export const never = () => new Promise(() => {});

/**
 * A host over `server` whose listed operations misbehave: `ops[name]` is a function
 * `(input, callId, real) => value` replacing the operation (`real` calls the server's own).
 */
export function hostWith(server, ops = {}, extra = {}) {
  const host = server.host();
  for (const [name, f] of Object.entries(ops)) {
    const real = host[name];
    host[name] = (input, callId) => f(input, callId, real);
  }
  return Object.assign(host, extra);
}

/**
 * Routes the server's bus events through `filter(event) → event[]` before the engine sees them:
 * `[]` loses one, `[e, e]` repeats it, and `hold` keeps it for `release` (reordering).
 */
export function filterEvents(server, filter) {
  const held = [];
  const emit = server.emit.bind(server);
  server.emit = (type, properties) => {
    const out = filter({ type, properties }, held);
    for (const e of out) emit(e.type, e.properties);
  };
  return {
    held,
    release() {
      for (const e of held.splice(0)) emit(e.type, e.properties);
    },
  };
}

/** Settles `promises`, counting how each one settled; never rejects. */
export async function outcomes(promises) {
  const results = await Promise.allSettled(promises);
  return {
    fulfilled: results.filter((r) => r.status === "fulfilled").length,
    rejected: results.filter((r) => r.status === "rejected"),
  };
}
