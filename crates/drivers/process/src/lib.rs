//! The process driver: each instance is a `paddock runtime` child process,
//! in its own process group, listening on a unix socket in its instance
//! directory (`<root>/instances/<id>/runtime.sock`, the directory mode
//! 0700, the socket 0600: no other user on the machine can reach the model
//! server around the gateway's authentication, and a request costs less
//! than on loopback TCP), with its output in `runtime.log` beside it. Where
//! that path would be too long for a socket address, a free loopback port
//! is used instead.
//!
//! It owns launching, observing, stopping and re-adopting those processes.
//! Each child carries `PADDOCK_INSTANCE_ID` and `PADDOCK_DRIVER_ROOT` in its
//! environment; after a control-plane restart, [`ProcessDriver::adopt`]
//! recognises its own processes by them (so a reused pid is never mistaken
//! for an instance), keeps the ones the store knows and ends the rest.
//! When the control plane stops gracefully, [`ComputeDriver::shutdown`]
//! ends every runtime it launched unless
//! [`ProcessDriverConfig::keep_on_shutdown`] says to leave them for the
//! next start; only a crash of the control plane leaves them otherwise.
//! Health (is the model answering?) is the reconciler's business, not this
//! driver's.

use async_trait::async_trait;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use paddock_core::driver::{
    Capabilities, ComputeDriver, DriverError, Handle, LaunchSpec, Observed, EXIT_WONT_FIX,
};
use paddock_core::InstanceId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use tokio::process::{Child, Command};

const DRIVER: &str = "process";
const ENV_INSTANCE: &str = "PADDOCK_INSTANCE_ID";
const ENV_ROOT: &str = "PADDOCK_DRIVER_ROOT";
/// Log files are rotated (to `runtime.log.1`) past this size.
const MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;

/// How the process driver runs model servers.
#[derive(Debug, Clone)]
pub struct ProcessDriverConfig {
    /// The `paddock` executable to run as `paddock runtime`.
    pub runtime_binary: PathBuf,
    /// Where instance logs live (`<root>/instances/<id>/`); also the tag
    /// that marks processes as this driver's.
    pub root: PathBuf,
    /// The model store the runtimes read (`--data-dir` of `paddock runtime`).
    pub models_dir: PathBuf,
    /// Sequences each runtime decodes together.
    pub parallel: u32,
    /// Extra arguments for every runtime (e.g. a registry URL).
    pub extra_args: Vec<String>,
    /// Whether runtimes keep running when the control plane stops
    /// gracefully, for the next start on the same root to adopt them (a
    /// restart or upgrade without downtime). Off, a graceful stop ends them,
    /// so that no model server is left behind with no gateway in front of
    /// it (and never reclaimed if the root is removed).
    pub keep_on_shutdown: bool,
}

/// What the handle stores about a launched process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct ProcessData {
    pid: i32,
    /// Its unix socket; or, when that is None, its loopback port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    socket: Option<PathBuf>,
    #[serde(default)]
    port: u16,
    instance_id: InstanceId,
    log: PathBuf,
}

impl ProcessData {
    fn new(pid: i32, listen: Listen, instance_id: InstanceId, log: PathBuf) -> Self {
        let (socket, port) = match listen {
            Listen::Socket(path) => (Some(path), 0),
            Listen::Port(port) => (None, port),
        };
        ProcessData {
            pid,
            socket,
            port,
            instance_id,
            log,
        }
    }

