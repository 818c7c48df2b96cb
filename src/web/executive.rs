//! The executive's page, reached from the link in each e-mail (`/x/{token}`, signed by
//! `executive_link`): their messages (the companies whose plans name them, the messages
//! for them or for nobody in particular), one message with its fields, timeline,
//! recording and a `tel:` link to call back, "handled", and do-not-disturb until a time.
//!
//! Server-rendered HTML that needs no script (a phone's browser, a mail app's viewer);
//! every text is HTML-escaped where it is written. The link is the key: there is no
//! cookie, and a tampered, expired or revoked one gets a plain 403. GETs never change
//! anything (mail scanners fetch every link); every change is a POST from the page's own
//! forms, which the console's middleware refuses when a browser says it comes from another
//! site. A form token would add nothing: it would be as secret as the link it is served
//! under, and whoever holds the link may act anyway. The page's `Referrer-Policy:
//! same-origin` keeps the link out of other sites' logs and lets the browser name our
//! origin on those POSTs (with `no-referrer` it would send `Origin: null`).

use std::path::Path as FilePath;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jiff::Timestamp;

use super::inbox;
use super::range::byte_range;
use super::*;
use crate::dnd::{Dnd, DndError};
use crate::executive_link::{self, LinkError};
use crate::store::{self, PageMessage, Record};

pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/executive.css", get(style))
        .route("/x/{token}", get(list))
        .route("/x/{token}/dnd", post(dnd))
        .route("/x/{token}/messages/{call}", get(message))
        .route("/x/{token}/messages/{call}/handled", post(handled))
        .route("/x/{token}/messages/{call}/recording", get(recording))
}

/// The page's style (small screens first), served from the binary.
const STYLE: &str = include_str!("executive.css");

/// The most messages the list shows (newest first).
const LISTED: usize = 100;
/// The page's quick do-not-disturb choices: minutes and label.
const QUICK: [(u32, &str); 4] = [(30, "30 min"), (60, "1 h"), (120, "2 h"), (240, "4 h")];
/// The longest do-not-disturb asked in minutes (the limit itself is `dnd::MAX_AHEAD`).
const MAX_MINUTES: u32 = 31 * 24 * 60;

/// Headers of every page: nothing but our own style and sounds, no framing, the link kept
/// to our own origin, never cached or indexed.
const CSP: &str = "default-src 'none'; style-src 'self'; media-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The executive a valid link opens the page of.
pub(super) struct Reader {
    /// Their id in the plans.
    pub(super) id: String,
    /// Their name (from the first plan that names them).
    pub(super) name: String,
    /// The companies whose plans name them, in the plans' order.
    pub(super) companies: Vec<Arc<Company>>,
    /// The link's token, for the page's own addresses.
    pub(super) token: String,
}

impl Reader {
    /// One of their companies, by id.
    pub(super) fn company(&self, id: &str) -> Option<&Company> {
        self.companies
            .iter()
            .find(|c| c.id.0 == id)
            .map(|c| c.as_ref())
    }

    /// Their companies' ids.
    pub(super) fn company_ids(&self) -> Vec<String> {
        self.companies.iter().map(|c| c.id.0.clone()).collect()
    }

    /// The time zone their times are read and shown in: their first company's.
    pub(super) fn timezone(&self) -> jiff::tz::TimeZone {
        self.companies
            .first()
            .map_or(jiff::tz::TimeZone::UTC, |c| c.timezone.clone())
    }
}

/// Why a page is not shown: each is a plain page with its status.
#[derive(Debug)]
pub(super) enum Refusal {
    /// The link is not valid (tampered, expired, revoked, or no longer an executive's).
    Forbidden,
    /// No such message of theirs, or no recording.
    NotFound,
    /// A form that cannot be taken, and why.
    Invalid(String),
    /// The records cannot be read or written now.
    Unavailable,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, title, text) = match self {
            Refusal::Forbidden => (
                StatusCode::FORBIDDEN,
                "Lien non valable",
                "Ce lien a expiré ou n'est plus valable. Demandez-en un nouveau à votre secrétariat.".to_string(),
            ),
            Refusal::NotFound => (
                StatusCode::NOT_FOUND,
                "Introuvable",
                "Ce message n'existe pas ou ne vous est pas destiné.".to_string(),
            ),
            Refusal::Invalid(why) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "Demande non valable",
                why,
            ),
            Refusal::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Indisponible",
                "Le serveur ne peut pas lire ou enregistrer pour le moment. Réessayez dans un instant.".to_string(),
            ),
        };
        // No style link: the page's address (and so the way back to the sheet) is
        // unknown here; the plain text reads well as it is.
        let body = format!("<h1>{}</h1>\n<p>{}</p>\n", esc(title), esc(&text));
        html(status, title, None, &body)
    }
}

