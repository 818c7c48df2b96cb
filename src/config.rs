//! The server's own settings (`config/permanence.toml`), typed, with every default
//! written once here. Relative paths are relative to the config file's directory.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read. The OS error is part of the message and not also a
    /// `source()`, so that printing the error chain (`{:#}`) says it once.
    #[error("{path}: cannot read: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not valid for this schema (line 0: about the whole file, no position).
    #[error("{path}{}: {message}", position(*.line, *.column))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong and what was expected.
        message: String,
    },
}

/// `:line:column`, or nothing for an error about the whole file (line 0).
fn position(line: usize, column: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}:{column}")
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// SIP listener.
    #[serde(default)]
    pub sip: SipConfig,
    /// RTP.
    #[serde(default)]
    pub media: MediaConfig,
    /// Where files live.
    #[serde(default)]
    pub paths: PathsConfig,
    /// Bounds on resources.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Registrar for secretaries' softphones.
    #[serde(default)]
    pub registrar: RegistrarConfig,
    /// The secretaries (`[[secretaries]]`).
    #[serde(default)]
    pub secretaries: Vec<crate::registrar::Secretary>,
    /// How calls are handed to secretaries.
    #[serde(default)]
    pub distribution: DistributionConfig,
    /// Which messages need attention.
    #[serde(default)]
    pub inbox: InboxConfig,
    /// Prometheus metrics.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// `[web]`: the secretaries' console.
    #[serde(default)]
    pub web: WebConfig,
    /// Executives who register phones (`[[executives]]`; plans reach them as `user:NAME`).
    /// Same fields as secretaries; `companies` and `groups` are ignored.
    #[serde(default)]
    pub executives: Vec<crate::registrar::Secretary>,
    /// The SIP trunk to the telephone network, if any.
    #[serde(default)]
    pub trunk: Option<TrunkConfig>,
    /// `[smtp]`: the server that e-mails messages to executives; none: e-mail deliveries
    /// wait in the outbox (and fail after `[delivery] give_up_hours`).
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// `[[webhooks]]`: where messages are POSTed, for every company or one.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// `[delivery]`: retries and attachments.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Where each webhook's `company` is written (line, column), for `check`.
    #[serde(skip)]
    webhook_company_at: Vec<(String, usize, usize)>,
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption at all: only for a server on this machine (loopback).
    None,
}

impl SmtpSecurity {
    /// The usual port for it.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }
    }
}

/// `[smtp]`, checked: every field is usable as it stands (a loopback server for
/// `security = "none"`, a password from one place, a From address).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawSmtp")]
pub struct SmtpConfig {
    /// Host name or IP address of the server.
    pub server: String,
    /// Its port. Default: 587 for STARTTLS, 465 for TLS, 25 for none.
    pub port: u16,
    /// `starttls` (default), `tls` or `none`.
    pub security: SmtpSecurity,
    /// The login, if the server asks for one.
    pub username: Option<String>,
    /// The login's password: from `password`, or read from the environment variable
    /// `password_env` names when the config is loaded.
    pub password: Option<String>,
    /// The sender of every e-mail (`Permanence <permanence@secretariat.example>` or a
    /// bare address).
    pub from: String,
    /// Seconds for one e-mail's whole exchange with the server. Default 30.
    pub timeout_seconds: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    server: String,
    port: Option<u16>,
    #[serde(default = "default_security")]
    security: SmtpSecurity,
    username: Option<String>,
    password: Option<String>,
    password_env: Option<String>,
    #[serde(deserialize_with = "sender")]
    from: String,
    #[serde(default = "default_smtp_timeout")]
    timeout_seconds: u64,
}

fn default_security() -> SmtpSecurity {
    SmtpSecurity::Starttls
}

fn default_smtp_timeout() -> u64 {
    30
}

impl TryFrom<RawSmtp> for SmtpConfig {
    type Error = String;

