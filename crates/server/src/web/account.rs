//! Account pages: sign up, confirm with the mailed code, log in, the forced
//! new password, log out, and the session refresh the scripts call.
//!
//! Forms post here and the handlers call the same account operations of
//! [`paddock_control::Control`] the JSON API uses; an error naming a field (`password: must ...`) is
//! shown under that field, anything else above the form.

use super::layout::{banner_error, banner_ok, csrf_field, field, FormErrors};
use super::session::{
    csrf_rejected, redirect, safe_next, urlencode, Cookies, Visitor, REFRESH_COOKIE,
};
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::{html, Markup};
use paddock_core::identity::{IdentityError, LoginOutcome};
use paddock_gateway::auth::{cookie, csrf_matches, CSRF_HEADER};
use paddock_gateway::error::ApiError;
use serde::Deserialize;

/// `GET /`: the instances page when signed in, else the login page.
pub(crate) async fn root(v: Visitor) -> Response {
    if v.principal.is_some() {
        redirect("/ui/instances")
    } else {
        redirect("/ui/login")
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct LoginQuery {
    next: Option<String>,
    email: Option<String>,
    confirmed: Option<String>,
    changed: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

fn login_form(csrf: &str, email: &str, next: &str, errors: &FormErrors, notice: &str) -> Markup {
    html! {
        div.card.auth-card {
            h1 { "Log in" }
            p.muted { "Run and chat with your own models." }
            (banner_ok(notice))
            (banner_error(&errors.form))
            form method="post" action="/ui/login" data-busy {
                (csrf_field(csrf))
                input type="hidden" name="next" value=(next);
                (field(errors, "email", "Email", "email", email, "username", "", true))
                (field(errors, "password", "Password", "password", "", "current-password", "", true))
                button.btn.btn-primary.w-full type="submit" data-test="login-submit" { "Log in" }
            }
            p.auth-alt { "No account yet? " a href="/ui/signup" { "Sign up" } " · " a href="/ui/confirm" { "Enter a confirmation code" } }
        }
    }
}

pub(crate) async fn login_page(v: Visitor, Query(q): Query<LoginQuery>) -> Response {
    if v.principal.is_some() {
        return redirect(&safe_next(q.next.as_deref()));
    }
    let notice = if q.confirmed.is_some() {
        "Your email is confirmed. Log in to continue."
    } else if q.changed.is_some() {
        "Password changed. Log in with your new password."
    } else {
        ""
    };
    v.page(
        "Log in",
        login_form(
            &v.csrf,
            q.email.as_deref().unwrap_or(""),
            q.next.as_deref().unwrap_or(""),
            &FormErrors::default(),
            notice,
        ),
    )
}

fn status_page(mut r: Response, status: StatusCode) -> Response {
    *r.status_mut() = status;
    r
}

pub(crate) async fn login_submit(
    State(state): State<AppState>,
    v: Visitor,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if !v.csrf_ok(&headers, &f.csrf) {
        return csrf_rejected();
    }
    let next = f.next.clone().unwrap_or_default();
    let fail = |errors: FormErrors, status| {
        status_page(
            v.page("Log in", login_form(&v.csrf, &f.email, &next, &errors, "")),
            status,
        )
    };
    if f.email.trim().is_empty() {
        return fail(
            FormErrors::field("email", "enter your email address"),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    match state.control.login(&f.email, &f.password).await {
        Ok(LoginOutcome::Tokens(t)) => {
            let (cookies, _) = Cookies::login(&state, &t);
            cookies.apply(redirect(&safe_next(Some(&next))))
        }
        Ok(LoginOutcome::NewPasswordRequired { session }) => v.page(
            "Choose a new password",
            new_password_form(&v.csrf, &f.email, &session, &FormErrors::default()),
        ),
        Err(IdentityError::NotConfirmed) => fail(
            FormErrors::form(format!(
                "{} Go to the confirmation page: /ui/confirm?email={}",
                IdentityError::NotConfirmed,
                urlencode(&f.email)
            )),
            StatusCode::FORBIDDEN,
        ),
        Err(IdentityError::InvalidCredentials) => fail(
            FormErrors::field("password", &IdentityError::InvalidCredentials.to_string()),
            StatusCode::UNAUTHORIZED,
        ),
        Err(e) => {
            let status = ApiError::from(e.clone()).status();
            fail(
                FormErrors::from_message(
                    &e.to_string(),
                    &[("email", "email"), ("password", "password")],
                ),
                status,
            )
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct SignupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm_password: String,
}

fn signup_form(csrf: &str, email: &str, errors: &FormErrors) -> Markup {
    html! {
        div.card.auth-card {
            h1 { "Create your account" }
            p.muted { "We'll send a 6-digit code to confirm your email." }
            (banner_error(&errors.form))
            form method="post" action="/ui/signup" data-busy {
                (csrf_field(csrf))
                (field(errors, "email", "Email", "email", email, "username", "", true))
                (field(errors, "password", "Password", "password", "", "new-password",
                    "At least 8 characters with upper and lower case letters, a digit and a symbol.", true))
                (field(errors, "confirm_password", "Confirm password", "password", "", "new-password", "", true))
                button.btn.btn-primary.w-full type="submit" data-test="signup-submit" { "Sign up" }
            }
            p.auth-alt { "Already have an account? " a href="/ui/login" { "Log in" } }
        }
    }
}

pub(crate) async fn signup_page(v: Visitor) -> Response {
    if !v.state.control.settings.allow_signup {
        return v.page(
            "Sign up",
            html! { div.card.auth-card { h1 { "Sign-up is closed" } p.muted { "Ask an administrator for an account." } a.btn.btn-primary href="/ui/login" { "Back to log in" } } },
        );
    }
    v.page("Sign up", signup_form(&v.csrf, "", &FormErrors::default()))
}

const SIGNUP_FIELDS: &[(&str, &str)] = &[
    ("email", "email"),
    ("password", "password"),
    ("confirmPassword", "confirm_password"),
];

pub(crate) async fn signup_submit(
    State(state): State<AppState>,
    v: Visitor,
    headers: HeaderMap,
    Form(f): Form<SignupForm>,
) -> Response {
    if !v.csrf_ok(&headers, &f.csrf) {
        return csrf_rejected();
    }
    let fail = |errors: FormErrors, status| {
        status_page(
            v.page("Sign up", signup_form(&v.csrf, &f.email, &errors)),
            status,
        )
    };
    if f.password != f.confirm_password {
        return fail(
            FormErrors::field("confirm_password", "does not match the password"),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    match state
        .control
        .signup(&f.email, &f.password, &f.confirm_password)
        .await
    {
        Ok(_) => redirect(&format!(
            "/ui/confirm?email={}&sent=1",
            urlencode(f.email.trim())
        )),
        Err(paddock_control::Error::Conflict(_)) => fail(
            FormErrors::field(
                "email",
                "an account with this email already exists; log in instead",
            ),
            StatusCode::CONFLICT,
        ),
        Err(e @ paddock_control::Error::Forbidden(_)) => {
            fail(FormErrors::form(e.to_string()), StatusCode::FORBIDDEN)
        }
        Err(e) => {
            let e = ApiError::from(e);
            fail(
                FormErrors::from_message(&e.to_string(), SIGNUP_FIELDS),
                e.status(),
            )
        }
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct ConfirmQuery {
    email: Option<String>,
    sent: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ConfirmForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    code: String,
}

fn confirm_form(csrf: &str, email: &str, errors: &FormErrors, notice: &str) -> Markup {
    html! {
        div.card.auth-card {
            h1 { "Confirm your email" }
            p.muted { "Enter the 6-digit code we sent to your address." }
            (banner_ok(notice))
            (banner_error(&errors.form))
            form method="post" action="/ui/confirm" data-busy {
                (csrf_field(csrf))
                (field(errors, "email", "Email", "email", email, "username", "", true))
                div.field.has-error[errors.get("code").is_some()] {
                    label for="f-code" { "Confirmation code" }
                    input.code-input id="f-code" name="code" inputmode="numeric" autocomplete="one-time-code"
                        pattern="[0-9 ]*" maxlength="8" placeholder="123456" required;
                    @if let Some(m) = errors.get("code") { p.field-error data-error-for="code" { (super::layout::sentence(m)) } }
                }
                button.btn.btn-primary.w-full type="submit" data-test="confirm-submit" { "Confirm" }
            }
            form.inline-form method="post" action="/ui/confirm/resend" {
                (csrf_field(csrf))
                input type="hidden" name="email" value=(email);
                p.auth-alt { "No code? " button.linklike type="submit" { "Send a new one" } " · " a href="/ui/login" { "Log in" } }
            }
        }
    }
}

pub(crate) async fn confirm_page(v: Visitor, Query(q): Query<ConfirmQuery>) -> Response {
    let notice = if q.sent.is_some() {
        "Account created. We sent a confirmation code to your email."
    } else {
        ""
    };
    v.page(
        "Confirm your email",
        confirm_form(
            &v.csrf,
            q.email.as_deref().unwrap_or(""),
            &FormErrors::default(),
            notice,
        ),
    )
}

pub(crate) async fn confirm_submit(
    State(state): State<AppState>,
    v: Visitor,
    headers: HeaderMap,
    Form(f): Form<ConfirmForm>,
) -> Response {
    if !v.csrf_ok(&headers, &f.csrf) {
        return csrf_rejected();
    }
    let code: String = f.code.chars().filter(|c| !c.is_whitespace()).collect();
    match state.control.confirm(&f.email, &code).await {
        Ok(()) => redirect(&format!(
            "/ui/login?confirmed=1&email={}",
            urlencode(f.email.trim())
        )),
        Err(e) => {
            let status = ApiError::from(e.clone()).status();
            let errors = match e {
                IdentityError::CodeMismatch | IdentityError::Expired(_) => {
                    FormErrors::field("code", &e.to_string())
                }
                _ => FormErrors::from_message(
                    &e.to_string(),
                    &[("email", "email"), ("code", "code")],
                ),
            };
            status_page(
                v.page(
                    "Confirm your email",
                    confirm_form(&v.csrf, &f.email, &errors, ""),
                ),
                status,
            )
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct ResendForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

pub(crate) async fn resend_submit(
    State(state): State<AppState>,
    v: Visitor,
    headers: HeaderMap,
    Form(f): Form<ResendForm>,
) -> Response {
    if !v.csrf_ok(&headers, &f.csrf) {
        return csrf_rejected();
    }
    let errors = if f.email.trim().is_empty() {
        FormErrors::field("email", "enter your email address, then ask for a new code")
    } else {
        match state.control.resend_code(&f.email).await {
            Ok(()) => FormErrors::default(),
            Err(e) => FormErrors::from_message(&e.to_string(), &[("email", "email")]),
        }
    };
    let notice = if errors.fields.is_empty() && errors.form.is_empty() {
        "If that address has an unconfirmed account, a new code is on its way."
    } else {
        ""
    };
    v.page(
        "Confirm your email",
        confirm_form(&v.csrf, &f.email, &errors, notice),
    )
}

#[derive(Deserialize)]
pub(crate) struct NewPasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    session: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
}

fn new_password_form(csrf: &str, email: &str, session: &str, errors: &FormErrors) -> Markup {
    html! {
        div.card.auth-card {
            h1 { "Choose a new password" }
            p.muted { "Your account was set up with a temporary password. Pick your own to continue." }
            (banner_error(&errors.form))
            form method="post" action="/ui/new-password" data-busy {
                (csrf_field(csrf))
                input type="hidden" name="email" value=(email);
                input type="hidden" name="session" value=(session);
                div.field { label { "Account" } p.static-value { (email) } }
                (field(errors, "new_password", "New password", "password", "", "new-password",
                    "At least 8 characters with upper and lower case letters, a digit and a symbol.", true))
                (field(errors, "confirm_password", "Confirm new password", "password", "", "new-password", "", true))
                button.btn.btn-primary.w-full type="submit" data-test="new-password-submit" { "Set password and continue" }
            }
        }
    }
}

/// `GET /ui/new-password` without a login challenge: back to the login.
pub(crate) async fn new_password_page() -> Response {
    redirect("/ui/login")
}

pub(crate) async fn new_password_submit(
    State(state): State<AppState>,
    v: Visitor,
    headers: HeaderMap,
    Form(f): Form<NewPasswordForm>,
) -> Response {
    if !v.csrf_ok(&headers, &f.csrf) {
        return csrf_rejected();
    }
    let fail = |errors: FormErrors, status| {
        status_page(
            v.page(
                "Choose a new password",
                new_password_form(&v.csrf, &f.email, &f.session, &errors),
            ),
            status,
        )
    };
    if f.new_password != f.confirm_password {
        return fail(
            FormErrors::field("confirm_password", "does not match the new password"),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    match state
        .control
        .complete_new_password(&f.email, &f.session, &f.new_password)
        .await
    {
        Ok(t) => {
            let (cookies, _) = Cookies::login(&state, &t);
            cookies.apply(redirect("/ui/instances"))
        }
        Err(e @ (IdentityError::InvalidToken | IdentityError::Expired(_))) => fail(
            FormErrors::form(format!("{e}. Log in again with your temporary password.")),
            StatusCode::UNAUTHORIZED,
        ),
        Err(e) => {
            let status = ApiError::from(e.clone()).status();
            fail(
                FormErrors::from_message(
                    &e.to_string(),
                    &[
                        ("password", "new_password"),
                        ("new_password", "new_password"),
                    ],
                ),
                status,
            )
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/logout`: revokes the refresh token and clears the cookies.
pub(crate) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !csrf_matches(&headers, Some(&f.csrf)) {
        return csrf_rejected();
    }
    if let Some(rt) = cookie(&headers, REFRESH_COOKIE) {
        let _ = state.control.logout(&rt).await;
    }
    Cookies::logout(&state).apply(redirect("/ui/login"))
}

/// `POST /ui/session/refresh` (scripts, with `X-CSRF-Token`): new tokens
/// from the refresh cookie, 204; 401 when the session is over.
pub(crate) async fn refresh(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    if !csrf_matches(&headers, presented) {
        return ApiError::Forbidden("missing or wrong CSRF token".into()).into_response();
    }
    let Some(rt) = cookie(&headers, REFRESH_COOKIE) else {
        return ApiError::Unauthorized("no session; log in again".into()).into_response();
    };
    match state.control.refresh(&rt).await {
        Ok(t) => {
            let mut c = Cookies::default();
            c.set_tokens(&state, &t);
            c.apply(StatusCode::NO_CONTENT.into_response())
        }
        Err(e) => Cookies::logout(&state).apply(ApiError::from(e).into_response()),
    }
}
