//! `JobLog` on real files: round trips in both durabilities, completions
//! only after the commit, group commit under concurrent writers, one bad
//! write failing alone, refusing files that are not job logs, and
//! acknowledged jobs surviving `kill -9` of the writing process.

mod common;

use common::TestDir;
use levee_store::{
    JobDurability, JobLog, JobRecord, JobRecordState, JobWrite, SqliteStore, StoreError, WriteDone,
};
use rusqlite::Connection;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

const BOTH: [JobDurability; 2] = [JobDurability::Fsync, JobDurability::Os];

fn job(route: &str, seq: u64) -> JobRecord {
    JobRecord {
        route: route.to_owned(),
        seq,
        token: seq.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        tenant: format!("tenant-{}", seq % 3),
        ordering_key: None,
        idempotency_key: None,
        callback: None,
        accepted_at_ms: 1_800_000_000_000u64.wrapping_add(seq),
        request: format!("POST /orders/{seq}\r\n\r\n{{}}").into_bytes(),
        attempts: 0,
        state: JobRecordState::Queued {
            ready_at_ms: 1_800_000_000_000u64.wrapping_add(seq),
        },
        last_error: None,
    }
}

/// A `done` that sends its result on the returned channel.
fn ack() -> (WriteDone, mpsc::Receiver<Result<(), StoreError>>) {
    let (tx, rx) = mpsc::channel();
    (
        Box::new(move |result| {
            let _ = tx.send(result);
        }),
        rx,
    )
}

/// Writes and waits for the result.
fn write_and_wait(log: &JobLog, write: JobWrite) -> Result<(), StoreError> {
    let (done, rx) = ack();
    log.write(write, Some(done));
    rx.recv().unwrap()
}

/// Blocks the writer thread (inside a `done`) until the returned sender
/// is used, so that what is written meanwhile lands in one batch.
fn hold_writer(log: &JobLog) -> mpsc::Sender<()> {
    let (release, wait) = mpsc::channel::<()>();
    let (entered, has_entered) = mpsc::channel::<()>();
    log.write_all(
        Vec::new(),
        Some(Box::new(move |_| {
            entered.send(()).unwrap();
            let _ = wait.recv();
        })),
    );
    has_entered.recv().unwrap();
    release
}

