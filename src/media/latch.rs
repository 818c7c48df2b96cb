//! Where a stream's RTP may come from, and when we start sending to it (symmetric RTP,
//! for phones behind NAT), without letting a third party take the stream over.
//!
//! Accepting the first packet from anywhere (plain symmetric RTP) lets anyone who sprays
//! one packet at every port of the range receive the audio of every new call, and inject
//! keys or voice into live ones. So, as Asterisk's strict RTP does:
//! - only a source on the IP address the SDP signalled, or the IP the call's signalling
//!   came from, is considered (a NATed phone's packets come from its public address, which
//!   is where its SIP came from);
//! - a source becomes the stream's peer only after [`PROBATION`] consecutive packets with
//!   one SSRC and consecutive sequence numbers (Asterisk's `probation` default);
//! - once latched, packets from any other source are dropped; a move (NAT rebinding)
//!   takes the same probation from an eligible address.
//!
//! Pure: the engine feeds it each packet's source, SSRC and sequence number.

use std::net::{IpAddr, SocketAddr};

/// Consecutive packets from one source before we latch (or move) to it.
pub const PROBATION: u8 = 4;

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// From the stream's peer (or its candidate while learning): use it.
    Accept,
    /// From the peer, which is now at this address: send there from now on.
    Latched(SocketAddr),
    /// From nobody this stream talks to: drop it.
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    addr: SocketAddr,
    ssrc: u32,
    next_seq: u16,
    seen: u8,
}

/// One stream's peer address, learnt under the rules above.
#[derive(Debug, Clone)]
pub struct Latch {
    signalled: SocketAddr,
    signalling: IpAddr,
    peer: Option<(SocketAddr, u32)>,
    candidate: Option<Candidate>,
}

impl Latch {
    /// A stream whose SDP says `signalled`, for a call whose SIP comes from `signalling`.
    pub fn new(signalled: SocketAddr, signalling: IpAddr) -> Latch {
        Latch {
            signalled,
            signalling,
            peer: None,
            candidate: None,
        }
    }

    /// Whether a peer has been learnt.
    pub fn is_latched(&self) -> bool {
        self.peer.is_some()
    }

    /// A re-INVITE signalled a new address: packets from its IP become eligible too.
    pub fn signalled(&mut self, addr: SocketAddr) {
        self.signalled = addr;
    }

    fn eligible(&self, from: SocketAddr) -> bool {
        let ip = from.ip().to_canonical();
        ip == self.signalled.ip().to_canonical() || ip == self.signalling.to_canonical()
    }

