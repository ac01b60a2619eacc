//! The on-disk spool: every event is appended here before it is published and removed only
//! after the broker's PUBACK, so a broker outage or an agent crash loses nothing. It is an
//! SQLite file in WAL mode (one row per event, ordered by sequence number), bounded in bytes:
//! when full, the oldest events are dropped, counted and logged as an error.
//!
//! Owns: the spool file. Must not: talk MQTT.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The folder could not be created.
    #[error("cannot create the spool folder {path}: {source}")]
    Create {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("spool database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// One spooled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Sequence number (strictly increasing).
    pub seq: i64,
    /// MQTT topic.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
}

/// What an append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    /// Messages written.
    pub written: u64,
    /// Oldest messages dropped to stay within the bound.
    pub dropped: u64,
}

struct Inner {
    conn: Connection,
    count: u64,
    bytes: u64,
    /// The next row's sequence number.
    next_seq: i64,
}

/// The spool. Cheap operations behind one lock; callers may use it from async code.
pub struct Spool {
    inner: Mutex<Inner>,
    max_bytes: u64,
}

const FILE: &str = "spool.db";

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, bounded to `max_bytes` of payload.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(|source| SpoolError::Create {
            path: dir.to_owned(),
            source,
        })?;
        let conn = Connection::open(dir.join(FILE))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL in WAL mode survives a process crash (kill -9); only power loss can lose the
        // last transactions.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS spool (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                topic TEXT NOT NULL,
                payload BLOB NOT NULL
            )",
        )?;
        let (count, bytes): (i64, i64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM spool",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        // Sequence numbers only grow: past every row this file has held (SQLite keeps the
        // highest in `sqlite_sequence`), and past the clock in microseconds, so a spool lost
        // or deleted with the disk still numbers after the one before it.
        let used: i64 = conn
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'spool'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let clock = chrono::Utc::now().timestamp_micros();
        Ok(Spool {
            inner: Mutex::new(Inner {
                conn,
                count: u64::try_from(count).unwrap_or(0),
                bytes: u64::try_from(bytes).unwrap_or(0),
                next_seq: used.max(clock).saturating_add(1),
            }),
            max_bytes: max_bytes.max(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // SQLite rolls back a transaction interrupted by a panic, so the data stays consistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends messages in one transaction, then drops the oldest while over the bound.
    pub fn append(&self, messages: &[(String, Vec<u8>)]) -> Result<Appended, SpoolError> {
        self.append_with(messages.len(), |i, _| messages[i].clone())
    }

    /// Appends `n` messages in one transaction, each made by `make(i, seq)` from its row's
    /// sequence number (which an event carries as its own), then drops the oldest while over
    /// the bound. Numbers of a failed append are not reused.
    pub fn append_with(
        &self,
        n: usize,
        mut make: impl FnMut(usize, u64) -> (String, Vec<u8>),
    ) -> Result<Appended, SpoolError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let first = inner.next_seq;
        inner.next_seq = first.saturating_add(i64::try_from(n).unwrap_or(i64::MAX));
        let tx = inner.conn.transaction()?;
        let mut added = 0u64;
        {
            let mut stmt =
                tx.prepare_cached("INSERT INTO spool (seq, topic, payload) VALUES (?1, ?2, ?3)")?;
            for i in 0..n {
                let seq = first.saturating_add(i64::try_from(i).unwrap_or(i64::MAX));
                let (topic, payload) = make(i, u64::try_from(seq).unwrap_or(0));
                stmt.execute(params![seq, topic, payload])?;
                added += payload.len() as u64;
            }
        }
        let mut count = inner.count + n as u64;
        let mut bytes = inner.bytes + added;
        let mut dropped = 0u64;
        if bytes > self.max_bytes {
            let mut stmt = tx
                .prepare_cached("SELECT seq, LENGTH(payload) FROM spool ORDER BY seq LIMIT 1024")?;
            let oldest: Vec<(i64, i64)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let mut del = tx.prepare_cached("DELETE FROM spool WHERE seq = ?1")?;
            for (seq, len) in oldest {
                if bytes <= self.max_bytes {
                    break;
                }
                del.execute([seq])?;
                bytes = bytes.saturating_sub(u64::try_from(len).unwrap_or(0));
                count = count.saturating_sub(1);
                dropped += 1;
            }
        }
        tx.commit()?;
        inner.count = count;
        inner.bytes = bytes;
        Ok(Appended {
            written: n as u64,
            dropped,
        })
    }

    /// Up to `limit` messages after `seq`, oldest first.
    pub fn fetch_after(&self, seq: i64, limit: usize) -> Result<Vec<Entry>, SpoolError> {
        let inner = self.lock();
        let mut stmt = inner.conn.prepare_cached(
            "SELECT seq, topic, payload FROM spool WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(
                params![seq, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    Ok(Entry {
                        seq: r.get(0)?,
                        topic: r.get(1)?,
                        payload: r.get(2)?,
                    })
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Removes acknowledged messages (unknown ones, e.g. already dropped, are ignored).
    pub fn remove(&self, seqs: &[i64]) -> Result<(), SpoolError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let tx = inner.conn.transaction()?;
        let (mut count, mut bytes) = (inner.count, inner.bytes);
        {
            let mut stmt =
                tx.prepare_cached("DELETE FROM spool WHERE seq = ?1 RETURNING LENGTH(payload)")?;
            for seq in seqs {
                let len: Option<i64> = stmt.query_row([seq], |r| r.get(0)).ok();
                if let Some(len) = len {
                    count = count.saturating_sub(1);
                    bytes = bytes.saturating_sub(u64::try_from(len).unwrap_or(0));
                }
            }
        }
        tx.commit()?;
        inner.count = count;
        inner.bytes = bytes;
        Ok(())
    }

    /// Messages and payload bytes held now.
    pub fn depth(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.count, inner.bytes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn msg(n: usize) -> (String, Vec<u8>) {
        (format!("t/{n}"), vec![b'x'; 100])
    }

    #[test]
    fn append_fetch_remove_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&[msg(1), msg(2), msg(3)]).unwrap();
        let all = s.fetch_after(0, 10).unwrap();
        assert_eq!(
            all.iter().map(|e| e.topic.as_str()).collect::<Vec<_>>(),
            ["t/1", "t/2", "t/3"]
        );
        assert_eq!(s.fetch_after(all[1].seq, 10).unwrap().len(), 1);
        s.remove(&[all[0].seq, all[2].seq, 999]).unwrap();
        assert_eq!(s.depth(), (1, 100));
        assert_eq!(s.fetch_after(0, 10).unwrap()[0].topic, "t/2");
    }

    #[test]
    fn survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Spool::open(dir.path(), 1 << 20).unwrap();
            s.append(&[msg(1), msg(2)]).unwrap();
        }
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.depth(), (2, 200));
        assert_eq!(s.fetch_after(0, 10).unwrap().len(), 2);
        // New rows continue after the old ones.
        s.append(&[msg(3)]).unwrap();
        let seqs: Vec<i64> = s
            .fetch_after(0, 10)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn sequence_numbers_grow_across_restarts_and_a_lost_spool() {
        let dir = tempfile::tempdir().unwrap();
        let before = chrono::Utc::now().timestamp_micros();
        let mut seen = Vec::new();
        {
            let s = Spool::open(dir.path(), 1 << 20).unwrap();
            s.append_with(3, |i, seq| {
                seen.push(seq);
                msg(i)
            })
            .unwrap();
            // Everything acknowledged: the file is empty but remembers its numbers.
            let rows: Vec<i64> = s
                .fetch_after(0, 10)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect();
            assert_eq!(
                rows,
                seen.iter()
                    .map(|&n| i64::try_from(n).unwrap())
                    .collect::<Vec<_>>()
            );
            s.remove(&rows).unwrap();
        }
        assert!(
            seen[0] > u64::try_from(before).unwrap(),
            "numbered past the clock"
        );
        {
            let s = Spool::open(dir.path(), 1 << 20).unwrap();
            s.append_with(1, |i, seq| {
                seen.push(seq);
                msg(i)
            })
            .unwrap();
        }
        // The spool deleted (a lost disk): numbers still follow the clock, past the old ones.
        std::fs::remove_dir_all(dir.path()).unwrap();
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append_with(1, |i, seq| {
            seen.push(seq);
            msg(i)
        })
        .unwrap();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    }

    #[test]
    fn bounded_by_dropping_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), 350).unwrap();
        let a = s.append(&[msg(1), msg(2), msg(3)]).unwrap();
        assert_eq!(
            a,
            Appended {
                written: 3,
                dropped: 0
            }
        );
        let a = s.append(&[msg(4), msg(5)]).unwrap();
        assert_eq!(a.dropped, 2);
        assert_eq!(s.depth(), (3, 300));
        let topics: Vec<String> = s
            .fetch_after(0, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.topic)
            .collect();
        assert_eq!(topics, ["t/3", "t/4", "t/5"]);
    }
}
