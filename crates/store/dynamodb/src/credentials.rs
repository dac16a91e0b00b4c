//! The built-in identity's records in DynamoDB ([`CredentialStore`]), one
//! table (`credentials`), every read strongly consistent:
//! - `conf#<email>`: a pending confirmation code, its `attempts` counted
//!   with an atomic `ADD`.
//! - `rt#<hash>`: a refresh token, with its own `used` and `revoked`.
//! - `family#<id>` and `user#<id>`: revocation markers. Revoking a family,
//!   or every token of a user (those made up to that time), is one write of
//!   a marker instead of an update per token through an index that lags its
//!   table; reading or consuming a token checks the markers in the same
//!   consistent read or transaction.

use crate::{backend, failed_condition, get_n, n, nanos, parse, s, sdk, DynamoStore, Item};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, ReturnValue, TransactWriteItem, Update,
};
use paddock_core::store::{CredentialStore, StoreResult};
use paddock_core::user::{ConfirmationCode, RefreshToken};
use paddock_core::{Timestamp, UserId};
use std::collections::HashMap;

fn id(v: String) -> HashMap<String, AttributeValue> {
    HashMap::from([("id".to_owned(), s(v))])
}

impl DynamoStore {
    fn code_of(item: &Item) -> StoreResult<ConfirmationCode> {
        let mut c: ConfirmationCode = parse(item)?;
        c.attempts = get_n(item, "attempts").unwrap_or(0).max(0) as u32;
        Ok(c)
    }

    /// The revocation time that applies to a token: its own, its family's,
    /// or its user's (for tokens made up to then), the earliest of them.
    fn revoked_at(
        token: &Item,
        family: Option<&Item>,
        user: Option<&Item>,
        created: Timestamp,
    ) -> Option<Timestamp> {
        let own = get_n(token, "revoked");
        let fam = family.and_then(|f| get_n(f, "at"));
        let usr = user
            .and_then(|u| get_n(u, "at"))
            .filter(|at| *at >= nanos(&created));
        [own, fam, usr]
            .into_iter()
            .flatten()
            .min()
            .map(crate::from_nanos)
    }

    async fn markers_for(&self, t: &RefreshToken) -> StoreResult<(Option<Item>, Option<Item>)> {
        let family = self
            .get_id(&self.t.credentials, format!("family#{}", t.family_id))
            .await?;
        let user = self
            .get_id(&self.t.credentials, format!("user#{}", t.user_id.as_str()))
            .await?;
        Ok((family, user))
    }

    /// Sets a marker's time to `at`, unless it is already set (the first
    /// revocation of a family stands) or, with `latest`, later.
    async fn mark(&self, key: String, at: Timestamp, latest: bool) -> StoreResult<()> {
        let condition = if latest {
            "attribute_not_exists(#at) OR #at < :t"
        } else {
            "attribute_not_exists(#at)"
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.t.credentials)
            .key("id", s(key))
            .update_expression("SET #at = :t")
            .condition_expression(condition)
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":t", n(nanos(&at)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if failed_condition(&e) => Ok(()),
            Err(e) => Err(sdk(e)),
        }
    }
}

