//! The closed vocabularies of the forms (domain.md §2). Each value has the Chinese label used on the
//! forms and in imports; parsing an unknown label is an error that lists the allowed ones.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {field}; allowed: {allowed}")]
pub struct LabelError {
    pub field: &'static str,
    pub value: String,
    pub allowed: String,
}

macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident, $field:literal { $($variant:ident => $label:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The field's name on the form, for messages.
            pub const FIELD: &'static str = $field;

            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label),+ }
            }

            pub fn parse(s: &str) -> Result<Self, LabelError> {
                match s.trim() {
                    $($label => Ok($name::$variant),)+
                    other => Err(LabelError {
                        field: $field,
                        value: other.to_string(),
                        allowed: [$($label),+].join(", "),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.label())
            }
        }
    };
}

label_enum!(Sex, "性别" { Male => "男", Female => "女" });

label_enum!(Relation, "与户主关系" {
    Head => "户主", Spouse => "配偶", Son => "之子", Daughter => "之女", DaughterInLaw => "之儿媳",
    SonInLaw => "之女婿", Grandson => "之孙子", Granddaughter => "之孙女", Father => "之父", Mother => "之母",
    Sibling => "之兄弟姐妹", Other => "其他",
});

label_enum!(Education, "文化程度" {
    Illiterate => "文盲或半文盲", Primary => "小学", Junior => "初中", Senior => "高中",
    College => "大专及以上", Preschool => "学龄前儿童",
});

label_enum!(Schooling, "在校生状况" {
    Preschool => "学前教育", Primary => "小学", Junior => "初中", Senior => "高中", Vocational => "中职",
    HigherVocational => "高职", College => "大专", Bachelor => "本科及以上",
});

label_enum!(Health, "健康状况" { Healthy => "健康", Chronic => "长期慢性病", Serious => "患有大病", Disabled => "残疾" });

label_enum!(Labour, "劳动能力" {
    Ordinary => "普通劳动力", Skilled => "技能劳动力", Lost => "丧失劳动力", None => "无劳动力",
});

label_enum!(MigrantWork, "务工状况" {
    InTownship => "乡镇内务工", InCounty => "乡镇外县内务工", InProvince => "县外省内务工", OutOfProvince => "省外务工",
});

label_enum!(Attribute, "贫困户属性" {
    General => "一般贫困户", LowIncomeSupport => "低保贫困户", FiveGuarantees => "五保贫困户",
    LowIncomeSupportOnly => "低保户", FiveGuaranteesOnly => "五保户",
});

label_enum!(Standard, "识别标准" { National => "国家标准", Provincial => "省定标准", Municipal => "市定标准" });

label_enum!(Cause, "致贫原因" {
    Illness => "因病", Disability => "因残", Schooling => "因学", Disaster => "因灾", Marriage => "因婚",
    LackLand => "缺土地", LackWater => "缺水", LackSkills => "缺技术", LackLabour => "缺劳力", LackFunds => "缺资金",
    PoorTransport => "交通条件落后", LackDrive => "自身发展动力不足", Other => "其他",
});

/// 是/否 fields. Parsing accepts the form's 是/否 only.
pub fn parse_yes_no(field: &'static str, s: &str) -> Result<bool, LabelError> {
    match s.trim() {
        "是" => Ok(true),
        "否" => Ok(false),
        other => Err(LabelError { field, value: other.to_string(), allowed: "是, 否".into() }),
    }
}

pub fn yes_no(b: bool) -> &'static str {
    if b { "是" } else { "否" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_unknown_lists_allowed() {
        for c in Cause::ALL {
            assert_eq!(Cause::parse(c.label()).unwrap(), *c);
        }
        let e = Relation::parse("儿子").unwrap_err();
        assert_eq!(e.field, "与户主关系");
        assert!(e.to_string().contains("之子"));
        assert!(parse_yes_no("新农合", "有").is_err());
    }
}
