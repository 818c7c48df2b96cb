//! The executive's side of the agenda, server-rendered like their page and working
//! without script:
//!
//! - `/a/{token}`: the **Confirm** or **Cancel** link of an e-mail (`agenda::link`,
//!   signed, expiring). GET shows the appointment and a button; only the POST changes
//!   it (mail scanners open links). A second POST says it is already done; a tampered or
//!   expired link gets 403.
//! - `/x/{token}/agenda`: from their page (its own link), their coming appointments with
//!   Confirm and Cancel buttons, and the address of their calendar feed.
//! - `/ics/{token}`: that feed (iCalendar), at a secret address a calendar application
//!   subscribes to; revoking the executive's links ends it.
//!
//! Who acts is recorded as `executive:ID`. Every text is escaped where it is written.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;

use super::executive::{Reader, Refusal, esc, html, local_text, see_other};
use super::*;
use crate::agenda::link::{self, Action};
use crate::agenda::{Status, ics, stamp};
use crate::store::agenda::{AppointmentRow, Change};
use crate::store::{self, Record};

/// The executive's side of the agenda: action links, their agenda page and calendar feed.
pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/a/{token}", get(action_page).post(action_post))
        .route("/x/{token}/agenda", get(agenda_page))
        .route("/x/{token}/agenda/{uid}/{action}", post(agenda_post))
        .route("/ics/{token}", get(feed))
}

/// How far back and ahead the feed and the page look.
const FEED_PAST_DAYS: i64 = 90;
const FEED_AHEAD_DAYS: i64 = 400;
const PAGE_AHEAD_DAYS: i64 = 60;

fn status_text(s: &str) -> &'static str {
    match s {
        "proposed" => "à confirmer",
        "confirmed" => "confirmé",
        "cancelled" => "annulé",
        "done" => "passé",
        _ => "inconnu",
    }
}

impl Web {
    /// The appointment a valid action link names, with the link.
    async fn linked(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<(link::ActionLink, AppointmentRow), Refusal> {
        let key = self.link_key.as_deref().ok_or(Refusal::Forbidden)?;
        let found = link::verify_action(key, token, now).map_err(|e| {
            // The token is a credential: never logged.
            tracing::warn!(why = %e, "appointment link refused");
            Refusal::Forbidden
        })?;
        let uid = found.uid.clone();
        let row = self
            .read(move |db| store::agenda::appointment(db, &uid))
            .await?
            .ok_or(Refusal::NotFound)?;
        // Revoking the executive's links ends these too.
        let executive = row.executive.clone();
        let revoked = self
            .read(move |db| store::links_revoked_at(db, &executive))
            .await?;
        if revoked.is_some_and(|at| found.made <= at) {
            tracing::info!("appointment link refused: revoked");
            return Err(Refusal::Forbidden);
        }
        Ok((found, row))
    }

    fn timezone_of(&self, company: &str) -> (String, jiff::tz::TimeZone) {
        self.company(company).map_or_else(
            || (company.to_string(), jiff::tz::TimeZone::UTC),
            |c| (c.name.clone(), c.timezone.clone()),
        )
    }

    /// Applies an executive's confirmation or cancellation; whether it changed anything
    /// (false: it was already so, or can no longer be).
    async fn executive_change(
        &self,
        row: &AppointmentRow,
        action: Action,
        why: String,
    ) -> Result<AppointmentRow, Refusal> {
        let change = match action {
            Action::Confirm => Change::Confirm,
            Action::Cancel => Change::Cancel { why },
        };
        self.store.write(Record::AppointmentChanged {
            uid: row.uid.clone(),
            change,
            by: format!("executive:{}", row.executive),
            at: store::now_text(),
            notify: self.notices(&row.company, &row.executive),
        });
        self.page_recorded().await?;
        let uid = row.uid.clone();
        self.read(move |db| store::agenda::appointment(db, &uid))
            .await?
            .ok_or(Refusal::Unavailable)
    }
}

/// The appointment's details as HTML.
fn details(row: &AppointmentRow, company: &str, tz: &jiff::tz::TimeZone) -> String {
    let when = row
        .span()
        .map(|s| {
            format!(
                "{} – {}",
                local_text(s.starts, tz),
                tz.to_datetime(s.ends).strftime("%H:%M")
            )
        })
        .unwrap_or_default();
    let mut out = format!(
        "<dl class=\"appointment\"><dt>Quand</dt><dd><strong>{}</strong></dd>\
         <dt>Client</dt><dd>{}</dd><dt>Société</dt><dd>{}</dd><dt>État</dt><dd>{}</dd>",
        esc(&when),
        esc(&row.client.name),
        esc(company),
        esc(status_text(&row.status)),
    );
    if !row.client.phone.is_empty() {
        out.push_str(&format!(
            "<dt>Téléphone</dt><dd><a href=\"tel:{}\">{}</a></dd>",
            esc(&row.client.phone.replace(' ', "")),
            esc(&row.client.phone)
        ));
    }
    for (label, value) in [
        ("E-mail", &row.client.email),
        ("Adresse", &row.client.address),
        ("Motif", &row.client.reason),
    ] {
        if !value.is_empty() {
            out.push_str(&format!("<dt>{label}</dt><dd>{}</dd>", esc(value)));
        }
    }
    if let Some(why) = row.cancel_reason.as_deref().filter(|w| !w.is_empty()) {
        out.push_str(&format!("<dt>Motif d'annulation</dt><dd>{}</dd>", esc(why)));
    }
    out.push_str("</dl>\n");
    out
}

/// What the page says when the change is already made or can no longer be.
fn settled(row: &AppointmentRow, action: Action) -> Option<&'static str> {
    let status = row.status()?;
    match (action, status) {
        (Action::Confirm, Status::Confirmed) => Some("Ce rendez-vous est déjà confirmé."),
        (Action::Cancel, Status::Cancelled) => Some("Ce rendez-vous est déjà annulé."),
        (_, Status::Cancelled) => Some("Ce rendez-vous a été annulé."),
        (_, Status::Done) => Some("Ce rendez-vous a déjà eu lieu."),
        (Action::Cancel, _) | (Action::Confirm, _) => None,
    }
}

