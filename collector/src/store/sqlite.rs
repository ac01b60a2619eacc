//! SQLite store: one file, WAL mode, a writer connection for the engine and a pool of reader
//! connections for the API and the dispatcher (WAL lets them work side by side: a slow read
//! never holds up ingestion, and readers do not queue behind one another).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, Utc};
use cnaas_shared::Event;
use cnaas_shared::role::PortRole;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{
    About, DETAIL_EVENTS, DeadLetter, Delivery, DeviceOwner, EventFilter, HistoryEntry, Incident,
    IncidentAlarm, IncidentDetail, IncidentFilter, IncidentImpact, IncidentTx, NewIncident,
    NewNotification, Notification, NotificationFilter, OpenMember, OutboxTx, Relation, Store,
    StoreError, StoredEvent, ToldOf,
};

/// Schema migrations, applied in order; `PRAGMA user_version` says how many have run.
/// Never edit one that has shipped: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: events, incidents with history, dead letters, agent status.
    r"
    CREATE TABLE events (
        id TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        device TEXT NOT NULL,
        kind TEXT NOT NULL,
        source TEXT NOT NULL,
        observed_at TEXT NOT NULL,
        received_at TEXT NOT NULL,
        if_index INTEGER,
        if_name TEXT,
        if_alias TEXT,
        role TEXT,
        attrs TEXT NOT NULL,
        incident_id INTEGER REFERENCES incidents(id)
    );
    CREATE INDEX events_device_time ON events(device, observed_at);
    CREATE INDEX events_incident ON events(incident_id);
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        alarm_key TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved', 'closed')),
        severity INTEGER NOT NULL CHECK (severity BETWEEN 1 AND 5),
        device TEXT NOT NULL,
        if_index INTEGER,
        if_name TEXT,
        if_alias TEXT,
        role TEXT,
        site TEXT,
        customer TEXT,
        summary TEXT NOT NULL,
        opened_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        resolved_at TEXT
    );
    CREATE UNIQUE INDEX incidents_one_open_per_alarm ON incidents(alarm_key)
        WHERE state IN ('open', 'acknowledged');
    CREATE INDEX incidents_state ON incidents(state, id);
    CREATE INDEX incidents_customer ON incidents(customer, id);
    CREATE TABLE incident_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        incident_id INTEGER NOT NULL REFERENCES incidents(id),
        at TEXT NOT NULL,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        event_id TEXT,
        detail TEXT
    );
    CREATE INDEX incident_history_incident ON incident_history(incident_id, id);
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at TEXT NOT NULL,
        topic TEXT NOT NULL,
        agent TEXT,
        reason TEXT NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE TABLE agent_status (
        agent TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        payload TEXT NOT NULL
    );
    ",
    // 2: alarms as members of incidents (grouping, shadow), flap transition counts.
    r"
    CREATE TABLE incident_alarms (
        incident_id INTEGER NOT NULL REFERENCES incidents(id),
        alarm_key TEXT NOT NULL,
        relation TEXT NOT NULL CHECK (relation IN ('root', 'member', 'shadowed')),
        active INTEGER NOT NULL,
        since TEXT NOT NULL,
        cleared_at TEXT,
        PRIMARY KEY (incident_id, alarm_key)
    );
    CREATE INDEX incident_alarms_active ON incident_alarms(active, incident_id);
    ALTER TABLE incidents ADD COLUMN transitions INTEGER;
    ",
    // 3: the escalated flag and people's actions.
    r"
    ALTER TABLE incidents ADD COLUMN escalated INTEGER NOT NULL DEFAULT 0;
    ",
    // 4: the maintenance flag.
    r"
    ALTER TABLE incidents ADD COLUMN in_maintenance INTEGER NOT NULL DEFAULT 0;
    ",
    // 5: alarms in quarantine, so a restart does not forget them.
    r"
    CREATE TABLE pending_alarms (alarm_key TEXT PRIMARY KEY, since TEXT NOT NULL);
    ",
    // 6: planned and emergency changes.
    r"
    CREATE TABLE changes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        description TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('planned', 'emergency')),
        starts_at TEXT NOT NULL,
        ends_at TEXT NOT NULL,
        devices TEXT NOT NULL,
        customers TEXT NOT NULL,
        notice_at TEXT NOT NULL,
        created_by TEXT NOT NULL
    );
    CREATE INDEX changes_window ON changes(starts_at, ends_at);
    ",
    // 7: the notification outbox (written with the incident change that causes it).
    r"
    CREATE TABLE notifications (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        about TEXT NOT NULL CHECK (about IN ('incident', 'change', 'change_order')),
        about_id INTEGER NOT NULL,
        customer TEXT,
        transition TEXT NOT NULL,
        audience TEXT NOT NULL,
        channel TEXT NOT NULL,
        recipient TEXT NOT NULL,
        language TEXT NOT NULL,
        detail TEXT,
        state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'superseded')),
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        due_at TEXT NOT NULL,
        delivered_at TEXT,
        last_error TEXT,
        subject TEXT,
        body TEXT,
        payload TEXT
    );
    CREATE INDEX notifications_due ON notifications(state, due_at);
    CREATE INDEX notifications_about ON notifications(about, about_id, id);
    ",
    // 8: rescheduled and cancelled changes, expected impact; customers' change orders.
    r"
    ALTER TABLE changes ADD COLUMN state TEXT NOT NULL DEFAULT 'scheduled'
        CHECK (state IN ('scheduled', 'cancelled'));
    ALTER TABLE changes ADD COLUMN impact TEXT NOT NULL DEFAULT '';
    ALTER TABLE changes ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE changes ADD COLUMN reason TEXT;
    CREATE TABLE change_orders (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        customer TEXT NOT NULL,
        requested_by TEXT NOT NULL,
        contact TEXT NOT NULL,
        title TEXT NOT NULL,
        description TEXT NOT NULL,
        wanted_from TEXT,
        wanted_to TEXT,
        state TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    ",
    // 9: an incident taken into another is `merged` (not resolved) and names the one it went
    // into; a notification delivered after it had failed is marked `delayed`. SQLite cannot
    // change a CHECK constraint, so the incidents table is rebuilt (foreign keys are off
    // while migrations run, see `SqliteStore::open`).
    r"
    CREATE TABLE incidents_new (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        alarm_key TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved', 'closed', 'merged')),
        severity INTEGER NOT NULL CHECK (severity BETWEEN 1 AND 5),
        device TEXT NOT NULL,
        if_index INTEGER,
        if_name TEXT,
        if_alias TEXT,
        role TEXT,
        site TEXT,
        customer TEXT,
        summary TEXT NOT NULL,
        opened_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        resolved_at TEXT,
        transitions INTEGER,
        escalated INTEGER NOT NULL DEFAULT 0,
        in_maintenance INTEGER NOT NULL DEFAULT 0,
        merged_into INTEGER
    );
    INSERT INTO incidents_new (id, kind, alarm_key, state, severity, device, if_index, if_name, if_alias, role, site, customer, summary, opened_at, updated_at, resolved_at, transitions, escalated, in_maintenance)
        SELECT id, kind, alarm_key, state, severity, device, if_index, if_name, if_alias, role, site, customer, summary, opened_at, updated_at, resolved_at, transitions, escalated, in_maintenance FROM incidents;
    DROP TABLE incidents;
    ALTER TABLE incidents_new RENAME TO incidents;
    CREATE UNIQUE INDEX incidents_one_open_per_alarm ON incidents(alarm_key)
        WHERE state IN ('open', 'acknowledged');
    CREATE INDEX incidents_state ON incidents(state, id);
    CREATE INDEX incidents_customer ON incidents(customer, id);
    CREATE INDEX incidents_merged_into ON incidents(merged_into) WHERE merged_into IS NOT NULL;
    ALTER TABLE notifications ADD COLUMN delayed INTEGER NOT NULL DEFAULT 0;
    ",
    // 10: which agent may speak for a device (pinned at first sight when the inventory does
    // not say); the agent's sequence number of each event; a notification is marked in
    // flight before each attempt, so a crash's repeats are known and counted.
    r"
    CREATE TABLE device_owners (
        device TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        pinned_at TEXT NOT NULL
    );
    ALTER TABLE events ADD COLUMN seq INTEGER;
    ALTER TABLE notifications ADD COLUMN in_flight_since TEXT;
    ALTER TABLE notifications ADD COLUMN repeats INTEGER NOT NULL DEFAULT 0;
    ",
    // 11: events read newest first along an index, from a cursor (keyset paging), by
    // device, by incident or all.
    r"
    CREATE INDEX events_time ON events(observed_at, id);
    DROP INDEX events_device_time;
    CREATE INDEX events_device_time ON events(device, observed_at, id);
    DROP INDEX events_incident;
    CREATE INDEX events_incident_time ON events(incident_id, observed_at, id);
    ",
    // 12: the impact of a device incident on the campus (topology: isolated, degraded).
    r"
    ALTER TABLE incidents ADD COLUMN impact TEXT;
    CREATE TABLE lldp_snapshots (
        device TEXT PRIMARY KEY,
        event_id TEXT NOT NULL,
        agent TEXT NOT NULL,
        observed_at TEXT NOT NULL,
        attrs TEXT NOT NULL
    );
    ",
];

