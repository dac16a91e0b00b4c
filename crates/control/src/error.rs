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
    /// Several fields are unacceptable: every one of them, at once.
    #[error("{}", join_fields(.0))]
    Fields(Vec<FieldError>),
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

/// One unacceptable field of a request and what to change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// The field's name as the request spells it (`fargate_resources.cpu`);
    /// `null` when the message is not about one field.
    pub field: Option<String>,
    pub message: String,
}

impl FieldError {
    /// Splits a message of the form `field: what to change` (the form
    /// [`Error::Invalid`] messages take) into its field and the rest.
    pub fn from_message(m: &str) -> FieldError {
        match m.split_once(": ") {
            Some((f, rest))
                if !f.is_empty()
                    && f.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'
                    }) =>
            {
                FieldError {
                    field: Some(f.to_string()),
                    message: rest.to_string(),
                }
            }
            _ => FieldError {
                field: None,
                message: m.to_string(),
            },
        }
    }
}

fn join_fields(list: &[FieldError]) -> String {
    list.iter()
        .map(|e| match &e.field {
            Some(f) => format!("{f}: {}", e.message),
            None => e.message.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Collects what is wrong with a request so that all of it is reported in
/// one answer rather than one field per try.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    /// Records `message` about `field`.
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: Some(field.to_string()),
            message: message.into(),
        });
    }

    /// The value of a check, or `None` with its error recorded (an
    /// [`Error::Invalid`] that names no field of its own is put on
    /// `field`). Errors other than invalid input are returned as they are.
    pub fn check<T>(&mut self, field: &str, r: Result<T>) -> Result<Option<T>> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(Error::Invalid(m)) => {
                let mut e = FieldError::from_message(&m);
                e.field.get_or_insert_with(|| field.to_string());
                self.0.push(e);
                Ok(None)
            }
            Err(Error::Fields(list)) => {
                self.0.extend(list);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Records a message of the form `field: what to change`.
    pub fn add_message(&mut self, msg: &str) {
        self.0.push(FieldError::from_message(msg));
    }

    /// `Ok` when nothing was recorded, else every recorded error.
    pub fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Fields(self.0))
        }
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
