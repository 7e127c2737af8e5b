//! Secret parameters: sealed by the lake's own key, opened only for the function that declares
//! them.
//!
//! The key is 256 random bits in `<lake>/secret.key` (mode 0600), created on first use; in
//! server mode each tenant's lake has its own. It is never written to the catalog or the
//! warehouse, and the sandboxes do not mount the lake's folder, so a function cannot read it.
//!
//! A sealed value is AES-256-GCM over `{project_id}={value}` (Bauplan's plaintext, which pins it
//! to the project), with the parameter's name as associated data (so it opens under that name
//! only), stored as base64 of `nonce || ciphertext || tag`, with the key's id beside it.
//!
//! Symmetric rather than Bauplan's RSA-OAEP with a published public key: the lake (or the
//! server) must open the value at run time anyway, so the only thing a public key saves is
//! the plaintext's one trip to the server over the authenticated API when it is set; and
//! AES-GCM is already compiled into the build (through iceberg), where RSA is not.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use lakeplan_core::{Error, Result};
use lakeplan_pipeline::SealedSecret;
use sha2::{Digest, Sha256};

use crate::Lake;

/// The key file, in the lake's own folder.
pub(crate) const KEY_FILE: &str = "secret.key";
const NONCE_LEN: usize = 12;

/// The lake's key for secret parameters.
pub(crate) struct SecretKey {
    cipher: Aes256Gcm,
    /// The key's id, written beside each value it seals.
    id: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey").field("id", &self.id).finish()
    }
}

fn key_path(root: &Path) -> PathBuf {
    root.join(KEY_FILE)
}

fn set_again(name: &str) -> String {
    format!("set it again on this lake with `lakeplan parameter set {name} VALUE --type secret`")
}

impl SecretKey {
    fn from_bytes(bytes: &[u8; 32]) -> SecretKey {
        let mut h = Sha256::new();
        h.update(b"lakeplan secret key id\0");
        h.update(bytes);
        SecretKey {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes)),
            id: format!("lakeplan:{}", &hex::encode(h.finalize())[..16]),
        }
    }

    /// The key of the lake at `root`, or None when it has none yet.
    pub(crate) fn load(root: &Path) -> Result<Option<SecretKey>> {
        let path = key_path(root);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path.display(), e)),
        };
        let bytes: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                Error::InvalidData {
                    path: path.display().to_string(),
                    message: "the lake's secret key file is not 64 hex digits; secrets sealed with it cannot be opened".into(),
                }
            })?;
        Ok(Some(SecretKey::from_bytes(&bytes)))
    }

    /// The key of the lake at `root`, created (mode 0600) when it has none. Two processes
    /// creating it at once agree: the file appears complete, once (a link of a written file).
    pub(crate) fn load_or_create(root: &Path) -> Result<SecretKey> {
        if let Some(k) = SecretKey::load(root)? {
            return Ok(k);
        }
        let key = Aes256Gcm::generate_key(OsRng);
        let path = key_path(root);
        let tmp = root.join(format!(".{KEY_FILE}.{}", uuid::Uuid::new_v4().simple()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(hex::encode(key.as_slice()).as_bytes())?;
                f.sync_all()
            });
        let linked = written.and_then(|()| std::fs::hard_link(&tmp, &path));
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(path.display(), e)),
        }
        SecretKey::load(root)?.ok_or_else(|| {
            Error::Internal(format!("{} vanished after it was created", path.display()))
        })
    }

    /// Seals `value` for parameter `name` of project `project_id`.
    pub(crate) fn seal(&self, project_id: &str, name: &str, value: &str) -> Result<SealedSecret> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let plaintext = format!("{project_id}={value}");
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| Error::Internal(format!("sealing parameter '{name}' failed")))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        Ok(SealedSecret {
            name: name.to_string(),
            project_id: project_id.to_string(),
            ciphertext: base64::engine::general_purpose::STANDARD.encode(blob),
            key: self.id.clone(),
        })
    }

    /// Opens `sealed`. Every failure names the parameter and what to do, never a value.
    pub(crate) fn open(&self, sealed: &SealedSecret) -> Result<String> {
        let name = &sealed.name;
        if sealed.key != self.id {
            return Err(Error::InvalidInput(format!(
                "secret parameter '{name}' was sealed with key '{}', which this lake does not hold (its key is '{}'): a project file from another lake, tenant or from Bauplan carries secrets only their key opens; {}",
                sealed.key,
                self.id,
                set_again(name)
            )));
        }
        let unreadable = || {
            Error::InvalidInput(format!(
                "secret parameter '{name}' does not open with this lake's key (its ciphertext was changed, or sealed for another parameter); {}",
                set_again(name)
            ))
        };
        let blob = base64::engine::general_purpose::STANDARD
            .decode(sealed.ciphertext.trim())
            .map_err(|_| unreadable())?;
        if blob.len() <= NONCE_LEN {
            return Err(unreadable());
        }
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| unreadable())?;
        let plain = String::from_utf8(plain).map_err(|_| unreadable())?;
        let prefix = format!("{}=", sealed.project_id);
        match plain.strip_prefix(&prefix) {
            Some(value) => Ok(value.to_string()),
            None => {
                let sealed_for = plain.split_once('=').map_or("", |(p, _)| p);
                Err(Error::InvalidInput(format!(
                    "secret parameter '{name}' was sealed for project '{sealed_for}', not this project ('{}'); {}",
                    sealed.project_id,
                    set_again(name)
                )))
            }
        }
    }
}

