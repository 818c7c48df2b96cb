//! A call over IPv6: the server listening on `[::1]`, called by SIPp from `::1` with the
//! same scenario as over IPv4 (its SDP says `IN IP[media_ip_type] [media_ip]`).

mod common;

use std::net::{IpAddr, Ipv6Addr, UdpSocket};
use std::time::Duration;

use common::*;

const NUMBER: &str = "+33180000001";

#[test]
fn a_call_over_ipv6_hears_the_greeting_and_is_recorded_completed() {
    let setup = Setup::new_v6(&[(
        "acme.toml",
        &plan(
            "acme",
            NUMBER,
            r#"[{ play = "tone/a.wav" }, { hangup = {} }]"#,
        ),
    )]);
    let loopback = IpAddr::V6(Ipv6Addr::LOCALHOST);
    assert_eq!(setup.addr().ip(), loopback);
    let _server = setup.start();

    // The caller's RTP socket, on ::1 only: what arrives here came over IPv6, sent to the
    // address of the caller's SDP.
    let sink = UdpSocket::bind((loopback, 0))
        .expect("IPv6 loopback ::1 is available (ip -6 addr show lo)");
    let rtp_port = sink.local_addr().unwrap().port().to_string();
    let addr = setup.addr();
    let caller =
        std::thread::spawn(move || sipp_call("call.xml", addr, NUMBER, &rtp_port, "0 101", &[]));
    let (packets, audio) = hear(&sink, Duration::from_secs(20));
    assert_sipp_ok(&caller.join().unwrap());

    // The 3.5 s tone at 440 Hz: 175 packets of 20 ms of PCMU.
    assert_eq!(packets, 175, "a 3.5 s sound is exactly 175 packets");
    let hz = tone_frequency(&audio);
    assert!((hz - 440.0).abs() < 10.0, "heard {hz:.0} Hz, expected 440");

    let calls = setup.wait_calls(|c| c.len() == 1 && c[0].ended);
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call.company.as_deref(), Some("acme"));
    assert_eq!(call.dialled, NUMBER);
    assert_eq!(call.caller, "+33612345678");
    assert!(call.answered, "{call:?}");
    assert_eq!(call.outcome.as_deref(), Some("completed"));
    let events = setup.events(call.id);
    assert!(
        events.contains(&"play".to_string()) && events.contains(&"bye-sent".to_string()),
        "{events:?}"
    );
}
