//! The one place that picks paddock's backends from the configuration:
//! the store, the identity, the compute driver and the host's model store
//! its model servers read. A new backend is a new
//! crate beside its siblings and one arm here.

use anyhow::{Context, Result};
use paddock_core::driver::ComputeDriver;
use paddock_core::identity::Identity;
use paddock_core::models::ModelCache;
use paddock_core::store::{CredentialStore, Store};
use paddock_core::Clock;
use paddock_identity_builtin::mailer::LogMailer;
use paddock_identity_builtin::{BuiltinIdentity, BuiltinSettings};
use paddock_server::config::{Config, DockerReach, DriverKind, IdentityKind, StoreKind};
use paddock_server::Services;
use std::sync::Arc;

/// The backends `config` names, opened and ready.
pub async fn services(config: &Config) -> Result<Services> {
    let clock = Clock::system();
    std::fs::create_dir_all(&config.data_dir)?;
    let (store, credentials): (Arc<dyn Store>, Arc<dyn CredentialStore>) = match config.store.kind {
        StoreKind::Sqlite => {
            let sqlite = Arc::new(
                paddock_store_sqlite::SqliteStore::open(&config.data_dir.join("paddock.db"))
                    .await?,
            );
            (sqlite.clone(), sqlite)
        }
        StoreKind::Dynamodb => {
            let dynamo = Arc::new(
                paddock_store_dynamodb::DynamoStore::open(
                    &aws_sdk().await,
                    paddock_store_dynamodb::DynamoSettings {
                        table_prefix: config.store.table_prefix.clone(),
                        create_tables: config.store.create_tables,
                        usage_retention_days: config.store.usage_retention_days,
                    },
                )
                .await
                .context("the DynamoDB store")?,
            );
            (dynamo.clone(), dynamo)
        }
    };
    let identity: Arc<dyn Identity> = match config.identity.kind {
        IdentityKind::Builtin => {
            let key = match &config.identity.signing_key {
                Some(k) if !k.expose().is_empty() => k.expose().as_bytes().to_vec(),
                _ => paddock_identity_builtin::signing_key::load_or_create_key(
                    &config.data_dir.join("secrets").join("jwt.key"),
                )?,
            };
            Arc::new(BuiltinIdentity::new(
                store.clone(),
                credentials,
                Arc::new(LogMailer),
                clock.clone(),
                &key,
                BuiltinSettings {
                    access_ttl_secs: config.identity.access_token_ttl_secs,
                    refresh_ttl_secs: config.identity.refresh_token_ttl_secs,
                    confirmation_ttl_secs: config.identity.confirmation_ttl_secs,
                    login_max_failures: config.identity.login_max_failures,
                    login_lockout_secs: config.identity.login_lockout_secs,
                },
            ))
        }
        IdentityKind::Cognito => {
            let id = &config.identity;
            Arc::new(
                paddock_identity_cognito::CognitoIdentity::new(
                    &aws_sdk().await,
                    store.clone(),
                    clock.clone(),
                    paddock_identity_cognito::CognitoSettings {
                        user_pool_id: id.user_pool_id.clone().unwrap_or_default(),
                        client_id: id.client_id.clone().unwrap_or_default(),
                        client_secret: id.client_secret.as_ref().map(|s| s.expose().to_owned()),
                        admin_group: id.admin_group.clone(),
                    },
                )
                .map_err(|e| anyhow::anyhow!("the cognito identity: {e}"))?,
            )
        }
    };
    let driver: Arc<dyn ComputeDriver> = match config.driver.kind {
        DriverKind::Process => Arc::new(paddock_driver_process::ProcessDriver::new(
            paddock_driver_process::ProcessDriverConfig {
                runtime_binary: match &config.driver.runtime_binary {
                    Some(b) => b.clone(),
                    None => std::env::current_exe()?,
                },
                root: config.data_dir.clone(),
                models_dir: config.models_dir(),
                parallel: config.driver.runtime_parallel,
                extra_args: vec!["--registry".into(), config.driver.registry.clone()],
                keep_on_shutdown: config.driver.keep_instances_on_shutdown,
            },
        )),
        DriverKind::Docker => Arc::new(
            paddock_driver_docker::DockerDriver::connect(docker_config(config)?)
                .await
                .context("the docker driver")?,
        ),
        DriverKind::Ecs => {
            let sdk = aws_sdk().await;
            let d = &config.driver;
            let settings = paddock_driver_ecs::EcsSettings {
                cluster: d.cluster.clone().unwrap_or_default(),
                subnets: d.subnets.clone(),
                security_groups: d.security_groups.clone(),
                assign_public_ip: d.assign_public_ip,
                execution_role_arn: d.execution_role_arn.clone(),
                task_role_arn: d.task_role_arn.clone(),
                log_group: d.log_group.clone().unwrap_or_default(),
                region: sdk
                    .region()
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "us-east-1".into()),
                image: d.image.clone().unwrap_or_default(),
                model_image_repository: d.model_image_repository.clone(),
                deployment: d.deployment.clone(),
                gpu_capacity_provider: d.gpu_capacity_provider.clone(),
                gpu_spot_capacity_provider: d.gpu_spot_capacity_provider.clone(),
                runtime_parallel: d.runtime_parallel,
                registry: Some(d.registry.clone()),
            };
            Arc::new(
                paddock_driver_ecs::EcsDriver::new(
                    &sdk,
                    settings,
                    paddock_core::compute::ComputeTable::builtin(),
                )
                .map_err(|e| anyhow::anyhow!("the ecs driver: {e}"))?,
            )
        }
    };
    // The process and Docker drivers' model servers read the host's
    // store (a container only the store mounted into it, not the Ollama
    // models directory); ECS tasks carry their models or pull them where
    // they run.
    let model_store = || {
        paddock_models::ModelStore::open(&config.models_dir())
            .map(|s| s.with_registry(config.driver.registry.clone()))
            .context("the model store")
    };
    let models: Option<Arc<dyn ModelCache>> = match config.driver.kind {
        DriverKind::Process => Some(Arc::new(model_store()?)),
        DriverKind::Docker => Some(Arc::new(model_store()?.without_ollama_dir())),
        DriverKind::Ecs => None,
    };
    Ok(Services {
        store,
        identity,
        driver,
        models,
        clock,
    })
}

/// The Docker driver's settings from `[driver]`.
pub fn docker_config(config: &Config) -> Result<paddock_driver_docker::DockerDriverConfig> {
    use paddock_driver_docker::Reach;
    Ok(paddock_driver_docker::DockerDriverConfig {
        root: std::path::absolute(&config.data_dir)?,
        models_dir: std::path::absolute(config.models_dir())?,
        image: config
            .driver
            .image
            .clone()
            .unwrap_or_else(paddock_driver_docker::default_image),
        model_images: config.driver.model_images,
        parallel: config.driver.runtime_parallel,
        reach: match config.driver.docker_reach {
            DockerReach::Auto => Reach::Auto,
            DockerReach::Socket => Reach::Socket,
            DockerReach::Port => Reach::Port,
        },
        keep_on_shutdown: config.driver.keep_instances_on_shutdown,
    })
}

/// The AWS SDK's configuration: region, credentials and `AWS_ENDPOINT_URL`
/// from the standard chain (environment, profile, ECS task role).
async fn aws_sdk() -> aws_types::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}
