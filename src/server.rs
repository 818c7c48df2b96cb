//! Wiring: load plans and sounds, open the store, start media, SIP and the call tasks,
//! then stop in stages (refuse new calls, hang up live ones, flush records).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};

use crate::call::{CallContext, task};
use crate::config::{Config, TransportName};
use crate::media::MediaHandle;
use crate::metrics::Metrics;
use crate::sip::endpoint::{AdmissionPolicy, Endpoint, Input, SpawnCall};
use crate::sip::transaction::TimerValues;
use crate::sip::transport::serve_tcp;
use crate::store::{Store, StoreError};

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The plans or their sounds are refused.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// The store cannot be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// SIP over TLS is asked for but its certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The key that signs the executives' links cannot be used.
    #[error(transparent)]
    LinkKey(#[from] crate::executive_link::LinkKeyError),
    /// A socket cannot be opened.
    #[error("{what}: {source}")]
    Io {
        /// Which socket.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Media lateness beyond which new calls are refused: a 20 ms packet later than this
/// is audible, and more streams would only make it later.
const MEDIA_LAG_LIMIT: Duration = Duration::from_millis(10);

/// Runs the server until `shutdown` completes, then stops gracefully.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let running = start(&config).await?;
    shutdown.await;
    running.shutdown().await;
    Ok(())
}

/// What every part of the server shares, made once by [`start`].
struct Shared {
    store: Store,
    media: MediaHandle,
    desk: Arc<crate::desk::Desk>,
    metrics: Arc<Metrics>,
    /// Live calls, counted by the endpoint; read by shutdown and the metrics gauges.
    live: Arc<AtomicUsize>,
    /// The endpoint's inputs: calls, TCP connections and shutdown all talk to it here.
    endpoint: mpsc::UnboundedSender<Input>,
    /// The numbers each company blocked, in force.
    blocked: Arc<crate::blocklist::live::Live>,
    /// Signs the links to the executives' page (the page checks them; e-mails carry them).
    link_key: Arc<crate::executive_link::LinkKey>,
}

/// The SIP sockets the configuration asks for, bound before any task uses them.
struct SipSockets {
    udp: Option<Arc<UdpSocket>>,
    tcp: Option<TcpListener>,
    tls: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
}

/// Tasks that are neither SIP nor HTTP: reloading the plans (file watching and SIGHUP).
struct Workers {
    /// The file watcher; dropping it stops it.
    _watcher: Option<Box<dyn Send>>,
    /// Keeps the reload task's channel open until the workers stop, even when neither the
    /// watcher nor SIGHUP could be set up.
    _reload: mpsc::UnboundedSender<crate::reload::Trigger>,
    /// The desk's clock (wakes queued callers when a wrap-up ends).
    desk_clock: tokio::task::JoinHandle<()>,
    /// Re-reads the block list when another process (the CLI) changes it; dropping it
    /// stops it.
    _blocklist: Option<crate::blocklist::live::Watcher>,
    /// Sends the outbox's deliveries (e-mail, webhooks, daily summaries).
    delivery: Option<crate::delivery::worker::Worker>,
}

/// The server once started: what each shutdown stage needs.
struct Running {
    shared: Shared,
    /// The endpoint's task; it ends at [`Input::Stop`].
    endpoint_task: tokio::task::JoinHandle<()>,
    /// One per HTTP listener (`GET /metrics` today): a send, or a drop, stops it.
    http: Vec<oneshot::Sender<()>>,
    workers: Workers,
    /// How long live calls get after our BYE (`limits.shutdown_grace_seconds`).
    grace: Duration,
}

/// Wiring: config → store, media, SIP sockets, desk, metrics socket, call context,
/// endpoint, then the tasks. The order decides which error a broken setup reports first
/// and what is recorded before it (the desk writes every secretary as available).
async fn start(config: &Config) -> Result<Running, ServerError> {
    let snapshot = crate::snapshot::load(config)?;
    let store = open_store(config)?;
    // Made at first start; refused (the server stops) when others may read it.
    let link_key = Arc::new(crate::executive_link::LinkKey::load_or_create(
        &config.paths.data,
    )?);
    let blocked = Arc::new(crate::blocklist::live::Live::load(&config.database_path())?);
    let media = MediaHandle::start(
        config.media_address(),
        config.media.rtp_port_min,
        config.media.rtp_port_max,
    )
    .map_err(io("RTP engine"))?;
    let sockets = bind_sip(config).await?;
    let desk = Arc::new(crate::desk::Desk::new(
        &config.secretaries,
        u64::from(config.distribution.wrap_up_seconds) * 1000,
        Some(store.writer()),
        crate::clock::unix_ms(),
    ));
    let (endpoint_tx, endpoint_rx) = mpsc::unbounded_channel();
    let shared = Shared {
        store,
        media,
        desk,
        metrics: Arc::new(Metrics::default()),
        live: Arc::new(AtomicUsize::new(0)),
        endpoint: endpoint_tx,
        blocked,
        link_key,
    };
    let metrics_listener = match config.metrics.listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(io(&format!("metrics {addr}")))?,
        ),
        None => None,
    };
    let web_listener = match config.web.listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(io(&format!("console {addr}")))?,
        ),
        None => None,
    };
    // A bad certificate stops the start, like SIP's: a console silently on plain HTTP
    // would send its cookies in the clear.
    let web_tls = match (&config.web.tls_certificate, &config.web.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor_from(cert, key)?),
        _ => None,
    };
    let ctx = call_context(config, snapshot, &shared);
    let endpoint = endpoint(config, sockets.udp, endpoint_rx, &ctx, &shared)?;
    let endpoint_task = tokio::spawn(endpoint.run());
    serve_streams(config, sockets.tcp, sockets.tls, &shared.endpoint);
    let http = serve_metrics(metrics_listener, &shared)
        .into_iter()
        .chain(serve_console(web_listener, web_tls, config, &ctx, &shared))
        .collect();
    let workers = start_workers(config, &ctx, &shared.link_key);
    let companies = ctx
        .snapshot
        .read()
        .map(|s| s.plans.companies().len())
        .unwrap_or(0);
    let listen = config.sip.listen;
    tracing::info!(%listen, companies, db = %config.database_path().display(), "Permanence listening");
    Ok(Running {
        shared,
        endpoint_task,
        http,
        workers,
        grace: config.limits.shutdown_grace(),
    })
}

