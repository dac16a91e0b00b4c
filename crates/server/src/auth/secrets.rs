//! Opaque secrets: API keys (`pdk_...`), refresh tokens, confirmation codes,
//! and the JWT signing key kept on disk with mode 0600.
//!
//! High-entropy secrets are stored as SHA-256 hex (a slow hash adds nothing
//! for 190-bit random values); passwords use argon2id instead.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// The prefix every API key starts with.
pub const API_KEY_PREFIX: &str = "pdk_";

/// SHA-256 of a secret, hex-encoded: what the store keeps.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// `n` random bytes, URL-safe base64.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A new API key secret: `pdk_` and 32 alphanumeric characters.
pub fn new_api_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let body: String = (0..32)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{API_KEY_PREFIX}{body}")
}

/// A six-digit confirmation code.
pub fn confirmation_code() -> String {
    format!("{:06}", rand::thread_rng().gen_range(0..1_000_000))
}

/// A generated password that satisfies the policy.
pub fn generated_password() -> String {
    format!("Pd{}-7a", random_token(12))
}

/// Reads the 32-byte signing key at `path`, creating it (mode 0600) on
/// first start.
pub fn load_or_create_key(path: &Path) -> std::io::Result<Vec<u8>> {
    if let Ok(existing) = std::fs::read(path) {
        if existing.len() >= 32 {
            return Ok(existing);
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut key = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(&key)?;
    f.sync_all()?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_look_right() {
        let k = new_api_key();
        assert!(k.starts_with("pdk_"));
        assert_eq!(k.len(), 36);
        assert_ne!(k, new_api_key());
    }

    #[test]
    fn generated_passwords_pass_policy() {
        for _ in 0..50 {
            super::super::password::check_policy(&generated_password()).unwrap();
        }
    }

    #[test]
    fn signing_key_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secrets/jwt.key");
        let a = load_or_create_key(&p).unwrap();
        let b = load_or_create_key(&p).unwrap();
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
