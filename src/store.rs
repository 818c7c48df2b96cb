//! Records in SQLite: one writer thread fed by a channel, so a slow disk never stalls
//! signalling; numbered migrations (`PRAGMA user_version`); recovery of calls that a
//! crash left open.
//!
//! Times are stored as RFC 3339 UTC text (`2026-11-27T10:30:00.123Z`), readable in the
//! `sqlite3` shell and sortable as text.

mod tokens;
pub use tokens::{TokenRow, create_token, revoke_token, token_user, tokens};

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::broadcast;

pub mod inbox;
mod line;
pub use line::{current_lines, time_text};

mod executive;
pub use executive::{
    PageMessage, current_dnd, executive_message, executive_messages, links_revoked_at, revoke_links,
};
mod report;
pub use report::report;
mod tasks;
pub use tasks::{
    AttemptRow, TaskChange, TaskIds, TaskRow, attempt, company_tasks, created, summary_tasks, task,
};
pub mod agenda;
mod outbox;
pub use outbox::{
    Delivery, MessageRecord, SummaryRow, Tried, deliveries, due_deliveries, held_due,
    message_payload, message_record, retry_delivery, summary_messages,
};

/// Turns SQLite's error into ours, naming the database file (for `map_err`).
fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.into(),
        source,
    }
}

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused.
    #[error("{path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The data directory cannot be created.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The plan ran to its end (e.g. greeting played, then hang-up).
    Completed,
    /// A secretary took it.
    Secretary,
    /// Forwarded to an executive.
    Transferred,
    /// The caller left a voicemail (their voice is in the recording).
    Voicemail,
    /// The caller reached voicemail but said nothing (quiet from the beep, or hung up at
    /// it): a missed call, not a message.
    NoMessage,
    /// Refused: by the plan, or because the number reaches no company.
    Rejected,
    /// The caller hung up first (before the answer, or before the plan ended).
    Abandoned,
    /// Something went wrong (no codec in common, no ACK…).
    Failed,
    /// The server stopped or crashed during the call.
    Interrupted,
}

