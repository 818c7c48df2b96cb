//! rtp_sink: a standalone RTP receiver for the media load benchmark
//! (`benches/load.sh concurrent`). Standard library only.
//!
//! Usage: rtp_sink --port N [--seconds S]
//!   (cargo bench / cargo run may add arguments such as `--bench`: every
//!   argument other than --port/--seconds is ignored.)
//!
//! Binds UDP 127.0.0.1:N and receives RTP until S seconds (default 60) have
//! passed since start, or until no packet has arrived for 3 s after the
//! first one. Then prints ONE JSON line on stdout:
//!
//!   packets            valid RTP packets received (V=2, >= 12 bytes)
//!   invalid            datagrams that were not RTP
//!   ssrcs              number of distinct SSRCs (one per call leg)
//!   per_ssrc           packets per SSRC: min / median / max
//!   spacing_us         arrival spacing in microseconds between consecutive
//!                      packets of the same SSRC, pooled over all SSRCs, the
//!                      first packet of each SSRC excluded: count, p50, p99,
//!                      p999 (99.9th), max (nearest-rank percentiles)
//!   seq_gaps           packets whose sequence number is not previous + 1
//!                      (loss, reordering or duplicates), all SSRCs
//!   ts_steps_not_160   packets whose RTP timestamp is not previous + 160
//!                      (20 ms at 8 kHz), all SSRCs
//!   rcvbuf_bytes       the socket's receive buffer as the kernel reports it
//!   kernel_drops       datagrams the kernel dropped on this socket because
//!                      the buffer was full (/proc/net/udp), or null
//!   elapsed_s          seconds from start to the end of reception
//!   first_to_last_s    seconds between the first and the last packet
//!
//! Spacing is measured at user level, so it includes this process's own
//! scheduling delays: on a loaded 2-core machine, p99/max are an upper bound
//! on the sender's jitter, not the sender's jitter alone.
//!
//! Receive buffer: std has no API for SO_RCVBUF. At 60,000 packets/s the
//! default buffer (net.core.rmem_default, often 208 KiB, i.e. a few hundred
//! packets given the kernel's per-packet overhead) gives only a few
//! milliseconds of slack, so on Linux this program declares the C
//! `setsockopt` that std already links (no extra crate) and asks for 32 MiB:
//! first with SO_RCVBUFFORCE (works as root, ignores net.core.rmem_max),
//! then with SO_RCVBUF (capped by net.core.rmem_max). The effective size and
//! the kernel's drop count are printed, so a too-small buffer shows up in the
//! output instead of silently lowering the packet count. The receive loop
//! itself does nothing but recv, a clock read, a hash-map update and a
//! vector push per packet.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// How long without packets, after the first one, ends the run.
const IDLE_END: Duration = Duration::from_secs(3);
/// Socket read timeout: how often deadlines are checked while idle.
const POLL: Duration = Duration::from_millis(50);
/// Receive buffer asked for.
const WANT_RCVBUF: i32 = 32 * 1024 * 1024;
/// Expected RTP timestamp step for 20 ms of 8 kHz audio.
const TS_STEP: u32 = 160;

struct Args {
    port: u16,
    seconds: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut port = None;
    let mut seconds = 60.0;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        // Accept both "--port N" and "--port=N".
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        match name.as_str() {
            "--port" | "--seconds" => {
                let v = match inline {
                    Some(v) => v,
                    None => it.next().ok_or(format!("{name} needs a value"))?,
                };
                if name == "--port" {
                    port = Some(v.parse::<u16>().map_err(|e| format!("--port {v}: {e}"))?);
                } else {
                    seconds = v
                        .parse::<f64>()
                        .map_err(|e| format!("--seconds {v}: {e}"))?;
                    if !(seconds > 0.0 && seconds.is_finite()) {
                        return Err(format!("--seconds {v}: must be > 0"));
                    }
                }
            }
            _ => {} // e.g. `--bench` from cargo: ignored.
        }
    }
    Ok(Args {
        port: port.ok_or("missing --port N")?,
        seconds,
    })
}

#[cfg(target_os = "linux")]
mod sockbuf {
    //! Receive-buffer size through the C library std already links.
    use std::ffi::c_void;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    // Linux values (asm-generic; also x86, arm, aarch64, riscv).
    const SOL_SOCKET: i32 = 1;
    const SO_RCVBUF: i32 = 8;
    const SO_RCVBUFFORCE: i32 = 33;

