//! The message a secretary writes for a call.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use serde::Deserialize;

use super::*;
use crate::store::{self, Record, WrittenMessage};

pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new().route("/api/messages/{call}", post(write_message))
}

/// A message as the console's form sends it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageForm {
    caller_name: String,
    #[serde(default)]
    caller_company: String,
    callback: String,
    about: String,
    #[serde(default)]
    for_executive: Option<String>,
    category: String,
    #[serde(default)]
    fields: std::collections::BTreeMap<String, String>,
}

/// The longest text a message field takes.
const MAX_TEXT: usize = 2_000;

/// Checks a form against the company's plan: every text bounded and on the lines it is
/// meant to have, the executive one of the company's, the category known, the company's
/// required fields present and no field it does not ask for.
fn check_message(form: MessageForm, company: &Company) -> Result<WrittenMessage, Refused> {
    let bad = |field: &str, message: &str| {
        refused(StatusCode::UNPROCESSABLE_ENTITY, message, Some(field))
    };
    let line = |field: &str, value: &str, max: usize| -> Result<String, Refused> {
        let v = value.trim();
        if v.chars().count() > max || v.chars().any(char::is_control) {
            return Err(bad(
                field,
                &format!("at most {max} characters, on one line"),
            ));
        }
        Ok(v.to_string())
    };
    let caller_name = line("caller_name", &form.caller_name, 120)?;
    let caller_company = line("caller_company", &form.caller_company, 120)?;
    let callback = line("callback", &form.callback, 32)?;
    if !callback
        .chars()
        .all(|c| c.is_ascii_digit() || " +().-".contains(c))
    {
        return Err(bad("callback", "a phone number: digits, spaces, + ( ) . -"));
    }
    let about = form.about.trim().to_string();
    if about.is_empty() || about.chars().count() > MAX_TEXT {
        return Err(bad("about", "what the call is about: 1 to 2000 characters"));
    }
    let category = Category::parse(&form.category)
        .ok_or_else(|| bad("category", "urgent, normal, low or spam"))?;
    let for_executive = match form.for_executive.filter(|e| !e.is_empty()) {
        Some(id) if company.executives.keys().any(|k| k.0 == id) => Some(id),
        Some(_) => return Err(bad("for_executive", "one of the company's executives")),
        None => None,
    };
    let mut fields = std::collections::BTreeMap::new();
    for (name, value) in form.fields {
        let Some(field) = company.card.fields.iter().find(|f| f.name == name) else {
            return Err(bad(
                &format!("fields.{name}"),
                "not a field this company asks for",
            ));
        };
        let value = line(&format!("fields.{name}"), &value, 500)?;
        if !value.is_empty() {
            fields.insert(field.name.clone(), value);
        }
    }
    if let Some(missing) = company
        .card
        .fields
        .iter()
        .find(|f| f.required && !fields.contains_key(&f.name))
    {
        return Err(bad(
            &format!("fields.{}", missing.name),
            "required by this company",
        ));
    }
    Ok(WrittenMessage {
        caller_name,
        caller_company,
        callback,
        about,
        for_executive,
        category: category.as_str().to_string(),
        fields,
    })
}

/// Saves the message of a call she is on (or ringing, or writing up), or of any call of a
/// company she serves (an edit later): the call's own `messages` row and the change kept
/// with who and when, a `message-written` event, and the end of her wrap-up for that call.
async fn write_message(
    State(web): State<Arc<Web>>,
    axum::extract::Path(call): axum::extract::Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let form: MessageForm = parse(&body)?;
    let now_ms = crate::clock::unix_ms();
    let current = web
        .desk
        .view(now_ms)
        .into_iter()
        .find(|s| s.username == me.username)
        .and_then(|s| s.activity.call());
    // One read: the call's company, and who took it.
    let owner = store::call_owner(&web.db, call)
        .ok()
        .flatten()
        .ok_or_else(|| refused(StatusCode::NOT_FOUND, "no such call", None))?;
    // Besides her own call, any message of a company she serves: a secretariat shares its
    // messages, and whoever calls back completes what a colleague wrote (every save is
    // kept with who and when, in `message_changes`).
    let took_it = owner.handled_by.as_deref() == Some(me.username.as_str());
    let serves = owner
        .company
        .as_ref()
        .is_some_and(|c| web.companies_served(&me.username).contains(c));
    if current != Some(call) && !took_it && !serves {
        return Err(refused(StatusCode::FORBIDDEN, "not a call of yours", None));
    }
    let company = owner
        .company
        .and_then(|id| web.company(&id))
        .ok_or_else(|| refused(StatusCode::NOT_FOUND, "no such call", None))?;
    let message = check_message(form, &company)?;
    let at = store::now_text();
    web.store.write(Record::Event {
        id: call,
        event: CallEvent::MessageWritten {
            by: me.username.clone(),
            category: message.category.clone(),
        },
        at: at.clone(),
    });
    web.store.write(Record::MessageWritten {
        id: call,
        message: Box::new(message),
        by: me.username.clone(),
        at,
        deliver: Some(crate::delivery::Rules {
            company: Arc::clone(&company),
            webhooks: Arc::clone(&web.calls.webhooks),
        }),
    });
    let freed = web.desk.end_wrap_up(&me.username, call, now_ms);
    // Answered once on disk: the inbox read right after shows the change.
    web.on_disk().await;
    tracing::info!(username = %me.username, call, wrap_up_ended = freed, "console: message written");
    Ok(json_response(StatusCode::OK, &web.board(&me.username)))
}
