/* segflow report: draw the page's plotly figures and make tables sortable. No network access. */
(function () {
  "use strict";

  function drawCharts() {
    var blob = document.getElementById("figures");
    var figures = blob ? JSON.parse(blob.textContent || "{}") : {};
    var divs = document.querySelectorAll(".chart");
    if (typeof window.Plotly === "undefined") {
      divs.forEach(function (el) {
        el.classList.add("chart-missing");
        el.textContent = "This chart needs assets/plotly.min.js next to this page.";
      });
      return;
    }
    divs.forEach(function (el) {
      var fig = figures[el.id];
      if (!fig) { return; }
      window.Plotly.newPlot(el, fig.data, fig.layout, {
        displaylogo: false, responsive: true,
        modeBarButtonsToRemove: ["select2d", "lasso2d", "toggleSpikelines"]
      });
    });
  }

  function cellValue(row, i) {
    var cell = row.cells[i];
    if (!cell) { return ""; }
    var v = cell.getAttribute("data-sort");
    return v !== null ? parseFloat(v) : cell.textContent.trim().toLowerCase();
  }

  function makeSortable(table) {
    var head = table.tHead ? table.tHead.rows[table.tHead.rows.length - 1] : null;
    var heads = head ? head.cells : [];
    Array.prototype.forEach.call(heads, function (th, i) {
      th.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a, i), y = cellValue(b, i);
          if (typeof x === "number" && typeof y === "number") { return asc ? x - y : y - x; }
          return asc ? String(x).localeCompare(String(y)) : String(y).localeCompare(String(x));
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }

  drawCharts();
  document.querySelectorAll("table.data").forEach(makeSortable);
})();
