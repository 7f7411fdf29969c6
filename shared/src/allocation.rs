//! Signed allocations: 规模分解 as documents. A hub splits the scale it received (the province:
//! the scale it set) among its children and signs each child's part; the child holds the whole
//! chain from the province down to its own part and enforces only a chain that verifies against
//! its certificate chain. A child can therefore never raise its own ceiling: its number is one
//! its parent signed, and the parent's part is one its own parent signed, up to the province.
//!
//! An allocation travels as the exact bytes that were signed ([`SignedAllocation::statement`]),
//! never re-encoded, so a receiver of another version verifies what the issuer signed.

use crate::trust::{self, Certificate, KeyId};
use crate::{RegionCode, Tier, Year};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The statement kind allocations are signed under.
pub const ALLOCATION_STATEMENT: &str = "allocation";

/// One child's part of the scale, as its parent issued it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    /// The region the allocation is for (a child of `issuer`).
    pub region: RegionCode,
    /// In force from this year until an allocation of a later year (or a later serial) replaces it.
    pub year: Year,
    /// The issuer's revision of this region's allocation for `year`: a 微调 issues serial + 1.
    pub serial: u64,
    /// People that may be recognised in `region` (规模数).
    pub people: u64,
    /// Poor villages that may be recognised in `region`.
    pub villages: u64,
    /// The issuer's own computation below `region`, when it made one (the province splits to
    /// counties even where a prefecture sits between): the child's default split.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parts: BTreeMap<RegionCode, Share>,
    pub issuer: RegionCode,
    /// Key id (hex) of the key that signed it.
    pub issuer_key: String,
    /// SHA-256 (hex) of the issuer's own allocation this one splits; none when the province issues.
    pub parent: Option<String>,
    /// When it was issued (RFC 3339).
    pub issued_at: String,
    /// Why, in the issuer's words (e.g. "规模分解 by 2013 stock", "微调: 3 villages to 420323").
    #[serde(default)]
    pub note: String,
}

/// People and villages of one region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    pub people: u64,
    pub villages: u64,
}

/// An allocation as it travels and is kept: the signed JSON and its signature (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAllocation {
    pub statement: String,
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error("no allocation was given")]
    Empty,
    #[error("allocation {index} is not a readable allocation: {message}")]
    Unreadable { index: usize, message: String },
    #[error(
        "the allocation for {region} names issuer {issuer}, but no certificate of this hub's chain is for {issuer}"
    )]
    UnknownIssuer { region: RegionCode, issuer: RegionCode },
    #[error(
        "the allocation for {region} is signed by key {named}, but the chain certifies key {certified} for {issuer}"
    )]
    WrongKey { region: RegionCode, issuer: RegionCode, named: String, certified: KeyId },
    #[error("the allocation for {region} does not verify against {issuer}'s key: it was altered or forged")]
    BadSignature { region: RegionCode, issuer: RegionCode },
    #[error("the allocation chain starts at {issuer}, not at the province")]
    RootNotProvince { issuer: RegionCode },
    #[error(
        "the allocation for {region} is issued by {issuer}, which is not the region the allocation above it is for"
    )]
    Broken { region: RegionCode, issuer: RegionCode },
    #[error("the allocation for {region} names another parent allocation than the one above it in the chain")]
    WrongParent { region: RegionCode },
    #[error("{region} is not directly below its issuer {issuer}")]
    NotAChild { region: RegionCode, issuer: RegionCode },
    #[error("the allocation for {region} gives {what} {given}, more than the {above} its issuer {issuer} received")]
    OverParent { region: RegionCode, issuer: RegionCode, what: &'static str, given: u64, above: u64 },
    #[error("the allocation chain ends at {found}, not at {expected}")]
    NotFor { expected: RegionCode, found: RegionCode },
}

impl Allocation {
    /// Signs this allocation with the issuer's key (whose id it must already name).
    pub fn sign(&self, key: &SigningKey) -> SignedAllocation {
        let statement = serde_json::to_string(self).expect("in-memory encoding");
        let sig = trust::sign_statement(key, ALLOCATION_STATEMENT, statement.as_bytes());
        SignedAllocation { statement, signature: hex::encode(sig) }
    }
}

impl SignedAllocation {
    /// The allocation it carries, not yet verified.
    pub fn read(&self) -> Result<Allocation, String> {
        serde_json::from_str(&self.statement).map_err(|e| e.to_string())
    }