/// An I/O error that names the socket or thread it is about.
fn io(what: &str) -> impl FnOnce(std::io::Error) -> ServerError + use<> {
    let what = what.to_string();
    move |source| ServerError::Io { what, source }
}

/// The store, with what the previous run left open settled: its calls marked interrupted,
/// its cut-short recordings repaired.
fn open_store(config: &Config) -> Result<Store, ServerError> {
    let (store, recovery) = Store::open(&config.database_path())?;
    if recovery.interrupted > 0 {
        tracing::warn!(
            calls = recovery.interrupted,
            "calls left open by the previous run marked interrupted"
        );
    }
    recover_recordings(config, &store.writer())?;
    Ok(store)
}

/// Binds UDP, TLS (with its certificate) and TCP, as configured, in that order.
async fn bind_sip(config: &Config) -> Result<SipSockets, ServerError> {
    let listen = config.sip.listen;
    let udp = if config.sip.transports.contains(&TransportName::Udp) {
        let socket = bind_udp(listen).map_err(io(&format!("UDP {listen}")))?;
        Some(Arc::new(socket))
    } else {
        None
    };
    let tls = match config.sip.tls_listen {
        Some(addr) => Some((
            TcpListener::bind(addr)
                .await
                .map_err(io(&format!("TLS {addr}")))?,
            tls_acceptor(config)?,
        )),
        None => None,
    };
    let tcp = if config.sip.transports.contains(&TransportName::Tcp) {
        Some(
            TcpListener::bind(listen)
                .await
                .map_err(io(&format!("TCP {listen}")))?,
        )
    } else {
        None
    };
    Ok(SipSockets { udp, tcp, tls })
}

