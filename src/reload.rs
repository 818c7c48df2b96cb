//! Reloading dial plans while calls are up: on SIGHUP or a (debounced) change under
//! `dialplans/` or `sounds/`, build and check a whole new snapshot; swap it in if valid,
//! keep the old one otherwise. Calls in progress hold the snapshot they started with.
//! Every attempt is logged and recorded in SQLite (`reloads`).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::notify;
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

/// Size and modification time of every file, by path: read without opening a file, the
/// cheap first look after a watch event.
type Stamps = BTreeMap<PathBuf, (u64, Option<std::time::SystemTime>)>;

fn stamps(watched: &Watched) -> Stamps {
    let mut out = BTreeMap::new();
    walk(watched, |path, meta| {
        out.insert(path, (meta.len(), meta.modified().ok()));
    });
    out
}

fn fingerprint(watched: &Watched) -> Fingerprint {
    let mut out = BTreeMap::new();
    walk(watched, |path, _| {
        if let Ok(bytes) = std::fs::read(&path) {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            out.insert(path, h.finish());
        }
    });
    out
}

/// Every file under the watched directories but the data directory, with its metadata.
fn walk(watched: &Watched, mut file: impl FnMut(PathBuf, std::fs::Metadata)) {
    let mut stack = watched.dirs.clone();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // Following links, as the plan loader does.
            let path = entry.path();
            if watched.ignores(&path) {
                continue;
            }
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

/// The directories a reload reads, and the data directory to leave out of them.
struct Watched {
    dirs: Vec<PathBuf>,
    /// The data directory (SQLite, voicemail), when it lies inside a watched one: what the
    /// server writes there on every call is not a plan or a sound.
    data: Option<PathBuf>,
}

impl Watched {
    fn new(config: &Config) -> Watched {
        // Canonical, so that the watcher's paths and the data directory compare as paths.
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let dirs: Vec<PathBuf> = [&config.paths.dialplans, &config.paths.sounds]
            .into_iter()
            .map(|d| canon(d))
            .collect();
        let data = canon(&config.paths.data);
        let data = dirs.iter().any(|d| data.starts_with(d)).then_some(data);
        Watched { dirs, data }
    }

    fn ignores(&self, path: &Path) -> bool {
        self.data.as_ref().is_some_and(|d| path.starts_with(d))
    }
}

/// Whether a watcher's event can mean a plan or a sound changed. Opening, reading and
/// closing a file unwritten change nothing, and the reload itself opens every file: woken
/// by those, the watcher would wake itself (and decode every sound again) for ever.
fn relevant(event: &notify::Event, watched: &Watched) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    let kind_matters = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    // An event on paths all under the data directory is the server's own writing.
    kind_matters && (event.paths.is_empty() || event.paths.iter().any(|p| !watched.ignores(p)))
}

/// Starts watching the plan and sound directories. The returned guard must be kept alive.
/// Triggers are sent as events come; [`run`] waits for them to settle.
pub fn watch(
    config: &Config,
    triggers: mpsc::UnboundedSender<Trigger>,
) -> Option<impl Sized + use<>> {
    use notify::Watcher;
    let watched = Watched::new(config);
    let dirs = watched.dirs.clone();
    let mut watcher =
        match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event
                && relevant(&event, &watched)
            {
                let _ = triggers.send(Trigger::Watch);
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the dial plans; reload with SIGHUP");
                return None;
            }
        };
    for dir in &dirs {
        if let Err(e) = watcher.watch(dir, notify::RecursiveMode::Recursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch; reload with SIGHUP");
        }
    }
    Some(watcher)
}

/// Runs reloads as triggers arrive, until the channel closes.
pub async fn run(
    config: Config,
    ctx: Arc<CallContext>,
    mut triggers: mpsc::UnboundedReceiver<Trigger>,
) {
    let watched = Arc::new(Watched::new(&config));
    let mut in_force = fingerprint(&watched);
    // The files as last seen, and a refused set of files: a watch event for what was
    // already judged (a touch, an editor's swap file come and gone) retries nothing; a broken plan is tried again when a file changes again, or on SIGHUP.
    let mut seen = stamps(&watched);
    let mut refused: Option<Fingerprint> = None;
    while let Some(mut trigger) = triggers.recv().await {
        // Let a burst of triggers collapse into one reload: file events until they have
        // been quiet for DEBOUNCE (editors write in several steps); a signal at once.
        while trigger == Trigger::Watch {
            match tokio::time::timeout(DEBOUNCE, triggers.recv()).await {
                Ok(Some(next)) => trigger = next,
                Ok(None) => return,
                Err(_) => break,
            }
        }
        while let Ok(next) = triggers.try_recv() {
            if next == Trigger::Signal {
                trigger = next;
            }
        }
        if trigger == Trigger::Watch {
            let now = stamps(&watched);
            if now == seen {
                continue;
            }
            seen = now;
        }
        let config_for_load = config.clone();
        let watched_for_load = Arc::clone(&watched);
        let loaded = tokio::task::spawn_blocking(move || {
            let fp = fingerprint(&watched_for_load);
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

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, EventKind, ModifyKind};

    fn event(kind: EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn reads_and_the_data_directory_wake_nothing_writes_do() {
        let watched = Watched {
            dirs: vec!["/srv/plans".into(), "/srv/sounds".into()],
            data: Some("/srv/sounds/data".into()),
        };
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        let read_closed = EventKind::Access(AccessKind::Close(AccessMode::Read));
        let written_closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(relevant(&event(write, "/srv/plans/acme.toml"), &watched));
        assert!(relevant(
            &event(written_closed, "/srv/plans/acme.toml"),
            &watched
        ));
        assert!(relevant(
            &event(EventKind::Create(CreateKind::File), "/srv/sounds/a.wav"),
            &watched
        ));
        assert!(!relevant(&event(open, "/srv/plans/acme.toml"), &watched));
        assert!(!relevant(
            &event(read_closed, "/srv/sounds/a.wav"),
            &watched
        ));
        assert!(!relevant(
            &event(write, "/srv/sounds/data/permanence.db-wal"),
            &watched
        ));
        // A sibling whose name merely starts the same is not the data directory.
        assert!(relevant(
            &event(write, "/srv/sounds/database.wav"),
            &watched
        ));
        // A rescan (the kernel's queue overflowed) names no path: look again.
        assert!(relevant(&notify::Event::new(EventKind::Other), &watched));
    }
}
