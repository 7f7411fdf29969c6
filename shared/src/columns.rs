//! The 扶贫手册's import columns: each one's Chinese header, English alias, level and whether it is
//! required; and a register's row in exactly these columns, so an export imports back unchanged.

/// Columns of the 扶贫手册 import: (Chinese header, English alias, household-level, required).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Col {
    Village,
    Number,
    Name,
    IdNumber,
    Relation,
    Sex,
    Education,
    Schooling,
    Health,
    Labour,
    MigrantWork,
    MedicalInsurance,
    PensionInsurance,
    Attribute,
    Standard,
    MainCause,
    OtherCauses,
    Income,
    IncomePerCapita,
    UnsafeHousing,
    WaterDifficulty,
    Phone,
    BankAccount,
    HelperName,
    HelperUnit,
    HelperPhone,
    /// 帮扶责任人 from when (YYYY-MM-DD); optional.
    HelperSince,
    // The facts a profile's eligibility rules read (seed 003 登记表), optional everywhere.
    HasCar,
    BoughtHousing,
    ChildrenCanSupport,
    AwayFromVillage,
    SpendingIllness,
    SpendingSchooling,
    SpendingDisaster,
}

impl Col {
    pub const ALL: [Col; 34] = [
        Col::Village,
        Col::Number,
        Col::Name,
        Col::IdNumber,
        Col::Relation,
        Col::Sex,
        Col::Education,
        Col::Schooling,
        Col::Health,
        Col::Labour,
        Col::MigrantWork,
        Col::MedicalInsurance,
        Col::PensionInsurance,
        Col::Attribute,
        Col::Standard,
        Col::MainCause,
        Col::OtherCauses,
        Col::Income,
        Col::IncomePerCapita,
        Col::UnsafeHousing,
        Col::WaterDifficulty,
        Col::Phone,
        Col::BankAccount,
        Col::HelperName,
        Col::HelperUnit,
        Col::HelperPhone,
        Col::HasCar,
        Col::BoughtHousing,
        Col::ChildrenCanSupport,
        Col::AwayFromVillage,
        Col::SpendingIllness,
        Col::SpendingSchooling,
        Col::SpendingDisaster,
        Col::HelperSince,
    ];

    /// The eligibility facts: yes/no columns, then amounts in yuan.
    pub const FACTS: [Col; 7] = [
        Col::HasCar,
        Col::ChildrenCanSupport,
        Col::BoughtHousing,
        Col::AwayFromVillage,
        Col::SpendingIllness,
        Col::SpendingSchooling,
        Col::SpendingDisaster,
    ];