    fn try_from(raw: RawSmtp) -> Result<SmtpConfig, String> {
        let server = raw.server.trim().to_string();
        if server.is_empty()
            || server.len() > 253
            || !server
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        {
            return Err(format!(
                "smtp.server `{}`: expected a host name or an IP address",
                crate::terminal::safe(&raw.server)
            ));
        }
        if raw.security == SmtpSecurity::None && !is_loopback_host(&server) {
            return Err(format!(
                "smtp: security = \"none\" sends passwords and messages in clear, so only to a server on this machine; expected \"starttls\" or \"tls\" for `{server}`, or a loopback server (127.0.0.1, ::1, localhost)"
            ));
        }
        let password = match (raw.password, raw.password_env) {
            (Some(_), Some(_)) => {
                return Err(
                    "smtp: password and password_env both set; expected one of them".into(),
                );
            }
            (Some(p), None) => Some(p),
            (None, Some(var)) => match std::env::var(&var) {
                Ok(p) if !p.is_empty() => Some(p),
                _ => {
                    return Err(format!(
                        "smtp.password_env: the environment variable `{}` is not set; expected it to hold the SMTP password",
                        crate::terminal::safe(&var)
                    ));
                }
            },
            (None, None) => None,
        };
        if password.is_some() && raw.username.is_none() {
            return Err("smtp: a password without username; expected both".into());
        }
        if raw.timeout_seconds == 0 || raw.timeout_seconds > 600 {
            return Err("smtp.timeout_seconds: expected 1 to 600".into());
        }
        Ok(SmtpConfig {
            port: raw.port.unwrap_or(raw.security.default_port()),
            server,
            security: raw.security,
            username: raw.username,
            password,
            from: raw.from,
            timeout_seconds: raw.timeout_seconds,
        })
    }
}

/// Whether a host names this machine (a message sent there in clear never crosses a network).
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `from`: a bare address or `Name <address>`, on one line.
fn sender<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    let address = match text.rsplit_once('<') {
        Some((name, rest)) => {
            if name.chars().any(|c| c.is_control() || c == '"') {
                return Err(serde::de::Error::custom(
                    "the sender's name: expected one line without quotes",
                ));
            }
            rest.strip_suffix('>').unwrap_or("\u{0}")
        }
        None => text.as_str(),
    };
    crate::delivery::rules::EmailAddress::parse(address.trim())
        .map_err(|e| serde::de::Error::custom(format!("smtp.from: {e}")))?;
    Ok(text.trim().to_string())
}

/// `[[webhooks]]`: an HTTPS (or loopback HTTP) endpoint that receives messages as signed
/// JSON (Standard Webhooks; `delivery::webhook` sends them).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST.
    #[serde(deserialize_with = "webhook_url")]
    pub url: String,
    /// The signing secret (`whsec_` and base64 of 24 to 64 bytes, as Standard Webhooks
    /// writes it).
    #[serde(deserialize_with = "webhook_secret")]
    pub secret: String,
    /// Only this company's messages; none: every company's.
    #[serde(default)]
    pub company: Option<String>,
}

// By hand so that the secret never reaches a log line.
impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &"whsec_…")
            .field("company", &self.company)
            .finish()
    }
}

/// A webhook URL as `delivery::webhook` sends to (http or https, a host, no credentials),
/// and `http://` only to this machine: a message's content never crosses a network in
/// clear (as for `[smtp] security = "none"`).
fn webhook_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    let expected =
        "expected https://host/path (or http:// to a loopback address), without user or password";
    crate::delivery::webhook::check_url(&text)
        .map_err(|e| serde::de::Error::custom(format!("webhook url: {e}; {expected}")))?;
    let clear_to_elsewhere = url::Url::parse(&text)
        .is_ok_and(|u| u.scheme() == "http" && !u.host_str().is_some_and(is_loopback_host));
    if clear_to_elsewhere {
        return Err(serde::de::Error::custom(format!(
            "webhook url: http:// beyond this machine would send messages in clear; {expected}"
        )));
    }
    Ok(text)
}

