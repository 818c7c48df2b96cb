//! Follow-up tasks (`tasks`) and their attempts (`task_attempts`): the writes the writer
//! thread applies, and the reads for the console and the daily summary.
//!
//! A task's id is chosen before it is written ([`TaskIds`], like calls'), so that the
//! console can answer with it once the write is committed; an import is one record, so
//! one transaction: all its tasks are written or none.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rusqlite::{OptionalExtension, params};

use super::{CallRowId, Record, StoreError, open_connection, sqlite};
use crate::followup::{AttemptResult, NewTask, Status};

/// Hands out task row ids, from the highest in the records at start.
#[derive(Debug, Clone)]
pub struct TaskIds(Arc<AtomicI64>);

impl TaskIds {
    /// Starts after the highest id written so far.
    pub fn load(path: &Path) -> Result<TaskIds, StoreError> {
        let conn = open_connection(path)?;
        let last: i64 = conn
            .query_row("SELECT coalesce(max(id), 0) FROM tasks", [], |r| r.get(0))
            .map_err(sqlite(path))?;
        Ok(TaskIds(Arc::new(AtomicI64::new(last))))
    }

    /// The next id.
    pub fn next(&self) -> i64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// A change of a task's status, outcome or assignee (None: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskChange {
    /// Its new status.
    pub status: Option<Status>,
    /// Its outcome notes.
    pub outcome: Option<String>,
    /// Its assignee (Some(None): anyone).
    pub assignee: Option<Option<String>>,
}

