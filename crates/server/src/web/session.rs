//! Browser sessions: cookies, CSRF tokens and the page extractors.
//!
//! A login sets three cookies, all `HttpOnly` and `SameSite`:
//! - `paddock_session`: the access token (`Path=/`, `SameSite=Lax` so that a
//!   link into paddock from elsewhere opens signed in);
//! - `paddock_refresh`: the refresh token (`Path=/ui`, `SameSite=Strict`);
//!   pages refresh an expired access token on the server, and the pages'
//!   scripts call `POST /ui/session/refresh` when the API answers 401;
//! - `paddock_csrf`: a random token (`Path=/`, `SameSite=Strict`) that every
//!   form repeats in a hidden `csrf` field and every script request in the
//!   `X-CSRF-Token` header (double-submit). It is issued before login too,
//!   so that the login and sign-up forms are covered, and replaced at login.
//!
//! `Secure` is added whenever `public_url` starts with `https://`; tests run
//! on `http://127.0.0.1`, where browsers would drop `Secure` cookies.
//!
//! Owns [`Session`] (a signed-in page request), [`Visitor`] (any page
//! request) and the cookie helpers. Bearer-token checks live in
//! [`crate::auth::extract`].

use super::layout;
use crate::state::AppState;
use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::header::{CACHE_CONTROL, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::Markup;
use paddock_core::identity::Tokens;
use paddock_core::secret::random_token;
use paddock_core::user::Principal;
use paddock_gateway::auth::{cookie, csrf_matches, CSRF_COOKIE, SESSION_COOKIE};

/// The cookie holding the refresh token.
pub const REFRESH_COOKIE: &str = "paddock_refresh";
/// The path the refresh cookie is limited to.
const REFRESH_PATH: &str = "/ui";

/// `Set-Cookie` values for one response.
#[derive(Debug, Clone, Default)]
pub struct Cookies(Vec<String>);

impl Cookies {
    fn secure(state: &AppState) -> &'static str {
        if state.config.public_url().starts_with("https://") {
            "; Secure"
        } else {
            ""
        }
    }

    fn set(
        &mut self,
        state: &AppState,
        name: &str,
        value: &str,
        path: &str,
        same_site: &str,
        max_age: u64,
    ) {
        self.0.push(format!(
            "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{}",
            Self::secure(state)
        ));
    }

    fn clear(&mut self, state: &AppState, name: &str, path: &str) {
        self.0.push(format!(
            "{name}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Lax{}",
            Self::secure(state)
        ));
    }

    /// Starts a session: access and refresh tokens and a fresh CSRF token.
    pub fn login(state: &AppState, tokens: &Tokens) -> (Cookies, String) {
        let mut c = Cookies::default();
        c.set_tokens(state, tokens);
        let csrf = random_token(24);
        c.set(
            state,
            CSRF_COOKIE,
            &csrf,
            "/",
            "Strict",
            state.config.identity.refresh_token_ttl_secs,
        );
        (c, csrf)
    }

    /// Sets the access and refresh token cookies.
    pub fn set_tokens(&mut self, state: &AppState, tokens: &Tokens) {
        self.set(
            state,
            SESSION_COOKIE,
            &tokens.access_token,
            "/",
            "Lax",
            state.config.identity.refresh_token_ttl_secs,
        );
        self.set(
            state,
            REFRESH_COOKIE,
            &tokens.refresh_token,
            REFRESH_PATH,
            "Strict",
            state.config.identity.refresh_token_ttl_secs,
        );
    }

    /// Ends a session (the CSRF cookie stays: the login form needs one).
    pub fn logout(state: &AppState) -> Cookies {
        let mut c = Cookies::default();
        c.clear(state, SESSION_COOKIE, "/");
        c.clear(state, REFRESH_COOKIE, REFRESH_PATH);
        c
    }

    /// Adds the cookies to a response.
    pub fn apply(&self, mut resp: Response) -> Response {
        for c in &self.0 {
            if let Ok(v) = HeaderValue::from_str(c) {
                resp.headers_mut().append(SET_COOKIE, v);
            }
        }
        resp
    }
}

/// Any page request: its CSRF token (issued if missing) and the signed-in
/// principal, if there is one (no refresh is attempted).
#[derive(Debug, Clone)]
pub struct Visitor {
    pub csrf: String,
    pub cookies: Cookies,
    pub state: AppState,
    pub principal: Option<Principal>,
}

fn csrf_or_new(parts: &Parts, state: &AppState, cookies: &mut Cookies) -> String {
    match cookie(&parts.headers, CSRF_COOKIE) {
        Some(t) => t,
        None => {
            let t = random_token(24);
            cookies.set(
                state,
                CSRF_COOKIE,
                &t,
                "/",
                "Strict",
                state.config.identity.refresh_token_ttl_secs,
            );
            t
        }
    }
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let mut cookies = Cookies::default();
        let csrf = csrf_or_new(parts, state, &mut cookies);
        let principal = match cookie(&parts.headers, SESSION_COOKIE) {
            Some(t) => state.control.identity.authenticate(&t).await.ok(),
            None => None,
        };
        Ok(Visitor {
            csrf,
            cookies,
            state: state.clone(),
            principal,
        })
    }
}

