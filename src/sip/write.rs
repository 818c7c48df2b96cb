//! Writing responses and our own in-dialog requests. Plain string building: every header
//! a response needs is copied from the request's [`Echo`] (RFC 3261 §8.2.6.2).

use std::fmt::Write;

use super::message::{Echo, Method};

/// The product token sent in Server / User-Agent.
pub const PRODUCT: &str = concat!("Permanence/", env!("CARGO_PKG_VERSION"));

/// A fresh tag or branch suffix from the shell's RNG: 64 random bits in hex (RFC 3261
/// §19.3 asks for 32 at least).
pub fn new_tag() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// A fresh Via branch: the RFC 3261 magic cookie (§8.1.1.7) and a fresh tag.
pub fn new_branch() -> String {
    branch_from(&new_tag())
}

fn branch_from(tag: &str) -> String {
    format!("z9hG4bK{tag}")
}

/// Where the pure modules that write SIP (an outbound leg, the trunk's registration) get
/// their tags and branches: handed in by the shell, seeded, so that a test sees the same
/// messages every run. Tags only need to be unique, not secret (nonces use `getrandom`).
#[derive(Debug, Clone)]
pub struct Ids(fastrand::Rng);

impl Ids {
    /// From a seed (tests).
    pub fn with_seed(seed: u64) -> Ids {
        Ids(fastrand::Rng::with_seed(seed))
    }

    /// Seeded from the process's RNG (the shell).
    pub fn fresh() -> Ids {
        Ids::with_seed(fastrand::u64(..))
    }

    /// Another generator, for a leg of its own.
    pub fn fork(&mut self) -> Ids {
        Ids::with_seed(self.0.u64(..))
    }

    /// A fresh tag.
    pub fn tag(&mut self) -> String {
        format!("{:016x}", self.0.u64(..))
    }

    /// A fresh Via branch.
    pub fn branch(&mut self) -> String {
        branch_from(&self.tag())
    }
}

/// Methods we accept, for Allow (RFC 3261 §20.5).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER, REFER, NOTIFY";

/// The standard reason phrase for a status (RFC 3261 §21, and the RFCs that added codes).
pub fn reason(status: u16) -> &'static str {
    named_reason(status).unwrap_or(match status / 100 {
        // A code we do not name still says its class (RFC 3261 §21: the class is what a
        // peer acts on).
        1 => "Session Progress",
        2 => "OK",
        3 => "Redirection",
        4 => "Client Error",
        5 => "Server Error",
        _ => "Global Failure",
    })
}

/// RFC 3261 §21, with the codes later RFCs added that a server may meet or send.
fn named_reason(status: u16) -> Option<&'static str> {
    Some(match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        433 => "Anonymity Disallowed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        _ => return None,
    })
}

