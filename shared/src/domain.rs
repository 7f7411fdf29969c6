//! The typed forms: a poor household (扶贫手册) with its members, and a poor village (贫困村登记表),
//! the household workflow (domain.md §5) and the logical checks (逻辑校验, domain.md §3).

use crate::{
    IdNumber, RegionCode, Tier, Year, Yuan,
    labels::*,
    record::{Record, RecordKey, RecordKind},
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a household stands in the identification workflow (整户识别).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Status {
    Applied,
    Appraised,
    VillageNotice,
    TownshipReview,
    TownshipNotice,
    /// Township work finished; waiting for the county's re-examination (县复审, quota checked there).
    CountyReview,
    /// 认定: recognised by the profile's deciding tier (the county's 县公告 under seed 000, the
    /// township's 镇级审定 under seed 003); the name is the national method's.
    CountyAnnounced,
    /// 备案: filed by the tier above the deciding one (the province's 省备案, the district's 区直备案).
    ProvinceFiled,
    /// 不予认定: refused by the deciding tier (over quota, duplicate person, failed validation).
    NotRecognised,
    /// 脱贫 / 退出 in an annual update.
    Exited,
}

impl Status {
    pub const ALL: [Status; 10] = [
        Status::Applied,
        Status::Appraised,
        Status::VillageNotice,
        Status::TownshipReview,
        Status::TownshipNotice,
        Status::CountyReview,
        Status::CountyAnnounced,
        Status::ProvinceFiled,
        Status::NotRecognised,
        Status::Exited,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Status::Applied => "申请",
            Status::Appraised => "民主评议",
            Status::VillageNotice => "村公示",
            Status::TownshipReview => "乡镇审核",
            Status::TownshipNotice => "乡镇公示",
            Status::CountyReview => "县复审",
            Status::CountyAnnounced => "县公告",
            Status::ProvinceFiled => "省备案",
            Status::NotRecognised => "不予认定",
            Status::Exited => "退出",
        }
    }

    /// The English name, as stored and sent (`CountyAnnounced`).
    pub fn name(self) -> &'static str {
        match self {
            Status::Applied => "Applied",
            Status::Appraised => "Appraised",
            Status::VillageNotice => "VillageNotice",
            Status::TownshipReview => "TownshipReview",
            Status::TownshipNotice => "TownshipNotice",
            Status::CountyReview => "CountyReview",
            Status::CountyAnnounced => "CountyAnnounced",
            Status::ProvinceFiled => "ProvinceFiled",
            Status::NotRecognised => "NotRecognised",
            Status::Exited => "Exited",
        }
    }

    /// From the stored name or the Chinese label (runs for every status field a hub merges:
    /// no allocation).
    pub fn parse(s: &str) -> Option<Status> {
        let s = s.trim();
        Status::ALL.into_iter().find(|st| st.name() == s || st.label() == s)
    }

    /// Whether the household counts against the county's ceiling in this state.
    pub fn counts_against_quota(self) -> bool {
        matches!(self, Status::CountyAnnounced | Status::ProvinceFiled)
    }
}

/// One row of the 扶贫手册 import: a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id_number: IdNumber,
    pub name: String,
    pub relation: Relation,
    pub sex: Sex,
    pub education: Education,
    pub schooling: Option<Schooling>,
    pub health: Health,
    pub labour: Labour,
    pub migrant_work: Option<MigrantWork>,
    pub medical_insurance: bool,
    pub pension_insurance: bool,
}

/// Household facts (one per 扶贫手册).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Household {
    pub year: Year,
    pub village: RegionCode,
    pub number: String,
    pub attribute: Attribute,
    pub standard: Standard,
    pub main_cause: Cause,
    pub other_causes: Vec<Cause>,
    pub income: Yuan,
    pub income_per_capita: Yuan,
    pub unsafe_housing: bool,
    pub water_difficulty: bool,
    pub phone: String,
    pub bank_account: String,
    pub helper_name: String,
    pub helper_unit: String,
    pub helper_phone: String,
    /// 帮扶责任人 from when (YYYY-MM-DD), or empty.
    pub helper_since: String,
    pub status: Status,
    pub members: Vec<Member>,
    /// The facts the profile's eligibility rules read (seed 003 登记表: 是否有轿车, 因病支出, …),
    /// by field name ([`crate::eligibility::FACT_FIELDS`]); empty where the profile uses none.
    pub facts: BTreeMap<String, String>,
}

/// A broken rule of domain.md §3, with the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub rule: u8,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rule {} ({}): {}", self.rule, self.field, self.message)
    }
}

impl Household {
    /// `<village code>-<household number>`: the key of the household record.
    pub fn id(&self) -> String {
        household_id(&self.village, &self.number)
    }

