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
  renderCard();
  renderTransfer();
  renderSpam();
  renderBlockedCompanies();
  renderLines();
}

let cardCall = null;

function item(list, text) {
  const li = document.createElement("li");
  li.textContent = text;
  list.appendChild(li);
}

// The call's card: filled once per call (the form keeps what she types).
// Each executive: asked not to be disturbed (until when), else reachable now by their
// hours or not. Drawn at every render: a do-not-disturb may start or end during the call.
let dndRefreshedFor = null;
function renderExecutives(card) {
  const executives = $("card-executives");
  executives.replaceChildren();
  for (const e of card.executives) {
    const state = e.dnd ? " : ne pas déranger jusqu'au " + e.dnd.until_local
      : e.reachable_now ? " : joignable" : " : pas maintenant";
    item(executives, e.name + state);
    // It ends by itself: read the board again once its time is over.
    if (e.dnd && e.dnd.until_ms <= Date.now() && dndRefreshedFor !== e.dnd.until_ms) {
      dndRefreshedFor = e.dnd.until_ms;
      start();
    }
  }
}

function renderCard() {
  const card = board.card;
  $("call-card").hidden = !card;
  if (card) renderExecutives(card);
  if (!card || card.call.id === cardCall) return;
  cardCall = card.call.id;
  $("card-company").textContent = card.company.name;
  $("card-answer-as").textContent = "« " + card.company.answer_as + " »";
  $("card-instructions").textContent = card.company.instructions || card.company.notes || "";
  // The contact lists' name for this number; else the name the caller's phone sent.
  const name = card.contact.name || card.call.caller_name;
  const lists = card.contact.lists.length ? " (" + card.contact.lists.join(", ") + ")" : "";
  $("card-caller").textContent = (name ? name + " — " : "inconnu — ") + card.call.caller + lists;
  $("card-again").hidden = !card.calls_again;
  const history = $("card-history");
  history.replaceChildren();
  for (const h of card.history) {
    item(history, h.started_at.slice(0, 16).replace("T", " ") + " — " + (h.outcome || "en cours")
      + (h.note ? " — " + h.note : ""));
  }
  if (card.history.length === 0) item(history, "aucun");
  $("m-caller-name").value = name || "";
  $("m-caller-company").value = "";
  $("m-callback").value = card.call.caller;
  $("m-about").value = "";
  const target = $("m-for");
  target.replaceChildren();
  const none = document.createElement("option");
  none.value = ""; none.textContent = "—";
  target.appendChild(none);
  for (const e of card.executives) {
    const o = document.createElement("option");
    o.value = e.id; o.textContent = e.name;
    target.appendChild(o);
  }
  const fields = $("m-fields");
  fields.replaceChildren();
  for (const f of card.fields) {
    const label = document.createElement("label");
    label.textContent = f.label + (f.required ? " *" : "") + " ";
    const input = document.createElement("input");
    input.dataset.field = f.name;
    input.maxLength = 500;
    input.required = f.required;
    label.appendChild(input);
    fields.appendChild(label);
  }
  $("message-result").textContent = "";
}

// ---- Transfer: a button per executive reachable now; how it goes comes with the card.
const transferLabels = { "ringing": "ça sonne…", "screening": "annonce en cours…",
                         "connected": "connecté", "refused": "refusé par le dirigeant",
                         "failed": "pas de réponse" };
let transferCall = null;
// Why her last press was refused, until she presses again.
let transferRefused = "";

function renderTransfer() {
  const card = board.card;
  if (!card) { transferCall = null; return; }
  const buttons = $("transfer-buttons");
  if (card.call.id !== transferCall) {
    transferCall = card.call.id;
    transferRefused = "";
    buttons.replaceChildren();
    for (const e of card.executives) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.executive = e.id;
      b.textContent = "Transférer à " + e.name + (e.reachable_now ? "" : " (hors horaires)");
      buttons.appendChild(b);
    }
  }
  const me = board.seats.find((s) => s.me);
  const onIt = me && me.state === "on-call" && me.call === card.call.id;
  const t = card.transfer;
  const going = t && (t.state === "ringing" || t.state === "screening");
  for (const b of buttons.querySelectorAll("button")) {
    const e = card.executives.find((x) => x.id === b.dataset.executive);
    b.hidden = !(e && e.transferable);
    b.disabled = !onIt || going;
  }
  $("transfer-result").textContent = transferRefused
    || (t ? "Transfert vers " + t.to + " : " + (transferLabels[t.state] || t.state) : "");
}

$("transfer-buttons").addEventListener("click", async (e) => {
  const b = e.target.closest("button");
  if (!b || b.disabled) return;
  b.disabled = true;
  const r = await api("/api/calls/" + transferCall + "/transfer", { executive: b.dataset.executive });
  transferRefused = r.status === 200 ? ""
    : "Transfert refusé : " + ((r.body && r.body.error) || r.status);
  renderTransfer();
});

