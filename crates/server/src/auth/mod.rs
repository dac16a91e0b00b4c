//! Authentication: built-in accounts, session tokens, API keys, and the
//! extractor every handler uses to learn who is calling.
//!
//! Owns password hashing and policy ([`password`]), opaque secrets and the
//! signing key ([`secrets`]), login throttling ([`throttle`]), the built-in
//! [`paddock_core::identity::Identity`] ([`builtin`]) and the
//! [`extract::Auth`] / [`extract::Admin`] extractors. Route handlers never
//! parse credentials themselves.

pub mod builtin;
pub mod extract;
pub mod password;
pub mod secrets;
pub mod throttle;