impl Web {
    /// The executive whose link this is, if it is ours, unaltered, not expired, not
    /// revoked, and they are still an executive in the plans in force.
    pub(super) async fn reader(&self, token: &str, now: Timestamp) -> Result<Reader, Refusal> {
        let key = self.link_key.as_deref().ok_or(Refusal::Forbidden)?;
        let link = executive_link::verify(key, token, now).map_err(|e| {
            // The token itself is a credential: never logged.
            match e {
                LinkError::Expired => tracing::info!("executive page: expired link"),
                _ => tracing::warn!(why = %e, "executive page: invalid link refused"),
            }
            Refusal::Forbidden
        })?;
        self.reader_of(
            link.executive,
            link.made,
            token.to_string(),
            "executive page",
        )
        .await
    }

    /// The reader a verified link (executive page or calendar feed, made at `made`)
    /// stands for: refused if a revocation since ends it or they are no longer an
    /// executive in the plans in force. `page` names the page in the log.
    pub(super) async fn reader_of(
        &self,
        executive: String,
        made: Timestamp,
        token: String,
        page: &'static str,
    ) -> Result<Reader, Refusal> {
        let who_id = executive.clone();
        let revoked = self
            .read(move |db| store::links_revoked_at(db, &who_id))
            .await?;
        let who = crate::terminal::safe(&executive);
        if revoked.is_some_and(|at| made <= at) {
            tracing::info!(executive = %who, "{page}: revoked link refused");
            return Err(Refusal::Forbidden);
        }
        let snapshot = self.calls.snapshot();
        let id = crate::dialplan::ExecutiveId(executive.clone());
        let companies: Vec<Arc<Company>> = snapshot
            .plans
            .companies()
            .iter()
            .filter(|c| c.executives.contains_key(&id))
            .cloned()
            .collect();
        let Some(name) = companies
            .first()
            .and_then(|c| c.executives.get(&id))
            .map(|e| e.name.clone())
        else {
            tracing::info!(executive = %who, "{page}: no longer an executive in the plans");
            return Err(Refusal::Forbidden);
        };
        Ok(Reader {
            id: executive,
            name,
            companies,
            token,
        })
    }

    /// One of the reader's messages with its timeline, or 404.
    async fn message_of(
        &self,
        reader: &Reader,
        call: &str,
    ) -> Result<(PageMessage, Vec<store::EventRow>), Refusal> {
        let call: i64 = call.parse().map_err(|_| Refusal::NotFound)?;
        let (companies, executive) = (reader.company_ids(), reader.id.clone());
        self.read(move |db| store::executive_message(db, &companies, &executive, call))
            .await?
            .ok_or(Refusal::NotFound)
    }

    /// Reads the records off the signalling thread (a page is fetched from outside: a
    /// burst of them must not hold up calls).
    pub(super) async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&FilePath) -> Result<T, store::StoreError> + Send + 'static,
    ) -> Result<T, Refusal> {
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || read(&db)).await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "executive page: records not read");
                Err(Refusal::Unavailable)
            }
            Err(e) => {
                tracing::error!(error = %e, "executive page: a read of the records failed");
                Err(Refusal::Unavailable)
            }
        }
    }

    /// Waits until what was just written is on disk; the page to show otherwise.
    pub(super) async fn page_recorded(&self) -> Result<(), Refusal> {
        if self.on_disk().await {
            Ok(())
        } else {
            Err(Refusal::Unavailable)
        }
    }
}

async fn style() -> Response {
    security_headers("text/css; charset=utf-8", STYLE)
}

