// Runs a real `opencode serve` for end-to-end tests, fully offline and isolated:
//   - HOME and the XDG directories point into a fresh temp folder;
//   - auto-update, model-catalogue fetches, sharing, LSP downloads and external skills are off;
//   - each project is its own git root (OpenCode walks up to the enclosing .git, and without one
//     would load and write every ancestor .opencode/);
//   - `@opencode-ai/plugin` is pre-installed in every config dir, because OpenCode installs it
//     there at boot and, offline, would wait on the package manager and then fail the plugin.
// The server listens on 127.0.0.1 only.
import { spawn, execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const repo = fileURLToPath(new URL("../..", import.meta.url));
const opencodeBin = join(repo, "node_modules", ".bin", "opencode");
const pluginVersion = "1.18.33";

async function freePort() {
  const srv = createServer();
  await new Promise((ok) => srv.listen(0, "127.0.0.1", ok));
  const { port } = srv.address();
  await new Promise((ok) => srv.close(ok));
  return port;
}

/** Makes `dir` a config dir with `@opencode-ai/plugin` already installed. */
function preinstallPluginPackage(dir) {
  mkdirSync(join(dir, "node_modules", "@opencode-ai"), { recursive: true });
  writeFileSync(join(dir, "package.json"), JSON.stringify({ dependencies: { "@opencode-ai/plugin": pluginVersion } }, null, 2));
  for (const pkg of ["@opencode-ai/plugin", "@opencode-ai/sdk", "zod"]) {
    const from = join(repo, "plugin", "node_modules", pkg);
    if (existsSync(from)) cpSync(from, join(dir, "node_modules", pkg), { recursive: true, dereference: true });
  }
}

export class Opencode {
  constructor() {
    this.root = mkdtempSync(join(tmpdir(), "foreman-e2e-"));
    this.home = join(this.root, "home");
    this.env = {
      ...process.env,
      HOME: this.home,
      XDG_CONFIG_HOME: join(this.home, ".config"),
      XDG_DATA_HOME: join(this.home, ".local", "share"),
      XDG_CACHE_HOME: join(this.home, ".cache"),
      XDG_STATE_HOME: join(this.home, ".local", "state"),
      // npm reads its registry and CA settings from the real user config.
      NPM_CONFIG_USERCONFIG: process.env.NPM_CONFIG_USERCONFIG ?? join(homedir(), ".npmrc"),
      OPENCODE_DISABLE_AUTOUPDATE: "1",
      OPENCODE_DISABLE_MODELS_FETCH: "1",
      OPENCODE_DISABLE_SHARE: "1",
      OPENCODE_DISABLE_LSP_DOWNLOAD: "1",
      OPENCODE_DISABLE_CLAUDE_CODE: "1",
      OPENCODE_DISABLE_EXTERNAL_SKILLS: "1",
    };
    preinstallPluginPackage(join(this.env.XDG_CONFIG_HOME, "opencode"));
    this.log = [];
  }

  /** A project folder (its own git root) whose opencode.json uses the fake model and `plugins`.
   * `models` names more models of the fake provider; `extra` is merged into the config. */
  project(name, { modelUrl, plugins = [], models = [], extra = {} }) {
    const dir = join(this.root, name);
    mkdirSync(join(dir, ".opencode"), { recursive: true });
    execFileSync("git", ["init", "-q", dir]);
    preinstallPluginPackage(join(dir, ".opencode"));
    const config = {
      $schema: "https://opencode.ai/config.json",
      autoupdate: false,
      share: "disabled",
      snapshot: false,
      lsp: false,
      formatter: false,
      enabled_providers: ["fake"],
      provider: {
        fake: {
          npm: "@ai-sdk/openai-compatible",
          name: "Fake",
          options: { baseURL: modelUrl, apiKey: "not-a-key" },
          models: Object.fromEntries(
            ["fake-model", ...models].map((m) => [m, { name: m, tool_call: true, limit: { context: 100000, output: 4096 } }]),
          ),
        },
      },
      model: "fake/fake-model",
      small_model: "fake/fake-model",
      plugin: plugins,
      ...extra,
    };
    writeFileSync(join(dir, "opencode.json"), JSON.stringify(config, null, 2));
    return dir;
  }

  async start({ timeoutMs = 60_000 } = {}) {
    this.port = await freePort();
    this.url = `http://127.0.0.1:${this.port}`;
    this.proc = spawn(opencodeBin, ["serve", "--hostname", "127.0.0.1", "--port", String(this.port), "--print-logs"], {
      cwd: this.root,
      env: this.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    for (const stream of [this.proc.stdout, this.proc.stderr]) stream.on("data", (d) => this.log.push(String(d)));
    const exited = new Promise((_, fail) => this.proc.once("exit", (code) => fail(new Error(`opencode exited with ${code}:\n${this.log.join("")}`))));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const ok = await Promise.race([
        // A request that arrives while the server is still starting can hang: give each try
        // its own short timeout so one stuck request never stalls the wait.
        fetch(`${this.url}/global/health`, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false),
        exited,
      ]);
      if (ok) return this;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`opencode did not become healthy in ${timeoutMs} ms:\n${this.log.join("")}`);
  }

  async stop() {
    if (this.proc && this.proc.exitCode === null) {
      this.proc.kill("SIGTERM");
      await Promise.race([new Promise((ok) => this.proc.once("exit", ok)), new Promise((ok) => setTimeout(ok, 5000))]);
      if (this.proc.exitCode === null) this.proc.kill("SIGKILL");
    }
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** Collects a running server's bus events for `directory`, each stamped with its arrival time
 * (`at`, epoch ms) — plugin load failures and toasts arrive only as events. */
export function watchEvents(url, directory) {
  const events = [];
  const abort = new AbortController();
  const done = (async () => {
    const res = await fetch(`${url}/event?directory=${encodeURIComponent(directory)}`, { signal: abort.signal });
    const decoder = new TextDecoder();
    let buffer = "";
    for await (const bytes of res.body) {
      const at = Date.now();
      buffer += decoder.decode(bytes, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const data = buffer.slice(0, cut).split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5)).join("");
        buffer = buffer.slice(cut + 2);
        if (data) events.push({ at, ...JSON.parse(data) });
      }
    }
  })().catch(() => {});
  return { events, stop: async () => { abort.abort(); await done; } };
}

/** Polls `check` every 100 ms until it returns something truthy, which it returns; throws after
 * `ms` naming `what` (and whatever `show` adds). */
export async function until(what, check, ms = 60_000, show = () => "") {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${show()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A new session in a project through an SDK client (throws with the server's error). */
export async function newSession(client, directory, title) {
  const r = await client.session.create({ body: { title }, query: { directory } });
  if (!r.data) throw new Error(`session.create: ${JSON.stringify(r.error)}`);
  return r.data.id;
}

/** Sends `text` as the user and waits for the turn to end (throws with the server's error). */
export async function say(client, directory, sessionID, text) {
  const r = await client.session.prompt({ path: { id: sessionID }, query: { directory }, body: { parts: [{ type: "text", text }] } });
  if (!r.data) throw new Error(`prompt: ${JSON.stringify(r.error)}`);
  return r.data;
}
