// corral's observer page: renders what the node pushes over the WebSocket on this same path. No framework, no build.
"use strict";

const $ = (id) => document.getElementById(id);
const query = { type: "query", node: "", sort: "pid", desc: false, filter: "", offset: 0, limit: 50 };
let socket = null;
let selected = null;
let last = null;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function fmtBytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1048576) return (n / 1024).toFixed(1) + " kB";
  return (n / 1048576).toFixed(1) + " MB";
}

function fmtMs(ms) {
  return ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(1) + " s";
}

function connect() {
  const url = new URL(location.pathname, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(url);
  socket.onopen = () => {
    setLink(true);
    socket.send(JSON.stringify(query));
  };
  socket.onclose = () => {
    setLink(false);
    setTimeout(connect, 2000);
  };
  socket.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "update") render(msg);
    else if (msg.type === "detail") renderDetail(msg.detail);
    else if (msg.type === "action") $("action-result").textContent = msg.ok ? "done" : msg.error;
  };
}

function setLink(up) {
  const link = $("link");
  link.textContent = up ? "live" : "disconnected, retrying…";
  link.className = "link " + (up ? "up" : "down");
}

function ask(msg) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(msg));
}

function render(u) {
  last = u;
  $("node").textContent = u.node;
  $("viewing").textContent = u.node === u.self ? "" : "(asked through " + u.self + ")";
  renderNodes(u);
  $("unavailable").hidden = !u.unavailable;
  $("unavailable").textContent = u.unavailable || "";
  if (u.unavailable) return;
  renderSummary(u.summary);
  for (const name of ["processes", "connections", "messages", "delayMs"]) plot(name, u.series[name]);
  renderTable(u.table);
  renderListeners(u.listeners);
  renderSessions(u.sessions, u.summary);
  renderSimple($("group-rows"), u.groups.map((g) => [g.name, g.members]));
  renderSupervisors(u.supervisors);
  renderTimers(u.timers);
  if (selected !== null) ask({ type: "detail", pid: selected });
}

function renderNodes(u) {
  $("node-rows").replaceChildren(...u.nodes.map((n) => {
    const tr = el("tr");
    tr.dataset.node = n.name;
    const cell = el("td");
    if (n.name === u.node) cell.append(el("b", "viewing"));
    else if (n.observer) {
      const b = el("button", "view", "view");
      b.type = "button";
      b.addEventListener("click", () => viewNode(n.self ? "" : n.name));
      cell.append(b);
    } else cell.append(el("span", "no observer", "note"));
    tr.append(el("td", n.name + (n.self ? " (this node)" : "")), el("td", n.up ? "up" : "down"), cell);
    return tr;
  }));
}

function viewNode(name) {
  query.node = name;
  query.offset = 0;
  selected = null;
  $("detail").hidden = true;
  requery();
}

function supItem(s) {
  const li = el("li");
  li.dataset.pid = s.pid;
  li.append(el("span", "▾ " + s.pid + (s.name ? " " + s.name : "") + " — " + s.strategy + ", at most " + s.intensity + " restart" + (s.intensity === 1 ? "" : "s") + " in " + fmtMs(s.periodMs), "sup"));
  if (s.restarts.length > 0) {
    const r = s.restarts[s.restarts.length - 1];
    li.append(el("div", s.restarts.length + " restart" + (s.restarts.length === 1 ? "" : "s") + " kept; last: " + r.childId + " at " + new Date(r.at).toLocaleTimeString() + " (" + r.reason + ")", "restarts"));
  }
  const ul = el("ul");
  for (const c of s.children) {
    if (c.supervisor) ul.append(supItem(c.supervisor));
    else ul.append(el("li", c.id + " " + (c.restarting ? "restarting" : c.pid ?? "not running") + " (" + c.type + ")"));
  }
  if (s.childCount > s.children.length) ul.append(el("li", "… " + (s.childCount - s.children.length) + " more", "note"));
  li.append(ul);
  return li;
}

function renderSupervisors(list) {
  const ul = el("ul", undefined, "tree");
  ul.append(...list.map(supItem));
  $("sup-tree").replaceChildren(list.length === 0 ? el("p", "none", "note") : ul);
}

function renderTimers(t) {
  $("timer-count").textContent = "(" + t.count + " armed)";
  renderSimple($("timer-rows"), t.next.map((x) => [fmtMs(x.inMs), x.dest, x.behaviour ?? "", x.kind]));
}

