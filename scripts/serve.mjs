// A small static server for the demo: serves the repository root on 127.0.0.1 so the page in
// www/ can import the wasm package from pkg/ and its chart library (uPlot, an npm dev
// dependency) from node_modules/ as the package ships it. Usage: node scripts/serve.mjs [port]
// (0 = any).
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(fileURLToPath(new URL("..", import.meta.url)));
const types = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8", ".wasm": "application/wasm", ".json": "application/json",
  ".ts": "text/plain; charset=utf-8", ".svg": "image/svg+xml",
};
const allowed = ["/www/", "/pkg/", "/node_modules/uplot/dist/"];

const server = createServer(async (req, res) => {
  const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname));
  if (path === "/" || path === "/www") {
    res.writeHead(302, { location: "/www/" }).end();
    return;
  }
  const file = path.endsWith("/") ? join(path, "index.html") : path;
  if (!allowed.some((p) => file.startsWith(p))) {
    res.writeHead(404).end("not found");
    return;
  }
  try {
    const body = await readFile(join(root, file));
    res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream", "cache-control": "no-store" });
    res.end(body);
  } catch {
    res.writeHead(404).end("not found");
  }
});

const wanted = Number(process.argv[2] ?? process.env.PORT ?? 8080);
server.on("error", (err) => {
  if (err.code === "EADDRINUSE" && wanted !== 0) {
    console.log(`port ${wanted} is in use; picking a free one`);
    server.listen(0, "127.0.0.1");
  } else {
    throw err;
  }
});
server.listen(wanted, "127.0.0.1", () => {
  const { port } = server.address();
  console.log(`foreman demo: http://127.0.0.1:${port}/www/`);
  if (process.send) process.send({ port });
});
