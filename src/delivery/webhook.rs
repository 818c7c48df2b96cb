//! Webhooks: a message delivered as a JSON POST signed per the Standard Webhooks
//! specification (<https://www.standardwebhooks.com>, `spec/standard-webhooks.md`).
//!
//! Each attempt carries `webhook-id` (the idempotency key: the same on every attempt),
//! `webhook-timestamp` (this attempt's time, unix seconds) and `webhook-signature:
//! v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed by the bytes behind the
//! endpoint's `whsec_<base64>` secret. Checking, signing and verifying are plain functions;
//! [`send`] is one attempt over HTTP/1.1, or HTTPS with rustls and Mozilla's roots. Retrying
//! (when, how often, for how long) is the outbox worker's: [`WebhookError::retryable`] says
//! whether an attempt is worth repeating.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::{DecodePaddingMode, general_purpose};
use hmac::{KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Where one endpoint's webhooks go: `[[webhooks]]` in the config, read and checked there
/// (with [`check_url`] and [`check_secret`]).
pub use crate::config::WebhookConfig;

/// Why a webhook could not be signed, sent or verified. No variant carries the secret, and
/// none the URL (its path or query may hold a receiver's token): the host is enough.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The configured secret is not `whsec_` + base64 of 24 to 64 bytes.
    #[error("webhook secret: {0}")]
    Secret(&'static str),
    /// The id cannot be a `webhook-id`.
    #[error("webhook id: {0}")]
    Id(&'static str),
    /// The configured URL is not one we send to.
    #[error("webhook URL: {0}")]
    Url(String),
    /// A CA certificate given for the client could not be read.
    #[error("webhook CA certificates: {0}")]
    Roots(String),
    /// No TCP connection (refused, unreachable, name not resolved).
    #[error("webhook to {host}: cannot connect: {source}")]
    Connect {
        host: String,
        source: std::io::Error,
    },
    /// The TLS handshake failed (certificate not trusted, wrong name, protocol).
    #[error("webhook to {host}: TLS: {source}")]
    Tls {
        host: String,
        source: std::io::Error,
    },
    /// The whole attempt took longer than the client's bound.
    #[error("webhook to {host}: no answer within {seconds} s")]
    Timeout { host: String, seconds: u64 },
    /// The HTTP exchange broke off (connection reset, malformed answer).
    #[error("webhook to {host}: HTTP: {source}")]
    Http { host: String, source: hyper::Error },
    /// The receiver answered, but not with a 2xx.
    #[error("webhook to {host}: answered {status}{}", excerpt_suffix(.excerpt))]
    Status {
        host: String,
        status: u16,
        /// `Retry-After` in seconds, when the receiver gave one (bounded to a day).
        retry_after: Option<Duration>,
        /// The start of the answer's body, on one line, control characters removed.
        excerpt: String,
    },
    /// [`verify`]: a header is missing or malformed, the time is off, or no signature
    /// matches.
    #[error("webhook not verified: {0}")]
    Rejected(&'static str),
}

fn excerpt_suffix(excerpt: &str) -> String {
    if excerpt.is_empty() {
        String::new()
    } else {
        format!(": {excerpt}")
    }
}

impl WebhookError {
    /// Whether the same attempt may succeed later: the receiver was unreachable, slow or
    /// overloaded (5xx, 429, 408). A configuration error, a redirect (the spec: update
    /// the URL rather than follow) or any other 4xx will get the same answer again.
    pub fn retryable(&self) -> bool {
        match self {
            WebhookError::Connect { .. }
            | WebhookError::Tls { .. }
            | WebhookError::Timeout { .. }
            | WebhookError::Http { .. } => true,
            WebhookError::Status { status, .. } => {
                (500..=599).contains(status) || *status == 429 || *status == 408
            }
            WebhookError::Secret(_)
            | WebhookError::Id(_)
            | WebhookError::Url(_)
            | WebhookError::Roots(_)
            | WebhookError::Rejected(_) => false,
        }
    }

    /// How long the receiver asked us to wait (`Retry-After` in seconds), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            WebhookError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The prefix of a symmetric signing secret (spec, "Secret serialization").
pub const SECRET_PREFIX: &str = "whsec_";

/// The length of the key behind a secret (spec: "Between 24 bytes (192 bits) and 64 bytes").
const KEY_BYTES: RangeInclusive<usize> = 24..=64;

/// How far a `webhook-timestamp` may be from the receiver's clock, either way: the
/// reference libraries' five minutes (the spec asks for "some allowable tolerance").
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// The longest `webhook-id` we send.
const ID_MAX: usize = 128;

/// The longest URL we accept.
const URL_MAX: usize = 2048;

/// How long one attempt may take, connection, TLS, request and answer together. The
/// spec recommends giving receivers 15 to 30 s; the lower end, so that one slow receiver
/// holds up the worker as little as possible.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// How much of a failed answer's body is read, and how many characters of it are kept
/// for the outbox's last error.
const EXCERPT_BYTES: usize = 1024;
const EXCERPT_CHARS: usize = 200;

/// The most an answer's head may take (hyper's smallest allowed buffer is 8 KiB).
const MAX_HEAD: usize = 16 * 1024;

/// `Retry-After` beyond this is read as this.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(24 * 3600);

/// Standard base64, with or without padding: the reference libraries accept both.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The key behind a `whsec_` secret.
fn key(secret: &str) -> Result<Vec<u8>, WebhookError> {
    let Some(encoded) = secret.strip_prefix(SECRET_PREFIX) else {
        return Err(WebhookError::Secret("must start with `whsec_`"));
    };
    let key = LENIENT
        .decode(encoded)
        .map_err(|_| WebhookError::Secret("`whsec_` must be followed by standard base64"))?;
    if !KEY_BYTES.contains(&key.len()) {
        return Err(WebhookError::Secret(
            "the base64 must encode 24 to 64 bytes (e.g. 32 random bytes)",
        ));
    }
    Ok(key)
}

/// A `webhook-id` must go into a header unchanged and must not contain the signed
/// content's separator (the spec: "not be allowed to include any `.`").
fn check_id(id: &str) -> Result<(), WebhookError> {
    if id.is_empty() || id.len() > ID_MAX {
        return Err(WebhookError::Id("1 to 128 characters"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':'))
    {
        return Err(WebhookError::Id("only letters, digits, `_`, `-` and `:`"));
    }
    Ok(())
}

/// The MAC of `id.timestamp.body` (spec, "Signature scheme").
fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length; ours is already 24 to 64 bytes.
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` value for one attempt: `v1,` and the base64 of
/// HMAC-SHA256(key, `id.timestamp.body`).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, WebhookError> {
    let key = key(secret)?;
    check_id(id)?;
    let tag = mac(&key, id, timestamp, body).finalize().into_bytes();
    Ok(format!("v1,{}", STANDARD.encode(tag)))
}

/// What a receiver does with an attempt: the three headers' values and the raw body,
/// checked against `secret` at `now`. Accepts when the timestamp is within
/// [`TOLERANCE_SECONDS`] of `now` and any `v1` signature in the space-separated list
/// matches (compared in constant time); other versions (`v1a`) are skipped.
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: jiff::Timestamp,
) -> Result<(), WebhookError> {
    let key = key(secret)?;
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookError::Rejected("webhook-timestamp is not unix seconds"))?;
    // abs_diff: a hostile timestamp near i64::MIN must not overflow.
    if now.as_second().abs_diff(sent) > TOLERANCE_SECONDS.unsigned_abs() {
        return Err(WebhookError::Rejected(
            "webhook-timestamp too far from the receiver's clock",
        ));
    }
    let expected = mac(&key, id, sent, body);
    // A rotation sends a handful of signatures; more is someone probing.
    for candidate in signatures.split(' ').filter(|s| !s.is_empty()).take(8) {
        let Some(("v1", encoded)) = candidate.split_once(',') else {
            continue;
        };
        let Ok(tag) = STANDARD.decode(encoded) else {
            continue;
        };
        if expected.clone().verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    Err(WebhookError::Rejected("no v1 signature matches"))
}

/// Whether a `[[webhooks]]` entry can be used: its URL ([`check_url`]) and its secret
/// ([`check_secret`]). The message names neither's value.
pub fn check_config(hook: &WebhookConfig) -> Result<(), String> {
    check_url(&hook.url)?;
    check_secret(&hook.secret)
}

/// Whether `url` is one we send to: `http://` or `https://`, a host, no user or password
/// (the secret authenticates us), at most 2048 characters.
pub fn check_url(url: &str) -> Result<(), String> {
    Target::parse(url).map(drop).map_err(|e| e.to_string())
}

/// Whether `secret` is `whsec_` followed by the standard base64 of 24 to 64 bytes.
pub fn check_secret(secret: &str) -> Result<(), String> {
    key(secret).map(drop).map_err(|e| e.to_string())
}

/// A fresh secret for an operator's config: `whsec_` and 32 bytes from the operating
/// system's generator.
pub fn new_secret() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(format!(
        "{SECRET_PREFIX}{}",
        general_purpose::STANDARD.encode(bytes)
    ))
}

/// A webhook URL taken apart for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    tls: bool,
    /// The host to connect to and to name in TLS (an IPv6 address without brackets).
    host: String,
    port: u16,
    /// The `Host` header: the host as written in URLs, and the port unless the default.
    authority: String,
    /// The request target: path and query.
    path: String,
}

impl Target {
    fn parse(text: &str) -> Result<Target, WebhookError> {
        if text.len() > URL_MAX {
            return Err(WebhookError::Url("longer than 2048 characters".into()));
        }
        let url = url::Url::parse(text).map_err(|e| WebhookError::Url(format!("{e}")))?;
        let tls = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => {
                return Err(WebhookError::Url(
                    "only http:// and https:// URLs are sent to".into(),
                ));
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(WebhookError::Url(
                "no user or password in the URL: the signature authenticates us".into(),
            ));
        }
        let (host, authority) = match url.host() {
            Some(url::Host::Domain(name)) if !name.is_empty() => (name.to_owned(), name.to_owned()),
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), ip.to_string()),
            Some(url::Host::Ipv6(ip)) => (ip.to_string(), format!("[{ip}]")),
            _ => return Err(WebhookError::Url("a host is needed".into())),
        };
        // Always known for http and https.
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let authority = match url.port() {
            Some(port) => format!("{authority}:{port}"),
            None => authority,
        };
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        Ok(Target {
            tls,
            host,
            port,
            authority,
            path,
        })
    }
}

/// One attempt's request, headers signed at `now`: nothing here touches the network.
fn request(
    target: &Target,
    secret: &str,
    id: &str,
    body: &[u8],
    now: jiff::Timestamp,
) -> Result<Request<Full<Bytes>>, WebhookError> {
    let timestamp = now.as_second();
    let signature = sign(secret, id, timestamp, body)?;
    Request::builder()
        .method(Method::POST)
        .uri(target.path.as_str())
        .header(header::HOST, target.authority.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .header(
            header::USER_AGENT,
            concat!("permanence/", env!("CARGO_PKG_VERSION")),
        )
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp)
        .header("webhook-signature", signature)
        .body(Full::new(Bytes::copy_from_slice(body)))
        // The URL was parsed and re-serialised by the WHATWG rules, the id checked.
        .map_err(|e| WebhookError::Url(format!("cannot make a request of it: {e}")))
}

/// The `Retry-After` of an answer, in its delta-seconds form (the date form is ignored).
fn retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let seconds: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(RETRY_AFTER_MAX))
}

