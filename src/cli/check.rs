//! `permanence check`: the dial plans and their sounds loaded as the server would, every
//! error listed, nothing started.

use std::path::PathBuf;

use anyhow::Context;

use permanence::config::Config;

/// `check`'s flags.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (for the sounds directory, and the plans when no PATH is given).
    #[arg(long, default_value = "config/permanence.toml")]
    config: PathBuf,
    /// Plan files or directories to check together (default: the configured dial plans).
    paths: Vec<PathBuf>,
}

/// Prints a one-line summary when the plans load; otherwise prints their errors and exits 1.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let files = plan_files(&config, &args.paths)?;
    match permanence::snapshot::load_from(&config, &files) {
        Ok(snapshot) => {
            let unknown = config
                .unknown_webhook_companies(&args.config, |id| snapshot.plans.company(id).is_some());
            if !unknown.is_empty() {
                eprintln!("config refused:");
                for e in unknown {
                    eprintln!("  {e}");
                }
                std::process::exit(1);
            }
            let emails = snapshot.plans.companies().iter().any(|c| {
                c.executives.values().any(|e| {
                    e.deliver
                        .iter()
                        .any(|r| r.to.contains(&permanence::delivery::rules::Channel::Email))
                })
            });
            if emails && config.smtp.is_none() {
                eprintln!(
                    "warning: plans e-mail messages but the config has no [smtp]: e-mails wait in the outbox (`permanence deliveries`)"
                );
            }
            out!(
                "ok: {} companies in {} files",
                snapshot.plans.companies().len(),
                files.len()
            );
            Ok(())
        }
        Err(e) => {
            // The list of errors is the output: printed as it is, without `permanence:`.
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
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
