//! The provider's trunk, played by hand over UDP so that every header it receives can be
//! read: a leg to an executive's number answers a `407 Proxy Authentication Required` with
//! a correct `Proxy-Authorization`, numbers are called at the trunk's domain, and with
//! `inbound_only_from_trunk` the trunk's own calls get through while a stranger is
//! challenged.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;
use md5::{Digest, Md5};
use permanence::sip::message::{Method, SipMessage};
use permanence::sip::parse::parse;

const WAIT: Duration = Duration::from_secs(10);

/// acme (+33180000001) with executive marie reached at +33611111111 (so through the trunk),
/// the route `steps` and alice as secretary (an account: the registrar challenges INVITEs
/// from outside the trunk). The `[trunk]` section is added by the test.
fn setup(steps: &str) -> Setup {
    let plan = format!(
        "[company]\nid = \"acme\"\nname = \"ACME Plomberie\"\nnumbers = [\"+33180000001\"]\n\n\
         [executives.marie]\nname = \"Marie Durand\"\nreach = [\"+33611111111\"]\n\n\
         [[route]]\nname = \"main\"\nsteps = {steps}\n"
    );
    let setup = Setup::new(&[("acme.toml", &plan)]);
    let config = std::fs::read_to_string(setup.config()).unwrap();
    let team = "\n[registrar]\nkeepalive_seconds = 0\n\
        [[secretaries]]\nname = \"Alice\"\nusername = \"alice\"\n\
        ha1_md5 = \"f5311f8276f6090e9cd6e52b1b126248\"\nha1_sha256 = \"\"\ncompanies = [\"acme\"]\n";
    std::fs::write(setup.config(), format!("{config}{team}")).unwrap();
    setup
}

fn add_trunk(setup: &Setup, lines: &str) {
    let config = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(setup.config(), format!("{config}\n[trunk]\n{lines}")).unwrap();
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn request_of(message: &RawSipMessage) -> Box<permanence::sip::message::Request> {
    match parse(message.text.as_bytes()) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("not a valid request ({other:?}):\n{}", message.text),
    }
}