/// Writes a secret's plaintext to `path`, readable by its owner only.
pub(crate) fn write_private(path: &Path, value: &str) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| Error::io(path.display(), e))
}

impl Lake {
    /// Seals `value` as the secret parameter `name` of project `project_id` with this lake's
    /// key (created on first use), for `lakeplan parameter set NAME VALUE --type secret` to
    /// write into the project file. The value is not kept, logged or audited.
    pub fn seal_secret(
        &self,
        project_id: Option<&str>,
        name: &str,
        value: &str,
    ) -> Result<SealedSecret> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::InvalidInput(format!(
                "parameter name '{name}' must use only letters, digits and '_'"
            )));
        }
        let sealed = SecretKey::load_or_create(&self.root)?.seal(
            project_id.unwrap_or_default(),
            name,
            value,
        )?;
        self.record(
            "parameter.seal",
            name,
            serde_json::json!({"project_id": project_id, "key": sealed.key}),
            None,
        );
        Ok(sealed)
    }
}

/// Opens `sealed` with the key of the lake at `root`.
pub(crate) fn open(root: &Path, sealed: &SealedSecret) -> Result<String> {
    match SecretKey::load(root)? {
        Some(k) => k.open(sealed),
        None => Err(Error::InvalidInput(format!(
            "secret parameter '{}' was sealed with key '{}', and this lake has no secret key yet (none was ever set here); {}",
            sealed.name,
            sealed.key,
            set_again(&sealed.name)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let k = SecretKey::load_or_create(d.path()).unwrap();
        let s = k.seal("p1", "token", "hunter2").unwrap();
        assert!(!s.ciphertext.contains("hunter2"));
        assert_eq!(s.key, k.id);
        assert_eq!(open(d.path(), &s).unwrap(), "hunter2");
        // Sealing twice gives two ciphertexts (a fresh nonce each time).
        assert_ne!(
            k.seal("p1", "token", "hunter2").unwrap().ciphertext,
            s.ciphertext
        );
        // The same key is loaded again, not replaced.
        let again = SecretKey::load_or_create(d.path()).unwrap();
        assert_eq!(again.id, k.id);
        let mode = std::fs::metadata(d.path().join(KEY_FILE))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    #[test]
    fn open_refuses_other_keys_names_projects_and_tampering() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let ka = SecretKey::load_or_create(a.path()).unwrap();
        let s = ka.seal("p1", "token", "hunter2").unwrap();
        // No key at all.
        let e = open(b.path(), &s).unwrap_err().to_string();
        assert!(e.contains("'token'") && !e.contains("hunter2"), "{e}");
        // Another lake's key.
        SecretKey::load_or_create(b.path()).unwrap();
        let e = open(b.path(), &s).unwrap_err().to_string();
        assert!(e.contains("'token'") && e.contains("does not hold"), "{e}");
        // Another parameter's name.
        let renamed = SealedSecret {
            name: "other".into(),
            ..s.clone()
        };
        let e = open(a.path(), &renamed).unwrap_err().to_string();
        assert!(e.contains("'other'") && e.contains("does not open"), "{e}");
        // Another project.
        let moved = SealedSecret {
            project_id: "p2".into(),
            ..s.clone()
        };
        let e = open(a.path(), &moved).unwrap_err().to_string();
        assert!(e.contains("project 'p1'") && !e.contains("hunter2"), "{e}");
        // A changed ciphertext.
        let mut blob = base64::engine::general_purpose::STANDARD
            .decode(&s.ciphertext)
            .unwrap();
        let last = blob.len() - 1;
        blob[last] ^= 1;
        let tampered = SealedSecret {
            ciphertext: base64::engine::general_purpose::STANDARD.encode(blob),
            ..s.clone()
        };
        let e = open(a.path(), &tampered).unwrap_err().to_string();
        assert!(e.contains("does not open"), "{e}");
        let garbage = SealedSecret {
            ciphertext: "not base64!".into(),
            ..s
        };
        assert!(open(a.path(), &garbage).is_err());
    }

    #[test]
    fn a_bad_key_file_is_an_error_not_a_new_key() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(KEY_FILE), "short").unwrap();
        let e = SecretKey::load_or_create(d.path()).unwrap_err().to_string();
        assert!(e.contains("64 hex digits"), "{e}");
    }
}
