//! The hash chain and its signed checkpoints.
//!
//! Every journal line carries `prev`, the SHA-256 of the line before it (the first line of a
//! journal carries [`GENESIS`]), so editing, deleting or reordering a line breaks the chain at
//! the next one. Truncating the end leaves no next line, so the writer also signs
//! checkpoints — (instance, seq, hash of that line) — with an Ed25519 key, at least every
//! second while events arrive, at every segment change and at shutdown: a chain shorter than
//! a signed checkpoint was cut.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::AuditError;

/// `prev` of the first line of every journal.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// SHA-256 of one journal line (without its newline), hex.
pub fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

/// A signed statement that line `seq` of `instance`'s chain hashes to `hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The journal (gateway process) whose chain this is.
    pub instance: String,
    /// The line's sequence number.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
    /// The segment file that holds it.
    pub segment: String,
    /// Its line number in that file (1-based).
    pub line: u64,
    /// When the checkpoint was signed.
    pub time: String,
    /// Which key signed it ([`key_id`]).
    pub key_id: String,
    /// Ed25519 signature of [`Checkpoint::message`], base64.
    pub sig: String,
}

impl Checkpoint {
    /// The bytes that are signed: every field but the signature, one per line.
    pub fn message(&self) -> String {
        format!(
            "gatehouse-audit-checkpoint/v1\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            self.instance, self.seq, self.hash, self.segment, self.line, self.time, self.key_id
        )
    }

    /// Whether `key` signed this checkpoint.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        verify_detached(key, self.message().as_bytes(), &self.sig)
    }
}

/// A short, stable name of a public key: the first 16 hex digits of the SHA-256 of its raw
/// bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// The key that signs checkpoints.
#[derive(Debug)]
pub struct CheckpointSigner {
    key: SigningKey,
    id: String,
}

impl CheckpointSigner {
    /// Loads the PKCS#8 PEM (or base64 of 32 raw bytes) private key at `path`; creates it
    /// (mode 0600) when `create` is set and the file does not exist.
    pub fn load_or_create(path: &Path, create: bool) -> Result<CheckpointSigner, AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        };
        if create && !path.exists() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let mut seed = [0u8; 32];
            rand::fill(&mut seed);
            let key = SigningKey::from_bytes(&seed);
            let pem = key
                .to_pkcs8_pem(Default::default())
                .map_err(|e| AuditError::Key {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            write_private(path, pem.as_bytes()).map_err(io)?;
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let key = parse_private(&text).map_err(|reason| AuditError::Key {
            path: path.to_path_buf(),
            reason,
        })?;
        let id = key_id(&key.verifying_key());
        Ok(CheckpointSigner { key, id })
    }

    /// The id of the public key.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// The public key as PEM (SubjectPublicKeyInfo).
    pub fn public_pem(&self) -> String {
        self.key
            .verifying_key()
            .to_public_key_pem(Default::default())
            .expect("an Ed25519 public key encodes")
    }

    /// Signs `message` (e.g. an export's manifest): the base64 Ed25519 signature, checked
    /// with [`verify_detached`].
    pub fn sign_detached(&self, message: &[u8]) -> String {
        B64.encode(self.key.sign(message).to_bytes())
    }

    /// Signs a checkpoint for line `seq` of `instance`.
    pub fn sign(
        &self,
        instance: &str,
        seq: u64,
        hash: &str,
        segment: &str,
        line: u64,
    ) -> Checkpoint {
        let mut cp = Checkpoint {
            instance: instance.to_string(),
            seq,
            hash: hash.to_string(),
            segment: segment.to_string(),
            line,
            time: crate::event::now_rfc3339(),
            key_id: self.id.clone(),
            sig: String::new(),
        };
        cp.sig = self.sign_detached(cp.message().as_bytes());
        cp
    }
}

fn parse_private(text: &str) -> Result<SigningKey, String> {
    let t = text.trim();
    if t.starts_with("-----BEGIN") {
        return SigningKey::from_pkcs8_pem(t)
            .map_err(|e| format!("not an Ed25519 PKCS#8 private key: {e}"));
    }
    let raw = B64.decode(t).map_err(|_| {
        "expected a PKCS#8 PEM Ed25519 private key or 32 bytes in base64".to_string()
    })?;
    let seed: [u8; 32] = raw
        .try_into()
        .map_err(|_| "a base64 key must be exactly 32 bytes".to_string())?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Reads a public key: PEM (SubjectPublicKeyInfo), or a private key file (its public half).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, AuditError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let key_err = |reason: String| AuditError::Key {
        path: path.to_path_buf(),
        reason,
    };
    if text.contains("PUBLIC KEY") {
        return VerifyingKey::from_public_key_pem(text.trim())
            .map_err(|e| key_err(format!("not an Ed25519 public key: {e}")));
    }
    parse_private(&text)
        .map(|k| k.verifying_key())
        .map_err(key_err)
}

/// Whether `sig` (base64, from [`CheckpointSigner::sign_detached`]) signs `message` with
/// `key`.
pub fn verify_detached(key: &VerifyingKey, message: &[u8], sig: &str) -> bool {
    let Ok(bytes) = B64.decode(sig.trim()) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(&bytes) else {
        return false;
    };
    key.verify(message, &sig).is_ok()
}

/// The file that publishes a key's public half next to the journal.
pub fn public_key_path(audit_dir: &Path, key_id: &str) -> PathBuf {
    audit_dir.join("keys").join(format!("{key_id}.pem"))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_verify_only_with_their_key_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let signer = CheckpointSigner::load_or_create(&path, true).unwrap();
        let again = CheckpointSigner::load_or_create(&path, true).unwrap();
        assert_eq!(signer.key_id(), again.key_id(), "the key is created once");
        let public = read_public_key(&path).unwrap();
        let cp = signer.sign("i", 7, &line_hash(b"x"), "i-000001.jsonl", 7);
        assert!(cp.verify(&public));
        let mut forged = cp.clone();
        forged.seq = 6;
        assert!(!forged.verify(&public));
        let other = CheckpointSigner::load_or_create(&dir.path().join("o.pem"), true).unwrap();
        let pem = dir.path().join("o.pub");
        std::fs::write(&pem, other.public_pem()).unwrap();
        assert!(!cp.verify(&read_public_key(&pem).unwrap()));
        assert!(matches!(
            CheckpointSigner::load_or_create(&dir.path().join("missing"), false),
            Err(AuditError::Io { .. })
        ));
        std::fs::write(dir.path().join("bad"), "nonsense").unwrap();
        assert!(matches!(
            CheckpointSigner::load_or_create(&dir.path().join("bad"), false),
            Err(AuditError::Key { .. })
        ));
    }
}
