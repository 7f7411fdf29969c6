//! Statistical division codes (统计用区划代码) and the tiers they name.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The administrative level a code names, by its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tier {
    Village,
    Township,
    County,
    Prefecture,
    Province,
}

impl Tier {
    pub fn code_len(self) -> usize {
        match self {
            Tier::Province => 2,
            Tier::Prefecture => 4,
            Tier::County => 6,
            Tier::Township => 9,
            Tier::Village => 12,
        }
    }

    pub fn from_code_len(len: usize) -> Option<Tier> {
        Some(match len {
            2 => Tier::Province,
            4 => Tier::Prefecture,
            6 => Tier::County,
            9 => Tier::Township,
            12 => Tier::Village,
            _ => return None,
        })
    }

    /// The Chinese name users see in messages.
    pub fn label(self) -> &'static str {
        match self {
            Tier::Village => "村",
            Tier::Township => "乡镇",
            Tier::County => "县",
            Tier::Prefecture => "市州",
            Tier::Province => "省",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let en = match self {
            Tier::Village => "village",
            Tier::Township => "township",
            Tier::County => "county",
            Tier::Prefecture => "prefecture",
            Tier::Province => "province",
        };
        // One vocabulary for people: the Chinese name first, the English after.
        write!(f, "{} ({en})", self.label())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    #[error("region code {0:?} must be digits only")]
    NotDigits(String),
    #[error("region code {0:?} has {1} digits; expected 2 (province), 4, 6 (county), 9 (township) or 12 (village)")]
    BadLength(String, usize),
}

/// A validated region code. Its prefixes are its ancestors: 420322105200 → 420322105 → 420322 → 4203 → 42.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegionCode(String);

impl RegionCode {
    pub fn parse(s: &str) -> Result<Self, RegionError> {
        let s = s.trim();
        if !s.bytes().all(|b| b.is_ascii_digit()) || s.is_empty() {
            return Err(RegionError::NotDigits(s.to_string()));
        }
        if Tier::from_code_len(s.len()).is_none() {
            return Err(RegionError::BadLength(s.to_string(), s.len()));
        }
        Ok(RegionCode(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn tier(&self) -> Tier {
        Tier::from_code_len(self.0.len()).expect("validated at parse")
    }

    /// The code of the given higher tier containing this one, if that tier is above this one.
    pub fn ancestor(&self, tier: Tier) -> Option<RegionCode> {
        (tier >= self.tier()).then(|| RegionCode(self.0[..tier.code_len()].to_string()))
    }

    pub fn parent(&self) -> Option<RegionCode> {
        let up = match self.tier() {
            Tier::Village => Tier::Township,
            Tier::Township => Tier::County,
            Tier::County => Tier::Prefecture,
            Tier::Prefecture => Tier::Province,
            Tier::Province => return None,
        };
        self.ancestor(up)
    }

    /// True when `other` is this region or lies inside it.
    pub fn contains(&self, other: &RegionCode) -> bool {
        other.0.starts_with(&self.0)
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RegionCode {
    type Error = RegionError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RegionCode::parse(&s)
    }
}

impl From<RegionCode> for String {
    fn from(c: RegionCode) -> String {
        c.0
    }
}

impl std::str::FromStr for RegionCode {
    type Err = RegionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RegionCode::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_ancestors() {
        let v = RegionCode::parse("420322105200").unwrap();
        assert_eq!(v.tier(), Tier::Village);
        assert_eq!(v.parent().unwrap().as_str(), "420322105");
        assert_eq!(v.ancestor(Tier::County).unwrap().as_str(), "420322");
        assert_eq!(v.ancestor(Tier::Province).unwrap().as_str(), "42");
        assert!(RegionCode::parse("420322").unwrap().contains(&v));
        assert!(!RegionCode::parse("420323").unwrap().contains(&v));
        assert!(RegionCode::parse("42").unwrap().parent().is_none());
    }

    #[test]
    fn bad_codes_are_refused_with_reason() {
        assert_eq!(RegionCode::parse("4203221"), Err(RegionError::BadLength("4203221".into(), 7)));
        assert!(matches!(RegionCode::parse("42a3"), Err(RegionError::NotDigits(_))));
        assert!(matches!(RegionCode::parse(""), Err(RegionError::NotDigits(_))));
    }
}
