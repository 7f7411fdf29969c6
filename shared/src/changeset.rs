//! The change-set envelope: what a node pushes to its county and a county forwards to its province.
//!
//! ```text
//! "JKCS" | format u16 LE | header_len u32 LE | header (postcard) | body_len u32 LE | body (zstd) | ed25519 signature (64)
//! ```
//!
//! The signature covers every byte before it, under a domain-separation prefix, so a flipped bit
//! anywhere is rejected. Decoding is total: any byte string yields a value or a [`ChangeSetError`].
//! Sizes are bounded before allocation, so a compression bomb is an error, not an allocation.
//!
//! Format 2 stores the body column by column (keys together, each field's values together,
//! versions as deltas), which compresses far better than rows. Format 1 (rows, postcard) still
//! decodes: envelopes written by older nodes remain readable.

use crate::{Hlc, RecordKey, RegionCode, Year, record::RecordKind, trust::KeyId};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

pub const MAGIC: &[u8; 4] = b"JKCS";
pub const FORMAT_VERSION: u16 = 2;
pub const OLDEST_READABLE_VERSION: u16 = 1;
const SIGNING_DOMAIN: &[u8] = b"jianka/changeset/v1\0";
const SIGNATURE_LEN: usize = 64;
const MAX_HEADER: usize = 4096;
/// zstd level: measured (see BENCHMARKS.md) to keep both the speed and the size targets.
pub const COMPRESSION_LEVEL: i32 = 6;

/// Upper bounds applied while decoding, before any allocation they guard.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_envelope: usize,
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_envelope: 64 << 20, max_body: 256 << 20 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeSetError {
    #[error("change set is {len} bytes; the limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("change set is truncated: {0} is cut short")]
    Truncated(&'static str),
    #[error("not a Jianka change set (wrong magic bytes)")]
    BadMagic,
    #[error("change-set format {0} is not supported (this build reads {OLDEST_READABLE_VERSION}..={FORMAT_VERSION})")]
    UnsupportedVersion(u16),
    #[error("{0} unexpected bytes after the signature")]
    TrailingBytes(usize),
    #[error("change-set header is malformed: {0}")]
    BadHeader(String),
    #[error("signature does not verify: the change set was altered or not signed by key {0}")]
    BadSignature(KeyId),
    #[error("change set claims key {claimed} but was checked against key {given}")]
    KeyMismatch { claimed: KeyId, given: KeyId },
    #[error("body does not decompress: {0}")]
    Decompress(String),
    #[error("body declares {declared} bytes uncompressed; the limit is {max}")]
    BodyTooLarge { declared: usize, max: usize },
    #[error("body is {actual} bytes uncompressed but the header says {declared}")]
    BodyLengthMismatch { declared: usize, actual: usize },
    #[error("body is malformed: {0}")]
    Malformed(&'static str),
    #[error("body has {actual} operations but the header says {declared}")]
    OpCountMismatch { declared: usize, actual: usize },
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// Signed metadata of a change set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The region whose key signed this change set.
    pub origin: RegionCode,
    pub key_id: KeyId,
    /// Contiguous per origin, from 1.
    pub seq: u64,
    /// SHA-256 of the origin's previous envelope (all zero for seq 1): a hash chain.
    pub prev_hash: [u8; 32],
    pub year: Year,
    pub hlc: Hlc,
    pub body_len: u32,
    pub op_count: u32,
}

/// Field names and values: almost all fit in 24 bytes, which a `CompactString` keeps inline, so
/// decoding a change set of hundreds of thousands of fields allocates next to nothing for them
/// (the same text on the wire as a `String`).
pub type Text = compact_str::CompactString;

/// One field's new value, the version this write creates and the version it was edited from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldWrite {
    pub name: Text,
    pub value: Text,
    pub version: Hlc,
    /// [`Hlc::ZERO`] when the field did not exist where the edit was made.
    pub base: Hlc,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Upsert {
        key: RecordKey,
        fields: Vec<FieldWrite>,
    },
    /// A delete, kept as a tombstone so it syncs like any other change.
    Delete {
        key: RecordKey,
        version: Hlc,
        base: Hlc,
    },
}

impl Op {
    /// The value an upsert writes to field `name`, if it writes one.
    pub fn field(&self, name: &str) -> Option<&str> {
        match self {
            Op::Upsert { fields, .. } => fields.iter().find(|f| f.name == name).map(|f| f.value.as_str()),
            Op::Delete { .. } => None,
        }
    }

    pub fn key(&self) -> &RecordKey {
        match self {
            Op::Upsert { key, .. } | Op::Delete { key, .. } => key,
        }
    }
}

/// A change set before sealing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub origin: RegionCode,
    pub seq: u64,
    pub prev_hash: [u8; 32],
    pub year: Year,
    pub hlc: Hlc,
    pub ops: Vec<Op>,
}