function show(loggedIn, name) {
  $("login").hidden = loggedIn;
  $("board").hidden = !loggedIn;
  $("logout").hidden = !loggedIn;
  $("who").textContent = loggedIn ? name : "";
  if (loggedIn && !live) connect();
  if (!loggedIn && live) { const socket = live; live = null; socket.close(); }
}

// One WebSocket per page: the server sends the board at once and at every change. When
// it closes (logout elsewhere, server restart), the page asks again after a pause.
function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const socket = new WebSocket(scheme + location.host + "/api/ws");
  live = socket;
  socket.onmessage = (e) => {
    const message = JSON.parse(e.data);
    if (message.type === "board") { board = message.board; render(); }
    else if (message.type === "appointment" && typeof agendaNotice === "function") agendaNotice(message.appointment);
    else if (window.phoneMessage) window.phoneMessage(message);
  };
  socket.onopen = () => { if (window.phoneSocket) window.phoneSocket(socket); };
  socket.onclose = () => {
    if (live !== socket) return;
    live = null;
    setTimeout(start, 2000);
  };
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
$("message").addEventListener("submit", async (e) => {
  e.preventDefault();
  const fields = {};
  for (const input of document.querySelectorAll("#m-fields input")) {
    fields[input.dataset.field] = input.value;
  }
  const r = await api("/api/messages/" + cardCall, {
    caller_name: $("m-caller-name").value, caller_company: $("m-caller-company").value,
    callback: $("m-callback").value, about: $("m-about").value,
    for_executive: $("m-for").value || null, category: $("m-category").value, fields
  });
  $("message-result").textContent = r.status === 200 ? "Message enregistré."
    : ((r.body && r.body.error) || "refusé") + (r.body && r.body.field ? " (" + r.body.field + ")" : "");
  if (r.status === 200) { board = r.body; render(); }
});

// ---- The block list (spam): the card's button, and each company's list with "remove".

async function apiDelete(path) {
  const response = await fetch(path, { method: "DELETE", credentials: "same-origin" });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

function refusal(r) {
  return ((r.body && r.body.error) || "refusé") + (r.body && r.body.field ? " (" + r.body.field + ")" : "");
}

// Blocks a caller's number for a company (the card's button; a message's too).
async function blockCaller(company, number, reason) {
  const r = await api("/api/blocked", { company, number, reason });
  if (r.status === 200 || r.status === 201) {
    const b = await api("/api/board");
    if (b.status === 200) { board = b.body; render(); }
    loadBlocked();
  }
  return r;
}

let spamCall = null;

// What the card says of an unwanted caller: blocked (who, when, why) or telemarketing.
function renderSpam() {
  const card = board.card;
  if (!card) return;
  if (card.call.id !== spamCall) {
    spamCall = card.call.id;
    $("spam-reason").value = "indésirable";
    $("spam-result").textContent = "";
  }
  const spam = card.spam || {};
  let text = "";
  if (spam.blocked) {
    text = "Numéro bloqué pour " + card.company.name + " depuis le "
      + spam.blocked.added_at.slice(0, 16).replace("T", " ") + " par " + spam.blocked.added_by
      + " : " + spam.blocked.reason;
  } else if (spam.telemarketing) {
    text = "Démarchage : numéro d'une plage réservée au démarchage téléphonique (ARCEP)";
  }
  $("card-spam").textContent = text;
  $("card-spam").hidden = !text;
  $("spam-form").hidden = !!spam.blocked;
}

$("spam-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const card = board && board.card;
  if (!card) return;
  const r = await blockCaller(card.company.id, card.call.caller, $("spam-reason").value);
  $("spam-result").textContent = (r.status === 200 || r.status === 201) ? "Numéro bloqué." : refusal(r);
});

let blockedChoices = "";

// The companies she serves, in the list's selector (kept when they do not change).
function renderBlockedCompanies() {
  const me = board.seats.find((s) => s.me);
  const companies = me ? me.companies : [];
  if (companies.join(",") === blockedChoices) return;
  blockedChoices = companies.join(",");
  const select = $("blocked-company");
  select.replaceChildren();
  for (const c of companies) {
    const o = document.createElement("option");
    o.value = c; o.textContent = c;
    select.appendChild(o);
  }
  $("blocked-view").hidden = companies.length === 0;
  loadBlocked();
}

async function loadBlocked() {
  const company = $("blocked-company").value;
  if (!company) return;
  const r = await api("/api/blocked?company=" + encodeURIComponent(company));
  const rows = $("blocked-rows");
  rows.replaceChildren();
  if (r.status !== 200) { $("blocked-result").textContent = refusal(r); return; }
  for (const b of r.body.blocked) {
    const row = document.createElement("tr");
    cell(row, b.number);
    cell(row, b.added_at.slice(0, 16).replace("T", " "));
    cell(row, b.added_by);
    cell(row, b.reason);
    const td = document.createElement("td");
    const remove = document.createElement("button");
    remove.textContent = "Retirer";
    remove.dataset.id = String(b.id);
    remove.addEventListener("click", async () => {
      const d = await apiDelete("/api/blocked/" + b.id);
      $("blocked-result").textContent = d.status === 200 ? "Blocage retiré : " + b.number : refusal(d);
      loadBlocked();
    });
    td.appendChild(remove);
    row.appendChild(td);
    rows.appendChild(row);
  }
  if (r.body.blocked.length === 0) {
    const row = document.createElement("tr");
    cell(row, "aucun numéro bloqué");
    rows.appendChild(row);
  }
}

