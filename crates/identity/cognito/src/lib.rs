//! paddock's Amazon Cognito [`Identity`]: accounts, passwords and sessions
//! live in a Cognito user pool; paddock keeps none of them.
//!
//! - The flows are Cognito's own calls: SignUp, ConfirmSignUp,
//!   ResendConfirmationCode, InitiateAuth (USER_PASSWORD_AUTH,
//!   REFRESH_TOKEN_AUTH), RespondToAuthChallenge (NEW_PASSWORD_REQUIRED),
//!   ChangePassword, RevokeToken, AdminUserGlobalSignOut, AdminCreateUser
//!   with a temporary password, AdminAddUserToGroup.
//! - Access tokens are verified here, with no call to Cognito: the RS256
//!   signature against the pool's JWKS (fetched once, again for an unknown
//!   `kid` at most every 30 s, cached), `iss` the pool's issuer,
//!   `token_use` = access, `client_id` = ours, `exp` against paddock's
//!   clock. A token without the claims paddock needs is refused (401);
//!   nothing is ever mapped to a default user.
//! - Users in the store are keyed by the Cognito `sub`, made at their first
//!   sign-in, so API keys, instances and usage work as with built-in
//!   accounts. Membership of the admin group (`Administrators` unless
//!   configured) makes an admin; a user an admin disabled in paddock is
//!   refused even with a token Cognito still honours.
//! - Cognito's errors become the [`IdentityError`]s users already see.

mod jwks;
#[cfg(feature = "testkit")]
pub mod testkit;

use async_trait::async_trait;
use aws_sdk_cognitoidentityprovider::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cognitoidentityprovider::types::{
    AttributeType, AuthFlowType, AuthenticationResultType, ChallengeNameType, MessageActionType,
};
use aws_sdk_cognitoidentityprovider::Client;
use base64::Engine;
use paddock_core::identity::{Identity, IdentityError, LoginOutcome, PasswordAccounts, Tokens};
use paddock_core::store::{Store, StoreError};
use paddock_core::user::{Principal, Role, User};
use paddock_core::{Clock, UserId};
use std::sync::Arc;

/// How paddock uses the pool (`[identity]` of the configuration).
#[derive(Clone)]
pub struct CognitoSettings {
    pub user_pool_id: String,
    pub client_id: String,
    /// The app client's secret, when it has one (then every call carries
    /// a SECRET_HASH).
    pub client_secret: Option<String>,
    /// The group whose members are admins.
    pub admin_group: String,
}

impl std::fmt::Debug for CognitoSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CognitoSettings")
            .field("user_pool_id", &self.user_pool_id)
            .field("client_id", &self.client_id)
            .field("admin_group", &self.admin_group)
            .finish_non_exhaustive()
    }
}

/// The Cognito identity.
#[derive(Debug)]
pub struct CognitoIdentity {
    client: Client,
    settings: CognitoSettings,
    store: Arc<dyn Store>,
    clock: Clock,
    keys: jwks::Keys,
    issuer: String,
}

fn internal(e: impl std::fmt::Display) -> IdentityError {
    IdentityError::Internal(e.to_string())
}

/// A failed call that users cannot act on, with all Cognito said.
fn service<E: std::error::Error + 'static, R: std::fmt::Debug>(e: SdkError<E, R>) -> IdentityError {
    internal(aws_sdk_cognitoidentityprovider::error::DisplayErrorContext(
        &e,
    ))
}

/// Cognito's error code and message.
fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> (String, String) {
    match e.as_service_error() {
        Some(s) => (
            s.code().unwrap_or_default().to_owned(),
            s.message().unwrap_or_default().to_owned(),
        ),
        None => (String::new(), e.to_string()),
    }
}

