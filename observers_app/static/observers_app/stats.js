// The admin's stats dashboard, live: it watches the hub's stream of the dashboard variable (an ASGI
// server serves it; under WSGI the page stays as loaded) and redraws the figures and the chart from
// each reading. A static file, so the page runs under a Content Security Policy without inline script.
(function () {
  "use strict";
  var main = document.getElementById("content-main");
  var notice = document.getElementById("observers-live");
  if (!main || !main.dataset.stream || !window.EventSource) { return; }
  var source = new EventSource(main.dataset.stream);
  source.addEventListener(main.dataset.variable, function (message) {
    var reading = JSON.parse(message.data).new_value;
    Object.keys(reading.stats).forEach(function (name) {
      var cell = document.querySelector('#observers-stats td[data-stat="' + name + '"]');
      if (cell) { cell.textContent = reading.stats[name]; }
    });
    reading.chart.series.forEach(function (series) {
      var line = document.querySelector('#observers-chart polyline[data-series="' + series.label + '"]');
      var total = document.querySelector('.series-total[data-series="' + series.label + '"]');
      if (line) { line.setAttribute("points", series.points); }
      if (total) { total.textContent = series.total; }
    });
    document.getElementById("observers-chart-peak").textContent = reading.chart.peak;
    notice.textContent = "Live: updated " + new Date().toLocaleTimeString() + ".";
  });
  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) {
      notice.textContent = "Not live: no stream here (it needs the ASGI server).";
    }
  });
})();
