//! 规模分解: splitting a number (people, poor villages) over the regions below, in proportion to
//! weights, by the largest-remainder method — every split adds up exactly to the number split,
//! and each region's number is within one of its exact proportional share. Deterministic: ties
//! in the remainders go to the lower region code. Weights are decimals with up to six places
//! (e.g. rural population × an incidence rate), computed on exactly in integers.

use crate::region::RegionCode;
use std::collections::BTreeMap;

/// Six decimal places: weights are held as integer millionths.
const SCALE: u128 = 1_000_000;

/// Why a split could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScaleError {
    #[error("weight {0:?} is not a number of at most six decimal places that is zero or more")]
    BadWeight(String),
    #[error("region {0} is listed twice")]
    Duplicate(RegionCode),
    #[error("the weights add up to zero: nothing to split {0} by")]
    NoWeight(u64),
    #[error("nothing to split by: no regions")]
    Empty,
}

/// A weight as integer millionths: `"1234"`, `"0.25"`, `"12.000001"`; not negative, not
/// exponents, not more than six places.
pub fn parse_weight(s: &str) -> Result<u64, ScaleError> {
    let bad = || ScaleError::BadWeight(s.chars().take(40).collect());
    let t = s.trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && frac.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 6 || whole.len() > 12 {
        return Err(bad());
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
    let frac: u64 = if frac.is_empty() { 0 } else { format!("{frac:0<6}").parse().map_err(|_| bad())? };
    Ok(whole * SCALE as u64 + frac)
}

/// Splits `total` over `weights` (integer millionths, see [`parse_weight`]) by the largest
/// remainder: each region first gets the whole part of its exact share `total × w / Σw`, then the
/// units left over go one each to the largest fractional parts (ties: lower region code first).
pub fn apportion(total: u64, weights: &[(RegionCode, u64)]) -> Result<BTreeMap<RegionCode, u64>, ScaleError> {
    if weights.is_empty() {
        return Err(ScaleError::Empty);
    }
    let mut seen = std::collections::BTreeSet::new();
    for (r, _) in weights {
        if !seen.insert(r) {
            return Err(ScaleError::Duplicate(r.clone()));
        }
    }
    let sum: u128 = weights.iter().map(|(_, w)| u128::from(*w)).sum();
    if sum == 0 {
        return Err(ScaleError::NoWeight(total));
    }
    // total × w < 2^64 × 2^64: exact in u128.
    let mut shares: Vec<(RegionCode, u64, u128)> = weights
        .iter()
        .map(|(r, w)| {
            let exact = u128::from(total) * u128::from(*w);
            (r.clone(), (exact / sum) as u64, exact % sum)
        })
        .collect();
    let given: u64 = shares.iter().map(|(_, n, _)| n).sum();
    let mut left = total - given;
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| shares[b].2.cmp(&shares[a].2).then_with(|| shares[a].0.cmp(&shares[b].0)));
    for i in order {
        if left == 0 {
            break;
        }
        if shares[i].2 > 0 {
            shares[i].1 += 1;
            left -= 1;
        }
    }
    debug_assert_eq!(left, 0, "fewer than n remainders are non-zero when n units are left");
    Ok(shares.into_iter().map(|(r, n, _)| (r, n)).collect())
}

/// How many poor villages a class of counties gets: a share of its administrative villages
/// (percent, up to six decimal places, as millionths) or a number set outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassShare {
    PercentMillionths(u64),
    Total(u64),
}

