//! Users, credentials and metering records.
//!
//! Owns the [`User`] account record with its [`Role`], the stored forms of
//! credentials ([`ApiKey`], [`RefreshToken`], [`ConfirmationCode`]: hashes
//! only, never secrets), the caller's [`Principal`], and [`UsageRecord`].
//! The `Identity` trait that built-in accounts and Cognito implement is in
//! [`crate::identity`]; hashing and token signing live in its
//! implementations.

use crate::{ApiKeyId, InstanceId, ModelId, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees and manages everything: users, catalog, all instances.
    Admin,
    /// Sees and manages only their own instances and keys.
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// An account.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub user_id: UserId,
    /// Lower-cased; unique.
    pub email: String,
    /// argon2id PHC string; never serialized to clients.
    #[serde(skip_serializing, default)]
    pub password_hash: String,
    pub role: Role,
    /// Email confirmed with the code (admin-created users start confirmed).
    pub confirmed: bool,
    /// Disabled users cannot log in and their keys stop working.
    pub disabled: bool,
    /// Set for users an admin created (and a generated first admin): the
    /// next login must choose a new password.
    pub must_change_password: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Optimistic-concurrency version: every store write bumps it, and
    /// [`Store::update_user`](crate::store::Store::update_user) writes only
    /// over the version it was read at. Not part of any wire format.
    #[serde(skip)]
    pub version: u64,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("user_id", &self.user_id)
            .field("email", &self.email)
            .field("password_hash", &"<redacted>")
            .field("role", &self.role)
            .field("confirmed", &self.confirmed)
            .field("disabled", &self.disabled)
            .field("must_change_password", &self.must_change_password)
            .field("version", &self.version)
            .finish()
    }
}

/// A pending email confirmation (the code is stored hashed).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmationCode {
    pub email: String,
    pub code_hash: String,
    pub expires_at: Timestamp,
    /// Codes tried against it, each counted before it is checked
    /// ([`Store::count_confirmation_attempt`](crate::store::Store::count_confirmation_attempt));
    /// the code is void after a few.
    pub attempts: u32,
}

impl fmt::Debug for ConfirmationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfirmationCode")
            .field("email", &self.email)
            .field("expires_at", &self.expires_at)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// A refresh token (stored hashed). Tokens rotate: each use consumes one and
/// issues the next in the same family; presenting a consumed token revokes
/// the whole family.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshToken {
    pub token_hash: String,
    pub user_id: UserId,
    pub family_id: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// Set when rotated; a second use is a reuse.
    pub used_at: Option<Timestamp>,
    /// Set on logout or on reuse detection.
    pub revoked_at: Option<Timestamp>,
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshToken")
            .field("user_id", &self.user_id)
            .field("family_id", &self.family_id)
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// An API key: the credential programs use. The secret (`pdk_...`) is shown
/// once at creation; only its hash is kept.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub key_id: ApiKeyId,
    pub user_id: UserId,
    pub name: String,
    /// The first characters of the secret, shown so users can tell keys apart.
    pub prefix: String,
    #[serde(skip_serializing, default)]
    pub secret_hash: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    /// When set, the key may only reach these models.
    pub allowed_models: Option<Vec<ModelId>>,
    pub revoked_at: Option<Timestamp>,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("key_id", &self.key_id)
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

impl ApiKey {
    /// Usable now: neither revoked nor expired.
    pub fn is_usable(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }

    /// Whether the key may reach `model`.
    pub fn allows(&self, model: &ModelId) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|list| list.contains(model))
    }
}

/// One metered gateway request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub at: Timestamp,
    pub user_id: UserId,
    pub api_key_id: Option<ApiKeyId>,
    pub instance_id: InstanceId,
    pub model_id: ModelId,
    /// The gateway route, e.g. `/api/chat` or `/v1/chat/completions`.
    pub route: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub duration_ms: u64,
    /// HTTP status returned to the client.
    pub status: u16,
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub user_id: UserId,
    pub email: String,
    pub role: Role,
    /// Present when the caller used an API key rather than a session token.
    pub api_key: Option<ApiKeyPrincipal>,
}

/// The API key part of a [`Principal`].
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyPrincipal {
    pub key_id: ApiKeyId,
    pub allowed_models: Option<Vec<ModelId>>,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether this caller may use `model` (API keys may be restricted).
    pub fn may_use_model(&self, model: &ModelId) -> bool {
        self.api_key.as_ref().is_none_or(|k| {
            k.allowed_models
                .as_ref()
                .is_none_or(|list| list.contains(model))
        })
    }
}
