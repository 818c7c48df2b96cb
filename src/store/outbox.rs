//! The outbox (`outbox` table): one row per delivery of a message (an e-mail, a webhook
//! POST, a line held for a daily summary) or per summary, written by the store's writer in
//! the same transaction as the message change that caused it, and updated there with each
//! attempt's result. Statuses: `held` (waiting for its summary), `pending` (to send, at
//! `next_attempt`), `sent`, `failed` (given up; `permanence deliveries retry` puts it
//! back), `digested` (folded into the summary `digest_id`), `cancelled` (a held line whose
//! message was re-filed before its summary).
//!
//! `UNIQUE (event, channel, target)`: the same event never enqueues the same delivery
//! twice, whatever writes it again (an edit, the call's end after a secretary's save).

use std::path::Path;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Record, StoreError, time_text};
use crate::delivery::Rules;
use crate::delivery::digest::Held;
use crate::delivery::rules::{self, MessageFacts, Payload};
use crate::dialplan::Category;

/// What made the store look at a message's deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trigger {
    /// Its call ended: only a message that needs attention (`new`) and that no secretary
    /// wrote is delivered from here (hers is delivered when she saves it).
    CallEnded,
    /// A secretary saved it (or edited it).
    Written,
}

/// The result of an attempt, as the worker records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tried {
    /// The receiver took it: never sent again.
    Sent,
    /// It failed and is tried again at `next` (stored time).
    Retry {
        /// Attempts so far.
        attempts: u32,
        /// When next.
        next: String,
        /// Why it failed (one line).
        error: String,
    },
    /// Given up: its time ran out, or the receiver refused it for good.
    Failed {
        /// Attempts so far.
        attempts: u32,
        /// Why (one line).
        error: String,
    },
    /// Not tried yet (its voicemail is still being written): looked at again at `next`.
    Later {
        /// When.
        next: String,
    },
}

/// A daily summary to add, folding held rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    /// Its key.
    pub event: String,
    /// The company.
    pub company: String,
    /// The executive.
    pub executive: String,
    /// Their e-mail address.
    pub target: String,
    /// The plan's part (JSON of [`Payload`]).
    pub payload: String,
    /// The held rows it folds.
    pub rows: Vec<i64>,
}

/// What the rules look at in a message's row.
struct MessageState {
    id: i64,
    category: String,
    for_executive: Option<String>,
    status: String,
    /// A secretary wrote it.
    written: bool,
}

/// Writes the deliveries a message makes under `rules`, when `trigger` calls for them.
pub(super) fn enqueue(
    tx: &rusqlite::Transaction,
    call: i64,
    rules: &Rules,
    trigger: Trigger,
    at: &str,
) -> rusqlite::Result<()> {
    let Some(m) = tx
        .prepare_cached(
            "SELECT id, category, for_executive, status, written_by FROM messages WHERE call_id = ?1",
        )?
        .query_row(params![call], |r| {
            Ok(MessageState {
                id: r.get(0)?,
                category: r.get(1)?,
                for_executive: r.get(2)?,
                status: r.get(3)?,
                written: r.get::<_, Option<String>>(4)?.is_some(),
            })
        })
        .optional()?
    else {
        return Ok(());
    };
    if trigger == Trigger::CallEnded && (m.status != "new" || m.written) {
        return Ok(());
    }
    let Some(category) = Category::parse(&m.category) else {
        return Ok(());
    };
    let (message, for_executive) = (m.id, m.for_executive);
    let now: Timestamp = at.parse().unwrap_or_else(|_| Timestamp::now());
    let facts = MessageFacts {
        id: message,
        category,
        for_executive: for_executive.as_deref(),
        at: now,
    };
    let company = &rules.company;
    let event = rules::executive_for(company, facts.for_executive)
        .map(|(id, _)| rules::event_key(message, category, id))
        .unwrap_or_default();
    if trigger == Trigger::Written {
        // Re-filed before its summary (another category or executive): the old line goes.
        tx.prepare_cached(
            "UPDATE outbox SET status = 'cancelled', last_error = 'the message was filed again before its summary'
             WHERE message_id = ?1 AND status = 'held' AND event != ?2",
        )?
        .execute(params![message, event])?;
    }
    for d in rules::deliveries(company, &rules.webhooks, &facts) {
        let payload = serde_json::to_string(&Payload::new(company, &d.executive))
            .unwrap_or_else(|_| "{}".into());
        tx.prepare_cached(
            "INSERT OR IGNORE INTO outbox (event, channel, target, company, executive, message_id,
                payload, status, next_attempt, retry_since, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
        )?
        .execute(params![
            d.event,
            d.outlet.as_str(),
            d.target,
            company.id.0,
            d.executive.0,
            message,
            payload,
            d.outlet.first_status(),
            time_text(d.due),
            at
        ])?;
    }
    Ok(())
}

