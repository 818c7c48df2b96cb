//! The messages inbox: the list across the companies she serves (filters, text search,
//! pages), a message's page (its call, timeline and history), its status, and the
//! voicemail recording, served with byte ranges.
//!
//! A secretary sees the messages of the companies she serves (`[[secretaries]] companies`)
//! and no others: asking the list for another company is 403; a message or a recording of
//! another company is 404, the same answer as one that does not exist, so that call ids
//! cannot be probed. Reads run on the blocking pool (a text search scans the messages:
//! the signalling runtime must not wait for it).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use super::range::{Ranged, byte_range};
use super::*;
use crate::inbox::{Status, When};
use crate::store::inbox::{InboxQuery, Scope, StatusFilter};
use crate::store::{self, Record};

/// The inbox's part of the page (a script of its own, so that it reads as one part).
const INBOX_SCRIPT: &str = include_str!("inbox.js");

/// Messages per page unless `limit` says otherwise, and the most it may say.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 200;
/// The longest text search.
const MAX_SEARCH: usize = 100;
/// The longest query string read.
const MAX_QUERY: usize = 2048;
/// The size of each piece of a recording sent.
const CHUNK: usize = 64 * 1024;

pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/inbox.js", get(script))
        .route("/api/messages", get(list))
        .route("/api/messages/{call}", get(one))
        .route("/api/messages/{call}/status", post(set_status))
        .route("/api/recordings/{call}", get(recording))
}

async fn script() -> Response {
    security_headers("text/javascript; charset=utf-8", INBOX_SCRIPT)
}

impl Web {
    /// The companies a secretary serves, as the config lists them.
    pub(super) fn companies_served(&self, username: &str) -> Vec<String> {
        self.secretaries
            .iter()
            .find(|s| s.username == username)
            .map(|s| s.companies.clone())
            .unwrap_or_default()
    }

    /// The company's name in the plans in force (its id when it has no plan any more).
    fn company_name(&self, id: &str) -> String {
        self.company(id)
            .map_or_else(|| id.to_string(), |c| c.name.clone())
    }
}

/// The list's parameters, checked.
#[derive(Debug, Default, PartialEq)]
struct ListParams {
    company: Option<String>,
    category: Option<String>,
    status: Option<StatusFilter>,
    from: Option<When>,
    to: Option<When>,
    q: Option<String>,
    before: Option<i64>,
    limit: Option<usize>,
}

/// Reads the query string by hand (`form_urlencoded`, already built for `url`): axum's
/// `Query` extractor would answer a bad parameter with its own plain-text 400, and here
/// each parameter gets its own check and a 422 naming it; a parameter given twice or one
/// we do not know is refused rather than guessed at.
fn list_params(raw: Option<&str>) -> Result<ListParams, Refused> {
    let raw = raw.unwrap_or_default();
    let bad = |field: &str, message: &str| {
        refused(StatusCode::UNPROCESSABLE_ENTITY, message, Some(field))
    };
    if raw.len() > MAX_QUERY {
        return Err(refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "query string too long",
            None,
        ));
    }
    let mut p = ListParams::default();
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
        // The name is echoed in the answer: bounded (JSON escapes the rest).
        let name: String = key.chars().take(40).collect();
        if seen.iter().any(|k| *k == key) {
            return Err(bad(&name, "given more than once"));
        }
        seen.push(key.to_string());
        let value = value.trim();
        let one_line =
            |max: usize| value.chars().count() <= max && !value.chars().any(char::is_control);
        match &*key {
            "company" => {
                if value.is_empty() || !one_line(64) {
                    return Err(bad("company", "a company id"));
                }
                p.company = Some(value.to_string());
            }
            "category" => {
                let category = crate::dialplan::Category::parse(value)
                    .ok_or_else(|| bad("category", "urgent, normal, low or spam"))?;
                p.category = Some(category.as_str().to_string());
            }
            "status" => {
                p.status = Some(match value {
                    "all" => StatusFilter::Any,
                    other => StatusFilter::Is(
                        Status::parse(other)
                            .ok_or_else(|| bad("status", "new, read, done, filed or all"))?,
                    ),
                });
            }
            "from" | "to" => {
                let when = When::parse(value).ok_or_else(|| {
                    bad(
                        &key,
                        "a date (2026-11-27) or an RFC 3339 time (2026-11-27T09:00:00+01:00)",
                    )
                })?;
                if key == "from" {
                    p.from = Some(when);
                } else {
                    p.to = Some(when);
                }
            }
            "q" => {
                if !one_line(MAX_SEARCH) {
                    return Err(bad("q", "at most 100 characters, on one line"));
                }
                p.q = (!value.is_empty()).then(|| value.to_string());
            }
            "before" => {
                let before = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad("before", "a call id (the previous page's `next`)"))?;
                p.before = Some(before);
            }
            "limit" => {
                let limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| bad("limit", "1 to 200"))?;
                p.limit = Some(limit);
            }
            _ => return Err(bad(&name, "unknown parameter")),
        }
    }
    Ok(p)
}