/// Dead letters kept at most (the newest); each keeps at most 4 KiB of payload, so the table
/// stays under half a gigabyte whatever is thrown at the broker.
pub const DEAD_LETTER_CAP: i64 = 100_000;
/// Dead letters older than this are pruned.
pub const DEAD_LETTER_DAYS: chrono::TimeDelta = chrono::TimeDelta::days(30);
/// Pruning runs on every this many dead letters.
const DEAD_LETTER_PRUNE_EVERY: i64 = 1_000;

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_ts(table: &'static str, s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt {
            table,
            reason: format!("bad timestamp `{s}`: {e}"),
        })
}

/// The SQLite store.
pub struct SqliteStore {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    /// Where the next reader search starts (spreads the load).
    next_reader: std::sync::atomic::AtomicUsize,
    /// Bumped on every released pin.
    owners_generation: std::sync::atomic::AtomicU64,
}

/// Reader connections: one per core and a few more for requests that wait on the disk.
fn reader_count() -> usize {
    std::thread::available_parallelism()
        .map_or(4, |n| n.get() * 2)
        .clamp(4, 16)
}

/// What opening does with a database file that is empty or fails its integrity check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDamage {
    /// Refuse to open it ([`StoreError::Damaged`]): nobody runs on a store that lost data
    /// without knowing.
    Refuse,
    /// Move it aside (with its WAL) as `<file>.damaged-<time>` and begin an empty one.
    MoveAside,
}

/// Why the file at `path` cannot be trusted (None: missing, so new, or sound). An existing
/// empty file is a truncation (SQLite writes its header at creation); the rest is SQLite's
/// `quick_check` (every page and index entry readable and consistent).
pub fn check_file(path: &Path) -> Result<Option<String>, StoreError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::Create {
                path: path.to_owned(),
                source,
            });
        }
    };
    if meta.len() == 0 {
        return Ok(Some(
            "the file is empty (0 bytes): truncated, or never written".into(),
        ));
    }
    let started = std::time::Instant::now();
    let found = Connection::open(path).and_then(|c| {
        let mut stmt = c.prepare("PRAGMA quick_check(10)")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<Result<Vec<String>, _>>()
    });
    tracing::info!(path = %path.display(), ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX), "Store integrity checked.");
    Ok(match found {
        Ok(rows) if rows == ["ok"] => None,
        Ok(rows) => Some(rows.join("; ")),
        Err(e) => Some(e.to_string()),
    })
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and brings its schema up to date; an
    /// empty or damaged file is refused.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(path, OnDamage::Refuse)
    }

    /// Opens the database file, checking it first; `on_damage` says what to do with one
    /// that is empty or fails the check.
    pub fn open_with(path: &Path, on_damage: OnDamage) -> Result<SqliteStore, StoreError> {
        if let Some(problem) = check_file(path)? {
            match on_damage {
                OnDamage::Refuse => {
                    return Err(StoreError::Damaged {
                        path: path.to_owned(),
                        problem,
                    });
                }
                OnDamage::MoveAside => {
                    let kept = cnaas_shared::runtime::set_aside(path).map_err(|source| {
                        StoreError::Create {
                            path: path.to_owned(),
                            source,
                        }
                    })?;
                    tracing::error!(path = %path.display(), kept = %kept.display(), problem = %problem, "The store was damaged: moved aside, beginning an empty one (incidents, events and the outbox of the old one are not in it).");
                }
            }
        } else if !path.exists() {
            tracing::info!(path = %path.display(), "No store yet: creating it.");
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Create {
                path: dir.to_owned(),
                source,
            })?;
        }
        let mut writer = Connection::open(path)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        writer.busy_timeout(std::time::Duration::from_secs(5))?;
        // Foreign keys are switched on only after the migrations: a migration that rebuilds a
        // table (SQLite's way to change a constraint) must be able to drop the old one.
        migrate(&mut writer)?;
        writer.pragma_update(None, "foreign_keys", "ON")?;
        let mut readers = Vec::new();
        for _ in 0..reader_count() {
            let reader = Connection::open(path)?;
            reader.busy_timeout(std::time::Duration::from_secs(5))?;
            readers.push(Mutex::new(reader));
        }
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            readers,
            next_reader: std::sync::atomic::AtomicUsize::new(0),
            owners_generation: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-applied transaction behind
        // (SQLite rolls it back), so a poisoned lock is still safe to use.
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A free reader connection, or (all busy) the next one in turn, waited for.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        let n = self.readers.len();
        let start = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for i in 0..n {
            match self.readers[(start + i) % n].try_lock() {
                Ok(guard) => return guard,
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        self.readers[start % n]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Applies the migrations the file has not seen yet, each in its own transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if current > supported {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(i + 1).unwrap_or(i64::MAX),
        )?;
        tx.commit()?;
        tracing::info!(version = i + 1, "Applied store migration.");
    }
    Ok(())
}

const INCIDENT_COLUMNS: &str = "id, kind, state, severity, device, if_index, if_name, if_alias, role, site, customer, summary, opened_at, updated_at, resolved_at, transitions, escalated, in_maintenance, merged_into, impact";

fn incident_from_row(r: &Row<'_>) -> rusqlite::Result<(Incident, [String; 2], Option<String>)> {
    Ok((
        Incident {
            id: r.get(0)?,
            kind: r.get(1)?,
            state: r.get(2)?,
            severity: r.get(3)?,
            device: r.get(4)?,
            if_index: r.get(5)?,
            if_name: r.get(6)?,
            if_alias: r.get(7)?,
            role: r.get(8)?,
            site: r.get(9)?,
            customer: r.get(10)?,
            summary: r.get(11)?,
            opened_at: DateTime::<Utc>::MIN_UTC,
            updated_at: DateTime::<Utc>::MIN_UTC,
            resolved_at: None,
            transitions: r.get(15)?,
            escalated: r.get(16)?,
            in_maintenance: r.get(17)?,
            merged_into: r.get(18)?,
            impact: r
                .get::<_, Option<String>>(19)?
                .and_then(|s| serde_json::from_str(&s).ok()),
        },
        [r.get(12)?, r.get(13)?],
        r.get(14)?,
    ))
}

fn finish_incident(
    (mut i, [opened, updated], resolved): (Incident, [String; 2], Option<String>),
) -> Result<Incident, StoreError> {
    i.opened_at = parse_ts("incidents", &opened)?;
    i.updated_at = parse_ts("incidents", &updated)?;
    i.resolved_at = resolved.map(|s| parse_ts("incidents", &s)).transpose()?;
    Ok(i)
}

const EVENT_COLUMNS: &str = "id, agent, device, kind, source, observed_at, received_at, if_index, if_name, if_alias, role, attrs, incident_id";

type EventRow = (StoredEvent, [String; 3]);

