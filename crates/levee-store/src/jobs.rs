//! [`JobLog`]: the durable log of async routes' jobs (issue 16), in its own
//! SQLite file with group commit.
//!
//! An async route answers `202 Accepted` only once the job is stored, so
//! every acceptance waits for a write. One transaction per job would cap
//! the gateway at one fsync per job; instead one writer thread owns the
//! connection and commits whatever has queued up since its last commit in
//! one transaction. While a commit waits for the disk, the next batch
//! gathers: under load a commit carries many jobs, yet each write waits for
//! at most the commit in progress and its own.
//!
//! The rules (what is accepted, retried, forgotten) are levee-policy's
//! `jobs::Ledger`; this module stores what the ledger decided and gives it
//! all back on start. It does not know tokio: a write's completion is a
//! callback ([`WriteDone`]) run on the writer thread.
//!
//! The log has its own file, not the main store's, so that its commits
//! (frequent, and fsynced with [`JobDurability::Fsync`]) never hold the
//! write lock the SLO engine needs. The file is marked with its own
//! `application_id` and version: a Levee store or another program's
//! database is refused, not changed.
//!
//! # One write failing
//!
//! A batch mixes unrelated clients' jobs, so one bad write (a second insert
//! of the same `(route, seq)`) fails only itself: its `done` gets the
//! error and the rest of the batch commits. The writes of one
//! [`JobLog::write_all`] stand or fall together. When the transaction
//! itself fails (the disk is full, the commit's fsync fails), every write
//! in it fails with that error, and the thread goes on with the next
//! batch.

use rusqlite::{params, Connection, OpenFlags, Row, TransactionBehavior};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::error::{sql, StoreError};
use crate::schema::Identity;
use crate::sqlite::{check_directory, from_sql, to_sql};

/// SQLite's `application_id` of a job log: "LEVJ" in ASCII. Not the main
/// store's, so neither file can be opened as the other.
const JOB_LOG_APPLICATION_ID: i32 = 0x4C45_564A;

/// The job log's schema version, kept in `user_version`.
const JOB_LOG_VERSION: i64 = 1;

/// How long a statement waits for another connection's lock (a second
/// `JobLog` on the same file, or the `sqlite3` shell).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A batch stops gathering at this many writes, so that one transaction
/// (and the memory of its pending callbacks) stays bounded under a flood.
const MAX_BATCH_WRITES: usize = 8192;

/// Or at this many payload bytes (requests and results).
const MAX_BATCH_BYTES: usize = 16 << 20;

const CREATE_JOBS: &str = "
    CREATE TABLE jobs (
        route TEXT NOT NULL,
        seq INTEGER NOT NULL,
        token INTEGER NOT NULL,
        tenant TEXT NOT NULL,
        ordering_key TEXT,
        idempotency_key TEXT,
        callback TEXT,
        accepted_at_ms INTEGER NOT NULL,
        request BLOB NOT NULL,
        attempts INTEGER NOT NULL CHECK (attempts >= 0),
        state TEXT NOT NULL CHECK (state IN ('queued', 'done', 'dead')),
        ready_at_ms INTEGER,
        done_at_ms INTEGER,
        result BLOB,
        last_error TEXT,
        -- the columns its state uses, and no others
        CHECK (CASE state
            WHEN 'queued' THEN ready_at_ms IS NOT NULL AND done_at_ms IS NULL AND result IS NULL
            WHEN 'done' THEN ready_at_ms IS NULL AND done_at_ms IS NOT NULL AND result IS NOT NULL
            ELSE ready_at_ms IS NULL AND done_at_ms IS NOT NULL AND result IS NULL
        END),
        PRIMARY KEY (route, seq)
    ) STRICT;
";
// A rowid table rather than WITHOUT ROWID: rows carry a whole request, and
// a WITHOUT ROWID row over ~1 KiB spills to overflow pages.

const INSERT_JOB: &str = "
    INSERT INTO jobs (route, seq, token, tenant, ordering_key, idempotency_key, callback,
        accepted_at_ms, request, attempts, state, ready_at_ms, done_at_ms, result, last_error)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";
const UPDATE_JOB: &str = "
    UPDATE jobs SET attempts = ?3, state = ?4, ready_at_ms = ?5, done_at_ms = ?6, result = ?7,
        last_error = ?8
    WHERE route = ?1 AND seq = ?2";
