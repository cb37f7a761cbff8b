// The plugin function: one engine per OpenCode instance (project directory), its host built on
// the plugin's SDK client, and the tools that expose it.
//
// Options come from the plugin entry in opencode.json, `["…/plugin/index.ts", { lanes: {…} }]`,
// and are the engine's `ForemanConfig`; a bad option fails the plugin load with the engine's
// typed error, which OpenCode reports as a `session.error` event.
import { tool, type Plugin } from "@opencode-ai/plugin";
import { formatStatus } from "./format.ts";
import { createHost } from "./host.ts";
import { loadEngine } from "./wasm.ts";

export const foreman: Plugin = async ({ client, directory }, options) => {
  const Engine = loadEngine();
  const engine = new Engine(createHost(client, directory), options ?? {});
  await client.app
    .log({ body: { service: "foreman", level: "info", message: `foreman v${Engine.version()} ready in ${directory}` } })
    .catch(() => {});
  return {
    tool: {
      foreman_status: tool({
        description:
          "Show the foreman engine's state: concurrency lanes with pending and limit, sessions created and failed, host calls pending, memory use.",
        args: {},
        async execute() {
          return formatStatus(engine.stats());
        },
      }),
    },
    async dispose() {
      engine.dispose();
    },
  };
};