fn event_from_row(r: &Row<'_>) -> rusqlite::Result<EventRow> {
    Ok((
        StoredEvent {
            id: r.get(0)?,
            agent: r.get(1)?,
            device: r.get(2)?,
            kind: r.get(3)?,
            source: r.get(4)?,
            observed_at: DateTime::<Utc>::MIN_UTC,
            received_at: DateTime::<Utc>::MIN_UTC,
            if_index: r.get(7)?,
            if_name: r.get(8)?,
            if_alias: r.get(9)?,
            role: r.get(10)?,
            attrs: serde_json::Value::Null,
            incident_id: r.get(12)?,
        },
        [r.get(5)?, r.get(6)?, r.get(11)?],
    ))
}

fn finish_event((mut e, [observed, received, attrs]): EventRow) -> Result<StoredEvent, StoreError> {
    e.observed_at = parse_ts("events", &observed)?;
    e.received_at = parse_ts("events", &received)?;
    e.attrs = serde_json::from_str(&attrs).map_err(|err| StoreError::Corrupt {
        table: "events",
        reason: format!("attrs of {}: {err}", e.id),
    })?;
    Ok(e)
}

/// Inserts an event; false when its id was stored before.
fn insert_event(
    tx: &rusqlite::Transaction<'_>,
    event: &Event,
    role: Option<PortRole>,
    received_at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let attrs = serde_json::Value::Object(event.attrs.clone()).to_string();
    let inserted = tx
        .prepare_cached(
            "INSERT INTO events (id, agent, device, kind, source, observed_at, received_at, if_index, if_name, if_alias, role, attrs, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT(id) DO NOTHING",
        )?
        .execute(params![
            event.id.to_string(),
            event.agent,
            event.device,
            event.kind.as_str(),
            event.source.as_str(),
            ts(event.observed_at),
            ts(received_at),
            event.if_index,
            event.if_name,
            event.if_alias,
            role.map(PortRole::as_str),
            attrs,
            // SQLite integers are signed: a sequence number above i64::MAX is kept as NULL.
            event.seq.and_then(|n| i64::try_from(n).ok()),
        ])?;
    // A device's latest LLDP snapshot is kept apart, so the topology is rebuilt at start
    // without reading the event history.
    if inserted > 0 && event.kind == cnaas_shared::EventKind::Neighbours {
        tx.prepare_cached(
            "INSERT INTO lldp_snapshots (device, event_id, agent, observed_at, attrs) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(device) DO UPDATE SET event_id = excluded.event_id, agent = excluded.agent,
                 observed_at = excluded.observed_at, attrs = excluded.attrs
             WHERE excluded.observed_at >= lldp_snapshots.observed_at",
        )?
        .execute(params![
            event.device,
            event.id.to_string(),
            event.agent,
            ts(event.observed_at),
            attrs
        ])?;
    }
    Ok(inserted > 0)
}

/// The engine's transaction on SQLite.
struct SqliteTx<'a, 'c> {
    tx: &'a rusqlite::Transaction<'c>,
}

impl IncidentTx for SqliteTx<'_, '_> {
    fn device_owner(&mut self, device: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .tx
            .prepare_cached("SELECT agent FROM device_owners WHERE device = ?1")?
            .query_row([device], |r| r.get(0))
            .optional()?)
    }

    fn pin_owner(
        &mut self,
        device: &str,
        agent: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO device_owners (device, agent, pinned_at) VALUES (?1, ?2, ?3) ON CONFLICT(device) DO NOTHING",
            )?
            .execute(params![device, agent, ts(at)])?;
        Ok(())
    }

    fn insert_event(
        &mut self,
        event: &Event,
        role: Option<PortRole>,
        received_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        insert_event(self.tx, event, role, received_at)
    }

    fn open(&mut self, new: &NewIncident, at: DateTime<Utc>) -> Result<i64, StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO incidents (kind, alarm_key, state, severity, device, if_index, if_name, if_alias, role, site, customer, summary, opened_at, updated_at)
                 VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)",
            )?
            .execute(params![
                new.kind.as_str(),
                new.key,
                new.severity,
                new.device,
                new.if_index,
                new.if_name,
                new.if_alias,
                new.role.map(PortRole::as_str),
                new.site,
                new.customer,
                new.summary,
                ts(at),
            ])?;
        let id = self.tx.last_insert_rowid();
        self.add_member(id, &new.key, Relation::Root, at)?;
        Ok(id)
    }

    fn add_member(
        &mut self,
        incident: i64,
        alarm: &str,
        relation: Relation,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO incident_alarms (incident_id, alarm_key, relation, active, since) VALUES (?1, ?2, ?3, 1, ?4)
                 ON CONFLICT(incident_id, alarm_key) DO UPDATE SET active = 1, cleared_at = NULL",
            )?
            .execute(params![incident, alarm, relation.as_str(), ts(at)])?;
        Ok(())
    }

    fn clear_member(
        &mut self,
        incident: i64,
        alarm: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("UPDATE incident_alarms SET active = 0, cleared_at = ?3 WHERE incident_id = ?1 AND alarm_key = ?2")?
            .execute(params![incident, alarm, ts(at)])?;
        Ok(())
    }

    fn note(
        &mut self,
        incident: i64,
        at: DateTime<Utc>,
        action: &str,
        event: Option<&str>,
        detail: &str,
    ) -> Result<(), StoreError> {
        if let Some(id) = event {
            self.tx
                .prepare_cached("UPDATE events SET incident_id = ?1 WHERE id = ?2")?
                .execute(params![incident, id])?;
        }
        self.tx
            .prepare_cached(
                "INSERT INTO incident_history (incident_id, at, action, actor, event_id, detail) VALUES (?1, ?2, ?3, 'system', ?4, ?5)",
            )?
            .execute(params![incident, ts(at), action, event, detail])?;
        self.tx
            .prepare_cached("UPDATE incidents SET updated_at = ?2 WHERE id = ?1")?
            .execute(params![incident, ts(at)])?;
        Ok(())
    }

    fn resolve(&mut self, incident: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("UPDATE incidents SET state = 'resolved', resolved_at = ?2, updated_at = ?2 WHERE id = ?1")?
            .execute(params![incident, ts(at)])?;
        Ok(())
    }

    fn reopen(&mut self, incident: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("UPDATE incidents SET state = 'open', resolved_at = NULL, updated_at = ?2 WHERE id = ?1")?
            .execute(params![incident, ts(at)])?;
        Ok(())
    }

    fn extend_first(&mut self, incident: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("UPDATE incidents SET opened_at = ?2 WHERE id = ?1 AND opened_at > ?2")?
            .execute(params![incident, ts(at)])?;
        Ok(())
    }

    fn merge(&mut self, incident: i64, into: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("UPDATE incidents SET state = 'merged', merged_into = ?2, resolved_at = ?3, updated_at = ?3 WHERE id = ?1")?
            .execute(params![incident, into, ts(at)])?;
        self.tx
            .prepare_cached("UPDATE incidents SET merged_into = ?2 WHERE merged_into = ?1")?
            .execute(params![incident, into])?;
        Ok(())
    }

    fn set_impact(
        &mut self,
        incident: i64,
        severity: u8,
        summary: &str,
        impact: &IncidentImpact,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(impact).unwrap_or_default();
        self.tx
            .prepare_cached(
                "UPDATE incidents SET severity = ?2, summary = ?3, impact = ?4 WHERE id = ?1",
            )?
            .execute(params![incident, severity.clamp(1, 5), summary, json])?;
        Ok(())
    }

    fn set_transitions(&mut self, incident: i64, transitions: u32) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("UPDATE incidents SET transitions = ?2 WHERE id = ?1")?
            .execute(params![incident, transitions])?;
        Ok(())
    }

    fn active_members(&mut self, incident: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT alarm_key FROM incident_alarms WHERE incident_id = ?1 AND active = 1 ORDER BY alarm_key",
        )?;
        let rows = stmt.query_map([incident], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn state(&mut self, incident: i64) -> Result<Option<(String, bool)>, StoreError> {
        Ok(self
            .tx
            .prepare_cached("SELECT state, escalated FROM incidents WHERE id = ?1")?
            .query_row([incident], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    fn set_state(
        &mut self,
        incident: i64,
        state: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("UPDATE incidents SET state = ?2, updated_at = ?3 WHERE id = ?1")?
            .execute(params![incident, state, ts(at)])?;
        Ok(())
    }

    fn set_escalated(&mut self, incident: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("UPDATE incidents SET escalated = 1, updated_at = ?2 WHERE id = ?1")?
            .execute(params![incident, ts(at)])?;
        Ok(())
    }

    fn set_pending(&mut self, alarm: &str, since: DateTime<Utc>) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("INSERT INTO pending_alarms (alarm_key, since) VALUES (?1, ?2) ON CONFLICT(alarm_key) DO UPDATE SET since = excluded.since")?
            .execute(params![alarm, ts(since)])?;
        Ok(())
    }

    fn clear_pending(&mut self, alarm: &str) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("DELETE FROM pending_alarms WHERE alarm_key = ?1")?
            .execute([alarm])?;
        Ok(())
    }

    fn set_in_maintenance(&mut self, incident: i64, on: bool) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("UPDATE incidents SET in_maintenance = ?2 WHERE id = ?1")?
            .execute(params![incident, on])?;
        Ok(())
    }

    fn note_by(
        &mut self,
        incident: i64,
        at: DateTime<Utc>,
        action: &str,
        actor: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO incident_history (incident_id, at, action, actor, event_id, detail) VALUES (?1, ?2, ?3, ?4, NULL, ?5)",
            )?
            .execute(params![incident, ts(at), action, actor, detail])?;
        self.tx
            .prepare_cached("UPDATE incidents SET updated_at = ?2 WHERE id = ?1")?
            .execute(params![incident, ts(at)])?;
        Ok(())
    }

    fn outbox(&mut self) -> Option<&mut dyn OutboxTx> {
        Some(self)
    }
}

