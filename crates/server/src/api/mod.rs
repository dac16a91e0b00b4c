//! The management API: routes, and the table they are documented from.
//!
//! Owns the router for `/api/*` management routes and operations routes,
//! and their OpenAPI document ([`doc`]): each route is registered once, with
//! its documentation.

pub mod auth;
pub mod catalog;
pub mod doc;
pub mod instances;
pub mod keys;
pub mod ops;
pub mod permit;
pub mod usage;
pub mod users;

use crate::state::AppState;

use axum::Router;
use paddock_gateway::error::ApiError;
use std::sync::OnceLock;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The management and operations routes, each registered with its
/// documentation: the router and the OpenAPI document come from the same
/// list, so neither can have a route the other lacks.
pub fn router() -> Router<AppState> {
    routes().split_for_parts().0
}

/// The OpenAPI document of [`router`], `GET /api/openapi.json` included.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = routes().split_for_parts().1;
    utoipa::Modify::modify(&doc::Errors, &mut doc);
    doc
}

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(doc::ApiDoc::openapi())
        .routes(routes!(auth::signup))
        .routes(routes!(auth::confirm))
        .routes(routes!(auth::resend))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::new_password))
        .routes(routes!(auth::me))
        .routes(routes!(catalog::list, catalog::create))
        .routes(routes!(catalog::get, catalog::update))
        .routes(routes!(catalog::compute))
        .routes(routes!(instances::deploy))
        .routes(routes!(instances::stop_by_body))
        .routes(routes!(instances::list))
        .routes(routes!(instances::events))
        .routes(routes!(instances::get, instances::delete))
        .routes(routes!(instances::stop_by_path))
        .routes(routes!(instances::start_by_path))
        .routes(routes!(instances::logs))
        .routes(routes!(usage::usage))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::revoke))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::update, users::delete))
        .routes(routes!(users::reset_password))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(crate::metrics::render))
        .routes(routes!(openapi_json))
}

/// `GET /api/openapi.json`: the document, built once.
#[utoipa::path(get, path = "/api/openapi.json", summary = "This document", tag = "operations", security(()),
    responses((status = 200, description = "This document", content_type = "application/json")))]
async fn openapi_json() -> axum::Json<serde_json::Value> {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    axum::Json(
        DOC.get_or_init(|| serde_json::to_value(openapi()).unwrap_or_default())
            .clone(),
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
