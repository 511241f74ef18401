//! Online backup, verification and restore of a [`SqliteStore`] file,
//! and of a [`PostgresStore`] through the store's own export into a file
//! of the same kind ([`backup_postgres()`], [`restore_postgres()`]).
//!
//! [`SqliteStore`]: crate::SqliteStore

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::checksum::{digest, digest_tables, Digest};
use crate::error::{io, sql, StoreError};
use crate::export::{self, Imported};
use crate::schema::{self, Identity};
use crate::sqlite::{check_directory, from_sql, to_sql};
use crate::{PostgresStore, SCHEMA_VERSION};

/// Pages copied per backup step (4 MiB with SQLite's default page size).
const PAGES_PER_STEP: i32 = 1024;
/// How long a copy waits out `SQLITE_BUSY`/`SQLITE_LOCKED` in all.
const COPY_PATIENCE: Duration = Duration::from_secs(10);
/// Problems from `PRAGMA integrity_check` reported at most.
const INTEGRITY_LINES: u32 = 20;

/// What [`backup()`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupReport {
    /// The backup file.
    pub path: PathBuf,
    /// Rows per data table, in the order of the schema.
    pub rows: Vec<(String, u64)>,
    /// FNV-1a over all rows of the data tables in primary-key order.
    pub checksum: u64,
    /// The backup's size in bytes.
    pub bytes: u64,
    /// When the snapshot was taken, in nanoseconds since the UNIX epoch.
    pub created_at_ns: u64,
}

/// What [`verify()`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// The backup file.
    pub path: PathBuf,
    /// The schema version in the backup's header, if it could be read.
    pub schema_version: Option<u32>,
    /// When the backup was taken, from its manifest.
    pub created_at_ns: Option<u64>,
    /// Rows per data table, recounted in the scratch copy.
    pub rows: Vec<(String, u64)>,
    /// The checksum recomputed in the scratch copy.
    pub checksum: Option<u64>,
    /// Everything that is wrong, one sentence each; empty if the backup is
    /// sound.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether the backup is sound: no problems.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What [`restore()`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreReport {
    /// The verification that came first.
    pub verify: VerifyReport,
    /// The restored database file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Whether a database was there before and has been replaced.
    pub replaced: bool,
}

/// What [`restore_postgres()`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresRestoreReport {
    /// The verification that came first.
    pub verify: VerifyReport,
    /// The database, as [`PostgresStore::location`] names it (no password).
    pub location: PathBuf,
    /// Rows per data table now in the database, as a backup of it would
    /// count them (a backup of an older schema version, migrated first,
    /// differs from the backup's own counts in `meta`).
    pub rows: Vec<(String, u64)>,
    /// The checksum of the rows now in the database, as a backup of it
    /// would compute it.
    pub checksum: u64,
    /// Whether the database held any rows before and they have been
    /// replaced.
    pub replaced: bool,
}

