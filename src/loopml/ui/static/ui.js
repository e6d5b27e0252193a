/* The dashboard's one script: draws every chart (a div.chart holding its figure as JSON) once
   Plotly has loaded, on the page and in every fragment htmx swaps in. Plotly is fetched only by
   a page that has a chart. */
(function () {
  "use strict";
  var plotly = null;
  function load() {
    if (window.Plotly) { return Promise.resolve(); }
    if (!plotly) {
      plotly = new Promise(function (resolve, reject) {
        var s = document.createElement("script");
        s.src = document.documentElement.dataset.prefix + "/static/plotly.min.js";
        s.onload = resolve;
        s.onerror = reject;
        document.head.appendChild(s);
      });
    }
    return plotly;
  }
  function draw(root) {
    var charts = (root || document).querySelectorAll("div.chart[data-figure]:not([data-drawn])");
    if (!charts.length) { return; }
    load().then(function () {
      charts.forEach(function (div) {
        var fig = JSON.parse(div.dataset.figure);
        div.dataset.drawn = "1";
        window.Plotly.newPlot(div, fig.data, fig.layout, {displaylogo: false, responsive: true});
      });
    }).catch(function () {
      charts.forEach(function (div) { div.textContent = "The chart could not be drawn: Plotly did not load."; });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSettle", function (e) { draw(e.target); });
  /* A chart inside a closed <details> is drawn at no size: redraw it when opened. */
  document.addEventListener("toggle", function (e) {
    if (e.target.open && window.Plotly) {
      e.target.querySelectorAll("div.chart[data-drawn]").forEach(function (d) { window.Plotly.Plots.resize(d); });
    }
  }, true);
})();
