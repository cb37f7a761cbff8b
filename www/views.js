// The live views: a canvas timeline of tasks per lane, canvas strips of breaker states, and
// uPlot charts of sampled engine figures. They draw what main.js hands them, all of it read
// from the engine (task and breaker events, `stats()` samples); nothing here computes a figure.
import uPlot from "../node_modules/uplot/dist/uPlot.esm.js";

export const COLORS = {
  running: "#3b82f6", succeeded: "#16a34a", failed: "#dc2626", cancelled: "#9ca3af",
  timed_out: "#f59e0b", unknown: "#a855f7", retried: "#fb923c",
  closed: "#dcfce7", open: "#dc2626", half_open: "#f59e0b",
  high: "#dc2626", normal: "#3b82f6", low: "#9ca3af",
};

const LABEL = 96; // px of lane labels on the left of the canvases

// Canvas widths, read once and again only after a resize: reading `clientWidth` every frame
// would force a layout whenever a figure's text changed since the last frame.
const widths = new WeakMap();
addEventListener("resize", () => document.querySelectorAll("canvas").forEach((c) => widths.delete(c)));

/** Fits a canvas's backing store to its CSS width (device pixels), with `height` CSS px. */
function fit(canvas, height) {
  const ratio = window.devicePixelRatio || 1;
  if (!widths.has(canvas)) widths.set(canvas, canvas.clientWidth || 600);
  const width = widths.get(canvas);
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.height = `${height}px`;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return { ctx, width };
}

/**
 * One bar per task over time in its lane's rows, coloured by outcome. A bar opens when the
 * engine admits the task (it holds a lane slot) and closes when the task settles or is put back
 * in the queue (a retry). Each open bar takes the lowest free row of its lane, so a lane shows
 * exactly as many rows in use as the engine runs tasks in it; a row past the lane's limit would
 * be drawn red (`overflow`).
 */
export class Timeline {
  constructor(canvas) {
    this.canvas = canvas;
    this.reset([], 0);
  }

  reset(lanes, t0) {
    this.t0 = t0;
    this.lanes = new Map(lanes.map((l) => [l.name, { name: l.name, limit: l.limit, rows: [], open: 0, maxOpen: 0 }]));
    this.bars = [];
    this.openBars = new Map(); // task id → bar
    this.marks = [];
    this.dirty = true;
  }

  /** The lane's limit changed (a new engine with another config). */
  limit(name, limit) {
    const lane = this.lanes.get(name);
    if (lane) lane.limit = limit;
  }

  open(id, laneName, t) {
    if (this.openBars.has(id)) return;
    const lane = this.lanes.get(laneName);
    if (!lane) return;
    let row = lane.rows.indexOf(null);
    if (row < 0) {
      row = lane.rows.length;
      lane.rows.push(null);
    }
    const bar = { id, lane, row, start: t, end: null, outcome: "running" };
    lane.rows[row] = bar;
    lane.open += 1;
    lane.maxOpen = Math.max(lane.maxOpen, lane.open);
    this.bars.push(bar);
    this.openBars.set(id, bar);
    this.dirty = true;
  }

  close(id, t, outcome) {
    const bar = this.openBars.get(id);
    if (!bar) return;
    this.openBars.delete(id);
    bar.end = t;
    bar.outcome = outcome;
    bar.lane.rows[bar.row] = null;
    bar.lane.open -= 1;
    this.dirty = true;
  }

  /** A restored task whose fate the engine is reconciling: it still holds its slot. */
  unknown(id) {
    const bar = this.openBars.get(id);
    if (bar) bar.outcome = "unknown";
    this.dirty = true;
  }

  mark(t, label) {
    this.marks.push({ t, label });
    this.dirty = true;
  }

  /** Per lane: tasks holding a slot now and at most, as this view shows them. */
  view() {
    return Object.fromEntries([...this.lanes.values()].map((l) => [l.name, { open: l.open, maxOpen: l.maxOpen, limit: l.limit }]));
  }

