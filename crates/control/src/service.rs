//! [`Control`]: the backends and the shared in-memory state, built once;
//! [`AdminOps`], the operations only admins reach; and the settings and
//! health probe the control layer is built with.

use crate::activity::{Activity, Queueing};
use crate::bus::InstanceBus;
use crate::keys_cache::KeyCache;
use crate::metrics::Metrics;
use crate::pulls::Pulls;
use crate::usage_writer::UsageWriter;
use crate::Result;
use async_trait::async_trait;
use paddock_core::catalog::default_catalog;
use paddock_core::compute::ComputeTable;
use paddock_core::driver::ComputeDriver;
use paddock_core::identity::{Identity, IdentityError};
use paddock_core::models::ModelCache;
use paddock_core::store::{Store, StoreError};
use paddock_core::user::{Principal, Role};
use paddock_core::Clock;
use std::sync::Arc;

/// Times an operation re-reads a record and writes again when another
/// write landed between its read and its compare-and-swap write, before it
/// answers [`Error::Conflict`].
pub const STALE_RETRIES: usize = 5;

/// What the rules need to know of the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The base URL users reach paddock at, without a trailing slash;
    /// instance endpoints shown to users start with it.
    pub public_url: String,
    /// Whether anyone may sign up (otherwise only admins create users).
    pub allow_signup: bool,
    /// Price per vCPU-hour of CPU instances run by the local driver.
    pub local_cpu_hour_usd: f64,
    /// Sequences each instance's model server decodes together.
    pub runtime_parallel: u32,
    /// Gateway requests that may wait per instance for a free sequence.
    pub queue_per_instance: u32,
    /// How often the reconciler checks every instance, milliseconds.
    pub reconcile_interval_ms: u64,
    /// How long an instance may take to become healthy, seconds.
    pub start_timeout_secs: u64,
    /// How long a request to a sleeping instance waits for it, seconds.
    pub wake_timeout_secs: u64,
    /// Restarts of a failed instance before paddock gives up.
    pub max_restarts: u32,
    /// Wait before the first restart, seconds (doubles each time).
    pub restart_backoff_secs: u64,
    /// How long the reconciling replica's lease lasts unrenewed, seconds.
    pub lease_secs: u64,
}

/// Asks a model server whether it is healthy. The gateway's connection
/// pool implements it (the reconciler's probes then share its keep-alive
/// connections); control only knows that a probe answers yes or no.
#[async_trait]
pub trait HealthProbe: Send + Sync + std::fmt::Debug {
    /// Whether the model server at `endpoint` (`http://...` or `unix:/...`)
    /// answers its health route.
    async fn healthy(&self, endpoint: &str) -> bool;
}

/// The backends [`Control`] is built from: those the binary picked, and
/// the clock tests replace.
#[derive(Debug, Clone)]
pub struct Backends {
    pub store: Arc<dyn Store>,
    pub identity: Arc<dyn Identity>,
    pub driver: Arc<dyn ComputeDriver>,
    /// The host's model store, where the driver's model servers read
    /// their weights (the process and Docker drivers); `None` where no
    /// model server reads it (ECS), so nothing is pulled before a launch.
    pub models: Option<Arc<dyn ModelCache>>,
    pub probe: Arc<dyn HealthProbe>,
    pub clock: Clock,
}

/// paddock's rules and shared state, cloned cheaply per request.
#[derive(Debug, Clone)]
pub struct Control(Arc<Inner>);

/// The parts of [`Control`]. Adapters read the shared state (activity,
/// metrics, usage writer, bus) directly; records are changed only through
/// [`Control`]'s and [`AdminOps`]' operations.
#[derive(Debug)]
pub struct Inner {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    pub identity: Arc<dyn Identity>,
    /// Where instances run.
    pub driver: Arc<dyn ComputeDriver>,
    /// The host's model store, when the driver's model servers read it.
    pub models: Option<Arc<dyn ModelCache>>,
    /// Model downloads into it under way.
    pub pulls: Pulls,
    /// Health checks of model servers, for the reconciler.
    pub probe: Arc<dyn HealthProbe>,
    pub compute: ComputeTable,
    pub clock: Clock,
    /// Wakes the reconciler and tells waiters and caches that instances changed.
    pub reconciler: InstanceBus,
    /// Gateway requests in flight, last activity and sequences per instance.
    pub activity: Activity,
    pub metrics: Metrics,
    /// Recently authenticated API keys.
    pub keys: KeyCache,
    /// Gateway usage records on their way to the store.
    pub usage: UsageWriter,
}

