//! An outbound leg: the INVITE we send to a secretary's (or an executive's) phone and the
//! dialog it creates, as plain data that writes its own messages (RFC 3261 §8.1, §12.1.2,
//! §13.2, §9.1). The call task sends them and feeds back what comes.

use std::net::SocketAddr;

use crate::sip::message::{Method, Request, Response};
use crate::sip::transaction::InviteAck;
use crate::sip::write::{self, DialogHeaders, Ids};
use crate::sip::{CallId, Peer};

pub use crate::event::Role;

/// What an outbound INVITE needs to say.
#[derive(Debug, Clone)]
pub struct Invitation<'a> {
    /// Whom it calls.
    pub role: Role,
    /// Who the leg is for (secretary username, executive id): the records' name for it.
    pub who: String,
    /// The Request-URI: the registered Contact, or the dialled URI.
    pub target: String,
    /// Where the packets go (the binding's source, for phones behind NAT).
    pub peer: Peer,
    /// The To URI (the person, e.g. `sip:alice@127.0.0.1`).
    pub to_uri: String,
    /// Display name the phone shows (`ACME Plomberie · +33612345678`).
    pub display: &'a str,
    /// User part of our From URI: the caller's number, so the phone shows it.
    pub from_user: &'a str,
    /// Our SIP address on the leg's transport (the TLS listener's for a TLS leg).
    pub local_sip: SocketAddr,
    /// Extra headers (company id, call id).
    pub headers: &'a [(&'a str, &'a str)],
    /// Our SDP offer.
    pub sdp: &'a str,
    /// Max-Forwards: the caller's, less one (RFC 3261 §16.6), so a loop runs out of hops.
    pub max_forwards: u8,
    /// Where the leg's tags and branches come from.
    pub ids: Ids,
}

/// One outbound INVITE and the dialog it may create.
#[derive(Debug, Clone)]
pub struct Leg {
    /// The leg's own Call-ID.
    pub call_id: CallId,
    /// Whom it calls.
    pub role: Role,
    /// Who it rings.
    pub who: String,
    /// Where the packets go.
    pub peer: Peer,
    target: String,
    from: String,
    to: String,
    /// Our half of the dialog (the From tag) and the phone's (the 2xx's To tag).
    local_tag: String,
    remote_tag: Option<String>,
    branch: String,
    cseq: u32,
    local_sip: SocketAddr,
    /// The dialog's remote target (the 2xx's Contact) and To with its tag, once answered.
    remote_target: Option<String>,
    /// Our ACK for the 2xx, sent again for each retransmission of it.
    ack: Option<Vec<u8>>,
    /// The INVITE as sent, to send again with credentials.
    invite: String,
    /// The dialog's route set: the 2xx's Record-Route, reversed (RFC 3261 §12.1.2).
    route: Vec<String>,
    ids: Ids,
}

