//! Appointments (`appointments`) and every change to them (`appointment_changes`: who,
//! when, what, why).
//!
//! A double booking is refused by the database itself: a booking or a move is one
//! conditional statement run by the writer thread (the only writer), which inserts or
//! moves only when no appointment of that executive that still holds its time lies within
//! the new one's window (the span widened by the buffer, [`crate::agenda::Span::window`]);
//! a partial UNIQUE index on (company, executive, starts_at) backs it. Two secretaries
//! clicking at once both get their record written in turn; the second finds the time
//! taken and nothing is inserted. The web layer reads back by uid to answer 201 or 409.
//! Status changes are conditional too (only from a status that may become the new one),
//! so a second Confirm changes nothing and writes no change row.

use std::path::Path;

use rusqlite::{OptionalExtension, params};

use super::{Record, StoreError, open_connection};
pub use crate::agenda::Client;
use crate::agenda::{Span, Status, stamp};

/// Who is told of a change by e-mail, through the outbox (rows written in the change's own
/// transaction: a notice exists if and only if its change is on disk).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Notices {
    /// The executive's address (`email` in the plan): told of a booking or a move (with
    /// Confirm and Cancel links), and of a secretary's cancellation.
    pub executive_email: Option<String>,
    /// The webhooks (`[[webhooks]]` URLs for the company) told when the executive is, if
    /// their `deliver` rules send anything by webhook.
    pub webhooks: Vec<String>,
    /// What the e-mails need of the plan (JSON of `delivery::rules::Payload`).
    pub payload: String,
}

/// A new appointment, as the writer inserts it.
#[derive(Debug, Clone, PartialEq)]
pub struct Booking {
    /// Stable identifier (ICS UID, links).
    pub uid: String,
    /// The company.
    pub company: String,
    /// The executive's id.
    pub executive: String,
    /// When.
    pub span: Span,
    /// The minutes kept free around it (the plan's buffer at booking time).
    pub buffer: u16,
    /// `proposed` or `confirmed` (the plan says whether the executive must confirm).
    pub status: Status,
    /// The call it was booked from, if any (its message is linked too).
    pub call: Option<i64>,
    /// The client.
    pub client: Client,
    /// The secretary who booked it.
    pub by: String,
    /// When (as stored).
    pub at: String,
    /// Who is told.
    pub notify: Notices,
}

/// A change to an appointment.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The executive agrees (only from `proposed`).
    Confirm,
    /// Called off (from `proposed` or `confirmed`), with the reason given.
    Cancel {
        /// Why.
        why: String,
    },
    /// It took place (only from `confirmed`).
    Done,
    /// Moved to another time, if clear of the others; `status` is what it becomes
    /// (`proposed` again when the executive must confirm).
    Move {
        /// The new time.
        span: Span,
        /// The plan's buffer.
        buffer: u16,
        /// Its status after the move.
        status: Status,
    },
}

impl Change {
    /// The word in the change rows.
    pub fn what(&self) -> &'static str {
        match self {
            Change::Confirm => "confirmed",
            Change::Cancel { .. } => "cancelled",
            Change::Done => "done",
            Change::Move { .. } => "moved",
        }
    }
}

/// The table and its change rows (migration text, appended to `MIGRATIONS`).
pub(super) const MIGRATION: &str = "CREATE TABLE appointments (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        company TEXT NOT NULL,
        executive TEXT NOT NULL,
        starts_at TEXT NOT NULL,
        ends_at TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('proposed', 'confirmed', 'cancelled', 'done')),
        sequence INTEGER NOT NULL DEFAULT 0,
        call_id INTEGER REFERENCES calls(id),
        message_id INTEGER REFERENCES messages(id),
        client_name TEXT NOT NULL,
        client_phone TEXT NOT NULL DEFAULT '',
        client_email TEXT NOT NULL DEFAULT '',
        client_address TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        booked_by TEXT NOT NULL,
        booked_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        cancelled_by TEXT,
        cancelled_at TEXT,
        cancel_reason TEXT
     );
     CREATE UNIQUE INDEX appointments_slot ON appointments(company, executive, starts_at)
        WHERE status IN ('proposed', 'confirmed');
     CREATE INDEX appointments_executive ON appointments(company, executive, starts_at);
     CREATE INDEX appointments_call ON appointments(call_id);
     CREATE TABLE appointment_changes (
        id INTEGER PRIMARY KEY,
        appointment_id INTEGER NOT NULL REFERENCES appointments(id),
        at TEXT NOT NULL,
        changed_by TEXT NOT NULL,
        what TEXT NOT NULL,
        from_status TEXT,
        to_status TEXT NOT NULL,
        from_starts TEXT,
        to_starts TEXT,
        why TEXT
     );
     CREATE INDEX appointment_changes_appointment ON appointment_changes(appointment_id, id);";

