//! The tables, their keys and indexes, and making sure they exist.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use paddock_core::store::{StoreError, StoreResult};

/// The index of a user's instances or API keys, newest last.
pub const BY_USER: &str = "by_user";
/// The index of every instance (one partition: instances are few).
pub const ALL: &str = "all";
/// The index of usage records by month, for everyone's usage.
pub const BY_MONTH: &str = "by_month";

/// The table names, from the configured prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub users: String,
    pub models: String,
    pub instances: String,
    pub transitions: String,
    pub api_keys: String,
    pub usage: String,
    pub usage_days: String,
    pub credentials: String,
    pub leases: String,
}

/// One table's shape.
struct Shape {
    name: String,
    hash: (&'static str, ScalarAttributeType),
    range: Option<(&'static str, ScalarAttributeType)>,
    /// (index, hash attribute, range attribute); all string attributes.
    indexes: Vec<(&'static str, &'static str, &'static str)>,
    ttl: Option<&'static str>,
}

fn key(name: &str, kind: KeyType) -> StoreResult<KeySchemaElement> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(|e| StoreError::Backend(e.to_string()))
}

fn attr(name: &str, kind: ScalarAttributeType) -> StoreResult<AttributeDefinition> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .map_err(|e| StoreError::Backend(e.to_string()))
}

impl Tables {
    pub fn new(prefix: &str) -> Self {
        let t = |name: &str| format!("{prefix}{name}");
        Tables {
            users: t("users"),
            models: t("models"),
            instances: t("instances"),
            transitions: t("transitions"),
            api_keys: t("api_keys"),
            usage: t("usage"),
            usage_days: t("usage_days"),
            credentials: t("credentials"),
            leases: t("leases"),
        }
    }

    fn shapes(&self) -> Vec<Shape> {
        use ScalarAttributeType::{N, S};
        let id = |name: &String| Shape {
            name: name.clone(),
            hash: ("id", S),
            range: None,
            indexes: Vec::new(),
            ttl: None,
        };
        vec![
            id(&self.users),
            id(&self.models),
            id(&self.credentials),
            id(&self.leases),
            Shape {
                indexes: vec![(BY_USER, "user_id", "created"), (ALL, "kind", "created")],
                ..id(&self.instances)
            },
            Shape {
                name: self.transitions.clone(),
                hash: ("instance_id", S),
                range: Some(("seq", N)),
                indexes: Vec::new(),
                ttl: None,
            },
            Shape {
                indexes: vec![(BY_USER, "user_id", "created")],
                ..id(&self.api_keys)
            },
            Shape {
                name: self.usage.clone(),
                hash: ("user_id", S),
                range: Some(("at", S)),
                indexes: vec![(BY_MONTH, "month", "at")],
                ttl: Some("expires"),
            },
            Shape {
                name: self.usage_days.clone(),
                hash: ("user_id", S),
                range: Some(("day_model", S)),
                indexes: Vec::new(),
                ttl: None,
            },
        ]
    }

    /// Checks every table exists; with `create`, makes the missing ones
    /// (on-demand billing) and waits until they are active.
    pub async fn ensure(&self, client: &Client, create: bool) -> StoreResult<()> {
        for shape in self.shapes() {
            match client.describe_table().table_name(&shape.name).send().await {
                Ok(_) => continue,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception()) => {}
                Err(e) => {
                    return Err(StoreError::Backend(format!(
                        "DynamoDB does not answer for table {}: {}",
                        shape.name,
                        aws_sdk_dynamodb::error::DisplayErrorContext(&e)
                    )))
                }
            }
            if !create {
                return Err(StoreError::Backend(format!(
                    "the DynamoDB table {} does not exist: create the tables (paddock's CloudFormation template does), or set [store] create_tables = true",
                    shape.name
                )));
            }
            Self::create(client, &shape).await?;
        }
        Ok(())
    }

    async fn create(client: &Client, shape: &Shape) -> StoreResult<()> {
        let fail = |e: String| StoreError::Backend(format!("creating {}: {e}", shape.name));
        let mut attrs = vec![attr(shape.hash.0, shape.hash.1.clone())?];
        let mut keys = vec![key(shape.hash.0, KeyType::Hash)?];
        if let Some((name, kind)) = &shape.range {
            attrs.push(attr(name, kind.clone())?);
            keys.push(key(name, KeyType::Range)?);
        }
        let mut req = client
            .create_table()
            .table_name(&shape.name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(keys));
        for (index, hash, range) in &shape.indexes {
            for a in [hash, range] {
                if !attrs.iter().any(|d| d.attribute_name() == *a) {
                    attrs.push(attr(a, ScalarAttributeType::S)?);
                }
            }
            req = req.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(*index)
                    .key_schema(key(hash, KeyType::Hash)?)
                    .key_schema(key(range, KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(|e| fail(e.to_string()))?,
            );
        }
        match req.set_attribute_definitions(Some(attrs)).send().await {
            Ok(_) => {}
            // Another replica made it first.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => {
                return Err(fail(
                    aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string(),
                ))
            }
        }
        for _ in 0..600 {
            let out = client
                .describe_table()
                .table_name(&shape.name)
                .send()
                .await
                .map_err(|e| fail(aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string()))?;
            if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        if let Some(ttl) = shape.ttl {
            client
                .update_time_to_live()
                .table_name(&shape.name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(ttl)
                        .enabled(true)
                        .build()
                        .map_err(|e| fail(e.to_string()))?,
                )
                .send()
                .await
                .map_err(|e| fail(aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string()))?;
        }
        tracing::info!(table = %shape.name, "created DynamoDB table");
        Ok(())
    }
}
