//! Test harness: runs the real `permanence` binary on free loopback ports with a plan
//! written for the test, and drives it with SIPp or raw SIP over UDP/TCP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Each server in one test binary gets its own RTP range.
static RTP_BLOCK: AtomicU16 = AtomicU16::new(0);

pub const BIN: &str = env!("CARGO_BIN_EXE_permanence");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A free port on 127.0.0.1 for both UDP and TCP (checked by binding both).
pub fn free_port() -> u16 {
    free_port_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A free port on `ip` for both UDP and TCP (checked by binding both).
pub fn free_port_on(ip: IpAddr) -> u16 {
    loop {
        let udp = UdpSocket::bind((ip, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
}

/// Writes an 8 kHz mono 16-bit sine tone.
pub fn write_tone(path: &Path, hz: f64, seconds: f64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..(8000.0 * seconds) as usize {
        let s = (i as f64 * hz * 2.0 * std::f64::consts::PI / 8000.0).sin() * 12000.0;
        w.write_sample(s as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// A test's working directory with config, plans, sounds and data.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The loopback address the server listens on: 127.0.0.1, or ::1 ([`Setup::new_v6`]).
    pub ip: IpAddr,
}

impl Setup {
    /// A setup with a 3.5 s tone at `tone/a.wav` and the given plans (file name, TOML).
    pub fn new(plans: &[(&str, &str)]) -> Setup {
        let dir = tempfile::TempDir::new().unwrap();
        let port = free_port();
        let block = RTP_BLOCK.fetch_add(1, Ordering::Relaxed);
        let rtp_min = 30000 + block * 400;
        std::fs::write(
            dir.path().join("permanence.toml"),
            format!(
                "[sip]\nlisten = \"127.0.0.1:{port}\"\n[media]\nrtp_port_min = {rtp_min}\nrtp_port_max = {}\n\
                 [paths]\ndata = \"data\"\ndialplans = \"dialplans\"\nsounds = \"sounds\"\n[limits]\nshutdown_grace_seconds = 3\n",
                rtp_min + 399
            ),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("dialplans")).unwrap();
        write_tone(&dir.path().join("sounds/tone/a.wav"), 440.0, 3.5);
        write_tone(&dir.path().join("sounds/tone/long.wav"), 440.0, 30.0);
        // The prompts every installation ships (voicemail, beep, goodbye).
        let defaults = dir.path().join("sounds/default");
        std::fs::create_dir_all(&defaults).unwrap();
        for entry in std::fs::read_dir(repo().join("sounds/default")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), defaults.join(entry.file_name())).unwrap();
        }
        for (name, text) in plans {
            std::fs::write(dir.path().join("dialplans").join(name), text).unwrap();
        }
        Setup {
            dir,
            port,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// The same, the server listening on `[::1]:PORT` (so RTP binds there and SDP says
    /// `IN IP6 ::1`). Panics if IPv6 loopback is not available: no test skips.
    pub fn new_v6(plans: &[(&str, &str)]) -> Setup {
        let mut setup = Setup::new(plans);
        let ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let port = free_port_on(ip);
        let config = std::fs::read_to_string(setup.config()).unwrap();
        let v4 = format!("listen = \"127.0.0.1:{}\"", setup.port);
        assert!(config.contains(&v4), "{config}");
        let config = config.replace(&v4, &format!("listen = \"[::1]:{port}\""));
        std::fs::write(setup.config(), config).unwrap();
        setup.port = port;
        setup.ip = ip;
        setup
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("permanence.toml")
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("data/permanence.db")
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    /// Starts the server and waits until it answers OPTIONS.
    pub fn start(&self) -> Server {
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(self.config())
            .env("RUST_LOG", "info,permanence=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut server = Server {
            child: Some(child),
            addr: self.addr(),
            log: Default::default(),
        };
        server.collect_log();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if options_status(self.addr()) == Some(200) {
                return server;
            }
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited with {status}:\n{}", server.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not answer OPTIONS:\n{}", server.log());
    }

    /// Runs `permanence serve` expecting it to refuse to start; returns its stderr.
    pub fn start_fails(&self) -> String {
        let out = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(self.config())
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "server started although it should have refused"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn calls(&self) -> Vec<CallRow> {
        let conn = rusqlite::Connection::open(self.db()).unwrap();
        let mut stmt = conn
            .prepare("SELECT id, company, dialled, caller, answered_at IS NOT NULL, ended_at IS NOT NULL, outcome, route FROM calls ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| {
            Ok(CallRow {
                id: r.get(0)?,
                company: r.get(1)?,
                dialled: r.get(2)?,
                caller: r.get(3)?,
                answered: r.get(4)?,
                ended: r.get(5)?,
                outcome: r.get(6)?,
                route: r.get(7)?,
            })
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    /// Reload attempts as (trigger, result, changed files JSON, errors).
    pub fn reloads(&self) -> Vec<(String, String, String, String)> {
        let conn = rusqlite::Connection::open(self.db()).unwrap();
        let mut stmt = conn
            .prepare("SELECT trigger, result, changed, errors FROM reloads ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    pub fn events(&self, call: i64) -> Vec<String> {
        let conn = rusqlite::Connection::open(self.db()).unwrap();
        let mut stmt = conn
            .prepare("SELECT kind FROM events WHERE call_id = ?1 ORDER BY id")
            .unwrap();
        stmt.query_map([call], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Waits until the calls table satisfies `check` (records are written asynchronously).
    /// Returns as soon as `check` holds; the long deadline only matters on a loaded machine.
    pub fn wait_calls(&self, check: impl Fn(&[CallRow]) -> bool) -> Vec<CallRow> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let calls = if self.db().exists() {
                self.calls()
            } else {
                Vec::new()
            };
            if check(&calls) || Instant::now() > deadline {
                return calls;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallRow {
    pub id: i64,
    pub company: Option<String>,
    pub dialled: String,
    pub caller: String,
    pub answered: bool,
    pub ended: bool,
    pub outcome: Option<String>,
    pub route: Option<String>,
}

pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    fn collect_log(&mut self) {
        let stderr = self.child.as_mut().unwrap().stderr.take().unwrap();
        let log = std::sync::Arc::clone(&self.log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap().push_str(&line);
                log.lock().unwrap().push('\n');
            }
        });
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGHUP (reload the dial plans).
    pub fn hangup_signal(&self) {
        Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .unwrap();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends OPTIONS over UDP and returns the status, if any answer came within 300 ms.
pub fn options_status(addr: SocketAddr) -> Option<u16> {
    let sock = UdpSocket::bind(if addr.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    })
    .ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .ok()?;
    let local = sock.local_addr().ok()?;
    let msg = format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{}\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\n\
         To: <sip:127.0.0.1>\r\nCall-ID: probe-{}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        fastrand::u64(..),
        fastrand::u64(..)
    );
    sock.send_to(msg.as_bytes(), addr).ok()?;
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    status_of(&buf[..n])
}

/// The status code of a response.
pub fn status_of(bytes: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(bytes).ok()?;
    text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// Runs SIPp with a scenario from tests/scenarios against the server, from the loopback
/// address of the server's family (127.0.0.1, or ::1 for `[::1]:PORT`).
pub fn sipp(scenario: &str, addr: SocketAddr, args: &[&str]) -> Output {
    let ip = if addr.is_ipv6() {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    let local = free_port_on(ip).to_string();
    let media = free_port_on(ip).to_string();
    Command::new("sipp")
        .arg("-sf")
        .arg(repo().join("tests/scenarios").join(scenario))
        .args([
            "-m",
            "1",
            "-i",
            &ip.to_string(),
            "-p",
            &local,
            "-mp",
            &media,
            "-timeout",
            "60s",
            "-timeout_error",
            "-nostdin",
        ])
        .args(args)
        .arg(addr.to_string())
        .output()
        .expect("sipp is installed (Debian package sip-tester)")
}

/// SIPp as the usual caller (+33612345678) dialling `number`, its SDP offering the payload
/// types `offer` on `rtp_port`.
pub fn sipp_call(
    scenario: &str,
    addr: SocketAddr,
    number: &str,
    rtp_port: &str,
    offer: &str,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "-s",
        number,
        "-key",
        "caller",
        "+33612345678",
        "-key",
        "rtp_port",
        rtp_port,
        "-key",
        "offer",
        offer,
    ];
    args.extend_from_slice(extra);
    sipp(scenario, addr, &args)
}

/// Asserts that SIPp finished its scenario successfully.
pub fn assert_sipp_ok(out: &Output) {
    assert!(
        out.status.success(),
        "sipp failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A plan for company `id` at `number` with the given steps.
pub fn plan(id: &str, number: &str, steps: &str) -> String {
    format!(
        "[company]\nid = \"{id}\"\nname = \"{id} company\"\nnumbers = [\"{number}\"]\n\n[[route]]\nname = \"main\"\nsteps = {steps}\n"
    )
}

/// An RTP packet as received.
#[derive(Debug, Clone, Copy)]
pub struct RtpSeen {
    pub at: Instant,
    pub marker: bool,
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    pub len: usize,
    pub from: SocketAddr,
}

/// Receives RTP on `sock` until `quiet` passes with nothing, or `max` elapses.
pub fn collect_rtp(sock: &UdpSocket, quiet: Duration, max: Duration) -> Vec<RtpSeen> {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let start = Instant::now();
    let mut last = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while start.elapsed() < max && (out.is_empty() || last.elapsed() < quiet) {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            last = Instant::now();
            out.push(RtpSeen {
                at: last,
                marker: buf[1] & 0x80 != 0,
                pt: buf[1] & 0x7f,
                seq: u16::from_be_bytes([buf[2], buf[3]]),
                ts: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
                ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
                len: n,
                from,
            });
        }
    }
    out
}

/// Writes a pcap of RTP packets (PCMU, 20 ms apart) carrying a sine tone, for SIPp's
/// `play_pcap_audio`.
pub fn write_tone_pcap(path: &Path, hz: f64, seconds: f64) {
    write_tone_pcap_as(path, hz, seconds, 0)
}

/// The same in PCMU (payload type 0) or PCMA (8).
pub fn write_tone_pcap_as(path: &Path, hz: f64, seconds: f64, payload_type: u8) {
    let mut out = Vec::new();
    // Global header: magic, version 2.4, zone 0, sigfigs 0, snaplen, Ethernet.
    out.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let frames = (seconds * 50.0) as usize;
    for f in 0..frames {
        let mut rtp = vec![0x80u8, if f == 0 { 0x80 } else { 0 } | payload_type];
        rtp.extend_from_slice(&(f as u16).to_be_bytes());
        rtp.extend_from_slice(&((f * 160) as u32).to_be_bytes());
        rtp.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        for i in 0..160 {
            let n = (f * 160 + i) as f64;
            let s = ((n * hz * 2.0 * std::f64::consts::PI / 8000.0).sin() * 10000.0) as i16;
            rtp.push(if payload_type == 8 {
                permanence::g711::linear_to_alaw(s)
            } else {
                permanence::g711::linear_to_ulaw(s)
            });
        }
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![
            0x45,
            0,
            (ip_len >> 8) as u8,
            ip_len as u8,
            0,
            0,
            0x40,
            0,
            64,
            17,
            0,
            0,
            127,
            0,
            0,
            1,
            127,
            0,
            0,
            1,
        ];
        let sum: u32 = ip
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        let checksum = !(((sum & 0xffff) + (sum >> 16)) as u16);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&6000u16.to_be_bytes());
        frame.extend_from_slice(&6000u16.to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&0u16.to_be_bytes());
        frame.extend_from_slice(&rtp);
        let micros = f * 20_000;
        out.extend_from_slice(&((1_000_000 + micros / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((micros % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out).unwrap();
}

/// SIPp's own telephone-event capture for a key (Debian package sip-tester).
pub fn dtmf_pcap(key: &str) -> String {
    let name = match key {
        "#" => "pound".to_string(),
        "*" => "star".to_string(),
        k => k.to_string(),
    };
    let path = format!("/usr/share/sip-tester/dtmf_2833_{name}.pcap");
    assert!(
        Path::new(&path).exists(),
        "{path}: installed with sip-tester"
    );
    path
}

/// The messages table, for one call; the recording as a full path (it is stored relative
/// to the data directory, which is asserted here).
pub fn message_of(setup: &Setup, call: i64) -> (String, Option<String>, Option<i64>, bool) {
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let (category, recording, ms, empty): (String, Option<String>, Option<i64>, bool) = conn
        .query_row(
            "SELECT category, recording, recording_ms, recording_empty FROM messages WHERE call_id = ?1",
            [call],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    let recording = recording.map(|stored| {
        assert!(
            stored.starts_with("recordings/"),
            "stored relative to the data directory: {stored}"
        );
        setup
            .dir
            .path()
            .join("data")
            .join(stored)
            .display()
            .to_string()
    });
    (category, recording, ms, empty)
}

/// Registers `user` from 127.0.0.1:`port` with digest authentication (MD5), as a softphone
/// would, then frees the port for the test's phone (SIPp) to bind.
pub fn register_from(server: SocketAddr, port: u16, user: &str, password: &str) {
    let sock = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let local = sock.local_addr().unwrap();
    let send = |cseq: u32, auth: &str| {
        let msg = format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKreg{cseq}\r\n\
             From: <sip:{user}@127.0.0.1>;tag=r{port}\r\nTo: <sip:{user}@127.0.0.1>\r\n\
             Call-ID: reg-{user}-{port}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{local}>\r\n\
             Expires: 300\r\n{auth}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(msg.as_bytes(), server).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let challenge = send(1, "");
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    use permanence::auth::{Algorithm, ha1};
    let h1 = ha1(Algorithm::Md5, user, "permanence", password);
    let h2 = Algorithm::Md5.hash("REGISTER:sip:127.0.0.1");
    let response = Algorithm::Md5.hash(&format!("{h1}:{nonce}:00000001:c0ffee:auth:{h2}"));
    let auth = format!(
        "Authorization: Digest username=\"{user}\", realm=\"permanence\", nonce=\"{nonce}\", \
         uri=\"sip:127.0.0.1\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, \
         cnonce=\"c0ffee\"\r\n"
    );
    let ok = send(2, &auth);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
}

/// Starts SIPp as a phone (UAS) on 127.0.0.1:`port`, for one call, in the background.
pub fn sipp_phone(scenario: &str, port: u16, args: &[&str]) -> Child {
    let media = free_port().to_string();
    Command::new("sipp")
        .arg("-sf")
        .arg(repo().join("tests/scenarios").join(scenario))
        .args([
            "-m",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-mp",
            &media,
            "-timeout",
            "60s",
            "-timeout_error",
            "-nostdin",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp is installed (Debian package sip-tester)")
}

/// The dominant frequency of some audio, by zero crossings (enough for a pure tone).
pub fn tone_frequency(samples: &[i16]) -> f64 {
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    crossings as f64 / 2.0 / (samples.len() as f64 / 8000.0)
}

/// Waits for a SIPp phone started with [`sipp_phone`].
pub fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

/// Receives RTP for up to `max` (or until 1 s of quiet after the first packet): how many
/// audio packets came, and their G.711 audio decoded by payload type (0: PCMU, 8: PCMA;
/// telephone-events and others are not audio and are skipped).
pub fn hear(sock: &UdpSocket, max: Duration) -> (usize, Vec<i16>) {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let start = Instant::now();
    let mut last = Instant::now();
    let (mut packets, mut audio) = (0, Vec::new());
    let mut buf = [0u8; 2048];
    while start.elapsed() < max && (packets == 0 || last.elapsed() < Duration::from_secs(1)) {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let decode = match buf[1] & 0x7f {
            0 => permanence::g711::ulaw_to_linear,
            8 => permanence::g711::alaw_to_linear,
            _ => continue,
        };
        if n > 12 {
            last = Instant::now();
            packets += 1;
            audio.extend(buf[12..n].iter().map(|&b| decode(b)));
        }
    }
    (packets, audio)
}

/// A socket for the RTP of a SIPp call's far end (kept open so nothing else takes the
/// port), and its port as SIPp wants it.
pub fn rtp_socket() -> (UdpSocket, String) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port().to_string();
    (sock, port)
}

/// SIPp as `user`'s phone on `port` that answers, says half a second of 600 Hz and waits for
/// the server's BYE (`secretary_listens.xml`); what it hears lands on the returned socket.
pub fn listening_phone(setup: &Setup, port: u16, user: &str) -> (Child, UdpSocket) {
    let pcap = setup.dir.path().join(format!("voice-{port}.pcap"));
    write_tone_pcap(&pcap, 600.0, 0.5);
    let (sink, sink_port) = rtp_socket();
    let phone = sipp_phone(
        "secretary_listens.xml",
        port,
        &[
            "-key",
            "username",
            user,
            "-key",
            "rtp_port",
            &sink_port,
            "-key",
            "offer",
            "0",
            "-key",
            "audio_pcap",
            pcap.to_str().unwrap(),
        ],
    );
    (phone, sink)
}