impl Outcome {
    /// The word stored in SQLite.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Secretary => "secretary",
            Outcome::Transferred => "transferred",
            Outcome::Voicemail => "voicemail",
            Outcome::NoMessage => "no-message",
            Outcome::Rejected => "rejected",
            Outcome::Abandoned => "abandoned",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// The current time as stored.
pub fn now_text() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

/// A call's identity in the records.
pub type CallRowId = i64;

/// One write for the writer thread.
#[derive(Debug, Clone)]
pub enum Record {
    /// A call arrived: its row (and its message row, when it reached a company).
    CallStarted {
        /// Row id, allocated by [`Store::next_call_id`].
        id: CallRowId,
        /// Company id, when the number reached one.
        company: Option<String>,
        /// The dialled number as normalised (or as received when not a number).
        dialled: String,
        /// The caller's number or URI user.
        caller: String,
        /// The caller's display name.
        caller_name: Option<String>,
        /// The route taken, if any.
        route: Option<String>,
        /// The message category the route gives.
        category: &'static str,
        /// SIP Call-ID.
        sip_call_id: String,
        /// When.
        at: String,
    },
    /// The server answered.
    CallAnswered {
        /// The call.
        id: CallRowId,
        /// When.
        at: String,
    },
    /// A timeline entry.
    Event {
        /// The call.
        id: CallRowId,
        /// What happened; its kind and JSON details are written.
        event: crate::event::CallEvent,
        /// When.
        at: String,
    },
    /// A person took the call (a secretary, or the executive it was transferred to).
    Handled {
        /// The call.
        id: CallRowId,
        /// Secretary username, or executive id / URI.
        by: String,
        /// Whether it was a transfer (`transferred_to`) rather than a secretary (`handled_by`).
        transfer: bool,
        /// When they answered.
        at: String,
    },
    /// What a secretary is doing now.
    SecretaryState {
        /// SIP username.
        username: String,
        /// `available`, `ringing`, `on-call` or `wrap-up`.
        state: &'static str,
        /// The call concerned.
        call: Option<CallRowId>,
        /// End of wrap-up, unix ms.
        until_ms: Option<i64>,
        /// When.
        at: String,
    },
    /// The route filed the message under another category.
    Category {
        /// The call.
        id: CallRowId,
        /// The category.
        category: &'static str,
        /// When.
        at: String,
    },
    /// A voicemail was recorded (`path` is `None` for an empty one).
    Recording {
        /// The call.
        id: CallRowId,
        /// The WAV file.
        path: Option<String>,
        /// Its length in milliseconds.
        ms: i64,
        /// When.
        at: String,
    },
    /// A voicemail's file was opened: linked to the message at once, its length unknown
    /// until it ends (a crash leaves it for the next start to repair).
    RecordingStarted {
        /// The call.
        id: CallRowId,
        /// The file, relative to the data directory.
        path: String,
        /// When.
        at: String,
    },
    /// A secretary's registrations now (replacing what was stored).
    Bindings {
        /// SIP username.
        username: String,
        /// (contact URI, source address, transport, expires at in unix seconds).
        bindings: Vec<(String, String, &'static str, i64, Option<String>)>,
    },
    /// A dial plan reload, accepted or refused.
    Reload {
        /// What started it: `signal`, `watch`.
        trigger: &'static str,
        /// Files added, changed or removed since the plans in force.
        changed: Vec<String>,
        /// Whether the new plans are now in force.
        accepted: bool,
        /// The errors when refused, one per line.
        errors: String,
        /// When.
        at: String,
    },
    /// One more request of a flood, counted rather than recorded on its own.
    Flood {
        /// Its source address.
        source: String,
        /// What it was (`unknown-number`).
        kind: &'static str,
        /// The minute it belongs to (unix seconds, a multiple of 60).
        minute: i64,
        /// When.
        at: String,
    },
    /// A source banned for repeated wrong credentials.
    Ban {
        /// Its address.
        source: String,
        /// The username it tried last.
        username: String,
        /// Failures that led to the ban.
        failures: u32,
        /// Until when (unix seconds).
        until: i64,
        /// When.
        at: String,
    },
    /// The call ended.
    /// A secretary logged in to the console.
    SessionOpened {
        /// SHA-256 of the session id.
        hash: String,
        /// Who.
        username: String,
        /// Until when (unix seconds).
        expires_at: i64,
        /// When.
        at: String,
    },
    /// A secretary wrote (or edited) the call's message.
    MessageWritten {
        /// The call.
        id: CallRowId,
        /// What she wrote (boxed: records travel through a channel, most are small).
        message: Box<WrittenMessage>,
        /// Who.
        by: String,
        /// When.
        at: String,
        /// The company's delivery rules: the deliveries the message makes are written
        /// with it (none: no delivery).
        deliver: Option<crate::delivery::Rules>,
    },
    /// A delivery of the outbox was tried (or put off).
    DeliveryTried {
        /// Its row.
        id: i64,
        /// What came of it.
        result: Tried,
        /// When.
        at: String,
    },
    /// A daily summary was made from the lines held for it.
    SummaryMade {
        /// The summary and the held rows it folds.
        summary: Box<SummaryRow>,
        /// When.
        at: String,
    },
    /// Someone changed a message's status (in the inbox, or the executive on their page).
    MessageStatus {
        /// The call.
        id: CallRowId,
        /// The new status.
        status: crate::inbox::Status,
        /// Who.
        by: String,
        /// When.
        at: String,
    },
    /// A company's line switched by hand: closed or open until a time. The override in
    /// force before is ended by it.
    LineSet {
        /// The company.
        company: String,
        /// `closed` or `open`.
        state: &'static str,
        /// When it ends by itself (stored time).
        until: String,
        /// Why (one checked line).
        reason: String,
        /// Who set it.
        by: String,
        /// When.
        at: String,
    },
    /// A company's override ended early, by hand.
    LineEnded {
        /// The company.
        company: String,
        /// Who ended it.
        by: String,
        /// When.
        at: String,
    },
    /// An executive set do-not-disturb from their page, until a time. The one in force
    /// before is ended by it.
    DndSet {
        /// The executive's id.
        executive: String,
        /// When it ends by itself (stored time).
        until: String,
        /// Who set it.
        by: String,
        /// When.
        at: String,
    },
    /// An executive's do-not-disturb ended early, by hand.
    DndEnded {
        /// The executive's id.
        executive: String,
        /// Who ended it.
        by: String,
        /// When.
        at: String,
    },
    /// A console session ended (logout).
    SessionClosed {
        /// SHA-256 of the session id.
        hash: String,
    },
    /// A company blocked a number (nothing changes when it is blocked already).
    Blocked {
        /// The company.
        company: String,
        /// The number, E.164.
        number: String,
        /// Why (checked and bounded).
        reason: String,
        /// The secretary who did it, or `cli`.
        by: String,
        /// When.
        at: String,
    },
    /// A block was lifted: its row stays, with who lifted it and when.
    Unblocked {
        /// The block's row.
        id: i64,
        /// The secretary who did it, or `cli`.
        by: String,
        /// When.
        at: String,
    },
    /// Follow-up tasks created together (by hand: one; an import: every row, all or
    /// nothing), with the ids chosen for them.
    TasksCreated {
        /// The company.
        company: String,
        /// Each task with its id.
        tasks: Vec<(i64, crate::followup::NewTask)>,
        /// The call whose message it follows up.
        call: Option<CallRowId>,
        /// Who.
        by: String,
        /// When.
        at: String,
    },
    /// A task's status, outcome or assignee changed.
    TaskChanged {
        /// The task.
        id: i64,
        /// What changed.
        change: TaskChange,
        /// Who.
        by: String,
        /// When.
        at: String,
    },
    /// An attempt at a task (a call, an e-mail…): an open task is then in progress.
    TaskAttempt {
        /// The task.
        task: i64,
        /// What came of it.
        result: crate::followup::AttemptResult,
        /// Her note.
        note: String,
        /// The call placed for it, if any.
        call: Option<CallRowId>,
        /// Who.
        by: String,
        /// When.
        at: String,
    },
    /// A call placed for a company from one of its tasks (its row is `CallStarted`'s):
    /// the company, `direction = outbound` and the task.
    CallPlaced {
        /// The call.
        id: CallRowId,
        /// The company it was placed for.
        company: String,
        /// The task.
        task: i64,
        /// When.
        at: String,
    },
    /// A secretary booked an appointment (inserted only if its time is still free).
    AppointmentBooked(Box<agenda::Booking>),
    /// An appointment was confirmed, cancelled, moved or marked done (only from a status
    /// that allows it; a move only to a free time).
    AppointmentChanged {
        /// The appointment's uid.
        uid: String,
        /// What changes.
        change: agenda::Change,
        /// Who (a secretary's username, or `executive:ID`).
        by: String,
        /// When.
        at: String,
        /// Who is told by e-mail.
        notify: agenda::Notices,
    },
    /// The call ended.
    CallEnded {
        /// The call.
        id: CallRowId,
        /// How.
        outcome: Outcome,
        /// The message's status by the inbox's rule (`inbox::Status`, as stored; None: the
        /// call has no message). A status someone already changed during the call is kept.
        status: Option<&'static str>,
        /// When.
        at: String,
        /// The company's delivery rules: a message left without a secretary (voicemail,
        /// missed call, urgent transfer: status `new`) makes its deliveries with the end.
        deliver: Option<crate::delivery::Rules>,
    },
}

enum Msg {
    Record(Record),
    /// Signalled once everything queued before it is committed.
    Flush(Done),
}

/// The message as a secretary writes it (every text already checked and bounded).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrittenMessage {
    /// The caller's name.
    pub caller_name: String,
    /// The caller's own company.
    pub caller_company: String,
    /// The number to call back.
    pub callback: String,
    /// What it is about.
    pub about: String,
    /// For which executive (their id), if any.
    pub for_executive: Option<String>,
    /// `urgent`, `normal`, `low` or `spam`.
    pub category: String,
    /// The company's extra fields (`[card] fields`), by name.
    pub fields: std::collections::BTreeMap<String, String>,
}

/// What the store committed, published to whoever watches (the console's board, delivery)
/// once it is on disk: a consumer never shows what a crash could still lose.
#[derive(Debug, Clone, PartialEq)]
pub enum Committed {
    /// A call arrived.
    CallStarted {
        /// The call.
        id: CallRowId,
        /// Its company, when the number reached one.
        company: Option<String>,
        /// The caller's number.
        caller: String,
        /// The caller's name, when a contact list knows it.
        caller_name: Option<String>,
    },
    /// We answered the caller.
    CallAnswered {
        /// The call.
        id: CallRowId,
    },
    /// A person took the call.
    Handled {
        /// The call.
        id: CallRowId,
        /// Who (a secretary, or the executive it was transferred to).
        by: String,
        /// Whether it was a transfer.
        transfer: bool,
    },
    /// An entry of the call's timeline.
    Event {
        /// The call.
        id: CallRowId,
        /// What happened.
        event: crate::event::CallEvent,
    },
    /// The call's message changed (its category, its recording).
    MessageChanged {
        /// The call.
        id: CallRowId,
    },
    /// The call ended.
    CallEnded {
        /// The call.
        id: CallRowId,
        /// How.
        outcome: Outcome,
    },
    /// A company's line was switched by hand, or its override ended early.
    LineChanged {
        /// The company.
        company: String,
    },
    /// An executive set do-not-disturb, or ended it early.
    DndChanged {
        /// The executive's id.
        executive: String,
    },
    /// An appointment was booked or changed (or the attempt found its time taken: read it
    /// back to know).
    Appointment {
        /// Its uid.
        uid: String,
        /// Who acted.
        by: String,
    },
}

impl Committed {
    /// What a committed record means to a watcher; `None` for bookkeeping records.
    fn of(record: &Record) -> Option<Committed> {
        Some(match record {
            Record::CallStarted {
                id,
                company,
                caller,
                caller_name,
                ..
            } => Committed::CallStarted {
                id: *id,
                company: company.clone(),
                caller: caller.clone(),
                caller_name: caller_name.clone(),
            },
            Record::CallAnswered { id, .. } => Committed::CallAnswered { id: *id },
            Record::Handled {
                id, by, transfer, ..
            } => Committed::Handled {
                id: *id,
                by: by.clone(),
                transfer: *transfer,
            },
            Record::Event { id, event, .. } => Committed::Event {
                id: *id,
                event: event.clone(),
            },
            Record::Category { id, .. }
            | Record::Recording { id, .. }
            | Record::MessageWritten { id, .. }
            | Record::MessageStatus { id, .. } => Committed::MessageChanged { id: *id },
            Record::CallEnded { id, outcome, .. } => Committed::CallEnded {
                id: *id,
                outcome: *outcome,
            },
            Record::LineSet { company, .. } | Record::LineEnded { company, .. } => {
                Committed::LineChanged {
                    company: company.clone(),
                }
            }
            Record::DndSet { executive, .. } | Record::DndEnded { executive, .. } => {
                Committed::DndChanged {
                    executive: executive.clone(),
                }
            }
            Record::AppointmentBooked(b) => Committed::Appointment {
                uid: b.uid.clone(),
                by: b.by.clone(),
            },
            Record::AppointmentChanged { uid, by, .. } => Committed::Appointment {
                uid: uid.clone(),
                by: by.clone(),
            },
            _ => return None,
        })
    }
}

/// How many committed records a slow watcher may fall behind before it misses some (it
/// is told, and reads the database again).
const WATCH_BACKLOG: usize = 1024;

/// Who waits for a commit: a thread (shutdown) or a call task (before it answers).
enum Done {
    Thread(mpsc::Sender<()>),
    Task(tokio::sync::oneshot::Sender<()>),
}

impl Done {
    fn signal(self) {
        match self {
            Done::Thread(tx) => {
                let _ = tx.send(());
            }
            Done::Task(tx) => {
                let _ = tx.send(());
            }
        }
    }
}

/// Whether the store is writing: false while the database refuses writes (a full disk),
/// when new calls are refused rather than taken without a record.
#[derive(Clone, Debug, Default)]
pub struct Health(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Health {
    /// True when records reach the disk.
    pub fn is_writing(&self) -> bool {
        !self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set_failing(&self, failing: bool) {
        self.0.store(failing, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Handle to the writer thread. Cloneable senders go to calls via [`Store::writer`].
pub struct Store {
    tx: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
    ids: CallIds,
    health: Health,
    queued: Queued,
    watch: broadcast::Sender<Committed>,
}

/// Allocates call row ids. Ids are ours rather than SQLite's so that a call can queue its
/// events without waiting for its first insert to come back.
#[derive(Clone, Debug)]
pub struct CallIds(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl CallIds {
    /// The next id.
    pub fn next(&self) -> CallRowId {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

/// What opening found from the previous run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Calls left open by a crash, now marked `interrupted`.
    pub interrupted: usize,
}

/// A sender that call tasks use to write records.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Msg>,
    queued: Queued,
    watch: broadcast::Sender<Committed>,
}

/// Records queued and not yet committed (for `/metrics`).
#[derive(Clone, Debug, Default)]
pub struct Queued(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Queued {
    /// How many now.
    pub fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        self.0.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    fn done(&self, n: usize) {
        let _ = self.0.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |q| Some(q.saturating_sub(n)),
        );
    }
}

impl Writer {
    /// Queues a record. The writer thread only stops at shutdown, after calls.
    pub fn write(&self, record: Record) {
        self.queued.add(1);
        if self.tx.send(Msg::Record(record)).is_err() {
            self.queued.done(1);
            tracing::error!("record lost: the store writer has stopped");
        }
    }

    /// Everything committed from now on (see [`Committed`]).
    pub fn subscribe(&self) -> broadcast::Receiver<Committed> {
        self.watch.subscribe()
    }

    /// Resolves once everything queued so far is committed (a call's row, before the call
    /// is answered: a crash after our 200 must find the call in the records).
    pub fn committed(&self) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = self.tx.send(Msg::Flush(Done::Task(tx)));
        rx
    }
}

const MIGRATIONS: &[&str] = &[
    // 1: calls, messages, events.
    "CREATE TABLE calls (
        id INTEGER PRIMARY KEY,
        company TEXT,
        dialled TEXT NOT NULL,
        caller TEXT NOT NULL,
        caller_name TEXT,
        started_at TEXT NOT NULL,
        answered_at TEXT,
        ended_at TEXT,
        route TEXT,
        outcome TEXT,
        handled_by TEXT,
        transferred_to TEXT,
        sip_call_id TEXT NOT NULL
     );
     CREATE INDEX calls_started_at ON calls(started_at);
     CREATE INDEX calls_company ON calls(company, started_at);
     CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        call_id INTEGER NOT NULL UNIQUE REFERENCES calls(id),
        company TEXT NOT NULL,
        caller TEXT NOT NULL,
        category TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'new',
        note TEXT,
        callback TEXT,
        recording TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
     );
     CREATE INDEX messages_company ON messages(company, status, created_at);
     CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        call_id INTEGER NOT NULL REFERENCES calls(id),
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL DEFAULT '{}'
     );
     CREATE INDEX events_call ON events(call_id, at);",
    // 2: dial plan reloads.
    "CREATE TABLE reloads (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        trigger TEXT NOT NULL,
        changed TEXT NOT NULL,
        result TEXT NOT NULL,
        errors TEXT NOT NULL DEFAULT ''
     );",
    // 3: voicemail recordings' length, and whether a recording holds no audio.
    "ALTER TABLE messages ADD COLUMN recording_ms INTEGER;
     ALTER TABLE messages ADD COLUMN recording_empty INTEGER NOT NULL DEFAULT 0;",
    // 4: secretaries' registrations, written through so that they survive a restart.
    "CREATE TABLE registrations (
        username TEXT NOT NULL,
        contact TEXT NOT NULL,
        source TEXT NOT NULL,
        transport TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (username, contact)
     );",
    // 5: who took a call and when; what each secretary is doing (for the CLI).
    "ALTER TABLE calls ADD COLUMN handled_at TEXT;
     CREATE TABLE secretary_states (
        username TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        call_id INTEGER,
        until_ms INTEGER,
        at TEXT NOT NULL
     );",
    // 6: recordings stored relative to the data directory; older rows held the path as the
    // server saw it (`config/../data/recordings/…`), which only that working directory finds.
    "UPDATE messages SET recording = substr(recording, instr(recording, 'recordings/'))
     WHERE recording IS NOT NULL AND instr(recording, 'recordings/') > 1;",
    // 7: sources banned for repeated wrong credentials (`permanence bans`).
    "CREATE TABLE bans (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        source TEXT NOT NULL,
        username TEXT NOT NULL,
        failures INTEGER NOT NULL,
        until INTEGER NOT NULL
     );",
    // 8: floods counted per source, kind and minute instead of one row each.
    "CREATE TABLE floods (
        source TEXT NOT NULL,
        kind TEXT NOT NULL,
        minute INTEGER NOT NULL,
        first_at TEXT NOT NULL,
        last_at TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (source, kind, minute)
     );",
    // 9: the device's +sip.instance with each registration, so that after a restart the
    // same phone registering from elsewhere still replaces its old contact.
    "ALTER TABLE registrations ADD COLUMN instance TEXT;",
    // 10: console sessions, by the hash of their id (a copy of the file opens none).
    "CREATE TABLE sessions (
        hash TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );",
    // 11: the message a secretary writes in the console, on the call's own row.
    "ALTER TABLE messages ADD COLUMN caller_name TEXT;
     ALTER TABLE messages ADD COLUMN caller_company TEXT;
     ALTER TABLE messages ADD COLUMN about TEXT;
     ALTER TABLE messages ADD COLUMN for_executive TEXT;
     ALTER TABLE messages ADD COLUMN fields TEXT;
     ALTER TABLE messages ADD COLUMN written_by TEXT;
     ALTER TABLE messages ADD COLUMN written_at TEXT;",
    // 12: the console's inbox. Every change of a message (saves, status changes) with who
    // and when (`what`: {"field": {"from", "to"}} as JSON). Each company's messages newest
    // first, and the text a search reads in a trigram index kept by triggers (rowid = call
    // id): at 100,000 messages the first page went from 110 to 3 ms, a search from 154 to
    // 5 ms (benches/README.md).
    "CREATE TABLE message_changes (
        id INTEGER PRIMARY KEY,
        call_id INTEGER NOT NULL REFERENCES calls(id),
        changed_by TEXT NOT NULL,
        at TEXT NOT NULL,
        what TEXT NOT NULL
     );
     CREATE INDEX message_changes_call ON message_changes(call_id, id);
     CREATE INDEX messages_company_call ON messages(company, call_id);
     CREATE VIRTUAL TABLE message_search USING fts5(text, tokenize = 'trigram');
     CREATE TRIGGER message_search_insert AFTER INSERT ON messages BEGIN
        INSERT INTO message_search (rowid, text) VALUES (new.call_id,
            coalesce(new.caller, '') || char(10)
            || coalesce((SELECT caller_name FROM calls WHERE id = new.call_id), '') || char(10)
            || coalesce(new.caller_name, '') || char(10) || coalesce(new.caller_company, '')
            || char(10) || coalesce(new.callback, '') || char(10) || coalesce(new.note, '')
            || char(10) || coalesce(CASE WHEN json_valid(new.fields) THEN
               (SELECT group_concat(value, char(10)) FROM json_each(new.fields)) END, ''));
     END;
     CREATE TRIGGER message_search_update
     AFTER UPDATE OF caller, caller_name, caller_company, callback, note, fields ON messages BEGIN
        DELETE FROM message_search WHERE rowid = old.call_id;
        INSERT INTO message_search (rowid, text) VALUES (new.call_id,
            coalesce(new.caller, '') || char(10)
            || coalesce((SELECT caller_name FROM calls WHERE id = new.call_id), '') || char(10)
            || coalesce(new.caller_name, '') || char(10) || coalesce(new.caller_company, '')
            || char(10) || coalesce(new.callback, '') || char(10) || coalesce(new.note, '')
            || char(10) || coalesce(CASE WHEN json_valid(new.fields) THEN
               (SELECT group_concat(value, char(10)) FROM json_each(new.fields)) END, ''));
     END;
     CREATE TRIGGER message_search_delete AFTER DELETE ON messages BEGIN
        DELETE FROM message_search WHERE rowid = old.call_id;
     END;
     INSERT INTO message_search (rowid, text)
        SELECT m.call_id,
            coalesce(m.caller, '') || char(10)
            || coalesce((SELECT caller_name FROM calls WHERE id = m.call_id), '') || char(10)
            || coalesce(m.caller_name, '') || char(10) || coalesce(m.caller_company, '')
            || char(10) || coalesce(m.callback, '') || char(10) || coalesce(m.note, '')
            || char(10) || coalesce(CASE WHEN json_valid(m.fields) THEN
               (SELECT group_concat(value, char(10)) FROM json_each(m.fields)) END, '')
        FROM messages m;",
    // 13: numbers each company blocked (spam): who, when, why; a removal keeps the row
    // with who lifted it and when, so the list stays auditable. One live block per number.
    "CREATE TABLE blocked_numbers (
        id INTEGER PRIMARY KEY,
        company TEXT NOT NULL,
        number TEXT NOT NULL,
        reason TEXT NOT NULL,
        added_by TEXT NOT NULL,
        added_at TEXT NOT NULL,
        removed_by TEXT,
        removed_at TEXT
     );
     CREATE UNIQUE INDEX blocked_numbers_live ON blocked_numbers(company, number)
        WHERE removed_at IS NULL;",
    // 14: companies' lines switched by hand (closed or open until a time), with who set
    // each and who ended it early; the current one is the latest neither over nor ended.
    "CREATE TABLE line_overrides (
        id INTEGER PRIMARY KEY,
        company TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('closed', 'open')),
        until TEXT NOT NULL,
        reason TEXT NOT NULL,
        set_by TEXT NOT NULL,
        set_at TEXT NOT NULL,
        ended_at TEXT,
        ended_by TEXT
     );
     CREATE INDEX line_overrides_company ON line_overrides(company, id);",
    // 15: API tokens for scripts, by the hash of the token (shown once, at creation).
    "CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        username TEXT NOT NULL,
        label TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        revoked_at TEXT
    );",
    // 16: the outbox: one row per delivery of a message (e-mail, webhook, a line held for
    // the daily summary) or per summary, written in the same transaction as the message
    // change that caused it; the same event never enqueues the same delivery twice.
    "CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        event TEXT NOT NULL,
        channel TEXT NOT NULL CHECK (channel IN ('email', 'webhook', 'digest')),
        target TEXT NOT NULL,
        company TEXT NOT NULL,
        executive TEXT,
        message_id INTEGER REFERENCES messages(id),
        payload TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL CHECK (status IN ('held', 'pending', 'sent', 'failed', 'digested', 'cancelled')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt TEXT NOT NULL,
        retry_since TEXT NOT NULL,
        last_error TEXT,
        created_at TEXT NOT NULL,
        sent_at TEXT,
        digest_id INTEGER REFERENCES outbox(id),
        UNIQUE (event, channel, target)
     );
     CREATE INDEX outbox_due ON outbox(status, next_attempt);
     CREATE INDEX outbox_message ON outbox(message_id);
     CREATE INDEX outbox_digest ON outbox(digest_id);",
    // 17: the executives' page. When each executive's links were last revoked (links made
    // until then open nothing); do-not-disturb set from the page, with who set each and
    // who ended it early (the current one is the latest neither over nor ended).
    "CREATE TABLE executive_link_revocations (
        executive TEXT PRIMARY KEY,
        revoked_at TEXT NOT NULL
     );
     CREATE TABLE executive_dnd (
        id INTEGER PRIMARY KEY,
        executive TEXT NOT NULL,
        until TEXT NOT NULL,
        set_by TEXT NOT NULL,
        set_at TEXT NOT NULL,
        ended_at TEXT,
        ended_by TEXT
     );
     CREATE INDEX executive_dnd_executive ON executive_dnd(executive, id);",
    // 18: follow-ups. Each company's tasks (callbacks, invoice chases, quotes), amounts in
    // integer cents, due days as `YYYY-MM-DD`, the message's call they came from; every
    // attempt with its time and result. Calls get a direction: `outbound` for a call
    // placed for a company from one of its tasks.
    "CREATE TABLE tasks (
        id INTEGER PRIMARY KEY,
        company TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('callback', 'invoice', 'quote', 'other')),
        status TEXT NOT NULL DEFAULT 'open'
            CHECK (status IN ('open', 'in_progress', 'done', 'abandoned')),
        customer TEXT NOT NULL DEFAULT '',
        phone TEXT,
        email TEXT,
        amount_cents INTEGER CHECK (amount_cents IS NULL OR amount_cents >= 0),
        invoice TEXT,
        due TEXT,
        assignee TEXT,
        notes TEXT NOT NULL DEFAULT '',
        outcome TEXT NOT NULL DEFAULT '',
        call_id INTEGER REFERENCES calls(id),
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_by TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        done_at TEXT
     );
     CREATE INDEX tasks_company ON tasks(company, status, due);
     CREATE INDEX tasks_done ON tasks(company, done_at);
     CREATE TABLE task_attempts (
        id INTEGER PRIMARY KEY,
        task_id INTEGER NOT NULL REFERENCES tasks(id),
        at TEXT NOT NULL,
        by TEXT NOT NULL,
        result TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        call_id INTEGER REFERENCES calls(id)
     );
     CREATE INDEX task_attempts_task ON task_attempts(task_id, id);
     ALTER TABLE calls ADD COLUMN direction TEXT NOT NULL DEFAULT 'inbound'
        CHECK (direction IN ('inbound', 'outbound'));
     ALTER TABLE calls ADD COLUMN task_id INTEGER REFERENCES tasks(id);",
    // 19: executives' appointments and every change to them (store::agenda).
    agenda::MIGRATION,
];

