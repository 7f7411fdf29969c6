//! Who qualifies, as the profile states it (domain.md §4): a household by its per-capita income
//! against the line, unless an exclusion applies (seed 003: a car, well-off children, bought
//! housing, 空挂户), or above the line with spending the profile weighs (酌情纳入), which only the
//! deciding tier's recorded decision includes; a poor village by the profile's criteria (seed 000
//! 一高一低一无, seed 003 the low-income majority). Pure: the rules read a record's fields through a
//! lookup, so the node and the hub apply the very same rules to the very same form.

use crate::Yuan;
use serde::{Deserialize, Serialize};

/// The household rules of a profile beyond the income line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eligibility {
    /// Facts that exclude a household although its income is under the line.
    #[serde(default)]
    pub exclusions: Vec<Exclusion>,
    /// Spending that may include a household although its income is at or above the line.
    #[serde(default)]
    pub inclusions: Vec<Inclusion>,
    /// Yearly spending (yuan) on one such cause from which it counts (default: any).
    #[serde(default)]
    pub inclusion_spending_yuan: u32,
    /// The township's own exclusions (its node config's `[[township_rules]]`, where the profile
    /// lets a township add them); never read from a profile.
    #[serde(skip)]
    pub township: Vec<TownshipRule>,
}

/// A township's own exclusion (seed 003 "⑸各镇认为的其他情况", "各镇可…制定…家庭财产及消费具体标准"):
/// a column of its 登记表 — 是/否, or an amount in yuan with the threshold from which it excludes —
/// that excludes a household under the line. It can only exclude: the deciding tier above still
/// applies the profile's own rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TownshipRule {
    /// The rule as the township names it ("有大型农机").
    pub label: String,
    /// The import file's column that holds the fact ("是否有大型农机").
    pub column: String,
    /// Where the fact is kept on the household: `rule_<field>`; a–z, 0–9 and '_'.
    pub field: String,
    /// An amount column: it excludes from this many yuan. Without it the column is 是/否.
    #[serde(default)]
    pub at_least_yuan: Option<u64>,
}

impl TownshipRule {
    /// The household field holding the fact.
    pub fn stored_field(&self) -> String {
        format!("rule_{}", self.field)
    }

    /// What makes a rule unusable, naming it.
    pub fn check(&self) -> Result<(), String> {
        let ok = !self.field.is_empty()
            && self.field.len() <= 40
            && self.field.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(format!("field {:?}: 1–40 characters of a-z, 0-9 and '_'", self.field));
        }
        if self.label.trim().is_empty() || self.column.trim().is_empty() {
            return Err(format!("field {:?}: a rule needs its label and its column", self.field));
        }
        Ok(())
    }

    /// Whether the stored `value` of its fact excludes.
    fn excludes(&self, value: &str) -> bool {
        match self.at_least_yuan {
            None => is_yes(value),
            Some(min) => Yuan::parse(value).is_ok_and(|v| v >= Yuan::from_yuan(min as i64)),
        }
    }
}

/// An exclusion rule and the form field (是/否) it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    OwnsCar,
    ChildrenCanSupport,
    BoughtHousing,
    NotLivingInVillage,
}

/// An inclusion rule and the spending field (yuan) it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Inclusion {
    Illness,
    Schooling,
    Disaster,
}

impl Exclusion {
    pub const ALL: [Exclusion; 4] =
        [Exclusion::OwnsCar, Exclusion::ChildrenCanSupport, Exclusion::BoughtHousing, Exclusion::NotLivingInVillage];

    /// The household field holding the fact (`true` / `false`).
    pub fn field(self) -> &'static str {
        match self {
            Exclusion::OwnsCar => "has_car",
            Exclusion::ChildrenCanSupport => "children_can_support",
            Exclusion::BoughtHousing => "bought_housing",
            Exclusion::NotLivingInVillage => "away_from_village",
        }
    }

    /// The rule as the seed names it.
    pub fn label(self) -> &'static str {
        match self {
            Exclusion::OwnsCar => "有轿车",
            Exclusion::ChildrenCanSupport => "子女有赡养能力",
            Exclusion::BoughtHousing => "购置商品房或门面房",
            Exclusion::NotLivingInVillage => "长期不在村居住 (空挂户)",
        }
    }
}

