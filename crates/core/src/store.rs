//! The [`Store`] trait: where paddock's records live.
//!
//! SQLite is the embedded default; DynamoDB serves AWS deployments. Both run
//! the same conformance suite (`testkit::store_conformance`). What only the
//! built-in identity keeps (confirmation codes, refresh tokens) is the
//! separate [`CredentialStore`]. The trait is
//! shaped so that each method is one item-level operation or one
//! transaction, which both backends can do atomically; anything that would
//! need a join or a scan-with-aggregation is done by callers.
//!
//! No method writes back a whole record that a caller read earlier without
//! checking that nothing changed in between: a record that callers edit
//! (users, models, instances) carries a `version` and its update is
//! compare-and-swap on it (`Stale` when someone wrote first; callers re-read
//! and retry), and a change that needs no read (an API key's last use or
//! revocation, a confirmation attempt) is one conditional write of the
//! columns it changes.

use crate::catalog::Model;
use crate::instance::{Instance, Transition};
use crate::user::{ApiKey, ConfirmationCode, RefreshToken, UsageRecord, User};
use crate::{ApiKeyId, InstanceId, ModelId, Timestamp, UserId};
use async_trait::async_trait;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A record with the same key exists (e.g. an email already registered).
    #[error("{0} already exists")]
    Conflict(String),
    /// The record changed since it was read (optimistic concurrency).
    #[error("{0} was changed concurrently; retry")]
    Stale(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The backend failed (I/O, corruption, unreachable service).
    #[error("storage backend: {0}")]
    Backend(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Requests, errors (status 400 and up) and tokens of one UTC day and
/// model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDay {
    pub day: chrono::NaiveDate,
    pub model_id: ModelId,
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// A filter for usage queries.
#[derive(Debug, Clone, Default)]
pub struct UsageQuery {
    /// Only this user's records; `None` for all (admins).
    pub user_id: Option<UserId>,
    /// Inclusive lower bound.
    pub since: Option<Timestamp>,
    /// Exclusive upper bound.
    pub until: Option<Timestamp>,
}

/// Persistence for every record paddock keeps.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Checks the backend answers (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;

    // ---- users ----
    /// Inserts a user; `Conflict` if the email is taken.
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    async fn get_user(&self, id: &UserId) -> StoreResult<Option<User>>;
    /// Looks up by email (callers lower-case it).
    async fn get_user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    /// Writes `user` if the stored version equals `user.version`. Returns
    /// the record as stored (version bumped); `Stale` if someone wrote
    /// first, `NotFound` if absent.
    async fn update_user(&self, user: &User) -> StoreResult<User>;
    /// All users, oldest first.
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// Removes a user's record and frees their email. What refers to the
    /// user (instances, keys, usage) stays. Deleting what is not there is
    /// not an error.
    async fn delete_user(&self, id: &UserId) -> StoreResult<()>;

    // ---- catalog ----
    /// Inserts a model unless one with its id exists; returns whether it was inserted.
    async fn insert_model_if_absent(&self, model: &Model) -> StoreResult<bool>;
    /// Writes `model` (admin edits) if the stored version equals
    /// `model.version`. Returns the record as stored (version bumped);
    /// `Stale` if someone wrote first, `NotFound` if absent.
    async fn update_model(&self, model: &Model) -> StoreResult<Model>;
    async fn get_model(&self, id: &ModelId) -> StoreResult<Option<Model>>;
    /// All models, by id.
    async fn list_models(&self) -> StoreResult<Vec<Model>>;

    // ---- instances ----
    /// Inserts a new instance with its first history entry.
    async fn create_instance(&self, instance: &Instance, first: &Transition) -> StoreResult<()>;
    async fn get_instance(&self, id: &InstanceId) -> StoreResult<Option<Instance>>;
    /// Instances of one user, or of everyone; newest first.
    async fn list_instances(&self, user: Option<&UserId>) -> StoreResult<Vec<Instance>>;
    /// Writes `instance` if the stored version equals `instance.version`,
    /// appending `transition` to the history in the same step. Returns the
    /// record as stored (version bumped); `Stale` if someone wrote first.
    async fn update_instance(
        &self,
        instance: &Instance,
        transition: Option<&Transition>,
    ) -> StoreResult<Instance>;
    /// The history, oldest first.
    async fn list_transitions(&self, id: &InstanceId) -> StoreResult<Vec<Transition>>;
    /// Removes an instance and its history.
    async fn delete_instance(&self, id: &InstanceId) -> StoreResult<()>;

    // ---- API keys ----
    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()>;
    async fn get_api_key(&self, id: &ApiKeyId) -> StoreResult<Option<ApiKey>>;
    async fn get_api_key_by_hash(&self, secret_hash: &str) -> StoreResult<Option<ApiKey>>;
    /// A user's keys, newest first (revoked ones included).
    async fn list_api_keys(&self, user: &UserId) -> StoreResult<Vec<ApiKey>>;
    /// Records a use of a key at `at`, writing only `last_used_at`, and only
    /// while the key is not revoked and `at` is later than the last use
    /// recorded; a key that is missing or revoked is left as it is.
    async fn touch_api_key(&self, id: &ApiKeyId, at: Timestamp) -> StoreResult<()>;
    /// Revokes a key at `at`, writing only `revoked_at`, and only if it is
    /// not revoked yet (the first revocation time is kept). Returns whether
    /// this call revoked it; `false` for a missing or already revoked key.
    async fn revoke_api_key(&self, id: &ApiKeyId, at: Timestamp) -> StoreResult<bool>;

    // ---- usage ----
    async fn record_usage(&self, record: &UsageRecord) -> StoreResult<()>;
    /// Several records at once; backends override it with one transaction.
    async fn record_usage_batch(&self, records: &[UsageRecord]) -> StoreResult<()> {
        for r in records {
            self.record_usage(r).await?;
        }
        Ok(())
    }
    /// Matching records, oldest first (every request: for export; a long
    /// period is many rows).
    async fn list_usage(&self, query: &UsageQuery) -> StoreResult<Vec<UsageRecord>>;
    /// The records from day `since` on, added up per day and model: one
    /// user's, or everyone's for `None`. In day, then model order.
    async fn usage_by_day(
        &self,
        user_id: Option<&UserId>,
        since: chrono::NaiveDate,
    ) -> StoreResult<Vec<UsageDay>>;

    // ---- leases ----
    /// Takes or renews the lease `name` for `holder` until `until`, in one
    /// conditional write: only when it is free, expired at `now`, or
    /// already `holder`'s. Returns whether `holder` holds it now. What the
    /// replicas of a control plane use to let exactly one reconcile.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Gives the lease up if `holder` holds it (a graceful stop), so another
    /// replica takes it at once.
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()>;
}

/// The records only an identity that keeps its own accounts needs
/// (the built-in one): pending confirmation codes and refresh tokens. A
/// store for a deployment whose identity keeps them itself (Cognito) need
/// not implement it. Runs its own conformance kit
/// (`credential_store_conformance_tests!`).
#[async_trait]
pub trait CredentialStore: Send + Sync + std::fmt::Debug {
    // ---- confirmation codes ----
    /// Stores the pending code for an email, replacing any earlier one.
    async fn put_confirmation(&self, code: &ConfirmationCode) -> StoreResult<()>;
    async fn get_confirmation(&self, email: &str) -> StoreResult<Option<ConfirmationCode>>;
    /// Adds one to the attempts of the pending code for an email, in one
    /// atomic step, and returns the code as it then stands (its attempts
    /// counting this one); `None` if no code is pending. Of concurrent
    /// attempts each sees a different count.
    async fn count_confirmation_attempt(
        &self,
        email: &str,
    ) -> StoreResult<Option<ConfirmationCode>>;
    async fn delete_confirmation(&self, email: &str) -> StoreResult<()>;

    // ---- refresh tokens ----
    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()>;
    async fn get_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>>;
    /// Marks a token used if (and only if) it was unused and not revoked;
    /// returns whether this call was the one that consumed it.
    async fn consume_refresh_token(&self, token_hash: &str, at: Timestamp) -> StoreResult<bool>;
    /// Revokes every token of a family (logout, reuse detected).
    async fn revoke_refresh_family(&self, family_id: &str, at: Timestamp) -> StoreResult<()>;
    /// Revokes every token of a user (password change, disable).
    async fn revoke_user_refresh_tokens(&self, user: &UserId, at: Timestamp) -> StoreResult<()>;
}
