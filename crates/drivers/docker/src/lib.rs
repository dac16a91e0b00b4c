//! The Docker driver: each instance is one container on a Docker Engine,
//! reached over the Engine API (bollard), at `DOCKER_HOST` as the docker CLI
//! reads it (the local socket when unset).
//!
//! - **Image.** The model image `paddock-model:<model>-<tag>` when the
//!   engine has one for the model (the weights baked in: nothing mounted,
//!   the fastest start), else the paddock image (`paddock:<version>`) with
//!   the host's model store bind-mounted read-only. `paddock image build`
//!   makes both.
//! - **Size.** vCPU becomes `NanoCpus`, memory `Memory` with `MemorySwap`
//!   equal to it (no swap). A container the kernel killed at its memory
//!   limit is reported as exited with a reason that says so. GPU sizes need
//!   an engine with the NVIDIA runtime (from `docker info`); they get a
//!   device request for their GPU count.
//! - **Reach.** With a local engine the runtime listens on a unix socket in
//!   a per-instance directory (`<root>/instances/<id>/`, mode 0700)
//!   bind-mounted into the container, and the container has no network at
//!   all: nothing is published, and no other local user can reach the model
//!   server around the gateway. With a remote engine (`DOCKER_HOST=tcp://`)
//!   a socket cannot be shared, so the runtime's port is published on the
//!   engine's host and reached there; [`Reach::Port`] does the same on
//!   127.0.0.1 for a local engine.
//! - **Ownership.** Every container carries the labels `paddock.instance`
//!   and `paddock.root` (this server's root id, kept in
//!   `<root>/docker-root-id`); [`ComputeDriver::adopt`] finds containers
//!   by them after a restart, keeps the ones the store knows and removes the
//!   rest. Stop stops then removes the container, first saving its output
//!   to `runtime.log` in the instance directory, so logs outlive it.

use async_trait::async_trait;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, DeviceRequest,
    HostConfig, HostConfigLogConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;
use paddock_core::compute::ComputeSpec;
use paddock_core::driver::{
    Capabilities, ComputeDriver, DriverError, Handle, LaunchSpec, Observed,
};
use paddock_core::InstanceId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const DRIVER: &str = "docker";
/// The label naming the instance a container serves.
pub const LABEL_INSTANCE: &str = "paddock.instance";
/// The label naming the paddock root (server) that launched a container.
pub const LABEL_ROOT: &str = "paddock.root";
/// Where the endpoint of a container is kept, so a relaunch or a restarted
/// server rebuilds the same handle from the container alone.
const LABEL_ENDPOINT: &str = "paddock.endpoint";
/// The data directory inside paddock images: the model image's store is
/// `<this>/models`, and the host's store is mounted there read-only.
pub const IMAGE_DATA_DIR: &str = "/var/lib/paddock";
/// Where the instance directory is mounted in the container.
pub const CONTAINER_SOCKET_DIR: &str = "/run/paddock";
/// The runtime's port inside the container (Ollama's).
pub const RUNTIME_PORT: u16 = 11434;
/// The user the paddock image runs as.
pub const IMAGE_UID: u32 = 10001;
/// Output kept per container by the engine before it rotates.
const LOG_MAX_SIZE: &str = "10m";
/// The longest socket path used: a unix socket address holds 107 bytes.
const MAX_SOCKET_PATH: usize = 100;
/// Seconds a stopping container has before it is killed.
const STOP_GRACE_SECS: i32 = 5;

/// The model image's name for `model` (`gemma3:270m` →
/// `paddock-model:gemma3-270m`): what `paddock image build --model` tags
/// and what the driver looks for.
pub fn model_image(model: &str) -> String {
    format!(
        "paddock-model:{}",
        paddock_core::driver::model_image_tag(model)
    )
}

/// The paddock image of this release (`paddock:<version>`).
pub fn default_image() -> String {
    format!("paddock:{}", env!("CARGO_PKG_VERSION"))
}