/// The error users see for a refused Cognito call; `password_field` names
/// the field a weak password came in.
fn mapped<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    e: SdkError<E, R>,
    password_field: &'static str,
) -> IdentityError {
    let (code, message) = code(&e);
    match code.as_str() {
        "UsernameExistsException" | "AliasExistsException" => IdentityError::AlreadyExists,
        "UserNotConfirmedException" => IdentityError::NotConfirmed,
        "CodeMismatchException" => IdentityError::CodeMismatch,
        "ExpiredCodeException" => IdentityError::Expired("the confirmation code"),
        "InvalidPasswordException" => IdentityError::InvalidInput {
            field: password_field,
            message: password_rule(&message),
        },
        "NotAuthorizedException" if message.to_lowercase().contains("disabled") => {
            IdentityError::Disabled
        }
        "NotAuthorizedException" | "UserNotFoundException" => IdentityError::InvalidCredentials,
        "TooManyRequestsException"
        | "TooManyFailedAttemptsException"
        | "LimitExceededException" => IdentityError::Throttled {
            retry_after_secs: 30,
        },
        "InvalidParameterException" => IdentityError::InvalidInput {
            field: "email",
            message: if message.is_empty() {
                "is not valid".into()
            } else {
                message
            },
        },
        _ => service(e),
    }
}

/// Cognito's password message ("Password did not conform with policy:
/// Password not long enough"), as the rule that was broken.
fn password_rule(message: &str) -> String {
    let rule = message
        .rsplit_once(':')
        .map_or(message, |(_, r)| r)
        .trim()
        .trim_start_matches("Password ")
        .trim_end_matches('.');
    if rule.is_empty() {
        "does not meet the password policy".into()
    } else {
        format!("does not meet the password policy: {rule}")
    }
}

/// The email as paddock keeps it.
fn normalize(email: &str) -> Result<String, IdentityError> {
    let e = email.trim().to_lowercase();
    match e.split_once('@') {
        Some((l, d)) if !l.is_empty() && !d.is_empty() && !e.contains(char::is_whitespace) => Ok(e),
        _ => Err(IdentityError::InvalidInput {
            field: "email",
            message: "must be an email address like name@example.com".into(),
        }),
    }
}

/// The refresh token paddock hands out: the Cognito username (the `sub`)
/// and Cognito's refresh token, so a refresh can compute the SECRET_HASH
/// Cognito asks for, and check the user, without another call.
fn wrap_refresh(username: &str, token: &str) -> String {
    let u = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(username);
    format!("{u}.{token}")
}

fn unwrap_refresh(token: &str) -> Result<(String, &str), IdentityError> {
    let (u, t) = token.split_once('.').ok_or(IdentityError::InvalidToken)?;
    let u = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(u)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(IdentityError::InvalidToken)?;
    Ok((u, t))
}

