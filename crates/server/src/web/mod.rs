//! The web dashboard: server-rendered pages under `/ui/...`, one stylesheet
//! and one script of our own, served by the `paddock` binary itself.
//!
//! Pages are rendered with `maud` from the same [`AppState`] the JSON API
//! uses; form posts go to `/ui/...` handlers that call the API's own
//! handlers or the identity, so the rules live in one place. The script
//! (`assets/app.js`) adds live status, the deploy dialog, streaming chat and
//! copy buttons by calling the JSON API with the session cookie and the
//! CSRF header (see [`session`]).
//!
//! Owns: the `/ui` routes and `GET /`, the page layout, sessions in the
//! browser. Does not own: the JSON API, authentication of bearer tokens,
//! the gateway the chat page talks to.

pub mod account;
pub mod admin;
pub mod instances;
pub mod keys;
pub mod layout;
pub mod models;
pub mod session;
pub mod usage;

use crate::state::AppState;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

const APP_CSS: &str = include_str!("../../assets/app.css");
const APP_JS: &str = include_str!("../../assets/app.js");

/// Static assets are versioned by URL (`?v=`), so they may be cached.
const ASSET_CACHE: &str = "public, max-age=86400";

async fn css() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, ASSET_CACHE),
        ],
        APP_CSS,
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, ASSET_CACHE),
        ],
        APP_JS,
    )
}

/// The dashboard's routes: `GET /` and everything under `/ui`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(account::root))
        .route("/ui", get(account::root))
        .route("/ui/", get(account::root))
        .route("/ui/static/app.css", get(css))
        .route("/ui/static/app.js", get(js))
        .route(
            "/ui/login",
            get(account::login_page).post(account::login_submit),
        )
        .route(
            "/ui/signup",
            get(account::signup_page).post(account::signup_submit),
        )
        .route(
            "/ui/confirm",
            get(account::confirm_page).post(account::confirm_submit),
        )
        .route("/ui/confirm/resend", post(account::resend_submit))
        .route(
            "/ui/new-password",
            get(account::new_password_page).post(account::new_password_submit),
        )
        .route("/ui/logout", post(account::logout))
        .route("/ui/session/refresh", post(account::refresh))
        .route("/ui/models", get(models::page))
        .route("/ui/instances", get(instances::list_page))
        .route("/ui/instances/rows", get(instances::rows_fragment))
        .route("/ui/instances/{id}", get(instances::detail_page))
        .route("/ui/instances/{id}/logs.txt", get(instances::logs_download))
        .route("/ui/chat", get(instances::chat_page))
        .route("/ui/keys", get(keys::page).post(keys::create))
        .route("/ui/keys/{id}/revoke", post(keys::revoke))
        .route("/ui/usage", get(usage::page))
        .route(
            "/ui/admin/users",
            get(admin::users_page).post(admin::users_create),
        )
        .route("/ui/admin/users/{id}", post(admin::users_update))
        .route(
            "/ui/admin/users/{id}/reset-password",
            post(admin::users_reset_password),
        )
        .route("/ui/admin/users/{id}/delete", post(admin::users_delete))
        .route("/ui/admin/models", get(admin::models_page))
        .route(
            "/ui/admin/models/new",
            get(admin::model_new_page).post(admin::model_create),
        )
        .route(
            "/ui/admin/models/{id}",
            get(admin::model_edit_page).post(admin::model_update),
        )
        .route("/ui/admin/models/{id}/active", post(admin::model_active))
        .route("/ui/admin/instances", get(admin::instances_page))
}
