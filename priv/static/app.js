// The demo page: plain browser JavaScript, no build step.
const $ = (id) => document.getElementById(id);
const wsUrl = (path) => `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
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

/* ---- the guide's handler ---- */
let guide = null;
function guideUi(open) {
  $("guide-connect").disabled = open;
  $("guide-disconnect").disabled = !open;
  $("guide-text").disabled = !open;
  $("guide-send").disabled = !open;
}
$("guide-connect").addEventListener("click", () => {
  if (guide) return;
  setStatus($("guide-status"), "connecting", "connecting…");
  guide = new WebSocket(wsUrl("/websocket"));
  guide.addEventListener("open", () => {
    setStatus($("guide-status"), "open", "connected");
    log($("guide-log"), "connected", "sys");
    guideUi(true);
    $("guide-text").focus();
  });
  guide.addEventListener("message", (e) => log($("guide-log"), String(e.data), "in"));
  guide.addEventListener("close", (e) => {
    log($("guide-log"), `closed (${e.code}${e.reason ? ` ${e.reason}` : ""})`, "sys");
    setStatus($("guide-status"), "closed", "disconnected");
    guideUi(false);
    guide = null;
  });
});
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
function chatUi(open) {
  $("chat-name").disabled = open;
  $("chat-join-button").disabled = open;
  $("chat-leave").disabled = !open;
  $("chat-text").disabled = !open;
  $("chat-send").disabled = !open;
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
$("chat-join").addEventListener("submit", (e) => {
  e.preventDefault();
  if (chat) return;
  const name = $("chat-name").value.trim();
  setStatus($("chat-status"), "connecting", "joining…");
  chat = new WebSocket(wsUrl(`/chat?name=${encodeURIComponent(name)}`));
  chat.addEventListener("open", () => {
    setStatus($("chat-status"), "open", "joined");
    chatUi(true);
    $("chat-text").focus();
  });
  chat.addEventListener("message", (e) => {
    try {
      showChat(JSON.parse(String(e.data)));
    } catch {
      log($("chat-log"), String(e.data), "in");
    }
  });
  chat.addEventListener("close", () => {
    setStatus($("chat-status"), "closed", "not joined");
    $("chat-here").textContent = "";
    log($("chat-log"), "left the room", "sys");
    chatUi(false);
    chat = null;
  });
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
function gameUi(open) {
  $("game-connect").disabled = open;
  $("game-new").disabled = !open;
  $("game-quit").disabled = !open;
  if (!open) {
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
$("game-connect").addEventListener("click", () => {
  if (game) return;
  setStatus($("game-status"), "connecting", "connecting…");
  game = new WebSocket(wsUrl("/game"));
  game.addEventListener("open", () => {
    setStatus($("game-status"), "open", "playing");
    log($("game-log"), "connected: you are X", "sys");
    gameUi(true);
  });
  game.addEventListener("message", (e) => {
    try {
      showGame(JSON.parse(String(e.data)));
    } catch {
      log($("game-log"), String(e.data), "in");
    }
  });
  game.addEventListener("close", (e) => {
    log($("game-log"), `closed (${e.code}${e.reason ? ` ${e.reason}` : ""})`, "sys");
    setStatus($("game-status"), "closed", "disconnected");
    $("game-phase").textContent = "Press Play to connect.";
    gameUi(false);
    game = null;
  });
});
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
