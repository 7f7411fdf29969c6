//! The node's command line: every subcommand, its arguments, and the help that teaches them.

use crate::config::CONFIG_ENV;
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand, ValueEnum};
use jianka_shared::Year;
use std::path::PathBuf;

/// Jianka township node (乡镇节点): the township clerk's local register of poor households and
/// villages (建档立卡), with an offline outbox that syncs to the county hub over unreliable links.
#[derive(Parser, Debug)]
#[command(
    name = "jianka-node",
    version,
    after_help = "\
First steps:
  jianka-node init --dir /srv/jianka --township 420322105 --hub http://county.example:7002
  (the county enrolls the printed public key:
   jianka-hub enroll --config <county>/hub.toml --subject 420322105 --public-key HEX --out chain.json)
  jianka-node --config /srv/jianka/node.toml trust chain.json
  jianka-node --config /srv/jianka/node.toml import 扶贫手册.xlsx --dry-run
  jianka-node --config /srv/jianka/node.toml sync

Exit codes: 0 ok, 1 differences found or sync failed, 2 bad input.
Environment: JIANKA_NODE_CONFIG (config path), JIANKA_NODE_HUB_URL (overrides hub_url),
JIANKA_NOW (RFC 3339 start time of the clock, for tests and demos), JIANKA_LOG (log filter, e.g. info)."
)]
pub struct Cli {
    /// The node's config file.
    #[arg(long, global = true, env = CONFIG_ENV, default_value = "./node.toml")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a node: DIR/node.toml (commented), DIR/node.db and DIR/node.key; prints the public key.
    ///
    /// Example: jianka-node init --dir ./town --township 420322105 --hub http://127.0.0.1:7002
    Init {
        /// Directory for the node (created; must not hold a node.toml yet).
        #[arg(long)]
        dir: PathBuf,
        /// The 9-digit township code this node serves.
        #[arg(long)]
        township: String,
        /// Base URL of the county hub.
        #[arg(long)]
        hub: String,
        /// Identification profile (TOML) to reference from the config.
        #[arg(long)]
        profile: Option<PathBuf>,
    },
    /// A new key for this node, after the county revoked the old one.
    ///
    /// For a stolen laptop or a copied key file. The old key is kept as node.key.revoked-DATE;
    /// nothing in the register changes.
    /// The county enrolls the new public key, `trust` installs its chain, and the next sync sends
    /// what the county has not received, sealed again with the new key.
    ///
    /// Example: jianka-node --config /srv/jianka/node.toml new-key
    NewKey,
    /// Install the certificate chain the county issued for this node (from `jianka-hub enroll`).
    ///
    /// Example: jianka-node trust chain.json
    Trust { chain: PathBuf },
    /// Import a 扶贫手册 file (CSV in UTF-8 or GBK, or XLSX), one row per member.
    ///
    /// Bad rows are listed as FILE:LINE: COLUMN: reason; a household with a bad row is left out,
    /// all others are imported in one transaction. Re-importing the same file changes nothing.
    /// Example: jianka-node import 扶贫手册.csv --year 2014 --dry-run
    Import {
        file: PathBuf,
        /// Check and report only; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Registry year, e.g. 2014 (default: the year in force, printed when taken).
        #[arg(long)]
        year: Option<Year>,
        /// Print JSON instead of text (for scripts); no progress bars.
        #[arg(long)]
        json: bool,
    },
    /// The poor-village register (贫困村登记表).
    #[command(subcommand)]
    Village(VillageCmd),
    /// The 扶贫手册's parts 4–6: 帮扶计划 (per year: measures planned, target income), 帮扶措施
    /// (each measure taken: kind, date, amount, funding source, who) and 帮扶成效 (per year:
    /// income after assistance, exit, its date and basis), one entry per row.
    #[command(subcommand)]
    Assistance(AssistanceCmd),
    /// Show or edit a household.
    #[command(subcommand)]
    Household(HouseholdCmd),
    /// Add, edit or remove a member of a household.
    #[command(subcommand)]
    Member(MemberCmd),
    /// Move a household through the workflow (申请 → 民主评议 → 村公示 → 乡镇审核 → 乡镇公示 → 县复审).
    #[command(subcommand)]
    Workflow(WorkflowCmd),
    /// Annual-update adjustments (动态调整), only while the year's update window is open.
    #[command(subcommand)]
    Adjust(AdjustCmd),
    /// One sync pass now: seal pending changes, push them, pull the county's feedback.
    ///
    /// Exit code 1 when the hub cannot be reached or refuses; nothing is lost, run it again.
    Sync {
        /// Print JSON instead of text (for scripts); no progress bars.
        #[arg(long)]
        json: bool,
    },
    /// Run as a daemon: sync at the configured windows (cron, Asia/Shanghai); stops on SIGTERM/ctrl-c.
    Run,
    /// Write the public notice list of a notice step (村公示, 乡镇公示 / 镇公告, as the profile's flow
    /// names them): every household now at that step, by village, with the head's name (the ID
    /// number masked: 42**************1X), household size, main cause, the notice's first and
    /// last day and where objections go (`[notice]` in node.toml). As CSV (UTF-8 with BOM, or
    /// GBK for older office software), XLSX (a sheet per village) or a printable A4 page (a page
    /// per village; print it from a browser, or publish it).
    ///
    /// Example: jianka-node notice --step 村公示 --village 420322105200 --format html --out 村公示.html
    ///          jianka-node notice --step 乡镇公示 --format csv --encoding gbk --out 乡镇公示.csv
    ///          jianka-node notice --step 乡镇公示 --villages --out 贫困村公示.html
    #[command(verbatim_doc_comment)]
    Notice {
        /// The notice step, by its name in the profile's flow (村公示) or its status (VillageNotice).
        #[arg(long)]
        step: String,
        /// Only this village (12-digit code).
        #[arg(long)]
        village: Option<String>,
        /// The list of poor villages at a notice step of the village flow (乡镇公示 of the 贫困村).
        #[arg(long, conflicts_with = "village")]
        villages: bool,
        #[arg(long, value_enum, default_value = "html")]
        format: NoticeFormat,
        /// For CSV: utf-8 or gbk.
        #[arg(long, default_value = "utf-8")]
        encoding: String,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        year: YearArg,
    },
    /// Export the township's register (扶贫手册) in exactly the import columns, one row per member
    /// (the household's columns on its head's row), so `import` of the file changes nothing: for
    /// filing (电子档案与纸质档案一致), for another office, or to move to a new computer. Identity
    /// numbers, phones and bank accounts are masked unless --with-id-numbers, which writes them in
    /// full and marks the file internal (内部资料: a `#` first line in CSV, a 说明 sheet in XLSX).
    ///
    /// Example: jianka-node export --year 2014 --with-id-numbers --format xlsx --out 扶贫手册-2014.xlsx
    #[command(verbatim_doc_comment)]
    Export {
        /// Only this village (12-digit code).
        #[arg(long)]
        village: Option<String>,
        #[arg(long, value_enum, default_value = "csv")]
        format: TableFormat,
        /// For CSV: utf-8 or gbk.
        #[arg(long, default_value = "utf-8")]
        encoding: String,
        /// Identity numbers, phones and bank accounts in full (an internal file; needed to import it).
        #[arg(long)]
        with_id_numbers: bool,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        year: YearArg,
    },
    /// Write the pending outbox as one signed file for a USB stick (no network needed).
    ///
    /// Example: jianka-node export-bundle --out /media/usb/420322105.jkb
    ExportBundle {
        #[arg(long)]
        out: PathBuf,
    },
    /// Apply the county's signed answer file (from a USB stick).
    ImportAnswer { file: PathBuf },
    /// Pending changes, last successful sync, rejections to act on, deadlines.
    Status {
        /// Print JSON instead of text (for scripts); no progress bars.
        #[arg(long)]
        json: bool,
    },
    /// Compare every record's digest with the county's; exit code 1 when they differ.
    Verify {
        /// Registry year, e.g. 2014 (default: the year in force, printed when taken).
        #[arg(long)]
        year: Option<Year>,
        /// Print JSON instead of text (for scripts); no progress bars.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AssistanceCmd {
    /// Import entries from CSV/XLSX with the columns 村代码,户编号,部分,序号,年度,帮扶措施,目标收入,
    /// 日期,金额,资金来源,帮扶人,帮扶后收入,是否脱贫,脱贫日期,脱贫依据 (部分: 帮扶计划, 帮扶措施 or
    /// 帮扶成效; each part fills its own columns). A row with a problem is refused, named by line
    /// and column; the rest go in.
    ///
    /// Example: jianka-node assistance import 帮扶记录-2014.csv --year 2014
    #[command(verbatim_doc_comment)]
    Import {
        file: PathBuf,
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        year: YearArg,
    },
    /// Enter one entry: the same columns as the file, each as --set 列名=值.
    ///
    /// Example: jianka-node assistance add --set 村代码=420322105200 --set 户编号=0001 --set 部分=帮扶措施 --set 序号=1 --set 帮扶措施=产业 --set 日期=2014-08-01 --set 金额=5000
    #[command(verbatim_doc_comment)]
    Add {
        #[arg(long = "set", value_name = "COLUMN=VALUE")]
        sets: Vec<String>,
        #[command(flatten)]
        year: YearArg,
    },
    /// Export the year's entries in exactly the import columns (importing the file changes nothing).
    Export {
        #[arg(long, value_enum, default_value = "csv")]
        format: TableFormat,
        /// For CSV: utf-8 or gbk.
        #[arg(long, default_value = "utf-8")]
        encoding: String,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        year: YearArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum VillageCmd {
    /// Enter one village's 贫困村登记表.
    ///
    /// Example: jianka-node village add --code 420322105200 --name 高庄村 --households 300 --population 1100
    ///   --poor-households 90 --poor-population 330 --income-per-capita 2100 --collective-income 0
    Add {
        #[arg(long)]
        code: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        households: String,
        #[arg(long)]
        population: String,
        #[arg(long)]
        poor_households: String,
        #[arg(long)]
        poor_population: String,
        #[arg(long)]
        income_per_capita: String,
        #[arg(long)]
        collective_income: String,
        /// Registry year, e.g. 2014 (default: the year in force, printed when taken).
        #[arg(long)]
        year: Option<Year>,
    },
    /// Move a village one step through its flow: 村申请 → 乡镇审核 → 乡镇公示 (the notice days
    /// of the profile) → 县审核, where the county decides. Before 县审核 the profile's village
    /// criteria are checked, and a village that fails them is refused with the criterion named.
    ///
    /// Example: jianka-node village advance 420322105200 --date 2014-05-20
    #[command(verbatim_doc_comment)]
    Advance {
        /// The village's 12-digit code.
        code: String,
        /// Date of the step (default: today, Asia/Shanghai).
        #[arg(long)]
        date: Option<NaiveDate>,
        /// Registry year, e.g. 2014 (default: the year in force, printed when taken).
        #[arg(long)]
        year: Option<Year>,
    },
    /// Import a 贫困村登记表 file with headers 村代码, 村名称, 总户数, 总人口, 贫困户数, 贫困人口, 人均纯收入, 村集体经济收入.
    Import {
        file: PathBuf,
        #[arg(long)]
        dry_run: bool,
        /// Registry year, e.g. 2014 (default: the year in force, printed when taken).
        #[arg(long)]
        year: Option<Year>,
        /// Print JSON instead of text (for scripts); no progress bars.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct YearArg {
    /// Registry year (default: the config's `year`, else the year the county's cycle has open,
    /// else the newest year this node holds, else the current year; the year taken is printed).
    #[arg(long)]
    pub year: Option<Year>,
}

#[derive(Subcommand, Debug)]
pub enum HouseholdCmd {
    /// Show a household and its members (ID numbers and bank accounts masked unless --full).
    Show {
        id: String,
        #[command(flatten)]
        year: YearArg,
        /// Print JSON instead of text (for scripts); no progress bars.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        full: bool,
    },
    /// List households with their status.
    List {
        #[command(flatten)]
        year: YearArg,
        /// Print JSON instead of text (for scripts); no progress bars.
        #[arg(long)]
        json: bool,
    },
    /// Change household facts; fields by Chinese header, English alias or field name.
    ///
    /// Example: jianka-node household edit 420322105200-0001 --set 家庭年纯收入=4200 --set 人均纯收入=2100
    Edit {
        id: String,
        /// A field and its new value, by Chinese header, English alias or field name (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE", required = true)]
        sets: Vec<String>,
        #[command(flatten)]
        year: YearArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum MemberCmd {
    /// Add a member; per-capita income is recomputed.
    ///
    /// Example: jianka-node member add --household 420322105200-0001 --id-number 420322201001010011
    ///   --set 姓名=王小山 --set 与户主关系=之子 --set 性别=男 --set 文化程度=学龄前儿童 --set 健康状况=健康 --set 劳动能力=无劳动力
    Add {
        #[arg(long)]
        household: String,
        #[arg(long)]
        id_number: String,
        /// A field and its value, by Chinese header, English alias or field name (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        sets: Vec<String>,
        #[command(flatten)]
        year: YearArg,
    },
    /// Change a member's facts.
    Edit {
        id_number: String,
        /// A field and its new value, by Chinese header, English alias or field name (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE", required = true)]
        sets: Vec<String>,
        #[command(flatten)]
        year: YearArg,
    },
    /// Remove a member (not the last one); per-capita income is recomputed.
    Remove {
        id_number: String,
        #[command(flatten)]
        year: YearArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum WorkflowCmd {
    /// Take the next step of the profile's household flow (without a profile the 2014 national
    /// method: 申请 → 民主评议 → 村公示 → 乡镇审核 → 乡镇公示 → 县复审). A notice may be left only
    /// once it has run its days (7 in both shipped profiles) with no open objection; 民主评议 needs
    /// --minutes. Where the township decides (miyun-2016: 镇级审定), the last step admits a
    /// household the rules admit; one above the line with heavy spending needs `workflow decide`.
    ///
    /// Example: jianka-node workflow advance 420322105200-0001 --date 2014-05-12
    ///
    /// With --all (optionally --village CODE) every household the township still works on moves
    /// one step, as a village's list goes through its meeting and notices together; households that
    /// may not move yet are left as they are and listed grouped by reason (a notice running until
    /// a date, an open objection, a step that is the county's); when none moves the exit code is 2.
    /// Example: jianka-node workflow advance --all --village 420322105200 --date 2014-05-06
    Advance {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        household: Option<String>,
        /// Every household of the year (or of --village) that the township still works on.
        #[arg(long)]
        all: bool,
        /// With --all: only this village's households (12-digit code).
        #[arg(long, requires = "all")]
        village: Option<String>,
        /// Print JSON instead of text (for scripts); no progress bars.
        #[arg(long)]
        json: bool,
        /// Date of the step (default: today, Asia/Shanghai).
        #[arg(long)]
        date: Option<NaiveDate>,
        /// Minutes of the village representatives' meeting (民主评议).
        #[arg(long)]
        minutes: Option<String>,
        #[command(flatten)]
        year: YearArg,
    },
    /// Record an objection raised during a public notice; it stops the notice until resolved.
    Object {
        household: String,
        #[arg(long)]
        by: String,
        /// Why (kept with the record and in the log).
        #[arg(long)]
        reason: String,
        /// Date it happened, YYYY-MM-DD (default: today, Asia/Shanghai).
        #[arg(long)]
        date: Option<NaiveDate>,
        #[command(flatten)]
        year: YearArg,
    },
    /// Resolve an objection; the notice then runs its full length (its step's days in the
    /// profile's flow) again from this date.
    ResolveObjection {
        id: i64,
        #[arg(long)]
        resolution: String,
        /// Date it happened, YYYY-MM-DD (default: today, Asia/Shanghai).
        #[arg(long)]
        date: Option<NaiveDate>,
    },
    /// The township's own decision (认定 or 不予认定), for a stated reason, where the profile's
    /// flow has the township decide (miyun-2016: 镇级审定; the district then files it, 区直备案).
    /// Admits one above the line with heavy spending (酌情纳入), or refuses one; never one the
    /// rules exclude.
    ///
    /// Example: jianka-node workflow decide 110228100200-0007 --admit --reason "因病支出 4.2万元, 入户核查属实"
    #[command(verbatim_doc_comment)]
    Decide {
        household: String,
        /// Admit it (认定).
        #[arg(long, conflicts_with = "refuse", required_unless_present = "refuse")]
        admit: bool,
        /// Refuse it (不予认定).
        #[arg(long)]
        refuse: bool,
        /// Why (kept with the record, sent to the district).
        #[arg(long)]
        reason: String,
        /// Date of the decision (default: today, Asia/Shanghai).
        #[arg(long)]
        date: Option<NaiveDate>,
        #[command(flatten)]
        year: YearArg,
    },
    /// Show a household's workflow history and open objections.
    Show {
        household: String,
        #[command(flatten)]
        year: YearArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum AdjustCmd {
    /// 脱贫 / 退出: the household exits, with reason and date.
    Exit {
        household: String,
        /// Why (kept with the record and in the log).
        #[arg(long)]
        reason: String,
        /// Date it happened, YYYY-MM-DD (default: today, Asia/Shanghai).
        #[arg(long)]
        date: Option<NaiveDate>,
        #[command(flatten)]
        year: YearArg,
    },
    /// A member died.
    Death {
        id_number: String,
        /// Date it happened, YYYY-MM-DD (default: today, Asia/Shanghai).
        #[arg(long)]
        date: Option<NaiveDate>,
        #[command(flatten)]
        year: YearArg,
    },
    /// A member was born (or joins): fields as for `member add`.
    Birth {
        household: String,
        #[arg(long)]
        id_number: String,
        /// A field and its value, by Chinese header, English alias or field name (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        sets: Vec<String>,
        /// Date it happened, YYYY-MM-DD (default: today, Asia/Shanghai).
        #[arg(long)]
        date: Option<NaiveDate>,
        #[command(flatten)]
        year: YearArg,
    },
    /// A member marries into another household of this township.
    Marriage {
        id_number: String,
        #[arg(long)]
        to_household: String,
        /// Relation to the new household's head, e.g. 配偶 or 之儿媳.
        #[arg(long)]
        relation: String,
        /// Date it happened, YYYY-MM-DD (default: today, Asia/Shanghai).
        #[arg(long)]
        date: Option<NaiveDate>,
        #[command(flatten)]
        year: YearArg,
    },
    /// A household moves to another village of this township.
    Move {
        household: String,
        #[arg(long)]
        to_village: String,
        /// Date it happened, YYYY-MM-DD (default: today, Asia/Shanghai).
        #[arg(long)]
        date: Option<NaiveDate>,
        #[command(flatten)]
        year: YearArg,
    },
    /// 跨县迁出: a member moves to another county. The person stays here until the province
    /// completes the move with the other county's arrival; then the member leaves this node.
    ///
    /// Example: jianka-node adjust move-out 420322198001011234 --to-county 420323 --date 2015-01-12 --reason 投亲
    MoveOut {
        id_number: String,
        /// The 6-digit county the person moves to.
        #[arg(long)]
        to_county: String,
        /// Date it happened, YYYY-MM-DD (default: today, Asia/Shanghai).
        #[arg(long)]
        date: Option<NaiveDate>,
        /// Why (kept with the record and in the log).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        year: YearArg,
    },
    /// 跨县迁入: a person from another county joins a household here (fields as for `member add`).
    /// The province holds the arrival until the old county records the departure.
    ///
    /// Example: jianka-node adjust move-in --household 420323101200-0007 --id-number 420322198001011234
    ///   --from-county 420322 --date 2015-01-08 --set 姓名=王五 --set 与户主关系=之子 --set 性别=男 …
    MoveIn {
        #[arg(long)]
        household: String,
        #[arg(long)]
        id_number: String,
        /// The 6-digit county the person comes from.
        #[arg(long)]
        from_county: String,
        /// A field and its value, by Chinese header, English alias or field name (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        sets: Vec<String>,
        /// Date it happened, YYYY-MM-DD (default: today, Asia/Shanghai).
        #[arg(long)]
        date: Option<NaiveDate>,
        #[command(flatten)]
        year: YearArg,
    },
    /// Update a household's facts found in the annual update (income, phone, causes, housing…),
    /// also after the county's decision; the same fields as `household edit`.
    ///
    /// Example: jianka-node adjust update 420322105200-0001 --set income=5200 --set phone=13900001111
    Update {
        household: String,
        /// A field and its new value, by Chinese header, English alias or field name (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE", required = true)]
        sets: Vec<String>,
        #[command(flatten)]
        year: YearArg,
    },
    /// New entries (新增) from a 扶贫手册 file; they pass the workflow and the quota again.
    New {
        file: PathBuf,
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        year: YearArg,
    },
}

/// The formats a notice list is written in.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeFormat {
    Csv,
    Xlsx,
    Html,
}

/// The formats a table export is written in.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFormat {
    Csv,
    Xlsx,
}
