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
