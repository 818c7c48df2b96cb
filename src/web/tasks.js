// Follow-ups: each company's task list (overdue first), a task made by hand, a CSV of
// unpaid invoices imported (all or nothing: every bad line is listed), a task's status,
// outcome and attempts. Also the "call this caller back" button on a message's page and
// the month's billing report. Uses console.js's `$` and `api`. Every text from the
// server is set with textContent, never as HTML.
"use strict";

const taskKinds = { "callback": "rappel", "invoice": "relance facture", "quote": "suivi devis", "other": "autre" };
const taskStatuses = { "open": "à faire", "in_progress": "en cours", "done": "fait", "abandoned": "abandonné" };
const taskResults = { "reached": "joint", "no_answer": "pas de réponse", "busy": "occupé",
  "voicemail": "message laissé", "wrong_number": "faux numéro", "written": "écrit", "other": "autre" };
let taskOpen = null;

function taskError(r) {
  const body = r.body || {};
  return (body.error || "refusé") + (body.field ? " (" + body.field + ")" : "");
}

function taskCell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function taskOptions(select, entries, keep) {
  const before = select.value;
  select.replaceChildren();
  for (const [value, text] of entries) {
    const o = document.createElement("option");
    o.value = value; o.textContent = text;
    select.appendChild(o);
  }
  if (keep && entries.some(([v]) => v === before)) select.value = before;
}

async function taskCompanies() {
  const r = await api("/api/tasks");
  if (r.status !== 200) return;
  const entries = r.body.companies.map((c) => [c.id, c.name]);
  taskOptions($("t-company"), entries, true);
  taskOptions($("r-company"), entries, true);
}

async function taskLoad() {
  const company = $("t-company").value;
  if (!company) return;
  const all = $("t-all").checked ? "&all=1" : "";
  const r = await api("/api/tasks?company=" + encodeURIComponent(company) + all);
  if (r.status !== 200) { $("t-error").textContent = taskError(r); return; }
  $("t-error").textContent = "";
  taskOptions($("tn-assignee"), [["", "n'importe qui"]].concat(r.body.secretaries.map((s) => [s, s])), true);
  const list = $("t-list");
  list.replaceChildren();
  for (const t of r.body.tasks) {
    const tr = document.createElement("tr");
    tr.dataset.task = String(t.id);
    tr.className = "task-" + t.status + (t.overdue ? " overdue" : "");
    taskCell(tr, t.due || "—", "due");
    taskCell(tr, taskKinds[t.kind] || t.kind);
    const who = taskCell(tr, "", "customer");
    const link = document.createElement("a");
    link.href = "#task-" + t.id;
    link.textContent = t.customer || t.phone || "—";
    who.appendChild(link);
    taskCell(tr, t.phone || "");
    taskCell(tr, t.invoice ? t.invoice + " · " + t.amount : (t.amount || ""));
    taskCell(tr, t.assignee || "n'importe qui");
    taskCell(tr, (taskStatuses[t.status] || t.status) + (t.overdue ? " (en retard)" : ""), "status");
    taskCell(tr, t.attempts);
    list.appendChild(tr);
  }
  $("t-empty").hidden = r.body.tasks.length > 0;
}

function taskRender(d) {
  const t = d.task;
  taskOpen = t.id;
  $("tv-title").textContent = (taskKinds[t.kind] || t.kind) + " — " + (t.customer || t.phone || "");
  const facts = [];
  if (t.phone) facts.push("Tél. " + t.phone);
  if (t.email) facts.push(t.email);
  if (t.invoice) facts.push("Facture " + t.invoice);
  if (t.amount) facts.push("Montant " + t.amount);
  if (t.due) facts.push("Échéance " + t.due + (t.overdue ? " (en retard)" : ""));
  $("tv-facts").textContent = facts.join(" · ");
  $("tv-notes").textContent = t.notes || "";
  $("tv-status").value = t.status;
  $("tv-outcome").value = t.outcome || "";
  const attempts = $("tv-attempts");
  attempts.replaceChildren();
  for (const a of d.attempts) {
    const li = document.createElement("li");
    const when = new Date(a.at);
    li.textContent = (isNaN(when) ? a.at : when.toLocaleString("fr-FR", { dateStyle: "short", timeStyle: "short" }))
      + " — " + a.by + " : "
      + (taskResults[a.result] || a.result) + (a.note ? " — " + a.note : "");
    attempts.appendChild(li);
  }
  $("task-view").hidden = false;
}

async function taskOpenOne(id) {
  const r = await api("/api/tasks/" + id);
  if (r.status !== 200) { $("t-error").textContent = taskError(r); $("task-view").hidden = true; return; }
  $("tv-result").textContent = "";
  taskRender(r.body);
}

function taskRoute() {
  const found = /^#task-([0-9]+)$/.exec(location.hash);
  if (found) { taskOpenOne(found[1]); } else { taskOpen = null; $("task-view").hidden = true; }
}

