// foreman for OpenCode: parallel sub-agent work through the foreman wasm engine.
//
// OpenCode loads this file with Bun. The module has exactly one export, the `{ id, server }`
// plugin module: OpenCode refuses a plugin file with any other export ("Plugin export is not a
// function"), so the wasm glue and helpers live in src/ and are not re-exported.
import type { PluginModule } from "@opencode-ai/plugin";
import { foreman } from "./src/plugin.ts";

export default { id: "foreman", server: foreman } satisfies PluginModule;
