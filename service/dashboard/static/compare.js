// The compare page: every selected run's curves overlaid per metric, live; differences-only; parameters vs metric;
// or the runs grouped over their seeds: each group's mean curve with a band, and its metrics as mean ± std. Tracked
// runs' custom metrics get a chart each.
"use strict";
(function () {
  const page = document.getElementById("compare-page");
  const ids = page.dataset.runs.split(",");
  let METRICS = ["train_loss", "val_loss", "train_accuracy", "val_accuracy"];
  const TITLES = {train_loss: "Train loss", val_loss: "Validation loss", train_accuracy: "Train accuracy",
                  val_accuracy: "Validation accuracy"};
  const LEGEND_RUNS = 12;
  const GROUP_REFRESH_MS = 5000;  // while runs train, a grouped view re-reads its groups at most this often
  let runs = [];
  let curves = {};
  let groups = null;  // the runs grouped over seeds, once asked for
  let groupsAt = 0;
  let options;
  const groupBox = document.getElementById("group-seeds");
  const bandSelect = document.getElementById("band");
  const xAxis = document.getElementById("x-axis");

  function draw() {
    if (groupBox.checked && groups) { drawGroups(); return; }
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

  // ------------------------------------------------------------------ groups over seeds
  // A colour with transparency, for a band: `hex` as "#rrggbb" or "hsl(h, s%, l%)" (TY.color's two forms).
  function translucent(color, alpha) {
    if (color.startsWith("#")) {
      const c = (k) => parseInt(color.substr(k, 2), 16);
      return "rgba(" + c(1) + "," + c(3) + "," + c(5) + "," + alpha + ")";
    }
    return color.replace("hsl(", "hsla(").replace(")", ", " + alpha + ")");
  }

  function paramText(value) {
    if (typeof value === "number") return TY.num(value);
    if (typeof value === "string") return value;
    return JSON.stringify(value);
  }

  // A group's name: its values of the parameters that differ between the compared runs (else its first run's name),
  // and its size.
  function groupName(group) {
    const params = Object.entries(group.params).map(([path, value]) => path + "=" + paramText(value)).join(" · ");
    const first = runs.find((run) => run.id === group.runs[0]);
    return (params || (first ? first.name : group.runs[0])) + " (n=" + group.size + ")";
  }

  function drawGroups() {
    const std = bandSelect.value === "std";
    for (const metric of METRICS) {
      const traces = [];
      groups.forEach((group, i) => {
        const c = group.curves, stats = c[metric];
        const color = TY.color(i, groups.length), name = TY.plotText(groupName(group));
        const off = (sign) => stats.mean.map((m, k) => (m === null || stats.std[k] === null ? null
                                                                                           : m + sign * stats.std[k]));
        const lower = std ? off(-1) : stats.min, upper = std ? off(1) : stats.max;
        const common = {type: "scatter", mode: "lines", x: c.epoch, legendgroup: "group-" + i};
        traces.push(Object.assign({}, common, {y: TY.smooth(lower, options.smoothing), line: {width: 0, color},
                                               showlegend: false, hoverinfo: "skip", name: name + " band"}));
        traces.push(Object.assign({}, common, {y: TY.smooth(upper, options.smoothing), line: {width: 0, color},
                                               fill: "tonexty", fillcolor: translucent(color, 0.2),
                                               showlegend: false, hoverinfo: "skip", name: name + " band"}));
        traces.push(Object.assign({}, common, {y: TY.smooth(stats.mean, options.smoothing), name,
                                               line: {color, width: 2}}));
      });
      const div = document.getElementById("chart-" + metric);
      div.hidden = !groups.some((g) => g.curves[metric].mean.some((v) => v !== null && Number.isFinite(v)));
      const layout = TY.layout(TITLES[metric], Object.assign({}, options, {x: "epoch"}), metric.endsWith("loss"));
      layout.showlegend = groups.length <= LEGEND_RUNS;
      if (!div.hidden) Plotly.react(div, traces, layout, TY.PLOT_CONFIG);
    }
  }

  // The metrics table of the groups: each summary metric as mean ± std over the group's runs that have it.
  function groupTable() {
    const table = document.getElementById("group-table");
    const names = Object.keys(groups.length ? groups[0].summary : {});
    const rows = groups.map((group, i) => {
      const tr = document.createElement("tr");
      tr.dataset.group = String(i);
      const name = document.createElement("td");
      name.className = "name";
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = TY.color(i, groups.length);
      name.append(swatch, groupName(group));
      name.title = group.runs.map((id) => (runs.find((run) => run.id === id) || {name: id}).name).join("\n");
      tr.appendChild(name);
      const size = document.createElement("td");
      size.className = "num";
      size.dataset.field = "size";
      size.textContent = String(group.size);
      tr.appendChild(size);
      for (const field of names) {
        const spread = group.summary[field];
        const td = document.createElement("td");
        td.className = "num";
        td.dataset.field = field;
        td.textContent = spread.std === null ? TY.num(spread.mean) : TY.num(spread.mean) + " ± " + TY.num(spread.std);
        td.title = "over " + spread.count + " of " + group.size + " runs";
        tr.appendChild(td);
      }
      return tr;
    });
    table.tBodies[0].replaceChildren(...rows);
  }

  async function loadGroups() {
    const data = await TY.getJSON(page.dataset.curves + "&group=seed");
    groupsAt = Date.now();
    groups = data.groups;  // the runs' own curves and statuses: the poll keeps those current
  }

  // The switch and the band: the page's address remembers both (?group=seed&band=std), to be shared.
  function showGrouping() {
    const grouped = groupBox.checked;
    bandSelect.disabled = !grouped;
    xAxis.disabled = grouped;  // a group's runs share epochs, not wall time
    document.getElementById("group-hint").hidden = !grouped;
    document.getElementById("group-table-box").hidden = !grouped;
    document.getElementById("metrics-table-box").hidden = grouped;
    const url = new URL(window.location.href);
    if (grouped) url.searchParams.set("group", "seed"); else url.searchParams.delete("group");
    if (grouped && bandSelect.value !== bandSelect.options[0].value) url.searchParams.set("band", bandSelect.value);
    else url.searchParams.delete("band");
    window.history.replaceState(null, "", url);
    if (grouped && groups) groupTable();
  }

  async function regroup() {
    if (groupBox.checked && !groups) await loadGroups();
    showGrouping();
    draw();
  }
  groupBox.addEventListener("change", () => regroup().catch(TY.report));
  bandSelect.addEventListener("change", () => { showGrouping(); draw(); });

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

  // A chart per custom metric, after the built-in ones.
  function addCustomCharts(names) {
    const grid = document.querySelector(".chart-grid");
    for (const name of names) {
      const div = document.createElement("div");
      div.className = "chart";
      div.id = "chart-" + name;
      div.dataset.metric = name;
      grid.appendChild(div);
      TITLES[name] = TY.plotText(name);
    }
    METRICS = METRICS.concat(names);
  }

  // ------------------------------------------------------------------ live
  async function start() {
    const grouped = page.dataset.group === "seed";
    // preloaded by the page's <link rel="preload">
    const data = await TY.getJSON(page.dataset.curves + (grouped ? "&group=seed" : ""));
    runs = data.runs;
    curves = data.curves;
    addCustomCharts(data.custom || []);
    if (grouped) { groups = data.groups; groupsAt = Date.now(); }
    options = TY.chartControls(async (state) => {
      if (state.x === "elapsed" && runs.some((run) => !curves[run.id].elapsed)) {  // wall time: fetched when first asked
        const timed = await TY.getJSON(page.dataset.curves + "&elapsed=1");
        curves = timed.curves;
      }
      options = state;
      draw();
    });
    options = options();
    showGrouping();
    draw();
    paramsVersusMetric();
    const table = document.getElementById("metrics-table");
    const active = () => runs.filter((run) => TY.ACTIVE.includes(run.status));
    if (!active().length) return;
    TY.poll(async () => {
      const now = active();
      const since = now.map((run) => TY.lastEpoch(curves[run.id]));
      const fields = METRICS.concat(["seconds"]).map(encodeURIComponent).join(",");
      const update = await TY.getJSON(page.dataset.poll + "?runs=" + now.map((r) => r.id).join(",") +
                                      "&since=" + since.join(",") + "&fields=" + fields);
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
      if (grew && groups && Date.now() - groupsAt > GROUP_REFRESH_MS) {
        await loadGroups();
        if (groupBox.checked) groupTable();
      }
      if (grew) draw();
      markBest(table);
      return active().length > 0;
    });
  }
  start().catch(TY.report);
})();
