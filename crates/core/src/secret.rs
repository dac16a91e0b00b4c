//! Opaque secrets: API keys (`pdk_...`), session and refresh tokens,
//! confirmation codes and generated passwords, and the hash the store
//! keeps of them. Pure functions over a random source; no I/O.
//!
//! High-entropy secrets are stored as SHA-256 hex (a slow hash adds nothing
//! for 190-bit random values); passwords use argon2id instead, in the
//! built-in identity.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

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

/// A generated password that satisfies every identity's password policy
/// (upper and lower case, a digit, a symbol, at least 12 characters).
pub fn generated_password() -> String {
    format!("Pd{}-7a", random_token(12))
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
    fn generated_passwords_are_long_and_mixed() {
        for _ in 0..50 {
            let p = generated_password();
            assert!(p.len() >= 12);
            assert!(p.chars().any(|c| c.is_ascii_uppercase()));
            assert!(p.chars().any(|c| c.is_ascii_lowercase()));
            assert!(p.chars().any(|c| c.is_ascii_digit()));
        }
    }
}