/// The start of an answer's body as one line of plain text, for a person reading the
/// outbox: invalid UTF-8 replaced, control characters and runs of spaces made one space.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    let mut chars = 0;
    for word in text
        .split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
            chars += 1;
        }
        for c in word.chars() {
            if chars >= EXCERPT_CHARS {
                out.push('…');
                return out;
            }
            // Bidi controls are not `is_control`, but would reorder a terminal's line.
            if matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
            {
                continue;
            }
            out.push(c);
            chars += 1;
        }
    }
    out
}

/// An HTTP client for webhooks: the CAs it trusts and its time bound. [`send`] uses one
/// with Mozilla's roots and [`TIMEOUT`]; tests and private receivers can add a CA.
#[derive(Clone)]
pub struct Sender {
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// Trusts Mozilla's CA list (compiled in), bounded by [`TIMEOUT`].
    pub fn new() -> Sender {
        Sender::with_roots(Vec::new()).expect("Mozilla's roots and the ring provider are valid")
    }

    /// Trusts Mozilla's CA list and the CA certificates in the PEM file `ca` (a private CA,
    /// a test's). A server's own self-signed certificate works only without `CA:TRUE`,
    /// which `openssl req -x509` adds: webpki refuses a CA certificate as a server's.
    pub fn with_extra_roots(ca: &Path) -> Result<Sender, WebhookError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_file_iter(ca)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| WebhookError::Roots(format!("{}: {e}", ca.display())))?;
        if certs.is_empty() {
            return Err(WebhookError::Roots(format!(
                "{}: no PEM certificate in it",
                ca.display()
            )));
        }
        Sender::with_roots(certs)
    }

    fn with_roots(
        extra: Vec<rustls::pki_types::CertificateDer<'static>>,
    ) -> Result<Sender, WebhookError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for cert in extra {
            roots
                .add(cert)
                .map_err(|e| WebhookError::Roots(e.to_string()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| WebhookError::Roots(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Sender {
            tls: Arc::new(config),
            timeout: TIMEOUT,
        })
    }

    /// The same client with another bound on one attempt.
    pub fn with_timeout(mut self, timeout: Duration) -> Sender {
        self.timeout = timeout;
        self
    }

    /// One attempt: POSTs `body` to `hook.url`, signed at `now` with `hook.secret` and
    /// `id` as `webhook-id`. `Ok` only for a 2xx; redirects are not followed.
    pub async fn send(
        &self,
        hook: &WebhookConfig,
        id: &str,
        body: &[u8],
        now: jiff::Timestamp,
    ) -> Result<(), WebhookError> {
        let target = Target::parse(&hook.url)?;
        let request = request(&target, &hook.secret, id, body, now)?;
        let attempt = self.attempt(&target, request);
        let result = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(WebhookError::Timeout {
                host: target.host.clone(),
                seconds: self.timeout.as_secs_f64().ceil() as u64,
            }),
        };
        match &result {
            Ok(()) => tracing::debug!(host = %target.host, id, "webhook delivered"),
            Err(e) => {
                tracing::debug!(host = %target.host, id, error = %e, "webhook attempt failed")
            }
        }
        result
    }

    async fn attempt(
        &self,
        target: &Target,
        request: Request<Full<Bytes>>,
    ) -> Result<(), WebhookError> {
        let host = target.host.as_str();
        let tcp = TcpStream::connect((host, target.port))
            .await
            .map_err(|source| WebhookError::Connect {
                host: host.to_owned(),
                source,
            })?;
        // The request goes out in one or two writes; no reason to wait for more.
        let _ = tcp.set_nodelay(true);
        if !target.tls {
            return exchange(tcp, request, host).await;
        }
        let name = ServerName::try_from(host.to_owned()).map_err(|_| {
            WebhookError::Url("the host is not a name a certificate can carry".into())
        })?;
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
            .connect(name, tcp)
            .await
            .map_err(|source| WebhookError::Tls {
                host: host.to_owned(),
                source,
            })?;
        exchange(tls, request, host).await
    }
}