const DELETE_JOB: &str = "DELETE FROM jobs WHERE route = ?1 AND seq = ?2";
// By the primary key's (signed) order; `load` re-sorts unsigned.
const SELECT_JOBS: &str = "
    SELECT route, seq, token, tenant, ordering_key, idempotency_key, callback, accepted_at_ms,
        request, attempts, state, ready_at_ms, done_at_ms, result, last_error
    FROM jobs ORDER BY route, seq";

/// When a write counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobDurability {
    /// After the commit has reached the disk (WAL, `synchronous=FULL`): an
    /// acknowledged job survives a power cut.
    Fsync,
    /// After the commit has been handed to the operating system
    /// (`synchronous=OFF`), which writes it back later: an acknowledged job
    /// survives the gateway being killed, not a power cut or a kernel
    /// crash.
    Os,
}

/// One stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// The async route's name.
    pub route: String,
    /// The job's number in its route; with `route`, the primary key.
    pub seq: u64,
    /// The random part of the job's public id.
    pub token: u64,
    /// Who submitted it.
    pub tenant: String,
    /// The ordering key, when the route orders by one.
    pub ordering_key: Option<String>,
    /// The client's `Idempotency-Key`, if it gave one.
    pub idempotency_key: Option<String>,
    /// Where to report the outcome, if the client asked.
    pub callback: Option<String>,
    /// When it was accepted, in milliseconds since the UNIX epoch.
    pub accepted_at_ms: u64,
    /// The serialized request; the log keeps it as given.
    pub request: Vec<u8>,
    /// Deliveries tried so far.
    pub attempts: u32,
    /// Where the job is.
    pub state: JobRecordState,
    /// The last delivery's error, if it failed.
    pub last_error: Option<String>,
}

/// Where a stored job is. A job being delivered is stored as queued: after
/// a restart it is delivered again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobRecordState {
    /// Waiting to be delivered, from `ready_at_ms` (UNIX milliseconds).
    Queued {
        /// When it may be delivered.
        ready_at_ms: u64,
    },
    /// Delivered.
    Done {
        /// When, in UNIX milliseconds.
        at_ms: u64,
        /// The upstream's answer, serialized; kept as given.
        result: Vec<u8>,
    },
    /// Given up on.
    Dead {
        /// When, in UNIX milliseconds.
        at_ms: u64,
    },
}

/// One change to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobWrite {
    /// A job accepted. Storing a `(route, seq)` twice fails this write.
    Insert(JobRecord),
    /// A job's attempts, state and last error after a delivery (or
    /// revive). An unknown job is no error: nothing changes.
    Update {
        /// The job's route.
        route: String,
        /// The job's number in its route.
        seq: u64,
        /// Deliveries tried so far.
        attempts: u32,
        /// Its new state.
        state: JobRecordState,
        /// The last delivery's error, if it failed.
        last_error: Option<String>,
    },
    /// Jobs forgotten (result TTL over) or purged. Unknown ones are no
    /// error.
    Delete {
        /// Their route.
        route: String,
        /// Their numbers in it.
        seqs: Vec<u64>,
    },
}

impl JobWrite {
    /// The rows it touches, for the batch limit.
    fn rows(&self) -> usize {
        match self {
            Self::Insert(_) | Self::Update { .. } => 1,
            Self::Delete { seqs, .. } => seqs.len(),
        }
    }

    /// Its payload bytes, for the batch limit.
    fn bytes(&self) -> usize {
        match self {
            Self::Insert(job) => job.request.len() + state_bytes(&job.state),
            Self::Update { state, .. } => state_bytes(state),
            Self::Delete { seqs, .. } => seqs.len() * 8,
        }
    }
}

fn state_bytes(state: &JobRecordState) -> usize {
    match state {
        JobRecordState::Done { result, .. } => result.len(),
        JobRecordState::Queued { .. } | JobRecordState::Dead { .. } => 0,
    }
}

/// Called once a write has been committed (and, with
/// [`JobDurability::Fsync`], has reached the disk), or has failed.
///
/// It runs on the log's writer thread, which commits nothing while it
/// runs: hand the result on (wake a task, send on a channel) and return.
/// A panic in it is caught; the thread goes on.
pub type WriteDone = Box<dyn FnOnce(Result<(), StoreError>) + Send + 'static>;

/// What the log has done so far, for metrics and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobLogStats {
    /// Writes committed (a [`JobWrite::Delete`] counts once per job).
    pub writes: u64,
    /// Transactions committed.
    pub commits: u64,
    /// The most writes one transaction committed.
    pub largest_batch: u64,
}