/// How the gateway reaches a container's runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    /// A unix socket for a local engine, a published port for a remote one.
    #[default]
    Auto,
    /// A unix socket in the bind-mounted instance directory (local engines).
    Socket,
    /// A published port: on 127.0.0.1 for a local engine, on the engine's
    /// host for a remote one.
    Port,
}

/// How the Docker driver runs model servers.
#[derive(Debug, Clone)]
pub struct DockerDriverConfig {
    /// The server's data directory: instance directories (sockets, saved
    /// logs) live under `<root>/instances/`, and its root id beside them.
    pub root: PathBuf,
    /// The data directory whose `models/` store is mounted into containers
    /// that run the paddock image.
    pub models_dir: PathBuf,
    /// The paddock image (`paddock:<version>`).
    pub image: String,
    /// Whether a model image, when the engine has one, is used instead of
    /// the paddock image with the mounted store.
    pub model_images: bool,
    /// Sequences each runtime decodes together.
    pub parallel: u32,
    pub reach: Reach,
    /// Whether containers keep running when the control plane stops
    /// gracefully, for the next start to adopt.
    pub keep_on_shutdown: bool,
}

/// What the handle stores about a container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct ContainerData {
    /// The container's id.
    container: String,
    instance_id: InstanceId,
    /// Where the gateway reaches its runtime (`unix:/…` or `http://…`).
    endpoint: String,
}

/// Runs instances as containers on a Docker Engine.
#[derive(Debug)]
pub struct DockerDriver {
    docker: Docker,
    config: DockerDriverConfig,
    root_id: String,
    gpu: bool,
    /// Where a published port is reached: 127.0.0.1, or a remote engine's host.
    port_host: String,
    /// Whether the engine is remote (a socket cannot be shared with it).
    remote: bool,
    /// Serialises launches, so two concurrent launches of one instance
    /// start one container.
    launching: tokio::sync::Mutex<()>,
}

fn backend(e: impl std::fmt::Display) -> DriverError {
    DriverError::Backend(e.to_string())
}

