/* Static explorables: controls that switch among figures precomputed at build time.
 * Data format: models/viz/explorable.py (Grid.payload).  One copy of this file per
 * page, loaded after the local plotly.min.js. */
(function () {
  "use strict";

  function clone(x) { return JSON.parse(JSON.stringify(x)); }

  function applyPatch(base, patch, values) {
    // {"$ref": i}: a value shared by several combinations, stored once in grid.values
    function get(v) {
      return (v !== null && typeof v === "object" && !Array.isArray(v) && "$ref" in v)
        ? clone(values[v["$ref"]]) : v;
    }
    var fig = clone(base);
    if (patch.data_full) { fig.data = clone(patch.data_full); }
    (patch.data || []).forEach(function (change, i) {
      var trace = fig.data[i];
      Object.keys(change).forEach(function (k) {
        if (change[k] === null) { delete trace[k]; } else { trace[k] = get(change[k]); }
      });
    });
    var layout = patch.layout || {};
    fig.layout = fig.layout || {};
    Object.keys(layout).forEach(function (k) {
      if (layout[k] === null) { delete fig.layout[k]; } else { fig.layout[k] = get(layout[k]); }
    });
    return fig;
  }

  function setup(root) {
    var dataNode = root.querySelector("script.explorable-data");
    var grid = JSON.parse(dataNode.textContent);
    var plot = root.querySelector(".explorable-plot");
    var description = root.querySelector(".explorable-description");
    var inputs = grid.names.map(function (name) {
      return root.querySelector('[data-param="' + name + '"]');
    });
    var config = {displaylogo: false, responsive: true};

    function positions() {
      return inputs.map(function (el) {
        if (el.type === "checkbox") { return el.checked ? 1 : 0; }
        return parseInt(el.value, 10);
      });
    }
    function index(pos) {
      var n = 0;
      pos.forEach(function (p, i) { n = n * grid.sizes[i] + p; });
      return n;
    }
    function draw(first) {
      var i = index(positions());
      var fig = applyPatch(grid.base, grid.patches[grid.frames[i]], grid.values || []);
      var done = first ? Plotly.newPlot(plot, fig.data, fig.layout, config)
                       : Plotly.react(plot, fig.data, fig.layout, config);
      if (description && grid.descriptions) { description.textContent = grid.descriptions[i]; }
      root.setAttribute("data-combination", String(i));
      return done;
    }
    inputs.forEach(function (el) {
      var out = el.parentNode.querySelector("output");
      var labels = el.getAttribute("data-labels");
      labels = labels ? JSON.parse(labels) : null;
      el.addEventListener(el.type === "range" ? "input" : "change", function () {
        if (out && labels) { out.textContent = labels[parseInt(el.value, 10)]; }
        draw(false);
      });
    });
    draw(true).then(function () { root.setAttribute("data-ready", "true"); });
  }

  function start() {
    if (typeof Plotly === "undefined") {
      throw new Error("explorable.js: plotly.js is not loaded on this page");
    }
    document.querySelectorAll(".explorable").forEach(setup);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else { start(); }
})();