/// The durable log of async routes' jobs: a writer thread that owns the
/// SQLite connection, and a channel to it. Each commit carries the writes
/// queued while the one before it ran (group commit), up to 8192 writes
/// or 16 MiB of requests and results.
///
/// Shared between threads by reference (`Arc<JobLog>`). Dropping it
/// commits every write queued so far, then stops the thread.
pub struct JobLog {
    path: PathBuf,
    durability: JobDurability,
    /// `None` only while dropping, so that the thread sees the channel
    /// close.
    commands: Option<Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for JobLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobLog")
            .field("path", &self.path)
            .field("durability", &self.durability)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl JobLog {
    /// Opens the job log at `path`, creating the file (not its directory)
    /// if it is missing. Refuses a file that is not SQLite, a Levee store,
    /// another program's database, and a newer job log.
    pub fn open(path: &Path, durability: JobDurability) -> Result<Self, StoreError> {
        check_directory(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql(path, "opening"))?;
        let conn = setup(conn, path, durability)?;
        let counters = Arc::new(Counters::default());
        let (commands, receiver) = mpsc::channel();
        let writer = Writer {
            conn,
            path: path.to_path_buf(),
            commands: receiver,
            counters: Arc::clone(&counters),
        };
        let writer = thread::Builder::new()
            .name("levee-job-log".to_owned())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::io(path, "start the job log's writer thread", e))?;
        Ok(Self {
            path: path.to_path_buf(),
            durability,
            commands: Some(commands),
            writer: Some(writer),
            counters,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every stored job, ordered by route (byte order), then `seq`
    /// (unsigned), as it is once every write queued before this call has
    /// been committed. Meant for start-up: writes wait while it reads.
    pub fn load(&self) -> Result<Vec<JobRecord>, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Command::Load(reply))
            .map_err(|_| self.stopped())?;
        answer.recv().map_err(|_| self.stopped())?
    }

    /// Queues `write` and returns at once. `done`, if given, is called on
    /// the writer thread once the transaction holding the write has
    /// committed (and, with [`JobDurability::Fsync`], reached the disk), or
    /// with the error when it failed. Writes are applied in the order they
    /// are queued.
    ///
    /// Only if the writer thread has stopped (it panicked) is `done` called
    /// at once, on the calling thread, with [`StoreError::WriterStopped`].
    ///
    /// The queue has no bound of its own: the caller bounds it (the
    /// ledger's limits on jobs and bytes, each write waited for).
    pub fn write(&self, write: JobWrite, done: Option<WriteDone>) {
        self.write_all(vec![write], done);
    }

    /// Queues `writes` like [`write`](Self::write), in one transaction and
    /// all or nothing, with one `done` for all of them.
    pub fn write_all(&self, writes: Vec<JobWrite>, done: Option<WriteDone>) {
        if let Err(mpsc::SendError(Command::Write(pending))) =
            self.send(Command::Write(Pending { writes, done }))
        {
            if let Some(done) = pending.done {
                done(Err(self.stopped()));
            }
        }
    }

    /// Blocks until every write queued before this call has been committed
    /// or has failed. A write's failure goes to its own `done`, not here:
    /// this errors only when the writer thread has stopped.
    pub fn flush(&self) -> Result<(), StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.write_all(
            Vec::new(),
            Some(Box::new(move |result| {
                // The caller may have given up waiting; nothing to do then.
                let _ = reply.send(result);
            })),
        );
        answer.recv().map_err(|_| self.stopped())?
    }

    /// What the writer has committed so far.
    pub fn stats(&self) -> JobLogStats {
        JobLogStats {
            writes: self.counters.writes.load(Ordering::Relaxed),
            commits: self.counters.commits.load(Ordering::Relaxed),
            largest_batch: self.counters.largest_batch.load(Ordering::Relaxed),
        }
    }

    fn send(&self, command: Command) -> Result<(), mpsc::SendError<Command>> {
        match &self.commands {
            Some(commands) => commands.send(command),
            None => Err(mpsc::SendError(command)),
        }
    }

    fn stopped(&self) -> StoreError {
        StoreError::WriterStopped {
            path: self.path.clone(),
        }
    }
}

impl Drop for JobLog {
    fn drop(&mut self) {
        // Closing the channel ends the writer once it has committed
        // everything queued before.
        drop(self.commands.take());
        if let Some(writer) = self.writer.take() {
            // A writer that panicked has reported it already (the panic
            // message); its queued writes' `done`s were dropped uncalled.
            let _ = writer.join();
        }
    }
}

