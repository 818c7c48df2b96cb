//! What an operator's monitoring reads: the server's counters and gauges in the Prometheus
//! text exposition format (0.0.4), served at `GET /metrics` on `[metrics] listen`.
//!
//! The counters are plain atomics bumped where things happen (the endpoint, the calls);
//! the gauges are read when scraped. Rendering is a plain function over both.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Why a new call was refused with 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server is stopping.
    Draining,
    /// `limits.max_calls` reached.
    MaxCalls,
    /// `limits.max_calls_per_source` reached.
    PerSource,
    /// The RTP engine runs late.
    MediaLate,
    /// The records cannot be written (a full disk).
    StoreFailing,
    /// More new INVITEs a second from one address than allowed.
    Flood,
    /// The call's row could not be committed in time.
    RowNotWritten,
}

impl Refusal {
    const ALL: [Refusal; 7] = [
        Refusal::Draining,
        Refusal::MaxCalls,
        Refusal::PerSource,
        Refusal::MediaLate,
        Refusal::StoreFailing,
        Refusal::Flood,
        Refusal::RowNotWritten,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Draining => "draining",
            Refusal::MaxCalls => "max-calls",
            Refusal::PerSource => "per-source",
            Refusal::MediaLate => "media-late",
            Refusal::StoreFailing => "store-failing",
            Refusal::Flood => "flood",
            Refusal::RowNotWritten => "row-not-written",
        }
    }
}

/// The server's counters, shared by the endpoint and the calls.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Messages dropped without an answer (unparsable, or a response to nothing).
    pub dropped: AtomicU64,
    /// Requests answered with 4xx/5xx because they were malformed.
    pub malformed_answered: AtomicU64,
    /// Sources banned for wrong credentials.
    pub bans: AtomicU64,
    /// Registered contacts now.
    pub registrations: AtomicUsize,
    refused: [AtomicU64; 7],
    /// Ended calls by (company, outcome); company empty for unknown numbers.
    calls: std::sync::Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Metrics {
    /// A new call was refused with 503 for `why`.
    pub fn refused(&self, why: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == why) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every 503 so far.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// A call ended.
    pub fn call_ended(&self, company: &str, outcome: &'static str) {
        if let Ok(mut calls) = self.calls.lock() {
            *calls.entry((company.to_string(), outcome)).or_default() += 1;
        }
    }
}

/// What is read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Calls up now.
    pub live_calls: usize,
    /// The RTP engine's smoothed lateness.
    pub rtp_lateness: Duration,
    /// RTP packets relayed between bridged streams since start.
    pub rtp_relayed: u64,
    /// Records queued for SQLite and not yet committed.
    pub store_queue: usize,
    /// Whether records reach the disk.
    pub store_writing: bool,
}

/// The exposition text: each family's HELP and TYPE, then its samples, one group each.
pub fn render(m: &Metrics, g: &Gauges) -> String {
    let mut out = String::with_capacity(2048);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let calls: Vec<(String, String)> = m
        .calls
        .lock()
        .map(|by| {
            by.iter()
                .map(|((company, outcome), n)| {
                    (
                        format!("{{company=\"{}\",outcome=\"{outcome}\"}}", label(company)),
                        n.to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    family(
        "permanence_calls_total",
        "counter",
        "Calls ended since start, by company and outcome.",
        &calls,
    );
    let refused: Vec<(String, String)> = Refusal::ALL
        .iter()
        .zip(&m.refused)
        .map(|(r, c)| {
            (
                format!("{{reason=\"{}\"}}", r.as_str()),
                c.load(Ordering::Relaxed).to_string(),
            )
        })
        .collect();
    family(
        "permanence_refused_calls_total",
        "counter",
        "New calls refused with 503, by reason.",
        &refused,
    );
    let plain = [
        (
            "permanence_live_calls",
            "gauge",
            "Calls up now.",
            g.live_calls.to_string(),
        ),
        (
            "permanence_registrations",
            "gauge",
            "Registered phone contacts (secretaries and executives).",
            m.registrations.load(Ordering::Relaxed).to_string(),
        ),
        (
            "permanence_bans_total",
            "counter",
            "Addresses banned for repeated wrong credentials.",
            m.bans.load(Ordering::Relaxed).to_string(),
        ),
        (
            "permanence_sip_dropped_total",
            "counter",
            "SIP messages dropped without an answer.",
            m.dropped.load(Ordering::Relaxed).to_string(),
        ),
        (
            "permanence_sip_malformed_total",
            "counter",
            "Malformed SIP requests answered with an error.",
            m.malformed_answered.load(Ordering::Relaxed).to_string(),
        ),
        (
            "permanence_rtp_lateness_seconds",
            "gauge",
            "The RTP engine's smoothed lateness (admission refuses calls above 10 ms).",
            format!("{:.6}", g.rtp_lateness.as_secs_f64()),
        ),
        (
            "permanence_rtp_relayed_packets_total",
            "counter",
            "RTP packets relayed between bridged streams.",
            g.rtp_relayed.to_string(),
        ),
        (
            "permanence_store_queue_depth",
            "gauge",
            "Records waiting to be committed to SQLite.",
            g.store_queue.to_string(),
        ),
        (
            "permanence_store_writing",
            "gauge",
            "1 while records reach the disk, 0 while it refuses writes.",
            u8::from(g.store_writing).to_string(),
        ),
    ];
    for (name, kind, help, value) in plain {
        family(name, kind, help, &[(String::new(), value)]);
    }
    // No outbox yet: deliveries (e-mail, webhooks) get their gauge with their issue.
    out
}

/// A label value as the format wants it: backslash, quote and line feed escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Where the scrape reads its gauges.
pub type ReadGauges = Arc<dyn Fn() -> Gauges + Send + Sync>;

/// Serves `GET /metrics` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    gauges: ReadGauges,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let text = render(&metrics, &gauges());
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "metrics listener failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_each_family_once_with_escaped_labels() {
        let m = Metrics::default();
        m.call_ended("acme", "voicemail");
        m.call_ended("acme", "voicemail");
        m.call_ended("we\"ird\n", "completed");
        m.refused(Refusal::Flood);
        m.bans.fetch_add(1, Ordering::Relaxed);
        let text = render(
            &m,
            &Gauges {
                live_calls: 3,
                rtp_lateness: Duration::from_micros(1500),
                rtp_relayed: 10,
                store_queue: 0,
                store_writing: true,
            },
        );
        assert!(
            text.contains("permanence_calls_total{company=\"acme\",outcome=\"voicemail\"} 2\n")
        );
        assert!(text.contains("company=\"we\\\"ird\\n\""), "{text}");
        assert!(text.contains("permanence_refused_calls_total{reason=\"flood\"} 1\n"));
        assert!(text.contains("permanence_refused_calls_total{reason=\"max-calls\"} 0\n"));
        assert!(text.contains("permanence_live_calls 3\n"));
        assert!(text.contains("permanence_rtp_lateness_seconds 0.001500\n"));
        assert!(text.contains("permanence_store_writing 1\n"));
        for family in ["permanence_calls_total", "permanence_bans_total"] {
            assert_eq!(
                text.matches(&format!("# TYPE {family} ")).count(),
                1,
                "{text}"
            );
        }
        assert_eq!(m.refused_total(), 1);
    }
}
