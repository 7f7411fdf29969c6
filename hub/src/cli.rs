//! The hub's command line: every subcommand, its arguments and the help that teaches them
//! (the binary's own module, not part of the library). `main.rs` runs what was asked.

use clap::{Parser, Subcommand};
use jianka_shared::RegionCode;
use std::path::PathBuf;

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
///   jianka-hub allocate --config prov/hub.toml --year 2014 --total 106330 --weights config/scale/counties.example.csv --villages config/scale/villages.example.csv --share 片区县=25
///   jianka-node init --dir town --township 420322105 --hub http://127.0.0.1:7002
///   jianka-hub enroll --config county/hub.toml --subject 420322105 --public-key <node key> --out node-chain.json
///   jianka-node --config town/node.toml trust node-chain.json
///   jianka-hub serve --config prov/hub.toml
///   jianka-hub serve --config county/hub.toml
///
/// The province listens on 127.0.0.1:7001 and a county on 127.0.0.1:7002 unless `init --listen`
/// or `serve --listen` says otherwise. `init` copies the profile and quotas it is given into the
/// hub's directory. Under scale control a county admits people only within the allocation the
/// province signed (`allocate`; the county receives it with the province's feedback on its next
/// `forward`, or by hand with `install-allocation`): until then it admits nobody, and says why.
///
/// Environment: JIANKA_HUB_<FIELD> overrides hub.toml (JIANKA_HUB_SCHEDULE__FORWARD for nested keys);
/// JIANKA_NOW (RFC 3339) fixes the clock; RUST_LOG sets the log level.
#[derive(Parser)]
#[command(name = "jianka-hub", version, verbatim_doc_comment)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
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
    /// 规模分解 issued: split the scale for a year and send each child its signed allocation.
    ///
    /// The province splits the people it sets (--total) by the counties' weights and the poor
    /// villages by class; a county under an enrolled prefecture goes to that prefecture with
    /// the county's part inside. A prefecture or county splits what it received: --total may
    /// be left out (its own allocation), never exceed it; a prefecture without weights passes
    /// on the province's own per-county parts. Each child receives its allocation with the
    /// parent's feedback (a county on its next forward, a township on its next sync), or by hand
    /// from --out.
    ///
    /// Example: jianka-hub allocate --config prov/hub.toml --year 2014 --total 5885300 --weights counties-2013.csv --villages villages.csv --share 片区县=25 --share 其他=15
    /// Example: jianka-hub allocate --config county/hub.toml --year 2014 --weights townships.csv
    #[command(verbatim_doc_comment)]
    Allocate {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        /// The registration year the allocation is for (in force until a later one replaces it).
        #[arg(long)]
        year: u16,
        /// People to split (the province: required with --weights; below: at most what this
        /// hub was allocated, which is the default).
        #[arg(long)]
        total: Option<u64>,
        /// CSV `region,weight`: the children's weights for people (e.g. 2013 registered people,
        /// or rural population × a chosen incidence rate).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// CSV `region,villages,class`: each county's administrative villages and its class
        /// (the province); below it, villages are split by --weights like people.
        #[arg(long)]
        villages: Option<PathBuf>,
        /// A class's share of its administrative villages, e.g. 片区县=25 (percent).
        #[arg(long, value_name = "CLASS=PERCENT", requires = "villages")]
        share: Vec<String>,
        /// A class's number of poor villages set outright, e.g. 片区县=2470.
        #[arg(long, value_name = "CLASS=N", requires = "villages")]
        class_total: Vec<String>,
        /// The official region codes (CSV with a first column `code`, e.g. the 2023 tables'
        /// areas.csv or streets.csv): a region not listed is refused as unknown.
        #[arg(long)]
        regions: Option<PathBuf>,
        /// Why (kept in each allocation and the audit log).
        #[arg(long, default_value = "规模分解")]
        note: String,
        /// Also write each child's allocation chain to DIR/allocation-<region>.json, to carry by
        /// hand (`jianka-hub install-allocation` at a county, `jianka-node` takes it as feedback).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Keep an allocation chain carried by hand (from the parent's `allocate --out`): verified
    /// through this hub's certificate chain, refused if anything in it was altered.
    ///
    /// Example: jianka-hub install-allocation --config county/hub.toml allocation-420322.json
    #[command(verbatim_doc_comment)]
    InstallAllocation {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        file: PathBuf,
    },
    /// Decide one household by hand, for a stated reason: admit one the profile leaves to the
    /// deciding tier (酌情纳入: heavy spending on illness, schooling, disaster) or one refused
    /// before, or refuse one waiting at 县复审. Only where the profile's flow decides at this
    /// hub's tier (the county under hubei-2014; under miyun-2016 the township decides, with
    /// `jianka-node workflow decide`). Within the ceiling in force; audited; sent to the township.
    ///
    /// Example: jianka-hub decide --config county/hub.toml --year 2014 --household 420322105200-0007 --admit --reason "因病支出 4.2万元, 入户核查属实"
    #[command(verbatim_doc_comment)]
    Decide {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        year: u16,
        /// The household's id, `<village code>-<number>`.
        #[arg(long)]
        household: String,
        /// Admit it (认定: 县公告 under hubei-2014).
        #[arg(long, conflicts_with = "refuse", required_unless_present = "refuse")]
        admit: bool,
        /// Refuse it (不予认定).
        #[arg(long)]
        refuse: bool,
        /// Why (kept in the record, the audit log and the township's notice).
        #[arg(long)]
        reason: String,
    },
    /// 备案: file every household recognised in a region for a year, at the tier the profile's
    /// flow names (the province's 省备案 of a county's 县公告 under hubei-2014; the district's
    /// 区直备案 of its townships' 镇级审定 under miyun-2016); the filing goes down to the child
    /// that holds it and on to its townships.
    ///
    /// Example: jianka-hub file --config prov/hub.toml --year 2014 --region 420322
    ///          jianka-hub file --config district/hub.toml --year 2016 --region 110228
    #[command(verbatim_doc_comment)]
    File {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        year: u16,
        /// The region whose list is filed: a county at a province, the district itself (or one
        /// of its townships) at a district.
        #[arg(long, alias = "county")]
        region: RegionCode,
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
    /// Sign off the county's data for a period (digest + summary, signed with the county key),
    /// with the year's 贫困县监测表 when --monitoring names its file (due by the end of February
    /// for the year before; the province lists counties without one as late). The table is a
    /// CSV (UTF-8 or GBK) with the columns 部分,项目,数值 and one line per figure of its six
    /// parts; config/monitoring.example.csv lists every item.
    ///
    /// Example: jianka-hub signoff --config hub.toml --year 2014 --period 2014-annual
    ///          jianka-hub signoff --config hub.toml --year 2014 --period 2014-monitoring --monitoring 监测表-2014.csv
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
        /// The year's 贫困县监测表 (CSV: 部分,项目,数值), filed with this sign-off.
        #[arg(long)]
        monitoring: Option<PathBuf>,
    },
    /// Write the public notice list this hub posts: the 县公告 (for the county's portal) of the
    /// households recognised in a region, each once, with the head's name (the ID number masked),
    /// household size, main cause, the notice's first and last day (from the day of the decision)
    /// and where objections go (`[notice]` in hub.toml); as CSV (UTF-8 with BOM, or GBK), XLSX (a
    /// sheet per village) or a printable A4 page (a page per village).
    ///
    /// Example: jianka-hub notice --config county/hub.toml --year 2014 --step 县公告 --format html --out 县公告-2014.html
    #[command(verbatim_doc_comment)]
    Notice {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        year: u16,
        /// The notice step, by its name in the profile's flow (县公告) or its status.
        #[arg(long)]
        step: String,
        /// Only this region (default: the hub's own).
        #[arg(long)]
        region: Option<RegionCode>,
        /// The list of poor villages of the village flow's notice (公告 of the 贫困村).
        #[arg(long)]
        villages: bool,
        #[arg(long, value_enum, default_value = "html")]
        format: NoticeFormat,
        /// For CSV: utf-8 or gbk.
        #[arg(long, default_value = "utf-8")]
        encoding: String,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// The 贫困县监测表 held here for a year: each county's figures, part by part.
    ///
    /// Example: jianka-hub monitoring --config prov/hub.toml --year 2014
    #[command(verbatim_doc_comment)]
    Monitoring {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        year: u16,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
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
        /// Also write the year's report as a workbook (概况, 致贫原因, 规模) to this file (needs --year).
        #[arg(long, requires = "year")]
        xlsx: Option<PathBuf>,
    },
    /// Export the households this hub holds for a region in exactly the 扶贫手册 import columns
    /// (a township's `jianka-node import` reads the file back), for filing or for the township.
    /// Identity numbers, phones and bank accounts are masked unless --with-id-numbers, which
    /// writes them in full and marks the file internal (内部资料).
    ///
    /// Example: jianka-hub export --config county/hub.toml --year 2014 --region 420322105 --with-id-numbers --format xlsx --out 420322105-2014.xlsx
    #[command(verbatim_doc_comment)]
    Export {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        year: u16,
        /// The region (default: the hub's own).
        #[arg(long)]
        region: Option<RegionCode>,
        #[arg(long, value_enum, default_value = "csv")]
        format: TableFormat,
        /// For CSV: utf-8 or gbk.
        #[arg(long, default_value = "utf-8")]
        encoding: String,
        /// Identity numbers, phones and bank accounts in full (an internal file).
        #[arg(long)]
        with_id_numbers: bool,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify the hash-chained audit log.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// 规模分解: split a number over the regions below by weights, by the largest remainder (the
    /// parts add up exactly; each is within one of its exact share; ties go to the lower code).
    ///
    /// Example: jianka-hub scale split --total 5885300 --weights counties-2013.csv --config prov/hub.toml
    /// Example: jianka-hub scale split --villages villages.csv --share 片区县=25 --share 其他=15 --json
    #[command(verbatim_doc_comment)]
    Scale {
        #[command(subcommand)]
        cmd: ScaleCmd,
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
pub enum EquivocationCmd {
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
pub enum ConflictCmd {
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
pub enum AuditCmd {
    /// Example: jianka-hub audit verify --config hub.toml
    Verify {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum QuotaCmd {
    /// Move poor-village places between two counties of one prefecture (微调, at the prefecture):
    /// both get a new signed allocation, sent down to them and filed with the province.
    ///
    /// Example: jianka-hub quota adjust --config pref/hub.toml --year 2014 --from 420322 --to 420323 --villages 2 --reason "2014 微调"
    #[command(verbatim_doc_comment)]
    Adjust {
        /// The hub's config file (hub.toml, written by `init`).
        #[arg(long)]
        config: PathBuf,
        /// The year whose allocations are re-balanced.
        #[arg(long)]
        year: u16,
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

#[derive(Subcommand)]
pub enum ScaleCmd {
    /// People: --total N --weights FILE (CSV `region,weight`); poor villages: --villages FILE
    /// (CSV `region,villages,class`) with --share CLASS=PERCENT or --class-total CLASS=N per class.
    Split {
        /// The number of people to split, by --weights.
        #[arg(long, requires = "weights", conflicts_with = "villages")]
        total: Option<u64>,
        /// CSV `region,weight`: weights are decimals (e.g. each county's 2013 registered people,
        /// or a township's rural population × the incidence rate chosen for it).
        #[arg(long, requires = "total")]
        weights: Option<PathBuf>,
        /// CSV `region,villages,class`: each county's administrative villages and its class.
        #[arg(long, conflicts_with = "weights")]
        villages: Option<PathBuf>,
        /// A class's share of its administrative villages, e.g. 片区县=25 (percent).
        #[arg(long, value_name = "CLASS=PERCENT", requires = "villages")]
        share: Vec<String>,
        /// A class's number of poor villages set outright, e.g. 片区县=2470.
        #[arg(long, value_name = "CLASS=N", requires = "villages")]
        class_total: Vec<String>,
        /// The official region codes (CSV with a first column `code`, e.g. the 2023 tables'
        /// areas.csv or streets.csv): a region not listed is refused as unknown.
        #[arg(long)]
        regions: Option<PathBuf>,
        /// The hub the split is made for: every region must be inside it, of the tier it splits
        /// to (a province's to counties, a county's to townships).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print `{"<region>": number, …}` instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The formats a notice list is written in.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeFormat {
    Csv,
    Xlsx,
    Html,
}

/// The formats a table export is written in.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFormat {
    Csv,
    Xlsx,
}
