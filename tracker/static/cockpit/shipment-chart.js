/* Temperature chart of a shipment's logger (uPlot, vendored). Loaded as a static file: the
   Content-Security-Policy allows no inline script. The data comes from the JSON endpoint
   named in data-src; rule limits are drawn as dashed lines and recorded excursions as
   shaded bands. The page also says all of this in words, so the chart is an aid, not the
   only record. */
(function () {
  "use strict";

  var LINE = "#1d4ed8";
  var LIMIT = "#b91c1c";
  var BANDS = { warning: "rgba(245, 158, 11, 0.22)", alarm: "rgba(220, 38, 38, 0.20)", critical: "rgba(153, 27, 27, 0.28)" };

  function overlays(data) {
    return {
      hooks: {
        // Bands go under the readings line, limits over it.
        drawClear: [function (u) {
          var ctx = u.ctx, top = u.bbox.top, height = u.bbox.height;
          ctx.save();
          data.excursions.forEach(function (x) {
            var left = Math.max(u.valToPos(x.start, "x", true), u.bbox.left);
            var right = Math.min(u.valToPos(x.end, "x", true), u.bbox.left + u.bbox.width);
            if (right <= left) { right = left + 2; }
            ctx.fillStyle = BANDS[x.level] || BANDS.alarm;
            ctx.fillRect(left, top, right - left, height);
          });
          ctx.restore();
        }],
        draw: [function (u) {
          var ctx = u.ctx, left = u.bbox.left, width = u.bbox.width;
          ctx.save();
          ctx.strokeStyle = LIMIT;
          ctx.fillStyle = LIMIT;
          ctx.lineWidth = 2 * devicePixelRatio;
          ctx.setLineDash([8 * devicePixelRatio, 5 * devicePixelRatio]);
          ctx.font = (12 * devicePixelRatio) + "px system-ui, sans-serif";
          // uPlot leaves its axis text alignment on the context: set ours explicitly.
          ctx.textAlign = "left";
          ctx.textBaseline = "bottom";
          data.thresholds.forEach(function (t) {
            var y = u.valToPos(t.c, "y", true);
            ctx.beginPath();
            ctx.moveTo(left, y);
            ctx.lineTo(left + width, y);
            ctx.stroke();
            ctx.fillText(t.label, left + 6 * devicePixelRatio, y - 5 * devicePixelRatio);
          });
          ctx.restore();
        }]
      }
    };
  }

  function yRange(data) {
    var values = data.y.concat(data.thresholds.map(function (t) { return t.c; }));
    var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
    var pad = Math.max((hi - lo) * 0.08, 1);
    return [Math.floor(lo - pad), Math.ceil(hi + pad)];
  }

  function draw(box, data) {
    if (!data.logger) { box.textContent = "No logger data for this shipment."; return; }
    if (!data.x.length) { box.textContent = "No readings in this shipment's window yet."; return; }
    var range = yRange(data);
    var opts = {
      width: Math.max(box.clientWidth, 280),
      height: 320,
      plugins: [overlays(data)],
      scales: {
        x: { time: true, range: [Math.min(data.start, data.x[0]), Math.max(data.end, data.x[data.x.length - 1])] },
        y: { range: range }
      },
      axes: [
        { stroke: "#111827", grid: { stroke: "#e5e7eb" } },
        { stroke: "#111827", grid: { stroke: "#e5e7eb" }, label: "°C", size: 60 }
      ],
      series: [
        { label: "time" },
        { label: "°C (" + data.logger + ")", stroke: LINE, width: 2, value: function (u, v) { return v == null ? "–" : v.toFixed(1) + " °C"; } }
      ]
    };
    box.textContent = "";
    var chart = new uPlot(opts, [data.x, data.y], box);
    if (typeof ResizeObserver !== "undefined") {
      new ResizeObserver(function () {
        chart.setSize({ width: Math.max(box.clientWidth, 280), height: 320 });
      }).observe(box);
    }
    box.dataset.ready = "true";
  }

  function init() {
    var box = document.getElementById("temperature-chart");
    if (!box || typeof uPlot === "undefined") { return; }
    fetch(box.dataset.src, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(function (data) { draw(box, data); })
      .catch(function () {
        box.textContent = "The chart could not be loaded; the summary below gives the same facts.";
      });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
