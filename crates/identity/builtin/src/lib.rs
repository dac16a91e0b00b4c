//! Built-in accounts: users in the [`Store`], argon2id passwords, HS256
//! JWT access tokens signed with a key generated at first start, rotating
//! refresh tokens with reuse detection, and confirmation codes by
//! [`Mailer`]. Mirrors the Cognito flow of the original system, including
//! NEW_PASSWORD_REQUIRED for users an admin created.

pub mod mailer;
pub mod password;
pub mod signing_key;
pub mod throttle;

use crate::mailer::Mailer;
use crate::throttle::LoginThrottle;
use async_trait::async_trait;
use chrono::Duration;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use paddock_core::identity::{Identity, IdentityError, LoginOutcome, PasswordAccounts, Tokens};
use paddock_core::secret::{confirmation_code, random_token, sha256_hex};
use paddock_core::store::{CredentialStore, Store, StoreError};
use paddock_core::user::{ConfirmationCode, Principal, RefreshToken, Role, User};
use paddock_core::Clock;
use paddock_core::UserId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Token lifetimes and limits for [`BuiltinIdentity`].
#[derive(Debug, Clone)]
pub struct BuiltinSettings {
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    pub confirmation_ttl_secs: u64,
    pub login_max_failures: u32,
    pub login_lockout_secs: u64,
}

const TOKEN_ACCESS: &str = "access";
const TOKEN_NEW_PASSWORD: &str = "new_password";
const NEW_PASSWORD_SESSION_SECS: i64 = 600;
/// Codes that may be tried against one confirmation code.
const MAX_CODE_ATTEMPTS: u32 = 5;
/// Times a user write is retried (re-read and re-applied) when another
/// write landed between its read and its write.
const USER_WRITE_RETRIES: usize = 5;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    email: String,
    role: Role,
    typ: String,
    iat: i64,
    exp: i64,
    jti: String,
}

/// Accounts kept by paddock itself.
pub struct BuiltinIdentity {
    store: Arc<dyn Store>,
    /// Confirmation codes and refresh tokens: records no other identity keeps.
    credentials: Arc<dyn CredentialStore>,
    mailer: Arc<dyn Mailer>,
    clock: Clock,
    settings: BuiltinSettings,
    throttle: LoginThrottle,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for BuiltinIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinIdentity")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn backend(e: StoreError) -> IdentityError {
    IdentityError::Internal(e.to_string())
}

/// Lower-cases and checks an email address.
pub fn normalize_email(email: &str) -> Result<String, IdentityError> {
    let e = email.trim().to_lowercase();
    let invalid = || IdentityError::InvalidInput {
        field: "email",
        message: "must be an email address like name@example.com".into(),
    };
    let (local, domain) = e.split_once('@').ok_or_else(invalid)?;
    if local.is_empty()
        || domain.is_empty()
        || domain.starts_with('.')
        || domain.ends_with('.')
        || e.len() > 254
        || e.chars().any(|c| c.is_whitespace() || c.is_control())
        || domain.contains('@')
    {
        return Err(invalid());
    }
    Ok(e)
}

async fn hash_blocking(password: String) -> Result<String, IdentityError> {
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|e| IdentityError::Internal(e.to_string()))?
}

async fn verify_blocking(password: String, phc: String) -> bool {
    tokio::task::spawn_blocking(move || password::verify(&password, &phc))
        .await
        .unwrap_or(false)
}

impl BuiltinIdentity {
    pub fn new(
        store: Arc<dyn Store>,
        credentials: Arc<dyn CredentialStore>,
        mailer: Arc<dyn Mailer>,
        clock: Clock,
        signing_key: &[u8],
        settings: BuiltinSettings,
    ) -> Self {
        BuiltinIdentity {
            throttle: LoginThrottle::new(
                settings.login_max_failures,
                settings.login_lockout_secs,
                clock.clone(),
            ),
            store,
            credentials,
            mailer,
            clock,
            settings,
            encoding: EncodingKey::from_secret(signing_key),
            decoding: DecodingKey::from_secret(signing_key),
        }
    }

    fn sign(&self, user: &User, typ: &str, ttl_secs: i64) -> Result<String, IdentityError> {
        let now = self.clock.now();
        let claims = Claims {
            sub: user.user_id.to_string(),
            email: user.email.clone(),
            role: user.role,
            typ: typ.to_owned(),
            iat: now.timestamp(),
            exp: (now + Duration::seconds(ttl_secs)).timestamp(),
            jti: random_token(9),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| IdentityError::Internal(format!("signing: {e}")))
    }