#[test]
fn writes_round_trip_through_a_reopen_in_both_durabilities() {
    for durability in BOTH {
        let dir = TestDir::new("job-roundtrip");
        let path = dir.path("jobs.db");
        let mut extreme = job("b", u64::MAX);
        extreme.token = u64::MAX;
        extreme.accepted_at_ms = u64::MAX;
        extreme.ordering_key = Some("customer-42".to_owned());
        extreme.idempotency_key = Some("é ✓ \0 nul".to_owned());
        extreme.callback = Some("https://example.test/hook".to_owned());
        extreme.request = Vec::new();
        extreme.attempts = u32::MAX;
        extreme.state = JobRecordState::Queued {
            ready_at_ms: u64::MAX,
        };
        extreme.last_error = Some("upstream 503".to_owned());
        let mut expected = {
            let log = JobLog::open(&path, durability).unwrap();
            assert_eq!(log.path(), path);
            assert_eq!(log.load().unwrap(), Vec::new());
            for seq in 0..5 {
                write_and_wait(&log, JobWrite::Insert(job("a", seq))).unwrap();
            }
            write_and_wait(&log, JobWrite::Insert(extreme.clone())).unwrap();
            write_and_wait(&log, JobWrite::Insert(job("b", 7))).unwrap();
            let updates = vec![
                JobWrite::Update {
                    route: "a".to_owned(),
                    seq: 1,
                    attempts: 1,
                    state: JobRecordState::Done {
                        at_ms: 1_800_000_000_500,
                        result: b"HTTP/1.1 201 Created\r\n\r\n".to_vec(),
                    },
                    last_error: None,
                },
                JobWrite::Update {
                    route: "a".to_owned(),
                    seq: 2,
                    attempts: 5,
                    state: JobRecordState::Dead {
                        at_ms: 1_800_000_000_900,
                    },
                    last_error: Some("connection refused".to_owned()),
                },
                JobWrite::Update {
                    route: "a".to_owned(),
                    seq: 3,
                    attempts: 2,
                    state: JobRecordState::Queued {
                        ready_at_ms: 1_800_000_001_000,
                    },
                    last_error: Some("timeout".to_owned()),
                },
                JobWrite::Delete {
                    route: "a".to_owned(),
                    seqs: vec![0, 4, 99],
                },
            ];
            let (done, rx) = ack();
            log.write_all(updates, Some(done));
            rx.recv().unwrap().unwrap();

            let mut done = job("a", 1);
            done.attempts = 1;
            done.state = JobRecordState::Done {
                at_ms: 1_800_000_000_500,
                result: b"HTTP/1.1 201 Created\r\n\r\n".to_vec(),
            };
            let mut dead = job("a", 2);
            dead.attempts = 5;
            dead.state = JobRecordState::Dead {
                at_ms: 1_800_000_000_900,
            };
            dead.last_error = Some("connection refused".to_owned());
            let mut retried = job("a", 3);
            retried.attempts = 2;
            retried.state = JobRecordState::Queued {
                ready_at_ms: 1_800_000_001_000,
            };
            retried.last_error = Some("timeout".to_owned());
            // By route, then seq unsigned: u64::MAX after 7.
            let expected = vec![done, dead, retried, job("b", 7), extreme.clone()];
            assert_eq!(log.load().unwrap(), expected, "{durability:?}");
            let stats = log.stats();
            assert_eq!(stats.writes, 7 + 3 + 3, "{durability:?}: {stats:?}");
            assert_eq!(stats.commits, 8, "{durability:?}: {stats:?}");
            expected
        };
        let log = JobLog::open(&path, durability).unwrap();
        assert_eq!(log.load().unwrap(), expected, "{durability:?} reopened");
        // Reviving the dead job.
        write_and_wait(
            &log,
            JobWrite::Update {
                route: "a".to_owned(),
                seq: 2,
                attempts: 0,
                state: JobRecordState::Queued { ready_at_ms: 5 },
                last_error: None,
            },
        )
        .unwrap();
        expected[1].attempts = 0;
        expected[1].state = JobRecordState::Queued { ready_at_ms: 5 };
        expected[1].last_error = None;
        assert_eq!(log.load().unwrap(), expected, "{durability:?} revived");
    }
}

#[test]
fn done_runs_only_once_another_connection_sees_the_write() {
    for durability in BOTH {
        let dir = TestDir::new("job-visible");
        let path = dir.path("jobs.db");
        let log = JobLog::open(&path, durability).unwrap();
        let second = Arc::new(JobLog::open(&path, durability).unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        for seq in 0..20 {
            let (second, seen) = (Arc::clone(&second), Arc::clone(&seen));
            log.write(
                JobWrite::Insert(job("r", seq)),
                Some(Box::new(move |result| {
                    result.unwrap();
                    // Inside the callback, before anyone else could commit
                    // it: the write must be there already.
                    let stored = second.load().unwrap();
                    seen.lock()
                        .unwrap()
                        .push(stored.iter().any(|j| j.seq == seq));
                })),
            );
        }
        log.flush().unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen, vec![true; 20], "{durability:?}");
    }
}

#[test]
fn concurrent_writers_share_commits() {
    const THREADS: u64 = 8;
    const EACH: u64 = 100;
    for durability in BOTH {
        let dir = TestDir::new("job-group");
        let log = Arc::new(JobLog::open(&dir.path("jobs.db"), durability).unwrap());
        let release = hold_writer(&log);
        let queued = Arc::new(Barrier::new(THREADS as usize + 1));
        let results = Arc::new(Mutex::new(Vec::new()));
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (log, queued, results) =
                    (Arc::clone(&log), Arc::clone(&queued), Arc::clone(&results));
                thread::spawn(move || {
                    for i in 0..EACH {
                        let results = Arc::clone(&results);
                        log.write(
                            JobWrite::Insert(job(&format!("route-{t}"), i)),
                            Some(Box::new(move |r| results.lock().unwrap().push(r))),
                        );
                    }
                    queued.wait();
                })
            })
            .collect();
        // Every write is queued while the writer is held, so they all go
        // into the next transaction.
        queued.wait();
        release.send(()).unwrap();
        for writer in writers {
            writer.join().unwrap();
        }
        log.flush().unwrap();
        let results = results.lock().unwrap();
        assert_eq!(results.len() as u64, THREADS * EACH);
        assert!(results.iter().all(Result::is_ok));
        let stats = log.stats();
        assert_eq!(stats.writes, THREADS * EACH, "{durability:?}");
        assert_eq!(stats.commits, 1, "{durability:?}: {stats:?}");
        assert_eq!(stats.largest_batch, THREADS * EACH, "{durability:?}");
        assert_eq!(log.load().unwrap().len() as u64, THREADS * EACH);
    }
}

