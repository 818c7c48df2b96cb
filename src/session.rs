//! Console sessions and logins, as plain data: checking a password against the digest
//! hashes the config already holds (no second password store), session ids and what is
//! kept of them (a hash: a copy of the database does not hand out live sessions), the
//! session cookie, and slowing down an address that keeps guessing.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::auth::{Algorithm, ha1};
use crate::registrar::Secretary;

/// The session cookie's name.
pub const COOKIE: &str = "permanence_session";

/// Whether `password` is this secretary's: the HA1 of `username:realm:password` matches
/// the one the config stores (SHA-256 when present, else MD5). Compared in constant time.
pub fn password_matches(secretary: &Secretary, realm: &str, password: &str) -> bool {
    let (algorithm, stored) = if secretary.ha1_sha256.is_empty() {
        (Algorithm::Md5, &secretary.ha1_md5)
    } else {
        (Algorithm::Sha256, &secretary.ha1_sha256)
    };
    if stored.is_empty() {
        return false;
    }
    let computed = ha1(algorithm, &secretary.username, realm, password);
    constant_time_eq(computed.as_bytes(), stored.to_ascii_lowercase().as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh session id: 128 bits from the operating system's generator, URL-safe.
pub fn new_id() -> Option<String> {
    use base64::Engine as _;
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What is stored of a session id (SHA-256, hex).
pub fn hash_id(id: &str) -> String {
    Algorithm::Sha256.hash(id)
}

/// The prefix of API tokens, so that one is recognised (and can be searched for if leaked).
pub const TOKEN_PREFIX: &str = "pmt_";

/// A fresh API token: the prefix and 256 bits from the operating system's generator.
pub fn new_token() -> Option<String> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The token in an `Authorization: Bearer …` header, if it looks like one of ours.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer")
        && token.starts_with(TOKEN_PREFIX)
        && token.len() <= 64
        && token[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then_some(token)
}

/// The session id in a `Cookie` header, if any.
pub fn from_cookie_header(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty() && v.len() <= 64)
}

/// The `Set-Cookie` value for a new session: not readable by scripts, never sent by
/// another site's page, `Secure` when the console is served over TLS.
pub fn set_cookie(id: &str, max_age_seconds: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_seconds}{secure}")
}

/// The `Set-Cookie` value that removes it (logout).
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// One logged-in secretary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Who.
    pub username: String,
    /// Until when (unix seconds).
    pub expires_at: i64,
}

/// The live sessions by id hash.
#[derive(Debug, Default)]
pub struct Sessions(HashMap<String, Session>);

impl Sessions {
    /// Adds (or restores, at start) a session.
    pub fn insert(&mut self, hash: String, session: Session) {
        self.0.insert(hash, session);
    }

    /// The session of this cookie's id, if it is live at `now` (unix seconds); an expired
    /// one is forgotten.
    pub fn get(&mut self, id: &str, now: i64) -> Option<Session> {
        let hash = hash_id(id);
        match self.0.get(&hash) {
            Some(s) if s.expires_at > now => Some(s.clone()),
            Some(_) => {
                self.0.remove(&hash);
                None
            }
            None => None,
        }
    }

    /// Whether `username` has a session live at `now`.
    pub fn any_live(&self, username: &str, now: i64) -> bool {
        self.0
            .values()
            .any(|s| s.username == username && s.expires_at > now)
    }

    /// Ends a session (logout); its hash, if it existed.
    pub fn remove(&mut self, id: &str) -> Option<String> {
        let hash = hash_id(id);
        self.0.remove(&hash).map(|_| hash)
    }
}

/// Failed logins per address: after a few, each answer waits longer.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: HashMap<IpAddr, (u32, i64)>,
}

/// Failures an address may make before its answers slow down.
const FREE_FAILURES: u32 = 3;
/// A quiet address is forgiven after this long (seconds).
const FORGIVE_AFTER: i64 = 600;
/// Addresses remembered at most (the oldest forgotten): memory stays bounded.
const MAX_ADDRESSES: usize = 10_000;

impl Throttle {
    /// How long to wait (ms) before answering a login attempt from `ip` at `now`.
    pub fn delay_ms(&self, ip: IpAddr, now: i64) -> u64 {
        match self.failures.get(&ip) {
            Some((n, last)) if now - last < FORGIVE_AFTER && *n >= FREE_FAILURES => {
                (250u64 << (n - FREE_FAILURES).min(5)).min(8_000)
            }
            _ => 0,
        }
    }