    pub fn head(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.relation == Relation::Head)
    }

    /// Checks rules 3, 4 and 5 of domain.md §3 and the sex/ID parity of rule 1 (the ID number's
    /// own validity was checked when it was parsed). Rule 2 (one person, one household) needs the
    /// whole registry and is checked by the node and the hub.
    pub fn validate(&self) -> Vec<Violation> {
        let mut v = Vec::new();
        let mut push =
            |rule: u8, field: &str, message: String| v.push(Violation { rule, field: field.to_string(), message });
        if self.village.tier() != Tier::Village {
            push(3, "村代码", format!("{} is not a 12-digit village code", self.village));
        }
        if self.number.trim().is_empty() {
            push(3, "户编号", "household number is empty".into());
        }
        if self.members.is_empty() {
            push(3, "成员", "a household needs at least one member".into());
        }
        let heads = self.members.iter().filter(|m| m.relation == Relation::Head).count();
        if heads != 1 && !self.members.is_empty() {
            push(3, "与户主关系", format!("a household has exactly one 户主; this one has {heads}"));
        }
        let mut seen = std::collections::HashSet::new();
        for m in &self.members {
            if !seen.insert(m.id_number.as_str()) {
                push(2, "身份证号", format!("{} appears twice in this household", m.id_number.masked()));
            }
            if m.id_number.sex() != m.sex {
                push(
                    1,
                    "性别",
                    format!(
                        "{} is {} but the ID number {} says {}",
                        m.name,
                        m.sex,
                        m.id_number.masked(),
                        m.id_number.sex()
                    ),
                );
            }
            if m.name.trim().is_empty() {
                push(3, "姓名", format!("member {} has no name", m.id_number.masked()));
            }
        }
        if self.other_causes.len() > 2 {
            push(4, "其他致贫原因", format!("at most two other causes; {} given", self.other_causes.len()));
        }
        if self.other_causes.contains(&self.main_cause) {
            push(4, "其他致贫原因", format!("{} is already the main cause", self.main_cause));
        }
        if self.other_causes.len() == 2 && self.other_causes[0] == self.other_causes[1] {
            push(4, "其他致贫原因", format!("{} is given twice", self.other_causes[0]));
        }
        if !self.members.is_empty() {
            let n = self.members.len() as i64;
            // "Within rounding": the form rounds per-capita income to whole yuan.
            let exact = self.income.fen() as f64 / n as f64;
            if (self.income_per_capita.fen() as f64 - exact).abs() > 100.0 {
                push(
                    5,
                    "人均纯收入",
                    format!(
                        "per-capita income {} should be household income {} / {} members = {:.2}",
                        self.income_per_capita,
                        self.income,
                        n,
                        exact / 100.0
                    ),
                );
            }
        }
        v
    }

    /// The household record and one record per member.
    pub fn to_records(&self) -> Vec<Record> {
        let id = self.id();
        let mut f = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            f.insert(k.to_string(), v);
        };
        put("village", self.village.to_string());
        put("number", self.number.clone());
        put("attribute", self.attribute.label().into());
        put("standard", self.standard.label().into());
        put("main_cause", self.main_cause.label().into());
        put("other_causes", self.other_causes.iter().map(|c| c.label()).collect::<Vec<_>>().join("、"));
        put("income", self.income.to_string());
        put("income_per_capita", self.income_per_capita.to_string());
        put("unsafe_housing", yes_no(self.unsafe_housing).into());
        put("water_difficulty", yes_no(self.water_difficulty).into());
        put("phone", self.phone.clone());
        put("bank_account", self.bank_account.clone());
        put("helper_name", self.helper_name.clone());
        put("helper_unit", self.helper_unit.clone());
        put("helper_phone", self.helper_phone.clone());
        if !self.helper_since.is_empty() {
            put("helper_since", self.helper_since.clone());
        }
        put("status", format!("{:?}", self.status));
        put("members", self.members.len().to_string());
        for (k, v) in &self.facts {
            put(k, v.clone());
        }
        let mut out = vec![Record { key: RecordKey::new(RecordKind::Household, self.year, id.clone()), fields: f }];
        for m in &self.members {
            out.push(m.to_record(self.year, &id, &self.village));
        }
        out
    }

    /// Rebuilds a household from its records (the household record and its member records).
    pub fn from_records(household: &Record, members: &[Record]) -> Result<Household, String> {
        let ms = members.iter().map(Member::from_record).collect::<Result<Vec<_>, _>>()?;
        Household::from_fields(household.key.year, |k| household.fields.get(k).map(String::as_str), ms)
    }

    /// [`Household::from_records`] from the household's fields, looked up by name, and its members
    /// already parsed (the hub validates stored rows without copying them into records).
    pub fn from_fields<'a>(
        year: Year,
        field: impl Fn(&str) -> Option<&'a str>,
        mut ms: Vec<Member>,
    ) -> Result<Household, String> {
        let get = |k: &str| field(k).ok_or_else(|| format!("field {k} missing"));
        let other_causes = get("other_causes")?
            .split(['、', ';', '；'])
            .filter(|s| !s.trim().is_empty())
            .map(Cause::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        ms.sort_by(|a, b| {
            (a.relation != Relation::Head, &a.id_number).cmp(&(b.relation != Relation::Head, &b.id_number))
        });
        Ok(Household {
            year,
            village: RegionCode::parse(get("village")?).map_err(|e| e.to_string())?,
            number: get("number")?.to_string(),
            attribute: Attribute::parse(get("attribute")?).map_err(|e| e.to_string())?,
            standard: Standard::parse(get("standard")?).map_err(|e| e.to_string())?,
            main_cause: Cause::parse(get("main_cause")?).map_err(|e| e.to_string())?,
            other_causes,
            income: Yuan::parse(get("income")?).map_err(|e| e.to_string())?,
            income_per_capita: Yuan::parse(get("income_per_capita")?).map_err(|e| e.to_string())?,
            unsafe_housing: parse_yes_no("是否危房户", get("unsafe_housing")?).map_err(|e| e.to_string())?,
            water_difficulty: parse_yes_no("饮水困难", get("water_difficulty")?).map_err(|e| e.to_string())?,
            phone: get("phone")?.to_string(),
            bank_account: get("bank_account")?.to_string(),
            helper_name: get("helper_name")?.to_string(),
            helper_unit: get("helper_unit")?.to_string(),
            helper_phone: get("helper_phone")?.to_string(),
            helper_since: field("helper_since").unwrap_or("").to_string(),
            status: Status::parse(get("status")?).ok_or("bad status")?,
            members: ms,
            facts: crate::eligibility::FACT_FIELDS
                .iter()
                .filter_map(|k| Some((k.to_string(), field(k)?.to_string())))
                .collect(),
        })
    }
}