    /// Where the gateway reaches the runtime.
    fn endpoint(&self) -> String {
        match &self.socket {
            Some(path) => format!("unix:{}", path.display()),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }
}

/// The longest socket path used: a unix socket address holds 107 bytes.
const MAX_SOCKET_PATH: usize = 100;

/// Where a runtime listens.
#[derive(Debug, Clone, PartialEq)]
enum Listen {
    Socket(PathBuf),
    Port(u16),
}

impl Listen {
    /// The `paddock runtime` arguments that say so.
    fn args(&self) -> Vec<std::ffi::OsString> {
        match self {
            Listen::Socket(path) => vec!["--socket".into(), path.into()],
            Listen::Port(port) => vec![
                "--host".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string().into(),
            ],
        }
    }
}

/// Runs instances as local child processes.
#[derive(Debug)]
pub struct ProcessDriver {
    config: ProcessDriverConfig,
    /// Children launched by this process (others are adopted and tracked by pid).
    children: Mutex<HashMap<InstanceId, (ProcessData, Child)>>,
    /// Serialises launches, so two concurrent launches of one instance
    /// (a wake racing the reconciler) start one process.
    launching: tokio::sync::Mutex<()>,
}

fn backend(e: impl std::fmt::Display) -> DriverError {
    DriverError::Backend(e.to_string())
}

impl ProcessDriver {
    pub fn new(config: ProcessDriverConfig) -> Self {
        ProcessDriver {
            config,
            children: Mutex::new(HashMap::new()),
            launching: tokio::sync::Mutex::new(()),
        }
    }

    fn instance_dir(&self, id: &InstanceId) -> PathBuf {
        self.config.root.join("instances").join(id.as_str())
    }

    fn data(handle: &Handle) -> Result<ProcessData, DriverError> {
        handle.data_for(DRIVER)
    }

    fn handle(data: &ProcessData) -> Handle {
        Handle::new(DRIVER, data)
    }

    /// Whether `pid` is alive and is this driver's runtime for `id`.
    fn is_ours(&self, pid: i32, id: &InstanceId) -> bool {
        proc_env(pid).is_some_and(|env| {
            env.get(ENV_INSTANCE).map(String::as_str) == Some(id.as_str())
                && env.get(ENV_ROOT).map(PathBuf::from).as_deref()
                    == Some(self.config.root.as_path())
        })
    }

    /// The runtimes this driver launched that are alive now, by instance.
    fn scan(&self) -> Vec<(InstanceId, i32)> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter_map(|pid| {
                let env = proc_env(pid)?;
                let root = env.get(ENV_ROOT)?;
                if Path::new(root) != self.config.root {
                    return None;
                }
                Some((InstanceId::new(env.get(ENV_INSTANCE)?.clone()), pid))
            })
            .collect()
    }

    /// Ends every runtime this driver launched, all at once, and reaps its
    /// own children. Its own children are ended by pid as well as found by
    /// the scan: one caught in the middle of `exec` has no readable
    /// environment for that instant, and the scan alone would miss it.
    pub async fn stop_all(&self) {
        let children: Vec<(InstanceId, Child)> = self
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(id, (_, child))| (id, child))
            .collect();
        let mut pids: Vec<(InstanceId, i32)> = self.scan();
        for (id, child) in &children {
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                if !pids.iter().any(|(_, p)| *p == pid) {
                    pids.push((id.clone(), pid));
                }
            }
        }
        let ending: Vec<_> = pids
            .into_iter()
            .map(|(id, pid)| {
                tracing::info!(instance = %id, pid, "ending runtime");
                tokio::spawn(terminate_group(pid))
            })
            .collect();
        for end in ending {
            let _ = end.await;
        }
        for (_, mut child) in children {
            let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
        }
    }
}

/// The environment of a process, if it is alive and readable.
fn proc_env(pid: i32) -> Option<HashMap<String, String>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // A zombie has exited; it only waits to be reaped.
    if stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    {
        return None;
    }
    Some(
        raw.split(|b| *b == 0)
            .filter_map(|kv| {
                let s = std::str::from_utf8(kv).ok()?;
                let (k, v) = s.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect(),
    )
}

/// SIGTERM to the process group, then SIGKILL if it lingers.
async fn terminate_group(pid: i32) {
    let pgid = Pid::from_raw(pid);
    if killpg(pgid, Signal::SIGTERM).is_err() {
        return;
    }
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if killpg(pgid, None).is_err() {
            return;
        }
        // Our own child that exited is a zombie until waited; treat as gone.
        if proc_env(pid).is_none() {
            let _ = killpg(pgid, Signal::SIGKILL);
            return;
        }
    }
    let _ = killpg(pgid, Signal::SIGKILL);
}

/// The last `n` lines of a file.
pub fn tail_lines(path: &Path, n: usize) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub((n as u64).saturating_mul(300).max(4096));
    if f.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut lines: Vec<String> = std::io::BufReader::new(f)
        .split(b'\n')
        .filter_map(|l| l.ok())
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(n);
    lines.split_off(skip)
}