$("blocked-company").addEventListener("change", loadBlocked);
// Blocks made elsewhere (a colleague, the command line) appear within a few seconds.
// ---- A company's line: open or closed now (by its hours, or by hand until a time), and
// the switch. Each company's row is built once, so that the form keeps what she types;
// only its state text follows the board.
const lineRows = new Map();
let lineRefreshedFor = 0;

async function lineApi(method, company, body) {
  const init = { method, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  const response = await fetch("/api/companies/" + encodeURIComponent(company) + "/line", init);
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

function lineText(line) {
  const o = line.override;
  if (o) {
    return (o.state === "closed" ? "fermée" : "ouverte") + " jusqu'au " + o.until_local
      + " (" + line.timezone + ") — " + o.reason + " — par " + o.set_by;
  }
  return (line.open ? "ouverte" : "fermée") + " selon les horaires (" + line.hours.why + ")";
}

function showLineState(element, line) {
  element.textContent = lineText(line);
  element.className = "line-state " + (line.open ? "line-open" : "line-closed");
}

// An hour after the company's local time, as the time field wants it (a suggestion).
function anHourLater(localTime) {
  const at = new Date(localTime.replace(" ", "T") + ":00Z");
  return new Date(at.getTime() + 3600000).toISOString().slice(0, 16);
}

function lineRow(line) {
  const li = document.createElement("li");
  li.dataset.company = line.company;
  const name = document.createElement("strong");
  name.textContent = line.name;
  const state = document.createElement("p");
  state.className = "line-state";
  const form = document.createElement("form");
  form.className = "line-switch";
  const choice = document.createElement("select");
  choice.name = "state";
  for (const [value, text] of [["closed", "Fermer"], ["open", "Ouvrir"]]) {
    const o = document.createElement("option");
    o.value = value; o.textContent = text;
    choice.appendChild(o);
  }
  const untilLabel = document.createElement("label");
  untilLabel.textContent = "jusqu'au (heure " + line.timezone + ")";
  const until = document.createElement("input");
  until.type = "datetime-local"; until.name = "until"; until.required = true;
  until.value = anHourLater(line.local_time);
  untilLabel.appendChild(until);
  const reason = document.createElement("input");
  reason.name = "reason"; reason.maxLength = 120; reason.required = true;
  reason.placeholder = "Raison (fermeture imprévue, équipe présente tard…)";
  const apply = document.createElement("button");
  apply.type = "submit"; apply.textContent = "Appliquer";
  const end = document.createElement("button");
  end.type = "button"; end.className = "line-end"; end.textContent = "Revenir aux horaires";
  const result = document.createElement("p");
  result.className = "error"; result.setAttribute("role", "alert");
  form.append(choice, untilLabel, reason, apply, end);
  li.append(name, state, form, result);
  const answered = (r) => {
    result.textContent = r.status === 200 ? ""
      : ((r.body && r.body.error) || "refusé") + (r.body && r.body.field ? " (" + r.body.field + ")" : "");
    if (r.status === 200) { updateLine(r.body); renderLines(); }
  };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    answered(await lineApi("POST", line.company,
      { state: choice.value, until: until.value, reason: reason.value }));
    if (!result.textContent) reason.value = "";
  });
  end.addEventListener("click", async () => answered(await lineApi("DELETE", line.company)));
  return { li, state, end };
}

function updateLine(line) {
  if (!board || !board.lines) return;
  board.lines = board.lines.map((l) => l.company === line.company ? line : l);
}

function renderLines() {
  const lines = (board && board.lines) || [];
  $("lines").hidden = lines.length === 0;
  const list = $("line-list");
  for (const line of lines) {
    let row = lineRows.get(line.company);
    if (!row) {
      row = lineRow(line);
      lineRows.set(line.company, row);
      list.appendChild(row.li);
    }
    showLineState(row.state, line);
    row.end.hidden = !line.override;
    // An override ends by itself: read the board again once its time is over.
    const until = line.override && line.override.until_ms;
    if (until && until <= Date.now() && lineRefreshedFor !== until) {
      lineRefreshedFor = until;
      start();
    }
  }
  // Companies no longer hers (another login on this page) lose their row.
  for (const [company, row] of lineRows) {
    if (!lines.some((l) => l.company === company)) { row.li.remove(); lineRows.delete(company); }
  }
  const card = board && board.card;
  $("card-line").hidden = !(card && card.line);
  if (card && card.line) showLineState($("card-line"), card.line);
}

setInterval(() => { if (board && !$("board").hidden) loadBlocked(); }, 5000);

setInterval(render, 1000);
start();