/// Opens (creating if needed) the database and brings its schema up to date.
pub fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.into(),
            source,
        })?;
    }
    let mut conn = Connection::open(path).map_err(err)?;
    // WAL: readers (the CLI) never block the writer. NORMAL sync survives a process kill.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(conn)
}

impl Store {
    /// Opens the store, marks calls left open by a previous crash as `interrupted`, and
    /// starts the writer thread.
    pub fn open(path: &Path) -> Result<(Store, Recovery), StoreError> {
        let err = |source| StoreError::Sqlite {
            path: path.into(),
            source,
        };
        let mut conn = open_connection(path)?;
        let now = now_text();
        let tx = conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO events (call_id, at, kind, data) SELECT id, ?1, 'interrupted', '{\"reason\":\"server stopped without ending the call\"}' FROM calls WHERE ended_at IS NULL",
            params![now],
        )
        .map_err(err)?;
        let interrupted = tx
            .execute(
                "UPDATE calls SET ended_at = ?1, outcome = 'interrupted' WHERE ended_at IS NULL",
                params![now],
            )
            .map_err(err)?;
        tx.commit().map_err(err)?;
        let max: Option<i64> = conn
            .query_row("SELECT max(id) FROM calls", [], |r| r.get(0))
            .optional()
            .map_err(err)?
            .flatten();