fn action_form(action: Action, target: &str) -> String {
    match action {
        Action::Confirm => format!(
            "<form method=\"post\" action=\"{}\"><button>Confirmer le rendez-vous</button></form>\n",
            esc(target)
        ),
        Action::Cancel => format!(
            "<form method=\"post\" action=\"{}\"><label>Motif (facultatif) \
             <input name=\"why\" maxlength=\"300\"></label> <button>Annuler le rendez-vous</button></form>\n",
            esc(target)
        ),
    }
}

/// `GET /a/{token}`: the appointment and one button; nothing changes.
async fn action_page(
    State(web): State<Arc<Web>>,
    Path(token): Path<String>,
) -> Result<Response, Refusal> {
    let (found, row) = web.linked(&token, Timestamp::now()).await?;
    let (company, tz) = web.timezone_of(&row.company);
    let title = match found.action {
        Action::Confirm => "Confirmer un rendez-vous",
        Action::Cancel => "Annuler un rendez-vous",
    };
    let mut body = format!("<h1>{}</h1>\n{}", esc(title), details(&row, &company, &tz));
    match settled(&row, found.action) {
        Some(text) => body.push_str(&format!("<p class=\"settled\">{}</p>\n", esc(text))),
        None => body.push_str(&action_form(found.action, &token)),
    }
    Ok(html(StatusCode::OK, title, None, &body))
}

/// The `why` of a posted cancel form (empty when absent), bounded.
fn form_why(body: &Bytes) -> Result<String, Refusal> {
    let why = form_urlencoded::parse(body)
        .find(|(k, _)| k == "why")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    crate::agenda::cancel_reason(&why).map_err(|_| {
        Refusal::Invalid("Le motif tient sur une ligne de 300 caractères au plus.".to_string())
    })
}

