//! Logging in with the SIP password, and out.

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
use crate::store::{self, Record};

pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    username: String,
    password: String,
}

/// Logs a secretary in. An unknown user, an executive and a wrong password get the same
/// answer; an address that keeps failing waits longer for each answer.
async fn login(
    State(web): State<Arc<Web>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    body: Bytes,
) -> Result<Response, Refused> {
    let login: Login = parse(&body)?;
    let ip: IpAddr = peer.ip();
    let delay = web.throttle().delay_ms(ip, now_s());
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let secretary = web
        .secretaries
        .iter()
        .find(|s| s.username == login.username)
        .filter(|s| session::password_matches(s, &web.realm, &login.password));
    let Some(secretary) = secretary else {
        let failures = web.throttle().failed(ip, now_s());
        tracing::warn!(source = %ip, username = %crate::terminal::safe(&login.username), failures, "console: login refused");
        return Err(refused(
            StatusCode::UNAUTHORIZED,
            "wrong username or password",
            None,
        ));
    };
    web.throttle().succeeded(ip);
    let Some(id) = session::new_id() else {
        return Err(refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "no randomness for a session",
            None,
        ));
    };
    let expires_at = now_s() + web.session_seconds;
    let hash = session::hash_id(&id);
    web.sessions().insert(
        hash.clone(),
        Session {
            username: secretary.username.clone(),
            expires_at,
        },
    );
    web.store.write(Record::SessionOpened {
        hash,
        username: secretary.username.clone(),
        expires_at,
        at: store::now_text(),
    });
    tracing::info!(username = %secretary.username, source = %ip, "console: logged in");
    let cookie = session::set_cookie(&id, web.session_seconds as u64, web.secure);
    let mut response = json_response(
        StatusCode::OK,
        &json!({ "username": secretary.username, "name": secretary.name }),
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

async fn logout(State(web): State<Arc<Web>>, headers: HeaderMap) -> Response {
    let id = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(session::from_cookie_header);
    if let Some(hash) = id.and_then(|id| web.sessions().remove(id)) {
        web.store.write(Record::SessionClosed { hash });
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&session::clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
