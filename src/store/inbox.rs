//! The messages inbox in the records: the console's list (filters, text search, keyset
//! pages), one message with its call, timeline and history, and the writes that change a
//! message, each keeping who changed what and when (`message_changes`) in the same
//! transaction as the change.

use std::path::Path;

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Transaction, params, params_from_iter};

use super::{CallRowId, StoreError, WrittenMessage, open_connection};
use crate::event::CallEvent;
use crate::inbox::Status;

/// One company the reader may see, with the time window asked for there (RFC 3339 UTC
/// text as stored: the company's own day boundaries, already converted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The company.
    pub company: String,
    /// Messages created at or after this.
    pub since: Option<String>,
    /// Messages created before this.
    pub until: Option<String>,
}

/// Which statuses to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusFilter {
    /// Every status but `filed`: what needs attention or was dealt with.
    Inbox,
    /// Only this one.
    Is(Status),
    /// Every status.
    Any,
}

/// What the inbox lists.
#[derive(Debug, Clone)]
pub struct InboxQuery {
    /// The companies (none: nothing is listed).
    pub scopes: Vec<Scope>,
    /// Only this category.
    pub category: Option<String>,
    /// Which statuses.
    pub status: StatusFilter,
    /// Only messages whose caller's number, name or company, callback number, note or
    /// company fields' values contain this, case-insensitively (3 characters or more go
    /// through the trigram index).
    pub text: Option<String>,
    /// Only calls older than this one (the previous page's last).
    pub before: Option<CallRowId>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// One message as the inbox shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InboxMessage {
    /// The call it came from (the message's identity in the API).
    pub call: CallRowId,
    /// The company called.
    pub company: String,
    /// When the call started (RFC 3339 UTC).
    pub created_at: String,
    /// The caller's number.
    pub caller: String,
    /// The name the caller's phone sent (SIP display name): theirs to choose.
    pub caller_display: Option<String>,
    /// The caller's name as the secretary wrote it.
    pub caller_name: Option<String>,
    /// The caller's own company, as written.
    pub caller_company: Option<String>,
    /// The number to call back.
    pub callback: Option<String>,
    /// What it is about.
    pub about: Option<String>,
    /// For which executive.
    pub for_executive: Option<String>,
    /// The company's extra fields, by name.
    pub fields: serde_json::Value,
    /// urgent / normal / low / spam.
    pub category: String,
    /// new / read / done / filed.
    pub status: String,
    /// How the call ended (none while it is up).
    pub outcome: Option<String>,
    /// Whether there is a voicemail recording (`GET /api/recordings/{call}`).
    pub recording: bool,
    /// Its length in milliseconds.
    pub recording_ms: Option<i64>,
    /// Who saved the message last.
    pub written_by: Option<String>,
    /// When.
    pub written_at: Option<String>,
    /// The message's last change of any kind.
    pub updated_at: String,
}

const COLUMNS: &str = "m.call_id, m.company, m.created_at, m.caller, c.caller_name, m.caller_name,
    m.caller_company, m.callback, m.note, m.for_executive, m.fields, m.category, m.status,
    c.outcome, m.recording IS NOT NULL, m.recording_ms, m.written_by, m.written_at, m.updated_at";

fn inbox_message(r: &rusqlite::Row) -> rusqlite::Result<InboxMessage> {
    let fields: Option<String> = r.get(10)?;
    Ok(InboxMessage {
        call: r.get(0)?,
        company: r.get(1)?,
        created_at: r.get(2)?,
        caller: r.get(3)?,
        caller_display: r.get(4)?,
        caller_name: r.get(5)?,
        caller_company: r.get(6)?,
        callback: r.get(7)?,
        about: r.get(8)?,
        for_executive: r.get(9)?,
        fields: json_or_empty(fields.as_deref()),
        category: r.get(11)?,
        status: r.get(12)?,
        outcome: r.get(13)?,
        recording: r.get(14)?,
        recording_ms: r.get(15)?,
        written_by: r.get(16)?,
        written_at: r.get(17)?,
        updated_at: r.get(18)?,
    })
}

