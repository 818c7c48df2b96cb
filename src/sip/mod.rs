//! SIP: our side of RFC 3261 as a UAS, wrapped around `rsipstack`'s message parser.
//!
//! `rsipstack` (pinned) only splits messages into headers and parses URIs; everything that
//! decides (what is malformed, which transaction a message belongs to, which response to
//! send, when to retransmit) lives in our own pure modules so that it can be tested without
//! sockets and so that the parser can be swapped. The shell (`transport`, `endpoint`) does I/O.

pub mod admission;
pub mod endpoint;
pub mod message;
pub mod parse;
pub mod transaction;
pub mod transport;
pub mod write;

pub use message::{CSeq, Method, NameAddr, Request, Response, SipMessage};

use std::net::SocketAddr;

/// How a message reached us; responses go back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Datagrams on our UDP socket.
    Udp,
    /// One of our TCP connections, by its id.
    Tcp(u64),
    /// One of our TLS connections (SIP over TLS, RFC 3261 §26.2), by its id.
    Tls(u64),
}

/// Where a message came from: the transport and the packet's source address.
/// Responses and in-dialog requests go back here (symmetric response routing,
/// RFC 3581 behaviour applied whether or not `rport` was asked for), which is what
/// softphones behind NAT need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The transport the message arrived on.
    pub transport: Transport,
    /// The source address of the packet or connection.
    pub addr: SocketAddr,
}

impl Peer {
    /// The transport token for Via headers.
    pub fn transport_token(&self) -> &'static str {
        match self.transport {
            Transport::Udp => "UDP",
            Transport::Tcp(_) => "TCP",
            Transport::Tls(_) => "TLS",
        }
    }

    /// Our address for this transport (where its Contact points the peer back to), given
    /// the UDP/TCP address and the TLS one.
    pub fn local_for(&self, sip: SocketAddr, tls: Option<SocketAddr>) -> SocketAddr {
        match self.transport {
            Transport::Tls(_) => tls.unwrap_or(sip),
            _ => sip,
        }
    }

    /// Our Contact URI for this transport, `user@` included when given.
    pub fn contact(&self, user: &str, sip: SocketAddr, tls: Option<SocketAddr>) -> String {
        let at = self.local_for(sip, tls);
        match self.transport {
            Transport::Udp => format!("<sip:{user}{at}>"),
            Transport::Tcp(_) => format!("<sip:{user}{at};transport=tcp>"),
            Transport::Tls(_) => format!("<sip:{user}{at};transport=tls>"),
        }
    }

    /// Whether the signalling is encrypted (TLS): such a peer's audio is offered SRTP.
    pub fn is_secure(&self) -> bool {
        matches!(self.transport, Transport::Tls(_))
    }

    /// Whether the transport is unreliable, so that retransmission timers apply (RFC 3261 §17).
    pub fn is_unreliable(&self) -> bool {
        matches!(self.transport, Transport::Udp)
    }
}

/// The Call-ID of a dialog or transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub String);

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
