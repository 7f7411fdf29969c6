//! Realistic households for demos, tests and benchmarks: valid ID numbers whose area is the
//! county and whose sex digit matches, families with plausible ages and relations, incomes
//! under the income line, one main cause and up to two others. Deterministic for a seed.

use chrono::NaiveDate;
use jianka_shared::{
    IdNumber, RegionCode, Year, Yuan,
    domain::{Household, Member, Status},
    labels::*,
};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};

const SURNAMES: &[&str] =
    &["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "胡", "朱", "高", "郭", "何", "罗"];
const GIVEN_M: &[&str] =
    &["建国", "志强", "国华", "大山", "长青", "德明", "文斌", "永福", "立新", "海涛", "家兴", "春生"];
const GIVEN_F: &[&str] =
    &["秀英", "桂兰", "玉梅", "春花", "丽娟", "晓燕", "淑珍", "金凤", "小红", "翠萍", "美玲", "玉兰"];

/// The import headers of the 扶贫手册, in the order the forms use.
pub const HEADERS: [&str; 26] = [
    "村代码",
    "户编号",
    "姓名",
    "身份证号",
    "与户主关系",
    "性别",
    "文化程度",
    "在校生状况",
    "健康状况",
    "劳动能力",
    "务工状况",
    "新农合",
    "养老保险",
    "贫困户属性",
    "识别标准",
    "主要致贫原因",
    "其他致贫原因",
    "家庭年纯收入",
    "人均纯收入",
    "是否危房户",
    "饮水困难",
    "联系电话",
    "开户银行账号",
    "帮扶责任人",
    "帮扶单位",
    "帮扶人电话",
];

pub struct Generator {
    rng: StdRng,
    year: Year,
    /// ID sequence numbers of this generator start here, so generators with seeds that differ
    /// modulo 4 never produce the same person.
    seq_base: u16,
    next_seq: std::collections::HashMap<(String, NaiveDate), u16>,
}

impl Generator {
    pub fn new(seed: u64, year: Year) -> Generator {
        Generator {
            rng: StdRng::seed_from_u64(seed),
            year,
            seq_base: (seed % 4) as u16 * 250,
            next_seq: Default::default(),
        }
    }

    fn id(&mut self, area: &str, birth: NaiveDate, male: bool) -> IdNumber {
        // Unique per (area, birth date) within this generator's 250 sequence numbers; the parity
        // of the sequence number is the sex.
        let seq = self.next_seq.entry((area.to_string(), birth)).or_insert(0);
        let mut s = *seq;
        if (s % 2 == 1) != male {
            s += 1;
        }
        *seq = s + 1;
        IdNumber::compose(area, birth, self.seq_base + s % 250).expect("valid parts")
    }

    fn birth(&mut self, age: i32) -> NaiveDate {
        let y = self.year as i32 - age;
        NaiveDate::from_ymd_opt(y, self.rng.random_range(1..=12), self.rng.random_range(1..=28)).expect("valid date")
    }

    fn person(&mut self, area: &str, surname: &str, age: i32, male: bool, relation: Relation) -> Member {
        let given = if male { GIVEN_M } else { GIVEN_F }.choose(&mut self.rng).expect("non-empty");
        let education = match age {
            0..=5 => Education::Preschool,
            6..=11 => Education::Primary,
            12..=14 => Education::Junior,
            15..=18 => Education::Senior,
            _ => *[Education::Illiterate, Education::Primary, Education::Junior, Education::Senior]
                .choose(&mut self.rng)
                .expect("non-empty"),
        };
        let schooling = match age {
            3..=5 => Some(Schooling::Preschool),
            6..=11 => Some(Schooling::Primary),
            12..=14 => Some(Schooling::Junior),
            15..=17 => Some(Schooling::Senior),
            _ => None,
        };
        let working = (18..60).contains(&age);
        Member {
            id_number: {
                let birth = self.birth(age);
                self.id(area, birth, male)
            },
            name: format!("{surname}{given}"),
            relation,
            sex: if male { Sex::Male } else { Sex::Female },
            education,
            schooling,
            health: *[Health::Healthy, Health::Healthy, Health::Chronic, Health::Serious, Health::Disabled]
                .choose(&mut self.rng)
                .expect("non-empty"),
            labour: if working { Labour::Ordinary } else { Labour::None },
            migrant_work: if working && self.rng.random_bool(0.4) { Some(MigrantWork::OutOfProvince) } else { None },
            medical_insurance: self.rng.random_bool(0.9),
            pension_insurance: age >= 16 && self.rng.random_bool(0.6),
        }
    }

    /// One household of `village` (12 digits) numbered `number`, ready for county review when `status` says so.
    pub fn household(&mut self, village: &str, number: u32, status: Status) -> Household {
        let area = &village[..6];
        let surname = *SURNAMES.choose(&mut self.rng).expect("non-empty");
        let head_age = self.rng.random_range(28..75);
        let mut members = vec![self.person(area, surname, head_age, true, Relation::Head)];
        if self.rng.random_bool(0.85) {
            let spouse_surname = *SURNAMES.choose(&mut self.rng).expect("non-empty");
            let age = head_age - self.rng.random_range(0..5);
            members.push(self.person(area, spouse_surname, age, false, Relation::Spouse));
        }
        let children = if head_age < 60 { self.rng.random_range(0..4) } else { self.rng.random_range(0..2) };
        for _ in 0..children {
            let male = self.rng.random_bool(0.5);
            let age = (head_age - self.rng.random_range(20..32)).max(1);
            let rel = if male { Relation::Son } else { Relation::Daughter };
            members.push(self.person(area, surname, age, male, rel));
        }
        if head_age < 50 && self.rng.random_bool(0.3) {
            let age = head_age + self.rng.random_range(22..30);
            members.push(self.person(area, surname, age, false, Relation::Mother));
        }
        let n = members.len() as i64;
        // Per-capita net income under the 2013 line of 2,736 yuan, whole yuan as on the forms.
        let per_capita = self.rng.random_range(800..2700i64);
        let causes = Cause::ALL;
        let main_cause = *causes.choose(&mut self.rng).expect("non-empty");
        let n_other = self.rng.random_range(0..=2);
        let candidates: Vec<Cause> = causes.iter().copied().filter(|c| *c != main_cause).collect();
        let mut other_causes: Vec<Cause> = candidates.choose_multiple(&mut self.rng, n_other).copied().collect();
        other_causes.sort();
        Household {
            year: self.year,
            village: RegionCode::parse(village).expect("fixture village code"),
            number: format!("{number:04}"),
            attribute: *[
                Attribute::General,
                Attribute::General,
                Attribute::LowIncomeSupport,
                Attribute::FiveGuarantees,
            ]
            .choose(&mut self.rng)
            .expect("non-empty"),
            standard: Standard::National,
            main_cause,
            other_causes,
            income: Yuan::from_yuan(per_capita * n),
            income_per_capita: Yuan::from_yuan(per_capita),
            unsafe_housing: self.rng.random_bool(0.2),
            water_difficulty: self.rng.random_bool(0.15),
            phone: format!("1{}{:09}", self.rng.random_range(30..90), self.rng.random_range(0..1_000_000_000u64)),
            bank_account: format!("621700{:013}", self.rng.random_range(0..10_000_000_000_000u64)),
            helper_name: format!(
                "{}{}",
                SURNAMES.choose(&mut self.rng).expect("non-empty"),
                GIVEN_M.choose(&mut self.rng).expect("non-empty")
            ),
            helper_unit: "县扶贫开发办公室".into(),
            helper_phone: format!("0719-{:07}", self.rng.random_range(0..10_000_000)),
            helper_since: String::new(),
            status,
            members,
            facts: Default::default(),
        }
    }
}

/// The 26 import columns of one member row (household columns filled on every row).
pub fn member_row(h: &Household, m: &Member) -> [String; 26] {
    let other: Vec<&str> = h.other_causes.iter().map(|c| c.label()).collect();
    [
        h.village.to_string(),
        h.number.clone(),
        m.name.clone(),
        m.id_number.to_string(),
        m.relation.label().into(),
        m.sex.label().into(),
        m.education.label().into(),
        m.schooling.map(|s| s.label()).unwrap_or("").into(),
        m.health.label().into(),
        m.labour.label().into(),
        m.migrant_work.map(|s| s.label()).unwrap_or("").into(),
        yes_no(m.medical_insurance).into(),
        yes_no(m.pension_insurance).into(),
        h.attribute.label().into(),
        h.standard.label().into(),
        h.main_cause.label().into(),
        other.join("、"),
        h.income.to_string(),
        h.income_per_capita.to_string(),
        yes_no(h.unsafe_housing).into(),
        yes_no(h.water_difficulty).into(),
        h.phone.clone(),
        h.bank_account.clone(),
        h.helper_name.clone(),
        h.helper_unit.clone(),
        h.helper_phone.clone(),
    ]
}

/// Writes households as an import CSV (UTF-8), one row per member.
pub fn write_csv<W: std::io::Write>(out: W, households: &[Household]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(HEADERS)?;
    for h in households {
        for m in &h.members {
            w.write_record(member_row(h, m))?;
        }
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_households_pass_every_rule() {
        let mut g = Generator::new(7, 2014);
        let mut ids = std::collections::HashSet::new();
        for n in 0..2000 {
            let h = g.household("420322105200", n, Status::Applied);
            assert!(h.validate().is_empty(), "{:?}", h.validate());
            for m in &h.members {
                assert!(IdNumber::parse(m.id_number.as_str(), NaiveDate::from_ymd_opt(2014, 12, 31).unwrap()).is_ok());
                assert!(ids.insert(m.id_number.clone()), "duplicate ID generated");
            }
        }
    }
}
