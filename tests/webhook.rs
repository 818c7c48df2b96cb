//! Webhooks against real HTTP receivers on loopback: each receiver reads the request off
//! its socket, checks the Standard Webhooks signature with the library's own `verify`,
//! and answers from a script (500, 500, then 200; a redirect; a rate limit; silence; an
//! endless body). The library's `send` is driven the way the outbox worker drives it: one
//! attempt at a time, again while the error is retryable.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use permanence::delivery::webhook::{self, Sender, WebhookConfig, WebhookError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// What a receiver does with one request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// This status, with these extra header lines and a short body.
    Status(u16, &'static str),
    /// Reads the request and never answers.
    Silent,
    /// 500 announcing 100 MB of body, sends 1 MB of it, then holds the connection.
    Endless,
}

/// One request as the receiver read it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// `webhook::verify` accepted its headers and body at the receiver's clock.
    verified: bool,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }
}

struct Receiver {
    url: String,
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Receiver {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// A receiver on a free loopback port, over TLS with `tls`, answering the n-th request
/// with `answers[n]` (200 once the script is over), verifying with `secret`.
async fn receiver(secret: &str, tls: Option<TlsAcceptor>, answers: &[Answer]) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://127.0.0.1:{port}/hooks/permanence?company=acme");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (secret, answers, log) = (secret.to_owned(), answers.to_vec(), Arc::clone(&seen));
    let accepting = tokio::spawn(async move {
        let mut handlers = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            let (secret, answers, log, tls) = (
                secret.clone(),
                answers.clone(),
                Arc::clone(&log),
                tls.clone(),
            );
            // Each connection on its own task, so that a silent answer holds up no other.
            handlers.push(AbortOnDrop(tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            serve(stream, &secret, &answers, &log).await;
                        }
                    }
                    None => serve(tcp, &secret, &answers, &log).await,
                }
            })));
        }
    });
    Receiver {
        url,
        port,
        seen,
        accepting,
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads one request (head, then the body by Content-Length), records it, answers.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    secret: &str,
    answers: &[Answer],
    log: &Mutex<Vec<Seen>>,
) {
    let mut read = Vec::new();
    let head_end = loop {
        if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => read.extend_from_slice(&chunk[..n]),
        }
        assert!(read.len() < 64 * 1024, "request head too long");
    };
    let head = String::from_utf8(read[..head_end].to_vec()).expect("an ASCII head");
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap().split(' ');
    let method = request_line.next().unwrap().to_owned();
    let target = request_line.next().unwrap().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (name, value) = l.split_once(':').expect("a header line");
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = read[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let verified = webhook::verify(
        secret,
        value("webhook-id"),
        value("webhook-timestamp"),
        value("webhook-signature"),
        &body,
        jiff::Timestamp::now(),
    )
    .is_ok();
    let answer = {
        let mut log = log.lock().unwrap();
        let answer = answers
            .get(log.len())
            .copied()
            .unwrap_or(Answer::Status(200, ""));
        log.push(Seen {
            method,
            target,
            headers,
            body,
            verified,
        });
        answer
    };
    match answer {
        Answer::Status(status, extra) => {
            // A receiver that cannot verify says so, whatever the script.
            let status = if verified { status } else { 401 };
            let text = format!("status {status} from the test's receiver");
            let reply = format!(
                "HTTP/1.1 {status} Scripted\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{text}",
                text.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Answer::Silent => tokio::time::sleep(Duration::from_secs(60)).await,
        Answer::Endless => {
            let head = "HTTP/1.1 500 Scripted\r\ncontent-length: 100000000\r\n\r\n";
            let _ = stream.write_all(head.as_bytes()).await;
            let filler = vec![b'x'; 64 * 1024];
            for _ in 0..16 {
                if stream.write_all(&filler).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    }
}

fn hook(url: &str, secret: &str) -> WebhookConfig {
    WebhookConfig {
        url: url.to_owned(),
        secret: secret.to_owned(),
        company: Some("acme".into()),
    }
}

const BODY: &[u8] = br#"{"type":"message.created","timestamp":"2026-01-05T09:30:00Z","data":{"id":42,"company":"acme","caller":"Syndic Martin \u00e9"}}"#;

/// Attempts `send` as the outbox worker would: again while the error is retryable, at most
/// `limit` times, each attempt one second later on the signing clock.
async fn deliver(
    sender: &Sender,
    hook: &WebhookConfig,
    id: &str,
    limit: usize,
) -> Vec<Result<(), WebhookError>> {
    let start = jiff::Timestamp::now();
    let mut results = Vec::new();
    for attempt in 0..limit {
        let now = start + jiff::SignedDuration::from_secs(attempt as i64);
        let result = sender.send(hook, id, BODY, now).await;
        let again = matches!(&result, Err(e) if e.retryable());
        results.push(result);
        if !again {
            break;
        }
    }
    results
}

#[tokio::test]
async fn three_attempts_one_acknowledged_delivery() {
    let secret = webhook::new_secret().unwrap();
    let answers = [Answer::Status(500, ""), Answer::Status(500, "")];
    let receiver = receiver(&secret, None, &answers).await;
    let hook = hook(&receiver.url, &secret);

    let start = jiff::Timestamp::now().as_second();
    let results = deliver(&Sender::new(), &hook, "msg_42", 5).await;

    assert_eq!(results.len(), 3, "{results:?}");
    for failed in &results[..2] {
        let error = failed.as_ref().unwrap_err();
        assert!(error.retryable(), "{error}");
        assert!(
            matches!(error, WebhookError::Status { status: 500, .. }),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("status 500 from the test's receiver")
        );
    }
    assert!(results[2].is_ok(), "{:?}", results[2]);

    let seen = receiver.seen();
    assert_eq!(seen.len(), 3, "three attempts reached the receiver");
    for (n, attempt) in seen.iter().enumerate() {
        assert!(attempt.verified, "attempt {n}: the signature verifies");
        assert_eq!(attempt.method, "POST");
        assert_eq!(attempt.target, "/hooks/permanence?company=acme");
        assert_eq!(
            attempt.header("host"),
            format!("127.0.0.1:{}", receiver.port)
        );
        assert_eq!(attempt.header("content-type"), "application/json");
        assert_eq!(attempt.header("webhook-id"), "msg_42");
        assert_eq!(attempt.body, BODY);
        // Each attempt is signed at its own time (the worker's `now`).
        let sent: i64 = attempt.header("webhook-timestamp").parse().unwrap();
        assert!(
            (sent - start - n as i64).abs() <= 1,
            "attempt {n} at {sent}"
        );
        assert!(attempt.header("webhook-signature").starts_with("v1,"));
    }
    assert_ne!(
        seen[0].header("webhook-signature"),
        seen[1].header("webhook-signature"),
        "a new timestamp, a new signature"
    );
}

#[tokio::test]
async fn the_free_function_sends_with_the_default_client() {
    let secret = webhook::new_secret().unwrap();
    let receiver = receiver(&secret, None, &[]).await;
    webhook::send(
        &hook(&receiver.url, &secret),
        "msg_7",
        BODY,
        jiff::Timestamp::now(),
    )
    .await
    .unwrap();
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].verified);
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_receiver_and_not_retried() {
    let secret = webhook::new_secret().unwrap();
    let receiver = receiver(&secret, None, &[]).await;
    let other = webhook::new_secret().unwrap();
    let results = deliver(&Sender::new(), &hook(&receiver.url, &other), "msg_1", 5).await;
    assert_eq!(results.len(), 1);
    let error = results[0].as_ref().unwrap_err();
    assert!(
        matches!(error, WebhookError::Status { status: 401, .. }),
        "{error}"
    );
    assert!(!error.retryable());
    assert!(!receiver.seen()[0].verified);
}

#[tokio::test]
async fn redirects_are_not_followed_and_rate_limits_are_retried() {
    let secret = webhook::new_secret().unwrap();
    let answers = [
        Answer::Status(429, "retry-after: 7\r\n"),
        Answer::Status(308, "location: /elsewhere\r\n"),
    ];
    let receiver = receiver(&secret, None, &answers).await;
    let results = deliver(&Sender::new(), &hook(&receiver.url, &secret), "msg_3", 5).await;

    assert_eq!(results.len(), 2, "{results:?}");
    let limited = results[0].as_ref().unwrap_err();
    assert!(limited.retryable());
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(7)));
    let moved = results[1].as_ref().unwrap_err();
    assert!(
        matches!(moved, WebhookError::Status { status: 308, .. }),
        "{moved}"
    );
    assert!(!moved.retryable(), "the URL must be updated");
    let seen = receiver.seen();
    assert_eq!(seen.len(), 2, "nothing went to /elsewhere");
    assert!(
        seen.iter()
            .all(|s| s.target == "/hooks/permanence?company=acme")
    );
}

#[tokio::test]
async fn unreachable_silent_and_endless_receivers_end_in_bounded_time() {
    let secret = webhook::new_secret().unwrap();

    // Nobody listening: refused at once, worth retrying.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{closed}/hook");
    let error = Sender::new()
        .send(&hook(&url, &secret), "msg_1", BODY, jiff::Timestamp::now())
        .await
        .unwrap_err();
    assert!(matches!(error, WebhookError::Connect { .. }), "{error}");
    assert!(error.retryable());

    // A receiver that never answers: the client's bound.
    let receiver = receiver(&secret, None, &[Answer::Silent, Answer::Endless]).await;
    let sender = Sender::new().with_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let error = sender
        .send(
            &hook(&receiver.url, &secret),
            "msg_1",
            BODY,
            jiff::Timestamp::now(),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, WebhookError::Timeout { .. }), "{error}");
    assert!(error.retryable());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // An answer whose body never ends: only its start is read.
    let started = Instant::now();
    let error = Sender::new()
        .send(
            &hook(&receiver.url, &secret),
            "msg_1",
            BODY,
            jiff::Timestamp::now(),
        )
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let WebhookError::Status {
        status, excerpt, ..
    } = &error
    else {
        panic!("{error}");
    };
    assert_eq!(*status, 500);
    assert!(
        excerpt.starts_with("xxxx") && excerpt.chars().count() <= 201,
        "{excerpt}"
    );
    assert_eq!(receiver.seen().len(), 2);
}