/// Whether another live appointment of the same executive lies within a window; `?1`
/// company, `?2` executive, `?3` window start, `?4` window end, `?5` an id to leave out.
const CLEAR: &str = "NOT EXISTS (SELECT 1 FROM appointments o
        WHERE o.company = ?1 AND o.executive = ?2 AND o.status IN ('proposed', 'confirmed')
          AND o.starts_at < ?4 AND o.ends_at > ?3 AND o.id IS NOT ?5)";

/// Writes a booking or a change (`store::apply` sends only those here).
pub(super) fn apply(tx: &rusqlite::Transaction, record: &Record) -> rusqlite::Result<()> {
    match record {
        Record::AppointmentBooked(b) => book(tx, b),
        Record::AppointmentChanged {
            uid,
            change,
            by,
            at,
            notify,
        } => change_one(tx, uid, change, by, at, notify),
        _ => Ok(()),
    }
}

fn book(tx: &rusqlite::Transaction, b: &Booking) -> rusqlite::Result<()> {
    let window = b.span.window(b.buffer);
    let sql = format!(
        "INSERT OR IGNORE INTO appointments (uid, company, executive, starts_at, ends_at, status,
            call_id, message_id, client_name, client_phone, client_email, client_address, reason,
            booked_by, booked_at, updated_at)
         SELECT ?6, ?1, ?2, ?7, ?8, ?9, ?10, (SELECT id FROM messages WHERE call_id = ?10),
            ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?17
         WHERE {CLEAR}"
    );
    let inserted = tx.prepare_cached(&sql)?.execute(params![
        b.company,
        b.executive,
        stamp(window.starts),
        stamp(window.ends),
        None::<i64>,
        b.uid,
        stamp(b.span.starts),
        stamp(b.span.ends),
        b.status.as_str(),
        b.call,
        b.client.name,
        b.client.phone,
        b.client.email,
        b.client.address,
        b.client.reason,
        b.by,
        b.at,
    ])?;
    if inserted == 1 {
        tx.prepare_cached(
            "INSERT INTO appointment_changes (appointment_id, at, changed_by, what, to_status, to_starts)
             VALUES (last_insert_rowid(), ?1, ?2, 'booked', ?3, ?4)",
        )?
        .execute(params![b.at, b.by, b.status.as_str(), stamp(b.span.starts)])?;
        timeline(tx, &b.uid, "booked", &b.by, &b.at)?;
        notify(
            tx,
            &b.uid,
            &b.notify,
            true,
            b.status == Status::Confirmed,
            &b.at,
        )?;
    } else {
        tracing::info!(uid = %b.uid, executive = %b.executive, "booking refused: the time is taken");
    }
    Ok(())
}