/// The poor-village numbers of counties by class (seed 000: 片区县 25 %, others 15 %): each class's
/// number (its share of the class's villages, rounded half up, or the total given) is split over
/// its counties in proportion to their administrative villages. `rows` are (county, villages,
/// class); a class without a share is an error naming it.
pub fn villages_by_class(
    rows: &[(RegionCode, u64, String)],
    shares: &BTreeMap<String, ClassShare>,
) -> Result<BTreeMap<RegionCode, u64>, VillageSplitError> {
    let mut by_class: BTreeMap<&str, Vec<(RegionCode, u64)>> = BTreeMap::new();
    for (region, villages, class) in rows {
        by_class.entry(class.as_str()).or_default().push((region.clone(), *villages));
    }
    let mut out = BTreeMap::new();
    for (class, counties) in by_class {
        let Some(share) = shares.get(class) else { return Err(VillageSplitError::NoShare(class.to_string())) };
        let villages: u128 = counties.iter().map(|(_, v)| u128::from(*v)).sum();
        let number = match *share {
            // villages × pct / 100, pct in millionths: half up.
            ClassShare::PercentMillionths(p) => {
                let scaled = villages * u128::from(p);
                let denom = 100 * SCALE;
                ((scaled + denom / 2) / denom) as u64
            }
            ClassShare::Total(n) => n,
        };
        if u128::from(number) > villages {
            return Err(VillageSplitError::OverVillages {
                class: class.to_string(),
                number,
                villages: villages as u64,
            });
        }
        let weights: Vec<(RegionCode, u64)> = counties.iter().map(|(r, v)| (r.clone(), *v * SCALE as u64)).collect();
        for (region, n) in apportion(number, &weights).map_err(VillageSplitError::Scale)? {
            if out.insert(region.clone(), n).is_some() {
                return Err(VillageSplitError::Scale(ScaleError::Duplicate(region)));
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VillageSplitError {
    #[error("no share given for class {0:?} (--share {0}=PERCENT or --class-total {0}=N)")]
    NoShare(String),
    #[error("class {class:?} would get {number} poor villages but has only {villages} villages")]
    OverVillages { class: String, number: u64, villages: u64 },
    #[error(transparent)]
    Scale(ScaleError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap()
    }

    #[test]
    fn weights_parse_as_exact_millionths() {
        assert_eq!(parse_weight("1234").unwrap(), 1_234_000_000);
        assert_eq!(parse_weight("0.25").unwrap(), 250_000);
        assert_eq!(parse_weight(".5").unwrap(), 500_000);
        assert_eq!(parse_weight("12.000001").unwrap(), 12_000_001);
        for bad in ["", ".", "-1", "1e3", "0.1234567", "abc", "1.2.3", "+1", "1 2"] {
            assert!(parse_weight(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_provinces_total_splits_exactly_and_ties_go_to_the_lower_code() {
        let w = [(r("420322"), 1), (r("420323"), 1), (r("420324"), 1)];
        let split = apportion(10, &w).unwrap();
        assert_eq!(split.values().sum::<u64>(), 10);
        assert_eq!(split[&r("420322")], 4, "the one unit left goes to the lowest code");
        assert_eq!((split[&r("420323")], split[&r("420324")]), (3, 3));
        assert_eq!(apportion(5, &[(r("420322"), 1), (r("420322"), 2)]), Err(ScaleError::Duplicate(r("420322"))));
        assert_eq!(apportion(5, &[(r("420322"), 0)]), Err(ScaleError::NoWeight(5)));
    }

    #[test]
    fn poor_villages_by_class_follow_seed_000() {
        // 片区县 25 %, the others 15 %, each split by the counties' villages.
        let rows = vec![
            (r("420322"), 300, "片区县".to_string()),
            (r("420323"), 301, "片区县".to_string()),
            (r("420324"), 200, "其他".to_string()),
            (r("420325"), 100, "其他".to_string()),
        ];
        let shares = BTreeMap::from([
            ("片区县".to_string(), ClassShare::PercentMillionths(25_000_000)),
            ("其他".to_string(), ClassShare::PercentMillionths(15_000_000)),
        ]);
        let split = villages_by_class(&rows, &shares).unwrap();
        // 601 × 25 % = 150.25 → 150; 300 × 15 % = 45.
        assert_eq!(split[&r("420322")] + split[&r("420323")], 150);
        assert_eq!((split[&r("420324")], split[&r("420325")]), (30, 15));
        let total = BTreeMap::from([("片区县".to_string(), ClassShare::Total(2_470))]);
        let over = villages_by_class(&rows[..1], &total).unwrap_err().to_string();
        assert!(over.contains("only 300"), "{over}");
        assert_eq!(villages_by_class(&rows, &total), Err(VillageSplitError::NoShare("其他".into())));
    }

    proptest! {
        /// Every split adds up to the number split, each share is within one of its exact
        /// proportional share, and the same input gives the same split in any order.
        #[test]
        fn splits_add_up_and_stay_within_one_of_the_exact_share(
            total in 0u64..10_000_000_000,
            ws in proptest::collection::vec(0u64..5_000_000_000_000, 1..60),
        ) {
            prop_assume!(ws.iter().any(|w| *w > 0));
            let weights: Vec<(RegionCode, u64)> =
                ws.iter().enumerate().map(|(i, w)| (r(&format!("42{:04}", 100 + i)), *w)).collect();
            let split = apportion(total, &weights).unwrap();
            prop_assert_eq!(split.values().sum::<u64>(), total);
            let sum: u128 = ws.iter().map(|w| u128::from(*w)).sum();
            for (region, w) in &weights {
                let exact = u128::from(total) * u128::from(*w);
                let floor = (exact / sum) as u64;
                let n = split[region];
                prop_assert!(n == floor || (n == floor + 1 && exact % sum != 0), "{} got {} of exact {}/{}", region, n, exact, sum);
            }
            let mut reversed = weights.clone();
            reversed.reverse();
            prop_assert_eq!(apportion(total, &reversed).unwrap(), split);
        }

        /// Monotone: a region with a larger weight never gets less than one with a smaller.
        #[test]
        fn a_larger_weight_never_gets_less(
            total in 0u64..10_000_000,
            ws in proptest::collection::vec(0u64..1_000_000_000, 2..40),
        ) {
            prop_assume!(ws.iter().any(|w| *w > 0));
            let weights: Vec<(RegionCode, u64)> =
                ws.iter().enumerate().map(|(i, w)| (r(&format!("42{:04}", 100 + i)), *w)).collect();
            let split = apportion(total, &weights).unwrap();
            for (a, wa) in &weights {
                for (b, wb) in &weights {
                    if wa > wb {
                        prop_assert!(split[a] >= split[b], "{} (weight {}) got {} < {} (weight {}) got {}", a, wa, split[a], b, wb, split[b]);
                    }
                }
            }
        }
    }
}
