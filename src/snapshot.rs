//! The plans and the sounds they use, loaded and checked together, and swapped together at
//! reload: what `check` reports, `serve` refuses to start without, and a call keeps from its
//! start to its end.

use crate::config::Config;
use crate::dialplan::{self, PlanError, Plans};
use crate::media::{SoundError, Sounds};

/// The plans and the sounds they use.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Dial plans.
    pub plans: Plans,
    /// Sounds, encoded.
    pub sounds: Sounds,
}

/// Why a snapshot cannot be used: every error, each as `file:line:column`.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Dial plans are invalid.
    #[error("dial plans refused:\n{}", list(.0))]
    Plans(Vec<PlanError>),
    /// Sounds cannot be loaded.
    #[error("sounds refused:\n{}", list(.0))]
    Sounds(Vec<SoundError>),
}

impl SnapshotError {
    /// Each error on its own line, for logs and the reloads table.
    pub fn lines(&self) -> Vec<String> {
        match self {
            SnapshotError::Plans(list) => list.iter().map(|e| e.to_string()).collect(),
            SnapshotError::Sounds(list) => list.iter().map(|e| e.to_string()).collect(),
        }
    }
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Loads and checks the configured plans and their sounds.
pub fn load(config: &Config) -> Result<Snapshot, SnapshotError> {
    let plans = dialplan::load_dir(&config.paths.dialplans, &config.paths.sounds)
        .map_err(SnapshotError::Plans)?;
    with_sounds(config, plans)
}

/// The same for given plan files (`permanence check PATH…`).
pub fn load_from(config: &Config, files: &[std::path::PathBuf]) -> Result<Snapshot, SnapshotError> {
    let plans = dialplan::load_files(files, &config.paths.sounds).map_err(SnapshotError::Plans)?;
    with_sounds(config, plans)
}

fn with_sounds(config: &Config, plans: Plans) -> Result<Snapshot, SnapshotError> {
    let sounds =
        Sounds::load(&config.paths.sounds, plans.sounds().iter()).map_err(SnapshotError::Sounds)?;
    Ok(Snapshot { plans, sounds })
}
