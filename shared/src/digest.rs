//! Digests that prove two replicas hold the same data (`jianka-node verify`, county sign-off).

use crate::Record;
use sha2::{Digest, Sha256};

/// SHA-256 over a canonical encoding of one record: kind, year, id, then fields in name order,
/// each length-prefixed so no two different records share an encoding.
pub fn record_digest(r: &Record) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([r.key.kind.to_u8()]);
    h.update(r.key.year.to_le_bytes());
    put(&mut h, &r.key.id);
    for (k, v) in &r.fields {
        put(&mut h, k);
        put(&mut h, v);
    }
    h.finalize().into()
}

fn put(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

/// Order-independent digest of a set of records: the sum, modulo 2^256, of their digests.
/// Either side can fold records in whatever order its storage yields them, and add or remove one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetDigest {
    acc: [u64; 4],
    pub count: u64,
}

impl SetDigest {
    pub fn add(&mut self, record_digest: &[u8; 32]) {
        let mut carry = 0u128;
        for (i, limb) in self.acc.iter_mut().enumerate() {
            let d = u64::from_le_bytes(record_digest[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            let s = *limb as u128 + d as u128 + carry;
            *limb = s as u64;
            carry = s >> 64;
        }
        self.count += 1;
    }

    pub fn hex(&self) -> String {
        let mut b = [0u8; 32];
        for (i, limb) in self.acc.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&limb.to_le_bytes());
        }
        hex::encode(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RecordKey, RecordKind};
    use proptest::prelude::*;

    fn rec(id: &str, v: &str) -> Record {
        Record {
            key: RecordKey::new(RecordKind::Village, 2014, id),
            fields: [("name".to_string(), v.to_string())].into(),
        }
    }

    proptest! {
        #[test]
        fn set_digest_ignores_order(ids in proptest::collection::btree_set("[0-9]{12}", 0..30)) {
            let recs: Vec<Record> = ids.iter().map(|i| rec(i, "x")).collect();
            let mut a = SetDigest::default();
            let mut b = SetDigest::default();
            recs.iter().for_each(|r| a.add(&record_digest(r)));
            recs.iter().rev().for_each(|r| b.add(&record_digest(r)));
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn any_field_change_changes_the_digest() {
        assert_ne!(record_digest(&rec("420322105200", "a")), record_digest(&rec("420322105200", "b")));
        assert_ne!(record_digest(&rec("420322105200", "a")), record_digest(&rec("420322105201", "a")));
    }
}
