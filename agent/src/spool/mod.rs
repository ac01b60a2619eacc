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

/// What the start-up check of the spool found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartReport {
    /// The file failed its check (empty, unreadable pages): what was wrong.
    pub damaged: Option<String>,
    /// Events read back from a damaged file into the new one.
    pub salvaged: u64,
    /// Events known to be lost: unreadable rows of a damaged file, or rows the file had taken
    /// but no longer holds (its WAL truncated or deleted). Only those not yet published are
    /// really lost; the agent cannot tell which.
    pub lost: u64,
    /// The loss could not be counted (the damaged table could not be counted).
    pub lost_uncounted: bool,
    /// Where the damaged file was kept.
    pub kept: Option<PathBuf>,
}

struct Inner {
    conn: Connection,
    count: u64,
    bytes: u64,
    /// The next row's sequence number.
    next_seq: i64,
    /// Events ever appended (also kept in the file's `meta` table).
    appended: i64,
}

/// The spool. Cheap operations behind one lock; callers may use it from async code.
pub struct Spool {
    inner: Mutex<Inner>,
    max_bytes: u64,
    /// Where the number of events ever appended is noted, outside the database: a spool
    /// that counts fewer than that lost its WAL (or was deleted).
    mark: PathBuf,
    report: StartReport,
}

const FILE: &str = "spool.db";
const MARK: &str = "spool.mark";

/// Why the spool file cannot be trusted (None: missing or sound).
fn check_file(path: &Path) -> Option<String> {
    let len = std::fs::metadata(path).ok()?.len();
    if len == 0 {
        return Some("the file is empty (0 bytes)".into());
    }
    let found = Connection::open(path).and_then(|c| {
        let mut stmt = c.prepare("PRAGMA quick_check(10)")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<Result<Vec<String>, _>>()
    });
    match found {
        Ok(rows) if rows == ["ok"] => None,
        Ok(rows) => Some(rows.join("; ")),
        Err(e) => Some(e.to_string()),
    }
}

/// A spool row: sequence number, topic, payload.
type Row = (i64, String, Vec<u8>);

/// What could be read of a damaged spool: its rows in order, how many it said it held (if it
/// could be counted), and the error reading stopped at.
struct Salvaged {
    rows: Vec<Row>,
    counted: Option<u64>,
    error: Option<String>,
}