function renderSummary(s) {
  const cards = [
    ["processes", s.processes], ["connections", s.connections], ["timers", s.timers], ["groups", s.groups],
    ["crashes", s.crashes], ["restarts", s.restarts], ["sessions", s.sessionsOpen + (s.sessionsAway ? " (" + s.sessionsAway + " away)" : "")],
    ["frames in", s.framesIn], ["frames out", s.framesOut],
  ];
  const box = $("summary");
  box.replaceChildren(...cards.map(([label, value]) => {
    const card = el("div", undefined, "card");
    card.dataset.stat = label;
    card.append(el("b", value), el("span", label));
    return card;
  }));
}

function plot(name, points) {
  const canvas = $("plot-" + name);
  const ctx = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  $("v-" + name).textContent = points.length ? String(points[points.length - 1]) : "";
  if (points.length < 2) return;
  let max = 1;
  for (const v of points) if (v > max) max = v;
  ctx.strokeStyle = "#dde2e7";
  ctx.beginPath();
  ctx.moveTo(0, h - 0.5);
  ctx.lineTo(w, h - 0.5);
  ctx.stroke();
  ctx.strokeStyle = "#2f6fb3";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  const step = w / 299;
  const x0 = w - (points.length - 1) * step;
  points.forEach((v, i) => {
    const x = x0 + i * step;
    const y = h - 2 - (v / max) * (h - 6);
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
  ctx.fillStyle = "#67717d";
  ctx.font = "10px system-ui";
  ctx.fillText(String(max), 2, 10);
}

function renderTable(t) {
  for (const th of document.querySelectorAll("#proc-table th[data-sort]")) {
    th.classList.toggle("sorted", th.dataset.sort === t.sort);
    th.classList.toggle("desc", th.dataset.sort === t.sort && t.desc);
  }
  const end = Math.min(t.offset + t.rows.length, t.matched);
  $("range").textContent = t.matched === 0 ? "none" : t.offset + 1 + "–" + end + " of " + t.matched;
  $("prev").disabled = t.offset === 0;
  $("next").disabled = end >= t.matched;
  $("sample-note").textContent = t.exact
    ? "every process, read this second"
    : "sampled: " + t.sampled + " of " + t.total + " processes read this second (a rolling window, plus the rows shown)";
  const rows = t.rows.map((r) => {
    const tr = el("tr");
    tr.dataset.pid = r.pid;
    if (r.pid === selected) tr.className = "selected";
    tr.append(
      el("td", r.pid), el("td", r.name ?? ""), el("td", r.behaviour), el("td", r.status),
      el("td", r.mailbox, "num"), el("td", r.handled, "num"), el("td", fmtBytes(r.memory), "num"),
      el("td", r.hibernated ? "yes" : ""), el("td", r.links, "num"), el("td", r.monitors, "num"),
      el("td", r.groups.join(", ")), el("td", r.machine ?? ""),
    );
    return tr;
  });
  $("proc-rows").replaceChildren(...rows);
}

function renderListeners(list) {
  const box = $("listener-list");
  box.replaceChildren(...list.map((l) => {
    const div = el("div", undefined, "listener");
    div.append(el("h3", l.name + " — " + l.host + ":" + l.port + " — " + l.connections + " connection" + (l.connections === 1 ? "" : "s")));
    if (l.conns.length > 0) {
      const table = el("table");
      const head = el("tr");
      for (const h of ["pid", "transport", "peer", "buffered", "idle", "reading", "session"]) head.append(el("th", h));
      const thead = el("thead");
      thead.append(head);
      const body = el("tbody");
      for (const c of l.conns) {
        const tr = el("tr");
        tr.dataset.pid = c.pid ?? "";
        tr.append(el("td", c.pid ?? "-"), el("td", c.transport), el("td", c.peer), el("td", fmtBytes(c.buffered), "num"), el("td", fmtMs(c.idleMs), "num"), el("td", c.throttled ? "paused (mailbox full)" : "yes"), el("td", c.session ? sessionState(c.session) : ""));
        body.append(tr);
      }
      table.append(thead, body);
      div.append(table);
      if (l.connections > l.conns.length) div.append(el("p", "first " + l.conns.length + " of " + l.connections + " shown", "note"));
    }
    return div;
  }));
}

/** A session's resume state in a few words: its transport, or away and how long its window has left. */
function sessionState(s) {
  return s.transport !== null ? s.transport + ", attached" : "away " + fmtMs(s.awayMs) + ", " + fmtMs(s.windowLeftMs) + " left";
}

function renderSessions(list, summary) {
  $("session-count").textContent = summary.sessionsOpen > list.length ? "(first " + list.length + " of " + summary.sessionsOpen + ")" : "";
  $("session-rows").replaceChildren(...list.map((s) => {
    const tr = el("tr");
    tr.dataset.pid = s.pid ?? "";
    tr.append(el("td", s.pid ?? "-"), el("td", sessionState(s)), el("td", s.outboxFrames, "num"), el("td", fmtBytes(s.outboxBytes), "num"),
      el("td", s.sent, "num"), el("td", s.acked, "num"), el("td", s.received, "num"));
    return tr;
  }));
}

function renderSimple(tbody, rows) {
  tbody.replaceChildren(...rows.map((cells) => {
    const tr = el("tr");
    cells.forEach((c, i) => tr.append(el("td", c, i > 0 && typeof c === "number" ? "num" : "")));
    return tr;
  }));
}

function renderDetail(d) {
  $("detail").hidden = false;
  $("detail-pid").textContent = d.pid + (d.alive ? "" : d.error ? " (" + d.error + ")" : " (exited)");
  const fields = $("detail-fields");
  if (!d.alive) {
    fields.replaceChildren();
    $("actions").hidden = true;
    $("detail-sup").hidden = true;
    return;
  }
  const pairs = [
    ["name", d.name ?? ""], ["behaviour", d.behaviour], ["status", d.status], ["mailbox", d.mailbox],
    ["handled", d.handled], ["≈ memory", fmtBytes(d.memory)], ["hibernated", d.hibernated], ["traps exits", d.trapExit],
    ["links", d.links.join(" ")], ["monitors", d.monitors.join(" ")], ["monitored by", d.monitoredBy.join(" ")],
    ["groups", d.groups.join(", ")], ["machine state", d.machine ?? ""],
    ["timers", d.timers.count === 0 ? "none" : d.timers.count + ", next in " + fmtMs(d.timers.nextInMs)],
  ];
  if (d.session) {
    pairs.push(["session", (d.session.pid ?? "-") + ": " + sessionState(d.session) + " (resume window " + fmtMs(d.session.resumeWindowMs) + ")"]);
    pairs.push(["session outbox", d.session.outboxFrames + " frames, " + fmtBytes(d.session.outboxBytes) + "; sent " + d.session.sent + ", acked " + d.session.acked + ", received " + d.session.received]);
  }
  if (d.supervisor) pairs.push(["supervisor", d.supervisor.strategy + ", at most " + d.supervisor.intensity + " in " + fmtMs(d.supervisor.periodMs) + ", " + d.supervisor.childCount + " children"]);
  $("detail-sup").hidden = !d.supervisor;
  if (d.supervisor) {
    $("detail-children").replaceChildren(...d.supervisor.children.map((c) => el("li", c.id + " " + (c.restarting ? "restarting" : c.pid ?? "not running") + " (" + c.type + ")")));
    $("detail-restarts").replaceChildren(...(d.supervisor.restarts.length === 0 ? [el("li", "none", "note")] : d.supervisor.restarts.map((r) => el("li", new Date(r.at).toLocaleTimeString() + " " + r.childId + ": " + r.reason))));
  }
  fields.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
  $("detail-state").textContent = d.state;
  $("detail-queue").textContent = d.queue.join("\n");
  $("actions").hidden = !(last && last.actions);
}

function requery() {
  ask(query);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const th of document.querySelectorAll("#proc-table th[data-sort]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.sort;
      query.desc = query.sort === key ? !query.desc : key === "mailbox" || key === "handled";
      query.sort = key;
      query.offset = 0;
      requery();
    });
  }
  $("filter").addEventListener("input", () => {
    query.filter = $("filter").value.trim();
    query.offset = 0;
    requery();
  });
  $("prev").addEventListener("click", () => {
    query.offset = Math.max(0, query.offset - query.limit);
    requery();
  });
  $("next").addEventListener("click", () => {
    query.offset += query.limit;
    requery();
  });
  // a process's detail from its row, a connection's or a session's
  for (const rows of ["proc-rows", "listener-list", "session-rows"]) {
    $(rows).addEventListener("click", (ev) => {
      const tr = ev.target.closest("tr");
      if (!tr || !tr.dataset.pid) return;
      selected = tr.dataset.pid;
      $("action-result").textContent = "";
      ask({ type: "detail", pid: selected });
    });
  }
  $("detail-close").addEventListener("click", () => {
    selected = null;
    $("detail").hidden = true;
  });
  $("kill").addEventListener("click", () => {
    if (selected !== null && confirm("Kill " + selected + "?")) ask({ type: "kill", pid: selected });
  });
  $("send").addEventListener("click", () => {
    if (selected !== null) ask({ type: "send", pid: selected, message: $("message").value });
  });
  connect();
});
