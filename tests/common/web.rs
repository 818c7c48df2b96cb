//! The console over real HTTP: a setup with `[web]` on, and one-request HTTP/1.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::*;

/// The demo-like setup with the console on: alice (password alice) serves acme; marie is
/// an executive.
pub fn setup(steps: &str) -> (Setup, SocketAddr) {
    let setup = Setup::new(&[("acme.toml", &plan("acme", "+33180000001", steps))]);
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let alice = permanence::auth::ha1(
        permanence::auth::Algorithm::Md5,
        "alice",
        "permanence",
        "alice",
    );
    let marie = permanence::auth::ha1(
        permanence::auth::Algorithm::Md5,
        "marie",
        "permanence",
        "marie",
    );
    let mut config = std::fs::read_to_string(setup.config()).unwrap();
    config.push_str(&format!(
        "\n[web]\nlisten = \"{web}\"\n[registrar]\nkeepalive_seconds = 0\n\
         [[secretaries]]\nname = \"Alice <b>\"\nusername = \"alice\"\nha1_md5 = \"{alice}\"\nha1_sha256 = \"\"\ncompanies = [\"acme\"]\n\
         [[executives]]\nname = \"Marie\"\nusername = \"marie\"\nha1_md5 = \"{marie}\"\nha1_sha256 = \"\"\n"
    ));
    std::fs::write(setup.config(), config).unwrap();
    (setup, web)
}

/// One HTTP/1.1 exchange: status, headers (lower-case names), body.
pub fn http(
    web: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match TcpStream::connect(web) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("console not listening on {web}: {e}"),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

pub const JSON: (&str, &str) = ("Content-Type", "application/json");

/// Logs in; the session cookie (`name=value`).
pub fn login(web: SocketAddr, user: &str, password: &str) -> (u16, Option<String>, String) {
    let body = format!("{{\"username\":\"{user}\",\"password\":\"{password}\"}}");
    let (status, headers, body) = http(web, "POST", "/api/login", &[JSON], &body);
    let cookie = header(&headers, "set-cookie").map(|c| c.to_string());
    (status, cookie, body)
}

/// The console's live board as the page gets it: a WebSocket to `/api/ws`, spoken here
/// (the handshake, then the server's unmasked frames).
pub struct Live {
    stream: TcpStream,
}

impl Live {
    /// Opens the socket with this cookie and `Origin`; the HTTP status when refused.
    pub fn open(web: SocketAddr, cookie: &str, origin: &str) -> Result<Live, u16> {
        let mut stream = TcpStream::connect(web).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET /api/ws HTTP/1.1\r\nHost: {web}\r\nCookie: {cookie}\r\nOrigin: {origin}\r\n\
             Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).unwrap_or(0) == 0 {
                break;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if status != 101 {
            return Err(status);
        }
        assert!(
            head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "wrong Sec-WebSocket-Accept: {head}"
        );
        Ok(Live { stream })
    }

    /// The next message the server sends, as JSON; None when it closes the socket.
    pub fn next(&mut self) -> Option<serde_json::Value> {
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).ok()?;
            let opcode = head[0] & 0x0f;
            let length = match head[1] & 0x7f {
                126 => {
                    let mut n = [0u8; 2];
                    self.stream.read_exact(&mut n).ok()?;
                    u64::from(u16::from_be_bytes(n))
                }
                127 => {
                    let mut n = [0u8; 8];
                    self.stream.read_exact(&mut n).ok()?;
                    u64::from_be_bytes(n)
                }
                n => u64::from(n),
            };
            let mut payload = vec![0u8; length as usize];
            self.stream.read_exact(&mut payload).ok()?;
            match opcode {
                0x1 => return serde_json::from_slice(&payload).ok(),
                0x8 => return None,
                _ => continue,
            }
        }
    }

    /// Sends one text message, masked as a client must (RFC 6455 §5.3).
    pub fn send_text(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let _ = self.stream.write_all(&frame);
    }

    /// The next message that is not a board (boards keep coming as the desk changes).
    pub fn next_not_board(&mut self) -> Option<serde_json::Value> {
        loop {
            let message = self.next()?;
            if message["type"] != "board" {
                return Some(message);
            }
        }
    }

    /// The next board the server pushes.
    pub fn next_board(&mut self) -> serde_json::Value {
        let message = self.next().expect("the live socket closed");
        assert_eq!(message["type"], "board", "{message}");
        message["board"].clone()
    }
}
