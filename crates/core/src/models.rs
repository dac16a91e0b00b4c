//! The [`ModelCache`] trait: the host's model store, as the control plane
//! sees it.
//!
//! The process and Docker drivers run model servers that read their
//! weights from the host's model store. A model that is not there is
//! pulled into it by the control plane before the instance launches (the
//! instance is PULLING meanwhile, with its progress), so that every
//! instance of the model shares one download and the next deploy starts at
//! once. This module owns only the contract; the store itself (Ollama's
//! layout, registry pulls, verification) is `paddock-models`.

use crate::ModelId;
use async_trait::async_trait;

/// How far a pull is: bytes of the whole model (every layer) on disk and
/// in all. `total` is 0 until the registry's manifest has been read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullProgress {
    pub completed: u64,
    pub total: u64,
}

impl PullProgress {
    /// Whole percent done, once the total is known.
    pub fn percent(&self) -> Option<u8> {
        (self.total > 0).then(|| (self.completed.min(self.total) * 100 / self.total) as u8)
    }
}

/// Why a pull failed. `permanent`: pulling again fails the same way (the
/// registry cannot be reached or has no such model, the store cannot be
/// written), so the instance is not restarted; otherwise (a download cut
/// off, a blob that did not verify) a restart pulls again, resuming.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PullError {
    /// What went wrong, naming the registry.
    pub message: String,
    pub permanent: bool,
}

/// Where the host keeps model weights, and how a missing model gets there.
#[async_trait]
pub trait ModelCache: Send + Sync + std::fmt::Debug {
    /// Whether `model` is in the store, complete: a model server launched
    /// now reads it without a download.
    fn has(&self, model: &ModelId) -> bool;
    /// The registry pulls come from (a base URL), for messages.
    fn registry(&self) -> String;
    /// Fetches `model` into the store, calling `progress` as bytes arrive.
    /// An interrupted pull resumes where it stopped the next time.
    async fn pull(
        &self,
        model: &ModelId,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<(), PullError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_is_whole_and_capped() {
        let p = |completed, total| PullProgress { completed, total }.percent();
        assert_eq!(p(0, 0), None);
        assert_eq!(p(1, 3), Some(33));
        assert_eq!(p(3, 3), Some(100));
        assert_eq!(p(5, 3), Some(100));
    }
}