/// Copies the Levee store at `db` to `dest` while other connections (a
/// running gateway) keep writing.
///
/// The copy holds one read transaction on `db` for its whole duration, so
/// it is one consistent snapshot; in WAL mode that never blocks the writer,
/// and the backup API steps through the pages without restarting (the WAL
/// file grows meanwhile, as checkpoints cannot pass the snapshot). The
/// snapshot's row counts and checksum are computed in the same transaction
/// and written into the copy's `backup_manifest` table (`item`, `value`:
/// `rows:<table>`, `checksum`, `schema_version`, `created_at_ns`), so
/// [`verify()`] can later prove the copy holds exactly what `db` held.
///
/// The copy is built in `dest.tmp` (created exclusively: a leftover one is
/// an error), switched to a rollback journal so it is one self-contained
/// file, synced, and renamed to `dest`. An existing `dest` is never
/// overwritten, and a missing directory is not created.
pub fn backup(db: &Path, dest: &Path) -> Result<BackupReport, StoreError> {
    fs::metadata(db).map_err(io(db, "read the database"))?;
    check_directory(dest)?;
    refuse_existing(dest)?;
    let tmp = TempFile::claim(with_suffix(dest, ".tmp"))?;

    let src = open_existing(db, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    src.busy_timeout(Duration::from_secs(5))
        .map_err(sql(db, "setting busy_timeout"))?;
    // The read transaction that fixes the snapshot: the backup steps and
    // the digest below all see it.
    src.execute_batch("BEGIN DEFERRED")
        .map_err(sql(db, "starting a read transaction"))?;
    let id = Identity::read(&src).map_err(sql(db, "reading the header"))?;
    if let Some(reason) = id.problem() {
        return Err(StoreError::NotAStore {
            path: db.to_path_buf(),
            reason,
        });
    }
    let Digest { rows, checksum } = digest(&src).map_err(sql(db, "counting rows"))?;
    let created_at_ns = now_ns();

    let mut dst = open_existing(&tmp.path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    copy(&src, &mut dst).map_err(sql(db, "copying"))?;
    src.execute_batch("COMMIT")
        .map_err(sql(db, "ending the read transaction"))?;
    drop(src);

    finish(
        dst,
        tmp,
        dest,
        rows,
        checksum,
        id.user_version,
        created_at_ns,
    )
}

/// Backs up a [`PostgresStore`] into `dest`, a file of the same kind as
/// [`backup()`] writes: a SQLite database at this build's
/// [`SCHEMA_VERSION`] with the same tables, manifest and checksum, so
/// [`verify()`] checks it and [`restore()`] or [`restore_postgres()`]
/// puts it back into either backend.
///
/// Every data table is read in one `REPEATABLE READ`, read-only
/// transaction (one consistent snapshot; gateways keep writing, unblocked)
/// through the store's own export, whose statements may take up to ten
/// minutes each. The rows are written into `dest.tmp` (created
/// exclusively), the file's checksum is compared with the snapshot's, and
/// the file is synced and renamed to `dest`, which is never overwritten.
/// Of `levee_meta`, only `max_incident_id` is kept: the file's `meta` says
/// the SQLite schema version, as a SQLite store's does.
pub fn backup_postgres(store: &mut PostgresStore, dest: &Path) -> Result<BackupReport, StoreError> {
    check_directory(dest)?;
    refuse_existing(dest)?;
    let tmp = TempFile::claim(with_suffix(dest, ".tmp"))?;
    let mut dst = open_existing(&tmp.path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    schema::prepare(&mut dst, &tmp.path)?;
    let layout = export::layout(&dst).map_err(sql(&tmp.path, "reading the schema"))?;

    let created_at_ns = now_ns();
    let tables = store.export(&layout)?;
    let Digest { rows, checksum } = digest_tables(&tables);
    export::write_sqlite(&mut dst, &tables).map_err(sql(&tmp.path, "writing the rows"))?;
    drop(tables);
    let written = digest(&dst).map_err(sql(&tmp.path, "counting rows"))?;
    if written.checksum != checksum {
        return Err(StoreError::VerifyFailed {
            path: tmp.path.clone(),
            problems: vec![format!(
                "the file's checksum is {:#018x}, the snapshot's {checksum:#018x}",
                written.checksum
            )],
        });
    }
    finish(
        dst,
        tmp,
        dest,
        rows,
        checksum,
        i64::from(SCHEMA_VERSION),
        created_at_ns,
    )
}

/// Writes the manifest into the copy `dst` (at `tmp`), makes it durable
/// and moves it to `dest`, which must not exist.
fn finish(
    mut dst: Connection,
    tmp: TempFile,
    dest: &Path,
    rows: Vec<(String, u64)>,
    checksum: u64,
    user_version: i64,
    created_at_ns: u64,
) -> Result<BackupReport, StoreError> {
    write_manifest(&mut dst, &rows, checksum, user_version, created_at_ns)
        .map_err(sql(&tmp.path, "writing the manifest"))?;
    dst.close()
        .map_err(|(_, e)| StoreError::sqlite(&tmp.path, "closing", e))?;
    let bytes = sync_file(&tmp.path)?;

    refuse_existing(dest)?;
    tmp.persist(dest)?;
    Ok(BackupReport {
        path: dest.to_path_buf(),
        rows,
        checksum,
        bytes,
        created_at_ns,
    })
}

/// Replaces the contents of a [`PostgresStore`] with a backup (of either
/// backend), after [`verify()`] passes.
///
/// The backup is copied into a scratch database, its checksum compared
/// with the verified one, and migrated there if it is of an older schema
/// version (one newer than this build's fails verification). Then, in one
/// transaction under the advisory lock the migrations take (a gateway
/// starting meanwhile waits; two restores never interleave), every data
/// table is emptied and filled with the backup's rows,
/// `levee_meta.max_incident_id` is set to the backup's, everything is read
/// back and its checksum compared before committing. Any failure rolls
/// back and leaves the database as it was.
///
/// "In use" is decided by PostgreSQL's list of sessions: the store names
/// its sessions `application_name=levee` (unless the URL names another),
/// and while any other session so named is connected to the same
/// database (a gateway, a backup) the restore fails with
/// [`StoreError::InUse`] and changes nothing. It waits up to three seconds
/// for such sessions to end first, as a gateway just stopped leaves its
/// server process behind for a moment. A gateway whose URL sets another
/// `application_name` is not seen: stop every gateway first.
pub fn restore_postgres(
    backup: &Path,
    store: &mut PostgresStore,
) -> Result<PostgresRestoreReport, StoreError> {
    let verified = verify(backup)?;
    if !verified.is_ok() {
        return Err(StoreError::VerifyFailed {
            path: backup.to_path_buf(),
            problems: verified.problems,
        });
    }
    let scratch = TempFile::scratch()?;
    let tables = {
        let src = open_existing(backup, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let mut dst = open_existing(&scratch.path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        copy(&src, &mut dst).map_err(sql(backup, "copying"))?;
        drop(src);
        dst.execute_batch("DROP TABLE IF EXISTS backup_manifest")
            .map_err(sql(&scratch.path, "dropping the manifest"))?;
        let copied = digest(&dst).map_err(sql(&scratch.path, "counting rows"))?;
        if Some(copied.checksum) != verified.checksum {
            return Err(copy_differs(&scratch.path, copied.checksum, &verified));
        }
        schema::prepare(&mut dst, &scratch.path)?;
        export::read_sqlite(&dst).map_err(sql(&scratch.path, "reading the rows"))?
    };
    drop(scratch);
    let Digest { rows, checksum } = digest_tables(&tables);
    let location = store.location().to_path_buf();
    match store.import(&tables)? {
        Imported::Done { replaced } => Ok(PostgresRestoreReport {
            verify: verified,
            location,
            rows,
            checksum,
            replaced,
        }),
        Imported::InUse { sessions } => Err(StoreError::InUse {
            path: location,
            by: format!(
                "{sessions} other Levee session{} (application_name {})",
                if sessions == 1 { "" } else { "s" },
                crate::postgres::APPLICATION_NAME
            ),
        }),
        Imported::Refused(reason) => Err(StoreError::Malformed {
            path: backup.to_path_buf(),
            reason: format!("cannot restore into PostgreSQL, nothing changed: {reason}"),
        }),
        Imported::Differs { checksum: back } => Err(StoreError::VerifyFailed {
            path: location,
            problems: vec![format!(
                "the rows read back hash to {back:#018x}, the backup's to {checksum:#018x}; \
                 rolled back, nothing changed"
            )],
        }),
    }
}

fn copy_differs(path: &Path, copied: u64, verified: &VerifyReport) -> StoreError {
    StoreError::VerifyFailed {
        path: path.to_path_buf(),
        problems: vec![format!(
            "the restored copy's checksum is {copied:#018x}, the verified backup's {}",
            verified
                .checksum
                .map_or_else(|| "(none)".to_owned(), |c| format!("{c:#018x}"))
        )],
    }
}

/// Checks a backup without changing it: copies it into a scratch database
/// in the system's temporary directory (with the backup API), runs
/// `PRAGMA integrity_check` and `foreign_key_check` there, checks the
/// schema version, and recounts and rehashes every data table to compare
/// with the manifest. The scratch file is deleted afterwards.
///
/// Anything wrong with the backup's content, including a file that is not
/// a database, is a problem in the report; an error means the check could
/// not be made (the backup is missing, the scratch file cannot be created).
pub fn verify(backup: &Path) -> Result<VerifyReport, StoreError> {
    fs::metadata(backup).map_err(io(backup, "read the backup"))?;
    let scratch = TempFile::scratch()?;
    let mut report = VerifyReport {
        path: backup.to_path_buf(),
        ..VerifyReport::default()
    };
    if let Err(problem) = check_backup(backup, &scratch.path, &mut report) {
        report.problems.push(problem);
    }
    drop(scratch);
    Ok(report)
}

/// Replaces the database at `db` with the backup, after [`verify()`]
/// passes.
///
/// "In use" is decided by SQLite's own file locks: `db` is opened with
/// `locking_mode=EXCLUSIVE` and a zero busy timeout and must yield an
/// exclusive lock (`BEGIN EXCLUSIVE`). Every open connection holds a shared
/// lock (in WAL mode for as long as it is open), so this fails, with
/// [`StoreError::InUse`], while a gateway or a `sqlite3` shell has the file
/// open. The check runs before the copy and again just before the swap;
/// restore is an offline operation, and a process that opens `db` between
/// the check and the rename is not detected.
///
/// The backup is copied into `db.tmp` (created exclusively), its manifest
/// is dropped and the copy's checksum compared with the verified one; the
/// file is synced, the old database's `-wal`, `-shm` and `-journal` files
/// are removed (so SQLite never replays them into the restored file), and
/// `db.tmp` is renamed over `db`.
pub fn restore(backup: &Path, db: &Path) -> Result<RestoreReport, StoreError> {
    check_directory(db)?;
    let verified = verify(backup)?;
    if !verified.is_ok() {
        return Err(StoreError::VerifyFailed {
            path: backup.to_path_buf(),
            problems: verified.problems,
        });
    }
    ensure_not_in_use(db)?;
    let tmp = TempFile::claim(with_suffix(db, ".tmp"))?;
    {
        let src = open_existing(backup, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let mut dst = open_existing(&tmp.path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        copy(&src, &mut dst).map_err(sql(backup, "copying"))?;
        drop(src);
        dst.execute_batch("DROP TABLE IF EXISTS backup_manifest")
            .map_err(sql(&tmp.path, "dropping the manifest"))?;
        let copied = digest(&dst).map_err(sql(&tmp.path, "counting rows"))?;
        if Some(copied.checksum) != verified.checksum {
            return Err(copy_differs(&tmp.path, copied.checksum, &verified));
        }
        dst.close()
            .map_err(|(_, e)| StoreError::sqlite(&tmp.path, "closing", e))?;
    }
    let bytes = sync_file(&tmp.path)?;

    ensure_not_in_use(db)?;
    let replaced = db.exists();
    for suffix in ["-wal", "-shm", "-journal"] {
        let stale = with_suffix(db, suffix);
        match fs::remove_file(&stale) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&stale, "remove", e)),
        }
    }
    tmp.persist(db)?;
    Ok(RestoreReport {
        verify: verified,
        path: db.to_path_buf(),
        bytes,
        replaced,
    })
}

/// The checks of [`verify()`]; `Err` is a problem that ends them early.
fn check_backup(backup: &Path, scratch: &Path, report: &mut VerifyReport) -> Result<(), String> {
    let src = Connection::open_with_flags(
        backup,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open the backup: {e}"))?;
    let mut dst = Connection::open_with_flags(
        scratch,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open the scratch copy {}: {e}", scratch.display()))?;
    copy(&src, &mut dst).map_err(|e| format!("cannot copy the backup: {e}"))?;
    drop(src);

    let integrity: Vec<String> = dst
        .prepare(&format!("PRAGMA integrity_check({INTEGRITY_LINES})"))
        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| format!("integrity_check could not finish: {e}"))?;
    if integrity != ["ok"] {
        report.problems.extend(
            integrity
                .into_iter()
                .map(|l| format!("integrity_check: {l}")),
        );
    }

    let id = Identity::read(&dst).map_err(|e| format!("cannot read the header: {e}"))?;
    report.schema_version = u32::try_from(id.user_version).ok();
    if id.application_id == crate::APPLICATION_ID && id.user_version > i64::from(SCHEMA_VERSION) {
        return Err(format!(
            "schema version {} is newer than this build's ({SCHEMA_VERSION}): \
             verify and restore it with the Levee that wrote it, or a newer one",
            id.user_version
        ));
    }
    if let Some(reason) = id.problem() {
        return Err(format!("not a Levee backup ({reason})"));
    }

    let dangling: i64 = dst
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .map_err(|e| format!("foreign_key_check failed: {e}"))?;
    if dangling > 0 {
        report.problems.push(format!(
            "foreign_key_check: {dangling} rows refer to missing rows"
        ));
    }

    let manifest = read_manifest(&dst).map_err(|e| format!("cannot read the manifest: {e}"))?;
    let actual = digest(&dst).map_err(|e| format!("cannot read the data: {e}"))?;
    report.rows.clone_from(&actual.rows);
    report.checksum = Some(actual.checksum);
    let Some(manifest) = manifest else {
        return Err(
            "no backup_manifest table: not made by `levee backup`, or its manifest was removed"
                .to_owned(),
        );
    };
    report.created_at_ns = manifest.get("created_at_ns").map(from_sql);
    if let Some(v) = manifest.get("schema_version") {
        if v != id.user_version {
            report.problems.push(format!(
                "the manifest says schema version {v}, the header {}",
                id.user_version
            ));
        }
    }
    for (table, count) in &actual.rows {
        match manifest.get(&format!("rows:{table}")) {
            Some(expected) if from_sql(expected) == *count => {}
            Some(expected) => report.problems.push(format!(
                "{table}: {count} rows, the manifest says {}",
                from_sql(expected)
            )),
            None => report
                .problems
                .push(format!("{table}: {count} rows, missing from the manifest")),
        }
    }
    match manifest.get("checksum").map(from_sql) {
        Some(expected) if expected == actual.checksum => {}
        Some(expected) => report.problems.push(format!(
            "checksum {:#018x}, the manifest says {expected:#018x}",
            actual.checksum
        )),
        None => report
            .problems
            .push("the manifest has no checksum".to_owned()),
    }
    Ok(())
}

/// The manifest's items, or `None` if the table is missing.
struct Manifest(Vec<(String, i64)>);

impl Manifest {
    fn get(&self, item: &str) -> Option<i64> {
        self.0.iter().find(|(k, _)| k == item).map(|(_, v)| *v)
    }
}

fn read_manifest(conn: &Connection) -> rusqlite::Result<Option<Manifest>> {
    let exists = conn
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'backup_manifest'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !exists {
        return Ok(None);
    }
    let mut st = conn.prepare("SELECT item, value FROM backup_manifest")?;
    let items = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(Manifest(items)))
}

fn write_manifest(
    conn: &mut Connection,
    rows: &[(String, u64)],
    checksum: u64,
    schema_version: i64,
    created_at_ns: u64,
) -> rusqlite::Result<()> {
    // A self-contained file: the copied header says WAL, as the source.
    conn.pragma_update_and_check(None, "journal_mode", "DELETE", |_| Ok(()))?;
    let tx = conn.transaction()?;
    tx.execute_batch(
        "DROP TABLE IF EXISTS backup_manifest;
         CREATE TABLE backup_manifest (
             item TEXT NOT NULL PRIMARY KEY,
             value INTEGER NOT NULL
         ) STRICT, WITHOUT ROWID;",
    )?;
    {
        let mut st = tx.prepare("INSERT INTO backup_manifest (item, value) VALUES (?1, ?2)")?;
        for (table, count) in rows {
            st.execute((format!("rows:{table}"), to_sql(*count)))?;
        }
        st.execute(("checksum", to_sql(checksum)))?;
        st.execute(("schema_version", schema_version))?;
        st.execute(("created_at_ns", to_sql(created_at_ns)))?;
    }
    tx.commit()
}

/// Copies all of `src` into `dst` with SQLite's backup API, a step of
/// pages at a time, waiting out transient locks for [`COPY_PATIENCE`].
fn copy(src: &Connection, dst: &mut Connection) -> rusqlite::Result<()> {
    let backup = Backup::new(src, dst)?;
    let mut waited = Duration::ZERO;
    loop {
        match backup.step(PAGES_PER_STEP)? {
            StepResult::Done => return Ok(()),
            StepResult::More => {}
            StepResult::Busy | StepResult::Locked if waited < COPY_PATIENCE => {
                let pause = Duration::from_millis(10);
                thread::sleep(pause);
                waited += pause;
            }
            _ => {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some("the database stayed locked during the copy".to_owned()),
                ))
            }
        }
    }
}

/// Fails with [`StoreError::InUse`] if any other connection has `db` open.
fn ensure_not_in_use(db: &Path) -> Result<(), StoreError> {
    if !db.exists() {
        return Ok(());
    }
    let conn = open_existing(db, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.busy_timeout(Duration::ZERO)
        .map_err(sql(db, "setting busy_timeout"))?;
    conn.pragma_update_and_check(None, "locking_mode", "EXCLUSIVE", |_| Ok(()))
        .map_err(sql(db, "setting locking_mode"))?;
    match conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;") {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ) =>
        {
            return Err(StoreError::InUse {
                path: db.to_path_buf(),
                by: "another process".to_owned(),
            })
        }
        // A damaged or foreign file is what a restore may replace; nobody
        // is using it as a Levee store.
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
            ) => {}
        Err(e) => return Err(StoreError::sqlite(db, "locking", e)),
    }
    conn.close()
        .map_err(|(_, e)| StoreError::sqlite(db, "closing", e))
}

fn open_existing(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(sql(path, "opening"))
}

fn refuse_existing(path: &Path) -> Result<(), StoreError> {
    if path.exists() {
        return Err(StoreError::Exists {
            path: path.to_path_buf(),
            hint: "refusing to overwrite it",
        });
    }
    Ok(())
}

/// Syncs a file's contents to disk and returns its size.
fn sync_file(path: &Path) -> Result<u64, StoreError> {
    let file = File::open(path).map_err(io(path, "open"))?;
    file.sync_all().map_err(io(path, "sync"))?;
    Ok(file.metadata().map_err(io(path, "read"))?.len())
}

/// `levee.db` + `.tmp` = `levee.db.tmp`.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn now_ns() -> u64 {
    levee_core::time::unix_nanos()
}

