// The audit page's script: every table.sortable's headings with a
// data-sort become buttons (so Tab reaches them, and Enter or Space sorts
// like a click). Sorting sets aria-sort on the heading, says so in the
// table's status line, and keeps rows without a value last and equal rows
// in their first order.
(function () {
  "use strict";

  function order(row) {
    return Number(row.getAttribute("data-order"));
  }

  function key(row, index, numeric) {
    var value = row.cells[index].getAttribute("data-value") || "";
    if (value === "") return null;
    return numeric ? Number(value) : value;
  }

  function sortBy(table, heading, index) {
    var ascending = heading.getAttribute("aria-sort") !== "ascending";
    var numeric = heading.getAttribute("data-sort") === "number";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, index, numeric);
      var y = key(b, index, numeric);
      if (x === null || y === null) {
        return x === y ? order(a) - order(b) : x === null ? 1 : -1;
      }
      var c = numeric ? x - y : x.localeCompare(y);
      if (c === 0) return order(a) - order(b);
      return ascending ? c : -c;
    });
    rows.forEach(function (row) {
      body.appendChild(row);
    });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) {
      if (cell !== heading) cell.removeAttribute("aria-sort");
    });
    heading.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var status = document.getElementById(table.id + "-status");
    if (status) {
      status.textContent = "Sorted by " + heading.textContent + ", " +
        (ascending ? "ascending" : "descending") + ".";
    }
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (heading, index) {
      if (!heading.hasAttribute("data-sort")) return;
      var button = document.createElement("button");
      button.type = "button";
      while (heading.firstChild) button.appendChild(heading.firstChild);
      heading.appendChild(button);
      button.addEventListener("click", function () {
        sortBy(table, heading, index);
      });
    });
  });
})();
