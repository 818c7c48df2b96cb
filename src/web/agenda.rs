//! The agenda in the console: a secretary sees an executive's day (appointments and free
//! slots) for a company she serves, books an appointment (from the call's card, linked to
//! the call and its message, or from the agenda view), moves it or cancels it.
//!
//! The slots offered and the refusals are `agenda`'s (pure); the store's writer makes the
//! last check inside its transaction, so that of two secretaries booking the same slot at
//! the same moment one gets 201 and the other 409. Every change is a row of
//! `appointment_changes` (who, when, what, why).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use jiff::Timestamp;
use jiff::civil::Date;
use serde::Deserialize;
use serde_json::json;

use super::*;
use crate::agenda::{self, Agenda, BookingError, Client, Span, Status, stamp};
use crate::dialplan::ExecutiveId;
use crate::store::agenda::{AppointmentRow, Booking, Change, Notices};
use crate::store::{self, Record};

/// The agenda's console API (`/api/agenda…`).
pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/agenda.js", get(script))
        .route("/api/agenda", get(day).post(book))
        .route("/api/agenda/{uid}", get(one))
        .route("/api/agenda/{uid}/move", post(move_one))
        .route("/api/agenda/{uid}/cancel", post(cancel))
        .route("/api/agenda/{uid}/done", post(done))
}

/// The agenda view's script (its own file: `console.js` only opens it).
const SCRIPT: &str = include_str!("agenda.js");

async fn script() -> Response {
    security_headers("text/javascript; charset=utf-8", SCRIPT)
}

/// A uid as we make them (32 hex digits, `@permanence`): anything else is not ours.
fn valid_uid(uid: &str) -> bool {
    uid.len() <= 64
        && uid
            .strip_suffix("@permanence")
            .is_some_and(|h| h.len() == 32 && h.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A new uid: 128 bits from the operating system.
fn new_uid() -> Result<String, Refused> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| {
        refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "no randomness for a new appointment",
            None,
        )
    })?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{hex}@permanence"))
}

fn unprocessable(message: &str, field: &str) -> Refused {
    refused(StatusCode::UNPROCESSABLE_ENTITY, message, Some(field))
}

fn unavailable() -> Refused {
    refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "the records cannot be read or written now",
        None,
    )
}

/// A company she serves and one of its executives with an agenda.
struct Target {
    company: Arc<Company>,
    executive: ExecutiveId,
    name: String,
    agenda: Agenda,
}

