// The run page: live curves (loss, accuracy, norms), weights heatmaps with an epoch slider, decision boundary.
"use strict";
(function () {
  const page = document.getElementById("run-page");
  const runId = page.dataset.run;
  const METRICS = ["train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr", "seconds",
                   "weight_norms", "grad_norms"];
  let curve = {epoch: []};
  let options;

  function xs(c) { return options.x === "elapsed" ? c.elapsed : c.epoch; }

  function line(name, y, color, dash) {
    return {type: "scatter", mode: "lines", name: name, x: xs(curve), y: TY.smooth(y, options.smoothing),
            line: {color: color, dash: dash || "solid", width: 1.5}};
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
    const norms = [];
    perLayer(curve.weight_norms || []).forEach((y, k) => norms.push(line("|W" + (k + 1) + "|", y, TY.COLORS[k % 10])));
    perLayer(curve.grad_norms || []).forEach((y, k) => norms.push(line("|dW" + (k + 1) + "|", y, TY.COLORS[k % 10], "dot")));
    Plotly.react("chart-norms", norms, TY.layout("Weight and gradient norms per layer", options), TY.PLOT_CONFIG);
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
      Plotly.react("heatmap-" + k, [{type: "heatmap", z: layer.W, colorscale: "RdBu", zmid: 0, reversescale: true}], {
        title: {text: "W" + (k + 1) + " (" + layer.shape[0] + " inputs × " + layer.shape[1] + " units" +
                      (layer.W.length < layer.shape[0] || (layer.W[0] || []).length < layer.shape[1] ? ", sampled" : "") + ")",
                font: {size: 13}},
        margin: {l: 45, r: 10, t: 35, b: 35}, height: 260,
        xaxis: {title: {text: "unit"}}, yaxis: {title: {text: "input"}, autorange: "reversed"},
      }, TY.PLOT_CONFIG);
    });
    if (page.dataset.boundary) await showBoundary(data.epoch);
  }

  async function showBoundary(epoch) {
    const data = await TY.getJSON(page.dataset.boundary + "?epoch=" + epoch);
    const byClass = {};
    data.points.label.forEach((label, i) => {
      (byClass[label] = byClass[label] || {x: [], y: []}).x.push(data.points.x[i]);
      byClass[label].y.push(data.points.y[i]);
    });
    const traces = [{type: "contour", x: data.x, y: data.y, z: data.z, showscale: false, opacity: 0.6,
                     colorscale: "RdBu",  // plotly's RdBu runs from blue (class 0) to red (class 1)
                     contours: data.classes === 2 ? {start: 0, end: 1, size: 0.1} : {coloring: "heatmap"}}];
    Object.keys(byClass).forEach((label, k) => traces.push({
      type: "scatter", mode: "markers", name: "class " + label, x: byClass[label].x, y: byClass[label].y,
      marker: {color: TY.COLORS[k % 10], size: 8, line: {color: "#222", width: 1}},
    }));
    Plotly.react("chart-boundary", traces, {
      title: {text: "Decision boundary at epoch " + data.epoch, font: {size: 14}},
      margin: {l: 40, r: 10, t: 35, b: 35}, height: 420, legend: {orientation: "h"},
    }, TY.PLOT_CONFIG);
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
    options = TY.chartControls((state) => { options = state; draw(); });
    options = options();
    draw();
    TY.showStatus(page, data.run);
    showWeights().catch((e) => console.warn(e.message));
    if (!TY.ACTIVE.includes(data.run.status)) return;
    let lastWeights = 0;
    TY.poll(async () => {
      const url = page.dataset.poll + "?runs=" + runId + "&since=" + TY.lastEpoch(curve) + "&fields=" + METRICS.join(",");
      const update = await TY.getJSON(url);
      const more = update.epochs[runId];
      if (more && more.epoch.length) {
        TY.extendElapsed(curve, more);
        TY.append(curve, more, METRICS);
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