impl Leg {
    /// A new leg and its INVITE's bytes and ACK details.
    pub fn invite(inv: &Invitation) -> (Leg, Vec<u8>, InviteAck) {
        let mut ids = inv.ids.clone();
        let call_id = CallId(format!("{}@permanence", ids.tag()));
        let branch = ids.branch();
        let local_tag = ids.tag();
        let from = format!(
            "{} <sip:{}@{}>;tag={local_tag}",
            quote(inv.display),
            inv.from_user,
            inv.local_sip,
        );
        let to = format!("<{}>", inv.to_uri);
        let via = format!(
            "SIP/2.0/{} {};branch={branch};rport",
            inv.peer.transport_token(),
            inv.local_sip
        );
        let contact = inv.peer.contact("permanence@", inv.local_sip, None);
        let mut text = format!(
            "INVITE {} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: {}\r\nFrom: {from}\r\nTo: {to}\r\n\
             Call-ID: {}\r\nCSeq: 1 INVITE\r\nContact: {contact}\r\nUser-Agent: {}\r\n\
             Allow: {}\r\n",
            inv.target,
            inv.max_forwards,
            call_id.0,
            write::PRODUCT,
            write::ALLOW
        );
        for (name, value) in inv.headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{}",
            inv.sdp.len(),
            inv.sdp
        ));
        let ack = InviteAck {
            request_uri: inv.target.clone(),
            via,
            from: from.clone(),
            call_id: call_id.0.clone(),
            cseq: 1,
        };
        let leg = Leg {
            call_id,
            role: inv.role,
            who: inv.who.clone(),
            peer: inv.peer,
            target: inv.target.clone(),
            from,
            to,
            local_tag,
            remote_tag: None,
            branch,
            cseq: 1,
            local_sip: inv.local_sip,
            remote_target: None,
            ack: None,
            invite: text.clone(),
            route: Vec::new(),
            ids,
        };
        (leg, text.into_bytes(), ack)
    }

    /// Whether a request belongs to this leg's dialog: its Call-ID and both tags (RFC 3261
    /// §12.2.2), coming from the phone we called (or, with a route set, from anywhere the
    /// route may bring it). A stranger who only knows the Call-ID is not the dialog.
    pub fn owns(&self, request: &Request, from: Peer) -> bool {
        request.call_id == self.call_id
            && request.to.tag.as_deref() == Some(self.local_tag.as_str())
            && self.remote_tag.is_some()
            && request.from.tag == self.remote_tag
            && (!self.route.is_empty() || from.addr.ip() == self.peer.addr.ip())
    }

    /// The INVITE's Via branch (its transaction).
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// Takes the 2xx: the dialog's remote target and tag. Returns the ACK to send (the
    /// same for every retransmission of the 2xx).
    pub fn answered(&mut self, response: &Response) -> Vec<u8> {
        if let Some(ack) = &self.ack {
            return ack.clone();
        }
        self.to = response.to.clone();
        self.remote_tag = response.to_tag.clone();
        self.route = response.record_route.iter().rev().cloned().collect();
        self.remote_target = Some(
            response
                .contact
                .clone()
                .unwrap_or_else(|| self.target.clone()),
        );
        let ack = self.ack_bytes();
        self.ack = Some(ack.clone());
        ack
    }

    fn dialog(&self) -> DialogHeaders {
        DialogHeaders {
            remote_target: self
                .remote_target
                .clone()
                .unwrap_or_else(|| self.target.clone()),
            local: self.from.clone(),
            remote: self.to.clone(),
            call_id: self.call_id.0.clone(),
            route: self.route.clone(),
        }
    }

    /// The ACK for the 2xx: its own branch, the INVITE's CSeq number (RFC 3261 §13.2.2.4).
    fn ack_bytes(&mut self) -> Vec<u8> {
        let branch = self.ids.branch();
        write::in_dialog_request(
            &self.dialog(),
            &Method::Ack,
            self.cseq,
            &self.local_sip.to_string(),
            self.peer.transport_token(),
            &branch,
            &[],
        )
    }

    /// CANCEL for the pending INVITE: same branch, Request-URI, From, To and CSeq number
    /// (RFC 3261 §9.1). Returns its branch and bytes.
    pub fn cancel(&mut self) -> (String, Vec<u8>) {
        let dialog = DialogHeaders {
            remote_target: self.target.clone(),
            local: self.from.clone(),
            remote: self.to.clone(),
            call_id: self.call_id.0.clone(),
            route: Vec::new(),
        };
        let bytes = write::in_dialog_request(
            &dialog,
            &Method::Cancel,
            self.cseq,
            &self.local_sip.to_string(),
            self.peer.transport_token(),
            &self.branch,
            &[],
        );
        (self.branch.clone(), bytes)
    }

    /// A request inside the dialog (BYE, NOTIFY…), with its branch.
    pub fn request(
        &mut self,
        method: &Method,
        extra: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> (String, Vec<u8>) {
        self.cseq += 1;
        let branch = self.ids.branch();
        let bytes = write::in_dialog_request_with_body(
            &self.dialog(),
            method,
            self.cseq,
            &self.local_sip.to_string(),
            self.peer.transport_token(),
            &branch,
            extra,
            body,
        );
        (branch, bytes)
    }

    /// The INVITE again with credentials for a 401/407 (RFC 3261 §22.2): same Call-ID and
    /// From tag, the next CSeq, a new branch. Returns its branch, bytes and ACK details.
    pub fn invite_with_credentials(&mut self, header: &str, value: &str) -> (Vec<u8>, InviteAck) {
        self.cseq += 1;
        let fresh = self.ids.branch();
        let old_branch = std::mem::replace(&mut self.branch, fresh);
        let text = self
            .invite
            .replace(&old_branch, &self.branch)
            .replacen("CSeq: 1 INVITE", &format!("CSeq: {} INVITE", self.cseq), 1)
            .replacen(
                "Content-Type: application/sdp",
                &format!("{header}: {value}\r\nContent-Type: application/sdp"),
                1,
            );
        self.invite = text.clone();
        let via = format!(
            "SIP/2.0/{} {};branch={};rport",
            self.peer.transport_token(),
            self.local_sip,
            self.branch
        );
        let ack = InviteAck {
            request_uri: self.target.clone(),
            via,
            from: self.from.clone(),
            call_id: self.call_id.0.clone(),
            cseq: self.cseq,
        };
        (text.into_bytes(), ack)
    }

    /// The Request-URI of the INVITE (digest `uri`).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// BYE: ends the dialog.
    pub fn bye(&mut self) -> (String, Vec<u8>) {
        self.request(&Method::Bye, &[], None)
    }
}