impl Web {
    fn agenda_target(
        &self,
        username: &str,
        company: &str,
        executive: &str,
    ) -> Result<Target, Refused> {
        let company = self
            .company(company)
            .ok_or_else(|| unprocessable("no such company", "company"))?;
        if !self.serves(username, &company.id.0) {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "not a company you serve",
                Some("company"),
            ));
        }
        let id = ExecutiveId(executive.to_string());
        let found = company
            .executives
            .get(&id)
            .ok_or_else(|| unprocessable("no such executive in this company", "executive"))?;
        let agenda = found
            .agenda
            .clone()
            .ok_or_else(|| unprocessable("this executive has no agenda", "executive"))?;
        let name = found.name.clone();
        Ok(Target {
            company,
            executive: id,
            name,
            agenda,
        })
    }

    /// Who hears of a change to an appointment of `executive` at `company`: their
    /// address from the plan in force, and what the e-mails need of the plan.
    pub(super) fn notices(&self, company: &str, executive: &str) -> Notices {
        let Some(c) = self.company(company) else {
            return Notices::default();
        };
        use crate::delivery::rules::{Channel, Payload, webhooks_for};
        let id = ExecutiveId(executive.to_string());
        let payload = Payload::new(&c, &id);
        let found = c.executives.get(&id);
        // Told by webhook when their rules send anything by webhook.
        let by_webhook =
            found.is_some_and(|e| e.deliver.iter().any(|r| r.to.contains(&Channel::Webhook)));
        let webhooks = if by_webhook {
            webhooks_for(&c.id.0, &self.calls.webhooks)
                .map(|h| h.url.clone())
                .collect()
        } else {
            Vec::new()
        };
        Notices {
            executive_email: found
                .and_then(|e| e.email.as_ref())
                .map(|a| a.as_str().to_string()),
            webhooks,
            payload: serde_json::to_string(&payload).unwrap_or_else(|_| "{}".into()),
        }
    }

    /// Reads the records in the blocking pool.
    async fn agenda_read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&std::path::Path) -> Result<T, store::StoreError> + Send + 'static,
    ) -> Result<T, Refused> {
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || read(&db)).await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "agenda: records not read");
                Err(unavailable())
            }
            Err(_) => Err(unavailable()),
        }
    }

    /// The executive's appointments that hold time around `span` (a day either side:
    /// more than any buffer).
    async fn busy_around(&self, t: &Target, span: Span) -> Result<Vec<(String, Span)>, Refused> {
        let day = jiff::SignedDuration::from_hours(24);
        let from = stamp(span.starts.checked_sub(day).unwrap_or(span.starts));
        let to = stamp(span.ends.checked_add(day).unwrap_or(span.ends));
        let (company, executive) = (t.company.id.0.clone(), t.executive.0.clone());
        let rows = self
            .agenda_read(move |db| {
                store::agenda::appointments(db, Some(&company), Some(&executive), &from, &to)
            })
            .await?;
        Ok(rows
            .into_iter()
            .filter(|a| a.status().is_some_and(Status::holds_time))
            .filter_map(|a| a.span().map(|s| (a.uid, s)))
            .collect())
    }

    /// An appointment of a company she serves, or 404 (the same for another company's:
    /// she learns nothing of it).
    async fn appointment_of(&self, username: &str, uid: &str) -> Result<AppointmentRow, Refused> {
        let not_found = || refused(StatusCode::NOT_FOUND, "no such appointment", None);
        if !valid_uid(uid) {
            return Err(not_found());
        }
        let uid = uid.to_string();
        let row = self
            .agenda_read(move |db| store::agenda::appointment(db, &uid))
            .await?
            .ok_or_else(not_found)?;
        if !self.serves(username, &row.company) {
            return Err(not_found());
        }
        Ok(row)
    }

    /// After a write: on disk, then the appointment as it now stands.
    async fn written(&self, uid: &str) -> Result<Option<AppointmentRow>, Refused> {
        if !self.on_disk().await {
            return Err(unavailable());
        }
        let uid = uid.to_string();
        self.agenda_read(move |db| store::agenda::appointment(db, &uid))
            .await
    }
}

/// An appointment as the API shows it, with its local times.
pub(super) fn appointment_json(a: &AppointmentRow, tz: &jiff::tz::TimeZone) -> serde_json::Value {
    let local = |t: &str| {
        t.parse::<Timestamp>()
            .map(|t| tz.to_datetime(t).strftime("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    json!({ "uid": a.uid, "company": a.company, "executive": a.executive,
            "starts_at": a.starts_at, "ends_at": a.ends_at,
            "starts_local": local(&a.starts_at), "ends_local": local(&a.ends_at),
            "status": a.status, "sequence": a.sequence, "call_id": a.call_id,
            "message_id": a.message_id, "client": a.client, "booked_by": a.booked_by,
            "booked_at": a.booked_at, "cancelled_by": a.cancelled_by,
            "cancelled_at": a.cancelled_at, "cancel_reason": a.cancel_reason })
}

fn slot_json(s: &Span, tz: &jiff::tz::TimeZone) -> serde_json::Value {
    json!({ "starts": stamp(s.starts), "ends": stamp(s.ends),
            "local": tz.to_datetime(s.starts).strftime("%H:%M").to_string() })
}

/// `?company=ID&executive=ID&day=YYYY-MM-DD`, each optional; any other parameter, or a
/// malformed one, is a 422 naming it.
struct DayQuery {
    company: Option<String>,
    executive: Option<String>,
    day: Option<Date>,
}

fn day_query(raw: Option<&str>) -> Result<DayQuery, Refused> {
    let mut q = DayQuery {
        company: None,
        executive: None,
        day: None,
    };
    let id_ok = |v: &str| {
        !v.is_empty()
            && v.len() <= 64
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    };
    for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "company" if id_ok(&value) => q.company = Some(value.into_owned()),
            "executive" if id_ok(&value) => q.executive = Some(value.into_owned()),
            "day" => {
                let day: Date = value
                    .parse()
                    .ok()
                    .filter(|d: &Date| (2000..=2100).contains(&d.year()))
                    .ok_or_else(|| unprocessable("expected a day as YYYY-MM-DD", "day"))?;
                q.day = Some(day);
            }
            "company" | "executive" => {
                return Err(unprocessable("expected an id", key.as_ref()));
            }
            _ => return Err(unprocessable("unknown parameter", "query")),
        }
    }
    Ok(q)
}

