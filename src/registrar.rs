//! The registrar (RFC 3261 §10): secretaries' softphones register their contacts, with
//! digest authentication. Pure: the endpoint passes the request facts and the time.
//!
//! Bindings remember the packet's source as well as the Contact: calls go back to where
//! the REGISTER came from, which is what a softphone behind NAT needs (as `received`/
//! `rport` would). An unknown user and a wrong password get the same answer: a new
//! challenge.
//!
//! Credentials are single-use evidence: only `qop=auth` answers (no RFC 2069 digests), for
//! the Request-URI they were computed for, with a nonce count that grows for each
//! (nonce, cnonce) pair, so a captured Authorization cannot be played again; a source that
//! keeps failing is banned for a while (`bans`).
//!
//! A Contact carrying `+sip.instance` (RFC 5626 §4.1, RFC 5627) names the device: it
//! replaces the user's binding with the same instance id even when the URI changed (a
//! softphone that restarted on another port or address), so the stale contact is not rung.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::auth::{self, Algorithm, Credentials, NonceState, Nonces};
use crate::bans::{Ban, Bans, Policy};
use crate::sip::{NameAddr, Peer};

/// A secretary as configured.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secretary {
    /// Display name.
    pub name: String,
    /// SIP username.
    pub username: String,
    /// HA1 = MD5(username:realm:password), hex (`permanence hash-password`).
    pub ha1_md5: String,
    /// HA1 with SHA-256.
    pub ha1_sha256: String,
    /// Company ids this secretary answers for.
    #[serde(default)]
    pub companies: Vec<String>,
    /// Groups (for plans' `secretary = { group = … }`).
    #[serde(default)]
    pub groups: Vec<String>,
}

/// One registered contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI.
    pub contact: String,
    /// Where the REGISTER came from: calls go there.
    pub source: Peer,
    /// Unix seconds when it lapses.
    pub expires_at: u64,
}

/// Registrar settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Digest realm.
    pub realm: String,
    /// Shortest registration accepted (423 below, RFC 3261 §10.3 step 7).
    pub min_expires: u32,
    /// Longest granted; longer asks are shortened.
    pub max_expires: u32,
    /// When neither Expires nor a contact parameter says.
    pub default_expires: u32,
    /// Digest algorithms offered, in this order.
    pub algorithms: Vec<Algorithm>,
    /// When a source that keeps failing is banned.
    pub bans: Policy,
}

/// The answer to a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 401 with these WWW-Authenticate values.
    Challenge(Vec<String>),
    /// 423 Interval Too Brief with Min-Expires.
    TooBrief(u32),
    /// 400: e.g. `*` with other contacts or an Expires other than 0.
    Bad,
    /// 403: authenticated as someone else than the To user.
    Forbidden,
    /// 403: more than [`MAX_CONTACTS`] phones for one user (each would be rung per call).
    TooMany,
    /// 403: the source is banned for repeated wrong credentials.
    Banned,
    /// 200 with the user's current bindings and their remaining seconds.
    Ok(Vec<(String, u64)>),
}

/// Most phones one user may register: every call to them forks to each, so the number is
/// bounded however many contacts an authenticated phone sends.
pub const MAX_CONTACTS: usize = 10;

/// Most (nonce, cnonce) uses remembered for replay detection; expired nonces go first.
const MAX_NONCE_USES: usize = 16_384;

/// Every secretary's bindings.
#[derive(Debug)]
pub struct Registrar {
    settings: Settings,
    nonces: Nonces,
    nonce_lifetime: u64,
    /// Makes each challenge's nonce unique.
    salt: u64,
    /// The highest nonce count seen for each (nonce, cnonce): a count that does not grow
    /// is a replay.
    uses: HashMap<(String, String), u32>,
    bans: Bans,
    /// Bans decided since the endpoint last asked, to log and record.
    new_bans: Vec<Ban>,
    secretaries: HashMap<String, Secretary>,
    bindings: HashMap<String, Vec<Stored>>,
}

/// A binding and the instance id of the device that registered it, if it said.
#[derive(Debug, Clone)]
struct Stored {
    binding: Binding,
    instance: Option<String>,
}