        let (sender, receiver) = mpsc::channel();
        let db_path = path.to_path_buf();
        let health = Health::default();
        let queued = Queued::default();
        let (watch, _) = broadcast::channel(WATCH_BACKLOG);
        let shared = Shared {
            health: health.clone(),
            queued: queued.clone(),
            watch: watch.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(conn, receiver, db_path, shared))
            .map_err(|source| StoreError::Io {
                path: path.into(),
                source,
            })?;
        Ok((
            Store {
                tx: sender,
                thread: Some(thread),
                ids: CallIds(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(
                    max.unwrap_or(0) + 1,
                ))),
                health,
                queued,
                watch,
            },
            Recovery { interrupted },
        ))
    }

    /// A writer for call tasks.
    pub fn writer(&self) -> Writer {
        Writer {
            tx: self.tx.clone(),
            queued: self.queued.clone(),
            watch: self.watch.clone(),
        }
    }

    /// The call id allocator.
    pub fn ids(&self) -> CallIds {
        self.ids.clone()
    }

    /// Whether records are reaching the disk.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Records waiting to be committed.
    pub fn queued(&self) -> Queued {
        self.queued.clone()
    }

    /// Waits until everything queued so far is committed (at most `RETRY_FOR_AT_CLOSE`
    /// while the database refuses writes).
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::Flush(Done::Thread(tx))).is_ok() {
            let _ = rx.recv_timeout(RETRY_FOR_AT_CLOSE);
        }
    }

    /// Flushes, then waits for the writer thread to end. Every [`Writer`] must be gone
    /// first, or this waits for them.
    pub fn close(mut self) {
        self.flush();
        let (tx, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

/// How long records may wait to be grouped into one commit. A kill within this window
/// loses at most these records; a call's own row is committed before it is answered.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(10);
/// Most records in one commit.
const MAX_BATCH: usize = 2048;
/// Most records kept in memory while the database refuses writes; beyond, new ones are
/// dropped and counted (new calls are refused meanwhile, so only live calls add to it).
const MAX_PENDING: usize = 100_000;
/// How often a database that refused writes is tried again.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);
/// How long shutdown waits for a failing database before giving its records up.
const RETRY_FOR_AT_CLOSE: std::time::Duration = std::time::Duration::from_secs(5);

/// What the writer thread shares with the server.
struct Shared {
    health: Health,
    queued: Queued,
    watch: broadcast::Sender<Committed>,
}

impl Shared {
    /// Tells watchers what was just committed (nothing to build when nobody watches).
    fn publish(&self, records: &[Record]) {
        if self.watch.receiver_count() == 0 {
            return;
        }
        for committed in records.iter().filter_map(Committed::of) {
            let _ = self.watch.send(committed);
        }
    }
}

/// Writes what the calls queue, in batches; keeps what cannot be written (a full disk) and
/// retries; notices a database file deleted under it and recreates it.
fn writer_loop(conn: Connection, receiver: mpsc::Receiver<Msg>, path: PathBuf, shared: Shared) {
    WriterThread {
        conn,
        receiver,
        path,
        shared,
        pending: Vec::new(),
        waiting: Vec::new(),
        lost: 0,
        open: true,
    }
    .run();
}

/// The writer thread's state from one batch to the next.
struct WriterThread {
    conn: Connection,
    receiver: mpsc::Receiver<Msg>,
    path: PathBuf,
    shared: Shared,
    /// Records taken and not committed yet: the batch, and while the database refuses
    /// writes, everything since.
    pending: Vec<Record>,
    /// Flushes waiting for the records queued before them.
    waiting: Vec<Done>,
    /// Records dropped since writes began failing, for the log line when they resume.
    lost: u64,
    /// Whether writers may still send (false once every sender is gone).
    open: bool,
}

impl WriterThread {
    /// Gathers, commits and handles failures until the channel is closed and drained (or
    /// shutdown gives up on a failing database).
    fn run(&mut self) {
        while self.open || !self.pending.is_empty() {
            let failing = !self.shared.health.is_writing();
            let ControlFlow::Continue(first) = self.wait_first(failing) else {
                break;
            };
            self.gather(first);
            self.recreate_if_deleted();
            match self.commit_pending() {
                Ok(()) => self.committed(failing),
                Err(e) if !transient(&e) => self.commit_one_by_one(),
                Err(e) => {
                    if self.failed(&e, failing).is_break() {
                        break;
                    }
                }
            }
        }
    }

    /// The first message of a batch. While failing, waits at most `RETRY` so that the
    /// kept records are tried again (None); Break when the channel is closed and nothing
    /// is kept.
    fn wait_first(&mut self, failing: bool) -> ControlFlow<(), Option<Msg>> {
        if failing {
            match self.receiver.recv_timeout(RETRY) {
                Ok(m) => ControlFlow::Continue(Some(m)),
                Err(mpsc::RecvTimeoutError::Timeout) => ControlFlow::Continue(None),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.open = false;
                    ControlFlow::Continue(None)
                }
            }
        } else {
            match self.receiver.recv() {
                Ok(m) => ControlFlow::Continue(Some(m)),
                Err(_) => ControlFlow::Break(()),
            }
        }
    }

    /// Takes `first` and whatever else arrives within the batch window.
    fn gather(&mut self, first: Option<Msg>) {
        // Gather what arrives within a short window into one transaction: each commit
        // writes every touched page to the WAL, so a commit per record would cost many
        // times the records themselves. Sleeping through the window (rather than waiting
        // on the channel) also spares the senders a wake-up per record. A flush does not wait.
        if matches!(first, Some(Msg::Record(_))) {
            std::thread::sleep(BATCH_WINDOW);
        }
        if let Some(m) = first {
            self.take(m);
        }
        for _ in 0..MAX_BATCH {
            match self.receiver.try_recv() {
                Ok(m) => self.take(m),
                Err(_) => break,
            }
        }
    }

    /// Adds a record to the batch (or drops it when too many are kept), or notes a flush.
    fn take(&mut self, m: Msg) {
        match m {
            Msg::Record(r) if self.pending.len() < MAX_PENDING => self.pending.push(r),
            Msg::Record(_) => {
                self.lost += 1;
                self.shared.queued.done(1);
            }
            Msg::Flush(done) => self.waiting.push(done),
        }
    }

    /// Reopens the database when its file is gone.
    fn recreate_if_deleted(&mut self) {
        if !self.path.exists() {
            // Someone deleted the data directory or the file: SQLite would go on writing
            // into an unlinked inode and every record would vanish at exit.
            tracing::error!(db = %self.path.display(), "the records' database was deleted while running: recreating it");
            match open_connection(&self.path) {
                Ok(fresh) => self.conn = fresh,
                Err(e) => tracing::error!(error = %e, "cannot recreate the database"),
            }
        }
    }

    /// Writes every pending record in one transaction.
    fn commit_pending(&mut self) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        for record in &self.pending {
            apply(&tx, record)?;
        }
        tx.commit()
    }

    /// The batch is on disk: tell watchers and flushes, and say so if writes had failed.
    fn committed(&mut self, failing: bool) {
        let Shared { health, queued, .. } = &self.shared;
        if failing {
            tracing::warn!(db = %self.path.display(), written = self.pending.len(), lost = self.lost, "records are being written again");
            self.lost = 0;
        }
        health.set_failing(false);
        queued.done(self.pending.len());
        self.shared.publish(&self.pending);
        self.pending.clear();
        for done in self.waiting.drain(..) {
            done.signal();
        }
    }

    /// The batch was refused for a record's own sake (a bug, not the disk): writes the
    /// records one by one so that only the culprit is lost.
    fn commit_one_by_one(&mut self) {
        // A record the database refuses for itself (a bug, not the disk): keep the
        // others, drop that one, loudly.
        let mut kept = 0;
        self.shared.queued.done(self.pending.len());
        for record in self.pending.drain(..) {
            let one = self
                .conn
                .transaction()
                .and_then(|tx| apply(&tx, &record).and_then(|()| tx.commit()));
            match one {
                Ok(()) => {
                    kept += 1;
                    self.shared.publish(std::slice::from_ref(&record));
                }
                Err(e) => tracing::error!(error = %e, "a record was refused and dropped"),
            }
        }
        tracing::warn!(kept, "records written one by one after a refusal");
        for done in self.waiting.drain(..) {
            done.signal();
        }
    }

    /// The database refuses writes (a full disk): keep the records and retry. Break when
    /// shutting down and it still refuses after a pause.
    fn failed(&mut self, e: &rusqlite::Error, failing: bool) -> ControlFlow<()> {
        if !failing {
            // Loud, once: every new call is refused until this clears.
            tracing::error!(db = %self.path.display(), error = %e, pending = self.pending.len(), "cannot write records (disk full?): refusing new calls, keeping records in memory and retrying every second");
        }
        self.shared.health.set_failing(true);
        if !self.open {
            // Shutting down: one more try after a pause, then give up.
            std::thread::sleep(RETRY);
            if !self.path.exists() || self.conn.execute_batch("SELECT 1").is_err() {
                tracing::error!(
                    lost = self.pending.len(),
                    "records lost at shutdown: the database refuses writes"
                );
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

/// Whether a write failed for the disk's or the file's sake (full, unwritable, gone,
/// busy): worth keeping the records and trying again.
fn transient(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(DiskFull | SystemIoFailure | CannotOpen | ReadOnly | DatabaseBusy | DatabaseLocked)
    )
}

/// Writes one record; each group of records has its own function, to keep each short.
fn apply(tx: &rusqlite::Transaction, record: &Record) -> rusqlite::Result<()> {
    match record {
        Record::CallStarted { .. }
        | Record::CallAnswered { .. }
        | Record::Event { .. }
        | Record::Handled { .. }
        | Record::CallEnded { .. } => apply_call(tx, record),
        Record::Category { .. } | Record::Recording { .. } | Record::RecordingStarted { .. } => {
            apply_message(tx, record)
        }
        Record::SecretaryState { .. } | Record::Bindings { .. } => apply_secretary(tx, record),
        Record::SessionOpened {
            hash,
            username,
            expires_at,
            at,
        } => {
            tx.prepare_cached("INSERT OR REPLACE INTO sessions (hash, username, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![hash, username, at, expires_at])?;
            Ok(())
        }
        Record::MessageWritten {
            id,
            message,
            by,
            at,
            deliver,
        } => {
            inbox::apply_written(tx, *id, message, by, at)?;
            if let Some(rules) = deliver {
                outbox::enqueue(tx, *id, rules, outbox::Trigger::Written, at)?;
            }
            Ok(())
        }
        Record::MessageStatus { id, status, by, at } => {
            inbox::apply_status(tx, *id, *status, by, at).map(drop)
        }
        Record::DeliveryTried { .. } | Record::SummaryMade { .. } => outbox::apply(tx, record),
        Record::SessionClosed { hash } => {
            tx.prepare_cached("DELETE FROM sessions WHERE hash = ?1")?
                .execute(params![hash])?;
            Ok(())
        }
        Record::Blocked { .. } | Record::Unblocked { .. } => apply_blocked(tx, record),
        Record::Reload { .. } | Record::Flood { .. } | Record::Ban { .. } => {
            apply_server(tx, record)
        }
        Record::LineSet { .. } | Record::LineEnded { .. } => line::apply(tx, record),
        Record::DndSet { .. } | Record::DndEnded { .. } => executive::apply_dnd(tx, record),
        Record::TasksCreated { .. }
        | Record::TaskChanged { .. }
        | Record::TaskAttempt { .. }
        | Record::CallPlaced { .. } => tasks::apply(tx, record),
        Record::AppointmentBooked(_) | Record::AppointmentChanged { .. } => {
            agenda::apply(tx, record)
        }
    }
}

/// A call's own records: its row, answer, timeline, who took it, its end.
fn apply_call(tx: &rusqlite::Transaction, record: &Record) -> rusqlite::Result<()> {
    match record {
        Record::CallStarted {
            id,
            company,
            dialled,
            caller,
            caller_name,
            route,
            category,
            sip_call_id,
            at,
        } => {
            tx.prepare_cached(
                "INSERT INTO calls (id, company, dialled, caller, caller_name, started_at, route, sip_call_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![id, company, dialled, caller, caller_name, at, route, sip_call_id])?;
            if let Some(company) = company {
                tx.prepare_cached(
                    "INSERT INTO messages (call_id, company, caller, category, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                )?
                .execute(params![id, company, caller, category, at])?;
            }
        }
        Record::CallAnswered { id, at } => {
            tx.prepare_cached("UPDATE calls SET answered_at = ?2 WHERE id = ?1")?
                .execute(params![id, at])?;
        }
        Record::Event { id, event, at } => {
            tx.prepare_cached(
                "INSERT INTO events (call_id, at, kind, data) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![id, at, event.kind(), event.data()])?;
        }
        Record::Handled {
            id,
            by,
            transfer,
            at,
        } => {
            let sql = if *transfer {
                "UPDATE calls SET transferred_to = ?2, handled_at = ?3 WHERE id = ?1"
            } else {
                "UPDATE calls SET handled_by = ?2, handled_at = ?3 WHERE id = ?1"
            };
            tx.prepare_cached(sql)?.execute(params![id, by, at])?;
        }
        Record::CallEnded {
            id,
            outcome,
            status,
            at,
            deliver,
        } => {
            tx.prepare_cached("UPDATE calls SET ended_at = ?2, outcome = ?3 WHERE id = ?1")?
                .execute(params![id, at, outcome.as_str()])?;
            if let Some(status) = status {
                // A message someone wrote during the call already has the status writing
                // gave it (`inbox::status_after_writing`).
                tx.prepare_cached(
                    "UPDATE messages SET status = ?2, updated_at = ?3
                     WHERE call_id = ?1 AND status = 'new' AND written_by IS NULL",
                )?
                .execute(params![id, status, at])?;
            }
            if let Some(rules) = deliver {
                outbox::enqueue(tx, *id, rules, outbox::Trigger::CallEnded, at)?;
            }
        }
        // `apply` sends only the records above here.
        _ => {}
    }
    Ok(())
}

/// A message's records: its category and its recording.
fn apply_message(tx: &rusqlite::Transaction, record: &Record) -> rusqlite::Result<()> {
    match record {
        Record::Category { id, category, at } => {
            tx.prepare_cached(
                "UPDATE messages SET category = ?2, updated_at = ?3 WHERE call_id = ?1",
            )?
            .execute(params![id, category, at])?;
        }
        Record::Recording { id, path, ms, at } => {
            tx.prepare_cached(
                "UPDATE messages SET recording = ?2, recording_ms = ?3, recording_empty = ?4, updated_at = ?5 WHERE call_id = ?1",
            )?
            .execute(params![id, path, ms, *ms == 0, at])?;
        }
        Record::RecordingStarted { id, path, at } => {
            tx.prepare_cached(
                "UPDATE messages SET recording = ?2, recording_ms = NULL, updated_at = ?3 WHERE call_id = ?1",
            )?
            .execute(params![id, path, at])?;
        }
        // `apply` sends only the records above here.
        _ => {}
    }
    Ok(())
}

/// A secretary's records: what she is doing, where her phones are registered.
fn apply_secretary(tx: &rusqlite::Transaction, record: &Record) -> rusqlite::Result<()> {
    match record {
        Record::SecretaryState {
            username,
            state,
            call,
            until_ms,
            at,
        } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO secretary_states (username, state, call_id, until_ms, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![username, state, call, until_ms, at])?;
        }
        Record::Bindings { username, bindings } => {
            tx.prepare_cached("DELETE FROM registrations WHERE username = ?1")?
                .execute(params![username])?;
            for (contact, source, transport, expires_at, instance) in bindings {
                tx.prepare_cached(
                    "INSERT INTO registrations (username, contact, source, transport, expires_at, instance) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![username, contact, source, transport, expires_at, instance])?;
            }
        }
        // `apply` sends only the records above here.
        _ => {}
    }
    Ok(())
}

/// The server's own records: plan reloads, floods, bans.
fn apply_server(tx: &rusqlite::Transaction, record: &Record) -> rusqlite::Result<()> {
    match record {
        Record::Reload {
            trigger,
            changed,
            accepted,
            errors,
            at,
        } => {
            tx.prepare_cached("INSERT INTO reloads (at, trigger, changed, result, errors) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![
                    at,
                    trigger,
                    serde_json::to_string(&changed).unwrap_or_default(),
                    if *accepted { "accepted" } else { "refused" },
                    errors
                ])?;
        }
        Record::Flood {
            source,
            kind,
            minute,
            at,
        } => {
            tx.prepare_cached(
                "INSERT INTO floods (source, kind, minute, first_at, last_at, count) VALUES (?1, ?2, ?3, ?4, ?4, 1)
                 ON CONFLICT (source, kind, minute) DO UPDATE SET count = count + 1, last_at = excluded.last_at",
            )?
            .execute(params![source, kind, minute, at])?;
        }
        Record::Ban {
            source,
            username,
            failures,
            until,
            at,
        } => {
            tx.prepare_cached(
                "INSERT INTO bans (at, source, username, failures, until) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![at, source, username, failures, until])?;
        }
        // `apply` sends only the records above here.
        _ => {}
    }
    Ok(())
}

/// A company's block list: a number blocked (kept once: the live-block index makes a
/// second block of the same number a no-op), a block lifted (kept, with who and when).
fn apply_blocked(tx: &rusqlite::Transaction, record: &Record) -> rusqlite::Result<()> {
    match record {
        Record::Blocked {
            company,
            number,
            reason,
            by,
            at,
        } => {
            tx.prepare_cached(BLOCK_SQL)?
                .execute(params![company, number, reason, by, at])?;
        }
        Record::Unblocked { id, by, at } => {
            tx.prepare_cached(UNBLOCK_SQL)?
                .execute(params![id, by, at])?;
        }
        // `apply` sends only the records above here.
        _ => {}
    }
    Ok(())
}

const BLOCK_SQL: &str = "INSERT OR IGNORE INTO blocked_numbers (company, number, reason, added_by, added_at) VALUES (?1, ?2, ?3, ?4, ?5)";
const UNBLOCK_SQL: &str = "UPDATE blocked_numbers SET removed_by = ?2, removed_at = ?3 WHERE id = ?1 AND removed_at IS NULL";

/// One call as listed by `permanence calls`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallRow {
    /// Row id.
    pub id: i64,
    /// Company id.
    pub company: Option<String>,
    /// Dialled number.
    pub dialled: String,
    /// Caller.
    pub caller: String,
    /// Caller's display name.
    pub caller_name: Option<String>,
    /// Start time.
    pub started_at: String,
    /// Answer time.
    pub answered_at: Option<String>,
    /// End time.
    pub ended_at: Option<String>,
    /// Route taken.
    pub route: Option<String>,
    /// Outcome; empty while the call is up.
    pub outcome: Option<String>,
    /// SIP Call-ID.
    pub sip_call_id: String,
    /// The secretary who took it.
    pub handled_by: Option<String>,
    /// The executive or URI it was transferred to.
    pub transferred_to: Option<String>,
    /// When that person answered.
    pub handled_at: Option<String>,
}

/// The most recent calls, newest first.
pub fn recent_calls(path: &Path, limit: usize) -> Result<Vec<CallRow>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let conn = open_connection(path)?;
    let mut stmt = conn
        .prepare(
            "SELECT id, company, dialled, caller, caller_name, started_at, answered_at, ended_at, route, outcome, sip_call_id,
                    handled_by, transferred_to, handled_at
             FROM calls ORDER BY id DESC LIMIT ?1",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map(params![limit as i64], |r| {
            Ok(CallRow {
                id: r.get(0)?,
                company: r.get(1)?,
                dialled: r.get(2)?,
                caller: r.get(3)?,
                caller_name: r.get(4)?,
                started_at: r.get(5)?,
                answered_at: r.get(6)?,
                ended_at: r.get(7)?,
                route: r.get(8)?,
                outcome: r.get(9)?,
                sip_call_id: r.get(10)?,
                handled_by: r.get(11)?,
                transferred_to: r.get(12)?,
                handled_at: r.get(13)?,
            })
        })
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_blocked_once_and_a_lifted_block_keeps_its_row() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = dir.path().join("p.db");
        let (store, _) = Store::open(&db).unwrap();
        let w = store.writer();
        for by in ["alice", "bob"] {
            w.write(Record::Blocked {
                company: "acme".into(),
                number: "+33612345678".into(),
                reason: "démarchage".into(),
                by: by.into(),
                at: now_text(),
            });
        }
        store.flush();
        let rows = blocked_numbers(&db, Some("acme"), true).unwrap();
        assert_eq!(rows.len(), 1, "blocked once: {rows:?}");
        assert_eq!(rows[0].added_by, "alice", "the first block stands");
        let mut conn = open_connection(&db).unwrap();
        let before = blocked_version(&conn).unwrap();

        w.write(Record::Unblocked {
            id: rows[0].id,
            by: "bob".into(),
            at: now_text(),
        });
        store.flush();
        let after = blocked_version(&conn).unwrap();
        assert_eq!((after.last_id, after.removed), (before.last_id, 1));
        assert!(live_blocks(&mut conn).unwrap().1.is_empty());
        let kept = blocked_numbers(&db, None, true).unwrap();
        assert_eq!(kept[0].removed_by.as_deref(), Some("bob"));
        assert!(blocked_numbers(&db, None, false).unwrap().is_empty());

        // Blocked again, then lifted from the command line.
        let (row, added) = block_number(&db, "acme", "+33612345678", "again", "cli").unwrap();
        assert!(added);
        let (same, added) = block_number(&db, "acme", "+33612345678", "twice", "cli").unwrap();
        assert!(!added);
        assert_eq!((same.id, same.reason.as_str()), (row.id, "again"));
        assert_eq!(
            unblock_number(&db, "acme", "+33612345678", "cli")
                .unwrap()
                .and_then(|r| r.removed_by),
            Some("cli".into())
        );
        assert_eq!(
            unblock_number(&db, "acme", "+33612345678", "cli").unwrap(),
            None
        );
        assert_eq!(blocked_numbers(&db, Some("acme"), true).unwrap().len(), 2);
        drop(w);
        store.close();
    }

    #[test]
    fn watchers_hear_what_was_committed_once_it_is_on_disk() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = dir.path().join("p.db");
        let (store, _) = Store::open(&db).unwrap();
        let w = store.writer();
        let mut watch = w.subscribe();
        let id = store.ids().next();
        w.write(Record::CallStarted {
            id,
            company: Some("acme".into()),
            dialled: "+33180000001".into(),
            caller: "+33612345678".into(),
            caller_name: Some("Syndic Martin".into()),
            route: None,
            category: "normal",
            sip_call_id: "c1".into(),
            at: now_text(),
        });
        w.write(Record::Bindings {
            username: "alice".into(),
            bindings: Vec::new(),
        });
        w.write(Record::Event {
            id,
            event: crate::event::CallEvent::NoRoute {},
            at: now_text(),
        });
        w.write(Record::CallEnded {
            id,
            outcome: Outcome::Rejected,
            status: None,
            at: now_text(),
            deliver: None,
        });
        let first = watch.blocking_recv().unwrap();
        assert_eq!(
            first,
            Committed::CallStarted {
                id,
                company: Some("acme".into()),
                caller: "+33612345678".into(),
                caller_name: Some("Syndic Martin".into()),
            }
        );
        let calls = recent_calls(&db, 10).unwrap();
        assert_eq!(calls.len(), 1, "published only after the commit");
        assert!(
            matches!(
                watch.blocking_recv().unwrap(),
                Committed::Event {
                    event: crate::event::CallEvent::NoRoute {},
                    ..
                }
            ),
            "bookkeeping (bindings) is not published"
        );
        assert_eq!(
            watch.blocking_recv().unwrap(),
            Committed::CallEnded {
                id,
                outcome: Outcome::Rejected
            }
        );
        drop(w);
        store.close();
    }

    #[test]
    fn writes_a_call_and_recovers_an_interrupted_one() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = dir.path().join("p.db");
        let (store, recovery) = Store::open(&db).unwrap();
        assert_eq!(recovery.interrupted, 0);
        let w = store.writer();
        for id in [store.ids().next(), store.ids().next()] {
            w.write(Record::CallStarted {
                id,
                company: Some("acme".into()),
                dialled: "+33180000001".into(),
                caller: "+33612345678".into(),
                caller_name: None,
                route: Some("all".into()),
                category: "normal",
                sip_call_id: format!("c{id}"),
                at: now_text(),
            });
        }
        w.write(Record::CallEnded {
            id: 1,
            outcome: Outcome::Completed,
            status: Some("filed"),
            at: now_text(),
            deliver: None,
        });
        drop(w);
        store.close();

        let (store, recovery) = Store::open(&db).unwrap();
        assert_eq!(recovery.interrupted, 1, "call 2 never ended");
        assert_eq!(store.ids().next(), 3);
        store.close();
        let calls = recent_calls(&db, 10).unwrap();
        let outcomes: Vec<_> = calls
            .iter()
            .map(|c| (c.id, c.outcome.clone().unwrap()))
            .collect();
        assert_eq!(
            outcomes,
            vec![(2, "interrupted".to_string()), (1, "completed".to_string())]
        );
    }
}

/// One message as listed by `permanence messages`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MessageRow {
    /// Message id.
    pub id: i64,
    /// The call it came from.
    pub call_id: i64,
    /// When the call started.
    pub created_at: String,
    /// Company id.
    pub company: String,
    /// Caller.
    pub caller: String,
    /// Caller's display name.
    pub caller_name: Option<String>,
    /// urgent / normal / low / spam.
    pub category: String,
    /// new / read / done / filed (`inbox::Status`).
    pub status: String,
    /// How the call ended.
    pub outcome: Option<String>,
    /// The voicemail file, if any: stored relative to the data directory, listed as a
    /// full path.
    pub recording: Option<String>,
    /// Its length in milliseconds.
    pub recording_ms: Option<i64>,
    /// A voicemail step ran but no audio was recorded.
    pub recording_empty: bool,
}

