//! The store's own export: every data table as plain values, with the
//! columns and in the primary-key order of the SQLite schema. It is how a
//! [`PostgresStore`] is backed up into, and restored from, a file of the
//! same kind as a SQLite store's backup (`backup_postgres` and
//! `restore_postgres` in [`crate::backup`]).
//!
//! Both schemas have the same data tables with the same column names, so
//! rows move column by column, by name, with no mapping per table (and no
//! third copy of the row types' mapping); the same checksum covers them
//! on either side ([`digest_tables`]).
//!
//! Values are what SQLite holds: integers (every `u64` with the same bits),
//! text and NULL; PostgreSQL's `BOOLEAN` is SQLite's 0 or 1. The one table
//! that differs is `meta`: SQLite's holds `schema_version` (of the SQLite
//! schema) and `max_incident_id`, PostgreSQL's `levee_meta` its own
//! identity and schema version. Only `max_incident_id` moves: a
//! PostgreSQL store's export says this build's SQLite schema version, as a
//! SQLite store of this build would.

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};
use std::fmt::Write as _;
use std::time::Duration;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, IsolationLevel, Row, Transaction};

use crate::checksum::digest_tables;
use crate::error::StoreError;
use crate::postgres::{APPLICATION_NAME, TABLES};
use crate::schema::{APPLICATION_ID, DATA_TABLES, SCHEMA_VERSION};
use crate::PostgresStore;

/// How long each statement of a PostgreSQL backup or restore may take:
/// the session's `statement_timeout` is sized for a gateway's small
/// writes, not for reading or writing every table.
const BULK_STATEMENT_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a restore waits for other Levee sessions to end before it
/// refuses the database as in use: a gateway stopped a moment ago leaves
/// its server process behind for a few milliseconds.
const IN_USE_GRACE_STEPS: u32 = 30;
const IN_USE_GRACE_STEP: Duration = Duration::from_millis(100);

/// Rows per `INSERT` (PostgreSQL takes at most 65,535 parameters).
const ROWS_PER_INSERT: usize = 500;

/// Other sessions of Levee (by their `application_name`) connected to the
/// same database.
const OTHER_LEVEE_SESSIONS: &str = "
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = $1";

/// One data table and its rows.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Table {
    pub(crate) name: &'static str,
    /// The columns that list it by primary key, as `ORDER BY` takes them.
    order: &'static str,
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<Value>>,
}

impl Table {
    /// `"a", "b", "c"`.
    fn column_list(&self) -> String {
        let quoted: Vec<String> = self.columns.iter().map(|c| format!("\"{c}\"")).collect();
        quoted.join(", ")
    }

    fn with_rows(&self, rows: Vec<Vec<Value>>) -> Self {
        Self {
            name: self.name,
            order: self.order,
            columns: self.columns.clone(),
            rows,
        }
    }
}

/// Every data table with its columns as `conn`'s schema has them, and no
/// rows.
pub(crate) fn layout(conn: &Connection) -> rusqlite::Result<Vec<Table>> {
    DATA_TABLES
        .iter()
        .map(|&(name, order)| {
            let columns = conn
                .prepare(&format!("SELECT * FROM {name}"))?
                .column_names()
                .map(str::to_owned)
                .collect();
            Ok(Table {
                name,
                order,
                columns,
                rows: Vec::new(),
            })
        })
        .collect()
}

