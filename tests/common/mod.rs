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

/// A SIPp media port on `ip`: SIPp binds it for audio and the port two above for video, so
/// the four from it are checked free over UDP.
pub fn free_media_ports_on(ip: IpAddr) -> u16 {
    loop {
        let port = free_port_on(ip);
        let rest_free = (1..=3).all(|k| {
            port.checked_add(k)
                .is_some_and(|p| UdpSocket::bind((ip, p)).is_ok())
        });
        if rest_free {
            return port;
        }
    }
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

/// A `calls` row of a placed call: company, direction, task, handled_by, outcome,
/// dialled, caller.
pub type OutboundRow = (
    Option<String>,
    String,
    Option<i64>,
    Option<String>,
    Option<String>,
    String,
    String,
);

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
        // Below the kernel's ephemeral range (32768 on): a server's RTP port must never be
        // one that `free_port` just handed to a SIPp in a parallel test.
        let block = RTP_BLOCK.fetch_add(1, Ordering::Relaxed) % 50;
        let rtp_min = 10000 + block * 400;
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
        self.start_with(&[])
    }

    /// Starts the server through a wrapper command (e.g. `unshare` with a script that
    /// ends by exec-ing its arguments), then waits until it answers OPTIONS.
    pub fn start_with(&self, wrapper: &[&str]) -> Server {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let child = command
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

    /// A placed call's row once it has ended (or after 10 s): company, direction, task,
    /// handled_by, outcome, dialled, caller.
    pub fn ended_outbound_row(&self, call: i64) -> OutboundRow {
        let conn = rusqlite::Connection::open(self.db()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let row: OutboundRow = conn
                .query_row(
                    "SELECT company, direction, task_id, handled_by, outcome, dialled, caller \
                     FROM calls WHERE id = ?1",
                    [call],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                        ))
                    },
                )
                .unwrap();
            if row.4.is_some() || Instant::now() > deadline {
                return row;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
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
    let media = free_media_ports_on(ip).to_string();
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
/// would, then frees the port for the test's phone (SIPp) to bind. The port was only
/// probed free ([`free_port`]): if another test holds it for a moment (its own probe), the
/// bind is retried for up to 10 s rather than failing at once; prefer
/// [`register_phone_port`], which needs no probed port.
pub fn register_from(server: SocketAddr, port: u16, user: &str, password: &str) {
    let sock = bind_udp_port_patiently(port);
    let ok = register_socket_md5(&sock, server, user, password);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
}

/// Starts SIPp as a phone (UAS) on 127.0.0.1:`port`, for one call, in the background.
pub fn sipp_phone(scenario: &str, port: u16, args: &[&str]) -> Child {
    let media = free_media_ports_on(IpAddr::V4(Ipv4Addr::LOCALHOST)).to_string();
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

// Helpers for issue 19 (tests that catch what users would suffer).

impl Setup {
    /// Adds `lines` to the config's `[section]`, creating the section if the config has none.
    pub fn add_config_lines(&self, section: &str, lines: &str) {
        let text = std::fs::read_to_string(self.config()).unwrap();
        let header = format!("[{section}]\n");
        let text = if text.contains(&header) {
            text.replacen(&header, &format!("{header}{lines}\n"), 1)
        } else {
            format!("{text}\n{header}{lines}\n")
        };
        std::fs::write(self.config(), text).unwrap();
    }
}

impl Server {
    /// Sends SIGTERM and returns at once: the server goes on through its grace period.
    pub fn send_sigterm_no_wait(&self) {
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
    }

    /// Waits up to `within` for the process to exit (after a signal sent earlier).
    pub fn wait_for_exit_within(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("the server is running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("server did not exit within {within:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log once a line containing `needle` has been read (or `within` passed).
    pub fn wait_for_log_line(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Writes a pcap of PCMU RTP packets (20 ms apart, one SSRC, consecutive sequence numbers
/// and timestamps): `tone_seconds` of a sine at `hz`, then `silence_seconds` of digital
/// silence, as a phone sends while its user talks and then says nothing.
pub fn write_tone_then_silence_pcap(path: &Path, hz: f64, tone_seconds: f64, silence_seconds: f64) {
    let tone = path.with_extension("tone-part.pcap");
    write_tone_pcap_as(&tone, hz, tone_seconds + silence_seconds, 0);
    let mut bytes = std::fs::read(&tone).unwrap();
    let _ = std::fs::remove_file(&tone);
    // Each record: 16-byte header, 14 Ethernet + 20 IP + 8 UDP + 12 RTP, then 160 samples.
    let record = 16 + 14 + 20 + 8 + 12 + 160;
    let tone_frames = (tone_seconds * 50.0) as usize;
    let frames = (bytes.len() - 24) / record;
    let silence = permanence::g711::linear_to_ulaw(0);
    for f in tone_frames..frames {
        let payload = 24 + f * record + 16 + 14 + 20 + 8 + 12;
        bytes[payload..payload + 160].fill(silence);
    }
    std::fs::write(path, bytes).unwrap();
}

// ---------------------------------------------------------------------------------------
// Issue 19: raw SIP phones and callers the test drives message by message, RTP it sends
// and reads, and waits for what a test needs (a registration stored, a port bound)
// instead of fixed sleeps.

/// Binds UDP 127.0.0.1:`port`, retrying for up to 10 s while something else holds it (a
/// parallel test's [`free_port`] probe holds a port for an instant).
pub fn bind_udp_port_patiently(port: u16) -> UdpSocket {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match UdpSocket::bind(("127.0.0.1", port)) {
            Ok(sock) => return sock,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("UDP 127.0.0.1:{port} stayed taken for 10 s: {e}"),
        }
    }
}

/// The value of the first header `name` (case-insensitive; compact forms too) in the
/// header section of a SIP message, trimmed.
pub fn sip_header_value<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    sip_header_values(text, name).into_iter().next()
}

/// Every value of header `name` in the header section, in order.
pub fn sip_header_values<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let compact = match name.to_ascii_lowercase().as_str() {
        "call-id" => Some("i"),
        "from" => Some("f"),
        "to" => Some("t"),
        "via" => Some("v"),
        "contact" => Some("m"),
        "content-length" => Some("l"),
        "content-type" => Some("c"),
        _ => None,
    };
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| {
            let (n, v) = line.split_once(':')?;
            let n = n.trim();
            (n.eq_ignore_ascii_case(name) || compact.is_some_and(|c| n.eq_ignore_ascii_case(c)))
                .then_some(v.trim())
        })
        .collect()
}

/// REGISTERs `user` from `sock` (Contact at the socket's address, Expires 300), answers
/// the 401 with an MD5 digest and returns the final answer's text. Datagrams that do not
/// answer this registration are skipped; panics after 5 s without an answer.
pub fn register_socket_md5(
    sock: &UdpSocket,
    server: SocketAddr,
    user: &str,
    password: &str,
) -> String {
    let local = sock.local_addr().unwrap();
    let port = local.port();
    let call_id = format!("reg-{user}-{port}");
    let send = |cseq: u32, auth: &str| -> String {
        let msg = format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKreg{cseq}\r\n\
             From: <sip:{user}@127.0.0.1>;tag=r{port}\r\nTo: <sip:{user}@127.0.0.1>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{local}>\r\n\
             Expires: 300\r\n{auth}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(msg.as_bytes(), server).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 8192];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no answer to REGISTER (CSeq {cseq}) for {user} from {local}"
            );
            sock.set_read_timeout(Some(left)).unwrap();
            let Ok((n, _)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let ours = sip_header_value(&text, "Call-ID") == Some(call_id.as_str())
                && sip_header_value(&text, "CSeq") == Some(format!("{cseq} REGISTER").as_str());
            if ours && status_of(text.as_bytes()).is_some_and(|s| s >= 200) {
                return text;
            }
        }
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
    send(2, &auth)
}

/// Registers `user` (MD5 digest) from a port the kernel picks, then frees that port and
/// returns it for the test's phone (SIPp) to bind: unlike [`free_port`] + [`register_from`],
/// no probed port that a parallel test could take in between.
pub fn register_phone_port(server: SocketAddr, user: &str, password: &str) -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ok = register_socket_md5(&sock, server, user, password);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    sock.local_addr().unwrap().port()
}

/// Whether some socket has bound UDP `port` on any local address, read from
/// /proc/net/udp and /proc/net/udp6 (this binds nothing, so it never gets in the way).
pub fn udp_port_is_bound(port: u16) -> bool {
    let wanted = format!(":{port:04X}");
    ["/proc/net/udp", "/proc/net/udp6"].iter().any(|table| {
        std::fs::read_to_string(table).is_ok_and(|text| {
            text.lines().skip(1).any(|line| {
                line.split_whitespace()
                    .nth(1)
                    .is_some_and(|local| local.ends_with(&wanted))
            })
        })
    })
}

/// Waits until a SIPp phone started with [`sipp_phone`] on `port` has bound it (so an
/// INVITE sent now reaches it); panics if SIPp exits first or after 10 s.
pub fn wait_sipp_phone_ready(phone: &mut Child, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !udp_port_is_bound(port) {
        if let Some(status) = phone.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = phone.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!("SIPp phone on port {port} exited before binding it: {status}\n{stderr}");
        }
        assert!(
            Instant::now() < deadline,
            "SIPp phone did not bind port {port} within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `registrations` table's rows for `user` as (contact, source, transport), once it
/// holds `n` of them (polled for up to 10 s; whatever is there then is returned).
pub fn wait_registration_rows(
    setup: &Setup,
    user: &str,
    n: usize,
) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = registration_rows(setup, user);
        if rows.len() == n || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `registrations` table's rows for `user` now, as (contact, source, transport).
pub fn registration_rows(setup: &Setup, user: &str) -> Vec<(String, String, String)> {
    if !setup.db().exists() {
        return Vec::new();
    }
    let conn = rusqlite::Connection::open(setup.db()).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT contact, source, transport FROM registrations WHERE username = ?1 ORDER BY contact",
        )
        .unwrap();
    stmt.query_map([user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The calls row id of the call whose INVITE had this Call-ID, once written (up to 10 s).
pub fn wait_call_row_by_sip_call_id(setup: &Setup, sip_call_id: &str) -> Option<i64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if setup.db().exists() {
            let conn = rusqlite::Connection::open(setup.db()).unwrap();
            let id = conn
                .query_row(
                    "SELECT id FROM calls WHERE sip_call_id = ?1",
                    [sip_call_id],
                    |r| r.get(0),
                )
                .ok();
            if id.is_some() {
                return id;
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One SIP message a [`RawSipPhone`] received.
#[derive(Debug, Clone)]
pub struct RawSipMessage {
    pub text: String,
    pub from: SocketAddr,
    pub at: Instant,
}

impl RawSipMessage {
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or_default()
    }

    /// The method of a request (`None` for a response).
    pub fn method(&self) -> Option<&str> {
        let first = self.first_line();
        if first.starts_with("SIP/2.0 ") {
            return None;
        }
        first.split(' ').next()
    }

    /// The status of a response.
    pub fn status(&self) -> Option<u16> {
        status_of(self.text.as_bytes())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        sip_header_value(&self.text, name)
    }

    pub fn call_id(&self) -> &str {
        self.header("Call-ID").unwrap_or_default()
    }

    /// The CSeq as (number, method).
    pub fn cseq(&self) -> (u32, String) {
        let cseq = self.header("CSeq").unwrap_or_default();
        let (n, m) = cseq.split_once(' ').unwrap_or(("0", ""));
        (n.trim().parse().unwrap_or(0), m.trim().to_string())
    }

    pub fn body(&self) -> &str {
        self.text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    /// The tag parameter of the To (or From) header.
    pub fn tag_of(&self, header: &str) -> Option<String> {
        self.header(header)?
            .split(';')
            .skip(1)
            .find_map(|p| p.trim().strip_prefix("tag=").map(str::to_string))
    }

    /// What tells this message from another (a retransmission has the same).
    fn identity(&self) -> String {
        let (n, m) = self.cseq();
        match (self.method(), self.status()) {
            (Some(method), _) => {
                let branch = self
                    .header("Via")
                    .and_then(|v| v.split(";branch=").nth(1))
                    .and_then(|b| b.split(';').next())
                    .unwrap_or_default();
                format!("{method} {} {n} {m} {branch}", self.call_id())
            }
            (None, status) => format!("{status:?} {} {n} {m}", self.call_id()),
        }
    }
}

/// The URI inside a name-addr (`"x" <sip:a@b>;tag=1` → `sip:a@b`) or a bare addr-spec.
pub fn uri_in_name_addr(value: &str) -> String {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => value[a + 1..b].to_string(),
        _ => value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// A phone (or caller) the test drives by hand over UDP from 127.0.0.1: it sees every
/// datagram, answers what it is told to, and never answers by itself.
pub struct RawSipPhone {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    /// Every SIP message received, in order (for "nothing of that kind came" checks).
    pub received: Vec<RawSipMessage>,
    backlog: std::collections::VecDeque<RawSipMessage>,
    consumed: std::collections::HashSet<String>,
}

impl RawSipPhone {
    /// A phone on a port of its own (kept for the phone's life: no port race).
    pub fn bind(server: SocketAddr) -> RawSipPhone {
        RawSipPhone {
            sock: UdpSocket::bind("127.0.0.1:0").unwrap(),
            server,
            received: Vec::new(),
            backlog: Default::default(),
            consumed: Default::default(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    /// Registers `user` with a digest answer (before any other traffic); returns the 200.
    pub fn register(&self, user: &str, password: &str) -> String {
        let ok = register_socket_md5(&self.sock, self.server, user, password);
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        ok
    }

    /// Sends a message to the server.
    pub fn send(&self, text: &str) {
        self.sock.send_to(text.as_bytes(), self.server).unwrap();
    }

    /// Reads one datagram (waiting up to `wait`) into the log and, unless it repeats one
    /// already taken or queued, the backlog.
    fn pump(&mut self, wait: Duration) {
        let wait = wait.max(Duration::from_millis(1));
        self.sock.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0u8; 65536];
        let Ok((n, from)) = self.sock.recv_from(&mut buf) else {
            return;
        };
        let message = RawSipMessage {
            text: String::from_utf8_lossy(&buf[..n]).into_owned(),
            from,
            at: Instant::now(),
        };
        self.received.push(message.clone());
        let id = message.identity();
        if !self.consumed.contains(&id) && !self.backlog.iter().any(|m| m.identity() == id) {
            self.backlog.push_back(message);
        }
    }

    /// The first new message (oldest first) that satisfies `what`, waiting up to `timeout`.
    /// Retransmissions of a message already returned are not returned again.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        what: impl Fn(&RawSipMessage) -> bool,
    ) -> Option<RawSipMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(index) = self.backlog.iter().position(&what) {
                let message = self.backlog.remove(index).unwrap();
                self.consumed.insert(message.identity());
                return Some(message);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.pump(left.min(Duration::from_millis(100)));
        }
    }

    /// The next new request with this method.
    pub fn wait_request(&mut self, method: &str, timeout: Duration) -> Option<RawSipMessage> {
        self.wait_for(timeout, |m| m.method() == Some(method))
    }

    /// The next new request with this method in the dialog (or transaction) `call_id`.
    pub fn wait_request_in(
        &mut self,
        method: &str,
        call_id: &str,
        timeout: Duration,
    ) -> Option<RawSipMessage> {
        self.wait_for(timeout, |m| {
            m.method() == Some(method) && m.call_id() == call_id
        })
    }

    /// The final response (≥ 200) to our request `method` in `call_id`.
    pub fn wait_final(
        &mut self,
        call_id: &str,
        method: &str,
        timeout: Duration,
    ) -> Option<RawSipMessage> {
        self.wait_for(timeout, |m| {
            m.status().is_some_and(|s| s >= 200) && m.call_id() == call_id && m.cseq().1 == method
        })
    }

    /// Reads whatever comes for `period` (into [`RawSipPhone::received`]).
    pub fn listen(&mut self, period: Duration) {
        let deadline = Instant::now() + period;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            self.pump(left.min(Duration::from_millis(100)));
        }
    }

    /// Answers `request` with `status`, copying Via, From, To (adding `to_tag` when it has
    /// none), Call-ID and CSeq, with our Contact, `extra` headers and an SDP `body`.
    pub fn respond(
        &self,
        request: &RawSipMessage,
        status: u16,
        to_tag: Option<&str>,
        extra: &[(&str, &str)],
        body: Option<&str>,
    ) {
        let reason = match status {
            100 => "Trying",
            180 => "Ringing",
            200 => "OK",
            486 => "Busy Here",
            487 => "Request Terminated",
            603 => "Decline",
            _ => "Whatever",
        };
        let mut out = format!("SIP/2.0 {status} {reason}\r\n");
        for via in sip_header_values(&request.text, "Via") {
            out.push_str(&format!("Via: {via}\r\n"));
        }
        out.push_str(&format!("From: {}\r\n", request.header("From").unwrap()));
        let to = request.header("To").unwrap();
        match to_tag {
            Some(tag) if request.tag_of("To").is_none() => {
                out.push_str(&format!("To: {to};tag={tag}\r\n"))
            }
            _ => out.push_str(&format!("To: {to}\r\n")),
        }
        out.push_str(&format!(
            "Call-ID: {}\r\nCSeq: {}\r\nContact: <sip:phone@{}>\r\n",
            request.call_id(),
            request.header("CSeq").unwrap(),
            self.addr()
        ));
        for (name, value) in extra {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        match body {
            Some(body) => out.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )),
            None => out.push_str("Content-Length: 0\r\n\r\n"),
        }
        self.sock.send_to(out.as_bytes(), request.from).unwrap();
    }

    /// Sends an INVITE from `caller` to the company number `number`, with an SDP `offer`.
    pub fn invite(&self, number: &str, caller: &str, offer: &str) -> RawSipInvite {
        let local = self.addr();
        let call_id = format!("raw-{}@127.0.0.1", fastrand::u64(..));
        let branch = format!("z9hG4bKraw{}", fastrand::u64(..));
        let from = format!("<sip:{caller}@{local}>;tag=c{}", fastrand::u32(..));
        let request_uri = format!("sip:{number}@{}", self.server);
        let to = format!("<{request_uri}>");
        let text = format!(
            "INVITE {request_uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:{caller}@{local}>\r\nMax-Forwards: 70\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
            offer.len()
        );
        self.send(&text);
        RawSipInvite {
            call_id,
            branch,
            from,
            to,
            request_uri,
        }
    }

    /// Waits for the INVITE's final answer and ACKs it: a 2xx in its dialog (returned
    /// with the answer), anything else in its transaction.
    pub fn invite_outcome(
        &mut self,
        invite: &RawSipInvite,
        timeout: Duration,
    ) -> Option<(RawSipMessage, Option<RawSipDialog>)> {
        let answer = self.wait_final(&invite.call_id, "INVITE", timeout)?;
        if answer.status().is_some_and(|s| s < 300) {
            let dialog = RawSipDialog::caller(invite, &answer);
            self.send(&dialog.ack(self.addr(), 1));
            Some((answer, Some(dialog)))
        } else {
            let ack = format!(
                "ACK {} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={};rport\r\nFrom: {}\r\nTo: {}\r\n\
                 Call-ID: {}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                invite.request_uri,
                self.addr(),
                invite.branch,
                invite.from,
                answer.header("To").unwrap(),
                invite.call_id
            );
            self.send(&ack);
            Some((answer, None))
        }
    }
}

/// An INVITE a [`RawSipPhone`] sent.
#[derive(Debug, Clone)]
pub struct RawSipInvite {
    pub call_id: String,
    pub branch: String,
    /// Our From, with its tag.
    pub from: String,
    pub to: String,
    pub request_uri: String,
}

/// One side of a dialog, to send requests in it (RFC 3261 §12.2.1.1): no route set (the
/// tests talk to the server directly).
#[derive(Debug, Clone)]
pub struct RawSipDialog {
    pub call_id: String,
    /// Our side (From of our requests), with our tag.
    pub local: String,
    /// Their side (To of our requests), with their tag.
    pub remote: String,
    /// Where our requests go: their Contact.
    pub remote_target: String,
    pub cseq: u32,
}

impl RawSipDialog {
    /// The called phone's side of the dialog `invite` created, answered with To tag `tag`.
    pub fn callee(invite: &RawSipMessage, tag: &str) -> RawSipDialog {
        RawSipDialog {
            call_id: invite.call_id().to_string(),
            local: format!("{};tag={tag}", invite.header("To").unwrap()),
            remote: invite.header("From").unwrap().to_string(),
            remote_target: uri_in_name_addr(invite.header("Contact").unwrap()),
            cseq: 100,
        }
    }

    /// The caller's side, from the 2xx to its INVITE.
    pub fn caller(invite: &RawSipInvite, answer: &RawSipMessage) -> RawSipDialog {
        RawSipDialog {
            call_id: invite.call_id.clone(),
            local: invite.from.clone(),
            remote: answer.header("To").unwrap().to_string(),
            remote_target: answer
                .header("Contact")
                .map(uri_in_name_addr)
                .unwrap_or_else(|| invite.request_uri.clone()),
            cseq: 1,
        }
    }

    /// A new request in the dialog (next CSeq), sent from `local`, with an SDP `body`.
    pub fn request(
        &mut self,
        local: SocketAddr,
        method: &str,
        extra: &[(&str, &str)],
        body: Option<&str>,
    ) -> String {
        self.cseq += 1;
        let mut out = format!(
            "{method} {} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKdlg{};rport\r\n\
             From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {method}\r\nContact: <sip:phone@{local}>\r\n\
             Max-Forwards: 70\r\n",
            self.remote_target,
            fastrand::u64(..),
            self.local,
            self.remote,
            self.call_id,
            self.cseq
        );
        for (name, value) in extra {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        match body {
            Some(body) => out.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )),
            None => out.push_str("Content-Length: 0\r\n\r\n"),
        }
        out
    }

    /// The ACK of the 2xx to our INVITE with CSeq number `cseq`.
    pub fn ack(&self, local: SocketAddr, cseq: u32) -> String {
        format!(
            "ACK {} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKack{};rport\r\n\
             From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} ACK\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n",
            self.remote_target,
            fastrand::u64(..),
            self.local,
            self.remote,
            self.call_id
        )
    }
}

/// An SDP offer or answer for audio at `rtp` (127.0.0.1): the G.711 payload types
/// `payload_types` (0, 8), telephone-event at `telephone_event` if any, the direction
/// attribute (`sendrecv`, `sendonly`…) and the `o=` version.
pub fn raw_sdp(
    rtp: SocketAddr,
    payload_types: &[u8],
    telephone_event: Option<u8>,
    direction: &str,
    version: u32,
) -> String {
    let mut formats: Vec<String> = payload_types.iter().map(u8::to_string).collect();
    formats.extend(telephone_event.map(|t| t.to_string()));
    let mut out = format!(
        "v=0\r\no=raw 4242 {version} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP {}\r\n",
        rtp.port(),
        formats.join(" "),
        ip = rtp.ip()
    );
    for pt in payload_types {
        let name = if *pt == 8 { "PCMA" } else { "PCMU" };
        out.push_str(&format!("a=rtpmap:{pt} {name}/8000\r\n"));
    }
    if let Some(te) = telephone_event {
        out.push_str(&format!(
            "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
        ));
    }
    out.push_str(&format!("a={direction}\r\n"));
    out
}

/// One RTP packet to send with [`send_rtp_frames`].
#[derive(Debug, Clone)]
pub struct RtpFrameToSend {
    pub payload_type: u8,
    pub marker: bool,
    pub timestamp: u32,
    pub payload: Vec<u8>,
}

/// `seconds` of a sine tone at `hz` as 20 ms G.711 frames (payload type 0: µ-law, 8:
/// A-law), timestamps from `ts`.
pub fn tone_frames(hz: f64, seconds: f64, payload_type: u8, ts: u32) -> Vec<RtpFrameToSend> {
    (0..(seconds * 50.0) as usize)
        .map(|f| RtpFrameToSend {
            payload_type,
            marker: f == 0,
            timestamp: ts.wrapping_add((f * 160) as u32),
            payload: (0..160)
                .map(|i| {
                    let n = (f * 160 + i) as f64;
                    let s = ((n * hz * 2.0 * std::f64::consts::PI / 8000.0).sin() * 10000.0) as i16;
                    if payload_type == 8 {
                        permanence::g711::linear_to_alaw(s)
                    } else {
                        permanence::g711::linear_to_ulaw(s)
                    }
                })
                .collect(),
        })
        .collect()
}

/// One key press as RFC 4733 packets at timestamp `ts`, as phones send it: a 100 ms press
/// (5 packets, the first with the marker) and three copies of the end packet.
pub fn key_press_frames(payload_type: u8, event: u8, ts: u32) -> Vec<RtpFrameToSend> {
    let packet = |duration: u16, end: bool| {
        let mut p = vec![event, if end { 0x80 | 10 } else { 10 }];
        p.extend_from_slice(&duration.to_be_bytes());
        p
    };
    let mut frames: Vec<RtpFrameToSend> = (1..=5u16)
        .map(|i| RtpFrameToSend {
            payload_type,
            marker: i == 1,
            timestamp: ts,
            payload: packet(i * 160, false),
        })
        .collect();
    for _ in 0..3 {
        frames.push(RtpFrameToSend {
            payload_type,
            marker: false,
            timestamp: ts,
            payload: packet(960, true),
        });
    }
    frames
}

/// Sends `frames` from `sock` to `to`, 20 ms apart, numbered from a random sequence
/// number with SSRC `ssrc`, in a thread.
pub fn send_rtp_frames(
    sock: &UdpSocket,
    to: SocketAddr,
    ssrc: u32,
    frames: Vec<RtpFrameToSend>,
) -> std::thread::JoinHandle<()> {
    let sock = sock.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut seq = fastrand::u16(..);
        let start = Instant::now();
        for (i, f) in frames.into_iter().enumerate() {
            let mut packet = vec![0x80, f.payload_type | if f.marker { 0x80 } else { 0 }];
            packet.extend_from_slice(&seq.to_be_bytes());
            packet.extend_from_slice(&f.timestamp.to_be_bytes());
            packet.extend_from_slice(&ssrc.to_be_bytes());
            packet.extend_from_slice(&f.payload);
            let _ = sock.send_to(&packet, to);
            seq = seq.wrapping_add(1);
            let next = start + Duration::from_millis(20 * (i as u64 + 1));
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    })
}

/// RTP packets received on `sock` as (payload type, payload), until `quiet` passes with
/// nothing after the first packet, or `max` elapses.
pub fn collect_rtp_payloads(
    sock: &UdpSocket,
    quiet: Duration,
    max: Duration,
) -> Vec<(u8, Vec<u8>)> {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let start = Instant::now();
    let mut last = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while start.elapsed() < max && (out.is_empty() || last.elapsed() < quiet) {
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && n >= 12
        {
            last = Instant::now();
            out.push((buf[1] & 0x7f, buf[12..n].to_vec()));
        }
    }
    out
}

/// Reads and forgets whatever is queued on `sock` now.
pub fn drain_udp(sock: &UdpSocket) {
    sock.set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(2);
    while sock.recv_from(&mut buf).is_ok() && Instant::now() < deadline {}
}

/// A caller (SIPp `talk.xml`) dialling `number` in the background and saying a 0.5 s
/// `hz` tone: its thread (joined for SIPp's output) and the RTP socket where it hears us.
pub fn talking_caller(
    setup: &Setup,
    number: &str,
    hz: f64,
) -> (std::thread::JoinHandle<Output>, UdpSocket) {
    let pcap = setup.dir.path().join("caller.pcap");
    write_tone_pcap(&pcap, hz, 0.5);
    let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = rtp.local_addr().unwrap().port().to_string();
    let (addr, number, pcap) = (
        setup.addr(),
        number.to_string(),
        pcap.to_str().unwrap().to_string(),
    );
    let caller = std::thread::spawn(move || {
        sipp_call(
            "talk.xml",
            addr,
            &number,
            &port,
            "0",
            &["-key", "audio_pcap", &pcap],
        )
    });
    (caller, rtp)
}

/// A self-signed certificate for 127.0.0.1 and its key, made with openssl: (cert, key).
pub fn make_certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed (Debian package openssl)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (cert, key)
}

/// A test CA and a certificate for 127.0.0.1 it signed, with the certificate's key, made
/// with openssl: (ca, cert, key). For TLS clients that check like a browser (webpki, as
/// rustls's client does): they refuse `make_certificate`'s self-signed CA certificate as a
/// server's own ("CaUsedAsEndEntity"), so a test gives them this CA to trust instead.
pub fn make_ca_and_certificate(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    let (cert, key, csr) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("cert.csr"),
    );
    let extensions = dir.join("cert.ext");
    std::fs::write(
        &extensions,
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let p256 = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let steps: [Vec<std::ffi::OsString>; 3] = [
        [
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=Permanence test CA",
        ]
        .iter()
        .chain(&p256)
        .map(Into::into)
        .chain([
            "-keyout".into(),
            ca_key.clone().into(),
            "-out".into(),
            ca.clone().into(),
        ])
        .collect(),
        ["req", "-subj", "/CN=127.0.0.1"]
            .iter()
            .chain(&p256)
            .map(Into::into)
            .chain([
                "-keyout".into(),
                key.clone().into(),
                "-out".into(),
                csr.clone().into(),
            ])
            .collect(),
        ["x509", "-req", "-days", "2", "-CAcreateserial"]
            .iter()
            .map(Into::into)
            .chain([
                "-in".into(),
                csr.into(),
                "-CA".into(),
                ca.clone().into(),
                "-CAkey".into(),
                ca_key.into(),
                "-extfile".into(),
                extensions.into(),
                "-out".into(),
                cert.clone().into(),
            ])
            .collect(),
    ];
    for args in steps {
        let made = std::process::Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl is installed (Debian package openssl)");
        assert!(
            made.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    (ca, cert, key)
}

pub mod browser;
pub mod web;
#[allow(unused_imports)]
pub use browser::*;
#[allow(unused_imports)]
pub use web::*;

/// `permanence ARGS --config <the setup's>`, which must succeed: its standard output.
pub fn cli_for(setup: &Setup, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(setup.config())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// SIPp as `user`'s phone on `port` (`secretary.xml`: answers, talks `voice`, a pcap, and
/// hangs up 3 s after the ACK), ready for the call; the returned socket takes its RTP.
pub fn talking_secretary(port: u16, user: &str, voice: &Path) -> (Child, UdpSocket) {
    let (sink, sink_port) = rtp_socket();
    let mut phone = sipp_phone(
        "secretary.xml",
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
            voice.to_str().unwrap(),
        ],
    );
    wait_sipp_phone_ready(&mut phone, port);
    (phone, sink)
}