/// Writes the task records; `store::apply` sends only those here.
pub(super) fn apply(tx: &rusqlite::Transaction, record: &Record) -> rusqlite::Result<()> {
    match record {
        Record::TasksCreated {
            company,
            tasks,
            call,
            by,
            at,
        } => {
            let mut insert = tx.prepare_cached(
                "INSERT INTO tasks (id, company, kind, status, customer, phone, email,
                    amount_cents, invoice, due, assignee, notes, call_id, created_by,
                    created_at, updated_by, updated_at)
                 VALUES (?1, ?2, ?3, 'open', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?13, ?14)",
            )?;
            for (id, t) in tasks.iter() {
                insert.execute(params![
                    id,
                    company,
                    t.kind.as_str(),
                    t.customer,
                    t.phone.as_ref().map(|p| p.as_str()),
                    t.email,
                    t.amount_cents,
                    t.invoice,
                    t.due.map(|d| d.to_string()),
                    t.assignee,
                    t.notes,
                    call,
                    by,
                    at,
                ])?;
            }
            Ok(())
        }
        Record::TaskChanged { id, change, by, at } => {
            tx.prepare_cached(
                "UPDATE tasks SET
                    status = coalesce(?2, status),
                    outcome = coalesce(?3, outcome),
                    assignee = CASE WHEN ?4 THEN ?5 ELSE assignee END,
                    done_at = CASE
                        WHEN ?2 IN ('done', 'abandoned') AND status NOT IN ('done', 'abandoned') THEN ?7
                        WHEN ?2 IN ('open', 'in_progress') THEN NULL
                        ELSE done_at END,
                    updated_by = ?6, updated_at = ?7
                 WHERE id = ?1",
            )?
            .execute(params![
                id,
                change.status.map(Status::as_str),
                change.outcome,
                change.assignee.is_some(),
                change.assignee.clone().flatten(),
                by,
                at,
            ])?;
            Ok(())
        }
        Record::TaskAttempt {
            task,
            result,
            note,
            call,
            by,
            at,
        } => {
            tx.prepare_cached(
                "INSERT INTO task_attempts (task_id, at, by, result, note, call_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![task, at, by, result.as_str(), note, call])?;
            // An attempt puts an open task in progress (`followup::after_attempt`).
            tx.prepare_cached(
                "UPDATE tasks SET status = CASE WHEN status = 'open' THEN 'in_progress' ELSE status END,
                    updated_by = ?2, updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![task, by, at])?;
            Ok(())
        }
        Record::CallPlaced {
            id, company, task, ..
        } => {
            tx.prepare_cached(
                "UPDATE calls SET company = ?2, direction = 'outbound', task_id = ?3 WHERE id = ?1",
            )?
            .execute(params![id, company, task])?;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A task as the records hold it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskRow {
    /// Its id.
    pub id: i64,
    /// The company's id.
    pub company: String,
    /// `callback`, `invoice`, `quote`, `other`.
    pub kind: String,
    /// `open`, `in_progress`, `done`, `abandoned`.
    pub status: String,
    /// The customer's name.
    pub customer: String,
    /// Their number (E.164).
    pub phone: Option<String>,
    /// Their e-mail address.
    pub email: Option<String>,
    /// The amount in cents.
    pub amount_cents: Option<i64>,
    /// The invoice number.
    pub invoice: Option<String>,
    /// Due day (`YYYY-MM-DD`).
    pub due: Option<String>,
    /// Who should do it (None: anyone).
    pub assignee: Option<String>,
    /// Notes.
    pub notes: String,
    /// What came of it.
    pub outcome: String,
    /// The call whose message it came from.
    pub call: Option<CallRowId>,
    /// Who created it, when.
    pub created_by: String,
    /// When it was created.
    pub created_at: String,
    /// Who changed it last.
    pub updated_by: String,
    /// When it was changed last.
    pub updated_at: String,
    /// When it was finished (done or abandoned).
    pub done_at: Option<String>,
    /// How many attempts were logged.
    pub attempts: i64,
}

const TASK_COLUMNS: &str = "t.id, t.company, t.kind, t.status, t.customer, t.phone, t.email,
    t.amount_cents, t.invoice, t.due, t.assignee, t.notes, t.outcome, t.call_id, t.created_by,
    t.created_at, t.updated_by, t.updated_at, t.done_at,
    (SELECT count(*) FROM task_attempts a WHERE a.task_id = t.id)";

fn task_row(r: &rusqlite::Row) -> rusqlite::Result<TaskRow> {
    Ok(TaskRow {
        id: r.get(0)?,
        company: r.get(1)?,
        kind: r.get(2)?,
        status: r.get(3)?,
        customer: r.get(4)?,
        phone: r.get(5)?,
        email: r.get(6)?,
        amount_cents: r.get(7)?,
        invoice: r.get(8)?,
        due: r.get(9)?,
        assignee: r.get(10)?,
        notes: r.get(11)?,
        outcome: r.get(12)?,
        call: r.get(13)?,
        created_by: r.get(14)?,
        created_at: r.get(15)?,
        updated_by: r.get(16)?,
        updated_at: r.get(17)?,
        done_at: r.get(18)?,
        attempts: r.get(19)?,
    })
}

/// One attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AttemptRow {
    /// When.
    pub at: String,
    /// Who.
    pub by: String,
    /// What came of it (`AttemptResult`'s word).
    pub result: String,
    /// Her note.
    pub note: String,
    /// The call placed for it, if any.
    pub call: Option<CallRowId>,
}

/// The most tasks one list returns.
pub const MAX_LIST: usize = 1000;

/// The tasks of a company: open ones, or all with `with_finished`; newest first (the
/// console orders them by `followup::console_order`).
pub fn company_tasks(
    path: &Path,
    company: &str,
    with_finished: bool,
) -> Result<Vec<TaskRow>, StoreError> {
    let conn = open_connection(path)?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks t
             WHERE t.company = ?1 AND (?2 OR t.status IN ('open', 'in_progress'))
             ORDER BY t.id DESC LIMIT ?3"
        ))
        .map_err(sqlite(path))?;
    let rows = stmt
        .query_map(params![company, with_finished, MAX_LIST as i64], task_row)
        .map_err(sqlite(path))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sqlite(path))
}

/// The most tasks a daily summary lists of each kind (open, finished).
const SUMMARY_TASKS: i64 = 50;

/// What a daily summary says of a company's follow-ups: its open tasks (oldest due
/// first) and those finished since `since` (stored time), with their outcomes.
pub fn summary_tasks(
    conn: &rusqlite::Connection,
    company: &str,
    since: &str,
) -> rusqlite::Result<Vec<TaskRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT * FROM (SELECT {TASK_COLUMNS} FROM tasks t
            WHERE t.company = ?1 AND t.status IN ('open', 'in_progress')
            ORDER BY t.due IS NULL, t.due, t.id LIMIT ?3)
         UNION ALL
         SELECT * FROM (SELECT {TASK_COLUMNS} FROM tasks t
            WHERE t.company = ?1 AND t.status IN ('done', 'abandoned') AND t.done_at >= ?2
            ORDER BY t.done_at LIMIT ?3)"
    ))?;
    let rows = stmt.query_map(params![company, since, SUMMARY_TASKS], task_row)?;
    rows.collect()
}