/// Every data table of a SQLite store, each in primary-key order.
pub(crate) fn read_sqlite(conn: &Connection) -> rusqlite::Result<Vec<Table>> {
    let mut tables = layout(conn)?;
    for t in &mut tables {
        let n = t.columns.len();
        let mut st = conn.prepare(&format!(
            "SELECT {} FROM {} ORDER BY {}",
            t.column_list(),
            t.name,
            t.order
        ))?;
        t.rows = st
            .query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(tables)
}

/// Replaces the rows of each of `tables` in a SQLite store with theirs,
/// in one transaction.
pub(crate) fn write_sqlite(conn: &mut Connection, tables: &[Table]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for t in tables {
        tx.execute(&format!("DELETE FROM {}", t.name), [])?;
        let marks = vec!["?"; t.columns.len()].join(", ");
        let mut st = tx.prepare(&format!(
            "INSERT INTO {} ({}) VALUES ({marks})",
            t.name,
            t.column_list()
        ))?;
        for row in &t.rows {
            st.execute(params_from_iter(row))?;
        }
    }
    tx.commit()
}

/// How [`PostgresStore::import`] ended.
#[derive(Debug)]
pub(crate) enum Imported {
    /// Committed; `replaced` if the store held rows before.
    Done { replaced: bool },
    /// Refused, nothing changed: other Levee sessions are connected.
    InUse { sessions: i64 },
    /// Rolled back: a value does not fit its PostgreSQL column.
    Refused(String),
    /// Rolled back: the rows read back hash to `checksum`, not to the
    /// imported rows' checksum.
    Differs { checksum: u64 },
}

impl PostgresStore {
    /// Every data table in `layout` (a SQLite schema's tables and columns)
    /// as this database holds it, read in one `REPEATABLE READ`, read-only
    /// transaction: one consistent snapshot while gateways keep writing,
    /// which never blocks them.
    pub(crate) fn export(&mut self, layout: &[Table]) -> Result<Vec<Table>, StoreError> {
        self.run_within(
            "exporting the store",
            BULK_STATEMENT_TIMEOUT,
            async |client| {
                let tx = client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await?;
                raise_statement_timeout(&tx).await?;
                let tables = read_postgres(&tx, layout).await?;
                tx.commit().await?;
                Ok(tables)
            },
        )
    }

    /// Replaces the contents of every data table with `tables` (a SQLite
    /// store's, from [`read_sqlite`]) and sets `max_incident_id` to theirs,
    /// in one transaction under the migrations' advisory lock. Refuses,
    /// changing nothing, while other Levee sessions are connected to the
    /// database (after waiting a moment for ones that are ending). Before
    /// committing, reads everything back and compares its checksum with
    /// that of `tables`.
    pub(crate) fn import(&mut self, tables: &[Table]) -> Result<Imported, StoreError> {
        let expected = digest_tables(tables).checksum;
        self.run_within(
            "restoring the store",
            BULK_STATEMENT_TIMEOUT,
            async |client| import(client, tables, expected).await,
        )
    }
}

async fn import(
    client: &mut Client,
    tables: &[Table],
    expected: u64,
) -> Result<Imported, tokio_postgres::Error> {
    // A statement of its own each time: pg_stat_activity is read once per
    // transaction.
    for _ in 0..IN_USE_GRACE_STEPS {
        let sessions: i64 = client
            .query_one(OTHER_LEVEE_SESSIONS, &[&APPLICATION_NAME])
            .await?
            .try_get(0)?;
        if sessions == 0 {
            break;
        }
        tokio::time::sleep(IN_USE_GRACE_STEP).await;
    }
    let tx = client.transaction().await?;
    raise_statement_timeout(&tx).await?;
    // As the migrations: a gateway starting now waits until this commits,
    // and two restores never interleave.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&i64::from(APPLICATION_ID)],
    )
    .await?;
    let sessions: i64 = tx
        .query_one(OTHER_LEVEE_SESSIONS, &[&APPLICATION_NAME])
        .await?
        .try_get(0)?;
    if sessions > 0 {
        tx.rollback().await?;
        return Ok(Imported::InUse { sessions });
    }
    let any: Vec<String> = TABLES
        .iter()
        .map(|t| format!("EXISTS (SELECT 1 FROM {t})"))
        .chain(["EXISTS (SELECT 1 FROM levee_meta WHERE key = 'max_incident_id')".to_owned()])
        .collect();
    let replaced: bool = tx
        .query_one(&format!("SELECT {}", any.join(" OR ")), &[])
        .await?
        .try_get(0)?;
    tx.batch_execute(&format!("TRUNCATE {}", TABLES.join(", ")))
        .await?;
    for t in tables {
        let outcome = if t.name == "meta" {
            write_meta(&tx, t).await?
        } else {
            insert(&tx, t).await?
        };
        if let Err(reason) = outcome {
            tx.rollback().await?;
            return Ok(Imported::Refused(reason));
        }
    }
    let checksum = digest_tables(&read_postgres(&tx, tables).await?).checksum;
    if checksum != expected {
        tx.rollback().await?;
        return Ok(Imported::Differs { checksum });
    }
    tx.commit().await?;
    Ok(Imported::Done { replaced })
}

