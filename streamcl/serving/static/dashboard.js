/* streamcl dashboard: polls v1/model and v1/history, or reads the data embedded in a report.
 * Plain browser JavaScript, no build step; charts by uPlot (vendor/uPlot.LICENSE). */
(function () {
  "use strict";
  var POLL_MS = 2000;
  var PALETTE = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];
  var DETECTOR = { loss: "#d62728", input: "#ff9f1c" };
  var charts = {};
  var state = { model: null, history: null };

  function isNum(v) { return typeof v === "number" && isFinite(v); }

  function fmt(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (!isNum(v)) return String(v);
    return Number.isInteger(v) ? String(v) : v.toFixed(4);
  }

  function pick(obj, path) {
    return path.split(".").reduce(function (o, k) {
      return o !== null && o !== undefined && typeof o === "object" ? o[k] : undefined;
    }, obj);
  }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function last(series, name) {
    var s = series && series[name];
    for (var i = s ? s.length - 1 : -1; i >= 0; i--) if (s[i] !== null) return s[i];
    return null;
  }

  // -- cards: the numbers of /v1/model (data-model names the field) and of the history ------
  function cardList(model) {
    var reg = model.task === "regression";
    var score = reg
      ? [["MAE (cumulative)", "mae"], ["MAE (window)", "window_mae"], ["RMSE", "rmse"]]
      : [["accuracy (cumulative)", "accuracy"], ["accuracy (window)", "window_accuracy"],
         ["kappa-temporal", "kappa_temporal"]];
    return [["events seen", "events_seen"], ["events scored", "scored"]].concat(score, [
      ["drifts: loss", "drift.counts.loss"], ["drifts: input", "drift.counts.input"],
      ["memory entries", "memory.entries"], ["model version (learned)", "version"],
      ["events rejected", "events_rejected"], ["recovery events (last drift)", "recovery_events"],
    ]);
  }

  function renderCards() {
    var box = document.getElementById("cards");
    box.replaceChildren();
    var add = function (label, value, attr, key) {
      var card = el("div", { class: "card" });
      card.appendChild(el("div", { class: "label" }, label));
      var v = el("div", { class: "value" }, fmt(value));
      if (attr) v.setAttribute(attr, key);
      card.appendChild(v);
      box.appendChild(card);
    };
    if (state.model) {
      cardList(state.model).forEach(function (c) {
        var v = pick(state.model, c[1]);
        add(c[0], v === undefined && c[1].indexOf("drift.counts") === 0 ? 0 : v, "data-model", c[1]);
      });
    }
    var s = state.history && state.history.available ? state.history.series : null;
    if (s) {
      add("events/s", roundTo(last(s, "events_per_s"), 0), "data-history", "events_per_s");
      add("consumer lag", last(s, "consumer_lag"), "data-history", "consumer_lag");
      add("pending labels", last(s, "pending_labels"), "data-history", "pending_labels");
    }
  }

  function roundTo(v, d) { return isNum(v) ? Math.round(v * Math.pow(10, d)) / Math.pow(10, d) : v; }

  // -- charts ----------------------------------------------------------------------------
  function placeholder(id, text) {
    if (charts[id]) { charts[id].chart.destroy(); delete charts[id]; }
    var box = document.getElementById(id);
    box.replaceChildren(el("div", { class: "empty" }, text));
  }

  /* Draw (or update) a uPlot chart; rebuilt when the set of series changes. */
  function draw(id, spec, data) {
    var box = document.getElementById(id);
    var key = JSON.stringify(spec.series.map(function (s) { return s.label; }));
    var entry = charts[id];
    if (entry && entry.key === key) {
      entry.chart.setData(data);
      return entry.chart;
    }
    if (entry) entry.chart.destroy();
    box.replaceChildren();
    var opts = Object.assign({ width: chartWidth(box), height: spec.height || 220,
      legend: { live: false }, cursor: { points: { show: false } } }, spec);
    var chart = new uPlot(opts, data, box);
    charts[id] = { chart: chart, key: key };
    return chart;
  }

  function chartWidth(box) { return Math.max(280, (box.clientWidth || box.parentNode.clientWidth) - 4); }

  function line(label, color, extra) {
    return Object.assign({ label: label, stroke: color, width: 1.6, spanGaps: true,
      points: { show: false } }, extra || {});
  }

  function hasData(column) { return column && column.some(function (v) { return v !== null; }); }

  function xScale(hist) {
    var lastDrift = hist.drifts.reduce(function (m, d) { return Math.max(m, d.event); }, 0);
    return { time: false, range: function (u, min, max) { return [0, Math.max(max, lastDrift, 1)]; } };
  }

  function drawDrifts(u) {
    var hist = state.history, ctx = u.ctx, b = u.bbox, n = 0;
    ctx.save();
    ctx.beginPath();
    ctx.rect(b.left, b.top, b.width, b.height);
    ctx.clip();
    hist.drifts.forEach(function (d) {
      var x = u.valToPos(d.event, "x", true), cp = u.valToPos(d.change_point, "x", true);
      if (!isFinite(x) || x < b.left - 1 || x > b.left + b.width + 1) return;
      var color = DETECTOR[d.detector] || "#555";
      ctx.fillStyle = color + "26";
      ctx.fillRect(Math.min(cp, x), b.top, Math.max(Math.abs(x - cp), 1), b.height);
      ctx.strokeStyle = color;
      ctx.lineWidth = Math.max(1, devicePixelRatio);
      ctx.setLineDash(d.detector === "input" ? [5 * devicePixelRatio, 4 * devicePixelRatio] : []);
      ctx.beginPath();
      ctx.moveTo(x, b.top);
      ctx.lineTo(x, b.top + b.height);
      ctx.stroke();
      n++;
    });
    ctx.restore();
    document.getElementById("chart-score").setAttribute("data-drift-markers", String(n));
  }

  /* Lowest value of ``names`` once a first window is scored (the first few events, scored by
   * a model that knows no class yet, would flatten the axis); null when there is none. */
  function settledMin(hist, names) {
    var s = hist.series, lo = null, from = Math.min(hist.window, 200);
    names.forEach(function (n) {
      (s[n] || []).forEach(function (v, i) {
        if (v !== null && s.scored[i] >= from && (lo === null || v < lo)) lo = v;
      });
    });
    return lo;
  }

  function renderScore(hist) {
    var s = hist.series, acc = hist.metric === "accuracy";
    var what = acc ? "accuracy" : "MAE";
    document.getElementById("score-title").textContent =
      "Prequential " + what + " (window " + hist.window + " events), cumulative, and the " +
      "no-change baseline, with drifts";
    var series = [{ label: "events" },
      line(what + ", window", PALETTE[0], { width: 2 }),
      line(what + ", cumulative", PALETTE[1], { width: 2 }),
      line("no-change, window", "#7f7f7f", { dash: [6, 4] }),
      line("no-change, cumulative", "#b0b0b0", { dash: [2, 3] })];
    var lo = settledMin(hist, ["score", "cumulative", "baseline", "baseline_cumulative"]);
    var y = acc ? { range: function (u, min, max) {
      return [Math.max(0, Math.floor(((lo === null ? min : lo) - 0.03) * 20) / 20),
        Math.min(1, max + 0.02)];
    } } : {};
    draw("chart-score", { height: 300, series: series, scales: { x: xScale(hist), y: y },
      axes: [{ label: "events" }, { label: what, size: 60 }],
      hooks: { draw: [drawDrifts] } },
      [s.events, s.score, s.cumulative, s.baseline, s.baseline_cumulative]);
    renderDriftLegend(hist);
  }

  function renderDriftLegend(hist) {
    var box = document.getElementById("drift-legend");
    var counts = {};
    hist.drifts.forEach(function (d) { counts[d.detector] = (counts[d.detector] || 0) + 1; });
    box.replaceChildren(document.createTextNode("Drift markers:"));
    ["loss", "input"].forEach(function (det) {
      var sw = el("span", { class: "swatch" });
      sw.style.background = DETECTOR[det];
      box.appendChild(sw);
      box.appendChild(document.createTextNode(det + " detector (" + (counts[det] || 0) + ")"));
    });
    var band = el("span", { class: "swatch band" });
    band.style.background = DETECTOR.loss;
    box.appendChild(band);
    box.appendChild(document.createTextNode("from the change point to the detection"));
  }

  function renderKeyed(id, hist, columns, opts) {
    var names = Object.keys(columns).filter(function (k) { return hasData(columns[k]); });
    if (!names.length) return placeholder(id, opts.empty);
    var series = [{ label: "events" }].concat(names.map(function (k, i) {
      var extra = opts.scale ? { scale: opts.scale(k) } : {};
      if (opts.dashed && opts.dashed.indexOf(k) >= 0) extra.dash = [6, 4];
      return line(opts.label ? opts.label(k) : k, PALETTE[i % PALETTE.length], extra);
    }));
    var axes = [{ label: "events" }, { label: opts.y, size: 56 }];
    if (opts.right) axes.push({ scale: "r", side: 1, label: opts.right, grid: { show: false }, size: 56 });
    var scales = { x: xScale(hist), y: opts.yRange ? { range: opts.yRange } : {} };
    if (opts.right) scales.r = {};
    draw(id, { series: series, scales: scales, axes: axes },
      [hist.series.events].concat(names.map(function (k) { return columns[k]; })));
  }

  function renderRecovery(hist) {
    var rows = hist.drifts.filter(function (d) { return d.detector === "loss"; });
    if (!rows.length) return placeholder("chart-recovery", "no loss drift yet");
    var xs = rows.map(function (_, i) { return i + 1; });
    var gap = rows.map(function (d) { return isNum(d.stability_gap) ? d.stability_gap * 100 : null; });
    var rec = rows.map(function (d) { return d.recovery_events; });
    draw("chart-recovery", {
      series: [{ label: "loss drift #" },
        { label: "stability gap (points)", fill: "#d6272855", stroke: DETECTOR.loss,
          paths: uPlot.paths.bars({ size: [0.6, 40] }), points: { show: false } },
        { label: "recovery (events)", stroke: PALETTE[0], scale: "r", paths: function () { return null; },
          points: { show: true, size: 7, fill: PALETTE[0] } }],
      scales: { x: { time: false, range: function (u, min, max) { return [min - 0.6, max + 0.6]; } },
        y: { range: function (u, min, max) {
          return [Math.min(0, min * 1.1), Math.max(1, max * 1.1)]; } },
        r: { range: function (u, min, max) { return [0, Math.max(10, (max || 0) * 1.1)]; } } },
      axes: [{ label: "loss drift #", incrs: [1, 2, 5, 10, 20, 50] }, { label: "points", size: 50 },
        { scale: "r", side: 1, label: "events", grid: { show: false }, size: 60 }],
    }, [xs, gap, rec]);
  }

  function renderCharts(hist) {
    renderScore(hist);
    renderRecovery(hist);
    renderKeyed("chart-weights", hist, hist.weights,
      { y: "weight", empty: "no predictor yet", yRange: function () { return [0, 1]; } });
    var health = {};  // the gradient norm has its own units and scale: not drawn here
    Object.keys(hist.health).forEach(function (k) { if (k !== "grad_norm") health[k] = hist.health[k]; });
    renderKeyed("chart-health", hist, health, {
      y: "fraction / magnitude", right: "effective rank", empty: "no health figures yet",
      scale: function (k) { return k === "effective_rank" ? "r" : "y"; },
      label: function (k) { return k.replace("dormant_fraction_", "dormant ").replace("_", " "); } });
    var s = hist.series;
    renderKeyed("chart-memory", hist, { "kNN memory": s.memory_entries, "recent memory": s.recent_entries,
      "replay buffer": s.replay_entries }, { y: "entries", empty: "no memory entries yet",
      dashed: ["replay buffer"] });
    renderKeyed("chart-rate", hist, { "events/s": s.events_per_s, "consumer lag": s.consumer_lag,
      "pending labels": s.pending_labels }, { y: "events/s", right: "records", empty: "no rate yet",
      scale: function (k) { return k === "events/s" ? "y" : "r"; } });
  }

  // -- tables ----------------------------------------------------------------------------
  function kvTable(id, rows, empty) {
    var t = document.getElementById(id);
    t.replaceChildren();
    if (!rows.length) rows = [[empty, ""]];
    rows.forEach(function (r) {
      var tr = el("tr");
      tr.appendChild(el("td", {}, r[0]));
      var td = el("td", {}, typeof r[1] === "string" ? r[1] : fmt(r[1]));
      if (r[2]) td.setAttribute(r[2][0], r[2][1]);
      tr.appendChild(td);
      t.appendChild(tr);
    });
  }

  /* Every version figure /v1/model offers: learned steps, the published snapshot, and what a
   * model store adds (promoted, served, pinned, held or refused versions, created, age). */
  var VERSION_KEY = /version|pinned|held|gate|candidates|refused|created|age_s|age_seconds|staleness|learning_steps/;

  function versionRows(model, hist) {
    var rows = [["learned (learning steps)", model.version, ["data-model", "version"]]];
    if (hist && hist.available) rows.push(["published snapshot", last(hist.series, "served_version")]);
    var now = Date.now() / 1000;
    var walk = function (prefix, obj, depth) {
      Object.keys(obj).forEach(function (k) {
        var v = obj[k], name = prefix ? prefix + "." + k : k;
        if (name === "version" || k === "settings" || k === "metrics") return;
        if (v !== null && typeof v === "object" && !Array.isArray(v)) {
          if (depth < 2) walk(name, v, depth + 1);
        } else if (VERSION_KEY.test(name)) {
          if (Array.isArray(v)) {
            rows.push([name, v.length + (v.length ? ": " + v.slice(0, 5).map(function (x) {
              return typeof x === "object" && x !== null ? (x.version + " " + (x.reason || "")) : x;
            }).join(", ") : "")]);
          } else {
            rows.push([name, v, ["data-model", name]]);
            if (/created$/.test(name) && isNum(v)) rows.push([name + " (age, s)", Math.round(now - v)]);
          }
        }
      });
    };
    walk("", model, 0);
    return rows;
  }

  function renderTables() {
    var m = state.model, h = state.history;
    if (m) kvTable("versions", versionRows(m, h), "no version information");
    var totals = h && h.available ? h.totals : { dead_letters: {}, labels: {} };
    kvTable("dead-letters", Object.keys(totals.dead_letters).map(function (k) {
      return [k, totals.dead_letters[k]]; }), "none");
    kvTable("labels", Object.keys(totals.labels).map(function (k) { return [k, totals.labels[k]]; }),
      "no delayed labels");
    renderDriftLog(h && h.available ? h.drifts : []);
  }

  function pts(v) { return isNum(v) ? (v * 100).toFixed(1) : "–"; }

  function renderDriftLog(drifts) {
    var t = document.getElementById("drift-log");
    t.replaceChildren();
    var head = ["#", "detector", "kind", "detected at event", "change point", "time",
      "statistic", "pre-drift acc.", "worst after", "stability gap (pts)", "recovery (events)"];
    var tr = el("tr");
    head.forEach(function (h, i) { tr.appendChild(el("th", { class: i < 3 || i === 5 ? "text" : "" }, h)); });
    t.appendChild(tr);
    if (!drifts.length) {
      var row = el("tr");
      row.appendChild(el("td", { class: "text", colspan: String(head.length) }, "no drift detected yet"));
      t.appendChild(row);
      return;
    }
    drifts.slice(-200).reverse().forEach(function (d, i) {
      var cells = [drifts.length - i, d.detector, d.kind, d.event, d.change_point,
        new Date(d.time * 1000).toISOString().replace("T", " ").slice(0, 19),
        isNum(d.statistic) ? d.statistic.toFixed(4) : "–", pts(d.pre_drift_accuracy),
        pts(d.worst_accuracy), pts(d.stability_gap),
        d.recovery_events === null ? "–" : String(d.recovery_events)];
      var r = el("tr", { "data-drift-row": String(d.event) });
      cells.forEach(function (c, j) {
        var td = el("td", { class: j < 3 || j === 5 ? "text" : "" }, String(c));
        if (j === 1) td.classList.add("det-" + d.detector);
        r.appendChild(td);
      });
      t.appendChild(r);
    });
  }

  // -- the update cycle ------------------------------------------------------------------
  function render() {
    renderCards();
    renderTables();
    var h = state.history;
    if (h && h.available && h.points > 0) {
      renderCharts(h);
    } else {
      var why = h && !h.available ? "no learning loop in this process: history unavailable"
        : "waiting for data…";
      ["chart-score", "chart-recovery", "chart-weights", "chart-health", "chart-memory", "chart-rate"]
        .forEach(function (id) { placeholder(id, why); });
    }
    document.body.setAttribute("data-rendered", String(Date.now()));
  }

  function status(text, error) {
    var s = document.getElementById("status");
    s.textContent = text;
    s.className = error ? "status error" : "status";
  }

  function getJson(url) {
    return fetch(url, { cache: "no-store" }).then(function (r) {
      if (!r.ok) throw new Error(url + ": HTTP " + r.status);
      return r.json();
    });
  }

  function poll() {
    Promise.all([getJson("v1/model"), getJson("v1/history").catch(function () { return null; })])
      .then(function (res) {
        state.model = res[0];
        state.history = res[1];
        render();
        var h = res[1];
        status("updated " + new Date().toLocaleTimeString() + (h && h.available
          ? " · " + h.points + " points, 1 per " + h.every_events + " events or more" : ""), false);
      })
      .catch(function (err) { status("update failed: " + err.message, true); })
      .then(function () { setTimeout(poll, POLL_MS); });
  }

  function start() {
    var embedded = document.getElementById("streamcl-data");
    window.addEventListener("resize", function () {
      Object.keys(charts).forEach(function (id) {
        var box = document.getElementById(id), c = charts[id].chart;
        c.setSize({ width: chartWidth(box), height: c.height });
      });
    });
    if (embedded) {
      var data = JSON.parse(embedded.textContent);
      state.model = data.model;
      state.history = data.history;
      document.getElementById("subtitle").textContent = data.title || "replay report";
      status("report written " + (data.generated || ""), false);
      render();
      return;
    }
    poll();
  }

  start();
})();