pub fn household_id(village: &RegionCode, number: &str) -> String {
    format!("{village}-{}", number.trim())
}

impl Member {
    pub fn to_record(&self, year: Year, household_id: &str, village: &RegionCode) -> Record {
        let mut f = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            f.insert(k.to_string(), v);
        };
        put("household", household_id.to_string());
        put("village", village.to_string());
        put("name", self.name.clone());
        put("relation", self.relation.label().into());
        put("sex", self.sex.label().into());
        put("education", self.education.label().into());
        put("schooling", self.schooling.map(|s| s.label()).unwrap_or("").into());
        put("health", self.health.label().into());
        put("labour", self.labour.label().into());
        put("migrant_work", self.migrant_work.map(|s| s.label()).unwrap_or("").into());
        put("medical_insurance", yes_no(self.medical_insurance).into());
        put("pension_insurance", yes_no(self.pension_insurance).into());
        Record { key: RecordKey::new(RecordKind::Member, year, self.id_number.as_str()), fields: f }
    }

    pub fn from_record(r: &Record) -> Result<Member, String> {
        Member::from_fields(&r.key.id, |k| r.fields.get(k).map(String::as_str))
    }

    /// [`Member::from_record`] from the ID number and the fields, looked up by name.
    pub fn from_fields<'a>(id: &str, field: impl Fn(&str) -> Option<&'a str>) -> Result<Member, String> {
        let get = |k: &str| field(k).ok_or_else(|| format!("field {k} missing"));
        let opt = |s: &str| (!s.trim().is_empty()).then(|| s.to_string());
        Ok(Member {
            id_number: IdNumber::parse_stored(id).map_err(|e| e.to_string())?,
            name: get("name")?.to_string(),
            relation: Relation::parse(get("relation")?).map_err(|e| e.to_string())?,
            sex: Sex::parse(get("sex")?).map_err(|e| e.to_string())?,
            education: Education::parse(get("education")?).map_err(|e| e.to_string())?,
            schooling: opt(get("schooling")?).map(|s| Schooling::parse(&s)).transpose().map_err(|e| e.to_string())?,
            health: Health::parse(get("health")?).map_err(|e| e.to_string())?,
            labour: Labour::parse(get("labour")?).map_err(|e| e.to_string())?,
            migrant_work: opt(get("migrant_work")?)
                .map(|s| MigrantWork::parse(&s))
                .transpose()
                .map_err(|e| e.to_string())?,
            medical_insurance: parse_yes_no("新农合", get("medical_insurance")?).map_err(|e| e.to_string())?,
            pension_insurance: parse_yes_no("养老保险", get("pension_insurance")?).map_err(|e| e.to_string())?,
        })
    }
}