/// Which messages to list.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    /// Only this company.
    pub company: Option<String>,
    /// Only this category.
    pub category: Option<String>,
    /// Only this status; none: every status but `filed` (the inbox).
    pub status: Option<String>,
    /// With no status asked for, filed messages too.
    pub include_filed: bool,
    /// Only messages created at or after this time (RFC 3339 or a date).
    pub since: Option<String>,
    /// At most this many, newest first.
    pub limit: usize,
}

const MESSAGE_COLUMNS: &str =
    "m.id, m.call_id, m.created_at, m.company, m.caller, c.caller_name, m.category, m.status,
     c.outcome, m.recording, m.recording_ms, m.recording_empty";

fn message_row(r: &rusqlite::Row) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: r.get(0)?,
        call_id: r.get(1)?,
        created_at: r.get(2)?,
        company: r.get(3)?,
        caller: r.get(4)?,
        caller_name: r.get(5)?,
        category: r.get(6)?,
        status: r.get(7)?,
        outcome: r.get(8)?,
        recording: r.get(9)?,
        recording_ms: r.get(10)?,
        recording_empty: r.get(11)?,
    })
}

/// Messages matching a filter, newest first.
pub fn list_messages(path: &Path, filter: &MessageFilter) -> Result<Vec<MessageRow>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let conn = open_connection(path)?;
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN calls c ON c.id = m.call_id
         WHERE (?1 IS NULL OR m.company = ?1) AND (?2 IS NULL OR m.category = ?2)
           AND (?3 IS NULL OR m.status = ?3) AND (?4 IS NULL OR m.created_at >= ?4)
           AND (?3 IS NOT NULL OR ?6 OR m.status != 'filed')
         ORDER BY m.id DESC LIMIT ?5"
    );
    let mut stmt = conn.prepare(&sql).map_err(err)?;
    let rows = stmt
        .query_map(
            params![
                filter.company,
                filter.category,
                filter.status,
                filter.since,
                filter.limit as i64,
                filter.include_filed
            ],
            message_row,
        )
        .map_err(err)?;
    let rows = rows.collect::<Result<Vec<_>, _>>().map_err(err)?;
    Ok(rows.into_iter().map(|m| with_full_path(path, m)).collect())
}