/// `GET /api/agenda[?company=&executive=&day=]`: the companies she serves with their
/// executives who have an agenda; for the company asked (else the first with one) and the
/// day asked (else today there), each such executive's appointments and free slots.
async fn day(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let q = day_query(query.as_deref())?;
    let served = web.companies_served(&me.username);
    let mut companies = Vec::new();
    for id in &served {
        let Some(c) = web.company(id) else { continue };
        let executives: Vec<serde_json::Value> = c
            .executives
            .iter()
            .filter_map(|(id, e)| {
                let a = e.agenda.as_ref()?;
                Some(json!({ "id": id.0, "name": e.name, "length": a.length,
                             "buffer": a.buffer, "needs_confirmation": a.needs_confirmation }))
            })
            .collect();
        if !executives.is_empty() {
            companies.push(
                json!({ "id": c.id.0, "name": c.name, "timezone": c.timezone_name,
                                   "executives": executives }),
            );
        }
    }
    let company_id = match &q.company {
        Some(c) => c.clone(),
        None => match companies.first().and_then(|c| c["id"].as_str()) {
            Some(c) => c.to_string(),
            None => {
                return Ok(json_response(
                    StatusCode::OK,
                    &json!({ "companies": companies, "company": null }),
                ));
            }
        },
    };
    let company = web
        .company(&company_id)
        .ok_or_else(|| unprocessable("no such company", "company"))?;
    if !web.serves(&me.username, &company.id.0) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "not a company you serve",
            Some("company"),
        ));
    }
    let tz = company.timezone.clone();
    let now = Timestamp::now();
    let date = q.day.unwrap_or_else(|| tz.to_datetime(now).date());
    let bound = |d: Date| {
        tz.to_ambiguous_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
            .compatible()
            .map_err(|_| unprocessable("not a day of this time zone", "day"))
    };
    let from = bound(date)?;
    let to = bound(
        date.tomorrow()
            .map_err(|_| unprocessable("expected a day as YYYY-MM-DD", "day"))?,
    )?;
    let (cid, exec) = (company.id.0.clone(), q.executive.clone());
    let (wide_from, wide_to) = (
        stamp(from - jiff::SignedDuration::from_hours(24)),
        stamp(to + jiff::SignedDuration::from_hours(24)),
    );
    let rows = web
        .agenda_read(move |db| {
            store::agenda::appointments(db, Some(&cid), exec.as_deref(), &wide_from, &wide_to)
        })
        .await?;
    let mut free = serde_json::Map::new();
    for (id, e) in &company.executives {
        if q.executive.as_ref().is_some_and(|x| *x != id.0) {
            continue;
        }
        let Some(a) = &e.agenda else { continue };
        let busy: Vec<Span> = rows
            .iter()
            .filter(|r| r.executive == id.0 && r.status().is_some_and(Status::holds_time))
            .filter_map(AppointmentRow::span)
            .collect();
        let slots = agenda::free_slots(a, &company.hours, &tz, date, &busy, now);
        free.insert(
            id.0.clone(),
            slots.iter().map(|s| slot_json(s, &tz)).collect(),
        );
    }
    let (from_s, to_s) = (stamp(from), stamp(to));
    let appointments: Vec<serde_json::Value> = rows
        .iter()
        .filter(|r| r.starts_at >= from_s && r.starts_at < to_s)
        .map(|r| appointment_json(r, &tz))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "companies": companies, "company": company.id.0, "timezone": company.timezone_name,
                 "day": date.to_string(), "appointments": appointments, "free": free }),
    ))
}

