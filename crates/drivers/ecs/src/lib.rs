//! The ECS compute driver: each instance is one ECS task.
//!
//! - **Capacity.** CPU sizes run on Fargate (`FARGATE`, or `FARGATE_SPOT`
//!   for a spot size) with the size's cpu/memory; GPU sizes on the EC2 GPU
//!   capacity provider (or its spot twin) with a GPU resource requirement.
//! - **Task definitions.** One family per model image and size
//!   (`<deployment>-<model>-<size>`), registered on first use and reused;
//!   the runtime's arguments go in the container overrides. Each carries
//!   the image's health check and the awslogs log driver.
//! - **Ownership.** Every task is started with `startedBy` set to the
//!   deployment id and tagged `paddock:instance` / `paddock:deployment`:
//!   [`ComputeDriver::adopt`] lists the deployment's tasks and stops those
//!   the store does not know.
//! - **Status.** A RUNNING task is alive at `http://<its private IPv4>:11434`
//!   with ECS's health status (the reconciler trusts it and never connects
//!   to probe); a stopped one has exited with its `stoppedReason` and the
//!   container's exit code; a task ECS no longer knows is gone. Statuses are
//!   asked 100 tasks per DescribeTasks, five such calls at a time.
//! - **Logs** come from CloudWatch Logs (the task's stream), after a line
//!   with the task's ECS status, so a task that never started (an image
//!   that cannot be pulled) still says why.
//! - **Shutdown** keeps the tasks: another replica (or the next start)
//!   adopts them, so a rolling update of the control plane is no outage.

use async_trait::async_trait;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, Compatibility,
    ContainerDefinition, ContainerOverride, DesiredStatus, HealthCheck, HealthStatus, KeyValuePair,
    LogConfiguration, LogDriver, NetworkConfiguration, NetworkMode, PortMapping,
    ResourceRequirement, ResourceType, Tag, Task, TaskOverride, TransportProtocol,
};
use futures::StreamExt;
use paddock_core::compute::{ComputeSpec, ComputeTable};
use paddock_core::driver::{
    model_image_tag, Capabilities, ComputeDriver, DriverError, Handle, Health, LaunchSpec, Observed,
};
use paddock_core::InstanceId;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// The driver's name in handles.
pub const NAME: &str = "ecs";
/// The model container's name in every task definition.
pub const CONTAINER: &str = "model";
/// The port the runtime listens on in the task.
pub const PORT: u16 = 11434;
/// The tag naming a task's instance.
pub const TAG_INSTANCE: &str = "paddock:instance";
/// The tag naming the deployment a task or task definition belongs to.
pub const TAG_DEPLOYMENT: &str = "paddock:deployment";
/// Tasks one DescribeTasks call may name.
pub const DESCRIBE_BATCH: usize = 100;

/// DescribeTasks calls in flight at once when a reconcile pass reads every
/// task: 1,000 tasks are ten calls, two rounds of them.
pub const DESCRIBE_CONCURRENCY: usize = 5;

/// Where and how the driver runs tasks (`[driver]` with `kind = "ecs"`).
#[derive(Debug, Clone, Default)]
pub struct EcsSettings {
    /// The cluster's name or ARN.
    pub cluster: String,
    /// Private subnets for the tasks' network interfaces.
    pub subnets: Vec<String>,
    /// Security groups for the tasks (the model server's port, from the
    /// control plane only).
    pub security_groups: Vec<String>,
    /// Give tasks a public IP (only for subnets without a NAT gateway).
    pub assign_public_ip: bool,
    /// The role ECS uses to pull the image and write logs.
    pub execution_role_arn: Option<String>,
    /// The role the model server runs as (it needs none by default).
    pub task_role_arn: Option<String>,
    /// The CloudWatch Logs group of the tasks' output.
    pub log_group: String,
    /// The region the log group is in (awslogs-region).
    pub region: String,
    /// The paddock image: run when there is no model image repository (the
    /// runtime then pulls the model from the registry at start).
    pub image: String,
    /// A repository of model images (`<repository>:<model tag>`, weights
    /// baked in, pushed by `paddock aws deploy --model`).
    pub model_image_repository: Option<String>,
    /// This paddock's deployment id: `startedBy`, the deployment tag and
    /// the prefix of its task definition families.
    pub deployment: String,
    /// The EC2 GPU capacity provider (GPU sizes need it).
    pub gpu_capacity_provider: Option<String>,
    /// Its spot twin (spot GPU sizes need it).
    pub gpu_spot_capacity_provider: Option<String>,
    /// Sequences each runtime decodes together.
    pub runtime_parallel: u32,
    /// The registry a task's runtime pulls a model its image lacks from
    /// (`--registry`); `None`: the runtime's default, the public Ollama
    /// registry.
    pub registry: Option<String>,
}