impl OutboxTx for SqliteTx<'_, '_> {
    fn incident(&mut self, id: i64) -> Result<Option<Incident>, StoreError> {
        let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1");
        self.tx
            .prepare_cached(&sql)?
            .query_row([id], incident_from_row)
            .optional()?
            .map(finish_incident)
            .transpose()
    }

    fn history_count(&mut self, incident: i64, action: &str) -> Result<u32, StoreError> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT COUNT(*) FROM incident_history WHERE incident_id = ?1 AND action = ?2",
            )?
            .query_row(params![incident, action], |r| r.get(0))?)
    }

    fn enqueue(&mut self, n: &NewNotification) -> Result<bool, StoreError> {
        let inserted = self
            .tx
            .prepare_cached(
                "INSERT INTO notifications (key, about, about_id, customer, transition, audience, channel, recipient, language, detail, state, created_at, due_at)
                 VALUES (?1, ?11, ?2, ?12, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?10) ON CONFLICT(key) DO NOTHING",
            )?
            .execute(params![
                n.key,
                n.about_id,
                n.transition,
                n.audience,
                n.channel,
                n.recipient,
                n.language,
                n.detail,
                ts(n.created_at),
                ts(n.due_at),
                n.about.as_str(),
                n.customer,
            ])?;
        Ok(inserted > 0)
    }

    fn opening_untold(&mut self, incident: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        const OPENING: &str = "(transition LIKE 'opened-%' OR transition LIKE 'reopened-%' OR transition LIKE 'maintenance_ended-%' OR transition LIKE 'worsened-%')";
        self.tx
            .prepare_cached(&format!(
                "UPDATE notifications SET state = 'superseded', last_error = 'resolved before it was due', delivered_at = ?2
                 WHERE about = 'incident' AND about_id = ?1 AND state = 'pending' AND attempts = 0 AND {OPENING}"
            ))?
            .execute(params![incident, ts(at)])?;
        let latest: Option<String> = self
            .tx
            .prepare_cached(&format!(
                "SELECT state FROM notifications WHERE about = 'incident' AND about_id = ?1 AND {OPENING} ORDER BY id DESC LIMIT 1"
            ))?
            .query_row([incident], |r| r.get(0))
            .optional()?;
        Ok(latest.as_deref() == Some("superseded"))
    }

    fn fail(&mut self, id: i64, error: &str) -> Result<Option<Notification>, StoreError> {
        let changed = self
            .tx
            .prepare_cached(
                "UPDATE notifications SET state = 'failed', last_error = ?2 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![id, error])?;
        if changed == 0 {
            return Ok(None);
        }
        let sql = format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = ?1");
        self.tx
            .prepare_cached(&sql)?
            .query_row([id], notification_from_row)
            .optional()?
            .map(finish_notification)
            .transpose()
    }

    fn told_of(&mut self, incident: i64) -> Result<Vec<ToldOf>, StoreError> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT DISTINCT n.audience, n.channel, n.recipient, n.language, n.customer
             FROM notifications n JOIN incidents i ON i.id = n.about_id
             WHERE n.about = 'incident' AND (i.id = ?1 OR i.merged_into = ?1)
               AND n.state IN ('pending', 'delivered', 'failed')
               AND (n.transition LIKE 'opened-%' OR n.transition LIKE 'reopened-%' OR n.transition LIKE 'maintenance_ended-%' OR n.transition LIKE 'worsened-%')
             ORDER BY n.audience, n.channel, n.recipient",
        )?;
        let rows = stmt.query_map([incident], |r| {
            Ok(ToldOf {
                audience: r.get(0)?,
                channel: r.get(1)?,
                recipient: r.get(2)?,
                language: r.get(3)?,
                customer: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn retry_failed(&mut self, channel: &str, at: DateTime<Utc>) -> Result<usize, StoreError> {
        Ok(self
            .tx
            .prepare_cached(
                "UPDATE notifications SET due_at = ?2 WHERE channel = ?1 AND state = 'failed'",
            )?
            .execute(params![channel, ts(at)])?)
    }

    fn open_by_key(&mut self, key: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT id FROM incidents WHERE alarm_key = ?1 AND state IN ('open', 'acknowledged')",
            )?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    fn insert_change(&mut self, c: &crate::changes::Change) -> Result<i64, StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO changes (title, description, kind, starts_at, ends_at, devices, customers, notice_at, created_by, state, impact, revision, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                c.title,
                c.description,
                change_kind(c),
                ts(c.starts_at),
                ts(c.ends_at),
                serde_json::to_string(&c.devices).unwrap_or_default(),
                serde_json::to_string(&c.customers).unwrap_or_default(),
                ts(c.notice_at),
                c.created_by,
                change_state(c),
                c.impact,
                c.revision,
                c.reason,
            ])?;
        Ok(self.tx.last_insert_rowid())
    }

    fn update_change(&mut self, c: &crate::changes::Change) -> Result<(), StoreError> {
        self.tx
            .prepare_cached(
                "UPDATE changes SET starts_at = ?2, ends_at = ?3, notice_at = ?4, state = ?5, revision = ?6, reason = ?7 WHERE id = ?1",
            )?
            .execute(params![
                c.id,
                ts(c.starts_at),
                ts(c.ends_at),
                ts(c.notice_at),
                change_state(c),
                c.revision,
                c.reason,
            ])?;
        Ok(())
    }

    fn insert_change_order(&mut self, o: &crate::changes::ChangeOrder) -> Result<i64, StoreError> {
        self.tx
            .prepare_cached(
                "INSERT INTO change_orders (customer, requested_by, contact, title, description, wanted_from, wanted_to, state, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                o.customer,
                o.requested_by,
                o.contact,
                o.title,
                o.description,
                o.wanted_from.map(ts),
                o.wanted_to.map(ts),
                o.state,
                ts(o.created_at),
            ])?;
        Ok(self.tx.last_insert_rowid())
    }
}

