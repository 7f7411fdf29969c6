//! `jianka-hub`: the county and province hub (建档立卡 data-sync gateway).

use anyhow::{Context, bail};
use clap::Parser;
use cli::*;
use jianka_hub::{HubConfig, admin, audit, clock};
use jianka_shared::{Tier, protocol::PushOutcome, trust::KeyId};
use jianka_term::{errln, outln};
use std::process::ExitCode;

// The hub allocates and frees many small strings per record (field maps, statements); mimalloc
// handles that churn far better than the system allocator (measured with the ingest benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod split;

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
                        errln!("no --parent-url: this hub cannot forward until parent_url is set in {d}/hub.toml")?;
                    }
                    errln!(
                        "next: the hub above (the province, or a prefecture) enrolls this key (jianka-hub enroll \
                         --config <parent>/hub.toml --subject {region} --public-key {} --out chain.json), then: \
                         jianka-hub install-chain --config {d}/hub.toml chain.json",
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
        Cmd::Signoff { config, year, period, monitoring } => {
            let table = monitoring.as_deref().map(jianka_hub::admin::read_monitoring_file).transpose()?;
            let hub = open(&config).await?;
            let s = hub.signoff(year, &period, table).await?;
            outln!("{}", serde_json::to_string_pretty(&s)?)?;
        }
        Cmd::Notice { config, year, step, region, villages, format, encoding, out } => {
            let hub = open(&config).await?;
            let region = region.unwrap_or_else(|| hub.region().clone());
            let list = if villages {
                hub.village_notice_list(year, &step, &region).await?
            } else {
                hub.notice_list(year, &step, &region).await?
            };
            let bytes = match format {
                cli::NoticeFormat::Csv => {
                    let enc: jianka_publish::Encoding = encoding.parse().map_err(|e: String| anyhow::anyhow!(e))?;
                    jianka_publish::to_csv(&list, enc)?
                }
                cli::NoticeFormat::Xlsx => jianka_publish::to_xlsx(&list)?,
                cli::NoticeFormat::Html => jianka_publish::to_html(&list).into_bytes(),
            };
            std::fs::write(&out, bytes).with_context(|| format!("cannot write {}", out.display()))?;
            let what = if villages {
                format!("{} villages", list.len())
            } else {
                format!("{} households of {} villages", list.len(), list.villages.len())
            };
            outln!("{}: {what} written to {}", list.title, out.display())?;
        }
        Cmd::Export { config, year, region, format, encoding, with_id_numbers, out } => {
            let hub = open(&config).await?;
            let region = region.unwrap_or_else(|| hub.region().clone());
            let (headers, rows, households) = hub.export_rows(year, &region, with_id_numbers).await?;
            let table = jianka_publish::Table {
                headers: &headers,
                rows: &rows,
                note: with_id_numbers.then_some(jianka_hub::admin::export::INTERNAL),
            };
            let bytes = match format {
                TableFormat::Csv => {
                    let enc: jianka_publish::Encoding = encoding.parse().map_err(|e: String| anyhow::anyhow!(e))?;
                    jianka_publish::table_csv(&table, enc)?
                }
                TableFormat::Xlsx => jianka_publish::table_xlsx(&table, &format!("扶贫手册{year}"))?,
            };
            std::fs::write(&out, bytes).with_context(|| format!("cannot write {}", out.display()))?;
            outln!(
                "{households} households ({} members) of {region} in {year} written to {}",
                rows.len(),
                out.display()
            )?;
        }
        Cmd::Monitoring { config, year, json } => {
            let hub = open(&config).await?;
            let tables = hub.monitoring_tables(year).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&tables)?)?;
            } else if tables.is_empty() {
                outln!("no 贫困县监测表 for {year} here")?;
            }
            for (county, t) in tables.iter().filter(|_| !json) {
                outln!("{county} 贫困县监测表 {year}")?;
                for (part, items) in jianka_shared::monitoring::PARTS {
                    let figures: Vec<String> =
                        items.iter().map(|i| format!("{i} {}", t.get(part, i).unwrap_or("-"))).collect();
                    outln!("  {part}: {}", figures.join(", "))?;
                }
            }
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
        Cmd::Report { config, json, year, xlsx } => {
            let hub = open(&config).await?;
            let r = hub.report(year).await?;
            if let (Some(path), Some(y)) = (&xlsx, year) {
                let bytes = jianka_hub::admin::export::report_xlsx(&r, y)?;
                std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
                errln!("the {y} report written to {}", path.display())?;
            }
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
        Cmd::Scale { cmd: ScaleCmd::Split { total, weights, villages, share, class_total, regions, config, json } } => {
            let input = split::Input { total, weights, villages, share, class_total, regions };
            split::print(&input, config, json)?;
        }
        Cmd::Quota { cmd: QuotaCmd::Adjust { config, year, from, to, villages, reason } } => {
            let hub = open(&config).await?;
            let (a, b) = hub.adjust_villages(year, &from, &to, villages, &reason).await?;
            outln!("moved {villages} poor-village places from {from} to {to} for {year} (signed, audited):")?;
            for h in [a, b] {
                outln!("  {}", jianka_hub::allocation::summary(&h.allocation))?;
            }
        }
        Cmd::Allocate { config, year, total, weights, villages, share, class_total, regions, note, out } => {
            let hub = open(&config).await?;
            let input = split::Input { total, weights, villages, share, class_total, regions };
            let split = split::for_allocation(&hub, year, &input).await?;
            let issued = hub.allocate(year, &split, &note).await?;
            for h in &issued {
                outln!("{}", jianka_hub::allocation::summary(&h.allocation))?;
                if let Some(dir) = &out {
                    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
                    let path = dir.join(format!("allocation-{}.json", h.allocation.region));
                    std::fs::write(&path, serde_json::to_vec_pretty(&h.chain)?)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
            }
            errln!(
                "{} allocations signed and queued for their children (they receive them with this hub's feedback){}",
                issued.len(),
                out.as_ref().map(|d| format!("; chains written to {}", d.display())).unwrap_or_default()
            )?;
        }
        Cmd::Decide { config, year, household, admit, refuse: _, reason } => {
            let hub = open(&config).await?;
            let d = hub.decide(year, &household, admit, &reason).await?;
            let what = if d.admitted { "admitted (认定)" } else { "refused (不予认定)" };
            outln!(
                "household {} {what}, {} people, was {}; audited and sent to the township",
                d.household,
                d.people,
                d.was
            )?;
        }
        Cmd::File { config, year, region } => {
            let hub = open(&config).await?;
            let filing = hub.file_announced(year, &region).await?;
            let flow = hub.flow(jianka_shared::RecordKind::Household);
            outln!(
                "filed ({}) {} households recognised in {region} for {year}; audited and sent down",
                flow.label(jianka_shared::domain::Status::ProvinceFiled),
                filing.filed
            )?;
            if !filing.held.is_empty() {
                outln!("held back, {} households (filed once what holds them is settled):", filing.held.len())?;
                for (household, why) in &filing.held {
                    outln!("  {household}: {why}")?;
                }
            }
        }
        Cmd::InstallAllocation { config, file } => {
            let hub = open(&config).await?;
            let text = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let chain: Vec<jianka_shared::allocation::SignedAllocation> =
                serde_json::from_slice(&text).with_context(|| {
                    format!("{}: not an allocation chain (a file from `allocate --out`)", file.display())
                })?;
            let a = hub.install_allocation(&chain).await.with_context(|| format!("{}", file.display()))?;
            outln!("kept {}", jianka_hub::allocation::summary(&a))?;
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
