//! Signed links for the agenda, under the server's key for the executives' links
//! ([`LinkKey`]), each kind in its own signing context so that no token of one kind
//! passes for another:
//!
//! - the **Confirm** and **Cancel** links of an e-mail (`/a/{token}`): the appointment's
//!   uid, the action and an expiry. Opening one shows the appointment; only the page's
//!   POST changes it (mail scanners open every link).
//! - the executive's **calendar feed** (`/ics/{token}`): their id and when it was made; no
//!   expiry (calendar applications poll for years), ended by revoking the executive's
//!   links (`permanence executive-links revoke`).
//!
//! Pure: the time is an argument.

use base64::Engine as _;
use jiff::Timestamp;

use crate::executive_link::{LinkError, LinkKey, MAC_LEN};

const ACTION_CONTEXT: &[u8] = b"permanence appointment link\0";
const FEED_CONTEXT: &[u8] = b"permanence agenda feed\0";
const VERSION: u8 = 1;
/// The longest token looked at (a uid is at most 64 characters).
const MAX_TOKEN: usize = 300;

/// What an appointment link does when its page is posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The executive agrees.
    Confirm,
    /// The executive calls it off.
    Cancel,
}

impl Action {
    fn byte(self) -> u8 {
        match self {
            Action::Confirm => b'c',
            Action::Cancel => b'x',
        }
    }

    fn from_byte(b: u8) -> Option<Action> {
        match b {
            b'c' => Some(Action::Confirm),
            b'x' => Some(Action::Cancel),
            _ => None,
        }
    }

    /// The word in URLs and pages.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Confirm => "confirm",
            Action::Cancel => "cancel",
        }
    }
}

/// What a valid appointment link says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionLink {
    /// The appointment's uid.
    pub uid: String,
    /// What it does.
    pub action: Action,
    /// When it was made (revoking the executive's links ends those made until then).
    pub made: Timestamp,
    /// When it stops working.
    pub expires: Timestamp,
}

/// What a valid feed link says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedLink {
    /// The executive's id.
    pub executive: String,
    /// When it was made (a revocation since ends it).
    pub made: Timestamp,
}

fn encode(context: &[u8], key: &LinkKey, mut bytes: Vec<u8>) -> String {
    let mac = key.sign_bytes(context, &bytes);
    bytes.extend_from_slice(&mac);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The signed bytes of a token, once its length and signature are right.
fn decode(context: &[u8], key: &LinkKey, token: &str, header: usize) -> Result<Vec<u8>, LinkError> {
    if token.is_empty() || token.len() > MAX_TOKEN {
        return Err(LinkError::Malformed);
    }
    let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| LinkError::Malformed)?;
    if bytes.len() <= header + MAC_LEN {
        return Err(LinkError::Malformed);
    }
    let signature = bytes.split_off(bytes.len() - MAC_LEN);
    if !key.verify_bytes(context, &bytes, &signature) {
        return Err(LinkError::Signature);
    }
    if bytes[0] != VERSION {
        return Err(LinkError::Malformed);
    }
    Ok(bytes)
}

fn number(b: &[u8]) -> Option<i64> {
    b.try_into()
        .ok()
        .map(u64::from_be_bytes)
        .and_then(|n| i64::try_from(n).ok())
}

/// The token for `action` on appointment `uid`, made at `made`, valid until `expires`.
pub fn sign_action(
    key: &LinkKey,
    uid: &str,
    action: Action,
    made: Timestamp,
    expires: Timestamp,
) -> String {
    let made = u64::try_from(made.as_millisecond()).unwrap_or(0);
    let until = u64::try_from(expires.as_second()).unwrap_or(0);
    let mut bytes = vec![VERSION, action.byte()];
    bytes.extend_from_slice(&made.to_be_bytes());
    bytes.extend_from_slice(&until.to_be_bytes());
    bytes.extend_from_slice(uid.as_bytes());
    encode(ACTION_CONTEXT, key, bytes)
}

