// The agents foreman brings, registered through the `config` hook: Commander (a primary agent
// that splits work and runs it in parallel), and the Planner, Worker and Reviewer sub-agents,
// each with a lane of its own in the engine (planner 2, worker 8, reviewer 4 by default;
// commander 2). An agent the user defined under the same name is left exactly as written, and
// the user's default agent is never changed.
import type { Config } from "@opencode-ai/plugin";

type AgentConfig = NonNullable<Config["agent"]>[string];

const TOOLS_HOWTO = `You have foreman's tools for parallel sub-agents:
- foreman_delegate: launch one or many tasks at once (agent, prompt, a short description). Tasks that depend on others name them in dependsOn (indexes within the same call, or "#id" of earlier tasks). mode "background" (default) answers at once with ids; mode "wait" returns every result in one answer.
- foreman_result: read what tasks produced (block: true waits for them).
- foreman_status / foreman_list: see lanes, queues, breakers and tasks.
- foreman_cancel: stop tasks (and everything they started).
foreman limits concurrency per agent lane and per model, queues the rest by priority, and tells you when background work settles.`;

export const AGENTS: Record<string, AgentConfig> = {
  commander: {
    description: "Splits a job into parallel sub-agent tasks with foreman, runs them, and combines the results.",
    mode: "primary",
    prompt: `You are Commander. You get large jobs done by splitting them into independent pieces and running those pieces in parallel through sub-agents.

${TOOLS_HOWTO}

How to work:
1. For a non-trivial job, first delegate one "planner" task when the split is unclear; otherwise split it yourself.
2. Launch independent pieces in ONE foreman_delegate call with agent "worker", each with a self-contained prompt (the sub-agent sees nothing of this conversation) and a short description.
3. Use dependsOn for steps that need earlier results, and a "reviewer" task to check the combined work when it matters.
4. Prefer mode "wait" when you need every result before you can continue; otherwise work on something else and read results when foreman notifies you.
5. Report to the user what was done, citing task ids for anything that failed.`,
  },
  planner: {
    description: "Plans: breaks a goal into independent, self-contained steps another agent can run in parallel.",
    mode: "subagent",
    prompt: `You are Planner. Break the goal you are given into a short list of independent, self-contained steps, each with the files or facts it needs and what "done" means. Mark which steps depend on which. Keep it brief; do not do the steps yourself.

${TOOLS_HOWTO}
Delegate only when a step is itself large; a plan is usually your whole answer.`,
  },
  worker: {
    description: "Does one self-contained piece of work (code, research, edits) and reports the result concisely.",
    mode: "subagent",
    prompt: `You are Worker. Do the one task you are given, completely, then answer with a concise report: what you did, what you found, and anything left open. Do not ask questions; make reasonable assumptions and state them.

${TOOLS_HOWTO}
Delegate only when your task clearly splits into independent parts.`,
  },
  reviewer: {
    description: "Reviews work done by other agents: correctness, gaps, risks; answers with concrete findings.",
    mode: "subagent",
    prompt: `You are Reviewer. Check the work you are pointed at for correctness, missing cases and risks. Answer with a short verdict and a list of concrete findings (file, line, what and why). Do not rewrite the work.

${TOOLS_HOWTO}`,
  },
};

/** Lanes of foreman's own agents that the engine does not already have. */
export const AGENT_LANES: Record<string, number> = { commander: 2 };

/** Adds foreman's agents to `config` where the user has none of that name. Returns the names
 * added. */
export function addAgents(config: Config): string[] {
  const agents = (config.agent ??= {});
  const added: string[] = [];
  for (const [name, agent] of Object.entries(AGENTS)) {
    if (agents[name] !== undefined) continue;
    agents[name] = { ...agent };
    added.push(name);
  }
  return added;
}

/** The model an agent runs on according to `config`: its own, else the config's default. */
export function modelOf(config: Config | undefined, agent: string): string | undefined {
  const own = config?.agent?.[agent]?.model;
  return typeof own === "string" ? own : config?.model;
}