/// The connection as the log needs it: its own marker, WAL, the chosen
/// durability, the schema.
fn setup(
    mut conn: Connection,
    path: &Path,
    durability: JobDurability,
) -> Result<Connection, StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(sql(path, "setting busy_timeout"))?;
    // Before anything that writes (journal_mode does): never change a file
    // that is not ours.
    check_identity(&conn, path)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(sql(path, "setting journal_mode=WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unsupported {
            path: path.to_path_buf(),
            reason: format!("cannot use WAL mode (journal_mode stays {mode})"),
        });
    }
    let synchronous = match durability {
        JobDurability::Fsync => "FULL",
        JobDurability::Os => "OFF",
    };
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(sql(path, "setting synchronous"))?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql(path, "creating the schema"))?;
    // Again under the write lock: another process may have created it.
    if check_identity(&tx, path)?.is_blank() {
        tx.execute_batch(CREATE_JOBS)
            .map_err(sql(path, "creating the schema"))?;
        tx.pragma_update(None, "application_id", JOB_LOG_APPLICATION_ID)
            .map_err(sql(path, "creating the schema"))?;
        tx.pragma_update(None, "user_version", JOB_LOG_VERSION)
            .map_err(sql(path, "creating the schema"))?;
    }
    tx.commit().map_err(sql(path, "creating the schema"))?;
    Ok(conn)
}

/// Refuses a file that is neither blank nor a job log this build reads.
fn check_identity(conn: &Connection, path: &Path) -> Result<Identity, StoreError> {
    let id = Identity::read(conn).map_err(sql(path, "reading the header"))?;
    let reason = if id.is_blank() {
        return Ok(id);
    } else if id.application_id == crate::APPLICATION_ID {
        "it is a Levee store; the job log needs a file of its own".to_owned()
    } else if id.application_id != JOB_LOG_APPLICATION_ID {
        format!(
            "application_id {:#x}, expected {JOB_LOG_APPLICATION_ID:#x}: another program's SQLite database",
            id.application_id
        )
    } else if id.user_version != JOB_LOG_VERSION {
        format!(
            "job log version {}, expected {JOB_LOG_VERSION}",
            id.user_version
        )
    } else {
        return Ok(id);
    };
    Err(StoreError::NotAStore {
        path: path.to_path_buf(),
        reason,
    })
}

enum Command {
    Write(Pending),
    Load(LoadReply),
}

/// Where the writer sends what `load` read.
type LoadReply = SyncSender<Result<Vec<JobRecord>, StoreError>>;

/// One `write` or `write_all` call waiting for its commit.
struct Pending {
    writes: Vec<JobWrite>,
    done: Option<WriteDone>,
}

#[derive(Default)]
struct Counters {
    writes: AtomicU64,
    commits: AtomicU64,
    largest_batch: AtomicU64,
}

/// Why a whole transaction failed; cloned into every `done` of it.
struct BatchFailure {
    action: &'static str,
    error: rusqlite::Error,
}

/// `map_err` helper: `.map_err(failed("committing jobs"))`.
fn failed(action: &'static str) -> impl Fn(rusqlite::Error) -> BatchFailure {
    move |error| BatchFailure { action, error }
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    commands: Receiver<Command>,
    counters: Arc<Counters>,
}

impl Writer {
    fn run(mut self) {
        // Ends once the `JobLog` is dropped and everything queued before is
        // handled.
        while let Ok(first) = self.commands.recv() {
            let (batch, load) = self.gather(first);
            self.commit(batch);
            if let Some(reply) = load {
                let _ = reply.send(self.load());
            }
        }
    }

    /// Takes `first` and whatever else is queued already, up to the batch
    /// limits or a load (which must see the writes queued before it, and
    /// none after).
    fn gather(&self, first: Command) -> (Vec<Pending>, Option<LoadReply>) {
        let mut batch = Vec::new();
        let (mut rows, mut bytes) = (0, 0);
        let mut next = first;
        loop {
            match next {
                Command::Load(reply) => return (batch, Some(reply)),
                Command::Write(pending) => {
                    rows += pending.writes.iter().map(JobWrite::rows).sum::<usize>();
                    bytes += pending.writes.iter().map(JobWrite::bytes).sum::<usize>();
                    batch.push(pending);
                }
            }
            if rows >= MAX_BATCH_WRITES || bytes >= MAX_BATCH_BYTES {
                return (batch, None);
            }
            match self.commands.try_recv() {
                Ok(command) => next = command,
                Err(_) => return (batch, None),
            }
        }
    }