fn free_port() -> Result<u16, DriverError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(backend)?;
    Ok(l.local_addr().map_err(backend)?.port())
}

fn open_log(path: &Path) -> Result<std::fs::File, DriverError> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_LOG_BYTES) {
        let _ = std::fs::rename(path, path.with_extension("log.1"));
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(backend)
}

#[async_trait]
impl ComputeDriver for ProcessDriver {
    fn name(&self) -> &'static str {
        DRIVER
    }

    fn capabilities(&self) -> Capabilities {
        // The runtime is built for CPU; GPU sizes need the ECS driver.
        Capabilities {
            gpu: false,
            spot: false,
            local: true,
        }
    }

    /// Always: a runtime reads the store in `models_dir`.
    async fn reads_host_store(&self, _model: &paddock_core::ModelId) -> bool {
        true
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<Handle, DriverError> {
        if matches!(spec.spec, paddock_core::compute::ComputeSpec::Gpu { .. }) {
            return Err(DriverError::Unsupported(
                "this paddock runs instances as local processes on a machine without a GPU; pick a CPU size".into(),
            ));
        }
        let _one_at_a_time = self.launching.lock().await;
        // Idempotent: a live runtime for this instance is returned as is.
        {
            let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((data, child)) = children.get_mut(&spec.instance_id) {
                if matches!(child.try_wait(), Ok(None)) {
                    return Ok(Self::handle(data));
                }
                children.remove(&spec.instance_id);
            }
        }
        if let Some((_, pid)) = self
            .scan()
            .into_iter()
            .find(|(id, _)| id == &spec.instance_id)
        {
            if let Some(listen) = proc_cmdline_listen(pid) {
                let data = ProcessData::new(
                    pid,
                    listen,
                    spec.instance_id.clone(),
                    self.instance_dir(&spec.instance_id).join("runtime.log"),
                );
                return Ok(Self::handle(&data));
            }
        }

        let dir = self.instance_dir(&spec.instance_id);
        make_private_dir(&dir)?;
        let log_path = dir.join("runtime.log");
        let mut log = open_log(&log_path)?;
        let socket = dir.join("runtime.sock");
        let listen = if socket.as_os_str().len() <= MAX_SOCKET_PATH {
            Listen::Socket(socket)
        } else {
            Listen::Port(free_port()?)
        };
        let listen_args = listen.args();
        let data = ProcessData::new(0, listen, spec.instance_id.clone(), log_path);
        {
            use std::io::Write;
            let _ = writeln!(
                log,
                "--- {} launching {} on {} ({} threads, ctx {}) ---",
                chrono::Utc::now().to_rfc3339(),
                spec.model_id,
                data.endpoint(),
                spec.threads,
                spec.ctx
            );
        }
        let stderr = log.try_clone().map_err(backend)?;
        let mut cmd = Command::new(&self.config.runtime_binary);
        cmd.args(spec.runtime_args(self.config.parallel))
            .args(&listen_args)
            .arg("--data-dir")
            .arg(&self.config.models_dir)
            .args(&self.config.extra_args)
            .env(ENV_INSTANCE, spec.instance_id.as_str())
            .env(ENV_ROOT, &self.config.root)
            .env_remove("PADDOCK_ADMIN_PASSWORD")
            .env_remove("PADDOCK_RUNTIME_SOCKET")
            .env_remove("PADDOCK_MODEL")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(log))
            .stderr(std::process::Stdio::from(stderr))
            .process_group(0)
            .kill_on_drop(false);
        let child = cmd.spawn().map_err(|e| {
            DriverError::LaunchFailed(format!(
                "cannot start {}: {e}",
                self.config.runtime_binary.display()
            ))
        })?;
        let pid = child
            .id()
            .ok_or_else(|| DriverError::LaunchFailed("the runtime exited at once".into()))?
            as i32;
        let data = ProcessData { pid, ..data };
        tracing::info!(instance = %spec.instance_id, pid, endpoint = %data.endpoint(), "runtime launched");
        self.children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spec.instance_id.clone(), (data.clone(), child));
        Ok(Self::handle(&data))
    }

    async fn status(&self, handle: &Handle) -> Result<Observed, DriverError> {
        let data = Self::data(handle)?;
        let exited = {
            let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
            match children.get_mut(&data.instance_id) {
                Some((d, child)) if d.pid == data.pid => match child.try_wait() {
                    Ok(None) => None,
                    Ok(Some(status)) => {
                        children.remove(&data.instance_id);
                        Some((
                            format!("the model server exited ({status})"),
                            status.code() == Some(EXIT_WONT_FIX),
                        ))
                    }
                    Err(e) => Some((format!("the model server cannot be watched: {e}"), false)),
                },
                _ if self.is_ours(data.pid, &data.instance_id) => None,
                _ => Some(("the model server is no longer running".to_owned(), false)),
            }
        };
        Ok(match exited {
            None => Observed::alive(data.endpoint()),
            Some((why, permanent)) => {
                let last = tail_lines(&data.log, 5);
                Observed::Exited {
                    reason: if last.is_empty() {
                        why
                    } else {
                        format!("{why}; last log lines:\n{}", last.join("\n"))
                    },
                    permanent,
                }
            }
        })
    }

    async fn stop(&self, handle: &Handle) -> Result<(), DriverError> {
        let data = Self::data(handle)?;
        let child = self
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&data.instance_id);
        match child {
            Some((d, mut child)) if d.pid == data.pid => {
                terminate_group(data.pid).await;
                let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            }
            _ => {
                if self.is_ours(data.pid, &data.instance_id) {
                    terminate_group(data.pid).await;
                }
            }
        }
        tracing::info!(instance = %data.instance_id, pid = data.pid, "runtime stopped");
        Ok(())
    }

    async fn logs(&self, handle: &Handle, lines: usize) -> Result<Vec<String>, DriverError> {
        let data = Self::data(handle)?;
        Ok(tail_lines(&data.log, lines))
    }

    async fn adopt(&self, known: &[(InstanceId, Handle)]) -> Result<Vec<InstanceId>, DriverError> {
        let mut alive = Vec::new();
        for (id, pid) in self.scan() {
            let expected = known
                .iter()
                .find(|(k, _)| k == &id)
                .and_then(|(_, h)| Self::data(h).ok());
            match expected {
                Some(d) if d.pid == pid => {
                    tracing::info!(instance = %id, pid, "re-adopted runtime");
                    alive.push(id);
                }
                _ => {
                    tracing::warn!(instance = %id, pid, "ending a runtime the store does not know");
                    terminate_group(pid).await;
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
                "runtimes keep running for the next start to adopt"
            );
            return Ok(Vec::new());
        }
        self.stop_all().await;
        Ok(known.iter().map(|(id, _)| id.clone()).collect())
    }
}