  draw(now) {
    const rowH = 7;
    const lanes = [...this.lanes.values()];
    const height = lanes.reduce((h, l) => h + Math.max(l.limit, l.rows.length) * rowH + 18, 0) + 16;
    const { ctx, width } = fit(this.canvas, height);
    const span = Math.max(10_000, now - this.t0);
    const x = (t) => LABEL + ((t - this.t0) / span) * (width - LABEL - 8);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px system-ui, sans-serif";
    let y = 4;
    for (const lane of lanes) {
      const rows = Math.max(lane.limit, lane.rows.length);
      ctx.fillStyle = "#1d2330";
      ctx.fillText(`${lane.name}`, 4, y + 11);
      ctx.fillStyle = "#6b7280";
      ctx.fillText(`${lane.open} / ${lane.limit} busy`, 4, y + 24);
      ctx.fillStyle = "#f3f4f6";
      ctx.fillRect(LABEL, y + 14, width - LABEL - 8, lane.limit * rowH);
      if (rows > lane.limit) {
        ctx.fillStyle = "#fee2e2";
        ctx.fillRect(LABEL, y + 14 + lane.limit * rowH, width - LABEL - 8, (rows - lane.limit) * rowH);
      }
      lane.y = y + 14;
      y += rows * rowH + 18;
    }
    for (const bar of this.bars) {
      ctx.fillStyle = COLORS[bar.outcome] ?? "#000";
      const x0 = x(bar.start);
      const x1 = x(bar.end ?? now);
      ctx.fillRect(x0, bar.lane.y + bar.row * rowH, Math.max(1.5, x1 - x0 - 0.5), rowH - 1);
    }
    ctx.fillStyle = "#6b7280";
    for (let s = 0; s <= span / 1000; s += Math.max(1, Math.ceil(span / 1000 / 10))) {
      ctx.fillText(`${s}s`, x(this.t0 + s * 1000) - 6, height - 3);
    }
    for (const m of this.marks) {
      ctx.strokeStyle = "#7c3aed";
      ctx.beginPath();
      ctx.moveTo(x(m.t), 0);
      ctx.lineTo(x(m.t), height - 14);
      ctx.stroke();
      ctx.fillStyle = "#7c3aed";
      ctx.fillText(m.label, x(m.t) + 3, 10);
    }
    this.dirty = false;
  }
}

/** Each model's breaker state over time: a strip per model, from the engine's breaker events. */
export class BreakerStrips {
  constructor(canvas) {
    this.canvas = canvas;
    this.reset([], 0);
  }

  reset(models, t0) {
    this.t0 = t0;
    this.log = new Map(models.map((m) => [m, [{ t: t0, state: "closed" }]]));
  }

  event(model, state, t) {
    if (!this.log.has(model)) this.log.set(model, [{ t: this.t0, state: "closed" }]);
    this.log.get(model).push({ t, state });
  }

  /** The engine's current state of `model`'s breaker, logged when it differs from the last. */
  state(model, state, t) {
    const log = this.log.get(model);
    if (log && log.at(-1).state !== state) log.push({ t, state });
  }

  draw(now) {
    const rowH = 16;
    const height = this.log.size * (rowH + 6) + 4;
    const { ctx, width } = fit(this.canvas, height);
    const span = Math.max(10_000, now - this.t0);
    const x = (t) => LABEL + ((t - this.t0) / span) * (width - LABEL - 8);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px system-ui, sans-serif";
    let y = 4;
    for (const [model, log] of this.log) {
      ctx.fillStyle = "#1d2330";
      ctx.fillText(model.split("/")[1] ?? model, 4, y + 12);
      log.forEach((seg, i) => {
        const end = log[i + 1]?.t ?? now;
        ctx.fillStyle = COLORS[seg.state];
        ctx.fillRect(x(seg.t), y, Math.max(1, x(end) - x(seg.t)), rowH);
      });
      y += rowH + 6;
    }
  }
}

/** A uPlot line chart of sampled series against seconds since the run began. */
export function chart(el, title, series, height = 150) {
  const opts = {
    title, width: el.clientWidth || 420, height,
    scales: { x: { time: false } },
    axes: [{ label: "seconds", size: 32 }, { size: 46 }],
    legend: { live: false },
    cursor: { show: false },
    series: [{}, ...series.map((s) => ({ width: 1.5, points: { show: false }, ...s }))],
  };
  const data = [[], ...series.map(() => [])];
  const plot = new uPlot(opts, data, el);
  return {
    data,
    push(x, values) {
      data[0].push(x);
      values.forEach((v, i) => data[i + 1].push(v));
    },
    clear() {
      for (const d of data) d.length = 0;
    },
    draw() {
      plot.setData(data);
    },
    resize() {
      plot.setSize({ width: el.clientWidth || 420, height });
    },
  };
}