/// What a handle carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TaskRef {
    task_arn: String,
    instance_id: InstanceId,
    family: String,
}

impl TaskRef {
    /// The task's id (the last part of its ARN).
    fn task_id(&self) -> &str {
        self.task_arn.rsplit('/').next().unwrap_or(&self.task_arn)
    }
}

/// The ECS driver.
#[derive(Debug)]
pub struct EcsDriver {
    ecs: aws_sdk_ecs::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    settings: EcsSettings,
    compute: ComputeTable,
    /// Task definition ARNs by family, once registered or found.
    families: tokio::sync::Mutex<HashMap<String, String>>,
    /// The task each instance runs, as launched or adopted here.
    tasks: Mutex<HashMap<InstanceId, TaskRef>>,
    /// One launch at a time per instance (racing launches start one task).
    launching: Mutex<HashMap<InstanceId, Arc<tokio::sync::Mutex<()>>>>,
}

fn backend(what: &str, e: impl std::fmt::Display) -> DriverError {
    DriverError::Backend(format!("{what}: {e}"))
}

/// The SDK error with its service message.
fn sdk_error<E, R>(e: aws_sdk_ecs::error::SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    aws_sdk_ecs::error::DisplayErrorContext(e).to_string()
}

/// A family-name part from free text: letters, digits, `-` and `_`.
fn name_part(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => c,
            _ => '-',
        })
        .collect()
}