/// Records an attempt's result, or a new summary.
pub(super) fn apply(tx: &rusqlite::Transaction, record: &Record) -> rusqlite::Result<()> {
    match record {
        Record::DeliveryTried { id, result, at } => {
            // Only a pending row changes: a result never undoes `sent`.
            match result {
                Tried::Sent => tx
                    .prepare_cached(
                        "UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_at = ?2,
                            last_error = NULL WHERE id = ?1 AND status = 'pending'",
                    )?
                    .execute(params![id, at])?,
                Tried::Retry {
                    attempts,
                    next,
                    error,
                } => tx
                    .prepare_cached(
                        "UPDATE outbox SET attempts = ?2, next_attempt = ?3, last_error = ?4
                         WHERE id = ?1 AND status = 'pending'",
                    )?
                    .execute(params![id, attempts, next, error])?,
                Tried::Failed { attempts, error } => tx
                    .prepare_cached(
                        "UPDATE outbox SET status = 'failed', attempts = ?2, last_error = ?3
                         WHERE id = ?1 AND status = 'pending'",
                    )?
                    .execute(params![id, attempts, error])?,
                Tried::Later { next } => tx
                    .prepare_cached(
                        "UPDATE outbox SET next_attempt = ?2 WHERE id = ?1 AND status = 'pending'",
                    )?
                    .execute(params![id, next])?,
            };
        }
        Record::SummaryMade { summary, at } => {
            let inserted = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO outbox (event, channel, target, company, executive,
                        payload, status, next_attempt, retry_since, created_at)
                     VALUES (?1, 'email', ?2, ?3, ?4, ?5, 'pending', ?6, ?6, ?6)",
                )?
                .execute(params![
                    summary.event,
                    summary.target,
                    summary.company,
                    summary.executive,
                    summary.payload,
                    at
                ])?;
            if inserted == 0 {
                return Ok(());
            }
            let digest = tx.last_insert_rowid();
            let mut folded = 0;
            for row in &summary.rows {
                folded += tx
                    .prepare_cached(
                        "UPDATE outbox SET status = 'digested', digest_id = ?2
                         WHERE id = ?1 AND status = 'held'",
                    )?
                    .execute(params![row, digest])?;
            }
            if folded == 0 {
                // Its lines were folded or cancelled meanwhile: no empty summary.
                tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?
                    .execute(params![digest])?;
            }
        }
        // `store::apply` sends only the records above here.
        _ => {}
    }
    Ok(())
}

/// One row of the outbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    /// Row id (what `permanence deliveries retry` takes).
    pub id: i64,
    /// The event that caused it.
    pub event: String,
    /// `email`, `webhook`, or `digest` (a line of a daily summary).
    pub channel: String,
    /// The address or URL.
    pub target: String,
    /// The company.
    pub company: String,
    /// The executive.
    pub executive: Option<String>,
    /// The message (none for a summary).
    pub message_id: Option<i64>,
    /// What the row keeps of the plan (JSON).
    #[serde(skip)]
    pub payload: String,
    /// `held`, `pending`, `sent`, `failed`, `digested`, `cancelled`.
    pub status: String,
    /// Attempts so far.
    pub attempts: u32,
    /// When it is (next) due.
    pub next_attempt: String,
    /// Since when it is being tried (its queuing, or a retry by hand): it is given up
    /// `[delivery] give_up_hours` later.
    pub retry_since: String,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When it was queued.
    pub created_at: String,
    /// When the receiver took it.
    pub sent_at: Option<String>,
    /// The summary a `digest` line was folded into.
    pub digest_id: Option<i64>,
}