/// `GET /x/{token}`: do-not-disturb, then the messages, to handle first.
async fn list(State(web): State<Arc<Web>>, Path(token): Path<String>) -> Result<Response, Refusal> {
    let now = Timestamp::now();
    let reader = web.reader(&token, now).await?;
    let (companies, executive) = (reader.company_ids(), reader.id.clone());
    let messages = web
        .read(move |db| store::executive_messages(db, &companies, &executive, LISTED))
        .await?;
    let dnd = web.calls.dnd.current(&reader.id, now);
    let companies: Vec<&str> = reader.companies.iter().map(|c| c.name.as_str()).collect();
    let mut body = format!(
        "<header><h1>{}</h1><p>{}</p></header>\n",
        esc(&reader.name),
        esc(&companies.join(" · "))
    );
    body.push_str(&dnd_section(&reader, dnd.as_ref(), now));
    let id = crate::dialplan::ExecutiveId(reader.id.clone());
    if reader
        .companies
        .iter()
        .any(|c| c.executives.get(&id).is_some_and(|e| e.agenda.is_some()))
    {
        body.push_str(&format!(
            "<p class=\"agenda\"><a href=\"{}/agenda\">Agenda : rendez-vous à confirmer</a></p>\n",
            esc(&reader.token)
        ));
    }
    let (open, done): (Vec<&PageMessage>, Vec<&PageMessage>) =
        messages.iter().partition(|m| m.status != "done");
    body.push_str(&format!("<h2>À traiter ({})</h2>\n", open.len()));
    body.push_str(&message_list(&reader, &open));
    body.push_str(&format!("<h2>Traités ({})</h2>\n", done.len()));
    body.push_str(&message_list(&reader, &done));
    Ok(html(StatusCode::OK, &reader.name, Some("../"), &body))
}

/// Do-not-disturb: until when, and a button to end it; or the choices to set it.
fn dnd_section(reader: &Reader, dnd: Option<&Dnd>, now: Timestamp) -> String {
    let tz = reader.timezone();
    let action = format!("{}/dnd", esc(&reader.token));
    if let Some(dnd) = dnd {
        return format!(
            "<section class=\"dnd on\"><p>Ne pas déranger jusqu'au <strong>{}</strong> : les transferts vers vous sont suspendus.</p>\
             <form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"clear\" value=\"1\"><button>Reprendre les appels</button></form></section>\n",
            esc(&local_text(dnd.until, &tz))
        );
    }
    let quick: String = QUICK
        .iter()
        .map(|(minutes, label)| {
            format!(
                "<button name=\"minutes\" value=\"{minutes}\">{}</button>",
                esc(label)
            )
        })
        .collect();
    let soon = tz
        .to_datetime(now + jiff::SignedDuration::from_hours(1))
        .strftime("%Y-%m-%dT%H:%M")
        .to_string();
    format!(
        "<section class=\"dnd\"><h2>Ne pas déranger</h2>\
         <form method=\"post\" action=\"{action}\" class=\"quick\">{quick}</form>\
         <form method=\"post\" action=\"{action}\"><label>Jusqu'à (heure de {}) \
         <input type=\"datetime-local\" name=\"until\" required value=\"{}\"></label>\
         <button>Activer</button></form></section>\n",
        esc(reader
            .companies
            .first()
            .map_or("UTC", |c| c.timezone_name.as_str())),
        esc(&soon)
    )
}

/// The messages as links to each one's page.
fn message_list(reader: &Reader, messages: &[&PageMessage]) -> String {
    if messages.is_empty() {
        return "<p class=\"empty\">Aucun message.</p>\n".to_string();
    }
    let mut list = String::from("<ul class=\"messages\">\n");
    for m in messages {
        let company = reader.company(&m.company);
        let tz = company.map_or(jiff::tz::TimeZone::UTC, |c| c.timezone.clone());
        let about = m.about.as_deref().unwrap_or_else(|| outcome_text(m));
        list.push_str(&format!(
            "<li class=\"{}\"><a href=\"{}/messages/{}\"><span class=\"category\">{}</span> \
             <strong>{}</strong> <time>{}</time><br><span class=\"about\">{}</span> \
             <span class=\"company\">{}</span></a></li>\n",
            esc(&m.category),
            esc(&reader.token),
            m.call,
            esc(category_text(&m.category)),
            esc(&who_called(m)),
            esc(&stored_local(&m.started_at, &tz)),
            esc(about),
            esc(company.map_or(m.company.as_str(), |c| c.name.as_str())),
        ));
    }
    list.push_str("</ul>\n");
    list
}

