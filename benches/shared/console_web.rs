//! The console as a load client speaks to it, hand-written over plain TCP: a login
//! (`POST /api/login`), the live board's WebSocket upgrade (`GET /api/ws`) and its frames.
//! Shared by the benches' clients (`console_client`, `webrtc_client`), each of which
//! includes this file with `#[path]`; no HTTP or WebSocket crate is needed for so little.

// Each client uses part of it (only the browser phones send frames).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// One request on its own connection: status line and headers, body.
pub fn http(web: SocketAddr, request: &str) -> (String, String) {
    let mut stream = TcpStream::connect(web).expect("console listening");
    stream.write_all(request.as_bytes()).expect("request sent");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("answer read");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    (head.to_string(), body.to_string())
}

/// Logs `user` in; the session cookie (`name=value`).
pub fn login(web: SocketAddr, user: &str, password: &str) -> String {
    let body = format!("{{\"username\":\"{user}\",\"password\":\"{password}\"}}");
    let (head, _) = http(
        web,
        &format!(
            "POST /api/login HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("set-cookie")
                .then(|| value.trim().split(';').next().unwrap_or("").to_string())
        })
        .unwrap_or_else(|| panic!("{user} could not log in: {head}"))
}

/// Opens her live board (the WebSocket, with the `Origin` a browser on the console's own
/// page sends); the stream, just past the `101` answer.
pub fn open_live(web: SocketAddr, cookie: &str) -> TcpStream {
    let mut stream = TcpStream::connect(web).expect("console listening");
    write!(
        stream,
        "GET /api/ws HTTP/1.1\r\nHost: {web}\r\nCookie: {cookie}\r\nOrigin: http://{web}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .expect("upgrade sent");
    // Byte by byte: the first frame may follow the answer in the same segment.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).expect("upgrade answer"), 1);
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// What the server's frames carry, once whole.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A text message's payload (fragments joined).
    Text(Vec<u8>),
    /// The server closed the socket.
    Close,
}

/// The server's frames taken out of the bytes read so far, whatever the reads' sizes
/// (blocking or not): bytes go in with [`Frames::push`], whole messages come out of
/// [`Frames::next`]. Server frames are never masked; pings and pongs are skipped.
#[derive(Default)]
pub struct Frames {
    buf: Vec<u8>,
    /// A text message whose last fragment has not come yet.
    partial: Option<Vec<u8>>,
}

impl Frames {
    /// Bytes just read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, if its bytes are all there.
    pub fn next(&mut self) -> Option<Frame> {
        loop {
            let (fin, opcode, payload, used) = frame_at(&self.buf)?;
            let payload = self.buf[payload].to_vec();
            self.buf.drain(..used);
            match opcode {
                0x1 if fin => return Some(Frame::Text(payload)),
                0x1 => self.partial = Some(payload),
                0x0 => {
                    if let Some(mut text) = self.partial.take() {
                        text.extend_from_slice(&payload);
                        if fin {
                            return Some(Frame::Text(text));
                        }
                        self.partial = Some(text);
                    }
                }
                0x8 => return Some(Frame::Close),
                _ => continue,
            }
        }
    }
}

/// The frame at the start of `buf`: FIN, opcode, where its payload is, its whole length;
/// None until all of it has arrived.
fn frame_at(buf: &[u8]) -> Option<(bool, u8, std::ops::Range<usize>, usize)> {
    let head = buf.get(..2)?;
    let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
    let (length, start) = match head[1] & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let end = start + usize::try_from(length).ok()?;
    (buf.len() >= end).then_some((fin, opcode, start..end, end))
}

/// The next text message from a blocking stream; None when the server closes it, or
/// on a read error or time-out.
pub fn read_text(stream: &mut impl Read, frames: &mut Frames) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match frames.next() {
            Some(Frame::Text(payload)) => return Some(payload),
            Some(Frame::Close) => return None,
            None => {}
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        frames.push(&chunk[..n]);
    }
}

/// A text frame from the client: a client's frames are masked (RFC 6455 §5.3).
pub fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x81);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = fastrand::u32(..).to_be_bytes();
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}
