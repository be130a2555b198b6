"""The interactive report's inline stylesheet and script (no CDN, no network: the page is one file).

The script (``SCRIPT``) makes every ``table.eb-table`` that ``formats.html_table`` marks up sortable
(click a header: best first for metric columns, then the other way, then the original order) and
filterable by task, solver and metric (the selects of ``#eb-filters``): rows carry ``data-task`` /
``data-solver``, header cells ``data-group`` (the task of a column group) and ``data-metric``. The
view is kept in the address's fragment (``#task=...&solver=...&metric=...&sort=T.C.DIR``, table
index ``T`` in page order, column ``C``, ``asc`` / ``desc``), so a view can be shared and a test can
open one. When it has run, ``<html>`` carries ``data-eb-ready="1"`` and every table
``data-eb-sortable="1"``; ``data-eb-charts`` counts the plotly charts drawn.
"""
from __future__ import annotations

__all__ = ["STYLE", "SCRIPT"]

STYLE = """
:root{--fg:#1d2330;--muted:#5b6475;--line:#e3e6ec;--accent:#2456a6;--bg:#f6f7f9;--good:#0b7a3b}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);background:var(--bg)}
#eb-nav{position:fixed;top:0;left:0;bottom:0;width:230px;overflow-y:auto;padding:16px 14px;background:#fff;border-right:1px solid var(--line)}
#eb-nav h1{font-size:17px;margin:0 0 2px}
#eb-nav .sub{color:var(--muted);font-size:12px;margin-bottom:12px;word-break:break-all}
#eb-nav a{display:block;color:var(--fg);text-decoration:none;padding:2px 6px;border-radius:4px;font-size:13px}
#eb-nav a:hover{background:#eef2fa;color:var(--accent)}
#eb-nav a.l2{padding-left:18px;font-size:12px;color:var(--muted)}
#eb-nav .empty{color:#aab;font-size:12px;padding:2px 6px}
#eb-nav h4{margin:12px 0 4px;font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted)}
main{margin-left:230px;padding:0 28px 40px}
#eb-filters{position:sticky;top:0;z-index:5;display:flex;gap:14px;align-items:center;flex-wrap:wrap;padding:10px 0;
  background:var(--bg);border-bottom:1px solid var(--line)}
#eb-filters label{font-size:12px;color:var(--muted)}
#eb-filters select{margin-left:4px;font:inherit;padding:2px 4px}
#eb-filters button{font:inherit;padding:2px 10px}
#eb-filters .count{font-size:12px;color:var(--muted)}
h2{margin:26px 0 6px;font-size:20px;border-bottom:2px solid var(--accent);padding-bottom:4px}
h2 small{font-weight:normal;color:var(--muted);font-size:13px;margin-left:8px}
h3{margin:18px 0 6px;font-size:15px}
.card{background:#fff;border:1px solid var(--line);border-radius:6px;padding:10px 14px;margin:10px 0;overflow-x:auto}
table{border-collapse:collapse;margin:6px 0;font-variant-numeric:tabular-nums;font-size:13px}
td,th{padding:3px 9px;border-bottom:1px solid var(--line);white-space:nowrap}
th{text-align:center;background:#f0f3f8;font-weight:600}
th.grp{background:#e4eaf5}
td.num{text-align:right}
td small{color:var(--muted)}
table.eb-table thead tr:last-child th{cursor:pointer;user-select:none}
table.eb-table thead tr:last-child th:hover{background:#dde6f6}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:10px}
th[aria-sort=descending]::after{content:" \\25BC";font-size:10px}
table.eb-table tbody tr:hover td{background:#f7f9fd}
table.eb-table tr.grp td{background:#fafbfc;color:var(--muted)}
table.eb-table:not(.sorted) td.rep{color:transparent}
table.sorted tr.grp{display:none}
.f-hide,.c-hide{display:none}
ul.notes{margin:6px 0 0 18px;padding:0;color:var(--muted);font-size:12px}
.figs{display:flex;flex-wrap:wrap;gap:14px}
figure{margin:0;background:#fff;border:1px solid var(--line);border-radius:6px;padding:8px;max-width:100%}
figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:12px;color:var(--muted);margin-top:4px}
table.eb-runs td{white-space:normal;max-width:260px}
.eb-chart{margin-top:10px;border-top:1px dashed var(--line);padding-top:6px}
.hidden-note{color:var(--muted);font-style:italic;font-size:12px}
"""