/// `GET /x/{token}/messages/{call}`: the message, what to do with it, and its timeline.
async fn message(
    State(web): State<Arc<Web>>,
    Path((token, call)): Path<(String, String)>,
) -> Result<Response, Refusal> {
    let reader = web.reader(&token, Timestamp::now()).await?;
    let (m, timeline) = web.message_of(&reader, &call).await?;
    let company = reader.company(&m.company);
    let tz = company.map_or(jiff::tz::TimeZone::UTC, |c| c.timezone.clone());
    let mut body = format!(
        "<p><a href=\"../../{}\">← Messages</a></p>\n<h1>{}</h1>\n<p><span class=\"category {}\">{}</span> {}</p>\n",
        esc(&reader.token),
        esc(&who_called(&m)),
        esc(&m.category),
        esc(category_text(&m.category)),
        esc(status_text(&m.status)),
    );
    if let Some(number) = callback_number(&m) {
        body.push_str(&format!(
            "<p><a class=\"call\" href=\"tel:{}\">Rappeler le {}</a></p>\n",
            esc(&number),
            esc(&number)
        ));
    }
    body.push_str(&fields(&m, company, &tz));
    if m.recording.is_some() {
        body.push_str(&format!(
            "<audio controls preload=\"none\" src=\"{}/recording\"></audio>\n",
            m.call
        ));
    }
    if m.status != "done" {
        body.push_str(&format!(
            "<form method=\"post\" action=\"{}/handled\"><button>Marquer comme traité</button></form>\n",
            m.call
        ));
    }
    body.push_str(&timeline_list(&timeline, &tz));
    Ok(html(
        StatusCode::OK,
        &who_called(&m),
        Some("../../../"),
        &body,
    ))
}

/// The message's fields as a definition list: what the secretary wrote, the company's own
/// fields (by their labels), and the call.
fn fields(m: &PageMessage, company: Option<&Company>, tz: &jiff::tz::TimeZone) -> String {
    let mut rows: Vec<(String, String)> = vec![
        (
            "Société".into(),
            company.map_or(m.company.clone(), |c| c.name.clone()),
        ),
        ("Reçu le".into(), stored_local(&m.started_at, tz)),
        ("Numéro".into(), m.caller.clone()),
    ];
    let optional = [
        ("Nom affiché", &m.caller_display),
        ("Nom", &m.caller_name),
        ("Société de l'appelant", &m.caller_company),
        ("Rappeler au", &m.callback),
        ("Objet", &m.about),
    ];
    rows.extend(
        optional
            .into_iter()
            .filter_map(|(label, value)| Some((label.to_string(), value.clone()?))),
    );
    if let Some(card) = company.map(|c| &c.card) {
        for field in &card.fields {
            if let Some(value) = m.fields.get(&field.name) {
                rows.push((field.label.clone(), value.clone()));
            }
        }
    }
    let executive = m.for_executive.as_ref().map(|id| {
        company
            .and_then(|c| c.executives.get(&crate::dialplan::ExecutiveId(id.clone())))
            .map_or(id.clone(), |e| e.name.clone())
    });
    let call = [
        ("Pour", executive),
        ("Issue", Some(outcome_text(m).to_string())),
        ("Pris par", m.handled_by.clone()),
        ("Transféré à", m.transferred_to.clone()),
        ("Écrit par", m.written_by.clone()),
    ];
    rows.extend(
        call.into_iter()
            .filter_map(|(label, value)| Some((label.to_string(), value?))),
    );
    let mut list = String::from("<dl>\n");
    for (label, value) in rows {
        list.push_str(&format!(
            "<dt>{}</dt><dd>{}</dd>\n",
            esc(&label),
            esc(&value)
        ));
    }
    list.push_str("</dl>\n");
    list
}

