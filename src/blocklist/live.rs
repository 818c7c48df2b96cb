//! The block list the server holds: loaded at start, read again right after the console
//! changes it, and re-read within a second or two when another process (the CLI) changes
//! the records. A call reads the list in force without waiting (one `RwLock` read, an
//! `Arc` clone); nothing here runs on the signalling thread but that read.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::{BlockEntry, BlockList};
use crate::number::E164;
use crate::store::{self, StoreError};

/// How often the watcher asks SQLite whether another connection wrote: a product
/// decision, so that `permanence blocked add` is in force "within a couple of seconds".
/// The question (`PRAGMA data_version`) reads no table.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The block list in force.
#[derive(Debug)]
pub struct Live {
    current: RwLock<Arc<BlockList>>,
    db: PathBuf,
}

impl Live {
    /// The list as the records hold it now.
    pub fn load(db: &Path) -> Result<Live, StoreError> {
        let live = Live {
            current: RwLock::new(Arc::new(BlockList::default())),
            db: db.to_path_buf(),
        };
        live.reload()?;
        Ok(live)
    }

    /// The list in force.
    pub fn get(&self) -> Arc<BlockList> {
        match self.current.read() {
            Ok(list) => Arc::clone(&list),
            // Nobody panics holding the lock; if someone did, the list is still whole.
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Reads the records again on a connection of its own (blocking: a few milliseconds).
    pub fn reload(&self) -> Result<(), StoreError> {
        let err = |source| StoreError::Sqlite {
            path: self.db.clone(),
            source,
        };
        let mut conn = store::open_connection(&self.db)?;
        let list = read(&mut conn).map_err(err)?;
        self.offer(list);
        Ok(())
    }

    /// Puts `list` in force unless the one in force was read later (a reload by the
    /// console and one by the watcher may finish in either order).
    fn offer(&self, list: BlockList) -> bool {
        let mut current = match self.current.write() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !list.is_newer_than(&current) {
            return false;
        }
        *current = Arc::new(list);
        true
    }
}

/// Reads every live block. A row whose number does not read as E.164 (written by hand,
/// or by something other than this program) is left out, loudly, rather than trusted.
fn read(conn: &mut Connection) -> rusqlite::Result<BlockList> {
    let (version, rows) = store::live_blocks(conn)?;
    let entries = rows.into_iter().filter_map(|row| {
        let Some(number) = E164::parse(&row.number) else {
            tracing::warn!(id = row.id, number = %crate::terminal::safe(&row.number), "a blocked number that is not E.164 is ignored");
            return None;
        };
        Some(BlockEntry {
            id: row.id,
            company: row.company,
            number,
            reason: row.reason,
            added_by: row.added_by,
            added_at: row.added_at,
        })
    });
    Ok(BlockList::new(entries, version))
}

/// The thread that notices changes other processes make; dropping it stops it.
pub struct Watcher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // Closing the channel wakes the thread at once.
        drop(self.stop.take());
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("block list watcher panicked");
        }
    }
}

/// Starts watching the records every `every`: when another connection has written
/// (`PRAGMA data_version` changed) and the block lists changed (their version), the list
/// is read again and put in force.
pub fn watch(live: Arc<Live>, every: Duration) -> std::io::Result<Watcher> {
    let (stop, stopped) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("blocklist-watch".into())
        .spawn(move || {
            let mut conn = match store::open_connection(&live.db) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "block list: cannot watch the records; changes from the CLI need a restart");
                    return;
                }
            };
            let mut seen = data_version(&conn).ok();
            // Whatever was written between the list's load and this connection's first
            // look would otherwise wait for the next write.
            check(&live, &mut conn);
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let now = data_version(&conn).ok();
                if now == seen {
                    continue;
                }
                seen = now;
                check(&live, &mut conn);
            }
        })?;
    Ok(Watcher {
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// The records changed: reads the list again if its version moved.
fn check(live: &Live, conn: &mut Connection) {
    match store::blocked_version(conn) {
        Ok(v) if v == live.get().version() => return,
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "block list: cannot read its version");
            return;
        }
    }
    match read(conn) {
        Ok(list) => {
            let version = list.version();
            if live.offer(list) {
                tracing::info!(
                    last_id = version.last_id,
                    removed = version.removed,
                    "block list changed in the records: in force now"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "block list: cannot read it"),
    }
}

/// SQLite's count of commits by other connections, as this connection sees it.
fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "data_version", |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_written_by_another_process_is_in_force_within_the_watch_period() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = dir.path().join("p.db");
        store::block_number(&db, "acme", "+33612345678", "spam", "cli").unwrap();
        let live = Arc::new(Live::load(&db).unwrap());
        let number = E164::parse("+33612345678").unwrap();
        assert_eq!(
            live.get().get("acme", &number).map(|e| e.added_by.clone()),
            Some("cli".into())
        );
        let _watcher = watch(Arc::clone(&live), Duration::from_millis(20)).unwrap();
        let other = E164::parse("+33699999999").unwrap();
        store::block_number(&db, "acme", other.as_str(), "robot", "cli").unwrap();
        store::unblock_number(&db, "acme", number.as_str(), "cli").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while live.get().get("acme", &other).is_none() || live.get().get("acme", &number).is_some()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the watcher never noticed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // A stale read offered afterwards does not undo it.
        let stale = BlockList::default();
        assert!(!live.offer(stale));
        assert_eq!(live.get().company("acme").len(), 1);
    }

    #[test]
    fn a_row_that_is_not_a_number_is_left_out() {
        let dir = tempfile::TempDir::new().unwrap();
        let db = dir.path().join("p.db");
        store::block_number(&db, "acme", "not a number", "x", "cli").unwrap();
        store::block_number(&db, "acme", "+33612345678", "x", "cli").unwrap();
        let live = Live::load(&db).unwrap();
        assert_eq!(live.get().company("acme").len(), 1);
    }
}
