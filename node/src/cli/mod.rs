//! Command-line interface. Exit codes: 0 ok, 1 differences found or sync failed, 2 bad input.
//! Results go to stdout (`--json` where offered), messages to stderr; a closed pipe ends quietly.

use crate::clock::Clock;
use crate::config::{self};
use crate::edit::Refused;
use crate::import::ImportOptions;
use crate::node::Node;
use crate::progress::Progress;
use crate::store::WriteError;
use crate::{adjust, bundle, daemon, edit, import, report, sync, vocabulary, workflow};
use anyhow::{Context, Result};
use jianka_keyfile::Keypair;
use jianka_shared::domain::Status;
use jianka_shared::flow::Flow;
use jianka_shared::protocol::DigestReport;
use jianka_shared::protocol::ErrorCode;
use jianka_shared::{RegionCode, Tier, Year};
use jianka_term::{errln, outln};
use std::path::Path;
use std::process::ExitCode;

mod args;
mod files;
mod registers;
pub use args::*;

/// Runs the CLI and maps errors to exit codes.
pub fn main_with(cli: Cli) -> ExitCode {
    match run(cli) {
        Ok(code) => code,
        // The reader stopped early (`status | head`): what it read is all it wanted.
        Err(e) if jianka_term::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let bad_input = e.chain().any(|c| c.is::<Refused>() || c.is::<WriteError>());
            let _ = errln!("error: {e:#}");
            if bad_input { ExitCode::from(2) } else { ExitCode::from(1) }
        }
    }
}

fn bad(e: anyhow::Error) -> anyhow::Error {
    let msg = format!("{e:#}");
    e.context(Refused(msg))
}

fn open(path: &Path, clock: Clock) -> Result<Node> {
    Node::open(path, clock).map_err(bad)
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?)?;
    Ok(())
}

/// What `workflow advance --all` did: steps taken, then the households not moved grouped by
/// reason (a few named per group), and why none moved when none did.
fn print_bulk_advance(r: &workflow::BulkAdvance, year: Year, village: Option<&str>, flow: &Flow) -> Result<()> {
    let mut by_step: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, from, to) in &r.advanced {
        *by_step.entry(vocabulary::step_in(flow, *from, *to)).or_default() += 1;
    }
    for (step, n) in by_step {
        outln!("{}: {step}", households(n))?;
    }
    let scope = match village {
        Some(v) => format!("village {v} in year {year}"),
        None => format!("year {year}"),
    };
    if r.households == 0 {
        errln!("no household moved: {scope} has no households on this node")?;
        return Ok(());
    }
    let not_moved = r.households - r.advanced.len();
    if not_moved == 0 {
        return Ok(());
    }
    if r.advanced.is_empty() {
        errln!("no household moved: none of the {} households of {scope} may take its next step now", r.households)?;
    } else {
        errln!("{not_moved} of {} households of {scope} not moved:", r.households)?;
    }
    const NAMED: usize = 3;
    for g in &r.not_moved {
        let mut names = g.households.iter().take(NAMED).cloned().collect::<Vec<_>>().join(", ");
        if g.households.len() > NAMED {
            names.push_str(&format!(" and {} more", g.households.len() - NAMED));
        }
        errln!("  {} {}", households(g.households.len()), g.reason)?;
        errln!("    {names}")?;
        // Rule problems differ per household: each is named in full.
        if matches!(g.holdup, workflow::Holdup::BreaksRules { .. }) {
            for (hid, why) in r.refused.iter().filter(|(h, _)| g.households.contains(h)) {
                errln!("    {hid}: {why}")?;
            }
        }
    }
    // Households whose status could not be read are in no group.
    for (hid, why) in r.refused.iter().filter(|(h, _)| !r.not_moved.iter().any(|g| g.households.contains(h))) {
        errln!("  {hid}: {why}")?;
    }
    Ok(())
}

