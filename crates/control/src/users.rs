//! Users, for administrators ([`AdminOps`]): list, create, disable/enable,
//! promote/demote, reset a password, delete. Users an admin creates (and
//! users whose password an admin reset) must pick a new password at their
//! next login (NEW_PASSWORD_REQUIRED).

use crate::{AdminOps, Error, Result, STALE_RETRIES};
use paddock_core::store::StoreError;
use paddock_core::user::{Role, User};
use paddock_core::{Timestamp, UserId};
use serde::{Deserialize, Serialize};

/// A user as admins see it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub user_id: UserId,
    pub email: String,
    pub role: Role,
    pub confirmed: bool,
    pub disabled: bool,
    pub must_change_password: bool,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            user_id: u.user_id.clone(),
            email: u.email.clone(),
            role: u.role,
            confirmed: u.confirmed,
            disabled: u.disabled,
            must_change_password: u.must_change_password,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// A user to create.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub email: String,
    /// `admin` or `user` (the default).
    #[serde(default)]
    pub role: Option<String>,
    /// When absent, one is generated and returned once.
    pub temporary_password: Option<String>,
}

/// A user just created, with the generated temporary password if there is one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct CreatedUser {
    #[serde(flatten)]
    pub user: UserView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporary_password: Option<String>,
}

/// What deleting a user did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct DeletedUser {
    pub user_id: UserId,
    pub email: String,
    pub instances_stopped: usize,
    pub keys_revoked: usize,
}

/// What to change of a user.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub disabled: Option<bool>,
    pub role: Option<String>,
}

fn parse_role(s: &str) -> Result<Role> {
    Role::parse(s).ok_or_else(|| Error::invalid("role: must be `admin` or `user`"))
}

impl AdminOps<'_> {
    /// Every user, oldest first.
    pub async fn users(&self) -> Result<Vec<UserView>> {
        Ok(self
            .control
            .store
            .list_users()
            .await?
            .iter()
            .map(UserView::from)
            .collect())
    }

    /// Creates a confirmed user who must change the temporary password at
    /// first login.
    pub async fn create_user(&self, req: CreateUser) -> Result<CreatedUser> {
        let role = parse_role(req.role.as_deref().unwrap_or("user"))?;
        let (password, generated) = match req.temporary_password {
            Some(p) => (p, false),
            None => (paddock_core::secret::generated_password(), true),
        };
        let user = self
            .control
            .passwords()?
            .admin_create_user(&req.email, &password, role, true)
            .await?;
        tracing::info!(user = %user.user_id, role = role.as_str(), by = %self.admin.user_id, "user created by admin");
        Ok(CreatedUser {
            user: UserView::from(&user),
            temporary_password: generated.then_some(password),
        })
    }

    /// Gives a user a generated temporary password, to be changed at their
    /// next login; their sessions end (their API keys keep working).
    /// Returns the user's email and the password, shown once.
    pub async fn reset_password(&self, id: &str) -> Result<(String, String)> {
        let c = self.control;
        let id = UserId::new(id);
        let Some(user) = c.store.get_user(&id).await? else {
            return Err(Error::not_found(format!("user {id} not found")));
        };
        let password = paddock_core::secret::generated_password();
        c.passwords()?.admin_reset_password(&id, &password).await?;
        tracing::info!(user = %id, by = %self.admin.user_id, "password reset by admin");
        Ok((user.email, password))
    }

    /// Deletes a user: their instances are stopped, their API keys
    /// revoked, their account removed (they cannot sign in, and the email
    /// is free again). Their usage stays, for the records. An admin cannot
    /// delete themselves.
    pub async fn delete_user(&self, id: &str) -> Result<DeletedUser> {
        let c = self.control;
        let id = UserId::new(id);
        if id == self.admin.user_id {
            return Err(Error::invalid(
                "user: you cannot delete your own account; ask another admin",
            ));
        }
        let Some(user) = c.store.get_user(&id).await? else {
            return Err(Error::not_found(format!("user {id} not found")));
        };
        // Stop what they run first, so nothing is left billing once the
        // account is gone.
        let mut stopped = 0;
        for i in c.store.list_instances(Some(&id)).await? {
            if i.status != paddock_core::instance::InstanceState::Stopped {
                c.stop_instance(self.admin, i.instance_id.as_str()).await?;
                stopped += 1;
            }
        }
        let now = c.clock.now();
        let mut revoked = 0;
        for k in c.store.list_api_keys(&id).await? {
            if k.revoked_at.is_none() {
                c.store.revoke_api_key(&k.key_id, now).await?;
                revoked += 1;
            }
        }
        c.keys.clear_keys();
        c.passwords()?.admin_delete_user(&id).await?;
        tracing::info!(user = %id, by = %self.admin.user_id, stopped, revoked, "user deleted by admin");
        Ok(DeletedUser {
            user_id: id,
            email: user.email,
            instances_stopped: stopped,
            keys_revoked: revoked,
        })
    }

    /// Disables or enables, promotes or demotes a user. An admin cannot
    /// disable or demote themselves. Disabling ends the user's sessions;
    /// any change drops cached API-key principals.
    pub async fn update_user(&self, id: &str, req: UpdateUser) -> Result<UserView> {
        let c = self.control;
        let id = UserId::new(id);
        let not_found = || Error::not_found(format!("user {id} not found"));
        let mut user = c.store.get_user(&id).await?.ok_or_else(not_found)?;
        if user.user_id == self.admin.user_id {
            if req.disabled == Some(true) {
                return Err(Error::invalid(
                    "disabled: you cannot disable your own account",
                ));
            }
            if req.role.as_deref().is_some_and(|r| r != "admin") {
                return Err(Error::invalid(
                    "role: you cannot demote yourself; ask another admin",
                ));
            }
        }
        let role = req.role.as_deref().map(parse_role).transpose()?;
        if let Some(r) = role.filter(|r| *r != user.role) {
            c.identity.set_role(&id, r).await?;
        }
        let now = c.clock.now();
        // Compare-and-swap: a write that lands between the read and this one
        // (the user changing their password) is read again and kept.
        let mut retries = 0;
        let user = loop {
            if let Some(r) = role {
                user.role = r;
            }
            if let Some(d) = req.disabled {
                user.disabled = d;
            }
            user.updated_at = now;
            match c.store.update_user(&user).await {
                Ok(stored) => break stored,
                Err(StoreError::Stale(_)) if retries < STALE_RETRIES => {
                    retries += 1;
                    user = c.store.get_user(&id).await?.ok_or_else(not_found)?;
                }
                Err(e) => return Err(e.into()),
            }
        };
        if req.disabled == Some(true) {
            c.identity.end_sessions(&user.user_id).await?;
        }
        c.keys.clear_keys();
        tracing::info!(user = %user.user_id, role = user.role.as_str(), disabled = user.disabled, "user updated by admin");
        Ok(UserView::from(&user))
    }
}