/// The notifications the dispatcher works on: pending ones, and failed ones while what they
/// are about is open (an incident open or acknowledged; a change notice or order for two
/// weeks), tried again now and then and delivered late.
const DELIVERABLE: &str = "(state = 'pending' OR (state = 'failed' AND (
        (about = 'incident' AND EXISTS (SELECT 1 FROM incidents i WHERE i.id = about_id AND i.state IN ('open', 'acknowledged')))
        OR (about != 'incident' AND created_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-14 days')))))";

const NOTIFICATION_COLUMNS: &str = "id, key, about, about_id, transition, audience, channel, recipient, language, detail, state, attempts, created_at, due_at, delivered_at, last_error, subject, body, payload, customer, delayed";

type NotificationRow = (Notification, [String; 2], [Option<String>; 2]);

fn notification_from_row(r: &Row<'_>) -> rusqlite::Result<NotificationRow> {
    Ok((
        Notification {
            id: r.get(0)?,
            key: r.get(1)?,
            about: About::parse(&r.get::<_, String>(2)?),
            about_id: r.get(3)?,
            customer: r.get(19)?,
            transition: r.get(4)?,
            audience: r.get(5)?,
            channel: r.get(6)?,
            recipient: r.get(7)?,
            language: r.get(8)?,
            detail: r.get(9)?,
            state: r.get(10)?,
            attempts: r.get(11)?,
            created_at: DateTime::<Utc>::MIN_UTC,
            due_at: DateTime::<Utc>::MIN_UTC,
            delivered_at: None,
            last_error: r.get(15)?,
            subject: r.get(16)?,
            body: r.get(17)?,
            payload: None,
            delayed: r.get(20)?,
        },
        [r.get(12)?, r.get(13)?],
        [r.get(14)?, r.get(18)?],
    ))
}

fn finish_notification(
    (mut n, [created, due], [delivered, payload]): NotificationRow,
) -> Result<Notification, StoreError> {
    n.created_at = parse_ts("notifications", &created)?;
    n.due_at = parse_ts("notifications", &due)?;
    n.delivered_at = delivered
        .map(|d| parse_ts("notifications", &d))
        .transpose()?;
    n.payload = payload
        .map(|p| serde_json::from_str(&p))
        .transpose()
        .map_err(|e| StoreError::Corrupt {
            table: "notifications",
            reason: format!("payload of {}: {e}", n.id),
        })?;
    Ok(n)
}

const CHANGE_COLUMNS: &str = "id, title, description, kind, starts_at, ends_at, devices, customers, notice_at, created_by, state, impact, revision, reason";

type ChangeRow = (crate::changes::Change, [String; 5]);

fn change_from_row(r: &Row<'_>) -> rusqlite::Result<ChangeRow> {
    use crate::changes::{Change, ChangeKind, ChangeState};
    let kind: String = r.get(3)?;
    let state: String = r.get(10)?;
    Ok((
        Change {
            id: r.get(0)?,
            title: r.get(1)?,
            description: r.get(2)?,
            impact: r.get(11)?,
            kind: if kind == "planned" {
                ChangeKind::Planned
            } else {
                ChangeKind::Emergency
            },
            state: if state == "cancelled" {
                ChangeState::Cancelled
            } else {
                ChangeState::Scheduled
            },
            revision: r.get(12)?,
            reason: r.get(13)?,
            starts_at: DateTime::<Utc>::MIN_UTC,
            ends_at: DateTime::<Utc>::MIN_UTC,
            devices: Vec::new(),
            customers: Vec::new(),
            notice_at: DateTime::<Utc>::MIN_UTC,
            created_by: r.get(9)?,
        },
        [r.get(4)?, r.get(5)?, r.get(8)?, r.get(6)?, r.get(7)?],
    ))
}

fn finish_change(
    (mut c, [starts, ends, notice, devices, customers]): ChangeRow,
) -> Result<crate::changes::Change, StoreError> {
    let list = |s: &str| -> Result<Vec<String>, StoreError> {
        serde_json::from_str(s).map_err(|e| StoreError::Corrupt {
            table: "changes",
            reason: e.to_string(),
        })
    };
    c.starts_at = parse_ts("changes", &starts)?;
    c.ends_at = parse_ts("changes", &ends)?;
    c.notice_at = parse_ts("changes", &notice)?;
    c.devices = list(&devices)?;
    c.customers = list(&customers)?;
    Ok(c)
}

fn change_kind(c: &crate::changes::Change) -> &'static str {
    match c.kind {
        crate::changes::ChangeKind::Planned => "planned",
        crate::changes::ChangeKind::Emergency => "emergency",
    }
}

fn change_state(c: &crate::changes::Change) -> &'static str {
    match c.state {
        crate::changes::ChangeState::Scheduled => "scheduled",
        crate::changes::ChangeState::Cancelled => "cancelled",
    }
}

const ORDER_COLUMNS: &str = "id, customer, requested_by, contact, title, description, wanted_from, wanted_to, state, created_at";

type OrderRow = (crate::changes::ChangeOrder, [Option<String>; 2], String);

fn order_from_row(r: &Row<'_>) -> rusqlite::Result<OrderRow> {
    Ok((
        crate::changes::ChangeOrder {
            id: r.get(0)?,
            customer: r.get(1)?,
            requested_by: r.get(2)?,
            contact: r.get(3)?,
            title: r.get(4)?,
            description: r.get(5)?,
            wanted_from: None,
            wanted_to: None,
            state: r.get(8)?,
            created_at: DateTime::<Utc>::MIN_UTC,
        },
        [r.get(6)?, r.get(7)?],
        r.get(9)?,
    ))
}

fn finish_order(
    (mut o, [from, to], created): OrderRow,
) -> Result<crate::changes::ChangeOrder, StoreError> {
    o.wanted_from = from.map(|s| parse_ts("change_orders", &s)).transpose()?;
    o.wanted_to = to.map(|s| parse_ts("change_orders", &s)).transpose()?;
    o.created_at = parse_ts("change_orders", &created)?;
    Ok(o)
}

impl Store for SqliteStore {
    fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Notification>, StoreError> {
        let conn = self.reader();
        let sql = format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE {DELIVERABLE} AND due_at <= ?1 ORDER BY due_at, id LIMIT ?2"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![ts(now), limit], notification_from_row)?;
        rows.map(|r| finish_notification(r?)).collect()
    }

    fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let conn = self.reader();
        let next: Option<String> = conn
            .prepare_cached(&format!(
                "SELECT MIN(due_at) FROM notifications WHERE {DELIVERABLE}"
            ))?
            .query_row([], |r| r.get(0))?;
        next.map(|s| parse_ts("notifications", &s)).transpose()
    }

    fn save_rendered(
        &self,
        id: i64,
        subject: &str,
        body: &str,
        payload: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.writer()
            .prepare_cached(
                "UPDATE notifications SET subject = ?2, body = ?3, payload = ?4 WHERE id = ?1 AND subject IS NULL",
            )?
            .execute(params![id, subject, body, payload.to_string()])?;
        Ok(())
    }

    fn record_delivery(
        &self,
        id: i64,
        at: DateTime<Utc>,
        outcome: &Delivery,
    ) -> Result<(), StoreError> {
        let conn = self.writer();
        match outcome {
            Delivery::Delivered => conn
                .prepare_cached(
                    "UPDATE notifications SET state = 'delivered', attempts = attempts + 1, delivered_at = ?2, last_error = NULL, in_flight_since = NULL,
                        delayed = CASE WHEN state = 'failed' OR delayed = 1 THEN 1 ELSE 0 END WHERE id = ?1",
                )?
                .execute(params![id, ts(at)])?,
            Delivery::Retry { error, next } => conn
                .prepare_cached(
                    "UPDATE notifications SET attempts = attempts + 1, last_error = ?2, due_at = ?3, in_flight_since = NULL WHERE id = ?1",
                )?
                .execute(params![id, error, ts(*next)])?,
        };
        Ok(())
    }

    fn failing_channels(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT device FROM incidents WHERE kind = 'notification_failed' AND state IN ('open', 'acknowledged')",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for device in rows {
            let device = device?;
            if let Some(c) = device.strip_prefix(crate::notify::route::FAILED_CHANNEL_PREFIX) {
                out.push(c.to_owned());
            }
        }
        Ok(out)
    }

    fn resend(&self, id: i64, at: DateTime<Utc>) -> Result<Option<String>, StoreError> {
        let conn = self.writer();
        let state: Option<String> = conn
            .prepare_cached("SELECT state FROM notifications WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        match state.as_deref() {
            // Stays `failed` until delivered, so it is marked delayed then.
            Some("failed") => conn
                .prepare_cached("UPDATE notifications SET due_at = ?2 WHERE id = ?1")?
                .execute(params![id, ts(at)])?,
            Some("delivered") => conn
                .prepare_cached(
                    "UPDATE notifications SET state = 'pending', due_at = ?2, attempts = 0, delayed = 1 WHERE id = ?1",
                )?
                .execute(params![id, ts(at)])?,
            _ => 0,
        };
        Ok(state)
    }

    fn list_notifications(&self, f: &NotificationFilter) -> Result<Vec<Notification>, StoreError> {
        let conn = self.reader();
        let sql = format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications
             WHERE (?1 IS NULL OR about_id = ?1) AND (?6 IS NULL OR about = ?6) AND (?2 IS NULL OR state = ?2)
               AND (?3 IS NULL OR channel = ?3) AND (?4 IS NULL OR customer = ?4)
             ORDER BY id DESC LIMIT ?5"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![
                f.about.map(|a| a.1),
                f.state,
                f.channel,
                f.customer,
                f.limit,
                f.about.map(|a| a.0.as_str())
            ],
            notification_from_row,
        )?;
        rows.map(|r| finish_notification(r?)).collect()
    }

    fn process(
        &self,
        event: Option<(&Event, Option<PortRole>, DateTime<Utc>)>,
        f: &mut dyn FnMut(&mut dyn IncidentTx) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        if let Some((event, role, received_at)) = event
            && !insert_event(&tx, event, role, received_at)?
        {
            return Ok(false);
        }
        f(&mut SqliteTx { tx: &tx })?;
        tx.commit()?;
        Ok(true)
    }

    fn transaction(
        &self,
        f: &mut dyn FnMut(&mut dyn IncidentTx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        f(&mut SqliteTx { tx: &tx })?;
        tx.commit()?;
        Ok(())
    }

    fn changes(&self) -> Result<Vec<crate::changes::Change>, StoreError> {
        let conn = self.reader();
        let sql = format!("SELECT {CHANGE_COLUMNS} FROM changes ORDER BY starts_at DESC, id DESC");
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([], change_from_row)?;
        rows.map(|r| finish_change(r?)).collect()
    }

    fn get_change(&self, id: i64) -> Result<Option<crate::changes::Change>, StoreError> {
        let conn = self.reader();
        let sql = format!("SELECT {CHANGE_COLUMNS} FROM changes WHERE id = ?1");
        conn.prepare_cached(&sql)?
            .query_row([id], change_from_row)
            .optional()?
            .map(finish_change)
            .transpose()
    }

    fn change_orders(
        &self,
        customer: Option<&str>,
    ) -> Result<Vec<crate::changes::ChangeOrder>, StoreError> {
        let conn = self.reader();
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM change_orders WHERE (?1 IS NULL OR customer = ?1) ORDER BY id DESC"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([customer], order_from_row)?;
        rows.map(|r| finish_order(r?)).collect()
    }

    fn get_change_order(&self, id: i64) -> Result<Option<crate::changes::ChangeOrder>, StoreError> {
        let conn = self.reader();
        let sql = format!("SELECT {ORDER_COLUMNS} FROM change_orders WHERE id = ?1");
        conn.prepare_cached(&sql)?
            .query_row([id], order_from_row)
            .optional()?
            .map(finish_order)
            .transpose()
    }

    fn lldp_snapshots(&self) -> Result<Vec<Event>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT event_id, agent, device, observed_at, attrs FROM lldp_snapshots ORDER BY device",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for r in rows {
            let (id, agent, device, at, attrs) = r?;
            let mut e = Event::new(
                &agent,
                &device,
                cnaas_shared::EventKind::Neighbours,
                cnaas_shared::Source::Poll,
            );
            e.id = uuid::Uuid::parse_str(&id).map_err(|err| StoreError::Corrupt {
                table: "lldp_snapshots",
                reason: format!("event id of {device}: {err}"),
            })?;
            e.observed_at = parse_ts("lldp_snapshots", &at)?;
            match serde_json::from_str(&attrs) {
                Ok(serde_json::Value::Object(m)) => e.attrs = m,
                _ => {
                    return Err(StoreError::Corrupt {
                        table: "lldp_snapshots",
                        reason: format!("attrs of {device} are not an object"),
                    });
                }
            }
            out.push(e);
        }
        Ok(out)
    }

    fn pending_alarms(&self) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
        let conn = self.reader();
        let mut stmt =
            conn.prepare_cached("SELECT alarm_key, since FROM pending_alarms ORDER BY since")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|r| {
            let (key, since) = r?;
            Ok((key, parse_ts("pending_alarms", &since)?))
        })
        .collect()
    }

    fn open_members(&self) -> Result<Vec<OpenMember>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT m.incident_id, m.alarm_key, m.active, i.device, i.site, i.opened_at, i.transitions, i.in_maintenance, i.alarm_key
             FROM incident_alarms m JOIN incidents i ON i.id = m.incident_id
             WHERE i.state IN ('open', 'acknowledged') ORDER BY m.incident_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, Option<u32>>(6)?,
                r.get::<_, bool>(7)?,
                r.get::<_, String>(8)?,
            ))
        })?;
        rows.map(|r| {
            let (incident, alarm, active, device, site, opened, transitions, in_maintenance, root) =
                r?;
            Ok(OpenMember {
                incident,
                alarm,
                active,
                device,
                site,
                opened_at: parse_ts("incidents", &opened)?,
                transitions,
                in_maintenance,
                root,
            })
        })
        .collect()
    }

    fn dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let conn = self.writer();
        let id: i64 = conn
            .prepare_cached("INSERT INTO dead_letters (received_at, topic, agent, reason, payload) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id")?
            .query_row(params![ts(letter.received_at), letter.topic, letter.agent, letter.reason, letter.payload], |r| r.get(0))?;
        // Bounded: every so often, the oldest beyond the cap and those past their time go.
        if id % DEAD_LETTER_PRUNE_EVERY == 0 {
            let before = ts(letter.received_at - DEAD_LETTER_DAYS);
            let gone = conn
                .prepare_cached("DELETE FROM dead_letters WHERE id <= ?1 OR received_at < ?2")?
                .execute(params![id - DEAD_LETTER_CAP, before])?;
            if gone > 0 {
                tracing::info!(removed = gone, "Old dead letters pruned.");
            }
        }
        Ok(())
    }

    fn device_owners(&self) -> Result<Vec<DeviceOwner>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT device, agent, pinned_at FROM device_owners ORDER BY device")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        rows.map(|r| {
            let (device, agent, at) = r?;
            Ok(DeviceOwner {
                device,
                agent,
                pinned_at: parse_ts("device_owners", &at)?,
            })
        })
        .collect()
    }

    fn unpin_owner(&self, device: &str) -> Result<bool, StoreError> {
        let n = self
            .writer()
            .prepare_cached("DELETE FROM device_owners WHERE device = ?1")?
            .execute([device])?;
        self.owners_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(n > 0)
    }

    fn owners_generation(&self) -> u64 {
        self.owners_generation
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn mark_in_flight(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let was: Option<Option<String>> = tx
            .prepare_cached("SELECT in_flight_since FROM notifications WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        let repeat = matches!(was, Some(Some(_)));
        tx.prepare_cached(
            "UPDATE notifications SET in_flight_since = ?2, repeats = repeats + ?3 WHERE id = ?1",
        )?
        .execute(params![id, ts(at), i64::from(repeat)])?;
        tx.commit()?;
        Ok(repeat)
    }

    fn set_agent_status(
        &self,
        agent: &str,
        status: &str,
        payload: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.writer()
            .prepare_cached(
                "INSERT INTO agent_status (agent, status, updated_at, payload) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(agent) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at, payload = excluded.payload",
            )?
            .execute(params![agent, status, ts(at), payload])?;
        Ok(())
    }

    fn list_incidents(&self, f: &IncidentFilter) -> Result<Vec<Incident>, StoreError> {
        let conn = self.reader();
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents
             WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR customer = ?2) AND (?3 IS NULL OR device = ?3)
               AND (?6 IS NULL OR severity <= ?6)
             ORDER BY id DESC LIMIT ?4 OFFSET ?5"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![
                f.state,
                f.customer,
                f.device,
                f.limit,
                f.offset,
                f.max_severity
            ],
            incident_from_row,
        )?;
        rows.map(|r| finish_incident(r?)).collect()
    }

    fn get_incident(&self, id: i64) -> Result<Option<IncidentDetail>, StoreError> {
        let conn = self.reader();
        let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1");
        let Some(raw) = conn
            .prepare_cached(&sql)?
            .query_row([id], incident_from_row)
            .optional()?
        else {
            return Ok(None);
        };
        let incident = finish_incident(raw)?;
        let mut stmt = conn.prepare_cached(
            "SELECT at, action, actor, event_id, detail FROM incident_history WHERE incident_id = ?1 ORDER BY id",
        )?;
        let history = stmt
            .query_map([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ))
            })?
            .map(|r| {
                let (at, action, actor, event_id, detail) = r?;
                Ok(HistoryEntry {
                    at: parse_ts("incident_history", &at)?,
                    action,
                    actor,
                    event_id,
                    detail,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE incident_id = ?1 ORDER BY observed_at DESC, id DESC LIMIT ?2"
        );
        let mut events = conn
            .prepare_cached(&sql)?
            .query_map(params![id, DETAIL_EVENTS], event_from_row)?
            .map(|r| finish_event(r?))
            .collect::<Result<Vec<_>, StoreError>>()?;
        events.reverse();
        let events_total: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM events WHERE incident_id = ?1")?
            .query_row([id], |r| r.get(0))?;
        let events_total = u64::try_from(events_total).unwrap_or(0);
        let alarms = conn
            .prepare_cached(
                "SELECT alarm_key, relation, active, since, cleared_at FROM incident_alarms WHERE incident_id = ?1
                 ORDER BY relation != 'root', since, alarm_key",
            )?
            .query_map([id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?, r.get::<_, String>(3)?, r.get::<_, Option<String>>(4)?))
            })?
            .map(|r| {
                let (alarm, relation, active, since, cleared) = r?;
                Ok(IncidentAlarm {
                    alarm,
                    relation,
                    active,
                    since: parse_ts("incident_alarms", &since)?,
                    cleared_at: cleared.map(|c| parse_ts("incident_alarms", &c)).transpose()?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(IncidentDetail {
            events_total,
            incident,
            alarms,
            history,
            events,
        }))
    }

    fn list_events(&self, f: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = self.reader();
        // One statement per way in, so each reads along its own index (newest first, from
        // the cursor on) and stops at the limit: no scan or sort of the whole table.
        let by = match (&f.incident, &f.device) {
            (Some(_), _) => "incident_id = ?1",
            (None, Some(_)) => "device = ?1",
            (None, None) => "?1 IS NULL",
        };
        let from = if f.before.is_some() {
            "AND (observed_at, id) < (?3, ?4)"
        } else {
            "AND ?3 IS NULL AND ?4 IS NULL"
        };
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE {by} AND (?2 IS NULL OR kind = ?2) {from}
             ORDER BY observed_at DESC, id DESC LIMIT ?5"
        );
        let key: Option<rusqlite::types::Value> = match (&f.incident, &f.device) {
            (Some(i), _) => Some((*i).into()),
            (None, Some(d)) => Some(d.clone().into()),
            (None, None) => None,
        };
        let (at, id) = f
            .before
            .as_ref()
            .map(|c| (ts(c.observed_at), c.id.clone()))
            .unzip();
        let rows = conn
            .prepare_cached(&sql)?
            .query_map(params![key, f.kind, at, id, f.limit], event_from_row)?
            .map(|r| finish_event(r?))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(rows)
    }

    fn count_open(&self) -> Result<u64, StoreError> {
        let n: i64 = self.reader().query_row(
            "SELECT COUNT(*) FROM incidents WHERE state IN ('open', 'acknowledged')",
            [],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn count_dead_letters(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .reader()
            .query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::{AlarmKind, EventCursor, alarm_key};
    use cnaas_shared::{EventKind, Source};

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("sub/c.db")).unwrap();
        (dir, s)
    }

    fn port_event(kind: EventKind) -> Event {
        let mut e = Event::new("site", "a1", kind, Source::Poll);
        e.if_index = Some(49);
        e.if_name = Some("Te1/1/1".into());
        e
    }

    fn new_incident() -> NewIncident {
        NewIncident {
            kind: AlarmKind::LinkDown,
            key: alarm_key("a1", Some(49), AlarmKind::LinkDown),
            severity: 2,
            device: "a1".into(),
            if_index: Some(49),
            if_name: Some("Te1/1/1".into()),
            if_alias: None,
            role: Some(PortRole::Uplink),
            site: Some("b12".into()),
            customer: Some("uni-b".into()),
            summary: "Uplink Te1/1/1 on a1 is down".into(),
        }
    }

    #[test]
    fn events_and_incident_changes_in_one_transaction() {
        let (_d, s) = store();
        let now = Utc::now();
        let down = port_event(EventKind::LinkDown);
        let mut id = 0;
        let stored = s
            .process(Some((&down, Some(PortRole::Uplink), now)), &mut |tx| {
                id = tx.open(&new_incident(), now)?;
                tx.note(id, now, "opened", Some(&down.id.to_string()), "x")?;
                tx.add_member(id, "a2||device_down", Relation::Shadowed, now)?;
                tx.set_transitions(id, 7)
            })
            .unwrap();
        assert!(stored);
        // Redelivery of the same event changes nothing and does not run the rules.
        let mut ran = false;
        assert!(
            !s.process(Some((&down, None, now)), &mut |_| {
                ran = true;
                Ok(())
            })
            .unwrap()
        );
        assert!(!ran);
        assert_eq!(s.count_open().unwrap(), 1);
        let members = s.open_members().unwrap();
        assert_eq!(members.len(), 2);
        assert!(
            members
                .iter()
                .all(|m| m.incident == id && m.active && m.device == "a1")
        );
        // A failing closure rolls everything back, the event included.
        let up = port_event(EventKind::LinkUp);
        let err = s.process(Some((&up, None, now)), &mut |tx| {
            tx.resolve(id, now)?;
            Err(StoreError::Corrupt {
                table: "test",
                reason: "rollback".into(),
            })
        });
        assert!(err.is_err());
        assert_eq!(s.count_open().unwrap(), 1);
        assert!(
            s.list_events(&EventFilter {
                kind: Some("link_up".into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap()
            .is_empty()
        );
        // Clear both members and resolve.
        s.process(Some((&up, None, now)), &mut |tx| {
            tx.clear_member(id, "a1|49|link_down", now)?;
            tx.clear_member(id, "a2||device_down", now)?;
            tx.resolve(id, now)?;
            tx.note(id, now, "resolved", Some(&up.id.to_string()), "x")
        })
        .unwrap();
        assert_eq!(s.count_open().unwrap(), 0);
        assert!(s.open_members().unwrap().is_empty());
        let d = s.get_incident(id).unwrap().unwrap();
        assert_eq!(d.incident.state, "resolved");
        assert_eq!(d.incident.transitions, Some(7));
        assert_eq!(
            d.history
                .iter()
                .map(|h| h.action.as_str())
                .collect::<Vec<_>>(),
            ["opened", "resolved"]
        );
        assert_eq!(d.events.len(), 2);
        assert_eq!(d.alarms.len(), 2);
        // Re-opened.
        s.process(None, &mut |tx| tx.reopen(id, now)).unwrap();
        assert_eq!(s.count_open().unwrap(), 1);
    }

    #[test]
    fn reopening_the_file_keeps_everything_and_does_not_migrate_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let mut id = 0;
        {
            let s = SqliteStore::open(&path).unwrap();
            let now = Utc::now();
            s.process(
                Some((&port_event(EventKind::LinkDown), None, now)),
                &mut |tx| {
                    id = tx.open(&new_incident(), now)?;
                    Ok(())
                },
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.get_incident(id).unwrap().unwrap().incident.state, "open");
        let v: i64 = s
            .reader()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, i64::try_from(MIGRATIONS.len()).unwrap());
    }

    #[test]
    fn an_empty_or_damaged_file_is_refused_unless_told_to_begin_anew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        std::fs::write(&path, b"").unwrap();
        let err = SqliteStore::open(&path).err().unwrap();
        assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("empty (0 bytes)"), "{err}");
        // Damaged pages: a sound file with its second half overwritten.
        std::fs::remove_file(&path).unwrap();
        {
            let s = SqliteStore::open(&path).unwrap();
            for i in 0..2000 {
                let mut e = port_event(EventKind::LinkDown);
                e.if_index = Some(i);
                s.process(Some((&e, None, Utc::now())), &mut |_| Ok(()))
                    .unwrap();
            }
            s.writer()
                .pragma_update(None, "wal_checkpoint", "TRUNCATE")
                .unwrap();
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let half = bytes.len() / 2;
        for b in &mut bytes[half..half + 8192] {
            *b = 0x5a;
        }
        std::fs::write(&path, &bytes).unwrap();
        let err = SqliteStore::open(&path).err().unwrap();
        assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
        // Told to: the damaged file is kept aside, an empty store begins.
        let s = SqliteStore::open_with(&path, OnDamage::MoveAside).unwrap();
        assert_eq!(s.count_open().unwrap(), 0);
        let kept: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("c.db.damaged-"))
            .collect();
        assert_eq!(kept.len(), 1);
        drop(s);
        // A sound file opens as before.
        assert!(SqliteStore::open(&path).is_ok());
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::SchemaTooNew { found: 99, .. })
        ));
    }

    #[test]
    fn an_attempt_cut_off_is_known_at_the_next_one() {
        let (_d, s) = store();
        let now = Utc::now();
        let mut incident = 0;
        s.process(None, &mut |tx| {
            incident = tx.open(&new_incident(), now)?;
            let outbox = tx.outbox().unwrap();
            outbox.enqueue(&NewNotification {
                key: "k1".into(),
                about: About::Incident,
                about_id: incident,
                customer: None,
                transition: "opened-1".into(),
                audience: "ssc".into(),
                channel: "q".into(),
                recipient: "ssc".into(),
                language: "nb".into(),
                detail: None,
                due_at: now,
                created_at: now,
            })?;
            Ok(())
        })
        .unwrap();
        let id = s.due_notifications(now, 10).unwrap()[0].id;
        // An attempt that records its outcome: the next one is no repeat.
        assert!(!s.mark_in_flight(id, now).unwrap());
        s.record_delivery(
            id,
            now,
            &Delivery::Retry {
                error: "timeout".into(),
                next: now,
            },
        )
        .unwrap();
        assert!(!s.mark_in_flight(id, now).unwrap());
        // That one was cut off (a crash): the next attempt is a repeat.
        assert!(s.mark_in_flight(id, now).unwrap());
        s.record_delivery(id, now, &Delivery::Delivered).unwrap();
        let repeats: i64 = s
            .reader()
            .query_row(
                "SELECT repeats FROM notifications WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(repeats, 1);
    }

    #[test]
    fn readers_do_not_queue_behind_one_another() {
        let (_d, s) = store();
        // Several reads under way at once (a slow one holds its connection): another still
        // gets one at once, and the writer is free throughout.
        let held: Vec<_> = (0..3).map(|_| s.reader()).collect();
        let n: i64 = s
            .reader()
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
        s.dead_letter(&DeadLetter {
            received_at: Utc::now(),
            topic: "t".into(),
            agent: None,
            reason: "json".into(),
            payload: Vec::new(),
        })
        .unwrap();
        drop(held);
        assert_eq!(s.count_dead_letters().unwrap(), 1);
    }

    #[test]
    fn events_page_newest_first_along_an_index() {
        let (_d, s) = store();
        let t0 = Utc::now() - chrono::TimeDelta::hours(1);
        for i in 0..250u32 {
            for dev in ["a1", "a2"] {
                let mut e = Event::new("site", dev, EventKind::LinkDown, Source::Poll);
                e.if_index = Some(i);
                // Some share a time: the id breaks the tie.
                e.observed_at = t0 + chrono::TimeDelta::seconds(i64::from(i / 2));
                s.process(Some((&e, None, Utc::now())), &mut |_| Ok(()))
                    .unwrap();
            }
        }
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = s
                .list_events(&EventFilter {
                    device: Some("a1".into()),
                    before: before.clone(),
                    limit: 100,
                    ..Default::default()
                })
                .unwrap();
            if page.is_empty() {
                break;
            }
            before = page.last().map(EventCursor::after);
            seen.extend(page);
        }
        assert_eq!(seen.len(), 250);
        assert!(seen.iter().all(|e| e.device == "a1"));
        assert!(
            seen.windows(2)
                .all(|w| (w[0].observed_at, &w[0].id) > (w[1].observed_at, &w[1].id))
        );
        let all = s
            .list_events(&EventFilter {
                limit: 1000,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.len(), 500);
        // Each way in reads an index in order: no temporary sort of the table.
        let conn = s.reader();
        for by in ["device = 'a1'", "incident_id = 1", "1"] {
            let plan: Vec<String> = conn
                .prepare(&format!(
                    "EXPLAIN QUERY PLAN SELECT id FROM events WHERE {by} AND (observed_at, id) < ('z', 'z') ORDER BY observed_at DESC, id DESC LIMIT 10"
                ))
                .unwrap()
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(
                !plan.iter().any(|p| p.contains("TEMP B-TREE")),
                "{by}: {plan:?}"
            );
            assert!(plan.iter().any(|p| p.contains("INDEX")), "{by}: {plan:?}");
        }
    }

    #[test]
    fn dead_letters_are_bounded_in_number_and_age() {
        let (_d, s) = store();
        let now = Utc::now();
        let letter = |at: DateTime<Utc>| DeadLetter {
            received_at: at,
            topic: "t".into(),
            agent: None,
            reason: "json".into(),
            payload: vec![b'x'; 10],
        };
        // Old ones go at the next pruning.
        for _ in 0..10 {
            s.dead_letter(&letter(now - chrono::TimeDelta::days(40)))
                .unwrap();
        }
        for _ in 10..DEAD_LETTER_PRUNE_EVERY {
            s.dead_letter(&letter(now)).unwrap();
        }
        assert_eq!(
            s.count_dead_letters().unwrap(),
            u64::try_from(DEAD_LETTER_PRUNE_EVERY - 10).unwrap()
        );
        // The cap: ids below the newest `cap` go.
        s.writer()
            .execute(
                "UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'dead_letters'",
                [DEAD_LETTER_CAP * 3 - 1],
            )
            .unwrap();
        s.dead_letter(&letter(now)).unwrap();
        assert_eq!(
            s.count_dead_letters().unwrap(),
            1,
            "all older than the cap went"
        );
    }

    #[test]
    fn dead_letters_are_kept() {
        let (_d, s) = store();
        s.dead_letter(&DeadLetter {
            received_at: Utc::now(),
            topic: "cnaas/v1/events/a/b".into(),
            agent: Some("a".into()),
            reason: "missing field `id`".into(),
            payload: b"{}".to_vec(),
        })
        .unwrap();
        assert_eq!(s.count_dead_letters().unwrap(), 1);
    }
}
