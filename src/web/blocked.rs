//! The block lists in the console: a secretary blocks a caller's number for a company she
//! serves (the card's "spam" button), sees each company's list, and lifts a block. Every
//! change goes through the store's writer, is committed, and is in force for the next
//! call as soon as the answer comes back.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::json;

use super::*;
use crate::blocklist::{self, BlockEntry};
use crate::store::{self, Record};

pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/api/blocked", get(list).post(add))
        .route("/api/blocked/{id}", delete(remove))
}

/// A block as the API shows it.
fn entry_json(e: &BlockEntry) -> serde_json::Value {
    json!({ "id": e.id, "company": e.company, "number": e.number.as_str(), "reason": e.reason,
            "added_by": e.added_by, "added_at": e.added_at })
}

impl Web {
    /// The companies this secretary serves.
    pub(super) fn serves(&self, username: &str, company: &str) -> bool {
        self.secretaries
            .iter()
            .any(|s| s.username == username && s.companies.iter().any(|c| c == company))
    }

    /// What the card says of a caller who is unwanted: the company's block of the number
    /// (who, when, why), and whether the number is in a telemarketing range the company
    /// points out.
    pub(super) fn spam_flags(
        &self,
        company: &Company,
        caller: &crate::dialplan::Caller,
    ) -> serde_json::Value {
        let block = self.calls.blocked.get();
        let block = block.blocking(&company.id.0, caller).map(entry_json);
        json!({ "blocked": block, "telemarketing": company.labels_telemarketing(caller) })
    }

    /// Waits for what was written to be committed, then reads the block list again so
    /// that the next call finds it in force; the list, or the 503 to answer.
    async fn committed_list(&self) -> Result<Arc<blocklist::BlockList>, Refused> {
        let unavailable = || {
            refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "the records cannot be written now",
                None,
            )
        };
        if !self.on_disk().await {
            return Err(unavailable());
        }
        let live = Arc::clone(&self.calls.blocked);
        match tokio::task::spawn_blocking(move || live.reload()).await {
            Ok(Ok(())) => Ok(self.calls.blocked.get()),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "console: block list not read back");
                Err(unavailable())
            }
            Err(_) => Err(unavailable()),
        }
    }
}

/// The company named by `?company=` (one she serves), or every company she serves.
fn companies_asked(web: &Web, username: &str, query: Option<&str>) -> Result<Vec<String>, Refused> {
    let bad = || {
        refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "expected ?company=ID",
            Some("company"),
        )
    };
    let mine: Vec<String> = web
        .secretaries
        .iter()
        .filter(|s| s.username == username)
        .flat_map(|s| s.companies.iter().cloned())
        .collect();
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(mine);
    };
    let company = query.strip_prefix("company=").ok_or_else(bad)?;
    if company.is_empty()
        || company.len() > 64
        || !company
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(bad());
    }
    if !mine.iter().any(|c| c == company) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "not a company you serve",
            Some("company"),
        ));
    }
    Ok(vec![company.to_string()])
}

/// `GET /api/blocked[?company=ID]`: the live blocks of a company she serves (or of each),
/// newest first.
async fn list(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let companies = companies_asked(&web, &me.username, query.as_deref())?;
    let list = web.calls.blocked.get();
    let blocked: Vec<serde_json::Value> = companies
        .iter()
        .flat_map(|c| list.company(c))
        .map(entry_json)
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "companies": companies, "blocked": blocked }),
    ))
}

/// A block as the console sends it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBlock {
    company: String,
    number: String,
    reason: String,
}

/// `POST /api/blocked`: blocks a number for a company she serves. 201 with the block; 200
/// with the block already in force when the number was blocked (nothing changes).
async fn add(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let form: NewBlock = parse(&body)?;
    let company = web.company(&form.company).ok_or_else(|| {
        refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no such company",
            Some("company"),
        )
    })?;
    if !web.serves(&me.username, &company.id.0) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "not a company you serve",
            Some("company"),
        ));
    }
    let invalid = |e: blocklist::BlockError| {
        refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            &e.to_string(),
            Some(e.field()),
        )
    };
    let number = blocklist::number(&form.number, company.country).map_err(invalid)?;
    let reason = blocklist::reason(&form.reason).map_err(invalid)?;
    if let Some(already) = web.calls.blocked.get().get(&company.id.0, &number) {
        return Ok(json_response(
            StatusCode::OK,
            &json!({ "blocked": entry_json(already), "created": false }),
        ));
    }
    web.store.write(Record::Blocked {
        company: company.id.0.clone(),
        number: number.to_string(),
        reason,
        by: me.username.clone(),
        at: store::now_text(),
    });
    let list = web.committed_list().await?;
    let entry = list.get(&company.id.0, &number).ok_or_else(|| {
        refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "the block was not recorded",
            None,
        )
    })?;
    // Someone else may have blocked it in the meantime: theirs stands, and says so.
    let created = entry.added_by == me.username;
    tracing::info!(username = %me.username, company = %company.id, number = %number, id = entry.id, "console: number blocked");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(
        status,
        &json!({ "blocked": entry_json(entry), "created": created }),
    ))
}

/// `DELETE /api/blocked/{id}`: lifts a block of a company she serves; the block stays in
/// the records with who lifted it and when.
async fn remove(
    State(web): State<Arc<Web>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let not_found = || refused(StatusCode::NOT_FOUND, "no such block in force", None);
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let entry = web
        .calls
        .blocked
        .get()
        .by_id(id)
        .cloned()
        .ok_or_else(not_found)?;
    if !web.serves(&me.username, &entry.company) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "not a company you serve",
            None,
        ));
    }
    web.store.write(Record::Unblocked {
        id,
        by: me.username.clone(),
        at: store::now_text(),
    });
    let list = web.committed_list().await?;
    if list.by_id(id).is_some() {
        return Err(refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "the block was not lifted",
            None,
        ));
    }
    tracing::info!(username = %me.username, company = %entry.company, number = %entry.number, id, "console: block lifted");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "removed": entry_json(&entry) }),
    ))
}