/// A booking as the console sends it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAppointment {
    company: String,
    executive: String,
    /// The slot's start, as `free` gave it.
    starts: String,
    /// The call it is booked from, if any.
    #[serde(default)]
    call: Option<i64>,
    client: Client,
}

fn instant(text: &str, field: &str) -> Result<Timestamp, Refused> {
    if text.len() > 40 {
        return Err(unprocessable(
            "expected a time such as 2026-12-07T08:00:00Z",
            field,
        ));
    }
    text.parse()
        .map_err(|_| unprocessable("expected a time such as 2026-12-07T08:00:00Z", field))
}

fn booking_refused(e: &BookingError) -> Refused {
    let status = if e.is_conflict() {
        StatusCode::CONFLICT
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    refused(status, &e.to_string(), Some("starts"))
}

/// `POST /api/agenda`: books a free slot. 201 with the appointment; 409 when the slot is
/// taken (also when another secretary took it a moment before); 422 for a time that is
/// not a free slot (past, closed day, off the grid) or a bad field.
async fn book(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let form: NewAppointment = parse(&body)?;
    let t = web.agenda_target(&me.username, &form.company, &form.executive)?;
    let client = form
        .client
        .checked()
        .map_err(|e| unprocessable(&e.why, e.field))?;
    let starts = instant(&form.starts, "starts")?;
    if let Some(call) = form.call {
        let owner = web
            .agenda_read(move |db| store::call_owner(db, call))
            .await?;
        if owner.and_then(|o| o.company).as_deref() != Some(t.company.id.0.as_str()) {
            return Err(unprocessable("no such call of this company", "call"));
        }
    }
    let now = Timestamp::now();
    let probe = Span {
        starts,
        ends: starts,
    };
    let busy: Vec<Span> = web
        .busy_around(&t, probe)
        .await?
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    let tz = t.company.timezone.clone();
    let span = agenda::check_booking(&t.agenda, &t.company.hours, &tz, starts, &busy, now)
        .map_err(|e| booking_refused(&e))?;
    let uid = new_uid()?;
    let status = if t.agenda.needs_confirmation {
        Status::Proposed
    } else {
        Status::Confirmed
    };
    web.store.write(Record::AppointmentBooked(Box::new(Booking {
        uid: uid.clone(),
        company: t.company.id.0.clone(),
        executive: t.executive.0.clone(),
        span,
        buffer: t.agenda.buffer,
        status,
        call: form.call,
        client,
        by: me.username.clone(),
        at: store::now_text(),
        notify: web.notices(&t.company.id.0, &t.executive.0),
    })));
    let Some(row) = web.written(&uid).await? else {
        // The writer found the time taken: another booking was committed first.
        tracing::info!(username = %me.username, executive = %t.executive.0, "agenda: booking lost to another");
        return Err(refused(
            StatusCode::CONFLICT,
            "this slot was just taken by another booking; choose another free slot",
            Some("starts"),
        ));
    };
    tracing::info!(username = %me.username, company = %t.company.id, executive = %t.executive.0, uid = %uid, "agenda: appointment booked");
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "appointment": appointment_json(&row, &tz), "executive_name": t.name }),
    ))
}

/// `GET /api/agenda/{uid}`: one appointment and its changes.
async fn one(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(uid): Path<String>,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let row = web.appointment_of(&me.username, &uid).await?;
    let tz = web
        .company(&row.company)
        .map_or(jiff::tz::TimeZone::UTC, |c| c.timezone.clone());
    let u = row.uid.clone();
    let changes = web
        .agenda_read(move |db| store::agenda::appointment_changes(db, &u))
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "appointment": appointment_json(&row, &tz), "changes": changes }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveTo {
    starts: String,
}