/// Reads what can be read of a damaged spool, row by row.
fn salvage(path: &Path) -> Salvaged {
    let Ok(conn) = Connection::open(path) else {
        return Salvaged {
            rows: Vec::new(),
            counted: None,
            error: Some("cannot open it".into()),
        };
    };
    let counted: Option<u64> = conn
        .query_row("SELECT COUNT(*) FROM spool", [], |r| r.get::<_, i64>(0))
        .ok()
        .and_then(|n| u64::try_from(n).ok());
    let mut rows = Vec::new();
    let mut error = None;
    let mut last = i64::MIN;
    // Row by row, so one bad page costs the rows on it, not the rest.
    loop {
        let next = conn.query_row(
            "SELECT seq, topic, payload FROM spool WHERE seq > ?1 ORDER BY seq LIMIT 1",
            [last],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            },
        );
        match next.optional() {
            Ok(Some(row)) => {
                last = row.0;
                rows.push(row);
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    Salvaged {
        rows,
        counted,
        error,
    }
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, bounded to `max_bytes` of payload. A
    /// damaged file is moved aside and what can be read of it is carried over; a file that
    /// holds less than it had taken (its WAL lost) is reported. See [`Spool::start_report`].
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(dir).map_err(|source| SpoolError::Create {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE);
        let mut report = StartReport::default();
        let mut carried = Vec::new();
        if let Some(problem) = check_file(&path) {
            let kept =
                cnaas_shared::runtime::set_aside(&path).map_err(|source| SpoolError::Create {
                    path: path.clone(),
                    source,
                })?;
            let Salvaged {
                rows,
                counted,
                error,
            } = salvage(&kept);
            report.salvaged = rows.len() as u64;
            match counted {
                Some(n) => report.lost = n.saturating_sub(report.salvaged),
                None => report.lost_uncounted = error.is_some(),
            }
            report.damaged = Some(match error {
                Some(e) => format!("{problem} (reading stopped at: {e})"),
                None => problem,
            });
            report.kept = Some(kept);
            carried = rows;
        }
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL in WAL mode survives a process crash (kill -9); only power loss can lose the
        // last transactions.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS spool (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                topic TEXT NOT NULL,
                payload BLOB NOT NULL
            );
            CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);",
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
        // The highest number appended before, as noted outside the file.
        let mark = dir.join(MARK);
        // `<appended> <held>`: events ever appended, and held, when last noted.
        let marked: Option<(i64, i64)> = std::fs::read_to_string(&mark).ok().and_then(|t| {
            let mut it = t.split_whitespace().map(str::parse::<i64>);
            Some((it.next()?.ok()?, it.next()?.ok()?))
        });
        // How many events the file has ever taken, counted in the file and in the mark.
        let appended: i64 = conn
            .query_row("SELECT v FROM meta WHERE k = 'appended'", [], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        let mut appended = appended;
        if report.damaged.is_none()
            && let Some((m, held)) = marked
            && m > appended
        {
            // The mark says more were committed than the file counts: its WAL (or the whole
            // file) was truncated or deleted. Of those, at most the ones held at the last note
            // were still unpublished.
            report.lost = u64::try_from((m - appended).min(held)).unwrap_or(0);
            report.damaged = Some(if appended == 0 {
                "the spool file was deleted or replaced".to_owned()
            } else {
                "the spool's WAL was truncated or deleted: it holds fewer events than it took"
                    .to_owned()
            });
        }
        if let Some((m, _)) = marked
            && m > appended
        {
            // Count on from the mark, so the next start's check holds.
            conn.execute(
                "INSERT INTO meta (k, v) VALUES ('appended', ?1) ON CONFLICT(k) DO UPDATE SET v = ?1",
                [m],
            )?;
            appended = m;
        }
        let highest = carried.last().map_or(used, |r| r.0.max(used));
        let spool = Spool {
            inner: Mutex::new(Inner {
                conn,
                count: u64::try_from(count).unwrap_or(0),
                bytes: u64::try_from(bytes).unwrap_or(0),
                next_seq: highest.max(clock).saturating_add(1),
                appended,
            }),
            max_bytes: max_bytes.max(1),
            mark,
            report,
        };
        if !carried.is_empty() {
            spool.carry_over(&carried)?;
        }
        // The mark from now on describes this file.
        let (appended, held) = {
            let inner = spool.lock();
            (inner.appended, inner.count)
        };
        spool.note_mark(appended, held);
        Ok(spool)
    }

    /// What the start-up check found (nothing wrong: the default).
    pub fn start_report(&self) -> &StartReport {
        &self.report
    }

    /// Puts salvaged rows into the new file under their old numbers (their events carry them).
    fn carry_over(&self, rows: &[Row]) -> Result<(), SpoolError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let tx = inner.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO spool (seq, topic, payload) VALUES (?1, ?2, ?3)",
            )?;
            for (seq, topic, payload) in rows {
                stmt.execute(params![seq, topic, payload])?;
                inner.count += 1;
                inner.bytes += payload.len() as u64;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Notes how many events were ever appended and are held, outside the database (written aside and
    /// renamed, so it is whole or absent). A failure only weakens the next start's check.
    fn note_mark(&self, appended: i64, held: u64) {
        let tmp = self.mark.with_extension("mark.tmp");
        let written = std::fs::write(&tmp, format!("{appended} {held}\n"))
            .and_then(|()| std::fs::rename(&tmp, &self.mark));
        if let Err(e) = written {
            tracing::debug!(error = %e, "Cannot note the spool's mark.");
        }
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
        let appended: i64 = tx
            .prepare_cached(
                "INSERT INTO meta (k, v) VALUES ('appended', ?1) ON CONFLICT(k) DO UPDATE SET v = v + ?1 RETURNING v",
            )?
            .query_row([i64::try_from(n).unwrap_or(i64::MAX)], |r| r.get(0))?;
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
        inner.appended = appended;
        let held = inner.count;
        drop(guard);
        if n > 0 {
            self.note_mark(appended, held);
        }
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
        let (appended, held) = (inner.appended, inner.count);
        drop(guard);
        self.note_mark(appended, held);
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
    fn a_sound_spool_reports_nothing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Spool::open(dir.path(), 1 << 20).unwrap();
            s.append(&[msg(1), msg(2)]).unwrap();
            let rows = s.fetch_after(0, 10).unwrap();
            s.remove(&[rows[0].seq]).unwrap();
        }
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.start_report(), &StartReport::default());
        assert_eq!(s.depth().0, 1);
    }

    #[test]
    fn a_lost_wal_or_file_is_reported_with_how_much() {
        let first = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Spool::open(first.path(), 1 << 20).unwrap();
            s.append(&[msg(1), msg(2)]).unwrap();
            // Checkpointed: these two are in the main file.
            s.lock()
                .conn
                .pragma_update(None, "wal_checkpoint", "TRUNCATE")
                .unwrap();
            s.append(&[msg(3), msg(4), msg(5)]).unwrap();
            // The last three are in the WAL only: the main file and the mark without it are
            // what a crash and a lost WAL leave.
            for f in ["spool.db", "spool.mark"] {
                std::fs::copy(first.path().join(f), dir.path().join(f)).unwrap();
            }
        }
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        let r = s.start_report().clone();
        assert!(r.damaged.as_deref().unwrap().contains("WAL"), "{r:?}");
        assert_eq!(r.lost, 3);
        assert_eq!(s.depth().0, 2);
        drop(s);
        // The whole file deleted: the events held at the last note are reported.
        for f in ["spool.db", "spool.db-wal", "spool.db-shm"] {
            let _ = std::fs::remove_file(dir.path().join(f));
        }
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        let r = s.start_report();
        assert!(r.damaged.as_deref().unwrap().contains("deleted"), "{r:?}");
        assert_eq!(r.lost, 2);
        drop(s);
        // And the next start is quiet again.
        assert_eq!(
            Spool::open(dir.path(), 1 << 20).unwrap().start_report(),
            &StartReport::default()
        );
    }

    #[test]
    fn a_damaged_file_is_kept_aside_and_what_can_be_read_carried_over() {
        let dir = tempfile::tempdir().unwrap();
        let seqs: Vec<i64>;
        {
            let s = Spool::open(dir.path(), 1 << 30).unwrap();
            for i in 0..400 {
                s.append(&[(format!("t/{i}"), vec![b'x'; 3000])]).unwrap();
            }
            seqs = s
                .fetch_after(0, 1000)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect();
            s.lock()
                .conn
                .pragma_update(None, "wal_checkpoint", "TRUNCATE")
                .unwrap();
        }
        assert_eq!(seqs.len(), 400);
        let path = dir.path().join("spool.db");
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() * 3 / 4;
        for b in &mut bytes[at..at + 4096] {
            *b = 0xa5;
        }
        std::fs::write(&path, &bytes).unwrap();
        let s = Spool::open(dir.path(), 1 << 30).unwrap();
        let r = s.start_report().clone();
        assert!(r.damaged.is_some(), "{r:?}");
        assert!(r.kept.as_ref().unwrap().exists());
        assert!(r.salvaged > 0 && r.salvaged < 400, "{r:?}");
        assert!(r.lost > 0 || r.lost_uncounted, "{r:?}");
        let held = s.fetch_after(0, 1000).unwrap();
        assert_eq!(held.len() as u64, r.salvaged);
        // Carried over under their own numbers, in order; new ones come after.
        assert!(held.iter().all(|e| seqs.contains(&e.seq)));
        s.append(&[msg(9)]).unwrap();
        let all = s.fetch_after(0, 1000).unwrap();
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
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
