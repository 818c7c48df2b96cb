//! The `permanence` command: serve, check the plans, read the records.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use permanence::call::simulate;
use permanence::config::Config;
use permanence::dialplan::Caller;
use permanence::terminal::safe;
use permanence::{server, store};

/// `println!` for the CLI's output: a reader that went away (`permanence calls | head`)
/// ends the command quietly instead of panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

#[derive(Parser)]
#[command(
    name = "permanence",
    version,
    about = "SIP call-handling server for remote secretariats"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Configuration file.
        #[arg(long, default_value = "config/permanence.toml")]
        config: PathBuf,
    },
    /// Check dial plans and their sounds without starting anything; lists every error.
    Check {
        /// Configuration file (for the sounds directory, and the plans when no PATH is given).
        #[arg(long, default_value = "config/permanence.toml")]
        config: PathBuf,
        /// Plan files or directories to check together (default: the configured dial plans).
        paths: Vec<PathBuf>,
    },
    /// Show which route a call would take and what would happen, without any network.
    Simulate {
        /// Configuration file.
        #[arg(long, default_value = "config/permanence.toml")]
        config: PathBuf,
        /// Company id.
        #[arg(long)]
        company: String,
        /// Caller's number (or "anonymous").
        #[arg(long, default_value = "anonymous")]
        from: String,
        /// Dialled number (default: the company's first).
        #[arg(long)]
        dialled: Option<String>,
        /// Local time at the company, "YYYY-MM-DD HH:MM" (default: now).
        #[arg(long)]
        at: Option<String>,
        /// Keys pressed at menus, in order (e.g. "2" or "19"): 0-9, *, # and A-D.
        #[arg(long, default_value = "")]
        digits: String,
        /// Whether a secretary is available: "available" or "none".
        #[arg(long, default_value = "available")]
        secretaries: String,
        /// Whether an executive answers a transfer: "answers" or "no-answer".
        #[arg(long, default_value = "answers")]
        executive: String,
    },
    /// List the messages that need attention (or show one, or mark one read/done).
    Messages {
        /// Configuration file.
        #[arg(long, default_value = "config/permanence.toml", global = true)]
        config: PathBuf,
        /// Only this company.
        #[arg(long)]
        company: Option<String>,
        /// Only this category: urgent, normal, low or spam.
        #[arg(long)]
        category: Option<String>,
        /// Only this status: new, read, done or filed (default: all but filed).
        #[arg(long)]
        status: Option<String>,
        /// Filed messages too (spam, greetings heard to the end, calls dropped within
        /// seconds), which the list leaves out by default.
        #[arg(long)]
        all: bool,
        /// Only messages since this date ("2026-11-27") or time (RFC 3339, UTC).
        #[arg(long)]
        since: Option<String>,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// JSON lines instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: Option<MessageAction>,
    },
    /// Who is registered, from where, and who is available (secretaries, then executives).
    Secretaries {
        /// Configuration file.
        #[arg(long, default_value = "config/permanence.toml")]
        config: PathBuf,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the digest hashes to store for a secretary instead of their password.
    ///
    /// The password is read from standard input (one line), never from the command line
    /// where `ps` and shell history would keep it: at a terminal it is asked for without
    /// echo; otherwise pipe it in, e.g. `printf '%s\n' 'their password' | permanence
    /// hash-password --username bob`.
    HashPassword {
        /// SIP username.
        #[arg(long)]
        username: String,
        /// Digest realm (as in [registrar] realm).
        #[arg(long, default_value = "permanence")]
        realm: String,
    },
    /// Addresses banned for repeated wrong passwords, newest first.
    Bans {
        /// Configuration file.
        #[arg(long, default_value = "config/permanence.toml")]
        config: PathBuf,
        /// How many, newest first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List recent calls from the records.
    Calls {
        /// Configuration file.
        #[arg(long, default_value = "config/permanence.toml")]
        config: PathBuf,
        /// How many calls, newest first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum MessageAction {
    /// One message with its call's timeline.
    Show {
        /// Message id.
        id: i64,
    },
    /// Change a message's status.
    Mark {
        /// Message id.
        id: i64,
        /// read, done, new or filed.
        status: String,
    },
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole chain, no backtrace: this is for the operator.
            eprintln!("permanence: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: log files and journald get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let config = Config::load(&config)?;
            // Signalling runs on one thread: a call costs tens of microseconds of it, and one
            // thread avoids waking other workers for every message (see docs/ARCHITECTURE.md).
            // RTP and SQLite have threads of their own.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            runtime.block_on(server::run(config, shutdown_signal()))?;
            Ok(())
        }
        Command::Check { config, paths } => {
            let config = Config::load(&config)?;
            let files = plan_files(&config, &paths)?;
            match permanence::snapshot::load_from(&config, &files) {
                Ok(snapshot) => {
                    out!(
                        "ok: {} companies in {} files",
                        snapshot.plans.companies().len(),
                        files.len()
                    );
                    Ok(())
                }
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
        }
        Command::Simulate {
            config,
            company,
            from,
            dialled,
            at,
            digits,
            secretaries,
            executive,
        } => {
            let config = Config::load(&config)?;
            let snapshot = permanence::snapshot::load(&config)?;
            let company = snapshot.plans.company(&company).with_context(|| {
                format!(
                    "no company `{company}` in {}",
                    config.paths.dialplans.display()
                )
            })?;
            let at = match at {
                Some(text) => {
                    let civil: jiff::civil::DateTime =
                        text.trim().replace(' ', "T").parse().with_context(|| {
                            format!("--at `{text}`: expected \"YYYY-MM-DD HH:MM\"")
                        })?;
                    company.timezone.to_timestamp(civil).context("--at")?
                }
                None => jiff::Timestamp::now(),
            };
            let dialled = match dialled {
                Some(d) => Some(
                    permanence::number::E164::parse(&d)
                        .with_context(|| format!("--dialled `{d}`: expected E.164"))?,
                ),
                None => None,
            };
            anyhow::ensure!(
                secretaries == "available" || secretaries == "none",
                "--secretaries: expected available or none"
            );
            anyhow::ensure!(
                executive == "answers" || executive == "no-answer",
                "--executive: expected answers or no-answer"
            );
            let scenario = simulate::Scenario {
                caller: Caller::from_user(Some(&from), None, company.country),
                dialled,
                at,
                digits: keys(&digits)?,
                secretaries: secretaries == "available",
                executive_answers: executive == "answers",
                sound_lengths: snapshot.sounds.lengths(),
                no_speech: config.media.no_speech(),
            };
            for line in simulate::simulate(company, &scenario) {
                out!("{line}");
            }
            Ok(())
        }
        Command::Secretaries { config, json } => {
            let config = Config::load(&config)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let registrations = store::registrations(&config.database_path(), now)?;
            let states = store::secretary_states(&config.database_path())?;
            if !json {
                out!(
                    "{:<10}  {:<9}  {:<24}  {:<16}  {:<14}  {:<40}  EXPIRES IN",
                    "USERNAME",
                    "ROLE",
                    "NAME",
                    "COMPANIES",
                    "STATE",
                    "CONTACT (FROM)"
                );
            }
            // Executives register through the same registrar but have no desk: only whether
            // their phones are registered.
            let secretaries = config.secretaries.iter().map(|s| (s, "secretary"));
            let executives = config.executives.iter().map(|e| (e, "executive"));
            for (s, role) in secretaries.chain(executives) {
                let mine: Vec<_> = registrations
                    .iter()
                    .filter(|r| r.username == s.username)
                    .collect();
                let activity = states.iter().find(|r| r.username == s.username);
                let state = match activity {
                    _ if mine.is_empty() => "not registered",
                    _ if role == "executive" => "registered",
                    Some(r)
                        if r.state == "wrap-up"
                            && r.until_ms.unwrap_or(0) <= permanence::desk::now_ms() as i64 =>
                    {
                        "available"
                    }
                    Some(r) if r.state == "ringing" => "ringing",
                    Some(r) if r.state == "on-call" => "on a call",
                    Some(r) if r.state == "wrap-up" => "wrap-up",
                    _ => "available",
                };
                if json {
                    let mut line = serde_json::json!({ "username": s.username, "name": s.name, "role": role, "state": state, "registrations": mine });
                    if role == "secretary" {
                        line["companies"] = serde_json::json!(s.companies);
                    }
                    out!("{line}");
                    continue;
                }
                let companies = if role == "secretary" {
                    s.companies.join(",")
                } else {
                    "-".to_string()
                };
                if mine.is_empty() {
                    out!(
                        "{:<10}  {:<9}  {:<24}  {:<16}  {:<14}  {:<40}  -",
                        s.username,
                        role,
                        s.name,
                        companies,
                        state,
                        "-"
                    );
                }
                for r in mine {
                    let contact = format!("{} ({} {})", safe(&r.contact), r.transport, r.source);
                    out!(
                        "{:<10}  {:<9}  {:<24}  {:<16}  {:<14}  {:<40}  {} s",
                        s.username,
                        role,
                        s.name,
                        companies,
                        state,
                        contact,
                        r.expires_at - now
                    );
                }
            }
            Ok(())
        }
        Command::HashPassword { username, realm } => {
            use permanence::auth::{Algorithm, ha1};
            let password = read_password()?;
            out!("username = \"{username}\"");
            out!(
                "ha1_md5 = \"{}\"",
                ha1(Algorithm::Md5, &username, &realm, &password)
            );
            out!(
                "ha1_sha256 = \"{}\"",
                ha1(Algorithm::Sha256, &username, &realm, &password)
            );
            Ok(())
        }
        Command::Messages {
            config,
            company,
            category,
            status,
            since,
            limit,
            all,
            json,
            action,
        } => {
            let config = Config::load(&config)?;
            let db = config.database_path();
            match action {
                None => {
                    if let Some(c) = &category {
                        anyhow::ensure!(
                            ["urgent", "normal", "low", "spam"].contains(&c.as_str()),
                            "--category: expected urgent, normal, low or spam"
                        );
                    }
                    if let Some(s) = &status {
                        anyhow::ensure!(
                            permanence::inbox::Status::parse(s).is_some(),
                            "--status: expected new, read, done or filed"
                        );
                    }
                    if let Some(s) = &since {
                        let valid = s.parse::<jiff::civil::Date>().is_ok()
                            || s.parse::<jiff::Timestamp>().is_ok();
                        anyhow::ensure!(
                            valid,
                            "--since `{s}`: expected a date (2026-11-27) or an RFC 3339 time"
                        );
                    }
                    let filter = store::MessageFilter {
                        company,
                        category,
                        status,
                        include_filed: all,
                        // Stored times are RFC 3339 UTC with milliseconds: an exact time is
                        // compared in that form (a date compares as its midnight already).
                        since: since.map(|s| {
                            s.parse::<jiff::Timestamp>()
                                .map_or(s, |t| format!("{t:.3}"))
                        }),
                        limit,
                    };
                    let rows = store::list_messages(&db, &filter)?;
                    if json {
                        for m in &rows {
                            out!("{}", serde_json::to_string(m)?);
                        }
                    } else {
                        print_messages(&rows);
                    }
                }
                Some(MessageAction::Show { id }) => {
                    let (m, events) = store::message_with_timeline(&db, id)?
                        .with_context(|| format!("no message {id}"))?;
                    if json {
                        out!(
                            "{}",
                            serde_json::json!({ "message": m, "timeline": events })
                        );
                    } else {
                        print_messages(std::slice::from_ref(&m));
                        out!();
                        for e in events {
                            out!(
                                "  {}  {:<18} {}",
                                e.at.get(11..23).unwrap_or(&e.at),
                                e.kind,
                                e.data
                            );
                        }
                    }
                }
                Some(MessageAction::Mark { id, status }) => {
                    anyhow::ensure!(
                        permanence::inbox::Status::parse(&status).is_some(),
                        "status: expected read, done, new or filed"
                    );
                    anyhow::ensure!(store::mark_message(&db, id, &status)?, "no message {id}");
                    out!("message {id}: {status}");
                }
            }
            Ok(())
        }
        Command::Bans {
            config,
            limit,
            json,
        } => {
            let config = Config::load(&config)?;
            let now = jiff::Timestamp::now().as_second();
            let rows = store::bans(&config.database_path(), limit)?;
            if !json {
                out!(
                    "{:<19}  {:<39}  {:<12}  {:>8}  UNTIL (UTC)",
                    "AT (UTC)",
                    "SOURCE",
                    "USERNAME",
                    "FAILURES"
                );
            }
            for b in &rows {
                if json {
                    out!("{}", serde_json::to_string(b)?);
                    continue;
                }
                let until = jiff::Timestamp::from_second(b.until)
                    .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default();
                let state = if b.until > now { " (in force)" } else { "" };
                out!(
                    "{:<19}  {:<39}  {:<12}  {:>8}  {until}{state}",
                    b.at.get(..19).unwrap_or(&b.at).replace('T', " "),
                    b.source,
                    safe(&b.username),
                    b.failures
                );
            }
            Ok(())
        }
        Command::Calls {
            config,
            limit,
            json,
        } => {
            let config = Config::load(&config)?;
            let calls = store::recent_calls(&config.database_path(), limit)?;
            if json {
                for c in &calls {
                    out!("{}", serde_json::to_string(c)?);
                }
            } else {
                print_calls(&calls);
            }
            Ok(())
        }
    }
}

/// `--digits`: the keys of a telephone keypad (RFC 4733 events 0–15); spaces are ignored,
/// `a`–`d` stand for `A`–`D`.
fn keys(digits: &str) -> anyhow::Result<Vec<char>> {
    digits
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c.to_ascii_uppercase() {
            k @ ('0'..='9' | '*' | '#' | 'A'..='D') => Ok(k),
            _ => anyhow::bail!(
                "--digits `{digits}`: `{c}` is not a key; expected keys 0-9, *, # or A-D"
            ),
        })
        .collect()
}

/// The password for `hash-password`: one line of standard input, its line ending removed.
/// At a terminal, asks on stderr and turns echo off (with `stty`) while it is typed.
fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead as _, IsTerminal as _};
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let silent = terminal && stty("-echo");
    if terminal {
        eprint!("Password: ");
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if silent {
        stty("echo");
        eprintln!(); // the Enter key was not echoed
    }
    let n = read.context("reading the password from standard input")?;
    anyhow::ensure!(
        n > 0,
        "no password on standard input; type it at the prompt, or pipe it in: printf '%s\\n' 'their password' | permanence hash-password --username NAME"
    );
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    anyhow::ensure!(
        !password.is_empty(),
        "empty password; expected one line with the password"
    );
    Ok(password.to_string())
}