    /// Judges one packet from `from` carrying `ssrc` and sequence number `seq`.
    pub fn on_packet(&mut self, from: SocketAddr, ssrc: u32, seq: u16) -> Verdict {
        if let Some((peer, _)) = self.peer
            && from == peer
        {
            // The peer itself: a new SSRC (a phone that restarted its stream) is its right.
            self.peer = Some((peer, ssrc));
            self.candidate = None;
            return Verdict::Accept;
        }
        if !self.eligible(from) {
            return Verdict::Drop;
        }
        if from.port() == 0 {
            // No address to answer to (a raw-socket sender, as SIPp's pcap replay): heard
            // from an eligible address while nobody is latched, never latched to.
            return if self.peer.is_none() {
                Verdict::Accept
            } else {
                Verdict::Drop
            };
        }
        let seen = match self.candidate {
            Some(c) if c.addr == from && c.ssrc == ssrc && c.next_seq == seq => c.seen + 1,
            _ => 1,
        };
        if seen >= PROBATION {
            self.peer = Some((from, ssrc));
            self.candidate = None;
            return Verdict::Latched(from);
        }
        self.candidate = Some(Candidate {
            addr: from,
            ssrc,
            next_seq: seq.wrapping_add(1),
            seen,
        });
        // While learning, an eligible source's packets are heard (the caller's first
        // keypress or word must not be lost); once latched, a would-be move is not, until
        // it has proved itself.
        if self.peer.is_none() {
            Verdict::Accept
        } else {
            Verdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn latch() -> Latch {
        // The phone's SDP names its private address; its SIP came from its public one.
        Latch::new(addr("192.168.1.20:4000"), "198.51.100.7".parse().unwrap())
    }

    #[test]
    fn a_natted_phone_is_latched_after_probation() {
        let mut l = latch();
        let nat = addr("198.51.100.7:61000");
        for seq in 10..13 {
            assert_eq!(l.on_packet(nat, 0xabc, seq), Verdict::Accept);
            assert!(!l.is_latched());
        }
        assert_eq!(l.on_packet(nat, 0xabc, 13), Verdict::Latched(nat));
        assert_eq!(l.on_packet(nat, 0xabc, 14), Verdict::Accept);
    }

    #[test]
    fn a_sprayer_elsewhere_is_never_heard_nor_latched() {
        let mut l = latch();
        let attacker = addr("203.0.113.66:5000");
        for seq in 0..100 {
            assert_eq!(l.on_packet(attacker, 1, seq), Verdict::Drop);
        }
        assert!(!l.is_latched());
    }

    #[test]
    fn probation_wants_one_ssrc_and_consecutive_numbers() {
        let mut l = latch();
        let nat = addr("198.51.100.7:61000");
        l.on_packet(nat, 1, 1);
        l.on_packet(nat, 1, 2);
        l.on_packet(nat, 2, 3);
        l.on_packet(nat, 2, 5);
        l.on_packet(nat, 2, 6);
        l.on_packet(nat, 2, 7);
        assert!(!l.is_latched(), "the count restarts at each break");
        assert_eq!(l.on_packet(nat, 2, 8), Verdict::Latched(nat));
        // Sequence numbers wrap.
        let mut l = latch();
        for seq in [65534, 65535, 0] {
            l.on_packet(nat, 9, seq);
        }
        assert_eq!(l.on_packet(nat, 9, 1), Verdict::Latched(nat));
    }

    #[test]
    fn once_latched_injection_is_dropped_but_a_nat_rebinding_moves_after_probation() {
        let mut l = latch();
        let nat = addr("198.51.100.7:61000");
        for seq in 0..4 {
            l.on_packet(nat, 7, seq);
        }
        assert!(l.is_latched());
        // Another port on the same public address (a rebinding, or a neighbour behind the
        // same NAT trying its luck): dropped until it has proved itself.
        let moved = addr("198.51.100.7:62000");
        for seq in 100..103 {
            assert_eq!(l.on_packet(moved, 7, seq), Verdict::Drop);
        }
        // The old source is still the peer meanwhile.
        assert_eq!(l.on_packet(nat, 7, 4), Verdict::Accept);
        for seq in 103..106 {
            assert_eq!(l.on_packet(moved, 7, seq), Verdict::Drop);
        }
        assert_eq!(l.on_packet(moved, 7, 106), Verdict::Latched(moved));
        assert_eq!(
            l.on_packet(nat, 7, 5),
            Verdict::Drop,
            "the old source is gone"
        );
    }

    #[test]
    fn the_signalled_address_is_eligible_and_a_reinvite_can_change_it() {
        let mut l = latch();
        let direct = addr("192.168.1.20:4000");
        for seq in 0..3 {
            assert_eq!(l.on_packet(direct, 3, seq), Verdict::Accept);
        }
        assert_eq!(l.on_packet(direct, 3, 3), Verdict::Latched(direct));
        let elsewhere = addr("192.0.2.99:7000");
        assert_eq!(l.on_packet(elsewhere, 3, 4), Verdict::Drop);
        l.signalled(addr("192.0.2.99:7000"));
        for seq in 4..7 {
            assert_eq!(l.on_packet(elsewhere, 3, seq), Verdict::Drop);
        }
        assert_eq!(l.on_packet(elsewhere, 3, 7), Verdict::Latched(elsewhere));
    }

    #[test]
    fn port_zero_is_heard_while_learning_but_never_latched_to() {
        let mut l = latch();
        let zero = addr("198.51.100.7:0");
        for seq in 0..10 {
            assert_eq!(l.on_packet(zero, 1, seq), Verdict::Accept);
        }
        assert!(!l.is_latched());
        assert_eq!(l.on_packet(addr("203.0.113.66:0"), 1, 11), Verdict::Drop);
        let nat = addr("198.51.100.7:61000");
        for seq in 0..4 {
            l.on_packet(nat, 2, seq);
        }
        assert!(l.is_latched());
        assert_eq!(l.on_packet(zero, 1, 12), Verdict::Drop);
    }
}
