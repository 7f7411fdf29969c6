//! Keys and the trust chain: a parent tier certifies a child's public key (province → county →
//! township), and may revoke it. Requests are signed with the same keys.

use crate::{RegionCode, Tier};
use chrono::NaiveDate;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

const CERT_DOMAIN: &[u8] = b"jianka/certificate/v1\0";
const REVOCATION_DOMAIN: &[u8] = b"jianka/revocation/v1\0";
const REQUEST_DOMAIN: &[u8] = b"jianka/request/v1\0";
const STATEMENT_DOMAIN: &[u8] = b"jianka/statement/v1\0";

/// First 8 bytes of SHA-256 of a public key: how envelopes and certificates name a key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    pub fn of(key: &VerifyingKey) -> KeyId {
        let h = Sha256::digest(key.as_bytes());
        KeyId(h[..8].try_into().expect("8 bytes"))
    }

    pub fn parse(hex_str: &str) -> Option<KeyId> {
        let v = hex::decode(hex_str.trim()).ok()?;
        Some(KeyId(v.try_into().ok()?))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    #[error("certificate for {subject} is not signed by the key it names as issuer ({issuer})")]
    BadSignature { subject: RegionCode, issuer: KeyId },
    #[error("certificate for {subject} names issuer key {named}, but the chain's parent key is {parent}")]
    IssuerMismatch { subject: RegionCode, named: KeyId, parent: KeyId },
    #[error("certificate for {subject} was issued by {issuer}, which does not contain it")]
    OutsideIssuerRegion { subject: RegionCode, issuer: RegionCode },
    #[error("certificate for {subject} ({tier}) cannot be issued by a {issuer_tier}")]
    WrongTier { subject: RegionCode, tier: Tier, issuer_tier: Tier },
    #[error("certificate for {subject} is valid from {from} to {until}; today is {today}")]
    Expired { subject: RegionCode, from: NaiveDate, until: NaiveDate, today: NaiveDate },
    #[error("key {key} of {subject} has been revoked")]
    Revoked { subject: RegionCode, key: KeyId },
    #[error("certificate chain is empty")]
    Empty,
    #[error("public key bytes are not a valid ed25519 key")]
    BadKey,
}

/// A parent tier's statement that `public_key` speaks for `subject` between two dates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub subject: RegionCode,
    pub public_key: [u8; 32],
    pub not_before: NaiveDate,
    pub not_after: NaiveDate,
    pub issuer: RegionCode,
    pub issuer_key: KeyId,
    #[serde(with = "sig_hex")]
    pub signature: [u8; 64],
}

mod sig_hex {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(s).map_err(serde::de::Error::custom)?;
        v.try_into().map_err(|_| serde::de::Error::custom("signature must be 64 bytes"))
    }
}

#[derive(Serialize)]
struct CertBody<'a> {
    subject: &'a RegionCode,
    public_key: &'a [u8; 32],
    not_before: NaiveDate,
    not_after: NaiveDate,
    issuer: &'a RegionCode,
    issuer_key: KeyId,
}

impl Certificate {
    /// Issues a certificate. A province key may certify itself (the root of trust).
    pub fn issue(
        issuer: &RegionCode,
        issuer_key: &SigningKey,
        subject: &RegionCode,
        subject_key: &VerifyingKey,
        not_before: NaiveDate,
        not_after: NaiveDate,
    ) -> Certificate {
        let mut c = Certificate {
            subject: subject.clone(),
            public_key: subject_key.to_bytes(),
            not_before,
            not_after,
            issuer: issuer.clone(),
            issuer_key: KeyId::of(&issuer_key.verifying_key()),
            signature: [0; 64],
        };
        c.signature = issuer_key.sign(&c.signed_bytes()).to_bytes();
        c
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let body = CertBody {
            subject: &self.subject,
            public_key: &self.public_key,
            not_before: self.not_before,
            not_after: self.not_after,
            issuer: &self.issuer,
            issuer_key: self.issuer_key,
        };
        let mut m = CERT_DOMAIN.to_vec();
        m.extend_from_slice(&postcard::to_allocvec(&body).expect("in-memory encoding"));
        m
    }

    pub fn verifying_key(&self) -> Result<VerifyingKey, TrustError> {
        VerifyingKey::from_bytes(&self.public_key).map_err(|_| TrustError::BadKey)
    }

    pub fn key_id(&self) -> KeyId {
        self.verifying_key().map(|k| KeyId::of(&k)).unwrap_or(KeyId([0; 8]))
    }

