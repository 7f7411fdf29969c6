//! The node's SQLite database: WAL, and append-only migrations tracked in `user_version`.

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;

/// Append-only: never edit a released step, add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: replica, outbox, envelopes, feedback, workflow.
    r#"
    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    -- The replica: one row per record, fields as JSON {name: [value, version]}.
    CREATE TABLE records(
        kind TEXT NOT NULL,
        year INTEGER NOT NULL,
        id TEXT NOT NULL,
        data TEXT NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        deleted_version INTEGER NOT NULL DEFAULT 0,
        household TEXT,
        PRIMARY KEY(kind, year, id)
    ) WITHOUT ROWID;
    CREATE INDEX records_household ON records(year, household) WHERE household IS NOT NULL;
    -- The outbox: every local change, written in the same transaction as the replica.
    -- seq is NULL until the change is sealed into an envelope.
    CREATE TABLE changes(
        cid INTEGER PRIMARY KEY,
        year INTEGER NOT NULL,
        op TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        seq INTEGER
    );
    CREATE INDEX changes_pending ON changes(seq, cid);
    -- Sealed change sets, byte-identical on every resend.
    CREATE TABLE envelopes(
        seq INTEGER PRIMARY KEY,
        year INTEGER NOT NULL,
        bytes BLOB NOT NULL,
        hash BLOB NOT NULL,
        op_count INTEGER NOT NULL,
        sealed_ms INTEGER NOT NULL,
        acked_ms INTEGER,
        outcome TEXT
    );
    CREATE TABLE rejections(
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        year INTEGER NOT NULL,
        rid TEXT NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        resolved_ms INTEGER,
        UNIQUE(kind, year, rid, reason, message)
    );
    CREATE TABLE feedback_log(id INTEGER PRIMARY KEY, item TEXT NOT NULL, applied_ms INTEGER NOT NULL);
    CREATE TABLE cycle(year INTEGER PRIMARY KEY, state TEXT NOT NULL, deadline TEXT, reopen_by TEXT);
    CREATE TABLE quota(township TEXT PRIMARY KEY, people INTEGER NOT NULL, used INTEGER NOT NULL, received_ms INTEGER NOT NULL);
    CREATE TABLE workflow_events(
        id INTEGER PRIMARY KEY,
        year INTEGER NOT NULL,
        household TEXT NOT NULL,
        from_status TEXT NOT NULL,
        to_status TEXT NOT NULL,
        date TEXT NOT NULL,
        minutes TEXT,
        recorded_ms INTEGER NOT NULL
    );
    CREATE INDEX workflow_events_household ON workflow_events(year, household, id);
    CREATE TABLE objections(
        id INTEGER PRIMARY KEY,
        year INTEGER NOT NULL,
        household TEXT NOT NULL,
        raised_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        raised_date TEXT NOT NULL,
        resolved_date TEXT,
        resolution TEXT
    );
    CREATE TABLE adjustments(
        id INTEGER PRIMARY KEY,
        year INTEGER NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        reason TEXT NOT NULL,
        date TEXT NOT NULL,
        detail TEXT NOT NULL,
        recorded_ms INTEGER NOT NULL
    );
    "#,
    // 2: allocations of the scale (规模分解) that came down, each kept only after its chain from
    // the province verified against the node's certificates.
    r#"
    CREATE TABLE allocations(
        digest TEXT PRIMARY KEY,
        year INTEGER NOT NULL,
        serial INTEGER NOT NULL,
        people INTEGER NOT NULL,
        villages INTEGER NOT NULL,
        chain TEXT NOT NULL,
        received_ms INTEGER NOT NULL
    );
    "#,
];

pub fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("cannot open database {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit survives a power cut, not only a killed process.
    conn.pragma_update(None, "synchronous", "FULL")?;
    migrate(&conn).with_context(|| format!("cannot migrate database {}", path.display()))?;
    Ok(conn)
}

pub fn migrate(conn: &Connection) -> Result<()> {
    let current: usize = conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    if current > MIGRATIONS.len() {
        anyhow::bail!(
            "database schema version {current} is newer than this jianka-node ({}); upgrade the program",
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql).with_context(|| format!("migration {}", i + 1))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

pub fn get_meta(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
}

pub fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_idempotent_and_wal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.db");
        let c = open(&p).unwrap();
        let mode: String = c.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        drop(c);
        let c = open(&p).unwrap();
        let v: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
        set_meta(&c, "a", "1").unwrap();
        set_meta(&c, "a", "2").unwrap();
        assert_eq!(get_meta(&c, "a").unwrap().as_deref(), Some("2"));
    }
}
