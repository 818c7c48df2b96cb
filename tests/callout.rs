//! Calling out for a company from a task: the console's "call" rings the secretary's own
//! phone (SIPp, registered as alice), and once she answers the server dials the task's
//! customer through the trunk (a stand-in played by hand over UDP, so that every header it
//! receives can be read), presenting the company's number. The customer hears her; the
//! call is recorded as outbound, linked to the task, with the task's attempt. A number
//! that is not the task's, a company without `caller_id`, and another company's task are
//! refused, and the trunk sees nothing of them. A second version of the call puts SIPp in
//! the trunk's place too (`trunk_callee.xml`, which fails itself unless it sees acme's
//! number), so that both ends are real SIP peers and each hears the other's tone.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::web::{JSON, http, login};
use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// acme presents +33180000002 (one of its two numbers); `plain` has no caller_id; alice
/// serves both, not `other`. The trunk is at `trunk`.
fn setup(trunk: SocketAddr) -> (Setup, SocketAddr) {
    let acme = "[company]\nid = \"acme\"\nname = \"ACME Plomberie\"\n\
                numbers = [\"+33180000001\", \"+33180000002\"]\ncaller_id = \"+33180000002\"\n\n\
                [[route]]\nname = \"main\"\nsteps = [{ hangup = {} }]\n";
    let setup = Setup::new(&[
        ("acme.toml", acme),
        (
            "plain.toml",
            &plan("plain", "+33180000003", "[{ hangup = {} }]"),
        ),
        (
            "other.toml",
            &plan("other", "+33180000009", "[{ hangup = {} }]").replace(
                "numbers = [\"+33180000009\"]",
                "numbers = [\"+33180000009\"]\ncaller_id = \"+33180000009\"",
            ),
        ),
    ]);
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let alice = permanence::auth::ha1(
        permanence::auth::Algorithm::Md5,
        "alice",
        "permanence",
        "alice",
    );
    setup.add_config_lines(
        "registrar",
        &format!(
            "keepalive_seconds = 0\n\n[web]\nlisten = \"{web}\"\n\n[trunk]\nproxy = \"{trunk}\"\n\
             domain = \"sip.provider.example\"\n\n[[secretaries]]\nname = \"Alice\"\n\
             username = \"alice\"\nha1_md5 = \"{alice}\"\nha1_sha256 = \"\"\n\
             companies = [\"acme\", \"plain\"]"
        ),
    );
    (setup, web)
}

fn post(web: SocketAddr, cookie: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, _, body) = http(web, "POST", path, &[("Cookie", cookie), JSON], body);
    (status, json(&body))
}

fn new_task(web: SocketAddr, cookie: &str, company: &str, phone: &str) -> i64 {
    let (status, body) = post(
        web,
        cookie,
        "/api/tasks",
        &format!(
            r#"{{"company":"{company}","kind":"callback","customer":"Mme Lefèvre","phone":"{phone}"}}"#
        ),
    );
    assert_eq!(status, 201, "{body}");
    body["task"]["id"].as_i64().unwrap()
}

