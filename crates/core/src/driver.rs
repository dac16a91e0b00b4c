//! The [`ComputeDriver`] trait: where models run.
//!
//! A driver launches a model server for an instance, reports what it
//! observes, and stops it. Drivers are idempotent (launching an instance
//! that already runs returns the same handle; stopping twice is fine) and
//! can re-adopt what they launched after the control plane restarts. When
//! the control plane stops gracefully, [`ComputeDriver::shutdown`] decides
//! whether the model servers outlive it (to be adopted by the next start,
//! for upgrades without downtime) or end with it. The
//! process driver is the embedded default; Docker and ECS come later. Every
//! driver runs the same conformance suite.

use crate::compute::ComputeSpec;
use crate::{InstanceId, ModelId};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The tag of a model's image (`gemma3:270m` → `gemma3-270m`): what
/// `paddock image build --model` tags `paddock-model:<tag>`, what the
/// Docker driver looks for and what the ECS driver runs from its model
/// repository.
pub fn model_image_tag(model: &str) -> String {
    let model = model.strip_prefix("library/").unwrap_or(model);
    let mut tag: String = model
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '.') => c,
            _ => '-',
        })
        .collect();
    tag.truncate(128);
    tag
}

/// What to launch.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
    pub instance_id: InstanceId,
    pub model_id: ModelId,
    pub spec: ComputeSpec,
    /// Threads for the model server (from the vCPU size).
    pub threads: u32,
    /// Context length in tokens (from the memory size).
    pub ctx: u32,
}

impl LaunchSpec {
    /// The arguments of `paddock runtime` every driver passes for this
    /// launch: the model, its threads and context, and `parallel`
    /// sequences. Each driver adds where the runtime listens and where
    /// its model store is.
    pub fn runtime_args(&self, parallel: u32) -> Vec<String> {
        vec![
            "runtime".into(),
            "--model".into(),
            self.model_id.as_str().into(),
            "--threads".into(),
            self.threads.to_string(),
            "--ctx".into(),
            self.ctx.to_string(),
            "--parallel".into(),
            parallel.max(1).to_string(),
        ]
    }
}

/// A driver's reference to what it launched; opaque to everyone else and
/// persisted in the instance record so it survives restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handle {
    /// The driver that made it (`process`, `docker`, `ecs`).
    pub driver: String,
    /// Driver-specific data (pid, port, container id, task ARN ...).
    pub data: serde_json::Value,
}

impl Handle {
    /// A handle of `driver` carrying `data`.
    pub fn new(driver: &str, data: &impl Serialize) -> Self {
        Handle {
            driver: driver.to_owned(),
            data: serde_json::to_value(data).unwrap_or_default(),
        }
    }

    /// The data of a handle `driver` made; `Unsupported` for another
    /// driver's handle.
    pub fn data_for<T: serde::de::DeserializeOwned>(&self, driver: &str) -> Result<T, DriverError> {
        if self.driver != driver {
            return Err(DriverError::Unsupported(format!(
                "a {} handle cannot be used by the {driver} driver",
                self.driver
            )));
        }
        serde_json::from_value(self.data.clone()).map_err(|e| DriverError::Backend(e.to_string()))
    }
}

/// The exit status of a model server (`paddock runtime`) that failed in a
/// way a restart will not fix: the model is not in the store and cannot be
/// pulled (no such model, the registry unreachable), or it does not load
/// at this size. The reconciler does not restart such an instance.
pub const EXIT_WONT_FIX: i32 = 78;

/// What a driver sees of a launched instance.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// Alive; `endpoint` is the model server's base URL. `health` is the
    /// driver's own view of the model server's health check, for a driver
    /// that has one (ECS reports its container health check): the
    /// reconciler trusts it and does not probe the endpoint. `None` (the
    /// process and Docker drivers): it may not be healthy yet, and the
    /// reconciler probes the endpoint itself.
    Alive {
        endpoint: String,
        health: Option<Health>,
    },
    /// It ended; `reason` says how (exit code, last log lines).
    /// `permanent`: it exited with [`EXIT_WONT_FIX`], so running it again
    /// the same way fails the same way (its model is missing and cannot be
    /// pulled, or does not load at this size).
    Exited { reason: String, permanent: bool },
    /// The driver knows nothing of it (never launched, or already cleaned up).
    Gone,
}