/// A file this module created, removed (with SQLite's side files) when
/// dropped unless [`TempFile::persist`] renamed it into place.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl TempFile {
    /// Creates `path`, which must not exist.
    fn claim(path: PathBuf) -> Result<Self, StoreError> {
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(_) => Ok(Self { path, keep: false }),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(StoreError::Exists {
                path,
                hint: "left by an interrupted run or one still going; remove it if none is",
            }),
            Err(e) => Err(StoreError::io(&path, "create", e)),
        }
    }

    /// A new file in the system's temporary directory.
    fn scratch() -> Result<Self, StoreError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "levee-verify-{}-{}-{}.db",
            std::process::id(),
            now_ns(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Self::claim(std::env::temp_dir().join(name))
    }

    /// Renames the file to `dest` and syncs the directory.
    fn persist(mut self, dest: &Path) -> Result<(), StoreError> {
        fs::rename(&self.path, dest).map_err(io(dest, "rename the new file into place"))?;
        self.keep = true;
        if let Some(dir) = dest.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            // Makes the rename durable; some file systems refuse, harmlessly.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let _ = fs::remove_file(with_suffix(&self.path, suffix));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_append_to_the_file_name() {
        assert_eq!(
            with_suffix(Path::new("/var/lib/levee/levee.db"), "-wal"),
            PathBuf::from("/var/lib/levee/levee.db-wal")
        );
    }

    /// Backups count and checksum `DATA_TABLES`: a migration that adds a
    /// table must list it there too, or its rows go unverified.
    #[test]
    fn data_tables_are_every_table_of_the_current_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::schema::prepare(&mut conn, Path::new(":memory:")).unwrap();
        let id = Identity::read(&conn).unwrap();
        assert_eq!(id.user_version, i64::from(crate::SCHEMA_VERSION));
        let mut tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let mut listed: Vec<String> = crate::schema::DATA_TABLES
            .iter()
            .map(|(t, _)| (*t).to_owned())
            .collect();
        listed.sort_unstable();
        tables.sort_unstable();
        assert_eq!(tables, listed);
        assert_eq!(digest(&conn).unwrap().rows.len(), listed.len());
    }
}
