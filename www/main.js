import init, { Engine } from "../pkg/foreman.js";
import { SimHost } from "./sim.js";

const $ = (id) => document.getElementById(id);
const settings = () => ({
  seed: Number($("seed").value),
  failureRate: Number($("failureRate").value),
  rateLimitRate: Number($("rateLimitRate").value),
  memoryUsed: Number($("memoryUsed").value),
});

function render(engine, host) {
  const s = engine.stats();
  $("version").textContent = `v${s.version} (wasm)`;
  $("created").textContent = s.sessions.created;
  $("failed").textContent = s.sessions.failed;
  $("pending").textContent = s.pendingCalls;
  $("meanCreate").textContent = s.sessions.meanCreateMs == null ? "–" : `${s.sessions.meanCreateMs.toFixed(1)} ms`;
  $("memory").textContent = `${(s.memory.perMille / 10).toFixed(1)} %`;
  $("lanes").tBodies[0].replaceChildren(...s.lanes.map((l) => row([l.name, l.limit, l.pendingCalls])));
  return s;
}

function row(cells, cls) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    td.textContent = c;
    tr.append(td);
  }
  if (cls) tr.className = cls;
  return tr;
}

async function run(engine, host, count, agent) {
  $("state").textContent = "running";
  $("run").disabled = true;
  const body = $("outcomes").tBodies[0];
  body.replaceChildren();
  const ticker = setInterval(() => render(engine, host), 50);
  const calls = Array.from({ length: count }, (_, i) =>
    engine.createSession({ agent, parentID: "ses_demo_parent", title: `demo ${i + 1}` }).then(
      (id) => body.append(row([i + 1, "created", id], "ok")),
      (err) => body.append(row([i + 1, `${err.code} (${err.class ?? "–"})`, err.message], err.class ?? "error")),
    ),
  );
  await Promise.all(calls);
  clearInterval(ticker);
  const stats = render(engine, host);
  $("state").textContent = "done";
  $("run").disabled = false;
  return stats;
}

async function main() {
  await init();
  let host = new SimHost(settings());
  let engine = new Engine(host, { lanes: { worker: 8 } });
  try {
    new Engine(host, { lanes: { worker: 0 } });
  } catch (err) {
    $("validation").textContent = `${err.name} ${err.code} (key ${err.key}): ${err.message}`;
  }
  for (const id of ["failureRate", "rateLimitRate", "memoryUsed"]) {
    $(id).addEventListener("input", () => {
      $(`${id}Out`).textContent = $(id).value;
      host.settings[id] = Number($(id).value);
      if (id === "memoryUsed") host.memoryUsed = Number($(id).value);
      render(engine, host);
    });
  }
  $("run").addEventListener("click", async () => {
    engine.dispose();
    host = new SimHost(settings());
    engine = new Engine(host, { lanes: { worker: 8 } });
    window.foreman = { engine, host, stats: await run(engine, host, Number($("count").value), $("agent").value) };
  });
  render(engine, host);
  // One run on load, so the page shows real figures at once (and the browser test has them).
  window.foreman = { engine, host, stats: await run(engine, host, Number($("count").value), $("agent").value) };
}

main().catch((err) => {
  $("state").textContent = `failed: ${err.message}`;
  console.error(err);
});