impl EcsDriver {
    /// A driver on the clients of `sdk` (region and credentials from the
    /// standard chain; `AWS_ENDPOINT_URL` for an emulator).
    pub fn new(
        sdk: &aws_types::SdkConfig,
        settings: EcsSettings,
        compute: ComputeTable,
    ) -> Result<Self, DriverError> {
        if settings.cluster.trim().is_empty() {
            return Err(DriverError::Unsupported(
                "driver.cluster: the ECS driver needs a cluster".into(),
            ));
        }
        if settings.subnets.is_empty() {
            return Err(DriverError::Unsupported(
                "driver.subnets: the ECS driver needs the subnets its tasks run in".into(),
            ));
        }
        if settings.deployment.trim().is_empty() {
            return Err(DriverError::Unsupported(
                "driver.deployment: the ECS driver needs a deployment id".into(),
            ));
        }
        Ok(EcsDriver {
            ecs: aws_sdk_ecs::Client::new(sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(sdk),
            settings,
            compute,
            families: tokio::sync::Mutex::new(HashMap::new()),
            tasks: Mutex::new(HashMap::new()),
            launching: Mutex::new(HashMap::new()),
        })
    }

    /// The image an instance of `model` runs.
    fn image_for(&self, model: &str) -> String {
        match &self.settings.model_image_repository {
            Some(repo) if !repo.trim().is_empty() => format!("{repo}:{}", model_image_tag(model)),
            _ => self.settings.image.clone(),
        }
    }

    /// The task definition family of a model on a size.
    fn family_for(&self, spec: &LaunchSpec) -> String {
        let size = match &spec.spec {
            ComputeSpec::Cpu {
                vcpu_milli,
                memory_mb,
                ..
            } => format!("cpu{}-{memory_mb}", vcpu_milli * 1024 / 1000),
            ComputeSpec::Gpu { instance_type, .. } => name_part(instance_type),
        };
        let mut f = format!(
            "{}-{}-{size}",
            name_part(&self.settings.deployment),
            name_part(&model_image_tag(spec.model_id.as_str()))
        );
        f.truncate(255);
        f
    }

    /// The capacity provider a size runs on.
    fn capacity_provider(&self, spec: &ComputeSpec) -> Result<String, DriverError> {
        match spec {
            ComputeSpec::Cpu { spot: false, .. } => Ok("FARGATE".into()),
            ComputeSpec::Cpu { spot: true, .. } => Ok("FARGATE_SPOT".into()),
            ComputeSpec::Gpu { spot, .. } => {
                let (cp, key) = if *spot {
                    (
                        &self.settings.gpu_spot_capacity_provider,
                        "driver.gpu_spot_capacity_provider",
                    )
                } else {
                    (
                        &self.settings.gpu_capacity_provider,
                        "driver.gpu_capacity_provider",
                    )
                };
                cp.clone().filter(|c| !c.is_empty()).ok_or_else(|| {
                    DriverError::Unsupported(format!(
                        "this paddock has no {}GPU capacity provider ({key}); pick a CPU size",
                        if *spot { "spot " } else { "" }
                    ))
                })
            }
        }
    }

    /// The task definition of a family, registered when ECS has none with
    /// this image.
    async fn task_definition(
        &self,
        family: &str,
        spec: &LaunchSpec,
        image: &str,
    ) -> Result<String, DriverError> {
        let mut known = self.families.lock().await;
        if let Some(arn) = known.get(family) {
            return Ok(arn.clone());
        }
        // One registered before (by this or an earlier start) is reused.
        if let Ok(found) = self
            .ecs
            .describe_task_definition()
            .task_definition(family)
            .send()
            .await
        {
            if let Some(td) = found.task_definition() {
                let same_image = td
                    .container_definitions()
                    .iter()
                    .any(|c| c.name() == Some(CONTAINER) && c.image() == Some(image));
                if let (true, Some(arn)) = (same_image, td.task_definition_arn()) {
                    known.insert(family.to_owned(), arn.to_owned());
                    return Ok(arn.to_owned());
                }
            }
        }
        let arn = self.register(family, spec, image).await?;
        tracing::info!(%family, %arn, "registered a task definition");
        known.insert(family.to_owned(), arn.clone());
        Ok(arn)
    }

    async fn register(
        &self,
        family: &str,
        spec: &LaunchSpec,
        image: &str,
    ) -> Result<String, DriverError> {
        let s = &self.settings;
        let (cpu_units, memory_mb, gpu) = match &spec.spec {
            ComputeSpec::Cpu {
                vcpu_milli,
                memory_mb,
                ..
            } => (vcpu_milli * 1024 / 1000, *memory_mb, None),
            ComputeSpec::Gpu {
                instance_type,
                gpu_count,
                ..
            } => {
                let g = self.compute.gpu(instance_type).ok_or_else(|| {
                    DriverError::LaunchFailed(format!("unknown instance type {instance_type}"))
                })?;
                // The ECS agent and the OS keep some of the host's memory.
                (g.vcpu * 1024, g.memory_mb * 9 / 10, Some(*gpu_count))
            }
        };
        let health = HealthCheck::builder()
            .command("CMD")
            .command("/usr/local/bin/paddock")
            .command("healthcheck")
            .interval(10)
            .timeout(5)
            .retries(3)
            .start_period(120)
            .build()
            .map_err(|e| backend("health check", e))?;
        let logs = LogConfiguration::builder()
            .log_driver(LogDriver::Awslogs)
            .options("awslogs-group", &s.log_group)
            .options("awslogs-region", &s.region)
            .options("awslogs-stream-prefix", name_part(&s.deployment))
            .build()
            .map_err(|e| backend("log configuration", e))?;
        let mut container = ContainerDefinition::builder()
            .name(CONTAINER)
            .image(image)
            .essential(true)
            .memory(memory_mb as i32)
            .cpu(cpu_units as i32)
            .port_mappings(
                PortMapping::builder()
                    .container_port(i32::from(PORT))
                    .protocol(TransportProtocol::Tcp)
                    .build(),
            )
            .environment(env("PADDOCK_RUNTIME_HOST", "0.0.0.0"))
            .environment(env("PADDOCK_RUNTIME_PORT", &PORT.to_string()))
            .health_check(health)
            .log_configuration(logs)
            .stop_timeout(30);
        if let Some(n) = gpu {
            container = container.resource_requirements(
                ResourceRequirement::builder()
                    .r#type(ResourceType::Gpu)
                    .value(n.to_string())
                    .build()
                    .map_err(|e| backend("GPU requirement", e))?,
            );
        }
        let mut req = self
            .ecs
            .register_task_definition()
            .family(family)
            .network_mode(NetworkMode::Awsvpc)
            .requires_compatibilities(if gpu.is_some() {
                Compatibility::Ec2
            } else {
                Compatibility::Fargate
            })
            .cpu(cpu_units.to_string())
            .memory(memory_mb.to_string())
            .container_definitions(container.build())
            .tags(tag(TAG_DEPLOYMENT, &s.deployment));
        if let Some(r) = &s.execution_role_arn {
            req = req.execution_role_arn(r);
        }
        if let Some(r) = &s.task_role_arn {
            req = req.task_role_arn(r);
        }
        let out = req
            .send()
            .await
            .map_err(|e| backend("RegisterTaskDefinition", sdk_error(e)))?;
        out.task_definition()
            .and_then(|t| t.task_definition_arn())
            .map(str::to_owned)
            .ok_or_else(|| backend("RegisterTaskDefinition", "no task definition ARN"))
    }

    /// One DescribeTasks call (at most [`DESCRIBE_BATCH`] tasks); the tasks
    /// ECS knows, by ARN.
    async fn describe(&self, arns: &[String]) -> Result<HashMap<String, Task>, DriverError> {
        let out = self
            .ecs
            .describe_tasks()
            .cluster(&self.settings.cluster)
            .set_tasks(Some(arns.to_vec()))
            .send()
            .await
            .map_err(|e| backend("DescribeTasks", sdk_error(e)))?;
        Ok(out
            .tasks()
            .iter()
            .filter_map(|t| Some((t.task_arn()?.to_owned(), t.clone())))
            .collect())
    }

    /// The running tasks of this deployment (every page of ListTasks).
    async fn deployment_tasks(&self) -> Result<Vec<String>, DriverError> {
        let mut arns = Vec::new();
        let mut next = None;
        loop {
            let out = self
                .ecs
                .list_tasks()
                .cluster(&self.settings.cluster)
                .started_by(&self.settings.deployment)
                .desired_status(DesiredStatus::Running)
                .set_next_token(next)
                .send()
                .await
                .map_err(|e| backend("ListTasks", sdk_error(e)))?;
            arns.extend(out.task_arns().iter().cloned());
            next = out.next_token().map(str::to_owned);
            if next.is_none() {
                return Ok(arns);
            }
        }
    }

    async fn stop_task(&self, arn: &str, reason: &str) -> Result<(), DriverError> {
        match self
            .ecs
            .stop_task()
            .cluster(&self.settings.cluster)
            .task(arn)
            .reason(reason)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let msg = sdk_error(e);
                // Stopping a task ECS has forgotten is done already.
                if msg.contains("not find") || msg.contains("NotFound") {
                    Ok(())
                } else {
                    Err(backend("StopTask", msg))
                }
            }
        }
    }

    async fn run_task(&self, spec: &LaunchSpec) -> Result<TaskRef, DriverError> {
        let s = &self.settings;
        let provider = self.capacity_provider(&spec.spec)?;
        let image = self.image_for(spec.model_id.as_str());
        let family = self.family_for(spec);
        let td = self.task_definition(&family, spec, &image).await?;
        let network = NetworkConfiguration::builder()
            .awsvpc_configuration(
                AwsVpcConfiguration::builder()
                    .set_subnets(Some(s.subnets.clone()))
                    .set_security_groups(Some(s.security_groups.clone()))
                    .assign_public_ip(if s.assign_public_ip {
                        AssignPublicIp::Enabled
                    } else {
                        AssignPublicIp::Disabled
                    })
                    .build()
                    .map_err(|e| backend("network configuration", e))?,
            )
            .build();
        let mut command = spec.runtime_args(s.runtime_parallel);
        if let Some(registry) = &s.registry {
            command.extend(["--registry".into(), registry.clone()]);
        }
        let overrides = TaskOverride::builder()
            .container_overrides(
                ContainerOverride::builder()
                    .name(CONTAINER)
                    .set_command(Some(command))
                    .build(),
            )
            .build();
        let out = self
            .ecs
            .run_task()
            .cluster(&s.cluster)
            .task_definition(&td)
            .count(1)
            .started_by(&s.deployment)
            .capacity_provider_strategy(
                CapacityProviderStrategyItem::builder()
                    .capacity_provider(&provider)
                    .weight(1)
                    .build()
                    .map_err(|e| backend("capacity provider strategy", e))?,
            )
            .network_configuration(network)
            .overrides(overrides)
            .tags(tag(TAG_INSTANCE, spec.instance_id.as_str()))
            .tags(tag(TAG_DEPLOYMENT, &s.deployment))
            .enable_ecs_managed_tags(true)
            .send()
            .await
            .map_err(|e| DriverError::LaunchFailed(format!("RunTask: {}", sdk_error(e))))?;
        if let Some(f) = out.failures().first() {
            return Err(DriverError::LaunchFailed(format!(
                "ECS could not place the task on {provider}: {}{}",
                f.reason().unwrap_or("no reason given"),
                f.detail().map(|d| format!(" ({d})")).unwrap_or_default()
            )));
        }
        let arn = out
            .tasks()
            .first()
            .and_then(|t| t.task_arn())
            .ok_or_else(|| DriverError::LaunchFailed("RunTask started no task".into()))?;
        tracing::info!(instance = %spec.instance_id, task = %arn, %provider, "started an ECS task");
        Ok(TaskRef {
            task_arn: arn.to_owned(),
            instance_id: spec.instance_id.clone(),
            family,
        })
    }

    fn launch_lock(&self, id: &InstanceId) -> Arc<tokio::sync::Mutex<()>> {
        self.launching
            .lock()
            .expect("launch locks")
            .entry(id.clone())
            .or_default()
            .clone()
    }
}