/// A Standard Webhooks secret: `whsec_` then base64 of 24 to 64 random bytes.
fn webhook_secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let secret = String::deserialize(d)?;
    crate::delivery::webhook::check_secret(&secret).map_err(|e| {
        serde::de::Error::custom(format!(
            "{e}; expected whsec_ followed by base64 of 24 to 64 random bytes (e.g. `whsec_$(head -c 32 /dev/urandom | base64)`)"
        ))
    })?;
    Ok(secret)
}

/// `[delivery]`: how the outbox retries and what an e-mail may carry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Seconds before the first retry of a failed delivery; each retry waits twice as
    /// long as the one before. Default 30.
    pub retry_first_seconds: u32,
    /// The longest wait between two retries. Default 3600 (one hour).
    pub retry_max_seconds: u32,
    /// Hours after which a delivery that never went through is marked failed (and
    /// logged); `permanence deliveries retry ID` tries it again. Default 24.
    pub give_up_hours: u32,
    /// The largest voicemail attached to an e-mail, in bytes; a longer one is only named
    /// (it is on the console). Default 5 MiB (about 5 minutes of 8 kHz audio).
    pub attachment_max_bytes: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            retry_first_seconds: 30,
            retry_max_seconds: 3600,
            give_up_hours: 24,
            attachment_max_bytes: 5 * 1024 * 1024,
        }
    }
}

/// `[trunk]`: where calls to numbers go, and where calls from the network come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    /// The provider's SIP address (outbound proxy), `IP:port`.
    pub proxy: SocketAddr,
    /// Host part of the Request-URI for numbers (`sip:+336…@domain`). Default: the proxy.
    #[serde(default)]
    pub domain: Option<String>,
    /// Digest username for the provider's challenges.
    #[serde(default)]
    pub username: Option<String>,
    /// Digest password (the provider needs it in clear to answer challenges).
    #[serde(default)]
    pub password: Option<String>,
    /// Addresses calls from the network arrive from. Default: the proxy's.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// Register with the provider (username@domain), renewed halfway through `register_expires`.
    #[serde(default)]
    pub register: bool,
    /// Seconds asked for when registering. Default 600.
    #[serde(default = "default_register_expires")]
    pub register_expires: u32,
    /// Refuse (403) INVITEs from anywhere else than these addresses. Default false, so that
    /// softphones and test tools on the LAN can call the companies' numbers directly.
    #[serde(default)]
    pub inbound_only_from_trunk: bool,
}

fn default_register_expires() -> u32 {
    600
}

impl TrunkConfig {
    /// Addresses inbound calls may come from.
    pub fn inbound_addresses(&self) -> Vec<IpAddr> {
        if self.addresses.is_empty() {
            vec![self.proxy.ip()]
        } else {
            self.addresses.clone()
        }
    }

    /// Our answer to the provider's challenge of an INVITE to `uri` (`proxy`: a 407): the
    /// header and its value, or None without credentials or for a challenge we cannot meet.
    pub fn answer_invite_challenge(
        &self,
        proxy: bool,
        challenge: &str,
        uri: &str,
        cnonce: &str,
    ) -> Option<(&'static str, String)> {
        let (Some(user), Some(password)) = (&self.username, &self.password) else {
            return None;
        };
        let answer =
            crate::auth::answer_challenge(challenge, user, password, "INVITE", uri, cnonce)?;
        Some((crate::auth::authorization_header(proxy), answer))
    }
}

/// `[distribution]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistributionConfig {
    /// Seconds after a call during which a secretary gets no new call (to write the
    /// message down). Default 15.
    pub wrap_up_seconds: u32,
}

