// The sweep page: parallel coordinates of the swept parameters against the metric (SVG: no WebGL needed),
// the ranked runs table, "compare the top k", and live progress while runs are queued or running.
"use strict";
(function () {
  const page = document.getElementById("sweep-page");
  const chart = document.getElementById("parcoords");
  const SVG = "http://www.w3.org/2000/svg";
  const RAMP = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"];  // viridis: best (dark) to worst (yellow)
  let data = JSON.parse(document.getElementById("sweep-data").textContent);

  function el(name, attrs, parent, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function label(value) {
    if (typeof value === "number") return TY.num(value);
    if (typeof value === "string") return value;
    return JSON.stringify(value);
  }

  function ramp(t) {  // t in [0, 1] -> a colour of RAMP
    const x = Math.min(1, Math.max(0, t)) * (RAMP.length - 1);
    const i = Math.min(RAMP.length - 2, Math.floor(x));
    const f = x - i;
    const a = RAMP[i], b = RAMP[i + 1];
    const mix = (k) => Math.round(parseInt(a.substr(k, 2), 16) * (1 - f) + parseInt(b.substr(k, 2), 16) * f);
    return "rgb(" + mix(1) + "," + mix(3) + "," + mix(5) + ")";
  }

  // An axis over `values`: numeric (log when positive and spanning over 2 decades) or categorical.
  // position(v) is in [0, 1] (0 at the bottom) or null when v has no place on it.
  function axis(title, values, metric) {
    const present = values.filter((v) => v !== null && v !== undefined);
    const numeric = present.length > 0 && present.every((v) => typeof v === "number" && Number.isFinite(v));
    if (!numeric) {
      const keys = [];
      for (const v of present) { const k = label(v); if (!keys.includes(k)) keys.push(k); }
      if (keys.every((k) => !Number.isNaN(Number(k)))) keys.sort((a, b) => Number(a) - Number(b));
      const at = (v) => (keys.length === 1 ? 0.5 : keys.indexOf(label(v)) / (keys.length - 1));
      return {title, kind: "category", position: (v) => (v === null || v === undefined ? null : at(v)),
              ticks: keys.map((k, i) => ({at: keys.length === 1 ? 0.5 : i / (keys.length - 1), text: k}))};
    }
    let low = Math.min(...present), high = Math.max(...present);
    const log = !metric && low > 0 && high / low > 100;
    const f = log ? Math.log10 : (v) => v;
    const lo = f(low), hi = f(high);
    const position = (v) => (v === null || v === undefined ? null : hi === lo ? 0.5 : (f(v) - lo) / (hi - lo));
    let ticks;
    if (hi === lo) {
      ticks = [{at: 0.5, text: TY.num(low)}];
    } else if (log) {
      ticks = [];
      for (let p = Math.ceil(lo); p <= Math.floor(hi); p++) ticks.push({at: (p - lo) / (hi - lo), text: "1e" + p});
      if (!ticks.length || ticks[0].at > 0.1) ticks.unshift({at: 0, text: TY.num(low)});
      if (ticks[ticks.length - 1].at < 0.9) ticks.push({at: 1, text: TY.num(high)});
    } else {
      const distinct = Array.from(new Set(present)).sort((a, b) => a - b);
      const shown = distinct.length <= 6 ? distinct : [0, 1, 2, 3, 4].map((i) => low + ((high - low) * i) / 4);
      ticks = shown.map((v) => ({at: position(v), text: TY.num(v)}));
    }
    return {title: title + (log ? " (log)" : ""), kind: log ? "log" : "linear", position, ticks};
  }

  function drawChart() {
    chart.replaceChildren();
    const runs = data.runs;
    if (!runs.length) { chart.textContent = "No runs."; return; }
    const width = Math.max(chart.clientWidth, 480), height = 360;
    const top = 40, bottom = 40, left = 70, right = 90;
    const metricName = data.metric.replace(/_/g, " ");
    const axes = data.paths.map((path, k) => axis(path, runs.map((r) => r.params[k]), false));
    axes.push(axis(metricName, runs.map((r) => r.value), true));
    const svg = el("svg", {width, height, viewBox: "0 0 " + width + " " + height, role: "img",
                           "aria-label": "parallel coordinates of the swept parameters and " + metricName}, chart);
    const x = (k) => left + (axes.length === 1 ? 0 : ((width - left - right) * k) / (axes.length - 1));
    const y = (t) => top + (1 - t) * (height - top - bottom);
    const metricAxis = axes[axes.length - 1];
    const lines = el("g", {class: "lines"}, svg);
    // worst first, so the best lines are drawn on top
    const order = runs.slice().reverse();
    for (const run of order) {
      const values = run.params.concat([run.value]);
      const points = [];
      values.forEach((v, k) => { const t = axes[k].position(v); if (t !== null) points.push([x(k), y(t)]); });
      if (points.length < 1) continue;
      const d = points.map((p, i) => (i ? "L" : "M") + p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ");
      const scored = run.value !== null && run.value !== undefined;
      const t = scored ? metricAxis.position(run.value) : null;
      // t: 1 at the top of the metric axis; the colour's dark end is the best value
      const goodness = t === null ? 0 : (data.higher_is_better ? t : 1 - t);
      const best = data.best && data.best.run === run.id;
      const line = el("path", {d, class: "pc-line" + (scored ? "" : " pending") + (best ? " best" : ""),
                               "data-run": run.id}, lines);
      if (scored) line.setAttribute("stroke", ramp(1 - goodness));
      el("title", {}, line, run.name + (scored ? " · " + metricName + " " + TY.num(run.value) : " · no value yet"));
    }
    axes.forEach((a, k) => {
      const g = el("g", {class: "axis", "data-axis": String(k)}, svg);
      el("line", {class: "axis-line", x1: x(k), x2: x(k), y1: y(0), y2: y(1)}, g);
      el("text", {class: "axis-title", x: x(k), y: top - 18, "text-anchor": "middle"}, g, a.title);
      for (const tick of a.ticks) {
        el("line", {class: "axis-line", x1: x(k) - 4, x2: x(k), y1: y(tick.at), y2: y(tick.at)}, g);
        el("text", {class: "tick", x: x(k) - 7, y: y(tick.at) + 4, "text-anchor": "end"}, g, tick.text);
      }
    });
    el("text", {x: x(axes.length - 1), y: height - 12, "text-anchor": "middle", class: "hint"}, svg,
       (data.higher_is_better ? "higher" : "lower") + " is better · dark = best");
  }

  // ------------------------------------------------------------------ table and top k
  const table = document.getElementById("sweep-runs");
  const runUrl = (id) => page.dataset.runUrl.replace("RUN", id);

  function drawTable() {
    const body = table.tBodies[0];
    if (!data.runs.length) return;
    const rows = data.runs.map((run, i) => {
      const tr = document.createElement("tr");
      tr.dataset.run = run.id;
      tr.dataset.status = run.status;
      const cell = (text, cls, field) => {
        const td = document.createElement("td");
        if (cls) td.className = cls;
        if (field) td.dataset.field = field;
        if (text !== undefined) td.textContent = text;
        tr.appendChild(td);
        return td;
      };
      cell(String(i + 1));
      const a = document.createElement("a");
      a.href = runUrl(run.id);
      a.textContent = run.name;
      cell(undefined, "name").appendChild(a);
      const status = document.createElement("span");
      status.dataset.field = "status";
      cell().appendChild(status);
      cell(undefined, undefined, "progress");
      run.params.forEach((v) => { const td = cell(label(v), "param"); if (typeof v === "number" && !Number.isInteger(v)) td.title = String(v); });
      cell(TY.num(run.value), "num" + (data.best && data.best.run === run.id ? " best" : ""), "metric");
      cell(undefined, undefined, "duration");
      TY.showStatus(tr, Object.assign({summary: {}}, run));
      return tr;
    });
    body.replaceChildren(...rows);
  }

  const topK = document.getElementById("top-k");
  const compareTop = document.getElementById("compare-top");
  function updateTopK() {
    const k = Math.max(1, Math.min(Number(topK.value) || 1, Number(topK.max) || 1));
    const ids = data.runs.slice(0, k).map((run) => run.id);
    compareTop.href = ids.length ? page.dataset.compare + "?runs=" + ids.join(",") : "#";
    compareTop.textContent = "compare the top " + ids.length;
  }
  topK.addEventListener("input", updateTopK);

  // A sweep that swept `seed`: its runs (the best ones, as many as a comparison takes) grouped over their seeds.
  const compareSeeds = document.getElementById("compare-seeds");
  function updateSeeds() {
    if (!compareSeeds) return;
    const ids = data.runs.slice(0, Number(page.dataset.maxRuns)).map((run) => run.id);
    compareSeeds.href = ids.length ? page.dataset.compare + "?runs=" + ids.join(",") + "&group=seed" : "#";
  }

  document.getElementById("metric").addEventListener("change", () => document.getElementById("metric-form").submit());

  function showProgress() {
    const p = data.progress;
    const runsBar = document.getElementById("runs-bar"), epochsBar = document.getElementById("epochs-bar");
    runsBar.max = p.runs || 1; runsBar.value = p.finished;
    epochsBar.max = p.epochs_total || 1; epochsBar.value = p.epochs_done;
    page.querySelector('[data-field="runs-progress"]').textContent = p.finished + " of " + p.runs + " finished";
    page.querySelector('[data-field="epochs-progress"]').textContent = p.epochs_done + " of " + p.epochs_total;
    const counts = page.querySelector('[data-field="counts"]');
    counts.replaceChildren();
    for (const [status, n] of Object.entries(p.counts)) {
      if (!n) continue;
      const span = document.createElement("span");
      span.className = "status status-" + status;
      span.textContent = n + " " + status;
      counts.append(span, " ");
    }
    const cancel = document.getElementById("cancel-sweep");
    if (cancel) cancel.hidden = !data.active;
  }

  drawChart();
  updateTopK();
  let width = chart.clientWidth;
  window.addEventListener("resize", () => { if (chart.clientWidth !== width) { width = chart.clientWidth; drawChart(); } });
  if (data.active) {
    TY.poll(async () => {
      data = await TY.getJSON(page.dataset.data);
      showProgress();
      drawTable();
      drawChart();
      updateTopK();
      updateSeeds();
      return data.active;
    });
  }
})();
