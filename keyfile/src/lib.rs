//! Signing keys and certificates on disk.
//!
//! A key file holds the 32-byte ed25519 seed as hex, is created with mode 0600 (never widened),
//! and its contents never reach a log or a terminal: [`Keypair`]'s `Debug` shows only the key id.

use ed25519_dalek::{SigningKey, VerifyingKey};
use jianka_shared::trust::{Certificate, KeyId};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0} already exists; refusing to overwrite a key (move it away first if you really mean to replace it)")]
    Exists(PathBuf),
    #[error("{0} is not a Jianka key file (expected 64 hex characters)")]
    Malformed(PathBuf),
    #[error("{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path}: not a certificate file: {message}")]
    BadCertificate { path: PathBuf, message: String },
    #[error("no secure random source: {0}")]
    Random(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io { path: path.to_path_buf(), source }
}

/// A signing key with its public half.
pub struct Keypair {
    signing: SigningKey,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({})", self.key_id())
    }
}

impl Keypair {
    pub fn generate() -> Result<Keypair, KeyFileError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyFileError::Random(e.to_string()))?;
        Ok(Keypair { signing: SigningKey::from_bytes(&seed) })
    }

    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        Keypair { signing: SigningKey::from_bytes(&seed) }
    }

    pub fn signing(&self) -> &SigningKey {
        &self.signing
    }

    pub fn public(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.public())
    }

    /// Writes the key to a new file with mode 0600. Refuses to overwrite.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyFileError> {
        if path.exists() {
            return Err(KeyFileError::Exists(path.to_path_buf()));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(io(path))?;
        f.write_all(hex::encode(self.signing.to_bytes()).as_bytes()).map_err(io(path))?;
        f.write_all(b"\n").map_err(io(path))?;
        f.sync_all().map_err(io(path))?;
        Ok(())
    }

    /// Reads a key file, refusing one that others can read.
    pub fn read(path: &Path) -> Result<Keypair, KeyFileError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path).map_err(io(path))?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyFileError::TooOpen { path: path.to_path_buf(), mode });
            }
        }
        let text = fs::read_to_string(path).map_err(io(path))?;
        let bytes = hex::decode(text.trim()).map_err(|_| KeyFileError::Malformed(path.to_path_buf()))?;
        let seed: [u8; 32] = bytes.try_into().map_err(|_| KeyFileError::Malformed(path.to_path_buf()))?;
        Ok(Keypair::from_seed(seed))
    }
}

/// Public key as hex, for `enroll --public-key`.
pub fn public_hex(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

pub fn parse_public_hex(s: &str) -> Option<VerifyingKey> {
    let b: [u8; 32] = hex::decode(s.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&b).ok()
}

/// A certificate chain file: `[province root, county, (township)]` as JSON.
pub fn write_chain(path: &Path, chain: &[Certificate]) -> Result<(), KeyFileError> {
    let json = serde_json::to_vec_pretty(chain).expect("in-memory encoding");
    fs::write(path, json).map_err(io(path))
}

pub fn read_chain(path: &Path) -> Result<Vec<Certificate>, KeyFileError> {
    let text = fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&text)
        .map_err(|e| KeyFileError::BadCertificate { path: path.to_path_buf(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_private_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys/node.key");
        let k = Keypair::generate().unwrap();
        k.write_new(&p).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(Keypair::read(&p).unwrap().key_id(), k.key_id());
        assert!(matches!(k.write_new(&p), Err(KeyFileError::Exists(_))));
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&hex::encode(k.signing().to_bytes())));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(Keypair::read(&p), Err(KeyFileError::TooOpen { .. })));
        }
    }
}