    /// Checks this certificate's own signature, tier and region against its issuer's key.
    fn check_issued_by(&self, issuer_key: &VerifyingKey, today: NaiveDate) -> Result<(), TrustError> {
        let parent = KeyId::of(issuer_key);
        if self.issuer_key != parent {
            return Err(TrustError::IssuerMismatch { subject: self.subject.clone(), named: self.issuer_key, parent });
        }
        issuer_key
            .verify(&self.signed_bytes(), &Signature::from_bytes(&self.signature))
            .map_err(|_| TrustError::BadSignature { subject: self.subject.clone(), issuer: self.issuer_key })?;
        let is_root = self.subject == self.issuer;
        if !is_root {
            if !self.issuer.contains(&self.subject) {
                return Err(TrustError::OutsideIssuerRegion {
                    subject: self.subject.clone(),
                    issuer: self.issuer.clone(),
                });
            }
            // A county certifies townships, a province counties (and prefectures).
            let ok = match self.issuer.tier() {
                Tier::Province => matches!(self.subject.tier(), Tier::County | Tier::Prefecture),
                Tier::Prefecture => self.subject.tier() == Tier::County,
                Tier::County => self.subject.tier() == Tier::Township,
                _ => false,
            };
            if !ok {
                return Err(TrustError::WrongTier {
                    subject: self.subject.clone(),
                    tier: self.subject.tier(),
                    issuer_tier: self.issuer.tier(),
                });
            }
        } else if self.subject.tier() != Tier::Province {
            return Err(TrustError::WrongTier {
                subject: self.subject.clone(),
                tier: self.subject.tier(),
                issuer_tier: self.issuer.tier(),
            });
        }
        if today < self.not_before || today > self.not_after {
            return Err(TrustError::Expired {
                subject: self.subject.clone(),
                from: self.not_before,
                until: self.not_after,
                today,
            });
        }
        Ok(())
    }
}

/// Verifies a chain `[root (province, self-signed), county, township…]` against a trusted root key.
/// Returns the last certificate's key. `is_revoked` is asked about every key in the chain.
pub fn verify_chain(
    root: &VerifyingKey,
    chain: &[Certificate],
    today: NaiveDate,
    is_revoked: impl Fn(&KeyId) -> bool,
) -> Result<VerifyingKey, TrustError> {
    let mut parent = *root;
    if chain.is_empty() {
        return Err(TrustError::Empty);
    }
    for cert in chain {
        cert.check_issued_by(&parent, today)?;
        let key = cert.verifying_key()?;
        let id = KeyId::of(&key);
        if is_revoked(&id) {
            return Err(TrustError::Revoked { subject: cert.subject.clone(), key: id });
        }
        parent = key;
    }
    Ok(parent)
}

/// Verifies one certificate issued directly by `issuer_key` (what a hub checks for its children).
pub fn verify_child(
    cert: &Certificate,
    issuer_key: &VerifyingKey,
    today: NaiveDate,
) -> Result<VerifyingKey, TrustError> {
    cert.check_issued_by(issuer_key, today)?;
    cert.verifying_key()
}

/// A signed statement that a key no longer speaks for its region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub key: KeyId,
    pub subject: RegionCode,
    pub date: NaiveDate,
    pub reason: String,
    pub issuer_key: KeyId,
    #[serde(with = "sig_hex")]
    pub signature: [u8; 64],
}

impl Revocation {
    pub fn issue(issuer: &SigningKey, subject: &RegionCode, key: KeyId, date: NaiveDate, reason: &str) -> Revocation {
        let mut r = Revocation {
            key,
            subject: subject.clone(),
            date,
            reason: reason.to_string(),
            issuer_key: KeyId::of(&issuer.verifying_key()),
            signature: [0; 64],
        };
        r.signature = issuer.sign(&r.signed_bytes()).to_bytes();
        r
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut m = REVOCATION_DOMAIN.to_vec();
        let body = (&self.key, &self.subject, self.date, &self.reason, &self.issuer_key);
        m.extend_from_slice(&postcard::to_allocvec(&body).expect("in-memory encoding"));
        m
    }

    pub fn verify(&self, issuer: &VerifyingKey) -> bool {
        KeyId::of(issuer) == self.issuer_key
            && issuer.verify(&self.signed_bytes(), &Signature::from_bytes(&self.signature)).is_ok()
    }
}

/// What a request signature covers: method, path (with query), a body hash and a timestamp.
/// Replays are bounded by the hub's clock window and, for change sets, by sequence numbers.
pub fn request_message(method: &str, path_and_query: &str, body: &[u8], unix_secs: i64) -> Vec<u8> {
    let mut m = REQUEST_DOMAIN.to_vec();
    m.extend_from_slice(method.as_bytes());
    m.push(0);
    m.extend_from_slice(path_and_query.as_bytes());
    m.push(0);
    m.extend_from_slice(&Sha256::digest(body));
    m.extend_from_slice(&unix_secs.to_le_bytes());
    m
}

pub fn sign_request(key: &SigningKey, method: &str, path_and_query: &str, body: &[u8], unix_secs: i64) -> String {
    hex::encode(key.sign(&request_message(method, path_and_query, body, unix_secs)).to_bytes())
}

pub fn verify_request(
    key: &VerifyingKey,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    unix_secs: i64,
    signature_hex: &str,
) -> bool {
    let Some(sig) = hex::decode(signature_hex).ok().and_then(|v| <[u8; 64]>::try_from(v).ok()) else {
        return false;
    };
    key.verify(&request_message(method, path_and_query, body, unix_secs), &Signature::from_bytes(&sig)).is_ok()
}

/// Signs an arbitrary statement (sign-offs, quota adjustments, year snapshots) under its own domain.
pub fn sign_statement(key: &SigningKey, kind: &str, bytes: &[u8]) -> [u8; 64] {
    key.sign(&statement_message(kind, bytes)).to_bytes()
}

