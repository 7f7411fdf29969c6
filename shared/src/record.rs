//! The generic record that travels in change sets and is merged field by field.
//!
//! Typed forms (`domain::Household`, `domain::Member`, `domain::Village`) convert to and from this
//! shape; sync, merge, digests and conflicts work on it without knowing the forms.

use crate::{Year, region::Tier};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RecordKind {
    /// 贫困户: key is `<village code>-<household number>`.
    Household,
    /// A member of a household: key is the 18-digit ID number.
    Member,
    /// 贫困村: key is the 12-digit village code.
    Village,
    /// A household's 帮扶计划 / 帮扶措施 / 帮扶成效 entry (扶贫手册 parts 4–6): key is
    /// `<household id>/<P|M|R><n>` (`crate::assistance`).
    Assistance,
}

impl RecordKind {
    pub const ALL: [RecordKind; 4] =
        [RecordKind::Household, RecordKind::Member, RecordKind::Village, RecordKind::Assistance];

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Household => "household",
            RecordKind::Member => "member",
            RecordKind::Village => "village",
            RecordKind::Assistance => "assistance",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        RecordKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn to_u8(self) -> u8 {
        self as u8
    }

    pub fn from_u8(b: u8) -> Option<Self> {
        RecordKind::ALL.get(b as usize).copied()
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one record of one year.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordKey {
    pub kind: RecordKind,
    pub year: Year,
    pub id: String,
}

impl RecordKey {
    pub fn new(kind: RecordKind, year: Year, id: impl Into<String>) -> Self {
        RecordKey { kind, year, id: id.into() }
    }

    /// The 12-digit village code a record belongs to, from its key (members carry it as a field).
    pub fn village_prefix(&self) -> Option<&str> {
        match self.kind {
            RecordKind::Household | RecordKind::Village | RecordKind::Assistance => self.id.get(..12),
            RecordKind::Member => None,
        }
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == RecordKind::Member {
            // Never print a full ID number into messages or logs.
            write!(f, "{}/{}/{}", self.year, self.kind, crate::id_number::mask(&self.id))
        } else {
            write!(f, "{}/{}/{}", self.year, self.kind, self.id)
        }
    }
}

/// A record as a map of field name → canonical string value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub key: RecordKey,
    pub fields: BTreeMap<String, String>,
}

/// Which tier owns a field: its writes win over a lower tier's stale edits (ARCHITECTURE.md, "merge").
/// County decisions are the fields named `county.*`, provincial filing `province.*`; the township
/// owns every household and village fact.
/// A decision's words, as the deciding tier records them.
pub const DECISION_ADMIT: &str = "认定";
pub const DECISION_REFUSE: &str = "不予认定";

/// The township's own decision (认定 / 不予认定) and its reason, where the profile's flow lets the
/// township decide (seed 003's 镇级审定); the county holds an admission to the profile's rules.
pub const TOWNSHIP_DECISION: &str = "township.decision";
pub const TOWNSHIP_REASON: &str = "township.reason";

/// The deciding tier's decision (认定 / 不予认定) on a record and the reason of a refusal.
pub const COUNTY_DECISION: &str = "county.decision";
pub const COUNTY_REASON: &str = "county.reason";

pub fn field_owner(field: &str) -> Tier {
    if field.starts_with("province.") {
        Tier::Province
    } else if field.starts_with("county.") {
        Tier::County
    } else {
        Tier::Township
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_by_prefix() {
        assert_eq!(field_owner("income"), Tier::Township);
        assert_eq!(field_owner("county.decision"), Tier::County);
        assert_eq!(field_owner("province.filed"), Tier::Province);
    }

    #[test]
    fn member_keys_print_masked() {
        let k = RecordKey::new(RecordKind::Member, 2014, "11010519491231002X");
        assert_eq!(k.to_string(), "2014/member/11**************2X");
    }
}