/// The call's timeline: local time, kind, details.
fn timeline_list(events: &[store::EventRow], tz: &jiff::tz::TimeZone) -> String {
    let mut list = String::from("<h2>Déroulé de l'appel</h2>\n<ol class=\"timeline\">\n");
    for e in events {
        let time =
            e.at.parse::<Timestamp>()
                .map(|t| tz.to_datetime(t).strftime("%H:%M:%S").to_string())
                .unwrap_or_default();
        list.push_str(&format!(
            "<li><time>{}</time> {} <small>{}</small></li>\n",
            esc(&time),
            esc(&e.kind),
            esc(&details(&e.data))
        ));
    }
    list.push_str("</ol>\n");
    list
}

/// An event's JSON details as `key: value` pairs.
fn details(data: &str) -> String {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str(data) else {
        return String::new();
    };
    map.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}: {s}"),
            other => format!("{k}: {other}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `POST /x/{token}/messages/{call}/handled`: the message is done; back to its page.
async fn handled(
    State(web): State<Arc<Web>>,
    Path((token, call)): Path<(String, String)>,
) -> Result<Response, Refusal> {
    let reader = web.reader(&token, Timestamp::now()).await?;
    let (m, _) = web.message_of(&reader, &call).await?;
    web.store.write(Record::MessageStatus {
        id: m.call,
        status: crate::inbox::Status::Done,
        by: reader.id.clone(),
        at: store::now_text(),
    });
    web.page_recorded().await?;
    tracing::info!(executive = %crate::terminal::safe(&reader.id), call = m.call, "executive page: message handled");
    Ok(see_other(&format!("../{}", m.call)))
}

/// What the do-not-disturb form asks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DndAsk {
    /// End it now.
    Clear,
    /// For this many minutes from now.
    For(u32),
    /// Until this time (the executive's local time, or with an offset).
    Until(String),
}

/// Reads the form (`clear`, `minutes` or `until`, the first that is there).
fn dnd_ask(body: &[u8]) -> Option<DndAsk> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim());
    if get("clear").is_some() {
        return Some(DndAsk::Clear);
    }
    if let Some(minutes) = get("minutes") {
        return minutes
            .parse()
            .ok()
            .filter(|m| (1..=MAX_MINUTES).contains(m))
            .map(DndAsk::For);
    }
    get("until")
        .filter(|u| !u.is_empty())
        .map(|u| DndAsk::Until(u.to_string()))
}

/// The do-not-disturb a request sets at `now`, or why it cannot.
fn dnd_of(ask: &DndAsk, reader: &Reader, now: Timestamp) -> Result<Option<Dnd>, DndError> {
    let until = match ask {
        DndAsk::Clear => return Ok(None),
        DndAsk::For(minutes) => now
            .checked_add(jiff::SignedDuration::from_mins(i64::from(*minutes)))
            .map_err(|_| DndError::UntilTooFar)?,
        DndAsk::Until(text) => {
            crate::line::parse_until(text, &reader.timezone()).map_err(|_| DndError::UntilFormat)?
        }
    };
    Dnd::new(until, &reader.id, now).map(Some)
}

/// `POST /x/{token}/dnd`: sets do-not-disturb until a time (or for a while), or ends it;
/// in force for the next call at once, recorded with who and when; back to the list.
async fn dnd(
    State(web): State<Arc<Web>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Result<Response, Refusal> {
    let now = Timestamp::now();
    let reader = web.reader(&token, now).await?;
    let ask = dnd_ask(&body)
        .ok_or_else(|| Refusal::Invalid("Choisissez une durée ou une heure de fin.".to_string()))?;
    let dnd = dnd_of(&ask, &reader, now).map_err(|e| {
        Refusal::Invalid(format!("L'heure de fin doit être {}.", dnd_error_text(e)))
    })?;
    let who = crate::terminal::safe(&reader.id).to_string();
    let at = store::time_text(now);
    let record = match &dnd {
        Some(d) => Some(Record::DndSet {
            executive: reader.id.clone(),
            until: store::time_text(d.until),
            by: reader.id.clone(),
            at: at.clone(),
        }),
        None => None,
    };
    let set = dnd.is_some();
    web.calls.dnd.replace(&reader.id, dnd, now, |previous| {
        match record {
            Some(record) => web.store.write(record),
            // Ending what is not in force changes nothing.
            None if previous.is_some() => web.store.write(Record::DndEnded {
                executive: reader.id.clone(),
                by: reader.id.clone(),
                at: at.clone(),
            }),
            None => {}
        }
    });
    web.page_recorded().await?;
    tracing::info!(executive = %who, set, "executive page: do not disturb");
    Ok(see_other(&format!("../{}", reader.token)))
}

fn dnd_error_text(e: DndError) -> &'static str {
    match e {
        DndError::UntilFormat => "une date et une heure, comme 2026-11-30T18:00",
        DndError::UntilPast => "dans le futur",
        DndError::UntilTooFar => "dans les 31 jours",
    }
}