/// A message's recording as a full path: recordings are stored relative to the data
/// directory, which is the database's.
fn with_full_path(db: &Path, mut m: MessageRow) -> MessageRow {
    if let (Some(recording), Some(dir)) = (&m.recording, db.parent()) {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        m.recording = Some(dir.join(recording).display().to_string());
    }
    m
}

/// One entry of a call's timeline.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRow {
    /// When.
    pub at: String,
    /// What.
    pub kind: String,
    /// Details (JSON).
    pub data: String,
}

/// A message with its call's timeline.
pub fn message_with_timeline(
    path: &Path,
    id: i64,
) -> Result<Option<(MessageRow, Vec<EventRow>)>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let conn = open_connection(path)?;
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN calls c ON c.id = m.call_id WHERE m.id = ?1"
    );
    let Some(message) = conn
        .query_row(&sql, params![id], message_row)
        .optional()
        .map_err(err)?
    else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare("SELECT at, kind, data FROM events WHERE call_id = ?1 ORDER BY id")
        .map_err(err)?;
    let events = stmt
        .query_map(params![message.call_id], |r| {
            Ok(EventRow {
                at: r.get(0)?,
                kind: r.get(1)?,
                data: r.get(2)?,
            })
        })
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    Ok(Some((with_full_path(path, message), events)))
}