/// An entry in the timeline of the call the appointment was booked from (if any), so that
/// the message's page shows what became of it.
fn timeline(
    tx: &rusqlite::Transaction,
    uid: &str,
    what: &str,
    by: &str,
    at: &str,
) -> rusqlite::Result<()> {
    let Some((call, starts)) = tx
        .prepare_cached("SELECT call_id, starts_at FROM appointments WHERE uid = ?1")?
        .query_row(params![uid], |r| {
            Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?
    else {
        return Ok(());
    };
    let Some(call) = call else {
        return Ok(());
    };
    let event = crate::event::CallEvent::Appointment {
        uid: uid.to_string(),
        what: what.to_string(),
        starts,
        by: by.to_string(),
    };
    tx.prepare_cached("INSERT INTO events (call_id, at, kind, data) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![call, at, event.kind(), event.data()])?;
    Ok(())
}

/// Queues the e-mails of the change just made to `uid` (its SEQUENCE names the event): to
/// the executive when `executive` (and they have an address), to the client when `client`
/// (and they gave an address).
fn notify(
    tx: &rusqlite::Transaction,
    uid: &str,
    notices: &Notices,
    executive: bool,
    client: bool,
    at: &str,
) -> rusqlite::Result<()> {
    let Some((company, exec, sequence, client_email)) = tx
        .prepare_cached(
            "SELECT company, executive, sequence, client_email FROM appointments WHERE uid = ?1",
        )?
        .query_row(params![uid], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .optional()?
    else {
        return Ok(());
    };
    let mut targets = Vec::new();
    if executive && let Some(to) = &notices.executive_email {
        targets.push(("executive", "email", to.clone()));
    }
    if executive {
        for url in &notices.webhooks {
            targets.push(("webhook", "webhook", url.clone()));
        }
    }
    if client && !client_email.is_empty() {
        targets.push(("client", "email", client_email));
    }
    for (whom, channel, to) in targets {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO outbox (event, channel, target, company, executive, payload,
                status, next_attempt, retry_since, created_at)
             VALUES (?1, ?7, ?2, ?3, ?4, ?5, 'pending', ?6, ?6, ?6)",
        )?
        .execute(params![
            format!("appointment:{uid}:{sequence}:{whom}"),
            to,
            company,
            exec,
            notices.payload,
            at,
            channel
        ])?;
    }
    Ok(())
}

fn change_one(
    tx: &rusqlite::Transaction,
    uid: &str,
    change: &Change,
    by: &str,
    at: &str,
    notices: &Notices,
) -> rusqlite::Result<()> {
    let before: Option<(i64, String, String, String, String)> = tx
        .prepare_cached(
            "SELECT id, company, executive, status, starts_at FROM appointments WHERE uid = ?1",
        )?
        .query_row(params![uid], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    let Some((id, company, executive, from_status, from_starts)) = before else {
        return Ok(());
    };
    let Some(from) = Status::parse(&from_status) else {
        return Ok(());
    };
    let changed = match change {
        Change::Confirm | Change::Done => {
            let to = if matches!(change, Change::Confirm) {
                Status::Confirmed
            } else {
                Status::Done
            };
            if !from.may_become(to) {
                return Ok(());
            }
            tx.prepare_cached(
                "UPDATE appointments SET status = ?2, sequence = sequence + 1, updated_at = ?3
                 WHERE id = ?1 AND status = ?4",
            )?
            .execute(params![id, to.as_str(), at, from.as_str()])?
                == 1
        }
        Change::Cancel { why } => {
            if !from.may_become(Status::Cancelled) {
                return Ok(());
            }
            tx.prepare_cached(
                "UPDATE appointments SET status = 'cancelled', sequence = sequence + 1,
                    updated_at = ?2, cancelled_by = ?3, cancelled_at = ?2, cancel_reason = ?4
                 WHERE id = ?1 AND status = ?5",
            )?
            .execute(params![id, at, by, why, from.as_str()])?
                == 1
        }
        Change::Move {
            span,
            buffer,
            status,
        } => {
            if !from.holds_time() {
                return Ok(());
            }
            let window = span.window(*buffer);
            let sql = format!(
                "UPDATE appointments SET starts_at = ?6, ends_at = ?7, status = ?8,
                    sequence = sequence + 1, updated_at = ?9
                 WHERE id = ?5 AND status IN ('proposed', 'confirmed') AND {CLEAR}"
            );
            tx.prepare_cached(&sql)?.execute(params![
                company,
                executive,
                stamp(window.starts),
                stamp(window.ends),
                id,
                stamp(span.starts),
                stamp(span.ends),
                status.as_str(),
                at,
            ])? == 1
        }
    };
    if changed {
        let (to_status, to_starts, why) = match change {
            Change::Confirm => (Status::Confirmed, None, None),
            Change::Done => (Status::Done, None, None),
            Change::Cancel { why } => (Status::Cancelled, None, Some(why.as_str())),
            Change::Move { span, status, .. } => (*status, Some(stamp(span.starts)), None),
        };
        tx.prepare_cached(
            "INSERT INTO appointment_changes (appointment_id, at, changed_by, what, from_status,
                to_status, from_starts, to_starts, why)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            id,
            at,
            by,
            change.what(),
            from.as_str(),
            to_status.as_str(),
            to_starts.as_ref().map(|_| from_starts.as_str()),
            to_starts,
            why,
        ])?;
        timeline(tx, uid, change.what(), by, at)?;
        // The executive hears of a move (to confirm again) and of a secretary's
        // cancellation; the client of every confirmation and cancellation.
        let by_executive = by.starts_with("executive:");
        let (executive, client) = match change {
            Change::Confirm => (false, true),
            Change::Cancel { .. } => (!by_executive, true),
            Change::Done => (false, false),
            Change::Move { status, .. } => (true, *status == Status::Confirmed),
        };
        notify(tx, uid, notices, executive, client, at)?;
    }
    Ok(())
}

/// An appointment as read back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppointmentRow {
    /// Row id.
    pub id: i64,
    /// Stable identifier.
    pub uid: String,
    /// The company.
    pub company: String,
    /// The executive's id.
    pub executive: String,
    /// Start, as stored (UTC, whole seconds).
    pub starts_at: String,
    /// End, as stored.
    pub ends_at: String,
    /// `proposed`, `confirmed`, `cancelled` or `done`.
    pub status: String,
    /// Raised by each change (ICS SEQUENCE).
    pub sequence: u32,
    /// The call it was booked from.
    pub call_id: Option<i64>,
    /// That call's message.
    pub message_id: Option<i64>,
    /// The client.
    pub client: Client,
    /// The secretary who booked it.
    pub booked_by: String,
    /// When.
    pub booked_at: String,
    /// Who cancelled it, when and why.
    pub cancelled_by: Option<String>,
    /// When it was cancelled.
    pub cancelled_at: Option<String>,
    /// Why.
    pub cancel_reason: Option<String>,
}

impl AppointmentRow {
    /// Its time, if the stored text reads back.
    pub fn span(&self) -> Option<Span> {
        Some(Span {
            starts: self.starts_at.parse().ok()?,
            ends: self.ends_at.parse().ok()?,
        })
    }

    /// Its status, if the stored word reads back.
    pub fn status(&self) -> Option<Status> {
        Status::parse(&self.status)
    }
}

const COLUMNS: &str = "id, uid, company, executive, starts_at, ends_at, status, sequence, call_id,
    message_id, client_name, client_phone, client_email, client_address, reason, booked_by,
    booked_at, cancelled_by, cancelled_at, cancel_reason";

fn row(r: &rusqlite::Row) -> rusqlite::Result<AppointmentRow> {
    Ok(AppointmentRow {
        id: r.get(0)?,
        uid: r.get(1)?,
        company: r.get(2)?,
        executive: r.get(3)?,
        starts_at: r.get(4)?,
        ends_at: r.get(5)?,
        status: r.get(6)?,
        sequence: r.get(7)?,
        call_id: r.get(8)?,
        message_id: r.get(9)?,
        client: Client {
            name: r.get(10)?,
            phone: r.get(11)?,
            email: r.get(12)?,
            address: r.get(13)?,
            reason: r.get(14)?,
        },
        booked_by: r.get(15)?,
        booked_at: r.get(16)?,
        cancelled_by: r.get(17)?,
        cancelled_at: r.get(18)?,
        cancel_reason: r.get(19)?,
    })
}

/// One appointment by its uid.
pub fn appointment(path: &Path, uid: &str) -> Result<Option<AppointmentRow>, StoreError> {
    let conn = open_connection(path)?;
    appointment_in(&conn, uid).map_err(super::sqlite(path))
}

/// One appointment by its uid, on an open connection (the delivery worker's).
pub fn appointment_in(
    conn: &rusqlite::Connection,
    uid: &str,
) -> rusqlite::Result<Option<AppointmentRow>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM appointments WHERE uid = ?1"),
        params![uid],
        row,
    )
    .optional()
}