#[tokio::test]
async fn bad_urls_and_secrets_never_reach_the_network() {
    let secret = webhook::new_secret().unwrap();
    let receiver = receiver(&secret, None, &[]).await;
    let port = receiver.port;
    let now = jiff::Timestamp::now();
    for (url, key) in [
        (format!("ftp://127.0.0.1:{port}/hook"), secret.as_str()),
        (
            format!("http://me:pw@127.0.0.1:{port}/hook"),
            secret.as_str(),
        ),
        (receiver.url.clone(), "whsec_dG9vIHNob3J0"),
        (receiver.url.clone(), "plain-text-secret"),
    ] {
        let error = Sender::new()
            .send(&hook(&url, key), "msg_1", BODY, now)
            .await
            .unwrap_err();
        assert!(!error.retryable(), "{error}");
        assert!(webhook::check_config(&hook(&url, key)).is_err());
    }
    let error = Sender::new()
        .send(&hook(&receiver.url, &secret), "msg.1", BODY, now)
        .await
        .unwrap_err();
    assert!(matches!(error, WebhookError::Id(_)), "{error}");
    assert!(receiver.seen().is_empty());
}

/// A TLS server side with the test CA's certificate for 127.0.0.1.
fn acceptor(cert: &Path, key: &Path) -> TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

