//! The secretaries' console, served by `permanence serve` on `[web] listen`: a page (its
//! HTML, script and style embedded in the binary) and the JSON API it uses. A secretary
//! logs in with her SIP password (checked against the config's digest hashes), sees the
//! live board (her state, her colleagues', each company's queue) and goes on pause and
//! back. The board is the desk's view and the queue's lines, pushed again (server-sent
//! events) whenever the desk or the records change: the page keeps no state of its own.
//!
//! Everything from the page is hostile until checked: bodies are bounded and parsed
//! into typed requests (422 naming the field otherwise), state-changing requests from
//! another site are refused (`Sec-Fetch-Site`, `Origin`), and the page writes text with
//! `textContent`, never as HTML.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;

use crate::call::context::CallContext;
use crate::desk::{Activity, Desk};
use crate::dialplan::{Category, Company};
use crate::event::CallEvent;
use crate::registrar::Secretary;
use crate::session::{self, Session, Sessions, Throttle};
use crate::store::{self, Record, Writer, WrittenMessage};

/// The page, its script and its style (no CDN, no build step).
const PAGE: &str = include_str!("console.html");
const SCRIPT: &str = include_str!("console.js");
const STYLE: &str = include_str!("console.css");

/// The largest request body accepted.
const MAX_BODY: usize = 4 * 1024;

/// What the console's handlers share.
pub struct Web {
    desk: Arc<Desk>,
    store: Writer,
    /// The records (the card's call and history are read there).
    db: std::path::PathBuf,
    /// The plans in force (the card's company).
    calls: Arc<CallContext>,
    secretaries: Vec<Secretary>,
    realm: String,
    session_seconds: i64,
    sessions: Mutex<Sessions>,
    throttle: Mutex<Throttle>,
}

impl Web {
    /// The console for these secretaries; sessions still live in the records are
    /// restored (a restart does not log everyone out).
    pub fn new(
        calls: Arc<CallContext>,
        db: std::path::PathBuf,
        secretaries: Vec<Secretary>,
        realm: String,
        session_hours: u32,
        restored: Vec<(String, String, i64)>,
    ) -> Web {
        let mut sessions = Sessions::default();
        for (hash, username, expires_at) in restored {
            sessions.insert(
                hash,
                Session {
                    username,
                    expires_at,
                },
            );
        }
        Web {
            desk: Arc::clone(&calls.desk),
            store: calls.store.clone(),
            db,
            calls,
            secretaries,
            realm,
            session_seconds: i64::from(session_hours.max(1)) * 3600,
            sessions: Mutex::new(sessions),
            throttle: Mutex::new(Throttle::default()),
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The logged-in secretary of this request, if its session cookie is live.
    fn who(&self, headers: &HeaderMap) -> Option<Session> {
        let cookie = headers.get(header::COOKIE)?.to_str().ok()?;
        let id = session::from_cookie_header(cookie)?;
        self.sessions().get(id, now_s())
    }

    /// The board as the page shows it.
    fn board(&self, me: &str) -> serde_json::Value {
        let now_ms = crate::clock::unix_ms();
        let view = self.desk.view(now_ms);
        // The call her seat is about (ringing, on it, writing it up) has its card.
        let mine = view
            .iter()
            .find(|s| s.username == me)
            .and_then(|s| s.activity.call());
        let seats: Vec<serde_json::Value> = view
            .into_iter()
            .map(|s| {
                let (since, until) = match s.activity {
                    Activity::Available { since }
                    | Activity::Ringing { since, .. }
                    | Activity::Paused { since } => (Some(since), None),
                    Activity::WrapUp { until, .. } => (None, Some(until)),
                    Activity::OnCall { .. } => (None, None),
                };
                json!({
                    "username": s.username,
                    "name": s.name,
                    "companies": s.companies,
                    "phones": s.phones,
                    "state": s.activity.name(),
                    "call": s.activity.call(),
                    "since_ms": since,
                    "until_ms": until,
                    "pause_reason": s.pause_reason,
                    "me": s.username == me,
                })
            })
            .collect();
        let queue: Vec<serde_json::Value> = self
            .desk
            .queue(now_ms)
            .into_iter()
            .map(|line| {
                let longest = line.longest_ms();
                let callers: Vec<serde_json::Value> = line
                    .callers
                    .iter()
                    .map(|(call, wait)| json!({ "call": call, "wait_ms": wait }))
                    .collect();
                json!({ "company": line.company, "callers": callers, "longest_ms": longest })
            })
            .collect();
        let card = mine.and_then(|call| self.card(call));
        json!({ "me": me, "now_ms": now_ms, "seats": seats, "queue": queue, "card": card })
    }

    /// The card of a call: whom it is for and what to say, the caller and their history
    /// with this company, and the form's fields.
    fn card(&self, call: i64) -> Option<serde_json::Value> {
        let (row, history) = match store::call_with_history(&self.db, call, 5) {
            Ok(found) => found?,
            Err(e) => {
                tracing::warn!(error = %e, call, "console: no card for this call");
                return None;
            }
        };
        let company = self.company(row.company.as_deref()?)?;
        let local = crate::schedule::local_time(jiff::Timestamp::now(), &company.timezone);
        let executives: Vec<serde_json::Value> = company
            .executives
            .iter()
            .map(|(id, e)| json!({ "id": id.0, "name": e.name, "reachable_now": e.accepts_at(local) }))
            .collect();
        let fields: Vec<serde_json::Value> = company
            .card
            .fields
            .iter()
            .map(|f| json!({ "name": f.name, "label": f.label, "required": f.required }))
            .collect();
        let calls_again = history.len() >= 2;
        // Who the caller is, for this company: its contact lists (name, and the lists).
        let caller = crate::dialplan::Caller::from_user(Some(&row.caller), None, company.country);
        let membership = company.contacts.membership(&caller);
        let lists: Vec<&str> = membership
            .lists
            .iter()
            .map(|l| company.contacts.name(*l))
            .collect();
        Some(json!({
            "call": row,
            "company": { "id": company.id.0, "name": company.name, "answer_as": company.answer_as,
                         "notes": company.notes, "instructions": company.card.instructions },
            "contact": { "name": membership.name, "lists": lists },
            "executives": executives,
            "fields": fields,
            "history": history,
            "calls_again": calls_again,
        }))
    }

    fn company(&self, id: &str) -> Option<Arc<Company>> {
        self.calls.snapshot().plans.company(id).cloned()
    }
}

fn now_s() -> i64 {
    (crate::clock::unix_ms() / 1000) as i64
}

/// Serves the console until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    web: Arc<Web>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route("/", get(page))
        .route("/console.js", get(script))
        .route("/console.css", get(style))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/board", get(board))
        .route("/api/pause", post(pause))
        .route("/api/resume", post(resume))
        .route("/api/live", get(live))
        .route("/api/messages/{call}", post(write_message))
        .layer(axum::middleware::from_fn(same_site_only))
        // Bodies beyond this are refused while being read, not after.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(web);
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "console listener failed");
    }
}