#[async_trait]
impl CredentialStore for DynamoStore {
    async fn put_confirmation(&self, code: &ConfirmationCode) -> StoreResult<()> {
        let item = HashMap::from([
            ("id".into(), s(format!("conf#{}", code.email))),
            ("doc".into(), crate::doc(code)?),
            ("attempts".into(), n(code.attempts)),
        ]);
        self.client
            .put_item()
            .table_name(&self.t.credentials)
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk)?;
        Ok(())
    }

    async fn get_confirmation(&self, email: &str) -> StoreResult<Option<ConfirmationCode>> {
        self.get_id(&self.t.credentials, format!("conf#{email}"))
            .await?
            .map(|i| Self::code_of(&i))
            .transpose()
    }

    async fn count_confirmation_attempt(
        &self,
        email: &str,
    ) -> StoreResult<Option<ConfirmationCode>> {
        let result = self
            .client
            .update_item()
            .table_name(&self.t.credentials)
            .set_key(Some(id(format!("conf#{email}"))))
            .update_expression("ADD attempts :one")
            .condition_expression("attribute_exists(id)")
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => out.attributes.map(|i| Self::code_of(&i)).transpose(),
            Err(e) if failed_condition(&e) => Ok(None),
            Err(e) => Err(sdk(e)),
        }
    }

    async fn delete_confirmation(&self, email: &str) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.t.credentials)
            .set_key(Some(id(format!("conf#{email}"))))
            .send()
            .await
            .map_err(sdk)?;
        Ok(())
    }

    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        let mut item = HashMap::from([
            ("id".into(), s(format!("rt#{}", token.token_hash))),
            ("doc".into(), crate::doc(token)?),
        ]);
        if let Some(t) = &token.used_at {
            item.insert("used".into(), n(nanos(t)));
        }
        if let Some(t) = &token.revoked_at {
            item.insert("revoked".into(), n(nanos(t)));
        }
        self.client
            .put_item()
            .table_name(&self.t.credentials)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await
            .map_err(|e| {
                if failed_condition(&e) {
                    paddock_core::store::StoreError::Conflict("a refresh token".into())
                } else {
                    sdk(e)
                }
            })?;
        Ok(())
    }

    async fn get_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        let Some(item) = self
            .get_id(&self.t.credentials, format!("rt#{token_hash}"))
            .await?
        else {
            return Ok(None);
        };
        let mut t: RefreshToken = parse(&item)?;
        let (family, user) = self.markers_for(&t).await?;
        t.used_at = get_n(&item, "used").map(crate::from_nanos);
        t.revoked_at = Self::revoked_at(&item, family.as_ref(), user.as_ref(), t.created_at);
        Ok(Some(t))
    }

    async fn consume_refresh_token(&self, token_hash: &str, at: Timestamp) -> StoreResult<bool> {
        let Some(item) = self
            .get_id(&self.t.credentials, format!("rt#{token_hash}"))
            .await?
        else {
            return Ok(false);
        };
        let t: RefreshToken = parse(&item)?;
        // The use, only while neither the token, its family nor its user
        // is revoked, all checked in the one transaction.
        let update = Update::builder()
            .table_name(&self.t.credentials)
            .set_key(Some(id(format!("rt#{token_hash}"))))
            .update_expression("SET used = :t")
            .condition_expression("attribute_exists(id) AND attribute_not_exists(used) AND attribute_not_exists(revoked)")
            .expression_attribute_values(":t", n(nanos(&at)))
            .build()
            .map_err(backend)?;
        let family = ConditionCheck::builder()
            .table_name(&self.t.credentials)
            .set_key(Some(id(format!("family#{}", t.family_id))))
            .condition_expression("attribute_not_exists(#at)")
            .expression_attribute_names("#at", "at")
            .build()
            .map_err(backend)?;
        let user = ConditionCheck::builder()
            .table_name(&self.t.credentials)
            .set_key(Some(id(format!("user#{}", t.user_id.as_str()))))
            .condition_expression("attribute_not_exists(#at) OR #at < :c")
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":c", n(nanos(&t.created_at)))
            .build()
            .map_err(backend)?;
        match self
            .transact(vec![
                TransactWriteItem::builder().update(update).build(),
                TransactWriteItem::builder().condition_check(family).build(),
                TransactWriteItem::builder().condition_check(user).build(),
            ])
            .await
        {
            Ok(()) => Ok(true),
            Err(paddock_core::store::StoreError::Stale(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn revoke_refresh_family(&self, family_id: &str, at: Timestamp) -> StoreResult<()> {
        self.mark(format!("family#{family_id}"), at, false).await
    }

    async fn revoke_user_refresh_tokens(&self, user: &UserId, at: Timestamp) -> StoreResult<()> {
        self.mark(format!("user#{}", user.as_str()), at, true).await
    }
}
