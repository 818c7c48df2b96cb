//! TCP: accepting connections, framing their byte streams into messages
//! (RFC 3261 §18.3), and writing what the endpoint sends. UDP needs no code of its own:
//! the endpoint reads its socket directly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::endpoint::Input;
use super::parse::stream_frame_len;
use super::{Peer, Transport};

/// A connection with no traffic for this long is closed; softphones keep theirs alive
/// with CRLF pings (RFC 5626) or re-REGISTERs well within it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Messages queued for one connection before we consider it stuck.
const WRITE_QUEUE: usize = 256;

/// Accepts connections until the endpoint goes away.
pub async fn serve_tcp(
    listener: TcpListener,
    endpoint: mpsc::UnboundedSender<Input>,
    max_message: usize,
    max_connections: usize,
) {
    let ids = AtomicU64::new(1);
    let open = Arc::new(AtomicUsize::new(0));
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
        if open.load(Ordering::Relaxed) >= max_connections {
            tracing::warn!(%addr, max_connections, "TCP connection refused: limit reached");
            continue;
        }
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let endpoint = endpoint.clone();
        let open = Arc::clone(&open);
        open.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            connection(stream, addr, id, &endpoint, max_message).await;
            let _ = endpoint.send(Input::TcpClosed { id });
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn connection(
    stream: TcpStream,
    addr: SocketAddr,
    id: u64,
    endpoint: &mpsc::UnboundedSender<Input>,
    max_message: usize,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    if endpoint.send(Input::TcpOpened { id, writer: tx }).is_err() {
        return;
    }
    let writing = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let peer = Peer {
        transport: Transport::Tcp(id),
        addr,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 8192];
    'read: loop {
        let n = match tokio::time::timeout(IDLE_TIMEOUT, reader.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
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
                break;
            }
            match stream_frame_len(&buf, max_message) {
                Ok(Some(len)) => {
                    let data: Vec<u8> = buf.drain(..len).collect();
                    if endpoint.send(Input::Stream { peer, data }).is_err() {
                        break 'read;
                    }
                }
                Ok(None) => break,
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
