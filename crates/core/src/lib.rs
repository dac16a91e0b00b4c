//! paddock-core: the domain of paddock, free of I/O.
//!
//! It owns the typed ids, the [`Clock`], the catalog and compute types, the
//! instance state machine, users, API keys and usage records, the
//! generation of opaque secrets ([`secret`]), and the traits that every
//! backend implements: [`store::Store`] (where records live),
//! [`driver::ComputeDriver`] (where models run) and
//! [`models::ModelCache`] (the host's model store). It does not own HTTP,
//! persistence or processes; those live in the crates that implement the
//! traits.

pub mod catalog;
pub mod clock;
pub mod compute;
pub mod driver;
pub mod identity;
pub mod ids;
pub mod instance;
pub mod models;
pub mod secret;
pub mod store;
pub mod user;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use clock::Clock;
pub use ids::{ApiKeyId, InstanceId, ModelId, UserId};

/// The Ollama version paddock reports (`GET /api/version`), from the
/// runtime and the gateway alike, so clients that check it see one answer.
pub const OLLAMA_COMPAT_VERSION: &str = "0.9.6";

/// Timestamps are UTC everywhere.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
