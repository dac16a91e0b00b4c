//! The [`Identity`] trait: who may sign in and how sessions are issued.
//!
//! What every identity does is [`Identity`]: check an access token, rotate
//! and revoke refresh tokens. What only an identity that keeps passwords
//! does (sign up, confirm, log in, change passwords, admin-created users)
//! is [`PasswordAccounts`], reached through [`Identity::passwords`], so an
//! identity that signs users in elsewhere (OIDC: a redirect and a code
//! exchange) fits without pretending to have passwords. Implementations:
//! built-in accounts (`crates/identity/builtin`: argon2id passwords, our
//! own signed JWTs) and, next, Amazon Cognito (RS256 tokens checked against
//! its JWKS). API keys are not an identity concern: they live in the store
//! and work the same whichever identity is used.

use crate::user::{Principal, Role, User};
use crate::UserId;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Tokens returned by a successful login or refresh.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// The result of a password login.
#[derive(Debug, Clone, PartialEq)]
pub enum LoginOutcome {
    Tokens(Tokens),
    /// Cognito's NEW_PASSWORD_REQUIRED: the user must pick a new password,
    /// presenting this short-lived session with it.
    NewPasswordRequired {
        session: String,
    },
}

/// Why an identity operation was refused. Messages are safe to show users.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IdentityError {
    #[error("{field}: {message}")]
    InvalidInput {
        field: &'static str,
        message: String,
    },
    #[error("incorrect email or password")]
    InvalidCredentials,
    #[error("the email address is not confirmed yet; enter the code that was sent, or ask for a new one")]
    NotConfirmed,
    #[error("this account is disabled; ask an administrator")]
    Disabled,
    #[error("an account with this email already exists")]
    AlreadyExists,
    #[error("the confirmation code is wrong")]
    CodeMismatch,
    #[error("{0} has expired")]
    Expired(&'static str),
    #[error("too many failed attempts; try again in {retry_after_secs} seconds")]
    Throttled { retry_after_secs: u64 },
    #[error("the token is invalid or expired; log in again")]
    InvalidToken,
    /// The identity has no such flow (password sign-in on an identity
    /// that signs users in elsewhere); the message says where to go.
    #[error("{0}")]
    Unsupported(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Sessions: what every identity does.
#[async_trait]
pub trait Identity: Send + Sync + std::fmt::Debug {
    /// Checks an access token.
    async fn authenticate(&self, access_token: &str) -> Result<Principal, IdentityError>;
    /// Rotates a refresh token.
    async fn refresh(&self, refresh_token: &str) -> Result<Tokens, IdentityError>;
    /// Revokes a refresh token's family.
    async fn logout(&self, refresh_token: &str) -> Result<(), IdentityError>;
    /// Ends every session of a user (an admin disabled them): their
    /// refresh tokens stop working.
    async fn end_sessions(&self, user: &UserId) -> Result<(), IdentityError>;
    /// An admin changed a user's role in paddock. An identity that holds
    /// roles itself (Cognito's admin group) records it there, before the
    /// store does, so the next sign-in does not undo it; paddock's own
    /// accounts keep the role in the store alone.
    async fn set_role(&self, user: &UserId, role: Role) -> Result<(), IdentityError> {
        let _ = (user, role);
        Ok(())
    }
    /// The password flows, when this identity keeps passwords.
    fn passwords(&self) -> Option<&dyn PasswordAccounts>;
}

/// Accounts with passwords: what only an identity that keeps them does.
#[async_trait]
pub trait PasswordAccounts: Send + Sync {
    /// Creates an unconfirmed account and sends a confirmation code.
    async fn signup(&self, email: &str, password: &str) -> Result<UserId, IdentityError>;
    /// Confirms an account with the code that was sent.
    async fn confirm(&self, email: &str, code: &str) -> Result<(), IdentityError>;
    /// Sends a fresh confirmation code (the old one stops working).
    async fn resend_code(&self, email: &str) -> Result<(), IdentityError>;
    /// Checks a password.
    async fn login(&self, email: &str, password: &str) -> Result<LoginOutcome, IdentityError>;
    /// Answers NEW_PASSWORD_REQUIRED.
    async fn complete_new_password(
        &self,
        email: &str,
        session: &str,
        new_password: &str,
    ) -> Result<Tokens, IdentityError>;
    /// A signed-in user changes their password; their other sessions end.
    async fn change_password(
        &self,
        user: &UserId,
        old_password: &str,
        new_password: &str,
    ) -> Result<(), IdentityError>;
    /// An admin creates a confirmed user with a temporary password that
    /// must be changed at first login (when `must_change` is set).
    async fn admin_create_user(
        &self,
        email: &str,
        temporary_password: &str,
        role: Role,
        must_change: bool,
    ) -> Result<User, IdentityError>;
    /// An admin gives a user a temporary password, to be changed at their
    /// next login; their sessions end.
    async fn admin_reset_password(
        &self,
        user: &UserId,
        temporary_password: &str,
    ) -> Result<(), IdentityError>;
    /// An admin deletes a user's account: they cannot sign in again, their
    /// sessions end, and the email is free for a new account.
    async fn admin_delete_user(&self, user: &UserId) -> Result<(), IdentityError>;
}
