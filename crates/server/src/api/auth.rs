//! `/api/auth/*`: sign-up, confirmation, login, refresh, logout and password
//! changes, with the original system's paths and field names.

use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use paddock_core::identity::{LoginOutcome, Tokens};
use paddock_gateway::auth::Auth;
use paddock_gateway::error::{ApiError, Json};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SignupRequest {
    email: String,
    password: String,
    #[serde(alias = "confirm_password")]
    confirm_password: String,
}

pub(crate) async fn signup(
    State(state): State<AppState>,
    Json(req): Json<SignupRequest>,
) -> Result<Response, ApiError> {
    let user_id = state
        .control
        .signup(&req.email, &req.password, &req.confirm_password)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "user_id": user_id,
            "confirmed": false,
            "message": "account created; enter the 6-digit code sent to your email at POST /api/auth/confirm"
        })),
    )
        .into_response())
}

#[derive(Deserialize)]
pub(crate) struct ConfirmRequest {
    email: String,
    code: String,
}

pub(crate) async fn confirm(
    State(state): State<AppState>,
    Json(req): Json<ConfirmRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.control.confirm(&req.email, &req.code).await?;
    Ok(Json(
        json!({"confirmed": true, "message": "email confirmed; you can log in"}),
    ))
}

#[derive(Deserialize)]
pub(crate) struct EmailRequest {
    email: String,
}

pub(crate) async fn resend(
    State(state): State<AppState>,
    Json(req): Json<EmailRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.control.resend_code(&req.email).await?;
    Ok(Json(json!({
        "message": "if that address has an unconfirmed account, a new code was sent"
    })))
}

#[derive(Deserialize)]
pub(crate) struct LoginRequest {
    email: String,
    password: String,
}

fn tokens_json(t: Tokens) -> Json<serde_json::Value> {
    Json(json!({
        "access_token": t.access_token,
        "refresh_token": t.refresh_token,
        "token_type": t.token_type,
        "expires_in": t.expires_in,
    }))
}

pub(crate) async fn login(
    State(state): State<AppState>,
    Json(req): Json<LoginRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    match state.control.login(&req.email, &req.password).await? {
        LoginOutcome::Tokens(t) => Ok(tokens_json(t)),
        LoginOutcome::NewPasswordRequired { session } => Ok(Json(json!({
            "challenge": "NEW_PASSWORD_REQUIRED",
            "session": session,
            "message": "choose a new password: POST /api/auth/new-password {email, session, new_password}"
        }))),
    }
}

#[derive(Deserialize)]
pub(crate) struct RefreshRequest {
    refresh_token: String,
}

pub(crate) async fn refresh(
    State(state): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(tokens_json(
        state.control.refresh(&req.refresh_token).await?,
    ))
}

pub(crate) async fn logout(
    State(state): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    state.control.logout(&req.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Either the forced change (`email`, `session`, `new_password`) after a
/// NEW_PASSWORD_REQUIRED login, or a signed-in user's voluntary change
/// (`old_password`, `new_password` with a bearer token).
#[derive(Deserialize)]
pub(crate) struct NewPasswordRequest {
    email: Option<String>,
    session: Option<String>,
    old_password: Option<String>,
    new_password: String,
}

pub(crate) async fn new_password(
    State(state): State<AppState>,
    auth: Option<Auth>,
    Json(req): Json<NewPasswordRequest>,
) -> Result<Response, ApiError> {
    if let (Some(email), Some(session)) = (&req.email, &req.session) {
        let t = state
            .control
            .complete_new_password(email, session, &req.new_password)
            .await?;
        return Ok(tokens_json(t).into_response());
    }
    let Some(Auth(p)) = auth else {
        return Err(ApiError::Unauthorized(
            "send {email, session, new_password} after a NEW_PASSWORD_REQUIRED login, or sign in and send {old_password, new_password}".into(),
        ));
    };
    let old = req
        .old_password
        .ok_or_else(|| ApiError::validation("old_password: is required to change your password"))?;
    state
        .control
        .change_password(&p, &old, &req.new_password)
        .await?;
    Ok(
        Json(json!({"message": "password changed; other sessions were signed out"}))
            .into_response(),
    )
}

pub(crate) async fn me(
    State(state): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<paddock_control::accounts::Me>, ApiError> {
    Ok(Json(state.control.me(&p).await?))
}
