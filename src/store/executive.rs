//! What the records keep for the executives' page: when each executive's links were last
//! revoked (`executive_link_revocations`: links made until then open nothing), their
//! do-not-disturb (`executive_dnd`: each one set, with who and when, and who ended it
//! early), and the messages their page shows. "Handled" is the inbox's
//! `Record::MessageStatus`, kept in the message's history like a secretary's change.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{OptionalExtension, params};

use super::{CallRowId, EventRow, Record, StoreError, open_connection, sqlite, time_text};
use crate::dnd::Dnd;

/// Writes a do-not-disturb's change: the one in force (if any) is ended at `at` by
/// whoever acts, and a new one is inserted when one is set.
pub(super) fn apply_dnd(tx: &rusqlite::Transaction, record: &Record) -> rusqlite::Result<()> {
    let (executive, by, at) = match record {
        Record::DndSet {
            executive, by, at, ..
        }
        | Record::DndEnded { executive, by, at } => (executive, by, at),
        // `store::apply` sends only the records above here.
        _ => return Ok(()),
    };
    tx.prepare_cached(
        "UPDATE executive_dnd SET ended_at = ?2, ended_by = ?3
         WHERE executive = ?1 AND ended_at IS NULL AND until > ?2",
    )?
    .execute(params![executive, at, by])?;
    if let Record::DndSet { until, .. } = record {
        tx.prepare_cached(
            "INSERT INTO executive_dnd (executive, until, set_by, set_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![executive, until, by, at])?;
    }
    Ok(())
}

/// A read-only connection, or None when the records do not exist yet or predate the
/// executives' tables (`simulate` reads them too, and must not create or migrate them).
fn read_only(path: &Path) -> Result<Option<rusqlite::Connection>, StoreError> {
    if !path.exists() {
        return Ok(None);
    }
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sqlite(path))?;
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'executive_dnd'",
            [],
            |r| r.get(0),
        )
        .map_err(sqlite(path))?;
    Ok((tables > 0).then_some(conn))
}

