// Keeps the status page current: every few seconds /status.json replaces the tables, counts and sky points.
// Everything from the server is set as text or as an attribute, never parsed as markup (alert fields and peer
// names are untrusted).
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var COLOURS = {u: "#7b3fc4", g: "#2e9e44", r: "#d62728", i: "#e07b00", z: "#8c2d04", y: "#4a1f00"};

  function text(id, value) {
    var node = document.getElementById(id);
    if (node) { node.textContent = String(value); }
  }

  function cell(td, value) {
    if (Array.isArray(value)) { value.forEach(function (item) { cell(td, item); }); return; }
    if (value !== null && typeof value === "object") {
      var link = document.createElement("a");
      link.setAttribute("href", value.href);
      if (value.img) {
        var img = document.createElement("img");
        img.className = "stamp";
        img.setAttribute("src", value.img);
        img.setAttribute("alt", value.alt);
        img.setAttribute("title", value.alt);
        img.width = 63; img.height = 63;
        link.appendChild(img);
      } else {
        link.textContent = value.text;
      }
      td.appendChild(link);
      return;
    }
    td.appendChild(document.createTextNode(String(value)));
  }

  function table(name, rows) {
    var body = document.querySelector("#" + name + " tbody");
    if (!body) { return; }
    var fresh = document.createElement("tbody");
    rows.forEach(function (row) {
      var tr = document.createElement("tr");
      row.forEach(function (value) { var td = document.createElement("td"); cell(td, value); tr.appendChild(td); });
      fresh.appendChild(tr);
    });
    body.parentNode.replaceChild(fresh, body);
    text(name + "-count", rows.length);
  }

  function sky(points) {
    var group = document.getElementById("sky-points");
    if (!group) { return; }
    while (group.firstChild) { group.removeChild(group.firstChild); }
    points.forEach(function (point) {
      var dot = document.createElementNS(SVG, "circle");
      dot.setAttribute("cx", point[0]);
      dot.setAttribute("cy", point[1]);
      dot.setAttribute("r", "3");
      dot.setAttribute("fill", COLOURS[point[2]] || "#777777");
      dot.setAttribute("data-band", point[2]);
      group.appendChild(dot);
    });
    text("sky-count", points.length);
  }

  function show(snapshot) {
    text("health", snapshot.health);
    text("version", snapshot.version);
    text("uptime", snapshot.uptime);
    text("pipeline", snapshot.pipeline);
    text("stored", snapshot.stored);
    Object.keys(snapshot.tables).forEach(function (name) { table(name, snapshot.tables[name]); });
    sky(snapshot.sky);
    document.body.setAttribute("data-updated", String(Date.now()));
  }

  function poll() {
    fetch("/status.json", {cache: "no-store"})
      .then(function (response) { return response.json(); })
      .then(show)
      .catch(function () { text("health", "not answering"); })
      .then(function () { window.setTimeout(poll, interval); });
  }

  var interval = parseInt(document.body.getAttribute("data-refresh"), 10) || 2000;
  window.setTimeout(poll, interval);
})();