/// The instance id of a Contact: its `+sip.instance` value without the angle brackets
/// (`<urn:uuid:…>` → `urn:uuid:…`), compared exactly.
fn instance_id(contact: &NameAddr) -> Option<String> {
    let value = contact.instance.as_deref()?.trim();
    let value = value
        .strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .unwrap_or(value)
        .trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// Whether a digest `uri` names the Request-URI's target: the same URI, or (as SIPp and
/// some phones write it) the same host and port with no user or the same user. Parameters
/// do not count. Credentials computed for another server cannot be used here.
fn same_target(digest_uri: &str, request_uri: &str) -> bool {
    fn parts(uri: &str) -> Option<(Option<&str>, String)> {
        let rest = uri
            .strip_prefix("sip:")
            .or_else(|| uri.strip_prefix("sips:"))?;
        let rest = rest.split([';', '?']).next().unwrap_or_default();
        let (user, host) = match rest.rsplit_once('@') {
            Some((user, host)) => (Some(user), host),
            None => (None, rest),
        };
        Some((user, host.to_ascii_lowercase()))
    }
    if digest_uri == request_uri {
        return true;
    }
    match (parts(digest_uri), parts(request_uri)) {
        (Some((user, host)), Some((request_user, request_host))) => {
            host == request_host && (user.is_none() || user == request_user)
        }
        _ => false,
    }
}

impl Stored {
    /// Whether `contact` (with instance id `instance`) updates this binding: the same URI,
    /// or the same device.
    fn replaced_by(&self, contact: &NameAddr, instance: Option<&str>) -> bool {
        self.binding.contact == contact.uri
            || instance.is_some_and(|i| self.instance.as_deref() == Some(i))
    }
}

/// The facts of a REGISTER the registrar needs.
#[derive(Debug, Clone)]
pub struct Register<'a> {
    /// The To user (the address being registered).
    pub to_user: Option<&'a str>,
    /// Authorization header.
    pub authorization: Option<&'a str>,
    /// Contacts.
    pub contacts: &'a [NameAddr],
    /// `Contact: *`.
    pub star: bool,
    /// Expires header.
    pub expires: Option<u32>,
    /// The Request-URI (the credentials must have been computed for it).
    pub uri: &'a str,
    /// Where it came from.
    pub source: Peer,
}

impl Registrar {
    /// A registrar for these secretaries; `secret` signs nonces.
    pub fn new(
        settings: Settings,
        secretaries: Vec<Secretary>,
        secret: String,
        nonce_lifetime: u64,
    ) -> Self {
        let bans = Bans::new(settings.bans);
        Registrar {
            settings,
            nonces: Nonces::new(secret, nonce_lifetime),
            nonce_lifetime,
            salt: 0,
            uses: HashMap::new(),
            bans,
            new_bans: Vec::new(),
            secretaries: secretaries
                .into_iter()
                .map(|s| (s.username.clone(), s))
                .collect(),
            bindings: HashMap::new(),
        }
    }

    /// Restores bindings saved before a restart (only those still valid at `now`), with
    /// the device's instance id when it gave one.
    pub fn restore(
        &mut self,
        username: &str,
        binding: Binding,
        instance: Option<String>,
        now: u64,
    ) {
        if binding.expires_at > now && self.secretaries.contains_key(username) {
            self.bindings
                .entry(username.to_string())
                .or_default()
                .push(Stored { binding, instance });
        }
    }

    /// The instance id the device registered `contact` with, if any (for the records).
    pub fn instance(&self, username: &str, contact: &str) -> Option<&str> {
        self.bindings
            .get(username)?
            .iter()
            .find(|s| s.binding.contact == contact)?
            .instance
            .as_deref()
    }

