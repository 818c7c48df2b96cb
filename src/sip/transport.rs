//! TCP and TLS: accepting connections, framing their byte streams into messages
//! (RFC 3261 §18.3), and writing what the endpoint sends. UDP needs no code of its own:
//! the endpoint reads its socket directly. A TLS connection is a TCP one with a handshake
//! first (rustls, server side only: phones verify us, we verify them by digest).
//!
//! Every queue between a connection and the endpoint is bounded, and a connection that
//! sends faster than we answer is slowed down rather than buffered: it may have only
//! [`IN_FLIGHT_PER_CONNECTION`] messages waiting for the endpoint (and all connections
//! together [`IN_FLIGHT_TOTAL`]), and it is not read while its answers wait to be written.
//! The kernel's flow control then pushes back on the sender. Memory stays bounded under any
//! flood, UDP and other connections keep being served, and no answer is dropped.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::time::Instant;

use super::endpoint::{Credit, Input};
use super::parse::stream_frame_len;
use super::{Peer, Transport};

/// A connection with no traffic for this long is closed; softphones keep theirs alive
/// with CRLF pings (RFC 5626) or re-REGISTERs well within it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Messages queued for one connection's writer. Reading stops well before it fills (see
/// [`WRITE_PAUSE_AT`]), so the endpoint never finds it full.
const WRITE_QUEUE: usize = 256;
/// Free slots in the write queue below which the connection is not read: the answers to
/// everything in flight still fit.
const WRITE_PAUSE_AT: usize = 96;
/// A peer that reads none of its answers for this long is gone or hostile: closed.
const WRITE_STALL: Duration = Duration::from_secs(30);
/// Messages from one connection handed to the endpoint and not yet handled.
const IN_FLIGHT_PER_CONNECTION: usize = 16;
/// The same, over every connection.
const IN_FLIGHT_TOTAL: usize = 512;
/// A connection idle this long may be closed to make room for a new one when full.
const EVICTABLE_IDLE: Duration = Duration::from_secs(5);
/// Time for a TLS client to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bounds on TCP, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Largest message.
    pub max_message: usize,
    /// Connections at once.
    pub max_connections: usize,
    /// Connections at once from one address.
    pub max_per_source: usize,
    /// Time for a message, once begun, to arrive whole (against slowloris).
    pub message_deadline: Duration,
}

/// One open connection, as the acceptor sees it.
struct Open {
    source: IpAddr,
    /// When it last carried a message (or opened).
    active: Arc<Mutex<Instant>>,
    close: Arc<Notify>,
}

/// Open connections, for the limits and for closing the idlest when full.
#[derive(Default)]
struct Registry {
    open: HashMap<u64, Open>,
}

impl Registry {
    fn count_from(&self, source: IpAddr) -> usize {
        self.open.values().filter(|c| c.source == source).count()
    }

    /// Closes the connection idle the longest, if one has been idle long enough.
    fn evict_idlest(&mut self, now: Instant) -> bool {
        let idlest = self
            .open
            .iter()
            .filter_map(|(id, c)| c.active.lock().ok().map(|at| (*id, *at)))
            .filter(|(_, at)| now.saturating_duration_since(*at) >= EVICTABLE_IDLE)
            .min_by_key(|(_, at)| *at);
        match idlest.and_then(|(id, _)| self.open.remove(&id)) {
            Some(c) => {
                c.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Accepts connections until the endpoint goes away; with `tls`, each begins with a TLS
/// handshake and carries SIP over TLS.
pub async fn serve_tcp(
    listener: TcpListener,
    endpoint: mpsc::UnboundedSender<Input>,
    limits: TcpLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut next_id: u64 = 1;
    let registry = Arc::new(Mutex::new(Registry::default()));
    let total = Arc::new(Semaphore::new(IN_FLIGHT_TOTAL));
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if endpoint.is_closed() {
            return;
        }
        let id = next_id;
        next_id += 1;
        let (active, close) = (
            Arc::new(Mutex::new(Instant::now())),
            Arc::new(Notify::new()),
        );
        {
            let Ok(mut reg) = registry.lock() else {
                return;
            };
            if reg.count_from(addr.ip()) >= limits.max_per_source {
                tracing::warn!(%addr, limit = limits.max_per_source, "TCP connection refused: too many from this address");
                continue;
            }
            if reg.open.len() >= limits.max_connections && !reg.evict_idlest(Instant::now()) {
                tracing::warn!(%addr, limit = limits.max_connections, "TCP connection refused: limit reached, none idle");
                continue;
            }
            reg.open.insert(
                id,
                Open {
                    source: addr.ip(),
                    active: Arc::clone(&active),
                    close: Arc::clone(&close),
                },
            );
        }
        let endpoint = endpoint.clone();
        let registry = Arc::clone(&registry);
        let total = Arc::clone(&total);
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let conn = Connection {
                addr,
                transport: if tls.is_some() {
                    Transport::Tls(id)
                } else {
                    Transport::Tcp(id)
                },
                id,
                endpoint: &endpoint,
                limits,
                total,
                active,
            };
            let served = async {
                match tls {
                    None => conn.run(stream).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                        {
                            Ok(Ok(tls_stream)) => conn.run(tls_stream).await,
                            Ok(Err(e)) => tracing::info!(%addr, error = %e, "TLS handshake failed"),
                            Err(_) => tracing::info!(%addr, "TLS handshake not finished in time"),
                        }
                    }
                }
            };
            tokio::select! {
                _ = served => {}
                _ = close.notified() => {
                    tracing::info!(%addr, "idle TCP connection closed to make room");
                }
            }
            let _ = endpoint.send(Input::TcpClosed { id });
            if let Ok(mut reg) = registry.lock() {
                reg.open.remove(&id);
            }
        });
    }
}