/// 贫困村登记表 (the parts the registry syncs: basics, development level, results).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Village {
    pub year: Year,
    pub code: RegionCode,
    pub name: String,
    pub households: u32,
    pub population: u32,
    pub poor_households: u32,
    pub poor_population: u32,
    pub income_per_capita: Yuan,
    pub collective_income: Yuan,
    pub status: Status,
    /// The form's other items (parts 1–7 beyond the figures above, `village_form::ITEMS`), by field.
    pub items: BTreeMap<String, String>,
}

impl Village {
    pub fn validate(&self) -> Vec<Violation> {
        let mut v = Vec::new();
        if self.code.tier() != Tier::Village {
            v.push(Violation {
                rule: 3,
                field: "村代码".into(),
                message: format!("{} is not a village code", self.code),
            });
        }
        if self.poor_households > self.households {
            v.push(Violation {
                rule: 3,
                field: "贫困户数".into(),
                message: format!("{} poor households out of only {} households", self.poor_households, self.households),
            });
        }
        if self.poor_population > self.population {
            v.push(Violation {
                rule: 3,
                field: "贫困人口".into(),
                message: format!("{} poor people out of a population of {}", self.poor_population, self.population),
            });
        }
        v
    }

    /// 贫困发生率: poor population / population, in per cent.
    pub fn incidence_percent(&self) -> f64 {
        if self.population == 0 { 0.0 } else { self.poor_population as f64 * 100.0 / self.population as f64 }
    }

    pub fn to_record(&self) -> Record {
        let mut f = BTreeMap::new();
        f.insert("name".into(), self.name.clone());
        f.insert("households".into(), self.households.to_string());
        f.insert("population".into(), self.population.to_string());
        f.insert("poor_households".into(), self.poor_households.to_string());
        f.insert("poor_population".into(), self.poor_population.to_string());
        f.insert("income_per_capita".into(), self.income_per_capita.to_string());
        f.insert("collective_income".into(), self.collective_income.to_string());
        f.insert("status".into(), format!("{:?}", self.status));
        f.extend(self.items.iter().map(|(k, v)| (k.clone(), v.clone())));
        Record { key: RecordKey::new(RecordKind::Village, self.year, self.code.as_str()), fields: f }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::NaiveDate;

    pub fn sample_household() -> Household {
        let d = NaiveDate::from_ymd_opt(1970, 5, 1).unwrap();
        let head = Member {
            id_number: IdNumber::compose("420322", d, 11).unwrap(),
            name: "王大山".into(),
            relation: Relation::Head,
            sex: Sex::Male,
            education: Education::Primary,
            schooling: None,
            health: Health::Chronic,
            labour: Labour::Ordinary,
            migrant_work: Some(MigrantWork::InCounty),
            medical_insurance: true,
            pension_insurance: false,
        };
        let spouse = Member {
            id_number: IdNumber::compose("420322", d, 22).unwrap(),
            name: "李秀英".into(),
            relation: Relation::Spouse,
            sex: Sex::Female,
            ..head.clone()
        };
        Household {
            year: 2014,
            village: RegionCode::parse("420322105200").unwrap(),
            number: "0001".into(),
            attribute: Attribute::General,
            standard: Standard::National,
            main_cause: Cause::Illness,
            other_causes: vec![Cause::LackFunds],
            income: Yuan::from_yuan(4000),
            income_per_capita: Yuan::from_yuan(2000),
            unsafe_housing: false,
            water_difficulty: true,
            phone: "13800000000".into(),
            bank_account: "6217000000000000".into(),
            helper_name: "张帮扶".into(),
            helper_unit: "郧西县扶贫办".into(),
            helper_phone: "0719-0000000".into(),
            helper_since: String::new(),
            status: Status::Applied,
            members: vec![head, spouse],
            facts: BTreeMap::new(),
        }
    }

    #[test]
    fn status_names_are_their_debug_names() {
        for st in Status::ALL {
            assert_eq!(st.name(), format!("{st:?}"));
            assert_eq!(Status::parse(st.name()), Some(st));
            assert_eq!(Status::parse(st.label()), Some(st));
        }
    }

    #[test]
    fn valid_household_round_trips_through_records() {
        let h = sample_household();
        assert!(h.validate().is_empty(), "{:?}", h.validate());
        let recs = h.to_records();
        let back = Household::from_records(&recs[0], &recs[1..]).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn each_rule_is_reported() {
        let mut h = sample_household();
        h.members[1].relation = Relation::Head;
        h.other_causes = vec![Cause::Illness, Cause::LackLand, Cause::LackWater];
        h.income_per_capita = Yuan::from_yuan(3000);
        h.members[0].sex = Sex::Female;
        let rules: Vec<u8> = h.validate().iter().map(|v| v.rule).collect();
        for r in [1, 3, 4, 5] {
            assert!(rules.contains(&r), "rule {r} missing from {rules:?}");
        }
        h.members.clear();
        assert!(h.validate().iter().any(|v| v.message.contains("at least one member")));
    }
}
