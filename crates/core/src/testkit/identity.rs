//! The identity conformance suite: the account and session flows every
//! [`Identity`] must get right, whichever service keeps the accounts.
//!
//! An implementation's tests give it an [`IdentityHarness`]: the identity,
//! plus what only an operator or the test can do (read the code that was
//! sent, disable a user, move the clock). A check an implementation cannot
//! take part in (an emulator that accepts any confirmation code, a remote
//! clock) is skipped by its harness saying so, never by a loosened check.

use crate::identity::{Identity, IdentityError, LoginOutcome, PasswordAccounts, Tokens};
use crate::user::Role;
use crate::UserId;
use async_trait::async_trait;

/// What the suite needs besides the identity.
#[async_trait]
pub trait IdentityHarness: Send + Sync {
    fn identity(&self) -> &dyn Identity;
    /// The confirmation code last sent to `email`.
    async fn code_for(&self, email: &str) -> String;
    /// Disables or enables a user, as an administrator would.
    async fn set_disabled(&self, user: &UserId, disabled: bool);
    /// Moves the identity's clock on by `secs` seconds; false if it cannot
    /// (then the expiry check is skipped).
    fn advance(&self, secs: u64) -> bool;
    /// Whether a wrong confirmation code is refused (an emulator may
    /// accept any code; then the wrong-code check is skipped).
    fn checks_codes(&self) -> bool {
        true
    }
    /// Whether a refresh hands out a new refresh token and treats a second
    /// use of the old one as theft (the built-in identity). Cognito keeps
    /// the refresh token unless the pool rotates it; then the rotation
    /// checks are skipped, and the token must still refresh, and stop
    /// working after logout.
    fn rotates_refresh_tokens(&self) -> bool {
        true
    }
}

const PASSWORD: &str = "Str0ng-pass!";
const NEW_PASSWORD: &str = "An0ther-pass!";

/// The identity's password flows, which the suite checks.
fn pw(id: &dyn Identity) -> &dyn PasswordAccounts {
    id.passwords().expect("the identity keeps passwords")
}

fn tokens(outcome: LoginOutcome) -> Tokens {
    match outcome {
        LoginOutcome::Tokens(t) => t,
        other => panic!("expected tokens, got {other:?}"),
    }
}

/// Sign up, confirm (and a wrong code), log in (and a wrong password),
/// tokens that authenticate, an address signed up twice.
pub async fn signup_confirm_login(h: &dyn IdentityHarness) {
    let id = h.identity();
    let email = "ana@example.com";
    assert!(
        matches!(
            pw(id).signup(email, "short").await,
            Err(IdentityError::InvalidInput { .. })
        ),
        "a weak password is refused"
    );
    let user = pw(id).signup(email, PASSWORD).await.expect("sign up");
    assert_eq!(
        pw(id).login(email, PASSWORD).await,
        Err(IdentityError::NotConfirmed)
    );
    if h.checks_codes() {
        let code = h.code_for(email).await;
        let wrong = if code == "000000" { "111111" } else { "000000" };
        assert_eq!(
            pw(id).confirm(email, wrong).await,
            Err(IdentityError::CodeMismatch)
        );
    }
    let code = h.code_for(email).await;
    pw(id).confirm(email, &code).await.expect("confirm");
    assert_eq!(
        pw(id).signup(email, PASSWORD).await,
        Err(IdentityError::AlreadyExists)
    );
    assert_eq!(
        pw(id).login(email, "Wr0ng-password!").await,
        Err(IdentityError::InvalidCredentials)
    );
    let t = tokens(pw(id).login(email, PASSWORD).await.expect("log in"));
    let p = id
        .authenticate(&t.access_token)
        .await
        .expect("authenticate");
    assert_eq!(p.user_id, user);
    assert_eq!(p.role, Role::User);
    assert!(p.api_key.is_none());
    assert_eq!(
        id.authenticate("not-a-token").await,
        Err(IdentityError::InvalidToken)
    );
}

/// Signs up and confirms `email`, returning its id and first tokens.
async fn confirmed(h: &dyn IdentityHarness, email: &str) -> (UserId, Tokens) {
    let id = h.identity();
    let user = pw(id).signup(email, PASSWORD).await.expect("sign up");
    let code = h.code_for(email).await;
    pw(id).confirm(email, &code).await.expect("confirm");
    let t = tokens(pw(id).login(email, PASSWORD).await.expect("log in"));
    (user, t)
}

/// A refresh token rotates once; presenting it again ends its family, and
/// logging out ends a session.
pub async fn refresh_rotation_reuse_and_logout(h: &dyn IdentityHarness) {
    let id = h.identity();
    let (_, first) = confirmed(h, "ben@example.com").await;
    let second = id.refresh(&first.refresh_token).await.expect("refresh");
    id.authenticate(&second.access_token)
        .await
        .expect("the new access token works");
    if h.rotates_refresh_tokens() {
        assert_ne!(second.refresh_token, first.refresh_token);
        // The first token again: reuse. The whole family ends.
        assert_eq!(
            id.refresh(&first.refresh_token).await,
            Err(IdentityError::InvalidToken)
        );
        assert_eq!(
            id.refresh(&second.refresh_token).await,
            Err(IdentityError::InvalidToken),
            "reuse revokes the rotated token too"
        );
    } else {
        let again = id
            .refresh(&second.refresh_token)
            .await
            .expect("refresh again");
        id.authenticate(&again.access_token)
            .await
            .expect("the next access token works");
    }
    // Logout ends a fresh session's refresh token.
    let third = tokens(
        pw(id)
            .login("ben@example.com", PASSWORD)
            .await
            .expect("log in"),
    );
    id.logout(&third.refresh_token).await.expect("log out");
    assert_eq!(
        id.refresh(&third.refresh_token).await,
        Err(IdentityError::InvalidToken)
    );
}

