//! `permanence secretaries`: who is registered, from where, and who is available.

use std::path::PathBuf;

use permanence::config::Config;
use permanence::desk::Activity;
use permanence::registrar::Secretary;
use permanence::store;
use permanence::terminal::safe;

/// `secretaries`' flags.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file.
    #[arg(long, default_value = "config/permanence.toml")]
    config: PathBuf,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// Prints every account (secretaries, then executives) with its state and registrations,
/// from what the server last stored.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let json = args.json;
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
        let activity = states
            .iter()
            .find(|r| r.username == s.username)
            .and_then(|r| Activity::from_record(&r.state, r.call_id, r.until_ms, 0))
            .map(|a| a.effective(permanence::clock::unix_ms()));
        let state = match activity {
            _ if mine.is_empty() => "not registered",
            _ if role == "executive" => "registered",
            Some(Activity::Ringing { .. }) => "ringing",
            Some(Activity::OnCall { .. }) => "on a call",
            Some(Activity::WrapUp { .. }) => "wrap-up",
            Some(Activity::Paused { .. }) => "paused",
            Some(Activity::Available { .. }) | None => "available",
        };
        if json {
            let mut line = serde_json::json!({ "username": s.username, "name": s.name, "role": role, "state": state, "registrations": mine });
            if role == "secretary" {
                line["companies"] = serde_json::json!(s.companies);
            }
            out!("{line}");
            continue;
        }
        print_rows(s, role, state, &mine, now);
    }
    Ok(())
}

/// One account's table rows (secretary or executive): one per registration, or one row
/// with `-` when it has none.
fn print_rows(
    account: &Secretary,
    role: &str,
    state: &str,
    mine: &[&store::RegistrationRow],
    now: i64,
) {
    let companies = if role == "secretary" {
        account.companies.join(",")
    } else {
        "-".to_string()
    };
    if mine.is_empty() {
        out!(
            "{:<10}  {:<9}  {:<24}  {:<16}  {:<14}  {:<40}  -",
            account.username,
            role,
            account.name,
            companies,
            state,
            "-"
        );
    }
    for r in mine {
        let contact = format!("{} ({} {})", safe(&r.contact), r.transport, r.source);
        out!(
            "{:<10}  {:<9}  {:<24}  {:<16}  {:<14}  {:<40}  {} s",
            account.username,
            role,
            account.name,
            companies,
            state,
            contact,
            r.expires_at - now
        );
    }
}