/// Stored JSON as a value; an empty object when absent or unreadable.
fn json_or_empty(text: Option<&str>) -> serde_json::Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_else(|| serde_json::Value::Object(Default::default()))
}

/// `%text%` for LIKE, the text's own `%`, `_` and `\` taken literally.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The shortest search the trigram index answers; shorter ones read every message.
const TRIGRAM: usize = 3;

/// An FTS5 phrase: the text taken literally (its quotes doubled), as a substring.
fn phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// The SQL for one company's scope (its name and time window), with its values.
fn scope_sql(scope: &Scope, values: &mut Vec<Value>) -> String {
    let mut sql = String::from("m.company = ?");
    values.push(Value::Text(scope.company.clone()));
    if let Some(since) = &scope.since {
        sql.push_str(" AND m.created_at >= ?");
        values.push(Value::Text(since.clone()));
    }
    if let Some(until) = &scope.until {
        sql.push_str(" AND m.created_at < ?");
        values.push(Value::Text(until.clone()));
    }
    sql
}

/// The SQL for the category and status filters, and a search too short for the index
/// (LIKE over every searched column), with their values.
fn filters_sql(query: &InboxQuery, values: &mut Vec<Value>) -> String {
    let mut sql = String::new();
    if let Some(category) = &query.category {
        sql.push_str(" AND m.category = ?");
        values.push(Value::Text(category.clone()));
    }
    match &query.status {
        StatusFilter::Inbox => sql.push_str(" AND m.status != 'filed'"),
        StatusFilter::Is(status) => {
            sql.push_str(" AND m.status = ?");
            values.push(Value::Text(status.as_str().to_string()));
        }
        StatusFilter::Any => {}
    }
    if let Some(text) = query
        .text
        .as_deref()
        .filter(|t| t.chars().count() < TRIGRAM)
    {
        let pattern = like_pattern(text);
        let columns = [
            "m.caller",
            "c.caller_name",
            "m.caller_name",
            "m.caller_company",
            "m.callback",
            "m.note",
            "m.fields",
        ];
        let any: Vec<String> = columns
            .iter()
            .map(|c| {
                values.push(Value::Text(pattern.clone()));
                format!("{c} LIKE ? ESCAPE '\\'")
            })
            .collect();
        sql.push_str(&format!(" AND ({})", any.join(" OR ")));
    }
    sql
}

/// The messages a query asks for, newest call first. The SQL has one placeholder per
/// value: nothing from the query is ever part of its text.
///
/// Two shapes, each reading only what its page needs: a search of 3 characters or more
/// walks the trigram index's hits from the newest call down (`message_search`, rowid =
/// call id) and keeps those of her companies; anything else walks each company's messages
/// newest first (`messages_company_call`), and SQLite merges the companies' lists.
pub fn list(path: &Path, query: &InboxQuery) -> Result<Vec<InboxMessage>, StoreError> {
    if query.scopes.is_empty() {
        return Ok(Vec::new());
    }
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let limit = Value::Integer(i64::try_from(query.limit).unwrap_or(i64::MAX));
    let mut values: Vec<Value> = Vec::new();
    let indexed = query
        .text
        .as_deref()
        .filter(|t| t.chars().count() >= TRIGRAM);
    let sql = if let Some(text) = indexed {
        values.push(Value::Text(phrase(text)));
        let scopes: Vec<String> = query
            .scopes
            .iter()
            .map(|s| format!("({})", scope_sql(s, &mut values)))
            .collect();
        let mut sql = format!(
            "SELECT {COLUMNS} FROM message_search s JOIN messages m ON m.call_id = s.rowid
                JOIN calls c ON c.id = m.call_id
             WHERE s.text MATCH ? AND ({})",
            scopes.join(" OR ")
        );
        sql.push_str(&filters_sql(query, &mut values));
        if let Some(before) = query.before {
            sql.push_str(" AND s.rowid < ?");
            values.push(Value::Integer(before));
        }
        sql.push_str(" ORDER BY s.rowid DESC LIMIT ?");
        values.push(limit);
        sql
    } else {
        let branches: Vec<String> = query
            .scopes
            .iter()
            .map(|scope| {
                let mut one = format!(
                    "SELECT * FROM (SELECT {COLUMNS} FROM messages m JOIN calls c ON c.id = m.call_id
                     WHERE {}",
                    scope_sql(scope, &mut values)
                );
                one.push_str(&filters_sql(query, &mut values));
                if let Some(before) = query.before {
                    one.push_str(" AND m.call_id < ?");
                    values.push(Value::Integer(before));
                }
                one.push_str(" ORDER BY m.call_id DESC LIMIT ?)");
                values.push(limit.clone());
                one
            })
            .collect();
        values.push(limit);
        format!(
            "SELECT * FROM ({}) ORDER BY 1 DESC LIMIT ?",
            branches.join(" UNION ALL ")
        )
    };
    let conn = open_connection(path)?;
    let mut stmt = conn.prepare(&sql).map_err(err)?;
    let rows = stmt
        .query_map(params_from_iter(values), inbox_message)
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

/// A message's call, as its page shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InboxCall {
    /// The call.
    pub id: CallRowId,
    /// The number dialled.
    pub dialled: String,
    /// When it started, was answered, ended.
    pub started_at: String,
    /// When we answered.
    pub answered_at: Option<String>,
    /// When it ended.
    pub ended_at: Option<String>,
    /// The route it took.
    pub route: Option<String>,
    /// How it ended.
    pub outcome: Option<String>,
    /// The secretary who took it.
    pub handled_by: Option<String>,
    /// The executive it was transferred to.
    pub transferred_to: Option<String>,
}

