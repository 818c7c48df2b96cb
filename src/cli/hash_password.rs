//! `permanence hash-password`: the digest hashes to put in the configuration instead of a
//! secretary's password.

use anyhow::Context;

use permanence::auth::{Algorithm, ha1};

/// `hash-password`'s flags (the password itself comes from standard input).
#[derive(clap::Args)]
pub struct Args {
    /// SIP username.
    #[arg(long)]
    username: String,
    /// Digest realm (as in [registrar] realm).
    #[arg(long, default_value = "permanence")]
    realm: String,
}

/// Reads the password and prints the configuration lines for MD5 and SHA-256.
pub fn run(args: Args) -> anyhow::Result<()> {
    let Args { username, realm } = args;
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
