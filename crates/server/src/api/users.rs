//! `/api/users`: administrators list, create, disable/enable and
//! promote/demote users; thin adapters over [`paddock_control::users`],
//! reached only through [`paddock_control::Control::as_admin`].

use super::permit::admin;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use paddock_control::users::{CreateUser, CreatedUser, DeletedUser, UpdateUser, UserView};
use paddock_gateway::auth::Auth;
use paddock_gateway::error::{ApiError, Json};
use serde::Serialize;

/// `{users: [...]}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserList {
    pub users: Vec<UserView>,
}

#[utoipa::path(get, path = "/api/users", summary = "Admin: list users", tag = "admin",
    responses((status = 200, description = "Admin: list users", body = UserList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<UserList>, ApiError> {
    Ok(Json(UserList {
        users: admin(&state.control, &p)?.users().await?,
    }))
}

#[utoipa::path(post, path = "/api/users", summary = "Admin: create a user (must set a new password at first login)", tag = "admin",
    request_body(content = CreateUser, example = json!({"email": "bo@example.com", "role": "user"})),
    responses((status = 201, description = "Admin: create a user (must set a new password at first login)", body = CreatedUser)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    Auth(p): Auth,
    Json(req): Json<CreateUser>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    let created = admin(&state.control, &p)?.create_user(req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(patch, path = "/api/users/{user_id}", summary = "Admin: disable/enable, promote/demote", tag = "admin", params(("user_id" = String, Path)),
    request_body(content = UpdateUser, example = json!({"disabled": true})),
    responses((status = 200, description = "Admin: disable/enable, promote/demote", body = UserView)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Json(req): Json<UpdateUser>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(
        admin(&state.control, &p)?.update_user(&id, req).await?,
    ))
}

#[utoipa::path(delete, path = "/api/users/{user_id}", summary = "Admin: delete a user (instances stopped, keys revoked, usage kept)", tag = "admin", params(("user_id" = String, Path)),
    responses((status = 200, description = "Admin: delete a user (instances stopped, keys revoked, usage kept)", body = DeletedUser)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<DeletedUser>, ApiError> {
    Ok(Json(admin(&state.control, &p)?.delete_user(&id).await?))
}

/// `{temporary_password}`: shown once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResetPassword {
    pub temporary_password: String,
}

#[utoipa::path(post, path = "/api/users/{user_id}/reset-password", summary = "Admin: give a user a temporary password (changed at their next login)", tag = "admin", params(("user_id" = String, Path)),
    responses((status = 200, description = "Admin: give a user a temporary password (changed at their next login)", body = ResetPassword)))]
pub(crate) async fn reset_password(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> Result<Json<ResetPassword>, ApiError> {
    Ok(Json(ResetPassword {
        temporary_password: admin(&state.control, &p)?.reset_password(&id).await?.1,
    }))
}