/// What every call task shares: the snapshot in force, media, store, endpoint, desk and
/// the settings a call reads.
fn call_context(
    config: &Config,
    snapshot: crate::snapshot::Snapshot,
    shared: &Shared,
) -> Arc<CallContext> {
    Arc::new(CallContext {
        metrics: Arc::clone(&shared.metrics),
        snapshot: std::sync::RwLock::new(Arc::new(snapshot)),
        media: shared.media.clone(),
        store: shared.store.writer(),
        ids: shared.store.ids(),
        endpoint: shared.endpoint.clone(),
        local_sip: config.sip.listen,
        local_tls: config.sip.tls_listen,
        data: config.paths.data.clone(),
        silence_seconds: config.media.voicemail_silence_seconds,
        no_speech: config.media.no_speech(),
        missed_call_seconds: u64::from(config.inbox.missed_call_seconds),
        unknown_numbers: std::sync::Mutex::new(crate::pike::Pike::new(
            config.limits.unknown_number_rows_per_minute,
            60_000,
        )),
        desk: Arc::clone(&shared.desk),
        rtp_timeout: (config.media.rtp_timeout_seconds > 0)
            .then(|| Duration::from_secs(u64::from(config.media.rtp_timeout_seconds))),
        trunk: config.trunk.clone(),
        controls: Default::default(),
        phones: Arc::new(crate::media::webrtc::Phones::new(
            Arc::clone(&shared.desk),
            shared.media.clone(),
            config.web.public_address,
        )),
        blocked: Arc::clone(&shared.blocked),
        lines: Arc::new(crate::line::Lines::new(current_lines(config))),
        dnd: Arc::new(crate::dnd::InForce::new(current_dnd(config))),
        webhooks: config.webhooks.clone().into(),
    })
}

/// The executives' do-not-disturb still in force in the records: a restart keeps them
/// (none, with a warning, if the records cannot be read).
fn current_dnd(config: &Config) -> Vec<(String, crate::dnd::Dnd)> {
    match crate::store::current_dnd(&config.database_path(), jiff::Timestamp::now()) {
        Ok(dnd) => {
            if !dnd.is_empty() {
                tracing::info!(executives = dnd.len(), "do-not-disturb still in force");
            }
            dnd
        }
        Err(e) => {
            tracing::warn!(error = %e, "do-not-disturb not restored: every executive is called");
            Vec::new()
        }
    }
}

/// The companies' lines switched by hand that are still in force in the records: a
/// restart keeps them (none, with a warning, if the records cannot be read).
fn current_lines(config: &Config) -> Vec<(crate::dialplan::CompanyId, crate::line::LineOverride)> {
    match crate::store::current_lines(&config.database_path(), jiff::Timestamp::now()) {
        Ok(lines) => {
            if !lines.is_empty() {
                tracing::info!(
                    companies = lines.len(),
                    "lines switched by hand still in force"
                );
            }
            lines
        }
        Err(e) => {
            tracing::warn!(error = %e, "lines switched by hand not restored: the hours decide");
            Vec::new()
        }
    }
}

/// The SIP endpoint: admission, a task per admitted call, the registrar (with the
/// registrations kept from the last run), keep-alives and the trunk, as configured.
fn endpoint(
    config: &Config,
    udp: Option<Arc<UdpSocket>>,
    inputs: mpsc::UnboundedReceiver<Input>,
    ctx: &Arc<CallContext>,
    shared: &Shared,
) -> Result<Endpoint, ServerError> {
    let spawn: SpawnCall = {
        let ctx = Arc::clone(ctx);
        Arc::new(move |call_id, rx| {
            tokio::spawn(task::run(Arc::clone(&ctx), call_id, rx));
        })
    };
    let admission = admission(config, shared);
    let listen = config.sip.listen;
    let endpoint = Endpoint::new(
        udp,
        inputs,
        spawn,
        admission,
        Arc::clone(&shared.live),
        Arc::clone(&shared.metrics),
        config.sip.max_message_bytes,
        TimerValues {
            t1: Duration::from_millis(config.sip.t1_ms.max(1)),
            ..TimerValues::default()
        },
    );
    let endpoint = endpoint
        .with_registrar(
            registrar(config)?,
            shared.store.writer(),
            Arc::clone(&shared.desk),
        )
        .with_keepalive(
            Duration::from_secs(config.registrar.keepalive_seconds),
            listen,
        );
    let endpoint = match &config.trunk {
        Some(trunk) if trunk.inbound_only_from_trunk => {
            endpoint.with_inbound_only(trunk.inbound_addresses())
        }
        _ => endpoint,
    };
    Ok(with_trunk_registration(endpoint, config))
}

