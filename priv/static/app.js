// The demo page: plain browser JavaScript, no build step. Its panels are bullet() sessions, opened with corral/client.
import { connect } from "./corral-client.js";

const $ = (id) => document.getElementById(id);
const clock = () => new Date().toLocaleTimeString([], { hour12: false });

function log(list, text, kind) {
  const li = document.createElement("li");
  li.className = kind;
  const t = document.createElement("span");
  t.className = "t";
  t.textContent = clock();
  li.append(t, text);
  list.append(li);
  while (list.children.length > 300) list.firstElementChild.remove();
  list.scrollTop = list.scrollHeight;
}

function setStatus(el, state, label) {
  el.dataset.state = state;
  el.textContent = label;
}

const closedLine = (e) => `closed (${e.code}${e.reason ? ` ${e.reason}` : ""})`;

/* ---- sessions: the transport switch, the drop button, one session per panel ---- */

/** What the switch lets connect() use, in the order to try them. */
const TRANSPORTS = { auto: ["websocket", "eventsource", "longpoll"], eventsource: ["eventsource"], longpoll: ["longpoll"] };
/** Each panel's open session, with what opens it again on another transport. */
const sessions = new Map();
let dropped = false;

/**
 * Opens a session on a bullet() route for a panel. The server's first frame names the
 * session's pid (app/demo/session.ts); every later one goes to on.message. The panel's status,
 * transport and pid are kept here, drops and resumes included; on.open and on.close are the
 * panel's own, once per session.
 */
function openSession(panel, path, on) {
  const status = $(`${panel}-status`);
  const list = $(`${panel}-log`);
  const showTransport = () => ($(`${panel}-transport`).textContent = conn.transport ?? "–");
  let pid = null;
  const conn = connect(path, {
    transports: TRANSPORTS[$("transport").value],
    onopen() {
      showTransport();
      setStatus(status, "open", on.label);
      log(list, `session open over ${conn.transport}`, "sys");
      on.open();
    },
    onmessage(data) {
      if (pid !== null) return on.message(data);
      pid = JSON.parse(data).pid;
      $(`${panel}-pid`).textContent = pid;
    },
    ondisconnect() {
      showTransport();
      setStatus(status, "connecting", dropped ? "dropped" : "reconnecting…");
      log(list, dropped ? "connection dropped: the session waits on the server" : "connection lost: resuming the session", "sys");
    },
    onreconnect() {
      showTransport();
      setStatus(status, "open", on.label);
      log(list, `resumed over ${conn.transport}, same pid`, "sys");
    },
    onclose(e) {
      if (sessions.get(panel)?.conn === conn) sessions.delete(panel);
      $(`${panel}-transport`).textContent = "–";
      $(`${panel}-pid`).textContent = "–";
      on.close(e);
    },
  });
  sessions.set(panel, { conn, reopen: on.reopen });
  // A session opened while the page is dropped stays away with the others until the resume.
  if (dropped) window.dispatchEvent(new Event("offline"));
  return conn;
}

// Another transport: each open panel's session ends, and a new one starts on the transports allowed.
$("transport").addEventListener("change", () => {
  for (const { conn, reopen } of [...sessions.values()]) {
    conn.close(1000);
    reopen();
  }
});

// corral/client pauses its sessions on the page's offline event and resumes them on online
// (docs/client.md, "In a page"): the button is that, without pulling a cable.
$("drop").addEventListener("click", () => {
  dropped = !dropped;
  window.dispatchEvent(new Event(dropped ? "offline" : "online"));
  $("drop").textContent = dropped ? "Resume" : "Drop connection";
  $("drop").setAttribute("aria-pressed", String(dropped));
});

/* ---- the guide's handler ---- */
let guide = null;
function guideUi(on) {
  $("guide-connect").disabled = on;
  $("guide-disconnect").disabled = !on;
  $("guide-text").disabled = !on;
  $("guide-send").disabled = !on;
}
function connectGuide() {
  setStatus($("guide-status"), "connecting", "connecting…");
  guideUi(true);
  guide = openSession("guide", "/live/guide", {
    label: "connected",
    open: () => $("guide-text").focus(),
    message: (data) => log($("guide-log"), data, "in"),
    close(e) {
      log($("guide-log"), closedLine(e), "sys");
      setStatus($("guide-status"), "closed", "disconnected");
      guideUi(false);
      guide = null;
    },
    reopen: connectGuide,
  });
}
$("guide-connect").addEventListener("click", () => guide ?? connectGuide());
$("guide-disconnect").addEventListener("click", () => guide?.close(1000));
$("guide-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("guide-text").value.trim();
  if (!text || !guide) return;
  guide.send(text);
  log($("guide-log"), text, "out");
  $("guide-text").value = "";
});

