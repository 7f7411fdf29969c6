//! An opened node: its config, database, key and clock, as every command needs them.

use crate::clock::Clock;
use crate::config::{self, Loaded};
use crate::db;
use anyhow::{Context, Result};
use jianka_keyfile::Keypair;
use jianka_shared::trust::Certificate;
use jianka_shared::{RegionCode, Year};
use rusqlite::Connection;
use std::path::Path;

pub struct Node {
    pub cfg: Loaded,
    pub conn: Connection,
    pub clock: Clock,
}

impl Node {
    pub fn open(config_path: &Path, clock: Clock) -> Result<Node> {
        let cfg = config::load(config_path)?;
        let conn = db::open(&cfg.db_path())?;
        Ok(Node { cfg, conn, clock })
    }

    pub fn township(&self) -> &RegionCode {
        &self.cfg.config.township
    }

    /// The registry year a command works on: see [`Node::year_in_force`].
    pub fn year(&self, given: Option<Year>) -> Year {
        self.year_in_force(given).0
    }

    /// The registry year a command works on, and where it came from: `--year`, else the config's
    /// `year`, else the newest year the county's cycle lists as open, else the newest year this
    /// node holds records of, else the current calendar year.
    pub fn year_in_force(&self, given: Option<Year>) -> (Year, &'static str) {
        if let Some(y) = given {
            return (y, "--year");
        }
        if let Some(y) = self.cfg.config.year {
            return (y, "the config's `year`");
        }
        let newest = |sql: &str| self.conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0)).ok().flatten();
        if let Some(y) = newest("SELECT MAX(year) FROM cycle WHERE state = 'open'").and_then(|y| Year::try_from(y).ok())
        {
            return (y, "the year the county's cycle has open");
        }
        if let Some(y) = newest("SELECT MAX(year) FROM records").and_then(|y| Year::try_from(y).ok()) {
            return (y, "the newest year this node holds");
        }
        (self.clock.year(), "the current year")
    }

    pub fn keypair(&self) -> Result<Keypair> {
        let p = self.cfg.key_path();
        Keypair::read(&p).with_context(|| format!("cannot read the node key {}", p.display()))
    }

    /// The installed chain `[province, county, township]`, if `trust` was run.
    pub fn chain(&self) -> Result<Option<Vec<Certificate>>> {
        let p = self.cfg.chain_path();
        if !p.exists() {
            return Ok(None);
        }
        Ok(Some(jianka_keyfile::read_chain(&p)?))
    }
}