impl Inclusion {
    pub const ALL: [Inclusion; 3] = [Inclusion::Illness, Inclusion::Schooling, Inclusion::Disaster];

    /// The household field holding the year's spending (yuan).
    pub fn field(self) -> &'static str {
        match self {
            Inclusion::Illness => "spending_illness",
            Inclusion::Schooling => "spending_schooling",
            Inclusion::Disaster => "spending_disaster",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Inclusion::Illness => "因病支出",
            Inclusion::Schooling => "因学支出",
            Inclusion::Disaster => "因灾支出",
        }
    }
}

/// Every household field a rule reads: the exclusions' facts, then the inclusions' spending.
pub const FACT_FIELDS: [&str; 7] = [
    "has_car",
    "children_can_support",
    "bought_housing",
    "away_from_village",
    "spending_illness",
    "spending_schooling",
    "spending_disaster",
];

/// What the rules say of one household.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assessment {
    /// Under the line and no exclusion applies.
    Eligible,
    /// Under the line, but excluded by the named rule.
    Excluded { rule: String },
    /// At or above the line, with no spending that could include it.
    NotEligible { rule: String },
    /// At or above the line with spending the profile weighs: only a recorded decision of the
    /// deciding tier includes it (酌情纳入).
    ForDecision { reason: String },
}

impl Assessment {
    /// A line for the clerk and the refusal: "not eligible: income 3,100 ≥ 2,736".
    pub fn describe(&self) -> String {
        match self {
            Assessment::Eligible => "eligible".into(),
            Assessment::Excluded { rule } => format!("excluded: {rule}"),
            Assessment::NotEligible { rule } => format!("not eligible: {rule}"),
            Assessment::ForDecision { reason } => format!("for the deciding tier (酌情纳入): {reason}"),
        }
    }
}

/// A yes/no fact as forms write it.
pub fn is_yes(v: &str) -> bool {
    matches!(v.trim(), "true" | "1" | "是" | "有" | "yes" | "y" | "Y")
}

/// Assesses a household against `line` (per-capita yuan) and `rules`; `field` reads the form.
/// A missing or unreadable income is not eligible (the form's own check reports why).
pub fn assess<'a>(line: Yuan, rules: &Eligibility, field: impl Fn(&str) -> Option<&'a str>) -> Assessment {
    let income = field("income_per_capita").and_then(|v| Yuan::parse(v).ok());
    let Some(income) = income else {
        return Assessment::NotEligible { rule: "no per-capita income on the form".into() };
    };
    if income < line {
        if let Some(ex) = rules.exclusions.iter().find(|e| field(e.field()).is_some_and(is_yes)) {
            return Assessment::Excluded { rule: ex.label().into() };
        }
        if let Some(r) = rules.township.iter().find(|r| field(&r.stored_field()).is_some_and(|v| r.excludes(v))) {
            return Assessment::Excluded { rule: format!("{} (镇定标准)", r.label) };
        }
        return Assessment::Eligible;
    }
    let floor = Yuan::from_yuan(i64::from(rules.inclusion_spending_yuan.max(1)));
    let weighed: Vec<String> = rules
        .inclusions
        .iter()
        .filter_map(|i| {
            let spent = field(i.field()).and_then(|v| Yuan::parse(v).ok())?;
            (spent >= floor).then(|| format!("{} {}", i.label(), grouped(spent)))
        })
        .collect();
    if weighed.is_empty() {
        Assessment::NotEligible { rule: format!("income {} ≥ {}", grouped(income), grouped(line)) }
    } else {
        Assessment::ForDecision {
            reason: format!("income {} ≥ {}, {}", grouped(income), grouped(line), weighed.join(", ")),
        }
    }
}

/// Yuan with thousands separators, as the offices write them: 11,160 or 3,100.50.
pub fn grouped(y: Yuan) -> String {
    let plain = y.to_string();
    let (int, frac) = plain.split_once('.').map_or((plain.as_str(), None), |(i, f)| (i, Some(f)));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

/// A profile's poor-village criterion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum VillageCriteria {
    /// Seed 000 一高一低一无: incidence at least twice the province's, per-capita income under
    /// 60 % of the province's average, no collective income.
    OneHighOneLowOneNone { province_incidence_percent: f64, province_income_per_capita_yuan: u32 },
    /// Seed 003: low-income households more than half of all, per-capita income at most 80 % of
    /// the city's rural average, at least this many low-income households.
    LowIncomeMajority { city_rural_income_per_capita_yuan: u32, min_low_income_households: u32 },
}

