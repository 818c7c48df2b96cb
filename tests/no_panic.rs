//! Whatever arrives from outside, the parsers answer or refuse; they never panic.
//! Deterministic mutation of real messages (the RFC 4475/5118 torture set and our own
//! SDP and RTP), seeded so a failure can be replayed.

use permanence::{dtmf, rtp, sdp, sip};

fn corpus() -> Vec<Vec<u8>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sip-torture");
    let mut out = Vec::new();
    for dir in ["rfc4475", "rfc5118"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            out.push(std::fs::read(entry.unwrap().path()).unwrap());
        }
    }
    out
}

fn mutate(rng: &mut fastrand::Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.usize(1..8) {
        if v.is_empty() {
            v.push(rng.u8(..));
            continue;
        }
        let i = rng.usize(..v.len());
        match rng.u8(..6) {
            0 => v[i] = rng.u8(..),
            1 => {
                v.remove(i);
            }
            2 => v.insert(
                i,
                *b" \r\n:;,<>\"%@[]=".get(rng.usize(..15)).unwrap_or(&b'x'),
            ),
            3 => v.truncate(i),
            4 => {
                let j = rng.usize(i..v.len());
                let chunk = v[i..j].to_vec();
                v.splice(i..i, chunk);
            }
            _ => v[i] = b"0123456789"[rng.usize(..10)],
        }
    }
    v
}

#[test]
fn sip_parser_never_panics_on_mutated_torture_messages() {
    let corpus = corpus();
    let mut rng = fastrand::Rng::with_seed(4475);
    let mut parsed = 0;
    for round in 0..40_000 {
        let input = mutate(&mut rng, &corpus[round % corpus.len()]);
        if sip::parse::parse(&input).is_ok() {
            parsed += 1;
        }
        let _ = sip::parse::stream_frame_len(&input, 16384);
    }
    assert!(
        parsed > 1000,
        "mutations still leave many valid messages to exercise the rest: {parsed}"
    );
}

#[test]
fn sdp_rtp_and_dtmf_readers_never_panic() {
    let offer = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n";
    let mut packet = Vec::new();
    rtp::Packetizer::new(1, 101, 1, 1).packet(&[5, 10, 0, 160], &mut packet);
    let mut rng = fastrand::Rng::with_seed(3264);
    let mut receiver = dtmf::EventReceiver::default();
    for _ in 0..40_000 {
        let _ = sdp::negotiate(&mutate(&mut rng, offer));
        let p = mutate(&mut rng, &packet);
        if let Some(r) = rtp::parse(&p) {
            let _ = receiver.on_packet(r.timestamp, r.payload);
        }
        let _ = dtmf::key_from_info(
            Some("application/dtmf-relay"),
            &mutate(&mut rng, b"Signal=5\r\nDuration=160\r\n"),
        );
    }
}
