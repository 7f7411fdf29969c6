//! A public notice list: its step, dates and where objections go, the villages it covers and
//! each household of the step once (domain.md §5, §7).

use chrono::NaiveDate;
use jianka_shared::IdNumber;

/// One notice list as it is posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeList {
    /// The list's title ("2014年 贫困户拟认定名单 (村公示)").
    pub title: String,
    /// The step of the profile's flow it belongs to (村公示, 镇公告, 县公告).
    pub step: String,
    /// Who posts it ("420322105 乡镇人民政府", "县扶贫开发领导小组").
    pub posted_by: String,
    /// Where objections go, as the notice states it (office, address, phone).
    pub objections_to: String,
    pub villages: Vec<VillageSection>,
}

/// The households of one village on the list (a posted page of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VillageSection {
    pub code: String,
    pub name: String,
    pub rows: Vec<NoticeRow>,
}

/// One household on a public list: what the notice needs and nothing more personal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRow {
    pub household: String,
    pub head_name: String,
    head_id: String,
    pub size: usize,
    pub main_cause: String,
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
}

impl NoticeRow {
    /// The head's identity number is kept masked (42**************1X), never in clear.
    pub fn new(
        household: impl Into<String>,
        (head_name, head_id): (impl Into<String>, &IdNumber),
        size: usize,
        main_cause: impl Into<String>,
        (first_day, last_day): (NaiveDate, NaiveDate),
    ) -> NoticeRow {
        NoticeRow {
            household: household.into(),
            head_name: head_name.into(),
            head_id: head_id.masked(),
            size,
            main_cause: main_cause.into(),
            first_day,
            last_day,
        }
    }

    /// The head's identity number as posted: masked.
    pub fn head_id(&self) -> &str {
        &self.head_id
    }
}

impl NoticeList {
    /// The column headers every format writes.
    pub const HEADERS: [&'static str; 9] =
        ["序号", "村", "户编号", "户主姓名", "户主身份证号", "家庭人口", "主要致贫原因", "公示开始", "公示截止"];

    /// Every row with its village, numbered from 1 per village, in list order.
    pub fn lines(&self) -> impl Iterator<Item = (&VillageSection, usize, &NoticeRow)> {
        self.villages.iter().flat_map(|v| v.rows.iter().enumerate().map(move |(i, r)| (v, i + 1, r)))
    }

    /// One row's cells, in [`NoticeList::HEADERS`] order.
    pub fn cells(village: &VillageSection, n: usize, r: &NoticeRow) -> [String; 9] {
        [
            n.to_string(),
            village.name.clone(),
            r.household.clone(),
            r.head_name.clone(),
            r.head_id.clone(),
            r.size.to_string(),
            r.main_cause.clone(),
            r.first_day.to_string(),
            r.last_day.to_string(),
        ]
    }

    /// The households on the list.
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
            let row = NoticeRow::new("420322105200-0001", (name.as_str(), &id), 3, "因病", (day, day));
            let list = NoticeList {
                title: "2014年 拟认定名单 (村公示)".into(),
                step: "村公示".into(),
                posted_by: "村民委员会".into(),
                objections_to: "乡镇扶贫工作站".into(),
                villages: vec![VillageSection { code: "420322105200".into(), name: "某村".into(), rows: vec![row] }],
            };
            let full = id.as_str();
            prop_assert!(!String::from_utf8_lossy(&crate::to_csv(&list, crate::Encoding::Utf8).unwrap()).contains(full));
            prop_assert!(!crate::to_html(&list).contains(full));
            let gbk_bytes = crate::to_csv(&list, crate::Encoding::Gbk).unwrap_or_default();
            let (gbk, _, _) = encoding_rs::GBK.decode(&gbk_bytes);
            prop_assert!(!gbk.contains(full));
            prop_assert_eq!(list.villages[0].rows[0].head_id(), id.masked());
        }
    }

    #[test]
    fn the_page_escapes_what_it_is_given() {
        let list = NoticeList {
            title: "<script>x</script>".into(),
            step: String::new(),
            posted_by: "a & b".into(),
            objections_to: String::new(),
            villages: vec![VillageSection { code: "420322105200".into(), name: "\"村\"".into(), rows: vec![] }],
        };
        let page = crate::to_html(&list);
        assert!(!page.contains("<script>") && page.contains("&lt;script&gt;") && page.contains("a &amp; b"));
    }
}
