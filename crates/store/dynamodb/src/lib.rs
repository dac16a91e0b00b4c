//! paddock's DynamoDB [`Store`]: a control plane on AWS keeps no state on
//! its own disk and can run as several replicas. The table design, with
//! each method's access pattern and cost, is in this crate's README.
//!
//! Records are kept as their JSON documents (`doc`), beside the attributes
//! that keys, indexes and conditions need (`version`, `user_id`, sort
//! keys, an API key's `last_used` and `revoked`). Every update of a record
//! that callers edit is a compare-and-swap on `version`; an instance and
//! its history entry are written in one TransactWriteItems; usage records
//! are batch-written with a TTL, and each batch is added to the day totals
//! with one atomic `ADD` per user, day and model.

mod credentials;
mod tables;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, DeleteRequest, Put, Select, TransactWriteItem, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use paddock_core::catalog::Model;
use paddock_core::instance::{Instance, Transition};
use paddock_core::store::{Store, StoreError, StoreResult, UsageDay, UsageQuery};
use paddock_core::user::{ApiKey, UsageRecord, User};
use paddock_core::{ApiKeyId, InstanceId, ModelId, Timestamp, UserId};
use std::collections::{BTreeMap, HashMap};

pub use tables::Tables;

type Item = HashMap<String, AttributeValue>;

/// How the store is set up (`[store]` of the configuration).
#[derive(Debug, Clone)]
pub struct DynamoSettings {
    /// Prefix of every table name (`paddock-` makes `paddock-users` ...).
    pub table_prefix: String,
    /// Create missing tables at start (development and tests); otherwise
    /// they must exist, and a missing one is an error naming it.
    pub create_tables: bool,
    /// Days a raw usage record is kept (its TTL); day totals are kept.
    pub usage_retention_days: u32,
}

/// The DynamoDB store.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    t: Tables,
    retention_days: u32,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The message of an SDK error, with the service's own text when it has one.
fn sdk<E: std::error::Error + 'static, R: std::fmt::Debug>(e: SdkError<E, R>) -> StoreError {
    use std::error::Error;
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    StoreError::Backend(msg)
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A time as nanoseconds since the epoch: exact, and ordered as numbers.
fn nanos(t: &Timestamp) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn from_nanos(v: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_nanos(v)
}

/// A sort key that orders by time, then by `tie` (zero-padded nanoseconds).
fn time_key(t: &Timestamp, tie: &str) -> String {
    format!("{:020}#{tie}", nanos(t).max(0))
}

fn doc<T: serde::Serialize>(v: &T) -> StoreResult<AttributeValue> {
    Ok(s(serde_json::to_string(v).map_err(backend)?))
}

fn get_s<'a>(item: &'a Item, name: &str) -> StoreResult<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(StoreError::Backend(format!(
            "an item lacks its {name} attribute"
        ))),
    }
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

fn parse<T: serde::de::DeserializeOwned>(item: &Item) -> StoreResult<T> {
    serde_json::from_str(get_s(item, "doc")?).map_err(backend)
}

/// Whether a single-item write failed its condition.
fn failed_condition<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(
    e: &SdkError<E, R>,
) -> bool {
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

/// Whether a transaction was cancelled because one of its conditions failed.
fn failed_transaction(
    e: &SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError>,
) -> bool {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => c
            .cancellation_reasons()
            .iter()
            .any(|r| r.code() == Some("ConditionalCheckFailed")),
        _ => false,
    }
}

fn put(table: &str, item: Item, condition: Option<&str>, values: Item) -> StoreResult<Put> {
    Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .set_condition_expression(condition.map(str::to_owned))
        .set_expression_attribute_values((!values.is_empty()).then_some(values))
        .build()
        .map_err(backend)
}

fn put_item(p: Put) -> TransactWriteItem {
    TransactWriteItem::builder().put(p).build()
}

const ABSENT: &str = "attribute_not_exists(id)";
const SAME_VERSION: &str = "attribute_exists(id) AND version = :v";

