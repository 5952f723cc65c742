//! The state directory and its SQLite database (`baton.db`, WAL). This module owns the connection; every
//! component that keeps rows (ledger, jobs, schedule runs) declares its own versioned migrations and applies
//! them with [`State::migrate`] before first use, so components never edit one shared list.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rusqlite::Connection;

/// Each message carries its cause in full, so the cause is not also a `source()` (an error chain printed
/// with `{:#}` would repeat it).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path}: {cause}")]
    Dir {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("state database {path}: {cause}")]
    Db {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    #[error("state database: {0}")]
    Sql(rusqlite::Error),
    #[error("state database task failed: {0}")]
    Join(String),
}

impl From<rusqlite::Error> for StateError {
    fn from(e: rusqlite::Error) -> StateError {
        StateError::Sql(e)
    }
}

/// Where state lives: `$BATON_STATE_DIR`, else `$XDG_STATE_HOME/baton`, else `~/.local/state/baton`.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BATON_STATE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("baton");
    }
    home_dir().join(".local/state/baton")
}

/// `$HOME`, or `/` when unset.
pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The state directory with its database opened on first use (start-up stays cheap for scripts that never
/// touch it). Clones share one connection.
#[derive(Clone)]
pub struct State {
    dir: PathBuf,
    conn: Arc<OnceLock<Arc<Mutex<Connection>>>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("dir", &self.dir).finish()
    }
}

/// How long a statement waits for another process's lock on the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const CREATE_VERSIONS: &str = "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)";

impl State {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        State {
            dir: dir.into(),
            conn: Arc::new(OnceLock::new()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.join("baton.db")
    }

    /// Creates the directory (0700) if needed and returns its path.
    pub fn ensure_dir(&self) -> Result<&Path, StateError> {
        create_private_dir(&self.dir)?;
        Ok(&self.dir)
    }

    /// A path for a new private file inside the state directory (sub-folders created 0700).
    pub fn file(&self, relative: impl AsRef<Path>) -> Result<PathBuf, StateError> {
        let path = self.dir.join(relative);
        if let Some(parent) = path.parent() {
            create_private_dir(parent)?;
        }
        Ok(path)
    }

    fn connection(&self) -> Result<Arc<Mutex<Connection>>, StateError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn.clone());
        }
        self.ensure_dir()?;
        let path = self.db_path();
        create_private_file(&path).map_err(|cause| StateError::Dir {
            path: path.clone(),
            cause,
        })?;
        let db_err = |cause| StateError::Db {
            path: path.clone(),
            cause,
        };
        // Creating the database and switching it to WAL is done by one process at a time: two processes
        // racing on a fresh file would otherwise see "database is locked".
        let _setup = self.lock()?;
        let conn = Connection::open(&path).map_err(db_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_err)?;
        conn.execute(CREATE_VERSIONS, []).map_err(db_err)?;
        let conn = Arc::new(Mutex::new(conn));
        Ok(self.conn.get_or_init(|| conn).clone())
    }

    /// Runs `f` with the connection on the current thread. Keep it short: it blocks.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StateError> {
        let conn = self.connection()?;
        let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&mut guard)?)
    }

    /// Runs `f` with the connection on a blocking thread, so a lock held by another process never stalls the
    /// async runtime.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.connection()?;
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StateError::Join(e.to_string()))?
        .map_err(StateError::Sql)
    }

    /// A write transaction, run on this thread when it can start at once, else on a blocking thread. `f`
    /// must begin with `BEGIN IMMEDIATE` (`transaction_with_behavior(Immediate)`), so a database locked by
    /// another process fails there, before anything changed: here that failure is immediate (busy timeout 0)
    /// and `f` runs again on a blocking thread, which waits for the lock as [`State::call`] does. The hop to a
    /// blocking thread costs more than a small transaction, and every LLM call makes two of them.
    pub async fn write<T, F>(&self, mut f: F) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: FnMut(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.connection()?;
        if let Ok(mut guard) = conn.try_lock() {
            guard.busy_timeout(Duration::ZERO)?;
            let first = f(&mut guard);
            guard.busy_timeout(BUSY_TIMEOUT)?;
            match first {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if matches!(
                        e.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) => {}
                other => return other.map_err(StateError::Sql),
            }
        }
        self.call(f).await
    }

    /// Applies `steps[version..]` for `component`, each in its own transaction, recording the new version.
    /// Safe to call on every use and from several processes at once.
    pub fn migrate(&self, component: &str, steps: &[&str]) -> Result<(), StateError> {
        let conn = self.connection()?;
        let _one = self.lock()?;
        let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(migrate(&mut guard, component, steps)?)
    }

    /// An exclusive lock on `baton.db.lock` (held until dropped), taken around creation and migrations so
    /// that concurrent first use by several processes never fails.
    fn lock(&self) -> Result<std::fs::File, StateError> {
        let path = self.dir.join("baton.db.lock");
        let err = |cause| StateError::Dir {
            path: path.clone(),
            cause,
        };
        create_private_file(&path).map_err(err)?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(err)?;
        file.lock().map_err(err)?;
        Ok(file)
    }
}