/// One entry of a call's timeline, its details as JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TimelineEntry {
    /// When.
    pub at: String,
    /// What (`CallEvent::kind`).
    pub kind: String,
    /// Details.
    pub data: serde_json::Value,
}

/// One change of a message: who, when, and each field's value before and after.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    /// When.
    pub at: String,
    /// Who (a secretary's username; `cli` for `permanence messages mark`).
    pub by: String,
    /// `{"field": {"from": …, "to": …}}` for each field that changed.
    pub what: serde_json::Value,
}

/// A message with everything its page shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InboxDetail {
    /// The message.
    pub message: InboxMessage,
    /// Its call.
    pub call: InboxCall,
    /// The call's timeline, in order.
    pub timeline: Vec<TimelineEntry>,
    /// Every change of the message, oldest first.
    pub history: Vec<Change>,
}

/// The message of a call, with its call, timeline and history; `None` when the call has
/// no message.
pub fn message(path: &Path, call: CallRowId) -> Result<Option<InboxDetail>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let conn = open_connection(path)?;
    let sql = format!(
        "SELECT {COLUMNS}, c.dialled, c.started_at, c.answered_at, c.ended_at, c.route,
            c.handled_by, c.transferred_to
         FROM messages m JOIN calls c ON c.id = m.call_id WHERE m.call_id = ?1"
    );
    let found = conn
        .query_row(&sql, params![call], |r| {
            let message = inbox_message(r)?;
            let call = InboxCall {
                id: message.call,
                dialled: r.get(19)?,
                started_at: r.get(20)?,
                answered_at: r.get(21)?,
                ended_at: r.get(22)?,
                route: r.get(23)?,
                outcome: message.outcome.clone(),
                handled_by: r.get(24)?,
                transferred_to: r.get(25)?,
            };
            Ok((message, call))
        })
        .optional()
        .map_err(err)?;
    let Some((message, call_row)) = found else {
        return Ok(None);
    };
    let timeline = conn
        .prepare("SELECT at, kind, data FROM events WHERE call_id = ?1 ORDER BY id")
        .map_err(err)?
        .query_map(params![call], |r| {
            let data: String = r.get(2)?;
            Ok(TimelineEntry {
                at: r.get(0)?,
                kind: r.get(1)?,
                data: json_or_empty(Some(&data)),
            })
        })
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    let history = conn
        .prepare("SELECT at, changed_by, what FROM message_changes WHERE call_id = ?1 ORDER BY id")
        .map_err(err)?
        .query_map(params![call], |r| {
            let what: String = r.get(2)?;
            Ok(Change {
                at: r.get(0)?,
                by: r.get(1)?,
                what: json_or_empty(Some(&what)),
            })
        })
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    Ok(Some(InboxDetail {
        message,
        call: call_row,
        timeline,
        history,
    }))
}

