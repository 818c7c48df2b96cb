//! Follow-ups in the console: each company's task list (overdue first), a task made by
//! hand or from a message ("call this caller back"), a CSV of unpaid invoices imported all
//! or nothing, a task's status, outcome and assignee changed, attempts logged. Only for
//! the companies the secretary serves: another company's task is 404, like one that does
//! not exist (ids are sequential), and naming another company is 403.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::inbox::read;
use super::*;
use crate::followup::{self, AttemptResult, Draft, Status, TaskError, import};
use crate::store::{self, TaskChange, TaskIds, TaskRow};

/// The script of the task list.
const TASKS_SCRIPT: &str = include_str!("tasks.js");

/// The follow-up tasks' console API (`/api/tasks…`) and their view's script.
pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/tasks.js", get(script))
        .route("/api/tasks", get(list).post(create))
        .route(
            "/api/tasks/import",
            // A CSV of a few thousand rows: more than the console's usual bodies.
            post(import_csv).layer(axum::extract::DefaultBodyLimit::max(import::MAX_BYTES)),
        )
        .route("/api/tasks/{id}", get(one).post(change))
        .route("/api/tasks/{id}/attempts", post(add_attempt))
        .route("/api/tasks/{id}/call", post(call))
}

async fn script() -> Response {
    security_headers("text/javascript; charset=utf-8", TASKS_SCRIPT)
}

impl Web {
    /// The task ids, read from the records the first time they are needed.
    fn task_ids(&self) -> Result<TaskIds, Refused> {
        let mut ids = self.task_ids.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ids) = ids.as_ref() {
            return Ok(ids.clone());
        }
        let loaded = TaskIds::load(&self.db).map_err(|e| {
            tracing::error!(error = %e, "console: task ids not read");
            refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "the records cannot be read",
                None,
            )
        })?;
        *ids = Some(loaded.clone());
        Ok(loaded)
    }

    /// The company's local day (UTC's for a company no plan has any more).
    fn today_of(&self, company: &str) -> jiff::civil::Date {
        match self.company(company) {
            Some(c) => today(&c),
            None => jiff::tz::TimeZone::UTC
                .to_datetime(jiff::Timestamp::now())
                .date(),
        }
    }

    /// The usernames of the company's secretaries (the possible assignees).
    fn secretaries_of(&self, company: &str) -> Vec<&str> {
        self.secretaries
            .iter()
            .filter(|s| s.companies.iter().any(|c| c == company))
            .map(|s| s.username.as_str())
            .collect()
    }

    /// A company she serves, by id: 422 when no plan has it, 403 when not hers.
    pub(super) fn served_company(&self, username: &str, id: &str) -> Result<Arc<Company>, Refused> {
        let company = self.company(id).ok_or_else(|| {
            refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no such company",
                Some("company"),
            )
        })?;
        if !self.serves(username, &company.id.0) {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "not a company you serve",
                Some("company"),
            ));
        }
        Ok(company)
    }

    /// A task of a company she serves, with its attempts; 404 otherwise.
    async fn served_task(
        &self,
        username: &str,
        id: &str,
    ) -> Result<(TaskRow, Vec<store::AttemptRow>), Refused> {
        let not_found = || refused(StatusCode::NOT_FOUND, "no such task", None);
        let id: i64 = id.parse().map_err(|_| not_found())?;
        let found = read(self, move |db| store::task(db, id)).await?;
        match found {
            Some((task, attempts)) if self.serves(username, &task.company) => Ok((task, attempts)),
            _ => Err(not_found()),
        }
    }

    /// The answer carrying a task with its attempts, "overdue" as of the company's day.
    fn task_reply(
        &self,
        status: StatusCode,
        task: &TaskRow,
        attempts: &[store::AttemptRow],
    ) -> Response {
        let today = self.today_of(&task.company);
        json_response(
            status,
            &json!({ "task": task_json(task, today), "attempts": attempts }),
        )
    }
}

