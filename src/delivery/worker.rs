//! The outbox worker: a thread of its own with a small tokio runtime (SMTP, reading
//! voicemails and composing e-mails never hold up signalling). Every second, and at once
//! when the records say a message changed or a call ended, it:
//!
//! 1. makes the daily summaries whose time has come (one `SummaryMade` record each);
//! 2. sends the pending deliveries that are due, a few at a time, and records each result
//!    through the store's writer (`DeliveryTried`): sent, retried later with exponential
//!    back-off, or failed once `[delivery] give_up_hours` have passed;
//! 3. waits until those records are committed before it reads the outbox again, so that a
//!    row it has sent is never read as pending again.
//!
//! A restart resumes whatever is still pending or held. The one window left is between a
//! receiver's acknowledgement and the commit of `sent` (milliseconds): a crash there sends
//! that e-mail again after the restart, with the same Message-ID.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;

use super::backoff::{self, Next, Policy};
use super::compose::{self, CompanyView, DigestView, MessageView, Voicemail, one_line};
use super::digest;
use super::email::Mailer;
use super::rules::Payload;
use super::webhook;
use crate::config::{SmtpConfig, WebhookConfig};
use crate::dialplan::Category;
use crate::followup::{self, Status};
use crate::store::{
    self, Committed, Delivery, MessageRecord, Record, SummaryRow, Tried, Writer, time_text,
};

/// How often the outbox is read when nothing wakes the worker: a retry by hand (the CLI,
/// another process) is picked up within this.
const POLL: Duration = Duration::from_secs(1);
/// Rows read at once; more are read as soon as these are done.
const BATCH: usize = 64;
/// Sends at once (SMTP connections from the pool, webhook POSTs).
const CONCURRENCY: usize = super::email::CONNECTIONS as usize;
/// At shutdown, how long sends under way may take to finish (their results recorded).
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long an e-mail waits for its voicemail to be closed (its length recorded) after its
/// row was queued; then it goes without (a crash left the file for the next start).
const RECORDING_WAIT: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);

/// What the worker needs from the configuration.
#[derive(Clone)]
pub struct Settings {
    /// The records.
    pub db: PathBuf,
    /// The data directory (voicemails are stored relative to it).
    pub data: PathBuf,
    /// `[smtp]`, if e-mail is set up.
    pub smtp: Option<SmtpConfig>,
    /// `[[webhooks]]`.
    pub webhooks: Arc<[WebhookConfig]>,
    /// Retries.
    pub policy: Policy,
    /// The largest voicemail attached.
    pub attachment_max_bytes: u64,
    /// Links to the executive's page, when the console is served.
    pub links: Option<super::Links>,
}

impl Settings {
    /// From the configuration.
    pub fn from_config(config: &crate::config::Config) -> Settings {
        Settings {
            db: config.database_path(),
            data: config.paths.data.clone(),
            smtp: config.smtp.clone(),
            webhooks: config.webhooks.clone().into(),
            policy: Policy::from_config(&config.delivery),
            attachment_max_bytes: config.delivery.attachment_max_bytes,
            links: None,
        }
    }
}