impl CognitoIdentity {
    /// The identity on the pool `settings` names. The pool's issuer is the
    /// AWS URL for the SDK's region; its JWKS is fetched from the issuer,
    /// or from the SDK's endpoint when one is set (an emulator serves it at
    /// `<endpoint>/<pool>/.well-known/jwks.json`).
    pub fn new(
        sdk: &aws_types::SdkConfig,
        store: Arc<dyn Store>,
        clock: Clock,
        settings: CognitoSettings,
    ) -> Result<Self, IdentityError> {
        let region = sdk
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| internal("no AWS region is set (AWS_REGION)"))?;
        let issuer = format!(
            "https://cognito-idp.{region}.amazonaws.com/{}",
            settings.user_pool_id
        );
        let jwks_url = match sdk.endpoint_url() {
            Some(endpoint) => format!(
                "{}/{}/.well-known/jwks.json",
                endpoint.trim_end_matches('/'),
                settings.user_pool_id
            ),
            None => format!("{issuer}/.well-known/jwks.json"),
        };
        Ok(CognitoIdentity {
            client: Client::new(sdk),
            keys: jwks::Keys::new(jwks_url),
            issuer,
            settings,
            store,
            clock,
        })
    }

    /// The SECRET_HASH of `username`, when the client has a secret.
    fn secret_hash(&self, username: &str) -> Option<String> {
        use hmac::{Mac, SimpleHmac};
        let secret = self.settings.client_secret.as_ref()?;
        let mut mac = SimpleHmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).ok()?;
        mac.update(username.as_bytes());
        mac.update(self.settings.client_id.as_bytes());
        Some(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
    }

    fn tokens(
        &self,
        r: &AuthenticationResultType,
        refresh: String,
    ) -> Result<Tokens, IdentityError> {
        Ok(Tokens {
            access_token: r
                .access_token()
                .ok_or_else(|| internal("Cognito returned no access token"))?
                .to_owned(),
            refresh_token: refresh,
            token_type: "Bearer".into(),
            expires_in: u64::try_from(r.expires_in()).unwrap_or(0),
        })
    }

    /// Tokens from a completed authentication, with the user's store
    /// record made or checked (a disabled one is refused).
    async fn signed_in(&self, r: &AuthenticationResultType) -> Result<Tokens, IdentityError> {
        let access = r
            .access_token()
            .ok_or_else(|| internal("Cognito returned no access token"))?;
        let principal = self.authenticate(access).await?;
        let refresh = r
            .refresh_token()
            .ok_or_else(|| internal("Cognito returned no refresh token"))?;
        self.tokens(r, wrap_refresh(principal.user_id.as_str(), refresh))
    }

    /// The email of a Cognito user (by username or sub).
    async fn email_of(&self, username: &str) -> Result<String, IdentityError> {
        let out = self
            .client
            .admin_get_user()
            .user_pool_id(&self.settings.user_pool_id)
            .username(username)
            .send()
            .await
            .map_err(service)?;
        out.user_attributes()
            .iter()
            .find(|a| a.name() == "email")
            .and_then(|a| a.value())
            .map(str::to_lowercase)
            .ok_or_else(|| internal(format!("the Cognito user {username} has no email")))
    }

    /// A store record for a Cognito user: confirmed (Cognito confirmed
    /// them), with no password (Cognito keeps it).
    fn new_user(&self, user_id: UserId, email: String, role: Role, must_change: bool) -> User {
        let now = self.clock.now();
        User {
            user_id,
            email,
            password_hash: String::new(),
            role,
            confirmed: true,
            disabled: false,
            must_change_password: must_change,
            created_at: now,
            updated_at: now,
            version: 0,
        }
    }

    /// The store's record of a Cognito user, made at first sign-in, with
    /// its role following the admin group.
    async fn user_record(&self, sub: &str, role: Role) -> Result<User, IdentityError> {
        let id = UserId::new(sub);
        for _ in 0..5 {
            match self.store.get_user(&id).await.map_err(internal)? {
                Some(u) if u.role == role => return Ok(u),
                Some(mut u) => {
                    u.role = role;
                    u.updated_at = self.clock.now();
                    match self.store.update_user(&u).await {
                        Ok(u) => return Ok(u),
                        Err(StoreError::Stale(_)) => continue,
                        Err(e) => return Err(internal(e)),
                    }
                }
                None => {
                    let user = self.new_user(id.clone(), self.email_of(sub).await?, role, false);
                    match self.store.create_user(&user).await {
                        Ok(()) => return Ok(user),
                        Err(StoreError::Conflict(_)) => continue,
                        Err(e) => return Err(internal(e)),
                    }
                }
            }
        }
        Err(internal("the user record kept changing"))
    }

    async fn password_auth(
        &self,
        email: &str,
        password: &str,
    ) -> Result<
        aws_sdk_cognitoidentityprovider::operation::initiate_auth::InitiateAuthOutput,
        IdentityError,
    > {
        let mut req = self
            .client
            .initiate_auth()
            .client_id(&self.settings.client_id)
            .auth_flow(AuthFlowType::UserPasswordAuth)
            .auth_parameters("USERNAME", email)
            .auth_parameters("PASSWORD", password);
        if let Some(h) = self.secret_hash(email) {
            req = req.auth_parameters("SECRET_HASH", h);
        }
        req.send().await.map_err(|e| mapped(e, "password"))
    }

    /// The name to give Cognito's admin calls for a user: the email they
    /// sign in with (an alias of the sub, which Cognito takes too, and
    /// which an emulator matches its sessions by).
    async fn username_of(&self, user: &UserId) -> Result<String, IdentityError> {
        Ok(match self.store.get_user(user).await.map_err(internal)? {
            Some(u) => u.email,
            None => user.as_str().to_owned(),
        })
    }

    /// Puts a user in the admin group, making the group when it is missing.
    async fn add_to_admins(&self, username: &str) -> Result<(), IdentityError> {
        for attempt in 0..2 {
            let result = self
                .client
                .admin_add_user_to_group()
                .user_pool_id(&self.settings.user_pool_id)
                .username(username)
                .group_name(&self.settings.admin_group)
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e) if attempt == 0 && code(&e).0 == "ResourceNotFoundException" => {
                    self.client
                        .create_group()
                        .user_pool_id(&self.settings.user_pool_id)
                        .group_name(&self.settings.admin_group)
                        .description("paddock administrators")
                        .send()
                        .await
                        .map_err(service)?;
                }
                Err(e) => return Err(service(e)),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Identity for CognitoIdentity {
    async fn authenticate(&self, access_token: &str) -> Result<Principal, IdentityError> {
        let claims = self
            .keys
            .verify(
                access_token,
                &self.issuer,
                &self.settings.client_id,
                self.clock.now(),
            )
            .await?;
        let role = if claims
            .groups
            .iter()
            .any(|g| g == &self.settings.admin_group)
        {
            Role::Admin
        } else {
            Role::User
        };
        let user = self.user_record(&claims.sub, role).await?;
        if user.disabled {
            return Err(IdentityError::Disabled);
        }
        Ok(Principal {
            user_id: user.user_id,
            email: user.email,
            role,
            api_key: None,
        })
    }

    async fn refresh(&self, refresh_token: &str) -> Result<Tokens, IdentityError> {
        let (username, token) = unwrap_refresh(refresh_token)?;
        if let Some(u) = self
            .store
            .get_user(&UserId::new(username.clone()))
            .await
            .map_err(internal)?
        {
            if u.disabled {
                return Err(IdentityError::Disabled);
            }
        }
        let mut req = self
            .client
            .initiate_auth()
            .client_id(&self.settings.client_id)
            .auth_flow(AuthFlowType::RefreshTokenAuth)
            .auth_parameters("REFRESH_TOKEN", token);
        if let Some(h) = self.secret_hash(&username) {
            req = req.auth_parameters("SECRET_HASH", h);
        }
        let out = req.send().await.map_err(|e| match mapped(e, "password") {
            IdentityError::InvalidCredentials => IdentityError::InvalidToken,
            other => other,
        })?;
        let r = out
            .authentication_result()
            .ok_or(IdentityError::InvalidToken)?;
        let access = r.access_token().ok_or(IdentityError::InvalidToken)?;
        self.authenticate(access).await?;
        // Cognito keeps the refresh token unless the pool rotates it.
        let next = match r.refresh_token() {
            Some(t) => wrap_refresh(&username, t),
            None => refresh_token.to_owned(),
        };
        self.tokens(r, next)
    }

    async fn logout(&self, refresh_token: &str) -> Result<(), IdentityError> {
        let (username, token) = unwrap_refresh(refresh_token)?;
        let result = self
            .client
            .revoke_token()
            .token(token)
            .client_id(&self.settings.client_id)
            .set_client_secret(self.settings.client_secret.clone())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let (code, _) = code(&e);
                if code == "UnsupportedOperationException"
                    || code.is_empty()
                    || code.contains("NotImplemented")
                {
                    // A pool (or an emulator) without token revocation:
                    // end the user's sessions instead.
                    tracing::debug!(error = %aws_sdk_cognitoidentityprovider::error::DisplayErrorContext(&e), "RevokeToken unavailable; signing the user out everywhere");
                    self.end_sessions(&UserId::new(username)).await
                } else {
                    Err(mapped(e, "password"))
                }
            }
        }
    }

    async fn end_sessions(&self, user: &UserId) -> Result<(), IdentityError> {
        let username = self.username_of(user).await?;
        self.client
            .admin_user_global_sign_out()
            .user_pool_id(&self.settings.user_pool_id)
            .username(username)
            .send()
            .await
            .map_err(service)?;
        Ok(())
    }

    async fn set_role(&self, user: &UserId, role: Role) -> Result<(), IdentityError> {
        let username = self.username_of(user).await?;
        match role {
            Role::Admin => self.add_to_admins(&username).await,
            Role::User => {
                self.client
                    .admin_remove_user_from_group()
                    .user_pool_id(&self.settings.user_pool_id)
                    .username(username)
                    .group_name(&self.settings.admin_group)
                    .send()
                    .await
                    .map_err(service)?;
                Ok(())
            }
        }
    }

    fn passwords(&self) -> Option<&dyn PasswordAccounts> {
        Some(self)
    }
}

