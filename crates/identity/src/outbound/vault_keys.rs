//! The vault's keys: a ring of XChaCha20-Poly1305 keys, the first of which seals; the others
//! still open what they sealed until a rotation has re-sealed it. Kept in a key file (one
//! base64url key per line) or given whole in `GATEHOUSE_VAULT_KEY`.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::error::IdentityError;

/// One key and the id rows record it by (the first 6 bytes of its SHA-256, in hex).
pub(super) struct Key {
    pub(super) id: String,
    raw: [u8; 32],
    cipher: XChaCha20Poly1305,
}

impl Key {
    pub(super) fn new(raw: [u8; 32]) -> Key {
        let digest = crate::cache::sha256(&raw);
        Key {
            id: digest[..6].iter().map(|b| format!("{b:02x}")).collect(),
            raw,
            cipher: XChaCha20Poly1305::new((&raw).into()),
        }
    }

    /// The same key again (the cipher holds no state worth sharing).
    pub(super) fn clone_key(&self) -> Key {
        Key::new(self.raw)
    }

    /// A fresh random key.
    pub(super) fn generate() -> Key {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        Key::new(raw)
    }

    pub(super) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption does not fail");
        let mut out = nonce.to_vec();
        out.extend(ct);
        out
    }

    pub(super) fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 24 {
            return None;
        }
        let (nonce, ct) = sealed.split_at(24);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .ok()
    }
}

/// The keys the vault holds: `keys[0]` seals, every one opens.
pub(super) struct Ring {
    pub(super) keys: Vec<Key>,
}

impl Ring {
    pub(super) fn current(&self) -> &Key {
        &self.keys[0]
    }

    pub(super) fn by_id(&self, id: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Parses a key file's or variable's text: one base64url key per line, blank lines and
    /// `#` comments ignored. Errors name the line, never a key.
    pub(super) fn parse(text: &str) -> Result<Ring, String> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let raw = decode_key(line).map_err(|e| format!("line {}: {e}", n + 1))?;
            keys.push(Key::new(raw));
        }
        if keys.is_empty() {
            return Err("no key in it (expected one base64url key of 32 bytes per line)".into());
        }
        Ok(Ring { keys })
    }

    /// The text of a key file holding these keys, the sealing one first.
    pub(super) fn to_file_text(&self) -> String {
        let mut text = String::from(
            "# Gatehouse vault keys: the first seals, the others only open what they sealed.\n",
        );
        for k in &self.keys {
            text.push_str(&B64.encode(k.raw));
            text.push('\n');
        }
        text
    }
}

fn decode_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = B64
        .decode(text.trim().trim_end_matches('='))
        .map_err(|_| "expected 32 bytes in base64url".to_string())?;
    bytes
        .try_into()
        .map_err(|_| "expected 32 bytes in base64url".to_string())
}

/// What identifies a version of the key file, to notice that another process rewrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    inode: u64,
}

pub(super) fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
}

/// Reads the key file at `path`; when it does not exist and `create` is set, makes one with a
/// fresh key (mode 0600).
pub(super) fn read_file(path: &Path, create: bool) -> Result<Ring, IdentityError> {
    let err = |reason: String| IdentityError::Config {
        reason: format!("vault key file {}: {reason}", path.display()),
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ring::parse(&text).map_err(err),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let ring = Ring {
                keys: vec![Key::generate()],
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            write_new(path, &ring.to_file_text()).map_err(|e| err(e.to_string()))?;
            Ok(ring)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(err(
            "it does not exist; a key file holds one base64url key of 32 bytes per line (make one with `head -c 32 /dev/urandom | basenc --base64url`)".into(),
        )),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Replaces the key file at once (a new file renamed over it), mode 0600.
pub(super) fn replace_file(path: &Path, ring: &Ring) -> Result<(), IdentityError> {
    let tmp: PathBuf = path.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = write_new(&tmp, &ring.to_file_text()).and_then(|()| std::fs::rename(&tmp, path));
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        IdentityError::Config {
            reason: format!("cannot write the vault key file {}: {e}", path.display()),
        }
    })
}

fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Reads the single key of `GATEHOUSE_VAULT_KEY`-style text (one or more lines).
pub(super) fn parse_env(text: &str) -> Result<Ring, String> {
    Ring::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_round_trips_through_its_file_text_and_keeps_the_sealing_key_first() {
        let ring = Ring {
            keys: vec![Key::generate(), Key::generate()],
        };
        let back = Ring::parse(&ring.to_file_text()).unwrap();
        assert_eq!(back.keys.len(), 2);
        assert_eq!(back.current().id, ring.current().id);
        let sealed = ring.keys[1].seal(b"aad", b"value");
        assert_eq!(
            back.by_id(&ring.keys[1].id)
                .unwrap()
                .open(b"aad", &sealed)
                .unwrap(),
            b"value"
        );
        assert!(back.current().open(b"aad", &sealed).is_none());
    }

    #[test]
    fn a_bad_line_is_named_without_echoing_it() {
        let good = B64.encode([7u8; 32]);
        let e = Ring::parse(&format!("# keys\n{good}\nnot-a-key-secret\n"))
            .err()
            .unwrap();
        assert_eq!(e, "line 3: expected 32 bytes in base64url");
        assert!(!e.contains("not-a-key-secret"));
        assert!(Ring::parse("\n# nothing\n").is_err());
    }

    #[test]
    fn a_missing_key_file_is_created_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/vault.key");
        let e = read_file(&path, false).err().unwrap().to_string();
        assert!(e.contains("does not exist"), "{e}");
        let made = read_file(&path, true).unwrap();
        let again = read_file(&path, false).unwrap();
        assert_eq!(made.current().id, again.current().id);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
