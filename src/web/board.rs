//! The live board (the desk's view, the queue, the card of her call), and pause.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use super::*;
use crate::store;

pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/api/board", get(board))
        .route("/api/pause", post(pause))
        .route("/api/resume", post(resume))
}

/// A page's card, built once per call and kept until [`CardCache::forget`].
#[derive(Default)]
pub(super) struct CardCache {
    call: Option<i64>,
    card: Option<serde_json::Value>,
}

impl CardCache {
    /// The call the kept card is about.
    pub(super) fn call(&self) -> Option<i64> {
        self.call
    }

    /// Something about the call changed: the next board reads the card again.
    pub(super) fn forget(&mut self) {
        self.card = None;
    }
}

impl Web {
    /// The board as the page shows it.
    pub(super) fn board(&self, me: &str) -> serde_json::Value {
        self.board_with(me, &mut CardCache::default())
    }

    /// The board, the card taken from `cache` while it is still about her call (a live
    /// page rebuilds its board at every change on the desk; the card's reads from the
    /// records are needed only when its call changes or a record about it is committed).
    pub(super) fn board_with(&self, me: &str, cache: &mut CardCache) -> serde_json::Value {
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
        let card = mine.and_then(|call| {
            if cache.call != Some(call) || cache.card.is_none() {
                cache.call = Some(call);
                cache.card = self.card(call);
            }
            cache.card.clone()
        });
        let lines = self.lines_of(me);
        json!({ "me": me, "now_ms": now_ms, "seats": seats, "queue": queue, "card": card,
                "lines": lines })
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
        if row.outbound {
            // She placed it from a task (its page is open): no caller's card, no message.
            return None;
        }
        let company = self.company(row.company.as_deref()?)?;
        let now = jiff::Timestamp::now();
        let local = crate::schedule::local_time(now, &company.timezone);
        let executives: Vec<serde_json::Value> = company
            .executives
            .iter()
            .map(|(id, e)| {
                let dnd = self.calls.dnd.current(&id.0, now);
                json!({ "id": id.0, "name": e.name, "reachable_now": e.accepts_at(local),
                        "transferable": self.transferable(id, e),
                        "dnd": dnd.map(|d| json!({
                            "until": store::time_text(d.until),
                            "until_local": crate::schedule::local_time(d.until, &company.timezone)
                                .strftime("%Y-%m-%d %H:%M").to_string(),
                            "until_ms": d.until.as_millisecond(),
                        })) })
            })
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
        let spam = self.spam_flags(&company, &caller);
        let membership = company.membership(&caller, !spam["blocked"].is_null());
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
            "transfer": self.transfer_on_card(call),
            "spam": spam,
            "line": self.line(&company, jiff::Timestamp::now()),
        }))
    }
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
    // `permanence secretaries` reads the records: answer once they show it.
    web.on_disk().await;
    Ok(json_response(StatusCode::OK, &web.board(&me.username)))
}

async fn resume(State(web): State<Arc<Web>>, headers: HeaderMap) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    web.desk.resume(&me.username, crate::clock::unix_ms());
    tracing::info!(username = %me.username, "console: back from pause");
    web.on_disk().await;
    Ok(json_response(StatusCode::OK, &web.board(&me.username)))
}