/// One task and its attempts, oldest first.
pub fn task(path: &Path, id: i64) -> Result<Option<(TaskRow, Vec<AttemptRow>)>, StoreError> {
    let conn = open_connection(path)?;
    let row = conn
        .query_row(
            &format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE t.id = ?1"),
            params![id],
            task_row,
        )
        .optional()
        .map_err(sqlite(path))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare("SELECT at, by, result, note, call_id FROM task_attempts WHERE task_id = ?1 ORDER BY id")
        .map_err(sqlite(path))?;
    let attempts = stmt
        .query_map(params![id], |r| {
            Ok(AttemptRow {
                at: r.get(0)?,
                by: r.get(1)?,
                result: r.get(2)?,
                note: r.get(3)?,
                call: r.get(4)?,
            })
        })
        .map_err(sqlite(path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sqlite(path))?;
    Ok(Some((row, attempts)))
}

/// The record of a new task made in the console (or imported): written with these ids.
pub fn created(
    company: &str,
    tasks: Vec<(i64, NewTask)>,
    call: Option<CallRowId>,
    by: &str,
    at: String,
) -> Record {
    Record::TasksCreated {
        company: company.to_string(),
        tasks,
        call,
        by: by.to_string(),
        at,
    }
}

/// The record of an attempt.
pub fn attempt(
    task: i64,
    result: AttemptResult,
    note: String,
    call: Option<CallRowId>,
    by: &str,
    at: String,
) -> Record {
    Record::TaskAttempt {
        task,
        result,
        note,
        call,
        by: by.to_string(),
        at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::followup::{Draft, Kind};
    use crate::number::Country;

    fn new_task(customer: &str, due: &str) -> NewTask {
        Draft {
            kind: Kind::Other.as_str().into(),
            customer: customer.into(),
            due: due.into(),
            ..Draft::default()
        }
        .check(Country::from_code("FR").unwrap(), &[])
        .unwrap()
    }

    #[test]
    fn a_summary_has_the_open_tasks_and_those_finished_since() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = dir.path().join("t.db");
        let mut conn = open_connection(&db).unwrap();
        let records = [
            created(
                "acme",
                vec![
                    (1, new_task("Open later", "2099-01-01")),
                    (2, new_task("Open overdue", "2020-01-01")),
                    (3, new_task("Done today", "")),
                    (4, new_task("Done long ago", "")),
                ],
                None,
                "alice",
                "2026-11-01T08:00:00.000Z".into(),
            ),
            created(
                "globex",
                vec![(5, new_task("Not acme's", ""))],
                None,
                "bob",
                "2026-11-01T08:00:00.000Z".into(),
            ),
            Record::TaskChanged {
                id: 4,
                change: TaskChange {
                    status: Some(Status::Done),
                    outcome: Some("long ago".into()),
                    assignee: None,
                },
                by: "alice".into(),
                at: "2026-11-02T08:00:00.000Z".into(),
            },
            Record::TaskChanged {
                id: 3,
                change: TaskChange {
                    status: Some(Status::Done),
                    outcome: Some("Payé".into()),
                    assignee: None,
                },
                by: "alice".into(),
                at: "2026-11-27T09:00:00.000Z".into(),
            },
            attempt(
                2,
                AttemptResult::Busy,
                String::new(),
                None,
                "alice",
                "2026-11-27T10:00:00.000Z".into(),
            ),
        ];
        let tx = conn.transaction().unwrap();
        for r in &records {
            apply(&tx, r).unwrap();
        }
        tx.commit().unwrap();
        let rows = summary_tasks(&conn, "acme", "2026-11-26T17:30:00.000Z").unwrap();
        let seen: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|t| (t.customer.as_str(), t.status.as_str(), t.outcome.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("Open overdue", "in_progress", ""),
                ("Open later", "open", ""),
                ("Done today", "done", "Payé")
            ]
        );
        assert_eq!(rows[2].done_at.as_deref(), Some("2026-11-27T09:00:00.000Z"));
        assert_eq!(rows[0].attempts, 1);
        // Reopened: no longer finished.
        let tx = conn.transaction().unwrap();
        apply(
            &tx,
            &Record::TaskChanged {
                id: 3,
                change: TaskChange {
                    status: Some(Status::Open),
                    ..TaskChange::default()
                },
                by: "alice".into(),
                at: "2026-11-27T11:00:00.000Z".into(),
            },
        )
        .unwrap();
        tx.commit().unwrap();
        let (row, _) = task(&db, 3).unwrap().unwrap();
        assert_eq!((row.status.as_str(), row.done_at), ("open", None));
    }
}
