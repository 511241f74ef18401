//! Errors: each names the file (or, for PostgreSQL, the database's
//! location without its password) and what failed.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A failure of the store, naming the file it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed while doing `action`, e.g.
    /// `levee.db: writing a batch: database is locked`.
    #[error("{}: {action}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: SqliteError,
    },
    /// PostgreSQL failed, or did not answer in time, while doing `action`,
    /// e.g. `postgres://levee@db:5432/levee: writing a batch: timed out
    /// after 6s`. `path` is the database's location, never its password.
    #[error("{}: {action}: {source}", path.display())]
    Postgres {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: PostgresError,
    },
    /// A file-system operation failed.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// The directory that should hold the file does not exist (the store
    /// does not create it).
    #[error("{}: directory {} does not exist", path.display(), dir.display())]
    MissingDirectory { path: PathBuf, dir: PathBuf },
    /// The file is not a database this version of Levee can use, e.g.
    /// `levee.db: not a Levee store (schema version 7, expected 1)`.
    #[error("{}: not a Levee store ({reason})", path.display())]
    NotAStore { path: PathBuf, reason: String },
    /// The database cannot be used as Levee needs, e.g. without WAL.
    #[error("{}: {reason}", path.display())]
    Unsupported { path: PathBuf, reason: String },
    /// A file that would be overwritten already exists.
    #[error("{}: already exists; {hint}", path.display())]
    Exists { path: PathBuf, hint: &'static str },
    /// Another connection (another process, e.g. a running gateway) has the
    /// database open; `by` says who, e.g. `another process` or `2 other
    /// Levee sessions (application_name levee)`.
    #[error("{}: in use by {by}; stop Levee before restoring", path.display())]
    InUse { path: PathBuf, by: String },
    /// A stored value cannot be read back, e.g. a history point's latency
    /// buckets that are not `index:count` pairs.
    #[error("{}: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    /// A backup failed verification; `problems` says what differs.
    #[error("{}: backup failed verification: {}", path.display(), problems.join("; "))]
    VerifyFailed {
        path: PathBuf,
        problems: Vec<String>,
    },
    /// The job log's writer thread has stopped (it panicked), so nothing
    /// more is stored.
    #[error("{}: the job log's writer thread has stopped; nothing more is stored", path.display())]
    WriterStopped { path: PathBuf },
}

impl StoreError {
    /// The file the error concerns.
    pub fn path(&self) -> &Path {
        match self {
            Self::Sqlite { path, .. }
            | Self::Postgres { path, .. }
            | Self::Io { path, .. }
            | Self::MissingDirectory { path, .. }
            | Self::NotAStore { path, .. }
            | Self::Unsupported { path, .. }
            | Self::Exists { path, .. }
            | Self::InUse { path, .. }
            | Self::Malformed { path, .. }
            | Self::VerifyFailed { path, .. }
            | Self::WriterStopped { path } => path,
        }
    }

    /// Whether the database was locked by another connection, or (for
    /// PostgreSQL) unreachable, too slow or in conflict with another
    /// writer: the same call may succeed later.
    pub fn is_busy(&self) -> bool {
        match self {
            Self::Sqlite { source, .. } => source.is_busy(),
            Self::Postgres { source, .. } => source.is_transient(),
            Self::InUse { .. } => true,
            _ => false,
        }
    }

    /// Maps a SQLite error, turning "file is not a database" into
    /// [`StoreError::NotAStore`].
    pub(crate) fn sqlite(path: &Path, action: &'static str, e: rusqlite::Error) -> Self {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) {
            return Self::NotAStore {
                path: path.to_path_buf(),
                reason: "not an SQLite database".to_owned(),
            };
        }
        Self::Sqlite {
            path: path.to_path_buf(),
            action,
            source: SqliteError(e),
        }
    }

    pub(crate) fn io(path: &Path, action: &'static str, e: io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            action,
            source: e,
        }
    }
}

/// An error from SQLite, kept opaque so that the public API does not
/// depend on the SQLite binding.
#[derive(Debug)]
pub struct SqliteError(pub(crate) rusqlite::Error);

impl SqliteError {
    /// Whether SQLite reported `SQLITE_BUSY` or `SQLITE_LOCKED`.
    pub fn is_busy(&self) -> bool {
        matches!(
            self.0.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}

impl fmt::Display for SqliteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for SqliteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// An error from PostgreSQL or from reaching it, kept opaque so that the
/// public API does not depend on the PostgreSQL client.
#[derive(Debug)]
pub struct PostgresError(pub(crate) PostgresFailure);

#[derive(Debug)]
pub(crate) enum PostgresFailure {
    /// The client or the server reported an error.
    Client(tokio_postgres::Error),
    /// No answer within the store's deadline; the connection is dropped.
    TimedOut(std::time::Duration),
}

impl PostgresError {
    /// Whether the same call may succeed later: the connection failed or
    /// timed out, the server was shutting down or cancelled the statement
    /// (`statement_timeout`), or a concurrent writer conflicted.
    pub fn is_transient(&self) -> bool {
        use tokio_postgres::error::SqlState;
        match &self.0 {
            PostgresFailure::TimedOut(_) => true,
            PostgresFailure::Client(e) => match e.code() {
                None => true,
                Some(code) => {
                    code.code().starts_with("08")
                        || [
                            SqlState::T_R_SERIALIZATION_FAILURE,
                            SqlState::T_R_DEADLOCK_DETECTED,
                            SqlState::QUERY_CANCELED,
                            SqlState::ADMIN_SHUTDOWN,
                            SqlState::CANNOT_CONNECT_NOW,
                            SqlState::TOO_MANY_CONNECTIONS,
                            SqlState::LOCK_NOT_AVAILABLE,
                        ]
                        .contains(code)
                }
            },
        }
    }
}

impl fmt::Display for PostgresError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            // tokio-postgres' Display says only "db error"; the server's
            // message is what helps.
            PostgresFailure::Client(e) => match e.as_db_error() {
                Some(db) => write!(f, "{}: {}", db.severity(), db.message())?,
                None => fmt::Display::fmt(e, f)?,
            },
            PostgresFailure::TimedOut(after) => write!(f, "no answer after {after:?}")?,
        }
        Ok(())
    }
}

impl std::error::Error for PostgresError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            PostgresFailure::Client(e) => e.source(),
            PostgresFailure::TimedOut(_) => None,
        }
    }
}

/// `map_err` helper: `.map_err(sql(path, "writing a batch"))`.
pub(crate) fn sql<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl Fn(rusqlite::Error) -> StoreError + 'a {
    move |e| StoreError::sqlite(path, action, e)
}

/// `map_err` helper for file-system errors.
pub(crate) fn io<'a>(
    path: &'a Path,
    action: &'static str,
) -> impl Fn(io::Error) -> StoreError + 'a {
    move |e| StoreError::io(path, action, e)
}
