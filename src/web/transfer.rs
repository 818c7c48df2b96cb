//! The card's transfer button: a secretary puts the caller she talks to through to one of
//! the company's executives. The call's own task decides (the same allow-list and
//! screening as her REFER, `OutboundMachine::on_console_transfer`); this file only checks
//! who asks, passes the request on by the call's row id, and says on the card how the
//! transfer goes, read from the call's timeline.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use super::*;
use crate::call::control::ControlError;
use crate::call::outbound::machine::Roster as _;
use crate::call::outbound::machine::TransferRefused;
use crate::call::outbound::machine::reachable;
use crate::dialplan::{Executive, ExecutiveId};
use crate::store;

pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new().route("/api/calls/{call}/transfer", post(transfer))
}

/// What the button sends.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferForm {
    executive: String,
}

/// The longest executive id taken (plans' ids are short words).
const MAX_EXECUTIVE: usize = 64;

/// Starts the transfer of the call she is on: 200 when the executive's phones ring (the
/// card then says how it goes), 403 not her call, 409 no longer on it (or a transfer
/// already under way), 422 not an executive of the company or none reachable now, 503
/// when the call cannot answer.
async fn transfer(
    State(web): State<Arc<Web>>,
    axum::extract::Path(call): axum::extract::Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refused> {
    let me = logged_in(&web, &headers)?;
    let TransferForm { executive } = parse(&body)?;
    let executive = executive.trim();
    if executive.is_empty()
        || executive.chars().count() > MAX_EXECUTIVE
        || executive.chars().any(char::is_control)
    {
        return Err(refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "an executive's id: 1 to 64 characters, on one line",
            Some("executive"),
        ));
    }
    web.on_call(&me.username, call)?;
    let asked = web
        .calls
        .controls
        .transfer(call, &me.username, executive)
        .await;
    if let Err(e) = asked {
        tracing::info!(username = %me.username, call, error = %e, "console: transfer not started");
        return Err(refusal(e));
    }
    tracing::info!(username = %me.username, call, executive = %executive, "console: transfer started");
    Ok(json_response(
        StatusCode::OK,
        &json!({ "call": call, "executive": executive, "state": "ringing" }),
    ))
}

/// Each refusal's status, in one place.
fn refusal(e: ControlError) -> Refused {
    let message = e.to_string();
    match e {
        ControlError::Refused(
            TransferRefused::UnknownExecutive
            | TransferRefused::Unreachable
            | TransferRefused::DoNotDisturb,
        ) => refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            &message,
            Some("executive"),
        ),
        ControlError::Refused(TransferRefused::NotHers) => {
            refused(StatusCode::FORBIDDEN, &message, None)
        }
        ControlError::Refused(
            TransferRefused::NotConnected
            | TransferRefused::InProgress
            | TransferRefused::PlacedCall,
        ) => refused(StatusCode::CONFLICT, &message, None),
        ControlError::Gone | ControlError::Busy => {
            refused(StatusCode::SERVICE_UNAVAILABLE, &message, None)
        }
    }
}

impl Web {
    /// Whether the desk has her on this call now; else 409 when it was hers (she is still
    /// ringing, writing it up, or took it earlier), 404 when there is no such call, 403.
    fn on_call(&self, me: &str, call: i64) -> Result<(), Refused> {
        let seat = self
            .desk
            .view(crate::clock::unix_ms())
            .into_iter()
            .find(|s| s.username == me)
            .map(|s| s.activity);
        if let Some(Activity::OnCall { call: on }) = seat
            && on == call
        {
            return Ok(());
        }
        let owner = store::call_owner(&self.db, call)
            .ok()
            .flatten()
            .ok_or_else(|| refused(StatusCode::NOT_FOUND, "no such call", None))?;
        let hers =
            seat.and_then(Activity::call) == Some(call) || owner.handled_by.as_deref() == Some(me);
        Err(if hers {
            refused(StatusCode::CONFLICT, "you are not on this call now", None)
        } else {
            refused(StatusCode::FORBIDDEN, "not a call of yours", None)
        })
    }

