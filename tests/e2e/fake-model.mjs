// A fake OpenAI-compatible model for end-to-end tests, on 127.0.0.1 only. It speaks
// `/v1/chat/completions` with SSE streaming and tool calls, and measures what a real provider
// would see: requests in flight per model (now and at peak), and every request's start, end and
// outcome in order (`done`, `closed` when the client closed the stream first, as an abort does,
// or `failed`).
//
// Replies follow a script written in the last user message, so each sub-agent answers with its
// own text:
//   - `CALL <tool> <json>`: call that tool with the JSON object that ends the message;
//   - `CALLS <tool> <json array>`: call that tool once per element of the JSON array that ends the
//     message, all in one assistant message (OpenCode runs them concurrently);
//   - `please call <tool>`: call that tool with `{}` (`TOOL_NOT_OFFERED <tool>` if not offered);
//   - `SLEEP <ms>`: answer after that long (the stream opens at once);
//   - `FAIL <status>`: answer with that HTTP status and an `invalid_request_error` body (with
//     `retry-after-ms: 10`, so OpenCode's own retries of a 5xx take milliseconds, not a minute);
//   - `SAY <text>`: answer exactly that text (to the end of its line);
//   - `HANG`: open the stream, send the first chunk, and never finish (until the client closes);
//   - a message starting `[foreman]` (the plugin's notice to a parent): `noted`, after
//     `noticeDelayMs`;
//   - anything else: `reply to: <first line>`.
// A turn whose last message is a tool result answers `tool said: <result>`.
//
// Faults for a whole provider, set while the server runs: `setFault({ status, probability,
// headers, models })` makes requests (of `models`, default all) answer `status` with
// `probability` (default 1) and the given response headers (e.g. `{ "retry-after": "1" }`), until
// `setFault(null)`. Which requests a probability below 1 hits follows `seed` (default 1), so a
// failing run can be replayed. Each request's log entry records the status it was answered with.
import { createServer } from "node:http";
import { rng } from "../js/seeded.mjs";

function chunk(id, delta, finish = null) {
  return { id, object: "chat.completion.chunk", created: 0, model: "fake-model", choices: [{ index: 0, delta, finish_reason: finish }] };
}

function textOf(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p) => p.text ?? "").join("");
  return "";
}

/** The text of the last user message of a chat request. */
export function lastUserText(body) {
  const messages = body.messages ?? [];
  for (let i = messages.length - 1; i >= 0; i--) if (messages[i].role === "user") return textOf(messages[i].content);
  return "";
}

/** Decides the reply to a chat request: `{ text, delayMs }`, `{ tool, args }` or `{ status }`. */
export function decide(body, { noticeDelayMs = 0 } = {}) {
  const messages = body.messages ?? [];
  const last = messages[messages.length - 1] ?? {};
  if (last.role === "tool") return { text: `tool said: ${textOf(last.content)}` };
  const text = textOf(last.content);
  const offered = new Set((body.tools ?? []).map((t) => t.function?.name));
  const calls = /\bCALLS (\w+) /.exec(text);
  if (calls) {
    const list = JSON.parse(text.slice(text.indexOf("[", calls.index)));
    return offered.has(calls[1]) ? { tools: list.map((args) => ({ tool: calls[1], args: JSON.stringify(args) })) } : { text: `TOOL_NOT_OFFERED ${calls[1]}` };
  }
  const call = /\bCALL (\w+) /.exec(text);
  if (call) {
    const json = text.slice(text.indexOf("{", call.index));
    return offered.has(call[1]) ? { tool: call[1], args: json } : { text: `TOOL_NOT_OFFERED ${call[1]}` };
  }
  const asked = /\bplease call (\w+)/.exec(text)?.[1];
  if (asked) return offered.has(asked) ? { tool: asked, args: "{}" } : { text: `TOOL_NOT_OFFERED ${asked}` };
  if (text.startsWith("[foreman]")) return { text: "noted", delayMs: noticeDelayMs };
  const fail = /\bFAIL (\d{3})\b/.exec(text);
  if (fail) return { status: Number(fail[1]) };
  if (/\bHANG\b/.test(text)) return { hang: true };
  const delayMs = Number(/\bSLEEP (\d+)\b/.exec(text)?.[1] ?? 0);
  const say = /\bSAY ([^\n]*)/.exec(text)?.[1];
  return { text: say ?? `reply to: ${text.split("\n")[0]}`, delayMs };
}