/// The plan files named on the command line (directories expand to their `*.toml`).
fn plan_files(config: &Config, paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let paths = if paths.is_empty() {
        vec![config.paths.dialplans.clone()]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut in_dir: Vec<PathBuf> = std::fs::read_dir(&path)
                .with_context(|| format!("{}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            in_dir.sort();
            files.extend(in_dir);
        } else {
            files.push(path);
        }
    }
    Ok(files)
}

fn print_messages(rows: &[store::MessageRow]) {
    out!(
        "{:>5}  {:<19}  {:<10}  {:<22}  {:<8}  {:<6}  {:<11}  {:>7}  RECORDING",
        "ID",
        "TIME (UTC)",
        "COMPANY",
        "CALLER",
        "CATEGORY",
        "STATUS",
        "OUTCOME",
        "SECONDS"
    );
    for m in rows {
        // The caller's number and name are theirs to choose: shown, never obeyed.
        let caller = match &m.caller_name {
            Some(name) => format!("{} ({})", safe(&m.caller), safe(name)),
            None => safe(&m.caller).into_owned(),
        };
        let seconds = m
            .recording_ms
            .map_or("-".to_string(), |ms| format!("{:.1}", ms as f64 / 1000.0));
        let recording = match (&m.recording, m.recording_empty) {
            (Some(path), _) => safe(path).into_owned(),
            (None, true) => "(empty: no audio)".to_string(),
            (None, false) => "-".to_string(),
        };
        out!(
            "{:>5}  {:<19}  {:<10}  {:<22}  {:<8}  {:<6}  {:<11}  {:>7}  {}",
            m.id,
            m.created_at
                .get(..19)
                .unwrap_or(&m.created_at)
                .replace('T', " "),
            m.company,
            caller,
            m.category,
            m.status,
            m.outcome.as_deref().unwrap_or("(live)"),
            seconds,
            recording
        );
    }
}

fn print_calls(calls: &[store::CallRow]) {
    let time = |t: &Option<String>| {
        t.as_deref()
            .map_or("-".to_string(), |t| t.get(11..19).unwrap_or(t).to_string())
    };
    out!(
        "{:>5}  {:<10}  {:<16}  {:<16}  {:<10}  {:<8}  {:<8}  {:<8}  {:<12}  {:>6}  OUTCOME",
        "ID",
        "COMPANY",
        "CALLER",
        "DIALLED",
        "DATE",
        "START",
        "ANSWER",
        "END",
        "HANDLED BY",
        "TALK"
    );
    for c in calls {
        let by = c
            .handled_by
            .clone()
            .or_else(|| c.transferred_to.as_ref().map(|t| format!("→{t}")))
            .map_or_else(|| "-".into(), |by| safe(&by).into_owned());
        let talk = c
            .handled_at
            .as_deref()
            .zip(c.ended_at.as_deref())
            .and_then(|(a, e)| {
                let a: jiff::Timestamp = a.parse().ok()?;
                let e: jiff::Timestamp = e.parse().ok()?;
                Some(format!("{}s", (e - a).as_secs()))
            })
            .unwrap_or_else(|| "-".into());
        out!(
            "{:>5}  {:<10}  {:<16}  {:<16}  {:<10}  {:<8}  {:<8}  {:<8}  {:<12}  {:>6}  {}",
            c.id,
            c.company.as_deref().unwrap_or("-"),
            safe(&c.caller),
            safe(&c.dialled),
            c.started_at.get(..10).unwrap_or(&c.started_at),
            time(&Some(c.started_at.clone())),
            time(&c.answered_at),
            time(&c.ended_at),
            by,
            talk,
            c.outcome.as_deref().unwrap_or("(live)")
        );
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