fn env(name: &str, value: &str) -> KeyValuePair {
    KeyValuePair::builder().name(name).value(value).build()
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// What a described task means to paddock.
fn observe(task: &Task) -> Observed {
    let stopping = task.desired_status() == Some("STOPPED")
        || matches!(
            task.last_status(),
            Some("DEACTIVATING" | "STOPPING" | "DEPROVISIONING" | "STOPPED" | "DELETED")
        );
    if stopping {
        let code = task
            .containers()
            .iter()
            .find(|c| c.name() == Some(CONTAINER))
            .and_then(|c| c.exit_code());
        return Observed::Exited {
            reason: stop_reason(task),
            permanent: code == Some(paddock_core::driver::EXIT_WONT_FIX),
        };
    }
    let ip = task
        .attachments()
        .iter()
        .flat_map(|a| a.details())
        .find(|d| d.name() == Some("privateIPv4Address"))
        .and_then(|d| d.value())
        .unwrap_or_default();
    let running = task.last_status() == Some("RUNNING");
    let health = match health_status(task) {
        Some(HealthStatus::Healthy) if running && !ip.is_empty() => Health::Healthy,
        Some(HealthStatus::Unhealthy) if running => Health::Unhealthy,
        _ => Health::Unknown,
    };
    Observed::Alive {
        endpoint: if ip.is_empty() {
            String::new()
        } else {
            format!("http://{ip}:{PORT}")
        },
        health: Some(health),
    }
}

/// The task's health: its essential containers', or, from an emulator
/// that reports only the container's, the model container's.
fn health_status(task: &Task) -> Option<HealthStatus> {
    task.health_status().cloned().or_else(|| {
        task.containers()
            .iter()
            .find(|c| c.name() == Some(CONTAINER))
            .and_then(|c| c.health_status().cloned())
    })
}

/// Why a task stopped: ECS's reason, and the model container's exit code.
fn stop_reason(task: &Task) -> String {
    let mut reason = task
        .stopped_reason()
        .filter(|r| !r.is_empty())
        .unwrap_or("the task stopped")
        .to_owned();
    if let Some(c) = task
        .containers()
        .iter()
        .find(|c| c.name() == Some(CONTAINER))
    {
        if let Some(code) = c.exit_code() {
            reason.push_str(&format!("; the model server exited with code {code}"));
        }
        if let Some(r) = c.reason().filter(|r| !r.is_empty()) {
            reason.push_str(&format!(" ({r})"));
        }
    }
    reason
}

/// The one line of ECS's own view of a task that `logs` ends with.
fn status_line(task: Option<&Task>, r: &TaskRef) -> String {
    match task {
        None => format!("[ecs] task {} is no longer known to ECS", r.task_id()),
        Some(t) => {
            let status = t.last_status().unwrap_or("UNKNOWN");
            let provider = t.capacity_provider_name().unwrap_or("");
            match observe(t) {
                Observed::Exited { reason, .. } => {
                    format!("[ecs] task {} {status}: {reason}", r.task_id())
                }
                _ => format!(
                    "[ecs] task {} {status} on {provider}, health {}",
                    r.task_id(),
                    health_status(t)
                        .map_or_else(|| "UNKNOWN".to_owned(), |h| h.as_str().to_owned())
                ),
            }
        }
    }
}

#[async_trait]
impl ComputeDriver for EcsDriver {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            gpu: self
                .settings
                .gpu_capacity_provider
                .as_ref()
                .is_some_and(|c| !c.is_empty()),
            spot: true,
            local: false,
        }
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<Handle, DriverError> {
        let lock = self.launch_lock(&spec.instance_id);
        let _one = lock.lock().await;
        let current = self
            .tasks
            .lock()
            .expect("tasks")
            .get(&spec.instance_id)
            .cloned();
        if let Some(r) = current {
            let seen = self.describe(std::slice::from_ref(&r.task_arn)).await?;
            if seen
                .get(&r.task_arn)
                .is_some_and(|t| matches!(observe(t), Observed::Alive { .. }))
            {
                return Ok(Handle::new(NAME, &r));
            }
        }
        let r = self.run_task(spec).await?;
        self.tasks
            .lock()
            .expect("tasks")
            .insert(spec.instance_id.clone(), r.clone());
        Ok(Handle::new(NAME, &r))
    }

    async fn status(&self, handle: &Handle) -> Result<Observed, DriverError> {
        self.status_many(std::slice::from_ref(handle))
            .await
            .pop()
            .unwrap_or_else(|| Err(backend("DescribeTasks", "no answer")))
    }

    async fn status_many(&self, handles: &[Handle]) -> Vec<Result<Observed, DriverError>> {
        let refs: Vec<Result<TaskRef, DriverError>> = handles
            .iter()
            .map(|h| h.data_for::<TaskRef>(NAME))
            .collect();
        let arns: Vec<String> = refs
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|r| r.task_arn.clone()))
            .collect();
        let mut seen = HashMap::new();
        let mut failed: Option<String> = None;
        // Owned batches: a future borrowing a chunk of `arns` is not Send
        // for every lifetime, as the trait's boxed future needs.
        let batches: Vec<Vec<String>> = arns
            .chunks(DESCRIBE_BATCH)
            .map(<[String]>::to_vec)
            .collect();
        let mut batches = futures::stream::iter(batches)
            .map(|batch| async move { self.describe(&batch).await })
            .buffer_unordered(DESCRIBE_CONCURRENCY);
        while let Some(result) = batches.next().await {
            match result {
                Ok(tasks) => seen.extend(tasks),
                Err(e) => failed = Some(e.to_string()),
            }
        }
        refs.into_iter()
            .map(|r| {
                let r = r?;
                match seen.get(&r.task_arn) {
                    Some(t) => Ok(observe(t)),
                    // A failed batch says nothing of its tasks.
                    None if failed.is_some() => {
                        Err(DriverError::Backend(failed.clone().unwrap_or_default()))
                    }
                    None => Ok(Observed::Gone),
                }
            })
            .collect()
    }

    async fn stop(&self, handle: &Handle) -> Result<(), DriverError> {
        let r: TaskRef = handle.data_for(NAME)?;
        self.stop_task(&r.task_arn, "stopped by paddock").await?;
        let mut tasks = self.tasks.lock().expect("tasks");
        if tasks.get(&r.instance_id) == Some(&r) {
            tasks.remove(&r.instance_id);
        }
        Ok(())
    }

    async fn logs(&self, handle: &Handle, lines: usize) -> Result<Vec<String>, DriverError> {
        let r: TaskRef = handle.data_for(NAME)?;
        let s = &self.settings;
        // awslogs names a task's stream <prefix>/<container>/<task id>.
        let stream = format!("{}/{CONTAINER}/{}", name_part(&s.deployment), r.task_id());
        let mut out = match self
            .logs
            .get_log_events()
            .log_group_name(&s.log_group)
            .log_stream_name(&stream)
            .start_from_head(false)
            .limit(lines.clamp(1, 10_000) as i32)
            .send()
            .await
        {
            Ok(o) => o
                .events()
                .iter()
                .filter_map(|e| e.message().map(str::to_owned))
                .collect(),
            Err(e) => {
                let msg = aws_sdk_cloudwatchlogs::error::DisplayErrorContext(e).to_string();
                // No stream yet: the container has written nothing.
                if !msg.contains("ResourceNotFound") && !msg.contains("does not exist") {
                    tracing::warn!(error = %msg, "reading the task's logs failed");
                }
                Vec::new()
            }
        };
        let task = self.describe(std::slice::from_ref(&r.task_arn)).await.ok();
        out.push(status_line(
            task.as_ref().and_then(|t| t.get(&r.task_arn)),
            &r,
        ));
        let skip = out.len().saturating_sub(lines.max(1));
        Ok(out.split_off(skip))
    }

    async fn adopt(&self, known: &[(InstanceId, Handle)]) -> Result<Vec<InstanceId>, DriverError> {
        let running: HashSet<String> = self.deployment_tasks().await?.into_iter().collect();
        let mut kept = Vec::new();
        let mut keep_arns = HashSet::new();
        for (id, h) in known {
            let Ok(r) = h.data_for::<TaskRef>(NAME) else {
                continue;
            };
            if running.contains(&r.task_arn) {
                keep_arns.insert(r.task_arn.clone());
                self.tasks.lock().expect("tasks").insert(id.clone(), r);
                kept.push(id.clone());
            }
        }
        for arn in running.difference(&keep_arns) {
            tracing::warn!(task = %arn, "stopping a task of this deployment that no instance owns");
            self.stop_task(arn, "not an instance of this paddock (stopped at adoption)")
                .await?;
        }
        Ok(kept)
    }

    async fn shutdown(
        &self,
        _known: &[(InstanceId, Handle)],
    ) -> Result<Vec<InstanceId>, DriverError> {
        // The tasks outlive this control plane: the replica that takes the
        // lease next (or the next start) adopts them.
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_per_model_and_size() {
        let d = EcsSettings {
            deployment: "paddock".into(),
            ..Default::default()
        };
        let drv = |spec| {
            let sdk = aws_types::SdkConfig::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .region(aws_types::region::Region::new("us-east-1"))
                .build();
            let e = EcsDriver::new(
                &sdk,
                EcsSettings {
                    cluster: "c".into(),
                    subnets: vec!["s".into()],
                    ..d.clone()
                },
                ComputeTable::builtin(),
            )
            .unwrap();
            e.family_for(&LaunchSpec {
                instance_id: InstanceId::new("i-1"),
                model_id: paddock_core::ModelId::new("gemma3:270m"),
                spec,
                threads: 1,
                ctx: 2048,
            })
        };
        let t = ComputeTable::builtin();
        assert_eq!(
            drv(t.fargate_spec(1024, 2048).unwrap()),
            "paddock-gemma3-270m-cpu1024-2048"
        );
        // Spot runs the same task definition on another capacity provider.
        assert_eq!(
            drv(t.fargate_spec(1024, 2048).unwrap().with_spot(true)),
            "paddock-gemma3-270m-cpu1024-2048"
        );
        assert_eq!(
            drv(t.gpu_spec("g5.xlarge").unwrap()),
            "paddock-gemma3-270m-g5-xlarge"
        );
    }
}
