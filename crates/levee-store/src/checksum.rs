//! Row counts and a checksum over every data table, in primary-key order:
//! what a backup's manifest records and what verification recomputes.

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use crate::export::Table;
use crate::schema::DATA_TABLES;

/// 64-bit FNV-1a: small, stable across builds and platforms, and enough to
/// notice a changed copy (it is not meant to resist deliberate tampering).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    pub(crate) fn new() -> Self {
        Self(Self::OFFSET)
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

/// Row counts per data table and one checksum over all their rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Digest {
    pub(crate) rows: Vec<(String, u64)>,
    pub(crate) checksum: u64,
}

/// Feeds a [`Digest`] table by table, row by row, value by value: one
/// hashing for a SQLite file ([`digest`]) and for rows held in memory
/// ([`digest_tables`]), so both give the same checksum for the same rows.
pub(crate) struct Digester {
    h: Fnv1a,
    rows: Vec<(String, u64)>,
}

impl Digester {
    pub(crate) fn new() -> Self {
        Self {
            h: Fnv1a::new(),
            rows: Vec::with_capacity(DATA_TABLES.len()),
        }
    }

    /// Starts the next table.
    pub(crate) fn table(&mut self, name: &str) {
        self.h.write(b"T");
        write_len(&mut self.h, name.len());
        self.h.write(name.as_bytes());
        self.rows.push((name.to_owned(), 0));
    }

    /// Starts the next row of the current table.
    pub(crate) fn row(&mut self) {
        if let Some((_, count)) = self.rows.last_mut() {
            *count += 1;
        }
        self.h.write(b"R");
    }

    /// Hashes the next value of the current row with a type tag and, for
    /// text and blobs, a length, so that no two different contents hash
    /// the same bytes.
    pub(crate) fn value(&mut self, v: ValueRef<'_>) {
        let h = &mut self.h;
        match v {
            ValueRef::Null => h.write(b"n"),
            ValueRef::Integer(v) => {
                h.write(b"i");
                h.write(&v.to_le_bytes());
            }
            ValueRef::Real(v) => {
                h.write(b"r");
                h.write(&v.to_bits().to_le_bytes());
            }
            ValueRef::Text(t) => {
                h.write(b"t");
                write_len(h, t.len());
                h.write(t);
            }
            ValueRef::Blob(b) => {
                h.write(b"b");
                write_len(h, b.len());
                h.write(b);
            }
        }
    }

    pub(crate) fn finish(self) -> Digest {
        Digest {
            rows: self.rows,
            checksum: self.h.finish(),
        }
    }
}

/// Reads every data table in primary-key order and hashes each value.
pub(crate) fn digest(conn: &Connection) -> rusqlite::Result<Digest> {
    let mut d = Digester::new();
    for (table, order) in DATA_TABLES {
        d.table(table);
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY {order}"))?;
        let columns = stmt.column_count();
        let mut it = stmt.query([])?;
        while let Some(row) = it.next()? {
            d.row();
            for i in 0..columns {
                d.value(row.get_ref(i)?);
            }
        }
    }
    Ok(d.finish())
}

/// The digest of rows held in memory, as [`digest`] would compute it for
/// a file holding them (tables in the order given, which is
/// `DATA_TABLES`' when they come from [`crate::export`]).
pub(crate) fn digest_tables(tables: &[Table]) -> Digest {
    let mut d = Digester::new();
    for t in tables {
        d.table(t.name);
        for row in &t.rows {
            d.row();
            for v in row {
                d.value(v.into());
            }
        }
    }
    d.finish()
}

fn write_len(h: &mut Fnv1a, len: usize) {
    h.write(&(len as u64).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::Fnv1a;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        let hash = |s: &str| {
            let mut h = Fnv1a::new();
            h.write(s.as_bytes());
            h.finish()
        };
        assert_eq!(hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash("foobar"), 0x8594_4171_f739_67e8);
    }
}
