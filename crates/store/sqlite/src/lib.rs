//! paddock-store-sqlite: the embedded default [`Store`](paddock_core::store::Store).
//!
//! Every record lives in one SQLite file, opened in WAL mode with a small
//! connection pool; the schema is created and upgraded by the migrations
//! under `migrations/`, which run at every [`SqliteStore::open`]. The file
//! holds password and token hashes, so it is created with mode 0600.
//!
//! This crate owns the schema, the column encodings (`codec`) and the
//! queries (`store`). It does not own the records' meaning or validation;
//! `paddock-core` does, and its conformance suite is the contract.

mod codec;
mod store;

use paddock_core::store::{StoreError, StoreResult};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The schema, embedded at compile time.
static MIGRATOR: Migrator = sqlx::migrate!();

/// Connections in the pool. SQLite has one writer at a time; a few readers
/// beside it are all that WAL mode can use.
const MAX_CONNECTIONS: u32 = 4;

/// How long a statement waits for another connection's write lock before
/// failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Store`](paddock_core::store::Store) backed by one SQLite file.
///
/// Cheap to clone: clones share the connection pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and brings its
    /// schema up to date.
    ///
    /// Missing parent directories are created (mode 0700 on Unix), the file
    /// is created with mode 0600 (and an existing file is tightened to 0600),
    /// and every connection uses WAL journaling, `synchronous=NORMAL`,
    /// foreign keys and a 5 s busy timeout.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        prepare_file(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // Pages are read from a memory map rather than with a read
            // call each (a pooled connection re-reads the pages another
            // one changed, such as the usage tables' last pages).
            .pragma("mmap_size", "268435456")
            .pragma("wal_autocheckpoint", "10000");
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|e| {
                StoreError::Backend(format!("opening database {}: {e}", path.display()))
            })?;
        MIGRATOR.run(&pool).await.map_err(|e| {
            StoreError::Backend(format!("migrating database {}: {e}", path.display()))
        })?;
        Ok(SqliteStore {
            pool,
            path: path.to_owned(),
        })
    }

    /// The database file this store was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection, waiting for queries in flight; for a clean
    /// shutdown (the WAL is checkpointed when the last connection closes).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates the parent directory and an empty database file with private
/// permissions, before SQLite opens it with the process umask.
fn prepare_file(path: &Path) -> StoreResult<()> {
    let io_err = |what: &str, e: std::io::Error| {
        StoreError::Backend(format!("{what} {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|e| io_err("creating the directory of", e))?;
    }
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    file.open(path).map_err(|e| io_err("creating", e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io_err("restricting permissions of", e))?;
        // SQLite gives the WAL and shared-memory files the database file's
        // mode when it creates them; ones left by an earlier, looser run are
        // tightened here.
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            let side = PathBuf::from(side);
            if side.exists() {
                std::fs::set_permissions(&side, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| io_err("restricting permissions of the WAL files of", e))?;
            }
        }
    }
    Ok(())
}