impl std::ops::Deref for Control {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Control {
    /// Builds the control layer on the current tokio runtime (the usage
    /// writer is a task of it).
    pub fn new(settings: Settings, backends: Backends) -> Self {
        let queueing = Queueing {
            sequences: settings.runtime_parallel as usize,
            max_waiting: settings.queue_per_instance,
        };
        Control(Arc::new(Inner {
            usage: UsageWriter::spawn(backends.store.clone()),
            activity: Activity::with_queueing(backends.clock.clone(), queueing),
            settings,
            store: backends.store,
            identity: backends.identity,
            driver: backends.driver,
            models: backends.models,
            pulls: Pulls::default(),
            probe: backends.probe,
            compute: ComputeTable::builtin(),
            clock: backends.clock,
            reconciler: InstanceBus::default(),
            metrics: Metrics::default(),
            keys: KeyCache::default(),
        }))
    }

    /// Whether the store answers (for `/readyz`).
    pub async fn ready(&self) -> Result<()> {
        Ok(self.store.ping().await?)
    }

    /// The operations on everyone's records, for an admin; `None` for
    /// anyone else. The only way to reach them.
    pub fn as_admin<'a>(&'a self, caller: &'a Principal) -> Option<AdminOps<'a>> {
        caller.is_admin().then_some(AdminOps {
            control: self,
            admin: caller,
        })
    }

    /// Loads the shipped catalog, adding only models the store lacks, so
    /// admin edits survive restarts and nothing is duplicated. Returns how
    /// many were added.
    pub async fn seed_catalog(&self) -> Result<usize> {
        let mut added = 0;
        for m in default_catalog() {
            if self.store.insert_model_if_absent(&m).await? {
                added += 1;
            }
        }
        if added > 0 {
            tracing::info!(added, "catalog loaded");
        }
        Ok(added)
    }

    /// Creates the first admin when there is none: `email` with `password`,
    /// or with a generated one that must be changed at first login, which
    /// is returned so the operator can be told it. An existing plain user
    /// of that address is promoted instead.
    pub async fn ensure_admin(
        &self,
        email: &str,
        password: Option<&str>,
    ) -> Result<Option<String>> {
        let users = self.store.list_users().await?;
        if users.iter().any(|u| u.role == Role::Admin) {
            return Ok(None);
        }
        let (password, generated) = match password {
            Some(p) => (p.to_owned(), false),
            None => (paddock_core::secret::generated_password(), true),
        };
        match self
            .passwords()?
            .admin_create_user(email, &password, Role::Admin, generated)
            .await
        {
            Ok(user) => {
                tracing::info!(user = %user.user_id, email = %user.email, "first admin created");
                Ok(generated.then_some(password))
            }
            Err(IdentityError::AlreadyExists) => {
                // The address exists as a plain user: promote it, reading it
                // again if another write lands first.
                let email = email.to_lowercase();
                for retry in 0.. {
                    let Some(mut u) = self.store.get_user_by_email(&email).await? else {
                        break;
                    };
                    if retry == 0 {
                        self.identity.set_role(&u.user_id, Role::Admin).await?;
                    }
                    u.role = Role::Admin;
                    match self.store.update_user(&u).await {
                        Ok(u) => {
                            tracing::info!(user = %u.user_id, "existing user promoted to first admin");
                            break;
                        }
                        Err(StoreError::Stale(_)) if retry < STALE_RETRIES => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The operations only admins may do: every user's records, users
/// themselves, and the catalog. Handed out by [`Control::as_admin`].
#[derive(Debug, Clone, Copy)]
pub struct AdminOps<'a> {
    pub(crate) control: &'a Control,
    pub(crate) admin: &'a Principal,
}

impl AdminOps<'_> {
    /// The admin these operations act for.
    pub fn principal(&self) -> &Principal {
        self.admin
    }
}
