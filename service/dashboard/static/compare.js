// The compare page: every selected run's curves overlaid per metric, live; differences-only; parameters vs metric.
"use strict";
(function () {
  const page = document.getElementById("compare-page");
  const ids = page.dataset.runs.split(",");
  const METRICS = ["train_loss", "val_loss", "train_accuracy", "val_accuracy"];
  const TITLES = {train_loss: "Train loss", val_loss: "Validation loss", train_accuracy: "Train accuracy",
                  val_accuracy: "Validation accuracy"};
  const LEGEND_RUNS = 12;
  let runs = [];
  let curves = {};
  let options;

  function draw() {
    for (const metric of METRICS) {
      const traces = runs.map((run, i) => {
        const c = curves[run.id];
        return {type: "scatter", mode: "lines", name: TY.plotText(run.name), x: options.x === "elapsed" ? c.elapsed : c.epoch,
                y: TY.smooth(c[metric], options.smoothing), line: {color: TY.color(i, runs.length), width: 1.5}};
      });
      const div = document.getElementById("chart-" + metric);
      div.hidden = !traces.some((t) => t.y.some((v) => v !== null && Number.isFinite(v)));  // e.g. no held-out data
      const layout = TY.layout(TITLES[metric], options, metric.endsWith("loss"));
      layout.showlegend = runs.length <= LEGEND_RUNS;  // beyond that, the metrics table's swatches name the colours
      if (!div.hidden) Plotly.react(div, traces, layout, TY.PLOT_CONFIG);
    }
  }

  document.querySelectorAll(".swatch").forEach((el) => {
    el.style.background = TY.color(Number(el.dataset.index), ids.length);
  });

  const only = document.getElementById("differences-only");
  only.addEventListener("change", () => {
    document.querySelectorAll("#params-table tr.same").forEach((row) => { row.hidden = only.checked; });
  });

  // ------------------------------------------------------------------ parameters against the metric
  // One small scatter per differing parameter: its value (x) against the chosen metric (y), a point per run.
  // SVG, not parcoords: plotly's parallel coordinates need WebGL, which a server's browser may lack.
  const MAX_PARAM_CHARTS = 8;
  function paramsVersusMetric() {
    const source = document.getElementById("params-data");
    if (!source) return;
    const data = JSON.parse(source.textContent);
    const select = document.getElementById("params-metric");
    const box = document.getElementById("params-charts");
    const paths = Object.keys(data.differ).slice(0, MAX_PARAM_CHARTS);
    paths.forEach((path, k) => {  // every box first, so each is plotted at its final width
      const div = document.createElement("div");
      div.id = "param-chart-" + k;
      div.className = "chart param-chart";
      box.appendChild(div);
    });
    function render() {
      const metric = select.value;
      const y = data.summaries.map((summary) => summary[metric]);
      paths.forEach((path, k) => {
        const x = data.differ[path].map((v) => (v === null || typeof v === "number" ? v : JSON.stringify(v)));
        Plotly.react("param-chart-" + k, [{
          type: "scatter", mode: "markers", x: x, y: y, text: data.names.map(TY.plotText), hovertemplate: "%{text}<extra></extra>",
          marker: {size: 9, color: data.names.map((_, i) => TY.color(i, data.names.length)),
                   line: {color: "#222", width: 0.5}},
        }], {
          margin: {l: 55, r: 10, t: 10, b: 45}, height: 240,
          xaxis: {title: {text: path}, type: x.every((v) => v === null || typeof v === "number") ? "-" : "category"},
          yaxis: {title: {text: metric.replace(/_/g, " ")}},
        }, TY.PLOT_CONFIG);
      });
    }
    select.addEventListener("change", render);
    render();
  }

  // ------------------------------------------------------------------ best of each metric column
  // The server stars the best value of each column; a run that finishes while the page is open may take the star.
  const STARRED = ["final_train_loss", "final_val_loss", "final_train_accuracy", "final_val_accuracy",
                   "best_val_loss", "best_val_accuracy"];
  function markBest(table) {
    for (const field of STARRED) {
      const values = runs.map((run) => run.summary[field]).filter((v) => v !== null && v !== undefined);
      const best = values.length ? (field.includes("accuracy") ? Math.max(...values) : Math.min(...values)) : null;
      const winner = runs.find((run) => run.summary[field] === best);
      for (const run of runs) {
        const cell = table.querySelector('tr[data-run="' + run.id + '"] [data-field="' + field + '"]');
        if (cell) cell.classList.toggle("best", winner !== undefined && run.id === winner.id);
      }
    }
  }

  // ------------------------------------------------------------------ live
  async function start() {
    const data = await TY.getJSON(page.dataset.curves);  // preloaded by the page's <link rel="preload">
    runs = data.runs;
    curves = data.curves;
    options = TY.chartControls(async (state) => {
      if (state.x === "elapsed" && runs.some((run) => !curves[run.id].elapsed)) {  // wall time: fetched when first asked
        const timed = await TY.getJSON(page.dataset.curves + "&elapsed=1");
        curves = timed.curves;
      }
      options = state;
      draw();
    });
    options = options();
    draw();
    paramsVersusMetric();
    const table = document.getElementById("metrics-table");
    const active = () => runs.filter((run) => TY.ACTIVE.includes(run.status));
    if (!active().length) return;
    TY.poll(async () => {
      const now = active();
      const since = now.map((run) => TY.lastEpoch(curves[run.id]));
      const update = await TY.getJSON(page.dataset.poll + "?runs=" + now.map((r) => r.id).join(",") +
                                      "&since=" + since.join(",") + "&fields=" + METRICS.concat(["seconds"]).join(","));
      let grew = false;
      for (const status of update.runs) {
        const run = runs.find((r) => r.id === status.id);
        Object.assign(run, status);
        const row = table.querySelector('tr[data-run="' + status.id + '"]');
        if (row) TY.showStatus(row, status);
        const more = update.epochs[status.id];
        if (more && more.epoch.length) {
          TY.extendElapsed(curves[status.id], more);
          TY.append(curves[status.id], more, METRICS);
          grew = true;
        }
      }
      if (grew) draw();
      markBest(table);
      return active().length > 0;
    });
  }
  start().catch(TY.report);
})();
