//! Accounts: sign-up, confirmation, login, refresh, logout and password
//! changes through the configured identity, with the rules paddock adds
//! on top (sign-up may be closed; the two passwords of a sign-up must
//! match), and who the caller is. The operations that are the identity's
//! alone answer its own [`IdentityError`], so that pages can tell a user
//! exactly which step to take next.

use crate::{Control, Error, Result};
use paddock_core::identity::{IdentityError, LoginOutcome, PasswordAccounts, Tokens};
use paddock_core::user::{Principal, Role};
use paddock_core::{ApiKeyId, Timestamp, UserId};
use serde::Serialize;

/// The caller as they see themselves.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Me {
    pub user_id: UserId,
    pub email: String,
    pub role: Role,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// The key the request was made with, if it was an API key.
    pub via_api_key: Option<ApiKeyId>,
}

impl Control {
    /// The identity's password flows, or why there are none.
    pub fn passwords(&self) -> Result<&dyn PasswordAccounts, IdentityError> {
        self.identity.passwords().ok_or_else(|| {
            IdentityError::Unsupported(
                "this server signs users in through its identity provider; there are no paddock passwords to use here".into(),
            )
        })
    }

    /// Creates an unconfirmed account; a confirmation code is sent.
    pub async fn signup(&self, email: &str, password: &str, confirm: &str) -> Result<UserId> {
        if !self.settings.allow_signup {
            return Err(Error::Forbidden(
                "sign-up is closed on this server; ask an administrator for an account".into(),
            ));
        }
        if password != confirm {
            return Err(Error::invalid("confirmPassword: does not match password"));
        }
        Ok(self.passwords()?.signup(email, password).await?)
    }

    /// Confirms an account with the code that was sent.
    pub async fn confirm(&self, email: &str, code: &str) -> Result<(), IdentityError> {
        self.passwords()?.confirm(email, code).await
    }

    /// Sends a new confirmation code (the old one stops working).
    pub async fn resend_code(&self, email: &str) -> Result<(), IdentityError> {
        self.passwords()?.resend_code(email).await
    }

    /// Checks a password: tokens, or the NEW_PASSWORD_REQUIRED challenge.
    pub async fn login(&self, email: &str, password: &str) -> Result<LoginOutcome, IdentityError> {
        self.passwords()?.login(email, password).await
    }

    /// Answers NEW_PASSWORD_REQUIRED.
    pub async fn complete_new_password(
        &self,
        email: &str,
        session: &str,
        new_password: &str,
    ) -> Result<Tokens, IdentityError> {
        self.passwords()?
            .complete_new_password(email, session, new_password)
            .await
    }

    /// The caller changes their own password; their other sessions end.
    pub async fn change_password(
        &self,
        caller: &Principal,
        old_password: &str,
        new_password: &str,
    ) -> Result<(), IdentityError> {
        self.passwords()?
            .change_password(&caller.user_id, old_password, new_password)
            .await
    }

    /// Rotates a refresh token.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, IdentityError> {
        self.identity.refresh(refresh_token).await
    }

    /// Ends a session (revokes its refresh token's family).
    pub async fn logout(&self, refresh_token: &str) -> Result<(), IdentityError> {
        self.identity.logout(refresh_token).await
    }

    /// Who the caller is.
    pub async fn me(&self, caller: &Principal) -> Result<Me> {
        let user = self
            .store
            .get_user(&caller.user_id)
            .await?
            .ok_or_else(|| Error::Unauthenticated("the account no longer exists".into()))?;
        Ok(Me {
            user_id: user.user_id,
            email: user.email,
            role: user.role,
            created_at: user.created_at,
            via_api_key: caller.api_key.as_ref().map(|k| k.key_id.clone()),
        })
    }
}