impl DynamoStore {
    /// Opens the store on the tables `settings` names: creates the missing
    /// ones when `create_tables` is set, else fails naming the first one
    /// that is missing.
    pub async fn open(sdk: &aws_types::SdkConfig, settings: DynamoSettings) -> StoreResult<Self> {
        let client = Client::new(sdk);
        let t = Tables::new(&settings.table_prefix);
        t.ensure(&client, settings.create_tables).await?;
        Ok(DynamoStore {
            client,
            t,
            retention_days: settings.usage_retention_days.max(1),
        })
    }

    /// The table names in use.
    pub fn tables(&self) -> &Tables {
        &self.t
    }

    async fn get(&self, table: &str, key: Item) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk)?;
        Ok(out.item)
    }

    async fn get_id(&self, table: &str, id: String) -> StoreResult<Option<Item>> {
        self.get(table, HashMap::from([("id".into(), s(id))])).await
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<(), StoreError> {
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                if failed_transaction(&e) {
                    StoreError::Stale("a condition".into())
                } else {
                    sdk(e)
                }
            })
    }

    /// A transaction that makes new records: a failed condition means one
    /// exists already (`Conflict`, naming `what`).
    async fn transact_new(
        &self,
        items: Vec<TransactWriteItem>,
        what: impl FnOnce() -> String,
    ) -> StoreResult<()> {
        match self.transact(items).await {
            Err(StoreError::Stale(_)) => Err(StoreError::Conflict(what())),
            other => other,
        }
    }

    /// Every item a query returns, following its pages.
    async fn query_all(
        &self,
        q: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    ) -> StoreResult<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = q
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    /// Every item of a table, or those whose id starts with `prefix` (a Scan: only
    /// for the tables that do not grow with traffic).
    async fn scan_prefix(&self, table: &str, prefix: Option<&str>) -> StoreResult<Vec<Item>> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut scan = self.client.scan().table_name(table);
            if let Some(p) = prefix {
                scan = scan
                    .filter_expression("begins_with(id, :p)")
                    .expression_attribute_values(":p", s(p));
            }
            let out = scan
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    fn user_item(u: &User) -> StoreResult<Item> {
        Ok(HashMap::from([
            ("id".into(), s(format!("user#{}", u.user_id.as_str()))),
            ("doc".into(), doc(u)?),
            ("version".into(), n(u.version)),
            // Never serialised with the record; kept beside it.
            ("password_hash".into(), s(u.password_hash.clone())),
        ]))
    }

    fn user_of(item: &Item) -> StoreResult<User> {
        let mut u: User = parse(item)?;
        u.version = get_n(item, "version").unwrap_or(0).max(0) as u64;
        u.password_hash = get_s(item, "password_hash")?.to_owned();
        Ok(u)
    }

    fn model_of(item: &Item) -> StoreResult<Model> {
        let mut m: Model = parse(item)?;
        m.version = get_n(item, "version").unwrap_or(0).max(0) as u64;
        Ok(m)
    }

    fn email_item(email: &str, user: &UserId) -> Item {
        HashMap::from([
            ("id".into(), s(format!("email#{email}"))),
            ("user_id".into(), s(user.as_str())),
        ])
    }

    fn instance_item(i: &Instance) -> StoreResult<Item> {
        Ok(HashMap::from([
            ("id".into(), s(i.instance_id.as_str())),
            ("doc".into(), doc(i)?),
            ("version".into(), n(i.version)),
            ("user_id".into(), s(i.user_id.as_str())),
            ("kind".into(), s("instance")),
            (
                "created".into(),
                s(time_key(&i.created_at, i.instance_id.as_str())),
            ),
        ]))
    }

    fn transition_put(&self, t: &Transition, seq: u64) -> StoreResult<TransactWriteItem> {
        let item = HashMap::from([
            ("instance_id".into(), s(t.instance_id.as_str())),
            ("seq".into(), n(seq)),
            ("doc".into(), doc(t)?),
        ]);
        Ok(put_item(put(
            &self.t.transitions,
            item,
            None,
            HashMap::new(),
        )?))
    }

    fn key_of(item: &Item) -> StoreResult<ApiKey> {
        let mut k: ApiKey = parse(item)?;
        k.secret_hash = get_s(item, "secret_hash")?.to_owned();
        k.last_used_at = get_n(item, "last_used").map(from_nanos);
        k.revoked_at = get_n(item, "revoked").map(from_nanos);
        Ok(k)
    }

    /// Writes a CAS update of a versioned record; `what` names it in errors.
    async fn put_versioned(
        &self,
        table: &str,
        item: Item,
        version: u64,
        what: String,
    ) -> StoreResult<()> {
        let id = item.get("id").cloned();
        let result = self
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression(SAME_VERSION)
            .expression_attribute_values(":v", n(version))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if failed_condition(&e) => {
                let exists = match id {
                    Some(AttributeValue::S(id)) => self.get_id(table, id).await?.is_some(),
                    _ => false,
                };
                Err(if exists {
                    StoreError::Stale(what)
                } else {
                    StoreError::NotFound(what)
                })
            }
            Err(e) => Err(sdk(e)),
        }
    }

    /// A usage record's item, with its TTL.
    fn usage_item(&self, r: &UsageRecord) -> StoreResult<Item> {
        let tie = uuid::Uuid::new_v4().simple().to_string();
        let expires = r.at.timestamp().max(chrono::Utc::now().timestamp())
            + i64::from(self.retention_days) * 86_400;
        Ok(HashMap::from([
            ("user_id".into(), s(r.user_id.as_str())),
            ("at".into(), s(time_key(&r.at, &tie))),
            ("month".into(), s(r.at.format("%Y-%m").to_string())),
            ("doc".into(), doc(r)?),
            ("expires".into(), n(expires)),
        ]))
    }

    /// Writes items with BatchWriteItem (25 a call, a few calls in flight).
    async fn batch_put(&self, table: &str, items: Vec<Item>) -> StoreResult<()> {
        use futures::StreamExt;
        let mut groups: Vec<Vec<WriteRequest>> = Vec::new();
        for chunk in items.chunks(25) {
            groups.push(
                chunk
                    .iter()
                    .map(|item| {
                        Ok(WriteRequest::builder()
                            .put_request(
                                aws_sdk_dynamodb::types::PutRequest::builder()
                                    .set_item(Some(item.clone()))
                                    .build()
                                    .map_err(backend)?,
                            )
                            .build())
                    })
                    .collect::<StoreResult<Vec<_>>>()?,
            );
        }
        let calls: Vec<_> = groups
            .into_iter()
            .map(|requests| self.write_batch(table, requests))
            .collect();
        let mut results = futures::stream::iter(calls).buffer_unordered(IN_FLIGHT);
        while let Some(r) = results.next().await {
            r?;
        }
        Ok(())
    }

    /// One BatchWriteItem, sending what DynamoDB leaves unprocessed again
    /// with a backoff.
    async fn write_batch(&self, table: &str, requests: Vec<WriteRequest>) -> StoreResult<()> {
        let mut pending = HashMap::from([(table.to_owned(), requests)]);
        let mut backoff = std::time::Duration::from_millis(20);
        while !pending.is_empty() {
            let out = self
                .client
                .batch_write_item()
                .set_request_items(Some(pending))
                .send()
                .await
                .map_err(sdk)?;
            pending = out.unprocessed_items.unwrap_or_default();
            pending.retain(|_, v| !v.is_empty());
            if !pending.is_empty() {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
            }
        }
        Ok(())
    }

    /// Adds a batch's requests, errors and tokens to the day totals of
    /// each user and of everyone: one atomic ADD per day and model.
    async fn add_to_day_totals(&self, records: &[UsageRecord]) -> StoreResult<()> {
        use futures::StreamExt;
        #[derive(Default)]
        struct Sum {
            requests: u64,
            errors: u64,
            prompt: u64,
            completion: u64,
        }
        let mut sums: BTreeMap<(String, String), Sum> = BTreeMap::new();
        for r in records {
            let sk = format!("{}#{}", r.at.date_naive(), r.model_id.as_str());
            for who in [r.user_id.as_str().to_owned(), EVERYONE.to_owned()] {
                let sum = sums.entry((who, sk.clone())).or_default();
                sum.requests += 1;
                sum.errors += u64::from(r.status >= 400);
                sum.prompt += r.prompt_tokens;
                sum.completion += r.completion_tokens;
            }
        }
        let updates = sums.into_iter().map(|((who, sk), sum)| {
            self.client
                .update_item()
                .table_name(&self.t.usage_days)
                .key("user_id", s(who))
                .key("day_model", s(sk))
                .update_expression(
                    "ADD requests :r, errors :e, prompt_tokens :p, completion_tokens :c",
                )
                .expression_attribute_values(":r", n(sum.requests))
                .expression_attribute_values(":e", n(sum.errors))
                .expression_attribute_values(":p", n(sum.prompt))
                .expression_attribute_values(":c", n(sum.completion))
                .send()
        });
        let mut results = futures::stream::iter(updates).buffer_unordered(IN_FLIGHT);
        while let Some(r) = results.next().await {
            r.map_err(sdk)?;
        }
        Ok(())
    }
}

