//! paddock-gateway: the one public door to model servers, and the HTTP
//! vocabulary both doors share.
//!
//! It owns the Ollama and OpenAI routes ([`routes`]), the fast path that
//! serves every connection and answers plain gateway requests before
//! axum ([`fastpath`]: parsing apart from connection I/O), the pool of
//! model-server connections ([`upstream`], also the reconciler's health
//! probe), the route cache ([`cache`]), cache-aware routing ([`affinity`]), metering, and what every HTTP
//! handler of paddock uses: [`error::ApiError`] (the one type that becomes
//! an error response), the [`auth::Auth`] extractor and the client I/O
//! limits ([`client_io`]). It knows no web pages and keeps no rules of its
//! own: who may use what is asked of [`paddock_control::Control`].

pub mod affinity;
pub mod auth;
pub mod cache;
pub mod client_io;
pub mod error;
pub mod fastpath;
pub mod route;
pub mod routes;
pub mod state;
pub mod upstream;

pub use state::{Gateway, GatewaySettings, Inner};
