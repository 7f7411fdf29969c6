//! The link's pace kept in the node's database, so the next sync starts at the line's pace
//! (measuring the line and sizing requests by it is `jianka_client::Pace`'s job).

use crate::db;
use jianka_client::Pace;
use rusqlite::Connection;

const META_KEY: &str = "link_bytes_per_sec";

pub fn load(conn: &Connection) -> Pace {
    Pace::from_rate(db::get_meta(conn, META_KEY).ok().flatten().and_then(|s| s.parse::<f64>().ok()))
}

pub fn save(conn: &Connection, pace: &Pace) -> anyhow::Result<()> {
    if let Some(r) = pace.rate() {
        db::set_meta(conn, META_KEY, &format!("{r:.0}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_pace_outlives_the_sync_and_a_bad_stored_one_counts_as_unknown() {
        let conn = Connection::open_in_memory().unwrap();
        db::migrate(&conn).unwrap();
        assert_eq!(load(&conn).rate(), None);
        let mut pace = load(&conn);
        pace.observe(8_000, Duration::from_secs(4));
        save(&conn, &pace).unwrap();
        assert_eq!(load(&conn).rate(), Some(2_000.0));
        db::set_meta(&conn, META_KEY, "fast").unwrap();
        assert_eq!(load(&conn).rate(), None);
    }
}
