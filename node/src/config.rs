//! `node.toml`: which township this node serves, where its hub, database and keys are, and when it
//! syncs. Defaults → file → environment (`JIANKA_NODE_HUB_URL` overrides `hub_url`).

use anyhow::{Context, Result, bail};
use jianka_shared::{RegionCode, Tier, eligibility::TownshipRule, flow::Flow, profile::Profile};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const CONFIG_ENV: &str = "JIANKA_NODE_CONFIG";
pub const HUB_URL_ENV: &str = "JIANKA_NODE_HUB_URL";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The 9-digit township code this node serves; records outside it are refused.
    pub township: RegionCode,
    /// Base URL of the county hub.
    pub hub_url: String,
    /// Paths are relative to the config file's directory.
    #[serde(default = "default_db")]
    pub database: PathBuf,
    #[serde(default = "default_key")]
    pub key: PathBuf,
    /// Certificate chain installed by `jianka-node trust`.
    #[serde(default = "default_chain")]
    pub chain: PathBuf,
    /// Registry year for commands without `--year`; defaults to the current year.
    #[serde(default)]
    pub year: Option<u16>,
    /// Optional identification profile (TOML, `jianka_shared::profile::Profile`).
    #[serde(default)]
    pub profile: Option<PathBuf>,
    /// The township's own exclusions (`[[township_rules]]`: label, column, field, optional
    /// at_least_yuan), allowed only where the profile says `township_rules = true`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub township_rules: Vec<TownshipRule>,
    #[serde(default)]
    pub sync: SyncConfig,
    /// What the township's public notice lists say of who posts them and where objections go.
    #[serde(default)]
    pub notice: NoticeConfig,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeConfig {
    /// Who posts the lists ("某某镇人民政府"); default: the township's code.
    #[serde(default)]
    pub posted_by: Option<String>,
    /// Where objections go, as the notice states it (office, address, phone).
    #[serde(default)]
    pub objections_to: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Cron expressions (sec min hour day-of-month month day-of-week), Asia/Shanghai time, at
    /// which the daemon runs a sync pass. Empty: every `interval_secs`.
    #[serde(default)]
    pub windows: Vec<String>,
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// A change set is cut when this many changes are pending…
    #[serde(default = "default_max_ops")]
    pub max_ops_per_changeset: usize,
    /// …or when the oldest pending change is this old.
    #[serde(default = "default_max_age")]
    pub max_changeset_age_secs: u64,
    /// Attempts per request before a pass gives up (exponential backoff with jitter between).
    #[serde(default = "default_retries")]
    pub retries: usize,
    /// Seconds a request may go without a byte moving before it is cut (not a limit on the whole
    /// request: a slow line that keeps moving gets through).
    #[serde(default = "default_timeout")]
    pub request_timeout_secs: u64,
    /// Envelopes larger than this go through chunked, resumable uploads.
    #[serde(default = "default_chunk_threshold")]
    pub chunk_threshold_bytes: usize,
    #[serde(default = "default_chunk")]
    pub chunk_bytes: usize,
    /// Warn the clerk this many days before a deadline.
    #[serde(default = "default_warn_days")]
    pub deadline_warning_days: i64,
}

fn default_db() -> PathBuf {
    "node.db".into()
}
fn default_key() -> PathBuf {
    "node.key".into()
}
fn default_chain() -> PathBuf {
    "chain.json".into()
}
fn default_interval() -> u64 {
    600
}
fn default_max_ops() -> usize {
    20_000
}
fn default_max_age() -> u64 {
    300
}
fn default_retries() -> usize {
    6
}
fn default_timeout() -> u64 {
    30
}
fn default_chunk_threshold() -> usize {
    64 * 1024
}
fn default_chunk() -> usize {
    32 * 1024
}
fn default_warn_days() -> i64 {
    10
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            windows: Vec::new(),
            interval_secs: default_interval(),
            max_ops_per_changeset: default_max_ops(),
            max_changeset_age_secs: default_max_age(),
            retries: default_retries(),
            request_timeout_secs: default_timeout(),
            chunk_threshold_bytes: default_chunk_threshold(),
            chunk_bytes: default_chunk(),
            deadline_warning_days: default_warn_days(),
        }
    }
}

