//! The 贫困县监测表 (county monitoring table, domain.md §2, §8): six parts of figures a county fills
//! every year for the year before, due by the end of February, forwarded with its sign-off (and
//! signed with it). Pure: the hub reads the file, this checks what it holds.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The table's parts and the items of each, as the form names them.
pub const PARTS: [(&str, &[&str]); 6] = [
    ("基本情况", &["总人口", "农村人口", "行政村数", "贫困村数", "贫困人口", "贫困发生率"]),
    ("发展现状", &["地区生产总值", "地方财政收入", "农民人均纯收入"]),
    ("基础设施", &["通沥青水泥路行政村比例", "通电行政村比例", "通自来水行政村比例", "通宽带行政村比例"]),
    ("公共服务", &["卫生机构数", "学校数", "新农合参合率", "养老保险参保率"]),
    ("帮扶情况", &["财政专项扶贫资金", "行业扶贫资金", "社会帮扶资金", "结对帮扶单位数"]),
    ("帮扶成效", &["减贫人数", "出列贫困村数", "农民人均纯收入增长率"]),
];

/// A filled table: part → item → figure (as entered, a decimal number).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitoringTable {
    pub parts: BTreeMap<String, BTreeMap<String, String>>,
}

impl MonitoringTable {
    /// Builds the table from (part, item, figure) lines (line numbers for the messages); every
    /// problem is named with its line, and a missing item with its part.
    pub fn from_lines<'a>(
        lines: impl IntoIterator<Item = (u64, [&'a str; 3])>,
    ) -> Result<MonitoringTable, Vec<String>> {
        let mut t = MonitoringTable::default();
        let mut errors = Vec::new();
        for (line, [part, item, value]) in lines {
            let (part, item, value) = (part.trim(), item.trim(), value.trim());
            let Some((_, items)) = PARTS.iter().find(|(p, _)| *p == part) else {
                errors.push(format!(
                    "line {line}: {part:?} is not a part of the table ({})",
                    PARTS.map(|(p, _)| p).join(", ")
                ));
                continue;
            };
            if !items.contains(&item) {
                errors.push(format!("line {line}: {item:?} is not an item of {part} ({})", items.join(", ")));
                continue;
            }
            let number = value.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
            if number.is_none() {
                errors.push(format!("line {line}: {part} {item}: {value:?} is not a number ≥ 0"));
                continue;
            }
            if t.parts.entry(part.into()).or_default().insert(item.into(), value.into()).is_some() {
                errors.push(format!("line {line}: {part} {item} is given twice"));
            }
        }
        for (part, items) in PARTS {
            let missing: Vec<&str> =
                items.iter().copied().filter(|i| !t.parts.get(part).is_some_and(|p| p.contains_key(*i))).collect();
            if !missing.is_empty() {
                errors.push(format!("{part}: missing {}", missing.join(", ")));
            }
        }
        if errors.is_empty() { Ok(t) } else { Err(errors) }
    }

    /// One figure.
    pub fn get(&self, part: &str, item: &str) -> Option<&str> {
        self.parts.get(part).and_then(|p| p.get(item)).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Vec<(u64, [String; 3])> {
        let mut n = 1;
        let mut out = Vec::new();
        for (part, items) in PARTS {
            for item in items {
                n += 1;
                out.push((n, [part.to_string(), item.to_string(), "12.5".to_string()]));
            }
        }
        out
    }

    fn read(lines: &[(u64, [String; 3])]) -> Result<MonitoringTable, Vec<String>> {
        MonitoringTable::from_lines(lines.iter().map(|(n, [a, b, c])| (*n, [a.as_str(), b.as_str(), c.as_str()])))
    }

    #[test]
    fn a_complete_table_reads_and_every_fault_is_named() {
        let t = read(&full()).unwrap();
        assert_eq!(t.get("帮扶成效", "减贫人数"), Some("12.5"));
        let mut lines = full();
        lines.remove(0);
        lines[0].1[2] = "很多".into();
        lines[1].1[1] = "人口".into();
        lines.push((99, ["其他".into(), "x".into(), "1".into()]));
        let errs = read(&lines).unwrap_err();
        assert!(errs.iter().any(|e| e.contains("基本情况: missing 总人口")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("\"很多\" is not a number")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("\"人口\" is not an item of 基本情况")), "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("line 99")), "{errs:?}");
    }
}