const COLUMNS: &str = "id, event, channel, target, company, executive, message_id, payload, status,
    attempts, next_attempt, retry_since, last_error, created_at, sent_at, digest_id";

fn delivery(r: &rusqlite::Row) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        event: r.get(1)?,
        channel: r.get(2)?,
        target: r.get(3)?,
        company: r.get(4)?,
        executive: r.get(5)?,
        message_id: r.get(6)?,
        payload: r.get(7)?,
        status: r.get(8)?,
        attempts: r.get(9)?,
        next_attempt: r.get(10)?,
        retry_since: r.get(11)?,
        last_error: r.get(12)?,
        created_at: r.get(13)?,
        sent_at: r.get(14)?,
        digest_id: r.get(15)?,
    })
}

/// Pending rows due at `now`, oldest due first, at most `limit`.
pub fn due_deliveries(
    conn: &Connection,
    now: Timestamp,
    limit: usize,
) -> rusqlite::Result<Vec<Delivery>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM outbox WHERE status = 'pending' AND next_attempt <= ?1
         ORDER BY next_attempt, id LIMIT ?2"
    );
    conn.prepare_cached(&sql)?
        .query_map(params![time_text(now), limit as i64], delivery)?
        .collect()
}

/// Held summary lines whose summary is due at `now`. A row whose time does not read back
/// (edited by hand) is skipped.
pub fn held_due(conn: &Connection, now: Timestamp) -> rusqlite::Result<Vec<Held>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, company, executive, target, next_attempt, message_id FROM outbox
         WHERE status = 'held' AND next_attempt <= ?1 ORDER BY id LIMIT 10000",
    )?;
    let rows = stmt.query_map(params![time_text(now)], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, Option<i64>>(5)?,
        ))
    })?;
    let mut held = Vec::new();
    for row in rows {
        let (row, company, executive, target, due, message) = row?;
        let (Some(executive), Ok(due), Some(message)) = (executive, due.parse(), message) else {
            tracing::warn!(row, "outbox: a held row does not read back; skipped");
            continue;
        };
        held.push(Held {
            row,
            company,
            executive,
            target,
            due,
            message,
        });
    }
    Ok(held)
}

/// The messages a summary folded, oldest first.
pub fn summary_messages(conn: &Connection, digest: i64) -> rusqlite::Result<Vec<i64>> {
    conn.prepare_cached(
        "SELECT DISTINCT message_id FROM outbox WHERE digest_id = ?1 AND message_id IS NOT NULL
         ORDER BY message_id",
    )?
    .query_map(params![digest], |r| r.get(0))?
    .collect()
}

/// A message as the records hold it, with its call: what an e-mail about it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// Message id.
    pub id: i64,
    /// Its call.
    pub call_id: i64,
    /// urgent / normal / low / spam (as stored).
    pub category: String,
    /// new / read / done / filed.
    pub status: String,
    /// The caller's number.
    pub caller: String,
    /// The display name their phone sent.
    pub display_name: Option<String>,
    /// Their name in the company's contact lists (the call's `contact` event).
    pub contact_name: Option<String>,
    /// The name the secretary wrote.
    pub written_name: Option<String>,
    /// The caller's own company.
    pub caller_company: Option<String>,
    /// The number to call back.
    pub callback: Option<String>,
    /// What it is about.
    pub about: Option<String>,
    /// The company's fields (JSON object).
    pub fields: Option<String>,
    /// Who wrote it.
    pub written_by: Option<String>,
    /// The voicemail, relative to the data directory.
    pub recording: Option<String>,
    /// Its length; none while it is being written.
    pub recording_ms: Option<i64>,
    /// When the call came.
    pub started_at: String,
    /// How it ended (none while it lasts).
    pub outcome: Option<String>,
    /// Its route.
    pub route: Option<String>,
    /// The secretary who took it.
    pub handled_by: Option<String>,
    /// Who it was transferred to.
    pub transferred_to: Option<String>,
}