    fn verify_token(&self, token: &str, typ: &str) -> Result<Claims, IdentityError> {
        let mut v = Validation::new(Algorithm::HS256);
        // Expiry is checked against our clock below (tests move it).
        v.validate_exp = false;
        v.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map_err(|_| IdentityError::InvalidToken)?;
        let c = data.claims;
        if c.typ != typ || c.exp <= self.clock.now().timestamp() {
            return Err(IdentityError::InvalidToken);
        }
        Ok(c)
    }

    async fn issue_tokens(
        &self,
        user: &User,
        family: Option<String>,
    ) -> Result<Tokens, IdentityError> {
        let access = self.sign(user, TOKEN_ACCESS, self.settings.access_ttl_secs as i64)?;
        let refresh = random_token(32);
        let now = self.clock.now();
        self.credentials
            .insert_refresh_token(&RefreshToken {
                token_hash: sha256_hex(&refresh),
                user_id: user.user_id.clone(),
                family_id: family.unwrap_or_else(|| random_token(12)),
                created_at: now,
                expires_at: now + Duration::seconds(self.settings.refresh_ttl_secs as i64),
                used_at: None,
                revoked_at: None,
            })
            .await
            .map_err(backend)?;
        Ok(Tokens {
            access_token: access,
            refresh_token: refresh,
            token_type: "Bearer".into(),
            expires_in: self.settings.access_ttl_secs,
        })
    }

    async fn send_code(&self, email: &str) -> Result<(), IdentityError> {
        let code = confirmation_code();
        self.credentials
            .put_confirmation(&ConfirmationCode {
                email: email.to_owned(),
                code_hash: sha256_hex(&format!("{email}:{code}")),
                expires_at: self.clock.now()
                    + Duration::seconds(self.settings.confirmation_ttl_secs as i64),
                attempts: 0,
            })
            .await
            .map_err(backend)?;
        self.mailer.send_confirmation(email, &code);
        Ok(())
    }

    /// Applies `change` to `user` and writes it, compare-and-swap on its
    /// version. If another write landed since `user` was read (an admin
    /// disabling the account, say), the stored record is read again and
    /// `change` applied to that instead, so the other write is never
    /// undone. `change` sees the latest record each time and may refuse it.
    async fn write_user(
        &self,
        mut user: User,
        mut change: impl FnMut(&mut User) -> Result<(), IdentityError> + Send,
    ) -> Result<User, IdentityError> {
        let mut retries = 0;
        loop {
            change(&mut user)?;
            user.updated_at = self.clock.now();
            match self.store.update_user(&user).await {
                Ok(stored) => return Ok(stored),
                Err(StoreError::Stale(_)) if retries < USER_WRITE_RETRIES => {
                    retries += 1;
                    user = self
                        .store
                        .get_user(&user.user_id)
                        .await
                        .map_err(backend)?
                        .ok_or(IdentityError::InvalidToken)?;
                }
                Err(e) => return Err(backend(e)),
            }
        }
    }

    async fn usable_user(&self, id: &UserId) -> Result<User, IdentityError> {
        match self.store.get_user(id).await.map_err(backend)? {
            Some(u) if u.disabled => Err(IdentityError::Disabled),
            Some(u) => Ok(u),
            None => Err(IdentityError::InvalidToken),
        }
    }
}

#[async_trait]
impl PasswordAccounts for BuiltinIdentity {
    async fn admin_create_user(
        &self,
        email: &str,
        password: &str,
        role: Role,
        must_change: bool,
    ) -> Result<User, IdentityError> {
        let email = normalize_email(email)?;
        password::check_policy(password)?;
        let now = self.clock.now();
        let user = User {
            user_id: UserId::generate(),
            email,
            password_hash: hash_blocking(password.to_owned()).await?,
            role,
            confirmed: true,
            disabled: false,
            must_change_password: must_change,
            created_at: now,
            updated_at: now,
            version: 0,
        };
        match self.store.create_user(&user).await {
            Ok(()) => Ok(user),
            Err(StoreError::Conflict(_)) => Err(IdentityError::AlreadyExists),
            Err(e) => Err(backend(e)),
        }
    }

    async fn admin_reset_password(
        &self,
        user: &UserId,
        temporary_password: &str,
    ) -> Result<(), IdentityError> {
        password::check_policy(temporary_password)?;
        let record = self
            .store
            .get_user(user)
            .await
            .map_err(backend)?
            .ok_or(IdentityError::InvalidToken)?;
        let hash = hash_blocking(temporary_password.to_owned()).await?;
        self.write_user(record, |u| {
            u.password_hash = hash.clone();
            u.must_change_password = true;
            Ok(())
        })
        .await?;
        self.end_sessions(user).await
    }

    async fn admin_delete_user(&self, user: &UserId) -> Result<(), IdentityError> {
        self.end_sessions(user).await?;
        self.store.delete_user(user).await.map_err(backend)
    }