impl Default for Sender {
    fn default() -> Sender {
        Sender::new()
    }
}

/// The client [`send`] uses, built once (parsing Mozilla's roots each time would be waste).
fn shared() -> &'static Sender {
    static SHARED: OnceLock<Sender> = OnceLock::new();
    SHARED.get_or_init(Sender::new)
}

/// One attempt with Mozilla's roots and [`TIMEOUT`]: POSTs `body` (JSON) to `hook.url`
/// with `webhook-id: id`, `webhook-timestamp` (`now`) and `webhook-signature`. `Ok` only
/// for a 2xx; see [`WebhookError::retryable`] for what to do otherwise.
pub async fn send(
    hook: &WebhookConfig,
    id: &str,
    body: &[u8],
    now: jiff::Timestamp,
) -> Result<(), WebhookError> {
    shared().send(hook, id, body, now).await
}

/// The HTTP/1.1 exchange on a connected stream: the request, then the answer's status,
/// and for a failure the start of its body. The connection is driven in this same future
/// (no task is spawned), so the caller's timeout bounds all of it and dropping it closes
/// the socket.
async fn exchange<S>(io: S, request: Request<Full<Bytes>>, host: &str) -> Result<(), WebhookError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |source| WebhookError::Http {
        host: host.to_owned(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD)
        .handshake(TokioIo::new(io))
        .await
        .map_err(http)?;
    let answer = async move {
        let response = sender.send_request(request).await.map_err(http)?;
        judge(response, host).await
    };
    tokio::pin!(answer);
    tokio::pin!(connection);
    tokio::select! {
        // The answer first: when both are ready, what was received counts.
        biased;
        result = &mut answer => result,
        ended = &mut connection => {
            if let Err(e) = ended {
                tracing::debug!(host, error = %e, "webhook connection ended");
            }
            // The connection is over: the answer resolves at once, with what it received
            // or the connection's error.
            answer.await
        }
    }
}

