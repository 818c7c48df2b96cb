//! Reloading dial plans while calls are up: on SIGHUP or a (debounced) change under
//! `dialplans/` or `sounds/`, build and check a whole new snapshot; swap it in if valid,
//! keep the old one otherwise. Calls in progress hold the snapshot they started with.
//! Every attempt is logged and recorded in SQLite (`reloads`).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::call::CallContext;
use crate::config::Config;
use crate::snapshot;
use crate::store::{self, Record};

/// Wait after the last file event before reloading: editors write files in several steps.
const DEBOUNCE: Duration = Duration::from_millis(400);

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// A file changed.
    Watch,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "signal",
            Trigger::Watch => "watch",
        }
    }
}

/// Content hashes of every file under the watched directories, by path.
type Fingerprint = BTreeMap<PathBuf, u64>;

/// Size and modification time of every file, by path: read without opening a file, so
/// that looking does not itself wake the watcher.
type Stamps = BTreeMap<PathBuf, (u64, Option<std::time::SystemTime>)>;

fn stamps(dirs: &[&Path]) -> Stamps {
    let mut out = BTreeMap::new();
    walk(dirs, |path, meta| {
        out.insert(path, (meta.len(), meta.modified().ok()));
    });
    out
}

fn fingerprint(dirs: &[&Path]) -> Fingerprint {
    let mut out = BTreeMap::new();
    walk(dirs, |path, _| {
        if let Ok(bytes) = std::fs::read(&path) {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            out.insert(path, h.finish());
        }
    });
    out
}

/// Every file under `dirs`, with its metadata.
fn walk(dirs: &[&Path], mut file: impl FnMut(PathBuf, std::fs::Metadata)) {
    let mut stack: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // Following links, as the plan loader does.
            let path = entry.path();
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => stack.push(path),
                Ok(m) => file(path, m),
                Err(_) => {}
            }
        }
    }
}

fn changed(old: &Fingerprint, new: &Fingerprint) -> Vec<String> {
    let mut out = Vec::new();
    for (path, hash) in new {
        match old.get(path) {
            None => out.push(format!("added {}", path.display())),
            Some(h) if h != hash => out.push(format!("changed {}", path.display())),
            _ => {}
        }
    }
    for path in old.keys().filter(|p| !new.contains_key(*p)) {
        out.push(format!("removed {}", path.display()));
    }
    out
}

/// Starts watching the plan and sound directories. The returned guard must be kept alive.
pub fn watch(
    config: &Config,
    triggers: mpsc::UnboundedSender<Trigger>,
) -> Option<impl Sized + use<>> {
    let mut debouncer = match notify_debouncer_mini::new_debouncer(DEBOUNCE, move |events| {
        if let Ok(events) = events
            && !Vec::is_empty(&events)
        {
            let _ = triggers.send(Trigger::Watch);
        }
    }) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the dial plans; reload with SIGHUP");
            return None;
        }
    };
    for dir in [&config.paths.dialplans, &config.paths.sounds] {
        if let Err(e) = debouncer
            .watcher()
            .watch(dir, notify_debouncer_mini::notify::RecursiveMode::Recursive)
        {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch; reload with SIGHUP");
        }
    }
    Some(debouncer)
}

/// Runs reloads as triggers arrive, until the channel closes.
pub async fn run(
    config: Config,
    ctx: Arc<CallContext>,
    mut triggers: mpsc::UnboundedReceiver<Trigger>,
) {
    let dirs = |c: &Config| fingerprint(&[&c.paths.dialplans, &c.paths.sounds]);
    let looked = |c: &Config| stamps(&[&c.paths.dialplans, &c.paths.sounds]);
    let mut in_force = dirs(&config);
    // The files as last seen, and a refused set of files: a watch event for what was
    // already judged (the watcher seeing our own reads, an editor's swap file) retries
    // nothing; a broken plan is tried again when a file changes again, or on SIGHUP.
    let mut seen = looked(&config);
    let mut refused: Option<Fingerprint> = None;
    while let Some(trigger) = triggers.recv().await {
        // Let a burst of triggers collapse into one reload.
        while triggers.try_recv().is_ok() {}
        if trigger == Trigger::Watch {
            let now = looked(&config);
            if now == seen {
                continue;
            }
            seen = now;
        }
        let config_for_load = config.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let fp = dirs(&config_for_load);
            (snapshot::load(&config_for_load), fp)
        })
        .await;
        let Ok((result, fp)) = loaded else {
            tracing::error!("reload task failed");
            continue;
        };
        let changes = changed(&in_force, &fp);
        if trigger == Trigger::Watch && (changes.is_empty() || refused.as_ref() == Some(&fp)) {
            continue; // a touch, a write of identical content, or what was just refused
        }
        match result {
            Ok(snapshot) => {
                let companies = snapshot.plans.companies().len();
                match ctx.snapshot.write() {
                    Ok(mut current) => *current = Arc::new(snapshot),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(snapshot),
                }
                tracing::info!(trigger = trigger.as_str(), companies, changed = ?changes, "dial plans reloaded");
                ctx.store.write(Record::Reload {
                    trigger: trigger.as_str(),
                    changed: changes,
                    accepted: true,
                    errors: String::new(),
                    at: store::now_text(),
                });
                in_force = fp;
                refused = None;
            }
            Err(e) => {
                let errors = e.lines();
                for line in &errors {
                    tracing::error!("{line}");
                }
                tracing::error!(trigger = trigger.as_str(), changed = ?changes, "dial plans refused; the previous plans stay in force");
                ctx.store.write(Record::Reload {
                    trigger: trigger.as_str(),
                    changed: changes,
                    accepted: false,
                    errors: errors.join("\n"),
                    at: store::now_text(),
                });
                refused = Some(fp);
            }
        }
    }
}