/// Sets a message's status (by message id), keeping the change as the console's are
/// kept (by `cli`); false when there is no such message.
pub fn mark_message(
    path: &Path,
    id: i64,
    status: crate::inbox::Status,
) -> Result<bool, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let mut conn = open_connection(path)?;
    let tx = conn.transaction().map_err(err)?;
    let call: Option<i64> = tx
        .query_row(
            "SELECT call_id FROM messages WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )
        .optional()
        .map_err(err)?;
    let Some(call) = call else {
        return Ok(false);
    };
    inbox::apply_status(&tx, call, status, "cli", &now_text()).map_err(err)?;
    tx.commit().map_err(err)?;
    Ok(true)
}

/// One stored registration.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegistrationRow {
    /// SIP username.
    pub username: String,
    /// Contact URI.
    pub contact: String,
    /// Where it registered from.
    pub source: String,
    /// UDP or TCP.
    pub transport: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// The device's `+sip.instance` (RFC 5626), when it gave one.
    pub instance: Option<String>,
}

/// Registrations still valid at `now` (unix seconds).
pub fn registrations(path: &Path, now: i64) -> Result<Vec<RegistrationRow>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let conn = open_connection(path)?;
    let mut stmt = conn
        .prepare("SELECT username, contact, source, transport, expires_at, instance FROM registrations WHERE expires_at > ?1 ORDER BY username, contact")
        .map_err(err)?;
    let rows = stmt
        .query_map(params![now], |r| {
            Ok(RegistrationRow {
                username: r.get(0)?,
                contact: r.get(1)?,
                source: r.get(2)?,
                transport: r.get(3)?,
                expires_at: r.get(4)?,
                instance: r.get(5)?,
            })
        })
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

/// Voicemails a crash cut short: (call id, file relative to the data directory), linked
/// to their message but never given a length.
pub fn unfinished_recordings(path: &Path) -> Result<Vec<(i64, String)>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let conn = open_connection(path)?;
    let mut stmt = conn
        .prepare("SELECT call_id, recording FROM messages WHERE recording IS NOT NULL AND recording_ms IS NULL")
        .map_err(err)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

/// A ban, as `permanence bans` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BanRow {
    /// When it was decided.
    pub at: String,
    /// The banned address.
    pub source: String,
    /// The username it tried last.
    pub username: String,
    /// Wrong credentials that led to it.
    pub failures: u32,
    /// Until when (unix seconds).
    pub until: i64,
}

/// The most recent bans, newest first (`limit` at most).
pub fn bans(path: &Path, limit: usize) -> Result<Vec<BanRow>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let conn = open_connection(path)?;
    let mut stmt = conn
        .prepare("SELECT at, source, username, failures, until FROM bans ORDER BY id DESC LIMIT ?1")
        .map_err(err)?;
    let rows = stmt
        .query_map(params![limit as i64], |r| {
            Ok(BanRow {
                at: r.get(0)?,
                source: r.get(1)?,
                username: r.get(2)?,
                failures: r.get(3)?,
                until: r.get(4)?,
            })
        })
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

/// One call as the console's card shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CardCall {
    /// The call.
    pub id: CallRowId,
    /// Its company.
    pub company: Option<String>,
    /// The caller's number.
    pub caller: String,
    /// The caller's name from a contact list.
    pub caller_name: Option<String>,
    /// The route it took.
    pub route: Option<String>,
    /// When it started.
    pub started_at: String,
    /// How it ended (none while it is up).
    pub outcome: Option<String>,
    /// Its message's category.
    pub category: Option<String>,
    /// The message written for it, if any (`about`).
    pub note: Option<String>,
    /// Who wrote it.
    pub written_by: Option<String>,
    /// Placed by a secretary from a task (`direction = outbound`): not a caller's call.
    pub outbound: bool,
}

fn card_call(r: &rusqlite::Row) -> rusqlite::Result<CardCall> {
    Ok(CardCall {
        id: r.get(0)?,
        company: r.get(1)?,
        caller: r.get(2)?,
        caller_name: r.get(3)?,
        route: r.get(4)?,
        started_at: r.get(5)?,
        outcome: r.get(6)?,
        category: r.get(7)?,
        note: r.get(8)?,
        written_by: r.get(9)?,
        outbound: r.get(10)?,
    })
}

const CARD_CALL: &str =
    "SELECT c.id, c.company, c.caller, c.caller_name, c.route, c.started_at, c.outcome,
        m.category, m.note, m.written_by, c.direction = 'outbound'
     FROM calls c LEFT JOIN messages m ON m.call_id = c.id";

