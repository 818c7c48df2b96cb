//! floor: what the kernel itself needs to send and receive one RTP-sized datagram over
//! loopback on this machine, measured in the same run as a benchmark so that the
//! server's figures can be given as multiples of it. Standard library only.
//!
//! Usage: floor [--packets N] [--rounds R]
//!   (cargo bench may add arguments such as `--bench`: others are ignored.)
//!
//! One thread, two UDP sockets on 127.0.0.1. Each round sends N/R datagrams of 172 bytes
//! (12 bytes of RTP header and 160 of G.711, a 20 ms frame) in batches of 32 with
//! `sendto`, then reads each batch back with `recvfrom`, and times both with the thread's
//! own CPU clock (CLOCK_THREAD_CPUTIME_ID): user and system time of exactly these calls,
//! however busy the other cores are. The receiver never sleeps (the batch is already
//! queued), so no wake-up is counted: this is the floor, the cost of the two system
//! calls and the loopback delivery between them. A third figure sends from a socket
//! `connect`ed to the receiver (`send`), which spares the kernel a route lookup.
//!
//! Prints one human line on stderr and ONE JSON line on stdout, each figure the median
//! of the rounds, in microseconds per datagram:
//!   {"packets":N,"rounds":R,"sendto_us":..,"send_connected_us":..,"recvfrom_us":..}

use std::net::UdpSocket;

/// RTP header + one 20 ms G.711 frame.
const DATAGRAM: usize = 172;
/// Datagrams in flight at once: well within the default receive buffer.
const BATCH: usize = 32;

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

unsafe extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

/// Linux's CLOCK_THREAD_CPUTIME_ID.
const THREAD_CPUTIME: i32 = 3;

/// CPU time of this thread, in nanoseconds.
fn thread_ns() -> u64 {
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call writes only into it.
    let rc = unsafe { clock_gettime(THREAD_CPUTIME, &mut ts) };
    if rc != 0 {
        eprintln!("floor: clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
        std::process::exit(1);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => match args.get(i + 1).and_then(|v| v.parse().ok()) {
            Some(v) if v > 0 => v,
            _ => {
                eprintln!("floor: {name} takes a positive integer");
                std::process::exit(2);
            }
        },
        None => default,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One round: `batches` batches sent (connected or not) then read back.
/// Returns (send ns, recv ns, datagrams).
fn round(tx: &UdpSocket, rx: &UdpSocket, batches: usize, connected: bool) -> (u64, u64, u64) {
    let to = rx.local_addr().unwrap_or_else(|e| fail("local_addr", e));
    let mut packet = [0u8; DATAGRAM];
    packet[0] = 0x80;
    let mut buf = [0u8; 2048];
    let (mut send_ns, mut recv_ns, mut n) = (0u64, 0u64, 0u64);
    for b in 0..batches {
        packet[2..4].copy_from_slice(&(b as u16).to_be_bytes());
        let t0 = thread_ns();
        for _ in 0..BATCH {
            let r = if connected {
                tx.send(&packet)
            } else {
                tx.send_to(&packet, to)
            };
            r.unwrap_or_else(|e| fail("send", e));
        }
        let t1 = thread_ns();
        for _ in 0..BATCH {
            rx.recv_from(&mut buf)
                .unwrap_or_else(|e| fail("recvfrom", e));
        }
        let t2 = thread_ns();
        send_ns += t1 - t0;
        recv_ns += t2 - t1;
        n += BATCH as u64;
    }
    (send_ns, recv_ns, n)
}

fn fail(what: &str, e: std::io::Error) -> ! {
    eprintln!("floor: {what}: {e}");
    std::process::exit(1);
}

fn main() {
    let packets = arg("--packets", 100_000);
    let rounds = arg("--rounds", 5);
    let batches = (packets / rounds / BATCH).max(1);
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| fail("bind", e));
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| fail("bind", e));
    let txc = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| fail("bind", e));
    let to = rx.local_addr().unwrap_or_else(|e| fail("local_addr", e));
    txc.connect(to).unwrap_or_else(|e| fail("connect", e));
    // Warm up caches, the route and the socket buffers.
    round(&tx, &rx, 16, false);
    round(&txc, &rx, 16, true);
    let (mut sendto, mut connected, mut recv) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (s, r, n) = round(&tx, &rx, batches, false);
        sendto.push(s as f64 / n as f64 / 1000.0);
        recv.push(r as f64 / n as f64 / 1000.0);
        let (s, r, n) = round(&txc, &rx, batches, true);
        connected.push(s as f64 / n as f64 / 1000.0);
        recv.push(r as f64 / n as f64 / 1000.0);
    }
    let (sendto, connected, recv) = (
        median(&mut sendto),
        median(&mut connected),
        median(&mut recv),
    );
    let total = batches * BATCH * rounds;
    eprintln!(
        "floor: {DATAGRAM}-byte datagrams over loopback, {total} per figure: sendto {sendto:.3} us, send (connected) {connected:.3} us, recvfrom {recv:.3} us (thread CPU, median of {rounds})"
    );
    println!(
        "{{\"packets\":{total},\"rounds\":{rounds},\"sendto_us\":{sendto:.3},\"send_connected_us\":{connected:.3},\"recvfrom_us\":{recv:.3}}}"
    );
}