#[test]
fn a_task_call_rings_her_phone_then_the_customer_with_the_company_number() {
    let mut trunk = RawSipPhone::bind("127.0.0.1:9".parse().unwrap());
    let (setup, web) = setup(trunk.addr());
    let server = setup.start();
    trunk.server = setup.addr();
    let (status, cookie, body) = login(web, "alice", "alice");
    assert_eq!(status, 200, "{body}");
    let cookie = cookie.unwrap();

    let task = new_task(web, &cookie, "acme", "06 11 22 33 44");
    let plain = new_task(web, &cookie, "plain", "06 11 22 33 44");
    // `other` is not hers: a task of its (as its own secretariat would write it).
    {
        let conn = rusqlite::Connection::open(setup.db()).unwrap();
        conn.execute(
            "INSERT INTO tasks (id, company, kind, customer, phone, created_by, created_at, updated_by, updated_at)
             VALUES (900, 'other', 'callback', 'X', '+33611223344', 'bob', 'x', 'bob', 'x')",
            [],
        )
        .unwrap();
    }

    // Refusals first, before any phone of hers is registered: none reaches the trunk.
    let (status, body) = post(
        web,
        &cookie,
        &format!("/api/tasks/{task}/call"),
        r#"{"number":"+33899123456"}"#,
    );
    assert_eq!(
        (status, body["field"].as_str()),
        (403, Some("number")),
        "{body}"
    );
    let (status, body) = post(web, &cookie, &format!("/api/tasks/{plain}/call"), "{}");
    assert_eq!(status, 409, "no caller_id: {body}");
    let (status, _) = post(web, &cookie, "/api/tasks/900/call", "{}");
    assert_eq!(status, 404, "another company's task");
    let (status, _, _) = http(
        web,
        "POST",
        &format!("/api/tasks/{task}/call"),
        &[JSON],
        "{}",
    );
    assert_eq!(status, 401, "not logged in");
    let (status, body) = post(web, &cookie, &format!("/api/tasks/{task}/call"), "{}");
    assert_eq!(status, 409, "no phone of hers is registered: {body}");
    trunk.listen(Duration::from_millis(300));
    assert!(
        trunk.received.is_empty(),
        "the trunk was reached: {:?}",
        trunk.received
    );

    // Her phone: answers, speaks 600 Hz, and hangs up 3 s after the ACK.
    let port = register_phone_port(setup.addr(), "alice", "alice");
    let voice = setup.dir.path().join("voice.pcap");
    write_tone_pcap(&voice, 600.0, 2.5);
    let (_her_rtp, her_rtp_port) = rtp_socket();
    let mut alice = sipp_phone(
        "secretary.xml",
        port,
        &[
            "-key",
            "username",
            "alice",
            "-key",
            "rtp_port",
            &her_rtp_port,
            "-key",
            "offer",
            "0",
            "-key",
            "audio_pcap",
            voice.to_str().unwrap(),
        ],
    );
    wait_sipp_phone_ready(&mut alice, port);

    let (status, body) = post(
        web,
        &cookie,
        &format!("/api/tasks/{task}/call"),
        r#"{"number":"0611223344"}"#,
    );
    assert_eq!(status, 202, "{body}");
    let call = body["call"].as_i64().unwrap();

    // Once she answered, the customer's number is dialled through the trunk, presenting
    // the company's number (From and P-Asserted-Identity), never hers or the customer's.
    let invite = trunk
        .wait_request("INVITE", WAIT)
        .unwrap_or_else(|| panic!("no INVITE reached the trunk\n{}", server.log()));
    assert!(
        invite
            .first_line()
            .starts_with("INVITE sip:+33611223344@sip.provider.example SIP/2.0"),
        "{}",
        invite.text
    );
    let from = invite.header("From").unwrap();
    assert!(from.contains("sip:+33180000002@"), "From: {from}");
    assert!(from.contains("ACME Plomberie"), "From: {from}");
    let asserted = invite
        .header("P-Asserted-Identity")
        .unwrap_or_else(|| panic!("{}", invite.text));
    assert_eq!(asserted, "<sip:+33180000002@sip.provider.example>");

    // The customer answers; they hear her.
    let (customer_rtp, customer_rtp_port) = rtp_socket();
    let answer = format!(
        "v=0\r\no=customer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {customer_rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    trunk.respond(&invite, 200, Some("cust1"), &[], Some(&answer));
    trunk
        .wait_request("ACK", WAIT)
        .unwrap_or_else(|| panic!("the customer's 200 was not ACKed\n{}", server.log()));
    let (packets, audio) = hear(&customer_rtp, Duration::from_secs(4));
    assert!(
        packets > 20,
        "the customer heard {packets} packets\n{}",
        server.log()
    );
    let hz = tone_frequency(&audio);
    assert!(
        (hz - 600.0).abs() < 30.0,
        "the customer heard {hz} Hz, not her voice"
    );

    // She hangs up: the customer's leg is ended.
    let bye = trunk
        .wait_request("BYE", WAIT)
        .unwrap_or_else(|| panic!("no BYE for the customer\n{}", server.log()));
    trunk.respond(&bye, 200, None, &[], None);
    assert_sipp_ok(&finish(alice));

    // The records: an outbound call of acme's for the task, handled by her, and the
    // task's attempt.
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    assert_eq!(
        setup.ended_outbound_row(call),
        (
            Some("acme".into()),
            "outbound".into(),
            Some(task),
            Some("alice".into()),
            Some("secretary".into()),
            "+33611223344".into(),
            "+33180000002".into()
        )
    );
    let attempt: (String, Option<i64>, String) = conn
        .query_row(
            "SELECT result, call_id, by FROM task_attempts WHERE task_id = ?1",
            [task],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(attempt, ("reached".into(), Some(call), "alice".into()));
    let status: String = conn
        .query_row("SELECT status FROM tasks WHERE id = ?1", [task], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(status, "in_progress");
    let messages: i64 = conn
        .query_row(
            "SELECT count(*) FROM messages WHERE call_id = ?1",
            [call],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(messages, 0, "no message in the inbox for a call she placed");
    // Its timeline, like a caller's call's: her phone, then the customer, then who hung up.
    assert_eq!(
        setup.events(call),
        [
            "secretary-offered",
            "secretary-answered",
            "customer-offered",
            "customer-answered",
            "secretary-hung-up",
            "bye-sent"
        ],
        "{}",
        server.log()
    );
    let invites = trunk
        .received
        .iter()
        .filter(|m| m.method() == Some("INVITE"))
        .count();
    assert_eq!(invites, 1, "only the allowed call reached the trunk");
}

/// The customer's line is busy: her phone (waiting for our BYE) is hung up, and the task's
/// attempt says busy.
#[test]
fn a_busy_customer_hangs_her_phone_up_and_the_attempt_says_busy() {
    let mut trunk = RawSipPhone::bind("127.0.0.1:9".parse().unwrap());
    let (setup, web) = setup(trunk.addr());
    let server = setup.start();
    trunk.server = setup.addr();
    let (_, cookie, _) = login(web, "alice", "alice");
    let cookie = cookie.unwrap();
    let task = new_task(web, &cookie, "acme", "+33611223344");
    let port = register_phone_port(setup.addr(), "alice", "alice");
    let (mut alice, _heard) = listening_phone(&setup, port, "alice");
    wait_sipp_phone_ready(&mut alice, port);

    let (status, body) = post(web, &cookie, &format!("/api/tasks/{task}/call"), "{}");
    assert_eq!(status, 202, "{body}");
    let call = body["call"].as_i64().unwrap();
    let invite = trunk
        .wait_request("INVITE", WAIT)
        .unwrap_or_else(|| panic!("no INVITE reached the trunk\n{}", server.log()));
    trunk.respond(&invite, 486, Some("busy1"), &[], None);
    assert_sipp_ok(&finish(alice));

    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let attempt = loop {
        let found: Option<(String, Option<i64>)> = conn
            .query_row(
                "SELECT result, call_id FROM task_attempts WHERE task_id = ?1",
                [task],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        if found.is_some() || std::time::Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        attempt,
        Some(("busy".into(), Some(call))),
        "{}",
        server.log()
    );
    let (outcome, handled_by): (Option<String>, Option<String>) = conn
        .query_row(
            "SELECT outcome, handled_by FROM calls WHERE id = ?1",
            [call],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((outcome.as_deref(), handled_by), (Some("failed"), None));
    let timeline = setup.events(call);
    assert_eq!(
        timeline,
        [
            "secretary-offered",
            "secretary-answered",
            "customer-offered",
            "customer-declined",
            "bye-sent"
        ],
    );
    let details: String = conn
        .query_row(
            "SELECT data FROM events WHERE call_id = ?1 AND kind = 'customer-declined'",
            [call],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        details.contains("486"),
        "the busy status is kept: {details}"
    );
}

/// The part of some audio between its first and last loud sample: the tone a peer sent,
/// without the silence the bridge may carry before it starts or after it stops (silence
/// has no zero crossings and would lower the measured frequency).
fn loud_part(audio: &[i16]) -> &[i16] {
    let loud = |s: &i16| s.unsigned_abs() > 2000;
    match (audio.iter().position(loud), audio.iter().rposition(loud)) {
        (Some(first), Some(last)) => &audio[first..=last],
        _ => &[],
    }
}

/// The same call with SIPp as the trunk too (`trunk_callee.xml`): SIPp itself fails unless
/// the INVITE dials the customer and presents acme's number in From and
/// P-Asserted-Identity. Each side hears the other's tone through the bridge. Before that,
/// with her phone and the trunk both waiting, a task of a company she does not serve
/// (written by Bob, who serves it) is refused and neither of them is rung.
#[test]
fn a_sipp_trunk_sees_the_company_number_and_each_side_hears_the_other() {
    let trunk_port = free_port();
    let trunk_addr: SocketAddr = format!("127.0.0.1:{trunk_port}").parse().unwrap();
    let (setup, web) = setup(trunk_addr);
    let bob = permanence::auth::ha1(permanence::auth::Algorithm::Md5, "bob", "permanence", "bob");
    let mut config = std::fs::read_to_string(setup.config()).unwrap();
    config.push_str(&format!(
        "\n[[secretaries]]\nname = \"Bob\"\nusername = \"bob\"\nha1_md5 = \"{bob}\"\n\
         ha1_sha256 = \"\"\ncompanies = [\"other\"]\n"
    ));
    std::fs::write(setup.config(), config).unwrap();
    let server = setup.start();

    let (status, cookie, body) = login(web, "alice", "alice");
    assert_eq!(status, 200, "{body}");
    let cookie = cookie.unwrap();
    let (status, bob_cookie, body) = login(web, "bob", "bob");
    assert_eq!(status, 200, "{body}");
    let bob_cookie = bob_cookie.unwrap();
    let task = new_task(web, &cookie, "acme", "06 11 22 33 44");
    let others = new_task(web, &bob_cookie, "other", "06 11 22 33 44");

    // The customer (the trunk): answers, says 1,000 Hz, waits for the server's BYE.
    let (customer_rtp, customer_rtp_port) = rtp_socket();
    let customer_voice = setup.dir.path().join("customer.pcap");
    write_tone_pcap(&customer_voice, 1000.0, 2.0);
    let mut trunk = sipp_phone(
        "trunk_callee.xml",
        trunk_port,
        &[
            "-key",
            "rtp_port",
            &customer_rtp_port,
            "-key",
            "audio_pcap",
            customer_voice.to_str().unwrap(),
        ],
    );
    wait_sipp_phone_ready(&mut trunk, trunk_port);

    // Her phone: answers, says 600 Hz, hangs up 3 s after the ACK.
    let port = register_phone_port(setup.addr(), "alice", "alice");
    let voice = setup.dir.path().join("voice.pcap");
    write_tone_pcap(&voice, 600.0, 2.0);
    let (her_rtp, her_rtp_port) = rtp_socket();
    let mut alice = sipp_phone(
        "secretary.xml",
        port,
        &[
            "-key",
            "username",
            "alice",
            "-key",
            "rtp_port",
            &her_rtp_port,
            "-key",
            "offer",
            "0",
            "-key",
            "audio_pcap",
            voice.to_str().unwrap(),
        ],
    );
    wait_sipp_phone_ready(&mut alice, port);

    // Bob's company's task, though both phones are ready: refused, and were it not, her
    // one-call phone and the trunk (which wants acme's number) would fail.
    let (status, body) = post(web, &cookie, &format!("/api/tasks/{others}/call"), "{}");
    assert_eq!(
        status, 404,
        "a task of a company she does not serve: {body}"
    );

    let (status, body) = post(
        web,
        &cookie,
        &format!("/api/tasks/{task}/call"),
        r#"{"number":"0611223344"}"#,
    );
    assert_eq!(status, 202, "{body}");
    let call = body["call"].as_i64().unwrap();

    let customer_hears = std::thread::spawn(move || hear(&customer_rtp, Duration::from_secs(8)));
    let (her_packets, her_audio) = hear(&her_rtp, Duration::from_secs(8));
    let (customer_packets, customer_audio) = customer_hears.join().unwrap();

    let trunk_out = finish(trunk);
    assert_sipp_ok(&trunk_out);
    assert_sipp_ok(&finish(alice));
    assert!(
        her_packets > 20 && customer_packets > 20,
        "she heard {her_packets} packets, the customer {customer_packets}\n{}",
        server.log()
    );
    let heard_by_her = tone_frequency(loud_part(&her_audio));
    assert!(
        (heard_by_her - 1000.0).abs() < 40.0,
        "she heard {heard_by_her} Hz, not the customer"
    );
    let heard_by_customer = tone_frequency(loud_part(&customer_audio));
    assert!(
        (heard_by_customer - 600.0).abs() < 30.0,
        "the customer heard {heard_by_customer} Hz, not her"
    );

    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    assert_eq!(
        setup.ended_outbound_row(call),
        (
            Some("acme".into()),
            "outbound".into(),
            Some(task),
            Some("alice".into()),
            Some("secretary".into()),
            "+33611223344".into(),
            "+33180000002".into()
        )
    );
    let (calls, attempts): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM calls WHERE task_id = ?1),
                    (SELECT count(*) FROM task_attempts WHERE task_id = ?1)",
            [others],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((calls, attempts), (0, 0), "the refused task left no trace");
}