    pub fn header(self) -> &'static str {
        self.names().0
    }

    fn names(self) -> (&'static str, &'static str) {
        match self {
            Col::Village => ("村代码", "village_code"),
            Col::Number => ("户编号", "household_number"),
            Col::Name => ("姓名", "name"),
            Col::IdNumber => ("身份证号", "id_number"),
            Col::Relation => ("与户主关系", "relation"),
            Col::Sex => ("性别", "sex"),
            Col::Education => ("文化程度", "education"),
            Col::Schooling => ("在校生状况", "schooling"),
            Col::Health => ("健康状况", "health"),
            Col::Labour => ("劳动能力", "labour"),
            Col::MigrantWork => ("务工状况", "migrant_work"),
            Col::MedicalInsurance => ("新农合", "medical_insurance"),
            Col::PensionInsurance => ("养老保险", "pension_insurance"),
            Col::Attribute => ("贫困户属性", "attribute"),
            Col::Standard => ("识别标准", "standard"),
            Col::MainCause => ("主要致贫原因", "main_cause"),
            Col::OtherCauses => ("其他致贫原因", "other_causes"),
            Col::Income => ("家庭年纯收入", "income"),
            Col::IncomePerCapita => ("人均纯收入", "income_per_capita"),
            Col::UnsafeHousing => ("是否危房户", "unsafe_housing"),
            Col::WaterDifficulty => ("饮水困难", "water_difficulty"),
            Col::Phone => ("联系电话", "phone"),
            Col::BankAccount => ("开户银行账号", "bank_account"),
            Col::HelperName => ("帮扶责任人", "helper_name"),
            Col::HelperUnit => ("帮扶单位", "helper_unit"),
            Col::HelperPhone => ("帮扶人电话", "helper_phone"),
            Col::HelperSince => ("帮扶起始日期", "helper_since"),
            Col::HasCar => ("是否有轿车", "has_car"),
            Col::BoughtHousing => ("是否购置商品房或门面房", "bought_housing"),
            Col::ChildrenCanSupport => ("子女是否有赡养能力", "children_can_support"),
            Col::AwayFromVillage => ("是否长期不在村居住", "away_from_village"),
            Col::SpendingIllness => ("因病支出", "spending_illness"),
            Col::SpendingSchooling => ("因学支出", "spending_schooling"),
            Col::SpendingDisaster => ("因灾支出", "spending_disaster"),
        }
    }

    /// Read from the 户主's row; other rows may leave it empty or repeat it.
    pub fn household_level(self) -> bool {
        matches!(
            self,
            Col::Attribute
                | Col::Standard
                | Col::MainCause
                | Col::OtherCauses
                | Col::Income
                | Col::IncomePerCapita
                | Col::UnsafeHousing
                | Col::WaterDifficulty
                | Col::Phone
                | Col::BankAccount
                | Col::HelperName
                | Col::HelperUnit
                | Col::HelperPhone
                | Col::HelperSince
        ) || Col::FACTS.contains(&self)
    }

    /// Read as 是/否 (the rest of the facts are amounts in yuan).
    pub fn is_flag(self) -> bool {
        matches!(self, Col::HasCar | Col::BoughtHousing | Col::ChildrenCanSupport | Col::AwayFromVillage)
    }

    /// ID numbers, phones and bank accounts: masked wherever the node prints them (domain.md §7).
    pub fn personal(self) -> bool {
        matches!(self, Col::IdNumber | Col::Phone | Col::BankAccount | Col::HelperPhone)
    }

    pub fn optional(self) -> bool {
        matches!(
            self,
            Col::Schooling
                | Col::MigrantWork
                | Col::OtherCauses
                | Col::Phone
                | Col::BankAccount
                | Col::HelperName
                | Col::HelperUnit
                | Col::HelperPhone
                | Col::HelperSince
        ) || Col::FACTS.contains(&self)
    }

    pub fn from_header(h: &str) -> Option<Col> {
        let h = h.trim();
        Col::ALL.into_iter().find(|c| {
            let (zh, en) = c.names();
            h == zh || h.eq_ignore_ascii_case(en)
        })
    }

    /// The record field a household column maps to, for `household edit --set`.
    pub fn field(self) -> &'static str {
        match self {
            Col::Village => "village",
            Col::Number => "number",
            Col::Name => "name",
            Col::IdNumber => "id_number",
            Col::Relation => "relation",
            Col::Sex => "sex",
            Col::Education => "education",
            Col::Schooling => "schooling",
            Col::Health => "health",
            Col::Labour => "labour",
            Col::MigrantWork => "migrant_work",
            Col::MedicalInsurance => "medical_insurance",
            Col::PensionInsurance => "pension_insurance",
            Col::Attribute => "attribute",
            Col::Standard => "standard",
            Col::MainCause => "main_cause",
            Col::OtherCauses => "other_causes",
            Col::Income => "income",
            Col::IncomePerCapita => "income_per_capita",
            Col::UnsafeHousing => "unsafe_housing",
            Col::WaterDifficulty => "water_difficulty",
            Col::Phone => "phone",
            Col::BankAccount => "bank_account",
            Col::HelperName => "helper_name",
            Col::HelperUnit => "helper_unit",
            Col::HelperPhone => "helper_phone",
            Col::HelperSince => "helper_since",
            // The eligibility facts are stored under their English alias.
            fact => fact.names().1,
        }
    }

    /// Accepts a Chinese header, an English alias or a record field name.
    pub fn lookup(name: &str) -> Option<Col> {
        Col::from_header(name).or_else(|| Col::ALL.into_iter().find(|c| c.field() == name.trim()))
    }
}

/// One member's row of a register export, in [`Col::ALL`] order: the household's columns on its
/// head's row only, each cell the stored value (labels, 是/否 and yuan are stored as the form
/// writes them). `household` and `member` read the stored fields; `member_id` is the person's
/// identity number. Without `full`, identity numbers, phones and accounts are masked.
pub fn export_row<'a>(
    household: impl Fn(&str) -> Option<&'a str>,
    (member_id, member): (&'a str, impl Fn(&str) -> Option<&'a str>),
    head: bool,
    full: bool,
) -> Vec<String> {
    Col::ALL
        .iter()
        .map(|&c| {
            let value = match c {
                Col::Village => household("village"),
                Col::Number => household("number"),
                Col::IdNumber => Some(member_id),
                c if c.household_level() => head.then(|| household(c.field())).flatten(),
                c => member(c.field()),
            }
            .unwrap_or_default();
            if c.personal() && !full && !value.is_empty() { crate::id_number::mask(value) } else { value.to_string() }
        })
        .collect()
}