/// A decoded, verified change set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSet {
    pub format: u16,
    pub header: Header,
    pub ops: Vec<Op>,
}

impl Draft {
    /// Encodes, compresses and signs in the current format.
    pub fn seal(&self, key: &SigningKey) -> Result<Vec<u8>, ChangeSetError> {
        self.seal_as(key, FORMAT_VERSION)
    }

    /// Seals in an older format; kept so tests prove older envelopes still decode.
    pub fn seal_as(&self, key: &SigningKey, format: u16) -> Result<Vec<u8>, ChangeSetError> {
        let body = match format {
            1 => postcard::to_allocvec(&self.ops).map_err(|e| ChangeSetError::Encode(e.to_string()))?,
            2 => columnar::encode(&self.ops),
            v => return Err(ChangeSetError::UnsupportedVersion(v)),
        };
        let compressed =
            zstd::bulk::compress(&body, COMPRESSION_LEVEL).map_err(|e| ChangeSetError::Encode(e.to_string()))?;
        let header = Header {
            origin: self.origin.clone(),
            key_id: KeyId::of(&key.verifying_key()),
            seq: self.seq,
            prev_hash: self.prev_hash,
            year: self.year,
            hlc: self.hlc,
            body_len: u32::try_from(body.len()).map_err(|_| ChangeSetError::Encode("body over 4 GiB".into()))?,
            op_count: u32::try_from(self.ops.len()).map_err(|_| ChangeSetError::Encode("too many ops".into()))?,
        };
        let header = postcard::to_allocvec(&header).map_err(|e| ChangeSetError::Encode(e.to_string()))?;
        let mut out = Vec::with_capacity(4 + 2 + 4 + header.len() + 4 + compressed.len() + SIGNATURE_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&format.to_le_bytes());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
        out.extend_from_slice(&compressed);
        let sig = key.sign(&signing_message(&out));
        out.extend_from_slice(&sig.to_bytes());
        Ok(out)
    }
}

fn signing_message(signed: &[u8]) -> Vec<u8> {
    // Hash-then-sign keeps signing cost independent of size past one SHA-256 pass.
    let mut m = Vec::with_capacity(SIGNING_DOMAIN.len() + 32);
    m.extend_from_slice(SIGNING_DOMAIN);
    m.extend_from_slice(&Sha256::digest(signed));
    m
}

/// SHA-256 of a whole envelope: the link in the origin's hash chain.
pub fn envelope_hash(envelope: &[u8]) -> [u8; 32] {
    Sha256::digest(envelope).into()
}

/// A structurally valid envelope whose signature is not yet checked.
#[derive(Debug)]
pub struct Sealed<'a> {
    pub format: u16,
    pub header: Header,
    signed: &'a [u8],
    body: &'a [u8],
    signature: Signature,
}

