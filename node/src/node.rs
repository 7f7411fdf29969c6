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

    /// `--year`, else the config's year, else the current year.
    pub fn year(&self, given: Option<Year>) -> Year {
        given.or(self.cfg.config.year).unwrap_or_else(|| self.clock.year())
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
