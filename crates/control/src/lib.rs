//! paddock-control: the rules of paddock, behind both of its doors.
//!
//! [`Control`] holds the backends (store, identity, compute driver) and the
//! in-memory state shared by every request (activity, usage writer,
//! metric counters, the API-key cache, the instance-change bus), and offers
//! the operations users and admins can do, with typed inputs and views and
//! one [`Error`]. The management API, the web pages and the gateway are
//! adapters over it; this crate knows no HTTP.
//!
//! Permission is a type: the operations on everyone's records are on
//! [`AdminOps`], which only [`Control::as_admin`] hands out, and only for an
//! admin principal. Operations on [`Control`] itself take the caller's
//! [`Principal`] and only ever reach that caller's records (an admin also
//! sees any single instance).
//!
//! The reconciler ([`reconciler`]) is the one loop that turns recorded
//! wishes into running model servers through the driver.

pub mod accounts;
pub mod activity;
pub mod bus;
pub mod catalog;
pub mod error;
pub mod exposition;
pub mod instances;
pub mod keys;
pub mod keys_cache;
pub mod metrics;
pub mod pulls;
pub mod reconciler;
pub mod service;
pub mod usage;
pub mod usage_writer;
pub mod users;

pub use error::{Error, Result};
pub use service::{AdminOps, Backends, Control, HealthProbe, Inner, Settings, STALE_RETRIES};