/// The running worker; [`Worker::stop`] ends it.
pub struct Worker {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Starts the worker's thread.
    pub fn start(settings: Settings, writer: Writer) -> std::io::Result<Worker> {
        let (stop, stopped) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("delivery".into())
            .spawn(move || runtime.block_on(run(settings, writer, stopped)))?;
        Ok(Worker {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops taking rows, lets sends under way finish (at most `STOP_GRACE`) with their
    /// results queued to the store, and ends the thread.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the delivery thread panicked");
        }
    }
}

/// One thing to send, prepared from a row (the database read, the e-mail composed).
enum Job {
    Email {
        to_name: String,
        to: String,
        email: Box<compose::Email>,
        message_id: String,
    },
    Webhook {
        hook: WebhookConfig,
        id: String,
        body: Vec<u8>,
    },
}

/// What came of a row, before it is recorded.
enum Attempt {
    /// Sent, or failed.
    Done(Result<(), Failure>),
    /// Not now: look again then.
    Later(Timestamp),
}

/// Why an attempt failed, and what that says about the next one.
struct Failure {
    /// On one line.
    error: String,
    /// Whether trying again may help.
    retryable: bool,
    /// The receiver asked to wait at least this long (a webhook's `Retry-After`).
    not_before: Option<Duration>,
}

impl Failure {
    fn new(error: impl Into<String>, retryable: bool) -> Failure {
        Failure {
            error: error.into(),
            retryable,
            not_before: None,
        }
    }
}

async fn run(settings: Settings, writer: Writer, mut stopped: watch::Receiver<bool>) {
    let mut wake = writer.subscribe();
    let conn = loop {
        match store::open_connection(&settings.db) {
            Ok(conn) => break conn,
            Err(e) => {
                tracing::error!(error = %e, "deliveries: cannot open the records; trying again in 5 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = stopped.changed() => return,
                }
            }
        }
    };
    let mailer = settings.smtp.as_ref().and_then(|smtp| match Mailer::new(smtp) {
        Ok(m) => Some(Arc::new(m)),
        Err(e) => {
            tracing::error!(error = %e, "deliveries: e-mail is not set up; e-mails wait in the outbox");
            None
        }
    });
    let w = Run {
        settings,
        writer,
        conn,
        mailer,
    };
    tracing::info!(
        smtp = w.mailer.is_some(),
        webhooks = w.settings.webhooks.len(),
        "deliveries: outbox worker started"
    );
    loop {
        if *stopped.borrow() {
            break;
        }
        let now = Timestamp::now();
        w.make_summaries(now).await;
        let full = match store::due_deliveries(&w.conn, now, BATCH) {
            Ok(rows) => {
                let full = rows.len() == BATCH;
                if !rows.is_empty() {
                    w.send(rows, &mut stopped).await;
                    // Read the outbox again only once these results are on disk.
                    let _ = w.writer.committed().await;
                }
                full
            }
            Err(e) => {
                tracing::warn!(error = %e, "deliveries: cannot read the outbox");
                false
            }
        };
        if full {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = woken(&mut wake) => {}
            _ = stopped.changed() => {}
        }
    }
    tracing::info!("deliveries: outbox worker stopped");
}

/// Resolves when the records say something that may make a delivery (a message changed,
/// a call ended, an appointment changed), or when the worker fell behind them.
async fn woken(wake: &mut broadcast::Receiver<Committed>) {
    loop {
        match wake.recv().await {
            Ok(
                Committed::MessageChanged { .. }
                | Committed::CallEnded { .. }
                | Committed::Appointment { .. },
            ) => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            // The store is closing: only the poll (or the stop) wakes us now.
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// The worker between two polls.
struct Run {
    settings: Settings,
    writer: Writer,
    conn: rusqlite::Connection,
    mailer: Option<Arc<Mailer>>,
}

impl Run {
    /// Folds the held lines whose summary time has come into their summaries.
    async fn make_summaries(&self, now: Timestamp) {
        let held = match store::held_due(&self.conn, now) {
            Ok(held) if !held.is_empty() => held,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "deliveries: cannot read the held summary lines");
                return;
            }
        };
        for s in digest::summaries(&held) {
            // The payload of its first line, with the summary's time.
            let payload = store::message_payload(&self.conn, s.rows[0])
                .ok()
                .flatten()
                .and_then(|p| serde_json::from_str::<Payload>(&p).ok())
                .map(|mut p| {
                    p.summary_due = Some(s.due.to_string());
                    p
                });
            let Some(payload) = payload.and_then(|p| serde_json::to_string(&p).ok()) else {
                continue;
            };
            tracing::info!(company = %s.company, executive = %s.executive, lines = s.rows.len(), "deliveries: daily summary made");
            self.writer.write(Record::SummaryMade {
                summary: Box::new(SummaryRow {
                    // Its first line in the key: lines that come in late for the same time
                    // make a summary of their own, never a second copy of this one.
                    event: format!("{}:{}", s.event, s.rows[0]),
                    company: s.company,
                    executive: s.executive,
                    target: s.target,
                    payload,
                    rows: s.rows,
                }),
                at: store::now_text(),
            });
        }
        let _ = self.writer.committed().await;
    }

    /// Sends due rows, `CONCURRENCY` at a time, recording each result as it comes.
    async fn send(&self, rows: Vec<Delivery>, stopped: &mut watch::Receiver<bool>) {
        let mut rows = rows.into_iter();
        let mut running: JoinSet<(Delivery, Attempt)> = JoinSet::new();
        let mut stopping: Option<tokio::time::Instant> = None;
        loop {
            while stopping.is_none() && running.len() < CONCURRENCY {
                let Some(row) = rows.next() else { break };
                let now = Timestamp::now();
                match self.prepare(&row, now) {
                    Ok(job) => {
                        let mailer = self.mailer.clone();
                        running.spawn(async move {
                            let result = execute(job, mailer.as_deref()).await;
                            (row, Attempt::Done(result))
                        });
                    }
                    Err(attempt) => self.record(&row, attempt),
                }
            }
            if running.is_empty() {
                return;
            }
            let deadline =
                stopping.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                done = running.join_next() => match done {
                    Some(Ok((row, attempt))) => self.record(&row, attempt),
                    Some(Err(e)) => tracing::error!(error = %e, "deliveries: a send failed to run"),
                    None => return,
                },
                _ = stopped.changed(), if stopping.is_none() => {
                    stopping = Some(tokio::time::Instant::now() + STOP_GRACE);
                }
                _ = tokio::time::sleep_until(deadline), if stopping.is_some() => {
                    tracing::warn!(left = running.len(), "deliveries: sends still under way at shutdown abandoned; they stay pending");
                    running.abort_all();
                    return;
                }
            }
        }
    }

    /// The company's follow-ups for a summary due at `due`: the open ones, and those
    /// finished in the day before it.
    fn summary_tasks(
        &self,
        row: &Delivery,
        payload: &Payload,
        due: Timestamp,
    ) -> rusqlite::Result<Vec<compose::TaskLine>> {
        let since = due - jiff::SignedDuration::from_hours(24);
        let tasks = store::summary_tasks(&self.conn, &row.company, &time_text(since))?;
        let today = company_view(row, payload).timezone.to_datetime(due).date();
        Ok(tasks
            .into_iter()
            .map(|t| {
                let status = Status::parse(&t.status).unwrap_or(Status::Open);
                let due_day = t.due.as_deref().and_then(|d| followup::date(d).ok());
                compose::TaskLine {
                    overdue: followup::overdue(status, due_day, today),
                    invoice: t.invoice.map(|i| match t.amount_cents {
                        Some(c) => format!("{i} {}", followup::amount_text(c)),
                        None => i,
                    }),
                    kind: t.kind,
                    status: t.status,
                    customer: t.customer,
                    phone: t.phone,
                    due: t.due,
                    outcome: t.outcome,
                }
            })
            .collect())
    }

    /// Reads what a row sends and composes it; or says why not now (its voicemail is still
    /// being written) or never (its message is gone, its webhook no longer configured).
    fn prepare(&self, row: &Delivery, now: Timestamp) -> Result<Job, Attempt> {
        let payload: Payload = serde_json::from_str(&row.payload).map_err(|_| {
            Attempt::Done(Err(Failure::new("its payload does not read back", false)))
        })?;
        let gone = |what: &str| Attempt::Done(Err(Failure::new(what, false)));
        let read =
            |e: rusqlite::Error| Attempt::Done(Err(Failure::new(format!("records: {e}"), true)));
        let message_id = format!(
            "permanence.{}.{}",
            row.id,
            row.created_at.replace([':', '-', '.'], "")
        );
        if let Some(key) = row.event.strip_prefix("appointment:") {
            return self.appointment_job(row, key, payload, message_id, now);
        }
        if row.channel == "email" && payload.summary_due.is_some() {
            let messages = store::summary_messages(&self.conn, row.id).map_err(read)?;
            let mut views = Vec::new();
            for id in messages {
                if let Some(m) = store::message_record(&self.conn, id).map_err(read)? {
                    views.push(self.view(&m, &payload, row, None));
                }
            }
            let due = payload
                .summary_due
                .as_deref()
                .and_then(|d| d.parse().ok())
                .unwrap_or(now);
            let tasks = self.summary_tasks(row, &payload, due).map_err(read)?;
            let email = compose::digest_email(&DigestView {
                company: company_view(row, &payload),
                executive: payload.executive_name.clone(),
                due,
                messages: views,
                link: self.link(row, None),
                tasks,
            });
            return Ok(Job::Email {
                to_name: payload.executive_name,
                to: row.target.clone(),
                email: Box::new(email),
                message_id,
            });
        }
        let Some(message) = row.message_id else {
            return Err(gone("a delivery without its message"));
        };
        let Some(m) = store::message_record(&self.conn, message).map_err(read)? else {
            return Err(gone("its message is no longer in the records"));
        };
        let queued: Timestamp = row.created_at.parse().unwrap_or(now);
        if m.recording.is_some() && m.recording_ms.is_none() && now < queued + RECORDING_WAIT {
            // Due again at once: the commit of the recording's length wakes the worker
            // (a message changed), or the next poll finds it.
            return Err(Attempt::Later(now));
        }
        match row.channel.as_str() {
            "email" => {
                let voicemail = self.voicemail(&m);
                let view = self.view(&m, &payload, row, Some(voicemail));
                Ok(Job::Email {
                    to_name: payload.executive_name,
                    to: row.target.clone(),
                    email: Box::new(compose::message_email(&view)),
                    message_id,
                })
            }
            "webhook" => {
                let Some(hook) = self.settings.webhooks.iter().find(|h| h.url == row.target) else {
                    return Err(gone("this webhook is no longer in the config"));
                };
                let view = self.view(&m, &payload, row, None);
                Ok(Job::Webhook {
                    hook: hook.clone(),
                    id: webhook_id(&row.event),
                    body: compose::webhook_body(&row.event, &view),
                })
            }
            other => Err(gone(&format!("unknown channel `{other}`"))),
        }
    }

    /// An appointment's e-mail (`appointment:UID:SEQUENCE:executive|client`), composed
    /// from the appointment as it now stands; the executive's carries Confirm (while it is
    /// proposed and not started) and Cancel (while it holds its time) links, signed now.
    fn appointment_job(
        &self,
        row: &Delivery,
        key: &str,
        payload: Payload,
        message_id: String,
        now: Timestamp,
    ) -> Result<Job, Attempt> {
        use crate::agenda::Status;
        use crate::agenda::link::{Action, sign_action};
        use crate::delivery::appointment::{AppointmentView, Recipient, appointment_email};
        let gone = |what: &str| Attempt::Done(Err(Failure::new(what, false)));
        let read =
            |e: rusqlite::Error| Attempt::Done(Err(Failure::new(format!("records: {e}"), true)));
        let to = if key.ends_with(":client") {
            Recipient::Client
        } else {
            Recipient::Executive
        };
        let hook = if row.channel == "webhook" {
            let Some(hook) = self.settings.webhooks.iter().find(|h| h.url == row.target) else {
                return Err(gone("this webhook is no longer in the config"));
            };
            Some(hook.clone())
        } else {
            None
        };
        let uid = key.split(':').next().unwrap_or_default();
        let Some(a) = store::agenda::appointment_in(&self.conn, uid).map_err(read)? else {
            return Err(gone("its appointment is no longer in the records"));
        };
        let Some(span) = a.span() else {
            return Err(gone("its appointment's time does not read back"));
        };
        let tz = jiff::tz::TimeZone::get(&payload.timezone).unwrap_or(jiff::tz::TimeZone::UTC);
        let (confirm, cancel) = match (to, &self.settings.links) {
            (Recipient::Executive, Some(links)) => {
                let base = links.base.trim_end_matches('/');
                let url = |action, until| {
                    format!(
                        "{base}/a/{}",
                        sign_action(&links.key, &a.uid, action, now, until)
                    )
                };
                (
                    (a.status() == Some(Status::Proposed) && now < span.starts)
                        .then(|| url(Action::Confirm, span.starts)),
                    a.status()
                        .is_some_and(Status::holds_time)
                        .then(|| url(Action::Cancel, span.ends)),
                )
            }
            _ => (None, None),
        };
        let view = AppointmentView {
            row: &a,
            span,
            company: &payload.company_name,
            executive: &payload.executive_name,
            language: &payload.language,
            timezone: &tz,
            confirm,
            cancel,
            now,
        };
        if let Some(hook) = hook {
            return Ok(Job::Webhook {
                hook,
                id: webhook_id(&row.event),
                body: crate::delivery::appointment::webhook_body(&row.event, &view),
            });
        }
        let email = appointment_email(&view, to);
        let to_name = match to {
            Recipient::Client => a.client.name.clone(),
            Recipient::Executive => payload.executive_name.clone(),
        };
        Ok(Job::Email {
            to_name,
            to: row.target.clone(),
            email: Box::new(email),
            message_id,
        })
    }

    /// The voicemail as the e-mail carries it: attached under the size cap, else named.
    /// The link to the row's executive's page (a message's, or their list), made now.
    fn link(&self, row: &Delivery, call: Option<i64>) -> Option<String> {
        let links = self.settings.links.as_ref()?;
        let executive = row.executive.as_deref()?;
        Some(links.to(executive, call, Timestamp::now()))
    }

    fn voicemail(&self, m: &MessageRecord) -> Voicemail {
        let (Some(relative), ms) = (&m.recording, m.recording_ms.unwrap_or(0)) else {
            return Voicemail::None;
        };
        let path = self.settings.data.join(relative);
        let size = std::fs::metadata(&path).map(|m| m.len());
        match size {
            Ok(size) if size <= self.settings.attachment_max_bytes => match std::fs::read(&path) {
                Ok(bytes) => Voicemail::Attached {
                    name: path.file_name().map_or_else(
                        || "message.wav".into(),
                        |n| n.to_string_lossy().into_owned(),
                    ),
                    bytes,
                    ms,
                },
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "deliveries: voicemail not attached");
                    Voicemail::OnConsole { ms }
                }
            },
            Ok(_) => Voicemail::OnConsole { ms },
            Err(_) => Voicemail::None,
        }
    }

    /// A message as the composer reads it: the records, and the plan's part the row kept.
    fn view(
        &self,
        m: &MessageRecord,
        payload: &Payload,
        row: &Delivery,
        voicemail: Option<Voicemail>,
    ) -> MessageView {
        let written: std::collections::BTreeMap<String, String> = m
            .fields
            .as_deref()
            .and_then(|f| serde_json::from_str(f).ok())
            .unwrap_or_default();
        let mut fields: Vec<(String, String)> = payload
            .fields
            .iter()
            .filter_map(|(name, label)| written.get(name).map(|v| (label.clone(), v.clone())))
            .collect();
        fields.extend(
            written
                .iter()
                .filter(|(name, _)| !payload.fields.iter().any(|(n, _)| n == *name))
                .map(|(name, value)| (name.clone(), value.clone())),
        );
        // Not attached (a summary, a webhook): named, when there is one.
        let named = match (&m.recording, m.recording_ms) {
            (Some(_), Some(ms)) if ms > 0 => Voicemail::OnConsole { ms },
            _ => Voicemail::None,
        };
        let voicemail = voicemail.unwrap_or(named);
        MessageView {
            message_id: m.id,
            call_id: m.call_id,
            company: company_view(row, payload),
            executive: row
                .executive
                .clone()
                .map(|id| (id, payload.executive_name.clone())),
            category: Category::parse(&m.category).unwrap_or_default(),
            status: m.status.clone(),
            caller: m.caller.clone(),
            written_name: m.written_name.clone(),
            contact_name: m.contact_name.clone(),
            display_name: m.display_name.clone(),
            caller_company: m.caller_company.clone(),
            callback: m.callback.clone(),
            about: m.about.clone(),
            fields,
            started_at: m.started_at.parse().unwrap_or(Timestamp::UNIX_EPOCH),
            outcome: m.outcome.clone(),
            route: m.route.clone(),
            handled_by: m.handled_by.clone(),
            transferred_to: m.transferred_to.clone(),
            written_by: m.written_by.clone(),
            voicemail,
            link: self.link(row, Some(m.call_id)),
        }
    }

    /// Records what came of a row through the store's writer.
    fn record(&self, row: &Delivery, attempt: Attempt) {
        let now = Timestamp::now();
        let result = tried(row, attempt, now, &self.settings.policy);
        match &result {
            Tried::Sent => tracing::info!(id = row.id, channel = %row.channel, "deliveries: sent"),
            Tried::Retry {
                attempts,
                next,
                error,
            } => {
                tracing::info!(id = row.id, channel = %row.channel, attempts, next = %next, error = %error, "deliveries: failed; will retry")
            }
            Tried::Failed { attempts, error } => {
                tracing::warn!(id = row.id, channel = %row.channel, target = %one_line(&row.target, 200), attempts, error = %error, "deliveries: given up; `permanence deliveries retry` tries it again")
            }
            Tried::Later { .. } => {}
        }
        self.writer.write(Record::DeliveryTried {
            id: row.id,
            result,
            at: time_text(now),
        });
    }
}

