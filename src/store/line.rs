//! Companies' lines switched by hand (`line_overrides`): each override set, with who and
//! when, and who ended it early. Setting one ends the one in force, so that the current
//! override of a company is the latest that is neither over nor ended.

use std::path::Path;

use rusqlite::params;

use super::{Record, StoreError};
use crate::dialplan::CompanyId;
use crate::line::{LineOverride, LineState};

/// A time as the records store it (RFC 3339 UTC, milliseconds): what `now_text` writes,
/// so that stored times compare as text.
pub fn time_text(t: jiff::Timestamp) -> String {
    format!("{t:.3}")
}

/// Writes a line's change: the override in force (if any) is ended at `at` by whoever
/// acts, and a new one is inserted when one is set.
pub(super) fn apply(tx: &rusqlite::Transaction, record: &Record) -> rusqlite::Result<()> {
    let (company, by, at) = match record {
        Record::LineSet {
            company, by, at, ..
        }
        | Record::LineEnded { company, by, at } => (company, by, at),
        // `store::apply` sends only the records above here.
        _ => return Ok(()),
    };
    tx.prepare_cached(
        "UPDATE line_overrides SET ended_at = ?2, ended_by = ?3
         WHERE company = ?1 AND ended_at IS NULL AND until > ?2",
    )?
    .execute(params![company, at, by])?;
    if let Record::LineSet {
        state,
        until,
        reason,
        ..
    } = record
    {
        tx.prepare_cached(
            "INSERT INTO line_overrides (company, state, until, reason, set_by, set_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![company, state, until, reason, by, at])?;
    }
    Ok(())
}

/// Each company's override in force at `now`: the latest neither over nor ended. The
/// database is only read (`simulate` reads it too, and must not create or migrate it):
/// no file, or records older than the table, hold none. A row that does not read back
/// (edited by hand) is skipped with a warning.
pub fn current_lines(
    path: &Path,
    now: jiff::Timestamp,
) -> Result<Vec<(CompanyId, LineOverride)>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    if !path.exists() {
        return Ok(Vec::new());
    }
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'line_overrides'",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    if tables == 0 {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare(
            "SELECT company, state, set_at, until, reason, set_by FROM line_overrides o
             WHERE id = (SELECT max(id) FROM line_overrides
                         WHERE company = o.company AND ended_at IS NULL AND until > ?1)",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map(params![time_text(now)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
            ))
        })
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    Ok(rows
        .into_iter()
        .filter_map(|(company, state, since, until, reason, set_by)| {
            let line = LineState::parse(&state).zip(since.parse().ok()).zip(until.parse().ok());
            let Some(((state, since), until)) = line else {
                tracing::warn!(company = %crate::terminal::safe(&company), "a line override in the records does not read back: ignored");
                return None;
            };
            Some((
                CompanyId(company),
                LineOverride {
                    state,
                    since,
                    until,
                    reason,
                    set_by,
                },
            ))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::{Store, Writer};
    use super::*;

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    fn set(w: &Writer, company: &str, state: &'static str, until: &str, by: &str, now: &str) {
        w.write(Record::LineSet {
            company: company.into(),
            state,
            until: time_text(at(until)),
            reason: format!("{state} by {by}"),
            by: by.into(),
            at: time_text(at(now)),
        });
    }

    #[test]
    fn no_records_or_records_from_before_the_table_hold_no_override() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = dir.path().join("p.db");
        let now = at("2026-11-30T10:30:00Z");
        assert!(current_lines(&db, now).unwrap().is_empty());
        assert!(!db.exists(), "only read, never created");
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE calls (id INTEGER PRIMARY KEY);")
            .unwrap();
        assert!(current_lines(&db, now).unwrap().is_empty());
    }

    #[test]
    fn the_current_override_is_the_latest_neither_over_nor_ended() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = dir.path().join("p.db");
        let (store, _) = Store::open(&db).unwrap();
        let w = store.writer();
        set(
            &w,
            "acme",
            "closed",
            "2026-11-30T12:00:00Z",
            "alice",
            "2026-11-30T09:00:00Z",
        );
        set(
            &w,
            "acme",
            "open",
            "2026-11-30T20:00:00Z",
            "bob",
            "2026-11-30T10:00:00Z",
        );
        set(
            &w,
            "globex",
            "closed",
            "2026-11-30T11:00:00Z",
            "bob",
            "2026-11-30T09:00:00Z",
        );
        w.write(Record::LineEnded {
            company: "globex".into(),
            by: "alice".into(),
            at: time_text(at("2026-11-30T09:30:00Z")),
        });
        set(
            &w,
            "initech",
            "closed",
            "2026-11-30T09:45:00Z",
            "carol",
            "2026-11-30T09:00:00Z",
        );
        drop(w);
        store.close();

        let current = current_lines(&db, at("2026-11-30T10:30:00Z")).unwrap();
        assert_eq!(current.len(), 1, "globex ended, initech over: {current:?}");
        let (company, line) = &current[0];
        assert_eq!(company.0, "acme");
        assert_eq!(line.state, LineState::Open);
        assert_eq!(line.since, at("2026-11-30T10:00:00Z"));
        assert_eq!(line.until, at("2026-11-30T20:00:00Z"));
        assert_eq!(
            (line.reason.as_str(), line.set_by.as_str()),
            ("open by bob", "bob")
        );

        // Who ended what, and when: the replaced one by whoever replaced it.
        let conn = rusqlite::Connection::open(&db).unwrap();
        let ended: Vec<(String, String, Option<String>)> = conn
            .prepare("SELECT company, set_by, ended_by FROM line_overrides ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let by = |c: &str, s: &str, e: Option<&str>| {
            (c.to_string(), s.to_string(), e.map(str::to_string))
        };
        assert_eq!(
            ended,
            vec![
                by("acme", "alice", Some("bob")),
                by("acme", "bob", None),
                by("globex", "bob", Some("alice")),
                by("initech", "carol", None),
            ]
        );
    }
}