fn events_with_data(setup: &Setup, call: i64) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let mut stmt = conn
        .prepare("SELECT kind, data FROM events WHERE call_id = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([call], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Most providers challenge INVITEs with 407 (a proxy), not 401. Our leg to the
/// executive's number must come again with `Proxy-Authorization` (not `Authorization`)
/// whose digest is right for the provider's realm, nonce and qop, in the same dialog
/// (Call-ID, From tag) with a higher CSeq and a new branch, after ACKing the 407. Then the
/// call connects and is the executive's.
#[test]
fn a_trunk_that_challenges_with_407_gets_a_correct_proxy_authorization_and_connects() {
    let setup = setup(r#"[{ transfer = { to = "marie", timeout = 10 } }, { hangup = {} }]"#);
    let mut trunk = RawSipPhone::bind(setup.addr());
    add_trunk(
        &setup,
        &format!(
            "proxy = \"{}\"\ndomain = \"sip.provider.example\"\nusername = \"acct42\"\n\
             password = \"s3cret\"\n",
            trunk.addr()
        ),
    );
    let server = setup.start();
    let addr = setup.addr();
    let (_caller_rtp, port) = rtp_socket();
    let caller =
        std::thread::spawn(move || sipp_call("bye.xml", addr, "+33180000001", &port, "0", &[]));

    // The first INVITE, without credentials.
    let first = trunk
        .wait_request("INVITE", WAIT)
        .unwrap_or_else(|| panic!("no INVITE reached the trunk\n{}", server.log()));
    let first_req = request_of(&first);
    assert_eq!(first_req.uri, "sip:+33611111111@sip.provider.example");
    assert!(
        first.header("Proxy-Authorization").is_none() && first.header("Authorization").is_none(),
        "credentials before any challenge:\n{}",
        first.text
    );
    let (realm, nonce, opaque) = (
        "sip.provider.example",
        "ZmZkYjY0YzE1OWQ5NmRkMjJkYjQ4MzEz",
        "5ccc069c403ebaf9f0171e9517f40e41",
    );
    let mut challenge = String::from("SIP/2.0 407 Proxy Authentication Required\r\n");
    for via in sip_header_values(&first.text, "Via") {
        challenge.push_str(&format!("Via: {via}\r\n"));
    }
    challenge.push_str(&format!(
        "From: {}\r\nTo: {};tag=prx407\r\nCall-ID: {}\r\nCSeq: {}\r\nServer: Kamailio (5.7.4)\r\n\
         Proxy-Authenticate: Digest realm=\"{realm}\", nonce=\"{nonce}\", opaque=\"{opaque}\", \
         qop=\"auth\", algorithm=MD5\r\nContent-Length: 0\r\n\r\n",
        first.header("From").unwrap(),
        first.header("To").unwrap(),
        first.call_id(),
        first.header("CSeq").unwrap(),
    ));
    trunk
        .sock
        .send_to(challenge.as_bytes(), first.from)
        .unwrap();

    // The 407 is ACKed in its transaction (else a real proxy resends it for 32 s).
    let ack = trunk
        .wait_request("ACK", WAIT)
        .unwrap_or_else(|| panic!("the 407 was not ACKed\n{}", server.log()));
    let ack_req = request_of(&ack);
    assert_eq!(ack_req.branch, first_req.branch, "{}", ack.text);
    assert_eq!(
        (ack_req.cseq.seq, &ack_req.cseq.method),
        (first_req.cseq.seq, &Method::Ack)
    );

    // The INVITE again, with credentials for the proxy.
    let second = trunk
        .wait_for(WAIT, |m| {
            m.method() == Some("INVITE") && sip_header_value(&m.text, "Via") != first.header("Via")
        })
        .unwrap_or_else(|| panic!("no INVITE with credentials\n{}", server.log()));
    let second_req = request_of(&second);
    assert_eq!(second_req.call_id, first_req.call_id, "same Call-ID");
    assert!(first_req.from.tag.is_some());
    assert_eq!(second_req.from.tag, first_req.from.tag, "same From tag");
    assert_eq!(second_req.to.tag, None, "still outside a dialog");
    assert_eq!(second_req.cseq.method, Method::Invite);
    assert!(
        second_req.cseq.seq > first_req.cseq.seq,
        "CSeq {} after {}",
        second_req.cseq.seq,
        first_req.cseq.seq
    );
    assert_ne!(second_req.branch, first_req.branch, "a new transaction");
    assert!(
        second_req
            .branch
            .as_deref()
            .is_some_and(|b| b.starts_with("z9hG4bK"))
    );
    assert_eq!(second_req.uri, first_req.uri);
    assert_eq!(second_req.body, first_req.body, "the same offer");
    assert!(
        second.header("Authorization").is_none(),
        "a 407 is answered with Proxy-Authorization only:\n{}",
        second.text
    );
    let value = second.header("Proxy-Authorization").unwrap_or_else(|| {
        panic!(
            "the retried INVITE has no Proxy-Authorization:\n{}",
            second.text
        )
    });
    let credentials = permanence::auth::parse_credentials(value)
        .unwrap_or_else(|| panic!("not Digest credentials: {value}"));
    assert_eq!(credentials.username, "acct42");
    assert_eq!(credentials.realm, realm);
    assert_eq!(credentials.nonce, nonce);
    assert_eq!(credentials.uri, second_req.uri, "digest uri = Request-URI");
    assert_eq!(credentials.qop.as_deref(), Some("auth"));
    assert!(
        credentials
            .algorithm
            .as_deref()
            .is_none_or(|a| a.eq_ignore_ascii_case("MD5"))
    );
    assert!(
        value.contains(&format!("opaque=\"{opaque}\"")),
        "opaque is returned: {value}"
    );
    let nc = credentials.nc.clone().expect("nc with qop=auth");
    let cnonce = credentials.cnonce.clone().expect("cnonce with qop=auth");
    assert!(
        nc.len() == 8 && nc.bytes().all(|b| b.is_ascii_hexdigit()),
        "{nc}"
    );
    let ha1 = md5_hex(&format!("acct42:{realm}:s3cret"));
    let ha2 = md5_hex(&format!("INVITE:{}", second_req.uri));
    let expected = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    assert_eq!(credentials.response, expected, "digest response: {value}");

    // Accepted: the call connects through the trunk.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let answer = raw_sdp(sink.local_addr().unwrap(), &[0], None, "sendrecv", 1);
    trunk.respond(&second, 100, None, &[], None);
    trunk.respond(&second, 180, Some("uas7"), &[], None);
    trunk.respond(&second, 200, Some("uas7"), &[], Some(&answer));
    let ack = trunk
        .wait_request_in("ACK", second.call_id(), WAIT)
        .unwrap_or_else(|| panic!("the 200 was not ACKed\n{}", server.log()));
    let ack_req = request_of(&ack);
    assert_eq!(
        (ack_req.cseq.seq, &ack_req.cseq.method),
        (second_req.cseq.seq, &Method::Ack)
    );
    assert_eq!(ack_req.to.tag.as_deref(), Some("uas7"));
    // The caller hangs up after 1.5 s: our leg gets BYE.
    let bye = trunk
        .wait_request_in("BYE", second.call_id(), Duration::from_secs(15))
        .unwrap_or_else(|| panic!("no BYE on the trunk leg\n{}", server.log()));
    trunk.respond(&bye, 200, None, &[], None);
    assert_sipp_ok(&caller.join().unwrap());

    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(calls[0].outcome.as_deref(), Some("transferred"));
    let timeline = setup.events(calls[0].id);
    assert!(
        timeline.iter().any(|e| e == "trunk-authenticated"),
        "{timeline:?}"
    );
}

/// What a provider's proxy really sends (Kamailio-like 407, Asterisk-like 407 without qop
/// and with a lower-case header name, a registrar's 401) parses into the challenge a leg
/// answers, marked as a proxy's for 407; the answer to each verifies.
#[test]
fn real_looking_401_and_407_responses_parse_into_challenges_we_answer() {
    let cases = [
        (
            "SIP/2.0 407 Proxy Authentication Required\r\n\
             Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKa1b2c3;rport=5060;received=203.0.113.5\r\n\
             From: \"ACME Plomberie \u{b7} +33612345678\" <sip:+33612345678@203.0.113.5:5060>;tag=9f8e7d\r\n\
             To: <sip:+33611111111@sip.provider.example>;tag=b27e1a1d33761e85846fc98f5f3a7e58.b7d2\r\n\
             Call-ID: 3c26700b5e1f4a2d@permanence\r\n\
             CSeq: 1 INVITE\r\n\
             Proxy-Authenticate: Digest realm=\"sip.provider.example\", \
             nonce=\"ZmZkYjY0YzE1OWQ5NmRkMjJkYjQ4MzEz\", qop=\"auth\"\r\n\
             Server: kamailio (5.7.4 (x86_64/linux))\r\n\
             Content-Length: 0\r\n\r\n",
            407,
            true,
            "sip.provider.example",
            "ZmZkYjY0YzE1OWQ5NmRkMjJkYjQ4MzEz",
            true,
        ),
        (
            "SIP/2.0 407 Proxy Authentication Required\r\n\
             Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKx9y8;received=203.0.113.5;rport=5060\r\n\
             From: <sip:+33612345678@203.0.113.5>;tag=as1\r\n\
             To: <sip:+33611111111@pbx.example>;tag=as0b7c1d2e\r\n\
             Call-ID: 77aa@permanence\r\n\
             CSeq: 2 INVITE\r\n\
             Server: Asterisk PBX 20.5.0\r\n\
             Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PUBLISH, MESSAGE\r\n\
             Supported: replaces, timer\r\n\
             proxy-authenticate: Digest algorithm=MD5, realm=\"asterisk\", nonce=\"1f4e2b3a\"\r\n\
             Content-Length: 0\r\n\r\n",
            407,
            true,
            "asterisk",
            "1f4e2b3a",
            false,
        ),
        (
            "SIP/2.0 401 Unauthorized\r\n\
             Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKr1\r\n\
             From: <sip:acct42@sip.provider.example>;tag=r1\r\n\
             To: <sip:acct42@sip.provider.example>;tag=u1\r\n\
             Call-ID: reg1@permanence\r\n\
             CSeq: 1 REGISTER\r\n\
             WWW-Authenticate: Digest realm=\"sip.provider.example\", nonce=\"abc123\", \
             qop=\"auth,auth-int\", algorithm=MD5, stale=FALSE\r\n\
             Content-Length: 0\r\n\r\n",
            401,
            false,
            "sip.provider.example",
            "abc123",
            true,
        ),
    ];
    for (text, status, proxy, realm, nonce, qop) in cases {
        let response = match parse(text.as_bytes()) {
            Ok(SipMessage::Response(r)) => r,
            other => panic!("not parsed as a response: {other:?}\n{text}"),
        };
        assert_eq!(response.status, status);
        assert!(response.branch.is_some() && response.to_tag.is_some());
        let (is_proxy, challenge) = response
            .challenge
            .clone()
            .unwrap_or_else(|| panic!("no challenge read from\n{text}"));
        assert_eq!(is_proxy, proxy, "{text}");
        assert!(challenge.contains(nonce), "{challenge}");
        let uri = "sip:+33611111111@sip.provider.example";
        let answer = permanence::auth::answer_challenge(
            &challenge, "acct42", "s3cret", "INVITE", uri, "0a4f113b",
        )
        .unwrap_or_else(|| panic!("cannot answer {challenge}"));
        let c = permanence::auth::parse_credentials(&answer).unwrap();
        assert_eq!((c.realm.as_str(), c.nonce.as_str()), (realm, nonce));
        let ha1 = md5_hex(&format!("acct42:{realm}:s3cret"));
        let ha2 = md5_hex(&format!("INVITE:{uri}"));
        let expected = if qop {
            assert_eq!(c.qop.as_deref(), Some("auth"), "{answer}");
            md5_hex(&format!(
                "{ha1}:{nonce}:{}:{}:auth:{ha2}",
                c.nc.as_deref().unwrap(),
                c.cnonce.as_deref().unwrap()
            ))
        } else {
            assert_eq!(c.qop, None, "{answer}");
            md5_hex(&format!("{ha1}:{nonce}:{ha2}"))
        };
        assert_eq!(c.response, expected, "{answer}");
    }
}

/// With `inbound_only_from_trunk`, the provider's own calls (from an address in
/// `trunk.addresses`, 127.0.0.1 here) are taken as any call: answered, no challenge,
/// recorded for the company. The same INVITE from 127.0.0.2 is challenged (401) and makes
/// no call.
#[test]
fn with_inbound_only_from_trunk_the_trunks_calls_get_through_and_strangers_are_challenged() {
    let setup = setup(r#"[{ play = "tone/a.wav" }, { hangup = {} }]"#);
    let proxy = UdpSocket::bind("127.0.0.1:0").unwrap();
    add_trunk(
        &setup,
        &format!(
            "proxy = \"{}\"\naddresses = [\"127.0.0.1\"]\ninbound_only_from_trunk = true\n",
            proxy.local_addr().unwrap()
        ),
    );
    let server = setup.start();

    // A stranger on 127.0.0.2 dials the company's number: challenged, no call.
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    let local = stranger.local_addr().unwrap();
    let stranger_rtp = UdpSocket::bind("127.0.0.2:0").unwrap();
    let offer = raw_sdp(
        stranger_rtp.local_addr().unwrap(),
        &[0],
        None,
        "sendrecv",
        1,
    );
    let invite = format!(
        "INVITE sip:+33180000001@{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKstranger1;rport\r\n\
         From: <sip:+33612345678@{local}>;tag=s1\r\nTo: <sip:+33180000001@{addr}>\r\n\
         Call-ID: stranger-1@127.0.0.2\r\nCSeq: 1 INVITE\r\nContact: <sip:+33612345678@{local}>\r\n\
         Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
        offer.len(),
        addr = setup.addr(),
    );
    stranger.send_to(invite.as_bytes(), setup.addr()).unwrap();
    stranger
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 8192];
    let answer = loop {
        let (n, _) = stranger
            .recv_from(&mut buf)
            .expect("the stranger gets an answer");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if status_of(text.as_bytes()).is_some_and(|s| s >= 200) {
            break text;
        }
    };
    assert_eq!(status_of(answer.as_bytes()), Some(401), "{answer}");
    assert!(
        sip_header_value(&answer, "WWW-Authenticate").is_some_and(|c| c.starts_with("Digest")),
        "{answer}"
    );
    let ack = format!(
        "ACK sip:+33180000001@{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKstranger1;rport\r\n\
         From: <sip:+33612345678@{local}>;tag=s1\r\nTo: {}\r\nCall-ID: stranger-1@127.0.0.2\r\n\
         CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        sip_header_value(&answer, "To").unwrap(),
        addr = setup.addr(),
    );
    stranger.send_to(ack.as_bytes(), setup.addr()).unwrap();

    // The trunk (127.0.0.1) brings a call: answered without a challenge (SIPp's call.xml
    // fails on a 401), the greeting plays, the server hangs up.
    let (_rtp, port) = rtp_socket();
    let out = sipp_call("call.xml", setup.addr(), "+33180000001", &port, "0", &[]);
    assert!(
        out.status.success(),
        "the trunk's call did not get through: {}\n{}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n"),
        server.log()
    );

    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
    assert_eq!(
        calls.len(),
        1,
        "only the trunk's call is recorded: {calls:?}"
    );
    let call = &calls[0];
    assert_eq!(call.company.as_deref(), Some("acme"));
    assert_eq!(call.dialled, "+33180000001");
    assert_eq!(call.caller, "+33612345678");
    assert!(call.answered, "{call:?}");
    assert_eq!(call.outcome.as_deref(), Some("completed"));
    // Nothing of either call went to the trunk's proxy address.
    proxy
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        proxy.recv_from(&mut buf).is_err(),
        "something was sent to the trunk"
    );
}