/// The criteria a village fails (empty: it qualifies), each named with its figures.
pub fn village_failures<'a>(criteria: &VillageCriteria, field: impl Fn(&str) -> Option<&'a str>) -> Vec<String> {
    let num = |name: &str| field(name).and_then(|v| v.trim().parse::<f64>().ok());
    let money = |name: &str| field(name).and_then(|v| Yuan::parse(v).ok());
    let mut failed = Vec::new();
    match criteria {
        VillageCriteria::OneHighOneLowOneNone { province_incidence_percent, province_income_per_capita_yuan } => {
            let incidence = match (num("poor_population"), num("population")) {
                (Some(p), Some(t)) if t > 0.0 => p * 100.0 / t,
                _ => 0.0,
            };
            if incidence < 2.0 * province_incidence_percent {
                failed.push(format!(
                    "一高: incidence {incidence:.1}% is under twice the province's {province_incidence_percent}%"
                ));
            }
            let limit = Yuan::from_yuan(i64::from(*province_income_per_capita_yuan) * 60 / 100);
            match money("income_per_capita") {
                Some(i) if i < limit => {}
                Some(i) => {
                    failed.push(format!("一低: income {i} is not under 60% of the province's average ({limit})"))
                }
                None => failed.push("一低: no per-capita income on the form".into()),
            }
            match money("collective_income") {
                Some(c) if c.fen() == 0 => {}
                Some(c) => failed.push(format!("一无: collective income {c}")),
                None => failed.push("一无: no collective income on the form".into()),
            }
        }
        VillageCriteria::LowIncomeMajority { city_rural_income_per_capita_yuan, min_low_income_households } => {
            let (poor, all) = (num("poor_households").unwrap_or(0.0), num("households").unwrap_or(0.0));
            if poor * 2.0 <= all {
                failed.push(format!("low-income households {poor} are not more than half of {all}"));
            }
            let limit = Yuan::from_yuan(i64::from(*city_rural_income_per_capita_yuan) * 80 / 100);
            match money("income_per_capita") {
                Some(i) if i <= limit => {}
                Some(i) => failed.push(format!("income {i} is over 80% of the city's rural average ({limit})")),
                None => failed.push("no per-capita income on the form".into()),
            }
            if poor < f64::from(*min_low_income_households) {
                failed.push(format!("{poor} low-income households, fewer than {min_low_income_households}"));
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn miyun() -> Eligibility {
        Eligibility {
            exclusions: Exclusion::ALL.to_vec(),
            inclusions: Inclusion::ALL.to_vec(),
            inclusion_spending_yuan: 5000,
            township: Vec::new(),
        }
    }

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn run(line: i64, rules: &Eligibility, f: &BTreeMap<String, String>) -> Assessment {
        assess(Yuan::from_yuan(line), rules, |n| f.get(n).map(String::as_str))
    }

    #[test]
    fn the_income_line_at_and_around_its_value() {
        let rules = Eligibility::default();
        for (income, eligible) in [("2735.99", true), ("2736", false), ("2736.01", false), ("0", true)] {
            let got = run(2736, &rules, &form(&[("income_per_capita", income)]));
            assert_eq!(got == Assessment::Eligible, eligible, "{income}: {got:?}");
        }
        let got = run(2736, &rules, &form(&[("income_per_capita", "3100")]));
        assert_eq!(got.describe(), "not eligible: income 3,100 ≥ 2,736");
        assert!(matches!(run(2736, &rules, &form(&[])), Assessment::NotEligible { .. }));
    }

    #[test]
    fn each_exclusion_excludes_under_the_line_and_names_itself() {
        for ex in Exclusion::ALL {
            let f = form(&[("income_per_capita", "9000"), (ex.field(), "是")]);
            assert_eq!(run(11160, &miyun(), &f), Assessment::Excluded { rule: ex.label().into() });
            let no = form(&[("income_per_capita", "9000"), (ex.field(), "否")]);
            assert_eq!(run(11160, &miyun(), &no), Assessment::Eligible);
            // A profile without the rule (hubei-2014) does not read the fact.
            assert_eq!(run(11160, &Eligibility::default(), &f), Assessment::Eligible);
        }
    }

    #[test]
    fn each_inclusion_puts_a_household_above_the_line_to_the_deciding_tier() {
        for inc in Inclusion::ALL {
            let f = form(&[("income_per_capita", "12000"), (inc.field(), "6000")]);
            let got = run(11160, &miyun(), &f);
            assert!(matches!(&got, Assessment::ForDecision { reason } if reason.contains(inc.label())), "{got:?}");
            // Under the profile's floor, or without the rule: not eligible.
            let small = form(&[("income_per_capita", "12000"), (inc.field(), "4999")]);
            assert!(matches!(run(11160, &miyun(), &small), Assessment::NotEligible { .. }));
            assert!(matches!(run(11160, &Eligibility::default(), &f), Assessment::NotEligible { .. }));
        }
    }

    #[test]
    fn village_criteria_of_both_seeds() {
        let seed000 = VillageCriteria::OneHighOneLowOneNone {
            province_incidence_percent: 14.0,
            province_income_per_capita_yuan: 6000,
        };
        let good = form(&[
            ("population", "1000"),
            ("poor_population", "300"),
            ("income_per_capita", "3000"),
            ("collective_income", "0"),
        ]);
        assert!(village_failures(&seed000, |n| good.get(n).map(String::as_str)).is_empty());
        for (k, v, named) in [
            ("poor_population", "270", "一高"),
            ("income_per_capita", "3600", "一低"),
            ("collective_income", "1000", "一无"),
        ] {
            let mut f = good.clone();
            f.insert(k.into(), v.into());
            let failed = village_failures(&seed000, |n| f.get(n).map(String::as_str));
            assert!(failed.len() == 1 && failed[0].starts_with(named), "{k}={v}: {failed:?}");
        }
        let seed003 = VillageCriteria::LowIncomeMajority {
            city_rural_income_per_capita_yuan: 20000,
            min_low_income_households: 30,
        };
        let good = form(&[("households", "100"), ("poor_households", "51"), ("income_per_capita", "16000")]);
        assert!(village_failures(&seed003, |n| good.get(n).map(String::as_str)).is_empty());
        for (k, v) in [("poor_households", "50"), ("income_per_capita", "16000.01")] {
            let mut f = good.clone();
            f.insert(k.into(), v.into());
            assert_eq!(village_failures(&seed003, |n| f.get(n).map(String::as_str)).len(), 1, "{k}={v}");
        }
        let small = form(&[("households", "50"), ("poor_households", "29"), ("income_per_capita", "1000")]);
        let failed = village_failures(&seed003, |n| small.get(n).map(String::as_str));
        assert!(failed.len() == 1 && failed[0].contains("fewer than 30"), "{failed:?}");
    }

    #[test]
    fn a_townships_own_rule_excludes_under_the_line_only() {
        let rules = Eligibility {
            township: vec![
                TownshipRule {
                    label: "有大型农机".into(),
                    column: "是否有大型农机".into(),
                    field: "machinery".into(),
                    at_least_yuan: None,
                },
                TownshipRule {
                    label: "家庭存款10万元以上".into(),
                    column: "家庭存款".into(),
                    field: "savings".into(),
                    at_least_yuan: Some(100_000),
                },
            ],
            ..Eligibility::default()
        };
        let line = Yuan::from_yuan(11160);
        let judge = |facts: &[(&str, &str)]| {
            let mut all = vec![("income_per_capita", "3000")];
            all.extend_from_slice(facts);
            assess(line, &rules, |f| all.iter().find(|(k, _)| *k == f).map(|(_, v)| *v))
        };
        assert_eq!(judge(&[("rule_machinery", "是")]).describe(), "excluded: 有大型农机 (镇定标准)");
        assert_eq!(judge(&[("rule_machinery", "否")]), Assessment::Eligible);
        assert_eq!(judge(&[("rule_savings", "99999.99")]), Assessment::Eligible);
        assert_eq!(judge(&[("rule_savings", "100000")]).describe(), "excluded: 家庭存款10万元以上 (镇定标准)");
        let bad = TownshipRule { label: "x".into(), column: "y".into(), field: "Bad Name".into(), at_least_yuan: None };
        assert!(bad.check().unwrap_err().contains("Bad Name"));
    }
}
