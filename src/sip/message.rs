//! Our model of a SIP message: the facts the server acts on, plus the raw header values a
//! response must copy (RFC 3261 §8.2.6.2). Built by `parse`, never by hand from the wire.

use super::CallId;

/// A request method. Unknown methods keep their token (RFC 3261 §7.1: methods are extensible).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// Start a call or change its session.
    Invite,
    /// Confirm a final response to INVITE.
    Ack,
    /// End a dialog.
    Bye,
    /// Abandon a pending INVITE.
    Cancel,
    /// Ask for capabilities (also used as a keep-alive).
    Options,
    /// Bind a contact (RFC 3261 §10).
    Register,
    /// Mid-call information, e.g. DTMF (RFC 6086).
    Info,
    /// Session update before the answer (RFC 3311).
    Update,
    /// Reliable provisional ack (RFC 3262).
    Prack,
    /// Event subscription (RFC 6665).
    Subscribe,
    /// Event notification (RFC 6665).
    Notify,
    /// Transfer request (RFC 3515).
    Refer,
    /// Instant message (RFC 3428).
    Message,
    /// Event publication (RFC 3903).
    Publish,
    /// Any other token.
    Other(String),
}

impl Method {
    /// Reads a method token, case-sensitively as RFC 3261 §7.1 requires.
    pub fn from_token(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        }
    }

    /// The method token as sent on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A From / To / Contact value: optional display name, URI, and header parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NameAddr {
    /// Display name, unquoted and unescaped.
    pub display: Option<String>,
    /// The URI, as written.
    pub uri: String,
    /// The URI's user part, percent-decoded (`sip:` / `sips:`), or the number of a `tel:` URI.
    pub user: Option<String>,
    /// The `tag` parameter (dialog identifier half).
    pub tag: Option<String>,
    /// The `expires` parameter (Contact in REGISTER, RFC 3261 §10.2.1.1).
    pub expires: Option<u32>,
    /// The `+sip.instance` parameter (Contact in REGISTER, RFC 5626 §4.1), unquoted, as
    /// written inside the quotes: e.g. `<urn:uuid:…>`.
    pub instance: Option<String>,
}

/// The CSeq header: sequence number and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number, below 2^31 (RFC 3261 §8.1.1.5).
    pub seq: u32,
    /// The method it numbers.
    pub method: Method,
}

/// A request, validated.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method from the request line.
    pub method: Method,
    /// The Request-URI as written.
    pub uri: String,
    /// The Request-URI's user part (percent-decoded) or a `tel:` number.
    pub uri_user: Option<String>,
    /// Call-ID.
    pub call_id: CallId,
    /// From.
    pub from: NameAddr,
    /// To.
    pub to: NameAddr,
    /// CSeq.
    pub cseq: CSeq,
    /// The top Via's branch parameter, if any.
    pub branch: Option<String>,
    /// The first Contact URI, if any.
    pub contact: Option<String>,
    /// Every Contact (REGISTER may carry several).
    pub contacts: Vec<NameAddr>,
    /// `Contact: *` (remove every binding, RFC 3261 §10.2.2).
    pub contact_star: bool,
    /// The Expires header.
    pub expires: Option<u32>,
    /// The Authorization header, as written.
    pub authorization: Option<String>,
    /// Refer-To URI (REFER), without its name-addr brackets.
    pub refer_to: Option<String>,
    /// Record-Route values, in order (our route set as the UAS, RFC 3261 §12.1.1).
    pub record_route: Vec<String>,
    /// Max-Forwards (0–255), when present.
    pub max_forwards: Option<u8>,
    /// Content-Type, lower-cased, without parameters.
    pub content_type: Option<String>,
    /// The Accept header, if present (empty string for an empty Accept).
    pub accept: Option<String>,
    /// Option tags from Require.
    pub require: Vec<String>,
    /// The body (exactly Content-Length bytes).
    pub body: Vec<u8>,
    /// Raw header values that responses copy.
    pub echo: Echo,
}

/// The header values a response copies from its request, verbatim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Echo {
    /// Every Via value, in order.
    pub via: Vec<String>,
    /// From.
    pub from: String,
    /// To (a to-tag is added by the response writer when absent).
    pub to: String,
    /// Call-ID.
    pub call_id: String,
    /// CSeq.
    pub cseq: String,
    /// Record-Route values, copied into the responses that may create a dialog
    /// (RFC 3261 §12.1.1).
    pub record_route: Vec<String>,
}

/// A response, reduced to what a client transaction needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, 100–699.
    pub status: u16,
    /// Call-ID.
    pub call_id: CallId,
    /// CSeq.
    pub cseq: CSeq,
    /// The top Via's branch.
    pub branch: Option<String>,
    /// To, as written (an ACK for a non-2xx copies it, RFC 3261 §17.1.1.3).
    pub to: String,
    /// The To tag: the remote half of the dialog.
    pub to_tag: Option<String>,
    /// The first Contact URI (the remote target of a 2xx).
    pub contact: Option<String>,
    /// Record-Route values, in order (reversed, our route set as the UAC, §12.1.2).
    pub record_route: Vec<String>,
    /// The digest challenge of a 401 (`WWW-Authenticate`, false) or 407
    /// (`Proxy-Authenticate`, true), for a leg through a trunk.
    pub challenge: Option<(bool, String)>,
    /// The body (an SDP answer), exactly Content-Length bytes.
    pub body: Vec<u8>,
}

/// Either kind of message.
#[derive(Debug, Clone)]
pub enum SipMessage {
    /// A request (boxed: it is much larger than a response).
    Request(Box<Request>),
    /// A response (boxed too: it carries its body).
    Response(Box<Response>),
}