#[test]
fn a_bad_write_fails_alone_and_the_writer_goes_on() {
    let dir = TestDir::new("job-isolation");
    let path = dir.path("jobs.db");
    let log = JobLog::open(&path, JobDurability::Fsync).unwrap();
    write_and_wait(&log, JobWrite::Insert(job("r", 1))).unwrap();

    let release = hold_writer(&log);
    let (good_before, good_before_rx) = ack();
    let (duplicate, duplicate_rx) = ack();
    let (good_after, good_after_rx) = ack();
    let (together, together_rx) = ack();
    log.write(JobWrite::Insert(job("r", 2)), Some(good_before));
    log.write(JobWrite::Insert(job("r", 1)), Some(duplicate));
    log.write(JobWrite::Insert(job("r", 3)), Some(good_after));
    // All or nothing: job 4 must not stay without the failed duplicate.
    log.write_all(
        vec![JobWrite::Insert(job("r", 4)), JobWrite::Insert(job("r", 2))],
        Some(together),
    );
    let commits_before = log.stats().commits;
    release.send(()).unwrap();

    good_before_rx.recv().unwrap().unwrap();
    good_after_rx.recv().unwrap().unwrap();
    let error = duplicate_rx.recv().unwrap().unwrap_err();
    assert!(matches!(error, StoreError::Sqlite { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("jobs.db"), "{message}");
    assert!(message.contains("UNIQUE"), "{message}");
    assert!(together_rx.recv().unwrap().is_err());
    assert_eq!(log.stats().commits, commits_before + 1, "one transaction");

    // Updating or deleting an unknown job changes nothing and is no error.
    write_and_wait(
        &log,
        JobWrite::Update {
            route: "r".to_owned(),
            seq: 404,
            attempts: 1,
            state: JobRecordState::Dead { at_ms: 1 },
            last_error: None,
        },
    )
    .unwrap();
    write_and_wait(
        &log,
        JobWrite::Delete {
            route: "nowhere".to_owned(),
            seqs: vec![1],
        },
    )
    .unwrap();
    let seqs: Vec<u64> = log.load().unwrap().iter().map(|j| j.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
}

#[test]
fn a_panicking_callback_does_not_stop_the_writer() {
    let dir = TestDir::new("job-panic");
    let log = JobLog::open(&dir.path("jobs.db"), JobDurability::Os).unwrap();
    log.write(
        JobWrite::Insert(job("r", 1)),
        Some(Box::new(|_| panic!("a caller's bug"))),
    );
    write_and_wait(&log, JobWrite::Insert(job("r", 2))).unwrap();
    assert_eq!(log.load().unwrap().len(), 2);
}

#[test]
fn dropping_the_log_commits_what_was_queued() {
    let dir = TestDir::new("job-drop");
    let path = dir.path("jobs.db");
    {
        let log = JobLog::open(&path, JobDurability::Os).unwrap();
        for seq in 0..500 {
            log.write(JobWrite::Insert(job("r", seq)), None);
        }
    }
    let log = JobLog::open(&path, JobDurability::Os).unwrap();
    assert_eq!(log.load().unwrap().len(), 500);
}

#[test]
fn files_that_are_not_job_logs_are_refused_unchanged() {
    let dir = TestDir::new("job-foreign");

    let foreign = dir.path("other.db");
    {
        let conn = Connection::open(&foreign).unwrap();
        conn.execute_batch("CREATE TABLE notes (body TEXT)")
            .unwrap();
    }
    let error = JobLog::open(&foreign, JobDurability::Fsync).unwrap_err();
    assert!(matches!(error, StoreError::NotAStore { .. }), "{error:?}");
    assert!(error.to_string().contains("other.db"), "{error}");
    let conn = Connection::open(&foreign).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tables, vec!["notes".to_owned()]);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete", "the journal mode was left alone");

    // The main store's file is not a job log either.
    let store = dir.path("levee.db");
    drop(SqliteStore::open(&store).unwrap());
    let error = JobLog::open(&store, JobDurability::Os).unwrap_err();
    assert!(
        error.to_string().contains("Levee store"),
        "{error}: says what the file is"
    );
    // Nor the other way round.
    let jobs = dir.path("jobs.db");
    drop(JobLog::open(&jobs, JobDurability::Os).unwrap());
    let error = SqliteStore::open(&jobs).unwrap_err();
    assert!(matches!(error, StoreError::NotAStore { .. }), "{error:?}");

    let text = dir.path("notes.txt");
    std::fs::write(&text, "not a database, just some text that is long enough").unwrap();
    let error = JobLog::open(&text, JobDurability::Fsync).unwrap_err();
    assert!(matches!(error, StoreError::NotAStore { .. }), "{error:?}");
}

#[test]
fn a_missing_directory_is_named() {
    let dir = TestDir::new("job-missing");
    let missing = dir.path("no-such-dir");
    let error = JobLog::open(&missing.join("jobs.db"), JobDurability::Fsync).unwrap_err();
    match &error {
        StoreError::MissingDirectory { dir, .. } => assert_eq!(dir, &missing),
        other => panic!("{other:?}"),
    }
    assert!(
        error.to_string().contains(&*missing.to_string_lossy()),
        "{error}"
    );
    assert!(!missing.exists());
}

/// Set to `<path>:<durability>` in the child of
/// `acknowledged_jobs_survive_kill_9`.
const CRASH_CHILD: &str = "LEVEE_JOB_LOG_CRASH_CHILD";

/// Kills the child if the parent test fails before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// In the crash test's child process only: writes jobs from a few threads,
/// printing `acked <seq>` after each acknowledged one, until killed.
#[test]
fn crash_child() {
    let Ok(arg) = std::env::var(CRASH_CHILD) else {
        return;
    };
    let (path, durability) = arg.rsplit_once(':').unwrap();
    let durability = match durability {
        "fsync" => JobDurability::Fsync,
        _ => JobDurability::Os,
    };
    let log = Arc::new(JobLog::open(Path::new(path), durability).unwrap());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                // Bounded, so that a child the parent failed to kill ends.
                for i in 0..50_000 {
                    let seq = i * 4 + t;
                    write_and_wait(&log, JobWrite::Insert(job("crash", seq))).unwrap();
                    // Line-buffered: on the pipe before the next write.
                    println!("acked {seq}");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn acknowledged_jobs_survive_kill_9() {
    for (durability, name) in [(JobDurability::Fsync, "fsync"), (JobDurability::Os, "os")] {
        let dir = TestDir::new("job-crash");
        let path = dir.path("jobs.db");
        let mut child = KillOnDrop(
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
                .env(CRASH_CHILD, format!("{}:{name}", path.display()))
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        );
        let mut acked = Vec::new();
        let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
        while acked.len() < 300 {
            let line = lines
                .next()
                .expect("the child stopped before 300 acks")
                .unwrap();
            if let Some(seq) = line.strip_prefix("acked ") {
                acked.push(seq.parse::<u64>().unwrap());
            }
        }
        // SIGKILL: no destructor, no flush, in the middle of writing.
        child.0.kill().unwrap();
        // Acks printed before the kill are still in the pipe.
        for line in lines {
            if let Some(seq) = line.unwrap().strip_prefix("acked ") {
                acked.push(seq.parse().unwrap());
            }
        }
        drop(child);

        let log = JobLog::open(&path, durability).unwrap();
        let stored = log.load().unwrap();
        for record in &stored {
            assert_eq!(record, &job("crash", record.seq), "{name}: stored intact");
        }
        let stored: std::collections::HashSet<u64> = stored.iter().map(|j| j.seq).collect();
        let lost: Vec<_> = acked.iter().filter(|s| !stored.contains(s)).collect();
        assert!(lost.is_empty(), "{name}: acknowledged but lost: {lost:?}");
    }
}