    /// What a child allocation names as its `parent`.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.statement.as_bytes()))
    }

    /// Whether `key` signed exactly this statement.
    pub fn signed_by(&self, key: &VerifyingKey) -> bool {
        let sig: Option<[u8; 64]> = hex::decode(&self.signature).ok().and_then(|v| v.try_into().ok());
        sig.is_some_and(|s| trust::verify_statement(key, ALLOCATION_STATEMENT, self.statement.as_bytes(), &s))
    }
}

/// Verifies a chain of allocations `[the province's to its child, …, the one for me]` against
/// the receiver's certificate chain: each is signed by the key the certificates name for its
/// issuer, each is issued by the region the one above it is for and names it as parent, none
/// gives more than its issuer received, and the last is for `me`. Returns them, in order.
pub fn verify_chain(
    allocations: &[SignedAllocation],
    certificates: &[Certificate],
    me: &RegionCode,
) -> Result<Vec<Allocation>, AllocationError> {
    if allocations.is_empty() {
        return Err(AllocationError::Empty);
    }
    let mut out: Vec<Allocation> = Vec::with_capacity(allocations.len());
    for (index, signed) in allocations.iter().enumerate() {
        let a = signed.read().map_err(|message| AllocationError::Unreadable { index, message })?;
        let cert = certificates
            .iter()
            .find(|c| c.subject == a.issuer)
            .ok_or_else(|| AllocationError::UnknownIssuer { region: a.region.clone(), issuer: a.issuer.clone() })?;
        if cert.key_id().to_string() != a.issuer_key {
            return Err(AllocationError::WrongKey {
                region: a.region.clone(),
                issuer: a.issuer.clone(),
                named: a.issuer_key.clone(),
                certified: cert.key_id(),
            });
        }
        let key = cert
            .verifying_key()
            .map_err(|_| AllocationError::BadSignature { region: a.region.clone(), issuer: a.issuer.clone() })?;
        if !signed.signed_by(&key) {
            return Err(AllocationError::BadSignature { region: a.region.clone(), issuer: a.issuer.clone() });
        }
        if !is_child(&a.issuer, &a.region) {
            return Err(AllocationError::NotAChild { region: a.region.clone(), issuer: a.issuer.clone() });
        }
        match out.last() {
            None => {
                if a.issuer.tier() != Tier::Province {
                    return Err(AllocationError::RootNotProvince { issuer: a.issuer.clone() });
                }
            }
            Some(above) => {
                if above.region != a.issuer {
                    return Err(AllocationError::Broken { region: a.region.clone(), issuer: a.issuer.clone() });
                }
                if a.parent.as_deref() != Some(allocations[index - 1].digest().as_str()) {
                    return Err(AllocationError::WrongParent { region: a.region.clone() });
                }
                for (what, given, have) in
                    [("people", a.people, above.people), ("villages", a.villages, above.villages)]
                {
                    if given > have {
                        return Err(AllocationError::OverParent {
                            region: a.region.clone(),
                            issuer: a.issuer.clone(),
                            what,
                            given,
                            above: have,
                        });
                    }
                }
            }
        }
        out.push(a);
    }
    let last = out.last().expect("non-empty");
    if &last.region != me {
        return Err(AllocationError::NotFor { expected: me.clone(), found: last.region.clone() });
    }
    Ok(out)
}

/// Whether `child` is a region one tier of hubs below `issuer`: a county or prefecture of a
/// province, a county of a prefecture, a township of a county.
pub fn is_child(issuer: &RegionCode, child: &RegionCode) -> bool {
    issuer.contains(child)
        && match issuer.tier() {
            Tier::Province => matches!(child.tier(), Tier::Prefecture | Tier::County),
            Tier::Prefecture => child.tier() == Tier::County,
            Tier::County => child.tier() == Tier::Township,
            _ => false,
        }
}