struct Connection<'a> {
    addr: SocketAddr,
    transport: Transport,
    id: u64,
    endpoint: &'a mpsc::UnboundedSender<Input>,
    limits: TcpLimits,
    total: Arc<Semaphore>,
    active: Arc<Mutex<Instant>>,
}

impl Connection<'_> {
    async fn run<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let addr = self.addr;
        let (mut reader, mut writer) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        if self
            .endpoint
            .send(Input::TcpOpened {
                id: self.id,
                writer: tx.clone(),
            })
            .is_err()
        {
            return;
        }
        let writing = tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                // TLS holds written records until flushed; TCP's flush is free.
                if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                    break;
                }
            }
        });
        let own = Arc::new(Semaphore::new(IN_FLIGHT_PER_CONNECTION));
        let peer = Peer {
            transport: self.transport,
            addr,
        };
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 8192];
        // When the message now in `buf` began: it must be whole by the deadline.
        let mut begun: Option<Instant> = None;
        'read: loop {
            // Answers waiting to be written: read no more until the peer takes them.
            if !self.wait_for_writer(&tx).await {
                tracing::info!(%addr, "TCP peer reads none of its answers: closed");
                break;
            }
            let wait = match begun {
                Some(at) => (at + self.limits.message_deadline)
                    .saturating_duration_since(Instant::now())
                    .min(IDLE_TIMEOUT),
                None => IDLE_TIMEOUT,
            };
            let n = match tokio::time::timeout(wait, reader.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Err(_) if begun.is_some() => {
                    tracing::info!(%addr, "TCP message not complete in time: closed");
                    break;
                }
                Err(_) => break,
                Ok(Ok(n)) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            loop {
                // Leading CRLFs are keep-alives between messages (RFC 5626 §3.5.1).
                let start = buf
                    .iter()
                    .position(|b| !matches!(b, b'\r' | b'\n'))
                    .unwrap_or(buf.len());
                buf.drain(..start);
                if buf.is_empty() {
                    begun = None;
                    break;
                }
                match stream_frame_len(&buf, self.limits.max_message) {
                    Ok(Some(len)) => {
                        let Some(credit) = self.credit(&own).await else {
                            break 'read;
                        };
                        let data: Vec<u8> = buf.drain(..len).collect();
                        if let Ok(mut at) = self.active.lock() {
                            *at = Instant::now();
                        }
                        begun = None;
                        if self
                            .endpoint
                            .send(Input::Stream { peer, data, credit })
                            .is_err()
                        {
                            break 'read;
                        }
                    }
                    Ok(None) => {
                        begun.get_or_insert_with(Instant::now);
                        break;
                    }
                    Err(rejection) => {
                        // A stream we cannot frame cannot be resynchronised: close it.
                        tracing::debug!(%addr, why = %rejection.why, "closing TCP connection");
                        break 'read;
                    }
                }
            }
        }
        writing.abort();
    }

    /// Waits for room to hand the endpoint one more message (this connection's share, and
    /// the total); `None` if the semaphores are gone.
    async fn credit(&self, own: &Arc<Semaphore>) -> Option<Credit> {
        let connection = Arc::clone(own).acquire_owned().await.ok()?;
        let total = Arc::clone(&self.total).acquire_owned().await.ok()?;
        Some(Credit::new(connection, total))
    }

    /// Waits until the write queue has room for the answers to what may still come; false
    /// if the peer has taken none for [`WRITE_STALL`].
    async fn wait_for_writer(&self, tx: &mpsc::Sender<Vec<u8>>) -> bool {
        let since = Instant::now();
        while tx.capacity() < WRITE_PAUSE_AT {
            if since.elapsed() > WRITE_STALL || tx.is_closed() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}
