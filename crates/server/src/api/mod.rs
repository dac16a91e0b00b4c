//! The management API: routes, and the table they are documented from.
//!
//! Owns the router for `/api/*` management routes and operations routes.
//! Each route appears once in [`ROUTES`] (for the OpenAPI document) and once
//! in [`router`]; a test checks that every documented route is served.

pub mod auth;
pub mod catalog;
pub mod instances;
pub mod keys;
pub mod ops;
pub mod usage;
pub mod users;

use crate::error::ApiError;
use crate::state::AppState;
use axum::routing::{get, post};
use axum::Router;
use paddock_control::{AdminOps, Control};
use paddock_core::user::Principal;

/// The admin operations for the caller, or 403: the one way the API
/// reaches them.
pub(crate) fn admin<'a>(c: &'a Control, p: &'a Principal) -> Result<AdminOps<'a>, ApiError> {
    c.as_admin(p)
        .ok_or_else(|| ApiError::Forbidden("this needs an administrator".into()))
}

/// For `?all=true` listings: the admin operations when an admin asks for
/// everyone's records, else `None` (the caller's own; a plain user asking
/// for all is shown their own, as before).
pub(crate) fn admin_or_self<'a>(
    c: &'a Control,
    p: &'a Principal,
    all: bool,
) -> Option<AdminOps<'a>> {
    if all {
        c.as_admin(p)
    } else {
        None
    }
}

/// One documented route.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    /// Whether it needs `Authorization: Bearer`.
    pub auth: bool,
    /// An example JSON body.
    pub body: Option<&'static str>,
    /// The success status.
    pub ok: u16,
}

const fn r(
    method: &'static str,
    path: &'static str,
    tag: &'static str,
    auth: bool,
    ok: u16,
    summary: &'static str,
    body: Option<&'static str>,
) -> RouteDoc {
    RouteDoc {
        method,
        path,
        summary,
        tag,
        auth,
        body,
        ok,
    }
}