pub fn verify_statement(key: &VerifyingKey, kind: &str, bytes: &[u8], signature: &[u8; 64]) -> bool {
    key.verify(&statement_message(kind, bytes), &Signature::from_bytes(signature)).is_ok()
}

fn statement_message(kind: &str, bytes: &[u8]) -> Vec<u8> {
    let mut m = STATEMENT_DOMAIN.to_vec();
    m.extend_from_slice(kind.as_bytes());
    m.push(0);
    m.extend_from_slice(&Sha256::digest(bytes));
    m
}

/// The key of the hub that certified `me` in `chain` (the issuer of `me`'s certificate): the key
/// its feedback must be signed with.
pub fn parent_key(chain: &[Certificate], me: &RegionCode) -> Option<VerifyingKey> {
    let own = chain.iter().find(|c| &c.subject == me)?;
    chain
        .iter()
        .filter(|c| c.subject == own.issuer)
        .filter_map(|c| VerifyingKey::from_bytes(&c.public_key).ok())
        .find(|k| KeyId::of(k) == own.issuer_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    struct Fixture {
        root: SigningKey,
        county: SigningKey,
        town: SigningKey,
        chain: Vec<Certificate>,
    }

    fn fixture() -> Fixture {
        let (root, county, town) =
            (SigningKey::from_bytes(&[1; 32]), SigningKey::from_bytes(&[2; 32]), SigningKey::from_bytes(&[3; 32]));
        let p = RegionCode::parse("42").unwrap();
        let c = RegionCode::parse("420322").unwrap();
        let t = RegionCode::parse("420322105").unwrap();
        let (from, to) = (d(2014, 1, 1), d(2030, 12, 31));
        let chain = vec![
            Certificate::issue(&p, &root, &p, &root.verifying_key(), from, to),
            Certificate::issue(&p, &root, &c, &county.verifying_key(), from, to),
            Certificate::issue(&c, &county, &t, &town.verifying_key(), from, to),
        ];
        Fixture { root, county, town, chain }
    }

    #[test]
    fn province_county_township_chain_verifies() {
        let f = fixture();
        let k = verify_chain(&f.root.verifying_key(), &f.chain, d(2020, 1, 1), |_| false).unwrap();
        assert_eq!(k, f.town.verifying_key());
    }

    #[test]
    fn broken_chains_say_why() {
        let f = fixture();
        let today = d(2020, 1, 1);
        let rk = f.root.verifying_key();
        // A county certifying a township of another county.
        let other = Certificate::issue(
            &RegionCode::parse("420322").unwrap(),
            &f.county,
            &RegionCode::parse("420323001").unwrap(),
            &f.town.verifying_key(),
            d(2014, 1, 1),
            d(2030, 1, 1),
        );
        let chain = [f.chain[0].clone(), f.chain[1].clone(), other];
        assert!(matches!(verify_chain(&rk, &chain, today, |_| false), Err(TrustError::OutsideIssuerRegion { .. })));
        // Expired.
        assert!(matches!(verify_chain(&rk, &f.chain, d(2031, 1, 1), |_| false), Err(TrustError::Expired { .. })));
        // Revoked county key.
        let county_id = KeyId::of(&f.county.verifying_key());
        assert!(matches!(verify_chain(&rk, &f.chain, today, |k| *k == county_id), Err(TrustError::Revoked { .. })));
        // Tampered subject.
        let mut chain = f.chain.clone();
        chain[2].subject = RegionCode::parse("420322106").unwrap();
        assert!(matches!(verify_chain(&rk, &chain, today, |_| false), Err(TrustError::BadSignature { .. })));
        // Township certified straight by the province: wrong tier.
        let skip = Certificate::issue(
            &RegionCode::parse("42").unwrap(),
            &f.root,
            &RegionCode::parse("420322105").unwrap(),
            &f.town.verifying_key(),
            d(2014, 1, 1),
            d(2030, 1, 1),
        );
        assert!(matches!(
            verify_chain(&rk, &[f.chain[0].clone(), skip], today, |_| false),
            Err(TrustError::WrongTier { .. })
        ));
    }

    #[test]
    fn revocations_and_requests_verify_only_untampered() {
        let f = fixture();
        let r = Revocation::issue(&f.county, &f.chain[2].subject, f.chain[2].key_id(), d(2020, 1, 1), "laptop stolen");
        assert!(r.verify(&f.county.verifying_key()));
        let mut forged = r.clone();
        forged.reason = "x".into();
        assert!(!forged.verify(&f.county.verifying_key()));
        let sig = sign_request(&f.town, "GET", "/v1/feedback?since=0", b"", 100);
        assert!(verify_request(&f.town.verifying_key(), "GET", "/v1/feedback?since=0", b"", 100, &sig));
        assert!(!verify_request(&f.town.verifying_key(), "GET", "/v1/feedback?since=1", b"", 100, &sig));
        assert!(!verify_request(&f.town.verifying_key(), "GET", "/v1/feedback?since=0", b"", 101, &sig));
    }
}