/// Makes `dir` (and its parents) with mode 0700 for the directory itself.
fn make_private_dir(dir: &Path) -> Result<(), DriverError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(backend)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(backend)
}

/// The `--socket` or `--port` a runtime was started with, from its
/// command line.
fn proc_cmdline_listen(pid: i32) -> Option<Listen> {
    use std::os::unix::ffi::OsStrExt;
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
    args.windows(2).find_map(|w| match w[0] {
        b"--socket" => Some(Listen::Socket(PathBuf::from(std::ffi::OsStr::from_bytes(
            w[1],
        )))),
        b"--port" => std::str::from_utf8(w[1])
            .ok()?
            .parse()
            .ok()
            .map(Listen::Port),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_reads_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, text).unwrap();
        assert_eq!(tail_lines(&p, 3), vec!["line 997", "line 998", "line 999"]);
        assert!(tail_lines(&dir.path().join("missing"), 3).is_empty());
    }

    #[test]
    fn handles_name_the_socket_or_the_port() {
        let id = InstanceId::new("i-1");
        let unix = ProcessData::new(
            7,
            Listen::Socket("/d/i-1/runtime.sock".into()),
            id.clone(),
            "/d/l".into(),
        );
        assert_eq!(unix.endpoint(), "unix:/d/i-1/runtime.sock");
        let tcp = ProcessData::new(7, Listen::Port(4242), id, "/d/l".into());
        assert_eq!(tcp.endpoint(), "http://127.0.0.1:4242");
        // Handles stored before sockets were used still read.
        let old: ProcessData = serde_json::from_value(serde_json::json!({
            "pid": 7, "port": 4242, "instance_id": "i-1", "log": "/d/l"
        }))
        .unwrap();
        assert_eq!(old, tcp);
        let kept: ProcessData =
            serde_json::from_value(serde_json::to_value(&unix).unwrap()).unwrap();
        assert_eq!(kept, unix);
    }

    /// A driver whose runtime is a shell script that only sleeps: enough
    /// to launch, observe and end processes without a model.
    fn sleeper_driver(root: &Path, keep_on_shutdown: bool) -> ProcessDriver {
        use std::os::unix::fs::PermissionsExt;
        let script = root.join("fake-runtime");
        // Written once per root: a second driver on the same root must not
        // rewrite the script under a shell that is still reading it.
        if !script.exists() {
            std::fs::write(&script, "#!/bin/sh\nexec sleep 60\n").unwrap();
        }
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        ProcessDriver::new(ProcessDriverConfig {
            runtime_binary: script,
            root: root.to_owned(),
            models_dir: root.to_owned(),
            parallel: 1,
            extra_args: Vec::new(),
            keep_on_shutdown,
        })
    }

    fn launch_spec(id: &str) -> LaunchSpec {
        LaunchSpec {
            instance_id: InstanceId::new(id),
            model_id: paddock_core::ModelId::new("gemma3:270m"),
            spec: paddock_core::compute::ComputeSpec::Cpu {
                vcpu_milli: 1000,
                memory_mb: 2048,
                spot: false,
            },
            threads: 1,
            ctx: 2048,
        }
    }

    async fn alive(driver: &ProcessDriver, h: &Handle) -> bool {
        matches!(driver.status(h).await.unwrap(), Observed::Alive { .. })
    }

    /// Whether `driver` sees the runtime alive within 5 s. Just after a
    /// launch (the fake runtime is a shell that execs `sleep`), the process
    /// can be between two execs, when its environment, by which a driver
    /// that did not launch it knows it, cannot be read for an instant.
    async fn comes_alive(driver: &ProcessDriver, h: &Handle) -> bool {
        for _ in 0..100 {
            if alive(driver, h).await {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    }

    // One test for both settings: a test that writes and runs a script while
    // another forks can fail with "text file busy".
    #[tokio::test]
    async fn a_graceful_shutdown_ends_runtimes_unless_they_are_kept() {
        let dir = tempfile::tempdir().unwrap();

        // Off (the default): every runtime under the root ends, also one
        // the store does not know, and the known ones are reported.
        let root = dir.path().join("ends");
        std::fs::create_dir_all(&root).unwrap();
        let driver = sleeper_driver(&root, false);
        let known = driver.launch(&launch_spec("i-known")).await.unwrap();
        let stray = driver.launch(&launch_spec("i-stray")).await.unwrap();
        assert!(comes_alive(&driver, &known).await && comes_alive(&driver, &stray).await);
        let ended = driver
            .shutdown(&[(InstanceId::new("i-known"), known.clone())])
            .await
            .unwrap();
        assert_eq!(ended, vec![InstanceId::new("i-known")]);
        assert!(
            driver.scan().is_empty(),
            "runtimes left: {:?}",
            driver.scan()
        );
        assert!(!alive(&driver, &known).await);
        assert!(!alive(&driver, &stray).await);

        // On: they run on, for a later driver on the same root to adopt.
        let root = dir.path().join("kept");
        std::fs::create_dir_all(&root).unwrap();
        let driver = sleeper_driver(&root, true);
        let h = driver.launch(&launch_spec("i-kept")).await.unwrap();
        let known = [(InstanceId::new("i-kept"), h.clone())];
        assert!(driver.shutdown(&known).await.unwrap().is_empty());
        let next = sleeper_driver(&root, true);
        assert!(comes_alive(&next, &h).await);
        assert_eq!(
            next.adopt(&known).await.unwrap(),
            vec![InstanceId::new("i-kept")]
        );
        next.stop(&h).await.unwrap();
        assert!(next.scan().is_empty());
        driver.stop_all().await;
    }
}