    unsafe extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, val: *const c_void, len: u32) -> i32;
        fn getsockopt(fd: i32, level: i32, name: i32, val: *mut c_void, len: *mut u32) -> i32;
    }

    /// Asks for `bytes` of receive buffer; returns the size the kernel reports.
    pub fn enlarge(sock: &UdpSocket, bytes: i32) -> Option<i64> {
        let fd = sock.as_raw_fd();
        let len = size_of::<i32>() as u32;
        // SAFETY: fd is a valid open socket for the duration of the calls;
        // the value pointers point to live i32s of the length given.
        unsafe {
            let v = bytes;
            let p = &v as *const i32 as *const c_void;
            if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, p, len) != 0 {
                setsockopt(fd, SOL_SOCKET, SO_RCVBUF, p, len);
            }
            let mut got: i32 = 0;
            let mut got_len = len;
            let r = getsockopt(
                fd,
                SOL_SOCKET,
                SO_RCVBUF,
                &mut got as *mut i32 as *mut c_void,
                &mut got_len,
            );
            (r == 0).then_some(got as i64)
        }
    }

    /// Drops the kernel counted on this socket, from /proc/net/udp.
    pub fn kernel_drops(sock: &UdpSocket) -> Option<u64> {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", sock.as_raw_fd())).ok()?;
        let link = link.to_string_lossy();
        let inode = link.strip_prefix("socket:[")?.strip_suffix(']')?;
        let table = std::fs::read_to_string("/proc/net/udp").ok()?;
        for line in table.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref ptr drops
            if cols.len() >= 13 && cols[9] == inode {
                return cols[12].parse().ok();
            }
        }
        None
    }
}

#[cfg(not(target_os = "linux"))]
mod sockbuf {
    use std::net::UdpSocket;
    pub fn enlarge(_: &UdpSocket, _: i32) -> Option<i64> {
        None
    }
    pub fn kernel_drops(_: &UdpSocket) -> Option<u64> {
        None
    }
}

/// Per-SSRC state.
struct Stream {
    packets: u64,
    last_seq: u16,
    last_ts: u32,
    last_at: Instant,
}

/// Nearest-rank percentile of a sorted slice (p in 0..=100).
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn opt(v: Option<u64>) -> String {
    v.map_or("null".to_string(), |x| x.to_string())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rtp_sink: {e}\nusage: rtp_sink --port N [--seconds S]");
            std::process::exit(2);
        }
    };
    let sock = match UdpSocket::bind(("127.0.0.1", args.port)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rtp_sink: bind 127.0.0.1:{}: {e}", args.port);
            std::process::exit(1);
        }
    };
    let rcvbuf = sockbuf::enlarge(&sock, WANT_RCVBUF);
    sock.set_read_timeout(Some(POLL)).expect("set_read_timeout");

    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.seconds);
    let mut streams: HashMap<u32, Stream> = HashMap::new();
    // 60 s at 60,000 packets/s fits without reallocation.
    let mut spacing: Vec<u64> = Vec::with_capacity(4_000_000);
    let mut packets: u64 = 0;
    let mut invalid: u64 = 0;
    let mut seq_gaps: u64 = 0;
    let mut ts_bad: u64 = 0;
    let mut first_at: Option<Instant> = None;
    let mut last_at = start;
    let mut buf = [0u8; 2048];

    loop {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let now = Instant::now();
                if n < 12 || buf[0] >> 6 != 2 {
                    invalid += 1;
                } else {
                    let seq = u16::from_be_bytes([buf[2], buf[3]]);
                    let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                    let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                    packets += 1;
                    first_at.get_or_insert(now);
                    last_at = now;
                    match streams.get_mut(&ssrc) {
                        Some(s) => {
                            spacing.push(now.duration_since(s.last_at).as_micros() as u64);
                            if seq != s.last_seq.wrapping_add(1) {
                                seq_gaps += 1;
                            }
                            if ts != s.last_ts.wrapping_add(TS_STEP) {
                                ts_bad += 1;
                            }
                            s.packets += 1;
                            s.last_seq = seq;
                            s.last_ts = ts;
                            s.last_at = now;
                        }
                        None => {
                            streams.insert(
                                ssrc,
                                Stream {
                                    packets: 1,
                                    last_seq: seq,
                                    last_ts: ts,
                                    last_at: now,
                                },
                            );
                        }
                    }
                }
                if now >= deadline {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                let now = Instant::now();
                if now >= deadline
                    || (first_at.is_some() && now.duration_since(last_at) >= IDLE_END)
                {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("rtp_sink: recv: {e}");
                std::process::exit(1);
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let drops = sockbuf::kernel_drops(&sock);

    let mut per: Vec<u64> = streams.values().map(|s| s.packets).collect();
    per.sort_unstable();
    spacing.sort_unstable();
    let first_to_last = first_at.map_or(0.0, |f| last_at.duration_since(f).as_secs_f64());

    println!(
        concat!(
            "{{\"port\":{},\"packets\":{},\"invalid\":{},\"ssrcs\":{},",
            "\"per_ssrc\":{{\"min\":{},\"median\":{},\"max\":{}}},",
            "\"spacing_us\":{{\"count\":{},\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{}}},",
            "\"seq_gaps\":{},\"ts_steps_not_160\":{},\"rcvbuf_bytes\":{},\"kernel_drops\":{},",
            "\"elapsed_s\":{:.3},\"first_to_last_s\":{:.3}}}"
        ),
        args.port,
        packets,
        invalid,
        streams.len(),
        opt(per.first().copied()),
        opt(percentile(&per, 50.0)),
        opt(per.last().copied()),
        spacing.len(),
        opt(percentile(&spacing, 50.0)),
        opt(percentile(&spacing, 99.0)),
        opt(percentile(&spacing, 99.9)),
        opt(spacing.last().copied()),
        seq_gaps,
        ts_bad,
        rcvbuf.map_or("null".to_string(), |v| v.to_string()),
        opt(drops),
        elapsed,
        first_to_last,
    );
}
