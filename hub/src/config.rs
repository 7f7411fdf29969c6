//! `hub.toml`: defaults → file → environment (`JIANKA_HUB_…`, `__` for nesting, e.g. `JIANKA_HUB_SCHEDULE__FORWARD`).

use anyhow::{Context, bail};
use jianka_shared::{
    RegionCode, Tier,
    profile::{CountyQuota, Profile},
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// The county (6 digits), prefecture (4 digits) or province (2 digits) this hub serves.
    pub region: RegionCode,
    /// `sqlite://hub.db` (relative to the config file) or `postgres://user@host/db`.
    #[serde(default = "default_database")]
    pub database: String,
    /// Address `jianka-hub serve` binds.
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_key")]
    pub key_file: PathBuf,
    /// This hub's certificate chain (province root first).
    #[serde(default = "default_chain")]
    pub chain_file: PathBuf,
    /// The hub above, which this one forwards to (a county's province or prefecture, a
    /// prefecture's province).
    #[serde(default)]
    pub parent_url: Option<String>,
    #[serde(default)]
    pub profile: Option<PathBuf>,
    /// The county's class for the profile's village incidence bands (e.g. 片区县, 插花县).
    #[serde(default)]
    pub county_class: Option<String>,
    #[serde(default)]
    pub quotas: Option<PathBuf>,
    /// Largest request body accepted (bytes); larger ones are refused with 413 `too_large`.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    #[serde(default)]
    pub schedule: Schedule,
    /// What the public notice lists this hub writes (县公告) say of who posts them and where
    /// objections go.
    #[serde(default)]
    pub notice: NoticeConfig,
    /// Directory relative paths are resolved against (the config file's directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeConfig {
    /// Who posts the lists ("某某县扶贫开发领导小组"); default: the hub's region code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posted_by: Option<String>,
    /// Where objections go, as the notice states it (office, address, phone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objections_to: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Cron (sec min hour day month weekday) for county → province forwarding; empty = on demand only.
    #[serde(default = "default_forward_cron")]
    pub forward: String,
    /// Cron for the New Year job (freeze the old year, open the update window).
    #[serde(default = "default_new_year_cron")]
    pub new_year: String,
    /// Cron for locking years whose update window has passed.
    #[serde(default = "default_lock_cron")]
    pub lock: String,
    #[serde(default = "default_tz")]
    pub timezone: String,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            forward: default_forward_cron(),
            new_year: default_new_year_cron(),
            lock: default_lock_cron(),
            timezone: default_tz(),
        }
    }
}

fn default_database() -> String {
    "sqlite://hub.db".into()
}
fn default_listen() -> String {
    "127.0.0.1:7001".into()
}

/// The address a new hub listens on: the province on 7001, a county on 7002, a prefecture on
/// 7003, so the help's own setup (a province and a county on one machine) runs as written.
pub fn default_listen_for(tier: Tier) -> String {
    match tier {
        Tier::Province => "127.0.0.1:7001".into(),
        Tier::Prefecture => "127.0.0.1:7003".into(),
        _ => "127.0.0.1:7002".into(),
    }
}
fn default_key() -> PathBuf {
    "hub.key".into()
}
fn default_chain() -> PathBuf {
    "chain.json".into()
}
fn default_max_body() -> usize {
    8 << 20
}
fn default_forward_cron() -> String {
    "0 0 2 * * *".into()
}
fn default_new_year_cron() -> String {
    "0 0 0 1 1 *".into()
}
fn default_lock_cron() -> String {
    "0 0 1 * * *".into()
}
fn default_tz() -> String {
    "Asia/Shanghai".into()
}

/// The quotas file: `[[counties]]` entries (`jianka_shared::profile::CountyQuota`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaFile {
    #[serde(default)]
    pub counties: Vec<CountyQuota>,
}

impl HubConfig {
    /// A config for `region` with every default, files in `dir`.
    pub fn new(region: RegionCode, dir: &Path) -> Self {
        HubConfig {
            listen: default_listen_for(region.tier()),
            region,
            database: default_database(),
            key_file: default_key(),
            chain_file: default_chain(),
            parent_url: None,
            profile: None,
            county_class: None,
            quotas: None,
            max_body_bytes: default_max_body(),
            schedule: Schedule::default(),
            notice: NoticeConfig::default(),
            base_dir: dir.to_path_buf(),
        }
    }

