//! Resident identity numbers (公民身份号码, GB 11643-1999), domain.md §3 rule 1.

use crate::labels::Sex;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::fmt;

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: [u8; 11] = *b"10X98765432";

/// What is wrong with an ID number. The messages show the number masked and never its birth
/// date (with the kept ends the date would be most of the number): a mistyped number is still a
/// real person's, and these messages reach rejections, logs and the clerk's screen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdNumberError {
    #[error("ID number is empty")]
    Empty,
    #[error("ID number {} is an old 15-digit number; enter the 18-digit number from the current ID card", mask(.0))]
    Old15Digit(String),
    #[error("ID number {} has {len} characters; an ID number has 18", mask(.number))]
    BadLength { number: String, len: usize },
    #[error(
        "ID number {} has {found:?} at position {position}; only digits are allowed there (and X as the last character)",
        mask(.number)
    )]
    BadCharacter { number: String, position: usize, found: char },
    #[error("ID number {} has a birth date (characters 7–14) that is not a real date", mask(.number))]
    ImpossibleDate { number: String, date: String },
    #[error("ID number {} has a birth date (characters 7–14) in the future", mask(.number))]
    FutureDate { number: String, date: String },
    #[error(
        "ID number {} has check digit {found} but its first 17 digits give {expected}; a digit was probably mistyped",
        mask(.number)
    )]
    WrongCheckDigit { number: String, expected: char, found: char },
}

/// A validated 18-digit ID number. Construction is the only validation point.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdNumber(String);

/// `YYYYMMDD` (eight ASCII digits, checked by the caller) as a date, if it is one: what
/// `NaiveDate::parse_from_str(s, "%Y%m%d")` gives, without its format interpreter (it runs for
/// every member a county re-examines).
fn date_of(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 8 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    NaiveDate::from_ymd_opt(i32::try_from(n(0..4)).ok()?, n(4..6), n(6..8))
}

impl IdNumber {
    /// Parses and checks length, characters, birth date (real, not after `today`) and check digit.
    pub fn parse(raw: &str, today: NaiveDate) -> Result<Self, IdNumberError> {
        let s = raw.trim();
        // Copied only for an error: a valid number is parsed once per person of every change set.
        let number = || s.to_string();
        match s.chars().count() {
            0 => return Err(IdNumberError::Empty),
            15 if s.bytes().all(|b| b.is_ascii_digit()) => return Err(IdNumberError::Old15Digit(number())),
            18 => {}
            len => return Err(IdNumberError::BadLength { number: number(), len }),
        }
        for (i, c) in s.chars().enumerate() {
            let ok = c.is_ascii_digit() || (i == 17 && (c == 'X' || c == 'x'));
            if !ok {
                return Err(IdNumberError::BadCharacter { number: number(), position: i + 1, found: c });
            }
        }
        let upper = s.to_ascii_uppercase();
        let date_str = &upper[6..14];
        let date = date_of(date_str)
            .ok_or_else(|| IdNumberError::ImpossibleDate { number: number(), date: date_str.to_string() })?;
        if date > today {
            return Err(IdNumberError::FutureDate { number: number(), date: date_str.to_string() });
        }
        let expected = check_digit(&upper.as_bytes()[..17]);
        let found = upper.as_bytes()[17] as char;
        if expected != found {
            return Err(IdNumberError::WrongCheckDigit { number: number(), expected, found });
        }
        Ok(IdNumber(upper))
    }

    /// Parses a number that was validated before (e.g. read back from our own database).
    /// Only the shape is checked, not the date against a clock.
    pub fn parse_stored(raw: &str) -> Result<Self, IdNumberError> {
        IdNumber::parse(raw, NaiveDate::MAX)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn birth_date(&self) -> NaiveDate {
        date_of(&self.0[6..14]).expect("validated at parse")
    }

    /// Sex encoded by the parity of the 17th digit: odd = male.
    pub fn sex(&self) -> Sex {
        let d = self.0.as_bytes()[16] - b'0';
        if d % 2 == 1 { Sex::Male } else { Sex::Female }
    }

    /// The form used in every public list and export: first two and last two characters kept.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }

    /// Builds a valid number from its parts; used by data generators and tests.
    pub fn compose(area: &str, birth: NaiveDate, sequence: u16) -> Option<IdNumber> {
        if area.len() != 6 || !area.bytes().all(|b| b.is_ascii_digit()) || sequence > 999 {
            return None;
        }
        let body = format!("{area}{}{sequence:03}", birth.format("%Y%m%d"));
        let check = check_digit(body.as_bytes());
        Some(IdNumber(format!("{body}{check}")))
    }
}

/// GB 11643 check character for the first 17 digits.
pub fn check_digit(first17: &[u8]) -> char {
    let sum: u32 = first17.iter().zip(WEIGHTS).map(|(&b, w)| (b - b'0') as u32 * w).sum();
    CHECK[(sum % 11) as usize] as char
}

/// Masks a sensitive string keeping the first two and the last two characters (domain.md §7).
pub fn mask(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 4 {
        return "*".repeat(chars.len());
    }
    let n = chars.len();
    chars.iter().enumerate().map(|(i, &c)| if i < 2 || i >= n - 2 { c } else { '*' }).collect()
}

impl fmt::Debug for IdNumber {
    // Personal data stays out of logs: Debug shows the masked form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdNumber({})", self.masked())
    }
}

