//! The stored record (one row of `records`) and its storage key `kind/year/id`, the stored text
//! of its fields, and the field names the hub itself gives meaning to.

use crate::merge::Fields;
use jianka_shared::domain::{Member, Status};
use jianka_shared::{Record, RecordKey, RecordKind, RegionCode, Year};

// Keyed by storage keys, tens of thousands per change set: foldhash is several times faster than
// SipHash on such short strings and still seeded per map.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

pub use jianka_shared::record::{DECISION_ADMIT, DECISION_REFUSE};

/// The storage key of a record: `kind/year/id`.
pub fn storage_key(k: &RecordKey) -> String {
    key_of(k.kind, k.year, &k.id)
}

/// [`storage_key`] from its parts (built by hand: it runs for every op of a change set).
pub(crate) fn key_of(kind: RecordKind, year: Year, id: &str) -> String {
    let mut s = String::with_capacity(id.len() + 10);
    push_uint(&mut s, kind.to_u8().into());
    s.push('/');
    push_uint(&mut s, year.into());
    s.push('/');
    s.push_str(id);
    s
}

pub(crate) fn push_uint(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| d as char));
}

/// The stored text of a record's fields ([`crate::stored_fields`] has the form).
pub use crate::stored_fields::to_json as fields_json;

pub fn parse_storage_key(s: &str) -> Option<RecordKey> {
    let mut it = s.splitn(3, '/');
    let kind = RecordKind::from_u8(it.next()?.parse().ok()?)?;
    let year = it.next()?.parse().ok()?;
    Some(RecordKey { kind, year, id: it.next()?.to_string() })
}

/// Rows as [`crate::store::WriteTx::write_records`] takes them (shared, so an ingest hands a row
/// to the store without copying it).
pub fn shared(rows: Vec<StoredRecord>) -> Vec<std::sync::Arc<StoredRecord>> {
    rows.into_iter().map(std::sync::Arc::new).collect()
}

/// A record row as the hub holds it.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub key: RecordKey,
    pub region: String,
    pub hh: String,
    pub fields: Fields,
    pub deleted: bool,
}

impl StoredRecord {
    pub fn to_record(&self) -> Record {
        Record {
            key: self.key.clone(),
            fields: self.fields.iter().map(|(k, v)| (k.to_string(), v.0.to_string())).collect(),
        }
    }
    pub fn field(&self, name: &str) -> Option<&str> {
        // A scan comparing length and first byte before the bytes: over a form's ~20 fields it
        // takes under half the binary search's time, whose every step is a call into memcmp (it
        // runs for each field that validation and re-examination read, millions per county).
        let n = name.as_bytes();
        self.fields
            .iter()
            .find(|(k, _)| {
                let k = k.as_bytes();
                k.len() == n.len() && k.first() == n.first() && k == n
            })
            .map(|(_, f)| f.0.as_str())
    }
    /// A member row as a [`Member`], read in place.
    pub fn to_member(&self) -> Result<Member, String> {
        Member::from_fields(&self.key.id, |n| self.field(n))
    }
}

/// A household moved to another village of its township names the household it left
/// (`adjust move` on the node): it keeps that household's status, once.
pub const MOVED_FROM: &str = "moved_from";

/// Set by the county on the household a move left (a county field: no township writes it), so
/// its status is kept by one household only.
pub const STATUS_PASSED_TO: &str = "county.status_passed_to";

/// Audit subjects never carry a full ID number.
pub(crate) fn audit_subject(key: &RecordKey) -> String {
    key.to_string()
}

/// The township a household row belongs to (the first 9 digits of its village).
pub(crate) fn township_of(row: &StoredRecord) -> Option<RegionCode> {
    RegionCode::parse(&row.region[..9.min(row.region.len())]).ok()
}

/// A stored row as a record, or what is unreadable in it (the store reports it as corrupt).
pub fn row_from(k: &str, region: String, hh: String, fields: &str, deleted: bool) -> Result<StoredRecord, String> {
    let key = parse_storage_key(k).ok_or_else(|| format!("stored key {k:?} unreadable"))?;
    let fields = crate::stored_fields::parse(fields).map_err(|e| format!("stored fields of {key} unreadable: {e}"))?;
    Ok(StoredRecord { key, region, hh, fields, deleted })
}

/// `[lo, hi)` of region codes under `scope` (digits sort below ':').
pub fn range_of(scope: &RegionCode) -> (String, String) {
    (scope.to_string(), format!("{scope}:"))
}

/// A member field a departing township sets to the 6-digit county the person moves to (跨县迁出):
/// the province then completes the move when that county's arrival comes, keeping the person
/// where they are until it does.
pub const MOVE_OUT: &str = "move_out";

/// Recognised by the county (admitted at re-examination, announced or filed).
pub fn is_recognised(r: &StoredRecord) -> bool {
    matches!(
        r.fields.get("status").and_then(|s| Status::parse(&s.0)),
        Some(Status::CountyAnnounced | Status::ProvinceFiled)
    ) || r.fields.get("county.decision").is_some_and(|f| f.0 == DECISION_ADMIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn storage_keys_round_trip(kind in 0u8..3, year in any::<u16>(), id in "[0-9A-Za-z-]{0,24}") {
            let key = RecordKey::new(RecordKind::from_u8(kind).unwrap(), year, id);
            let k = storage_key(&key);
            prop_assert_eq!(&k, &format!("{}/{}/{}", kind, year, key.id));
            prop_assert_eq!(parse_storage_key(&k), Some(key));
        }
    }
}