/// Writes a response. `to_tag` is added to To unless it already carries one; 100 Trying
/// never gets one (RFC 3261 §8.2.6.2). `extra` headers are written as given.
pub fn response(
    echo: &Echo,
    status: u16,
    to_tag: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Vec<u8> {
    let mut out = String::with_capacity(512);
    let _ = write!(out, "SIP/2.0 {status} {}\r\n", reason(status));
    for via in &echo.via {
        let _ = write!(out, "Via: {via}\r\n");
    }
    let _ = write!(out, "From: {}\r\n", echo.from);
    let has_tag = echo
        .to
        .split(';')
        .skip(1)
        .any(|p| p.trim().to_ascii_lowercase().starts_with("tag="));
    match to_tag {
        Some(tag) if !has_tag && status > 100 => {
            let _ = write!(out, "To: {};tag={tag}\r\n", echo.to);
        }
        _ => {
            let _ = write!(out, "To: {}\r\n", echo.to);
        }
    }
    let _ = write!(
        out,
        "Call-ID: {}\r\nCSeq: {}\r\nServer: {PRODUCT}\r\n",
        echo.call_id, echo.cseq
    );
    if (101..300).contains(&status) {
        for route in &echo.record_route {
            let _ = write!(out, "Record-Route: {route}\r\n");
        }
    }
    for (name, value) in extra {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    finish(out, body)
}

fn finish(mut out: String, body: Option<(&str, &[u8])>) -> Vec<u8> {
    match body {
        Some((content_type, body)) => {
            let _ = write!(
                out,
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let mut bytes = out.into_bytes();
            bytes.extend_from_slice(body);
            bytes
        }
        None => {
            out.push_str("Content-Length: 0\r\n\r\n");
            out.into_bytes()
        }
    }
}

/// What we need to send a request inside a dialog that a caller started (we are the UAS,
/// so our From is their To plus our tag, RFC 3261 §12.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogHeaders {
    /// Where to send: the caller's Contact URI (remote target).
    pub remote_target: String,
    /// Our side: the INVITE's To value, with our tag appended.
    pub local: String,
    /// Their side: the INVITE's From value as received.
    pub remote: String,
    /// Call-ID.
    pub call_id: String,
    /// The dialog's route set (Record-Route, RFC 3261 §12.1): sent as Route headers.
    pub route: Vec<String>,
}

/// Writes an in-dialog request such as BYE, with the Via we are reachable at.
pub fn in_dialog_request(
    dialog: &DialogHeaders,
    method: &Method,
    cseq: u32,
    via_sent_by: &str,
    transport: &str,
    branch: &str,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    in_dialog_request_with_body(
        dialog,
        method,
        cseq,
        via_sent_by,
        transport,
        branch,
        extra,
        None,
    )
}

/// The same with a body (`(content type, bytes)`), e.g. a NOTIFY's sipfrag.
#[allow(clippy::too_many_arguments)]
pub fn in_dialog_request_with_body(
    dialog: &DialogHeaders,
    method: &Method,
    cseq: u32,
    via_sent_by: &str,
    transport: &str,
    branch: &str,
    extra: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
) -> Vec<u8> {
    let mut out = String::with_capacity(400);
    let _ = write!(
        out,
        "{method} {} SIP/2.0\r\nVia: SIP/2.0/{transport} {via_sent_by};branch={branch};rport\r\nMax-Forwards: 70\r\n\
         From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nUser-Agent: {PRODUCT}\r\n",
        dialog.remote_target, dialog.local, dialog.remote, dialog.call_id
    );
    if !dialog.route.is_empty() {
        let _ = write!(out, "Route: {}\r\n", dialog.route.join(", "));
    }
    for (name, value) in extra {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    finish(out, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::SipMessage;
    use crate::sip::parse::parse;

    fn echo() -> Echo {
        Echo {
            via: vec![
                "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx".into(),
                "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKy".into(),
            ],
            from: "<sip:a@x>;tag=1".into(),
            to: "<sip:b@y>".into(),
            call_id: "cid".into(),
            cseq: "1 INVITE".into(),
            record_route: vec!["<sip:proxy.example;lr>".into()],
        }
    }

    #[test]
    fn response_copies_headers_and_tags_to() {
        let text = String::from_utf8(response(&echo(), 486, Some("T"), &[], None)).unwrap();
        assert!(text.starts_with("SIP/2.0 486 Busy Here\r\n"));
        assert!(text.contains("Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKy\r\n"));
        assert!(text.contains("To: <sip:b@y>;tag=T\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        assert!(
            !text.contains("Record-Route"),
            "a final refusal creates no dialog"
        );
        let ok = String::from_utf8(response(&echo(), 200, Some("T"), &[], None)).unwrap();
        assert!(
            ok.contains("Record-Route: <sip:proxy.example;lr>\r\n"),
            "{ok}"
        );
        let trying = String::from_utf8(response(&echo(), 100, Some("T"), &[], None)).unwrap();
        assert!(trying.contains("To: <sip:b@y>\r\n"));
    }

    #[test]
    fn our_requests_parse_back() {
        let d = DialogHeaders {
            remote_target: "sip:caller@127.0.0.1:5070".into(),
            local: "<sip:+33180000001@127.0.0.1>;tag=ours".into(),
            remote: "<sip:+336@127.0.0.1>;tag=theirs".into(),
            call_id: "cid".into(),
            route: vec!["<sip:p1.example;lr>".into(), "<sip:p2.example;lr>".into()],
        };
        let bytes = in_dialog_request(
            &d,
            &Method::Bye,
            2,
            "127.0.0.1:5060",
            "UDP",
            "z9hG4bKb",
            &[],
        );
        let SipMessage::Request(r) = parse(&bytes).unwrap() else {
            panic!()
        };
        assert_eq!(r.method, Method::Bye);
        assert_eq!(r.from.tag.as_deref(), Some("ours"));
        assert_eq!(r.to.tag.as_deref(), Some("theirs"));
        assert_eq!(r.cseq.seq, 2);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n"));
    }

    #[test]
    fn every_status_we_send_has_its_standard_reason_phrase() {
        for (status, phrase) in [
            (202, "Accepted"),
            (407, "Proxy Authentication Required"),
            (483, "Too Many Hops"),
            (481, "Call/Transaction Does Not Exist"),
            (503, "Service Unavailable"),
        ] {
            assert_eq!(reason(status), phrase);
        }
        assert_eq!(
            reason(499),
            "Client Error",
            "an unnamed code says its class"
        );
        assert!((100..700).all(|s| reason(s) != "Unknown"));
    }
}