/// The company's local day now: what "overdue" is measured against.
fn today(company: &Company) -> jiff::civil::Date {
    company.timezone.to_datetime(jiff::Timestamp::now()).date()
}

fn invalid(e: TaskError) -> Refused {
    refused(
        StatusCode::UNPROCESSABLE_ENTITY,
        &e.to_string(),
        Some(e.field()),
    )
}

/// A task as the API shows it: the row, plus whether it is overdue today.
fn task_json(t: &TaskRow, today: jiff::civil::Date) -> serde_json::Value {
    let status = Status::parse(&t.status).unwrap_or(Status::Open);
    let due = t.due.as_deref().and_then(|d| followup::date(d).ok());
    let mut v = serde_json::to_value(t).unwrap_or_else(|_| json!({}));
    v["overdue"] = json!(followup::overdue(status, due, today));
    v["amount"] = json!(t.amount_cents.map(followup::amount_text));
    v
}

fn not_recorded() -> Refused {
    refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "the records cannot be written now",
        None,
    )
}

/// `?company=ID[&all=1]`.
fn list_query(query: Option<&str>) -> Result<(String, bool), Refused> {
    let mut company = None;
    let mut all = false;
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*k {
            "company" => company = Some(v.into_owned()),
            "all" => all = v == "1" || v == "true",
            _ => {
                return Err(refused(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unknown parameter",
                    None,
                ));
            }
        }
    }
    let company = company.filter(|c| !c.is_empty()).ok_or_else(|| {
        refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "expected ?company=ID",
            Some("company"),
        )
    })?;
    Ok((company, all))
}

/// `GET /api/tasks?company=ID[&all=1]`: the company's open tasks (all with `all=1`),
/// overdue first; without a query, the companies she serves.
async fn list(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    if query.as_deref().unwrap_or_default().is_empty() {
        // No company named: the companies she serves, for the page's selector.
        let companies: Vec<serde_json::Value> = web
            .companies_served(&me.username)
            .iter()
            .filter_map(|c| web.company(c))
            .map(|c| json!({ "id": c.id.0, "name": c.name }))
            .collect();
        return Ok(json_response(
            StatusCode::OK,
            &json!({ "companies": companies, "tasks": [] }),
        ));
    }
    let (company, all) = list_query(query.as_deref())?;
    let company = web.served_company(&me.username, &company)?;
    let id = company.id.0.clone();
    let mut tasks = read(&web, move |db| store::company_tasks(db, &id, all)).await?;
    let today = today(&company);
    let key = |t: &TaskRow| {
        (
            Status::parse(&t.status).unwrap_or(Status::Open),
            t.due.as_deref().and_then(|d| followup::date(d).ok()),
            t.id,
        )
    };
    tasks.sort_by(|a, b| followup::console_order(key(a), key(b), today));
    let list: Vec<serde_json::Value> = tasks.iter().map(|t| task_json(t, today)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "company": company.id.0, "company_name": company.name, "today": today.to_string(),
                 "secretaries": web.secretaries_of(&company.id.0), "tasks": list }),
    ))
}

/// A new task as the console sends it: the draft's fields, its company, and the call whose
/// message it follows up ("call this caller back").
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTaskForm {
    company: String,
    #[serde(default)]
    call: Option<i64>,
    kind: String,
    #[serde(default)]
    customer: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    invoice: String,
    #[serde(default)]
    due: String,
    #[serde(default)]
    assignee: String,
    #[serde(default)]
    notes: String,
}

impl NewTaskForm {
    fn draft(&self) -> Draft {
        Draft {
            kind: self.kind.clone(),
            customer: self.customer.clone(),
            phone: self.phone.clone(),
            email: self.email.clone(),
            amount: self.amount.clone(),
            invoice: self.invoice.clone(),
            due: self.due.clone(),
            assignee: self.assignee.clone(),
            notes: self.notes.clone(),
        }
    }
}

