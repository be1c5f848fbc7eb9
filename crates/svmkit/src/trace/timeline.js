"use strict";
// svmkit trace timeline: draws the embedded Timeline (see svmkit::trace::html) as SVG.
window.onerror = function (msg, src, line) {
  document.body.setAttribute("data-error", String(msg) + " (line " + line + ")");
  var d = document.createElement("div");
  d.id = "error";
  d.textContent = "The timeline could not be drawn: " + msg;
  document.body.insertBefore(d, document.body.firstChild);
};
(function () {
  var started = performance.now();
  var D = JSON.parse(document.getElementById("trace-data").textContent);
  var ROW = 16, BAND = 14, GAP = 8, AXIS = 22, PAD = 8, NAMES = 190;
  var STATES = [["cpu", "CPU-present"], ["excl", "device-exclusive"], ["atomic", "device-mapped atomically"],
    ["swap", "swapped"], ["migration", "migration entry"], ["none", "none"], ["huge", "PMD: huge"], ["table", "PMD: PTE table"]];
  // The whole run fits the window when it can (2 to 16 px per event).
  var fit = Math.max(600, (window.innerWidth || 1600) - NAMES - 2 * PAD - 40);
  var scale = Math.max(2, Math.min(16, fit / Math.max(1, D.t_end)));
  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }
  function x(t) { return PAD + t * scale; }
  // An item's label: its text when the data leaves the label out (the same).
  function lab(it) { return it[5] || it[6]; }
  // Vertical layout: the axis, the page bands, the device lanes (next to the pages
  // they map), then the thread lanes.
  var laneY = [], y = AXIS, bandsY = 0, h, order = [];
  if (D.bands.length) { y += ROW; bandsY = y; y += D.bands.length * BAND + GAP; }
  var lanesTop = y + ROW;
  y = lanesTop;
  D.lanes.forEach(function (ln, i) { if (ln.kind === "device") order.push(i); });
  D.lanes.forEach(function (ln, i) { if (ln.kind !== "device") order.push(i); });
  order.forEach(function (l) { laneY[l] = y; y += D.lanes[l].rows * ROW + GAP; });
  h = y;
  var led = {}, failing = D.violation ? D.violation.failing : null, stepNo = {};
  if (D.violation) D.violation.steps.forEach(function (s, k) { led[s] = true; stepNo[s] = k + 1; });

  function names() {
    var o = ['<svg xmlns="http://www.w3.org/2000/svg" width="' + NAMES + '" height="' + h + '">'];
    if (D.bands.length) {
      o.push('<text class="section" x="6" y="' + (bandsY - 4) + '">pages (ownership)</text>');
      D.bands.forEach(function (b, i) {
        o.push('<text class="lname" x="10" y="' + (bandsY + i * BAND + 11) + '">' + esc(b.label) + '</text>');
      });
    }
    o.push('<text class="section" x="6" y="' + (lanesTop - 4) + '">devices and threads</text>');
    D.lanes.forEach(function (ln, i) {
      o.push('<text class="lname ' + ln.kind + '" x="10" y="' + (laneY[i] + 12) + '">' +
        esc((ln.kind === "device" ? "device " : "") + ln.name) + '</text>');
    });
    o.push("</svg>");
    return o.join("");
  }

  function main() {
    var w = x(D.t_end) + PAD + 200;
    var o = ['<svg xmlns="http://www.w3.org/2000/svg" id="tl" width="' + w + '" height="' + h + '">'];
    // Axis: a tick every power-of-ten-ish step that leaves room for its label.
    var step = 1;
    while (step * scale < 60) step *= (String(step)[0] === "2" ? 2.5 : 2);
    o.push('<g class="axis">');
    for (var t = 0; t <= D.t_end; t += step) {
      o.push('<line x1="' + x(t) + '" x2="' + x(t) + '" y1="' + (AXIS - 6) + '" y2="' + h + '"/>' +
        '<text x="' + (x(t) + 2) + '" y="' + (AXIS - 8) + '">t=' + Math.round(t) + '</text>');
    }
    o.push("</g>");
    D.lanes.forEach(function (ln, i) {
      o.push('<rect class="lanebg ' + ln.kind + '" x="0" y="' + laneY[i] + '" width="' + w + '" height="' + (ln.rows * ROW) + '"/>');
    });
    D.bands.forEach(function (b, i) {
      o.push('<g class="band" data-band="' + esc(b.label) + '">');
      b.segs.forEach(function (s, k) {
        o.push('<rect class="seg s-' + s[2] + '" data-b="' + i + '" data-s="' + k + '" data-state="' + s[2] + '" x="' + x(s[0]) +
          '" y="' + (bandsY + i * BAND + 1) + '" width="' + Math.max(1, (s[1] - s[0]) * scale) + '" height="' + (BAND - 2) + '"/>');
      });
      o.push("</g>");
    });
    // Lanes: a group per lane, its items inside.
    var byLane = D.lanes.map(function () { return []; });
    D.items.forEach(function (it, i) { byLane[it[2]].push(i); });
    D.lanes.forEach(function (ln, li) {
      o.push('<g class="lane" data-lane="' + esc(ln.name) + '" data-kind="' + ln.kind + '">');
      byLane[li].forEach(function (i) {
        var it = D.items[i], yy = laneY[li] + it[3] * ROW + 1, cls = "ev k-" + it[4];
        if (led[i]) cls += " led";
        if (i === failing) cls += " failing";
        var attrs = ' data-i="' + i + '" data-kind="' + it[4] + '" data-label="' + esc(lab(it)) + '"';
        if (it[1] !== null) {
          var bw = Math.max(2, (it[1] - it[0]) * scale);
          o.push('<rect class="' + cls + ' bar"' + attrs + ' x="' + x(it[0]) + '" y="' + yy + '" width="' + bw + '" height="' + (ROW - 2) + '"/>');
          if (bw > lab(it).length * 5.6 + 6) {
            o.push('<text class="barlabel" x="' + (x(it[0]) + 3) + '" y="' + (yy + 11) + '">' + esc(lab(it)) + '</text>');
          }
        } else {
          o.push('<rect class="' + cls + ' tick"' + attrs + ' x="' + (x(it[0]) - 1.5 + scale / 2) + '" y="' + yy + '" width="3" height="' + (ROW - 2) + '"/>');
        }
        if (stepNo[i]) {
          o.push('<text class="stepno" x="' + (x(it[0]) + 1) + '" y="' + (yy - 1) + '">' + stepNo[i] + '</text>');
        }
      });
      o.push("</g>");
    });
    D.flows.forEach(function (f) {
      var a = D.items[f.from], b = D.items[f.to];
      var x1 = x(a[0]), y1 = laneY[a[2]] + a[3] * ROW + ROW / 2, x2 = x(b[0]) + scale / 2, y2 = laneY[b[2]] + b[3] * ROW + ROW / 2;
      o.push('<path class="flow' + (b[4] === "restore" ? " restore" : "") + '" d="M' + x1 + " " + y1 + " C" + (x1 + 30) + " " + y1 +
        " " + (x2 - 30) + " " + y2 + " " + x2 + " " + y2 + '"/>');
    });
    if (D.violation) {
      var vx = x(D.violation.t);
      o.push('<line class="vline" x1="' + vx + '" x2="' + vx + '" y1="' + (AXIS - 4) + '" y2="' + h + '"/>' +
        '<text class="vlabel" x="' + (vx + 4) + '" y="' + (AXIS + 10) + '">violation</text>');
    }
    o.push("</svg>");
    return o.join("");
  }

  function draw() {
    document.getElementById("names").innerHTML = names();
    document.getElementById("scroll").innerHTML = main();
  }

  function tipText(el) {
    var i = el.getAttribute("data-i");
    if (i !== null) {
      var it = D.items[+i], ln = D.lanes[it[2]];
      var s = it[6] + "\n" + (ln.kind === "device" ? "device " : "track ") + ln.name + ", t=" + it[0];
      if (it[1] !== null) s += " .. " + it[1] + "\nresult: " + it[7];
      return s;
    }
    var b = el.getAttribute("data-b");
    if (b !== null) {
      var band = D.bands[+b], seg = band.segs[+el.getAttribute("data-s")];
      return band.label + "\n" + seg[3] + "\nt=" + seg[0] + " .. " + seg[1];
    }
    return null;
  }

  var tip = document.getElementById("tip");
  document.getElementById("timeline").addEventListener("mousemove", function (ev) {
    var el = ev.target.closest ? ev.target.closest("[data-i],[data-b]") : null;
    var s = el ? tipText(el) : null;
    if (!s) { tip.style.display = "none"; return; }
    tip.textContent = s;
    tip.style.display = "block";
    tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - 660) + "px";
    tip.style.top = (ev.clientY + 14) + "px";
  });
  document.getElementById("timeline").addEventListener("mouseleave", function () { tip.style.display = "none"; });

  var threads = D.lanes.filter(function (l) { return l.kind === "thread"; }).length;
  document.getElementById("summary").textContent = D.events + " events, " + threads + " thread lane(s), " +
    (D.lanes.length - threads) + " device lane(s), " + D.bands.length + " page band(s); logical time 0.." + D.t_end +
    ". Hover a bar, tick or band for the event.";
  var c = document.getElementById("controls");
  [["\u2212 zoom out", 0.5], ["+ zoom in", 2]].forEach(function (z) {
    var btn = document.createElement("button");
    btn.textContent = z[0];
    btn.onclick = function () { scale = Math.max(0.05, Math.min(64, scale * z[1])); draw(); };
    c.appendChild(btn);
  });
  document.getElementById("legend").innerHTML = STATES.map(function (s) {
    return '<span><i class="s-' + s[0] + '"></i>' + s[1] + "</span>";
  }).join("");
  // The legend's swatches take the band colours from the stylesheet's SVG fills.
  Array.prototype.forEach.call(document.querySelectorAll("#legend i"), function (i) {
    var probe = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    probe.setAttribute("class", i.className);
    var s = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    s.appendChild(probe);
    document.body.appendChild(s);
    i.style.background = getComputedStyle(probe).fill;
    document.body.removeChild(s);
  });

  if (D.violation) {
    var v = document.getElementById("violation");
    v.className = "on";
    var list = D.violation.steps.map(function (s, k) {
      var it = D.items[s];
      return '<li data-step="' + s + '"' + (s === failing ? ' class="failing"' : "") + ">" +
        esc(D.lanes[it[2]].name + ": " + it[6].replace(/^step /, "") + " -> " + it[7]) + " (t=" + it[0] + ")</li>";
    }).join("");
    v.innerHTML = "<h2>Violation</h2><div>" + esc(D.violation.text) + "</div><div>The steps that led to it, in the order they ran" +
      (failing !== null ? " (the failing one in bold)" : "") + ":</div><ol>" + list + "</ol>";
    v.addEventListener("click", function (ev) {
      var li = ev.target.closest("li");
      if (li) document.getElementById("scroll").scrollLeft = x(D.items[+li.getAttribute("data-step")][0]) - 100;
    });
  }
  draw();
  if (D.violation) document.getElementById("scroll").scrollLeft = Math.max(0, x(D.violation.t) - 600);
  var b = document.body;
  // Reading a laid-out size makes the browser lay the drawing out now, so that the
  // time below includes it.
  b.setAttribute("data-width", String(document.getElementById("scroll").scrollWidth));
  b.setAttribute("data-lanes", String(D.lanes.length));
  b.setAttribute("data-bands", String(D.bands.length));
  b.setAttribute("data-items", String(D.items.length));
  b.setAttribute("data-render-ms", String(Math.round(performance.now() - started)));
  b.setAttribute("data-rendered", "ok");
})();