/// The instants a filter's ends mean in a company's time zone, as stored text.
fn window(
    from: Option<When>,
    to: Option<When>,
    tz: &jiff::tz::TimeZone,
) -> Result<(Option<String>, Option<String>), Refused> {
    let text = |t: jiff::Timestamp| format!("{t:.3}");
    let bad = |field: &str| {
        refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "out of the calendar's range",
            Some(field),
        )
    };
    let since = match from {
        Some(w) => Some(w.start(tz).ok_or_else(|| bad("from"))?),
        None => None,
    };
    let until = match to {
        Some(w) => Some(w.end(tz).ok_or_else(|| bad("to"))?),
        None => None,
    };
    if let (Some(s), Some(u)) = (since, until)
        && u <= s
    {
        return Err(refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ends before `from`",
            Some("to"),
        ));
    }
    Ok((since.map(text), until.map(text)))
}

/// Runs a read of the records on the blocking pool.
pub(super) async fn read<T: Send + 'static>(
    web: &Web,
    f: impl FnOnce(&Path) -> Result<T, store::StoreError> + Send + 'static,
) -> Result<T, Refused> {
    let db = web.db.clone();
    match tokio::task::spawn_blocking(move || f(&db)).await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "console: the records cannot be read");
            Err(refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "the records cannot be read",
                None,
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "console: a read of the records failed");
            Err(refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the records cannot be read",
                None,
            ))
        }
    }
}

/// `GET /api/messages`: the messages of the companies she serves, newest first.
async fn list(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let params = list_params(uri.query())?;
    let serves = web.companies_served(&me.username);
    let companies = match params.company {
        Some(c) if serves.contains(&c) => vec![c],
        Some(_) => {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "not a company you serve",
                Some("company"),
            ));
        }
        None => serves.clone(),
    };
    let mut scopes = Vec::with_capacity(companies.len());
    for company in companies {
        // A day is the company's own: its plan's time zone (UTC once it has no plan).
        let tz = web
            .company(&company)
            .map_or(jiff::tz::TimeZone::UTC, |c| c.timezone.clone());
        let (since, until) = window(params.from, params.to, &tz)?;
        scopes.push(Scope {
            company,
            since,
            until,
        });
    }
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
    let query = InboxQuery {
        scopes,
        category: params.category,
        status: params.status.unwrap_or(StatusFilter::Inbox),
        text: params.q,
        before: params.before,
        // One more than asked: whether there is a next page.
        limit: limit + 1,
    };
    let mut rows = read(&web, move |db| store::inbox::list(db, &query)).await?;
    let next = (rows.len() > limit).then(|| {
        rows.truncate(limit);
        rows.last().map(|m| m.call)
    });
    let messages: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|m| with_company_name(&web, m))
        .collect();
    let companies: Vec<serde_json::Value> = serves
        .iter()
        .map(|c| json!({ "id": c, "name": web.company_name(c) }))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "messages": messages, "next": next.flatten(), "companies": companies }),
    ))
}

fn with_company_name(web: &Web, m: store::inbox::InboxMessage) -> serde_json::Value {
    let name = web.company_name(&m.company);
    let mut value = serde_json::to_value(m).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("company_name".into(), json!(name));
    }
    value
}

/// A call id from the path, or the 422 naming it.
fn call_id(text: &str) -> Result<i64, Refused> {
    text.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a call id (a positive number)",
            Some("call"),
        )
    })
}

fn not_found() -> Refused {
    refused(StatusCode::NOT_FOUND, "no such message", None)
}