impl Default for DistributionConfig {
    fn default() -> Self {
        DistributionConfig {
            wrap_up_seconds: 15,
        }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `GET /metrics` (Prometheus text format) is served; none by default. Calls,
    /// refusals, registrations, bans, RTP lateness and the store's queue are exposed.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// `[web]`: the secretaries' console (a web page and its JSON API).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Where the console is served; none by default. Plain HTTP unless `tls_certificate`
    /// and `tls_key` are set: without them, only on loopback or a trusted network.
    pub listen: Option<SocketAddr>,
    /// How long a login lasts. Default 12 hours.
    pub session_hours: u32,
    /// The console's TLS certificate chain, PEM (relative to the config file): with
    /// `tls_key`, the console is served over HTTPS only and its cookie is `Secure`.
    pub tls_certificate: Option<PathBuf>,
    /// The private key of `tls_certificate`, PEM.
    pub tls_key: Option<PathBuf>,
    /// The console's address as executives reach it (`https://permanence.example.com`,
    /// behind a proxy or not): the links to their page in e-mails start with it. Default:
    /// `http(s)://` and `listen`, which only works on the server's own network.
    pub public_url: Option<String>,
    /// The server's address as secretaries' browsers reach it, advertised in the browser
    /// phone's ICE candidates (a server behind NAT names its public address). Default:
    /// `[media] ip`. Each browser phone that is on uses one UDP port of the RTP range.
    pub public_address: Option<std::net::IpAddr>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: None,
            session_hours: 12,
            tls_certificate: None,
            tls_key: None,
            public_url: None,
            public_address: None,
        }
    }
}

impl WebConfig {
    /// Where links to the executives' page start: `public_url` without its trailing `/`,
    /// else this server's own `listen` address; None when the console is not served.
    pub fn public_base(&self) -> Option<String> {
        if let Some(url) = &self.public_url {
            return Some(url.trim_end_matches('/').to_string());
        }
        let scheme = if self.tls_certificate.is_some() {
            "https"
        } else {
            "http"
        };
        self.listen.map(|addr| format!("{scheme}://{addr}"))
    }
}

/// Whether `url` can start the links in e-mails: `http://` or `https://` and a host, no
/// query, fragment, credentials, spaces or control characters (it goes into mails as is).
fn valid_public_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or_default();
    !host.is_empty()
        && url.len() <= 200
        && !url.contains(['?', '#', '@', '"', '<', '>', '\\', '`'])
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// `[inbox]`: which calls leave a message that needs attention (`inbox`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboxConfig {
    /// A caller from a real number who gives up (hangs up, or says nothing at the
    /// voicemail) after at least this many seconds left a missed call to return; shorter
    /// calls are filed. Default 5.
    pub missed_call_seconds: u32,
}

impl Default for InboxConfig {
    fn default() -> Self {
        InboxConfig {
            missed_call_seconds: 5,
        }
    }
}

/// `[registrar]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarConfig {
    /// Digest realm; the secretaries' HA1 hashes are computed with it. Default `permanence`.
    pub realm: String,
    /// Shortest registration accepted (423 below). Default 60 s.
    pub min_expires: u32,
    /// Longest registration granted. Default 3600 s.
    pub max_expires: u32,
    /// When the phone does not say. Default 600 s.
    pub default_expires: u32,
    /// How long a nonce is good for; older ones are challenged again with stale=true.
    /// Default 300 s.
    pub nonce_lifetime_seconds: u64,
    /// Seconds between OPTIONS keep-alives to each registered contact; a contact that does
    /// not answer (Timer F, 64·T1) is dropped. Default 30; 0 turns keep-alives off.
    pub keepalive_seconds: u64,
    /// Digest algorithms offered, in order: `MD5`, `SHA-256` (RFC 8760). Default MD5 only:
    /// measured here, Debian's baresip refuses a 401 that also offers SHA-256 and SIPp
    /// answers only the first challenge; use `["SHA-256", "MD5"]` once every phone speaks
    /// RFC 8760. Answers with either algorithm are always verified.
    pub algorithms: Vec<String>,
    /// Wrong credentials from one address within `auth_failure_window_seconds` that get it
    /// banned (403 to its REGISTERs and INVITEs, without checking) for `ban_seconds`.
    /// Default 10 in 60 s, banned 600 s (fail2ban's defaults are of that order); 0: never.
    pub max_auth_failures: u32,
    /// Window the failures are counted in. Default 60.
    pub auth_failure_window_seconds: u64,
    /// How long a ban lasts. Default 600.
    pub ban_seconds: u64,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            realm: "permanence".into(),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 600,
            nonce_lifetime_seconds: 300,
            algorithms: vec!["MD5".into()],
            keepalive_seconds: 30,
            max_auth_failures: 10,
            auth_failure_window_seconds: 60,
            ban_seconds: 600,
        }
    }
}