$("t-company").addEventListener("change", taskLoad);
$("t-all").addEventListener("change", taskLoad);
$("task-new").addEventListener("submit", async (e) => {
  e.preventDefault();
  const value = (id) => $(id).value;
  const r = await api("/api/tasks", {
    company: $("t-company").value, kind: value("tn-kind"), customer: value("tn-customer"),
    phone: value("tn-phone"), email: value("tn-email"), amount: value("tn-amount"),
    invoice: value("tn-invoice"), due: value("tn-due"), assignee: value("tn-assignee"),
    notes: value("tn-notes")
  });
  if (r.status === 201) { $("task-new").reset(); $("tn-result").textContent = "Tâche créée."; taskLoad(); }
  else { $("tn-result").textContent = taskError(r); }
});
$("task-import").addEventListener("submit", async (e) => {
  e.preventDefault();
  const file = $("ti-file").files[0];
  if (!file) return;
  const problems = $("ti-problems");
  problems.replaceChildren();
  const response = await fetch("/api/tasks/import?company=" + encodeURIComponent($("t-company").value), {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "text/csv" }, body: file
  });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (response.status === 201) {
    $("ti-result").textContent = body.imported + " tâches importées.";
    taskLoad();
    return;
  }
  $("ti-result").textContent = (body && body.error) || "import refusé";
  for (const p of (body && body.problems) || []) {
    const li = document.createElement("li");
    li.textContent = "ligne " + p.line + (p.field ? " (" + p.field + ")" : "") + " : " + p.message;
    problems.appendChild(li);
  }
});
$("tv-save").addEventListener("click", async () => {
  if (taskOpen === null) return;
  const r = await api("/api/tasks/" + taskOpen, { status: $("tv-status").value, outcome: $("tv-outcome").value });
  if (r.status === 200) { taskRender(r.body); $("tv-result").textContent = "Enregistré."; taskLoad(); }
  else { $("tv-result").textContent = taskError(r); }
});
// "Call": the server rings her phone, then the customer, presenting the company's number.
$("tv-call").addEventListener("click", async () => {
  if (taskOpen === null) return;
  const r = await api("/api/tasks/" + taskOpen + "/call", {});
  $("tv-result").textContent = r.status === 202
    ? "Votre téléphone sonne : décrochez, le client est appelé ensuite." : taskError(r);
});
$("tv-attempt").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (taskOpen === null) return;
  const r = await api("/api/tasks/" + taskOpen + "/attempts", { result: $("ta-result").value, note: $("ta-note").value });
  if (r.status === 201) { $("ta-note").value = ""; taskRender(r.body); taskLoad(); }
  else { $("tv-result").textContent = taskError(r); }
});

// "Call this caller back", on a message's page: a callback task for its company, linked
// to the message.
$("mv-callback-task").addEventListener("click", async () => {
  const found = /^#message-([0-9]+)$/.exec(location.hash);
  if (!found) return;
  const m = await api("/api/messages/" + found[1]);
  if (m.status !== 200) { $("mv-result").textContent = taskError(m); return; }
  const msg = m.body.message;
  const r = await api("/api/tasks", {
    company: msg.company, call: msg.call, kind: "callback",
    customer: msg.caller_name || "", phone: msg.callback || msg.caller, notes: msg.about || ""
  });
  $("mv-result").textContent = r.status === 201 ? "Tâche de rappel créée." : taskError(r);
  if (r.status === 201 && $("t-company").value === msg.company) taskLoad();
});

// The month's billing report.
$("report-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const q = "company=" + encodeURIComponent($("r-company").value) + "&month=" + encodeURIComponent($("r-month").value);
  const r = await api("/api/report?" + q);
  const rows = $("r-rows");
  rows.replaceChildren();
  if (r.status !== 200) { $("r-error").textContent = taskError(r); return; }
  $("r-error").textContent = "";
  const add = (label, value) => {
    const tr = document.createElement("tr");
    taskCell(tr, label); taskCell(tr, value);
    rows.appendChild(tr);
  };
  add("Appels reçus", r.body.calls);
  add("Appels pris", r.body.answered);
  for (const [k, v] of Object.entries(r.body.by_outcome)) add("Issue : " + k, v);
  for (const [k, v] of Object.entries(r.body.by_category)) add("Catégorie : " + k, v);
  add("Minutes des secrétaires", r.body.secretary_minutes);
  add("Messages", r.body.messages);
  add("Rendez-vous", r.body.appointments === null ? "—" : r.body.appointments);
  add("Tâches faites", r.body.tasks_done);
  $("r-csv").href = "/api/report?" + q + "&format=csv";
  $("r-csv").hidden = false;
});

window.addEventListener("hashchange", taskRoute);
new MutationObserver(async () => {
  if ($("board").hidden) return;
  await taskCompanies();
  await taskLoad();
  taskRoute();
}).observe($("board"), { attributes: true, attributeFilter: ["hidden"] });
