//! paddock-core: the domain of paddock, free of I/O.
//!
//! It owns the typed ids, the catalog and compute types, the instance state
//! machine, users, API keys and usage records, and the traits that every
//! backend implements: [`store::Store`] (where records live) and
//! [`driver::ComputeDriver`] (where models run). It does not own HTTP,
//! persistence or processes; those live in the crates that implement the
//! traits.

pub mod catalog;
pub mod compute;
pub mod driver;
pub mod identity;
pub mod ids;
pub mod instance;
pub mod store;
pub mod user;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use ids::{ApiKeyId, InstanceId, ModelId, UserId};

/// Timestamps are UTC everywhere.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
