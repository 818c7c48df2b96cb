//! SIP digest authentication as a server (RFC 3261 §22, RFC 8760 for SHA-256, qop=auth).
//!
//! Pure. Nonces are stateless: `<time>.<salt>.<hash(secret, time, salt)>`, so any nonce we
//! issued can be checked without a table, and an old one is recognised as ours but stale (the
//! phone then retries at once with `stale=true`, RFC 3261 §22.4, without asking the user).
//! The salt makes each challenge's nonce unique, so that a use of it (its `cnonce` and `nc`)
//! can be told from a replay (the registrar keeps that state).

use md5::Digest as _;

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// MD5, what every phone speaks.
    Md5,
    /// SHA-256 (RFC 8760), offered first.
    Sha256,
}

impl Algorithm {
    /// Reads `MD5` or `SHA-256`.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        if name.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if name.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// The hex digest of `data`.
    pub fn hash(self, data: &str) -> String {
        let bytes: Vec<u8> = match self {
            Algorithm::Md5 => md5::Md5::digest(data.as_bytes()).to_vec(),
            Algorithm::Sha256 => sha2::Sha256::digest(data.as_bytes()).to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// HA1 = H(username:realm:password), what the config stores instead of the password.
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash(&format!("{username}:{realm}:{password}"))
}

/// Issues and checks nonces.
#[derive(Debug, Clone)]
pub struct Nonces {
    secret: String,
    lifetime_seconds: u64,
}

/// What a nonce is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    /// Ours and fresh.
    Fresh,
    /// Ours but expired: challenge again with `stale=true`.
    Stale,
    /// Not ours.
    Invalid,
}

impl Nonces {
    /// Nonces signed with `secret` (random per process start), valid `lifetime_seconds`.
    pub fn new(secret: String, lifetime_seconds: u64) -> Self {
        Nonces {
            secret,
            lifetime_seconds,
        }
    }

    /// A nonce for the time `now` (seconds since the epoch), made unique by `salt`.
    pub fn issue(&self, now: u64, salt: u64) -> String {
        format!(
            "{now:x}.{salt:x}.{}",
            &Algorithm::Sha256.hash(&format!("{}:{now}:{salt}", self.secret))[..32]
        )
    }

    /// When a nonce of ours was issued (unix seconds), if it is well formed.
    pub fn issued_at(nonce: &str) -> Option<u64> {
        u64::from_str_radix(nonce.split('.').next()?, 16).ok()
    }

    /// Checks a nonce at `now`.
    pub fn check(&self, nonce: &str, now: u64) -> NonceState {
        let mut parts = nonce.split('.');
        let (Some(time), Some(salt)) = (parts.next(), parts.next()) else {
            return NonceState::Invalid;
        };
        let (Ok(issued), Ok(salt)) = (u64::from_str_radix(time, 16), u64::from_str_radix(salt, 16))
        else {
            return NonceState::Invalid;
        };
        if self.issue(issued, salt) != nonce {
            return NonceState::Invalid;
        }
        if now.saturating_sub(issued) > self.lifetime_seconds || issued > now + 60 {
            NonceState::Stale
        } else {
            NonceState::Fresh
        }
    }
}

/// The WWW-Authenticate values for a challenge, one per algorithm in the order given
/// (RFC 8760 §2.4: the order of preference).
pub fn challenges(realm: &str, nonce: &str, stale: bool, algorithms: &[Algorithm]) -> Vec<String> {
    algorithms
        .iter()
        .copied()
        .map(|a| {
            let stale = if stale { ", stale=true" } else { "" };
            format!(
                "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
                a.name()
            )
        })
        .collect()
}

/// A parsed `Authorization: Digest …` header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// username.
    pub username: String,
    /// realm.
    pub realm: String,
    /// nonce.
    pub nonce: String,
    /// uri.
    pub uri: String,
    /// response.
    pub response: String,
    /// algorithm (MD5 when absent).
    pub algorithm: Option<String>,
    /// qop.
    pub qop: Option<String>,
    /// nc.
    pub nc: Option<String>,
    /// cnonce.
    pub cnonce: Option<String>,
}

/// The `name=value` parameters of a `Digest …` header value (quoted or not), names in
/// lower case; `None` unless the scheme is Digest and the list is well formed.
fn digest_params(value: &str) -> Option<Vec<(String, String)>> {
    let (scheme, params) = value.trim().split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut out = Vec::new();
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            match after.find(',') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            }
        };
        out.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(out)
}

/// Parses the value of an Authorization header; `None` unless it is Digest.
pub fn parse_credentials(value: &str) -> Option<Credentials> {
    let mut c = Credentials::default();
    for (name, value) in digest_params(value)? {
        match name.as_str() {
            "username" => c.username = value,
            "realm" => c.realm = value,
            "nonce" => c.nonce = value,
            "uri" => c.uri = value,
            "response" => c.response = value.to_ascii_lowercase(),
            "algorithm" => c.algorithm = Some(value),
            "qop" => c.qop = Some(value),
            "nc" => c.nc = Some(value),
            "cnonce" => c.cnonce = Some(value),
            _ => {}
        }
    }
    (!c.username.is_empty() && !c.nonce.is_empty() && !c.response.is_empty()).then_some(c)
}

/// The header that carries our answer to a challenge: `Proxy-Authorization` for a 407's
/// `Proxy-Authenticate` (`proxy`), `Authorization` for a 401's `WWW-Authenticate`.
pub fn authorization_header(proxy: bool) -> &'static str {
    if proxy {
        "Proxy-Authorization"
    } else {
        "Authorization"
    }
}