/// A message's page as JSON: the message, its call, timeline and history, and what its
/// edit form needs from the company's plan (executives, fields). `None` when it does not
/// exist or is of a company she does not serve.
async fn detail(web: &Web, username: &str, call: i64) -> Result<serde_json::Value, Refused> {
    let found = read(web, move |db| store::inbox::message(db, call)).await?;
    let Some(detail) =
        found.filter(|d| web.companies_served(username).contains(&d.message.company))
    else {
        return Err(not_found());
    };
    let company = web.company(&detail.message.company);
    let executives: Vec<serde_json::Value> = company
        .iter()
        .flat_map(|c| c.executives.iter())
        .map(|(id, e)| json!({ "id": id.0, "name": e.name }))
        .collect();
    let fields: Vec<serde_json::Value> = company
        .iter()
        .flat_map(|c| c.card.fields.iter())
        .map(|f| json!({ "name": f.name, "label": f.label, "required": f.required }))
        .collect();
    let company = json!({
        "id": detail.message.company,
        "name": web.company_name(&detail.message.company),
        "executives": executives,
        "fields": fields,
    });
    Ok(json!({
        "message": with_company_name(web, detail.message),
        "call": detail.call,
        "timeline": detail.timeline,
        "history": detail.history,
        "company": company,
    }))
}

/// `GET /api/messages/{call}`.
async fn one(
    State(web): State<Arc<Web>>,
    axum::extract::Path(call): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let call = call_id(&call)?;
    Ok(json_response(
        StatusCode::OK,
        &detail(&web, &me.username, call).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusForm {
    status: String,
}

/// `POST /api/messages/{call}/status`: done, back to new (or read, filed); who and when
/// are kept with the change, and the call's timeline says it. Answered once on disk,
/// with the message's page.
async fn set_status(
    State(web): State<Arc<Web>>,
    axum::extract::Path(call): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let call = call_id(&call)?;
    let StatusForm { status } = parse(&body)?;
    let status = Status::parse(&status).ok_or_else(|| {
        refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "new, read, done or filed",
            Some("status"),
        )
    })?;
    let company = read(&web, move |db| store::inbox::recording(db, call))
        .await?
        .map(|(company, _)| company);
    if !company.is_some_and(|c| web.companies_served(&me.username).contains(&c)) {
        return Err(not_found());
    }
    web.store.write(Record::MessageStatus {
        id: call,
        status,
        by: me.username.clone(),
        at: store::now_text(),
    });
    web.on_disk().await;
    tracing::info!(username = %me.username, call, status = status.as_str(), "console: message status");
    Ok(json_response(
        StatusCode::OK,
        &detail(&web, &me.username, call).await?,
    ))
}

/// A stored recording path as a file under `data/recordings/`: relative, first component
/// `recordings`, and nothing but plain names after it (no `..`, no root; a `.` inside is
/// dropped by `components`, and harmless).
pub(super) fn confined(data: &Path, stored: &str) -> Option<PathBuf> {
    let relative = Path::new(stored);
    let mut parts = relative.components();
    if parts.next() != Some(Component::Normal("recordings".as_ref())) {
        return None;
    }
    let rest: Vec<Component> = parts.collect();
    if rest.is_empty()
        || !rest.iter().all(|p| matches!(p, Component::Normal(_)))
        || stored.contains('\\')
    {
        return None;
    }
    Some(data.join(relative))
}

/// `GET /api/recordings/{call}`: the voicemail WAV, whole or the byte range asked for.
async fn recording(
    State(web): State<Arc<Web>>,
    axum::extract::Path(call): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let call = call_id(&call)?;
    let found = read(&web, move |db| store::inbox::recording(db, call)).await?;
    let Some((company, stored)) = found else {
        return Err(not_found());
    };
    if !web.companies_served(&me.username).contains(&company) {
        return Err(not_found());
    }
    let no_recording = || refused(StatusCode::NOT_FOUND, "no recording", None);
    let stored = stored.ok_or_else(no_recording)?;
    let Some(path) = confined(&web.calls.data, &stored) else {
        tracing::warn!(call, path = %crate::terminal::safe(&stored), "console: a recording outside data/recordings refused");
        return Err(no_recording());
    };
    let file = open_confined(&web.calls.data, &path).await.map_err(|e| {
        tracing::warn!(call, error = %e, "console: recording not served");
        no_recording()
    })?;
    let (file, len) = file;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    send_file(file, len, byte_range(range, len), call).await
}

/// Opens a recording once its real path (links resolved) is still under
/// `data/recordings/`, and is a file: the file and its length.
pub(super) async fn open_confined(
    data: &Path,
    path: &Path,
) -> std::io::Result<(tokio::fs::File, u64)> {
    let root = tokio::fs::canonicalize(data.join("recordings")).await?;
    let real = tokio::fs::canonicalize(path).await?;
    if !real.starts_with(&root) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "a link out of data/recordings",
        ));
    }
    let file = tokio::fs::File::open(&real).await?;
    let meta = file.metadata().await?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file",
        ));
    }
    Ok((file, meta.len()))
}