/// Whether an Engine API error is a 404.
fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl DockerDriver {
    /// Connects to the engine at `DOCKER_HOST` (the local socket when
    /// unset), agrees on an API version, and reads its capabilities.
    pub async fn connect(config: DockerDriverConfig) -> Result<Self, DriverError> {
        let host = std::env::var("DOCKER_HOST").unwrap_or_default();
        let docker = Docker::connect_with_defaults()
            .map_err(|e| DriverError::Backend(format!("cannot use the Docker engine: {e}")))?;
        let docker = docker.negotiate_version().await.map_err(|e| {
            DriverError::Backend(format!(
                "the Docker engine at {} does not answer: {e}",
                if host.is_empty() {
                    "the local socket"
                } else {
                    &host
                }
            ))
        })?;
        let info = docker.info().await.map_err(backend)?;
        let gpu = info
            .runtimes
            .as_ref()
            .is_some_and(|r| r.contains_key("nvidia"));
        let remote_host = remote_host(&host);
        std::fs::create_dir_all(&config.root).map_err(backend)?;
        let root_id = load_or_create_root_id(&config.root.join("docker-root-id"))?;
        Ok(DockerDriver {
            docker,
            root_id,
            gpu,
            port_host: remote_host.clone().unwrap_or_else(|| "127.0.0.1".into()),
            remote: remote_host.is_some(),
            config,
            launching: tokio::sync::Mutex::new(()),
        })
    }

    /// This server's root id (the `paddock.root` label of its containers).
    pub fn root_id(&self) -> &str {
        &self.root_id
    }

    fn instance_dir(&self, id: &InstanceId) -> PathBuf {
        self.config.root.join("instances").join(id.as_str())
    }

    fn log_path(&self, id: &InstanceId) -> PathBuf {
        self.instance_dir(id).join("runtime.log")
    }

    fn container_name(&self, id: &InstanceId) -> String {
        let safe: String = id
            .as_str()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        format!("paddock-{}-{safe}", &self.root_id[..8])
    }

    fn data(handle: &Handle) -> Result<ContainerData, DriverError> {
        handle.data_for(DRIVER)
    }

    fn handle(data: &ContainerData) -> Handle {
        Handle::new(DRIVER, data)
    }

    /// The handle of a container this driver made, from its labels.
    fn handle_of(&self, c: &ContainerInspectResponse) -> Option<Handle> {
        let labels = c.config.as_ref()?.labels.as_ref()?;
        if labels.get(LABEL_ROOT)? != &self.root_id {
            return None;
        }
        Some(Self::handle(&ContainerData {
            container: c.id.clone()?,
            instance_id: InstanceId::new(labels.get(LABEL_INSTANCE)?.clone()),
            endpoint: labels.get(LABEL_ENDPOINT)?.clone(),
        }))
    }

    async fn inspect(&self, name: &str) -> Result<Option<ContainerInspectResponse>, DriverError> {
        match self.docker.inspect_container(name, None).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn image_exists(&self, image: &str) -> Result<bool, DriverError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(backend(e)),
        }
    }

    /// Every container of this root, running or not: (id, instance).
    async fn ours(&self) -> Result<Vec<(String, InstanceId)>, DriverError> {
        let filters: HashMap<&str, Vec<String>> =
            HashMap::from([("label", vec![format!("{LABEL_ROOT}={}", self.root_id)])]);
        let list = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(backend)?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let instance = c.labels.as_ref()?.get(LABEL_INSTANCE)?.clone();
                Some((c.id?, InstanceId::new(instance)))
            })
            .collect())
    }

    /// The last `lines` lines a container wrote (stdout and stderr).
    async fn container_logs(&self, container: &str, lines: usize) -> Vec<String> {
        let tail = if lines == 0 {
            "all".to_owned()
        } else {
            lines.to_string()
        };
        let mut stream = self.docker.logs(
            container,
            Some(
                LogsOptionsBuilder::new()
                    .stdout(true)
                    .stderr(true)
                    .tail(&tail)
                    .build(),
            ),
        );
        let mut text = Vec::new();
        while let Some(Ok(chunk)) = stream.next().await {
            text.extend_from_slice(&chunk.into_bytes());
        }
        String::from_utf8_lossy(&text)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Saves everything a container wrote to its instance's log file, then
    /// stops and removes it. A container already gone is fine.
    async fn remove(&self, container: &str, instance: &InstanceId) -> Result<(), DriverError> {
        let _ = self
            .docker
            .stop_container(
                container,
                Some(
                    StopContainerOptionsBuilder::new()
                        .t(STOP_GRACE_SECS)
                        .build(),
                ),
            )
            .await;
        let lines = self.container_logs(container, 0).await;
        if !lines.is_empty() {
            append_log(&self.log_path(instance), container, &lines);
        }
        match self
            .docker
            .remove_container(
                container,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await
        {
            Ok(()) => {}
            Err(e) if not_found(&e) => {}
            // A removal already under way (a racing stop) finishes by itself.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => {}
            Err(e) => return Err(backend(e)),
        }
        tracing::info!(instance = %instance, container = short(container), "container removed");
        Ok(())
    }

    /// The user the container runs as and the owner its instance directory
    /// gets: this server's own user, so the socket the runtime makes is
    /// reachable by the gateway and by no one else; as root, the image's
    /// unprivileged user instead (root reaches its socket anyway).
    fn container_user() -> (u32, u32) {
        let (uid, gid) = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        if uid == 0 {
            (IMAGE_UID, IMAGE_UID)
        } else {
            (uid, gid)
        }
    }

    async fn create_and_start(&self, spec: &LaunchSpec) -> Result<Handle, DriverError> {
        let id = &spec.instance_id;
        let for_model = model_image(spec.model_id.as_str());
        let (image, mount_store) = if self.config.model_images
            && self.image_exists(&for_model).await?
        {
            (for_model, false)
        } else if self.image_exists(&self.config.image).await? {
            (self.config.image.clone(), true)
        } else {
            return Err(DriverError::LaunchFailed(format!(
                    "the Docker engine has neither {for_model} nor {}; build them with `paddock image build` (and `--model {}`)",
                    self.config.image, spec.model_id
                )));
        };
        if mount_store && self.remote {
            return Err(DriverError::LaunchFailed(format!(
                "the Docker engine is remote, so the model store cannot be mounted; build {} there with `paddock image build --model {}`",
                model_image(spec.model_id.as_str()),
                spec.model_id
            )));
        }
        let (uid, gid) = Self::container_user();
        let dir = self.instance_dir(id);
        make_private_dir(&dir, uid, gid)?;
        let socket = dir.join("runtime.sock");
        let by_socket = match self.config.reach {
            Reach::Socket if self.remote => {
                return Err(DriverError::Unsupported(
                    "a unix socket cannot reach a container on a remote Docker engine; set [driver] docker_reach = \"port\"".into(),
                ))
            }
            Reach::Socket | Reach::Auto => {
                !self.remote && socket.as_os_str().len() <= MAX_SOCKET_PATH
            }
            Reach::Port => false,
        };
        let mut env = vec!["PADDOCK_LOG=info".to_owned()];
        let mut binds = Vec::new();
        let mut host = HostConfig {
            nano_cpus: match spec.spec {
                ComputeSpec::Cpu { vcpu_milli, .. } => Some(i64::from(vcpu_milli) * 1_000_000),
                ComputeSpec::Gpu { .. } => None,
            },
            memory: memory_bytes(&spec.spec),
            memory_swap: memory_bytes(&spec.spec),
            init: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([("/tmp".into(), "size=64m".into())])),
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([("max-size".into(), LOG_MAX_SIZE.into())])),
            }),
            ..Default::default()
        };
        if let ComputeSpec::Gpu { gpu_count, .. } = &spec.spec {
            host.device_requests = Some(vec![DeviceRequest {
                driver: Some("nvidia".into()),
                count: Some(i64::from(*gpu_count)),
                capabilities: Some(vec![vec!["gpu".into()]]),
                ..Default::default()
            }]);
        }
        let mut exposed = None;
        let endpoint_label = if by_socket {
            let _ = std::fs::remove_file(&socket);
            binds.push(format!("{}:{CONTAINER_SOCKET_DIR}", dir.display()));
            env.push(format!(
                "PADDOCK_RUNTIME_SOCKET={CONTAINER_SOCKET_DIR}/runtime.sock"
            ));
            host.network_mode = Some("none".into());
            format!("unix:{}", socket.display())
        } else {
            env.push("PADDOCK_RUNTIME_HOST=0.0.0.0".into());
            env.push(format!("PADDOCK_RUNTIME_PORT={RUNTIME_PORT}"));
            let port = format!("{RUNTIME_PORT}/tcp");
            exposed = Some(vec![port.clone()]);
            host.port_bindings = Some(HashMap::from([(
                port,
                Some(vec![PortBinding {
                    // On a remote engine the port must be reachable from here.
                    host_ip: Some(if self.remote { "" } else { "127.0.0.1" }.into()),
                    host_port: Some(String::new()),
                }]),
            )]));
            // The port is known once the container runs.
            "port".to_owned()
        };
        if mount_store {
            binds.push(format!(
                "{}:{IMAGE_DATA_DIR}/models:ro",
                self.config.models_dir.join("models").display()
            ));
        }
        host.binds = Some(binds);
        let labels = HashMap::from([
            (LABEL_INSTANCE.to_owned(), id.as_str().to_owned()),
            (LABEL_ROOT.to_owned(), self.root_id.clone()),
            (LABEL_ENDPOINT.to_owned(), endpoint_label),
            (
                "paddock.model".to_owned(),
                spec.model_id.as_str().to_owned(),
            ),
        ]);
        let mut cmd = spec.runtime_args(self.config.parallel);
        cmd.extend(["--data-dir".into(), IMAGE_DATA_DIR.into()]);
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            cmd: Some(cmd),
            env: Some(env),
            user: Some(format!("{uid}:{gid}")),
            labels: Some(labels),
            exposed_ports: exposed,
            host_config: Some(host),
            ..Default::default()
        };
        let name = self.container_name(id);
        append_log(
            &self.log_path(id),
            &name,
            &[format!(
                "launching {} from {image} ({} threads, ctx {})",
                spec.model_id, spec.threads, spec.ctx
            )],
        );
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await
            .map_err(|e| DriverError::LaunchFailed(format!("cannot create the container: {e}")))?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            let _ = self.remove(&created.id, id).await;
            return Err(DriverError::LaunchFailed(format!(
                "cannot start the container: {e}"
            )));
        }
        let endpoint = if by_socket {
            format!("unix:{}", socket.display())
        } else {
            let c = self.inspect(&created.id).await?.ok_or_else(|| {
                DriverError::LaunchFailed("the container vanished as it started".into())
            })?;
            let port = published_port(&c).ok_or_else(|| {
                DriverError::LaunchFailed("the engine published no port for the runtime".into())
            })?;
            format!("http://{}:{port}", self.port_host)
        };
        tracing::info!(instance = %id, container = short(&created.id), %image, %endpoint, "container launched");
        Ok(Self::handle(&ContainerData {
            container: created.id,
            instance_id: id.clone(),
            endpoint,
        }))
    }

    /// The handle of the running container of `id`, if there is one; a
    /// container of `id` that ended is saved to the log and removed.
    async fn running(&self, id: &InstanceId) -> Result<Option<Handle>, DriverError> {
        let Some(c) = self.inspect(&self.container_name(id)).await? else {
            return Ok(None);
        };
        let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        if running {
            if let Some(mut h) = self.handle_of(&c) {
                // A port-reached container's endpoint is its published port.
                if let Ok(mut d) = Self::data(&h) {
                    if d.endpoint == "port" {
                        if let Some(port) = published_port(&c) {
                            d.endpoint = format!("http://{}:{port}", self.port_host);
                            h = Self::handle(&d);
                        }
                    }
                }
                return Ok(Some(h));
            }
        }
        if let Some(cid) = c.id.as_deref() {
            self.remove(cid, id).await?;
        }
        Ok(None)
    }
}

