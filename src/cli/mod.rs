//! The subcommands: their flags (clap) and which module runs each. Every subcommand is a
//! module of its own with `Args` and `run`, so this file reads as the table of contents.

use clap::{Parser, Subcommand};

/// `println!` for the CLI's output: a reader that went away (`permanence calls | head`)
/// ends the command quietly instead of panicking on the broken pipe.
// Defined before the modules below so that they all see it.
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

mod agenda;
mod bans;
mod blocked;
mod calls;
mod check;
mod deliveries;
mod executive_links;
mod hash_password;
mod messages;
mod plans;
mod queue;
mod report;
mod secretaries;
mod serve;
mod simulate;
mod token;

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

// The doc comments here are the subcommands' help text (clap shows them as written).
#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::Args),
    /// Check dial plans and their sounds without starting anything; lists every error.
    Check(check::Args),
    /// Show which route a call would take and what would happen, without any network.
    Simulate(simulate::Args),
    /// List the messages that need attention (or show one, or mark one read/done).
    Messages(messages::Args),
    /// Who is registered, from where, and who is available (secretaries, then executives).
    Secretaries(secretaries::Args),
    /// The callers waiting for a secretary now, per company, longest wait first.
    Queue(queue::Args),
    /// Print the digest hashes to store for a secretary instead of their password.
    ///
    /// The password is read from standard input (one line), never from the command line
    /// where `ps` and shell history would keep it: at a terminal it is asked for without
    /// echo; otherwise pipe it in, e.g. `printf '%s\n' 'their password' | permanence
    /// hash-password --username bob`.
    HashPassword(hash_password::Args),
    /// Addresses banned for repeated wrong passwords, newest first.
    Bans(bans::Args),
    /// The numbers each company blocked (spam): list, add, remove.
    Blocked(blocked::Args),
    /// List recent calls from the records.
    Calls(calls::Args),
    /// The outbox: e-mails, webhooks and daily summaries to executives (list, or retry a
    /// failed one).
    Deliveries(deliveries::Args),
    /// API tokens with which a script acts as a secretary (create, list, revoke).
    Token(token::Args),
    /// Links to an executive's page (what their e-mails carry): create one, revoke them.
    ExecutiveLinks(executive_links::Args),
    /// A company's month for invoicing: calls answered by outcome and category, minutes
    /// handled by secretaries, messages, appointments, tasks done.
    Report(report::Args),
    /// One day of the executives' agendas: appointments and free slots (or, with --feed,
    /// an executive's calendar feed address).
    Agenda(agenda::Args),
}

/// Parses the command line and runs the subcommand it names.
pub fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => serve::run(args),
        Command::Check(args) => check::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Messages(args) => messages::run(args),
        Command::Secretaries(args) => secretaries::run(args),
        Command::Queue(args) => queue::run(args),
        Command::HashPassword(args) => hash_password::run(args),
        Command::Bans(args) => bans::run(args),
        Command::Blocked(args) => blocked::run(args),
        Command::Calls(args) => calls::run(args),
        Command::Deliveries(args) => deliveries::run(args),
        Command::Token(args) => token::run(args),
        Command::ExecutiveLinks(args) => executive_links::run(args),
        Command::Report(args) => report::run(args),
        Command::Agenda(args) => agenda::run(args),
    }
}