#[tokio::test]
async fn https_with_a_trusted_ca_and_refused_without() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = common::make_ca_and_certificate(dir.path());
    let secret = webhook::new_secret().unwrap();
    let answers = [Answer::Status(503, ""), Answer::Status(200, "")];
    let receiver = receiver(&secret, Some(acceptor(&cert, &key)), &answers).await;
    let hook = hook(&receiver.url, &secret);

    // Mozilla's roots alone do not trust the test's CA: no request is made, and a
    // certificate fixed later may succeed, so it is worth retrying.
    let error = webhook::send(&hook, "msg_9", BODY, jiff::Timestamp::now())
        .await
        .unwrap_err();
    assert!(matches!(error, WebhookError::Tls { .. }), "{error}");
    assert!(error.retryable());
    assert!(receiver.seen().is_empty());

    let trusting = Sender::with_extra_roots(&ca).unwrap();
    let results = deliver(&trusting, &hook, "msg_9", 5).await;
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(results[1].is_ok());
    let seen = receiver.seen();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.verified && s.header("webhook-id") == "msg_9")
    );

    let missing = Sender::with_extra_roots(&dir.path().join("none.pem")).unwrap_err();
    assert!(matches!(missing, WebhookError::Roots(_)), "{missing}");
    assert!(Sender::with_extra_roots(&key).is_err(), "a key is not a CA");
}