/// `GET /x/{token}/messages/{call}/recording`: the voicemail, whole or the byte range
/// asked for (a player seeks with `Range`), served as the console's inbox serves it: only
/// from under `data/recordings/`.
async fn recording(
    State(web): State<Arc<Web>>,
    Path((token, call)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let reader = web.reader(&token, Timestamp::now()).await?;
    let (m, _) = web.message_of(&reader, &call).await?;
    let stored = m.recording.ok_or(Refusal::NotFound)?;
    let Some(path) = inbox::confined(&web.calls.data, &stored) else {
        tracing::warn!(call = m.call, path = %crate::terminal::safe(&stored), "executive page: a recording outside data/recordings refused");
        return Err(Refusal::NotFound);
    };
    let (file, len) = inbox::open_confined(&web.calls.data, &path)
        .await
        .map_err(|e| {
            tracing::warn!(call = m.call, error = %e, "executive page: recording not served");
            Refusal::NotFound
        })?;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    inbox::send_file(file, len, byte_range(range, len), m.call)
        .await
        .map_err(|_| Refusal::NotFound)
}

// ---------------------------------------------------------------------- writing pages

/// A whole page: `root` is the way from the page's address to the server's root (for the
/// style sheet), relative so that a proxy may serve the console under a path.
pub(super) fn html(status: StatusCode, title: &str, root: Option<&str>, body: &str) -> Response {
    let style = root
        .map(|r| format!("<link rel=\"stylesheet\" href=\"{r}executive.css\">"))
        .unwrap_or_default();
    let page = format!(
        "<!doctype html>\n<html lang=\"fr\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex, nofollow\">\
         <title>{}</title>{style}</head>\n<body>\n{body}</body></html>\n",
        esc(title)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::REFERRER_POLICY, "same-origin"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::HeaderName::from_static("x-robots-tag"),
                "noindex, nofollow",
            ),
        ],
        page,
    )
        .into_response()
}

/// After a change: back to a page (303, so that reloading it does not post again).
pub(super) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Text made safe inside HTML, in an element or a quoted attribute.
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Who called, as best known: the name the secretary wrote, the phone's name, the number.
fn who_called(m: &PageMessage) -> String {
    [&m.caller_name, &m.caller_display]
        .into_iter()
        .flatten()
        .find(|n| !n.trim().is_empty())
        .cloned()
        .unwrap_or_else(|| m.caller.clone())
}

/// The number for the `tel:` link: the callback the secretary wrote, else the caller's,
/// as `+` and digits only (at least 3), so that nothing else reaches the link.
fn callback_number(m: &PageMessage) -> Option<String> {
    let dial = |text: &str| {
        let text = text.trim();
        let plus = text.starts_with('+');
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        let allowed = text
            .chars()
            .all(|c| c.is_ascii_digit() || " +().-".contains(c));
        (allowed && digits.len() >= 3 && digits.len() <= 20)
            .then(|| format!("{}{digits}", if plus { "+" } else { "" }))
    };
    m.callback
        .as_deref()
        .and_then(dial)
        .or_else(|| dial(&m.caller))
}

fn category_text(category: &str) -> &str {
    match category {
        "urgent" => "Urgent",
        "normal" => "Normal",
        "low" => "Peut attendre",
        "spam" => "Indésirable",
        other => other,
    }
}

fn status_text(status: &str) -> &str {
    match status {
        "new" => "nouveau",
        "read" => "lu",
        "done" => "traité",
        "filed" => "classé",
        other => other,
    }
}