/// A delivery's event as a `webhook-id`: letters, digits, `_`, `-` and `:` (an executive's
/// id in a plan may hold others), at most 128 characters.
fn webhook_id(event: &str) -> String {
    event
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':') {
                c
            } else {
                '-'
            }
        })
        .take(128)
        .collect()
}

/// The company as the composer names it, from what the row kept.
fn company_view(row: &Delivery, payload: &Payload) -> CompanyView {
    CompanyView {
        id: row.company.clone(),
        name: payload.company_name.clone(),
        language: payload.language.clone(),
        timezone: TimeZone::get(&payload.timezone).unwrap_or(TimeZone::UTC),
    }
}

/// Sends one job; the error on one line, whether to retry, and how long the receiver asked
/// us to wait.
async fn execute(job: Job, mailer: Option<&Mailer>) -> Result<(), Failure> {
    match job {
        Job::Email {
            to_name,
            to,
            email,
            message_id,
        } => {
            let Some(mailer) = mailer else {
                return Err(Failure::new("no usable [smtp] in the config", true));
            };
            mailer
                .send(&to_name, &to, &email, &message_id)
                .await
                .map_err(|e| Failure::new(one_line(&e.to_string(), 300), e.retryable()))
        }
        Job::Webhook { hook, id, body } => webhook::send(&hook, &id, &body, Timestamp::now())
            .await
            .map_err(|e| Failure {
                error: one_line(&e.to_string(), 300),
                retryable: e.retryable(),
                not_before: e.retry_after(),
            }),
    }
}

