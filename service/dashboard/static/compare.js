// The compare page: every selected run's curves overlaid per metric, live; differences-only; parameters vs metric.
"use strict";
(function () {
  const page = document.getElementById("compare-page");
  const ids = page.dataset.runs.split(",");
  const METRICS = ["train_loss", "val_loss", "train_accuracy", "val_accuracy"];
  const TITLES = {train_loss: "Train loss", val_loss: "Validation loss", train_accuracy: "Train accuracy",
                  val_accuracy: "Validation accuracy"};
  let runs = [];
  let curves = {};
  let options;

  function draw() {
    for (const metric of METRICS) {
      const traces = runs.map((run, i) => {
        const c = curves[run.id];
        return {type: "scatter", mode: "lines", name: run.name, x: options.x === "elapsed" ? c.elapsed : c.epoch,
                y: TY.smooth(c[metric], options.smoothing), line: {color: TY.COLORS[i % 10], width: 1.5}};
      });
      const div = document.getElementById("chart-" + metric);
      div.hidden = !traces.some((t) => t.y.some((v) => v !== null && Number.isFinite(v)));  // e.g. no held-out data
      if (!div.hidden) Plotly.react(div, traces, TY.layout(TITLES[metric], options, metric.endsWith("loss")), TY.PLOT_CONFIG);
    }
  }

  document.querySelectorAll(".swatch").forEach((el) => {
    el.style.background = TY.COLORS[Number(el.dataset.index) % 10];
  });

  const only = document.getElementById("differences-only");
  only.addEventListener("change", () => {
    document.querySelectorAll("#params-table tr.same").forEach((row) => { row.hidden = only.checked; });
  });

  // ------------------------------------------------------------------ parameters against the metric
  function parcoords() {
    const source = document.getElementById("parcoords-data");
    if (!source) return;
    const data = JSON.parse(source.textContent);
    const select = document.getElementById("parcoords-metric");
    function dimension(label, values) {
      if (values.every((v) => v === null || typeof v === "number")) return {label: label, values: values};
      const names = Array.from(new Set(values.map((v) => JSON.stringify(v))));
      return {label: label, values: values.map((v) => names.indexOf(JSON.stringify(v))),
              tickvals: names.map((_, i) => i), ticktext: names};
    }
    function render() {
      const metric = select.value;
      const values = data.summaries.map((s) => s[metric]);
      const dims = Object.entries(data.differ).map(([path, vals]) => dimension(path, vals));
      dims.push({label: metric, values: values});
      Plotly.react("chart-parcoords", [{type: "parcoords", dimensions: dims,
        line: {color: values.map((v) => (v === null ? 0 : v)), colorscale: "Viridis", showscale: true}}],
        {margin: {l: 80, r: 80, t: 50, b: 30}, height: 380}, TY.PLOT_CONFIG);
    }
    select.addEventListener("change", render);
    render();
  }

  // ------------------------------------------------------------------ live
  async function start() {
    const data = await TY.getJSON(page.dataset.compare + "?runs=" + ids.join(","));
    runs = data.runs;
    curves = data.curves;
    options = TY.chartControls((state) => { options = state; draw(); });
    options = options();
    draw();
    parcoords();
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
      return active().length > 0;
    });
  }
  start().catch((e) => console.error(e));
})();
