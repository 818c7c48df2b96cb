//! The billing report in the console: `GET /api/report?company=ID&month=YYYY-MM`, as JSON
//! or (`&format=csv`) the same CSV as `permanence report --csv`. Only for a company the
//! secretary serves.

use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::inbox::read;
use super::*;
use crate::report::Month;

/// The monthly report's console API (`/api/report`).
pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new().route("/api/report", get(report))
}

/// `GET /api/report?company=ID&month=YYYY-MM[&format=csv]`.
async fn report(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let (mut company, mut month, mut csv) = (None, None, false);
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*k {
            "company" => company = Some(v.into_owned()),
            "month" => month = Some(v.into_owned()),
            "format" if v == "csv" => csv = true,
            "format" if v == "json" => csv = false,
            _ => {
                return Err(refused(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "expected ?company=ID&month=YYYY-MM[&format=csv]",
                    None,
                ));
            }
        }
    }
    let company = company.ok_or_else(|| {
        refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "expected ?company=ID",
            Some("company"),
        )
    })?;
    let month = Month::parse(month.as_deref().unwrap_or_default()).map_err(|e| {
        refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            &e.to_string(),
            Some("month"),
        )
    })?;
    let company = web.served_company(&me.username, &company)?;
    let bounds = month.bounds(&company.timezone).ok_or_else(|| {
        refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "month out of range",
            Some("month"),
        )
    })?;
    let (id, name) = (company.id.0.clone(), company.name.clone());
    let report = read(&web, move |db| {
        store::report(db, &id, &name, &month.to_string(), (&bounds.0, &bounds.1))
    })
    .await?;
    if csv {
        let filename = format!(
            "attachment; filename=\"{}-{}.csv\"",
            report.company, report.month
        );
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, filename),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
            report.csv(),
        )
            .into_response());
    }
    let minutes = report.secretary_minutes();
    let mut body = serde_json::to_value(&report).unwrap_or_else(|_| json!({}));
    body["secretary_minutes"] = json!(minutes);
    Ok(json_response(StatusCode::OK, &body))
}