/// The Python `verify` that docs/API.md shows a receiver, run by python3 on requests our
/// signer made: a doc example that does not work is a bug.
#[test]
fn the_documented_python_verification_agrees() {
    use base64::Engine as _;
    let api = std::fs::read_to_string(common::repo().join("docs/API.md")).unwrap();
    let function = api
        .split("```python")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .find(|code| code.contains("def verify("))
        .expect("docs/API.md shows a Python verify");

    let secret = webhook::new_secret().unwrap();
    let other = webhook::new_secret().unwrap();
    let now = jiff::Timestamp::now().as_second();
    let case = |secret: &str, signed_at: i64, signature: String, body: &[u8]| {
        serde_json::json!({
            "secret": secret,
            "headers": {
                "webhook-id": "msg_42",
                "webhook-timestamp": signed_at.to_string(),
                "webhook-signature": signature,
            },
            "body": base64::engine::general_purpose::STANDARD.encode(body),
        })
    };
    let ours = |at: i64| webhook::sign(&secret, "msg_42", at, BODY).unwrap();
    let cases = [
        (case(&secret, now, ours(now), BODY), true),
        // Padding left off the secret, as the reference libraries allow.
        (
            case(secret.trim_end_matches('='), now, ours(now), BODY),
            true,
        ),
        // A rotation: another key's signature first, ours second.
        (
            case(
                &secret,
                now,
                format!(
                    "v1a,AAAA {} {}",
                    webhook::sign(&other, "msg_42", now, BODY).unwrap(),
                    ours(now)
                ),
                BODY,
            ),
            true,
        ),
        (case(&secret, now, ours(now), b"{}"), false),
        (case(&other, now, ours(now), BODY), false),
        (case(&secret, now - 600, ours(now - 600), BODY), false),
    ];
    let input = serde_json::Value::Array(cases.iter().map(|(c, _)| c.clone()).collect());
    let program = format!(
        "{function}\nimport json, sys\nfor c in json.load(sys.stdin):\n    \
         print(verify(c['secret'], c['headers'], base64.b64decode(c['body'])))\n"
    );
    let mut python = std::process::Command::new("python3")
        .arg("-c")
        .arg(&program)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is installed (Debian package python3)");
    use std::io::Write as _;
    python
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said: Vec<bool> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l == "True")
        .collect();
    let expected: Vec<bool> = cases.iter().map(|(_, ok)| *ok).collect();
    assert_eq!(said, expected);
}