/// The appointments starting in `[from, to)` (stamps as [`stamp`] writes them), of one
/// company and executive when given, in time order, cancelled ones included.
pub fn appointments(
    path: &Path,
    company: Option<&str>,
    executive: Option<&str>,
    from: &str,
    to: &str,
) -> Result<Vec<AppointmentRow>, StoreError> {
    let conn = open_connection(path)?;
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM appointments
             WHERE starts_at >= ?1 AND starts_at < ?2
               AND (?3 IS NULL OR company = ?3) AND (?4 IS NULL OR executive = ?4)
             ORDER BY starts_at, id LIMIT 2000"
        ))
        .map_err(super::sqlite(path))?;
    let rows = stmt
        .query_map(params![from, to, company, executive], row)
        .map_err(super::sqlite(path))?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(super::sqlite(path))
}

/// The times an executive's live appointments take between two instants (widened by a
/// day on each side by the caller when buffers matter).
pub fn busy(
    path: &Path,
    company: &str,
    executive: &str,
    from: &str,
    to: &str,
) -> Result<Vec<Span>, StoreError> {
    Ok(
        appointments(path, Some(company), Some(executive), from, to)?
            .iter()
            .filter(|a| a.status().is_some_and(Status::holds_time))
            .filter_map(AppointmentRow::span)
            .collect(),
    )
}

