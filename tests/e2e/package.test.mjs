// The npm package a user installs, packed from this checkout (`scripts/package.mjs`):
//   1. its engine entry (`foreman-opencode/engine`) loads and runs tasks under Node, Bun and Deno;
//   2. installed into a fresh project's `.opencode/` and loaded by name from a plugin file there,
//      it answers `foreman_status` in a real `opencode serve`.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createOpencodeClient } from "@opencode-ai/sdk";
import { startFakeModel } from "./fake-model.mjs";
import { Opencode, repo } from "./opencode.mjs";

const LIMIT = { timeout: 240_000 };
const version = /^version = "(.+)"$/m.exec(readFileSync(join(repo, "Cargo.toml"), "utf8"))[1];
const bin = (name) => join(repo, "node_modules", ".bin", name);
let tarball, scratch;

/** `npm install`s the tarball into `dir` (a package.json there is kept). */
function install(dir) {
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", tarball], { cwd: dir, stdio: ["ignore", "ignore", "inherit"] });
}

before(() => {
  tarball = execFileSync("node", [join(repo, "scripts", "package.mjs")], { encoding: "utf8" }).trim();
  scratch = mkdtempSync(join(tmpdir(), "foreman-package-"));
}, LIMIT);

after(() => rmSync(scratch, { recursive: true, force: true }));

test("the package's engine loads and runs tasks under Node, Bun and Deno", LIMIT, async (t) => {
  const app = join(scratch, "app");
  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  install(app);
  writeFileSync(
    join(app, "main.js"),
    `import { Engine } from "foreman-opencode/engine";
const host = { now: () => Date.now(), memory: () => ({ used: 1, limit: 10 }), createSession: () => undefined };
const engine = new Engine(host, { lanes: { io: 2 } });
let active = 0, peak = 0;
const results = await Promise.all([1, 2, 3, 4, 5].map((i) => engine.run(async () => {
  peak = Math.max(peak, ++active);
  await new Promise((r) => setTimeout(r, 5));
  active--;
  return i * 2;
}, { lane: "io" })));
engine.dispose();
console.log(JSON.stringify({ version: Engine.version(), results, peak }));
`,
  );
  const runs = {
    node: [process.execPath, ["main.js"]],
    bun: [bin("bun"), ["main.js"]],
    deno: [bin("deno"), ["run", "--quiet", "--allow-read", "--allow-env", "main.js"]],
  };
  for (const [runtime, [cmd, args]] of Object.entries(runs)) {
    const out = execFileSync(cmd, args, { cwd: app, encoding: "utf8", env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" } });
    const seen = JSON.parse(out.trim().split("\n").pop());
    t.diagnostic(`${runtime}: ${out.trim()}`);
    assert.deepEqual(seen, { version, results: [2, 4, 6, 8, 10], peak: 2 }, runtime);
  }
});

test("installed into a fresh project's .opencode/, the package loads by name and answers foreman_status in a real server", LIMIT, async () => {
  const model = await startFakeModel();
  const opencode = new Opencode();
  try {
    const dir = opencode.project("packaged", { modelUrl: model.url });
    install(join(dir, ".opencode"));
    mkdirSync(join(dir, ".opencode", "plugins"), { recursive: true });
    writeFileSync(join(dir, ".opencode", "plugins", "foreman.ts"), `export { default } from "foreman-opencode";\n`);
    await opencode.start();
    const client = createOpencodeClient({ baseUrl: opencode.url });
    const s = await client.session.create({ body: { title: "packaged" }, query: { directory: dir } });
    assert.ok(s.data, JSON.stringify(s.error));
    await client.session.prompt({ path: { id: s.data.id }, query: { directory: dir }, body: { parts: [{ type: "text", text: "please call foreman_status" }] } });
    const parts = (await client.session.messages({ path: { id: s.data.id }, query: { directory: dir } })).data.flatMap((m) => m.parts);
    const tool = parts.find((p) => p.type === "tool" && p.tool === "foreman_status");
    assert.equal(tool?.state.status, "completed", JSON.stringify(parts.map((p) => p.text ?? p.state)));
    assert.ok(tool.state.output.startsWith(`foreman v${version} (wasm engine)\n`), tool.state.output);
  } finally {
    await opencode.stop();
    await model.close();
  }
});
