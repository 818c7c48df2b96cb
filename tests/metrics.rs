//! `GET /metrics`: what happened, counted, in the Prometheus text format.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

const NUMBER: &str = "+33180000001";

fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn metrics_count_calls_refusals_and_registrations() {
    let setup = Setup::new(&[(
        "acme.toml",
        &plan(
            "acme",
            NUMBER,
            r#"[{ play = "tone/a.wav" }, { hangup = {} }]"#,
        ),
    )]);
    let port = free_port();
    let config = std::fs::read_to_string(setup.config()).unwrap();
    std::fs::write(
        setup.config(),
        format!(
            "{}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n[registrar]\nkeepalive_seconds = 0\n\
             [[secretaries]]\nname = \"Alice\"\nusername = \"alice\"\n\
             ha1_md5 = \"f5311f8276f6090e9cd6e52b1b126248\"\nha1_sha256 = \"\"\ncompanies = [\"acme\"]\n",
            config.replace("[limits]\n", "[limits]\nmax_invites_per_second_per_source = 1\n")
        ),
    )
    .unwrap();
    let _server = setup.start();
    let before = scrape(port);
    assert!(before.starts_with("HTTP/1.1 200"), "{before}");
    assert!(before.contains("text/plain; version=0.0.4"), "{before}");
    assert!(before.contains("permanence_live_calls 0\n"), "{before}");

    assert_sipp_ok(&sipp_call("call.xml", setup.addr(), NUMBER, "9", "0", &[]));
    // Two INVITEs in the same second from one address allowed one a second: one refused.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = sock.local_addr().unwrap();
    for i in 0..2 {
        let invite = format!(
            "INVITE sip:{NUMBER}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKm{i}\r\n\
             From: <sip:+33612345678@{local}>;tag=m{i}\r\nTo: <sip:{NUMBER}@127.0.0.1>\r\nCall-ID: metrics-{i}\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(invite.as_bytes(), setup.addr()).unwrap();
    }
    register_from(setup.addr(), free_port(), "alice", "alice");
    setup.wait_calls(|c| c.iter().filter(|c| c.ended).count() >= 1);

    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(port);
        if text.contains("outcome=\"completed\"} 1") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        text.contains("permanence_calls_total{company=\"acme\",outcome=\"completed\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("permanence_registrations 1\n"), "{text}");
    assert!(text.contains("permanence_store_writing 1\n"), "{text}");
    let flood_refusals: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("permanence_refused_calls_total{reason=\"flood\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert_eq!(flood_refusals, 1, "{text}");
}