/// Which new INVITEs are taken: the configured limits, `max_calls` capped by what the RTP
/// port range can carry, and the media engine's lateness.
fn admission(config: &Config, shared: &Shared) -> AdmissionPolicy {
    AdmissionPolicy {
        store: shared.store.health(),
        max_invites_per_second_per_source: config.limits.max_invites_per_second_per_source,
        rate_exempt: config
            .trunk
            .as_ref()
            .map(|t| t.inbound_addresses())
            .unwrap_or_default(),
        max_calls: {
            let capacity = config.media.call_capacity();
            if config.limits.max_calls > capacity {
                tracing::warn!(
                    max_calls = config.limits.max_calls,
                    capacity,
                    rtp_port_min = config.media.rtp_port_min,
                    rtp_port_max = config.media.rtp_port_max,
                    "limits.max_calls lowered to what the RTP range can carry (two ports a call); widen the range to take more"
                );
            }
            config.limits.max_calls.min(capacity)
        },
        max_calls_per_source: config.limits.max_calls_per_source,
        retry_after: config.limits.retry_after_seconds,
        media_overloaded: {
            let media = shared.media.clone();
            Arc::new(move || media.lag() > MEDIA_LAG_LIMIT)
        },
    }
}

/// The endpoint registering with the trunk, when `[trunk] register` asks for it and the
/// credentials are there (without them: a warning, and no registration).
fn with_trunk_registration(endpoint: Endpoint, config: &Config) -> Endpoint {
    match &config.trunk {
        Some(trunk) if trunk.register => match (&trunk.username, &trunk.password) {
            (Some(user), Some(password)) => endpoint.with_trunk_registration(
                crate::trunk::Registration::new(
                    trunk.proxy,
                    trunk
                        .domain
                        .clone()
                        .unwrap_or_else(|| trunk.proxy.ip().to_string()),
                    user.clone(),
                    password.clone(),
                    trunk.register_expires,
                    Instant::now(),
                    crate::sip::write::Ids::fresh(),
                ),
                config.sip.listen,
            ),
            _ => {
                tracing::warn!(
                    "[trunk] register = true needs username and password: not registering"
                );
                endpoint
            }
        },
        _ => endpoint,
    }
}

/// Accepts SIP over TCP and TLS, each listener on its own task and with its own limits.
fn serve_streams(
    config: &Config,
    tcp: Option<TcpListener>,
    tls: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
    endpoint: &mpsc::UnboundedSender<Input>,
) {
    let tcp_limits = crate::sip::transport::TcpLimits {
        max_message: config.sip.max_message_bytes,
        max_connections: config.limits.max_tcp_connections,
        max_per_source: config.limits.max_tcp_connections_per_source,
        message_deadline: Duration::from_secs(config.limits.tcp_message_seconds),
    };
    if let Some(listener) = tcp {
        tokio::spawn(serve_tcp(listener, endpoint.clone(), tcp_limits, None));
    }
    if let Some((listener, acceptor)) = tls {
        tokio::spawn(serve_tcp(
            listener,
            endpoint.clone(),
            tcp_limits,
            Some(acceptor),
        ));
    }
}

/// Serves `GET /metrics` on its own task when a listener is configured; returns what
/// stops it.
fn serve_metrics(listener: Option<TcpListener>, shared: &Shared) -> Option<oneshot::Sender<()>> {
    let listener = listener?;
    let (stop, stopped) = oneshot::channel::<()>();
    let gauges: crate::metrics::ReadGauges = {
        let (live, media, health, queued) = (
            Arc::clone(&shared.live),
            shared.media.clone(),
            shared.store.health(),
            shared.store.queued(),
        );
        Arc::new(move || crate::metrics::Gauges {
            live_calls: live.load(Ordering::Relaxed),
            rtp_lateness: media.lag(),
            rtp_relayed: media.relayed(),
            store_queue: queued.get(),
            store_writing: health.is_writing(),
        })
    };
    tokio::spawn(crate::metrics::serve(
        listener,
        Arc::clone(&shared.metrics),
        gauges,
        async move {
            let _ = stopped.await;
        },
    ));
    Some(stop)
}

/// Serves the secretaries' console on its own task when `[web] listen` is set; returns
/// what stops it.
fn serve_console(
    listener: Option<TcpListener>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    config: &Config,
    ctx: &Arc<CallContext>,
    shared: &Shared,
) -> Option<oneshot::Sender<()>> {
    let listener = listener?;
    let restored = crate::store::live_sessions(
        &config.database_path(),
        (crate::clock::unix_ms() / 1000) as i64,
    )
    .unwrap_or_else(|e| {
        tracing::warn!(error = %e, "console sessions not restored: everyone logs in again");
        Vec::new()
    });
    let web = crate::web::Web::new(
        Arc::clone(ctx),
        config.database_path(),
        config.secretaries.clone(),
        config.registrar.realm.clone(),
        config.web.session_hours,
        config.web.tls_certificate.is_some(),
        restored,
    )
    .with_executive_pages(Arc::clone(&shared.link_key));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(crate::web::serve(
        listener,
        tls,
        Arc::new(web),
        async move {
            let _ = stopped.await;
        },
    ));
    Some(stop)
}

