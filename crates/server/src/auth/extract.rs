//! Who is calling: the [`Auth`] and [`Admin`] extractors.
//!
//! `Authorization: Bearer <token>` carries either an access token (JWT from
//! login) or an API key (`pdk_...`). Handlers take `Auth` (any signed-in
//! caller) or `Admin` (admins only) and never look at headers themselves.
//!
//! The web UI's pages call the same API from the browser with a session
//! cookie instead ([`SESSION_COOKIE`], set by `crate::web` at login). A
//! cookie-authenticated request that changes state (any method but GET,
//! HEAD, OPTIONS) must echo the CSRF cookie in the [`CSRF_HEADER`] header,
//! or it is refused with 403. Bearer requests need no CSRF token: browsers
//! never attach an `Authorization` header on their own.

use super::secrets::{sha256_hex, API_KEY_PREFIX};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use paddock_core::user::{ApiKeyPrincipal, Principal};

/// Any authenticated caller.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

/// An authenticated admin.
#[derive(Debug, Clone)]
pub struct Admin(pub Principal);

/// The cookie holding a web session's access token.
pub const SESSION_COOKIE: &str = "paddock_session";
/// The cookie holding a web session's CSRF token (echoed in forms and in
/// [`CSRF_HEADER`]).
pub const CSRF_COOKIE: &str = "paddock_csrf";
/// The header the web UI's scripts send the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Whether `presented` matches the request's CSRF cookie (compared in
/// constant time).
pub fn csrf_matches(headers: &HeaderMap, presented: Option<&str>) -> bool {
    let (Some(want), Some(got)) = (cookie(headers, CSRF_COOKIE), presented) else {
        return false;
    };
    let (a, b) = (want.as_bytes(), got.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Authenticates a request by its session cookie, checking the CSRF header
/// on state-changing methods.
async fn authenticate_cookie(
    parts: &Parts,
    state: &AppState,
    token: &str,
) -> Result<Principal, ApiError> {
    let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let presented = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !csrf_matches(&parts.headers, presented) {
            return Err(ApiError::Forbidden(format!(
                "a request authenticated by the session cookie must send the CSRF token in {CSRF_HEADER}; reload the page"
            )));
        }
    }
    Ok(state.identity.authenticate(token).await?)
}

/// How long a key's `last_used_at` may lag, so that a busy key does not
/// write to the store on every request.
const LAST_USED_RESOLUTION_SECS: i64 = 60;

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let mut values = parts.headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or_else(|| {
        ApiError::Unauthorized(
            "sign in first: send `Authorization: Bearer <access token or API key>`".into(),
        )
    })?;
    if values.next().is_some() {
        // Which one would count is ambiguous (a proxy in front may have
        // checked the other): refuse rather than pick.
        return Err(ApiError::BadRequest(
            "send one Authorization header, not several".into(),
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is not valid text".into()))?;
    let (scheme, token) = value.split_once(' ').ok_or_else(|| {
        ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized(
            "the Authorization header must be `Bearer <token>`".into(),
        ));
    }
    Ok(token.trim())
}

/// Resolves a bearer token (access token or API key) to a principal.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    if token.starts_with(API_KEY_PREFIX) {
        return authenticate_key(state, token).await;
    }
    Ok(state.identity.authenticate(token).await?)
}

async fn authenticate_key(state: &AppState, secret: &str) -> Result<Principal, ApiError> {
    let invalid = || ApiError::Unauthorized("the API key is invalid, revoked or expired".into());
    let hash = sha256_hex(secret);
    let now = state.clock.now();
    if let Some(p) = state.caches.key(&hash, now) {
        return Ok(p);
    }
    // Read before the key: a revocation from here on stops what is read
    // below from being cached.
    let generation = state.caches.key_generation();
    let read_at = std::time::Instant::now();
    let key = state
        .store
        .get_api_key_by_hash(&hash)
        .await?
        .ok_or_else(invalid)?;
    if !key.is_usable(now) {
        return Err(invalid());
    }
    let user = state
        .store
        .get_user(&key.user_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or_else(invalid)?;
    if key
        .last_used_at
        .is_none_or(|t| (now - t).num_seconds() >= LAST_USED_RESOLUTION_SECS)
    {
        // Only the one column, and only while the key is not revoked: a
        // revocation since the read above stays.
        state.store.touch_api_key(&key.key_id, now).await?;
    }
    let principal = Principal {
        user_id: user.user_id,
        email: user.email,
        role: user.role,
        api_key: Some(ApiKeyPrincipal {
            key_id: key.key_id,
            allowed_models: key.allowed_models,
        }),
    };
    state
        .caches
        .put_key(hash, principal.clone(), key.expires_at, generation, read_at);
    Ok(principal)
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(Auth(p.clone()));
        }
        let principal = match cookie(&parts.headers, SESSION_COOKIE) {
            Some(session) if parts.headers.get(AUTHORIZATION).is_none() => {
                authenticate_cookie(parts, state, &session).await?
            }
            _ => {
                let token = bearer(parts)?;
                authenticate(state, token).await?
            }
        };
        parts.extensions.insert(principal.clone());
        Ok(Auth(principal))
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Auth(p) = Auth::from_request_parts(parts, state).await?;
        if !p.is_admin() {
            return Err(ApiError::Forbidden("this needs an administrator".into()));
        }
        Ok(Admin(p))
    }
}

impl axum::extract::OptionalFromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    /// No `Authorization` header and no session cookie is `None`; a bad
    /// credential is still an error.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, ApiError> {
        if parts.headers.get(AUTHORIZATION).is_none()
            && cookie(&parts.headers, SESSION_COOKIE).is_none()
        {
            return Ok(None);
        }
        <Auth as FromRequestParts<AppState>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}