/// `[sip]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Address for both UDP and TCP. Default `127.0.0.1:5060`.
    pub listen: SocketAddr,
    /// Transports to open: `udp`, `tcp`. Default both.
    pub transports: Vec<TransportName>,
    /// RFC 3261 T1 in milliseconds (round-trip estimate; retransmission and time-out timers
    /// derive from it). Default 500, as the RFC says for the Internet.
    pub t1_ms: u64,
    /// SIP over TLS (RFC 3261 §26): where it listens (usually port 5061); none by default.
    /// Secretaries working from home register here over an encrypted channel.
    pub tls_listen: Option<SocketAddr>,
    /// The TLS certificate chain, PEM (relative to the config file). Needed with `tls_listen`.
    pub tls_certificate: Option<PathBuf>,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// Largest SIP message accepted, in bytes. Default 16384: ample for INVITE with SDP,
    /// and well under the 64 KiB UDP limit; larger messages are dropped (UDP) or close the connection (TCP).
    pub max_message_bytes: usize,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5060)),
            transports: vec![TransportName::Udp, TransportName::Tcp],
            max_message_bytes: 16384,
            t1_ms: 500,
            tls_listen: None,
            tls_certificate: None,
            tls_key: None,
        }
    }
}

/// A SIP transport name in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportName {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// `[media]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// The address RTP sockets bind to and SDP advertises. Default: the SIP listen address.
    pub address: Option<IpAddr>,
    /// First RTP port (even). Default 20000.
    pub rtp_port_min: u16,
    /// Last RTP port. Default 29999.
    pub rtp_port_max: u16,
    /// Seconds of silence (after the caller has spoken) that end a voicemail. Default 5;
    /// 0 turns silence detection off.
    pub voicemail_silence_seconds: u32,
    /// Seconds of silence from the beep on, before the caller has said anything, that end a
    /// voicemail as `no-message` (a caller who will not speak is not held for the whole
    /// maximum). Default 5; 0 turns it off.
    pub voicemail_initial_silence_seconds: u32,
    /// Seconds without RTP from either side of a bridged call before it is ended (a phone
    /// that vanished without BYE). Default 30; 0 turns the check off.
    pub rtp_timeout_seconds: u32,
}

impl MediaConfig {
    /// Calls the RTP range can carry at once: every call takes one even port for the
    /// caller and one for the phone it is bridged to (RTCP would take the odd ones).
    pub fn call_capacity(&self) -> usize {
        let first = u32::from(self.rtp_port_min) + u32::from(self.rtp_port_min & 1);
        let last = u32::from(self.rtp_port_max);
        let even_ports = if last >= first {
            (last - first) / 2 + 1
        } else {
            0
        };
        (even_ports / 2) as usize
    }

    /// How long a voicemail waits for the caller's first word (None: until its maximum).
    pub fn no_speech(&self) -> Option<Duration> {
        (self.voicemail_initial_silence_seconds > 0)
            .then(|| Duration::from_secs(u64::from(self.voicemail_initial_silence_seconds)))
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            address: None,
            rtp_port_min: 20000,
            rtp_port_max: 29999,
            voicemail_silence_seconds: 5,
            voicemail_initial_silence_seconds: 5,
            rtp_timeout_seconds: 30,
        }
    }
}