    /// Applies `batch` in one transaction, then tells every `done`.
    fn commit(&mut self, batch: Vec<Pending>) {
        let writes: usize = batch.iter().map(|p| p.writes.len()).sum();
        // Only flushes: everything before them is handled already.
        let outcomes = if writes == 0 {
            Ok(Vec::new())
        } else {
            self.apply(&batch)
        };
        match outcomes {
            Ok(failed) => {
                let committed = batch
                    .iter()
                    .zip(failed.iter())
                    .filter(|(_, failure)| failure.is_none())
                    .map(|(p, _)| p.writes.iter().map(JobWrite::rows).sum::<usize>())
                    .sum::<usize>() as u64;
                if writes > 0 {
                    self.counters.writes.fetch_add(committed, Ordering::Relaxed);
                    self.counters.commits.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .largest_batch
                        .fetch_max(committed, Ordering::Relaxed);
                }
                let mut failed = failed.into_iter();
                for pending in batch {
                    let result = match failed.next().flatten() {
                        Some(error) => Err(error),
                        None => Ok(()),
                    };
                    notify(pending.done, result);
                }
            }
            Err(failure) => {
                for pending in batch {
                    let result = if pending.writes.is_empty() {
                        Ok(())
                    } else {
                        Err(StoreError::sqlite(
                            &self.path,
                            failure.action,
                            clone_error(&failure.error),
                        ))
                    };
                    notify(pending.done, result);
                }
            }
        }
    }

    /// Runs the batch's writes in one transaction and commits it. `Ok`
    /// holds, for each pending call in order, the error that rolled back
    /// its writes alone, if any.
    fn apply(&mut self, batch: &[Pending]) -> Result<Vec<Option<StoreError>>, BatchFailure> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed("starting a transaction of jobs"))?;
        let mut outcomes = Vec::with_capacity(batch.len());
        {
            let mut statements = Statements {
                insert: tx
                    .prepare_cached(INSERT_JOB)
                    .map_err(failed("preparing to write jobs"))?,
                update: tx
                    .prepare_cached(UPDATE_JOB)
                    .map_err(failed("preparing to write jobs"))?,
                delete: tx
                    .prepare_cached(DELETE_JOB)
                    .map_err(failed("preparing to write jobs"))?,
            };
            for pending in batch {
                let result = match pending.writes.as_slice() {
                    [] => Ok(()),
                    // A failing statement undoes its own changes, and
                    // nothing else.
                    [write] if write.rows() == 1 => statements.apply(write),
                    writes => apply_together(&tx, &mut statements, writes),
                };
                match result {
                    Ok(()) => outcomes.push(None),
                    // SQLite rolls back the whole transaction on some
                    // errors (disk full, I/O): what follows would commit
                    // on its own, and what came before is gone.
                    Err(error) if tx.is_autocommit() => {
                        return Err(BatchFailure {
                            action: "writing jobs",
                            error,
                        })
                    }
                    Err(error) => {
                        outcomes.push(Some(StoreError::sqlite(&self.path, "writing a job", error)))
                    }
                }
            }
        }
        tx.commit().map_err(failed("committing jobs"))?;
        Ok(outcomes)
    }

    fn load(&self) -> Result<Vec<JobRecord>, StoreError> {
        let mut jobs = (|| {
            let mut select = self.conn.prepare(SELECT_JOBS)?;
            let rows = select.query_map([], read_job)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })()
        .map_err(sql(&self.path, "loading jobs"))?
        .into_iter()
        .collect::<Result<Vec<_>, String>>()
        .map_err(|reason| StoreError::Malformed {
            path: self.path.clone(),
            reason,
        })?;
        // Seqs of 2^63 and above are stored negative, so SQLite's order
        // puts them first. Already sorted otherwise, which costs one pass.
        jobs.sort_by(|a, b| (&a.route, a.seq).cmp(&(&b.route, b.seq)));
        Ok(jobs)
    }
}

/// The batch's cached statements, prepared once per transaction.
struct Statements<'conn> {
    insert: rusqlite::CachedStatement<'conn>,
    update: rusqlite::CachedStatement<'conn>,
    delete: rusqlite::CachedStatement<'conn>,
}