/* ---- chat ---- */
let chat = null;
function chatUi(on) {
  $("chat-name").disabled = on;
  $("chat-join-button").disabled = on;
  $("chat-leave").disabled = !on;
  $("chat-text").disabled = !on;
  $("chat-send").disabled = !on;
}
function showChat(msg) {
  const list = $("chat-log");
  switch (msg.type) {
    case "welcome": return log(list, `you are ${msg.name}`, "sys");
    case "presence": return showPresence(list, msg);
    case "said": return log(list, `${msg.from}: ${msg.text}`, "in");
    case "broadcast": return log(list, `broadcast: ${msg.text}`, "bc");
    default: return log(list, JSON.stringify(msg), "in");
  }
}
// One summary per interval from the server: who joined and left since the last one, and how many are here.
function showPresence(list, msg) {
  for (const name of msg.joined) log(list, `${name} joined`, "sys");
  if (msg.moreJoined > 0) log(list, `and ${msg.moreJoined} more joined`, "sys");
  for (const name of msg.left) log(list, `${name} left`, "sys");
  if (msg.moreLeft > 0) log(list, `and ${msg.moreLeft} more left`, "sys");
  $("chat-here").textContent = `${msg.count} here`;
}
function joinChat(name) {
  setStatus($("chat-status"), "connecting", "joining…");
  chatUi(true);
  chat = openSession("chat", `/live/chat?name=${encodeURIComponent(name)}`, {
    label: "joined",
    open: () => $("chat-text").focus(),
    message(data) {
      try {
        showChat(JSON.parse(data));
      } catch {
        log($("chat-log"), data, "in");
      }
    },
    close() {
      setStatus($("chat-status"), "closed", "not joined");
      $("chat-here").textContent = "";
      log($("chat-log"), "left the room", "sys");
      chatUi(false);
      chat = null;
    },
    reopen: () => joinChat(name),
  });
}
$("chat-join").addEventListener("submit", (e) => {
  e.preventDefault();
  if (!chat) joinChat($("chat-name").value.trim());
});
$("chat-leave").addEventListener("click", () => chat?.close(1000));
$("chat-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("chat-text").value.trim();
  if (!text || !chat) return;
  chat.send(text);
  $("chat-text").value = "";
});
$("broadcast-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("broadcast-text").value.trim();
  if (!text) return;
  try {
    const res = await fetch("/broadcast", { method: "POST", body: text });
    const { reached } = await res.json();
    $("broadcast-text").value = "";
    if (!chat) log($("chat-log"), `broadcast sent to ${reached} member${reached === 1 ? "" : "s"}`, "sys");
  } catch (err) {
    log($("chat-log"), `broadcast failed: ${err}`, "sys");
  }
});

/* ---- noughts and crosses: an xstate machine as a handler ---- */
let game = null;
let gameDeadline = 0;
const gameCells = [];
for (let i = 0; i < 9; i++) {
  const cell = document.createElement("button");
  cell.type = "button";
  cell.className = "cell";
  cell.disabled = true;
  cell.setAttribute("aria-label", `cell ${i + 1}`);
  cell.addEventListener("click", () => game?.send(JSON.stringify({ type: "move", cell: i })));
  $("game-board").append(cell);
  gameCells.push(cell);
}
function gameUi(on) {
  $("game-connect").disabled = on;
  $("game-new").disabled = !on;
  $("game-quit").disabled = !on;
  if (!on) {
    for (const cell of gameCells) cell.disabled = true;
    gameDeadline = 0;
    $("game-clock").textContent = "";
  }
}
const GAME_PHASES = { yourTurn: "Your move.", serverTurn: "The server is thinking…" };
function showGame(msg) {
  if (msg.type === "error") return log($("game-log"), msg.message, "sys");
  if (msg.type !== "state") return;
  [...msg.board].forEach((mark, i) => {
    const cell = gameCells[i];
    cell.textContent = mark.trim();
    cell.dataset.mark = mark;
    cell.disabled = msg.phase !== "yourTurn" || mark !== " ";
    cell.setAttribute("aria-label", `cell ${i + 1}${mark === " " ? "" : `: ${mark}`}`);
  });
  let phase = GAME_PHASES[msg.phase];
  if (msg.phase === "over") {
    phase = msg.winner === "X" ? "You win!" : msg.winner === "O" ? (msg.reason === "time" ? "Out of time: the server wins." : "The server wins.") : "A draw.";
    log($("game-log"), phase, "in");
  }
  $("game-phase").textContent = phase;
  gameDeadline = msg.phase === "yourTurn" ? Date.now() + msg.moveMs : 0;
  tickGameClock();
  const s = msg.score;
  $("game-score").textContent = `${msg.name} ${s.you} · server ${s.server} · draws ${s.draws}`;
}
function tickGameClock() {
  const left = Math.ceil((gameDeadline - Date.now()) / 1000);
  $("game-clock").textContent = gameDeadline && left >= 0 ? `${left} s to move` : "";
}
setInterval(tickGameClock, 250);
function connectGame() {
  setStatus($("game-status"), "connecting", "connecting…");
  gameUi(true);
  game = openSession("game", "/live/game", {
    label: "playing",
    open: () => log($("game-log"), "you are X", "sys"),
    message(data) {
      try {
        showGame(JSON.parse(data));
      } catch {
        log($("game-log"), data, "in");
      }
    },
    close(e) {
      log($("game-log"), closedLine(e), "sys");
      setStatus($("game-status"), "closed", "disconnected");
      $("game-phase").textContent = "Press Play to connect.";
      gameUi(false);
      game = null;
    },
    reopen: connectGame,
  });
}
$("game-connect").addEventListener("click", () => game ?? connectGame());
$("game-new").addEventListener("click", () => game?.send(JSON.stringify({ type: "new" })));
$("game-quit").addEventListener("click", () => game?.send(JSON.stringify({ type: "quit" })));
/* ---- live stats ---- */
async function refreshStats() {
  try {
    const res = await fetch("/api/stats", { cache: "no-store" });
    const s = await res.json();
    $("stat-processes").textContent = s.processes;
    $("stat-connections").textContent = s.connections;
    $("stat-hibernated").textContent = s.hibernated;
    $("stat-uptime").textContent = s.uptime < 120 ? `${s.uptime}s` : `${Math.floor(s.uptime / 60)}m`;
  } catch {
    $("stat-uptime").textContent = "offline";
  }
}
refreshStats();
setInterval(refreshStats, 1000);
