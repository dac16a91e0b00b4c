//! The runtime's error type: what can stop a model from being resolved,
//! loaded or served. HTTP-level errors live in `api::ApiError`.

use paddock_models::StoreError;

/// Why the runtime could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The model reference could not be resolved or fetched.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// llama.cpp refused to load the model or create its context.
    #[error("loading the model failed: {0}")]
    Load(String),
    /// The listener or another I/O operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl RuntimeError {
    /// Whether starting again the same way would fail the same way: the
    /// model is not there and cannot be pulled, or it does not load. Such
    /// a runtime exits with [`paddock_core::driver::EXIT_WONT_FIX`].
    pub fn restart_will_not_help(&self) -> bool {
        matches!(
            self,
            RuntimeError::Store(
                StoreError::InvalidName(_)
                    | StoreError::NotFound { .. }
                    | StoreError::Unavailable { .. }
                    | StoreError::Registry { .. }
            ) | RuntimeError::Load(_)
        )
    }
}