#[async_trait]
impl PasswordAccounts for CognitoIdentity {
    async fn signup(&self, email: &str, password: &str) -> Result<UserId, IdentityError> {
        let email = normalize(email)?;
        let attr = AttributeType::builder()
            .name("email")
            .value(&email)
            .build()
            .map_err(internal)?;
        let out = self
            .client
            .sign_up()
            .client_id(&self.settings.client_id)
            .username(&email)
            .password(password)
            .user_attributes(attr)
            .set_secret_hash(self.secret_hash(&email))
            .send()
            .await
            .map_err(|e| mapped(e, "password"))?;
        Ok(UserId::new(out.user_sub()))
    }

    async fn confirm(&self, email: &str, code: &str) -> Result<(), IdentityError> {
        let email = normalize(email)?;
        self.client
            .confirm_sign_up()
            .client_id(&self.settings.client_id)
            .username(&email)
            .confirmation_code(code.trim())
            .set_secret_hash(self.secret_hash(&email))
            .send()
            .await
            .map_err(|e| mapped(e, "password"))?;
        Ok(())
    }

    async fn resend_code(&self, email: &str) -> Result<(), IdentityError> {
        let email = normalize(email)?;
        self.client
            .resend_confirmation_code()
            .client_id(&self.settings.client_id)
            .username(&email)
            .set_secret_hash(self.secret_hash(&email))
            .send()
            .await
            .map_err(|e| mapped(e, "password"))?;
        Ok(())
    }