/// Calls of one usage batch in flight at once.
const IN_FLIGHT: usize = 8;

/// The partition of the day totals of everyone.
const EVERYONE: &str = "*";

#[async_trait]
impl Store for DynamoStore {
    async fn ping(&self) -> StoreResult<()> {
        self.client
            .describe_table()
            .table_name(&self.t.users)
            .send()
            .await
            .map(|_| ())
            .map_err(sdk)
    }

    async fn create_user(&self, user: &User) -> StoreResult<()> {
        self.transact_new(
            vec![
                put_item(put(
                    &self.t.users,
                    Self::email_item(&user.email, &user.user_id),
                    Some(ABSENT),
                    HashMap::new(),
                )?),
                put_item(put(
                    &self.t.users,
                    Self::user_item(user)?,
                    Some(ABSENT),
                    HashMap::new(),
                )?),
            ],
            || format!("a user with email {}", user.email),
        )
        .await
    }

    async fn get_user(&self, id: &UserId) -> StoreResult<Option<User>> {
        self.get_id(&self.t.users, format!("user#{}", id.as_str()))
            .await?
            .map(|i| Self::user_of(&i))
            .transpose()
    }

    async fn get_user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let Some(claim) = self.get_id(&self.t.users, format!("email#{email}")).await? else {
            return Ok(None);
        };
        self.get_user(&UserId::new(get_s(&claim, "user_id")?)).await
    }

    async fn update_user(&self, user: &User) -> StoreResult<User> {
        let stored = User {
            version: user.version + 1,
            ..user.clone()
        };
        let what = format!("user {}", user.user_id.as_str());
        let current = self.get_user(&user.user_id).await?;
        let Some(current) = current else {
            return Err(StoreError::NotFound(what));
        };
        if current.email == user.email {
            self.put_versioned(&self.t.users, Self::user_item(&stored)?, user.version, what)
                .await?;
            return Ok(stored);
        }
        // A new email: the record, the old claim and the new one together.
        let delete = Delete::builder()
            .table_name(&self.t.users)
            .key("id", s(format!("email#{}", current.email)))
            .build()
            .map_err(backend)?;
        let result = self
            .transact(vec![
                put_item(put(
                    &self.t.users,
                    Self::user_item(&stored)?,
                    Some(SAME_VERSION),
                    HashMap::from([(":v".into(), n(user.version))]),
                )?),
                TransactWriteItem::builder().delete(delete).build(),
                put_item(put(
                    &self.t.users,
                    Self::email_item(&user.email, &user.user_id),
                    Some(ABSENT),
                    HashMap::new(),
                )?),
            ])
            .await;
        match result {
            Err(StoreError::Stale(_)) => {
                let taken = self.get_user_by_email(&user.email).await?.is_some();
                Err(if taken {
                    StoreError::Conflict(format!("a user with email {}", user.email))
                } else {
                    StoreError::Stale(what)
                })
            }
            Err(e) => Err(e),
            Ok(()) => Ok(stored),
        }
    }

    async fn delete_user(&self, id: &UserId) -> StoreResult<()> {
        let Some(user) = self.get_user(id).await? else {
            return Ok(());
        };
        // The record and its email claim together.
        let delete = |key: String| {
            Delete::builder()
                .table_name(&self.t.users)
                .key("id", s(key))
                .build()
                .map_err(backend)
        };
        self.transact(vec![
            TransactWriteItem::builder()
                .delete(delete(format!("user#{}", id.as_str()))?)
                .build(),
            TransactWriteItem::builder()
                .delete(delete(format!("email#{}", user.email))?)
                .build(),
        ])
        .await
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let mut users = self
            .scan_prefix(&self.t.users, Some("user#"))
            .await?
            .iter()
            .map(Self::user_of)
            .collect::<StoreResult<Vec<_>>>()?;
        users.sort_by(|a, b| {
            (a.created_at, a.user_id.as_str()).cmp(&(b.created_at, b.user_id.as_str()))
        });
        Ok(users)
    }

    async fn insert_model_if_absent(&self, model: &Model) -> StoreResult<bool> {
        let item = HashMap::from([
            ("id".into(), s(model.model_id.as_str())),
            ("doc".into(), doc(model)?),
            ("version".into(), n(model.version)),
        ]);
        match self
            .client
            .put_item()
            .table_name(&self.t.models)
            .set_item(Some(item))
            .condition_expression(ABSENT)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if failed_condition(&e) => Ok(false),
            Err(e) => Err(sdk(e)),
        }
    }

    async fn update_model(&self, model: &Model) -> StoreResult<Model> {
        let stored = Model {
            version: model.version + 1,
            ..model.clone()
        };
        let item = HashMap::from([
            ("id".into(), s(model.model_id.as_str())),
            ("doc".into(), doc(&stored)?),
            ("version".into(), n(stored.version)),
        ]);
        self.put_versioned(
            &self.t.models,
            item,
            model.version,
            format!("model {}", model.model_id.as_str()),
        )
        .await?;
        Ok(stored)
    }

    async fn get_model(&self, id: &ModelId) -> StoreResult<Option<Model>> {
        self.get_id(&self.t.models, id.as_str().to_owned())
            .await?
            .map(|i| Self::model_of(&i))
            .transpose()
    }

    async fn list_models(&self) -> StoreResult<Vec<Model>> {
        let mut models = self
            .scan_prefix(&self.t.models, None)
            .await?
            .iter()
            .map(Self::model_of)
            .collect::<StoreResult<Vec<_>>>()?;
        models.sort_by(|a, b| a.model_id.cmp(&b.model_id));
        Ok(models)
    }

    async fn create_instance(&self, instance: &Instance, first: &Transition) -> StoreResult<()> {
        self.transact_new(
            vec![
                put_item(put(
                    &self.t.instances,
                    Self::instance_item(instance)?,
                    Some(ABSENT),
                    HashMap::new(),
                )?),
                self.transition_put(first, instance.version)?,
            ],
            || format!("instance {}", instance.instance_id.as_str()),
        )
        .await
    }

    async fn get_instance(&self, id: &InstanceId) -> StoreResult<Option<Instance>> {
        self.get_id(&self.t.instances, id.as_str().to_owned())
            .await?
            .map(|i| parse(&i))
            .transpose()
    }

    async fn list_instances(&self, user: Option<&UserId>) -> StoreResult<Vec<Instance>> {
        let q = self
            .client
            .query()
            .table_name(&self.t.instances)
            .scan_index_forward(false);
        let q = match user {
            Some(u) => q
                .index_name(tables::BY_USER)
                .key_condition_expression("user_id = :u")
                .expression_attribute_values(":u", s(u.as_str())),
            None => q
                .index_name(tables::ALL)
                .key_condition_expression("kind = :k")
                .expression_attribute_values(":k", s("instance")),
        };
        self.query_all(q)
            .await?
            .iter()
            .map(parse::<Instance>)
            .collect()
    }

    async fn update_instance(
        &self,
        instance: &Instance,
        transition: Option<&Transition>,
    ) -> StoreResult<Instance> {
        let stored = Instance {
            version: instance.version + 1,
            ..instance.clone()
        };
        let what = format!("instance {}", instance.instance_id.as_str());
        let Some(t) = transition else {
            self.put_versioned(
                &self.t.instances,
                Self::instance_item(&stored)?,
                instance.version,
                what,
            )
            .await?;
            return Ok(stored);
        };
        let result = self
            .transact(vec![
                put_item(put(
                    &self.t.instances,
                    Self::instance_item(&stored)?,
                    Some(SAME_VERSION),
                    HashMap::from([(":v".into(), n(instance.version))]),
                )?),
                self.transition_put(t, stored.version)?,
            ])
            .await;
        match result {
            Err(StoreError::Stale(_)) => {
                if self.get_instance(&instance.instance_id).await?.is_some() {
                    Err(StoreError::Stale(what))
                } else {
                    Err(StoreError::NotFound(what))
                }
            }
            Err(e) => Err(e),
            Ok(()) => Ok(stored),
        }
    }

    async fn list_transitions(&self, id: &InstanceId) -> StoreResult<Vec<Transition>> {
        let q = self
            .client
            .query()
            .table_name(&self.t.transitions)
            .key_condition_expression("instance_id = :i")
            .expression_attribute_values(":i", s(id.as_str()))
            .consistent_read(true);
        self.query_all(q)
            .await?
            .iter()
            .map(parse::<Transition>)
            .collect()
    }

    async fn delete_instance(&self, id: &InstanceId) -> StoreResult<()> {
        let q = self
            .client
            .query()
            .table_name(&self.t.transitions)
            .key_condition_expression("instance_id = :i")
            .expression_attribute_values(":i", s(id.as_str()))
            .projection_expression("instance_id, seq")
            .consistent_read(true);
        let keys = self.query_all(q).await?;
        for chunk in keys.chunks(25) {
            let requests = chunk
                .iter()
                .map(|k| {
                    Ok(WriteRequest::builder()
                        .delete_request(
                            DeleteRequest::builder()
                                .set_key(Some(k.clone()))
                                .build()
                                .map_err(backend)?,
                        )
                        .build())
                })
                .collect::<StoreResult<Vec<_>>>()?;
            self.write_batch(&self.t.transitions, requests).await?;
        }
        self.client
            .delete_item()
            .table_name(&self.t.instances)
            .key("id", s(id.as_str()))
            .send()
            .await
            .map_err(sdk)?;
        Ok(())
    }

    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        let mut item = HashMap::from([
            ("id".into(), s(format!("key#{}", key.key_id.as_str()))),
            ("doc".into(), doc(key)?),
            ("user_id".into(), s(key.user_id.as_str())),
            ("secret_hash".into(), s(key.secret_hash.clone())),
            (
                "created".into(),
                s(time_key(&key.created_at, key.key_id.as_str())),
            ),
        ]);
        if let Some(t) = &key.last_used_at {
            item.insert("last_used".into(), n(nanos(t)));
        }
        if let Some(t) = &key.revoked_at {
            item.insert("revoked".into(), n(nanos(t)));
        }
        let claim = HashMap::from([
            ("id".into(), s(format!("hash#{}", key.secret_hash))),
            ("key_id".into(), s(key.key_id.as_str())),
        ]);
        self.transact_new(
            vec![
                put_item(put(&self.t.api_keys, claim, Some(ABSENT), HashMap::new())?),
                put_item(put(&self.t.api_keys, item, Some(ABSENT), HashMap::new())?),
            ],
            || format!("API key {}", key.key_id.as_str()),
        )
        .await
    }

    async fn get_api_key(&self, id: &ApiKeyId) -> StoreResult<Option<ApiKey>> {
        self.get_id(&self.t.api_keys, format!("key#{}", id.as_str()))
            .await?
            .map(|i| Self::key_of(&i))
            .transpose()
    }

    async fn get_api_key_by_hash(&self, secret_hash: &str) -> StoreResult<Option<ApiKey>> {
        let Some(claim) = self
            .get_id(&self.t.api_keys, format!("hash#{secret_hash}"))
            .await?
        else {
            return Ok(None);
        };
        self.get_api_key(&ApiKeyId::new(get_s(&claim, "key_id")?))
            .await
    }

    async fn list_api_keys(&self, user: &UserId) -> StoreResult<Vec<ApiKey>> {
        let q = self
            .client
            .query()
            .table_name(&self.t.api_keys)
            .index_name(tables::BY_USER)
            .key_condition_expression("user_id = :u")
            .expression_attribute_values(":u", s(user.as_str()))
            .scan_index_forward(false)
            .select(Select::AllAttributes);
        self.query_all(q).await?.iter().map(Self::key_of).collect()
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let item = HashMap::from([
            ("id".into(), s(name)),
            ("holder".into(), s(holder)),
            ("until".into(), n(nanos(&until))),
        ]);
        let result = self
            .client
            .put_item()
            .table_name(&self.t.leases)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(id) OR holder = :h OR #u < :now")
            .expression_attribute_names("#u", "until")
            .expression_attribute_values(":h", s(holder))
            .expression_attribute_values(":now", n(nanos(&now)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if failed_condition(&e) => Ok(false),
            Err(e) => Err(sdk(e)),
        }
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.t.leases)
            .key("id", s(name))
            .condition_expression("holder = :h")
            .expression_attribute_values(":h", s(holder))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if failed_condition(&e) => Ok(()),
            Err(e) => Err(sdk(e)),
        }
    }

    async fn touch_api_key(&self, id: &ApiKeyId, at: Timestamp) -> StoreResult<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.t.api_keys)
            .key("id", s(format!("key#{}", id.as_str())))
            .update_expression("SET last_used = :t")
            .condition_expression(
                "attribute_exists(id) AND attribute_not_exists(revoked) AND (attribute_not_exists(last_used) OR last_used < :t)",
            )
            .expression_attribute_values(":t", n(nanos(&at)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if failed_condition(&e) => Ok(()),
            Err(e) => Err(sdk(e)),
        }
    }

    async fn revoke_api_key(&self, id: &ApiKeyId, at: Timestamp) -> StoreResult<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.t.api_keys)
            .key("id", s(format!("key#{}", id.as_str())))
            .update_expression("SET revoked = :t")
            .condition_expression("attribute_exists(id) AND attribute_not_exists(revoked)")
            .expression_attribute_values(":t", n(nanos(&at)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if failed_condition(&e) => Ok(false),
            Err(e) => Err(sdk(e)),
        }
    }

    async fn record_usage(&self, record: &UsageRecord) -> StoreResult<()> {
        self.record_usage_batch(std::slice::from_ref(record)).await
    }

    async fn record_usage_batch(&self, records: &[UsageRecord]) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let items = records
            .iter()
            .map(|r| self.usage_item(r))
            .collect::<StoreResult<Vec<_>>>()?;
        self.batch_put(&self.t.usage, items).await?;
        self.add_to_day_totals(records).await
    }

    async fn list_usage(&self, query: &UsageQuery) -> StoreResult<Vec<UsageRecord>> {
        // Sort keys are digits first: "0" is below them all, "~" above.
        let lo = query
            .since
            .map(|t| time_key(&t, ""))
            .unwrap_or_else(|| "0".into());
        let hi = query
            .until
            .map(|t| time_key(&t, ""))
            .unwrap_or_else(|| "~".into());
        let items = match &query.user_id {
            Some(u) => {
                let q = self
                    .client
                    .query()
                    .table_name(&self.t.usage)
                    .key_condition_expression("user_id = :u AND #at BETWEEN :lo AND :hi")
                    .expression_attribute_names("#at", "at")
                    .expression_attribute_values(":u", s(u.as_str()))
                    .expression_attribute_values(":lo", s(lo.clone()))
                    .expression_attribute_values(":hi", s(hi.clone()))
                    .consistent_read(true);
                self.query_all(q).await?
            }
            None => {
                // Everyone's: one query per month of the period, on the
                // month index. Without a start, the retention bounds it.
                let now = chrono::Utc::now();
                let start = query.since.unwrap_or_else(|| {
                    now - chrono::Duration::days(i64::from(self.retention_days) + 2)
                });
                let end = query.until.unwrap_or(now).max(start);
                let mut items = Vec::new();
                for month in months(start, end) {
                    let q = self
                        .client
                        .query()
                        .table_name(&self.t.usage)
                        .index_name(tables::BY_MONTH)
                        .key_condition_expression("#m = :m AND #at BETWEEN :lo AND :hi")
                        .expression_attribute_names("#m", "month")
                        .expression_attribute_names("#at", "at")
                        .expression_attribute_values(":m", s(month))
                        .expression_attribute_values(":lo", s(lo.clone()))
                        .expression_attribute_values(":hi", s(hi.clone()));
                    items.extend(self.query_all(q).await?);
                }
                items
            }
        };
        let mut records: Vec<(String, UsageRecord)> = items
            .iter()
            .map(|i| Ok((get_s(i, "at")?.to_owned(), parse::<UsageRecord>(i)?)))
            .collect::<StoreResult<_>>()?;
        // The bounds as the trait says: `since` inclusive, `until` exclusive.
        records.retain(|(_, r)| {
            query.since.is_none_or(|t| r.at >= t) && query.until.is_none_or(|t| r.at < t)
        });
        records.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(records.into_iter().map(|(_, r)| r).collect())
    }

    async fn usage_by_day(
        &self,
        user_id: Option<&UserId>,
        since: chrono::NaiveDate,
    ) -> StoreResult<Vec<UsageDay>> {
        let who = user_id.map_or(EVERYONE, |u| u.as_str());
        let q = self
            .client
            .query()
            .table_name(&self.t.usage_days)
            .key_condition_expression("user_id = :u AND day_model >= :d")
            .expression_attribute_values(":u", s(who))
            .expression_attribute_values(":d", s(since.to_string()))
            .consistent_read(true);
        let mut days = self
            .query_all(q)
            .await?
            .iter()
            .map(|i| {
                let key = get_s(i, "day_model")?;
                let (day, model) = key
                    .split_once('#')
                    .ok_or_else(|| backend(format!("a day total with key {key}")))?;
                let count = |name| get_n(i, name).unwrap_or(0).max(0) as u64;
                Ok(UsageDay {
                    day: day.parse().map_err(backend)?,
                    model_id: ModelId::new(model),
                    requests: count("requests"),
                    errors: count("errors"),
                    prompt_tokens: count("prompt_tokens"),
                    completion_tokens: count("completion_tokens"),
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        days.sort_by(|a, b| (a.day, &a.model_id).cmp(&(b.day, &b.model_id)));
        Ok(days)
    }
}

/// The months (`YYYY-MM`) from `start`'s to `end`'s, in order.
fn months(start: Timestamp, end: Timestamp) -> Vec<String> {
    use chrono::Datelike;
    let mut out = Vec::new();
    let (mut y, mut m) = (start.year(), start.month());
    while (y, m) <= (end.year(), end.month()) {
        out.push(format!("{y:04}-{m:02}"));
        (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_keys_sort_as_times() {
        let a = chrono::DateTime::from_timestamp(1_700_000_000, 5).unwrap();
        let b = chrono::DateTime::from_timestamp(1_700_000_001, 0).unwrap();
        assert!(time_key(&a, "z") < time_key(&b, "a"));
        assert_eq!(from_nanos(nanos(&a)), a);
    }

    #[test]
    fn months_cover_the_period() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(
            months(t("2026-11-20T00:00:00Z"), t("2027-02-01T00:00:00Z")),
            ["2026-11", "2026-12", "2027-01", "2027-02"]
        );
        assert_eq!(
            months(t("2026-12-02T00:00:00Z"), t("2026-12-02T01:00:00Z")),
            ["2026-12"]
        );
    }
}