/// `POST /a/{token}`: confirms or cancels; a second time says it is already done.
async fn action_post(
    State(web): State<Arc<Web>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Result<Response, Refusal> {
    let (found, row) = web.linked(&token, Timestamp::now()).await?;
    let (company, tz) = web.timezone_of(&row.company);
    if let Some(text) = settled(&row, found.action) {
        let body = format!("<h1>{}</h1>\n{}", esc(text), details(&row, &company, &tz));
        return Ok(html(StatusCode::OK, text, None, &body));
    }
    let why = form_why(&body)?;
    let after = web.executive_change(&row, found.action, why).await?;
    let text = match (found.action, after.status()) {
        (Action::Confirm, Some(Status::Confirmed)) => "Rendez-vous confirmé.",
        (Action::Cancel, Some(Status::Cancelled)) => "Rendez-vous annulé.",
        _ => "Ce rendez-vous a changé entre-temps ; voici son état.",
    };
    tracing::info!(uid = %after.uid, status = %after.status, "appointment changed from an e-mail link");
    let body = format!("<h1>{}</h1>\n{}", esc(text), details(&after, &company, &tz));
    Ok(html(StatusCode::OK, text, None, &body))
}

/// The reader's appointments from `from` to `to`, every company naming them.
async fn of_reader(
    web: &Web,
    reader: &Reader,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<AppointmentRow>, Refusal> {
    let (companies, executive) = (reader.company_ids(), reader.id.clone());
    let (from, to) = (stamp(from), stamp(to));
    web.read(move |db| {
        let mut all = Vec::new();
        for c in &companies {
            all.extend(store::agenda::appointments(
                db,
                Some(c),
                Some(&executive),
                &from,
                &to,
            )?);
        }
        all.sort_by(|a, b| a.starts_at.cmp(&b.starts_at));
        Ok(all)
    })
    .await
}

/// `GET /x/{token}/agenda`: their coming appointments, to confirm or cancel.
async fn agenda_page(
    State(web): State<Arc<Web>>,
    Path(token): Path<String>,
) -> Result<Response, Refusal> {
    let now = Timestamp::now();
    let reader = web.reader(&token, now).await?;
    let rows = of_reader(
        &web,
        &reader,
        now - jiff::SignedDuration::from_hours(12),
        now + jiff::SignedDuration::from_hours(24 * PAGE_AHEAD_DAYS),
    )
    .await?;
    let mut body = format!(
        "<p><a href=\"../{}\">← Messages</a></p>\n<h1>Agenda de {}</h1>\n",
        esc(&reader.token),
        esc(&reader.name)
    );
    if rows.is_empty() {
        body.push_str("<p class=\"empty\">Aucun rendez-vous à venir.</p>\n");
    }
    for row in &rows {
        let (company, tz) = web.timezone_of(&row.company);
        body.push_str(&format!(
            "<section class=\"appointment {}\">{}",
            esc(&row.status),
            details(row, &company, &tz)
        ));
        let base = format!("agenda/{}", esc(&row.uid));
        if row.status() == Some(Status::Proposed) {
            body.push_str(&format!(
                "<form method=\"post\" action=\"{base}/confirm\"><button>Confirmer</button></form>"
            ));
        }
        if row.status().is_some_and(Status::holds_time) {
            body.push_str(&format!(
                "<form method=\"post\" action=\"{base}/cancel\"><label>Motif <input name=\"why\" maxlength=\"300\"></label> <button>Annuler</button></form>"
            ));
        }
        body.push_str("</section>\n");
    }
    if let Some(key) = web.link_key.as_deref() {
        let feed = link::sign_feed(key, &reader.id, now);
        body.push_str(&format!(
            "<h2>Votre calendrier</h2><p>Abonnez votre application de calendrier à cette adresse (gardez-la secrète) : \
             <code>/ics/{}</code></p>\n",
            esc(&feed)
        ));
    }
    Ok(html(StatusCode::OK, &reader.name, Some("../../"), &body))
}

/// `POST /x/{token}/agenda/{uid}/{confirm|cancel}`: from their page.
async fn agenda_post(
    State(web): State<Arc<Web>>,
    Path((token, uid, action)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response, Refusal> {
    let reader = web.reader(&token, Timestamp::now()).await?;
    let action = match action.as_str() {
        "confirm" => Action::Confirm,
        "cancel" => Action::Cancel,
        _ => return Err(Refusal::NotFound),
    };
    if uid.len() > 64 {
        return Err(Refusal::NotFound);
    }
    let u = uid.clone();
    let row = web
        .read(move |db| store::agenda::appointment(db, &u))
        .await?
        .filter(|r| r.executive == reader.id && reader.company_ids().contains(&r.company))
        .ok_or(Refusal::NotFound)?;
    if settled(&row, action).is_none() {
        let why = form_why(&body)?;
        web.executive_change(&row, action, why).await?;
    }
    Ok(see_other("../../agenda"))
}

/// `GET /ics/{token}`: the executive's calendar (appointments from 90 days back to 400
/// ahead, cancelled ones included so that calendars remove them).
async fn feed(State(web): State<Arc<Web>>, Path(token): Path<String>) -> Result<Response, Refusal> {
    let key = web.link_key.as_deref().ok_or(Refusal::Forbidden)?;
    let token = token.strip_suffix(".ics").unwrap_or(&token);
    let found = link::verify_feed(key, token).map_err(|e| {
        tracing::warn!(why = %e, "calendar feed: invalid link refused");
        Refusal::Forbidden
    })?;
    let reader = web
        .reader_of(found.executive, found.made, String::new(), "calendar feed")
        .await?;
    let now = Timestamp::now();
    let rows = of_reader(
        &web,
        &reader,
        now - jiff::SignedDuration::from_hours(24 * FEED_PAST_DAYS),
        now + jiff::SignedDuration::from_hours(24 * FEED_AHEAD_DAYS),
    )
    .await?;
    let entries: Vec<ics::Entry> = rows
        .iter()
        .filter_map(|r| {
            let company = reader
                .company(&r.company)
                .map_or(r.company.as_str(), |c| c.name.as_str());
            Some(ics::Entry {
                uid: r.uid.clone(),
                sequence: r.sequence,
                status: r.status()?,
                span: r.span()?,
                summary: format!("{} ({company})", r.client.name),
                description: [
                    r.client.phone.as_str(),
                    r.client.email.as_str(),
                    r.client.reason.as_str(),
                ]
                .iter()
                .filter(|t| !t.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("\n"),
                location: Some(r.client.address.clone()).filter(|a| !a.is_empty()),
            })
        })
        .collect();
    let text = ics::calendar(&reader.name, &entries, now);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        text,
    )
        .into_response())
}