    async fn login(&self, email: &str, password: &str) -> Result<LoginOutcome, IdentityError> {
        let email = normalize(email).map_err(|_| IdentityError::InvalidCredentials)?;
        let out = self.password_auth(&email, password).await?;
        if out.challenge_name() == Some(&ChallengeNameType::NewPasswordRequired) {
            return Ok(LoginOutcome::NewPasswordRequired {
                session: out.session().unwrap_or_default().to_owned(),
            });
        }
        if let Some(other) = out.challenge_name() {
            return Err(IdentityError::Unsupported(format!(
                "Cognito asks for {}, which paddock does not answer; sign in where the pool's hosted UI is",
                other.as_str()
            )));
        }
        let r = out
            .authentication_result()
            .ok_or_else(|| internal("Cognito returned neither tokens nor a challenge"))?;
        Ok(LoginOutcome::Tokens(self.signed_in(r).await?))
    }

    async fn complete_new_password(
        &self,
        email: &str,
        session: &str,
        new_password: &str,
    ) -> Result<Tokens, IdentityError> {
        let email = normalize(email)?;
        let mut req = self
            .client
            .respond_to_auth_challenge()
            .client_id(&self.settings.client_id)
            .challenge_name(ChallengeNameType::NewPasswordRequired)
            .session(session)
            .challenge_responses("USERNAME", &email)
            .challenge_responses("NEW_PASSWORD", new_password);
        if let Some(h) = self.secret_hash(&email) {
            req = req.challenge_responses("SECRET_HASH", h);
        }
        let out = req
            .send()
            .await
            .map_err(|e| match mapped(e, "new_password") {
                IdentityError::InvalidCredentials => IdentityError::Expired("the sign-in session"),
                other => other,
            })?;
        let r = out
            .authentication_result()
            .ok_or_else(|| internal("Cognito returned no tokens"))?;
        self.signed_in(r).await
    }

    async fn change_password(
        &self,
        user: &UserId,
        old_password: &str,
        new_password: &str,
    ) -> Result<(), IdentityError> {
        let record = self
            .store
            .get_user(user)
            .await
            .map_err(internal)?
            .ok_or(IdentityError::InvalidToken)?;
        let not_current = || IdentityError::InvalidInput {
            field: "old_password",
            message: "is not your current password".into(),
        };
        // ChangePassword needs the user's own access token: signing in with
        // the old password both checks it and gets one.
        let out = match self.password_auth(&record.email, old_password).await {
            Ok(out) => out,
            Err(IdentityError::InvalidCredentials) => return Err(not_current()),
            Err(e) => return Err(e),
        };
        let access = out
            .authentication_result()
            .and_then(|r| r.access_token())
            .ok_or_else(not_current)?;
        self.client
            .change_password()
            .access_token(access)
            .previous_password(old_password)
            .proposed_password(new_password)
            .send()
            .await
            .map_err(|e| mapped(e, "new_password"))?;
        // The other sessions end, as with built-in accounts.
        self.end_sessions(user).await
    }