/// The host port published for the runtime's port.
fn published_port(c: &ContainerInspectResponse) -> Option<u16> {
    c.network_settings
        .as_ref()?
        .ports
        .as_ref()?
        .get(&format!("{RUNTIME_PORT}/tcp"))?
        .as_ref()?
        .iter()
        .find_map(|b| b.host_port.as_deref()?.parse().ok())
}

fn memory_bytes(spec: &ComputeSpec) -> Option<i64> {
    match spec {
        ComputeSpec::Cpu { memory_mb, .. } => Some(i64::from(*memory_mb) * 1024 * 1024),
        ComputeSpec::Gpu { .. } => None,
    }
}

/// The host of a `tcp://` or `http(s)://` `DOCKER_HOST`; None for a local
/// engine (a unix socket).
fn remote_host(docker_host: &str) -> Option<String> {
    let rest = ["tcp://", "http://", "https://"]
        .iter()
        .find_map(|p| docker_host.strip_prefix(p))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    Some(host.trim_matches(['[', ']']).to_owned())
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// This server's root id, made once (16 hex digits) and kept in `path`.
fn load_or_create_root_id(path: &Path) -> Result<String, DriverError> {
    if let Ok(s) = std::fs::read_to_string(path) {
        let s = s.trim();
        if s.len() >= 8 && s.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(s.to_owned());
        }
    }
    let id = hex::encode(rand::random::<[u8; 8]>());
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, &id).map_err(backend)?;
    std::fs::rename(&tmp, path).map_err(backend)?;
    Ok(id)
}