fn migrate(conn: &mut Connection, component: &str, steps: &[&str]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: i64 = tx
        .query_row(
            "SELECT version FROM schema_versions WHERE component = ?1",
            [component],
            |r| r.get(0),
        )
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(0),
            e => Err(e),
        })?;
    for (i, sql) in steps.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_versions(component, version) VALUES (?1, ?2)
             ON CONFLICT(component) DO UPDATE SET version = excluded.version",
            rusqlite::params![component, (i + 1) as i64],
        )?;
    }
    tx.commit()
}

fn create_private_dir(path: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|cause| StateError::Dir {
            path: path.to_path_buf(),
            cause,
        })
}

/// Creates `path` with mode 0600 if it does not exist yet.
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            crate::core::test_tmp().join(format!("baton-state-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn creates_private_wal_database() {
        let dir = temp_dir("wal");
        let state = State::new(&dir);
        let mode: String = state
            .with(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(mode, "wal");
        let perms = std::fs::metadata(state.db_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(perms, 0o600);
        let perms = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(perms, 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Five handles on a fresh directory, each on its own thread (as five processes would be), create and
    /// migrate the database at once: none fails. (Across real processes: tests/it/llm/budget.rs.)
    #[test]
    fn concurrent_first_use_never_fails() {
        let dir = temp_dir("race");
        let threads: Vec<_> = (0..5)
            .map(|_| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let state = State::new(&dir);
                    state.migrate("race", &["CREATE TABLE r (a INTEGER)"])?;
                    state.with(|c| c.execute("INSERT INTO r(a) VALUES (1)", []))
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let n: i64 = State::new(&dir)
            .with(|c| c.query_row("SELECT count(*) FROM r", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(n, 5);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn migrations_apply_once_and_in_order() {
        let dir = temp_dir("migrate");
        let state = State::new(&dir);
        let v1 = ["CREATE TABLE t (a INTEGER)"];
        state.migrate("demo", &v1).unwrap();
        state.migrate("demo", &v1).unwrap(); // idempotent
        let v2 = [
            "CREATE TABLE t (a INTEGER)",
            "ALTER TABLE t ADD COLUMN b TEXT",
        ];
        state.migrate("demo", &v2).unwrap();
        let version: i64 = state
            .with(|c| {
                c.query_row(
                    "SELECT version FROM schema_versions WHERE component='demo'",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap();
        assert_eq!(version, 2);
        state
            .with(|c| c.execute("INSERT INTO t(a, b) VALUES (1, 'x')", []))
            .unwrap();
        // A second process (here: a second handle) sees the same schema.
        let other = State::new(&dir);
        other.migrate("demo", &v2).unwrap();
        let n: i64 = other
            .with(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(n, 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `write` runs at once when the database is free, and waits on a blocking thread when another process
    /// holds the write lock: the transaction runs once, after the lock is released.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn write_waits_for_another_process_lock_and_runs_once() {
        let dir = temp_dir("write");
        let state = State::new(&dir);
        state
            .with(|c| c.execute("CREATE TABLE t (a INTEGER)", []))
            .unwrap();
        let add = |a: i64| {
            move |c: &mut Connection| {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                tx.execute("INSERT INTO t(a) VALUES (?1)", [a])?;
                tx.commit()
            }
        };
        state.write(add(1)).await.unwrap();
        // Another process: a second connection holding the write lock for a moment.
        let mut other = Connection::open(state.db_path()).unwrap();
        let (held, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let holder = std::thread::spawn(move || {
            let tx = other
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .unwrap();
            tx.execute("INSERT INTO t(a) VALUES (2)", []).unwrap();
            held.0.send(()).unwrap();
            release.1.recv().unwrap();
            tx.commit().unwrap();
        });
        held.1.recv().unwrap();
        let writing = tokio::spawn({
            let state = state.clone();
            async move { state.write(add(3)).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!writing.is_finished(), "the write must wait for the lock");
        release.0.send(()).unwrap();
        writing.await.unwrap().unwrap();
        holder.join().unwrap();
        let rows: Vec<i64> = state
            .with(|c| {
                c.prepare("SELECT a FROM t ORDER BY rowid")?
                    .query_map([], |r| r.get(0))?
                    .collect()
            })
            .unwrap();
        assert_eq!(rows, [1, 2, 3]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