/// Starts reloading: the file watcher, the task that builds and swaps snapshots, SIGHUP
/// (on Unix), and the block list's watcher.
fn start_workers(
    config: &Config,
    ctx: &Arc<CallContext>,
    link_key: &Arc<crate::executive_link::LinkKey>,
) -> Workers {
    let (reload_tx, reload_rx) = mpsc::unbounded_channel();
    let watcher = crate::reload::watch(config, reload_tx.clone());
    tokio::spawn(crate::reload::run(
        config.clone(),
        Arc::clone(ctx),
        reload_rx,
    ));
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            let reload_tx = reload_tx.clone();
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let _ = reload_tx.send(crate::reload::Trigger::Signal);
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "no SIGHUP handler: reload by editing the files"),
    }
    let blocklist = crate::blocklist::live::watch(
        Arc::clone(&ctx.blocked),
        crate::blocklist::live::WATCH_EVERY,
    )
    .map_err(|e| tracing::error!(error = %e, "block list: no watcher thread; changes from the CLI need a restart"))
    .ok();
    let mut settings = crate::delivery::worker::Settings::from_config(config);
    settings.links = config.web.public_base().map(|base| crate::delivery::Links {
        base,
        key: Arc::clone(link_key),
    });
    let delivery = crate::delivery::worker::Worker::start(settings, ctx.store.clone())
    .map_err(|e| tracing::error!(error = %e, "deliveries: no worker thread; messages wait in the outbox until a restart"))
    .ok();
    Workers {
        _watcher: watcher.map(|w| Box::new(w) as Box<dyn Send>),
        _reload: reload_tx,
        desk_clock: tokio::spawn(Arc::clone(&ctx.desk).run_clock()),
        _blocklist: blocklist,
        delivery,
    }
}

impl Running {
    /// Stops in named stages, each finished before the next begins:
    ///
    /// 1. [`refuse_new_calls`](Self::refuse_new_calls): new INVITEs get 503, live calls
    ///    are told to end;
    /// 2. [`end_live_calls`](Self::end_live_calls): up to the grace for them to end,
    ///    then the endpoint stops;
    /// 3. [`stop_http`](Self::stop_http): the HTTP listeners (`GET /metrics` today);
    /// 4. [`stop_workers`](Self::stop_workers): file watching for reloads, the outbox
    ///    worker (sends under way finish, at most 5 s, and their results are queued);
    /// 5. [`flush_store`](Self::flush_store): every record queued so far reaches the disk.
    ///
    /// HTTP stops after the calls, not first: that is the order the server has always had,
    /// and it lets `/metrics` show the live calls going during the grace. A web console
    /// that must stop taking requests before calls end gets a stage before the first.
    async fn shutdown(self) {
        let Running {
            shared,
            endpoint_task,
            http,
            workers,
            grace,
        } = self;
        Self::refuse_new_calls(&shared);
        Self::end_live_calls(&shared, endpoint_task, grace).await;
        Self::stop_http(http);
        Self::stop_workers(workers);
        Self::flush_store(&shared);
        tracing::info!(
            dropped = shared.metrics.dropped.load(Ordering::Relaxed),
            malformed_answered = shared.metrics.malformed_answered.load(Ordering::Relaxed),
            refused_busy = shared.metrics.refused_total(),
            rtp_relayed = shared.media.relayed(),
            still_live = shared.live.load(Ordering::Relaxed),
            "stopped"
        );
    }

    /// Stage: the endpoint answers new INVITEs 503 and sends every live call its shutdown
    /// (BYE, or 503 before the answer).
    fn refuse_new_calls(shared: &Shared) {
        tracing::info!(
            live = shared.live.load(Ordering::Relaxed),
            "stopping: refusing new calls, hanging up live ones"
        );
        let _ = shared.endpoint.send(Input::Drain);
    }

    /// Stage: waits until the live calls have ended or the grace is over, then stops the
    /// endpoint (no SIP after this, even for a call still live past the grace).
    async fn end_live_calls(
        shared: &Shared,
        endpoint_task: tokio::task::JoinHandle<()>,
        grace: Duration,
    ) {
        let deadline = Instant::now() + grace;
        while shared.live.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = shared.endpoint.send(Input::Stop);
        let _ = endpoint_task.await;
    }

