//! `/api/auth/*`: sign-up, confirmation, login, refresh, logout and password
//! changes, with the original system's paths and field names; thin adapters
//! over [`paddock_control::accounts`].

use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use paddock_control::accounts::Me;
use paddock_core::identity::{LoginOutcome, Tokens};
use paddock_core::UserId;
use paddock_gateway::auth::Auth;
use paddock_gateway::error::{ApiError, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SignupRequest {
    #[schema(example = "ana@example.com")]
    email: String,
    #[schema(example = "Str0ng-pass!")]
    password: String,
    #[serde(alias = "confirm_password")]
    #[schema(example = "Str0ng-pass!")]
    confirm_password: String,
}

/// A new, unconfirmed account.
#[derive(Serialize, ToSchema)]
pub(crate) struct SignedUp {
    user_id: UserId,
    confirmed: bool,
    message: &'static str,
}

/// An answer that is only a message.
#[derive(Serialize, ToSchema)]
pub(crate) struct Message {
    message: &'static str,
}

/// A confirmed account.
#[derive(Serialize, ToSchema)]
pub(crate) struct Confirmed {
    confirmed: bool,
    message: &'static str,
}

/// Tokens, or Cognito's NEW_PASSWORD_REQUIRED challenge for a user an
/// admin created.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum LoginAnswer {
    Tokens(Tokens),
    Challenge {
        /// `NEW_PASSWORD_REQUIRED`.
        challenge: &'static str,
        /// Present it with the new password at `POST /api/auth/new-password`.
        session: String,
        message: &'static str,
    },
}

/// Tokens after a forced change, or a message after a voluntary one.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum NewPasswordAnswer {
    Tokens(Tokens),
    Changed(Message),
}

/// `POST /api/auth/signup`.
#[utoipa::path(post, path = "/api/auth/signup", summary = "Create an account; a confirmation code is sent", tag = "auth", security(()),
    request_body = SignupRequest,
    responses((status = 201, description = "Create an account; a confirmation code is sent", body = SignedUp)))]
pub(crate) async fn signup(
    State(state): State<AppState>,
    Json(req): Json<SignupRequest>,
) -> Result<(StatusCode, Json<SignedUp>), ApiError> {
    let user_id = state
        .control
        .signup(&req.email, &req.password, &req.confirm_password)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(SignedUp {
            user_id,
            confirmed: false,
            message: "account created; enter the 6-digit code sent to your email at POST /api/auth/confirm",
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct ConfirmRequest {
    #[schema(example = "ana@example.com")]
    email: String,
    #[schema(example = "123456")]
    code: String,
}

/// `POST /api/auth/confirm`.
#[utoipa::path(post, path = "/api/auth/confirm", summary = "Confirm an account with the 6-digit code", tag = "auth", security(()),
    request_body = ConfirmRequest,
    responses((status = 200, description = "Confirm an account with the 6-digit code", body = Confirmed)))]
pub(crate) async fn confirm(
    State(state): State<AppState>,
    Json(req): Json<ConfirmRequest>,
) -> Result<Json<Confirmed>, ApiError> {
    state.control.confirm(&req.email, &req.code).await?;
    Ok(Json(Confirmed {
        confirmed: true,
        message: "email confirmed; you can log in",
    }))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct EmailRequest {
    #[schema(example = "ana@example.com")]
    email: String,
}

/// `POST /api/auth/resend-code`.
#[utoipa::path(post, path = "/api/auth/resend-code", summary = "Send a new confirmation code", tag = "auth", security(()),
    request_body = EmailRequest,
    responses((status = 200, description = "Send a new confirmation code", body = Message)))]
pub(crate) async fn resend(
    State(state): State<AppState>,
    Json(req): Json<EmailRequest>,
) -> Result<Json<Message>, ApiError> {
    state.control.resend_code(&req.email).await?;
    Ok(Json(Message {
        message: "if that address has an unconfirmed account, a new code was sent",
    }))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct LoginRequest {
    #[schema(example = "ana@example.com")]
    email: String,
    #[schema(example = "Str0ng-pass!")]
    password: String,
}

/// `POST /api/auth/login`.
#[utoipa::path(post, path = "/api/auth/login", summary = "Log in: tokens, or a NEW_PASSWORD_REQUIRED challenge", tag = "auth", security(()),
    request_body = LoginRequest,
    responses((status = 200, description = "Log in: tokens, or a NEW_PASSWORD_REQUIRED challenge", body = LoginAnswer)))]
pub(crate) async fn login(
    State(state): State<AppState>,
    Json(req): Json<LoginRequest>,
) -> Result<Json<LoginAnswer>, ApiError> {
    Ok(Json(match state.control.login(&req.email, &req.password).await? {
        LoginOutcome::Tokens(t) => LoginAnswer::Tokens(t),
        LoginOutcome::NewPasswordRequired { session } => LoginAnswer::Challenge {
            challenge: "NEW_PASSWORD_REQUIRED",
            session,
            message: "choose a new password: POST /api/auth/new-password {email, session, new_password}",
        },
    }))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct RefreshRequest {
    refresh_token: String,
}

/// `POST /api/auth/refresh`.
#[utoipa::path(post, path = "/api/auth/refresh", summary = "Rotate a refresh token for new tokens", tag = "auth", security(()),
    request_body = RefreshRequest,
    responses((status = 200, description = "Rotate a refresh token for new tokens", body = Tokens)))]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> Result<Json<Tokens>, ApiError> {
    Ok(Json(state.control.refresh(&req.refresh_token).await?))
}

/// `POST /api/auth/logout`.
#[utoipa::path(post, path = "/api/auth/logout", summary = "Revoke a refresh token and its family", tag = "auth", security(()),
    request_body = RefreshRequest,
    responses((status = 204, description = "Revoke a refresh token and its family")))]
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
#[derive(Deserialize, ToSchema)]
pub(crate) struct NewPasswordRequest {
    email: Option<String>,
    session: Option<String>,
    old_password: Option<String>,
    #[schema(example = "N3w-pass!")]
    new_password: String,
}

/// `POST /api/auth/new-password`.
#[utoipa::path(post, path = "/api/auth/new-password", summary = "Answer NEW_PASSWORD_REQUIRED, or change your password when signed in", tag = "auth", security((), ("bearer" = [])),
    request_body = NewPasswordRequest,
    responses((status = 200, description = "Answer NEW_PASSWORD_REQUIRED, or change your password when signed in", body = NewPasswordAnswer)))]
pub(crate) async fn new_password(
    State(state): State<AppState>,
    auth: Option<Auth>,
    Json(req): Json<NewPasswordRequest>,
) -> Result<Json<NewPasswordAnswer>, ApiError> {
    if let (Some(email), Some(session)) = (&req.email, &req.session) {
        let t = state
            .control
            .complete_new_password(email, session, &req.new_password)
            .await?;
        return Ok(Json(NewPasswordAnswer::Tokens(t)));
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
    Ok(Json(NewPasswordAnswer::Changed(Message {
        message: "password changed; other sessions were signed out",
    })))
}

/// `GET /api/auth/me`.
#[utoipa::path(get, path = "/api/auth/me", summary = "Who am I", tag = "auth",
    responses((status = 200, description = "Who am I", body = Me)))]
pub(crate) async fn me(State(state): State<AppState>, Auth(p): Auth) -> Result<Json<Me>, ApiError> {
    Ok(Json(state.control.me(&p).await?))
}
