//! A public notice list: its step, dates and where objections go, the villages it covers and
//! each household of the step once (domain.md §5, §7).

use chrono::NaiveDate;
use jianka_shared::IdNumber;

/// One notice list as it is posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeList {
    /// The list's title ("2014年 拟认定名单 (村公示)").
    pub title: String,
    /// The step of the profile's flow it belongs to (村公示, 镇公告, 县公告).
    pub step: String,
    /// Who posts it ("420322105 乡镇人民政府", "县扶贫开发领导小组").
    pub posted_by: String,
    /// Where objections go, as the notice states it (office, address, phone).
    pub objections_to: String,
    /// Households ([`NoticeRow::household`]) or villages ([`NoticeRow::village`]).
    pub of: Listed,
    pub villages: Vec<VillageSection>,
}

/// What a list lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    Households,
    Villages,
}

/// The rows of one section (a village's households, a posted page of its own; or the villages of
/// a township).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VillageSection {
    pub code: String,
    pub name: String,
    pub rows: Vec<NoticeRow>,
}

/// One household or village on a public list: what the notice needs and nothing more personal.
/// Built only by [`NoticeRow::household`] (which masks the head's identity number) or
/// [`NoticeRow::village`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRow {
    cells: Vec<String>,
}

impl NoticeRow {
    /// A household: the head's identity number is kept masked (42**************1X), never in clear.
    pub fn household(
        household: impl Into<String>,
        (head_name, head_id): (impl Into<String>, &IdNumber),
        size: usize,
        main_cause: impl Into<String>,
        (first_day, last_day): (NaiveDate, NaiveDate),
    ) -> NoticeRow {
        NoticeRow {
            cells: vec![
                household.into(),
                head_name.into(),
                head_id.masked(),
                size.to_string(),
                main_cause.into(),
                first_day.to_string(),
                last_day.to_string(),
            ],
        }
    }

    /// A poor village: its figures (households, poor households, population, poor people) and its
    /// incidence (贫困发生率) in per cent.
    pub fn village(
        (code, name): (impl Into<String>, impl Into<String>),
        (households, poor_households, population, poor_population): (u64, u64, u64, u64),
        (first_day, last_day): (NaiveDate, NaiveDate),
    ) -> NoticeRow {
        let incidence_percent = if population == 0 { 0.0 } else { poor_population as f64 * 100.0 / population as f64 };
        NoticeRow {
            cells: vec![
                code.into(),
                name.into(),
                households.to_string(),
                poor_households.to_string(),
                poor_population.to_string(),
                format!("{incidence_percent:.1}%"),
                first_day.to_string(),
                last_day.to_string(),
            ],
        }
    }

    /// The row's cells after the section's columns (household id first, or the village code).
    pub fn cells(&self) -> &[String] {
        &self.cells
    }
}

impl NoticeList {
    /// The column headers of a household list.
    pub const HOUSEHOLD_HEADERS: [&'static str; 9] =
        ["序号", "村", "户编号", "户主姓名", "户主身份证号", "家庭人口", "主要致贫原因", "公示开始", "公示截止"];
    /// The column headers of a village list.
    pub const VILLAGE_HEADERS: [&'static str; 10] =
        ["序号", "乡镇", "村代码", "村名称", "总户数", "贫困户数", "贫困人口", "贫困发生率", "公示开始", "公示截止"];

    pub fn headers(&self) -> &'static [&'static str] {
        match self.of {
            Listed::Households => &Self::HOUSEHOLD_HEADERS,
            Listed::Villages => &Self::VILLAGE_HEADERS,
        }
    }

    /// Every row with its section, numbered from 1 per section, in list order.
    pub fn lines(&self) -> impl Iterator<Item = (&VillageSection, usize, &NoticeRow)> {
        self.villages.iter().flat_map(|v| v.rows.iter().enumerate().map(move |(i, r)| (v, i + 1, r)))
    }

    /// One row's cells, in [`NoticeList::headers`] order.
    pub fn cells(section: &VillageSection, n: usize, r: &NoticeRow) -> Vec<String> {
        [n.to_string(), section.name.clone()].into_iter().chain(r.cells.iter().cloned()).collect()
    }

    /// The households (or villages) on the list.
    pub fn len(&self) -> usize {
        self.villages.iter().map(|v| v.rows.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the person, no writer's output holds their identity number in clear.
        #[test]
        fn no_format_prints_an_identity_number_in_clear(days in 0i64..20_000, seq in 0u16..1000, name in "\\PC{1,8}") {
            let birth = NaiveDate::from_ymd_opt(1940, 1, 1).unwrap() + chrono::Duration::days(days);
            let id = IdNumber::compose("420322", birth, seq).unwrap();
            let day = NaiveDate::from_ymd_opt(2014, 6, 2).unwrap();
            let row = NoticeRow::household("420322105200-0001", (name.as_str(), &id), 3, "因病", (day, day));
            let list = NoticeList {
                title: "2014年 拟认定名单 (村公示)".into(),
                step: "村公示".into(),
                posted_by: "村民委员会".into(),
                objections_to: "乡镇扶贫工作站".into(),
                of: Listed::Households,
                villages: vec![VillageSection { code: "420322105200".into(), name: "某村".into(), rows: vec![row] }],
            };
            let full = id.as_str();
            prop_assert!(!String::from_utf8_lossy(&crate::to_csv(&list, crate::Encoding::Utf8).unwrap()).contains(full));
            prop_assert!(!crate::to_html(&list).contains(full));
            let gbk_bytes = crate::to_csv(&list, crate::Encoding::Gbk).unwrap_or_default();
            let (gbk, _, _) = encoding_rs::GBK.decode(&gbk_bytes);
            prop_assert!(!gbk.contains(full));
            prop_assert_eq!(&list.villages[0].rows[0].cells()[2], &id.masked());
        }
    }

    #[test]
    fn the_page_escapes_what_it_is_given() {
        let list = NoticeList {
            title: "<script>x</script>".into(),
            step: String::new(),
            posted_by: "a & b".into(),
            objections_to: String::new(),
            of: Listed::Households,
            villages: vec![VillageSection { code: "420322105200".into(), name: "\"村\"".into(), rows: vec![] }],
        };
        let page = crate::to_html(&list);
        assert!(!page.contains("<script>") && page.contains("&lt;script&gt;") && page.contains("a &amp; b"));
    }
}