    /// The live bindings of a user.
    pub fn bindings(&self, username: &str, now: u64) -> Vec<Binding> {
        self.bindings
            .get(username)
            .map(|list| {
                list.iter()
                    .filter(|s| s.binding.expires_at > now)
                    .map(|s| s.binding.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn challenge(&mut self, now: u64, stale: bool) -> Answer {
        self.salt = self.salt.wrapping_add(1);
        Answer::Challenge(auth::challenges(
            &self.settings.realm,
            &self.nonces.issue(now, self.salt),
            stale,
            &self.settings.algorithms,
        ))
    }

    /// Bans decided since the last call, for the log and the records.
    pub fn take_bans(&mut self) -> Vec<Ban> {
        std::mem::take(&mut self.new_bans)
    }

    /// Authenticates a request other than REGISTER (an INVITE from outside the trunk) for
    /// `uri`, from `source`: `Ok(username)`, or the WWW-Authenticate values for a 401 (none:
    /// refuse with 403, the source is banned).
    pub fn authenticate_request(
        &mut self,
        authorization: Option<&str>,
        method: &str,
        uri: &str,
        source: IpAddr,
        now: u64,
    ) -> Result<String, Vec<String>> {
        match self.authenticate(authorization, method, uri, source, now) {
            Ok(user) => Ok(user),
            Err(Answer::Challenge(values)) => Err(values),
            Err(_) => Err(Vec::new()),
        }
    }

    /// Authenticates: `Ok(username)` or the answer to send (a challenge, or 403 to a
    /// banned source). Wrong credentials count against the source.
    fn authenticate(
        &mut self,
        authorization: Option<&str>,
        method: &str,
        uri: &str,
        source: IpAddr,
        now: u64,
    ) -> Result<String, Answer> {
        if self.bans.is_banned(source, now) {
            return Err(Answer::Banned);
        }
        let Some(credentials) = authorization.and_then(auth::parse_credentials) else {
            return Err(self.challenge(now, false));
        };
        match self.nonces.check(&credentials.nonce, now) {
            // Not ours (or from before a restart, which changes the secret): a new one.
            NonceState::Invalid => return Err(self.challenge(now, false)),
            NonceState::Stale => {
                // Only a correct answer to an old nonce deserves stale=true.
                let right = self.valid(&credentials, method, uri);
                return Err(self.challenge(now, right));
            }
            NonceState::Fresh => {}
        }
        if credentials.realm != self.settings.realm || !self.valid(&credentials, method, uri) {
            return Err(self.failed(&credentials.username, source, now));
        }
        if !self.first_use(&credentials, now) {
            tracing::warn!(user = credentials.username, %source, "digest credentials replayed: refused");
            return Err(self.failed(&credentials.username, source, now));
        }
        self.bans.succeeded(source);
        Ok(credentials.username)
    }

    /// Wrong credentials from `source`: counted, and answered with a new challenge.
    fn failed(&mut self, username: &str, source: IpAddr, now: u64) -> Answer {
        if let Some(ban) = self.bans.failed(source, username, now) {
            self.new_bans.push(ban);
            return Answer::Banned;
        }
        self.challenge(now, false)
    }

    /// Records this use of a nonce; false when its count does not grow (a replay).
    fn first_use(&mut self, c: &Credentials, now: u64) -> bool {
        let (Some(cnonce), Some(nc)) = (&c.cnonce, &c.nc) else {
            return false;
        };
        let Ok(nc) = u32::from_str_radix(nc, 16) else {
            return false;
        };
        if self.uses.len() >= MAX_NONCE_USES {
            let lifetime = self.nonce_lifetime;
            self.uses.retain(|(nonce, _), _| {
                Nonces::issued_at(nonce).is_some_and(|at| now.saturating_sub(at) <= lifetime)
            });
            if self.uses.len() >= MAX_NONCE_USES {
                // Still full of live nonces: forget them all rather than grow. A replay of
                // a forgotten use needs its nonce still fresh, within minutes.
                self.uses.clear();
            }
        }
        let last = self
            .uses
            .entry((c.nonce.clone(), cnonce.clone()))
            .or_insert(0);
        if nc <= *last {
            return false;
        }
        *last = nc;
        true
    }

    /// Whether the credentials are right: `qop=auth` (RFC 2069 answers, without a client
    /// nonce and count, cannot be told from a replay), for this Request-URI, and the
    /// response matching the user's HA1.
    fn valid(&self, c: &Credentials, method: &str, uri: &str) -> bool {
        if c.qop.as_deref() != Some("auth") || !same_target(&c.uri, uri) {
            return false;
        }
        // An unknown user is checked against a dummy HA1 so that both take the same path.
        let secretary = self.secretaries.get(&c.username);
        let ha1 = match (secretary, c.algorithm()) {
            (Some(s), Some(Algorithm::Md5)) => s.ha1_md5.clone(),
            (Some(s), Some(Algorithm::Sha256)) => s.ha1_sha256.clone(),
            (None, Some(a)) => a.hash("nobody:nowhere:nothing"),
            (_, None) => return false,
        };
        c.verify(&ha1, method) && secretary.is_some()
    }

    /// Handles a REGISTER at `now` (unix seconds).
    pub fn register(&mut self, r: &Register, now: u64) -> Answer {
        let username =
            match self.authenticate(r.authorization, "REGISTER", r.uri, r.source.addr.ip(), now) {
                Ok(u) => u,
                Err(challenge) => return challenge,
            };
        if r.to_user.is_some_and(|to| to != username) {
            return Answer::Forbidden;
        }
        let list = self.bindings.entry(username.clone()).or_default();
        list.retain(|s| s.binding.expires_at > now);
        if r.star {
            if !r.contacts.is_empty() || r.expires != Some(0) {
                return Answer::Bad;
            }
            list.clear();
            return Answer::Ok(Vec::new());
        }
        for contact in r.contacts {
            let asked = contact
                .expires
                .or(r.expires)
                .unwrap_or(self.settings.default_expires);
            if asked != 0 && asked < self.settings.min_expires {
                return Answer::TooBrief(self.settings.min_expires);
            }
        }
        let instances: Vec<Option<String>> = r.contacts.iter().map(instance_id).collect();
        let kept = list
            .iter()
            .filter(|s| {
                r.contacts
                    .iter()
                    .zip(&instances)
                    .all(|(c, i)| !s.replaced_by(c, i.as_deref()))
            })
            .count();
        let added = r
            .contacts
            .iter()
            .filter(|c| c.expires.or(r.expires) != Some(0))
            .count();
        if kept + added > MAX_CONTACTS {
            return Answer::TooMany;
        }
        for (contact, instance) in r.contacts.iter().zip(instances) {
            let asked = contact
                .expires
                .or(r.expires)
                .unwrap_or(self.settings.default_expires);
            list.retain(|s| !s.replaced_by(contact, instance.as_deref()));
            if asked > 0 {
                let granted = asked.min(self.settings.max_expires);
                list.push(Stored {
                    binding: Binding {
                        contact: contact.uri.clone(),
                        source: r.source,
                        expires_at: now + u64::from(granted),
                    },
                    instance,
                });
            }
        }
        Answer::Ok(
            list.iter()
                .map(|s| (s.binding.contact.clone(), s.binding.expires_at - now))
                .collect(),
        )
    }

    /// Every live binding, for keep-alives: (username, binding).
    pub fn all_bindings(&self, now: u64) -> Vec<(String, Binding)> {
        let mut out: Vec<(String, Binding)> = self
            .bindings
            .iter()
            .flat_map(|(u, list)| {
                list.iter()
                    .filter(|s| s.binding.expires_at > now)
                    .map(move |s| (u.clone(), s.binding.clone()))
            })
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1.contact).cmp(&(&b.0, &b.1.contact)));
        out
    }

    /// Drops a binding whose phone stopped answering; returns whether it existed.
    pub fn remove(&mut self, username: &str, contact: &str) -> bool {
        let Some(list) = self.bindings.get_mut(username) else {
            return false;
        };
        let before = list.len();
        list.retain(|s| s.binding.contact != contact);
        list.len() != before
    }

    /// Every secretary, with their live bindings.
    pub fn secretaries(&self, now: u64) -> Vec<(Secretary, Vec<Binding>)> {
        let mut out: Vec<_> = self
            .secretaries
            .values()
            .map(|s| (s.clone(), self.bindings(&s.username, now)))
            .collect();
        out.sort_by(|a, b| a.0.username.cmp(&b.0.username));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ha1;
    use crate::sip::Transport;

    fn registrar() -> Registrar {
        let secretary = Secretary {
            name: "Alice".into(),
            username: "alice".into(),
            ha1_md5: ha1(Algorithm::Md5, "alice", "permanence", "alice"),
            ha1_sha256: ha1(Algorithm::Sha256, "alice", "permanence", "alice"),
            companies: vec!["acme".into()],
            groups: vec![],
        };
        let settings = Settings {
            realm: "permanence".into(),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 600,
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            bans: Policy {
                max_failures: 5,
                window_seconds: 60,
                ban_seconds: 600,
            },
        };
        Registrar::new(settings, vec![secretary], "s".into(), 300)
    }

    fn answer_for(
        r: &Registrar,
        user: &str,
        password: &str,
        nonce: &str,
        algorithm: Algorithm,
    ) -> String {
        // Each answer is a new use of the nonce, as a phone's would be: its own cnonce.
        static USES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let cnonce = format!(
            "c{}",
            USES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let h1 = ha1(algorithm, user, "permanence", password);
        let h2 = algorithm.hash("REGISTER:sip:127.0.0.1");
        let response = algorithm.hash(&format!("{h1}:{nonce}:00000001:{cnonce}:auth:{h2}"));
        let name = if algorithm == Algorithm::Md5 {
            "MD5"
        } else {
            "SHA-256"
        };
        let _ = r;
        format!(
            "Digest username=\"{user}\", realm=\"permanence\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1\", response=\"{response}\", algorithm={name}, qop=auth, nc=00000001, cnonce=\"{cnonce}\""
        )
    }

    fn contact(uri: &str, expires: Option<u32>) -> NameAddr {
        NameAddr {
            uri: uri.into(),
            expires,
            ..Default::default()
        }
    }

    fn with_instance(uri: &str, instance: &str) -> NameAddr {
        NameAddr {
            uri: uri.into(),
            instance: Some(instance.into()),
            ..Default::default()
        }
    }

    /// Registers `contacts` for alice from `port` at `now`, answering the challenge.
    fn register_alice(r: &mut Registrar, contacts: &[NameAddr], port: u16, now: u64) -> Answer {
        let source = Peer {
            transport: Transport::Udp,
            addr: std::net::SocketAddr::from(([192, 0, 2, 7], port)),
        };
        let facts = |authorization| Register {
            to_user: Some("alice"),
            authorization,
            contacts,
            star: false,
            expires: None,
            uri: "sip:127.0.0.1",
            source,
        };
        let nonce = nonce_of(&r.register(&facts(None), now));
        let auth = answer_for(r, "alice", "alice", &nonce, Algorithm::Md5);
        r.register(&facts(Some(&auth)), now)
    }

    fn source() -> Peer {
        Peer {
            transport: Transport::Udp,
            addr: "192.0.2.7:5062".parse().unwrap(),
        }
    }

    fn nonce_of(answer: &Answer) -> String {
        let Answer::Challenge(v) = answer else {
            panic!("{answer:?}")
        };
        v[0].split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string()
    }

    #[test]
    fn challenge_then_register_with_either_algorithm_and_unregister() {
        let mut r = registrar();
        let contacts = [contact("sip:alice@10.0.0.5:5062", None)];
        let first = r.register(
            &Register {
                to_user: Some("alice"),
                authorization: None,
                contacts: &contacts,
                star: false,
                expires: None,
                uri: "sip:127.0.0.1",
                source: source(),
            },
            1000,
        );
        let nonce = nonce_of(&first);
        for alg in [Algorithm::Md5, Algorithm::Sha256] {
            let auth = answer_for(&r, "alice", "alice", &nonce, alg);
            let ok = r.register(
                &Register {
                    to_user: Some("alice"),
                    authorization: Some(&auth),
                    contacts: &contacts,
                    star: false,
                    expires: Some(7200),
                    uri: "sip:127.0.0.1",
                    source: source(),
                },
                1001,
            );
            assert_eq!(
                ok,
                Answer::Ok(vec![("sip:alice@10.0.0.5:5062".into(), 3600)]),
                "{alg:?}: capped at max_expires"
            );
        }
        assert_eq!(
            r.bindings("alice", 1002)[0].source,
            source(),
            "calls go back to the source"
        );
        let auth = answer_for(&r, "alice", "alice", &nonce, Algorithm::Md5);
        let gone = r.register(
            &Register {
                to_user: Some("alice"),
                authorization: Some(&auth),
                contacts: &[],
                star: true,
                expires: Some(0),
                uri: "sip:127.0.0.1",
                source: source(),
            },
            1003,
        );
        assert_eq!(gone, Answer::Ok(vec![]));
        assert!(r.bindings("alice", 1004).is_empty());
    }

    #[test]
    fn wrong_password_and_unknown_user_get_the_same_answer() {
        let mut r = registrar();
        let contacts = [contact("sip:x@10.0.0.5", None)];
        let nonce = nonce_of(&r.register(
            &Register {
                to_user: None,
                authorization: None,
                contacts: &contacts,
                star: false,
                expires: None,
                uri: "sip:127.0.0.1",
                source: source(),
            },
            1000,
        ));
        let wrong = answer_for(&r, "alice", "bob", &nonce, Algorithm::Md5);
        let unknown = answer_for(&r, "mallory", "x", &nonce, Algorithm::Md5);
        let a = r.register(
            &Register {
                to_user: None,
                authorization: Some(&wrong),
                contacts: &contacts,
                star: false,
                expires: None,
                uri: "sip:127.0.0.1",
                source: source(),
            },
            1001,
        );
        let b = r.register(
            &Register {
                to_user: None,
                authorization: Some(&unknown),
                contacts: &contacts,
                star: false,
                expires: None,
                uri: "sip:127.0.0.1",
                source: source(),
            },
            1001,
        );
        // The same challenge, but for its nonce (each challenge has its own).
        let without_nonce = |answer: &Answer| match answer {
            Answer::Challenge(values) => values
                .iter()
                .map(|v| {
                    let start = v.find("nonce=\"").unwrap() + 7;
                    let end = start + v[start..].find('"').unwrap();
                    format!("{}{}", &v[..start], &v[end..])
                })
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(without_nonce(&a), without_nonce(&b));
        assert!(r.bindings("alice", 1002).is_empty());
    }

    #[test]
    fn one_user_may_register_only_so_many_phones() {
        let mut r = registrar();
        let register = |r: &mut Registrar, contacts: &[NameAddr], auth: Option<&str>| {
            r.register(
                &Register {
                    to_user: None,
                    authorization: auth,
                    contacts,
                    star: false,
                    expires: None,
                    uri: "sip:127.0.0.1",
                    source: source(),
                },
                1000,
            )
        };
        let many: Vec<NameAddr> = (0..MAX_CONTACTS)
            .map(|i| contact(&format!("sip:a@10.0.0.{i}"), None))
            .collect();
        let nonce = nonce_of(&register(&mut r, &many, None));
        let auth = answer_for(&r, "alice", "alice", &nonce, Algorithm::Md5);
        assert!(
            matches!(register(&mut r, &many, Some(&auth)), Answer::Ok(l) if l.len() == MAX_CONTACTS)
        );
        let one_more = [contact("sip:a@10.0.0.99", None)];
        let auth = answer_for(&r, "alice", "alice", &nonce, Algorithm::Md5);
        assert_eq!(register(&mut r, &one_more, Some(&auth)), Answer::TooMany);
        assert_eq!(
            r.bindings("alice", 1001).len(),
            MAX_CONTACTS,
            "nothing changed"
        );
        // Refreshing or removing a phone already there is fine.
        let again = [
            contact("sip:a@10.0.0.3", Some(0)),
            contact("sip:a@10.0.0.99", None),
        ];
        let auth = answer_for(&r, "alice", "alice", &nonce, Algorithm::Md5);
        assert!(
            matches!(register(&mut r, &again, Some(&auth)), Answer::Ok(l) if l.len() == MAX_CONTACTS)
        );
    }

    #[test]
    fn expired_nonce_is_stale_short_expiry_is_423_and_several_contacts_are_kept() {
        let mut r = registrar();
        let contacts = [
            contact("sip:a@10.0.0.5", Some(120)),
            contact("sip:a@10.0.0.6", None),
        ];
        let nonce = nonce_of(&r.register(
            &Register {
                to_user: None,
                authorization: None,
                contacts: &contacts,
                star: false,
                expires: None,
                uri: "sip:127.0.0.1",
                source: source(),
            },
            1000,
        ));
        let auth = answer_for(&r, "alice", "alice", &nonce, Algorithm::Md5);
        let Answer::Challenge(stale) = r.register(
            &Register {
                to_user: None,
                authorization: Some(&auth),
                contacts: &contacts,
                star: false,
                expires: None,
                uri: "sip:127.0.0.1",
                source: source(),
            },
            1400,
        ) else {
            panic!()
        };
        assert!(stale[0].contains("stale=true"));
        let short = [contact("sip:a@10.0.0.5", Some(10))];
        assert_eq!(
            r.register(
                &Register {
                    to_user: None,
                    authorization: Some(&auth),
                    contacts: &short,
                    star: false,
                    expires: None,
                    uri: "sip:127.0.0.1",
                    source: source()
                },
                1001
            ),
            Answer::TooBrief(60)
        );
        let auth = answer_for(&r, "alice", "alice", &nonce, Algorithm::Md5);
        let Answer::Ok(both) = r.register(
            &Register {
                to_user: None,
                authorization: Some(&auth),
                contacts: &contacts,
                star: false,
                expires: None,
                uri: "sip:127.0.0.1",
                source: source(),
            },
            1001,
        ) else {
            panic!()
        };
        assert_eq!(
            both,
            vec![
                ("sip:a@10.0.0.5".into(), 120),
                ("sip:a@10.0.0.6".into(), 600)
            ]
        );
        assert_eq!(r.bindings("alice", 1200).len(), 1, "the 120 s one lapsed");
    }

    #[test]
    fn the_same_instance_from_another_contact_replaces_the_binding() {
        let mut r = registrar();
        let instance = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";
        let first = [with_instance("sip:alice@10.0.0.5:5062", instance)];
        assert!(matches!(
            register_alice(&mut r, &first, 5062, 1000),
            Answer::Ok(_)
        ));
        // The phone restarted on another port (and quoted the same id without brackets).
        let second = [with_instance(
            "sip:alice@10.0.0.5:5070;transport=udp",
            "urn:uuid:00000000-0000-1000-8000-000A95A0E128",
        )];
        assert_eq!(
            register_alice(&mut r, &second, 5070, 1010),
            Answer::Ok(vec![("sip:alice@10.0.0.5:5070;transport=udp".into(), 600)]),
            "the stale contact is gone from the 200 too"
        );
        let now = r.bindings("alice", 1011);
        assert_eq!(now.len(), 1, "{now:?}");
        assert_eq!(now[0].contact, "sip:alice@10.0.0.5:5070;transport=udp");
        assert_eq!(
            now[0].source.addr.port(),
            5070,
            "calls go to the new source"
        );
        assert_eq!(r.all_bindings(1011).len(), 1);
        // Unregistering the device by its new contact leaves nothing.
        let gone = [NameAddr {
            expires: Some(0),
            ..second[0].clone()
        }];
        assert_eq!(
            register_alice(&mut r, &gone, 5070, 1020),
            Answer::Ok(vec![])
        );
        assert!(r.bindings("alice", 1021).is_empty());
    }

    #[test]
    fn different_instances_are_different_phones() {
        let mut r = registrar();
        let desk = [with_instance(
            "sip:alice@10.0.0.5:5062",
            "<urn:uuid:11111111-1111-1111-1111-111111111111>",
        )];
        let mobile = [with_instance(
            "sip:alice@10.0.0.6:5062",
            "<urn:uuid:22222222-2222-2222-2222-222222222222>",
        )];
        register_alice(&mut r, &desk, 5062, 1000);
        let Answer::Ok(both) = register_alice(&mut r, &mobile, 5062, 1000) else {
            panic!()
        };
        assert_eq!(both.len(), 2, "{both:?}");
        // Instance ids compare exactly (URNs of different case are not the same device here).
        let upper = [with_instance(
            "sip:alice@10.0.0.7:5062",
            "<urn:uuid:22222222-2222-2222-2222-22222222222A>",
        )];
        let lower = [with_instance(
            "sip:alice@10.0.0.8:5062",
            "<urn:uuid:22222222-2222-2222-2222-22222222222a>",
        )];
        register_alice(&mut r, &upper, 5062, 1000);
        register_alice(&mut r, &lower, 5062, 1000);
        assert_eq!(r.bindings("alice", 1001).len(), 4);
    }

    #[test]
    fn without_an_instance_contacts_are_matched_by_uri_as_before() {
        let mut r = registrar();
        let instance = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";
        // A binding with an instance is not replaced by a contact without one…
        register_alice(
            &mut r,
            &[with_instance("sip:alice@10.0.0.5:5062", instance)],
            5062,
            1000,
        );
        register_alice(
            &mut r,
            &[contact("sip:alice@10.0.0.5:5070", None)],
            5070,
            1000,
        );
        assert_eq!(r.bindings("alice", 1001).len(), 2);
        // …nor are two contacts without one, and the same URI refreshes its binding.
        register_alice(
            &mut r,
            &[contact("sip:alice@10.0.0.5:5080", None)],
            5080,
            1000,
        );
        let Answer::Ok(list) = register_alice(
            &mut r,
            &[contact("sip:alice@10.0.0.5:5070", Some(120))],
            5070,
            1010,
        ) else {
            panic!()
        };
        assert_eq!(
            list,
            vec![
                ("sip:alice@10.0.0.5:5062".into(), 590),
                ("sip:alice@10.0.0.5:5080".into(), 590),
                ("sip:alice@10.0.0.5:5070".into(), 120),
            ]
        );
    }

    fn facts<'a>(
        auth: Option<&'a str>,
        contacts: &'a [NameAddr],
        uri: &'a str,
        ip: [u8; 4],
    ) -> Register<'a> {
        Register {
            to_user: Some("alice"),
            authorization: auth,
            contacts,
            star: false,
            expires: None,
            uri,
            source: Peer {
                transport: Transport::Udp,
                addr: std::net::SocketAddr::from((ip, 5060)),
            },
        }
    }

    #[test]
    fn a_captured_authorization_cannot_be_played_again() {
        let mut r = registrar();
        let contacts = [contact("sip:alice@10.0.0.5", None)];
        let nonce = nonce_of(&r.register(
            &facts(None, &contacts, "sip:127.0.0.1", [192, 0, 2, 7]),
            1000,
        ));
        let auth = answer_for(&r, "alice", "alice", &nonce, Algorithm::Md5);
        assert!(matches!(
            r.register(
                &facts(Some(&auth), &contacts, "sip:127.0.0.1", [192, 0, 2, 7]),
                1000
            ),
            Answer::Ok(_)
        ));
        // The same bytes again, from the attacker: to unregister everyone.
        let star = Register {
            star: true,
            expires: Some(0),
            contacts: &[],
            ..facts(Some(&auth), &[], "sip:127.0.0.1", [203, 0, 113, 9])
        };
        assert!(matches!(r.register(&star, 1010), Answer::Challenge(_)));
        assert_eq!(r.bindings("alice", 1020).len(), 1, "still registered");
        // The phone's next use of the same nonce counts up: fine.
        let next = auth.replace("nc=00000001", "nc=00000002");
        let h1 = ha1(Algorithm::Md5, "alice", "permanence", "alice");
        let h2 = Algorithm::Md5.hash("REGISTER:sip:127.0.0.1");
        let cnonce = auth
            .split("cnonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let response = Algorithm::Md5.hash(&format!("{h1}:{nonce}:00000002:{cnonce}:auth:{h2}"));
        let old = auth
            .split("response=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let next = next.replace(old, &response);
        assert!(matches!(
            r.register(
                &facts(Some(&next), &contacts, "sip:127.0.0.1", [192, 0, 2, 7]),
                1020
            ),
            Answer::Ok(_)
        ));
    }

    #[test]
    fn only_qop_auth_answers_for_this_request_uri_are_taken() {
        let mut r = registrar();
        let contacts = [contact("sip:alice@10.0.0.5", None)];
        let nonce = nonce_of(&r.register(
            &facts(None, &contacts, "sip:127.0.0.1", [192, 0, 2, 7]),
            1000,
        ));
        // RFC 2069: no qop, no cnonce, no count.
        let h1 = ha1(Algorithm::Md5, "alice", "permanence", "alice");
        let h2 = Algorithm::Md5.hash("REGISTER:sip:127.0.0.1");
        let response = Algorithm::Md5.hash(&format!("{h1}:{nonce}:{h2}"));
        let old_style = format!(
            "Digest username=\"alice\", realm=\"permanence\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1\", response=\"{response}\""
        );
        assert!(matches!(
            r.register(
                &facts(Some(&old_style), &contacts, "sip:127.0.0.1", [192, 0, 2, 7]),
                1000
            ),
            Answer::Challenge(_)
        ));
        // Right credentials, for another Request-URI than the one they came with.
        let auth = answer_for(&r, "alice", "alice", &nonce, Algorithm::Md5);
        assert!(matches!(
            r.register(
                &facts(Some(&auth), &contacts, "sip:other.example", [192, 0, 2, 7]),
                1000
            ),
            Answer::Challenge(_)
        ));
        assert!(r.bindings("alice", 1001).is_empty());
    }

    #[test]
    fn a_digest_uri_names_this_target_or_nothing() {
        let ruri = "sip:+33180000001@127.0.0.1:5060;user=phone";
        assert!(same_target(ruri, ruri));
        assert!(same_target("sip:127.0.0.1:5060", ruri), "SIPp's form");
        assert!(same_target("sip:+33180000001@127.0.0.1:5060", ruri));
        assert!(!same_target("sip:127.0.0.1:5061", ruri), "another port");
        assert!(!same_target("sip:evil.example", ruri));
        assert!(!same_target("sip:bob@127.0.0.1:5060", ruri), "another user");
        assert!(!same_target("tel:+33180000001", ruri));
    }

    #[test]
    fn a_source_guessing_passwords_is_banned_and_logged_once_while_others_register() {
        let mut r = registrar();
        let contacts = [contact("sip:alice@10.0.0.5", None)];
        let attacker = [203, 0, 113, 9];
        for guess in 0..4 {
            let nonce =
                nonce_of(&r.register(&facts(None, &contacts, "sip:127.0.0.1", attacker), 1000));
            let wrong = answer_for(
                &r,
                "alice",
                &format!("guess{guess}"),
                &nonce,
                Algorithm::Md5,
            );
            assert!(matches!(
                r.register(
                    &facts(Some(&wrong), &contacts, "sip:127.0.0.1", attacker),
                    1000
                ),
                Answer::Challenge(_)
            ));
        }
        let nonce = nonce_of(&r.register(&facts(None, &contacts, "sip:127.0.0.1", attacker), 1000));
        let wrong = answer_for(&r, "alice", "guess5", &nonce, Algorithm::Md5);
        assert_eq!(
            r.register(
                &facts(Some(&wrong), &contacts, "sip:127.0.0.1", attacker),
                1000
            ),
            Answer::Banned
        );
        let bans = r.take_bans();
        assert_eq!(bans.len(), 1);
        assert_eq!((bans[0].failures, bans[0].until), (5, 1600));
        // Banned: even the right password is not looked at, and nothing more is logged.
        let right = answer_for(&r, "alice", "alice", &nonce, Algorithm::Md5);
        assert_eq!(
            r.register(
                &facts(Some(&right), &contacts, "sip:127.0.0.1", attacker),
                1001
            ),
            Answer::Banned
        );
        assert!(r.take_bans().is_empty());
        // alice's own phone, elsewhere, registers.
        assert!(matches!(
            register_alice(&mut r, &contacts, 5062, 1002),
            Answer::Ok(_)
        ));
    }
}