/// `POST /api/tasks`: 201 with the task.
async fn create(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let form: NewTaskForm = parse(&body)?;
    let company = web.served_company(&me.username, &form.company)?;
    let task = form
        .draft()
        .check(company.country, &web.secretaries_of(&company.id.0))
        .map_err(invalid)?;
    if let Some(call) = form.call {
        // The message must be this company's: a task cannot point at another's call.
        let owner = read(&web, move |db| store::call_owner(db, call)).await?;
        if owner.and_then(|o| o.company).as_deref() != Some(company.id.0.as_str()) {
            return Err(refused(
                StatusCode::NOT_FOUND,
                "no such message",
                Some("call"),
            ));
        }
    }
    let id = web.task_ids()?.next();
    web.store.write(store::created(
        &company.id.0,
        vec![(id, task)],
        form.call,
        &me.username,
        store::now_text(),
    ));
    if !web.on_disk().await {
        return Err(not_recorded());
    }
    let (task, _) = web.served_task(&me.username, &id.to_string()).await?;
    tracing::info!(username = %me.username, company = %company.id, task = id, "console: task created");
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "task": task_json(&task, today(&company)) }),
    ))
}

/// `POST /api/tasks/import?company=ID` with the CSV as the body: 201 with the number of
/// tasks made, or 422 with every bad row's line, and nothing imported.
async fn import_csv(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let (company, _) = list_query(query.as_deref())?;
    let company = web.served_company(&me.username, &company)?;
    let secretaries = web.secretaries_of(&company.id.0);
    let tasks = match import::parse(&body, company.country, &secretaries) {
        Ok(tasks) => tasks,
        Err(problems) => {
            tracing::info!(username = %me.username, company = %company.id, problems = problems.len(), "console: CSV import refused");
            return Ok(json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({ "error": "the file has errors: nothing was imported", "problems": problems }),
            ));
        }
    };
    let ids = web.task_ids()?;
    let tasks: Vec<(i64, followup::NewTask)> = tasks.into_iter().map(|t| (ids.next(), t)).collect();
    let count = tasks.len();
    let first = tasks.first().map(|t| t.0);
    web.store.write(store::created(
        &company.id.0,
        tasks,
        None,
        &me.username,
        store::now_text(),
    ));
    if !web.on_disk().await {
        return Err(not_recorded());
    }
    tracing::info!(username = %me.username, company = %company.id, count, "console: tasks imported");
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "imported": count, "first_id": first }),
    ))
}

/// `GET /api/tasks/{id}`: the task and its attempts.
async fn one(
    State(web): State<Arc<Web>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let (task, attempts) = web.served_task(&me.username, &id).await?;
    Ok(web.task_reply(StatusCode::OK, &task, &attempts))
}

/// A change as the console sends it: any of status, outcome, assignee ("" for anyone).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeForm {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    assignee: Option<String>,
}

/// `POST /api/tasks/{id}`: changes its status, outcome or assignee; 200 with the task.
async fn change(
    State(web): State<Arc<Web>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let form: ChangeForm = parse(&body)?;
    let (task, _) = web.served_task(&me.username, &id).await?;
    let status = form
        .status
        .as_deref()
        .map(|s| Status::parse(s).ok_or(TaskError::Status))
        .transpose()
        .map_err(invalid)?;
    let outcome = form
        .outcome
        .as_deref()
        .map(|o| followup::notes(o, "outcome"))
        .transpose()
        .map_err(invalid)?;
    let secretaries = web.secretaries_of(&task.company);
    let assignee = match form.assignee.as_deref().map(str::trim) {
        None => None,
        Some("") => Some(None),
        Some(name) => match secretaries.iter().find(|s| **s == name) {
            Some(s) => Some(Some(s.to_string())),
            None => return Err(invalid(TaskError::Assignee)),
        },
    };
    let change = TaskChange {
        status,
        outcome,
        assignee,
    };
    if change == TaskChange::default() {
        return Err(refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "nothing to change",
            None,
        ));
    }
    web.store.write(store::Record::TaskChanged {
        id: task.id,
        change,
        by: me.username.clone(),
        at: store::now_text(),
    });
    if !web.on_disk().await {
        return Err(not_recorded());
    }
    let (task, attempts) = web.served_task(&me.username, &id).await?;
    tracing::info!(username = %me.username, task = task.id, status = %task.status, "console: task changed");
    Ok(web.task_reply(StatusCode::OK, &task, &attempts))
}