/// Makes `dir` (and its parents), mode 0700, owned by `uid:gid` when that
/// is not already its owner (only root can give it away).
fn make_private_dir(dir: &Path, uid: u32, gid: u32) -> Result<(), DriverError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::create_dir_all(dir).map_err(backend)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(backend)?;
    let meta = std::fs::metadata(dir).map_err(backend)?;
    if meta.uid() != uid || meta.gid() != gid {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(|e| {
            DriverError::LaunchFailed(format!(
                "cannot give {} to the container's user {uid}: {e}",
                dir.display()
            ))
        })?;
    }
    Ok(())
}

/// Appends `lines` to an instance's log file, under a header naming the
/// container.
fn append_log(path: &Path, container: &str, lines: &[String]) {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        return;
    };
    let _ = writeln!(
        f,
        "--- {} container {} ---",
        chrono::Utc::now().to_rfc3339(),
        short(container)
    );
    for line in lines {
        let _ = writeln!(f, "{line}");
    }
}

/// The last `n` lines of a file.
fn tail_file(path: &Path, n: usize) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// Why a container that is no longer running ended.
fn exit_reason(c: &ContainerInspectResponse, last: &[String]) -> String {
    let state = c.state.as_ref();
    let why = if state.and_then(|s| s.oom_killed).unwrap_or(false) {
        let mib = c
            .host_config
            .as_ref()
            .and_then(|h| h.memory)
            .map(|b| b / (1024 * 1024))
            .unwrap_or(0);
        format!("out of memory at {mib} MiB: choose a larger size")
    } else {
        let code = state.and_then(|s| s.exit_code).unwrap_or(-1);
        match state
            .and_then(|s| s.error.as_deref())
            .filter(|e| !e.is_empty())
        {
            Some(err) => format!("the container failed: {err}"),
            None => format!("the model server exited (exit code {code})"),
        }
    };
    if last.is_empty() {
        why
    } else {
        format!("{why}; last log lines:\n{}", last.join("\n"))
    }
}

