//! The billing report's figures, counted from the records (`report::Report`).

use std::path::Path;

use rusqlite::params;

use super::{StoreError, open_connection, sqlite};
use crate::report::Report;

/// Counts a company's month between two stored times (`report::Month::bounds`). The
/// agenda's `appointments` are counted when that table exists in this database.
pub fn report(
    path: &Path,
    company: &str,
    name: &str,
    month: &str,
    (from, to): (&str, &str),
) -> Result<Report, StoreError> {
    let conn = open_connection(path)?;
    let count = |sql: &str| -> Result<u64, StoreError> {
        conn.query_row(sql, params![company, from, to], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .map_err(sqlite(path))
    };
    // Inbound calls of the month: by when they started, in the company's month.
    const IN_MONTH: &str = "c.company = ?1 AND c.started_at >= ?2 AND c.started_at < ?3";
    let calls = count(&format!(
        "SELECT count(*) FROM calls c WHERE {IN_MONTH} AND c.direction = 'inbound'"
    ))?;
    let answered = count(&format!(
        "SELECT count(*) FROM calls c WHERE {IN_MONTH} AND c.direction = 'inbound'
         AND (c.handled_by IS NOT NULL OR c.transferred_to IS NOT NULL)"
    ))?;
    let grouped = |sql: &str| -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = conn.prepare(sql).map_err(sqlite(path))?;
        let rows = stmt
            .query_map(params![company, from, to], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })
            .map_err(sqlite(path))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sqlite(path))
    };
    let by_outcome = grouped(&format!(
        "SELECT coalesce(c.outcome, 'in-progress'), count(*) FROM calls c
         WHERE {IN_MONTH} AND c.direction = 'inbound' GROUP BY 1"
    ))?;
    let by_category = grouped(&format!(
        "SELECT m.category, count(*) FROM calls c JOIN messages m ON m.call_id = c.id
         WHERE {IN_MONTH} AND c.direction = 'inbound' GROUP BY 1"
    ))?;
    // A secretary's time on a call: from her answer to the call's end, whole seconds.
    let secretary_seconds = count(&format!(
        "SELECT coalesce(sum(max(0, CAST(round((julianday(c.ended_at) - julianday(c.handled_at)) * 86400) AS INTEGER))), 0)
         FROM calls c WHERE {IN_MONTH} AND c.handled_by IS NOT NULL
         AND c.handled_at IS NOT NULL AND c.ended_at IS NOT NULL"
    ))?;
    // A message is what someone can read: written by a secretary, or a voice left.
    let messages = count(&format!(
        "SELECT count(*) FROM calls c JOIN messages m ON m.call_id = c.id
         WHERE {IN_MONTH} AND c.direction = 'inbound'
         AND (m.written_by IS NOT NULL OR (m.recording IS NOT NULL AND m.recording_empty = 0))"
    ))?;
    let has_agenda: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'appointments'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(sqlite(path))?
        > 0;
    let appointments = if has_agenda {
        Some(count(
            "SELECT count(*) FROM appointments WHERE company = ?1
             AND starts_at >= ?2 AND starts_at < ?3 AND status <> 'cancelled'",
        )?)
    } else {
        None
    };
    let tasks_done = count(
        "SELECT count(*) FROM tasks WHERE company = ?1 AND status = 'done'
         AND done_at >= ?2 AND done_at < ?3",
    )?;
    let outbound_calls = count(&format!(
        "SELECT count(*) FROM calls c WHERE {IN_MONTH} AND c.direction = 'outbound'"
    ))?;
    Ok(Report {
        company: company.to_string(),
        name: name.to_string(),
        month: month.to_string(),
        calls,
        answered,
        by_outcome: by_outcome.into_iter().collect(),
        by_category: by_category.into_iter().collect(),
        secretary_seconds,
        messages,
        appointments,
        tasks_done,
        outbound_calls,
    })
}