    pub fn load(path: &Path) -> anyhow::Result<HubConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        let mut table: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        apply_env(&mut table, std::env::vars());
        let mut cfg: HubConfig = toml::Value::Table(table)
            .try_into()
            .with_context(|| format!("{}: invalid hub configuration", path.display()))?;
        cfg.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if cfg.base_dir.as_os_str().is_empty() {
            cfg.base_dir = PathBuf::from(".");
        }
        cfg.check()?;
        Ok(cfg)
    }

    pub fn check(&self) -> anyhow::Result<()> {
        if !matches!(self.region.tier(), Tier::County | Tier::Prefecture | Tier::Province) {
            bail!(
                "region {} is a {}; a hub serves a county (6 digits), a prefecture (4 digits) or a province (2 digits)",
                self.region,
                self.region.tier()
            );
        }
        for (name, expr) in
            [("forward", &self.schedule.forward), ("new_year", &self.schedule.new_year), ("lock", &self.schedule.lock)]
        {
            if !expr.trim().is_empty() {
                expr.parse::<cron::Schedule>()
                    .with_context(|| format!("schedule.{name} = {expr:?} is not a cron expression"))?;
            }
        }
        self.timezone()?;
        Ok(())
    }

    pub fn timezone(&self) -> anyhow::Result<chrono_tz::Tz> {
        self.schedule
            .timezone
            .parse()
            .map_err(|_| anyhow::anyhow!("schedule.timezone {:?} is not a known time zone", self.schedule.timezone))
    }

    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_path_buf() } else { self.base_dir.join(p) }
    }

    /// The database URL with a relative SQLite path resolved against the config directory.
    pub fn database_url(&self) -> String {
        if let Some(rest) = self.database.strip_prefix("sqlite://")
            && !rest.starts_with('/')
            && !rest.starts_with(':')
        {
            return format!("sqlite://{}", self.base_dir.join(rest).display());
        }
        self.database.clone()
    }

    pub fn load_profile(&self) -> anyhow::Result<Option<Profile>> {
        let Some(p) = &self.profile else { return Ok(None) };
        let p = self.resolve(p);
        let text = std::fs::read_to_string(&p).with_context(|| format!("reading profile {}", p.display()))?;
        Ok(Some(toml::from_str(&text).with_context(|| format!("{}: invalid profile", p.display()))?))
    }

    pub fn load_quotas(&self) -> anyhow::Result<QuotaFile> {
        let Some(p) = &self.quotas else { return Ok(QuotaFile::default()) };
        let p = self.resolve(p);
        let text = std::fs::read_to_string(&p).with_context(|| format!("reading quotas {}", p.display()))?;
        let q: QuotaFile = toml::from_str(&text).with_context(|| format!("{}: invalid quotas file", p.display()))?;
        for c in &q.counties {
            c.check().with_context(|| format!("{}: county {}", p.display(), c.county))?;
        }
        Ok(q)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}

/// `JIANKA_HUB_DATABASE=…` sets `database`; `JIANKA_HUB_SCHEDULE__FORWARD=…` sets `schedule.forward`.
fn apply_env(table: &mut toml::Table, vars: impl Iterator<Item = (String, String)>) {
    for (k, v) in vars {
        // Only JIANKA_HUB_*: other JIANKA_* variables (the node's, the tests') are not ours.
        let Some(rest) = k.strip_prefix("JIANKA_HUB_") else { continue };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        let value = if path.last().is_some_and(|l| l == "max_body_bytes") {
            v.parse::<i64>().map(toml::Value::Integer).unwrap_or(toml::Value::String(v))
        } else {
            toml::Value::String(v)
        };
        set_path(table, &path, value);
    }
}

fn set_path(t: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [last] => {
            t.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = t.entry(first.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(inner) = entry {
                set_path(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_values_with_nesting() {
        let mut t: toml::Table = toml::from_str("region = \"420322\"\n[schedule]\nforward = \"0 0 2 * * *\"").unwrap();
        apply_env(
            &mut t,
            [
                ("JIANKA_HUB_DATABASE".to_string(), "postgres://x".to_string()),
                ("JIANKA_HUB_SCHEDULE__FORWARD".to_string(), "0 0 3 * * *".to_string()),
                ("JIANKA_HUB_MAX_BODY_BYTES".to_string(), "10".to_string()),
                ("JIANKA_NOW".to_string(), "ignored".to_string()),
                ("JIANKA_TEST_PG".to_string(), "not a hub setting".to_string()),
                ("JIANKA_NODE_HUB_URL".to_string(), "not a hub setting".to_string()),
            ]
            .into_iter(),
        );
        let cfg: HubConfig = toml::Value::Table(t).try_into().unwrap();
        assert_eq!(cfg.database, "postgres://x");
        assert_eq!(cfg.schedule.forward, "0 0 3 * * *");
        assert_eq!(cfg.max_body_bytes, 10);
        cfg.check().unwrap();
    }

    #[test]
    fn a_township_cannot_be_a_hub() {
        let cfg = HubConfig::new(RegionCode::parse("420322105").unwrap(), Path::new("."));
        assert!(cfg.check().unwrap_err().to_string().contains("township"));
    }
}
