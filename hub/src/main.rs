//! `jianka-hub`: the county and province hub (建档立卡 data-sync gateway).

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use jianka_hub::{HubConfig, admin, audit, clock};
use jianka_shared::{RegionCode, Tier, protocol::PushOutcome, trust::KeyId};
use jianka_term::{errln, outln};
use std::path::PathBuf;
use std::process::ExitCode;

// The hub allocates and frees many small strings per record (field maps, statements); mimalloc
// handles that churn far better than the system allocator (measured with the ingest benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// County and province hub: verifies and merges townships' change sets, re-examines households
/// against the county ceiling, signs off and forwards to the province.
///
/// First setup on one machine, from the repository's root (province 42, county 420322,
/// township 420322105); each `init` prints the new public key on stdout:
///
///   jianka-hub init --region 42 --dir prov
///   jianka-hub init --region 420322 --dir county --parent-url http://127.0.0.1:7001 --profile config/profiles/hubei-2014.toml --quotas config/quotas.example.toml
///   jianka-hub enroll --config prov/hub.toml --subject 420322 --public-key <county key> --out county-chain.json
///   jianka-hub install-chain --config county/hub.toml county-chain.json
///   jianka-node init --dir town --township 420322105 --hub http://127.0.0.1:7002
///   jianka-hub enroll --config county/hub.toml --subject 420322105 --public-key <node key> --out node-chain.json
///   jianka-node --config town/node.toml trust node-chain.json
///   jianka-hub serve --config prov/hub.toml
///   jianka-hub serve --config county/hub.toml
///
/// The province listens on 127.0.0.1:7001 and a county on 127.0.0.1:7002 unless `init --listen`
/// or `serve --listen` says otherwise. `init` copies the profile and quotas it is given into the
/// hub's directory.
///
/// Environment: JIANKA_HUB_<FIELD> overrides hub.toml (JIANKA_HUB_SCHEDULE__FORWARD for nested keys);
/// JIANKA_NOW (RFC 3339) fixes the clock; RUST_LOG sets the log level.
#[derive(Parser)]
#[command(name = "jianka-hub", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create DIR/hub.toml and DIR/hub.key (0600) and print the public key; a province also gets
    /// its self-signed root DIR/chain.json.
    ///
    /// Example: jianka-hub init --region 420322 --dir /srv/jianka --parent-url http://10.0.0.2:7001 --profile config/profiles/hubei-2014.toml --quotas config/quotas.example.toml
    #[command(verbatim_doc_comment)]
    Init {
        /// County (6 digits) or province (2 digits) code.
        #[arg(long)]
        region: RegionCode,
        /// Directory for this hub (created; must not hold a hub.toml yet).
        #[arg(long)]
        dir: PathBuf,
        /// The province hub a county forwards to, e.g. http://127.0.0.1:7001.
        #[arg(long)]
        parent_url: Option<String>,
        /// Identification profile (TOML), e.g. config/profiles/hubei-2014.toml (relative to the current
        /// directory); checked, and copied into DIR.
        #[arg(long)]
        profile: Option<PathBuf>,
        /// Quotas file (TOML, [[counties]] entries), e.g. config/quotas.example.toml; checked, and
        /// copied into DIR.
        #[arg(long)]
        quotas: Option<PathBuf>,
        /// Database URL (default sqlite://hub.db next to hub.toml; postgres://user@host/db for a province).
        #[arg(long)]
        database: Option<String>,
        /// Address to serve on (default: 127.0.0.1:7001 for a province, 127.0.0.1:7002 for a county).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Serve the HTTP API and run the schedules until Ctrl-C.
    ///
    /// Example: jianka-hub serve --config /srv/jianka/hub.toml
    #[command(verbatim_doc_comment)]
    Serve {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        /// Override `listen` from the config.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Issue a certificate to a child (province → county, county → township) and write its chain.
    ///
    /// Example: jianka-hub enroll --config hub.toml --subject 420322105 --public-key 3fa1… --out t105-chain.json
    #[command(verbatim_doc_comment)]
    Enroll {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        /// The child's region: a county (6 digits) at a province, a township (9 digits) at a county.
        #[arg(long)]
        subject: RegionCode,
        /// The child's public key, 64 hex digits (printed by its `init`).
        #[arg(long)]
        public_key: String,
        /// Where to write the child's certificate chain (give it to the child: `install-chain` / `jianka-node trust`).
        #[arg(long)]
        out: PathBuf,
        /// Last valid day (YYYY-MM-DD); default five years.
        #[arg(long)]
        valid_until: Option<chrono::NaiveDate>,
    },
    /// Install the chain the province issued to this county.
    ///
    /// Example: jianka-hub install-chain --config hub.toml county-chain.json
    #[command(verbatim_doc_comment)]
    InstallChain {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        chain: PathBuf,
    },
    /// Revoke a child's key: its requests are refused from now on.
    ///
    /// Example: jianka-hub revoke --config hub.toml --key 0123456789abcdef --reason "laptop stolen"
    #[command(verbatim_doc_comment)]
    Revoke {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        /// Key id (16 hex digits).
        #[arg(long)]
        key: String,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// List or clear keys held for equivocation: a child that sent two different change sets
    /// under one sequence number is refused (every request, with a message saying so) until an
    /// officer has looked at it and clears it. The change set the hub holds stands.
    ///
    /// Example: jianka-hub equivocations list --config hub.toml
    /// Example: jianka-hub equivocations clear --config hub.toml --key 0123456789abcdef --reason "node restored from backup"
    #[command(verbatim_doc_comment)]
    Equivocations {
        #[command(subcommand)]
        cmd: EquivocationCmd,
    },
    /// List or resolve conflicts held for this hub's decision.
    Conflicts {
        #[command(subcommand)]
        cmd: ConflictCmd,
    },
    /// Sign off the county's data for a period (digest + summary, signed with the county key).
    ///
    /// Example: jianka-hub signoff --config hub.toml --year 2014 --period 2014-annual
    #[command(verbatim_doc_comment)]
    Signoff {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        /// Registry year, e.g. 2014.
        #[arg(long)]
        year: u16,
        /// A name for the period signed off, e.g. 2014-annual.
        #[arg(long)]
        period: String,
    },
    /// Forward new records and sign-offs to the province now, then pull the province's feedback:
    /// completed cross-county moves remove the person here (or confirm an arrival) and are
    /// passed down to the townships at their next sync. The same runs on the forward schedule.
    ///
    /// Example: jianka-hub forward --config county.toml
    #[command(verbatim_doc_comment)]
    Forward {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
    },
    /// Ingest a township's USB bundle (from `jianka-node export-bundle`) and write the signed answer
    /// file for the same stick (read back with `jianka-node import-answer`).
    ///
    /// Example: jianka-hub import-bundle --config hub.toml /media/usb/420322105.jkb --answer /media/usb/420322105.answer
    #[command(verbatim_doc_comment)]
    ImportBundle {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        file: PathBuf,
        /// Where to write the county's answer file.
        #[arg(long)]
        answer: PathBuf,
    },
    /// What the hub holds, by region; with --year, year-over-year entries/exits and village incidence.
    ///
    /// Example: jianka-hub report --config hub.toml --year 2015 --json
    #[command(verbatim_doc_comment)]
    Report {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        /// Print JSON instead of text (for scripts).
        #[arg(long)]
        json: bool,
        /// Registry year, e.g. 2014.
        #[arg(long)]
        year: Option<u16>,
    },
    /// Verify the hash-chained audit log.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Quota re-balancing (微调) between counties of one prefecture, signed and audited.
    Quota {
        #[command(subcommand)]
        cmd: QuotaCmd,
    },
    /// Run the New Year job now: freeze YEAR (default: last year) and open the update window.
    NewYear {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        /// Registry year, e.g. 2014.
        #[arg(long)]
        year: Option<u16>,
    },
    /// Children that have not delivered for YEAR.
    Late {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        /// Registry year, e.g. 2014.
        #[arg(long)]
        year: u16,
    },
    /// Reopen a locked year for one child region (an audited exception), until the end of
    /// --until (default: 7 days from today); after that the year is locked again.
    ///
    /// Example: jianka-hub reopen --config hub.toml --year 2014 --region 420322105 --reason "court ruling on household 0042"
    /// Example: jianka-hub reopen --config hub.toml --year 2014 --region 420322105 --reason "复核" --until 2015-03-15
    #[command(verbatim_doc_comment)]
    Reopen {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        /// Registry year, e.g. 2014.
        #[arg(long)]
        year: u16,
        #[arg(long)]
        region: RegionCode,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
        /// Last day of the reopening (YYYY-MM-DD, Beijing time); default 7 days from today.
        #[arg(long)]
        until: Option<chrono::NaiveDate>,
    },
}

#[derive(Subcommand)]
enum EquivocationCmd {
    /// Example: jianka-hub equivocations list --config hub.toml --json
    List {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        /// Print JSON instead of text (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Example: jianka-hub equivocations clear --config hub.toml --key 0123456789abcdef --reason "restored from backup"
    Clear {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        /// Key id (16 hex digits), as `equivocations list` shows it.
        #[arg(long)]
        key: String,
        /// Why the officer lets the key speak again (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum ConflictCmd {
    /// Example: jianka-hub conflicts list --config hub.toml --json
    List {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        /// Print JSON instead of text (for scripts).
        #[arg(long)]
        json: bool,
        /// Include resolved ones.
        #[arg(long)]
        all: bool,
    },
    /// Example: jianka-hub conflicts resolve --config hub.toml 3 --keep 420322105200-0007 --reason "lives there (home visit)"
    Resolve {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        id: i64,
        /// For a duplicate person: the household id the person stays in.
        #[arg(long, conflicts_with = "value")]
        keep: Option<String>,
        /// For a field conflict: the value that stands.
        #[arg(long)]
        value: Option<String>,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Example: jianka-hub audit verify --config hub.toml
    Verify {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum QuotaCmd {
    /// Move village quota between two counties of one prefecture.
    ///
    /// Example: jianka-hub quota adjust --config prov.toml --from 420322 --to 420323 --villages 2 --reason "2014 微调"
    #[command(verbatim_doc_comment)]
    Adjust {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        from: RegionCode,
        #[arg(long)]
        to: RegionCode,
        #[arg(long)]
        villages: u64,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
}

/// A bar on the officer's terminal (stderr) for long work; hidden when stderr is not a terminal
/// (cron, logs, scripts), so nothing but results reaches them.
fn progress_bar(what: &str, unit: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    let template = format!("{{msg}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{per_sec}}, {{eta}} left)");
    bar.set_style(
        indicatif::ProgressStyle::with_template(&template).unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar.tick();
    bar
}

async fn open(config: &std::path::Path) -> anyhow::Result<jianka_hub::Hub> {
    let cfg = HubConfig::load(config)?;
    jianka_hub::Hub::open(cfg, clock::from_env()?).await
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader stopped early (`report | head`): what it read is all it wanted.
        Err(e) if jianka_term::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = errln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let today = clock::from_env()?.now().with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
    match cli.cmd {
        Cmd::Init { region, dir, parent_url, profile, quotas, database, listen } => {
            let tier = region.tier();
            let done = admin::init(
                &admin::InitOptions {
                    region: region.clone(),
                    dir: dir.clone(),
                    parent_url: parent_url.clone(),
                    profile,
                    quotas,
                    database,
                    listen,
                },
                today,
            )?;
            outln!("{}", done.public_key)?;
            let d = dir.display();
            errln!("wrote {d}/hub.toml and {d}/hub.key; this hub will listen on {}", done.listen)?;
            for (from, to) in &done.copied {
                errln!("copied {} to {} (hub.toml refers to the copy)", from.display(), to.display())?;
            }
            errln!("public key: {}", done.public_key)?;
            match tier {
                Tier::Province => errln!(
                    "next: enroll each county's key here: jianka-hub enroll --config {d}/hub.toml --subject <county> \
                     --public-key <county key> --out county-chain.json"
                )?,
                _ => {
                    if parent_url.is_none() {
                        errln!("no --parent-url: this county cannot forward until parent_url is set in {d}/hub.toml")?;
                    }
                    errln!(
                        "next: the province enrolls this key (jianka-hub enroll --config <province>/hub.toml --subject \
                         {region} --public-key {} --out county-chain.json), then: jianka-hub install-chain --config \
                         {d}/hub.toml county-chain.json",
                        done.public_key
                    )?;
                }
            }
        }
        Cmd::Serve { config, listen } => {
            let mut cfg = HubConfig::load(&config)?;
            if let Some(l) = listen {
                cfg.listen = l;
            }
            let listener =
                tokio::net::TcpListener::bind(&cfg.listen).await.with_context(|| format!("binding {}", cfg.listen))?;
            let shutdown = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            jianka_hub::run(listener, cfg, shutdown).await?;
        }
        Cmd::Enroll { config, subject, public_key, out, valid_until } => {
            let hub = open(&config).await?;
            let chain = hub.enroll(&subject, &public_key, valid_until).await?;
            jianka_keyfile::write_chain(&out, &chain)?;
            outln!(
                "enrolled {subject}: key {} — chain written to {}",
                chain.last().expect("non-empty").key_id(),
                out.display()
            )?;
        }
        Cmd::InstallChain { config, chain } => {
            let cfg = HubConfig::load(&config)?;
            admin::install_chain(&cfg, &chain, today)?;
            outln!("installed chain for {}", cfg.region)?;
        }
        Cmd::Revoke { config, key, reason } => {
            let hub = open(&config).await?;
            let k = KeyId::parse(&key).context("--key must be 16 hex digits")?;
            let r = hub.revoke(k, &reason).await?;
            outln!("revoked key {} of {}", r.key, r.subject)?;
        }
        Cmd::Equivocations { cmd: EquivocationCmd::List { config, json } } => {
            let hub = open(&config).await?;
            let list = hub.equivocations().await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&list)?)?;
            } else if list.is_empty() {
                outln!("no key is held for equivocation")?;
            } else {
                for e in list {
                    outln!(
                        "key {} of {}: change set #{} held {} but was offered {} — clear with: \
                         jianka-hub equivocations clear --config {} --key {} --reason ...",
                        e.key_id,
                        e.region,
                        e.seq,
                        &e.stored_hash[..16.min(e.stored_hash.len())],
                        &e.offered_hash[..16.min(e.offered_hash.len())],
                        config.display(),
                        e.key_id
                    )?;
                }
            }
        }
        Cmd::Equivocations { cmd: EquivocationCmd::Clear { config, key, reason } } => {
            let hub = open(&config).await?;
            let k = KeyId::parse(&key).context("--key must be 16 hex digits")?;
            let region = hub.clear_equivocation(k, &reason).await?;
            outln!("key {k} of {region} may sync again")?;
        }
        Cmd::Conflicts { cmd: ConflictCmd::List { config, json, all } } => {
            let hub = open(&config).await?;
            let list = hub.conflicts(all).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&list)?)?;
            } else if list.is_empty() {
                outln!("no open conflicts")?;
            } else {
                for c in list {
                    outln!(
                        "#{} [{}] {} {}: current {:?} (by {}) vs proposed {:?} (by {}) — {}",
                        c.id,
                        c.kind,
                        c.record,
                        c.field,
                        c.current_value,
                        c.current_by,
                        c.proposed_value,
                        c.proposed_by,
                        c.status
                    )?;
                }
            }
        }
        Cmd::Conflicts { cmd: ConflictCmd::Resolve { config, id, keep, value, reason } } => {
            if keep.is_none() && value.is_none() {
                bail!("give --keep <household id> (duplicate person) or --value V (field conflict)");
            }
            let hub = open(&config).await?;
            hub.resolve_conflict(id, keep.as_deref(), value.as_deref(), &reason).await?;
            outln!("conflict #{id} resolved")?;
        }
        Cmd::Signoff { config, year, period } => {
            let hub = open(&config).await?;
            let s = hub.signoff(year, &period).await?;
            outln!("{}", serde_json::to_string_pretty(&s)?)?;
        }
        Cmd::Forward { config } => {
            let hub = open(&config).await?;
            let bar = progress_bar("forwarding to the province", "records");
            let r = hub
                .forward_with(&|p| {
                    bar.set_length(p.records_total);
                    bar.set_position(p.records_done);
                })
                .await?;
            bar.finish_and_clear();
            outln!("forwarded {} change sets ({} records) and {} sign-offs", r.changesets, r.records, r.signoffs)?;
            let p = &r.pulled;
            outln!(
                "pulled {} province feedback items: {} moved out of the county, {} arrivals confirmed, {} passed to townships",
                p.items,
                p.moved_out,
                p.moved_in,
                p.passed_down
            )?;
        }
        Cmd::ImportBundle { config, file, answer } => {
            let hub = open(&config).await?;
            let bytes = std::fs::read(&file).with_context(|| format!("reading bundle {}", file.display()))?;
            let bar = progress_bar("importing the bundle", "change sets");
            let r = jianka_hub::bundle::import_bundle_with(&hub, &bytes, &|done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .await
            .with_context(|| format!("bundle {} was not imported", file.display()))?;
            bar.finish_and_clear();
            std::fs::write(&answer, &r.answer_file).with_context(|| format!("writing {}", answer.display()))?;
            let applied = r.answer.outcomes.iter().filter(|o| matches!(o, PushOutcome::Accepted { .. })).count();
            outln!(
                "{}: {} change sets ({} applied, {} already here); answer with {} feedback items written to {}",
                r.answer.origin,
                r.answer.outcomes.len(),
                applied,
                r.answer.outcomes.len() - applied,
                r.answer.feedback.items.len(),
                answer.display()
            )?;
        }
        Cmd::Report { config, json, year } => {
            let hub = open(&config).await?;
            let r = hub.report(year).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&r)?)?;
            } else {
                use std::io::Write;
                std::io::stdout().lock().write_fmt(format_args!("{r}"))?;
            }
        }
        Cmd::Audit { cmd: AuditCmd::Verify { config } } => {
            let hub = open(&config).await?;
            match audit::verify(hub.store().as_ref()).await? {
                audit::AuditCheck::Intact { entries, head } => {
                    outln!("audit log intact: {entries} entries, head {head}")?
                }
                audit::AuditCheck::Broken { seq, reason } => bail!("audit log broken at entry {seq}: {reason}"),
            }
        }
        Cmd::Quota { cmd: QuotaCmd::Adjust { config, from, to, villages, reason } } => {
            let hub = open(&config).await?;
            let a = hub.adjust_villages(&from, &to, villages, &reason).await?;
            outln!("moved {} village quota from {} to {} (signed, audited)", a.villages, a.from, a.to)?;
        }
        Cmd::NewYear { config, year } => {
            let hub = open(&config).await?;
            let r = hub.new_year(year).await?;
            outln!(
                "froze {} ({} records, digest {}); carried {} households forward",
                r.frozen,
                r.snapshot.records,
                r.snapshot.digest,
                r.carried_households
            )?;
        }
        Cmd::Late { config, year } => {
            let hub = open(&config).await?;
            let late = hub.late(year).await?;
            if late.is_empty() {
                outln!("nobody is late for {year}")?;
            }
            for (r, m) in late {
                outln!("{r}: {m}")?;
            }
        }
        Cmd::Reopen { config, year, region, reason, until } => {
            let hub = open(&config).await?;
            let until = hub.reopen(year, &region, &reason, until).await?;
            outln!("year {year} reopened for {region} until {until} (audited); locked again after that day")?;
        }
    }
    Ok(())
}