/// A password change, and the first login of a user an admin created with
/// a temporary password.
pub async fn new_passwords(h: &dyn IdentityHarness) {
    let id = h.identity();
    let (user, _) = confirmed(h, "cleo@example.com").await;
    assert!(matches!(
        pw(id)
            .change_password(&user, "Wr0ng-password!", NEW_PASSWORD)
            .await,
        Err(IdentityError::InvalidInput { .. })
    ));
    pw(id)
        .change_password(&user, PASSWORD, NEW_PASSWORD)
        .await
        .expect("change password");
    assert_eq!(
        pw(id).login("cleo@example.com", PASSWORD).await,
        Err(IdentityError::InvalidCredentials)
    );
    tokens(
        pw(id)
            .login("cleo@example.com", NEW_PASSWORD)
            .await
            .expect("log in"),
    );

    let created = pw(id)
        .admin_create_user("dan@example.com", PASSWORD, Role::User, true)
        .await
        .expect("admin creates a user");
    let LoginOutcome::NewPasswordRequired { session } = pw(id)
        .login("dan@example.com", PASSWORD)
        .await
        .expect("log in")
    else {
        panic!("a temporary password must be changed at first login");
    };
    let t = pw(id)
        .complete_new_password("dan@example.com", &session, NEW_PASSWORD)
        .await
        .expect("choose a new password");
    let p = id
        .authenticate(&t.access_token)
        .await
        .expect("authenticate");
    assert_eq!(p.user_id, created.user_id);
    tokens(
        pw(id)
            .login("dan@example.com", NEW_PASSWORD)
            .await
            .expect("log in with the new password"),
    );
}

/// An admin's password reset (a temporary password to change at the next
/// login, sessions ended) and an admin's delete (no login, the address
/// free again).
pub async fn admins_reset_and_delete_accounts(h: &dyn IdentityHarness) {
    let id = h.identity();
    let email = "gus@example.com";
    let (user, t) = confirmed(h, email).await;
    pw(id)
        .admin_reset_password(&user, NEW_PASSWORD)
        .await
        .expect("reset");
    assert_eq!(
        pw(id).login(email, PASSWORD).await,
        Err(IdentityError::InvalidCredentials)
    );
    assert!(
        id.refresh(&t.refresh_token).await.is_err(),
        "a reset ends their sessions"
    );
    let LoginOutcome::NewPasswordRequired { session } =
        pw(id).login(email, NEW_PASSWORD).await.expect("log in")
    else {
        panic!("a reset password must be changed at the next login");
    };
    pw(id)
        .complete_new_password(email, &session, "Th1rd-pass!")
        .await
        .expect("choose a new password");
    tokens(pw(id).login(email, "Th1rd-pass!").await.expect("log in"));

    pw(id).admin_delete_user(&user).await.expect("delete");
    assert!(pw(id).login(email, "Th1rd-pass!").await.is_err());
    pw(id)
        .signup(email, PASSWORD)
        .await
        .expect("the address can sign up again");
}

/// A disabled user can neither log in nor use a token issued before.
pub async fn disabled_users_are_locked_out(h: &dyn IdentityHarness) {
    let id = h.identity();
    let (user, t) = confirmed(h, "eve@example.com").await;
    h.set_disabled(&user, true).await;
    assert!(pw(id).login("eve@example.com", PASSWORD).await.is_err());
    assert!(id.authenticate(&t.access_token).await.is_err());
    assert!(id.refresh(&t.refresh_token).await.is_err());
    h.set_disabled(&user, false).await;
    let t = tokens(
        pw(id)
            .login("eve@example.com", PASSWORD)
            .await
            .expect("enabled again"),
    );
    // Ending a user's sessions (what an admin's disable does) ends their
    // refresh tokens, even once they are enabled again.
    id.end_sessions(&user).await.expect("end sessions");
    assert!(id.refresh(&t.refresh_token).await.is_err());
}

/// Access tokens expire.
pub async fn access_tokens_expire(h: &dyn IdentityHarness) {
    let id = h.identity();
    let (_, t) = confirmed(h, "fay@example.com").await;
    if !h.advance(t.expires_in + 1) {
        return;
    }
    assert_eq!(
        id.authenticate(&t.access_token).await,
        Err(IdentityError::InvalidToken)
    );
}

/// Expands to the identity conformance tests for an implementation, where
/// `make` is an async expression yielding a fresh harness.
#[macro_export]
macro_rules! identity_conformance_tests {
    ($make:expr) => {
        $crate::identity_conformance_tests!(@each $make;
            signup_confirm_login,
            refresh_rotation_reuse_and_logout,
            new_passwords,
            admins_reset_and_delete_accounts,
            disabled_users_are_locked_out,
            access_tokens_expire);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let harness = $make;
                $crate::testkit::identity::$name(&harness).await;
            }
        )*
    };
}