/// `[paths]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathsConfig {
    /// Data directory (SQLite file `permanence.db`). Default `../data`.
    pub data: PathBuf,
    /// Dial plans directory. Default `../dialplans`.
    pub dialplans: PathBuf,
    /// Sounds directory. Default `../sounds`.
    pub sounds: PathBuf,
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig {
            data: "../data".into(),
            dialplans: "../dialplans".into(),
            sounds: "../sounds".into(),
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Calls at once; beyond it a new INVITE gets 503 with Retry-After. Default 2000.
    pub max_calls: usize,
    /// Calls at once from one source address (a flood from one host cannot take every
    /// line); 0 means no limit. Default 0, since a trunk brings every call from one address.
    pub max_calls_per_source: usize,
    /// Seconds suggested in Retry-After when refusing for load. Default 5.
    pub retry_after_seconds: u32,
    /// Seconds a graceful stop waits for calls to end after sending BYE. Default 5.
    pub shutdown_grace_seconds: u64,
    /// TCP connections at once. Default 1024. When full, the connection idle the longest
    /// (at least 5 s) is closed for the new one.
    pub max_tcp_connections: usize,
    /// TCP connections at once from one address. Default 64 (an office's phones behind one
    /// NAT address each keep one).
    pub max_tcp_connections_per_source: usize,
    /// Seconds for a TCP message, once begun, to arrive whole; a slower sender (slowloris)
    /// is disconnected. Default 10.
    pub tcp_message_seconds: u64,
    /// New INVITEs per second from one address; more get 503 with Retry-After, that
    /// address only (Kamailio's pike). The trunk's addresses are exempt. Default 20; 0: off.
    pub max_invites_per_second_per_source: u32,
    /// Calls to numbers that reach no company, per address per minute, that each get a
    /// `calls` row; beyond, they are only counted, in one `floods` row per minute. Default 20.
    pub unknown_number_rows_per_minute: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_calls: 2000,
            max_calls_per_source: 0,
            retry_after_seconds: 5,
            shutdown_grace_seconds: 5,
            max_tcp_connections: 1024,
            max_tcp_connections_per_source: 64,
            tcp_message_seconds: 10,
            max_invites_per_second_per_source: 20,
            unknown_number_rows_per_minute: 20,
        }
    }
}

impl LimitsConfig {
    /// The graceful-stop deadline.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }
}