/// A call and the caller's earlier calls to the same company (newest first, `limit`).
pub fn call_with_history(
    path: &Path,
    id: CallRowId,
    limit: usize,
) -> Result<Option<(CardCall, Vec<CardCall>)>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let conn = open_connection(path)?;
    let call = conn
        .query_row(
            &format!("{CARD_CALL} WHERE c.id = ?1"),
            params![id],
            card_call,
        )
        .optional()
        .map_err(err)?;
    let Some(call) = call else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare(&format!(
            "{CARD_CALL} WHERE c.company IS ?1 AND c.caller = ?2 AND c.id < ?3 ORDER BY c.id DESC LIMIT ?4"
        ))
        .map_err(err)?;
    let history = stmt
        .query_map(
            params![call.company, call.caller, id, limit as i64],
            card_call,
        )
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    Ok(Some((call, history)))
}

/// A call's company and who took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallOwner {
    /// The company called, when the number reached one.
    pub company: Option<String>,
    /// The secretary who took it (`handled_by`).
    pub handled_by: Option<String>,
}

/// Whose a call is; `None` when there is no such call.
pub fn call_owner(path: &Path, id: CallRowId) -> Result<Option<CallOwner>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let conn = open_connection(path)?;
    conn.query_row(
        "SELECT company, handled_by FROM calls WHERE id = ?1",
        params![id],
        |r| {
            Ok(CallOwner {
                company: r.get(0)?,
                handled_by: r.get(1)?,
            })
        },
    )
    .optional()
    .map_err(err)
}

/// A call's timeline since a secretary last asked for a transfer (by REFER or from the
/// console), that `transfer` event first, as (kind, details) oldest first; empty when no
/// secretary asked. The console reads how her transfer goes from it.
pub fn secretary_transfer(path: &Path, id: CallRowId) -> Result<Vec<(String, String)>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let conn = open_connection(path)?;
    // A transfer's own events are a few per reach entry: the limit only guards the read.
    let mut stmt = conn
        .prepare(
            "SELECT kind, data FROM events
             WHERE call_id = ?1 AND id >= (SELECT MAX(id) FROM events
                                           WHERE call_id = ?1 AND kind = 'transfer'
                                             AND json_extract(data, '$.by') IS NOT NULL)
             ORDER BY id LIMIT 200",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

/// The console sessions still live at `now` (unix seconds): hash, username, expiry.
/// Expired ones are deleted.
pub fn live_sessions(path: &Path, now: i64) -> Result<Vec<(String, String, i64)>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let conn = open_connection(path)?;
    conn.execute("DELETE FROM sessions WHERE expires_at <= ?1", params![now])
        .map_err(err)?;
    let mut stmt = conn
        .prepare("SELECT hash, username, expires_at FROM sessions")
        .map_err(err)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

/// A caller waiting in a company's queue now, as the records say.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WaitingRow {
    /// The call's row id.
    pub call: CallRowId,
    /// The company called.
    pub company: String,
    /// The caller's number.
    pub caller: String,
    /// The caller's name, when a contact list knows it.
    pub caller_name: Option<String>,
    /// When they started waiting (RFC 3339, UTC).
    pub queued_at: String,
}

/// The callers waiting for a secretary now: queued, not yet dequeued, call not ended;
/// longest wait first.
pub fn waiting(path: &Path) -> Result<Vec<WaitingRow>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let conn = open_connection(path)?;
    let mut stmt = conn
        .prepare(
            "SELECT c.id, c.company, c.caller, c.caller_name, q.at
             FROM events q JOIN calls c ON c.id = q.call_id
             WHERE q.kind = 'queued' AND c.ended_at IS NULL AND c.company IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM events d
                               WHERE d.call_id = q.call_id AND d.kind = 'dequeued')
             ORDER BY q.at, c.id",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(WaitingRow {
                call: r.get(0)?,
                company: r.get(1)?,
                caller: r.get(2)?,
                caller_name: r.get(3)?,
                queued_at: r.get(4)?,
            })
        })
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

/// What a secretary was last recorded doing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SecretaryStateRow {
    /// SIP username.
    pub username: String,
    /// `available`, `ringing`, `on-call` or `wrap-up`.
    pub state: String,
    /// The call concerned.
    pub call_id: Option<i64>,
    /// End of wrap-up, unix ms.
    pub until_ms: Option<i64>,
    /// Since when.
    pub at: String,
}

/// Every secretary's last recorded activity.
pub fn secretary_states(path: &Path) -> Result<Vec<SecretaryStateRow>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let conn = open_connection(path)?;
    let mut stmt = conn
        .prepare(
            "SELECT username, state, call_id, until_ms, at FROM secretary_states ORDER BY username",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(SecretaryStateRow {
                username: r.get(0)?,
                state: r.get(1)?,
                call_id: r.get(2)?,
                until_ms: r.get(3)?,
                at: r.get(4)?,
            })
        })
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

/// A number a company blocked, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlockedRow {
    /// Row id.
    pub id: i64,
    /// The company.
    pub company: String,
    /// The number (E.164, as checked when it was added).
    pub number: String,
    /// Why.
    pub reason: String,
    /// Who blocked it: a secretary, or `cli`.
    pub added_by: String,
    /// When.
    pub added_at: String,
    /// Who lifted the block, if someone did.
    pub removed_by: Option<String>,
    /// When.
    pub removed_at: Option<String>,
}

const BLOCKED_COLUMNS: &str =
    "id, company, number, reason, added_by, added_at, removed_by, removed_at";

fn blocked_row(r: &rusqlite::Row) -> rusqlite::Result<BlockedRow> {
    Ok(BlockedRow {
        id: r.get(0)?,
        company: r.get(1)?,
        number: r.get(2)?,
        reason: r.get(3)?,
        added_by: r.get(4)?,
        added_at: r.get(5)?,
        removed_by: r.get(6)?,
        removed_at: r.get(7)?,
    })
}

/// Where the block lists stand now, on an open connection.
pub fn blocked_version(conn: &Connection) -> rusqlite::Result<crate::blocklist::Version> {
    conn.query_row(
        "SELECT coalesce(max(id), 0), count(removed_at) FROM blocked_numbers",
        [],
        |r| {
            Ok(crate::blocklist::Version {
                last_id: r.get(0)?,
                removed: r.get(1)?,
            })
        },
    )
}

/// Every live block and the version they make, read together (one read transaction) on
/// an open connection: what the server keeps in memory.
pub fn live_blocks(
    conn: &mut Connection,
) -> rusqlite::Result<(crate::blocklist::Version, Vec<BlockedRow>)> {
    let tx = conn.transaction()?;
    let version = blocked_version(&tx)?;
    let rows = tx
        .prepare(&format!(
            "SELECT {BLOCKED_COLUMNS} FROM blocked_numbers WHERE removed_at IS NULL ORDER BY id"
        ))?
        .query_map([], blocked_row)?
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit()?;
    Ok((version, rows))
}

/// The block lists for `permanence blocked list`: one company's or all, newest first;
/// lifted blocks too with `with_removed`.
pub fn blocked_numbers(
    path: &Path,
    company: Option<&str>,
    with_removed: bool,
) -> Result<Vec<BlockedRow>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let conn = open_connection(path)?;
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {BLOCKED_COLUMNS} FROM blocked_numbers
             WHERE (?1 IS NULL OR company = ?1) AND (?2 OR removed_at IS NULL)
             ORDER BY id DESC"
        ))
        .map_err(err)?;
    let rows = stmt
        .query_map(params![company, with_removed], blocked_row)
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

/// Blocks a number from the command line (the server notices within seconds); the live
/// block, and whether this call made it (false: it was blocked already, unchanged).
pub fn block_number(
    path: &Path,
    company: &str,
    number: &str,
    reason: &str,
    by: &str,
) -> Result<(BlockedRow, bool), StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let mut conn = open_connection(path)?;
    let tx = conn.transaction().map_err(err)?;
    let added = tx
        .execute(BLOCK_SQL, params![company, number, reason, by, now_text()])
        .map_err(err)?;
    let row = tx
        .query_row(
            &format!(
                "SELECT {BLOCKED_COLUMNS} FROM blocked_numbers
                 WHERE company = ?1 AND number = ?2 AND removed_at IS NULL"
            ),
            params![company, number],
            blocked_row,
        )
        .map_err(err)?;
    tx.commit().map_err(err)?;
    Ok((row, added == 1))
}

/// Lifts a company's block of a number from the command line; the block as it now
/// stands (with who lifted it), or None when the number was not blocked.
pub fn unblock_number(
    path: &Path,
    company: &str,
    number: &str,
    by: &str,
) -> Result<Option<BlockedRow>, StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.into(),
        source,
    };
    let mut conn = open_connection(path)?;
    let tx = conn.transaction().map_err(err)?;
    let id: Option<i64> = tx
        .query_row(
            "SELECT id FROM blocked_numbers WHERE company = ?1 AND number = ?2 AND removed_at IS NULL",
            params![company, number],
            |r| r.get(0),
        )
        .optional()
        .map_err(err)?;
    let Some(id) = id else {
        return Ok(None);
    };
    tx.execute(UNBLOCK_SQL, params![id, by, now_text()])
        .map_err(err)?;
    let row = tx
        .query_row(
            &format!("SELECT {BLOCKED_COLUMNS} FROM blocked_numbers WHERE id = ?1"),
            params![id],
            blocked_row,
        )
        .map_err(err)?;
    tx.commit().map_err(err)?;
    Ok(Some(row))
}
