// The console's page: logs in, then shows the board the server pushes. Text from the
// server (names, reasons, companies) is always set with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const labels = { "available": "disponible", "ringing": "sonne", "on-call": "en ligne",
                 "wrap-up": "fin d'appel", "paused": "en pause" };
let live = null;
let board = null;

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body)
  };
  const response = await fetch(path, { credentials: "same-origin", ...init });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}

function stateText(seat) {
  let text = labels[seat.state] || seat.state;
  if (seat.state === "wrap-up" && seat.until_ms) {
    const left = Math.max(0, Math.ceil((seat.until_ms - Date.now()) / 1000));
    text += " (" + left + " s)";
  }
  if (seat.state === "paused" && seat.pause_reason) text += " : " + seat.pause_reason;
  return text;
}

function render() {
  if (!board) return;
  const seats = $("seats");
  seats.replaceChildren();
  for (const seat of board.seats) {
    const row = document.createElement("tr");
    cell(row, seat.name + (seat.me ? " (moi)" : ""));
    cell(row, stateText(seat), "state state-" + seat.state);
    cell(row, String(seat.phones));
    cell(row, seat.companies.join(", "));
    seats.appendChild(row);
    if (seat.me) {
      $("my-state").textContent = stateText(seat);
      $("my-state").className = "state state-" + seat.state;
      $("pause").hidden = seat.state === "paused";
      $("resume").hidden = seat.state !== "paused";
    }
  }
  const queue = $("queue");
  queue.replaceChildren();
  for (const line of board.queue) {
    const li = document.createElement("li");
    li.textContent = line.company + " : " + line.callers.length + " en attente, la plus longue "
      + Math.round(line.longest_ms / 1000) + " s";
    queue.appendChild(li);
  }
  if (board.queue.length === 0) {
    const li = document.createElement("li");
    li.textContent = "personne n'attend";
    queue.appendChild(li);
  }
}

function show(loggedIn, name) {
  $("login").hidden = loggedIn;
  $("board").hidden = !loggedIn;
  $("logout").hidden = !loggedIn;
  $("who").textContent = loggedIn ? name : "";
  if (loggedIn && !live) {
    live = new EventSource("/api/live");
    live.addEventListener("board", (e) => { board = JSON.parse(e.data); render(); });
    live.onerror = () => { if (live.readyState === EventSource.CLOSED) { live = null; start(); } };
  }
  if (!loggedIn && live) { live.close(); live = null; }
}

async function start() {
  const r = await api("/api/board");
  if (r.status === 200) { board = r.body; show(true, r.body.me); render(); } else { show(false); }
}

$("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await api("/api/login", { username: $("username").value, password: $("password").value });
  $("password").value = "";
  if (r.status === 200) { $("login-error").textContent = ""; start(); }
  else { $("login-error").textContent = (r.body && r.body.error) || "refusé"; }
});
$("logout").addEventListener("click", async () => { await api("/api/logout", {}); show(false); });
$("pause").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await api("/api/pause", { reason: $("reason").value });
  $("board-error").textContent = r.status === 200 ? "" : ((r.body && r.body.error) || "refusé");
  if (r.status === 200) { board = r.body; render(); }
});
$("resume").addEventListener("click", async () => {
  const r = await api("/api/resume", {});
  if (r.status === 200) { board = r.body; render(); }
});
setInterval(render, 1000);
start();