/// A driver's report of a model server's health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The check passes.
    Healthy,
    /// Not known yet (still in its start period).
    Unknown,
    /// The check fails.
    Unhealthy,
}

impl Observed {
    /// Alive, with no health of the driver's own (the reconciler probes).
    pub fn alive(endpoint: impl Into<String>) -> Self {
        Observed::Alive {
            endpoint: endpoint.into(),
            health: None,
        }
    }
}

/// What the driver can run.
#[derive(Debug, Clone, PartialEq)]
pub struct Capabilities {
    /// Whether GPU sizes can be launched at all.
    pub gpu: bool,
    /// Whether spot capacity can be asked for (`"spot": true`).
    pub spot: bool,
    /// Whether CPU sizes run on the operator's own machines, priced at
    /// `[driver] local_cpu_hour_usd`; otherwise at the cloud's list price.
    pub local: bool,
}

/// Why a driver operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The request cannot be served by this driver (e.g. GPU on a CPU host).
    #[error("{0}")]
    Unsupported(String),
    /// The launch failed for a reason the user can act on (model missing ...).
    #[error("{0}")]
    LaunchFailed(String),
    #[error("driver backend: {0}")]
    Backend(String),
}

/// A place where model servers run.
#[async_trait]
pub trait ComputeDriver: Send + Sync + std::fmt::Debug {
    /// Short name stored in handles (`process`).
    fn name(&self) -> &'static str;
    fn capabilities(&self) -> Capabilities;
    /// Whether the model server launched for `model` reads its weights
    /// from the host's model store ([`crate::models::ModelCache`]), which
    /// must then hold the model before the launch: the control plane pulls
    /// it there first. The default, no: the model comes with the server's
    /// image, or the server fetches it itself where it runs.
    async fn reads_host_store(&self, _model: &ModelId) -> bool {
        false
    }
    /// Starts a model server; idempotent per instance id.
    async fn launch(&self, spec: &LaunchSpec) -> Result<Handle, DriverError>;
    async fn status(&self, handle: &Handle) -> Result<Observed, DriverError>;
    /// The status of many handles, in their order: one call per batch
    /// where the backend has one (ECS's DescribeTasks takes 100 tasks), so
    /// a reconcile pass over many instances costs a few calls. The default
    /// asks [`ComputeDriver::status`] for each.
    async fn status_many(&self, handles: &[Handle]) -> Vec<Result<Observed, DriverError>> {
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(self.status(h).await);
        }
        out
    }
    /// Stops and cleans up; stopping something already gone is not an error.
    async fn stop(&self, handle: &Handle) -> Result<(), DriverError>;
    /// The last `lines` lines of the model server's output.
    async fn logs(&self, handle: &Handle, lines: usize) -> Result<Vec<String>, DriverError>;
    /// After a control-plane restart: keeps what `known` lists (the handles in
    /// the store) and ends everything else this driver launched. Returns the
    /// handles that are still alive.
    async fn adopt(&self, known: &[(InstanceId, Handle)]) -> Result<Vec<InstanceId>, DriverError>;
    /// The control plane is stopping gracefully; `known` lists the handles in
    /// the store. A driver set to keep its model servers across restarts
    /// leaves them running (the next start adopts them) and returns nothing;
    /// otherwise it ends every model server it launched, those in `known`
    /// and any others, and returns the instances of `known`, whose servers
    /// are gone when it returns. The control plane records those as no
    /// longer running, so its next start launches them again.
    async fn shutdown(
        &self,
        known: &[(InstanceId, Handle)],
    ) -> Result<Vec<InstanceId>, DriverError>;
}