/// An attempt as the console sends it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttemptForm {
    result: String,
    #[serde(default)]
    note: String,
}

/// `POST /api/tasks/{id}/attempts`: logs an attempt (an open task is now in progress);
/// 201 with the task and its attempts.
async fn add_attempt(
    State(web): State<Arc<Web>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let form: AttemptForm = parse(&body)?;
    let (task, _) = web.served_task(&me.username, &id).await?;
    let result = AttemptResult::parse(form.result.trim())
        .ok_or(TaskError::Result)
        .map_err(invalid)?;
    let note = followup::notes(&form.note, "note").map_err(invalid)?;
    web.store.write(store::attempt(
        task.id,
        result,
        note,
        None,
        &me.username,
        store::now_text(),
    ));
    if !web.on_disk().await {
        return Err(not_recorded());
    }
    let (task, attempts) = web.served_task(&me.username, &id).await?;
    Ok(web.task_reply(StatusCode::CREATED, &task, &attempts))
}

/// What "call" may name: the task's number (the only one it may dial), or nothing.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CallForm {
    #[serde(default)]
    number: Option<String>,
}

/// `POST /api/tasks/{id}/call`: rings her own phones (SIP or browser), then, when she
/// answers, dials the task's customer through the trunk presenting the company's
/// `caller_id`. 202 with the call's row; 403 for a number that is not the task's, 409 when
/// the company has no `caller_id`, the task is finished, or she is not free with a phone
/// on; 503 without a trunk. Nothing else makes the server dial out.
async fn call(
    State(web): State<Arc<Web>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let form: CallForm = if body.is_empty() {
        CallForm::default()
    } else {
        parse(&body)?
    };
    let (task, _) = web.served_task(&me.username, &id).await?;
    let company = web.served_company(&me.username, &task.company)?;
    let conflict = |message: &str| refused(StatusCode::CONFLICT, message, None);
    let Some(caller_id) = company.caller_id.clone() else {
        return Err(conflict(
            "the company's plan has no caller_id: no call can be placed for it",
        ));
    };
    let number = task
        .phone
        .as_deref()
        .and_then(crate::number::E164::parse)
        .ok_or_else(|| conflict("the task has no number to call"))?;
    if let Some(asked) = form.number.as_deref() {
        let asked = followup::phone(asked, company.country).map_err(invalid)?;
        if asked != number {
            tracing::warn!(username = %me.username, task = task.id, "console: call to a number not in the task refused");
            return Err(refused(
                StatusCode::FORBIDDEN,
                "only the task's number can be called",
                Some("number"),
            ));
        }
    }
    if !Status::parse(&task.status).is_some_and(Status::is_open) {
        return Err(conflict("the task is finished"));
    }
    let Some(trunk) = web.calls.trunk_route() else {
        return Err(refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "no trunk is configured to call numbers",
            None,
        ));
    };
    let row = web.calls.ids.next();
    let phones = web
        .desk
        .claim(&me.username, row, crate::clock::unix_ms())
        .ok_or_else(|| {
            conflict(
                "you are not available, or no phone of yours is on (registered or in the browser)",
            )
        })?;
    tracing::info!(username = %me.username, company = %company.id, task = task.id, call = row, "console: calling out for a task");
    crate::call::callout::start(
        Arc::clone(&web.calls),
        crate::call::callout::Plan {
            row,
            task: task.id,
            company: Arc::clone(&company),
            secretary: me.username.clone(),
            phones,
            number,
            customer: task.customer.clone(),
            caller_id,
            trunk,
        },
    );
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({ "call": row, "task": task.id }),
    ))
}
