// The run page: live curves (loss, accuracy, norms, a chart per custom metric of a tracked run), weights heatmaps
// with an epoch slider, decision boundary.
"use strict";
(function () {
  const page = document.getElementById("run-page");
  const runId = page.dataset.run;
  const METRICS = ["train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr", "seconds",
                   "weight_norms", "grad_norms"];
  let curve = {epoch: []};
  let custom = [];  // a tracked run's custom metrics, a chart each
  let options;

  function xs(c) { return options.x === "elapsed" ? c.elapsed : c.epoch; }

  function line(name, y, color, dash, yaxis) {
    return {type: "scatter", mode: "lines", name: name, x: xs(curve), y: TY.smooth(y, options.smoothing),
            line: {color: color, dash: dash || "solid", width: 1.5}, yaxis: yaxis || "y"};
  }

  function perLayer(lists) {
    const layers = Math.max(0, ...lists.map((l) => (l ? l.length : 0)));
    const out = [];
    for (let k = 0; k < layers; k++) out.push(lists.map((l) => (l && l[k] !== undefined ? l[k] : null)));
    return out;
  }

  function draw() {
    Plotly.react("chart-loss", [
      line("train loss", curve.train_loss, TY.COLORS[0]),
      line("val loss", curve.val_loss, TY.COLORS[1]),
    ], TY.layout("Loss", options), TY.PLOT_CONFIG);
    Plotly.react("chart-accuracy", [
      line("train accuracy", curve.train_accuracy, TY.COLORS[0]),
      line("val accuracy", curve.val_accuracy, TY.COLORS[1]),
    ], TY.layout("Accuracy", options, false), TY.PLOT_CONFIG);
    // Gradient norms (about 0.01) have an axis of their own, on the right: on the weights' (about 10) they lie flat at 0.
    const norms = [];
    perLayer(curve.weight_norms || []).forEach((y, k) => norms.push(line("|W" + (k + 1) + "|", y, TY.COLORS[k % 10])));
    perLayer(curve.grad_norms || []).forEach((y, k) => norms.push(line("|dW" + (k + 1) + "| (right axis)", y,
                                                                         TY.COLORS[k % 10], "dot", "y2")));
    const layout = TY.layout("Weight and gradient norms per layer", options);
    layout.yaxis.title = {text: "weight norm"};
    layout.yaxis.automargin = true;
    layout.yaxis2 = {title: {text: "gradient norm"}, type: layout.yaxis.type, overlaying: "y", side: "right",
                     tickmode: "auto", showgrid: false, zeroline: false, automargin: true};
    Plotly.react("chart-norms", norms, layout, TY.PLOT_CONFIG);
    const box = document.getElementById("custom-charts");
    custom.forEach((name, k) => {
      let div = document.getElementById("chart-custom-" + k);
      if (!div) {
        div = document.createElement("div");
        div.id = "chart-custom-" + k;
        div.className = "chart";
        div.dataset.metric = name;
        box.appendChild(div);
      }
      Plotly.react(div, [line(name, curve[name], TY.COLORS[k % 10])], TY.layout(TY.plotText(name), options),
                   TY.PLOT_CONFIG);
    });
  }

  // ------------------------------------------------------------------ weights and decision boundary
  const slider = document.getElementById("weights-epoch");
  const sliderValue = document.getElementById("weights-epoch-value");
  let weightEpochs = [];

  async function showWeights(epoch) {
    const url = page.dataset.weights + (epoch === undefined ? "" : "?epoch=" + epoch);
    const data = await TY.getJSON(url);
    const known = weightEpochs.length;
    weightEpochs = data.epochs;
    document.getElementById("weights-empty").hidden = data.epoch !== null;
    slider.max = String(Math.max(0, weightEpochs.length - 1));
    if (data.epoch === null) return;
    if (epoch === undefined || known !== weightEpochs.length) slider.value = String(weightEpochs.indexOf(data.epoch));
    sliderValue.textContent = String(data.epoch);
    const box = document.getElementById("weights-heatmaps");
    data.layers.forEach((layer, k) => {  // every box first, so each is plotted at its final width
      if (!document.getElementById("heatmap-" + k)) {
        const div = document.createElement("div");
        div.id = "heatmap-" + k;
        div.className = "chart heatmap";
        box.appendChild(div);
      }
    });
    data.layers.forEach((layer, k) => {
      const rows = layer.W.length, cols = (layer.W[0] || []).length;
      const cells = cellShape(document.getElementById("heatmap-" + k), rows, cols);
      Plotly.react("heatmap-" + k, [{type: "heatmap", z: layer.W, colorscale: "RdBu", zmid: 0, reversescale: true}], {
        title: {text: "W" + (k + 1) + " (" + layer.shape[0] + " inputs × " + layer.shape[1] + " units" +
                      (rows < layer.shape[0] || cols < layer.shape[1] ? ", sampled" : "") + ")",
                font: {size: 13}},
        margin: HEATMAP.margin, height: cells.height,
        xaxis: {title: {text: "unit"}, constrain: "domain", tick0: 0, dtick: Math.max(1, Math.ceil(cols / 8))},
        yaxis: {title: {text: "input"}, autorange: "reversed", scaleanchor: "x", scaleratio: cells.ratio,
                constrain: "domain", tick0: 0, dtick: Math.max(1, Math.ceil(rows / 8))},
      }, TY.PLOT_CONFIG);
    });
    if (page.dataset.boundary) await showBoundary(data.epoch);
  }

  // A heatmap's cells are at most MAX_CELL_ASPECT times as tall as wide, or as wide as tall: a layer of 2 inputs
  // is a strip of cells, not two bars stretched over the chart. Returns the chart's height and the cells' height
  // over their width (plotly's scaleratio), for the matrix to fill as much of `box` as that allows.
  const MAX_CELL_ASPECT = 2;
  const HEATMAP = {margin: {l: 45, r: 10, t: 35, b: 35}, colorbar: 70, maxHeight: 190};

  function cellShape(box, rows, cols) {
    const width = Math.max(100, box.clientWidth - HEATMAP.margin.l - HEATMAP.margin.r - HEATMAP.colorbar);
    const cellWidth = width / Math.max(cols, 1);
    const cellHeight = Math.min(HEATMAP.maxHeight / Math.max(rows, 1), cellWidth * MAX_CELL_ASPECT);
    const ratio = Math.min(MAX_CELL_ASPECT, Math.max(1 / MAX_CELL_ASPECT, cellHeight / cellWidth));
    const height = Math.max(cellHeight * rows, 40) + HEATMAP.margin.t + HEATMAP.margin.b;
    return {height: Math.round(height), ratio: ratio};
  }

  // The regions take their class's colour, as the points do (TY.classColor): with two classes, the probability of
  // class 1 from class 0's colour (0) through white (0.5, the boundary) to class 1's (1); with more, the predicted
  // class, each a band of the colour scale.
  function regions(data) {
    const trace = {x: data.x, y: data.y, z: data.z, showscale: false, opacity: 0.55};
    if (data.classes === 2) {
      return Object.assign(trace, {type: "contour", zmin: 0, zmax: 1, contours: {start: 0, end: 1, size: 0.1},
                                   colorscale: [[0, TY.classColor(0)], [0.5, "#ffffff"], [1, TY.classColor(1)]]});
    }
    const scale = [];
    for (let k = 0; k < data.classes; k++) {
      scale.push([k / data.classes, TY.classColor(k)], [(k + 1) / data.classes, TY.classColor(k)]);
    }
    return Object.assign(trace, {type: "heatmap", zmin: -0.5, zmax: data.classes - 0.5, zsmooth: false,
                                 colorscale: scale});
  }

  function showLegend(classes) {
    const legend = document.getElementById("boundary-legend");
    const items = [];
    for (let k = 0; k < classes; k++) {
      const item = document.createElement("span");
      item.className = "legend-item";
      item.dataset.class = String(k);
      const region = document.createElement("span");
      region.className = "swatch region";
      region.style.backgroundColor = TY.classColor(k);
      const dot = document.createElement("span");
      dot.className = "swatch dot";
      dot.style.backgroundColor = TY.classColor(k);
      item.append(region, dot, "class " + k);
      items.push(item);
    }
    const hint = document.createElement("span");
    hint.className = "hint";
    hint.textContent = classes === 2 ? "shade: the predicted class, paler near the boundary (probability 0.5); dots: the data"
                                     : "shade: the predicted class; dots: the data";
    legend.replaceChildren(...items, hint);
  }

  async function showBoundary(epoch) {
    const data = await TY.getJSON(page.dataset.boundary + "?epoch=" + epoch);
    const byClass = {};
    data.points.label.forEach((label, i) => {
      (byClass[label] = byClass[label] || {x: [], y: []}).x.push(data.points.x[i]);
      byClass[label].y.push(data.points.y[i]);
    });
    const traces = [regions(data)];
    Object.keys(byClass).forEach((label) => traces.push({
      type: "scatter", mode: "markers", name: "class " + label, x: byClass[label].x, y: byClass[label].y,
      marker: {color: TY.classColor(Number(label)), size: 8, line: {color: "#222", width: 1}},
    }));
    Plotly.react("chart-boundary", traces, {
      title: {text: "Decision boundary at epoch " + data.epoch, font: {size: 14}},
      margin: {l: 40, r: 10, t: 35, b: 35}, height: 420, showlegend: false,
    }, TY.PLOT_CONFIG);
    showLegend(data.classes);
  }

  // Dragging the slider fires many events: one request at a time, then the latest epoch asked for.
  let loading = false, wanted = null;
  async function follow() {
    if (loading) return;
    loading = true;
    while (wanted !== null) {
      const epoch = wanted;
      wanted = null;
      try { await showWeights(epoch); } catch (e) { console.warn(e.message); }
    }
    loading = false;
  }
  slider.addEventListener("input", () => {
    const epoch = weightEpochs[Number(slider.value)];
    if (epoch !== undefined) {
      sliderValue.textContent = String(epoch);
      wanted = epoch;
      follow();
    }
  });

  // ------------------------------------------------------------------ live
  async function start() {
    const data = await TY.getJSON(page.dataset.series);
    curve = data.curves;
    custom = data.custom || [];
    options = TY.chartControls((state) => { options = state; draw(); });
    options = options();
    draw();
    TY.showStatus(page, data.run);
    showWeights().catch((e) => console.warn(e.message));
    if (!TY.ACTIVE.includes(data.run.status)) return;
    let lastWeights = 0;
    TY.poll(async () => {
      const fields = METRICS.concat(custom).map(encodeURIComponent).join(",");
      const url = page.dataset.poll + "?runs=" + runId + "&since=" + TY.lastEpoch(curve) + "&fields=" + fields;
      const update = await TY.getJSON(url);
      const more = update.epochs[runId];
      if (more && more.epoch.length) {
        TY.extendElapsed(curve, more);
        TY.append(curve, more, METRICS.concat(custom));
        draw();
      }
      const run = update.runs[0];
      TY.showStatus(page, run);
      const following = Number(slider.value) >= weightEpochs.length - 1;
      if (following && Date.now() - lastWeights > 5000) {  // the heatmaps follow the latest epoch, every 5 s
        lastWeights = Date.now();
        showWeights().catch((e) => console.warn(e.message));
      }
      if (!TY.ACTIVE.includes(run.status)) { showWeights().catch((e) => console.warn(e.message)); return false; }
      return true;
    });
  }
  start().catch(TY.report);
})();
