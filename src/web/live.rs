//! The live board over one WebSocket per page: the board is sent at once, then again
//! whenever the desk or the records change (at once after a quiet spell or when her own
//! seat changes, else at most one message per 50 ms while changes keep coming). The page's
//! browser phone speaks on the same socket and lives as long as it.
//!
//! The upgrade is refused unless the session is live and, when the browser names an
//! `Origin` (browsers always do on a WebSocket), it is this server: a page on another site
//! cannot open the console's socket with the secretary's cookie (cross-site WebSocket
//! hijacking). What the page sends is bounded and parsed into [`FromPage`]: the browser
//! phone's signalling (its offer, answers, hang-ups, hold), which only reaches a call
//! through a ring of her own phone.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::board::CardCache;
use super::*;
use crate::store::Committed;

/// The largest message the page may send (a browser phone's offer is the largest).
const MAX_MESSAGE: usize = crate::media::webrtc::MAX_OFFER + 1024;

/// How often the page's session is checked while nothing changes (a logout or an expiry
/// closes the socket within this).
const SESSION_CHECK: Duration = Duration::from_secs(5);

/// At most one board per this: changes arriving closer together are shown in one message.
const BURST: Duration = Duration::from_millis(50);

/// The browser phone's part of the page (a script of its own).
const PHONE_SCRIPT: &str = include_str!("phone.js");

pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/api/ws", get(upgrade))
        .route("/phone.js", get(phone_script))
}

async fn phone_script() -> Response {
    security_headers("text/javascript; charset=utf-8", PHONE_SCRIPT)
}

async fn upgrade(
    State(web): State<Arc<Web>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, Refused> {
    if !same_origin(&headers) {
        tracing::warn!(origin = ?headers.get(axum::http::header::ORIGIN), "console: WebSocket from another site refused");
        return Err(refused(
            StatusCode::FORBIDDEN,
            "WebSocket from another site refused",
            None,
        ));
    }
    let me = logged_in(&web, &headers)?;
    Ok(ws
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| push_board(web, me.username, socket))
        .into_response())
}