export async function startFakeModel(options = {}) {
  const requests = [];
  /** Every request in arrival order: { seq, model, text, start, end, outcome }. */
  const log = [];
  const active = {};
  const peak = {};
  let n = 0;
  let fault = null;
  let draw = () => 0; // uniform in [0, 1), seeded by setFault
  const server = createServer((req, res) => {
    let raw = "";
    req.on("data", (d) => (raw += d));
    req.on("end", () => {
      if (req.method !== "POST" || !req.url.endsWith("/chat/completions")) {
        res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "not found", type: "invalid_request_error" } }));
        return;
      }
      const body = JSON.parse(raw || "{}");
      requests.push(body);
      const model = body.model ?? "?";
      const entry = { seq: ++n, model, text: lastUserText(body), start: Date.now(), end: undefined, outcome: undefined };
      log.push(entry);
      active[model] = (active[model] ?? 0) + 1;
      peak[model] = Math.max(peak[model] ?? 0, active[model]);
      let finished = false;
      let timer;
      const finish = (outcome) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        entry.end = Date.now();
        entry.outcome = outcome;
        active[model]--;
      };
      res.on("close", () => finish("closed")); // no-op after a normal end
      const id = `chatcmpl-${entry.seq}`;
      const faulted = fault && (!fault.models || fault.models.includes(model)) && draw() < (fault.probability ?? 1);
      const reply = faulted ? { status: fault.status, headers: fault.headers ?? {} } : decide(body, options);
      const usage = { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 };
      if (reply.status) {
        entry.status = reply.status;
        finish("failed");
        res.writeHead(reply.status, { "content-type": "application/json", ...(reply.headers ?? { "retry-after-ms": "10" }) });
        res.end(JSON.stringify({ error: { message: `scripted failure ${reply.status}`, type: "invalid_request_error", code: "scripted" } }));
        return;
      }
      if (!body.stream) {
        const message = reply.tool
          ? { role: "assistant", content: null, tool_calls: [{ id: `call_${entry.seq}`, type: "function", function: { name: reply.tool, arguments: reply.args } }] }
          : { role: "assistant", content: reply.text };
        finish("done");
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ id, object: "chat.completion", created: 0, model, choices: [{ index: 0, message, finish_reason: reply.tool ? "tool_calls" : "stop" }], usage }));
        return;
      }
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
      const send = (obj) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
      if (reply.tool || reply.tools) {
        const list = reply.tools ?? [{ tool: reply.tool, args: reply.args }];
        list.forEach((c, i) => {
          const delta = { index: i, id: `call_${entry.seq}_${i}`, type: "function", function: { name: c.tool, arguments: "" } };
          send(chunk(id, i === 0 ? { role: "assistant", tool_calls: [delta] } : { tool_calls: [delta] }));
          send(chunk(id, { tool_calls: [{ index: i, function: { arguments: c.args } }] }));
        });
        send({ ...chunk(id, {}, "tool_calls"), usage });
        finish("done");
        res.end("data: [DONE]\n\n");
        return;
      }
      send(chunk(id, { role: "assistant", content: "" }));
      if (reply.hang) return; // ends only when the client closes the stream ("closed")
      timer = setTimeout(() => {
        if (finished) return;
        send(chunk(id, { content: reply.text }));
        send({ ...chunk(id, {}, "stop"), usage });
        finish("done");
        res.end("data: [DONE]\n\n");
      }, reply.delayMs ?? 0);
    });
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    log,
    active,
    peak,
    /** Sets (or with `null` clears) a provider-wide fault: see the header comment. */
    setFault(f) {
      fault = f;
      const next = rng(f?.seed ?? 1);
      draw = () => next(1_000_000) / 1_000_000;
    },
    /** Forgets the peaks, so a test measures only its own requests. */
    resetPeaks() {
      for (const m of Object.keys(peak)) peak[m] = active[m] ?? 0;
    },
    close: () => new Promise((ok) => { server.closeAllConnections?.(); server.close(ok); }),
  };
}