    /// Stage: tells every HTTP listener to stop.
    fn stop_http(http: Vec<oneshot::Sender<()>>) {
        for stop in http {
            let _ = stop.send(());
        }
    }

    /// Stage: stops watching the plans' files. The reload task and the SIGHUP listener are
    /// left to end with the runtime, as they always have: once the endpoint has stopped, no
    /// call reads a new snapshot. The watcher used to go when `run` returned, just after the
    /// flush; the two orders cannot be told apart, since dropping it only signals its
    /// thread and no task runs between this stage and the flush.
    fn stop_workers(mut workers: Workers) {
        workers.desk_clock.abort();
        if let Some(delivery) = workers.delivery.take() {
            delivery.stop();
        }
        drop(workers);
    }

    /// Stage: waits until every record queued so far is committed.
    fn flush_store(shared: &Shared) {
        shared.store.flush();
    }
}

/// The TLS server side from `sip.tls_certificate` and `sip.tls_key` (PEM).
fn tls_acceptor(config: &Config) -> Result<tokio_rustls::TlsAcceptor, ServerError> {
    let (Some(cert), Some(key)) = (&config.sip.tls_certificate, &config.sip.tls_key) else {
        return Err(ServerError::Tls(
            "sip.tls_listen needs sip.tls_certificate and sip.tls_key (PEM files)".into(),
        ));
    };
    tls_acceptor_from(cert, key)
}

/// A TLS server side from a PEM certificate chain and its key.
pub(crate) fn tls_acceptor_from(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, ServerError> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServerError::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "{}: no certificate in it; expected a PEM certificate chain",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let server = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

/// Voicemails a crash cut short: each file is made whole (what was flushed, up to a second
/// before the crash) and its length recorded; a file that is gone is unlinked.
fn recover_recordings(config: &Config, store: &crate::store::Writer) -> Result<(), ServerError> {
    for (id, relative) in crate::store::unfinished_recordings(&config.database_path())? {
        let path = config.paths.data.join(&relative);
        let (kept, ms) = match crate::media::recording::repair(&path) {
            Ok(samples) if samples > 0 => (Some(relative), samples as i64 / 8),
            Ok(_) => (None, 0),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "an interrupted recording could not be recovered");
                (None, 0)
            }
        };
        tracing::info!(
            call = id,
            ms,
            "recording interrupted by the previous run recovered"
        );
        store.write(crate::store::Record::Recording {
            id,
            path: kept,
            ms,
            at: crate::store::now_text(),
        });
    }
    Ok(())
}

/// The registrar for the configured secretaries, with the registrations that were still
/// valid when the server stopped (UDP ones: a TCP connection does not survive a restart).
fn registrar(config: &Config) -> Result<crate::registrar::Registrar, ServerError> {
    use crate::registrar::{Binding, Registrar, Settings};
    let r = &config.registrar;
    let settings = Settings {
        realm: r.realm.clone(),
        min_expires: r.min_expires,
        max_expires: r.max_expires,
        default_expires: r.default_expires,
        algorithms: r
            .algorithms
            .iter()
            .filter_map(|a| crate::auth::Algorithm::from_name(a))
            .collect(),
        bans: crate::bans::Policy {
            max_failures: r.max_auth_failures,
            window_seconds: r.auth_failure_window_seconds,
            ban_seconds: r.ban_seconds,
        },
    };
    let secret = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    // Executives register like secretaries; only secretaries are offered calls (the desk).
    let accounts = config
        .secretaries
        .iter()
        .chain(&config.executives)
        .cloned()
        .collect();
    let mut registrar = Registrar::new(settings, accounts, secret, r.nonce_lifetime_seconds);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for row in crate::store::registrations(&config.database_path(), now as i64)? {
        let (Ok(addr), "UDP") = (row.source.parse(), row.transport.as_str()) else {
            continue;
        };
        let source = crate::sip::Peer {
            transport: crate::sip::Transport::Udp,
            addr,
        };
        registrar.restore(
            &row.username,
            Binding {
                contact: row.contact,
                source,
                expires_at: row.expires_at as u64,
            },
            row.instance,
            now,
        );
    }
    Ok(registrar)
}

/// A UDP socket with large buffers: a burst of INVITEs must wait in the kernel, not be lost.
fn bind_udp(addr: std::net::SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    let _ = socket.set_recv_buffer_size(8 << 20);
    let _ = socket.set_send_buffer_size(8 << 20);
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}
