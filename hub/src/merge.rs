//! Field-level reconciliation (pure; no I/O): decides, for each incoming field write, whether it
//! applies, is stale, conflicts, or is not the writer's to make. Authority comes from tiers
//! (`record::field_owner` and the writer's region), not from clocks alone.

use jianka_shared::{Hlc, RegionCode, Tier, changeset::FieldWrite, record::field_owner};
use serde::{Deserialize, Serialize};

/// Field names, values and writer codes (the change set's own text type): almost all fit in 24
/// bytes, which a `CompactString` keeps inline, so building, copying and dropping a record's
/// fields allocates next to nothing (the merge handles hundreds of thousands of fields per
/// change set).
pub use jianka_shared::changeset::Text;

/// A stored field: value, the version (HLC) that wrote it and the region whose key wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldState(pub Text, pub u64, pub Text);

impl FieldState {
    pub fn value(&self) -> &str {
        &self.0
    }
    pub fn version(&self) -> Hlc {
        Hlc(self.1)
    }
    pub fn writer(&self) -> &str {
        &self.2
    }
    /// The writer's tier, from the length of its region code.
    pub fn writer_tier(&self) -> Tier {
        Tier::from_code_len(self.2.len()).unwrap_or(Tier::Township)
    }
}

/// A record's fields by name: a sorted vector (binary search over the ~20 fields of a form), which
/// is built by appending when fields arrive in name order, and freed in one piece.
pub type Fields = litemap::LiteMap<Text, FieldState>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldOutcome {
    /// Write it (the previous state, if any, is audited).
    Apply,
    /// Same value already stored: nothing to do, no conflict.
    Same,
    /// An older edit from the same writer arriving after a newer one: ignored.
    Superseded,
    /// Edited from an old version while a higher tier changed the field: refused and reported.
    Stale { by: String },
    /// Two writers of the same tier edited the same field: held for the tier above.
    Conflict { current: FieldState },
    /// The writer's tier may not write this field.
    NotAuthorised { owner: Tier },
}

/// Decides one field write by `writer` against the stored state `current`.
pub fn merge_field(current: Option<&FieldState>, w: &FieldWrite, writer: &RegionCode) -> FieldOutcome {
    let tier = writer.tier();
    let owner = field_owner(&w.name);
    if tier < owner {
        return FieldOutcome::NotAuthorised { owner };
    }
    let Some(cur) = current else { return FieldOutcome::Apply };
    if cur.value() == w.value {
        return FieldOutcome::Same;
    }
    if w.base == cur.version() {
        return FieldOutcome::Apply;
    }
    if cur.writer() == writer.as_str() {
        return if w.version > cur.version() { FieldOutcome::Apply } else { FieldOutcome::Superseded };
    }
    let cur_tier = cur.writer_tier();
    if cur_tier > tier {
        FieldOutcome::Stale { by: cur.writer().to_string() }
    } else if tier > cur_tier {
        FieldOutcome::Apply
    } else {
        FieldOutcome::Conflict { current: cur.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap()
    }

    fn w(name: &str, value: &str, version: u64, base: u64) -> FieldWrite {
        FieldWrite { name: name.into(), value: value.into(), version: Hlc(version), base: Hlc(base) }
    }

    #[test]
    fn rules_by_case() {
        let t1 = r("420322105");
        let t2 = r("420322106");
        let county = r("420322");
        let cur = FieldState("a".into(), 10, t1.as_str().into());
        assert_eq!(merge_field(None, &w("income", "x", 1, 0), &t1), FieldOutcome::Apply);
        assert_eq!(merge_field(Some(&cur), &w("income", "a", 5, 0), &t2), FieldOutcome::Same);
        assert_eq!(merge_field(Some(&cur), &w("income", "b", 11, 10), &t2), FieldOutcome::Apply);
        assert_eq!(merge_field(Some(&cur), &w("income", "b", 11, 3), &t1), FieldOutcome::Apply);
        assert_eq!(merge_field(Some(&cur), &w("income", "b", 9, 3), &t1), FieldOutcome::Superseded);
        assert!(matches!(merge_field(Some(&cur), &w("income", "b", 11, 3), &t2), FieldOutcome::Conflict { .. }));
        // The county corrected it; the township's edit from the old version is stale.
        let by_county = FieldState("c".into(), 20, county.as_str().into());
        assert_eq!(
            merge_field(Some(&by_county), &w("income", "b", 21, 10), &t1),
            FieldOutcome::Stale { by: "420322".into() }
        );
        assert_eq!(merge_field(Some(&cur), &w("income", "z", 30, 3), &county), FieldOutcome::Apply);
        assert_eq!(
            merge_field(None, &w("county.decision", "认定", 1, 0), &t1),
            FieldOutcome::NotAuthorised { owner: Tier::County }
        );
    }

    proptest! {
        /// A lower tier never overwrites a higher tier's value from an old base, and no
        /// different value is ever applied silently against a same-tier peer's newer value.
        #[test]
        fn lower_tier_never_silently_overwrites(cur_v in 1u64..1000, base in 0u64..1000, ver in 0u64..2000,
                                                 val in "[ab]", writer_is_county in any::<bool>()) {
            let township = r("420322105");
            let county = r("420322");
            let (cur_writer, writer) = if writer_is_county { (township.clone(), county.clone()) } else { (county.clone(), township.clone()) };
            let cur = FieldState("a".into(), cur_v, cur_writer.as_str().into());
            let out = merge_field(Some(&cur), &w("income", &val, ver, base), &writer);
            if val == "a" {
                prop_assert_eq!(out, FieldOutcome::Same);
            } else if base == cur_v || writer_is_county {
                prop_assert_eq!(out, FieldOutcome::Apply);
            } else {
                prop_assert_eq!(out, FieldOutcome::Stale { by: county.to_string() });
            }
        }

        #[test]
        fn same_tier_peers_conflict_unless_based_on_current(base in 0u64..50, cur_v in 1u64..50) {
            let cur = FieldState("a".into(), cur_v, "420322105".into());
            let out = merge_field(Some(&cur), &w("income", "b", 99, base), &r("420322106"));
            if base == cur_v { prop_assert_eq!(out, FieldOutcome::Apply); }
            else { prop_assert!(matches!(out, FieldOutcome::Conflict { .. }), "{:?}", out); }
        }
    }
}