impl Config {
    /// Reads a config file and resolves its relative paths against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.into(),
            error,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| {
            let start = e.span().map_or(0, |s| s.start).min(text.len());
            let before = &text[..start];
            ConfigError::Invalid {
                path: path.into(),
                line: before.matches('\n').count() + 1,
                column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
                message: e.message().trim().replace('\n', " "),
            }
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.paths.data,
            &mut config.paths.dialplans,
            &mut config.paths.sounds,
        ]
        .into_iter()
        .chain(config.sip.tls_certificate.as_mut())
        .chain(config.sip.tls_key.as_mut())
        .chain(config.web.tls_certificate.as_mut())
        .chain(config.web.tls_key.as_mut())
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if config.web.tls_certificate.is_some() != config.web.tls_key.is_some() {
            return Err(ConfigError::Invalid {
                path: path.into(),
                line: 0,
                column: 0,
                message: "web: tls_certificate and tls_key go together (PEM files)".into(),
            });
        }
        if let Some(url) = &config.web.public_url
            && !valid_public_url(url)
        {
            return Err(ConfigError::Invalid {
                path: path.into(),
                line: 0,
                column: 0,
                message: "web.public_url: expected the console's address as executives reach it, e.g. \"https://permanence.example.com\" (http or https, no query)".into(),
            });
        }
        if config.registrar.algorithms.is_empty()
            || config
                .registrar
                .algorithms
                .iter()
                .any(|a| crate::auth::Algorithm::from_name(a).is_none())
        {
            return Err(ConfigError::Invalid {
                path: path.into(),
                line: 0,
                column: 0,
                message: "registrar.algorithms: expected a list of \"MD5\" and/or \"SHA-256\""
                    .into(),
            });
        }
        let d = &config.delivery;
        if d.retry_first_seconds == 0
            || d.retry_max_seconds < d.retry_first_seconds
            || d.give_up_hours == 0
        {
            return Err(ConfigError::Invalid {
                path: path.into(),
                line: 0,
                column: 0,
                message: "delivery: expected retry_first_seconds of at least 1, retry_max_seconds not below it, and give_up_hours of at least 1".into(),
            });
        }
        config.webhook_company_at = webhook_companies(&text);
        if config.media.rtp_port_min > config.media.rtp_port_max || config.media.rtp_port_min < 1024
        {
            return Err(ConfigError::Invalid {
                path: path.into(),
                line: 0,
                column: 0,
                message: "media.rtp_port_min must be at least 1024 and not above rtp_port_max"
                    .into(),
            });
        }
        Ok(config)
    }

    /// The webhooks whose `company` is none of the plans' companies, as errors at their
    /// `company` (a webhook for a company that does not exist would never be called).
    pub fn unknown_webhook_companies(
        &self,
        path: &Path,
        known: impl Fn(&str) -> bool,
    ) -> Vec<ConfigError> {
        self.webhook_company_at
            .iter()
            .filter(|(company, _, _)| !known(company))
            .map(|(company, line, column)| ConfigError::Invalid {
                path: path.into(),
                line: *line,
                column: *column,
                message: format!(
                    "webhooks: unknown company `{}`; expected the id of a company in the dial plans, or no company for all of them",
                    crate::terminal::safe(company)
                ),
            })
            .collect()
    }

    /// The address RTP binds to and SDP advertises.
    pub fn media_address(&self) -> IpAddr {
        self.media.address.unwrap_or(self.sip.listen.ip())
    }

    /// The SQLite file.
    pub fn database_path(&self) -> PathBuf {
        self.paths.data.join("permanence.db")
    }
}