/// A message and its call, read for an e-mail.
pub fn message_record(conn: &Connection, id: i64) -> rusqlite::Result<Option<MessageRecord>> {
    conn.prepare_cached(
        "SELECT m.id, m.call_id, m.category, m.status, m.caller, c.caller_name,
            (SELECT json_extract(e.data, '$.name') FROM events e
              WHERE e.call_id = m.call_id AND e.kind = 'contact' ORDER BY e.id LIMIT 1),
            m.caller_name, m.caller_company, m.callback, m.note, m.fields, m.written_by,
            m.recording, m.recording_ms, c.started_at, c.outcome, c.route, c.handled_by,
            c.transferred_to
         FROM messages m JOIN calls c ON c.id = m.call_id WHERE m.id = ?1",
    )?
    .query_row(params![id], |r| {
        Ok(MessageRecord {
            id: r.get(0)?,
            call_id: r.get(1)?,
            category: r.get(2)?,
            status: r.get(3)?,
            caller: r.get(4)?,
            display_name: r.get(5)?,
            contact_name: r.get(6)?,
            written_name: r.get(7)?,
            caller_company: r.get(8)?,
            callback: r.get(9)?,
            about: r.get(10)?,
            fields: r.get(11)?,
            written_by: r.get(12)?,
            recording: r.get(13)?,
            recording_ms: r.get(14)?,
            started_at: r.get(15)?,
            outcome: r.get(16)?,
            route: r.get(17)?,
            handled_by: r.get(18)?,
            transferred_to: r.get(19)?,
        })
    })
    .optional()
}

/// The outbox for `permanence deliveries`: newest first, only the failed ones if asked.
pub fn deliveries(
    path: &Path,
    failed_only: bool,
    limit: usize,
) -> Result<Vec<Delivery>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let conn = super::open_connection(path)?;
    let sql = format!(
        "SELECT {COLUMNS} FROM outbox WHERE (?1 = 0 OR status = 'failed') ORDER BY id DESC LIMIT ?2"
    );
    let mut stmt = conn.prepare(&sql).map_err(err)?;
    let rows = stmt
        .query_map(params![failed_only, limit as i64], delivery)
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

/// Puts a failed delivery back in the queue, due now, with a fresh retry window (the
/// running server picks it up within a second). None when no failed row has this id.
pub fn retry_delivery(
    path: &Path,
    id: i64,
    now: Timestamp,
) -> Result<Option<Delivery>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let conn = super::open_connection(path)?;
    let now = time_text(now);
    let changed = conn
        .execute(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt = ?2, retry_since = ?2
             WHERE id = ?1 AND status = 'failed'",
            params![id, now],
        )
        .map_err(err)?;
    if changed == 0 {
        return Ok(None);
    }
    let sql = format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1");
    conn.query_row(&sql, params![id], delivery)
        .optional()
        .map_err(err)
}

/// A row's payload (what it kept of the plan).
pub fn message_payload(conn: &Connection, row: i64) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT payload FROM outbox WHERE id = ?1")?
        .query_row(params![row], |r| r.get(0))
        .optional()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::WebhookConfig;
    use crate::store::{Outcome, Store, WrittenMessage, now_text};

    const PLAN: &str = r#"[company]
id = "acme"
name = "ACME Plomberie"
numbers = ["+33180000001"]

[executives.marie]
name = "Marie Durand"
reach = ["sip:marie@192.0.2.1"]
email = "marie@acme.example"
deliver = [
  { category = "urgent", to = ["email", "webhook"], when = "now" },
  { category = "normal", to = ["email"], when = "digest 18:30" },
  { category = "spam", to = [], when = "never" },
]