/// `POST /api/agenda/{uid}/move`: to another free slot of the same executive; it is
/// proposed again when the executive confirms their appointments. 409 when taken.
async fn move_one(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(uid): Path<String>,
    body: Bytes,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let form: MoveTo = parse(&body)?;
    let row = web.appointment_of(&me.username, &uid).await?;
    if !row.status().is_some_and(Status::holds_time) {
        return Err(refused(
            StatusCode::CONFLICT,
            &format!("this appointment is {}; it cannot be moved", row.status),
            None,
        ));
    }
    let t = web.agenda_target(&me.username, &row.company, &row.executive)?;
    let starts = instant(&form.starts, "starts")?;
    let busy: Vec<Span> = web
        .busy_around(
            &t,
            Span {
                starts,
                ends: starts,
            },
        )
        .await?
        .into_iter()
        .filter(|(u, _)| *u != row.uid)
        .map(|(_, s)| s)
        .collect();
    let tz = t.company.timezone.clone();
    let span = agenda::check_booking(
        &t.agenda,
        &t.company.hours,
        &tz,
        starts,
        &busy,
        Timestamp::now(),
    )
    .map_err(|e| booking_refused(&e))?;
    let status = if t.agenda.needs_confirmation {
        Status::Proposed
    } else {
        Status::Confirmed
    };
    web.store.write(Record::AppointmentChanged {
        uid: row.uid.clone(),
        change: Change::Move {
            span,
            buffer: t.agenda.buffer,
            status,
        },
        by: me.username.clone(),
        at: store::now_text(),
        notify: web.notices(&row.company, &row.executive),
    });
    let after = web.written(&row.uid).await?.ok_or_else(unavailable)?;
    if after.starts_at != stamp(span.starts) {
        return Err(refused(
            StatusCode::CONFLICT,
            "this slot was just taken by another booking; choose another free slot",
            Some("starts"),
        ));
    }
    tracing::info!(username = %me.username, uid = %row.uid, "agenda: appointment moved");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "appointment": appointment_json(&after, &tz) }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelWhy {
    #[serde(default)]
    why: String,
}

/// `POST /api/agenda/{uid}/cancel`: calls it off, with the reason given (recorded with
/// who and when). 409 when it is already cancelled or done.
async fn cancel(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(uid): Path<String>,
    body: Bytes,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let form: CancelWhy = parse(&body)?;
    let why = reason(&form.why)?;
    change_status(
        &web,
        &me.username,
        &uid,
        Change::Cancel { why },
        Status::Cancelled,
    )
    .await
}

/// `POST /api/agenda/{uid}/done`: it took place (only a confirmed appointment).
async fn done(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    Path(uid): Path<String>,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    change_status(&web, &me.username, &uid, Change::Done, Status::Done).await
}

/// A reason for a cancellation ([`agenda::cancel_reason`]), or the 422 to answer.
fn reason(text: &str) -> Result<String, Refused> {
    agenda::cancel_reason(text)
        .map_err(|_| unprocessable("at most 300 characters on one line", "why"))
}

async fn change_status(
    web: &Web,
    username: &str,
    uid: &str,
    change: Change,
    to: Status,
) -> Result<Response, Refused> {
    let row = web.appointment_of(username, uid).await?;
    let from = row.status().ok_or_else(unavailable)?;
    if !from.may_become(to) {
        return Err(refused(
            StatusCode::CONFLICT,
            &format!("this appointment is {from}; it cannot become {to}"),
            None,
        ));
    }
    web.store.write(Record::AppointmentChanged {
        uid: row.uid.clone(),
        change,
        by: username.to_string(),
        at: store::now_text(),
        notify: web.notices(&row.company, &row.executive),
    });
    let after = web.written(&row.uid).await?.ok_or_else(unavailable)?;
    let tz = web
        .company(&after.company)
        .map_or(jiff::tz::TimeZone::UTC, |c| c.timezone.clone());
    tracing::info!(username = %username, uid = %after.uid, status = %after.status, "agenda: appointment changed");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "appointment": appointment_json(&after, &tz) }),
    ))
}
