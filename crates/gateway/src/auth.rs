//! Who is calling: the [`Auth`] extractor, for both doors.
//!
//! `Authorization: Bearer <token>` carries either an access token (JWT from
//! login) or an API key (`pdk_...`); [`Control::authenticate`] resolves it.
//! Handlers take `Auth` and never look at headers themselves. What an
//! admin may do beyond that is not an extractor's business: it is reached
//! only through [`Control::as_admin`].
//!
//! The web UI's pages call the same API from the browser with a session
//! cookie instead ([`SESSION_COOKIE`], set by the web UI at login). A
//! cookie-authenticated request that changes state (any method but GET,
//! HEAD, OPTIONS) must echo the CSRF cookie in the [`CSRF_HEADER`] header,
//! or it is refused with 403. Bearer requests need no CSRF token: browsers
//! never attach an `Authorization` header on their own.

use crate::error::ApiError;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use paddock_control::Control;
use paddock_core::user::Principal;

/// Any authenticated caller.
#[derive(Debug, Clone)]
pub struct Auth(pub Principal);

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
    control: &Control,
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
    Ok(control.identity.authenticate(token).await?)
}

/// The bearer token of a request: one `Authorization: Bearer <token>`.
pub fn bearer(parts: &Parts) -> Result<&str, ApiError> {
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

impl<S> FromRequestParts<S> for Auth
where
    S: Send + Sync,
    Control: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let control = Control::from_ref(state);
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(Auth(p.clone()));
        }
        let principal = match cookie(&parts.headers, SESSION_COOKIE) {
            Some(session) if parts.headers.get(AUTHORIZATION).is_none() => {
                authenticate_cookie(parts, &control, &session).await?
            }
            _ => {
                let token = bearer(parts)?;
                control.authenticate(token).await?
            }
        };
        parts.extensions.insert(principal.clone());
        Ok(Auth(principal))
    }
}

impl<S> axum::extract::OptionalFromRequestParts<S> for Auth
where
    S: Send + Sync,
    Control: FromRef<S>,
{
    type Rejection = ApiError;

    /// No `Authorization` header and no session cookie is `None`; a bad
    /// credential is still an error.
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, ApiError> {
        if parts.headers.get(AUTHORIZATION).is_none()
            && cookie(&parts.headers, SESSION_COOKIE).is_none()
        {
            return Ok(None);
        }
        <Auth as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}