/// "1 household", "200 households".
/// A file import's outcome: JSON, or each refused row then the totals; exit code 2 when a row was refused.
fn print_rows_report(r: &import::RowsReport, json: bool) -> Result<ExitCode> {
    if json {
        print_json(r)?;
    } else {
        for e in &r.errors {
            errln!("{e}")?;
        }
        let dry = if r.dry_run { "DRY RUN " } else { "" };
        outln!(
            "{dry}{}: {} rows, {} imported, {} refused, {} changed",
            r.file,
            r.rows,
            r.imported,
            r.refused,
            r.records_changed
        )?;
    }
    Ok(if r.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

fn households(n: usize) -> String {
    if n == 1 { "1 household".into() } else { format!("{n} households") }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let clock = Clock::from_env().map_err(bad)?;
    let today = clock.today();
    match cli.command {
        Command::Init { dir, township, hub, profile } => init(&dir, &township, &hub, profile.as_deref()),
        Command::NewKey => {
            let node = open(&cli.config, clock)?;
            let path = node.cfg.key_path();
            let kept = path.with_file_name(format!(
                "{}.revoked-{}",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("node.key"),
                node.clock.now().format("%Y%m%d-%H%M%S")
            ));
            std::fs::rename(&path, &kept)
                .with_context(|| format!("cannot move the old key {} aside to {}", path.display(), kept.display()))?;
            let kp = Keypair::generate()?;
            kp.write_new(&path).map_err(|e| Refused(e.to_string()))?;
            let code = node.township().clone();
            outln!("public_key {}", jianka_keyfile::public_hex(&kp.public()))?;
            outln!("key_id {}", kp.key_id())?;
            errln!(
                "new key written to {} (the old one kept as {}).\nNext: the county enrolls this key:\n  jianka-hub enroll --config <county>/hub.toml --subject {code} --public-key {} --out chain.json\nthen: jianka-node --config {} trust chain.json, and sync",
                path.display(),
                kept.display(),
                jianka_keyfile::public_hex(&kp.public()),
                cli.config.display()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Trust { chain } => {
            let node = open(&cli.config, clock)?;
            let c = bundle::install_chain(&node, &chain)?;
            outln!("installed chain: {}", c.iter().map(|c| c.subject.to_string()).collect::<Vec<_>>().join(" → "))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Import { file, dry_run, year, json } => {
            let mut node = open(&cli.config, clock)?;
            let year = year_in_force(&node, year);
            // Progress on a terminal for files over 5,000 rows; none with --json.
            let progress_over = if json { usize::MAX } else { 5000 };
            let r = import::import_households(&mut node, &file, ImportOptions { year, dry_run, progress_over })
                .map_err(bad)?;
            if json {
                print_json(&r)?;
            } else {
                for e in &r.errors {
                    errln!("{e}")?;
                }
                outln!(
                    "{}{}: {} rows ({}), {} households: {} imported ({} members), {} refused; {} records changed, {} changes queued; {:.0} rows/s",
                    if dry_run { "DRY RUN " } else { "" },
                    r.file,
                    r.rows,
                    r.encoding,
                    r.households_in_file,
                    r.households_imported,
                    r.members_imported,
                    r.households_refused,
                    r.records_changed,
                    r.changes_captured,
                    r.rows_per_sec
                )?;
            }
            Ok(if r.errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
        Command::Village(cmd) => registers::village(cmd, &cli.config, clock),
        Command::Household(cmd) => registers::household(cmd, &cli.config, clock),
        Command::Member(cmd) => {
            let mut node = open(&cli.config, clock)?;
            let n = match cmd {
                MemberCmd::Add { household, id_number, sets, year } => {
                    let y = year_in_force(&node, year.year);
                    edit::member_add(&mut node, y, &household, &id_number, &sets)?
                }
                MemberCmd::Edit { id_number, sets, year } => {
                    let y = year_in_force(&node, year.year);
                    edit::member_edit(&mut node, y, &id_number, &sets)?
                }
                MemberCmd::Remove { id_number, year } => {
                    let y = year_in_force(&node, year.year);
                    edit::member_remove(&mut node, y, &id_number)?
                }
            };
            outln!("{n} change(s) queued")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Workflow(cmd) => {
            let mut node = open(&cli.config, clock)?;
            let flow = node.cfg.household_flow().map_err(bad)?;
            match cmd {
                WorkflowCmd::Advance { household: Some(household), date, minutes, year, .. } => {
                    let y = year_in_force(&node, year.year);
                    let (from, to) =
                        workflow::advance(&mut node, y, &household, date.unwrap_or(today), minutes.as_deref(), &flow)?;
                    outln!("{household}: {}", vocabulary::step_in(&flow, from, to))?;
                }
                WorkflowCmd::Advance { household: None, village, date, minutes, year, json, .. } => {
                    let y = year_in_force(&node, year.year);
                    let r = workflow::advance_all(
                        &mut node,
                        y,
                        village.as_deref(),
                        date.unwrap_or(today),
                        minutes.as_deref(),
                        &flow,
                    )?;
                    if json {
                        print_json(&r)?;
                    } else {
                        print_bulk_advance(&r, y, village.as_deref(), &flow)?;
                    }
                    // Asked to move households and none moved: say so in the exit code too.
                    if r.advanced.is_empty() {
                        return Ok(ExitCode::from(2));
                    }
                }
                WorkflowCmd::Object { household, by, reason, date, year } => {
                    let y = year_in_force(&node, year.year);
                    let id = workflow::object(&mut node, y, &household, (&by, &reason), date.unwrap_or(today), &flow)?;
                    outln!("objection #{id} recorded; the notice is stopped until it is resolved")?;
                }
                WorkflowCmd::ResolveObjection { id, resolution, date } => {
                    workflow::resolve_objection(&mut node, id, &resolution, date.unwrap_or(today))?;
                    outln!("objection #{id} resolved; the notice runs its full length again from today")?;
                }
                WorkflowCmd::Decide { household, admit, refuse: _, reason, date, year } => {
                    let y = year_in_force(&node, year.year);
                    let (from, to) =
                        workflow::decide(&mut node, y, &household, admit, &reason, date.unwrap_or(today), &flow)?;
                    let files =
                        flow.files().map(|t| format!("; the {t} files it ({})", flow.label(Status::ProvinceFiled)));
                    outln!("{household}: {}{}", vocabulary::step_in(&flow, from, to), files.unwrap_or_default())?;
                }
                WorkflowCmd::Show { household, year } => {
                    let y = year_in_force(&node, year.year);
                    let mut stmt = node.conn.prepare(
                        "SELECT from_status, to_status, date, COALESCE(minutes, '') FROM workflow_events
                         WHERE year = ?1 AND household = ?2 ORDER BY id",
                    )?;
                    let rows = stmt.query_map(rusqlite::params![y, household], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                        ))
                    })?;
                    for row in rows {
                        let (f, t, d, m) = row?;
                        outln!("{d}  {}  {m}", vocabulary::stored_step(&f, &t))?;
                    }
                    for o in workflow::open_objections(&node.conn, y, &household)? {
                        outln!("OPEN objection #{} by {} on {}: {}", o.id, o.raised_by, o.raised_date, o.reason)?;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Adjust(cmd) => adjust_cmd(cmd, &cli.config, clock),
        Command::Sync { json } => {
            let mut node = open(&cli.config, clock)?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let client = sync::client(&node)?;
            let r = rt.block_on(sync::sync_pass(&mut node, &client, true, Progress::on_terminal(json)));
            match r {
                Ok(rep) => {
                    if json {
                        print_json(&rep)?;
                    } else {
                        outln!(
                            "sync ok: sealed {} change set(s), pushed {}, acknowledged through {}, {} feedback item(s) applied",
                            rep.sealed.len(),
                            rep.pushed.len(),
                            rep.acknowledged_through,
                            rep.feedback_applied
                        )?;
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    let _ = crate::db::set_meta(&node.conn, "last_sync_error", &format!("{e:#}"));
                    errln!("sync failed: {e:#}")?;
                    errln!("{}", sync_failure_advice(&e))?;
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Run => {
            let node = open(&cli.config, clock)?;
            // A profile that does not read (an unknown rule, step or tier) stops the daemon at start.
            node.cfg.profile().map_err(bad)?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(daemon::run(node, daemon::shutdown_signal()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Notice { step, village, villages, format, encoding, out, year } => {
            let node = open(&cli.config, clock)?;
            let what =
                files::NoticeArgs { step: &step, village: village.as_deref(), villages, format, encoding: &encoding };
            files::notice(&node, what, &out, year.year)
        }
        Command::Export { village, format, encoding, with_id_numbers, out, year } => {
            let node = open(&cli.config, clock)?;
            files::export(&node, (village.as_deref(), with_id_numbers), (format, &encoding), &out, year.year)
        }
        Command::Assistance(cmd) => files::assistance(cmd, &cli.config, clock),
        Command::ExportBundle { out } => {
            let mut node = open(&cli.config, clock)?;
            let r = bundle::export_bundle(&mut node, &out, Progress::on_terminal(false))?;
            outln!("{}: {} change set(s), {} bytes; carry it to the county", r.file, r.envelopes.len(), r.bytes)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ImportAnswer { file } => {
            let mut node = open(&cli.config, clock)?;
            let r = bundle::import_answer(&mut node, &file, Progress::on_terminal(false))?;
            outln!(
                "answer applied: {} change set(s) acknowledged, {} feedback item(s); the county expects seq {} next",
                r.acknowledged.len(),
                r.feedback_applied,
                r.expected_seq
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let node = open(&cli.config, clock)?;
            let s = report::status(&node)?;
            if json {
                print_json(&s)?
            } else {
                report::print_status(&s)?
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { year, json } => {
            let node = open(&cli.config, clock)?;
            let year = year_in_force(&node, year);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let client = sync::client(&node)?;
            let hub: DigestReport = rt
                .block_on(client.call("GET", &format!("/v1/digest?year={year}"), b""))
                .context("cannot fetch the county's digest")?;
            let v = report::compare(&node, year, &hub)?;
            if json {
                print_json(&v)?
            } else {
                report::print_verify(&v)?
            }
            Ok(if v.identical { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}

/// The year a command works on; when the clerk gave none, says which was taken and why, so a
/// 2014 register is never silently read as this calendar year's.
fn year_in_force(node: &Node, given: Option<Year>) -> Year {
    let (year, from) = node.year_in_force(given);
    if given.is_none() {
        let _ = errln!("year {year} ({from}; give --year to choose another)");
    }
    year
}

/// What the clerk should do after a failed sync: run it again when the link failed; when the
/// county refused this node's key itself, retrying cannot help, so say so and who can.
fn sync_failure_advice(e: &anyhow::Error) -> String {
    let hub_error = e.chain().find_map(|c| c.downcast_ref::<jianka_client::HubError>());
    let code = hub_error.and_then(|h| h.code());
    let kept = "nothing is lost: pending changes stay in the outbox";
    if matches!(hub_error, Some(jianka_client::HubError::Unverified { .. })) {
        return format!(
            "what came down was not signed by the county this node trusts, so none of it was applied. {kept}. If \
             the county's key changed, install the chain it gives (`jianka-node trust`); if not, someone on the line \
             may be altering it: tell the county's IT officer."
        );
    }
    match code {
        Some(ErrorCode::RevokedKey) => format!(
            "this node's key was revoked by the county (the hub's message above gives its reason); the county accepts \
             nothing more signed with it, so syncing again will not help. {kept}. Make a new key here \
             (`jianka-node new-key`), have the county enroll it (`jianka-hub enroll`), install the chain it gives \
             (`jianka-node trust`), then sync: what the county has not received goes up under the new key."
        ),
        Some(ErrorCode::Equivocation) => format!(
            "the county holds this node: it received two different change sets under one number from it. {kept}. Call \
             the county's IT officer, who checks and clears it (`jianka-hub equivocations`); then sync again."
        ),
        Some(ErrorCode::UnknownKey) => format!(
            "the county does not know this node's key: it has not been enrolled there, or its certificate expired. \
             {kept}. Ask the county to enroll it (`jianka-hub enroll`) and install the chain with `jianka-node trust`."
        ),
        _ => format!("{kept}; run `jianka-node sync` again"),
    }
}

/// Creates a node directory (config, database, key); prints the public key and key id.
pub fn init(dir: &Path, township: &str, hub: &str, profile: Option<&Path>) -> Result<ExitCode> {
    let code = RegionCode::parse(township).map_err(|e| Refused(e.to_string()))?;
    if code.tier() != Tier::Township {
        return Err(
            Refused(format!("--township {code} is a {} code; a township code has 9 digits", code.tier())).into()
        );
    }
    let cfg_path = dir.join("node.toml");
    if cfg_path.exists() {
        return Err(
            Refused(format!("{} already exists; this directory holds a node already", cfg_path.display())).into()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let text = config::render_initial(&code, hub, profile);
    // Validate before writing anything else.
    let parsed: config::NodeConfig = toml::from_str(&text).map_err(|e| Refused(e.to_string()))?;
    if !(parsed.hub_url.starts_with("http://") || parsed.hub_url.starts_with("https://")) {
        return Err(Refused(format!("--hub {hub:?} must start with http:// or https://")).into());
    }
    let key_path = dir.join("node.key");
    let kp = Keypair::generate()?;
    kp.write_new(&key_path).map_err(|e| Refused(e.to_string()))?;
    crate::db::open(&dir.join("node.db"))?;
    std::fs::write(&cfg_path, text).with_context(|| format!("cannot write {}", cfg_path.display()))?;
    outln!("public_key {}", jianka_keyfile::public_hex(&kp.public()))?;
    outln!("key_id {}", kp.key_id())?;
    errln!(
        "node for township {code} created in {}.\nNext: the county enrolls this key:\n  jianka-hub enroll --config <county>/hub.toml --subject {code} --public-key {} --out chain.json\nthen: jianka-node --config {} trust chain.json",
        dir.display(),
        jianka_keyfile::public_hex(&kp.public()),
        cfg_path.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn adjust_cmd(cmd: AdjustCmd, config: &Path, clock: Clock) -> Result<ExitCode> {
    let mut node = open(config, clock)?;
    let today = clock.today();
    match cmd {
        AdjustCmd::Exit { household, reason, date, year } => {
            let y = adjust::window_year(&node, year.year)?;
            adjust::exit(&mut node, y, &household, &reason, date.unwrap_or(today))?;
            outln!("{household}: exit recorded ({reason})")?;
        }
        AdjustCmd::Death { id_number, date, year } => {
            let y = adjust::window_year(&node, year.year)?;
            adjust::death(&mut node, y, &id_number, date.unwrap_or(today))?;
            outln!("death recorded")?;
        }
        AdjustCmd::Birth { household, id_number, sets, date, year } => {
            let y = adjust::window_year(&node, year.year)?;
            adjust::birth(&mut node, y, &household, &id_number, &sets, date.unwrap_or(today))?;
            outln!("birth recorded in {household}")?;
        }
        AdjustCmd::Marriage { id_number, to_household, relation, date, year } => {
            let y = adjust::window_year(&node, year.year)?;
            adjust::marriage(&mut node, y, &id_number, &to_household, &relation, date.unwrap_or(today))?;
            outln!("marriage recorded: member moved to {to_household}")?;
        }
        AdjustCmd::Move { household, to_village, date, year } => {
            let y = adjust::window_year(&node, year.year)?;
            let new_id = adjust::move_household(&mut node, y, &household, &to_village, date.unwrap_or(today))?;
            outln!("{household} moved: now {new_id}")?;
        }
        AdjustCmd::MoveOut { id_number, to_county, date, reason, year } => {
            let y = adjust::window_year(&node, year.year)?;
            adjust::move_out(&mut node, y, &id_number, &to_county, &reason, date.unwrap_or(today))?;
            outln!(
                "move out to county {to_county} recorded; the province completes it when that county takes the person"
            )?;
        }
        AdjustCmd::MoveIn { household, id_number, from_county, sets, date, year } => {
            let y = adjust::window_year(&node, year.year)?;
            adjust::move_in(&mut node, y, &household, &id_number, &from_county, &sets, date.unwrap_or(today))?;
            outln!("arrival from county {from_county} recorded in {household}; the province completes the move")?;
        }
        AdjustCmd::Update { household, sets, year } => {
            let y = adjust::window_year(&node, year.year)?;
            let n = adjust::update(&mut node, y, &household, &sets, today)?;
            outln!("{household}: {n} change(s) queued")?;
        }
        AdjustCmd::New { file, dry_run, year } => {
            let y = adjust::window_year(&node, year.year)?;
            let r =
                import::import_households(&mut node, &file, ImportOptions { year: y, dry_run, progress_over: 5000 })
                    .map_err(bad)?;
            for e in &r.errors {
                errln!("{e}")?;
            }
            outln!(
                "new entries: {} households imported, {} refused; they start at 申请 and pass the workflow and quota again",
                r.households_imported,
                r.households_refused
            )?;
            if !r.errors.is_empty() {
                return Ok(ExitCode::from(2));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