    /// A wrong password (or unknown user) from `ip`: returns how many in a row.
    pub fn failed(&mut self, ip: IpAddr, now: i64) -> u32 {
        if self.failures.len() >= MAX_ADDRESSES
            && !self.failures.contains_key(&ip)
            && let Some(oldest) = self
                .failures
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(a, _)| *a)
        {
            self.failures.remove(&oldest);
        }
        let entry = self.failures.entry(ip).or_insert((0, now));
        if now - entry.1 >= FORGIVE_AFTER {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = now;
        entry.0
    }

    /// A successful login forgives the address.
    pub fn succeeded(&mut self, ip: IpAddr) {
        self.failures.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_tokens_are_read_from_a_bearer_header() {
        let token = new_token().unwrap();
        assert!(
            token.starts_with(TOKEN_PREFIX) && token.len() == 47,
            "{token}"
        );
        assert_eq!(
            bearer_token(&format!("Bearer {token}")),
            Some(token.as_str())
        );
        assert_eq!(
            bearer_token(&format!("bearer  {token} ")),
            Some(token.as_str())
        );
        for bad in [
            "Basic YWxpY2U6YWxpY2U=".to_string(),
            "Bearer abc".to_string(),
            format!("Bearer {TOKEN_PREFIX}a b"),
            format!("Bearer {TOKEN_PREFIX}{}", "a".repeat(80)),
            format!("Bearer {TOKEN_PREFIX}é"),
            format!("Bearer{token}"),
        ] {
            assert_eq!(bearer_token(&bad), None, "{bad}");
        }
    }

    fn alice(md5: bool) -> Secretary {
        Secretary {
            name: "Alice".into(),
            username: "alice".into(),
            ha1_md5: if md5 {
                ha1(Algorithm::Md5, "alice", "permanence", "s3cret")
            } else {
                String::new()
            },
            ha1_sha256: if md5 {
                String::new()
            } else {
                ha1(Algorithm::Sha256, "alice", "permanence", "s3cret")
            },
            companies: vec!["acme".into()],
            groups: Vec::new(),
        }
    }

    #[test]
    fn the_password_is_checked_against_the_configs_digest_hashes() {
        for md5 in [true, false] {
            assert!(password_matches(&alice(md5), "permanence", "s3cret"));
            assert!(!password_matches(&alice(md5), "permanence", "S3cret"));
            assert!(!password_matches(&alice(md5), "other-realm", "s3cret"));
        }
        let mut nothing = alice(true);
        nothing.ha1_md5.clear();
        assert!(
            !password_matches(&nothing, "permanence", ""),
            "no hash, no login"
        );
    }

    #[test]
    fn sessions_are_kept_by_hash_and_expire() {
        let id = new_id().unwrap();
        assert_eq!(id.len(), 22);
        assert_ne!(new_id().unwrap(), id);
        let mut sessions = Sessions::default();
        let session = Session {
            username: "alice".into(),
            expires_at: 1_000,
        };
        sessions.insert(hash_id(&id), session.clone());
        assert_eq!(sessions.get(&id, 999), Some(session));
        assert_eq!(sessions.get("forged", 999), None);
        assert_eq!(sessions.get(&id, 1_000), None, "expired");
        assert_eq!(sessions.remove(&id), None, "and forgotten");
    }

    #[test]
    fn the_cookie_is_http_only_same_site_and_read_back() {
        let set = set_cookie("abc", 3600, false);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        assert!(!set.contains("Secure"));
        assert!(set_cookie("abc", 3600, true).ends_with("; Secure"));
        assert_eq!(
            from_cookie_header("a=1; permanence_session=abc; b=2"),
            Some("abc")
        );
        assert_eq!(from_cookie_header("permanence_session="), None);
        assert_eq!(from_cookie_header("other=abc"), None);
    }

    #[test]
    fn an_address_that_keeps_guessing_is_slowed_down_then_forgiven() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let mut t = Throttle::default();
        for n in 1..=3 {
            assert_eq!(t.failed(ip, 100), n);
        }
        assert_eq!(t.delay_ms(ip, 100), 250);
        t.failed(ip, 101);
        assert_eq!(t.delay_ms(ip, 101), 500);
        for _ in 0..10 {
            t.failed(ip, 102);
        }
        assert_eq!(t.delay_ms(ip, 102), 8_000, "capped");
        assert_eq!(t.delay_ms(ip, 102 + FORGIVE_AFTER), 0, "forgiven");
        t.succeeded(ip);
        assert_eq!(t.delay_ms(ip, 103), 0);
    }
}
