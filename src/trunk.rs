//! Our registration with the SIP provider (the trunk), when it asks for one: REGISTER at
//! start and again before it lapses, answering its digest challenge (RFC 3261 §10.2,
//! §22.2). Pure: the endpoint sends what this writes and passes back what comes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::sip::write::{self, Ids};

/// How soon to try again after a refusal or no answer at all.
const RETRY: Duration = Duration::from_secs(60);

/// Where the registration stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not sent yet, or waiting to retry.
    Idle,
    /// REGISTER sent (with credentials or not), waiting for the answer.
    Pending {
        /// Whether it carried credentials.
        authenticated: bool,
    },
    /// Registered until this instant.
    Registered {
        /// When it lapses.
        until: Instant,
    },
}

/// The registration with the provider.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The provider's address.
    pub proxy: SocketAddr,
    domain: String,
    username: String,
    password: String,
    expires: u32,
    call_id: String,
    from_tag: String,
    cseq: u32,
    next_at: Instant,
    /// Where it stands.
    pub state: State,
    ids: Ids,
}

impl Registration {
    /// A registration of `username@domain` through `proxy`, first sent at `now`.
    pub fn new(
        proxy: SocketAddr,
        domain: String,
        username: String,
        password: String,
        expires: u32,
        now: Instant,
        mut ids: Ids,
    ) -> Registration {
        Registration {
            proxy,
            domain,
            username,
            password,
            expires: expires.max(60),
            call_id: format!("trunk-{}@permanence", ids.tag()),
            from_tag: ids.tag(),
            cseq: 0,
            next_at: now,
            state: State::Idle,
            ids,
        }
    }

    /// The Call-ID of our REGISTERs (to recognise their answers).
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// When [`Registration::register`] is due (none while one is in flight).
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!matches!(self.state, State::Pending { .. })).then_some(self.next_at)
    }

    /// Writes the next REGISTER (with `authorization` as `(header, value)` when answering
    /// a challenge): its branch and bytes.
    pub fn register(
        &mut self,
        local_sip: SocketAddr,
        authorization: Option<(&str, &str)>,
    ) -> (String, Vec<u8>) {
        self.cseq += 1;
        self.state = State::Pending {
            authenticated: authorization.is_some(),
        };
        let branch = self.ids.branch();
        let aor = format!("sip:{}@{}", self.username, self.domain);
        let auth = authorization
            .map(|(h, v)| format!("{h}: {v}\r\n"))
            .unwrap_or_default();
        let text = format!(
            "REGISTER sip:{} SIP/2.0\r\nVia: SIP/2.0/UDP {local_sip};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: <{aor}>;tag={}\r\nTo: <{aor}>\r\nCall-ID: {}\r\n\
             CSeq: {} REGISTER\r\nContact: <sip:{}@{local_sip}>\r\nExpires: {}\r\n{auth}\
             User-Agent: {}\r\nContent-Length: 0\r\n\r\n",
            self.domain,
            self.from_tag,
            self.call_id,
            self.cseq,
            self.username,
            self.expires,
            write::PRODUCT
        );
        (branch, text.into_bytes())
    }

    /// The provider's final answer. Returns the REGISTER to send at once, if any (the
    /// answer to a challenge).
    pub fn on_response(
        &mut self,
        status: u16,
        challenge: Option<&(bool, String)>,
        local_sip: SocketAddr,
        now: Instant,
        cnonce: &str,
    ) -> Option<(String, Vec<u8>)> {
        let authenticated = matches!(
            self.state,
            State::Pending {
                authenticated: true
            }
        );
        match (status, challenge) {
            (200..=299, _) => {
                // Renew halfway, as phones do.
                let lifetime = Duration::from_secs(u64::from(self.expires));
                self.state = State::Registered {
                    until: now + lifetime,
                };
                self.next_at = now + lifetime / 2;
                tracing::info!(proxy = %self.proxy, "registered with the trunk");
                None
            }
            (401 | 407, Some((proxy, challenge))) if !authenticated => {
                let uri = format!("sip:{}", self.domain);
                let Some(answer) = crate::auth::answer_challenge(
                    challenge,
                    &self.username,
                    &self.password,
                    "REGISTER",
                    &uri,
                    cnonce,
                ) else {
                    return self.failed(status, now);
                };
                let header = crate::auth::authorization_header(*proxy);
                Some(self.register(local_sip, Some((header, &answer))))
            }
            _ => self.failed(status, now),
        }
    }

    fn failed(&mut self, status: u16, now: Instant) -> Option<(String, Vec<u8>)> {
        tracing::warn!(proxy = %self.proxy, status, "the trunk refused our registration; retrying in 60 s");
        self.state = State::Idle;
        self.next_at = now + RETRY;
        None
    }

    /// No answer at all (Timer F).
    pub fn on_timeout(&mut self, now: Instant) {
        self.failed(408, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Method, SipMessage};
    use crate::sip::parse::parse;

    fn registration(now: Instant) -> Registration {
        Registration::new(
            "192.0.2.5:5060".parse().unwrap(),
            "trunk.example.com".into(),
            "acct42".into(),
            "s3cret".into(),
            600,
            now,
            Ids::with_seed(1),
        )
    }

    #[test]
    fn registers_answers_one_challenge_and_renews_halfway() {
        let t0 = Instant::now();
        let local: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let mut r = registration(t0);
        assert_eq!(r.poll_timeout(), Some(t0));
        let (_, first) = r.register(local, None);
        let SipMessage::Request(req) = parse(&first).unwrap() else {
            panic!()
        };
        assert_eq!((req.method, req.cseq.seq), (Method::Register, 1));
        assert_eq!(req.uri, "sip:trunk.example.com");
        assert_eq!(r.poll_timeout(), None, "one in flight");

        let challenge = (
            false,
            "Digest realm=\"trunk\", nonce=\"n1\", qop=\"auth\"".to_string(),
        );
        let (_, second) = r
            .on_response(401, Some(&challenge), local, t0, "c0ffee")
            .expect("answers the challenge");
        let SipMessage::Request(req) = parse(&second).unwrap() else {
            panic!()
        };
        assert_eq!(req.cseq.seq, 2);
        let c = crate::auth::parse_credentials(req.authorization.as_deref().unwrap()).unwrap();
        let ha1 = crate::auth::ha1(crate::auth::Algorithm::Md5, "acct42", "trunk", "s3cret");
        assert!(c.verify(&ha1, "REGISTER"));

        // A second challenge means the credentials are wrong: no loop, retry later.
        assert!(
            r.on_response(401, Some(&challenge), local, t0, "x")
                .is_none()
        );
        assert_eq!(r.poll_timeout(), Some(t0 + RETRY));

        let _ = r.register(local, None);
        assert!(r.on_response(200, None, local, t0, "x").is_none());
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(300)));
    }
}