/// Success for a 2xx; otherwise the status, `Retry-After` and the start of the body,
/// read no further than [`EXCERPT_BYTES`].
async fn judge(response: Response<Incoming>, host: &str) -> Result<(), WebhookError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = retry_after(response.headers().get(header::RETRY_AFTER));
    let mut body = response.into_body();
    let mut kept = Vec::new();
    while kept.len() < EXCERPT_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = EXCERPT_BYTES - kept.len();
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            // The status is the answer; a body cut short changes nothing.
            Some(Err(_)) | None => break,
        }
    }
    Err(WebhookError::Status {
        host: host.to_owned(),
        status: status.as_u16(),
        retry_after,
        excerpt: excerpt(&kept),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks reference libraries' test vector (libraries/rust/src/lib.rs,
    /// `test_sign`; the same in the Python, Go and JavaScript libraries).
    const VECTOR_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const VECTOR_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const VECTOR_TIMESTAMP: i64 = 1649367553;
    const VECTOR_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const VECTOR_SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn signs_the_reference_vector() {
        assert_eq!(
            sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY).unwrap(),
            VECTOR_SIGNATURE
        );
    }

    #[test]
    fn verifies_the_reference_vector_within_the_tolerance() {
        let ts = VECTOR_TIMESTAMP.to_string();
        for now in [
            VECTOR_TIMESTAMP,
            VECTOR_TIMESTAMP + TOLERANCE_SECONDS,
            VECTOR_TIMESTAMP - TOLERANCE_SECONDS,
        ] {
            verify(
                VECTOR_SECRET,
                VECTOR_ID,
                &ts,
                VECTOR_SIGNATURE,
                VECTOR_BODY,
                at(now),
            )
            .unwrap();
        }
        for now in [
            VECTOR_TIMESTAMP + TOLERANCE_SECONDS + 1,
            VECTOR_TIMESTAMP - TOLERANCE_SECONDS - 1,
        ] {
            let refused = verify(
                VECTOR_SECRET,
                VECTOR_ID,
                &ts,
                VECTOR_SIGNATURE,
                VECTOR_BODY,
                at(now),
            );
            assert!(
                matches!(refused, Err(WebhookError::Rejected(_))),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn verify_refuses_what_was_not_signed() {
        let ts = VECTOR_TIMESTAMP.to_string();
        let now = at(VECTOR_TIMESTAMP);
        let refused = |id: &str, ts: &str, sigs: &str, body: &[u8]| {
            verify(VECTOR_SECRET, id, ts, sigs, body, now).is_err()
        };
        // Another body, id, timestamp (within the tolerance) or key.
        assert!(refused(VECTOR_ID, &ts, VECTOR_SIGNATURE, b"{}"));
        assert!(refused("msg_other", &ts, VECTOR_SIGNATURE, VECTOR_BODY));
        assert!(refused(
            VECTOR_ID,
            &(VECTOR_TIMESTAMP + 1).to_string(),
            VECTOR_SIGNATURE,
            VECTOR_BODY
        ));
        let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        assert!(verify(other, VECTOR_ID, &ts, VECTOR_SIGNATURE, VECTOR_BODY, now).is_err());
        // The reference library's wrong signature, partial ones, the wrong version.
        assert!(refused(
            VECTOR_ID,
            &ts,
            "v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=",
            VECTOR_BODY
        ));
        assert!(refused(VECTOR_ID, &ts, "v1,", VECTOR_BODY));
        assert!(refused(VECTOR_ID, &ts, &VECTOR_SIGNATURE[..8], VECTOR_BODY));
        assert!(refused(
            VECTOR_ID,
            &ts,
            &VECTOR_SIGNATURE.replace("v1,", "v1a,"),
            VECTOR_BODY
        ));
        assert!(refused(VECTOR_ID, &ts, "", VECTOR_BODY));
        assert!(refused(VECTOR_ID, "soon", VECTOR_SIGNATURE, VECTOR_BODY));
        assert!(refused(
            VECTOR_ID,
            &i64::MIN.to_string(),
            VECTOR_SIGNATURE,
            VECTOR_BODY
        ));
        assert!(refused(
            VECTOR_ID,
            &i64::MAX.to_string(),
            VECTOR_SIGNATURE,
            VECTOR_BODY
        ));
    }

    #[test]
    fn verify_takes_any_matching_signature_of_a_rotation() {
        let ts = VECTOR_TIMESTAMP.to_string();
        let list = format!(
            "v1a,hnO3f9T8Ytu9Hw== v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU= {VECTOR_SIGNATURE}"
        );
        verify(
            VECTOR_SECRET,
            VECTOR_ID,
            &ts,
            &list,
            VECTOR_BODY,
            at(VECTOR_TIMESTAMP),
        )
        .unwrap();
    }

    #[test]
    fn secrets_are_whsec_and_24_to_64_bytes_of_base64() {
        assert!(check_secret(VECTOR_SECRET).is_ok());
        // Padding optional, as in the reference libraries.
        assert!(check_secret(&format!("whsec_{}", STANDARD.encode([7u8; 32]))).is_ok());
        assert!(
            check_secret(&format!(
                "whsec_{}",
                STANDARD.encode([7u8; 32]).trim_end_matches('=')
            ))
            .is_ok()
        );
        assert!(check_secret(&format!("whsec_{}", STANDARD.encode([7u8; 64]))).is_ok());
        for bad in [
            "",
            "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "whsec_",
            "whsec_not base64!",
            "whsec_C2FVsBQIhrscChlQIMV-b5sSYspob7oD",
            &format!("whsec_{}", STANDARD.encode([7u8; 23])),
            &format!("whsec_{}", STANDARD.encode([7u8; 65])),
        ] {
            let error = check_secret(bad).unwrap_err();
            assert!(error.starts_with("webhook secret: "), "{error}");
            assert!(sign(bad, "msg_1", 0, b"{}").is_err());
        }
        let fresh = new_secret().unwrap();
        assert!(check_secret(&fresh).is_ok(), "{fresh}");
        assert_ne!(fresh, new_secret().unwrap());
    }

    #[test]
    fn ids_go_into_a_header_and_carry_no_dot() {
        for good in ["msg_42", "42", "message-42:webhook-1", &"a".repeat(128)] {
            assert!(sign(VECTOR_SECRET, good, 0, b"{}").is_ok(), "{good}");
        }
        for bad in [
            "",
            "msg.42",
            "msg 42",
            "msg\r\nx: y",
            "msg,1",
            "é",
            &"a".repeat(129),
        ] {
            assert!(
                matches!(sign(VECTOR_SECRET, bad, 0, b"{}"), Err(WebhookError::Id(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn urls_are_http_or_https_with_a_host_and_no_credentials() {
        let target = Target::parse("https://hooks.example.com/in/permanence?key=a%20b").unwrap();
        assert_eq!(
            target,
            Target {
                tls: true,
                host: "hooks.example.com".into(),
                port: 443,
                authority: "hooks.example.com".into(),
                path: "/in/permanence?key=a%20b".into(),
            }
        );
        let target = Target::parse("http://127.0.0.1:8081").unwrap();
        assert_eq!((target.tls, target.port), (false, 8081));
        assert_eq!(
            (target.authority.as_str(), target.path.as_str()),
            ("127.0.0.1:8081", "/")
        );
        let target = Target::parse("http://[::1]:9000/hook").unwrap();
        assert_eq!(
            (target.host.as_str(), target.authority.as_str()),
            ("::1", "[::1]:9000")
        );
        // The default port is not written in Host.
        let target = Target::parse("HTTPS://Example.COM:443/x").unwrap();
        assert_eq!(
            (target.host.as_str(), target.authority.as_str()),
            ("example.com", "example.com")
        );
        for bad in [
            "",
            "hooks.example.com/in",
            "ftp://hooks.example.com/in",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "https://user:s3cr3t@hooks.example.com/",
            "https://user@hooks.example.com/",
            "http://",
            "https://exa mple.com/",
            &format!("https://example.com/{}", "a".repeat(2048)),
        ] {
            let error = check_url(bad).expect_err(bad);
            assert!(error.starts_with("webhook URL: "), "{bad}: {error}");
            assert!(!error.contains("s3cr3t"), "{error}");
        }
    }

    #[test]
    fn check_config_names_the_problem_not_the_secret() {
        let mut hook = WebhookConfig {
            url: "https://hooks.example.com/in".into(),
            secret: VECTOR_SECRET.into(),
            company: None,
        };
        assert_eq!(check_config(&hook), Ok(()));
        hook.secret = "whsec_c2VjcmV0".into();
        let error = check_config(&hook).unwrap_err();
        assert!(
            error.contains("24 to 64 bytes") && !error.contains("c2VjcmV0"),
            "{error}"
        );
        hook.url = "gopher://hooks.example.com".into();
        assert!(check_config(&hook).unwrap_err().contains("http://"));
        assert!(!format!("{hook:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn the_request_carries_the_signed_headers_and_the_body() {
        let target = Target::parse("https://hooks.example.com:8443/in?x=1").unwrap();
        let body = br#"{"type":"message.created"}"#;
        let request = request(&target, VECTOR_SECRET, "msg_42", body, at(1_767_225_600)).unwrap();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), "/in?x=1");
        let header = |name: &str| request.headers().get(name).unwrap().to_str().unwrap();
        assert_eq!(header("host"), "hooks.example.com:8443");
        assert_eq!(header("content-type"), "application/json");
        assert_eq!(header("content-length"), body.len().to_string());
        assert_eq!(header("webhook-id"), "msg_42");
        assert_eq!(header("webhook-timestamp"), "1767225600");
        assert_eq!(
            header("webhook-signature"),
            sign(VECTOR_SECRET, "msg_42", 1_767_225_600, body).unwrap()
        );
        assert!(header("webhook-signature").starts_with("v1,"));
        verify(
            VECTOR_SECRET,
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
            body,
            at(1_767_225_601),
        )
        .unwrap();
        // A bad secret or id fails before anything is sent.
        assert!(request_fails(&target, "whsec_", "msg_42"));
        assert!(request_fails(&target, VECTOR_SECRET, "msg.42"));
    }

    fn request_fails(target: &Target, secret: &str, id: &str) -> bool {
        request(target, secret, id, b"{}", at(0)).is_err()
    }

    #[test]
    fn retryable_when_the_receiver_may_answer_otherwise_later() {
        let status = |status| WebhookError::Status {
            host: "h".into(),
            status,
            retry_after: None,
            excerpt: String::new(),
        };
        for code in [500, 502, 503, 504, 599, 429, 408] {
            assert!(status(code).retryable(), "{code}");
        }
        for code in [300, 301, 302, 307, 308, 400, 401, 403, 404, 410, 413, 422] {
            assert!(!status(code).retryable(), "{code}");
        }
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(
            WebhookError::Connect {
                host: "h".into(),
                source: io()
            }
            .retryable()
        );
        assert!(
            WebhookError::Tls {
                host: "h".into(),
                source: io()
            }
            .retryable()
        );
        assert!(
            WebhookError::Timeout {
                host: "h".into(),
                seconds: 15
            }
            .retryable()
        );
        assert!(!WebhookError::Secret("x").retryable());
        assert!(!WebhookError::Url("x".into()).retryable());
        assert!(!WebhookError::Id("x").retryable());
    }

    #[test]
    fn retry_after_in_seconds_bounded_to_a_day() {
        let value = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(
            retry_after(Some(&value("120"))),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after(Some(&value(" 5 "))),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            retry_after(Some(&value("99999999999"))),
            Some(RETRY_AFTER_MAX)
        );
        assert_eq!(
            retry_after(Some(&value("Wed, 21 Oct 2015 07:28:00 GMT"))),
            None
        );
        assert_eq!(retry_after(Some(&value("-1"))), None);
        assert_eq!(retry_after(None), None);
    }

    #[test]
    fn excerpts_are_one_short_line_of_plain_text() {
        assert_eq!(excerpt(b""), "");
        assert_eq!(
            excerpt(b"  upstream\r\n\tdown \x1b[31mred\x07 "),
            "upstream down [31mred"
        );
        assert_eq!(excerpt("a\u{202e}b\u{2066}c".as_bytes()), "abc");
        assert_eq!(excerpt(b"\xff\xfeok"), "\u{fffd}\u{fffd}ok");
        let long = excerpt(&[b'x'; 1000]);
        assert_eq!(long.chars().count(), EXCERPT_CHARS + 1);
        assert!(long.ends_with('…'));
        let error = WebhookError::Status {
            host: "hooks.example.com".into(),
            status: 503,
            retry_after: None,
            excerpt: "busy".into(),
        };
        assert_eq!(
            error.to_string(),
            "webhook to hooks.example.com: answered 503: busy"
        );
    }
}