[[route]]
name = "r"
steps = [{ hangup = {} }]
"#;

    fn rules() -> Rules {
        Rules {
            company: Arc::new(crate::dialplan::parse_str(PLAN).unwrap()),
            webhooks: vec![WebhookConfig {
                url: "https://hooks.example/p".into(),
                secret: "whsec_x".into(),
                company: None,
            }]
            .into(),
        }
    }

    fn call(store: &Store, category: &'static str) -> i64 {
        let id = store.ids().next();
        store.writer().write(Record::CallStarted {
            id,
            company: Some("acme".into()),
            dialled: "+33180000001".into(),
            caller: "+33622222222".into(),
            caller_name: None,
            route: Some("r".into()),
            category,
            sip_call_id: format!("c{id}"),
            at: now_text(),
        });
        id
    }

    fn ended(store: &Store, id: i64, status: &'static str) {
        store.writer().write(Record::CallEnded {
            id,
            outcome: Outcome::Voicemail,
            status: Some(status),
            at: now_text(),
            deliver: Some(rules()),
        });
    }

    fn written(store: &Store, id: i64, category: &str) {
        store.writer().write(Record::MessageWritten {
            id,
            message: Box::new(WrittenMessage {
                caller_name: "Syndic Martin".into(),
                caller_company: String::new(),
                callback: "+33622222222".into(),
                about: "fuite".into(),
                for_executive: None,
                category: category.into(),
                fields: Default::default(),
            }),
            by: "alice".into(),
            at: now_text(),
            deliver: Some(rules()),
        });
    }

    /// (channel, status, event) of every row, in order.
    fn rows(db: &Path) -> Vec<(String, String, String)> {
        deliveries(db, false, 100)
            .unwrap()
            .into_iter()
            .rev()
            .map(|d| (d.channel, d.status, d.event))
            .collect()
    }

    fn row(channel: &str, status: &str, event: &str) -> (String, String, String) {
        (channel.into(), status.into(), event.into())
    }

    #[test]
    fn a_message_left_at_the_end_of_a_call_is_queued_once_with_it() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = dir.path().join("p.db");
        let (store, _) = Store::open(&db).unwrap();
        let urgent = call(&store, "urgent");
        ended(&store, urgent, "new");
        // A call filed at its end (a greeting heard, spam): nothing to deliver.
        let filed = call(&store, "urgent");
        ended(&store, filed, "filed");
        store.flush();
        let m = format!("message:{}:urgent:marie", message_of(&db, urgent));
        assert_eq!(
            rows(&db),
            [row("email", "pending", &m), row("webhook", "pending", &m)]
        );
        let conn = crate::store::open_connection(&db).unwrap();
        let due = due_deliveries(&conn, Timestamp::now(), 10).unwrap();
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].target, "marie@acme.example");
        let payload: Payload = serde_json::from_str(&due[0].payload).unwrap();
        assert_eq!(payload.executive_name, "Marie Durand");

        // Sent; a later result for the same row never undoes it.
        let w = store.writer();
        w.write(Record::DeliveryTried {
            id: due[0].id,
            result: Tried::Sent,
            at: now_text(),
        });
        w.write(Record::DeliveryTried {
            id: due[0].id,
            result: Tried::Failed {
                attempts: 9,
                error: "late".into(),
            },
            at: now_text(),
        });
        w.write(Record::DeliveryTried {
            id: due[1].id,
            result: Tried::Retry {
                attempts: 1,
                next: "2999-01-01T00:00:00.000Z".into(),
                error: "down".into(),
            },
            at: now_text(),
        });
        drop(w);
        store.flush();
        let due = due_deliveries(&conn, Timestamp::now(), 10).unwrap();
        assert!(
            due.is_empty(),
            "one sent, one waiting for its retry: {due:?}"
        );
        let all = deliveries(&db, false, 10).unwrap();
        assert_eq!(
            (
                all[1].status.as_str(),
                all[1].attempts,
                all[1].last_error.as_deref()
            ),
            ("sent", 1, None)
        );
        assert_eq!(
            (all[0].attempts, all[0].last_error.as_deref()),
            (1, Some("down"))
        );
        store.close();
    }

    fn message_of(db: &Path, call: i64) -> i64 {
        crate::store::open_connection(db)
            .unwrap()
            .query_row("SELECT id FROM messages WHERE call_id = ?1", [call], |r| {
                r.get(0)
            })
            .unwrap()
    }

    #[test]
    fn an_edit_delivers_again_only_when_the_category_changes() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = dir.path().join("p.db");
        let (store, _) = Store::open(&db).unwrap();
        let id = call(&store, "normal");
        // She writes it during the call as normal: a line for the summary.
        written(&store, id, "normal");
        // Saved again, same category: nothing new. The call's end adds nothing either
        // (she wrote it).
        written(&store, id, "normal");
        ended(&store, id, "new");
        store.flush();
        let m = message_of(&db, id);
        let normal = format!("message:{m}:normal:marie");
        assert_eq!(rows(&db), [row("digest", "held", &normal)]);

        // Re-filed as urgent: delivered now, and the summary line goes.
        written(&store, id, "urgent");
        // Saved again as urgent: nothing new.
        written(&store, id, "urgent");
        store.flush();
        let urgent = format!("message:{m}:urgent:marie");
        assert_eq!(
            rows(&db),
            [
                row("digest", "cancelled", &normal),
                row("email", "pending", &urgent),
                row("webhook", "pending", &urgent),
            ]
        );
        // As spam (rule: never): nothing.
        written(&store, id, "spam");
        store.flush();
        assert_eq!(rows(&db).len(), 3);
        store.close();
    }

    #[test]
    fn held_lines_make_one_summary_once() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = dir.path().join("p.db");
        let (store, _) = Store::open(&db).unwrap();
        for _ in 0..2 {
            let id = call(&store, "normal");
            written(&store, id, "normal");
        }
        store.flush();
        let conn = crate::store::open_connection(&db).unwrap();
        assert!(
            held_due(&conn, Timestamp::now()).unwrap().is_empty(),
            "not before 18:30"
        );
        let later = Timestamp::now() + jiff::SignedDuration::from_hours(25);
        let held = held_due(&conn, later).unwrap();
        let summaries = crate::delivery::digest::summaries(&held);
        assert_eq!(summaries.len(), 1);
        let s = &summaries[0];
        let made = || Record::SummaryMade {
            summary: Box::new(SummaryRow {
                event: s.event.clone(),
                company: s.company.clone(),
                executive: s.executive.clone(),
                target: s.target.clone(),
                payload: "{}".into(),
                rows: s.rows.clone(),
            }),
            at: now_text(),
        };
        store.writer().write(made());
        store.writer().write(made());
        store.flush();
        let all = deliveries(&db, false, 10).unwrap();
        assert_eq!(all.len(), 3, "one summary: {all:?}");
        let summary = &all[0];
        assert_eq!(
            (summary.channel.as_str(), summary.status.as_str()),
            ("email", "pending")
        );
        assert!(
            all[1..]
                .iter()
                .all(|d| d.status == "digested" && d.digest_id == Some(summary.id))
        );
        assert_eq!(summary_messages(&conn, summary.id).unwrap().len(), 2);
        assert!(held_due(&conn, later).unwrap().is_empty());
        store.close();
    }

    #[test]
    fn a_failed_delivery_is_retried_by_hand_with_a_fresh_window() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = dir.path().join("p.db");
        let (store, _) = Store::open(&db).unwrap();
        let id = call(&store, "urgent");
        ended(&store, id, "new");
        store.flush();
        let first = deliveries(&db, false, 10).unwrap().pop().unwrap();
        assert_eq!(
            retry_delivery(&db, first.id, Timestamp::now()).unwrap(),
            None,
            "not failed"
        );
        store.writer().write(Record::DeliveryTried {
            id: first.id,
            result: Tried::Failed {
                attempts: 30,
                error: "550 no such user".into(),
            },
            at: now_text(),
        });
        store.flush();
        assert_eq!(deliveries(&db, true, 10).unwrap().len(), 1);
        let later: Timestamp = "2999-01-01T00:00:00Z".parse().unwrap();
        let again = retry_delivery(&db, first.id, later).unwrap().unwrap();
        assert_eq!(
            (
                again.status.as_str(),
                again.attempts,
                again.retry_since.as_str()
            ),
            ("pending", 0, "2999-01-01T00:00:00.000Z")
        );
        assert_eq!(again.last_error.as_deref(), Some("550 no such user"));
        assert!(deliveries(&db, true, 10).unwrap().is_empty());
        store.close();
    }
}
