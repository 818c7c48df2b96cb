// The messages inbox: the list across her companies (filters, search, older pages), one
// message's page (`#message-N`: the call's timeline, the recording, mark done, edit, the
// history of changes). Uses console.js's `$` and `api`. Every text from the server is set
// with textContent, never as HTML: names and notes are whatever callers and people typed.
"use strict";

const inboxCategories = { "urgent": "urgent", "normal": "normal", "low": "information", "spam": "indésirable" };
const inboxStatuses = { "new": "nouveau", "read": "lu", "done": "traité", "filed": "classé" };
let inboxNext = null;
let inboxLoadedMore = false;
let inboxOpen = null;

function inboxWhen(iso) {
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString("fr-FR", { dateStyle: "short", timeStyle: "short" });
}

function inboxCell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function inboxError(r) {
  const body = r.body || {};
  return (body.error || "refusé") + (body.field ? " (" + body.field + ")" : "");
}

function inboxQuery(before) {
  const q = new URLSearchParams();
  const set = (name, id) => { const v = $(id).value.trim(); if (v) q.set(name, v); };
  set("company", "f-company"); set("category", "f-category"); set("status", "f-status");
  set("from", "f-from"); set("to", "f-to"); set("q", "f-q");
  if (before) q.set("before", String(before));
  const text = q.toString();
  return "/api/messages" + (text ? "?" + text : "");
}

function inboxRow(m) {
  const tr = document.createElement("tr");
  tr.dataset.call = String(m.call);
  tr.className = "status-" + m.status;
  inboxCell(tr, inboxWhen(m.created_at));
  inboxCell(tr, m.company_name);
  const who = inboxCell(tr, "", "caller");
  const link = document.createElement("a");
  link.href = "#message-" + m.call;
  link.className = "who";
  link.textContent = m.caller_name || m.caller_display || "inconnu";
  who.appendChild(link);
  const number = document.createElement("span");
  number.className = "number";
  number.textContent = " " + m.caller;
  who.appendChild(number);
  inboxCell(tr, m.about || (m.recording ? "(message vocal)" : ""), "about");
  inboxCell(tr, inboxCategories[m.category] || m.category, "category");
  inboxCell(tr, inboxStatuses[m.status] || m.status, "status");
  return tr;
}

function inboxCompanies(companies) {
  const select = $("f-company");
  if (select.options.length > 1) return;
  for (const c of companies) {
    const o = document.createElement("option");
    o.value = c.id; o.textContent = c.name;
    select.appendChild(o);
  }
}

// The first page (more: the next one, added below).
async function inboxLoad(more) {
  const r = await api(inboxQuery(more ? inboxNext : null));
  if (r.status !== 200) { $("inbox-error").textContent = inboxError(r); return; }
  $("inbox-error").textContent = "";
  inboxCompanies(r.body.companies);
  const list = $("inbox-list");
  if (!more) list.replaceChildren();
  inboxLoadedMore = !!more;
  for (const m of r.body.messages) list.appendChild(inboxRow(m));
  inboxNext = r.body.next;
  $("inbox-more").hidden = inboxNext === null;
  $("inbox-empty").hidden = list.children.length > 0;
}

function inboxShowList() {
  inboxOpen = null;
  $("message-view").hidden = true;
  $("inbox").hidden = false;
}

function inboxText(id, text) { $(id).textContent = text == null ? "" : String(text); }

function inboxShowValue(v) {
  if (v === null || v === undefined || v === "") return "—";
  return typeof v === "string" ? v : JSON.stringify(v);
}

