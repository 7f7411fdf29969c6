//! The 扶贫手册's parts 4–6 as records of their own (domain.md §8): a household's 帮扶计划 (per
//! year: the planned measures and the target income), each 帮扶措施 taken (kind, date, amount,
//! funding source, who) and its 帮扶成效 (per year: income after assistance, whether it exited,
//! when and on what basis). Keyed `<household id>/<P|M|R><n>`, they sync like the rest; the
//! import file has one row per entry, in [`COLUMNS`].

use crate::{Record, RecordKey, RecordKind, Year, Yuan};
use std::collections::BTreeMap;

/// The part of the handbook an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    Plan,
    Measure,
    Result,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Plan, Part::Measure, Part::Result];

    pub fn label(self) -> &'static str {
        match self {
            Part::Plan => "帮扶计划",
            Part::Measure => "帮扶措施",
            Part::Result => "帮扶成效",
        }
    }

    fn letter(self) -> char {
        match self {
            Part::Plan => 'P',
            Part::Measure => 'M',
            Part::Result => 'R',
        }
    }

    pub fn parse(s: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.label() == s.trim())
    }
}

/// The kinds of measure the forms name.
pub const MEASURE_KINDS: [&str; 7] = ["产业", "就业", "培训", "住房", "教育", "健康", "社会保障"];

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    Year,
    Kinds,
    OneKind,
    Yuan,
    Date,
    Flag,
    Text,
}

/// The import columns after the key (村代码, 户编号, 部分, 序号): header, record field, the parts
/// it belongs to (required there; empty elsewhere) and what it holds.
pub const COLUMNS: [(&str, &str); 11] = [
    ("年度", "entry_year"),
    ("帮扶措施", "measures"),
    ("目标收入", "target_income"),
    ("日期", "date"),
    ("金额", "amount"),
    ("资金来源", "funding_source"),
    ("帮扶人", "by_whom"),
    ("帮扶后收入", "income_after"),
    ("是否脱贫", "exited"),
    ("脱贫日期", "exit_date"),
    ("脱贫依据", "exit_basis"),
];

/// Per column: the parts it belongs to, whether it is required there, and its cell.
const RULES: [(&[Part], bool, Cell); 11] = [
    (&[Part::Plan, Part::Result], true, Cell::Year),
    (&[Part::Plan, Part::Measure], true, Cell::Kinds),
    (&[Part::Plan], false, Cell::Yuan),
    (&[Part::Measure], true, Cell::Date),
    (&[Part::Measure], false, Cell::Yuan),
    (&[Part::Measure], false, Cell::Text),
    (&[Part::Measure], false, Cell::Text),
    (&[Part::Result], true, Cell::Yuan),
    (&[Part::Result], true, Cell::Flag),
    (&[Part::Result], false, Cell::Date),
    (&[Part::Result], false, Cell::Text),
];

/// The header of the import (and export) file.
pub fn headers() -> Vec<&'static str> {
    ["村代码", "户编号", "部分", "序号"].into_iter().chain(COLUMNS.iter().map(|(h, _)| *h)).collect()
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub year: Year,
    pub household: String,
    pub part: Part,
    pub seq: u32,
    /// The entry's own fields, by record field name, as stored.
    pub fields: BTreeMap<String, String>,
}

impl Entry {
    pub fn key_id(&self) -> String {
        format!("{}/{}{}", self.household, self.part.letter(), self.seq)
    }

    pub fn to_record(&self) -> Record {
        let mut f = self.fields.clone();
        f.insert("household".into(), self.household.clone());
        f.insert("part".into(), self.part.label().into());
        Record { key: RecordKey::new(RecordKind::Assistance, self.year, self.key_id()), fields: f }
    }

    /// Reads one row: `cell` gives a column's text by header; every problem is (header, reason).
    pub fn from_row<'a>(year: Year, cell: impl Fn(&str) -> &'a str) -> Result<Entry, Vec<(String, String)>> {
        let mut errs: Vec<(String, String)> = Vec::new();
        let (village, number) = (cell("村代码").trim(), cell("户编号").trim());
        if village.len() != 12 || !village.bytes().all(|b| b.is_ascii_digit()) {
            errs.push(("村代码".into(), format!("{village:?} is not a 12-digit village code")));
        }
        if number.is_empty() {
            errs.push(("户编号".into(), "the household number is empty".into()));
        }
        let part = Part::parse(cell("部分"));
        if part.is_none() {
            errs.push(("部分".into(), format!("{:?} is not 帮扶计划, 帮扶措施 or 帮扶成效", cell("部分"))));
        }
        let seq = cell("序号").trim().parse::<u32>().ok().filter(|n| (1..=9999).contains(n));
        if seq.is_none() {
            errs.push(("序号".into(), format!("{:?} is not a number from 1 to 9999", cell("序号"))));
        }
        let mut fields = BTreeMap::new();
        if let Some(part) = part {
            for ((header, field), (parts, required, kind)) in COLUMNS.iter().zip(RULES) {
                let text = cell(header).trim();
                if !parts.contains(&part) {
                    if !text.is_empty() {
                        errs.push((header.to_string(), format!("a {} entry has no {header}", part.label())));
                    }
                    continue;
                }
                if text.is_empty() {
                    if required {
                        errs.push((header.to_string(), format!("a {} entry needs its {header}", part.label())));
                    }
                    continue;
                }
                match read(kind, part, text) {
                    Ok(v) => {
                        fields.insert(field.to_string(), v);
                    }
                    Err(e) => errs.push((header.to_string(), e)),
                }
            }
        }
        match (part, seq) {
            (Some(part), Some(seq)) if errs.is_empty() => {
                Ok(Entry { year, household: format!("{village}-{number}"), part, seq, fields })
            }
            _ => Err(errs),
        }
    }

    /// The row of the import file this record reads from, in [`headers`] order.
    pub fn export_row<'a>(id: &'a str, field: impl Fn(&str) -> Option<&'a str>) -> Vec<String> {
        let household = field("household").unwrap_or("");
        let (village, number) = household.split_once('-').unwrap_or((household, ""));
        let seq = id.rsplit_once('/').map_or("", |(_, s)| s.get(1..).unwrap_or(""));
        let mut row =
            vec![village.to_string(), number.to_string(), field("part").unwrap_or("").to_string(), seq.into()];
        row.extend(COLUMNS.iter().map(|(_, f)| field(f).unwrap_or("").to_string()));
        row
    }
}