async fn raise_statement_timeout(tx: &Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}",
        BULK_STATEMENT_TIMEOUT.as_millis()
    ))
    .await
}

/// The tables of `layout` as the database holds them, in the same order.
async fn read_postgres(
    tx: &Transaction<'_>,
    layout: &[Table],
) -> Result<Vec<Table>, tokio_postgres::Error> {
    let mut tables = Vec::with_capacity(layout.len());
    for t in layout {
        let rows = if t.name == "meta" {
            // In key order, as SQLite's `meta` lists them.
            let mut rows = Vec::with_capacity(2);
            if let Some(r) = tx
                .query_opt(
                    "SELECT value FROM levee_meta WHERE key = 'max_incident_id'",
                    &[],
                )
                .await?
            {
                rows.push(vec![
                    Value::Text("max_incident_id".to_owned()),
                    Value::Integer(r.try_get(0)?),
                ]);
            }
            rows.push(vec![
                Value::Text("schema_version".to_owned()),
                Value::Integer(i64::from(SCHEMA_VERSION)),
            ]);
            rows
        } else {
            tx.query(
                &format!(
                    "SELECT {} FROM {} ORDER BY {}",
                    t.column_list(),
                    t.name,
                    t.order
                ),
                &[],
            )
            .await?
            .iter()
            .map(|r| (0..r.len()).map(|i| value_at(r, i)).collect())
            .collect::<Result<_, _>>()?
        };
        tables.push(t.with_rows(rows));
    }
    Ok(tables)
}

/// A PostgreSQL value as SQLite holds it; a column of a type Levee does
/// not store is an error (the client's "cannot convert").
fn value_at(row: &Row, i: usize) -> Result<Value, tokio_postgres::Error> {
    let ty = row.columns()[i].type_();
    Ok(if *ty == Type::BOOL {
        row.try_get::<_, Option<bool>>(i)?
            .map_or(Value::Null, |b| Value::Integer(i64::from(b)))
    } else if *ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i)?
            .map_or(Value::Null, Value::Integer)
    } else {
        row.try_get::<_, Option<String>>(i)?
            .map_or(Value::Null, Value::Text)
    })
}

/// A SQLite value as a parameter for a PostgreSQL column of type `ty`, if
/// it fits: `BOOLEAN` takes 0 and 1, `BIGINT` integers, `TEXT` text, each
/// also NULL (the column's own constraints decide).
fn param<'a>(ty: &Type, v: &'a Value) -> Option<Box<dyn ToSql + Sync + Send + 'a>> {
    let p: Box<dyn ToSql + Sync + Send + 'a> = match v {
        Value::Null if *ty == Type::BOOL => Box::new(None::<bool>),
        Value::Null if *ty == Type::INT8 => Box::new(None::<i64>),
        Value::Null if *ty == Type::TEXT => Box::new(None::<&str>),
        Value::Integer(0) if *ty == Type::BOOL => Box::new(false),
        Value::Integer(1) if *ty == Type::BOOL => Box::new(true),
        Value::Integer(i) if *ty == Type::INT8 => Box::new(*i),
        Value::Text(s) if *ty == Type::TEXT => Box::new(s.as_str()),
        _ => return None,
    };
    Some(p)
}

