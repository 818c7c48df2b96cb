//! Secretaries for benches/console.sh: for each of N secretaries, a phone (a UDP port that
//! answers INVITE with 180 Ringing and never picks up) and a console (logged in over HTTP,
//! the live board on a WebSocket). It notes when each INVITE reaches a phone and when the
//! card of that call reaches the same secretary's console, and prints the delay (card time
//! minus INVITE time: negative when the card came first).
//!
//! Usage: console_client --web 127.0.0.1:8080 --secretaries 50 --prefix s --password pw
//!                       --phone-port 15200 --seconds 30
//! Phones listen on phone-port + 1 … phone-port + N (registered there beforehand by the
//! script). Prints one `RESULT {json}` line.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "shared/console_web.rs"]
mod console_web;
use console_web::{Frames, login, open_live, read_text};

struct Args {
    web: SocketAddr,
    secretaries: u16,
    prefix: String,
    password: String,
    phone_port: u16,
    seconds: u64,
}

fn args() -> Args {
    let mut a = Args {
        web: "127.0.0.1:8080".parse().expect("address"),
        secretaries: 50,
        prefix: "s".into(),
        password: "pw".into(),
        phone_port: 15200,
        seconds: 30,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // `cargo bench` passes --bench (no value) to every bench target.
        if flag == "--bench" {
            continue;
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--web" => a.web = value.parse().expect("--web address"),
            "--secretaries" => a.secretaries = value.parse().expect("--secretaries number"),
            "--prefix" => a.prefix = value,
            "--password" => a.password = value,
            "--phone-port" => a.phone_port = value.parse().expect("--phone-port number"),
            "--seconds" => a.seconds = value.parse().expect("--seconds number"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// What one secretary saw: INVITEs at her phone and first appearances of a card.
#[derive(Default)]
struct Seen {
    invites: Vec<Instant>,
    cards: Vec<Instant>,
}

fn main() {
    let a = args();
    let seen: Vec<Arc<Mutex<Seen>>> = (0..a.secretaries).map(|_| Arc::default()).collect();
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let mut threads = Vec::new();
    for i in 0..a.secretaries {
        let user = format!("{}{}", a.prefix, i + 1);
        let cookie = login(a.web, &user, &a.password);
        let socket = open_live(a.web, &cookie);
        let phone = UdpSocket::bind(("127.0.0.1", a.phone_port + i + 1)).expect("phone port");
        let s = Arc::clone(&seen[i as usize]);
        threads.push(std::thread::spawn(move || {
            watch_console(socket, s, deadline)
        }));
        let s = Arc::clone(&seen[i as usize]);
        threads.push(std::thread::spawn(move || ring_phone(phone, s, deadline)));
    }
    eprintln!("{} consoles and phones ready", a.secretaries);
    println!("READY");
    for t in threads {
        let _ = t.join();
    }
    // Each INVITE with the card nearest in time for the same secretary (within 2 s).
    let mut delays_us: Vec<i64> = Vec::new();
    let (mut invites, mut unmatched) = (0usize, 0usize);
    for s in &seen {
        let s = s.lock().unwrap_or_else(|p| p.into_inner());
        invites += s.invites.len();
        for invite in &s.invites {
            let nearest = s
                .cards
                .iter()
                .map(|card| signed_us(*card, *invite))
                .min_by_key(|d| d.abs());
            match nearest {
                Some(d) if d.abs() <= 2_000_000 => delays_us.push(d),
                _ => unmatched += 1,
            }
        }
    }
    delays_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if delays_us.is_empty() {
            return f64::NAN;
        }
        let i = ((delays_us.len() as f64 - 1.0) * p).round() as usize;
        delays_us[i] as f64 / 1000.0
    };
    let before = delays_us.iter().filter(|d| **d <= 0).count();
    println!(
        "RESULT {{\"invites\":{invites},\"matched\":{},\"unmatched\":{unmatched},\"card_first\":{before},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"max_ms\":{:.2}}}",
        delays_us.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}

fn signed_us(a: Instant, b: Instant) -> i64 {
    if a >= b {
        (a - b).as_micros() as i64
    } else {
        -((b - a).as_micros() as i64)
    }
}

/// Reads the board messages; notes the first time each call's card is seen.
fn watch_console(mut stream: TcpStream, seen: Arc<Mutex<Seen>>, deadline: Instant) {
    let mut cards: HashMap<i64, ()> = HashMap::new();
    let mut frames = Frames::default();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let _ = stream.set_read_timeout(Some(left));
        let Some(payload) = read_text(&mut stream, &mut frames) else {
            return;
        };
        let at = Instant::now();
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(&payload) else {
            continue;
        };
        if let Some(call) = message["board"]["card"]["call"]["id"].as_i64()
            && cards.insert(call, ()).is_none()
        {
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .cards
                .push(at);
        }
    }
}

/// A phone that rings and never answers: 180 to INVITE, 200 + 487 to CANCEL, 200 to
/// anything else but ACK.
fn ring_phone(phone: UdpSocket, seen: Arc<Mutex<Seen>>, deadline: Instant) {
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let _ = phone.set_read_timeout(Some(left));
        let Ok((n, from)) = phone.recv_from(&mut buf) else {
            continue;
        };
        let at = Instant::now();
        let Ok(text) = std::str::from_utf8(&buf[..n]) else {
            continue;
        };
        let method = text.split(' ').next().unwrap_or("");
        match method {
            "INVITE" => {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .invites
                    .push(at);
                let _ = phone.send_to(response(text, "180 Ringing", None).as_bytes(), from);
            }
            "CANCEL" => {
                let _ = phone.send_to(response(text, "200 OK", None).as_bytes(), from);
                let _ = phone.send_to(
                    response(text, "487 Request Terminated", Some("INVITE")).as_bytes(),
                    from,
                );
            }
            "ACK" | "" => {}
            m if m.starts_with("SIP/") => {}
            _ => {
                let _ = phone.send_to(response(text, "200 OK", None).as_bytes(), from);
            }
        }
    }
}

/// A response to `request` copying its Via, From, To (tagged), Call-ID and CSeq (with
/// another method when answering the INVITE a CANCEL ended).
fn response(request: &str, status: &str, cseq_method: Option<&str>) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for line in request.lines() {
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            "to" | "t" => {
                out.push_str(line);
                if !line.contains("tag=") {
                    out.push_str(";tag=bench");
                }
                out.push_str("\r\n");
            }
            "cseq" => match cseq_method {
                Some(m) => {
                    let number = line
                        .split(':')
                        .nth(1)
                        .and_then(|v| v.split_whitespace().next())
                        .unwrap_or("1");
                    out.push_str(&format!("CSeq: {number} {m}\r\n"));
                }
                None => {
                    out.push_str(line);
                    out.push_str("\r\n");
                }
            },
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}