fn read(kind: Cell, part: Part, text: &str) -> Result<String, String> {
    match kind {
        Cell::Year => text
            .parse::<u16>()
            .ok()
            .filter(|y| (2000..=2100).contains(y))
            .map(|y| y.to_string())
            .ok_or_else(|| format!("{text:?} is not a year")),
        Cell::Kinds if part == Part::Measure => read(Cell::OneKind, part, text),
        Cell::Kinds => {
            let kinds: Vec<&str> =
                text.split(['、', ',', '，', ';']).map(str::trim).filter(|k| !k.is_empty()).collect();
            match kinds.iter().find(|k| !MEASURE_KINDS.contains(k)) {
                Some(k) => Err(format!("{k:?} is not a measure ({})", MEASURE_KINDS.join("、"))),
                None => Ok(kinds.join("、")),
            }
        }
        Cell::OneKind if MEASURE_KINDS.contains(&text) => Ok(text.into()),
        Cell::OneKind => Err(format!("{text:?} is not one measure ({})", MEASURE_KINDS.join("、"))),
        Cell::Yuan => Yuan::parse(text).map(|y| y.to_string()).map_err(|e| e.to_string()),
        Cell::Date => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map(|d| d.to_string())
            .map_err(|_| format!("{text:?} is not a date (YYYY-MM-DD)")),
        Cell::Flag => match text {
            "是" => Ok("是".into()),
            "否" => Ok("否".into()),
            _ => Err(format!("{text:?} is not 是 or 否")),
        },
        Cell::Text if text.chars().count() > 200 => Err("more than 200 characters".into()),
        Cell::Text => Ok(text.into()),
    }
}

/// The household an entry's key names, and whether the key is well formed.
pub fn household_of(key_id: &str) -> Option<&str> {
    let (hh, rest) = key_id.rsplit_once('/')?;
    let mut chars = rest.chars();
    let letter_ok = matches!(chars.next(), Some('P' | 'M' | 'R'));
    let n = chars.as_str();
    (letter_ok && !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit())).then_some(hh)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> &'a str {
        move |h| pairs.iter().find(|(k, _)| *k == h).map_or("", |(_, v)| *v)
    }

    #[test]
    fn each_part_reads_its_own_columns_and_round_trips() {
        let m = [
            ("村代码", "420322105200"),
            ("户编号", "0001"),
            ("部分", "帮扶措施"),
            ("序号", "3"),
            ("帮扶措施", "产业"),
            ("日期", "2014-08-01"),
            ("金额", "5000"),
            ("帮扶人", "张帮扶"),
        ];
        let e = Entry::from_row(2014, row(&m)).unwrap();
        assert_eq!(e.key_id(), "420322105200-0001/M3");
        assert_eq!(household_of(&e.key_id()), Some("420322105200-0001"));
        let r = e.to_record();
        let back = Entry::export_row(&r.key.id, |f| r.fields.get(f).map(String::as_str));
        let again = Entry::from_row(2014, |h| {
            let i = headers().iter().position(|x| *x == h).unwrap();
            Box::leak(back[i].clone().into_boxed_str())
        })
        .unwrap();
        assert_eq!(again, e);
    }

    #[test]
    fn a_bad_entry_names_every_column() {
        let m = [
            ("村代码", "4203"),
            ("户编号", "0001"),
            ("部分", "帮扶成效"),
            ("序号", "1"),
            ("是否脱贫", "也许"),
            ("日期", "2014-01-01"),
        ];
        let errs = Entry::from_row(2014, row(&m)).unwrap_err();
        let cols: Vec<&str> = errs.iter().map(|(c, _)| c.as_str()).collect();
        for c in ["村代码", "年度", "帮扶后收入", "是否脱贫", "日期"] {
            assert!(cols.contains(&c), "{c}: {errs:?}");
        }
        assert!(household_of("420322105200-0001/X1").is_none() && household_of("420322105200-0001").is_none());
    }
}
