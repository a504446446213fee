"""Inline CSS and JavaScript of the HTML report (no network access: nothing is fetched).

The script does two things:

* **Sorting.** Clicking a header of a ``table.sortable`` sorts its body rows by that
  column: numbers numerically (a cell's ``data-value`` holds the unrounded
  number), text case-insensitively, empty cells last in either direction. The
  first click uses the header's ``data-default`` direction ("desc" where higher
  is better), the next click reverses it. ``?sort=<column key>&dir=asc|desc``
  in the page address sorts the leaderboard on load (used by the browser test).
* **Render check.** On ``load`` it counts the images that decoded
  (``naturalWidth > 0``) and the leaderboard's body rows, and writes
  ``data-render-check="ok images=L/N rows=R"`` (``fail`` if an image did not
  load or the table is empty) on ``<body>``, plus ``data-sorted`` and
  ``data-first-row`` (the first row's method), so a headless browser's
  ``--dump-dom`` shows whether the page rendered.
"""

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto;
       max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
p.note, p.no-plot { color: #555; font-size: 0.9em; }
p.no-plot { font-style: italic; border: 1px dashed #bbb; padding: 0.6em; }
table { border-collapse: collapse; font-size: 0.82em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; position: sticky; top: 0; }
td.text, th.text { text-align: left; }
table.sortable th { cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
tr.reference td { background: #fafafa; color: #555; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
figure { margin: 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.8em; color: #555; max-width: 640px; }
.table-wrap { overflow-x: auto; }
"""

JS = r"""
(function () {
  "use strict";
  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) { return null; }
    var raw = cell.getAttribute("data-value");
    if (raw === null) { raw = cell.textContent.trim(); }
    if (raw === "") { return null; }
    var number = Number(raw);
    return isNaN(number) ? raw.toLowerCase() : number;
  }
  function compareValues(a, b) {
    if (typeof a === "number" && typeof b === "number") { return a - b; }
    return String(a).localeCompare(String(b));
  }
  function sortTable(table, index, direction) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var position = new Map();
    rows.forEach(function (row, i) { position.set(row, i); });
    var sign = direction === "desc" ? -1 : 1;
    rows.sort(function (x, y) {
      var a = cellValue(x, index), b = cellValue(y, index);
      if (a === null || b === null) {
        if (a === b) { return position.get(x) - position.get(y); }
        return a === null ? 1 : -1;   /* empty cells last in both directions */
      }
      return sign * compareValues(a, b) || position.get(x) - position.get(y);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      if (i === index) {
        th.setAttribute("aria-sort", direction === "desc" ? "descending" : "ascending");
      } else { th.removeAttribute("aria-sort"); }
    });
    table.setAttribute("data-sorted", table.tHead.rows[0].cells[index].getAttribute("data-key")
                       + " " + direction);
  }
  function sortByKey(table, key, direction) {
    var headers = table.tHead.rows[0].cells;
    for (var i = 0; i < headers.length; i++) {
      if (headers[i].getAttribute("data-key") === key) {
        sortTable(table, i, direction || headers[i].getAttribute("data-default") || "asc");
        return true;
      }
    }
    return false;
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.addEventListener("click", function () {
        var current = th.getAttribute("aria-sort");
        var direction = current === "descending" ? "asc" : current === "ascending" ? "desc"
          : (th.getAttribute("data-default") || "asc");
        sortTable(table, index, direction);
      });
    });
  });
  var board = document.getElementById("leaderboard");
  var query = new URLSearchParams(window.location.search);
  if (board && query.get("sort")) {
    var dir = query.get("dir");
    sortByKey(board, query.get("sort"), dir === "asc" || dir === "desc" ? dir : null);
  }
  window.addEventListener("load", function () {
    var images = document.images, loaded = 0;
    for (var i = 0; i < images.length; i++) {
      if (images[i].complete && images[i].naturalWidth > 0) { loaded += 1; }
    }
    var rows = board && board.tBodies.length ? board.tBodies[0].rows.length : 0;
    var ok = loaded === images.length && rows > 0;
    document.body.setAttribute("data-render-check", (ok ? "ok" : "fail") + " images=" + loaded
                               + "/" + images.length + " rows=" + rows);
    if (board) {
      document.body.setAttribute("data-sorted", board.getAttribute("data-sorted") || "none");
      document.body.setAttribute("data-first-row",
                                 rows ? board.tBodies[0].rows[0].getAttribute("data-method") : "");
    }
  });
})();
"""