/// Sends the board, then again at each change, until the page goes or the session ends.
async fn push_board(web: Arc<Web>, me: String, mut socket: WebSocket) {
    // Her browser phone, while this page has it on: it goes off with the page.
    let mut phone: Option<crate::media::webrtc::PhoneGuard> = None;
    let (notes_tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
    let mut desk = web.desk.subscribe();
    let mut records = web.store.subscribe();
    let mut check = tokio::time::interval(SESSION_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut card = CardCache::default();
    let mut changed = true;
    let mut last_sent = tokio::time::Instant::now();
    loop {
        if web.who_is_live(&me).is_none() {
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
        if changed {
            let board = web.board_with(&me, &mut card);
            let text = json!({ "type": "board", "board": board }).to_string();
            if socket.send(Message::Text(text.into())).await.is_err() {
                return;
            }
            last_sent = tokio::time::Instant::now();
            changed = false;
        }
        let mut hers = false;
        let mut notice = None;
        tokio::select! {
            heard = desk.recv() => {
                hers = matches!(&heard, Ok(change) if change.username == me);
                changed = still_open(heard);
            }
            heard = records.recv() => match heard {
                // An executive confirmed or cancelled: the secretary who booked it is told.
                Ok(Committed::Appointment { uid, by }) => {
                    notice = by.starts_with("executive:").then_some(uid);
                }
                // Most records are about other calls: her board does not change.
                Ok(committed) if !concerns(&committed, card.call()) => continue,
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    card.forget();
                    changed = true;
                }
                Err(RecvError::Closed) => changed = false,
            },
            _ = check.tick() => {
                // Executives' hours and the like move with the clock.
                card.forget();
                continue;
            }
            from_page = socket.recv() => {
                if !web.on_page(&me, from_page, &mut socket, &mut phone, &notes_tx).await {
                    return;
                }
                continue;
            }
            Some(note) = notes.recv() => {
                if !send_note(&mut socket, &note).await {
                    return;
                }
                continue;
            }
        }
        if let Some(uid) = notice {
            if !web.tell_booker(&me, &uid, &mut socket).await {
                return;
            }
            continue;
        }
        if !changed {
            // The server is stopping (its channels closed).
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
        // Changes closer together than BURST are shown together, at most one message per
        // BURST; but a change of her own seat (a call ringing her: the card must be there
        // with the ring) goes out at once, and so does the first after a quiet spell.
        // Her phone's signalling does not wait for that board: an answer or a hang-up
        // from the page, a ring's end from the server, are carried meanwhile.
        if !hers {
            let until = last_sent + BURST;
            loop {
                // Hers first: a message that came before the window's end is not held.
                tokio::select! {
                    biased;
                    from_page = socket.recv() => {
                        if !web.on_page(&me, from_page, &mut socket, &mut phone, &notes_tx).await {
                            return;
                        }
                    }
                    Some(note) = notes.recv() => {
                        if !send_note(&mut socket, &note).await {
                            return;
                        }
                    }
                    _ = tokio::time::sleep_until(until) => break,
                    _ = her_own_change(&mut desk, &me) => break,
                }
            }
        }
        for uid in drain(&mut desk, &mut records, &mut card) {
            if !web.tell_booker(&me, &uid, &mut socket).await {
                return;
            }
        }
    }
}

/// Sends a note of her phone to the page; false when the page is gone.
async fn send_note(socket: &mut WebSocket, note: &crate::media::webrtc::PhoneNote) -> bool {
    let text = phone_note(note).to_string();
    socket.send(Message::Text(text.into())).await.is_ok()
}

impl Web {
    /// What the page sent, carried out and answered; false when the page is gone.
    async fn on_page(
        &self,
        me: &str,
        from_page: Option<Result<Message, axum::Error>>,
        socket: &mut WebSocket,
        phone: &mut Option<crate::media::webrtc::PhoneGuard>,
        notes: &tokio::sync::mpsc::UnboundedSender<crate::media::webrtc::PhoneNote>,
    ) -> bool {
        match from_page {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => false,
            Some(Ok(Message::Text(text))) => match self.on_page_message(me, &text, phone, notes) {
                Some(reply) => socket
                    .send(Message::Text(reply.to_string().into()))
                    .await
                    .is_ok(),
                None => true,
            },
            // Pings are answered by the library.
            Some(Ok(_)) => true,
        }
    }

    /// Sends `me` the appointment's new state when she booked it (an executive just
    /// confirmed or cancelled it); false when the page is gone.
    async fn tell_booker(&self, me: &str, uid: &str, socket: &mut WebSocket) -> bool {
        let db = self.db.clone();
        let u = uid.to_string();
        let row = tokio::task::spawn_blocking(move || crate::store::agenda::appointment(&db, &u))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        let Some(row) = row.filter(|r| r.booked_by == me) else {
            return true;
        };
        let tz = self
            .company(&row.company)
            .map_or(jiff::tz::TimeZone::UTC, |c| c.timezone.clone());
        let text = json!({ "type": "appointment", "appointment": super::agenda::appointment_json(&row, &tz) }).to_string();
        socket.send(Message::Text(text.into())).await.is_ok()
    }
}

/// Returns at the next change of `me`'s seat (or when the desk's channel fails: the board
/// is rebuilt whole anyway); other changes are taken on the way.
async fn her_own_change(
    desk: &mut tokio::sync::broadcast::Receiver<crate::desk::DeskChange>,
    me: &str,
) {
    loop {
        match desk.recv().await {
            Ok(change) if change.username != me => continue,
            _ => return,
        }
    }
}

/// Takes what arrived during the wait (it is all shown by the next board), forgetting the
/// card if any of it was about the card's call.
/// Returns the appointments an executive changed meanwhile (their bookers are told).
fn drain(
    desk: &mut tokio::sync::broadcast::Receiver<crate::desk::DeskChange>,
    records: &mut tokio::sync::broadcast::Receiver<Committed>,
    card: &mut CardCache,
) -> Vec<String> {
    use tokio::sync::broadcast::error::TryRecvError;
    while desk.try_recv().is_ok() {}
    let mut notices = Vec::new();
    loop {
        match records.try_recv() {
            Ok(Committed::Appointment { uid, by }) if by.starts_with("executive:") => {
                notices.push(uid);
            }
            Ok(committed) if concerns(&committed, card.call()) => card.forget(),
            Ok(_) => {}
            Err(TryRecvError::Lagged(_)) => card.forget(),
            Err(TryRecvError::Empty | TryRecvError::Closed) => return notices,
        }
    }
}

/// Whether a committed record changes a board whose card is about `call`: a record of
/// that call, a company's line (every board shows the lines of her companies), or an
/// executive's do-not-disturb while she has a card (it shows the company's executives).
fn concerns(committed: &Committed, call: Option<i64>) -> bool {
    match committed {
        Committed::CallStarted { id, .. }
        | Committed::CallAnswered { id }
        | Committed::Handled { id, .. }
        | Committed::Event { id, .. }
        | Committed::MessageChanged { id }
        | Committed::CallEnded { id, .. } => Some(*id) == call,
        Committed::LineChanged { .. } => true,
        Committed::DndChanged { .. } => call.is_some(),
        // Told apart in `push_board` (a notice to the secretary who booked it).
        Committed::Appointment { .. } => false,
    }
}

/// Whether a broadcast still speaks: lagging is fine (the board is rebuilt whole), a
/// closed channel is not.
fn still_open<T>(heard: Result<T, RecvError>) -> bool {
    !matches!(heard, Err(RecvError::Closed))
}

/// What the page may say on its socket: the browser phone's signalling. Anything else is
/// refused with an `error` message naming why.
#[derive(Debug, serde::Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
enum FromPage {
    /// Turn her browser phone on with this offer (SDP).
    PhoneOn { sdp: String },
    /// Turn it off.
    PhoneOff,
    /// Take the call ringing as `ring`.
    Answer { ring: u64 },
    /// Refuse it.
    Decline { ring: u64 },
    /// End the call she took.
    HangUp { ring: u64 },
    /// Put the caller on hold (`on`) or back.
    Hold { ring: u64, on: bool },
}

/// A phone note as the page reads it.
fn phone_note(note: &crate::media::webrtc::PhoneNote) -> serde_json::Value {
    use crate::media::webrtc::PhoneNote;
    match note {
        PhoneNote::Connected => json!({ "type": "phone", "state": "connected" }),
        PhoneNote::Lost => json!({ "type": "phone", "state": "off" }),
        PhoneNote::Ring {
            ring,
            call,
            caller,
            outgoing,
        } => {
            json!({ "type": "ring", "ring": ring, "call": call, "caller": caller, "outgoing": outgoing })
        }
        PhoneNote::Cancelled { ring } => json!({ "type": "ring-cancelled", "ring": ring }),
        PhoneNote::HungUp { ring } => json!({ "type": "hung-up", "ring": ring }),
    }
}

impl Web {
    /// One message from her page: the browser phone's signalling, checked and carried
    /// out; the reply to send back, if any.
    fn on_page_message(
        &self,
        me: &str,
        text: &str,
        phone: &mut Option<crate::media::webrtc::PhoneGuard>,
        notes: &tokio::sync::mpsc::UnboundedSender<crate::media::webrtc::PhoneNote>,
    ) -> Option<serde_json::Value> {
        use crate::call::control::BrowserAction;
        let message: FromPage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(secretary = me, error = %e, "console: message not understood");
                return Some(json!({ "type": "error", "error": "message not understood" }));
            }
        };
        let (ring, action) = match message {
            FromPage::PhoneOn { sdp } => {
                // A new offer replaces the phone this page had.
                *phone = None;
                return Some(match self.calls.phones.start(me, &sdp, notes.clone()) {
                    Ok((guard, answer)) => {
                        *phone = Some(guard);
                        json!({ "type": "phone-answer", "sdp": answer })
                    }
                    Err(e) => {
                        tracing::warn!(secretary = me, error = %e, "browser phone refused");
                        json!({ "type": "phone-error", "error": e.to_string() })
                    }
                });
            }
            FromPage::PhoneOff => {
                *phone = None;
                return Some(json!({ "type": "phone", "state": "off" }));
            }
            FromPage::Answer { ring } => (ring, BrowserAction::Answer),
            FromPage::Decline { ring } => (ring, BrowserAction::Decline),
            FromPage::HangUp { ring } => (ring, BrowserAction::HangUp),
            FromPage::Hold { ring, on } => (ring, BrowserAction::Hold(on)),
        };
        // Only a ring of her own phone reaches a call, and only while this page has it.
        phone.as_ref()?;
        let Some(call) = self.calls.phones.call_of(me, ring) else {
            return Some(json!({ "type": "hung-up", "ring": ring }));
        };
        if self.calls.controls.browser(call, me, ring, action).is_err() {
            return Some(json!({ "type": "hung-up", "ring": ring }));
        }
        None
    }

    /// Whether `username` still has a live session (a live socket ends after logout).
    fn who_is_live(&self, username: &str) -> Option<()> {
        self.sessions().any_live(username, now_s()).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_tells_the_page_whether_it_is_her_own_call_out() {
        use crate::media::webrtc::PhoneNote;
        let ring = |outgoing| PhoneNote::Ring {
            ring: 3,
            call: 9,
            caller: "Mme <b>Lefèvre</b> pour ACME".into(),
            outgoing,
        };
        let out = phone_note(&ring(true));
        assert_eq!(out["type"], "ring");
        assert_eq!(out["outgoing"], true);
        // Text stays data: the page sets it with textContent.
        assert_eq!(out["caller"], "Mme <b>Lefèvre</b> pour ACME");
        assert_eq!(phone_note(&ring(false))["outgoing"], false);
    }

    #[test]
    fn only_records_about_the_cards_call_or_a_line_change_a_board() {
        let ended = |id| Committed::CallEnded {
            id,
            outcome: crate::store::Outcome::Completed,
        };
        assert!(concerns(&ended(7), Some(7)));
        assert!(!concerns(&ended(8), Some(7)));
        assert!(!concerns(&ended(8), None));
        let line = Committed::LineChanged {
            company: "acme".into(),
        };
        assert!(concerns(&line, None));
        let dnd = Committed::DndChanged {
            executive: "marie".into(),
        };
        assert!(concerns(&dnd, Some(7)), "the card lists executives");
        assert!(!concerns(&dnd, None), "no card, no executives shown");
    }
}
