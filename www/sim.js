// A simulated OpenCode host for the demo page: a seeded random latency per operation, failure
// and 429 injection, and a memory reading the page can move. Everything the engine learns, it
// learns through the same host interface the real plugin implements.

/** mulberry32: a tiny seeded PRNG, so a demo run can be replayed exactly. */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class SimHost {
  constructor({ seed = 1, minMs = 15, maxMs = 120, failureRate = 0.1, rateLimitRate = 0.1, memoryUsed = 0.3 } = {}) {
    this.random = rng(seed);
    this.settings = { minMs, maxMs, failureRate, rateLimitRate };
    this.memoryUsed = memoryUsed;
    this.counts = { calls: 0, created: 0, failed: 0, rateLimited: 0 };
    this.sessionIds = new Set();
  }

  now() {
    return Date.now();
  }

  memory() {
    const limit = 4 * 1024 ** 3;
    return { used: Math.round(limit * this.memoryUsed), limit };
  }

  createSession(input) {
    const { minMs, maxMs, failureRate, rateLimitRate } = this.settings;
    this.counts.calls += 1;
    const latency = minMs + this.random() * (maxMs - minMs);
    const roll = this.random();
    return new Promise((resolve, reject) => {
      setTimeout(() => {
        if (roll < failureRate) {
          this.counts.failed += 1;
          reject(Object.assign(new Error("simulated 503 from the provider"), { status: 503 }));
        } else if (roll < failureRate + rateLimitRate) {
          this.counts.rateLimited += 1;
          reject(Object.assign(new Error("simulated 429"), { status: 429, retryAfter: 1 }));
        } else {
          this.counts.created += 1;
          const id = `ses_${input.agent}_${this.counts.created.toString(36).padStart(4, "0")}`;
          this.sessionIds.add(id);
          resolve({ id, title: input.title });
        }
      }, latency);
    });
  }
}