impl Visitor {
    /// A signed-out page (login, sign-up, ...).
    pub fn page(&self, title: &str, body: Markup) -> Response {
        self.cookies
            .apply(html(layout::bare(title, &self.csrf, body)))
    }

    /// Whether the form's CSRF field matches the cookie.
    pub fn csrf_ok(&self, headers: &HeaderMap, presented: &str) -> bool {
        csrf_matches(headers, Some(presented))
    }
}

/// A signed-in page request. Unauthenticated requests are redirected to
/// the login page (with `next` set to where they were going); an expired
/// access token is refreshed with the refresh cookie on the way.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub csrf: String,
    pub cookies: Cookies,
    pub state: AppState,
    /// The URL users reach paddock at: `public_url` when configured, else
    /// the address this browser used (so endpoints and snippets work when
    /// the server listens on a port picked at start).
    pub base_url: String,
}

fn base_url(parts: &Parts, state: &AppState) -> String {
    if state.config.public_url.is_some() {
        return state.config.public_url();
    }
    parts
        .headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .map(|h| format!("http://{h}"))
        .unwrap_or_else(|| state.config.public_url())
}

impl Session {
    /// A signed-in page's session, with its CSRF token (a new one is added
    /// to `cookies` when the request has none).
    fn new(parts: &Parts, state: &AppState, principal: Principal, mut cookies: Cookies) -> Self {
        let csrf = csrf_or_new(parts, state, &mut cookies);
        Session {
            principal,
            csrf,
            cookies,
            state: state.clone(),
            base_url: base_url(parts, state),
        }
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let mut cookies = Cookies::default();
        if let Some(t) = cookie(&parts.headers, SESSION_COOKIE) {
            if let Ok(principal) = state.control.identity.authenticate(&t).await {
                return Ok(Session::new(parts, state, principal, cookies));
            }
        }
        if let Some(rt) = cookie(&parts.headers, REFRESH_COOKIE) {
            if let Ok(tokens) = state.control.refresh(&rt).await {
                if let Ok(principal) = state
                    .control
                    .identity
                    .authenticate(&tokens.access_token)
                    .await
                {
                    cookies.set_tokens(state, &tokens);
                    return Ok(Session::new(parts, state, principal, cookies));
                }
            }
        }
        let uri = OriginalUri::from_request_parts(parts, state)
            .await
            .map(|u| u.0)
            .unwrap_or_else(|_| parts.uri.clone());
        let next = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/ui/instances");
        let target = if parts.method == axum::http::Method::GET && next.starts_with("/ui/") {
            format!("/ui/login?next={}", urlencode(next))
        } else {
            "/ui/login".to_owned()
        };
        Err(Cookies::logout(state).apply(redirect(&target)))
    }
}

impl Session {
    /// A page inside the signed-in shell, `active` naming the nav entry.
    pub fn page(&self, title: &str, active: &str, body: Markup) -> Response {
        self.cookies.apply(html(layout::shell(
            title,
            active,
            &self.principal,
            &self.csrf,
            body,
        )))
    }

    /// The 403 page for a non-admin on an admin page.
    pub fn forbidden(&self) -> Response {
        let mut r = self.page(
            "Not allowed",
            "",
            layout::empty_state(
                "Administrators only",
                "This page needs an administrator account.",
            ),
        );
        *r.status_mut() = StatusCode::FORBIDDEN;
        r
    }

    /// Whether a form's CSRF field matches the cookie.
    pub fn csrf_ok(&self, headers: &HeaderMap, presented: &str) -> bool {
        csrf_matches(headers, Some(presented))
    }

    /// An error page for an [`ApiError`], with its status.
    pub fn error(&self, e: paddock_gateway::error::ApiError) -> Response {
        let status = e.status();
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            s if s.is_server_error() => "Something went wrong",
            _ => "That did not work",
        };
        let text = if status.is_server_error() {
            "paddock could not load this page. Try again in a moment; the server log has the details.".to_owned()
        } else {
            e.to_string()
        };
        let mut r = self.page(title, "", layout::empty_state(title, &text));
        *r.status_mut() = status;
        r
    }
}

/// A rendered page with no-store caching (pages show private data).
pub fn html(markup: Markup) -> Response {
    let mut r = markup.into_response();
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A 303 See Other to `to` (after a form post, the browser GETs it).
pub fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

/// The 403 answer to a form posted without the right CSRF token.
pub fn csrf_rejected() -> Response {
    let mut r = html(layout::bare(
        "Form expired",
        "",
        layout::empty_state(
            "This form has expired",
            "The security token was missing or wrong. Go back, reload the page and try again.",
        ),
    ));
    *r.status_mut() = StatusCode::FORBIDDEN;
    r
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A safe post-login destination: only paths inside the UI.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("//") && !n.contains("://") => {
            n.to_owned()
        }
        _ => "/ui/instances".to_owned(),
    }
}