/// The answer for a recording: 200 whole, 206 a part, 416 nothing; the body read from the
/// file as it is sent.
pub(super) async fn send_file(
    mut file: tokio::fs::File,
    len: u64,
    range: Ranged,
    call: i64,
) -> Result<Response, Refused> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let (status, start, count) = match range {
        Ranged::Whole => (StatusCode::OK, 0, len),
        Ranged::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Ranged::Unsatisfiable => {
            let mut response = Refused {
                status: StatusCode::RANGE_NOT_SATISFIABLE,
                message: "range not satisfiable".into(),
                field: None,
            }
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(response);
        }
    };
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|_| refused(StatusCode::NOT_FOUND, "no recording", None))?;
    }
    // Pieces of the file as they are read; a read error ends the body early (the client
    // sees it short of its Content-Length).
    let reader = Some(file.take(count));
    let stream = futures_util::stream::unfold(reader, |reader| async move {
        let mut reader = reader?;
        let mut buf = vec![0u8; CHUNK];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), Some(reader)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"call-{call}.wav\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", start + count - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_path_stays_under_data_recordings() {
        let data = Path::new("/srv/data");
        assert_eq!(
            confined(data, "recordings/acme/2026-11-27/call-3.wav"),
            Some(PathBuf::from(
                "/srv/data/recordings/acme/2026-11-27/call-3.wav"
            ))
        );
        for hostile in [
            "recordings/../permanence.db",
            "recordings/acme/../../permanence.db",
            "/etc/passwd",
            "../data/recordings/x.wav",
            "permanence.db",
            "./recordings/x.wav",
            "recordings",
            "recordings\\..\\permanence.db",
            "",
        ] {
            assert_eq!(confined(data, hostile), None, "{hostile}");
        }
    }

    #[test]
    fn list_parameters_are_checked_one_by_one() {
        let p = list_params(Some(
            "company=acme&category=urgent&status=done&from=2026-11-27&to=2026-11-28&q=Lilas+3&before=40&limit=10",
        ))
        .unwrap();
        assert_eq!(p.company.as_deref(), Some("acme"));
        assert_eq!(p.category.as_deref(), Some("urgent"));
        assert_eq!(p.status, Some(StatusFilter::Is(Status::Done)));
        assert_eq!(p.q.as_deref(), Some("Lilas 3"));
        assert_eq!((p.before, p.limit), (Some(40), Some(10)));
        assert_eq!(list_params(None).unwrap(), ListParams::default());
        assert_eq!(
            list_params(Some("q=")).unwrap().q,
            None,
            "an empty search is none"
        );
        let refused_field = |q: &str| list_params(Some(q)).unwrap_err().field;
        for (query, field) in [
            ("category=vip", "category"),
            ("status=archived", "status"),
            ("from=27/11/2026", "from"),
            ("to=tomorrow", "to"),
            ("limit=0", "limit"),
            ("limit=201", "limit"),
            ("limit=-1", "limit"),
            ("before=abc", "before"),
            ("before=0", "before"),
            ("q=a%0Ab", "q"),
            ("company=", "company"),
            ("company=a%00", "company"),
            ("sort=asc", "sort"),
            ("q=a&q=b", "q"),
        ] {
            assert_eq!(refused_field(query).as_deref(), Some(field), "{query}");
        }
        let long = format!("q={}", "x".repeat(101));
        assert_eq!(refused_field(&long).as_deref(), Some("q"));
    }

    #[test]
    fn a_window_ending_before_it_starts_is_refused() {
        let utc = jiff::tz::TimeZone::UTC;
        let day = |s| When::parse(s);
        assert_eq!(
            window(day("2026-11-27"), day("2026-11-27"), &utc).unwrap(),
            (
                Some("2026-11-27T00:00:00.000Z".to_string()),
                Some("2026-11-28T00:00:00.000Z".to_string())
            ),
            "one whole day"
        );
        let e = window(day("2026-11-28"), day("2026-11-27"), &utc).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("to"));
    }
}
