//! Money in yuan, kept as integer fen so sums are exact.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("{0:?} is not an amount in yuan (digits with at most two decimals, e.g. 2736 or 1234.50)")]
    NotANumber(String),
    #[error("{0:?} is negative; income figures must be zero or more")]
    Negative(String),
}

/// A non-negative amount of money, in fen (0.01 yuan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Yuan(pub i64);

impl Yuan {
    pub fn from_yuan(y: i64) -> Self {
        Yuan(y * 100)
    }

    pub fn fen(self) -> i64 {
        self.0
    }

    pub fn parse(s: &str) -> Result<Self, MoneyError> {
        // Thousands separators are dropped; most amounts have none, so no copy is made then.
        let t: std::borrow::Cow<str> = if s.contains(',') { s.trim().replace(',', "").into() } else { s.trim().into() };
        if t.starts_with('-') {
            return Err(MoneyError::Negative(s.trim().to_string()));
        }
        let bad = || MoneyError::NotANumber(s.trim().to_string());
        let (int, frac) = match t.split_once('.') {
            Some((i, f)) => (i, f),
            None => (&*t, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 2 {
            return Err(bad());
        }
        let int: i64 = if int.is_empty() { 0 } else { int.parse().map_err(|_| bad())? };
        let frac_fen: i64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().map_err(|_| bad())? * 10,
            _ => frac.parse().map_err(|_| bad())?,
        };
        int.checked_mul(100).and_then(|v| v.checked_add(frac_fen)).map(Yuan).ok_or_else(bad)
    }
}

impl fmt::Display for Yuan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 % 100 == 0 {
            write!(f, "{}", self.0 / 100)
        } else {
            write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_form_amounts() {
        assert_eq!(Yuan::parse("2736").unwrap(), Yuan(273_600));
        assert_eq!(Yuan::parse("1234.5").unwrap(), Yuan(123_450));
        assert_eq!(Yuan::parse(" 12,000.05 ").unwrap(), Yuan(1_200_005));
        assert!(matches!(Yuan::parse("-1"), Err(MoneyError::Negative(_))));
        for bad in ["", "abc", "1.234", "1e5", ".", "99999999999999999999"] {
            assert!(matches!(Yuan::parse(bad), Err(MoneyError::NotANumber(_))), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(fen in 0i64..1_000_000_000_000) {
            prop_assert_eq!(Yuan::parse(&Yuan(fen).to_string()).unwrap(), Yuan(fen));
        }
    }
}