/// A number in a reach list is called at `sip:NUMBER@<trunk.domain>`, sent to the proxy;
/// without a domain the Request-URI's host is the proxy's address. (The provider routes by
/// that host: a wrong one is a call that never rings.) A busy answer sends the caller on.
#[test]
fn a_number_is_called_at_the_trunks_domain_or_else_at_the_proxy() {
    for domain in [Some("sip.provider.example"), None] {
        let setup = setup(
            r#"[{ transfer = { to = "marie", timeout = 5 } }, { play = "tone/a.wav" }, { hangup = {} }]"#,
        );
        let mut trunk = RawSipPhone::bind(setup.addr());
        let host = domain.map_or_else(|| trunk.addr().to_string(), str::to_string);
        let domain_line = domain.map_or(String::new(), |d| format!("domain = \"{d}\"\n"));
        add_trunk(
            &setup,
            &format!("proxy = \"{}\"\n{domain_line}", trunk.addr()),
        );
        let server = setup.start();
        let addr = setup.addr();
        let (_rtp, port) = rtp_socket();
        let caller = std::thread::spawn(move || {
            sipp_call("call.xml", addr, "+33180000001", &port, "0", &[])
        });
        let invite = trunk
            .wait_request("INVITE", WAIT)
            .unwrap_or_else(|| panic!("no INVITE reached the trunk\n{}", server.log()));
        assert_eq!(
            invite.first_line(),
            format!("INVITE sip:+33611111111@{host} SIP/2.0"),
            "domain {domain:?}"
        );
        assert_eq!(
            invite.header("To").map(uri_in_name_addr).as_deref(),
            Some(format!("sip:+33611111111@{host}").as_str())
        );
        trunk.respond(&invite, 486, Some("busy1"), &[], None);
        assert!(
            trunk.wait_request("ACK", WAIT).is_some(),
            "the 486 was not ACKed"
        );
        assert_sipp_ok(&caller.join().unwrap());
        let calls = setup.wait_calls(|c| c.len() == 1 && c[0].outcome.is_some());
        assert_eq!(calls[0].outcome.as_deref(), Some("completed"));
        let timeline = events_with_data(&setup, calls[0].id);
        assert!(
            timeline
                .iter()
                .any(|(k, d)| k == "executive-declined" && d.contains("486")),
            "{timeline:?}"
        );
    }
}
