//! Password policy (Cognito's default: 8+ characters with an upper-case
//! letter, a lower-case letter, a digit and a symbol) and argon2id hashing.
//! Hashing is CPU-heavy, so callers run it on the blocking pool.

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, PasswordHash};
use paddock_core::identity::IdentityError;

/// Checks the policy; the error names the first rule that failed.
pub fn check_policy(password: &str) -> Result<(), IdentityError> {
    let fail = |message: &str| {
        Err(IdentityError::InvalidInput {
            field: "password",
            message: message.to_owned(),
        })
    };
    if password.chars().count() < 8 {
        return fail("must be at least 8 characters long");
    }
    if password.len() > 256 {
        return fail("must be at most 256 bytes long");
    }
    if !password.chars().any(|c| c.is_uppercase()) {
        return fail("must contain an upper-case letter");
    }
    if !password.chars().any(|c| c.is_lowercase()) {
        return fail("must contain a lower-case letter");
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        return fail("must contain a digit");
    }
    if !password
        .chars()
        .any(|c| !c.is_alphanumeric() && !c.is_whitespace())
    {
        return fail("must contain a symbol such as ! @ # $ %");
    }
    Ok(())
}

/// An argon2id PHC string for `password`.
pub fn hash(password: &str) -> Result<String, IdentityError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| IdentityError::Internal(format!("hashing failed: {e}")))
}

/// Whether `password` matches the stored hash.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to verify against when the user does not exist, so that a wrong
/// email costs as long as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash("Dummy-passw0rd!").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_the_rule() {
        let msg = |p| check_policy(p).unwrap_err().to_string();
        assert!(msg("Ab1!").contains("8 characters"));
        assert!(msg("abcdefg1!").contains("upper-case"));
        assert!(msg("ABCDEFG1!").contains("lower-case"));
        assert!(msg("Abcdefgh!").contains("digit"));
        assert!(msg("Abcdefgh1").contains("symbol"));
        assert!(check_policy("Abcdefg1!").is_ok());
    }

    #[test]
    fn hash_and_verify() {
        let h = hash("Abcdefg1!").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("Abcdefg1!", &h));
        assert!(!verify("Abcdefg1?", &h));
        assert!(!verify("x", "not a hash"));
    }
}
