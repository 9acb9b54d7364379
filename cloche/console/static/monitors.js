// A monitored feature's skew and drift over time against their thresholds, drawn with the
// vendored uPlot from the JSON the server put in data-feature-chart (no inline script: CSP).
(function () {
  "use strict";
  var COLOURS = { skew: "#0b5cad", drift: "#7a4d00", threshold: "#a3161a" };

  // One run is one instant: show the hour around it (uPlot alone would pad it by years).
  function timeRange(u, min, max) {
    var t = u.data[0];
    return t.length === 1 ? [t[0] - 3600, t[0] + 3600] : [min, max];
  }

  function draw(el) {
    if (el.dataset.drawn || typeof uPlot === "undefined") { return; }
    var s = JSON.parse(el.dataset.featureChart);
    var width = Math.max(280, el.clientWidth || 600);
    var opts = {
      width: width,
      height: 260,
      scales: { x: { time: true, range: timeRange } },
      axes: [{}, { label: "distance" }],
      series: [
        {},
        { label: "skew", stroke: COLOURS.skew, width: 2, points: { show: true } },
        { label: "skew threshold", stroke: COLOURS.threshold, width: 1, dash: [6, 4] },
        { label: "drift", stroke: COLOURS.drift, width: 2, dash: [2, 2], points: { show: true } },
        { label: "drift threshold", stroke: COLOURS.threshold, width: 1, dash: [2, 6] }
      ]
    };
    var data = [s.t, s.skew, s.skew_threshold, s.drift, s.drift_threshold];
    el.dataset.drawn = "1";
    var plot = new uPlot(opts, data, el);
    // Follow the page's width (a phone turned, a window resized) instead of scrolling.
    if (typeof ResizeObserver !== "undefined") {
      new ResizeObserver(function () {
        var now = Math.max(280, el.clientWidth);
        if (now !== plot.width) { plot.setSize({ width: now, height: 260 }); }
      }).observe(el);
    }
  }

  function drawAll(root) {
    root.querySelectorAll("[data-feature-chart]").forEach(draw);
  }
  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function (event) { drawAll(event.target); });
})();