/// What to record for a row after an attempt (or a deferral) at `now`.
fn tried(row: &Delivery, attempt: Attempt, now: Timestamp, policy: &Policy) -> Tried {
    match attempt {
        Attempt::Later(at) => Tried::Later {
            next: time_text(at),
        },
        Attempt::Done(Ok(())) => Tried::Sent,
        Attempt::Done(Err(Failure {
            error,
            retryable,
            not_before,
        })) => {
            let attempts = row.attempts.saturating_add(1);
            let since: Timestamp = row.retry_since.parse().unwrap_or(now);
            let give_up = policy.give_up_at(since);
            match backoff::after_failure(policy, attempts, now, give_up, retryable) {
                Next::RetryAt(at) => {
                    // Not sooner than the receiver asked (its `Retry-After`), nor past the window.
                    let asked = not_before
                        .and_then(|d| jiff::SignedDuration::try_from(d).ok())
                        .and_then(|d| now.checked_add(d).ok())
                        .unwrap_or(at);
                    Tried::Retry {
                        attempts,
                        next: time_text(at.max(asked).min(give_up)),
                        error,
                    }
                }
                Next::GiveUp => Tried::Failed { attempts, error },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(attempts: u32, since: &str) -> Delivery {
        Delivery {
            id: 1,
            event: "message:1:urgent:marie".into(),
            channel: "email".into(),
            target: "marie@acme.example".into(),
            company: "acme".into(),
            executive: Some("marie".into()),
            message_id: Some(1),
            payload: "{}".into(),
            status: "pending".into(),
            attempts,
            next_attempt: since.into(),
            retry_since: since.into(),
            last_error: None,
            created_at: since.into(),
            sent_at: None,
            digest_id: None,
        }
    }

    #[test]
    fn a_failure_is_retried_later_until_the_window_closes() {
        let policy = Policy::from_config(&crate::config::DeliveryConfig::default());
        let now: Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
        let failed = |retryable| Attempt::Done(Err(Failure::new("connection refused", retryable)));
        assert_eq!(
            tried(
                &row(2, "2026-11-27T09:59:00.000Z"),
                failed(true),
                now,
                &policy
            ),
            Tried::Retry {
                attempts: 3,
                next: "2026-11-27T10:02:00.000Z".into(),
                error: "connection refused".into()
            }
        );
        assert_eq!(
            tried(
                &row(30, "2026-11-26T10:00:00.000Z"),
                failed(true),
                now,
                &policy
            ),
            Tried::Failed {
                attempts: 31,
                error: "connection refused".into()
            },
            "a day after it was queued"
        );
        assert!(matches!(
            tried(
                &row(0, "2026-11-27T09:59:00.000Z"),
                failed(false),
                now,
                &policy
            ),
            Tried::Failed { attempts: 1, .. }
        ));
        assert_eq!(
            tried(
                &row(0, "2026-11-27T09:59:00.000Z"),
                Attempt::Done(Ok(())),
                now,
                &policy
            ),
            Tried::Sent
        );
        // A receiver's Retry-After beyond the back-off is waited for.
        let busy = Attempt::Done(Err(Failure {
            not_before: Some(Duration::from_secs(600)),
            ..Failure::new("answered 503", true)
        }));
        assert!(matches!(
            tried(&row(0, "2026-11-27T09:59:00.000Z"), busy, now, &policy),
            Tried::Retry { next, .. } if next == "2026-11-27T10:10:00.000Z"
        ));
        assert_eq!(
            webhook_id("message:7:urgent:marie.d@x"),
            "message:7:urgent:marie-d-x"
        );
    }
}
