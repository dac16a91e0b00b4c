//! The management API: routes, and the table they are documented from.
//!
//! Owns the router for `/api/*` management routes and operations routes.
//! Each route appears once in [`doc::ROUTES`] (for the OpenAPI document) and
//! once in [`router`]; a test checks that every documented route is served.

pub mod auth;
pub mod catalog;
pub mod doc;
pub mod instances;
pub mod keys;
pub mod ops;
pub mod permit;
pub mod usage;
pub mod users;

pub use doc::{RouteDoc, ROUTES};

use crate::state::AppState;
use axum::routing::{get, post};
use axum::Router;
use paddock_gateway::error::ApiError;

/// The management and operations routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/auth/signup", post(auth::signup))
        .route("/api/auth/confirm", post(auth::confirm))
        .route("/api/auth/resend-code", post(auth::resend))
        .route("/api/auth/login", post(auth::login))
        .route("/api/auth/refresh", post(auth::refresh))
        .route("/api/auth/logout", post(auth::logout))
        .route("/api/auth/new-password", post(auth::new_password))
        .route("/api/auth/me", get(auth::me))
        .route("/api/models", get(catalog::list).post(catalog::create))
        .route(
            "/api/models/{model_id}",
            get(catalog::get).patch(catalog::update),
        )
        .route("/api/compute", get(catalog::compute))
        .route("/api/models/deploy", post(instances::deploy))
        .route("/api/models/stop", post(instances::stop_by_body))
        .route("/api/instances", get(instances::list))
        .route(
            "/api/instances/{instance_id}",
            get(instances::get).delete(instances::delete),
        )
        .route(
            "/api/instances/{instance_id}/stop",
            post(instances::stop_by_path),
        )
        .route("/api/instances/{instance_id}/logs", get(instances::logs))
        .route("/api/usage", get(usage::usage))
        .route("/api/keys", post(keys::create).get(keys::list))
        .route("/api/keys/{key_id}", axum::routing::delete(keys::revoke))
        .route("/api/users", get(users::list).post(users::create))
        .route("/api/users/{user_id}", axum::routing::patch(users::update))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route(
            "/api/openapi.json",
            get(|| async { axum::Json(ops::openapi(doc::ROUTES)) }),
        )
}

/// The answer for paths no route serves.
pub async fn no_route() -> ApiError {
    ApiError::not_found("no such route; GET /api/openapi.json lists the API")
}

/// The answer for a known path with the wrong method.
pub async fn wrong_method() -> ApiError {
    ApiError::MethodNotAllowed(
        "this path does not accept that method; see GET /api/openapi.json".into(),
    )
}
