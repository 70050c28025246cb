// The nfaas dashboard: polls GET /api/v1/dashboard with the bearer token and draws it.
// The token comes from the URL fragment (#token=...; never sent to the server in the URL)
// or the login form, and is kept in sessionStorage for this tab only.
"use strict";

(() => {
  const POLL_MS = 1000;
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  function readToken() {
    const match = location.hash.match(/token=([^&]+)/);
    if (match) {
      sessionStorage.setItem("nfaas-token", decodeURIComponent(match[1]));
      history.replaceState(null, "", location.pathname);
    }
    return sessionStorage.getItem("nfaas-token");
  }

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
    return node;
  }

  const num = (value) => el("td", { class: "num" }, value ?? "–");

  function setStatus(state, text) {
    $("status").dataset.state = state;
    $("status").textContent = text;
  }

  function renderFunctions(apps) {
    const body = $("functions").tBodies[0];
    body.replaceChildren();
    for (const app of apps) {
      for (const fn of app.functions) {
        for (const v of fn.versions) {
          const s = v.stats || {};
          const states = Object.entries(v.instances).map(([k, n]) => `${n} ${k}`).join(", ");
          const weight = el("td", {},
            el("span", { class: "weight", style: `width:${v.weight / 2}px` }), `${v.weight}%`);
          if (v.version === fn.stable && fn.versions.length > 1) {
            weight.append(el("span", { class: "stable" }, "stable"));
          }
          body.append(el("tr", { "data-version": `${app.app}/${fn.name}@${v.version}` },
            el("td", {}, `${app.app}/${fn.name}`), el("td", {}, v.version), weight,
            el("td", {}, states || "none"), num(s.invocations), num(s.errors),
            num(s.cold_starts), num(s.init_ms_mean), num(s.queue_wait_ms_mean),
            num(s.duration_ms_p50), num(s.duration_ms_p99)));
        }
      }
    }
  }

  function renderBackends(byBackend) {
    const body = $("backends").tBodies[0];
    body.replaceChildren();
    for (const [backend, states] of Object.entries(byBackend)) {
      for (const [state, count] of Object.entries(states)) {
        body.append(el("tr", {}, el("td", {}, backend), el("td", {}, state), num(count)));
      }
    }
    if (!body.rows.length) body.append(el("tr", {}, el("td", { colSpan: 3 }, "no instances")));
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    return node;
  }

  function heatmap(points, bounds) {
    const rows = bounds.length, height = rows * 6;
    const cell = Math.max(6, Math.min(40, Math.floor(480 / Math.max(points.length, 1))));
    const width = Math.max(points.length, 1) * cell;
    const chart = svg("svg", { width, height: height + 2, viewBox: `0 0 ${width} ${height + 2}` });
    const p99 = [];
    points.forEach((point, x) => {
      const total = point.counts.reduce((a, b) => a + b, 0) || 1;
      point.counts.forEach((count, row) => {
        if (!count) return;
        const shade = Math.round(90 - 60 * Math.min(1, count / total));
        chart.append(svg("rect", { x: x * cell, y: height - (row + 1) * 6, width: cell - 1,
          height: 5, fill: `hsl(205, 60%, ${shade}%)` }));
      });
      const row = point.p99_ms === null ? rows - 1 : bounds.indexOf(point.p99_ms);
      p99.push(`${x * cell + cell / 2},${height - row * 6 - 3}`);
    });
    chart.append(svg("polyline", { points: p99.join(" "), fill: "none", stroke: "#e76f51" }));
    return chart;
  }

  function renderLatency(latency) {
    const box = $("latency");
    box.replaceChildren();
    const bounds = latency.boundsMs;
    for (const [name, points] of Object.entries(latency.series)) {
      const last = points[points.length - 1];
      const title = `${name}: p50 ≤ ${last.p50_ms ?? "∞"} ms, p99 ≤ ${last.p99_ms ?? "∞"} ms`;
      box.append(el("div", { class: "chart", "data-series": name },
        el("h3", {}, title), heatmap(points, bounds)));
    }
    if (!box.children.length) box.append(el("p", { class: "hint" }, "no invocations yet"));
  }

  function renderNode(data) {
    $("node-section").hidden = !data.node;
    if (!data.node) return;
    const n = data.node;
    $("node").tBodies[0].replaceChildren(
      el("tr", {}, el("td", {}, "memory MB"), num(`${n.memory_reserved_mb} / ${n.memory_mb}`)),
      el("tr", {}, el("td", {}, "CPU"), num(`${n.cpu_reserved} / ${n.cpu}`)),
      el("tr", {}, el("td", {}, "reservations"), num(n.reservations)));
    $("pools").tBodies[0].replaceChildren(...data.pools.map((p) => el("tr", {},
      el("td", {}, p.id), el("td", {}, p.runtime), el("td", {}, p.backend), num(p.size),
      num(p.ready), num(p.preparing), num(p.taken), num(p.errors))));
  }

  function renderEvents(events) {
    $("events").replaceChildren(...events.map((e) => {
      const what = [e.app && `${e.app}${e.function ? "/" + e.function : ""}`, e.version]
        .filter(Boolean).join(" ");
      const extra = e.detail.reason || e.detail.error || e.detail.instanceId || "";
      return el("li", { "data-type": e.notificationType },
        el("time", {}, new Date(e.timeStamp * 1000).toLocaleTimeString()),
        `${e.notificationType} ${what} ${extra}`.trim());
    }));
  }

  async function poll(token) {
    try {
      const response = await fetch("/api/v1/dashboard", { headers: { Authorization: `Bearer ${token}` } });
      const data = await response.json();
      if (!response.ok) throw new Error(data.detail || `HTTP ${response.status}`);
      renderFunctions(data.applications);
      renderBackends(data.instancesByBackend);
      renderLatency(data.latency);
      renderNode(data);
      renderEvents(data.events);
      setStatus("live", `live · ${data.tenant} · ${new Date(data.now * 1000).toLocaleTimeString()}`);
    } catch (error) {
      setStatus("error", `error: ${error.message}`);
    }
    setTimeout(() => poll(token), POLL_MS);
  }

  function start(token) {
    $("login").hidden = true;
    $("board").hidden = false;
    poll(token);
  }

  const token = readToken();
  if (token) {
    start(token);
  } else {
    $("login").hidden = false;
    $("login").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem("nfaas-token", $("token").value);
      start($("token").value);
    });
  }
})();