/// Inserts a table's rows, a few hundred per statement; `Err` names a
/// value that does not fit its column.
async fn insert(
    tx: &Transaction<'_>,
    t: &Table,
) -> Result<Result<(), String>, tokio_postgres::Error> {
    let types: Vec<Type> = tx
        .prepare(&format!(
            "SELECT {} FROM {} LIMIT 0",
            t.column_list(),
            t.name
        ))
        .await?
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    let n = types.len();
    for chunk in t.rows.chunks(ROWS_PER_INSERT) {
        let mut sql = format!("INSERT INTO {} ({}) VALUES ", t.name, t.column_list());
        let mut params = Vec::with_capacity(chunk.len() * n);
        for (r, row) in chunk.iter().enumerate() {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for (c, v) in row.iter().enumerate() {
                let Some(p) = types.get(c).and_then(|ty| param(ty, v)) else {
                    return Ok(Err(format!(
                        "{}.{}: {v:?} does not fit PostgreSQL's column ({})",
                        t.name,
                        t.columns[c],
                        types.get(c).map_or("missing".to_owned(), Type::to_string)
                    )));
                };
                params.push(p);
                let sep = if c == 0 { "" } else { ", " };
                // Writing to a String cannot fail.
                let _ = write!(sql, "{sep}${}", r * n + c + 1);
            }
            sql.push(')');
        }
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        tx.execute(sql.as_str(), &refs).await?;
    }
    Ok(Ok(()))
}

/// Sets `levee_meta.max_incident_id` to the file's, or removes it when the
/// file has none; the file's `schema_version` is SQLite's and stays there.
async fn write_meta(
    tx: &Transaction<'_>,
    t: &Table,
) -> Result<Result<(), String>, tokio_postgres::Error> {
    let mut max_id = None;
    for row in &t.rows {
        match row.as_slice() {
            [Value::Text(k), Value::Integer(v)] if k == "max_incident_id" => max_id = Some(*v),
            [Value::Text(k), Value::Integer(_)] if k == "schema_version" => {}
            other => return Ok(Err(format!("meta: {other:?} is not a row Levee keeps"))),
        }
    }
    tx.execute("DELETE FROM levee_meta WHERE key = 'max_incident_id'", &[])
        .await?;
    if let Some(v) = max_id {
        tx.execute(
            "INSERT INTO levee_meta (key, value) VALUES ('max_incident_id', $1)",
            &[&v],
        )
        .await?;
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::digest;
    use std::path::Path;

    fn store() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::schema::prepare(&mut conn, Path::new(":memory:")).unwrap();
        conn
    }

    /// The checksum of rows in memory is the file's, and writing them into
    /// another store gives the same file contents.
    #[test]
    fn rows_read_and_written_keep_the_files_checksum() {
        let conn = store();
        conn.execute_batch(
            "INSERT INTO meta VALUES ('max_incident_id', -1);
             INSERT INTO slo_buckets VALUES ('b', 1, -5, 1, 2), ('a', 0, 7, 0, 0);
             INSERT INTO slo_incidents VALUES (-1, 's', 'page', 1, 0, 2, NULL, NULL, 3, 4, 'é');
             INSERT INTO slo_incident_labels VALUES (-1, 0, '', 'x'), (-1, 1, '', 'x');
             INSERT INTO route_history VALUES ('r', 'route', 0, 10, 1, 0, '3:1');",
        )
        .unwrap();
        let tables = read_sqlite(&conn).unwrap();
        assert_eq!(
            tables.iter().map(|t| t.name).collect::<Vec<_>>(),
            DATA_TABLES.iter().map(|(t, _)| *t).collect::<Vec<_>>()
        );
        assert_eq!(
            tables[1].columns,
            ["slo", "coarse", "start_ns", "good", "total"]
        );
        assert_eq!(
            tables[1].rows[0],
            [
                Value::Text("a".to_owned()),
                Value::Integer(0),
                Value::Integer(7),
                Value::Integer(0),
                Value::Integer(0)
            ]
        );
        let expected = digest(&conn).unwrap();
        assert_eq!(digest_tables(&tables), expected);

        let mut other = store();
        write_sqlite(&mut other, &tables).unwrap();
        assert_eq!(digest(&other).unwrap(), expected);
        assert_eq!(read_sqlite(&other).unwrap(), tables);
    }
}