/// A loaded config with its paths resolved against the file's directory.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: NodeConfig,
    pub dir: PathBuf,
    /// The profile, read once (a bulk workflow step asks for it per household).
    profile: std::sync::OnceLock<Result<Option<Profile>, String>>,
}

impl Loaded {
    pub fn db_path(&self) -> PathBuf {
        self.dir.join(&self.config.database)
    }
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(&self.config.key)
    }
    pub fn chain_path(&self) -> PathBuf {
        self.dir.join(&self.config.chain)
    }

    /// The identification profile the config names, if any.
    pub fn profile(&self) -> Result<Option<Profile>> {
        self.profile
            .get_or_init(|| self.read_profile().map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(anyhow::Error::msg)
    }

    /// The profile, with the township's own rules added to its eligibility where it allows them.
    fn read_profile(&self) -> Result<Option<Profile>> {
        let rules = &self.config.township_rules;
        let Some(p) = &self.config.profile else {
            if !rules.is_empty() {
                bail!(
                    "township_rules: a township adds rules only under a profile that allows them (no profile is set)"
                );
            }
            return Ok(None);
        };
        let path = self.dir.join(p);
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read profile {}", path.display()))?;
        let mut profile: Profile =
            toml::from_str(&text).with_context(|| format!("{}: invalid profile", path.display()))?;
        if !rules.is_empty() && !profile.township_rules {
            bail!(
                "township_rules: the profile {} does not let a township add rules of its own (its township_rules is \
                 not true); remove them from the node config",
                profile.name
            );
        }
        for r in rules {
            r.check().map_err(|e| anyhow::anyhow!("township_rules: {e}"))?;
        }
        profile.eligibility.township = rules.clone();
        Ok(Some(profile))
    }

    /// The township's own rules (empty unless its profile allows them; checked with the profile).
    pub fn township_rules(&self) -> &[TownshipRule] {
        &self.config.township_rules
    }

    /// The household flow this township follows: its profile's, or the 2014 national method's
    /// (7-day notices) without a profile.
    pub fn household_flow(&self) -> Result<Flow> {
        Ok(self.profile()?.map_or_else(|| Flow::national_households(7), |p| p.household_flow()))
    }

    /// The poor-village flow this township follows.
    pub fn village_flow(&self) -> Result<Flow> {
        Ok(self.profile()?.map_or_else(|| Flow::national_villages(7), |p| p.village_flow()))
    }
}

pub fn load(path: &Path) -> Result<Loaded> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read config {}; create one with `jianka-node init --dir DIR --township CODE --hub URL`",
            path.display()
        )
    })?;
    let mut config: NodeConfig =
        toml::from_str(&text).with_context(|| format!("{}: invalid config", path.display()))?;
    if let Ok(url) = std::env::var(HUB_URL_ENV)
        && !url.trim().is_empty()
    {
        config.hub_url = url.trim().to_string();
    }
    check(&config).with_context(|| format!("{}: invalid config", path.display()))?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    Ok(Loaded { config, dir, profile: Default::default() })
}

fn check(c: &NodeConfig) -> Result<()> {
    if c.township.tier() != Tier::Township {
        bail!("township = {:?} is not a 9-digit township code", c.township.as_str());
    }
    if !(c.hub_url.starts_with("http://") || c.hub_url.starts_with("https://")) {
        bail!("hub_url = {:?} must start with http:// or https://", c.hub_url);
    }
    for w in &c.sync.windows {
        w.parse::<cron::Schedule>().with_context(|| format!("sync window {w:?} is not a cron expression"))?;
    }
    if c.sync.max_ops_per_changeset == 0 || c.sync.chunk_bytes == 0 {
        bail!("sync.max_ops_per_changeset and sync.chunk_bytes must be positive");
    }
    Ok(())
}

