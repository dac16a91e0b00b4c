//! [`Error`]: why a control operation was refused or failed, in words a
//! user can act on. The HTTP layer maps each kind to one status; nothing
//! here knows HTTP.

use paddock_core::identity::IdentityError;
use paddock_core::store::StoreError;

/// Why a control operation did not happen. Messages are safe to show the
/// caller, except [`Error::Internal`]'s, which is for the log only.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed (a body that is not what the operation reads).
    #[error("{0}")]
    Malformed(String),
    /// Well-formed but unacceptable; names the field and what to change.
    #[error("{0}")]
    Invalid(String),
    /// No credential, or one that is not valid.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing of that name the caller may see.
    #[error("{0}")]
    NotFound(String),
    /// The record's state forbids it now, or another write came first.
    #[error("{0}")]
    Conflict(String),
    #[error("{message}")]
    Throttled { message: String, retry_after: u64 },
    /// Try again later (an instance still waking, a full queue).
    #[error("{message}")]
    Unavailable { message: String, retry_after: u64 },
    /// A model server failed.
    #[error("{0}")]
    Upstream(String),
    /// paddock's own failure; the detail is logged, never shown.
    #[error("internal error")]
    Internal(String),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        Error::NotFound(msg.into())
    }
}

/// Results of control operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => Error::Conflict(format!("{what} already exists")),
            StoreError::Stale(what) => {
                Error::Conflict(format!("{what} was changed by another request; retry"))
            }
            StoreError::NotFound(what) => Error::NotFound(format!("{what} not found")),
            StoreError::Backend(detail) => Error::Internal(format!("store: {detail}")),
        }
    }
}

impl From<IdentityError> for Error {
    fn from(e: IdentityError) -> Self {
        let msg = e.to_string();
        match e {
            IdentityError::InvalidInput { .. } => Error::Invalid(msg),
            IdentityError::InvalidCredentials | IdentityError::InvalidToken => {
                Error::Unauthenticated(msg)
            }
            IdentityError::NotConfirmed
            | IdentityError::Disabled
            | IdentityError::Unsupported(_) => Error::Forbidden(msg),
            IdentityError::AlreadyExists => Error::Conflict(msg),
            IdentityError::CodeMismatch | IdentityError::Expired(_) => Error::Invalid(msg),
            IdentityError::Throttled { retry_after_secs } => Error::Throttled {
                message: msg,
                retry_after: retry_after_secs,
            },
            IdentityError::Internal(detail) => Error::Internal(detail),
        }
    }
}