function inboxRenderMessage(d) {
  const m = d.message;
  inboxOpen = m.call;
  inboxText("mv-company", m.company_name);
  inboxText("mv-when", inboxWhen(m.created_at));
  inboxText("mv-caller-name", m.caller_name || "nom non noté");
  inboxText("mv-caller", m.caller + (m.caller_company ? " — " + m.caller_company : ""));
  inboxText("mv-caller-display", m.caller_display || "");
  inboxText("mv-about", m.about || (m.recording ? "(message vocal)" : "(rien d'écrit)"));
  inboxText("mv-callback", m.callback || m.caller);
  const exec = d.company.executives.find((e) => e.id === m.for_executive);
  inboxText("mv-for", exec ? exec.name : (m.for_executive || "—"));
  inboxText("mv-category", inboxCategories[m.category] || m.category);
  inboxText("mv-status", inboxStatuses[m.status] || m.status);
  const fields = $("mv-fields");
  fields.replaceChildren();
  for (const [name, value] of Object.entries(m.fields || {})) {
    const f = d.company.fields.find((x) => x.name === name);
    const li = document.createElement("li");
    li.textContent = (f ? f.label : name) + " : " + value;
    fields.appendChild(li);
  }
  const audio = $("mv-audio");
  if (m.recording) {
    const src = "/api/recordings/" + m.call;
    if (audio.getAttribute("src") !== src) audio.src = src;
    audio.hidden = false;
  } else {
    audio.removeAttribute("src");
    audio.hidden = true;
  }
  $("mv-done").textContent = m.status === "done" ? "Remettre à traiter" : "Marquer traité";
  $("mv-done").dataset.to = m.status === "done" ? "new" : "done";
  const timeline = $("mv-timeline");
  timeline.replaceChildren();
  for (const e of d.timeline) {
    const li = document.createElement("li");
    const details = e.data && Object.keys(e.data).length ? " " + JSON.stringify(e.data) : "";
    li.textContent = (e.at.slice(11, 19) || e.at) + " " + e.kind + details;
    timeline.appendChild(li);
  }
  const history = $("mv-history");
  history.replaceChildren();
  for (const c of d.history) {
    const li = document.createElement("li");
    const changes = Object.entries(c.what || {})
      .map(([k, v]) => k + " : " + inboxShowValue(v.from) + " → " + inboxShowValue(v.to));
    li.textContent = inboxWhen(c.at) + " — " + c.by + " : "
      + (changes.length ? changes.join(" ; ") : "enregistré sans changement");
    history.appendChild(li);
  }
  if (d.history.length === 0) {
    const li = document.createElement("li");
    li.textContent = "aucune";
    history.appendChild(li);
  }
  inboxFillEdit(d);
  $("inbox").hidden = true;
  $("message-view").hidden = false;
}

function inboxFillEdit(d) {
  const m = d.message;
  $("e-caller-name").value = m.caller_name || "";
  $("e-caller-company").value = m.caller_company || "";
  $("e-callback").value = m.callback || m.caller;
  $("e-about").value = m.about || "";
  $("e-category").value = m.category;
  const target = $("e-for");
  target.replaceChildren();
  const none = document.createElement("option");
  none.value = ""; none.textContent = "—";
  target.appendChild(none);
  for (const e of d.company.executives) {
    const o = document.createElement("option");
    o.value = e.id; o.textContent = e.name;
    target.appendChild(o);
  }
  target.value = m.for_executive || "";
  const fields = $("e-fields");
  fields.replaceChildren();
  for (const f of d.company.fields) {
    const label = document.createElement("label");
    label.textContent = f.label + (f.required ? " *" : "") + " ";
    const input = document.createElement("input");
    input.dataset.field = f.name;
    input.maxLength = 500;
    input.required = f.required;
    input.value = (m.fields && m.fields[f.name]) || "";
    label.appendChild(input);
    fields.appendChild(label);
  }
}

async function inboxOpenMessage(call) {
  const r = await api("/api/messages/" + call);
  if (r.status !== 200) {
    inboxShowList();
    $("inbox-error").textContent = inboxError(r);
    return;
  }
  $("mv-result").textContent = "";
  inboxRenderMessage(r.body);
}

// `#message-N` opens a message; anything else shows the list.
function inboxRoute() {
  const found = /^#message-([0-9]+)$/.exec(location.hash);
  if (found) { inboxOpenMessage(found[1]); } else { inboxShowList(); inboxLoad(false); }
}

$("inbox-filters").addEventListener("submit", (e) => { e.preventDefault(); inboxLoad(false); });
$("inbox-more").addEventListener("click", () => inboxLoad(true));
$("mv-back").addEventListener("click", (e) => { e.preventDefault(); location.hash = ""; });
window.addEventListener("hashchange", inboxRoute);
$("mv-done").addEventListener("click", async () => {
  if (inboxOpen === null) return;
  const r = await api("/api/messages/" + inboxOpen + "/status", { status: $("mv-done").dataset.to });
  if (r.status === 200) { inboxRenderMessage(r.body); $("mv-result").textContent = ""; }
  else { $("mv-result").textContent = inboxError(r); }
});
$("mv-edit").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (inboxOpen === null) return;
  const fields = {};
  for (const input of document.querySelectorAll("#e-fields input")) fields[input.dataset.field] = input.value;
  const call = inboxOpen;
  const r = await api("/api/messages/" + call, {
    caller_name: $("e-caller-name").value, caller_company: $("e-caller-company").value,
    callback: $("e-callback").value, about: $("e-about").value,
    for_executive: $("e-for").value || null, category: $("e-category").value, fields
  });
  if (r.status === 200) { await inboxOpenMessage(call); $("mv-result").textContent = "Message enregistré."; }
  else { $("mv-result").textContent = inboxError(r); }
});

// The inbox starts once she is logged in (the board shows), and its first page is read
// again every 30 s while it is on screen.
new MutationObserver(() => { if (!$("board").hidden) inboxRoute(); })
  .observe($("board"), { attributes: true, attributeFilter: ["hidden"] });
setInterval(() => {
  if (!$("board").hidden && !$("inbox").hidden && !inboxLoadedMore && !document.hidden) inboxLoad(false);
}, 30000);