/// Refuses a request that changes something when a browser says it comes from another
/// site (CSRF): `Sec-Fetch-Site` other than same-origin/none, or an `Origin` that is not
/// this server. Reads (GET) go through: they change nothing, and the session cookie is
/// `SameSite=Strict` anyway.
async fn same_site_only(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let headers = request.headers();
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
    let foreign_fetch = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site != "same-origin" && site != "none");
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let foreign_origin = headers
        .get(header::ORIGIN)
        .map(|origin| {
            let origin = origin.to_str().unwrap_or_default();
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            authority.is_none() || authority != host
        })
        .unwrap_or(false);
    if changes && (foreign_fetch || foreign_origin) {
        tracing::warn!(method = %request.method(), path = %request.uri().path(), "console: cross-site request refused");
        return refused(StatusCode::FORBIDDEN, "cross-site request refused", None).into_response();
    }
    next.run(request).await
}

/// A request refused: its status and the JSON body naming what was wrong.
#[derive(Debug)]
struct Refused {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let body = match self.field {
            Some(field) => json!({ "error": self.message, "field": field }),
            None => json!({ "error": self.message }),
        };
        json_response(self.status, &body)
    }
}

fn refused(status: StatusCode, message: &str, field: Option<&str>) -> Refused {
    Refused {
        status,
        message: message.to_string(),
        field: field.map(str::to_string),
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

fn security_headers(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    security_headers("text/html; charset=utf-8", PAGE)
}

async fn script() -> Response {
    security_headers("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    security_headers("text/css; charset=utf-8", STYLE)
}

/// A JSON body (at most [`MAX_BODY`] bytes: the router's limit), or the 422 to answer.
fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Refused> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let field = (field != ".").then_some(field);
        refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            &e.inner().to_string(),
            field.as_deref(),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    username: String,
    password: String,
}

/// Logs a secretary in. An unknown user, an executive and a wrong password get the same
/// answer; an address that keeps failing waits longer for each answer.
async fn login(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<Response, Refused> {
    let login: Login = parse(&body)?;
    let ip: IpAddr = peer.ip();
    let delay = web.throttle().delay_ms(ip, now_s());
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let secretary = web
        .secretaries
        .iter()
        .find(|s| s.username == login.username)
        .filter(|s| session::password_matches(s, &web.realm, &login.password));
    let Some(secretary) = secretary else {
        let failures = web.throttle().failed(ip, now_s());
        tracing::warn!(source = %ip, username = %crate::terminal::safe(&login.username), failures, "console: login refused");
        return Err(refused(
            StatusCode::UNAUTHORIZED,
            "wrong username or password",
            None,
        ));
    };
    web.throttle().succeeded(ip);
    let Some(id) = session::new_id() else {
        return Err(refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "no randomness for a session",
            None,
        ));
    };
    let expires_at = now_s() + web.session_seconds;
    let hash = session::hash_id(&id);
    web.sessions().insert(
        hash.clone(),
        Session {
            username: secretary.username.clone(),
            expires_at,
        },
    );
    web.store.write(Record::SessionOpened {
        hash,
        username: secretary.username.clone(),
        expires_at,
        at: store::now_text(),
    });
    tracing::info!(username = %secretary.username, source = %ip, "console: logged in");
    let cookie = session::set_cookie(&id, web.session_seconds as u64, false);
    let mut response = json_response(
        StatusCode::OK,
        &json!({ "username": secretary.username, "name": secretary.name }),
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

async fn logout(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let id = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(session::from_cookie_header);
    if let Some(hash) = id.and_then(|id| web.sessions().remove(id)) {
        web.store.write(Record::SessionClosed { hash });
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&session::clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The session's secretary, or the 401 to answer.
fn logged_in(web: &Web, headers: &HeaderMap) -> Result<Session, Refused> {
    web.who(headers)
        .ok_or_else(|| refused(StatusCode::UNAUTHORIZED, "not logged in", None))
}

async fn board(State(web): State<Arc<Web>>, headers: HeaderMap) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    Ok(json_response(StatusCode::OK, &web.board(&me.username)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pause {
    reason: String,
}

/// The longest pause reason.
const MAX_REASON: usize = 80;

async fn pause(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let Pause { reason } = parse(&body)?;
    let reason = reason.trim();
    if reason.is_empty()
        || reason.chars().count() > MAX_REASON
        || reason.chars().any(char::is_control)
    {
        return Err(refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a reason of 1 to 80 characters, on one line",
            Some("reason"),
        ));
    }
    if !web
        .desk
        .pause(&me.username, reason, crate::clock::unix_ms())
    {
        return Err(refused(
            StatusCode::CONFLICT,
            "not while ringing or on a call",
            None,
        ));
    }
    tracing::info!(username = %me.username, reason = %crate::terminal::safe(reason), "console: on pause");
    Ok(json_response(StatusCode::OK, &web.board(&me.username)))
}

async fn resume(State(web): State<Arc<Web>>, headers: HeaderMap) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    web.desk.resume(&me.username, crate::clock::unix_ms());
    tracing::info!(username = %me.username, "console: back from pause");
    Ok(json_response(StatusCode::OK, &web.board(&me.username)))
}

/// The board, pushed again whenever the desk or the records change (server-sent events;
/// a burst of changes gives one push).
async fn live(State(web): State<Arc<Web>>, headers: HeaderMap) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let desk = web.desk.subscribe();
    let records = web.store.subscribe();
    let state = (web, me.username, desk, records, true);
    let stream = futures_util::stream::unfold(
        state,
        |(web, me, mut desk, mut records, first)| async move {
            if !first {
                use tokio::sync::broadcast::error::RecvError;
                let heard = tokio::select! {
                    r = desk.recv() => r.map(drop),
                    r = records.recv() => r.map(drop),
                };
                // Lagging is fine (the board is rebuilt whole); a closed channel ends it.
                if let Err(RecvError::Closed) = heard {
                    return None;
                }
                // Let the rest of a burst arrive, then show it all at once.
                tokio::time::sleep(Duration::from_millis(50)).await;
                while desk.try_recv().is_ok() || records.try_recv().is_ok() {}
            }
            web.who_is_live(&me)?;
            let event = Event::default()
                .event("board")
                .data(web.board(&me).to_string());
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (web, me, desk, records, false),
            ))
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

impl Web {
    /// Whether `username` still has a live session (a live stream ends after logout).
    fn who_is_live(&self, username: &str) -> Option<()> {
        let now = now_s();
        self.sessions().any_live(username, now).then_some(())
    }
}

/// A message as the console's form sends it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageForm {
    caller_name: String,
    #[serde(default)]
    caller_company: String,
    callback: String,
    about: String,
    #[serde(default)]
    for_executive: Option<String>,
    category: String,
    #[serde(default)]
    fields: std::collections::BTreeMap<String, String>,
}

/// The longest text a message field takes.
const MAX_TEXT: usize = 2_000;

/// Checks a form against the company's plan: every text bounded and on the lines it is
/// meant to have, the executive one of the company's, the category known, the company's
/// required fields present and no field it does not ask for.
fn check_message(form: MessageForm, company: &Company) -> Result<WrittenMessage, Refused> {
    let bad = |field: &str, message: &str| {
        refused(StatusCode::UNPROCESSABLE_ENTITY, message, Some(field))
    };
    let line = |field: &str, value: &str, max: usize| -> Result<String, Refused> {
        let v = value.trim();
        if v.chars().count() > max || v.chars().any(char::is_control) {
            return Err(bad(
                field,
                &format!("at most {max} characters, on one line"),
            ));
        }
        Ok(v.to_string())
    };
    let caller_name = line("caller_name", &form.caller_name, 120)?;
    let caller_company = line("caller_company", &form.caller_company, 120)?;
    let callback = line("callback", &form.callback, 32)?;
    if !callback
        .chars()
        .all(|c| c.is_ascii_digit() || " +().-".contains(c))
    {
        return Err(bad("callback", "a phone number: digits, spaces, + ( ) . -"));
    }
    let about = form.about.trim().to_string();
    if about.is_empty() || about.chars().count() > MAX_TEXT {
        return Err(bad("about", "what the call is about: 1 to 2000 characters"));
    }
    let category = Category::parse(&form.category)
        .ok_or_else(|| bad("category", "urgent, normal, low or spam"))?;
    let for_executive = match form.for_executive.filter(|e| !e.is_empty()) {
        Some(id) if company.executives.keys().any(|k| k.0 == id) => Some(id),
        Some(_) => return Err(bad("for_executive", "one of the company's executives")),
        None => None,
    };
    let mut fields = std::collections::BTreeMap::new();
    for (name, value) in form.fields {
        let Some(field) = company.card.fields.iter().find(|f| f.name == name) else {
            return Err(bad(
                &format!("fields.{name}"),
                "not a field this company asks for",
            ));
        };
        let value = line(&format!("fields.{name}"), &value, 500)?;
        if !value.is_empty() {
            fields.insert(field.name.clone(), value);
        }
    }
    if let Some(missing) = company
        .card
        .fields
        .iter()
        .find(|f| f.required && !fields.contains_key(&f.name))
    {
        return Err(bad(
            &format!("fields.{}", missing.name),
            "required by this company",
        ));
    }
    Ok(WrittenMessage {
        caller_name,
        caller_company,
        callback,
        about,
        for_executive,
        category: category.as_str().to_string(),
        fields,
    })
}

/// Saves the message of a call she is on (or ringing, or writing up), or one she took:
/// the call's own `messages` row, a `message-written` event with who, and the end of her
/// wrap-up for that call.
async fn write_message(
    State(web): State<Arc<Web>>,
    axum::extract::Path(call): axum::extract::Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let form: MessageForm = parse(&body)?;
    let now_ms = crate::clock::unix_ms();
    let current = web
        .desk
        .view(now_ms)
        .into_iter()
        .find(|s| s.username == me.username)
        .and_then(|s| s.activity.call());
    // One read: the call's company, and who took it.
    let owner = store::call_owner(&web.db, call)
        .ok()
        .flatten()
        .ok_or_else(|| refused(StatusCode::NOT_FOUND, "no such call", None))?;
    if current != Some(call) && owner.handled_by.as_deref() != Some(me.username.as_str()) {
        return Err(refused(StatusCode::FORBIDDEN, "not a call of yours", None));
    }
    let company = owner
        .company
        .and_then(|id| web.company(&id))
        .ok_or_else(|| refused(StatusCode::NOT_FOUND, "no such call", None))?;
    let message = check_message(form, &company)?;
    let at = store::now_text();
    web.store.write(Record::Event {
        id: call,
        event: CallEvent::MessageWritten {
            by: me.username.clone(),
            category: message.category.clone(),
        },
        at: at.clone(),
    });
    web.store.write(Record::MessageWritten {
        id: call,
        message: Box::new(message),
        by: me.username.clone(),
        at,
    });
    let freed = web.desk.end_wrap_up(&me.username, call, now_ms);
    tracing::info!(username = %me.username, call, wrap_up_ended = freed, "console: message written");
    Ok(json_response(StatusCode::OK, &web.board(&me.username)))
}