/// Each `[[webhooks]]` company with its line and column (the file parsed already).
fn webhook_companies(text: &str) -> Vec<(String, usize, usize)> {
    #[derive(Deserialize)]
    struct Hooks {
        #[serde(default)]
        webhooks: Vec<Hook>,
    }
    #[derive(Deserialize)]
    struct Hook {
        company: Option<toml::Spanned<String>>,
    }
    let Ok(hooks) = toml::from_str::<Hooks>(text) else {
        return Vec::new();
    };
    hooks
        .webhooks
        .into_iter()
        .filter_map(|h| h.company)
        .map(|c| {
            let before = &text[..c.span().start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (c.into_inner(), line, column)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, String> {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
            .map_err(|e| e.to_string().replace(&path.display().to_string(), "p.toml"))
    }

    #[test]
    fn smtp_and_webhooks_are_checked_where_they_are_written() {
        let ok = load(
            "[smtp]\nserver = \"smtp.example.com\"\nusername = \"u\"\npassword = \"p\"\nfrom = \"Permanence <p@secretariat.example>\"\n\
             [[webhooks]]\nurl = \"https://hooks.example/p\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\ncompany = \"acme\"\n",
        )
        .unwrap();
        let smtp = ok.smtp.as_ref().unwrap();
        assert_eq!((smtp.port, smtp.security), (587, SmtpSecurity::Starttls));
        let unknown = ok.unknown_webhook_companies(Path::new("p.toml"), |c| c == "globex");
        assert_eq!(
            unknown.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "p.toml:9:11: webhooks: unknown company `acme`; expected the id of a company in the dial plans, or no company for all of them"
            ]
        );
        let cases = [
            (
                "[smtp]\nserver = \"smtp.example.com\"\nsecurity = \"none\"\nfrom = \"p@s.example\"\n",
                "p.toml:1:1: smtp: security = \"none\" sends passwords",
            ),
            (
                "[smtp]\nserver = \"127.0.0.1\"\nsecurity = \"ssl\"\nfrom = \"p@s.example\"\n",
                "p.toml:3:12: unknown variant `ssl`, expected one of",
            ),
            (
                "[smtp]\nserver = \"127.0.0.1\"\nfrom = \"p@s\"\n",
                "p.toml:3:8: smtp.from: `p@s` is not usable; expected an e-mail address",
            ),
            (
                "[smtp]\nserver = \"127.0.0.1\"\nfrom = \"p@s.example\"\npassword_env = \"PERMANENCE_TEST_UNSET_VARIABLE\"\nusername = \"u\"\n",
                "p.toml:1:1: smtp.password_env: the environment variable `PERMANENCE_TEST_UNSET_VARIABLE` is not set",
            ),
            (
                "[[webhooks]]\nurl = \"http://hooks.example/p\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
                "p.toml:2:7: webhook url: http:// beyond this machine",
            ),
            (
                "[[webhooks]]\nurl = \"http://127.0.0.1:9000/p\"\nsecret = \"s3cret\"\n",
                "p.toml:3:10: webhook secret: must start with `whsec_`; expected whsec_",
            ),
            (
                "[delivery]\nretry_first_seconds = 0\n",
                "p.toml: delivery: expected retry_first_seconds of at least 1",
            ),
        ];
        for (text, expected) in cases {
            let e = load(text).unwrap_err();
            assert!(e.starts_with(expected), "{e}\nexpected: {expected}");
        }
        assert!(
            load("[smtp]\nserver = \"::1\"\nsecurity = \"none\"\nfrom = \"p@s.example\"\n")
                .unwrap()
                .smtp
                .is_some_and(|s| s.port == 25),
            "none towards loopback"
        );
    }

    #[test]
    fn the_public_url_is_an_address_and_nothing_else() {
        for good in [
            "https://permanence.example.com",
            "https://permanence.example.com/",
            "http://192.0.2.1:8080",
            "https://example.com/secretariat",
        ] {
            assert!(valid_public_url(good), "{good}");
        }
        for bad in [
            "",
            "permanence.example.com",
            "ftp://example.com",
            "https://",
            "https://example.com/?a=1",
            "https://user@example.com",
            "https://exa mple.com",
            "https://example.com/\r\nBcc: x",
            "javascript:alert(1)",
        ] {
            assert!(!valid_public_url(bad), "{bad}");
        }
        let web = |public_url: Option<&str>, tls: bool| WebConfig {
            listen: Some("127.0.0.1:8080".parse().unwrap()),
            public_url: public_url.map(str::to_string),
            tls_certificate: tls.then(|| "c.pem".into()),
            ..WebConfig::default()
        };
        assert_eq!(
            web(Some("https://p.example/"), false)
                .public_base()
                .as_deref(),
            Some("https://p.example")
        );
        assert_eq!(
            web(None, false).public_base().as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            web(None, true).public_base().as_deref(),
            Some("https://127.0.0.1:8080")
        );
        assert_eq!(WebConfig::default().public_base(), None);
    }

    #[test]
    fn the_rtp_range_bounds_the_calls_two_ports_each() {
        let media = |min, max| MediaConfig {
            rtp_port_min: min,
            rtp_port_max: max,
            ..MediaConfig::default()
        };
        // The default range: 5,000 even ports, 2,500 calls, above the default 2,000.
        assert_eq!(MediaConfig::default().call_capacity(), 2500);
        assert!(LimitsConfig::default().max_calls <= MediaConfig::default().call_capacity());
        assert_eq!(
            media(20001, 20008).call_capacity(),
            2,
            "20002..20008: 4 even ports"
        );
        assert_eq!(media(30000, 30399).call_capacity(), 100);
        assert_eq!(media(40000, 30000).call_capacity(), 0);
    }
}