/// A display name as a quoted string (RFC 3261 §25.1: `"` and `\` escaped).
fn quote(display: &str) -> String {
    let mut out = String::with_capacity(display.len() + 2);
    out.push('"');
    for c in display.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        if c != '\r' && c != '\n' {
            out.push(c);
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Transport;
    use crate::sip::message::SipMessage;
    use crate::sip::parse::parse;

    fn invitation() -> Invitation<'static> {
        Invitation {
            role: Role::Secretary,
            who: "alice".into(),
            target: "sip:alice@127.0.0.1:5070;transport=udp".into(),
            peer: Peer {
                transport: Transport::Udp,
                addr: "127.0.0.1:5070".parse().unwrap(),
            },
            to_uri: "sip:alice@127.0.0.1".into(),
            display: "ACME \"Plomberie\" · +33612345678",
            from_user: "+33612345678",
            local_sip: "127.0.0.1:5060".parse().unwrap(),
            headers: &[("X-Permanence-Company", "acme")],
            sdp: "v=0\r\n",
            max_forwards: 69,
            ids: Ids::with_seed(7),
        }
    }

    #[test]
    fn the_invite_shows_the_company_and_parses_back() {
        let (leg, bytes, ack) = Leg::invite(&invitation());
        let SipMessage::Request(r) = parse(&bytes).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.uri, "sip:alice@127.0.0.1:5070;transport=udp");
        assert_eq!(
            r.from.display.as_deref(),
            Some("ACME \"Plomberie\" · +33612345678"),
            "quoted on the wire, read back as written"
        );
        assert_eq!(r.from.user.as_deref(), Some("+33612345678"));
        assert!(r.to.tag.is_none());
        assert_eq!(r.call_id, leg.call_id);
        assert_eq!(r.body, b"v=0\r\n");
        assert_eq!(r.branch.as_deref(), Some(leg.branch.as_str()));
        assert_eq!(ack.cseq, 1);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("X-Permanence-Company: acme\r\n"));
    }

    #[test]
    fn cancel_reuses_the_branch_and_bye_follows_the_dialog() {
        let (mut leg, _, _) = Leg::invite(&invitation());
        let (branch, cancel) = leg.cancel();
        let SipMessage::Request(c) = parse(&cancel).unwrap() else {
            panic!()
        };
        assert_eq!((c.method, c.cseq.seq), (Method::Cancel, 1));
        assert_eq!(c.branch.as_deref(), Some(branch.as_str()));
        assert_eq!(c.uri, "sip:alice@127.0.0.1:5070;transport=udp");

        let (mut leg, _, _) = Leg::invite(&invitation());
        let response = Response {
            status: 200,
            call_id: leg.call_id.clone(),
            cseq: crate::sip::CSeq {
                seq: 1,
                method: Method::Invite,
            },
            branch: None,
            to: "<sip:alice@127.0.0.1>;tag=phone".into(),
            to_tag: Some("phone".into()),
            contact: Some("sip:alice@192.0.2.7:5070".into()),
            record_route: vec![
                "<sip:edge.example;lr>".into(),
                "<sip:core.example;lr>".into(),
            ],
            challenge: None,
            body: Vec::new(),
        };
        let SipMessage::Request(a) = parse(&leg.answered(&response)).unwrap() else {
            panic!()
        };
        assert_eq!((a.method, a.cseq.seq), (Method::Ack, 1));
        assert_eq!(a.uri, "sip:alice@192.0.2.7:5070");
        assert_eq!(a.to.tag.as_deref(), Some("phone"));
        let (_, bye) = leg.bye();
        let SipMessage::Request(b) = parse(&bye).unwrap() else {
            panic!()
        };
        assert_eq!((b.method, b.cseq.seq), (Method::Bye, 2));
        let text = String::from_utf8(bye).unwrap();
        assert!(
            text.contains("Route: <sip:core.example;lr>, <sip:edge.example;lr>\r\n"),
            "the UAC's route set is the Record-Route reversed: {text}"
        );
    }

    #[test]
    fn a_challenged_invite_goes_again_with_credentials_and_the_next_cseq() {
        let (mut leg, first, _) = Leg::invite(&invitation());
        let first_branch = leg.branch().to_string();
        let (again, ack) =
            leg.invite_with_credentials("Proxy-Authorization", "Digest username=\"a\"");
        let SipMessage::Request(r) = parse(&again).unwrap() else {
            panic!()
        };
        assert_eq!((r.method, r.cseq.seq), (Method::Invite, 2));
        assert_eq!(r.call_id, leg.call_id);
        assert_ne!(r.branch.as_deref(), Some(first_branch.as_str()));
        assert_eq!(r.body, b"v=0\r\n");
        let text = String::from_utf8(again).unwrap();
        assert!(text.contains("Proxy-Authorization: Digest username=\"a\"\r\n"));
        let first = String::from_utf8(first).unwrap();
        let tag = |t: &str| {
            t.lines()
                .find(|l| l.starts_with("From:"))
                .map(str::to_string)
        };
        assert_eq!(tag(&first), tag(&text), "same From tag");
        assert_eq!(ack.cseq, 2);
        let (_, cancel) = leg.cancel();
        let SipMessage::Request(c) = parse(&cancel).unwrap() else {
            panic!()
        };
        assert_eq!(c.cseq.seq, 2, "CANCEL matches the INVITE it cancels");
    }
}
