//! SQLite store: one file, WAL mode, a writer connection for the engine and a reader
//! connection for the API (WAL lets them work side by side).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, Utc};
use cnaas_shared::Event;
use cnaas_shared::role::PortRole;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{
    Applied, DeadLetter, Decision, EventFilter, HistoryEntry, Incident, IncidentDetail,
    IncidentFilter, Store, StoreError, StoredEvent, Transition,
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
];

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
    reader: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Create {
                path: dir.to_owned(),
                source,
            })?;
        }
        let mut writer = Connection::open(path)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "synchronous", "NORMAL")?;
        writer.pragma_update(None, "foreign_keys", "ON")?;
        writer.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut writer)?;
        let reader = Connection::open(path)?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-applied transaction behind
        // (SQLite rolls it back), so a poisoned lock is still safe to use.
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader
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

const INCIDENT_COLUMNS: &str = "id, kind, state, severity, device, if_index, if_name, if_alias, role, site, customer, summary, opened_at, updated_at, resolved_at";

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

impl Store for SqliteStore {
    fn apply(
        &self,
        event: &Event,
        role: Option<PortRole>,
        decision: &Decision,
        received_at: DateTime<Utc>,
    ) -> Result<Applied, StoreError> {
        let mut conn = self.writer();
        let tx = conn.transaction()?;
        let attrs = serde_json::Value::Object(event.attrs.clone()).to_string();
        let inserted = tx
            .prepare_cached(
                "INSERT INTO events (id, agent, device, kind, source, observed_at, received_at, if_index, if_name, if_alias, role, attrs)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT(id) DO NOTHING",
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
            ])?;
        if inserted == 0 {
            return Ok(Applied {
                stored: false,
                incident: None,
            });
        }
        let event_id = event.id.to_string();
        let at = ts(event.observed_at);
        let open_for = |key: &str| -> rusqlite::Result<Option<i64>> {
            tx.prepare_cached("SELECT id FROM incidents WHERE alarm_key = ?1 AND state IN ('open', 'acknowledged')")?
                .query_row([key], |r| r.get(0))
                .optional()
        };
        let incident = match decision {
            Decision::Record => None,
            Decision::Open(new) => match open_for(&new.key)? {
                Some(id) => Some((id, Transition::Joined)),
                None => {
                    tx.prepare_cached(
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
                        at,
                    ])?;
                    Some((tx.last_insert_rowid(), Transition::Opened))
                }
            },
            Decision::Resolve { key } => match open_for(key)? {
                Some(id) => {
                    tx.prepare_cached(
                        "UPDATE incidents SET state = 'resolved', resolved_at = ?2, updated_at = ?2 WHERE id = ?1",
                    )?
                    .execute(params![id, at])?;
                    Some((id, Transition::Resolved))
                }
                None => None,
            },
        };
        if let Some((id, transition)) = incident {
            tx.prepare_cached("UPDATE events SET incident_id = ?1 WHERE id = ?2")?
                .execute(params![id, event_id])?;
            let action = match transition {
                Transition::Opened => "opened",
                Transition::Joined => "joined",
                Transition::Resolved => "resolved",
            };
            tx.prepare_cached(
                "INSERT INTO incident_history (incident_id, at, action, actor, event_id, detail) VALUES (?1, ?2, ?3, 'system', ?4, ?5)",
            )?
            .execute(params![id, at, action, event_id, format!("{} from {} ({})", event.kind, event.agent, event.source.as_str())])?;
        }
        tx.commit()?;
        Ok(Applied {
            stored: true,
            incident,
        })
    }

    fn dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        self.writer()
            .prepare_cached("INSERT INTO dead_letters (received_at, topic, agent, reason, payload) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![ts(letter.received_at), letter.topic, letter.agent, letter.reason, letter.payload])?;
        Ok(())
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
             ORDER BY id DESC LIMIT ?4 OFFSET ?5"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![f.state, f.customer, f.device, f.limit, f.offset],
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
            "SELECT {EVENT_COLUMNS} FROM events WHERE incident_id = ?1 ORDER BY observed_at, id"
        );
        let events = conn
            .prepare_cached(&sql)?
            .query_map([id], event_from_row)?
            .map(|r| finish_event(r?))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(IncidentDetail {
            incident,
            history,
            events,
        }))
    }

    fn list_events(&self, f: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = self.reader();
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE (?1 IS NULL OR device = ?1) AND (?2 IS NULL OR kind = ?2)
             ORDER BY observed_at DESC, id DESC LIMIT ?3"
        );
        let rows = conn
            .prepare_cached(&sql)?
            .query_map(params![f.device, f.kind, f.limit], event_from_row)?
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
    use crate::store::{AlarmKind, NewIncident, alarm_key};
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

    fn open_decision() -> Decision {
        Decision::Open(NewIncident {
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
        })
    }

    #[test]
    fn open_join_resolve_and_duplicates() {
        let (_d, s) = store();
        let now = Utc::now();
        let down = port_event(EventKind::LinkDown);
        let a = s
            .apply(&down, Some(PortRole::Uplink), &open_decision(), now)
            .unwrap();
        let (id, t) = a.incident.unwrap();
        assert_eq!(t, Transition::Opened);
        // Redelivery of the same event changes nothing.
        assert_eq!(
            s.apply(&down, Some(PortRole::Uplink), &open_decision(), now)
                .unwrap(),
            Applied {
                stored: false,
                incident: None
            }
        );
        let again = port_event(EventKind::LinkDown);
        assert_eq!(
            s.apply(&again, None, &open_decision(), now)
                .unwrap()
                .incident,
            Some((id, Transition::Joined))
        );
        assert_eq!(s.count_open().unwrap(), 1);
        let key = alarm_key("a1", Some(49), AlarmKind::LinkDown);
        let up = port_event(EventKind::LinkUp);
        assert_eq!(
            s.apply(&up, None, &Decision::Resolve { key: key.clone() }, now)
                .unwrap()
                .incident,
            Some((id, Transition::Resolved))
        );
        assert_eq!(s.count_open().unwrap(), 0);
        // A second clear finds nothing open.
        let up2 = port_event(EventKind::LinkUp);
        assert_eq!(
            s.apply(&up2, None, &Decision::Resolve { key }, now)
                .unwrap()
                .incident,
            None
        );
        let d = s.get_incident(id).unwrap().unwrap();
        assert_eq!(d.incident.state, "resolved");
        assert!(d.incident.resolved_at.is_some());
        assert_eq!(
            d.history
                .iter()
                .map(|h| h.action.as_str())
                .collect::<Vec<_>>(),
            ["opened", "joined", "resolved"]
        );
        assert_eq!(d.events.len(), 3);
        // A new failure after resolution opens a new incident.
        let down2 = port_event(EventKind::LinkDown);
        let (id2, t2) = s
            .apply(&down2, None, &open_decision(), now)
            .unwrap()
            .incident
            .unwrap();
        assert_eq!(t2, Transition::Opened);
        assert_ne!(id2, id);
        let list = s
            .list_incidents(&IncidentFilter {
                state: Some("open".into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(list.iter().map(|i| i.id).collect::<Vec<_>>(), vec![id2]);
        let list = s
            .list_incidents(&IncidentFilter {
                customer: Some("other".into()),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert!(list.is_empty());
        let ev = s
            .list_events(&EventFilter {
                device: Some("a1".into()),
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(ev.len(), 5);
    }

    #[test]
    fn reopening_the_file_keeps_everything_and_does_not_migrate_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let id = {
            let s = SqliteStore::open(&path).unwrap();
            s.apply(
                &port_event(EventKind::LinkDown),
                None,
                &open_decision(),
                Utc::now(),
            )
            .unwrap()
            .incident
            .unwrap()
            .0
        };
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.get_incident(id).unwrap().unwrap().incident.state, "open");
        let v: i64 = s
            .reader()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, i64::try_from(MIGRATIONS.len()).unwrap());
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
