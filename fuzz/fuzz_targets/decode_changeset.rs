#![no_main]
//! Any byte string must decode to a value or a typed error: never a panic, never an unbounded allocation.

use jianka_shared::changeset::{self, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
    let limits = Limits { max_envelope: 1 << 20, max_body: 4 << 20 };
    if let Ok(sealed) = changeset::parse(data, limits) {
        let _ = sealed.header.seq;
        let _ = sealed.verify(&key).map(|v| v.open(limits));
    }
});