/// Parses the envelope's frame and header. Nothing inside is trusted until [`Sealed::verify`].
pub fn parse(bytes: &[u8], limits: Limits) -> Result<Sealed<'_>, ChangeSetError> {
    if bytes.len() > limits.max_envelope {
        return Err(ChangeSetError::TooLarge { len: bytes.len(), max: limits.max_envelope });
    }
    let mut r = Cursor { buf: bytes, pos: 0 };
    if r.take(4, "magic")? != MAGIC {
        return Err(ChangeSetError::BadMagic);
    }
    let format = u16::from_le_bytes(r.take(2, "format")?.try_into().expect("2 bytes"));
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&format) {
        return Err(ChangeSetError::UnsupportedVersion(format));
    }
    let header_len = r.u32("header length")? as usize;
    if header_len > MAX_HEADER {
        return Err(ChangeSetError::BadHeader(format!("{header_len} bytes is over the {MAX_HEADER}-byte limit")));
    }
    let header_bytes = r.take(header_len, "header")?;
    let header: Header = match postcard::take_from_bytes(header_bytes) {
        Ok((h, [])) => h,
        Ok((_, rest)) => return Err(ChangeSetError::BadHeader(format!("{} stray bytes", rest.len()))),
        Err(e) => return Err(ChangeSetError::BadHeader(e.to_string())),
    };
    let body_len = r.u32("body length")? as usize;
    let body = r.take(body_len, "body")?;
    let signed_end = r.pos;
    let sig = r.take(SIGNATURE_LEN, "signature")?;
    if r.pos != bytes.len() {
        return Err(ChangeSetError::TrailingBytes(bytes.len() - r.pos));
    }
    let signature = Signature::from_bytes(sig.try_into().expect("64 bytes"));
    Ok(Sealed { format, header, signed: &bytes[..signed_end], body, signature })
}

impl<'a> Sealed<'a> {
    /// Checks the signature with the origin's public key (looked up by the caller from
    /// `header.origin` / `header.key_id` through the trust chain).
    pub fn verify(self, key: &VerifyingKey) -> Result<Verified<'a>, ChangeSetError> {
        let given = KeyId::of(key);
        if given != self.header.key_id {
            return Err(ChangeSetError::KeyMismatch { claimed: self.header.key_id, given });
        }
        key.verify(&signing_message(self.signed), &self.signature)
            .map_err(|_| ChangeSetError::BadSignature(self.header.key_id))?;
        Ok(Verified(self))
    }
}

/// An envelope whose signature verified.
#[derive(Debug)]
pub struct Verified<'a>(Sealed<'a>);

impl Verified<'_> {
    pub fn header(&self) -> &Header {
        &self.0.header
    }

    /// Decompresses (bounded) and decodes the operations.
    pub fn open(self, limits: Limits) -> Result<ChangeSet, ChangeSetError> {
        let s = self.0;
        let declared = s.header.body_len as usize;
        if declared > limits.max_body {
            return Err(ChangeSetError::BodyTooLarge { declared, max: limits.max_body });
        }
        let mut body = vec![0u8; declared];
        let actual = zstd::bulk::Decompressor::new()
            .and_then(|mut d| d.decompress_to_buffer(s.body, &mut body[..]))
            .map_err(|e| ChangeSetError::Decompress(e.to_string()))?;
        if actual != declared {
            return Err(ChangeSetError::BodyLengthMismatch { declared, actual });
        }
        let ops = match s.format {
            1 => postcard::from_bytes::<Vec<Op>>(&body).map_err(|_| ChangeSetError::Malformed("format-1 rows"))?,
            _ => columnar::decode(&body, s.header.op_count as usize)?,
        };
        if ops.len() != s.header.op_count as usize {
            return Err(ChangeSetError::OpCountMismatch { declared: s.header.op_count as usize, actual: ops.len() });
        }
        Ok(ChangeSet { format: s.format, header: s.header, ops })
    }
}

/// Parses, verifies and opens in one call, for callers that already hold the key.
pub fn open(bytes: &[u8], key: &VerifyingKey, limits: Limits) -> Result<ChangeSet, ChangeSetError> {
    parse(bytes, limits)?.verify(key)?.open(limits)
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ChangeSetError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(ChangeSetError::Truncated(what))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ChangeSetError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
}

/// Format 2 body: column streams.
mod columnar {
    use super::*;

    const TAG_UPSERT: u8 = 0;
    const TAG_DELETE: u8 = 1;

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn zigzag(d: i64) -> u64 {
        ((d << 1) ^ (d >> 63)) as u64
    }

    fn unzigzag(v: u64) -> i64 {
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }

    fn put_str(out: &mut Vec<u8>, s: &str) {
        put_varint(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }

    /// Versions are deltas from the previous version; bases are 0 (new) or 1 + delta from the previous base.
    #[derive(Default)]
    struct Clocks {
        version: u64,
        base: u64,
    }

    impl Clocks {
        fn put(&mut self, versions: &mut Vec<u8>, bases: &mut Vec<u8>, v: Hlc, b: Hlc) {
            put_varint(versions, zigzag(v.0.wrapping_sub(self.version) as i64));
            self.version = v.0;
            if b == Hlc::ZERO {
                put_varint(bases, 0);
            } else {
                put_varint(bases, 1 + zigzag(b.0.wrapping_sub(self.base) as i64));
                self.base = b.0;
            }
        }

        fn get(&mut self, versions: &mut Reader, bases: &mut Reader) -> Result<(Hlc, Hlc), ChangeSetError> {
            self.version = self.version.wrapping_add(unzigzag(versions.varint()?) as u64);
            let b = match bases.varint()? {
                0 => Hlc::ZERO,
                n => {
                    self.base = self.base.wrapping_add(unzigzag(n - 1) as u64);
                    Hlc(self.base)
                }
            };
            Ok((Hlc(self.version), b))
        }
    }

    pub fn encode(ops: &[Op]) -> Vec<u8> {
        let mut tags = Vec::with_capacity(ops.len());
        let mut years = Vec::new();
        let mut ids = Vec::new();
        let mut fieldsets = Vec::new();
        let mut versions = Vec::new();
        let mut bases = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        let mut name_index: HashMap<&str, usize> = HashMap::new();
        let mut values: Vec<Vec<u8>> = Vec::new();
        let mut clocks = Clocks::default();
        for op in ops {
            let (tag, key) = match op {
                Op::Upsert { key, .. } => (TAG_UPSERT, key),
                Op::Delete { key, .. } => (TAG_DELETE, key),
            };
            tags.push(tag << 4 | key.kind.to_u8());
            put_varint(&mut years, key.year as u64);
            put_str(&mut ids, &key.id);
            match op {
                Op::Upsert { fields, .. } => {
                    put_varint(&mut fieldsets, fields.len() as u64);
                    for f in fields {
                        let idx = *name_index.entry(f.name.as_str()).or_insert_with(|| {
                            names.push(f.name.as_str());
                            values.push(Vec::new());
                            names.len() - 1
                        });
                        put_varint(&mut fieldsets, idx as u64);
                        put_str(&mut values[idx], &f.value);
                        clocks.put(&mut versions, &mut bases, f.version, f.base);
                    }
                }
                Op::Delete { version, base, .. } => clocks.put(&mut versions, &mut bases, *version, *base),
            }
        }
        let mut out = Vec::new();
        put_varint(&mut out, ops.len() as u64);
        put_varint(&mut out, names.len() as u64);
        for n in &names {
            put_str(&mut out, n);
        }
        let streams = [&tags, &years, &ids, &fieldsets, &versions, &bases].into_iter().chain(values.iter());
        for s in streams.clone() {
            put_varint(&mut out, s.len() as u64);
        }
        for s in streams {
            out.extend_from_slice(s);
        }
        out
    }

    pub struct Reader<'a> {
        buf: &'a [u8],
        pos: usize,
        what: &'static str,
    }

    impl<'a> Reader<'a> {
        fn new(buf: &'a [u8], what: &'static str) -> Self {
            Reader { buf, pos: 0, what }
        }

        fn varint(&mut self) -> Result<u64, ChangeSetError> {
            let mut v: u64 = 0;
            for shift in (0..64).step_by(7) {
                let b = *self.buf.get(self.pos).ok_or(ChangeSetError::Truncated(self.what))?;
                self.pos += 1;
                v |= ((b & 0x7f) as u64) << shift;
                if b & 0x80 == 0 {
                    return Ok(v);
                }
            }
            Err(ChangeSetError::Malformed("varint longer than 64 bits"))
        }

        fn len(&mut self) -> Result<usize, ChangeSetError> {
            let n = self.varint()?;
            // No length can exceed what is left to read: this bounds every allocation below.
            usize::try_from(n)
                .ok()
                .filter(|&n| n <= self.buf.len() - self.pos)
                .ok_or(ChangeSetError::Truncated(self.what))
        }