    /// Whether the card offers the button for this executive: they have not asked not to
    /// be disturbed and one of their reach entries rings somewhere now (the call decides
    /// again when she presses it).
    pub(super) fn transferable(&self, id: &ExecutiveId, executive: &Executive) -> bool {
        let now_ms = crate::clock::unix_ms();
        self.calls.do_not_disturb(&id.0, now_ms).is_none()
            && reachable(
                self.calls.as_ref(),
                self.calls.trunk_route().as_ref(),
                executive,
                now_ms,
            )
    }

    /// How the last transfer a secretary asked for on this call goes, for its card.
    pub(super) fn transfer_on_card(&self, call: i64) -> Option<serde_json::Value> {
        match store::secretary_transfer(&self.db, call) {
            Ok(events) => transfer_state(&events),
            Err(e) => {
                tracing::warn!(error = %e, call, "console: no transfer state for this call");
                None
            }
        }
    }
}

/// A transfer's state from its timeline (its `transfer` event first): `ringing` while
/// the executive's phones are called, `screening` while they hear the announcement,
/// `connected`, `refused` (the screened executive said no) or `failed` (nobody answered).
fn transfer_state(events: &[(String, String)]) -> Option<serde_json::Value> {
    let ((kind, data), rest) = events.split_first()?;
    if kind != "transfer" {
        return None;
    }
    let asked: serde_json::Value = serde_json::from_str(data).ok()?;
    let screening = asked["screening"].as_bool().unwrap_or(false);
    let mut state = "ringing";
    for (kind, data) in rest {
        state = match kind.as_str() {
            "executive-answered" if screening => "screening",
            "transferred" => "connected",
            "transfer-failed" => {
                let why: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
                if why["why"] == "refused" {
                    "refused"
                } else {
                    "failed"
                }
            }
            _ => state,
        };
    }
    Some(json!({ "to": asked["to"], "by": asked["by"], "screening": screening, "state": state }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(events: &[(&str, &str)]) -> Vec<(String, String)> {
        events
            .iter()
            .map(|(k, d)| (k.to_string(), d.to_string()))
            .collect()
    }

    const ASKED: (&str, &str) = (
        "transfer",
        r#"{"by":"alice","screening":true,"to":"marie"}"#,
    );

    #[test]
    fn the_card_follows_a_transfer_from_ringing_to_its_end() {
        let state = |events: &[(&str, &str)]| {
            transfer_state(&timeline(events)).map(|s| s["state"].as_str().unwrap_or("").to_string())
        };
        assert_eq!(state(&[]), None, "no transfer asked");
        assert_eq!(
            state(&[("queued", "{}")]),
            None,
            "not a transfer's timeline"
        );
        let offered = ("executive-offered", r#"{"to":"marie"}"#);
        let answered = ("executive-answered", r#"{"to":"marie"}"#);
        assert_eq!(state(&[ASKED, offered]).as_deref(), Some("ringing"));
        assert_eq!(
            state(&[ASKED, offered, answered]).as_deref(),
            Some("screening")
        );
        let connected = ("transferred", r#"{"by":"alice","to":"marie"}"#);
        assert_eq!(
            state(&[ASKED, offered, answered, connected]).as_deref(),
            Some("connected")
        );
        let refused = ("transfer-failed", r#"{"to":"marie","why":"refused"}"#);
        assert_eq!(
            state(&[ASKED, offered, answered, refused]).as_deref(),
            Some("refused")
        );
        let unanswered = ("transfer-failed", r#"{"to":"marie","why":"unanswered"}"#);
        assert_eq!(
            state(&[ASKED, offered, unanswered]).as_deref(),
            Some("failed")
        );
        let card = transfer_state(&timeline(&[ASKED])).unwrap_or_default();
        assert_eq!(card["to"], "marie");
        assert_eq!(card["by"], "alice");
    }
}