/// Answers a `WWW-Authenticate`/`Proxy-Authenticate` challenge as a client (our calls out
/// through a trunk): the header value to send back, or `None` for a challenge we cannot
/// meet (not Digest, an unknown algorithm, a qop other than `auth`). `cnonce` comes from
/// the caller's RNG.
pub fn answer_challenge(
    challenge: &str,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
) -> Option<String> {
    let params = digest_params(challenge)?;
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let realm = get("realm")?;
    let nonce = get("nonce")?;
    let algorithm = match get("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::from_name(a)?,
    };
    let ha1 = ha1(algorithm, username, realm, password);
    let ha2 = algorithm.hash(&format!("{method}:{uri}"));
    let qop_auth = match get("qop") {
        None => false,
        Some(q) if q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")) => true,
        Some(_) => return None,
    };
    let nc = "00000001";
    let mut out = format!(
        "Digest username=\"{username}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", algorithm={}",
        algorithm.name()
    );
    let response = if qop_auth {
        out.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
        algorithm.hash(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
    } else {
        algorithm.hash(&format!("{ha1}:{nonce}:{ha2}"))
    };
    out.push_str(&format!(", response=\"{response}\""));
    if let Some(opaque) = get("opaque") {
        out.push_str(&format!(", opaque=\"{opaque}\""));
    }
    Some(out)
}

impl Credentials {
    /// The algorithm the client used.
    pub fn algorithm(&self) -> Option<Algorithm> {
        match self.algorithm.as_deref() {
            None => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("MD5") => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Some(Algorithm::Sha256),
            _ => None,
        }
    }

    /// Whether `response` matches what HA1 and the method give (constant-time compare).
    pub fn verify(&self, ha1: &str, method: &str) -> bool {
        let Some(algorithm) = self.algorithm() else {
            return false;
        };
        let ha2 = algorithm.hash(&format!("{method}:{}", self.uri));
        let expected = match (self.qop.as_deref(), &self.nc, &self.cnonce) {
            (Some("auth"), Some(nc), Some(cnonce)) => {
                algorithm.hash(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce))
            }
            (None, _, _) => algorithm.hash(&format!("{ha1}:{}:{ha2}", self.nonce)),
            _ => return false,
        };
        expected.len() == self.response.len()
            && expected
                .bytes()
                .zip(self.response.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn we_answer_rfc_2617s_challenge_as_its_example_does() {
        let challenge = "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
        let answer = answer_challenge(
            challenge,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "0a4f113b",
        )
        .unwrap();
        assert!(
            answer.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{answer}"
        );
        assert!(answer.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
        let c = parse_credentials(&answer).unwrap();
        let ha1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert!(c.verify(&ha1, "GET"));
        assert_eq!(
            answer_challenge("Basic realm=\"x\"", "a", "b", "GET", "/", "c"),
            None
        );
    }

    #[test]
    fn rfc_2617_example_response() {
        // RFC 2617 §3.5: Mufasa / Circle Of Life, qop=auth (MD5).
        let c = parse_credentials(
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             uri=\"/dir/index.html\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", \
             response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        let ha1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert!(c.verify(&ha1, "GET"));
        assert!(!c.verify(&ha1, "POST"));
        let wrong = super::ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "circle of life",
        );
        assert!(!c.verify(&wrong, "GET"));
    }

    #[test]
    fn sha256_round_trip_and_unknown_algorithms() {
        let ha1 = ha1(Algorithm::Sha256, "alice", "permanence", "alice");
        let ha2 = Algorithm::Sha256.hash("REGISTER:sip:127.0.0.1");
        let response = Algorithm::Sha256.hash(&format!("{ha1}:n:00000001:c:auth:{ha2}"));
        let c = Credentials {
            username: "alice".into(),
            realm: "permanence".into(),
            nonce: "n".into(),
            uri: "sip:127.0.0.1".into(),
            response,
            algorithm: Some("SHA-256".into()),
            qop: Some("auth".into()),
            nc: Some("00000001".into()),
            cnonce: Some("c".into()),
        };
        assert!(c.verify(&ha1, "REGISTER"));
        let mut odd = c.clone();
        odd.algorithm = Some("SHA-512-256".into());
        assert!(!odd.verify(&ha1, "REGISTER"));
        assert_eq!(parse_credentials("Basic YWxpY2U6YWxpY2U="), None);
        assert_eq!(
            parse_credentials("Digest username=\"a\""),
            None,
            "no response"
        );
    }

    #[test]
    fn nonces_expire_into_stale_and_forgeries_are_invalid() {
        let n = Nonces::new("secret".into(), 300);
        let nonce = n.issue(1000, 7);
        assert_ne!(nonce, n.issue(1000, 8), "one nonce per challenge");
        assert_eq!(Nonces::issued_at(&nonce), Some(1000));
        assert_eq!(n.check(&nonce, 1100), NonceState::Fresh);
        assert_eq!(n.check(&nonce, 1301), NonceState::Stale);
        assert_eq!(n.check(&nonce.replace('.', "x"), 1100), NonceState::Invalid);
        assert_eq!(
            Nonces::new("other".into(), 300).check(&nonce, 1100),
            NonceState::Invalid
        );
        assert_eq!(n.check("3e8.forged", 1100), NonceState::Invalid);
        let ch = challenges(
            "permanence",
            &nonce,
            true,
            &[Algorithm::Sha256, Algorithm::Md5],
        );
        assert!(
            ch[0].contains("algorithm=SHA-256")
                && ch[1].contains("algorithm=MD5")
                && ch[0].ends_with("stale=true")
        );
    }
}