/// Every management and operations route.
pub const ROUTES: &[RouteDoc] = &[
    r(
        "POST",
        "/api/auth/signup",
        "auth",
        false,
        201,
        "Create an account; a confirmation code is sent",
        Some(
            r#"{"email":"ana@example.com","password":"Str0ng-pass!","confirmPassword":"Str0ng-pass!"}"#,
        ),
    ),
    r(
        "POST",
        "/api/auth/confirm",
        "auth",
        false,
        200,
        "Confirm an account with the 6-digit code",
        Some(r#"{"email":"ana@example.com","code":"123456"}"#),
    ),
    r(
        "POST",
        "/api/auth/resend-code",
        "auth",
        false,
        200,
        "Send a new confirmation code",
        Some(r#"{"email":"ana@example.com"}"#),
    ),
    r(
        "POST",
        "/api/auth/login",
        "auth",
        false,
        200,
        "Log in: tokens, or a NEW_PASSWORD_REQUIRED challenge",
        Some(r#"{"email":"ana@example.com","password":"Str0ng-pass!"}"#),
    ),
    r(
        "POST",
        "/api/auth/refresh",
        "auth",
        false,
        200,
        "Rotate a refresh token for new tokens",
        Some(r#"{"refresh_token":"..."}"#),
    ),
    r(
        "POST",
        "/api/auth/logout",
        "auth",
        false,
        204,
        "Revoke a refresh token and its family",
        Some(r#"{"refresh_token":"..."}"#),
    ),
    r(
        "POST",
        "/api/auth/new-password",
        "auth",
        false,
        200,
        "Answer NEW_PASSWORD_REQUIRED, or change your password when signed in",
        Some(r#"{"email":"ana@example.com","session":"...","new_password":"N3w-pass!"}"#),
    ),
    r("GET", "/api/auth/me", "auth", true, 200, "Who am I", None),
    r(
        "GET",
        "/api/models",
        "catalog",
        true,
        200,
        "The model catalog (admins: ?all=true includes inactive models)",
        None,
    ),
    r(
        "POST",
        "/api/models",
        "catalog",
        true,
        201,
        "Admin: add a model to the catalog",
        Some(
            r#"{"model_id":"tinyllama:1.1b","model_name":"TinyLlama 1.1B","model_family":"llama","model_size_gb":0.6,"cpu_requirements":{"vcpu":1,"memory_mb":2048},"gpu_requirements":{"gpu_memory_mb":2048,"gpu_type":"any"},"description":"","supported_tasks":["chat"],"is_active":true}"#,
        ),
    ),
    r(
        "GET",
        "/api/models/{model_id}",
        "catalog",
        true,
        200,
        "One catalog model",
        None,
    ),
    r(
        "PATCH",
        "/api/models/{model_id}",
        "catalog",
        true,
        200,
        "Admin: edit or deactivate a model",
        Some(r#"{"is_active":false}"#),
    ),
    r(
        "GET",
        "/api/compute",
        "catalog",
        true,
        200,
        "CPU (Fargate) and GPU sizes with prices",
        None,
    ),
    r(
        "POST",
        "/api/models/deploy",
        "instances",
        true,
        202,
        "Deploy a model on a CPU or GPU size",
        Some(
            r#"{"model_name":"gemma3:270m","fargate_resources":{"cpu":1024,"memory":2048},"idle_timeout_minutes":15}"#,
        ),
    ),
    r(
        "POST",
        "/api/models/stop",
        "instances",
        true,
        202,
        "Stop an instance",
        Some(r#"{"instance_id":"i-0123456789abcdef"}"#),
    ),
    r(
        "GET",
        "/api/instances",
        "instances",
        true,
        200,
        "Your instances (admins: ?all=true for everyone's)",
        None,
    ),
    r(
        "GET",
        "/api/instances/{instance_id}",
        "instances",
        true,
        200,
        "One instance with its state history",
        None,
    ),
    r(
        "DELETE",
        "/api/instances/{instance_id}",
        "instances",
        true,
        204,
        "Delete a stopped instance",
        None,
    ),
    r(
        "POST",
        "/api/instances/{instance_id}/stop",
        "instances",
        true,
        202,
        "Stop an instance",
        None,
    ),
    r(
        "GET",
        "/api/instances/{instance_id}/logs",
        "instances",
        true,
        200,
        "The instance's model-server log (?lines=200)",
        None,
    ),
    r(
        "GET",
        "/api/usage",
        "usage",
        true,
        200,
        "Tokens and cost per day and model (?days=30; admins: ?all=true)",
        None,
    ),
    r(
        "GET",
        "/metrics",
        "operations",
        false,
        200,
        "Prometheus metrics",
        None,
    ),
    r(
        "POST",
        "/api/keys",
        "keys",
        true,
        201,
        "Create an API key (the secret is shown once)",
        Some(r#"{"name":"laptop","allowed_models":["gemma3:270m"]}"#),
    ),
    r("GET", "/api/keys", "keys", true, 200, "Your API keys", None),
    r(
        "DELETE",
        "/api/keys/{key_id}",
        "keys",
        true,
        200,
        "Revoke an API key",
        None,
    ),
    r(
        "GET",
        "/api/users",
        "admin",
        true,
        200,
        "Admin: list users",
        None,
    ),
    r(
        "POST",
        "/api/users",
        "admin",
        true,
        201,
        "Admin: create a user (must set a new password at first login)",
        Some(r#"{"email":"bo@example.com","role":"user"}"#),
    ),
    r(
        "PATCH",
        "/api/users/{user_id}",
        "admin",
        true,
        200,
        "Admin: disable/enable, promote/demote",
        Some(r#"{"disabled":true}"#),
    ),
    r(
        "GET",
        "/healthz",
        "operations",
        false,
        200,
        "The process is up",
        None,
    ),
    r(
        "GET",
        "/readyz",
        "operations",
        false,
        200,
        "The store answers",
        None,
    ),
    r(
        "GET",
        "/api/openapi.json",
        "operations",
        false,
        200,
        "This document",
        None,
    ),
];

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
            get(|| async { axum::Json(ops::openapi(ROUTES)) }),
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