#[async_trait]
impl ComputeDriver for DockerDriver {
    fn name(&self) -> &'static str {
        DRIVER
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            gpu: self.gpu,
            spot: false,
            local: true,
        }
    }

    /// Unless the model's own image will run (weights baked in), the
    /// container mounts the host's store and reads the model there.
    async fn reads_host_store(&self, model: &paddock_core::ModelId) -> bool {
        !(self.config.model_images
            && self
                .image_exists(&model_image(model.as_str()))
                .await
                .unwrap_or(false))
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<Handle, DriverError> {
        if matches!(spec.spec, ComputeSpec::Gpu { .. }) && !self.gpu {
            return Err(DriverError::Unsupported(
                "this Docker engine has no NVIDIA runtime; pick a CPU size".into(),
            ));
        }
        let _one_at_a_time = self.launching.lock().await;
        if let Some(h) = self.running(&spec.instance_id).await? {
            return Ok(h);
        }
        match self.create_and_start(spec).await {
            // Another server on the same root made it first: use that one.
            Err(DriverError::LaunchFailed(m)) if m.contains("409") => self
                .running(&spec.instance_id)
                .await?
                .ok_or(DriverError::LaunchFailed(m)),
            other => other,
        }
    }

    async fn status(&self, handle: &Handle) -> Result<Observed, DriverError> {
        let data = Self::data(handle)?;
        let Some(c) = self.inspect(&data.container).await? else {
            return Ok(Observed::Gone);
        };
        let status = c.state.as_ref().and_then(|s| s.status);
        Ok(match status {
            Some(
                ContainerStateStatusEnum::RUNNING
                | ContainerStateStatusEnum::CREATED
                | ContainerStateStatusEnum::RESTARTING
                | ContainerStateStatusEnum::PAUSED,
            ) => Observed::alive(data.endpoint),
            _ => {
                let last = self.container_logs(&data.container, 5).await;
                let code = c.state.as_ref().and_then(|s| s.exit_code);
                Observed::Exited {
                    reason: exit_reason(&c, &last),
                    permanent: code == Some(i64::from(paddock_core::driver::EXIT_WONT_FIX)),
                }
            }
        })
    }

    async fn stop(&self, handle: &Handle) -> Result<(), DriverError> {
        let data = Self::data(handle)?;
        self.remove(&data.container, &data.instance_id).await
    }

    async fn logs(&self, handle: &Handle, lines: usize) -> Result<Vec<String>, DriverError> {
        let data = Self::data(handle)?;
        let mut out = tail_file(&self.log_path(&data.instance_id), lines);
        if self.inspect(&data.container).await?.is_some() {
            out.extend(self.container_logs(&data.container, lines).await);
        }
        let skip = out.len().saturating_sub(lines);
        Ok(out.split_off(skip))
    }

    async fn adopt(&self, known: &[(InstanceId, Handle)]) -> Result<Vec<InstanceId>, DriverError> {
        let mut alive = Vec::new();
        for (container, id) in self.ours().await? {
            let expected = known
                .iter()
                .find(|(k, _)| k == &id)
                .and_then(|(_, h)| Self::data(h).ok());
            match expected {
                Some(d) if d.container == container => {
                    let running = self
                        .inspect(&container)
                        .await?
                        .and_then(|c| c.state?.running)
                        .unwrap_or(false);
                    if running {
                        tracing::info!(instance = %id, container = short(&container), "re-adopted container");
                        alive.push(id);
                    }
                }
                _ => {
                    tracing::warn!(instance = %id, container = short(&container), "removing a container the store does not know");
                    self.remove(&container, &id).await?;
                }
            }
        }
        Ok(alive)
    }

    async fn shutdown(
        &self,
        known: &[(InstanceId, Handle)],
    ) -> Result<Vec<InstanceId>, DriverError> {
        if self.config.keep_on_shutdown {
            tracing::info!(
                instances = known.len(),
                "containers keep running for the next start to adopt"
            );
            return Ok(Vec::new());
        }
        let ours = self.ours().await?;
        let ending = ours.iter().map(|(c, id)| self.remove(c, id));
        for result in futures::future::join_all(ending).await {
            result?;
        }
        Ok(known.iter().map(|(id, _)| id.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_images_are_named_from_the_model() {
        assert_eq!(model_image("gemma3:270m"), "paddock-model:gemma3-270m");
        assert_eq!(
            model_image("library/qwen2.5:0.5b"),
            "paddock-model:qwen2.5-0.5b"
        );
        assert_eq!(
            model_image("me/My Model:Q4"),
            "paddock-model:me-my-model-q4"
        );
    }

    #[test]
    fn remote_engines_are_told_from_local_ones() {
        assert_eq!(remote_host(""), None);
        assert_eq!(remote_host("unix:///var/run/docker.sock"), None);
        assert_eq!(
            remote_host("tcp://gpu-box.internal:2376"),
            Some("gpu-box.internal".into())
        );
        assert_eq!(remote_host("tcp://[::1]:2375"), Some("::1".into()));
        assert_eq!(remote_host("http://host"), Some("host".into()));
    }

    #[test]
    fn the_root_id_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("docker-root-id");
        let a = load_or_create_root_id(&p).unwrap();
        assert_eq!(a.len(), 16);
        assert_eq!(load_or_create_root_id(&p).unwrap(), a);
    }

    #[test]
    fn an_oom_kill_is_named_with_the_limit() {
        let c = ContainerInspectResponse {
            state: Some(bollard::models::ContainerState {
                oom_killed: Some(true),
                exit_code: Some(137),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                memory: Some(2048 * 1024 * 1024),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            exit_reason(&c, &[]),
            "out of memory at 2048 MiB: choose a larger size"
        );
    }
}