/// One change row of an appointment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChangeRow {
    /// When.
    pub at: String,
    /// Who (a secretary's username, or `executive:ID`).
    pub by: String,
    /// `booked`, `confirmed`, `cancelled`, `moved`, `done`.
    pub what: String,
    /// The status before (none for the booking).
    pub from_status: Option<String>,
    /// The status after.
    pub to_status: String,
    /// The start before a move.
    pub from_starts: Option<String>,
    /// The start after a move (or at booking).
    pub to_starts: Option<String>,
    /// The reason given (a cancellation's).
    pub why: Option<String>,
}

/// An appointment's changes, oldest first.
pub fn appointment_changes(path: &Path, uid: &str) -> Result<Vec<ChangeRow>, StoreError> {
    let conn = open_connection(path)?;
    let mut stmt = conn
        .prepare(
            "SELECT c.at, c.changed_by, c.what, c.from_status, c.to_status, c.from_starts,
                    c.to_starts, c.why
             FROM appointment_changes c JOIN appointments a ON a.id = c.appointment_id
             WHERE a.uid = ?1 ORDER BY c.id",
        )
        .map_err(super::sqlite(path))?;
    let rows = stmt
        .query_map(params![uid], |r| {
            Ok(ChangeRow {
                at: r.get(0)?,
                by: r.get(1)?,
                what: r.get(2)?,
                from_status: r.get(3)?,
                to_status: r.get(4)?,
                from_starts: r.get(5)?,
                to_starts: r.get(6)?,
                why: r.get(7)?,
            })
        })
        .map_err(super::sqlite(path))?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(super::sqlite(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, now_text};

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().expect("valid time")
    }

    fn booking(uid: &str, by: &str, starts: &str, ends: &str) -> Record {
        Record::AppointmentBooked(Box::new(Booking {
            uid: uid.into(),
            company: "acme".into(),
            executive: "marie".into(),
            span: Span {
                starts: at(starts),
                ends: at(ends),
            },
            buffer: 10,
            status: Status::Proposed,
            call: None,
            client: Client {
                name: "Jean".into(),
                phone: String::new(),
                email: String::new(),
                address: String::new(),
                reason: String::new(),
            },
            by: by.into(),
            at: now_text(),
            notify: Notices::default(),
        }))
    }

    #[test]
    fn the_writer_refuses_a_second_booking_of_the_same_time_or_its_buffer() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = dir.path().join("p.db");
        let (store, _) = Store::open(&db).unwrap();
        let w = store.writer();
        // No check before: the records alone decide (two secretaries' writes in one batch).
        w.write(booking(
            "a",
            "alice",
            "2026-12-07T08:00:00Z",
            "2026-12-07T08:30:00Z",
        ));
        w.write(booking(
            "b",
            "bob",
            "2026-12-07T08:00:00Z",
            "2026-12-07T08:30:00Z",
        ));
        w.write(booking(
            "c",
            "bob",
            "2026-12-07T08:35:00Z",
            "2026-12-07T09:05:00Z",
        ));
        w.write(booking(
            "d",
            "bob",
            "2026-12-07T08:40:00Z",
            "2026-12-07T09:10:00Z",
        ));
        store.flush();
        let all = appointments(&db, None, None, "2026", "2027").unwrap();
        let uids: Vec<&str> = all.iter().map(|a| a.uid.as_str()).collect();
        assert_eq!(uids, ["a", "d"], "b overlaps a, c is inside a's buffer");
        assert_eq!(appointment_changes(&db, "a").unwrap().len(), 1);

        // The index refuses what a hand-written insert would double.
        let conn = open_connection(&db).unwrap();
        let doubled = conn.execute(
            "INSERT INTO appointments (uid, company, executive, starts_at, ends_at, status, client_name, booked_by, booked_at, updated_at)
             VALUES ('e', 'acme', 'marie', '2026-12-07T08:00:00Z', '2026-12-07T08:30:00Z', 'proposed', 'x', 'x', 'x', 'x')",
            [],
        );
        assert!(doubled.is_err(), "{doubled:?}");

        // Confirm twice: one change. Cancel frees the time; a move into it then passes.
        let move_d_into_a = || Record::AppointmentChanged {
            uid: "d".into(),
            change: Change::Move {
                span: Span {
                    starts: at("2026-12-07T08:00:00Z"),
                    ends: at("2026-12-07T08:30:00Z"),
                },
                buffer: 10,
                status: Status::Proposed,
            },
            by: "bob".into(),
            at: now_text(),
            notify: Notices::default(),
        };
        for _ in 0..2 {
            w.write(Record::AppointmentChanged {
                uid: "a".into(),
                change: Change::Confirm,
                by: "executive:marie".into(),
                at: now_text(),
                notify: Notices::default(),
            });
        }
        w.write(move_d_into_a());
        store.flush();
        let a = appointment(&db, "a").unwrap().unwrap();
        assert_eq!((a.status.as_str(), a.sequence), ("confirmed", 1));
        assert_eq!(appointment_changes(&db, "a").unwrap().len(), 2);
        let d = appointment(&db, "d").unwrap().unwrap();
        assert_eq!(
            d.starts_at, "2026-12-07T08:40:00Z",
            "the move into a's time was refused"
        );
        w.write(Record::AppointmentChanged {
            uid: "a".into(),
            change: Change::Cancel {
                why: "malade".into(),
            },
            by: "executive:marie".into(),
            at: now_text(),
            notify: Notices::default(),
        });
        w.write(move_d_into_a());
        store.flush();
        let a = appointment(&db, "a").unwrap().unwrap();
        assert_eq!(a.cancelled_by.as_deref(), Some("executive:marie"));
        assert_eq!(a.cancel_reason.as_deref(), Some("malade"));
        let d = appointment(&db, "d").unwrap().unwrap();
        assert_eq!(
            (d.starts_at.as_str(), d.sequence),
            ("2026-12-07T08:00:00Z", 1)
        );
        let moved = appointment_changes(&db, "d").unwrap();
        assert_eq!(moved[1].what, "moved");
        assert_eq!(
            moved[1].from_starts.as_deref(),
            Some("2026-12-07T08:40:00Z")
        );
        drop(w);
        store.close();
    }
}
