// Trainyard dashboard: helpers shared by the pages. Data is only ever put in the page with textContent.
"use strict";
(function () {
  const POLL_MS = 1000;
  const ACTIVE = ["queued", "running"];
  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf"];

  // The colour of the i-th of n runs: the ten of plotly's palette, or n hues spread around the wheel.
  function color(i, n) {
    return n <= COLORS.length ? COLORS[i % COLORS.length] : "hsl(" + Math.round((i * 360) / n) + ", 65%, 45%)";
  }

  // The colour of class k wherever a page shows classes: a decision boundary's regions, its points, its legend.
  function classColor(k) {
    return COLORS[k % COLORS.length];
  }

  // Plotly reads a subset of HTML in trace names and hover text (<b>, <a href>...): user strings go in escaped,
  // so it shows them as the text they are.
  function plotText(value) {
    return String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  // A failed request (the server unreachable, or the page left while it ran) is a `network` error: pages warn and
  // retry; any other error is a bug and logged as one.
  async function getJSON(url) {
    let response;
    try {
      response = await fetch(url, {credentials: "same-origin"});
    } catch (e) {
      const error = new Error("cannot reach the server: " + e.message);
      error.network = true;
      throw error;
    }
    if (response.status === 401) {
      const next = window.location.pathname + window.location.search;
      window.location.assign("/login?next=" + encodeURIComponent(next));
      const error = new Error("logged out");
      error.network = true;
      throw error;
    }
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try { message = (await response.json()).error.message; } catch (e) { /* keep the status line */ }
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  function num(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    if (Number.isInteger(value)) return String(value);
    return Number(value.toPrecision(4)).toString();
  }

  const SUMMARY = ["final_train_loss", "final_val_loss", "final_train_accuracy", "final_val_accuracy",
                   "best_val_loss", "best_val_accuracy", "best_epoch"];

  // Update the [data-field] elements inside `root` from a run's status JSON (/ui/data/poll).
  function showStatus(root, run) {
    root.dataset.status = run.status;
    const field = (name) => root.querySelector('[data-field="' + name + '"]');
    const status = field("status");
    if (status) {
      status.textContent = run.status + (run.cancel_requested && run.status === "running" ? " (cancelling)" : "");
      status.className = "status status-" + run.status;
    }
    const progress = field("progress");
    // A tracked run has no total (epochs_total 0): its epochs so far alone.
    if (progress) progress.textContent = "epoch " + run.epochs_done + (run.epochs_total ? " of " + run.epochs_total : "");
    const duration = field("duration");
    if (duration) duration.textContent = run.duration;
    for (const name of SUMMARY) {
      const cell = field(name);
      if (cell) cell.textContent = num(run.summary[name]);
    }
    const error = field("error");
    if (error) { error.textContent = run.error || ""; error.hidden = !run.error; }
    const reason = field("stop_reason");
    if (reason) { reason.textContent = run.stop_reason ? "Stopped: " + run.stop_reason : ""; reason.hidden = !run.stop_reason; }
    const cancel = field("cancel");
    if (cancel && !ACTIVE.includes(run.status)) cancel.hidden = true;
  }

  // Call `step` every POLL_MS (after the previous call finished) for as long as it resolves to true.
  // A network error or a server error is retried; a 404 (a run was deleted) ends the polling.
  function poll(step) {
    let stopped = false;
    async function tick() {
      let again = false;
      try {
        again = await step();
      } catch (e) {
        console.warn("poll:", e.message);
        again = e.status !== 404;
      }
      if (again && !stopped) setTimeout(tick, POLL_MS);
    }
    setTimeout(tick, POLL_MS);
    return () => { stopped = true; };
  }

  // Exponential moving average, debiased (as TensorBoard smooths): weight in [0, 1).
  function smooth(values, weight) {
    if (!weight) return values;
    const out = new Array(values.length);
    let last = 0, count = 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (v === null || v === undefined || !Number.isFinite(v)) { out[i] = null; continue; }
      last = last * weight + (1 - weight) * v;
      count++;
      out[i] = last / (1 - Math.pow(weight, count));
    }
    return out;
  }

  // Append the columns `more` to the columns `into` (both {"epoch": [...], field: [...]}).
  // Epochs `into` already holds are skipped (a poll may overlap a reload of the curves).
  function append(into, more, fields) {
    const last = lastEpoch(into);
    const first = (more.epoch || []).findIndex((epoch) => epoch > last);
    if (first < 0) return;
    for (const name of ["epoch"].concat(fields)) {
      if (!into[name]) into[name] = [];
      const values = more[name] || [];
      for (let i = first; i < values.length; i++) into[name].push(values[i]);
    }
  }

  // Wall-clock seconds at each new epoch, continuing `curve.elapsed` from the new epochs' durations.
  // Call before `append`.
  function extendElapsed(curve, more) {
    if (!curve.elapsed || curve.elapsed.length !== (curve.epoch || []).length) return;  // not loaded (yet)
    let total = curve.elapsed.length ? curve.elapsed[curve.elapsed.length - 1] : 0;
    const last = lastEpoch(curve);
    (more.seconds || []).forEach((s, i) => {
      if (more.epoch[i] > last) { total += s || 0; curve.elapsed.push(total); }
    });
  }

  function lastEpoch(curve) {
    return curve.epoch && curve.epoch.length ? curve.epoch[curve.epoch.length - 1] : 0;
  }

  function chartControls(onChange) {
    const log = document.getElementById("log-y");
    const smoothing = document.getElementById("smoothing");
    const x = document.getElementById("x-axis");
    const state = () => ({log: log.checked, smoothing: Number(smoothing.value), x: x.value});
    for (const el of [log, smoothing, x]) el.addEventListener("input", () => onChange(state()));
    return state;
  }

  const PLOT_CONFIG = {displaylogo: false, responsive: true, modeBarButtonsToRemove: ["sendDataToCloud"]};

  // Curves grow in place (arrays pushed to), so Plotly.react cannot see the change by reference:
  // each layout carries a new datarevision, and the axes autorange over the new points.
  let revision = 0;

  // A chart's layout; `logAllowed` false keeps a linear y (accuracies live in [0, 1]).
  function layout(title, options, logAllowed) {
    const log = options.log && logAllowed !== false;
    return {
      title: {text: title, font: {size: 14}},
      margin: {l: 55, r: 10, t: 35, b: 40},
      height: 300,
      xaxis: {title: {text: options.x === "elapsed" ? "wall time (s)" : "epoch"}},
      yaxis: {type: log ? "log" : "linear"},
      legend: {orientation: "h", y: -0.25},
      uirevision: options.x + log,
      datarevision: ++revision,
    };
  }

  // What a page's start-up does with an error: a network one is expected now and then, anything else is a bug.
  function report(e) {
    if (e.network) console.warn(e.message); else console.error(e);
  }

  // Forms with data-confirm ask first (no inline handlers: the page's CSP forbids them).
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });

  window.TY = {ACTIVE, COLORS, color, classColor, plotText, report, PLOT_CONFIG, csrf, getJSON, num, showStatus, poll,
               smooth, append, extendElapsed, lastEpoch, chartControls, layout};
})();