    async fn signup(&self, email: &str, password: &str) -> Result<UserId, IdentityError> {
        let email = normalize_email(email)?;
        password::check_policy(password)?;
        if let Some(existing) = self
            .store
            .get_user_by_email(&email)
            .await
            .map_err(backend)?
        {
            if existing.confirmed {
                return Err(IdentityError::AlreadyExists);
            }
            // Signing up again before confirming replaces the password and
            // sends a fresh code, as Cognito lets an unconfirmed user retry.
            let hash = hash_blocking(password.to_owned()).await?;
            let u = self
                .write_user(existing, |u| {
                    if u.confirmed {
                        return Err(IdentityError::AlreadyExists);
                    }
                    u.password_hash.clone_from(&hash);
                    Ok(())
                })
                .await?;
            self.send_code(&email).await?;
            return Ok(u.user_id);
        }
        let now = self.clock.now();
        let user = User {
            user_id: UserId::generate(),
            email: email.clone(),
            password_hash: hash_blocking(password.to_owned()).await?,
            role: Role::User,
            confirmed: false,
            disabled: false,
            must_change_password: false,
            created_at: now,
            updated_at: now,
            version: 0,
        };
        match self.store.create_user(&user).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Err(IdentityError::AlreadyExists),
            Err(e) => return Err(backend(e)),
        }
        self.send_code(&email).await?;
        Ok(user.user_id)
    }

    async fn confirm(&self, email: &str, code: &str) -> Result<(), IdentityError> {
        let email = normalize_email(email)?;
        let code = code.trim();
        if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
            return Err(IdentityError::InvalidInput {
                field: "code",
                message: "must be the 6-digit code that was sent".into(),
            });
        }
        let Some(user) = self
            .store
            .get_user_by_email(&email)
            .await
            .map_err(backend)?
        else {
            return Err(IdentityError::CodeMismatch);
        };
        if user.confirmed {
            return Ok(());
        }
        // Each try is counted before it is checked, in one store step, so
        // that guesses sent at once cannot try more codes than the limit.
        let Some(pending) = self
            .credentials
            .count_confirmation_attempt(&email)
            .await
            .map_err(backend)?
        else {
            return Err(IdentityError::Expired("the confirmation code"));
        };
        if pending.expires_at <= self.clock.now() || pending.attempts > MAX_CODE_ATTEMPTS {
            return Err(IdentityError::Expired("the confirmation code"));
        }
        if pending.code_hash != sha256_hex(&format!("{email}:{code}")) {
            return Err(IdentityError::CodeMismatch);
        }
        self.write_user(user, |u| {
            u.confirmed = true;
            Ok(())
        })
        .await?;
        self.credentials
            .delete_confirmation(&email)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn resend_code(&self, email: &str) -> Result<(), IdentityError> {
        let email = normalize_email(email)?;
        match self
            .store
            .get_user_by_email(&email)
            .await
            .map_err(backend)?
        {
            // Say nothing about whether the address is registered.
            None => Ok(()),
            Some(u) if u.confirmed => Ok(()),
            Some(_) => self.send_code(&email).await,
        }
    }

    async fn login(&self, email: &str, password: &str) -> Result<LoginOutcome, IdentityError> {
        let email = normalize_email(email)?;
        if let Some(retry_after_secs) = self.throttle.retry_after(&email) {
            return Err(IdentityError::Throttled { retry_after_secs });
        }
        let user = self
            .store
            .get_user_by_email(&email)
            .await
            .map_err(backend)?;
        let phc = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| password::dummy_hash().to_owned());
        let ok = verify_blocking(password.to_owned(), phc).await;
        let user = match (ok, user) {
            (true, Some(u)) => u,
            _ => {
                if let Some(retry_after_secs) = self.throttle.failed(&email) {
                    return Err(IdentityError::Throttled { retry_after_secs });
                }
                return Err(IdentityError::InvalidCredentials);
            }
        };
        self.throttle.succeeded(&email);
        if user.disabled {
            return Err(IdentityError::Disabled);
        }
        if !user.confirmed {
            return Err(IdentityError::NotConfirmed);
        }
        if user.must_change_password {
            let session = self.sign(&user, TOKEN_NEW_PASSWORD, NEW_PASSWORD_SESSION_SECS)?;
            return Ok(LoginOutcome::NewPasswordRequired { session });
        }
        Ok(LoginOutcome::Tokens(self.issue_tokens(&user, None).await?))
    }

    async fn complete_new_password(
        &self,
        email: &str,
        session: &str,
        new_password: &str,
    ) -> Result<Tokens, IdentityError> {
        let email = normalize_email(email)?;
        let claims = self.verify_token(session, TOKEN_NEW_PASSWORD)?;
        if claims.email != email {
            return Err(IdentityError::InvalidToken);
        }
        password::check_policy(new_password)?;
        let user = self.usable_user(&UserId::new(claims.sub)).await?;
        if !user.must_change_password {
            return Err(IdentityError::InvalidToken);
        }
        let temporary = user.password_hash.clone();
        if verify_blocking(new_password.to_owned(), temporary.clone()).await {
            return Err(IdentityError::InvalidInput {
                field: "new_password",
                message: "must differ from the temporary password".into(),
            });
        }
        let hash = hash_blocking(new_password.to_owned()).await?;
        // Re-checked on the record written: the account may have been
        // disabled, or the password set, since it was read.
        let user = self
            .write_user(user, |u| {
                if u.disabled {
                    return Err(IdentityError::Disabled);
                }
                if !u.must_change_password || u.password_hash != temporary {
                    return Err(IdentityError::InvalidToken);
                }
                u.password_hash.clone_from(&hash);
                u.must_change_password = false;
                Ok(())
            })
            .await?;
        self.issue_tokens(&user, None).await
    }

    async fn change_password(
        &self,
        user_id: &UserId,
        old_password: &str,
        new_password: &str,
    ) -> Result<(), IdentityError> {
        let user = self.usable_user(user_id).await?;
        let not_current = || IdentityError::InvalidInput {
            field: "old_password",
            message: "is not your current password".into(),
        };
        let verified = user.password_hash.clone();
        if !verify_blocking(old_password.to_owned(), verified.clone()).await {
            return Err(not_current());
        }
        password::check_policy(new_password).map_err(|e| match e {
            IdentityError::InvalidInput { message, .. } => IdentityError::InvalidInput {
                field: "new_password",
                message,
            },
            other => other,
        })?;
        let hash = hash_blocking(new_password.to_owned()).await?;
        // Re-checked on the record written: a disable since the read stays,
        // and a password changed since is no longer the one verified.
        self.write_user(user, |u| {
            if u.disabled {
                return Err(IdentityError::Disabled);
            }
            if u.password_hash != verified {
                return Err(not_current());
            }
            u.password_hash.clone_from(&hash);
            u.must_change_password = false;
            Ok(())
        })
        .await?;
        self.credentials
            .revoke_user_refresh_tokens(user_id, self.clock.now())
            .await
            .map_err(backend)
    }
}

