//! The live board over one WebSocket per page: the board is sent at once, then again
//! whenever the desk or the records change (a burst of changes gives one message). The
//! page's browser phone will speak on the same socket.
//!
//! The upgrade is refused unless the session is live and, when the browser names an
//! `Origin` (browsers always do on a WebSocket), it is this server: a page on another site
//! cannot open the console's socket with the secretary's cookie (cross-site WebSocket
//! hijacking). What the page sends is bounded and, today, only answered to keep it alive.

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

use super::*;

/// The largest message the page may send.
const MAX_MESSAGE: usize = 4 * 1024;

/// How often the page's session is checked while nothing changes (a logout or an expiry
/// closes the socket within this).
const SESSION_CHECK: Duration = Duration::from_secs(5);

/// Changes arriving within this of each other are shown in one message.
const BURST: Duration = Duration::from_millis(50);

pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new().route("/api/ws", get(upgrade))
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
    let mut desk = web.desk.subscribe();
    let mut records = web.store.subscribe();
    let mut check = tokio::time::interval(SESSION_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut changed = true;
    loop {
        if web.who_is_live(&me).is_none() {
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
        if changed {
            let text = json!({ "type": "board", "board": web.board(&me) }).to_string();
            if socket.send(Message::Text(text.into())).await.is_err() {
                return;
            }
            changed = false;
        }
        tokio::select! {
            heard = desk.recv() => changed = still_open(heard),
            heard = records.recv() => changed = still_open(heard),
            _ = check.tick() => continue,
            from_page = socket.recv() => match from_page {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                // Pings are answered by the library; the page says nothing else yet.
                Some(Ok(_)) => continue,
            },
        }
        if !changed {
            // The server is stopping (its channels closed).
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
        // Let the rest of a burst arrive, then show it all at once.
        tokio::time::sleep(BURST).await;
        while desk.try_recv().is_ok() || records.try_recv().is_ok() {}
    }
}

/// Whether a broadcast still speaks: lagging is fine (the board is rebuilt whole), a
/// closed channel is not.
fn still_open<T>(heard: Result<T, RecvError>) -> bool {
    !matches!(heard, Err(RecvError::Closed))
}

impl Web {
    /// Whether `username` still has a live session (a live socket ends after logout).
    fn who_is_live(&self, username: &str) -> Option<()> {
        self.sessions().any_live(username, now_s()).then_some(())
    }
}