impl fmt::Display for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for IdNumber {
    type Error = IdNumberError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        IdNumber::parse_stored(&s)
    }
}

impl From<IdNumber> for String {
    fn from(n: IdNumber) -> String {
        n.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
    }

    #[test]
    fn known_good_numbers_pass() {
        let id = IdNumber::parse("11010519491231002X", today()).unwrap();
        assert_eq!(id.sex(), Sex::Female);
        assert_eq!(id.birth_date(), NaiveDate::from_ymd_opt(1949, 12, 31).unwrap());
        assert_eq!(id.masked(), "11**************2X");
        // Lower-case x is accepted and normalised.
        assert_eq!(IdNumber::parse("11010519491231002x", today()).unwrap().as_str(), "11010519491231002X");
        let male = IdNumber::parse("440524188001010014", today()).unwrap();
        assert_eq!(male.sex(), Sex::Male);
    }

    #[test]
    fn every_wrong_check_digit_is_rejected() {
        let good = "11010519491231002X";
        for c in "0123456789".chars() {
            let bad = format!("{}{c}", &good[..17]);
            match IdNumber::parse(&bad, today()) {
                Err(IdNumberError::WrongCheckDigit { expected: 'X', found, .. }) => assert_eq!(found, c),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn each_defect_has_its_own_message() {
        let t = today();
        assert!(matches!(IdNumber::parse("110105491231002", t), Err(IdNumberError::Old15Digit(_))));
        assert!(matches!(IdNumber::parse("1101051949123100", t), Err(IdNumberError::BadLength { len: 16, .. })));
        assert!(matches!(IdNumber::parse("", t), Err(IdNumberError::Empty)));
        assert!(matches!(
            IdNumber::parse("1101051949A231002X", t),
            Err(IdNumberError::BadCharacter { position: 11, found: 'A', .. })
        ));
        assert!(matches!(
            IdNumber::parse("X10105194912310029", t),
            Err(IdNumberError::BadCharacter { position: 1, .. })
        ));
        // 1949-02-30 and 2023-02-29 do not exist; month 13 neither.
        for date in ["19490230", "20230229", "19491301", "19490000"] {
            let body = format!("110105{date}002");
            let n = format!("{body}{}", check_digit(body.as_bytes()));
            assert!(matches!(IdNumber::parse(&n, t), Err(IdNumberError::ImpossibleDate { .. })), "{n}");
        }
        let body = "110105203001010021";
        let n = format!("{}{}", &body[..17], check_digit(&body.as_bytes()[..17]));
        assert!(matches!(IdNumber::parse(&n, t), Err(IdNumberError::FutureDate { .. })));
        let messages: std::collections::HashSet<String> = [
            IdNumber::parse("110105491231002", t).unwrap_err().to_string(),
            IdNumber::parse("1101051949123100", t).unwrap_err().to_string(),
            IdNumber::parse("110105194912310020", t).unwrap_err().to_string(),
        ]
        .into();
        assert_eq!(messages.len(), 3);
    }

    proptest! {
        /// The birth date is read as chrono's `%Y%m%d` reads it, for any eight digits (real
        /// dates, 30 February, month 13, day 00, year 0000).
        #[test]
        fn birth_dates_read_as_chrono_reads_them(y in 0u32..10_000, m in 0u32..14, d in 0u32..33) {
            let s = format!("{y:04}{m:02}{d:02}");
            prop_assert_eq!(date_of(&s), NaiveDate::parse_from_str(&s, "%Y%m%d").ok(), "{}", s);
        }

        #[test]
        fn composed_numbers_round_trip(days in 0i64..40_000, seq in 0u16..1000) {
            let birth = NaiveDate::from_ymd_opt(1920, 1, 1).unwrap() + chrono::Duration::days(days);
            prop_assume!(birth <= today());
            let id = IdNumber::compose("420322", birth, seq).unwrap();
            let parsed = IdNumber::parse(id.as_str(), today()).unwrap();
            prop_assert_eq!(parsed.birth_date(), birth);
            prop_assert_eq!(parsed.sex() == Sex::Male, seq % 2 == 1);
        }

        #[test]
        fn any_single_digit_change_is_caught(days in 0i64..30_000, seq in 0u16..1000, pos in 0usize..17, delta in 1u8..10) {
            let birth = NaiveDate::from_ymd_opt(1930, 1, 1).unwrap() + chrono::Duration::days(days);
            let id = IdNumber::compose("420322", birth, seq).unwrap();
            let mut bytes = id.as_str().as_bytes().to_vec();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
            let s = String::from_utf8(bytes).unwrap();
            prop_assert!(IdNumber::parse(&s, today()).is_err());
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,30}") {
            let _ = IdNumber::parse(&s, today());
        }
    }
}