/// What an appointment token says, if it is ours, unaltered and not expired at `now`
/// (revocation is the caller's to check, against the records).
pub fn verify_action(key: &LinkKey, token: &str, now: Timestamp) -> Result<ActionLink, LinkError> {
    let bytes = decode(ACTION_CONTEXT, key, token, 18)?;
    let action = Action::from_byte(bytes[1]).ok_or(LinkError::Malformed)?;
    let made = number(&bytes[2..10])
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .ok_or(LinkError::Malformed)?;
    let expires = number(&bytes[10..18])
        .and_then(|s| Timestamp::from_second(s).ok())
        .ok_or(LinkError::Malformed)?;
    let uid = std::str::from_utf8(&bytes[18..]).map_err(|_| LinkError::Malformed)?;
    if now >= expires {
        return Err(LinkError::Expired);
    }
    Ok(ActionLink {
        uid: uid.to_string(),
        action,
        made,
        expires,
    })
}

/// The token of `executive`'s calendar feed, made at `now`.
pub fn sign_feed(key: &LinkKey, executive: &str, now: Timestamp) -> String {
    let made = u64::try_from(now.as_millisecond()).unwrap_or(0);
    let mut bytes = vec![VERSION];
    bytes.extend_from_slice(&made.to_be_bytes());
    bytes.extend_from_slice(executive.as_bytes());
    encode(FEED_CONTEXT, key, bytes)
}

/// What a feed token says, if it is ours and unaltered (revocation is the caller's to
/// check, against the records).
pub fn verify_feed(key: &LinkKey, token: &str) -> Result<FeedLink, LinkError> {
    let bytes = decode(FEED_CONTEXT, key, token, 9)?;
    let made = number(&bytes[1..9])
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .ok_or(LinkError::Malformed)?;
    let executive = std::str::from_utf8(&bytes[9..]).map_err(|_| LinkError::Malformed)?;
    Ok(FeedLink {
        executive: executive.to_string(),
        made,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> LinkKey {
        LinkKey::from_bytes([b; 32])
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("valid time")
    }

    #[test]
    fn an_action_link_verifies_until_it_expires() {
        let t = sign_action(&key(1), "a1b2", Action::Cancel, at(10), at(2_000));
        let link = verify_action(&key(1), &t, at(1_000)).expect("valid");
        assert_eq!(link.uid, "a1b2");
        assert_eq!(link.action, Action::Cancel);
        assert_eq!(link.made, at(10));
        assert_eq!(
            verify_action(&key(1), &t, at(2_000)),
            Err(LinkError::Expired)
        );
    }

    #[test]
    fn tampered_foreign_and_cross_kind_tokens_are_refused() {
        let t = sign_action(&key(1), "a1b2", Action::Confirm, at(1), at(2_000));
        assert_eq!(verify_action(&key(2), &t, at(1)), Err(LinkError::Signature));
        // Flip the action byte: the signature no longer matches.
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&t)
            .expect("ours");
        bytes[1] = b'x';
        let altered = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(
            verify_action(&key(1), &altered, at(1)),
            Err(LinkError::Signature)
        );
        assert_eq!(
            verify_action(&key(1), "not base64!", at(1)),
            Err(LinkError::Malformed)
        );
        assert_eq!(verify_action(&key(1), "", at(1)), Err(LinkError::Malformed));
        // A feed token is not an action token, nor an executive page's token.
        let feed = sign_feed(&key(1), "marie", at(5));
        assert!(verify_action(&key(1), &feed, at(1)).is_err());
        let page = crate::executive_link::sign(&key(1), "marie", at(5), at(9_000));
        assert!(verify_feed(&key(1), &page).is_err());
        assert!(verify_action(&key(1), &page, at(1)).is_err());
    }

    #[test]
    fn a_feed_link_names_its_executive_and_when_it_was_made() {
        let t = sign_feed(&key(3), "marie", at(77));
        let feed = verify_feed(&key(3), &t).expect("valid");
        assert_eq!(feed.executive, "marie");
        assert_eq!(feed.made, at(77));
    }
}