/// A call's company and voicemail file (relative to the data directory); `None` when the
/// call has no message.
pub fn recording(
    path: &Path,
    call: CallRowId,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let conn = open_connection(path)?;
    conn.query_row(
        "SELECT company, recording FROM messages WHERE call_id = ?1",
        params![call],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(err)
}

/// What a change compares: a message's values as stored.
#[derive(Debug, Clone, PartialEq)]
struct Written {
    caller_name: Option<String>,
    caller_company: Option<String>,
    callback: Option<String>,
    about: Option<String>,
    for_executive: Option<String>,
    category: String,
    fields: serde_json::Value,
    status: String,
}

impl Written {
    /// `{"field": {"from", "to"}}` for each field that differs.
    fn changes_to(&self, after: &Written) -> serde_json::Value {
        let text = |v: &Option<String>| serde_json::json!(v);
        let pairs = [
            (
                "caller_name",
                text(&self.caller_name),
                text(&after.caller_name),
            ),
            (
                "caller_company",
                text(&self.caller_company),
                text(&after.caller_company),
            ),
            ("callback", text(&self.callback), text(&after.callback)),
            ("about", text(&self.about), text(&after.about)),
            (
                "for_executive",
                text(&self.for_executive),
                text(&after.for_executive),
            ),
            (
                "category",
                serde_json::json!(self.category),
                serde_json::json!(after.category),
            ),
            ("fields", self.fields.clone(), after.fields.clone()),
            (
                "status",
                serde_json::json!(self.status),
                serde_json::json!(after.status),
            ),
        ];
        let mut what = serde_json::Map::new();
        for (name, from, to) in pairs {
            if from != to {
                what.insert(name.into(), serde_json::json!({ "from": from, "to": to }));
            }
        }
        serde_json::Value::Object(what)
    }
}

/// Keeps one change of a message.
fn keep_change(
    tx: &Transaction,
    call: CallRowId,
    by: &str,
    at: &str,
    what: &serde_json::Value,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO message_changes (call_id, changed_by, at, what) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![call, by, at, what.to_string()])?;
    Ok(())
}

/// A secretary saved a call's message: the row takes it (and the status writing gives,
/// `inbox::status_after_writing`), and the change is kept with who and when; a call
/// without a message row is left alone.
pub(super) fn apply_written(
    tx: &Transaction,
    call: CallRowId,
    message: &WrittenMessage,
    by: &str,
    at: &str,
) -> rusqlite::Result<()> {
    let before = tx
        .prepare_cached(
            "SELECT caller_name, caller_company, callback, note, for_executive, category, fields,
                status
             FROM messages WHERE call_id = ?1",
        )?
        .query_row(params![call], |r| {
            let fields: Option<String> = r.get(6)?;
            Ok(Written {
                caller_name: r.get(0)?,
                caller_company: r.get(1)?,
                callback: r.get(2)?,
                about: r.get(3)?,
                for_executive: r.get(4)?,
                category: r.get(5)?,
                fields: json_or_empty(fields.as_deref()),
                status: r.get(7)?,
            })
        })
        .optional()?;
    let Some(before) = before else {
        return Ok(());
    };
    let category = crate::dialplan::Category::parse(&message.category)
        .unwrap_or(crate::dialplan::Category::Normal);
    let status = Status::parse(&before.status).map_or(before.status.clone(), |s| {
        crate::inbox::status_after_writing(s, category)
            .as_str()
            .to_string()
    });
    let fields = serde_json::to_value(&message.fields)
        .unwrap_or_else(|_| serde_json::Value::Object(Default::default()));
    let after = Written {
        caller_name: Some(message.caller_name.clone()),
        caller_company: Some(message.caller_company.clone()),
        callback: Some(message.callback.clone()),
        about: Some(message.about.clone()),
        for_executive: message.for_executive.clone(),
        category: message.category.clone(),
        fields: fields.clone(),
        status: status.clone(),
    };
    tx.prepare_cached(
        "UPDATE messages SET caller_name = ?2, caller_company = ?3, callback = ?4, note = ?5,
            for_executive = ?6, category = ?7, fields = ?8, written_by = ?9, written_at = ?10,
            updated_at = ?10, status = ?11
         WHERE call_id = ?1",
    )?
    .execute(params![
        call,
        message.caller_name,
        message.caller_company,
        message.callback,
        message.about,
        message.for_executive,
        message.category,
        fields.to_string(),
        by,
        at,
        status
    ])?;
    // Every save is kept, even one that changed nothing: who looked and confirmed it.
    keep_change(tx, call, by, at, &before.changes_to(&after))
}