SCRIPT = r"""
(function () {
  "use strict";
  var tables = Array.prototype.slice.call(document.querySelectorAll("table.eb-table"));
  var state = {task: "", solver: "", metric: "", sort: ""};
  var sel = {};
  function $all(root, q) { return Array.prototype.slice.call(root.querySelectorAll(q)); }
  function heads(t) { var r = t.tHead.rows; return Array.prototype.slice.call(r[r.length - 1].cells); }
  function value(td) {
    var v = td ? td.getAttribute("data-v") : null;
    if (v === null || v === "") return null;
    var n = Number(v);
    return isNaN(n) ? v : n;
  }
  function compare(a, b) {
    if (a === null) return b === null ? 0 : 1;
    if (b === null) return -1;
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b));
  }
  function sortTable(t, col, dir) {
    var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    heads(t).forEach(function (th) { th.removeAttribute("aria-sort"); });
    if (dir !== "asc" && dir !== "desc") {
      rows.sort(function (a, b) { return a.getAttribute("data-i") - b.getAttribute("data-i"); });
      t.classList.remove("sorted");
    } else {
      var sign = dir === "asc" ? 1 : -1;
      rows.sort(function (a, b) {
        var ga = a.classList.contains("grp"), gb = b.classList.contains("grp");
        if (ga || gb) return ga - gb;
        var va = value(a.cells[col]), vb = value(b.cells[col]);
        if (va === null || vb === null) return compare(va, vb);
        return sign * compare(va, vb) || a.getAttribute("data-i") - b.getAttribute("data-i");
      });
      t.classList.add("sorted");
      heads(t)[col].setAttribute("aria-sort", dir === "asc" ? "ascending" : "descending");
    }
    rows.forEach(function (r) { body.appendChild(r); });
  }
  function onHeader(t, ti, col, th) {
    var first = th.getAttribute("data-order") || "asc", other = first === "asc" ? "desc" : "asc";
    var now = th.getAttribute("aria-sort");
    var dir = !now ? first : (now === (first === "asc" ? "ascending" : "descending") ? other : "");
    sortTable(t, col, dir);
    state.sort = dir ? [ti, col, dir].join(".") : "";
    save();
  }
  function matchTask(v) { return !state.task || !v || v === state.task; }
  function filterTable(t) {
    var hs = heads(t), shown = 0, metricCols = 0;
    hs.forEach(function (th, j) {
      var hide = !matchTask(th.getAttribute("data-group")) ||
        (state.metric && th.getAttribute("data-metric") && th.getAttribute("data-metric") !== state.metric);
      th.classList.toggle("c-hide", !!hide);
      if (!hide && th.getAttribute("data-kind") !== "text") metricCols++;
      Array.prototype.forEach.call(t.tBodies[0].rows, function (r) {
        if (!r.classList.contains("grp") && r.cells[j]) r.cells[j].classList.toggle("c-hide", !!hide);
      });
    });
    $all(t, "thead th.grp").forEach(function (g) {
      var first = Number(g.getAttribute("data-first")), span = Number(g.getAttribute("data-span")), n = 0;
      for (var j = first; j < first + span; j++) if (!hs[j].classList.contains("c-hide")) n++;
      g.colSpan = Math.max(n, 1);
      g.classList.toggle("c-hide", n === 0);
    });
    var rows = Array.prototype.slice.call(t.tBodies[0].rows), group = null, groupShown = 0;
    function closeGroup() { if (group) group.classList.toggle("f-hide", groupShown === 0); }
    rows.forEach(function (r) {
      if (r.classList.contains("grp")) { closeGroup(); group = r; groupShown = 0; return; }
      var hide = !matchTask(r.getAttribute("data-task")) ||
        (state.solver && r.getAttribute("data-solver") && r.getAttribute("data-solver") !== state.solver);
      r.classList.toggle("f-hide", !!hide);
      if (!hide) { shown++; groupShown++; }
    });
    closeGroup();
    var sec = t.closest(".eb-sec"), empty = shown === 0 || metricCols === 0;
    if (sec) {
      sec.classList.toggle("f-hide", empty);
      sec.setAttribute("data-shown", String(empty ? 0 : shown));
    }
    return empty ? 0 : shown;
  }
  function apply() {
    var total = 0;
    tables.forEach(function (t) { total += filterTable(t); });
    $all(document, ".eb-layout").forEach(function (l) {
      var visible = $all(l, ".eb-sec").filter(function (s) { return !s.classList.contains("f-hide"); }).length;
      var note = l.querySelector(".hidden-note");
      if (note) note.classList.toggle("f-hide", visible > 0);
    });
    var c = document.getElementById("eb-count");
    if (c) c.textContent = total + " table rows shown";
  }
  function save() {
    var p = [];
    ["task", "solver", "metric", "sort"].forEach(function (k) { if (state[k]) p.push(k + "=" + encodeURIComponent(state[k])); });
    if (window.history && history.replaceState) history.replaceState(null, "", p.length ? "#" + p.join("&") : location.pathname);
  }
  function load() {
    var h = location.hash.slice(1);
    if (h.indexOf("=") < 0) return;
    h.split("&").forEach(function (kv) {
      var i = kv.indexOf("="), k = kv.slice(0, i);
      if (k in state) state[k] = decodeURIComponent(kv.slice(i + 1).replace(/\+/g, " "));
    });
  }
  tables.forEach(function (t, ti) {
    Array.prototype.forEach.call(t.tBodies[0].rows, function (r, i) { r.setAttribute("data-i", i); });
    $all(t, "thead th.grp").forEach(function (g) { g.setAttribute("data-span", g.colSpan); });
    heads(t).forEach(function (th, j) { th.addEventListener("click", function () { onHeader(t, ti, j, th); }); });
    t.setAttribute("data-eb-sortable", "1");
  });
  ["task", "solver", "metric"].forEach(function (k) {
    sel[k] = document.getElementById("eb-f-" + k);
    if (sel[k]) sel[k].addEventListener("change", function () { state[k] = sel[k].value; save(); apply(); });
  });
  var reset = document.getElementById("eb-f-reset");
  if (reset) reset.addEventListener("click", function () {
    state.task = state.solver = state.metric = "";
    ["task", "solver", "metric"].forEach(function (k) { if (sel[k]) sel[k].value = ""; });
    save(); apply();
  });
  load();
  ["task", "solver", "metric"].forEach(function (k) { if (sel[k]) sel[k].value = state[k]; });
  if (state.sort) {
    var s = state.sort.split("."), t = tables[Number(s[0])];
    if (t && heads(t)[Number(s[1])]) sortTable(t, Number(s[1]), s[2]);
  }
  apply();
  document.documentElement.setAttribute("data-eb-ready", "1");
  function countCharts() {
    document.documentElement.setAttribute("data-eb-charts", String(document.querySelectorAll(".js-plotly-plot").length));
  }
  countCharts();
  window.addEventListener("load", countCharts);
})();
"""
