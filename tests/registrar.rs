//! Secretaries register their softphones with digest authentication.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;
use permanence::auth::{Algorithm, ha1};

const ALICE: &str = "\n[[secretaries]]\nname = \"Alice\"\nusername = \"alice\"\n\
    ha1_md5 = \"f5311f8276f6090e9cd6e52b1b126248\"\n\
    ha1_sha256 = \"f52248892499f9174e7650ae325757a37f17f88b54a3c1d30b5cec46667d69e0\"\n\
    companies = [\"acme\"]\n";

fn setup() -> Setup {
    let setup = Setup::new(&[(
        "acme.toml",
        &plan("acme", "+33180000001", r#"[{ hangup = {} }]"#),
    )]);
    let config = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(setup.config(), format!("{config}{ALICE}")).unwrap();
    setup
}

fn secretaries(setup: &Setup) -> serde_json::Value {
    let out = std::process::Command::new(BIN)
        .args(["secretaries", "--json", "--config"])
        .arg(setup.config())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap()
}

fn register(setup: &Setup, scenario: &str, password: &str, expires: &str) -> std::process::Output {
    sipp(
        scenario,
        setup.addr(),
        &[
            "-key", "username", "alice", "-au", "alice", "-ap", password, "-key", "expires",
            expires,
        ],
    )
}

#[test]
fn a_softphone_registers_with_digest_and_shows_as_available() {
    let setup = setup();
    let _server = setup.start();
    assert_eq!(secretaries(&setup)["state"], "not registered");
    assert_sipp_ok(&register(&setup, "register.xml", "alice", "300"));
    let rows = wait_registration_rows(&setup, "alice", 1);
    assert_eq!(rows.len(), 1, "the registration is stored: {rows:?}");
    let s = secretaries(&setup);
    assert_eq!(s["state"], "available", "{s}");
    let reg = &s["registrations"][0];
    assert!(
        reg["contact"]
            .as_str()
            .unwrap()
            .starts_with("sip:alice@127.0.0.1:"),
        "{s}"
    );
    assert_eq!(reg["transport"], "UDP");
}

/// A REGISTER for `user` from `sock` whose request-specific parts (Call-ID, branch, tag)
/// are derived from the user name only, so that two users' answers compare once the name
/// is masked.
fn register_as(
    sock: &UdpSocket,
    server: std::net::SocketAddr,
    user: &str,
    cseq: u32,
    auth: Option<&str>,
) -> String {
    let local = sock.local_addr().unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let msg = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKcmp{user}{cseq}\r\n\
         From: <sip:{user}@127.0.0.1>;tag=f{user}\r\nTo: <sip:{user}@127.0.0.1>\r\n\
         Call-ID: cmp-{user}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{local}>\r\n\
         Expires: 300\r\n{auth}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(msg.as_bytes(), server).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 8192];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// An answer with the user name, the nonce and the server's To tag masked: what must be
/// identical whoever asked.
fn masked(answer: &str, user: &str) -> String {
    let mut out = String::new();
    for line in answer.split("\r\n") {
        let mut line = line.replace(user, "USER");
        if let Some(at) = line.find("nonce=\"") {
            let start = at + "nonce=\"".len();
            let end = start + line[start..].find('"').unwrap();
            line.replace_range(start..end, "NONCE");
        }
        if line.starts_with("To:")
            && let Some(at) = line.find(";tag=")
        {
            let start = at + ";tag=".len();
            let end = line[start..].find(';').map_or(line.len(), |e| start + e);
            line.replace_range(start..end, "TAG");
        }
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out
}

/// The store has written everything the server did before now: a call to a number no
/// company has gets 404 and a `rejected` row, written by the same writer thread after
/// whatever was queued earlier (a registration, had one been accepted).
fn store_caught_up(setup: &Setup) {
    let before = setup.calls().len();
    let mut probe = RawSipPhone::bind(setup.addr());
    let rtp = probe.addr();
    let invite = probe.invite(
        "+33180000009",
        "+33612345678",
        &raw_sdp(rtp, &[0], None, "sendrecv", 1),
    );
    let (answer, _) = probe
        .invite_outcome(&invite, Duration::from_secs(5))
        .expect("an answer to the probe call");
    assert_eq!(answer.status(), Some(404), "{}", answer.text);
    let calls = setup.wait_calls(|c| c.len() > before);
    assert!(calls.len() > before, "the probe call's row: {calls:?}");
}

/// Whether a user exists must not show: an unknown user and a known user with a wrong
/// password get the same challenge and, after answering it, the same 401 again (status,
/// reason and every header but the nonce), and neither is registered.
#[test]
fn a_wrong_password_and_an_unknown_user_get_the_same_401_and_no_registration() {
    let setup = setup();
    let server = setup.start();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut answers = Vec::new();
    for (user, password) in [("alice", "not-alice"), ("mallory", "x")] {
        let challenge = register_as(&sock, server.addr, user, 1, None);
        assert!(challenge.starts_with("SIP/2.0 401 "), "{challenge}");
        let refused = register_as(
            &sock,
            server.addr,
            user,
            2,
            Some(&answer_as(&challenge, user, password)),
        );
        assert!(refused.starts_with("SIP/2.0 401 "), "{refused}");
        answers.push((masked(&challenge, user), masked(&refused, user)));
    }
    let (alice, mallory) = (&answers[0], &answers[1]);
    assert_eq!(alice.0, mallory.0, "the first challenges differ");
    assert_eq!(
        alice.1, mallory.1,
        "a wrong password and an unknown user get different answers"
    );
    let challenge_of = |answer: &str| {
        answer
            .lines()
            .filter(|l| l.starts_with("WWW-Authenticate:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        challenge_of(&alice.0),
        challenge_of(&alice.1),
        "the refusal is a plain new challenge (no stale=true, same realm and algorithms)"
    );

    store_caught_up(&setup);
    assert!(registration_rows(&setup, "alice").is_empty());
    assert!(registration_rows(&setup, "mallory").is_empty());
    assert_eq!(secretaries(&setup)["state"], "not registered");
}

/// A REGISTER answered by hand with our own digest code, to reach 423 and stale=true.
fn raw_register(
    sock: &UdpSocket,
    server: std::net::SocketAddr,
    cseq: u32,
    expires: u32,
    auth: Option<&str>,
) -> String {
    let local = sock.local_addr().unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let msg = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKr{cseq}\r\nFrom: <sip:alice@127.0.0.1>;tag=r\r\n\
         To: <sip:alice@127.0.0.1>\r\nCall-ID: raw-reg\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:alice@{local}>\r\n\
         Expires: {expires}\r\n{auth}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(msg.as_bytes(), server).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn answer(challenge: &str, password: &str) -> String {
    answer_as(challenge, "alice", password)
}

/// The Authorization for `challenge`, as a phone answers: each answer is a new use of the
/// nonce with its own `cnonce` (the server refuses a replayed one).
fn answer_as(challenge: &str, user: &str, password: &str) -> String {
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let h1 = ha1(Algorithm::Md5, user, "permanence", password);
    let h2 = Algorithm::Md5.hash("REGISTER:sip:127.0.0.1");
    let cnonce = format!("{:016x}", fastrand::u64(..));
    let response = Algorithm::Md5.hash(&format!("{h1}:{nonce}:00000001:{cnonce}:auth:{h2}"));
    format!(
        "Digest username=\"{user}\", realm=\"permanence\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"{cnonce}\""
    )
}

#[test]
fn too_short_a_registration_gets_423_with_min_expires_and_zero_unregisters() {
    let setup = setup();
    let config = std::fs::read_to_string(setup.config()).unwrap();
    let (head, team) = config.split_once("\n[[secretaries]]").unwrap();
    // Offer both algorithms (RFC 8760 order); this test answers with MD5.
    let both = "\n[registrar]\nalgorithms = [\"SHA-256\", \"MD5\"]\n";
    std::fs::write(
        setup.config(),
        format!("{head}{both}\n[[secretaries]]{team}"),
    )
    .unwrap();
    let server = setup.start();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let challenge = raw_register(&sock, server.addr, 1, 10, None);
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    assert!(
        challenge.contains("algorithm=MD5") && challenge.contains("algorithm=SHA-256"),
        "{challenge}"
    );
    let auth = || answer(&challenge, "alice");
    let brief = raw_register(&sock, server.addr, 2, 10, Some(&auth()));
    assert!(
        brief.starts_with("SIP/2.0 423") && brief.contains("Min-Expires: 60"),
        "{brief}"
    );
    let ok = raw_register(&sock, server.addr, 3, 120, Some(&auth()));
    assert!(
        ok.starts_with("SIP/2.0 200") && ok.contains(";expires=120"),
        "{ok}"
    );
    assert_eq!(wait_registration_rows(&setup, "alice", 1).len(), 1);
    let gone = raw_register(&sock, server.addr, 4, 0, Some(&auth()));
    assert!(
        gone.starts_with("SIP/2.0 200") && !gone.contains("Contact:"),
        "{gone}"
    );
    let rows = wait_registration_rows(&setup, "alice", 0);
    assert!(rows.is_empty(), "the stored registration is gone: {rows:?}");
    assert_eq!(secretaries(&setup)["state"], "not registered");
}

/// Answers a request with 200, copying the headers a response copies.
fn answer_200(sock: &UdpSocket, request: &str, to: std::net::SocketAddr) {
    let copy: Vec<&str> = request
        .lines()
        .filter(|l| {
            ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                .iter()
                .any(|h| l.starts_with(h))
        })
        .collect();
    let msg = format!(
        "SIP/2.0 200 OK\r\n{}\r\nContent-Length: 0\r\n\r\n",
        copy.join("\r\n")
    );
    sock.send_to(msg.as_bytes(), to).unwrap();
}

#[test]
fn a_phone_that_stops_answering_keepalives_is_dropped() {
    let setup = setup();
    let config = std::fs::read_to_string(setup.config()).unwrap();
    let config = config.replacen("[sip]\n", "[sip]\nt1_ms = 20\n", 1)
        + "\n[registrar]\nkeepalive_seconds = 1\n";
    // [registrar] must come before [[secretaries]] to stay a plain table.
    let (head, team) = config.split_once("\n[[secretaries]]").unwrap();
    let (team, registrar) = team.split_once("\n[registrar]").unwrap();
    std::fs::write(
        setup.config(),
        format!("{head}\n[registrar]{registrar}\n[[secretaries]]{team}"),
    )
    .unwrap();
    let server = setup.start();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let challenge = raw_register(&sock, server.addr, 1, 300, None);
    let ok = raw_register(
        &sock,
        server.addr,
        2,
        300,
        Some(&answer(&challenge, "alice")),
    );
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");

    // Answer the keep-alives for 3 s: still registered.
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut answered = 0;
    let until = std::time::Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < until {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with("OPTIONS ") {
                answer_200(&sock, &text, from);
                answered += 1;
            }
        }
    }
    assert!(answered >= 2, "keep-alives arrive every second: {answered}");
    assert_eq!(secretaries(&setup)["state"], "available");

    // Go silent: the next keep-alive times out (Timer F = 64·T1 = 1.28 s here) and the
    // contact is dropped.
    drop(sock);
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while secretaries(&setup)["state"] != "not registered" {
        assert!(
            std::time::Instant::now() < deadline,
            "the silent contact is dropped"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        server
            .log()
            .contains("contact dropped: no answer to OPTIONS"),
        "{}",
        server.log()
    );
}

#[test]
fn a_real_softphone_baresip_registers() {
    let setup = setup();
    let server = setup.start();
    let home = setup.dir.path().join("baresip");
    std::fs::create_dir_all(&home).unwrap();
    let sip_port = free_port();
    std::fs::write(
        home.join("accounts"),
        format!(
            "<sip:alice@{};transport=udp>;auth_pass=alice;regint=120\n",
            server.addr
        ),
    )
    .unwrap();
    std::fs::write(
        home.join("config"),
        format!(
            "sip_listen\t127.0.0.1:{sip_port}\nmodule_path\t/usr/lib/baresip/modules\nmodule\tg711.so\n\
             module_app\taccount.so\naudio_player\taubridge,nil\naudio_source\taubridge,nil\n"
        ),
    )
    .unwrap();
    let mut baresip = std::process::Command::new("baresip")
        .arg("-f")
        .arg(&home)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("baresip is installed (Debian package baresip-core)");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut state = secretaries(&setup);
    while state["state"] != "available" && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        state = secretaries(&setup);
    }
    let _ = baresip.kill();
    let _ = baresip.wait();
    assert_eq!(state["state"], "available", "{state}\n{}", server.log());
    assert!(
        state["registrations"][0]["source"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{sip_port}")),
        "{state}"
    );
}

/// Registers alice from `sock` (challenge, then an MD5 answer) with a Contact carrying
/// `+sip.instance`, as Linphone does; returns the 200.
fn register_device(sock: &UdpSocket, server: std::net::SocketAddr, instance: &str) -> String {
    let local = sock.local_addr().unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let send = |cseq: u32, auth: &str| {
        let msg = format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKi{}x{cseq}\r\n\
             From: <sip:alice@127.0.0.1>;tag=i{}\r\nTo: <sip:alice@127.0.0.1>\r\n\
             Call-ID: instance-{}\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <sip:alice@{local};transport=udp>;+sip.instance=\"<{instance}>\"\r\n\
             Expires: 300\r\n{auth}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            local.port(),
            local.port(),
            local.port(),
        );
        sock.send_to(msg.as_bytes(), server).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let challenge = send(1, "");
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    send(
        2,
        &format!("Authorization: {}\r\n", answer(&challenge, "alice")),
    )
}

#[test]
fn a_phone_registering_again_with_the_same_instance_replaces_its_old_contact() {
    let setup = setup();
    let server = setup.start();
    let instance = "urn:uuid:3f1d5c2e-8b7a-4c61-9e0f-2a4b6c8d0e1f";
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ok = register_device(&a, server.addr, instance);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    // The phone restarts on another port: same device, new contact.
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port_b = b.local_addr().unwrap().port();
    let ok = register_device(&b, server.addr, instance);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert_eq!(
        ok.matches("Contact:").count(),
        1,
        "only the new contact: {ok}"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut s = secretaries(&setup);
    while !s["registrations"].as_array().unwrap().iter().any(|r| {
        r["source"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{port_b}"))
    }) {
        assert!(std::time::Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(100));
        s = secretaries(&setup);
    }
    let registrations = s["registrations"].as_array().unwrap();
    assert_eq!(registrations.len(), 1, "the stale contact is gone: {s}");
    assert_eq!(
        registrations[0]["contact"],
        format!("sip:alice@127.0.0.1:{port_b};transport=udp"),
        "{s}"
    );
}

/// The same after a restart: the registrations kept in SQLite remember each device's
/// instance id, so the phone registering again from elsewhere still replaces its old
/// contact instead of leaving it to be rung until it expires.
#[test]
fn a_phone_registering_again_after_a_restart_still_replaces_its_old_contact() {
    let setup = setup();
    let mut server = setup.start();
    let instance = "urn:uuid:7c9e6679-7425-40de-944b-e07fc1f90ae7";
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert!(register_device(&a, server.addr, instance).starts_with("SIP/2.0 200"));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while secretaries(&setup)["registrations"]
        .as_array()
        .is_none_or(|r| r.is_empty())
    {
        assert!(std::time::Instant::now() < deadline, "registered");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();
    let server = setup.start();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port_b = b.local_addr().unwrap().port();
    let ok = register_device(&b, server.addr, instance);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert_eq!(
        ok.matches("Contact:").count(),
        1,
        "the restored contact was replaced: {ok}"
    );
    assert!(ok.contains(&format!(":{port_b};")), "{ok}");
}
