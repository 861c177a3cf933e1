//! The database layer: one diesel code base over SQLite (embedded, default) and PostgreSQL.
//!
//! [`DbConnection`] is a diesel `MultiConnection`; the engine is chosen at run time from the
//! configured URL. Connections come from an r2d2 pool whose manager opens the right engine
//! explicitly (diesel's own `establish` on a multi-connection would try engines in turn, and SQLite
//! accepts any string as a file name). Embedded migrations for both engines run at start.
//!
//! Queries are plain functions taking `&mut DbConnection`, next to their models. They block, so
//! async code reaches them through [`Database::run`], which moves the work to the blocking pool;
//! actors that write (the audit writer) run on a `SyncArbiter` thread of their own.

/// A multi-row INSERT on the engine at hand (diesel's multi-backend connection has no batch
/// insert of its own).
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr) => {
        match $conn {
            DbConnection::Sqlite(c) => diesel::insert_into($table).values($rows).execute(c)?,
            DbConnection::Postgres(c) => diesel::insert_into($table).values($rows).execute(c)?,
        }
    };
}

pub mod audit;
pub mod backup;
pub mod certificates;
pub mod challenges;
pub mod credentials;
pub mod crls;
pub mod discovery;
pub mod enrollment;
pub mod host_state;
pub mod hosts;
pub mod jobs;
pub mod schema;
pub mod scope;
pub mod sessions;
pub mod settings;
pub mod signing_keys;
pub mod stats;
pub mod transaction;

pub use transaction::transaction;
pub mod users;
pub mod windows;

use crate::config::DatabaseTarget;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::R2D2Connection;
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use shared::status::DatabaseBackend;
use std::time::Duration;

/// Migrations of the SQLite tree, compiled into the binary.
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
/// Migrations of the PostgreSQL tree, compiled into the binary.
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// A connection to whichever engine the configuration selected.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    /// Embedded SQLite.
    Sqlite(SqliteConnection),
    /// PostgreSQL server.
    Postgres(PgConnection),
}

impl DbConnection {
    /// Engine of this connection.
    pub fn backend(&self) -> DatabaseBackend {
        match self {
            Self::Sqlite(_) => DatabaseBackend::Sqlite,
            Self::Postgres(_) => DatabaseBackend::Postgres,
        }
    }

    /// Applies every pending migration of this engine's tree.
    pub fn run_pending_migrations(&mut self) -> Result<usize, DbError> {
        let applied = match self {
            Self::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
            Self::Postgres(c) => c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|v| v.len()),
        };
        applied.map_err(|e| DbError::Migration(e.to_string()))
    }

    /// Reverts every applied migration (used by tests and by operators downgrading).
    pub fn revert_all_migrations(&mut self) -> Result<usize, DbError> {
        let reverted = match self {
            Self::Sqlite(c) => c.revert_all_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
            Self::Postgres(c) => c
                .revert_all_migrations(POSTGRES_MIGRATIONS)
                .map(|v| v.len()),
        };
        reverted.map_err(|e| DbError::Migration(e.to_string()))
    }
}

/// A database failure. Its text is for logs; clients only ever see a generic message.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No pooled connection could be had (database down, pool exhausted past its timeout).
    #[error("database connection unavailable: {0}")]
    Pool(#[from] r2d2::Error),
    /// Opening a connection failed.
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// The data on disk breaks an invariant of the application.
    #[error("inconsistent data: {0}")]
    Inconsistent(String),
    /// A stored setting does not parse. It is reported, never replaced by a default: an
    /// unreadable allow-list keeps denying, unreadable sign-in settings stay off.
    #[error("stored setting {key} cannot be read: {reason}")]
    UnreadableSetting {
        /// Settings key.
        key: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The blocking task running the query was cancelled or panicked.
    #[error("database task failed: {0}")]
    Task(String),
}

/// Opens connections of the configured engine for r2d2 and prepares each SQLite connection.
#[derive(Debug, Clone)]
pub struct ConnectionManager {
    target: DatabaseTarget,
}

impl ConnectionManager {
    fn open(&self) -> Result<DbConnection, DbError> {
        match &self.target {
            DatabaseTarget::Sqlite(path) => {
                let path = path.to_str().ok_or_else(|| {
                    DbError::Inconsistent(format!("SQLite path {} is not UTF-8", path.display()))
                })?;
                let mut conn = SqliteConnection::establish(path)?;
                // Every connection: enforce foreign keys, wait on a busy writer instead of failing,
                // and use the WAL journal (persistent, but cheap to assert).
                conn.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )?;
                Ok(DbConnection::Sqlite(conn))
            }
            DatabaseTarget::Postgres(url) => {
                Ok(DbConnection::Postgres(PgConnection::establish(url)?))
            }
        }
    }
}

/// Error type r2d2 reports for our manager.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ManagerError(String);

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = ManagerError;

    fn connect(&self) -> Result<DbConnection, ManagerError> {
        self.open().map_err(|e| ManagerError(e.to_string()))
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), ManagerError> {
        conn.ping().map_err(|e| ManagerError(e.to_string()))
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        conn.is_broken()
    }
}

/// Pool of connections to the configured database.
pub type Pool = r2d2::Pool<ConnectionManager>;
/// A connection borrowed from the [`Pool`].
pub type PooledConn = r2d2::PooledConnection<ConnectionManager>;

/// Handle to the database: a connection pool and the engine it talks to. Cheap to clone.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    backend: DatabaseBackend,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Opens the pool and applies pending migrations. Blocking: call before the runtime serves.
    pub fn open(
        target: &DatabaseTarget,
        pool_size: u32,
        timeout: Duration,
    ) -> Result<Self, DbError> {
        let backend = match target {
            DatabaseTarget::Sqlite(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        DbError::Inconsistent(format!("cannot create {}: {e}", parent.display()))
                    })?;
                }
                DatabaseBackend::Sqlite
            }
            DatabaseTarget::Postgres(_) => DatabaseBackend::Postgres,
        };
        let manager = ConnectionManager {
            target: target.clone(),
        };
        // Fail fast with the real cause (r2d2 would only report a timeout).
        let mut first = manager.open()?;
        let applied = first.run_pending_migrations()?;
        drop(first);
        if applied > 0 {
            tracing::info!(applied, backend = ?backend, "database migrations applied");
        }
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(1))
            .connection_timeout(timeout)
            .build(manager)?;
        Ok(Self { pool, backend })
    }

    /// Engine in use.
    pub fn backend(&self) -> DatabaseBackend {
        self.backend
    }

    /// Borrows a connection, blocking up to the pool timeout. Only for blocking contexts.
    pub fn conn(&self) -> Result<PooledConn, DbError> {
        Ok(self.pool.get()?)
    }

    /// Runs blocking database work on the blocking thread pool and awaits its result.
    pub async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }

    /// `SELECT 1` round trip.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.run(|c| Ok(c.ping()?)).await
    }
}
