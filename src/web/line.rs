//! A company's line switched by hand from the console: closed or open until a time, with
//! the reason, or ended early; only for the companies the secretary serves. The override
//! goes into the server's `Lines` (routing reads it there) and into the records, in the
//! same order; the answer comes once the records hold it.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::*;
use crate::line::{LineOverride, LineState, parse_until};
use crate::store::{self, Record};

pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new().route(
        "/api/companies/{id}/line",
        get(show).post(switch).delete(end),
    )
}

/// A switch as the console sends it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Switch {
    state: String,
    until: String,
    reason: String,
}

impl Web {
    /// A company's line as the console shows it at `now`: open or closed, what the hours
    /// say and why, and the override in force with its reason and end, if any.
    pub(super) fn line(&self, company: &Company, now: jiff::Timestamp) -> serde_json::Value {
        let local = crate::schedule::local_time(now, &company.timezone);
        let hours = company.hours.at(local);
        let line = self.calls.lines.current(&company.id, now);
        let open = line
            .as_ref()
            .map_or(hours.is_open(), |l| l.state == LineState::Open);
        let local_text = |t: jiff::Timestamp| {
            crate::schedule::local_time(t, &company.timezone)
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        };
        let line = line.map(|l| {
            json!({
                "state": l.state.as_str(),
                "until": store::time_text(l.until),
                "until_local": local_text(l.until),
                "until_ms": l.until.as_millisecond(),
                "reason": l.reason,
                "set_by": l.set_by,
                "set_at": store::time_text(l.since),
            })
        });
        json!({
            "company": company.id.0,
            "name": company.name,
            "timezone": company.timezone_name,
            "local_time": local_text(now),
            "open": open,
            "hours": { "open": hours.is_open(), "why": hours.reason().to_string() },
            "override": line,
        })
    }

    /// The lines of every company she serves (in her list's order), for the board.
    pub(super) fn lines_of(&self, username: &str) -> Vec<serde_json::Value> {
        let now = jiff::Timestamp::now();
        self.secretaries
            .iter()
            .filter(|s| s.username == username)
            .flat_map(|s| s.companies.iter())
            .filter_map(|id| self.company(id))
            .map(|company| self.line(&company, now))
            .collect()
    }

    /// The company `id`, if she serves it: 403 when she does not, 404 when the plans have
    /// no such company.
    fn served(&self, username: &str, id: &str) -> Result<Arc<Company>, Refused> {
        let serves = self
            .secretaries
            .iter()
            .any(|s| s.username == username && s.companies.iter().any(|c| c == id));
        if !serves {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "not a company you serve",
                None,
            ));
        }
        self.company(id)
            .ok_or_else(|| refused(StatusCode::NOT_FOUND, "no such company", None))
    }

    /// Waits until the records hold what was just written; the answer to give otherwise.
    async fn recorded(&self) -> Result<(), Refused> {
        if self.on_disk().await {
            return Ok(());
        }
        tracing::error!("console: a line's change is in force but not yet recorded");
        Err(refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "the records are not being written: the change is in force and will be recorded once they are",
            None,
        ))
    }
}

/// `GET`: the company's line now.
async fn show(
    State(web): State<Arc<Web>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let company = web.served(&me.username, &id)?;
    Ok(json_response(
        StatusCode::OK,
        &web.line(&company, jiff::Timestamp::now()),
    ))
}

/// `POST`: switches the line closed or open until a time, replacing the override in force.
async fn switch(
    State(web): State<Arc<Web>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let company = web.served(&me.username, &id)?;
    let switch: Switch = parse(&body)?;
    let now = jiff::Timestamp::now();
    let bad = |e: crate::line::LineError| {
        refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            &e.to_string(),
            Some(e.field()),
        )
    };
    let state = LineState::parse(&switch.state).ok_or(crate::line::LineError::State);
    let line = state
        .and_then(|state| {
            let until = parse_until(&switch.until, &company.timezone)?;
            LineOverride::new(state, until, &switch.reason, &me.username, now)
        })
        .map_err(bad)?;
    tracing::info!(
        username = %me.username,
        company = %company.id,
        state = line.state.as_str(),
        until = %line.until,
        reason = %crate::terminal::safe(&line.reason),
        "console: line switched by hand"
    );
    let record = Record::LineSet {
        company: company.id.0.clone(),
        state: line.state.as_str(),
        until: store::time_text(line.until),
        reason: line.reason.clone(),
        by: me.username.clone(),
        at: store::time_text(now),
    };
    web.calls
        .lines
        .replace(&company.id, Some(line), now, |_| web.store.write(record));
    web.recorded().await?;
    Ok(json_response(StatusCode::OK, &web.line(&company, now)))
}

/// `DELETE`: ends the override in force early; the hours decide again.
async fn end(
    State(web): State<Arc<Web>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let company = web.served(&me.username, &id)?;
    let now = jiff::Timestamp::now();
    let ended = web.calls.lines.replace(&company.id, None, now, |previous| {
        if previous.is_some() {
            web.store.write(Record::LineEnded {
                company: company.id.0.clone(),
                by: me.username.clone(),
                at: store::time_text(now),
            });
        }
    });
    if ended.is_none() {
        return Err(refused(
            StatusCode::NOT_FOUND,
            "no override in force: the hours decide",
            None,
        ));
    }
    tracing::info!(username = %me.username, company = %company.id, "console: line override ended early");
    web.recorded().await?;
    Ok(json_response(StatusCode::OK, &web.line(&company, now)))
}