    async fn admin_reset_password(
        &self,
        user: &UserId,
        temporary_password: &str,
    ) -> Result<(), IdentityError> {
        let username = self.username_of(user).await?;
        // Not permanent: Cognito asks for a new password at the next
        // sign-in (FORCE_CHANGE_PASSWORD), as for a user an admin created.
        self.client
            .admin_set_user_password()
            .user_pool_id(&self.settings.user_pool_id)
            .username(&username)
            .password(temporary_password)
            .permanent(false)
            .send()
            .await
            .map_err(|e| mapped(e, "password"))?;
        if let Some(record) = self.store.get_user(user).await.map_err(internal)? {
            let mut record = record;
            record.must_change_password = true;
            record.updated_at = self.clock.now();
            match self.store.update_user(&record).await {
                Ok(_) | Err(StoreError::Stale(_)) => {}
                Err(e) => return Err(internal(e)),
            }
        }
        self.end_sessions(user).await
    }

    async fn admin_delete_user(&self, user: &UserId) -> Result<(), IdentityError> {
        let username = self.username_of(user).await?;
        self.client
            .admin_delete_user()
            .user_pool_id(&self.settings.user_pool_id)
            .username(username)
            .send()
            .await
            .map_err(service)?;
        self.store.delete_user(user).await.map_err(internal)
    }

    async fn admin_create_user(
        &self,
        email: &str,
        temporary_password: &str,
        role: Role,
        must_change: bool,
    ) -> Result<User, IdentityError> {
        let email = normalize(email)?;
        let attr = |name: &str, value: &str| {
            AttributeType::builder()
                .name(name)
                .value(value)
                .build()
                .map_err(internal)
        };
        let out = self
            .client
            .admin_create_user()
            .user_pool_id(&self.settings.user_pool_id)
            .username(&email)
            .temporary_password(temporary_password)
            .user_attributes(attr("email", &email)?)
            .user_attributes(attr("email_verified", "true")?)
            .message_action(MessageActionType::Suppress)
            .send()
            .await
            .map_err(|e| mapped(e, "password"))?;
        let created = out
            .user()
            .ok_or_else(|| internal("Cognito returned no user"))?;
        let sub = created
            .attributes()
            .iter()
            .find(|a| a.name() == "sub")
            .and_then(|a| a.value())
            .or(created.username())
            .ok_or_else(|| internal("Cognito returned a user without a sub"))?
            .to_owned();
        if !must_change {
            self.client
                .admin_set_user_password()
                .user_pool_id(&self.settings.user_pool_id)
                .username(&email)
                .password(temporary_password)
                .permanent(true)
                .send()
                .await
                .map_err(|e| mapped(e, "password"))?;
        }
        if role == Role::Admin {
            self.add_to_admins(&email).await?;
        }
        let user = self.new_user(UserId::new(sub), email, role, must_change);
        match self.store.create_user(&user).await {
            Ok(()) => Ok(user),
            Err(StoreError::Conflict(_)) => Err(IdentityError::AlreadyExists),
            Err(e) => Err(internal(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_carry_their_user() {
        let t = wrap_refresh("0b2c-sub", "eyJj.tok.en");
        assert_eq!(
            unwrap_refresh(&t).unwrap(),
            ("0b2c-sub".into(), "eyJj.tok.en")
        );
        assert_eq!(unwrap_refresh("garbage"), Err(IdentityError::InvalidToken));
    }

    #[test]
    fn password_messages_name_the_rule() {
        assert_eq!(
            password_rule("Password did not conform with policy: Password not long enough"),
            "does not meet the password policy: not long enough"
        );
        assert_eq!(password_rule(""), "does not meet the password policy");
    }
}