fn outcome_text(m: &PageMessage) -> &str {
    match m.outcome.as_deref() {
        Some("voicemail") => "Message vocal",
        Some("secretary") => "Pris par le secrétariat",
        Some("transferred") => "Transféré",
        Some("abandoned") | Some("no-message") => "Appel manqué",
        Some("completed") => "Annonce écoutée",
        Some("rejected") => "Refusé",
        Some(other) => other,
        None => "En cours",
    }
}

/// A stored time (RFC 3339) in local time, as the page shows it.
fn stored_local(stored: &str, tz: &jiff::tz::TimeZone) -> String {
    stored
        .parse::<Timestamp>()
        .map(|t| local_text(t, tz))
        .unwrap_or_else(|_| stored.to_string())
}

/// An instant as the company's wall clock reads it, to the minute.
pub(super) fn local_text(t: Timestamp, tz: &jiff::tz::TimeZone) -> String {
    tz.to_datetime(t).strftime("%Y-%m-%d %H:%M").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> PageMessage {
        PageMessage {
            call: 7,
            company: "acme".into(),
            started_at: "2026-11-30T09:00:00.000Z".into(),
            caller: "+33612345678".into(),
            caller_display: Some("<script>alert(1)</script>".into()),
            caller_name: None,
            caller_company: None,
            callback: None,
            about: None,
            for_executive: None,
            category: "urgent".into(),
            status: "new".into(),
            outcome: Some("voicemail".into()),
            recording: None,
            recording_ms: None,
            fields: Default::default(),
            written_by: None,
            handled_by: None,
            transferred_to: None,
        }
    }

    #[test]
    fn text_is_escaped_for_elements_and_attributes() {
        assert_eq!(
            esc(r#"<script>"x" & 'y'</script>"#),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(esc("Fuite au 3e, Hôtel"), "Fuite au 3e, Hôtel");
    }

    #[test]
    fn the_callback_link_holds_only_a_plus_and_digits() {
        let mut m = message();
        assert_eq!(callback_number(&m).as_deref(), Some("+33612345678"));
        m.callback = Some("06 12 34 56 78".into());
        assert_eq!(callback_number(&m).as_deref(), Some("0612345678"));
        m.callback = Some("+33 (0)6 12-34".into());
        assert_eq!(callback_number(&m).as_deref(), Some("+33061234"));
        m.callback = Some("javascript:alert(1)//0612345678".into());
        assert_eq!(
            callback_number(&m).as_deref(),
            Some("+33612345678"),
            "not a number: the caller's instead"
        );
        m.caller = "anonymous".into();
        assert_eq!(callback_number(&m), None);
    }

    #[test]
    fn the_form_asks_to_end_for_a_while_or_until_a_time() {
        assert_eq!(dnd_ask(b"clear=1"), Some(DndAsk::Clear));
        assert_eq!(dnd_ask(b"minutes=60"), Some(DndAsk::For(60)));
        assert_eq!(dnd_ask(b"minutes=0"), None);
        assert_eq!(dnd_ask(b"minutes=99999999"), None);
        assert_eq!(dnd_ask(b"minutes=-5"), None);
        assert_eq!(
            dnd_ask(b"until=2026-11-30T18%3A00"),
            Some(DndAsk::Until("2026-11-30T18:00".into()))
        );
        assert_eq!(dnd_ask(b"until="), None);
        assert_eq!(dnd_ask(b""), None);
        assert_eq!(dnd_ask(b"%ff%fe=\xff"), None, "not UTF-8: nothing asked");
    }

    #[test]
    fn an_event_reads_as_pairs() {
        assert_eq!(
            details(r#"{"by":"alice","to":null,"screening":false}"#),
            "by: alice, screening: false"
        );
        assert_eq!(details("not json"), "");
    }

    #[test]
    fn who_called_is_the_written_name_then_the_phones_then_the_number() {
        let mut m = message();
        assert_eq!(who_called(&m), "<script>alert(1)</script>");
        m.caller_name = Some("Jean Martin".into());
        assert_eq!(who_called(&m), "Jean Martin");
        m.caller_name = Some(" ".into());
        m.caller_display = None;
        assert_eq!(who_called(&m), "+33612345678");
    }
}