        fn bytes(&mut self, n: usize) -> Result<&'a [u8], ChangeSetError> {
            let s = self.buf.get(self.pos..self.pos + n).ok_or(ChangeSetError::Truncated(self.what))?;
            self.pos += n;
            Ok(s)
        }

        fn str(&mut self) -> Result<&'a str, ChangeSetError> {
            let n = self.len()?;
            std::str::from_utf8(self.bytes(n)?).map_err(|_| ChangeSetError::Malformed("text is not UTF-8"))
        }

        fn u8(&mut self) -> Result<u8, ChangeSetError> {
            Ok(self.bytes(1)?[0])
        }

        fn done(&self) -> bool {
            self.pos == self.buf.len()
        }
    }

    pub fn decode(body: &[u8], declared_ops: usize) -> Result<Vec<Op>, ChangeSetError> {
        let mut r = Reader::new(body, "column directory");
        let n_ops = r.varint()? as usize;
        if n_ops != declared_ops {
            return Err(ChangeSetError::OpCountMismatch { declared: declared_ops, actual: n_ops });
        }
        let n_names = r.len()?;
        let mut names = Vec::with_capacity(n_names);
        for _ in 0..n_names {
            names.push(Text::from(r.str()?));
        }
        let mut lens = Vec::with_capacity(6 + n_names);
        for _ in 0..6 + n_names {
            lens.push(r.len()?);
        }
        let mut streams = Vec::with_capacity(lens.len());
        for (i, &l) in lens.iter().enumerate() {
            let what = ["tags", "years", "ids", "field sets", "versions", "bases"].get(i).copied().unwrap_or("values");
            streams.push(Reader::new(r.bytes(l)?, what));
        }
        if !r.done() {
            return Err(ChangeSetError::Malformed("bytes after the last column"));
        }
        let mut values = streams.split_off(6);
        let [mut tags, mut years, mut ids, mut fieldsets, mut versions, mut bases]: [Reader; 6] =
            streams.try_into().map_err(|_| ChangeSetError::Malformed("column count"))?;
        // Each op takes at least one tag byte, so the tag column bounds the allocation.
        let mut ops = Vec::with_capacity(n_ops.min(tags.buf.len()));
        let mut clocks = Clocks::default();
        for _ in 0..n_ops {
            let t = tags.u8()?;
            let kind = RecordKind::from_u8(t & 0x0f).ok_or(ChangeSetError::Malformed("unknown record kind"))?;
            let year = Year::try_from(years.varint()?).map_err(|_| ChangeSetError::Malformed("year out of range"))?;
            let key = RecordKey { kind, year, id: ids.str()?.to_string() };
            match t >> 4 {
                TAG_UPSERT => {
                    let n = fieldsets.len()?;
                    let mut fields = Vec::with_capacity(n);
                    for _ in 0..n {
                        let idx = fieldsets.varint()? as usize;
                        let name = names.get(idx).ok_or(ChangeSetError::Malformed("field name index"))?;
                        let value = Text::from(values[idx].str()?);
                        let (version, base) = clocks.get(&mut versions, &mut bases)?;
                        fields.push(FieldWrite { name: name.clone(), value, version, base });
                    }
                    ops.push(Op::Upsert { key, fields });
                }
                TAG_DELETE => {
                    let (version, base) = clocks.get(&mut versions, &mut bases)?;
                    ops.push(Op::Delete { key, version, base });
                }
                _ => return Err(ChangeSetError::Malformed("unknown operation tag")),
            }
        }
        let all_read = [&tags, &years, &ids, &fieldsets, &versions, &bases].iter().all(|s| s.done())
            && values.iter().all(|s| s.done());
        if !all_read {
            return Err(ChangeSetError::Malformed("column holds more values than its operations use"));
        }
        Ok(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key_from(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        let key = (0u8..3, 2013u16..2030, "[0-9X-]{1,20}").prop_map(|(k, y, id)| RecordKey {
            kind: RecordKind::from_u8(k).unwrap(),
            year: y,
            id,
        });
        let write = ("[a-z_.]{1,12}", "\\PC{0,16}", any::<u64>(), prop_oneof![Just(0u64), any::<u64>()]).prop_map(
            |(name, value, v, b)| FieldWrite { name: name.into(), value: value.into(), version: Hlc(v), base: Hlc(b) },
        );
        prop_oneof![
            (key.clone(), proptest::collection::vec(write, 0..6)).prop_map(|(key, fields)| Op::Upsert { key, fields }),
            (key, any::<u64>(), any::<u64>()).prop_map(|(key, v, b)| Op::Delete { key, version: Hlc(v), base: Hlc(b) }),
        ]
    }

    fn draft(ops: Vec<Op>) -> Draft {
        Draft {
            origin: RegionCode::parse("420322105").unwrap(),
            seq: 7,
            prev_hash: [3; 32],
            year: 2014,
            hlc: Hlc::new(1_700_000_000_000, 1),
            ops,
        }
    }

    fn sample() -> Vec<u8> {
        let ops = crate::domain::tests::sample_household()
            .to_records()
            .into_iter()
            .map(|r| Op::Upsert {
                key: r.key,
                fields: r
                    .fields
                    .into_iter()
                    .map(|(name, value)| FieldWrite {
                        name: name.into(),
                        value: value.into(),
                        version: Hlc(9),
                        base: Hlc::ZERO,
                    })
                    .collect(),
            })
            .collect();
        draft(ops).seal(&key_from(1)).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn round_trips_in_both_formats(ops in proptest::collection::vec(arb_op(), 0..20), format in 1u16..=2) {
            let d = draft(ops);
            let k = key_from(1);
            let bytes = d.seal_as(&k, format).unwrap();
            let cs = open(&bytes, &k.verifying_key(), Limits::default()).unwrap();
            prop_assert_eq!(cs.format, format);
            prop_assert_eq!(cs.header.seq, d.seq);
            prop_assert_eq!(cs.header.origin, d.origin);
            prop_assert_eq!(cs.ops, d.ops);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let k = key_from(1).verifying_key();
            prop_assert!(open(&bytes, &k, Limits::default()).is_err());
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&2u16.to_le_bytes());
            framed.extend_from_slice(&bytes);
            prop_assert!(open(&framed, &k, Limits::default()).is_err());
        }

        #[test]
        fn arbitrary_bodies_decode_or_fail_cleanly(body in proptest::collection::vec(any::<u8>(), 0..512), n in 0usize..50) {
            let _ = columnar::decode(&body, n);
        }
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let bytes = sample();
        let k = key_from(1).verifying_key();
        assert!(open(&bytes, &k, Limits::default()).is_ok());
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(open(&b, &k, Limits::default()).is_err(), "flip of bit {i} went unnoticed");
        }
    }

    #[test]
    fn wrong_key_and_truncation_and_trailing_bytes_are_distinct_errors() {
        let bytes = sample();
        let other = key_from(2).verifying_key();
        assert!(matches!(open(&bytes, &other, Limits::default()), Err(ChangeSetError::KeyMismatch { .. })));
        assert!(matches!(
            open(&bytes[..bytes.len() - 1], &key_from(1).verifying_key(), Limits::default()),
            Err(ChangeSetError::Truncated("signature"))
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            open(&longer, &key_from(1).verifying_key(), Limits::default()),
            Err(ChangeSetError::TrailingBytes(1))
        ));
        assert!(matches!(
            open(&bytes, &key_from(1).verifying_key(), Limits { max_envelope: 10, max_body: 1 << 20 }),
            Err(ChangeSetError::TooLarge { .. })
        ));
    }

    #[test]
    fn compression_bomb_is_an_error_not_an_allocation() {
        // A signed change set whose body expands far past the limit.
        let huge = "0".repeat(8 << 20);
        let d = draft(vec![Op::Upsert {
            key: RecordKey::new(RecordKind::Village, 2014, "420322105200"),
            fields: vec![FieldWrite { name: "name".into(), value: huge.into(), version: Hlc(1), base: Hlc::ZERO }],
        }]);
        let k = key_from(1);
        let bytes = d.seal(&k).unwrap();
        assert!(bytes.len() < 64 << 10, "bomb should be small on the wire: {}", bytes.len());
        let limits = Limits { max_envelope: 1 << 20, max_body: 1 << 20 };
        assert!(matches!(open(&bytes, &k.verifying_key(), limits), Err(ChangeSetError::BodyTooLarge { .. })));
    }
}
