//! Setting a hub up: `init` writes hub.toml and the key (adopting a profile and quotas it
//! checks), `install-chain` puts the certificate chain the tier above issued in place.

use crate::config::HubConfig;
use anyhow::{Context, bail};
use chrono::NaiveDate;
use jianka_keyfile::Keypair;
use jianka_shared::{
    RegionCode, Tier,
    trust::{self, Certificate},
};
use std::path::{Path, PathBuf};

/// Options of `jianka-hub init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub region: RegionCode,
    pub dir: PathBuf,
    pub parent_url: Option<String>,
    pub profile: Option<PathBuf>,
    pub quotas: Option<PathBuf>,
    pub database: Option<String>,
    /// Address to listen on; default by tier (see [`crate::config::default_listen_for`]).
    pub listen: Option<String>,
}

/// What `init` made: the public key hex (give it to the tier above for `enroll`), the address
/// the hub will listen on, and the files it copied into its directory (from → to).
#[derive(Debug, Clone)]
pub struct Initialised {
    pub public_key: String,
    pub listen: String,
    pub copied: Vec<(PathBuf, PathBuf)>,
}

/// Creates `DIR/hub.toml` and `DIR/hub.key`; a province also gets its self-signed root
/// `DIR/chain.json`. A profile or quotas file is read and checked first — as given (relative to
/// the current directory), or inside DIR — and copied into DIR when it lies outside, so the
/// hub's directory holds everything it runs on.
pub fn init(o: &InitOptions, today: NaiveDate) -> anyhow::Result<Initialised> {
    let mut cfg = HubConfig::new(o.region.clone(), &o.dir);
    cfg.parent_url = o.parent_url.clone();
    if let Some(l) = &o.listen {
        cfg.listen = l.clone();
    }
    if let Some(db) = &o.database {
        cfg.database = db.clone();
    }
    cfg.check()?;
    let cfg_path = o.dir.join("hub.toml");
    if cfg_path.exists() {
        bail!("{} already exists; refusing to overwrite a hub's configuration", cfg_path.display());
    }
    let profile = o.profile.as_deref().map(|p| adopt(&o.dir, p, "profile", "--profile", check_profile)).transpose()?;
    let quotas = o.quotas.as_deref().map(|p| adopt(&o.dir, p, "quotas file", "--quotas", check_quotas)).transpose()?;
    std::fs::create_dir_all(&o.dir).with_context(|| format!("creating {}", o.dir.display()))?;
    let mut copied = Vec::new();
    for (found, slot) in [(profile, &mut cfg.profile), (quotas, &mut cfg.quotas)] {
        let Some(found) = found else { continue };
        *slot = Some(found.record_as(&o.dir, &mut copied)?);
    }
    let key = Keypair::generate()?;
    key.write_new(&o.dir.join(&cfg.key_file))?;
    if o.region.tier() == Tier::Province {
        let root = Certificate::issue(
            &o.region,
            key.signing(),
            &o.region,
            &key.public(),
            today,
            today + chrono::Days::new(365 * 20),
        );
        jianka_keyfile::write_chain(&o.dir.join(&cfg.chain_file), &[root])?;
    }
    std::fs::write(&cfg_path, cfg.to_toml()).with_context(|| format!("writing {}", cfg_path.display()))?;
    Ok(Initialised { public_key: jianka_keyfile::public_hex(&key.public()), listen: cfg.listen, copied })
}

/// A file `init` was pointed at, found and checked.
struct Found {
    path: PathBuf,
    inside_dir: bool,
}

impl Found {
    /// The path hub.toml records: the file itself when it lies in DIR (relative to DIR), else a
    /// copy made in DIR under the same name.
    fn record_as(self, dir: &Path, copied: &mut Vec<(PathBuf, PathBuf)>) -> anyhow::Result<PathBuf> {
        if self.inside_dir {
            return Ok(self.path.strip_prefix(dir).map(Path::to_path_buf).unwrap_or(self.path));
        }
        let name = PathBuf::from(self.path.file_name().context("a file name")?);
        let to = dir.join(&name);
        if to.exists() {
            bail!("{} already exists; remove it or point init at it", to.display());
        }
        std::fs::copy(&self.path, &to)
            .with_context(|| format!("copying {} to {}", self.path.display(), to.display()))?;
        copied.push((self.path, to));
        Ok(name)
    }
}

/// Finds `given` relative to the current directory (as typed) or to DIR (as hub.toml would
/// resolve it), and checks its content with `check`.
fn adopt(
    dir: &Path,
    given: &Path,
    what: &str,
    flag: &str,
    check: fn(&str) -> anyhow::Result<()>,
) -> anyhow::Result<Found> {
    let in_dir = dir.join(given);
    let (path, inside_dir) = if given.is_absolute() {
        (given.to_path_buf(), given.starts_with(dir))
    } else if given.is_file() {
        (given.to_path_buf(), false)
    } else if in_dir.is_file() {
        (in_dir, true)
    } else {
        bail!(
            "{flag} {}: no such file (looked in the current directory and in {}); the shipped examples are in \
             the repository's config/ (config/profiles/hubei-2014.toml, config/quotas.example.toml)",
            given.display(),
            dir.display()
        );
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {what} {}", path.display()))?;
    check(&text).with_context(|| format!("{}: not a valid {what}", path.display()))?;
    Ok(Found { path, inside_dir })
}

fn check_profile(text: &str) -> anyhow::Result<()> {
    toml::from_str::<jianka_shared::profile::Profile>(text)?;
    Ok(())
}

fn check_quotas(text: &str) -> anyhow::Result<()> {
    let q: crate::config::QuotaFile = toml::from_str(text)?;
    for c in &q.counties {
        c.check().with_context(|| format!("county {}", c.county))?;
    }
    Ok(())
}

/// Installs the chain a province issued to this county, after checking it ends in this hub's key.
pub fn install_chain(cfg: &HubConfig, chain_path: &Path, today: NaiveDate) -> anyhow::Result<()> {
    let chain = jianka_keyfile::read_chain(chain_path)?;
    let root = chain.first().context("the chain file is empty")?;
    let root_key = root.verifying_key()?;
    trust::verify_chain(&root_key, &chain, today, |_| false).context("the chain does not verify")?;
    let last = chain.last().expect("non-empty");
    let own = Keypair::read(&cfg.resolve(&cfg.key_file))?;
    if last.public_key != own.public().to_bytes() {
        bail!("the chain certifies key {}, not this hub's key {}", last.key_id(), own.key_id());
    }
    if last.subject != cfg.region {
        bail!("the chain certifies region {}, but this hub serves {}", last.subject, cfg.region);
    }
    jianka_keyfile::write_chain(&cfg.resolve(&cfg.chain_file), &chain)?;
    Ok(())
}