/// Each executive's do-not-disturb in force at `now`: the latest neither over nor ended.
/// A row that does not read back (edited by hand) is skipped with a warning.
pub fn current_dnd(path: &Path, now: jiff::Timestamp) -> Result<Vec<(String, Dnd)>, StoreError> {
    let Some(conn) = read_only(path)? else {
        return Ok(Vec::new());
    };
    let mut stmt = conn
        .prepare(
            "SELECT executive, set_at, until, set_by FROM executive_dnd d
             WHERE id = (SELECT max(id) FROM executive_dnd
                         WHERE executive = d.executive AND ended_at IS NULL AND until > ?1)",
        )
        .map_err(sqlite(path))?;
    let rows = stmt
        .query_map(params![time_text(now)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .map_err(sqlite(path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sqlite(path))?;
    Ok(rows
        .into_iter()
        .filter_map(|(executive, since, until, set_by)| {
            let (Ok(since), Ok(until)) = (since.parse(), until.parse()) else {
                tracing::warn!(executive = %crate::terminal::safe(&executive), "a do-not-disturb in the records does not read back: ignored");
                return None;
            };
            Some((
                executive,
                Dnd {
                    since,
                    until,
                    set_by,
                },
            ))
        })
        .collect())
}

/// When the executive's links were last revoked, if ever: links made until then open
/// nothing. Read at each request, so that a revocation from the CLI (another process)
/// takes effect at once.
pub fn links_revoked_at(
    path: &Path,
    executive: &str,
) -> Result<Option<jiff::Timestamp>, StoreError> {
    let conn = open_connection(path)?;
    let at: Option<String> = conn
        .query_row(
            "SELECT revoked_at FROM executive_link_revocations WHERE executive = ?1",
            params![executive],
            |r| r.get(0),
        )
        .optional()
        .map_err(sqlite(path))?;
    // A time that does not read back revokes everything rather than nothing.
    Ok(at.map(|at| at.parse().unwrap_or(jiff::Timestamp::MAX)))
}

/// Revokes every link of the executive made until `now`.
pub fn revoke_links(path: &Path, executive: &str, now: jiff::Timestamp) -> Result<(), StoreError> {
    let conn = open_connection(path)?;
    conn.execute(
        "INSERT INTO executive_link_revocations (executive, revoked_at) VALUES (?1, ?2)
         ON CONFLICT (executive) DO UPDATE SET revoked_at = excluded.revoked_at",
        params![executive, time_text(now)],
    )
    .map_err(sqlite(path))?;
    Ok(())
}

/// A message as the executive's page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageMessage {
    /// The call it came from (the page's address for it).
    pub call: CallRowId,
    /// The company's id.
    pub company: String,
    /// When the call started (stored time).
    pub started_at: String,
    /// The caller's number (or URI user).
    pub caller: String,
    /// The name the caller's phone sent.
    pub caller_display: Option<String>,
    /// The caller's name as the secretary wrote it.
    pub caller_name: Option<String>,
    /// The caller's own company.
    pub caller_company: Option<String>,
    /// The number to call back, as written.
    pub callback: Option<String>,
    /// What it is about.
    pub about: Option<String>,
    /// For which executive, if the secretary said.
    pub for_executive: Option<String>,
    /// urgent / normal / low / spam.
    pub category: String,
    /// new / read / done / filed.
    pub status: String,
    /// How the call ended.
    pub outcome: Option<String>,
    /// The voicemail, relative to the data directory.
    pub recording: Option<String>,
    /// Its length in milliseconds.
    pub recording_ms: Option<i64>,
    /// The company's extra fields, by name.
    pub fields: BTreeMap<String, String>,
    /// The secretary who wrote it.
    pub written_by: Option<String>,
    /// The secretary who took the call.
    pub handled_by: Option<String>,
    /// The executive (or URI) it was put through to.
    pub transferred_to: Option<String>,
}

const PAGE_COLUMNS: &str = "m.call_id, m.company, c.started_at, m.caller, c.caller_name,
     m.caller_name, m.caller_company, m.callback, m.note, m.for_executive, m.category,
     m.status, c.outcome, m.recording, m.recording_ms, m.fields, m.written_by,
     c.handled_by, c.transferred_to";

fn page_message(r: &rusqlite::Row) -> rusqlite::Result<PageMessage> {
    let fields: Option<String> = r.get(15)?;
    Ok(PageMessage {
        call: r.get(0)?,
        company: r.get(1)?,
        started_at: r.get(2)?,
        caller: r.get(3)?,
        caller_display: r.get(4)?,
        caller_name: r.get(5)?,
        caller_company: r.get(6)?,
        callback: r.get(7)?,
        about: r.get(8)?,
        for_executive: r.get(9)?,
        category: r.get(10)?,
        status: r.get(11)?,
        outcome: r.get(12)?,
        recording: r.get(13)?,
        recording_ms: r.get(14)?,
        // Written by the console as a JSON object of strings; anything else shows nothing.
        fields: fields
            .and_then(|f| serde_json::from_str(&f).ok())
            .unwrap_or_default(),
        written_by: r.get(16)?,
        handled_by: r.get(17)?,
        transferred_to: r.get(18)?,
    })
}

/// Which messages are the executive's: those of `companies` (the ones whose plans have
/// them) written for them or for nobody in particular, of calls that ended, and not filed.
const MINE: &str = "m.company IN (SELECT value FROM json_each(?1))
     AND (m.for_executive IS NULL OR m.for_executive = ?2)
     AND c.ended_at IS NOT NULL AND m.status != 'filed'";

/// The executive's messages, newest first, at most `limit`.
pub fn executive_messages(
    path: &Path,
    companies: &[String],
    executive: &str,
    limit: usize,
) -> Result<Vec<PageMessage>, StoreError> {
    let conn = open_connection(path)?;
    let companies = serde_json::to_string(companies).unwrap_or_else(|_| "[]".into());
    let sql = format!(
        "SELECT {PAGE_COLUMNS} FROM messages m JOIN calls c ON c.id = m.call_id
         WHERE {MINE} ORDER BY m.call_id DESC LIMIT ?3"
    );
    let mut stmt = conn.prepare(&sql).map_err(sqlite(path))?;
    let rows = stmt
        .query_map(
            params![
                companies,
                executive,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            page_message,
        )
        .map_err(sqlite(path))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sqlite(path))
}

/// One of the executive's messages with its call's timeline; None when there is no such
/// message or it is not theirs (the page says 404 alike).
pub fn executive_message(
    path: &Path,
    companies: &[String],
    executive: &str,
    call: CallRowId,
) -> Result<Option<(PageMessage, Vec<EventRow>)>, StoreError> {
    let conn = open_connection(path)?;
    let companies = serde_json::to_string(companies).unwrap_or_else(|_| "[]".into());
    let sql = format!(
        "SELECT {PAGE_COLUMNS} FROM messages m JOIN calls c ON c.id = m.call_id
         WHERE {MINE} AND m.call_id = ?3"
    );
    let Some(message) = conn
        .query_row(&sql, params![companies, executive, call], page_message)
        .optional()
        .map_err(sqlite(path))?
    else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare("SELECT at, kind, data FROM events WHERE call_id = ?1 ORDER BY id")
        .map_err(sqlite(path))?;
    let events = stmt
        .query_map(params![call], |r| {
            Ok(EventRow {
                at: r.get(0)?,
                kind: r.get(1)?,
                data: r.get(2)?,
            })
        })
        .map_err(sqlite(path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sqlite(path))?;
    Ok(Some((message, events)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, now_text};

    fn started(store: &Store, company: &str, caller: &str) -> CallRowId {
        let id = store.ids().next();
        let w = store.writer();
        w.write(Record::CallStarted {
            id,
            company: Some(company.into()),
            dialled: "+33180000001".into(),
            caller: caller.into(),
            caller_name: Some("<b>Jean</b>".into()),
            route: None,
            category: "normal",
            sip_call_id: format!("c{id}"),
            at: now_text(),
        });
        w.write(Record::CallEnded {
            id,
            outcome: crate::store::Outcome::Voicemail,
            status: Some("new"),
            at: now_text(),
            deliver: None,
        });
        id
    }

    fn written(store: &Store, id: CallRowId, for_executive: Option<&str>) {
        store.writer().write(Record::MessageWritten {
            id,
            message: Box::new(crate::store::WrittenMessage {
                caller_name: "Jean".into(),
                caller_company: "Syndic".into(),
                callback: "+33 6 12".into(),
                about: "Fuite".into(),
                for_executive: for_executive.map(str::to_string),
                category: "urgent".into(),
                fields: [("address".to_string(), "3 rue".to_string())].into(),
            }),
            by: "alice".into(),
            at: now_text(),
            deliver: None,
        });
    }

    #[test]
    fn the_page_lists_the_messages_of_their_companies_for_them_or_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("p.db");
        let (store, _) = Store::open(&db).unwrap();
        let mine = started(&store, "acme", "+33611111111");
        let for_paul = started(&store, "acme", "+33622222222");
        written(&store, for_paul, Some("paul"));
        let for_me = started(&store, "acme", "+33633333333");
        written(&store, for_me, Some("marie"));
        let other_company = started(&store, "globex", "+33644444444");
        store.flush();

        let acme = ["acme".to_string()];
        let calls: Vec<CallRowId> = executive_messages(&db, &acme, "marie", 10)
            .unwrap()
            .iter()
            .map(|m| m.call)
            .collect();
        assert_eq!(
            calls,
            [for_me, mine],
            "newest first, not Paul's, not globex's"
        );
        let (message, timeline) = executive_message(&db, &acme, "marie", for_me)
            .unwrap()
            .unwrap();
        assert_eq!(message.about.as_deref(), Some("Fuite"));
        assert_eq!(message.caller_display.as_deref(), Some("<b>Jean</b>"));
        assert_eq!(message.fields["address"], "3 rue");
        assert_eq!(message.written_by.as_deref(), Some("alice"));
        assert!(timeline.is_empty(), "nothing happened in this call yet");
        for (call, companies) in [(for_paul, &acme[..]), (other_company, &acme[..])] {
            assert!(
                executive_message(&db, companies, "marie", call)
                    .unwrap()
                    .is_none()
            );
        }
        assert_eq!(executive_messages(&db, &[], "marie", 10).unwrap(), []);

        // Handled: the status changes once, with one entry in the timeline.
        for _ in 0..2 {
            store.writer().write(Record::MessageStatus {
                id: for_me,
                status: crate::inbox::Status::Done,
                by: "marie".into(),
                at: now_text(),
            });
        }
        store.flush();
        let (message, timeline) = executive_message(&db, &acme, "marie", for_me)
            .unwrap()
            .unwrap();
        assert_eq!(message.status, "done");
        let statuses: Vec<&EventRow> = timeline
            .iter()
            .filter(|e| e.kind == "message-status")
            .collect();
        assert_eq!(statuses.len(), 1, "{timeline:?}");
        assert_eq!(statuses[0].data, r#"{"by":"marie","status":"done"}"#);
        store.close();
    }

    #[test]
    fn dnd_is_kept_with_who_and_when_and_the_latest_in_force_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("p.db");
        assert_eq!(current_dnd(&db, jiff::Timestamp::now()).unwrap(), []);
        let (store, _) = Store::open(&db).unwrap();
        let now = jiff::Timestamp::now();
        let at = |s: i64| time_text(now + jiff::SignedDuration::from_secs(s));
        let w = store.writer();
        w.write(Record::DndSet {
            executive: "marie".into(),
            until: at(3600),
            by: "marie".into(),
            at: at(0),
        });
        w.write(Record::DndSet {
            executive: "marie".into(),
            until: at(7200),
            by: "marie".into(),
            at: at(1),
        });
        w.write(Record::DndSet {
            executive: "paul".into(),
            until: at(600),
            by: "paul".into(),
            at: at(0),
        });
        w.write(Record::DndEnded {
            executive: "paul".into(),
            by: "paul".into(),
            at: at(2),
        });
        drop(w);
        store.flush();
        let current = current_dnd(&db, now + jiff::SignedDuration::from_secs(5)).unwrap();
        assert_eq!(current.len(), 1, "{current:?}");
        assert_eq!(current[0].0, "marie");
        assert_eq!(time_text(current[0].1.until), at(7200));
        let conn = rusqlite::Connection::open(&db).unwrap();
        let ended: Vec<(String, Option<String>)> = conn
            .prepare("SELECT executive, ended_by FROM executive_dnd ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            ended,
            [
                ("marie".to_string(), Some("marie".to_string())),
                ("marie".to_string(), None),
                ("paul".to_string(), Some("paul".to_string())),
            ],
            "the one replaced and the one ended early say by whom"
        );
        store.close();
    }

    #[test]
    fn a_revocation_is_kept_per_executive_at_its_latest() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("p.db");
        assert_eq!(links_revoked_at(&db, "marie").unwrap(), None);
        let first = jiff::Timestamp::from_millisecond(1_796_000_000_123).unwrap();
        revoke_links(&db, "marie", first).unwrap();
        assert_eq!(links_revoked_at(&db, "marie").unwrap(), Some(first));
        let later = first + jiff::SignedDuration::from_secs(60);
        revoke_links(&db, "marie", later).unwrap();
        assert_eq!(links_revoked_at(&db, "marie").unwrap(), Some(later));
        assert_eq!(links_revoked_at(&db, "paul").unwrap(), None);
    }
}