/// Someone set a message's status: the row, the change kept with who and when, and a
/// `message-status` entry on the call's timeline, all in the caller's transaction. Setting
/// the status it already has changes (and keeps) nothing; false when the call has no
/// message.
pub fn apply_status(
    tx: &Transaction,
    call: CallRowId,
    status: Status,
    by: &str,
    at: &str,
) -> rusqlite::Result<bool> {
    let before: Option<String> = tx
        .prepare_cached("SELECT status FROM messages WHERE call_id = ?1")?
        .query_row(params![call], |r| r.get(0))
        .optional()?;
    let Some(before) = before else {
        return Ok(false);
    };
    if before == status.as_str() {
        return Ok(true);
    }
    tx.prepare_cached("UPDATE messages SET status = ?2, updated_at = ?3 WHERE call_id = ?1")?
        .execute(params![call, status.as_str(), at])?;
    let what = serde_json::json!({ "status": { "from": before, "to": status.as_str() } });
    keep_change(tx, call, by, at, &what)?;
    let event = CallEvent::MessageStatus {
        by: by.to_string(),
        status: status.as_str().to_string(),
    };
    tx.prepare_cached("INSERT INTO events (call_id, at, kind, data) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![call, at, event.kind(), event.data()])?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Record, Store, now_text};

    fn call(store: &Store, company: &str, caller: &str, name: Option<&str>) -> CallRowId {
        let id = store.ids().next();
        store.writer().write(Record::CallStarted {
            id,
            company: Some(company.into()),
            dialled: "+33180000001".into(),
            caller: caller.into(),
            caller_name: name.map(str::to_string),
            route: None,
            category: "normal",
            sip_call_id: format!("c{id}"),
            at: now_text(),
        });
        id
    }

    fn written(about: &str) -> WrittenMessage {
        WrittenMessage {
            caller_name: "Jean 50%_off".into(),
            caller_company: "Syndic".into(),
            callback: "+33 6".into(),
            about: about.into(),
            for_executive: None,
            category: "urgent".into(),
            fields: [("address".to_string(), "3 rue des Lilas".to_string())].into(),
        }
    }

    fn query(scopes: &[&str]) -> InboxQuery {
        InboxQuery {
            scopes: scopes
                .iter()
                .map(|c| Scope {
                    company: c.to_string(),
                    since: None,
                    until: None,
                })
                .collect(),
            category: None,
            status: StatusFilter::Any,
            text: None,
            before: None,
            limit: 50,
        }
    }

    #[test]
    fn every_save_and_status_change_keeps_who_when_and_what() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = dir.path().join("p.db");
        let (store, _) = Store::open(&db).unwrap();
        let a = call(&store, "acme", "+33612345678", Some("<b>Jean</b>"));
        let b = call(&store, "other", "+33700000000", None);
        // She took it; nothing written yet: filed when it ended.
        store.writer().write(Record::CallEnded {
            id: a,
            outcome: crate::store::Outcome::Secretary,
            status: Some("filed"),
            at: now_text(),
            deliver: None,
        });
        store.writer().write(Record::MessageWritten {
            id: a,
            message: Box::new(written("Fuite")),
            by: "alice".into(),
            at: now_text(),
            deliver: None,
        });
        store.writer().write(Record::MessageWritten {
            id: a,
            message: Box::new(written("Fuite au 3e")),
            by: "bob".into(),
            at: now_text(),
            deliver: None,
        });
        store.flush();
        let mut conn = open_connection(&db).unwrap();
        let tx = conn.transaction().unwrap();
        assert!(apply_status(&tx, a, Status::Done, "alice", &now_text()).unwrap());
        assert!(apply_status(&tx, a, Status::Done, "alice", &now_text()).unwrap());
        assert!(!apply_status(&tx, 999, Status::Done, "alice", &now_text()).unwrap());
        tx.commit().unwrap();

        let detail = message(&db, a).unwrap().unwrap();
        assert_eq!(detail.message.about.as_deref(), Some("Fuite au 3e"));
        assert_eq!(detail.message.status, "done");
        assert_eq!(
            detail.message.caller_display.as_deref(),
            Some("<b>Jean</b>")
        );
        let by: Vec<&str> = detail.history.iter().map(|c| c.by.as_str()).collect();
        assert_eq!(
            by,
            ["alice", "bob", "alice"],
            "the same status twice is one change"
        );
        assert_eq!(
            detail.history[0].what["about"]["from"],
            serde_json::Value::Null
        );
        assert_eq!(
            detail.history[0].what["status"],
            serde_json::json!({ "from": "filed", "to": "new" }),
            "written: in the inbox"
        );
        assert_eq!(
            detail.history[1].what,
            serde_json::json!({ "about": { "from": "Fuite", "to": "Fuite au 3e" } })
        );
        assert_eq!(
            detail.history[2].what,
            serde_json::json!({ "status": { "from": "new", "to": "done" } })
        );
        assert_eq!(
            detail
                .timeline
                .last()
                .map(|e| (e.kind.as_str(), e.data["by"].clone())),
            Some(("message-status", serde_json::json!("alice")))
        );
        assert!(message(&db, b).unwrap().unwrap().history.is_empty());
        store.close();
    }

    #[test]
    fn the_list_keeps_to_its_scope_and_searches_text_literally() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = dir.path().join("p.db");
        let (store, _) = Store::open(&db).unwrap();
        let a = call(&store, "acme", "+33612345678", None);
        let b = call(&store, "acme", "+33699999999", None);
        let c = call(&store, "other", "+33612345678", None);
        store.writer().write(Record::MessageWritten {
            id: a,
            message: Box::new(written("Fuite")),
            by: "alice".into(),
            at: now_text(),
            deliver: None,
        });
        store.flush();
        let calls = |q: &InboxQuery| -> Vec<CallRowId> {
            list(&db, q).unwrap().iter().map(|m| m.call).collect()
        };
        assert_eq!(calls(&query(&["acme"])), [b, a], "newest first, acme only");
        assert_eq!(calls(&query(&["acme", "other"])), [c, b, a]);
        assert!(calls(&query(&[])).is_empty(), "no company, nothing");
        let mut q = query(&["acme", "other"]);
        q.text = Some("12345".into());
        assert_eq!(calls(&q), [c, a], "by number");
        q.text = Some("%".into());
        assert_eq!(calls(&q), [a], "a percent sign is a percent sign");
        q.text = Some("LILAS".into());
        assert_eq!(calls(&q), [a], "company fields, any case");
        q.text = Some("address".into());
        assert!(calls(&q).is_empty(), "a field's value, not its name");
        q.text = Some("u_".into());
        assert!(calls(&q).is_empty(), "short: read by LIKE, `_` literal");
        q.text = Some("0%_".into());
        assert_eq!(calls(&q), [a], "the index takes it literally too");
        q.text = Some("\"Fuite\" OR x".into());
        assert!(calls(&q).is_empty(), "quotes are text, not query syntax");
        q.text = None;
        q.before = Some(c);
        q.limit = 1;
        assert_eq!(calls(&q), [b], "the next page");
        let mut q = query(&["acme"]);
        q.status = StatusFilter::Is(Status::New);
        assert_eq!(calls(&q), [b, a]);
        q.category = Some("urgent".into());
        assert_eq!(calls(&q), [a]);
        store.close();
    }
}
