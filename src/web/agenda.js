// The agenda view: an executive's day (appointments, then the free slots as buttons), a
// booking form for the slot chosen, "move" and "cancel" on each appointment ("done" once
// confirmed), and the call's card button that books for the caller (linked to the call
// and its message).
// Uses console.js's `$`, `api` and `board`. Text from the server is set with textContent.
"use strict";

const agendaStatuses = { "proposed": "à confirmer", "confirmed": "confirmé",
                         "cancelled": "annulé", "done": "passé" };
let agendaData = null;
let agendaSlot = null;
let agendaCall = null;
let agendaMoving = null;
// Answers can cross: only the latest request's is shown.
let agendaSeq = 0;

function agendaError(r) {
  const body = r.body || {};
  return (body.error || "refusé") + (body.field ? " (" + body.field + ")" : "");
}

// The executive chosen: "company/executive".
function agendaTarget() {
  const [company, executive] = ($("a-executive").value || "/").split("/");
  return { company, executive };
}

async function agendaLoad() {
  const t = agendaTarget();
  const q = new URLSearchParams();
  if (t.company) q.set("company", t.company);
  if (t.executive) q.set("executive", t.executive);
  if ($("a-day").value) q.set("day", $("a-day").value);
  const seq = ++agendaSeq;
  const r = await api("/api/agenda?" + q.toString());
  if (seq !== agendaSeq) return;
  if (r.status !== 200) { $("a-result").textContent = agendaError(r); return; }
  agendaData = r.body;
  agendaRender();
}

function agendaRender() {
  const d = agendaData;
  const select = $("a-executive");
  const chosen = select.value;
  select.replaceChildren();
  for (const c of d.companies) {
    for (const e of c.executives) {
      const o = document.createElement("option");
      o.value = c.id + "/" + e.id;
      o.textContent = e.name + " — " + c.name;
      select.appendChild(o);
    }
  }
  if (chosen) select.value = chosen;
  $("agenda").hidden = d.companies.length === 0;
  if (!d.company) return;
  if (!$("a-day").value) $("a-day").value = d.day;
  const executive = agendaTarget().executive || (d.companies[0] && d.companies[0].executives[0].id);
  const list = $("a-appointments");
  list.replaceChildren();
  for (const a of d.appointments) {
    if (a.executive !== executive) continue;
    const li = document.createElement("li");
    li.className = "appointment status-" + a.status;
    li.dataset.uid = a.uid;
    const when = document.createElement("strong");
    when.textContent = a.starts_local.slice(11) + "–" + a.ends_local.slice(11);
    li.appendChild(when);
    li.appendChild(document.createTextNode(" " + a.client.name + " · "
      + (agendaStatuses[a.status] || a.status)
      + (a.client.reason ? " · " + a.client.reason : "")));
    if (a.status === "proposed" || a.status === "confirmed") {
      const move = document.createElement("button");
      move.type = "button"; move.className = "a-move"; move.textContent = "Déplacer";
      move.addEventListener("click", () => {
        agendaMoving = a.uid;
        $("a-result").textContent = "Choisissez le nouveau créneau de " + a.client.name + ".";
      });
      const cancel = document.createElement("button");
      cancel.type = "button"; cancel.className = "a-cancel"; cancel.textContent = "Annuler";
      cancel.addEventListener("click", async () => {
        const why = prompt("Motif de l'annulation ?") || "";
        const r = await api("/api/agenda/" + encodeURIComponent(a.uid) + "/cancel", { why });
        $("a-result").textContent = r.status === 200 ? "Rendez-vous annulé." : agendaError(r);
        agendaLoad();
      });
      li.append(" ", move, " ", cancel);
    }
    if (a.status === "confirmed") {
      // The appointment took place: the report counts it, the calendar keeps it.
      const done = document.createElement("button");
      done.type = "button"; done.className = "a-done"; done.textContent = "Passé";
      done.addEventListener("click", async () => {
        const r = await api("/api/agenda/" + encodeURIComponent(a.uid) + "/done", {});
        $("a-result").textContent = r.status === 200 ? "Rendez-vous marqué passé." : agendaError(r);
        agendaLoad();
      });
      li.append(" ", done);
    }
    list.appendChild(li);
  }
  if (!list.children.length) {
    const li = document.createElement("li");
    li.textContent = "Aucun rendez-vous.";
    list.appendChild(li);
  }
  const free = $("a-free");
  free.replaceChildren();
  for (const s of (d.free[executive] || [])) {
    const b = document.createElement("button");
    b.type = "button"; b.className = "a-slot"; b.textContent = s.local;
    b.dataset.starts = s.starts;
    b.addEventListener("click", () => agendaChoose(s));
    free.appendChild(b);
  }
  if (!free.children.length) free.textContent = "Aucun créneau libre ce jour.";
}

async function agendaChoose(slot) {
  if (agendaMoving) {
    const uid = agendaMoving;
    agendaMoving = null;
    const r = await api("/api/agenda/" + encodeURIComponent(uid) + "/move", { starts: slot.starts });
    $("a-result").textContent = r.status === 200 ? "Rendez-vous déplacé à " + slot.local + "." : agendaError(r);
    agendaLoad();
    return;
  }
  agendaSlot = slot;
  $("a-slot").textContent = $("a-day").value + " " + slot.local;
  $("a-book").hidden = false;
  $("a-name").focus();
}

$("a-executive").addEventListener("change", () => { $("a-book").hidden = true; agendaLoad(); });
$("a-day").addEventListener("change", () => { $("a-book").hidden = true; agendaLoad(); });
$("a-book").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!agendaSlot) return;
  const t = agendaTarget();
  const body = { company: t.company, executive: t.executive, starts: agendaSlot.starts,
    client: { name: $("a-name").value, phone: $("a-phone").value, email: $("a-email").value,
              address: $("a-address").value, reason: $("a-reason").value } };
  if (agendaCall !== null) body.call = agendaCall;
  const r = await api("/api/agenda", body);
  if (r.status === 201) {
    $("a-result").textContent = "Rendez-vous pris : " + r.body.appointment.starts_local
      + (r.body.appointment.status === "proposed" ? " (à confirmer par " + r.body.executive_name + ")" : "");
    $("a-book").hidden = true;
    agendaCall = null;
    for (const id of ["a-name", "a-phone", "a-email", "a-address", "a-reason"]) $(id).value = "";
  } else {
    $("a-result").textContent = agendaError(r);
  }
  agendaLoad();
});

// From the call's card: the caller's company, name and number prefilled, linked to the call.
$("card-agenda").addEventListener("click", () => {
  const card = board && board.card;
  if (!card) return;
  agendaCall = card.call.id;
  const option = [...$("a-executive").options].find((o) => o.value.startsWith(card.company.id + "/"));
  if (option) $("a-executive").value = option.value;
  $("a-name").value = card.contact.name || card.call.caller_name || "";
  $("a-phone").value = card.call.caller;
  $("agenda").scrollIntoView();
  agendaLoad();
});

// What the server pushes when an executive confirms or cancels an appointment she booked.
function agendaNotice(a) {
  const words = a.status === "confirmed" ? "confirmé" : a.status === "cancelled" ? "annulé" : a.status;
  $("agenda-notice").textContent = "Rendez-vous de " + a.client.name + " (" + a.starts_local + ") "
    + words + " par le dirigeant" + (a.cancel_reason ? " : " + a.cancel_reason : "") + ".";
  agendaLoad();
}

new MutationObserver(() => { if (!$("board").hidden) agendaLoad(); })
  .observe($("board"), { attributes: true, attributeFilter: ["hidden"] });