/// The commented file `init` writes.
pub fn render_initial(township: &RegionCode, hub_url: &str, profile: Option<&Path>) -> String {
    let profile_line = match profile {
        Some(p) => format!("profile = {:?}\n", p.display().to_string()),
        None => "# profile = \"profile.toml\"\n".to_string(),
    };
    format!(
        r#"# Jianka township node (jianka-node). Paths are relative to this file.

# The township this node serves (9-digit 统计用区划代码). Records from other townships are refused.
township = "{township}"

# The county hub. JIANKA_NODE_HUB_URL overrides it.
hub_url = "{hub_url}"

database = "node.db"
# Signing key (mode 0600). Its public half is enrolled at the county: jianka-hub enroll.
key = "node.key"
# Certificate chain from the county, installed with: jianka-node trust CHAIN.json
chain = "chain.json"

# Registry year for commands without --year (default: the current year, Asia/Shanghai).
# year = 2014

# Identification profile (the income line and rules, the flow and its notices, deadlines).
{profile_line}
# The township's own exclusions, where the profile allows them (its township_rules = true): a 是/否
# column of the import file, or an amount column that excludes from at_least_yuan yuan. Example:
#   [[township_rules]]
#   label = "有大型农机"
#   column = "是否有大型农机"
#   field = "machinery"

[sync]
# When the daemon (jianka-node run) syncs: cron expressions, Asia/Shanghai time,
# fields: sec min hour day-of-month month day-of-week. Example: every 10 minutes at night only:
#   windows = ["0 */10 0-6 * * *"]
# Empty: every interval_secs.
windows = []
interval_secs = 600
# A change set is cut when this many changes are pending, or the oldest is this old.
max_ops_per_changeset = 20000
max_changeset_age_secs = 300
# Attempts per request (exponential backoff with jitter), and the seconds a request may go without
# a byte moving before it is cut (a slow line that keeps moving is never cut; requests are also
# sized to what the line carries well inside this).
retries = 6
request_timeout_secs = 30
# Change sets above this size go in resumable chunks of chunk_bytes.
chunk_threshold_bytes = 65536
chunk_bytes = 32768
# Warn the clerk this many days before a deadline (status).
deadline_warning_days = 10

[notice]
# What the public notice lists (jianka-node notice) say of who posts them and where objections go.
# posted_by = "某某镇人民政府"
# objections_to = "镇扶贫办 (镇政府二楼), 电话 0719-0000000"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jianka_shared::domain::Status;

    #[test]
    fn initial_config_parses_back() {
        let t = RegionCode::parse("420322105").unwrap();
        let text = render_initial(&t, "http://127.0.0.1:7001", None);
        let c: NodeConfig = toml::from_str(&text).unwrap();
        assert_eq!(c.township, t);
        check(&c).unwrap();
        assert_eq!(c.sync.max_ops_per_changeset, 20_000);
    }

    #[test]
    fn the_flow_comes_from_the_profile() {
        let dir = tempfile::tempdir().unwrap();
        let t = RegionCode::parse("420322105").unwrap();
        let config = dir.path().join("node.toml");
        std::fs::write(&config, render_initial(&t, "http://127.0.0.1:7001", None)).unwrap();
        let national = load(&config).unwrap().household_flow().unwrap();
        assert_eq!(national.notice_days(Status::VillageNotice), Some(7), "no profile: the national 7 days");
        assert_eq!(national.decides(), Tier::County);

        std::fs::write(&config, render_initial(&t, "http://127.0.0.1:7001", Some(Path::new("p.toml")))).unwrap();
        let missing = load(&config).unwrap().household_flow().unwrap_err();
        assert!(format!("{missing:#}").contains("p.toml"), "{missing:#}");
        let profile =
            include_str!("../../config/profiles/miyun-2016.toml").replace("notice_days = 7", "notice_days = 5");
        std::fs::write(dir.path().join("p.toml"), profile).unwrap();
        let miyun = load(&config).unwrap().household_flow().unwrap();
        assert_eq!(miyun.notice_days(Status::TownshipNotice), Some(5));
        assert_eq!(miyun.decides(), Tier::Township, "镇级审定");
        std::fs::write(dir.path().join("p.toml"), "notice_days = \"five\"").unwrap();
        let invalid = load(&config).unwrap().household_flow().unwrap_err();
        assert!(format!("{invalid:#}").contains("invalid profile"), "{invalid:#}");
        // A step naming a tier that does not exist: refused, naming the key.
        let bad = include_str!("../../config/profiles/miyun-2016.toml").replace(
            "{ name = \"区直备案\", status = \"filed\", tier = \"county\" }",
            "{ name = \"区直备案\", status = \"filed\", tier = \"district\" }",
        );
        std::fs::write(dir.path().join("p.toml"), bad).unwrap();
        let err = format!("{:#}", load(&config).unwrap().household_flow().unwrap_err());
        assert!(err.contains("区直备案") && err.contains("tier") && err.contains("district"), "{err}");
    }
}
