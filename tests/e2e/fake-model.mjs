// A fake OpenAI-compatible model for end-to-end tests, on 127.0.0.1 only. It speaks
// `/v1/chat/completions` with SSE streaming and tool calls, and follows a fixed script:
//   - a user turn that mentions a tool the request offers (e.g. "call foreman_status") → the
//     model calls that tool with `{}` arguments;
//   - a turn whose last message is a tool result → the model answers `tool said: <result>`;
//   - a user turn naming a tool the request does not offer → `TOOL_NOT_OFFERED <name>`;
//   - anything else → `ok`.
import { createServer } from "node:http";

function chunk(id, delta, finish = null) {
  return { id, object: "chat.completion.chunk", created: 0, model: "fake-model", choices: [{ index: 0, delta, finish_reason: finish }] };
}

function textOf(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p) => p.text ?? "").join("");
  return "";
}

/** Decides the reply to a chat request: `{ text }` or `{ tool }`. */
export function decide(body) {
  const messages = body.messages ?? [];
  const last = messages[messages.length - 1] ?? {};
  if (last.role === "tool") return { text: `tool said: ${textOf(last.content)}` };
  const offered = new Set((body.tools ?? []).map((t) => t.function?.name));
  const asked = /call (\w+)/.exec(textOf(last.content))?.[1];
  if (asked) return offered.has(asked) ? { tool: asked } : { text: `TOOL_NOT_OFFERED ${asked}` };
  return { text: "ok" };
}

export async function startFakeModel() {
  const requests = [];
  let n = 0;
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
      const id = `chatcmpl-${++n}`;
      const reply = decide(body);
      const usage = { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 };
      if (!body.stream) {
        const message = reply.tool
          ? { role: "assistant", content: null, tool_calls: [{ id: `call_${n}`, type: "function", function: { name: reply.tool, arguments: "{}" } }] }
          : { role: "assistant", content: reply.text };
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ id, object: "chat.completion", created: 0, model: "fake-model", choices: [{ index: 0, message, finish_reason: reply.tool ? "tool_calls" : "stop" }], usage }));
        return;
      }
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
      const send = (obj) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
      if (reply.tool) {
        send(chunk(id, { role: "assistant", tool_calls: [{ index: 0, id: `call_${n}`, type: "function", function: { name: reply.tool, arguments: "" } }] }));
        send(chunk(id, { tool_calls: [{ index: 0, function: { arguments: "{}" } }] }));
        send({ ...chunk(id, {}, "tool_calls"), usage });
      } else {
        send(chunk(id, { role: "assistant", content: "" }));
        send(chunk(id, { content: reply.text }));
        send({ ...chunk(id, {}, "stop"), usage });
      }
      res.end("data: [DONE]\n\n");
    });
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () => new Promise((ok) => { server.closeAllConnections?.(); server.close(ok); }),
  };
}