impl Statements<'_> {
    fn apply(&mut self, write: &JobWrite) -> rusqlite::Result<()> {
        match write {
            JobWrite::Insert(job) => {
                let (state, ready_at, done_at, result) = state_columns(&job.state);
                self.insert.execute(params![
                    job.route,
                    to_sql(job.seq),
                    to_sql(job.token),
                    job.tenant,
                    job.ordering_key,
                    job.idempotency_key,
                    job.callback,
                    to_sql(job.accepted_at_ms),
                    job.request,
                    job.attempts,
                    state,
                    ready_at,
                    done_at,
                    result,
                    job.last_error,
                ])?;
            }
            JobWrite::Update {
                route,
                seq,
                attempts,
                state,
                last_error,
            } => {
                let (state, ready_at, done_at, result) = state_columns(state);
                self.update.execute(params![
                    route,
                    to_sql(*seq),
                    attempts,
                    state,
                    ready_at,
                    done_at,
                    result,
                    last_error,
                ])?;
            }
            JobWrite::Delete { route, seqs } => {
                for &seq in seqs {
                    self.delete.execute(params![route, to_sql(seq)])?;
                }
            }
        }
        Ok(())
    }
}

/// Applies one `write_all`'s writes inside a savepoint, so that they
/// commit together or not at all.
fn apply_together(
    conn: &Connection,
    statements: &mut Statements<'_>,
    writes: &[JobWrite],
) -> rusqlite::Result<()> {
    conn.execute_batch("SAVEPOINT write_all")?;
    let result = writes.iter().try_for_each(|write| statements.apply(write));
    match result {
        Ok(()) => conn.execute_batch("RELEASE write_all"),
        Err(error) => {
            if !conn.is_autocommit() {
                conn.execute_batch("ROLLBACK TO write_all; RELEASE write_all")?;
            }
            Err(error)
        }
    }
}

/// The `state`, `ready_at_ms`, `done_at_ms` and `result` columns.
fn state_columns(
    state: &JobRecordState,
) -> (&'static str, Option<i64>, Option<i64>, Option<&[u8]>) {
    match state {
        JobRecordState::Queued { ready_at_ms } => {
            ("queued", Some(to_sql(*ready_at_ms)), None, None)
        }
        JobRecordState::Done { at_ms, result } => {
            ("done", None, Some(to_sql(*at_ms)), Some(result.as_slice()))
        }
        JobRecordState::Dead { at_ms } => ("dead", None, Some(to_sql(*at_ms)), None),
    }
}

/// One row as a job; `Err` (the outer `Ok`) names what is wrong with a row
/// the table's checks should have kept out.
fn read_job(row: &Row<'_>) -> rusqlite::Result<Result<JobRecord, String>> {
    let route: String = row.get(0)?;
    let seq = from_sql(row.get(1)?);
    let state: String = row.get(10)?;
    let ready_at: Option<i64> = row.get(11)?;
    let done_at: Option<i64> = row.get(12)?;
    let result: Option<Vec<u8>> = row.get(13)?;
    let state = match (state.as_str(), ready_at, done_at, result) {
        ("queued", Some(ready_at), None, None) => JobRecordState::Queued {
            ready_at_ms: from_sql(ready_at),
        },
        ("done", None, Some(at), Some(result)) => JobRecordState::Done {
            at_ms: from_sql(at),
            result,
        },
        ("dead", None, Some(at), None) => JobRecordState::Dead {
            at_ms: from_sql(at),
        },
        _ => {
            return Ok(Err(format!(
                "job {route}/{seq}: state {state:?} with the wrong columns set"
            )))
        }
    };
    Ok(Ok(JobRecord {
        route,
        seq,
        token: from_sql(row.get(2)?),
        tenant: row.get(3)?,
        ordering_key: row.get(4)?,
        idempotency_key: row.get(5)?,
        callback: row.get(6)?,
        accepted_at_ms: from_sql(row.get(7)?),
        request: row.get(8)?,
        attempts: row.get(9)?,
        state,
        last_error: row.get(14)?,
    }))
}

/// Calls `done`, keeping the writer alive if it panics: the other writes'
/// callers still wait for theirs.
fn notify(done: Option<WriteDone>, result: Result<(), StoreError>) {
    if let Some(done) = done {
        // The panic hook has printed the message; the callback's state is
        // its caller's, not the writer's.
        let _ = panic::catch_unwind(AssertUnwindSafe(move || done(result)));
    }
}

/// A copy of `error` for one more `done`: SQLite's own errors exactly (so
/// that [`StoreError::is_busy`] still answers), others by their message.
fn clone_error(error: &rusqlite::Error) -> rusqlite::Error {
    match error {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}
