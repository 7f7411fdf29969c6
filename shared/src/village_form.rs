//! The 贫困村登记表's seven parts beyond its core figures (domain.md §8): each item's part, column
//! header, record field and kind, and how a cell reads. Optional columns: a file carries the
//! items it has; a village's record keeps each under its field.

/// What a cell holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole number of zero or more (households, people, schools).
    Count,
    /// An amount in yuan.
    Yuan,
    /// A decimal of zero or more (mu, km).
    Decimal,
    /// 是 / 否.
    Flag,
    /// Free text (an industry, a unit's name).
    Text,
}

/// One item of the form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    pub part: &'static str,
    pub header: &'static str,
    pub field: &'static str,
    pub kind: Kind,
}

const fn item(part: &'static str, header: &'static str, field: &'static str, kind: Kind) -> Item {
    Item { part, header, field, kind }
}

/// The form's parts in order: 1 基本情况 and 2 发展水平 beyond the core columns (name, households,
/// population, poor households and people, per-capita and collective income), then 3–7 whole.
pub const ITEMS: [Item; 42] = [
    item("基本情况", "老区村", "old_revolutionary_area", Kind::Flag),
    item("基本情况", "少数民族聚居村", "ethnic_minority", Kind::Flag),
    item("基本情况", "边境村", "border", Kind::Flag),
    item("基本情况", "自然村数", "natural_villages", Kind::Count),
    item("基本情况", "低保户数", "dibao_households", Kind::Count),
    item("基本情况", "五保户数", "wubao_households", Kind::Count),
    item("基本情况", "劳动力人数", "labour_force", Kind::Count),
    item("基本情况", "外出务工人数", "migrant_workers", Kind::Count),
    item("发展水平", "耕地面积", "arable_mu", Kind::Decimal),
    item("发展水平", "有效灌溉面积", "irrigated_mu", Kind::Decimal),
    item("发展水平", "林地面积", "forest_mu", Kind::Decimal),
    item("发展水平", "主导产业", "main_industry", Kind::Text),
    item("发展水平", "农民合作社数", "cooperatives", Kind::Count),
    item("基础设施状况", "通生产用电", "production_power", Kind::Flag),
    item("基础设施状况", "通生活用电", "household_power", Kind::Flag),
    item("基础设施状况", "距乡镇距离", "km_to_township", Kind::Decimal),
    item("基础设施状况", "通客运班车", "bus_service", Kind::Flag),
    item("基础设施状况", "未硬化路段长度", "unpaved_km", Kind::Decimal),
    item("基础设施状况", "通宽带", "broadband", Kind::Flag),
    item("基础设施状况", "通广播电视", "radio_tv", Kind::Flag),
    item("生产生活条件", "饮水困难户数", "water_difficulty_households", Kind::Count),
    item("生产生活条件", "饮水安全户数", "safe_water_households", Kind::Count),
    item("生产生活条件", "危房户数", "unsafe_housing_households", Kind::Count),
    item("公共服务情况", "有卫生室", "clinic", Kind::Flag),
    item("公共服务情况", "执业医师数", "licensed_doctors", Kind::Count),
    item("公共服务情况", "有小学或教学点", "primary_school", Kind::Flag),
    item("公共服务情况", "有幼儿园", "kindergarten", Kind::Flag),
    item("公共服务情况", "有活动室", "activity_room", Kind::Flag),
    item("公共服务情况", "参加新农合人数", "medical_insured", Kind::Count),
    item("公共服务情况", "参加养老保险人数", "pension_insured", Kind::Count),
    item("帮扶情况", "驻村工作队", "work_team", Kind::Flag),
    item("帮扶情况", "第一书记", "first_secretary", Kind::Text),
    item("帮扶情况", "中央帮扶单位", "helper_central", Kind::Text),
    item("帮扶情况", "省级帮扶单位", "helper_province", Kind::Text),
    item("帮扶情况", "市级帮扶单位", "helper_city", Kind::Text),
    item("帮扶情况", "县级帮扶单位", "helper_county", Kind::Text),
    item("帮扶成效", "实施项目数", "projects", Kind::Count),
    item("帮扶成效", "财政扶贫资金", "funds_fiscal", Kind::Yuan),
    item("帮扶成效", "行业部门资金", "funds_sector", Kind::Yuan),
    item("帮扶成效", "社会帮扶资金", "funds_social", Kind::Yuan),
    item("帮扶成效", "脱贫人数", "people_lifted_out", Kind::Count),
    item("帮扶成效", "是否出列", "exited", Kind::Flag),
];

impl Item {
    /// The item of a column header.
    pub fn by_header(header: &str) -> Option<&'static Item> {
        ITEMS.iter().find(|i| i.header == header.trim())
    }

    /// A cell as stored (是/否, whole numbers, yuan and decimals as written canonically); `None`
    /// when empty; the error says what the cell should hold.
    pub fn read(&self, cell: &str) -> Result<Option<String>, String> {
        let cell = cell.trim();
        if cell.is_empty() {
            return Ok(None);
        }
        let bad = |what: &str| Err(format!("{cell:?} is not {what}"));
        match self.kind {
            Kind::Count => match cell.parse::<u32>() {
                Ok(n) => Ok(Some(n.to_string())),
                Err(_) => bad("a whole number of zero or more"),
            },
            Kind::Yuan => crate::Yuan::parse(cell).map(|y| Some(y.to_string())).map_err(|e| e.to_string()),
            Kind::Decimal => match cell.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(cell.to_string())),
                _ => bad("a number of zero or more"),
            },
            Kind::Flag => match cell {
                "是" | "有" => Ok(Some("是".into())),
                "否" | "无" => Ok(Some("否".into())),
                _ => bad("是 or 否"),
            },
            Kind::Text if cell.chars().count() > 100 => bad("text of at most 100 characters"),
            Kind::Text => Ok(Some(cell.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_is_there_and_cells_read_by_kind() {
        let parts: std::collections::BTreeSet<&str> = ITEMS.iter().map(|i| i.part).collect();
        assert_eq!(parts.len(), 7, "the form's seven parts");
        let fields: std::collections::BTreeSet<&str> = ITEMS.iter().map(|i| i.field).collect();
        assert_eq!(fields.len(), ITEMS.len(), "one field per item");
        let flag = Item::by_header("通宽带").unwrap();
        assert_eq!(flag.read("有"), Ok(Some("是".into())));
        assert!(flag.read("可能").unwrap_err().contains("是 or 否"));
        assert_eq!(Item::by_header("危房户数").unwrap().read(" 12 "), Ok(Some("12".into())));
        assert!(Item::by_header("危房户数").unwrap().read("-1").is_err());
        assert_eq!(Item::by_header("财政扶贫资金").unwrap().read("1500000.00").unwrap(), Some("1500000".into()));
        assert_eq!(Item::by_header("耕地面积").unwrap().read(""), Ok(None));
    }
}
