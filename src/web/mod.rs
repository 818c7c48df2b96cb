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
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;

use crate::call::context::CallContext;
use crate::desk::{Activity, Desk};
use crate::dialplan::{Category, Company};
use crate::event::CallEvent;
use crate::registrar::Secretary;
use crate::session::{self, Session, Sessions, Throttle};
use crate::store::{self, Writer};

mod agenda;
mod appointment;
mod blocked;
mod board;
mod executive;
mod inbox;
mod line;
mod live;
mod login;
mod messages;
mod range;
mod report;
mod tasks;
mod tls;
mod transfer;

pub use tls::Peer;
use tls::TlsListener;

/// The page, its script and its style (no CDN, no build step).
const PAGE: &str = include_str!("console.html");
const SCRIPT: &str = include_str!("console.js");
const STYLE: &str = include_str!("console.css");

/// How long a change waits for the records before the answer says they lag.
const COMMIT_WAIT: Duration = Duration::from_secs(2);

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
    /// Served over TLS: the cookie is `Secure`.
    secure: bool,
    sessions: Mutex<Sessions>,
    throttle: Mutex<Throttle>,
    /// Checks the links to the executives' page; without it, every link is refused.
    link_key: Option<Arc<crate::executive_link::LinkKey>>,
    /// Follow-up tasks' ids, read from the records when first needed.
    task_ids: Mutex<Option<store::TaskIds>>,
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
        secure: bool,
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
            secure,
            sessions: Mutex::new(sessions),
            throttle: Mutex::new(Throttle::default()),
            link_key: None,
            task_ids: Mutex::new(None),
        }
    }

    /// Serves the executives' page too (`/x/{token}`), with links signed by this key.
    pub fn with_executive_pages(mut self, key: Arc<crate::executive_link::LinkKey>) -> Web {
        self.link_key = Some(key);
        self
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The logged-in secretary of this request, if its session cookie is live.
    /// A script's `Authorization: Bearer` token counts as a session of its secretary while
    /// the token is live and she is still a secretary in the config.
    fn who(&self, headers: &HeaderMap) -> Option<Session> {
        if let Some(authorization) = headers.get(header::AUTHORIZATION) {
            let token = session::bearer_token(authorization.to_str().ok()?)?;
            return self.token_session(token);
        }
        let cookie = headers.get(header::COOKIE)?.to_str().ok()?;
        let id = session::from_cookie_header(cookie)?;
        self.sessions().get(id, now_s())
    }

    fn token_session(&self, token: &str) -> Option<Session> {
        let now = now_s();
        let username = match store::token_user(&self.db, &session::hash_id(token), now) {
            Ok(found) => found?,
            Err(e) => {
                tracing::warn!(error = %e, "console: API token not checked");
                return None;
            }
        };
        self.secretaries
            .iter()
            .any(|s| s.username == username)
            .then(|| Session {
                username,
                // Checked again at each request: the token may be revoked at any time.
                expires_at: now + 1,
            })
    }

    /// Whether what this request wrote is on disk within [`COMMIT_WAIT`]: then its answer,
    /// and the page's next read, show it. Not in time (a full disk): the record stays queued
    /// and will be written; the caller says so.
    async fn on_disk(&self) -> bool {
        let done = matches!(
            tokio::time::timeout(COMMIT_WAIT, self.store.committed()).await,
            Ok(Ok(()))
        );
        if !done {
            tracing::warn!("console: a change is not on disk yet; it is kept and will be written");
        }
        done
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
    tls: Option<tokio_rustls::TlsAcceptor>,
    web: Arc<Web>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route("/", get(page))
        .route("/console.js", get(script))
        .route("/console.css", get(style))
        .merge(login::routes())
        .merge(board::routes())
        .merge(messages::routes())
        .merge(line::routes())
        .merge(live::routes())
        .merge(transfer::routes())
        .merge(blocked::routes())
        .merge(executive::routes())
        .merge(inbox::routes())
        .merge(tasks::routes())
        .merge(report::routes())
        .merge(agenda::routes())
        .merge(appointment::routes())
        .layer(axum::middleware::from_fn(same_site_only))
        // Bodies beyond this are refused while being read, not after.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(web);
    let service = app.into_make_service_with_connect_info::<Peer>();
    let served = match tls {
        Some(acceptor) => match TlsListener::new(listener, acceptor) {
            Ok(listener) => {
                axum::serve(listener, service)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            Err(e) => Err(e),
        },
        None => {
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    if let Err(e) = served {
        tracing::error!(error = %e, "console listener failed");
    }
}

/// Refuses a request that changes something when a browser says it comes from another
/// site (CSRF): `Sec-Fetch-Site` other than same-origin/none, or an `Origin` that is not
/// this server. Reads (GET) go through: they change nothing, and the session cookie is
/// `SameSite=Strict` anyway.
async fn same_site_only(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
    if changes && !same_origin(request.headers()) {
        tracing::warn!(method = %request.method(), path = %request.uri().path(), "console: cross-site request refused");
        return refused(StatusCode::FORBIDDEN, "cross-site request refused", None).into_response();
    }
    next.run(request).await
}

/// Whether a browser's request comes from this server's own pages: no `Sec-Fetch-Site`
/// other than same-origin/none, and no `Origin` naming another host. A request that says
/// neither (a script, curl) is not a browser tricked by another site.
fn same_origin(headers: &HeaderMap) -> bool {
    let foreign_fetch = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site != "same-origin" && site != "none");
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let foreign_origin = headers.get(header::ORIGIN).is_some_and(|origin| {
        let origin = origin.to_str().unwrap_or_default();
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        authority.is_none() || authority != host
    });
    !foreign_fetch && !foreign_origin
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

/// The session's secretary, or the 401 to answer.
fn logged_in(web: &Web, headers: &HeaderMap) -> Result<Session, Refused> {
    web.who(headers)
        .ok_or_else(|| refused(StatusCode::UNAUTHORIZED, "not logged in", None))
}
