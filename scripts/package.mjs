// Packs foreman as one npm package, `foreman-opencode`, into target/package/:
//   plugin/index.ts, plugin/src/   the OpenCode plugin (Bun runs its TypeScript as it is), the
//                                  package's main: list "foreman-opencode" in opencode.json
//   pkg/                           the wasm engine and its glue and types (wasm-pack's output)
//   engine.js                      the engine for any runtime (Node, Bun, Deno): instantiated
//                                  from the bytes beside it, then re-exported with its types
// The layout keeps the plugin's relative imports (`../../pkg/…`) as they are in the repository,
// so the same files run from a checkout and from the package. Run after `make build`; prints
// the tarball's path.
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const repo = fileURLToPath(new URL("..", import.meta.url));
const version = /^version = "(.+)"$/m.exec(readFileSync(join(repo, "Cargo.toml"), "utf8"))[1];
const pluginDeps = JSON.parse(readFileSync(join(repo, "plugin", "package.json"), "utf8")).dependencies;
const out = join(repo, "target", "package");
const stage = join(out, "foreman-opencode");

if (!existsSync(join(repo, "pkg", "foreman_bg.wasm"))) {
  console.error("package: pkg/ is missing; run `make build` first");
  process.exit(1);
}
rmSync(stage, { recursive: true, force: true });
mkdirSync(join(stage, "plugin"), { recursive: true });
cpSync(join(repo, "plugin", "index.ts"), join(stage, "plugin", "index.ts"));
cpSync(join(repo, "plugin", "src"), join(stage, "plugin", "src"), { recursive: true });
mkdirSync(join(stage, "pkg"));
for (const f of ["foreman.js", "foreman.d.ts", "foreman_bg.wasm", "foreman_bg.wasm.d.ts", "snippets"]) {
  cpSync(join(repo, "pkg", f), join(stage, "pkg", f), { recursive: true });
}
for (const f of ["README.md", "LICENSE"]) cpSync(join(repo, f), join(stage, f));

writeFileSync(
  join(stage, "engine.js"),
  `// The foreman engine, ready to use in Node, Bun and Deno: the WebAssembly module is instantiated
// from the bytes shipped beside this file (no fetch, no bundler).
import { readFileSync } from "node:fs";
import { initSync } from "./pkg/foreman.js";
initSync({ module: readFileSync(new URL("./pkg/foreman_bg.wasm", import.meta.url)) });
export * from "./pkg/foreman.js";
`,
);
writeFileSync(join(stage, "engine.d.ts"), `export * from "./pkg/foreman.js";\n`);

const manifest = {
  name: "foreman-opencode",
  version,
  description: "OpenCode plugin that runs many sub-agent sessions in parallel, safely: admission control, scheduling and an audited task store, compiled to WebAssembly.",
  license: "MIT",
  type: "module",
  main: "plugin/index.ts",
  exports: {
    ".": "./plugin/index.ts",
    "./engine": { types: "./engine.d.ts", default: "./engine.js" },
  },
  files: ["plugin", "pkg", "engine.js", "engine.d.ts", "README.md", "LICENSE"],
  keywords: ["opencode", "opencode-plugin", "wasm", "agents", "scheduler"],
  dependencies: pluginDeps,
};
writeFileSync(join(stage, "package.json"), JSON.stringify(manifest, null, 2) + "\n");

const name = execFileSync("npm", ["pack", "--silent", "--pack-destination", out], { cwd: stage, encoding: "utf8" }).trim().split("\n").pop();
console.log(join(out, name));