#[async_trait]
impl Identity for BuiltinIdentity {
    fn passwords(&self) -> Option<&dyn PasswordAccounts> {
        Some(self)
    }

    async fn end_sessions(&self, user: &UserId) -> Result<(), IdentityError> {
        self.credentials
            .revoke_user_refresh_tokens(user, self.clock.now())
            .await
            .map_err(backend)
    }

    async fn refresh(&self, refresh_token: &str) -> Result<Tokens, IdentityError> {
        let hash = sha256_hex(refresh_token);
        let now = self.clock.now();
        let Some(stored) = self
            .credentials
            .get_refresh_token(&hash)
            .await
            .map_err(backend)?
        else {
            return Err(IdentityError::InvalidToken);
        };
        if stored.revoked_at.is_some() || stored.expires_at <= now {
            return Err(IdentityError::InvalidToken);
        }
        if !self
            .credentials
            .consume_refresh_token(&hash, now)
            .await
            .map_err(backend)?
        {
            // A token presented twice: someone else holds a copy. End the family.
            tracing::warn!(user = %stored.user_id, "refresh token reuse detected; revoking its family");
            self.credentials
                .revoke_refresh_family(&stored.family_id, now)
                .await
                .map_err(backend)?;
            return Err(IdentityError::InvalidToken);
        }
        let user = self.usable_user(&stored.user_id).await?;
        self.issue_tokens(&user, Some(stored.family_id)).await
    }

    async fn logout(&self, refresh_token: &str) -> Result<(), IdentityError> {
        let hash = sha256_hex(refresh_token);
        if let Some(stored) = self
            .credentials
            .get_refresh_token(&hash)
            .await
            .map_err(backend)?
        {
            self.credentials
                .revoke_refresh_family(&stored.family_id, self.clock.now())
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    async fn authenticate(&self, access_token: &str) -> Result<Principal, IdentityError> {
        let claims = self.verify_token(access_token, TOKEN_ACCESS)?;
        let user = self.usable_user(&UserId::new(claims.sub)).await?;
        Ok(Principal {
            user_id: user.user_id,
            email: user.email,
            role: user.role,
            api_key: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(normalize_email(" A@Example.COM ").unwrap(), "a@example.com");
        for bad in ["", "a", "a@", "@b", "a@b@c", "a b@c.d", "a@.com"] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }
}