/// Of `allocations` for one region, the one in force in `year`: the newest year not after it,
/// and of that year the highest serial.
pub fn in_force(allocations: &[Allocation], year: Year) -> Option<&Allocation> {
    allocations.iter().filter(|a| a.year <= year).max_by_key(|a| (a.year, a.serial))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn r(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap()
    }

    struct Tiers {
        province: SigningKey,
        prefecture: SigningKey,
        county: SigningKey,
        certs: Vec<Certificate>,
    }

    fn tiers() -> Tiers {
        let (from, to) = (NaiveDate::from_ymd_opt(2014, 1, 1).unwrap(), NaiveDate::from_ymd_opt(2030, 1, 1).unwrap());
        let province = SigningKey::from_bytes(&[1; 32]);
        let prefecture = SigningKey::from_bytes(&[2; 32]);
        let county = SigningKey::from_bytes(&[3; 32]);
        let certs = vec![
            Certificate::issue(&r("42"), &province, &r("42"), &province.verifying_key(), from, to),
            Certificate::issue(&r("42"), &province, &r("4203"), &prefecture.verifying_key(), from, to),
            Certificate::issue(&r("4203"), &prefecture, &r("420322"), &county.verifying_key(), from, to),
        ];
        Tiers { province, prefecture, county, certs }
    }

    fn issue(
        key: &SigningKey,
        issuer: &str,
        region: &str,
        people: u64,
        parent: Option<&SignedAllocation>,
    ) -> SignedAllocation {
        Allocation {
            region: r(region),
            year: 2014,
            serial: 1,
            people,
            villages: 10,
            parts: BTreeMap::new(),
            issuer: r(issuer),
            issuer_key: KeyId::of(&key.verifying_key()).to_string(),
            parent: parent.map(SignedAllocation::digest),
            issued_at: "2014-03-01T00:00:00+08:00".into(),
            note: String::new(),
        }
        .sign(key)
    }

    #[test]
    fn a_chain_from_the_province_verifies_and_a_tampered_one_does_not() {
        let t = tiers();
        let top = issue(&t.province, "42", "4203", 1000, None);
        let mine = issue(&t.prefecture, "4203", "420322", 400, Some(&top));
        let chain = vec![top.clone(), mine.clone()];
        let got = verify_chain(&chain, &t.certs, &r("420322")).unwrap();
        assert_eq!(got[1].people, 400);

        // One changed digit of the number, the signature left as it was.
        let mut forged = mine.clone();
        forged.statement = forged.statement.replace("\"people\":400", "\"people\":900");
        assert!(matches!(
            verify_chain(&[top.clone(), forged], &t.certs, &r("420322")),
            Err(AllocationError::BadSignature { .. })
        ));
        // The county signing its own raise.
        let own = issue(&t.county, "4203", "420322", 900, Some(&top));
        assert!(matches!(
            verify_chain(&[top.clone(), own], &t.certs, &r("420322")),
            Err(AllocationError::WrongKey { .. })
        ));
        // The prefecture giving more than it received.
        let over = issue(&t.prefecture, "4203", "420322", 1001, Some(&top));
        assert!(matches!(
            verify_chain(&[top.clone(), over], &t.certs, &r("420322")),
            Err(AllocationError::OverParent { what: "people", given: 1001, above: 1000, .. })
        ));
        // Another county's allocation presented as mine.
        let other = issue(&t.prefecture, "4203", "420323", 10, Some(&top));
        assert!(matches!(
            verify_chain(&[top.clone(), other], &t.certs, &r("420322")),
            Err(AllocationError::NotFor { .. })
        ));
        // The middle left out, or a parent of another chain.
        assert!(matches!(
            verify_chain(std::slice::from_ref(&mine), &t.certs, &r("420322")),
            Err(AllocationError::RootNotProvince { .. })
        ));
        let other_top = issue(&t.province, "42", "4203", 2000, None);
        assert!(matches!(
            verify_chain(&[other_top, mine], &t.certs, &r("420322")),
            Err(AllocationError::WrongParent { .. })
        ));
        assert!(matches!(verify_chain(&[], &t.certs, &r("420322")), Err(AllocationError::Empty)));
        let junk = SignedAllocation { statement: "{".into(), signature: "00".into() };
        assert!(matches!(verify_chain(&[junk], &t.certs, &r("420322")), Err(AllocationError::Unreadable { .. })));
    }

    #[test]
    fn the_allocation_in_force_is_the_newest_not_after_the_year() {
        let t = tiers();
        let mk = |year, serial| {
            let mut a = issue(&t.province, "42", "4203", 1, None).read().unwrap();
            a.year = year;
            a.serial = serial;
            a
        };
        let all = vec![mk(2014, 1), mk(2014, 2), mk(2016, 1)];
        assert_eq!(in_force(&all, 2013), None);
        assert_eq!(in_force(&all, 2015).map(|a| (a.year, a.serial)), Some((2014, 2)));
        assert_eq!(in_force(&all, 2016).map(|a| (a.year, a.serial)), Some((2016, 1)));
    }
}
