// An endpoint's traffic charts: uPlot (vendored) drawn from the JSON in data-traffic, one line
// per deployment, so a canary's line sits beside the version it may replace. The colours match
// the swatches of the summary table (console.css .swatch-N), which names each line in text.
(function () {
  "use strict";
  var COLOURS = ["#0b5cad", "#c2410c", "#0f6b2f", "#7c3aed", "#a3161a", "#4a5560"];
  var DASHES = { p50: [], p95: [8, 4], p99: [2, 3] };

  function scaled(values, factor) {
    return values.map(function (v) { return v === null ? null : v * factor; });
  }

  function errorRate(d) {
    return d.client_error_rate.map(function (c, i) {
      var s = d.server_error_rate[i];
      return c === null && s === null ? null : ((c || 0) + (s || 0)) * 100;
    });
  }

  function seriesFor(kind, data) {
    var series = [{}];
    var columns = [];
    data.deployments.forEach(function (d, i) {
      var colour = COLOURS[i % COLOURS.length];
      if (kind === "rate") {
        series.push({ label: d.deployment, stroke: colour, width: 2 });
        columns.push(d.requests_per_s);
      } else if (kind === "errors") {
        series.push({ label: d.deployment, stroke: colour, width: 2 });
        columns.push(errorRate(d));
      } else {
        ["p50", "p95", "p99"].forEach(function (q) {
          series.push({ label: d.deployment + " " + q, stroke: colour, width: 2, dash: DASHES[q] });
          columns.push(scaled(d[q + "_s"], 1000));
        });
      }
    });
    return { series: series, columns: columns };
  }

  function draw(section) {
    if (typeof uPlot === "undefined") { return; }
    var data = JSON.parse(section.dataset.traffic);
    var times = data.times.map(function (t) { return Date.parse(t) / 1000; });
    section.querySelectorAll(".chart[data-chart]").forEach(function (el) {
      var made = seriesFor(el.dataset.chart, data);
      el.replaceChildren();
      new uPlot({
        width: Math.max(280, el.clientWidth),
        height: 220,
        legend: { show: false },
        series: made.series,
        axes: [{}, { size: 60 }]
      }, [times].concat(made.columns), el);
    });
  }

  function drawAll(root) {
    var found = root.matches && root.matches("[data-traffic]") ? [root] : [];
    root.querySelectorAll("[data-traffic]").forEach(function (el) { found.push(el); });
    found.forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function (event) { drawAll(event.target); });
  // uPlot draws at a fixed size: redraw to the new width when the window turns or resizes.
  var pending = null;
  window.addEventListener("resize", function () {
    clearTimeout(pending);
    pending = setTimeout(function () { drawAll(document); }, 200);
  });
})();
