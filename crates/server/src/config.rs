//! Server configuration in sections: defaults, then a TOML file, then
//! `PADDOCK_*` environment variables, then command-line flags (applied by
//! the binary), and then one [`Config::validate`] that refuses bad values
//! at start with a message naming the key.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! data_dir = "/var/lib/paddock"
//! public_url = "https://paddock.example.com"
//!
//! [store]
//! kind = "sqlite"
//!
//! [identity]
//! kind = "builtin"
//! admin_email = "admin@example.com"
//!
//! [driver]
//! kind = "process"           # or "docker"
//! runtime_parallel = 4
//!
//! [gateway]
//! client_timeout_secs = 60
//!
//! [reconciler]
//! interval_ms = 1000
//! ```
//!
//! Environment variables are `PADDOCK_<SECTION>__<KEY>`
//! (`PADDOCK_GATEWAY__CLIENT_TIMEOUT_SECS=30`), or `PADDOCK_<KEY>` for the
//! top-level keys (`PADDOCK_LISTEN`, `PADDOCK_DATA_DIR`,
//! `PADDOCK_PUBLIC_URL`). The flat names of earlier releases
//! (`PADDOCK_ADMIN_PASSWORD`, `PADDOCK_CLIENT_TIMEOUT_SECS`, ...; in a
//! file, `allow_signup = false` outside any section) still work for this
//! release, each with a warning naming its new name
//! ([`Config::deprecated_env`]).
//!
//! Owns [`Config`] and [`Secret`]. Secrets never show in `Debug` output or
//! in `--print-config`; they print as `****`.

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A string that must never be logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("****")
    }
}

/// A secret from the environment may look like a number (`PADDOCK_..._PASSWORD=12345678`):
/// it is taken as the text it was written as.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            S(String),
            U(u64),
            I(i64),
            F(f64),
            B(bool),
        }
        Ok(Secret(match Text::deserialize(d)? {
            Text::S(s) => s,
            Text::U(n) => n.to_string(),
            Text::I(n) => n.to_string(),
            Text::F(n) => n.to_string(),
            Text::B(b) => b.to_string(),
        }))
    }
}

/// Everything `paddock serve` can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Where the database, secrets, models and logs live.
    pub data_dir: PathBuf,
    /// The URL users reach paddock at; endpoints shown to users start with it.
    /// Defaults to `http://<listen>`.
    pub public_url: Option<String>,
    pub store: StoreConfig,
    pub identity: IdentityConfig,
    pub driver: DriverConfig,
    pub gateway: GatewayConfig,
    pub reconciler: ReconcilerConfig,
    /// The flat names of earlier releases that were used (environment
    /// variables, or keys of the file), each with its new name, for a
    /// warning at start.
    #[serde(skip)]
    pub deprecated_env: Vec<(String, String)>,
}

/// `[store]`: where records live.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// DynamoDB: the prefix of every table's name (`paddock-users` ...).
    pub table_prefix: String,
    /// DynamoDB: create missing tables at start (development, tests);
    /// otherwise they must exist (the CloudFormation template makes them).
    pub create_tables: bool,
    /// DynamoDB: days raw usage records are kept (their TTL); the day
    /// totals are kept.
    pub usage_retention_days: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Sqlite,
            table_prefix: "paddock-".into(),
            create_tables: false,
            usage_retention_days: 90,
        }
    }
}

/// The store backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One SQLite file, `<data_dir>/paddock.db`.
    #[default]
    Sqlite,
    /// Amazon DynamoDB (region and credentials from the standard AWS
    /// chain; `AWS_ENDPOINT_URL` for an emulator): no state on this disk.
    Dynamodb,
}

/// `[identity]`: who may sign in, and how sessions are issued.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    pub kind: IdentityKind,
    /// The first admin's email, used when no admin exists.
    pub admin_email: String,
    /// The first admin's password; when absent one is generated, printed
    /// once, and must be changed at first login.
    pub admin_password: Option<Secret>,
    /// Whether anyone may sign up (otherwise only admins create users).
    pub allow_signup: bool,
    /// Lifetime of access tokens (JWT), seconds.
    pub access_token_ttl_secs: u64,
    /// Lifetime of refresh tokens, seconds; also the web session's.
    pub refresh_token_ttl_secs: u64,
    /// Lifetime of email confirmation codes, seconds.
    pub confirmation_ttl_secs: u64,
    /// Failed logins for one email before it is throttled.
    pub login_max_failures: u32,
    /// First lock-out after too many failures, seconds (doubles each time).
    pub login_lockout_secs: u64,
    /// Cognito: the user pool's id (`us-east-1_AbCdEf123`).
    pub user_pool_id: Option<String>,
    /// Cognito: the app client's id.
    pub client_id: Option<String>,
    /// Cognito: the app client's secret, when it has one.
    pub client_secret: Option<Secret>,
    /// Cognito: the group whose members are admins.
    pub admin_group: String,
    /// Built-in identity: the key its tokens are signed with, shared by
    /// every replica (on AWS, from Secrets Manager). When absent, a key is
    /// made once in `<data_dir>/secrets/jwt.key`.
    pub signing_key: Option<Secret>,
}

/// The identity backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityKind {
    /// Accounts kept by paddock: argon2id passwords, its own signed JWTs.
    #[default]
    Builtin,
    /// An Amazon Cognito user pool (region and credentials from the
    /// standard AWS chain): paddock keeps no passwords.
    Cognito,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            kind: IdentityKind::Builtin,
            admin_email: "admin@localhost".into(),
            admin_password: None,
            allow_signup: true,
            access_token_ttl_secs: 3600,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            confirmation_ttl_secs: 24 * 3600,
            login_max_failures: 5,
            user_pool_id: None,
            client_id: None,
            client_secret: None,
            admin_group: "Administrators".into(),
            login_lockout_secs: 30,
            signing_key: None,
        }
    }
}

/// `[driver]`: where instances run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriverConfig {
    pub kind: DriverKind,
    /// The `paddock` executable the process driver runs as `paddock runtime`
    /// [default: this executable].
    pub runtime_binary: Option<PathBuf>,
    /// The model store instances load from [default: `<data_dir>`, where
    /// `paddock models import` and `paddock pull` put models].
    pub models_dir: Option<PathBuf>,
    /// The Ollama registry models missing from the store are pulled from
    /// (by the control plane before an instance launches, or by an ECS
    /// task's model server as it starts).
    pub registry: String,
    /// Sequences each instance's runtime decodes together.
    pub runtime_parallel: u32,
    /// Whether instances' model servers keep running when `paddock serve`
    /// stops gracefully (Ctrl-C, SIGTERM), for the next start on the same
    /// data directory to adopt them: a restart or upgrade without downtime.
    /// Off (the default), a graceful stop ends them and records their
    /// instances as PENDING ("paddock stopped"), and the next start
    /// launches them again. A crash leaves them running either way, for the
    /// next start to adopt.
    pub keep_instances_on_shutdown: bool,
    /// Price per vCPU-hour charged for CPU instances this driver runs
    /// (0 by default: your own hardware). GPU sizes use their list price.
    pub local_cpu_hour_usd: f64,
    /// The paddock image the Docker driver runs [default:
    /// `paddock:<version>`, what `paddock image build` makes].
    pub image: Option<String>,
    /// Whether the Docker driver runs a model's image
    /// (`paddock-model:<model>-<tag>`, weights baked in) when the engine
    /// has one, instead of the paddock image with the store mounted.
    pub model_images: bool,
    /// How the gateway reaches a Docker container's model server.
    pub docker_reach: DockerReach,
    /// ECS: the cluster instances run in (name or ARN).
    pub cluster: Option<String>,
    /// ECS: the subnets of the tasks (a list, or one comma-separated string).
    #[serde(deserialize_with = "list_or_commas")]
    pub subnets: Vec<String>,
    /// ECS: the tasks' security groups (a list, or comma-separated).
    #[serde(deserialize_with = "list_or_commas")]
    pub security_groups: Vec<String>,
    /// ECS: give tasks public IPs (subnets without a NAT gateway only).
    pub assign_public_ip: bool,
    /// ECS: the role ECS pulls images and writes logs with.
    pub execution_role_arn: Option<String>,
    /// ECS: the role model servers run as (they need none by default).
    pub task_role_arn: Option<String>,
    /// ECS: the CloudWatch Logs group of the tasks' output.
    pub log_group: Option<String>,
    /// ECS: a repository of model images (`<repository>:<model tag>`,
    /// weights baked in); without it tasks run `image` and pull the model
    /// at start.
    pub model_image_repository: Option<String>,
    /// ECS: this paddock's deployment id (`startedBy`, the tasks' and task
    /// definitions' `paddock:deployment` tag, their families' prefix).
    pub deployment: String,
    /// ECS: the EC2 GPU capacity provider (GPU sizes need it).
    pub gpu_capacity_provider: Option<String>,
    /// ECS: its spot twin (spot GPU sizes need it).
    pub gpu_spot_capacity_provider: Option<String>,
}

/// A list given as a list, or as one comma-separated string (how an
/// environment variable carries it).
fn list_or_commas<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum L {
        List(Vec<String>),
        One(String),
    }
    Ok(match L::deserialize(d)? {
        L::List(v) => v,
        L::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect(),
    }
    .into_iter()
    .filter(|x| !x.trim().is_empty())
    .collect())
}

/// How the gateway reaches a container's model server (`[driver] docker_reach`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DockerReach {
    /// A unix socket for a local engine, a published port for a remote one.
    #[default]
    Auto,
    /// A unix socket in the bind-mounted instance directory.
    Socket,
    /// A published port (on 127.0.0.1 for a local engine).
    Port,
}

/// The compute drivers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// Each instance a `paddock runtime` child process of this server.
    #[default]
    Process,
    /// Each instance a container on a Docker Engine (`DOCKER_HOST`).
    Docker,
    /// Each instance an Amazon ECS task (Fargate for CPU, EC2 capacity for
    /// GPU, spot or on-demand).
    Ecs,
}

impl std::str::FromStr for DriverKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "process" => Ok(DriverKind::Process),
            "docker" => Ok(DriverKind::Docker),
            "ecs" => Ok(DriverKind::Ecs),
            _ => Err(format!(
                "unknown driver {s:?}: choose process, docker or ecs"
            )),
        }
    }
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            kind: DriverKind::Process,
            runtime_binary: None,
            models_dir: None,
            registry: "https://registry.ollama.ai".into(),
            runtime_parallel: 4,
            keep_instances_on_shutdown: false,
            local_cpu_hour_usd: 0.0,
            image: None,
            model_images: true,
            docker_reach: DockerReach::Auto,
            cluster: None,
            subnets: Vec::new(),
            security_groups: Vec::new(),
            assign_public_ip: false,
            execution_role_arn: None,
            task_role_arn: None,
            log_group: None,
            model_image_repository: None,
            deployment: "paddock".into(),
            gpu_capacity_provider: None,
            gpu_spot_capacity_provider: None,
        }
    }
}

/// `[gateway]`: the connections at the door and the queue before each
/// instance. The limits on clients hold for the management API too: both
/// are served on the same connections.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Largest request body accepted, bytes.
    pub body_limit_bytes: usize,
    /// How long a client connection may take to send a request (head and
    /// body), counted from when paddock starts waiting for it, including
    /// the wait between requests on a kept-alive connection, seconds. A
    /// connection that takes longer is closed.
    pub client_timeout_secs: u64,
    /// Client connections served at once; further ones wait in the
    /// listen backlog until one closes [default: half the open-file limit
    /// less 256, since a proxied request also holds a connection to its
    /// model server; the limit is first raised to its hard maximum].
    pub max_connections: Option<usize>,
    /// Gateway requests that may wait per instance for a free sequence of
    /// its model server; past that they are answered 503 at once.
    pub queue_per_instance: usize,
    /// How long a gateway request waits for a free sequence before it is
    /// answered 503 with Retry-After, seconds.
    pub queue_timeout_secs: u64,
    /// When a user has several RUNNING instances of a model, send a request
    /// to the one that last served its conversation's leading messages
    /// (its prefix cache holds them) unless that one is much busier than
    /// the least busy; `false`: always the least busy.
    pub cache_affinity: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            body_limit_bytes: 2 * 1024 * 1024,
            client_timeout_secs: 60,
            max_connections: None,
            queue_per_instance: 512,
            queue_timeout_secs: 60,
            cache_affinity: true,
        }
    }
}

/// `[reconciler]`: the loop that makes what runs follow what users asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcilerConfig {
    /// How often every instance is checked, milliseconds.
    pub interval_ms: u64,
    /// How long an instance may take to answer its health probe before it
    /// is FAILED, seconds.
    pub start_timeout_secs: u64,
    /// How long a request to a sleeping instance waits for it to wake
    /// before 503 with Retry-After, seconds.
    pub wake_timeout_secs: u64,
    /// Restarts of a failed instance before paddock gives up.
    pub max_restarts: u32,
    /// Wait before the first restart, seconds (doubles each time).
    pub restart_backoff_secs: u64,
    /// How long the replica that reconciles holds its lease in the store
    /// without renewing it, seconds: when it dies, another replica takes
    /// over within this time.
    pub lease_secs: u64,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        ReconcilerConfig {
            interval_ms: 1000,
            start_timeout_secs: 120,
            wake_timeout_secs: 120,
            max_restarts: 3,
            restart_backoff_secs: 2,
            lease_secs: 10,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            data_dir: default_data_dir(),
            public_url: None,
            store: StoreConfig::default(),
            identity: IdentityConfig::default(),
            driver: DriverConfig::default(),
            gateway: GatewayConfig::default(),
            reconciler: ReconcilerConfig::default(),
            deprecated_env: Vec::new(),
        }
    }
}

/// `$XDG_DATA_HOME/paddock` (e.g. `~/.local/share/paddock`), or `./paddock-data`.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("paddock"))
        .unwrap_or_else(|| PathBuf::from("paddock-data"))
}

/// Why the configuration could not be loaded or was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file or variable that is not what the key takes; figment's message
    /// names the key and where it came from.
    #[error("configuration: {0}")]
    Parse(String),
    /// A value of the right type that paddock cannot run with.
    #[error("configuration: {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The sections, as they appear in `PADDOCK_<SECTION>__<KEY>`.
const SECTIONS: [&str; 5] = ["store", "identity", "driver", "gateway", "reconciler"];
/// The top-level keys.
const TOP_LEVEL: [&str; 3] = ["listen", "data_dir", "public_url"];
/// The flat names of earlier releases (after `PADDOCK_`, lower-cased) and
/// the key each now is.
const FLAT_NAMES: [(&str, &str); 25] = [
    ("admin_email", "identity.admin_email"),
    ("admin_password", "identity.admin_password"),
    ("allow_signup", "identity.allow_signup"),
    ("access_token_ttl_secs", "identity.access_token_ttl_secs"),
    ("refresh_token_ttl_secs", "identity.refresh_token_ttl_secs"),
    ("confirmation_ttl_secs", "identity.confirmation_ttl_secs"),
    ("login_max_failures", "identity.login_max_failures"),
    ("login_lockout_secs", "identity.login_lockout_secs"),
    ("runtime_binary", "driver.runtime_binary"),
    ("models_dir", "driver.models_dir"),
    ("runtime_parallel", "driver.runtime_parallel"),
    (
        "keep_instances_on_shutdown",
        "driver.keep_instances_on_shutdown",
    ),
    ("local_cpu_hour_usd", "driver.local_cpu_hour_usd"),
    ("body_limit_bytes", "gateway.body_limit_bytes"),
    ("client_timeout_secs", "gateway.client_timeout_secs"),
    ("max_connections", "gateway.max_connections"),
    ("queue_per_instance", "gateway.queue_per_instance"),
    ("queue_timeout_secs", "gateway.queue_timeout_secs"),
    ("reconcile_interval_ms", "reconciler.interval_ms"),
    ("start_timeout_secs", "reconciler.start_timeout_secs"),
    ("wake_timeout_secs", "reconciler.wake_timeout_secs"),
    ("max_restarts", "reconciler.max_restarts"),
    ("restart_backoff_secs", "reconciler.restart_backoff_secs"),
    ("listen", "listen"),
    ("data_dir", "data_dir"),
];

/// The configuration key an environment variable (after `PADDOCK_`, in any
/// case) sets, and whether it is a flat name of an earlier release; `None`
/// for variables that are not configuration (`PADDOCK_LOG`, the CLI's
/// `PADDOCK_URL`, ...), which are left alone.
fn env_key(var: &str) -> Option<(String, bool)> {
    let var = var.to_ascii_lowercase();
    if let Some((section, key)) = var.split_once("__") {
        return SECTIONS
            .contains(&section)
            .then(|| (format!("{section}.{key}"), false));
    }
    if TOP_LEVEL.contains(&var.as_str()) {
        return Some((var, false));
    }
    FLAT_NAMES
        .iter()
        .find(|(old, _)| *old == var)
        .map(|(_, new)| ((*new).to_owned(), true))
}

/// A TOML file with the flat keys of the previous release moved into
/// their sections (`allow_signup = false` becomes `[identity]
/// allow_signup = false`), and the keys moved, each with its new name.
/// A key set both ways keeps its sectioned value.
fn sectioned_toml(text: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut moved = Vec::new();
    for (old, new) in FLAT_NAMES {
        let Some((section, key)) = new.split_once('.') else {
            continue;
        };
        let Some(value) = table.remove(old) else {
            continue;
        };
        let entry = table
            .entry(section.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = entry {
            t.entry(key.to_owned()).or_insert(value);
        }
        moved.push((old.to_owned(), new.to_owned()));
    }
    let text = toml::to_string(&table).map_err(|e| e.to_string())?;
    Ok((text, moved))
}

/// `section.key` as its environment variable.
fn env_name(key: &str) -> String {
    let name = match key.split_once('.') {
        Some((section, k)) => format!("{section}__{k}"),
        None => key.to_owned(),
    };
    format!("PADDOCK_{}", name.to_ascii_uppercase())
}

impl Config {
    /// Defaults, then `file` (if given, it must exist; if not given,
    /// `./paddock.toml` is read when present), then the environment; the
    /// result is not validated yet (flags come next: see [`Config::validate`]).
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let file = match file {
            Some(p) => {
                std::fs::metadata(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                Some(p.to_owned())
            }
            None => Some(PathBuf::from("paddock.toml")).filter(|p| p.exists()),
        };
        let mut figment = Figment::new();
        let mut deprecated = Vec::new();
        if let Some(f) = &file {
            let text = std::fs::read_to_string(f).map_err(|source| ConfigError::Read {
                path: f.clone(),
                source,
            })?;
            let (text, moved) = sectioned_toml(&text)
                .map_err(|e| ConfigError::Parse(format!("{}: {e}", f.display())))?;
            deprecated.extend(
                moved
                    .into_iter()
                    .map(|(old, new)| (format!("{old} in {}", f.display()), new)),
            );
            figment = figment.merge(Toml::string(&text));
        }
        let env = Env::prefixed("PADDOCK_")
            .filter_map(|k| env_key(k.as_str()).map(|(key, _)| key.into()))
            .global();
        let mut config: Config = figment
            .merge(env)
            .extract()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        deprecated.extend(std::env::vars().filter_map(|(name, _)| {
            let rest = name.strip_prefix("PADDOCK_")?;
            let (key, old) = env_key(rest)?;
            (old && key.contains('.')).then(|| (name.clone(), env_name(&key)))
        }));
        config.deprecated_env = deprecated;
        Ok(config)
    }

    /// Refuses values paddock cannot run with, naming the key; called once
    /// at start, after flags, so nothing downstream clamps or guesses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn check(ok: bool, key: &'static str, message: &str) -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    key,
                    message: message.to_owned(),
                })
            }
        }
        if let Some(url) = &self.public_url {
            check(
                url.starts_with("http://") || url.starts_with("https://"),
                "public_url",
                "must start with http:// or https://",
            )?;
        }
        let id = &self.identity;
        let email = id.admin_email.trim();
        check(
            email.len() >= 3 && email.contains('@') && !email.contains(char::is_whitespace),
            "identity.admin_email",
            "must be an email address like admin@example.com",
        )?;
        check(
            id.access_token_ttl_secs >= 60,
            "identity.access_token_ttl_secs",
            "must be at least 60",
        )?;
        check(
            id.refresh_token_ttl_secs >= id.access_token_ttl_secs,
            "identity.refresh_token_ttl_secs",
            "must be at least identity.access_token_ttl_secs",
        )?;
        check(
            id.confirmation_ttl_secs >= 60,
            "identity.confirmation_ttl_secs",
            "must be at least 60",
        )?;
        check(
            id.login_max_failures >= 1,
            "identity.login_max_failures",
            "must be at least 1",
        )?;
        if id.kind == IdentityKind::Cognito {
            let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
            check(
                set(&id.user_pool_id),
                "identity.user_pool_id",
                "must be set for the cognito identity (the user pool's id, like us-east-1_AbCdEf123)",
            )?;
            check(
                set(&id.client_id),
                "identity.client_id",
                "must be set for the cognito identity (the app client's id)",
            )?;
            check(
                !id.admin_group.trim().is_empty(),
                "identity.admin_group",
                "must name a group",
            )?;
        }
        let st = &self.store;
        check(
            !st.table_prefix.is_empty()
                && st.table_prefix.len() <= 200
                && st
                    .table_prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)),
            "store.table_prefix",
            "must be 1 to 200 of the characters a DynamoDB table name allows (a-z A-Z 0-9 _ - .)",
        )?;
        check(
            st.usage_retention_days >= 1,
            "store.usage_retention_days",
            "must be at least 1",
        )?;
        let d = &self.driver;
        check(
            (d.registry.starts_with("http://") || d.registry.starts_with("https://"))
                && d.registry.len() > "https://".len()
                && !d.registry.contains(char::is_whitespace),
            "driver.registry",
            "must be the registry's base URL, like https://registry.ollama.ai",
        )?;
        check(
            (1..=256).contains(&d.runtime_parallel),
            "driver.runtime_parallel",
            "must be 1 to 256",
        )?;
        check(
            d.local_cpu_hour_usd.is_finite() && d.local_cpu_hour_usd >= 0.0,
            "driver.local_cpu_hour_usd",
            "must be a price of 0 or more",
        )?;
        if let Some(image) = &d.image {
            check(
                !image.trim().is_empty() && !image.contains(char::is_whitespace),
                "driver.image",
                "must be an image reference like paddock:0.1.0",
            )?;
        }
        if d.kind == DriverKind::Ecs {
            let set = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
            check(
                set(&d.cluster),
                "driver.cluster",
                "must name the ECS cluster for the ecs driver",
            )?;
            check(
                !d.subnets.is_empty(),
                "driver.subnets",
                "must list the subnets ECS tasks run in (comma-separated in PADDOCK_DRIVER__SUBNETS)",
            )?;
            check(
                set(&d.log_group),
                "driver.log_group",
                "must name the CloudWatch Logs group of the tasks' output",
            )?;
            check(
                set(&d.image) || set(&d.model_image_repository),
                "driver.image",
                "the ecs driver needs an image in a registry ECS can pull (the paddock image pushed to ECR), or driver.model_image_repository",
            )?;
            check(
                !d.deployment.is_empty()
                    && d.deployment.len() <= 64
                    && d.deployment
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "driver.deployment",
                "must be 1 to 64 letters, digits, - or _",
            )?;
        }
        let g = &self.gateway;
        check(
            g.body_limit_bytes >= 1024,
            "gateway.body_limit_bytes",
            "must be at least 1024",
        )?;
        check(
            g.client_timeout_secs >= 1,
            "gateway.client_timeout_secs",
            "must be at least 1",
        )?;
        check(
            g.max_connections != Some(0),
            "gateway.max_connections",
            "must be at least 1 (leave it out for the default)",
        )?;
        check(
            u32::try_from(g.queue_per_instance).is_ok(),
            "gateway.queue_per_instance",
            "must be at most 4294967295",
        )?;
        let r = &self.reconciler;
        check(
            r.interval_ms >= 10,
            "reconciler.interval_ms",
            "must be at least 10",
        )?;
        check(
            r.start_timeout_secs >= 1,
            "reconciler.start_timeout_secs",
            "must be at least 1",
        )?;
        check(
            r.wake_timeout_secs >= 1,
            "reconciler.wake_timeout_secs",
            "must be at least 1",
        )?;
        check(
            (1..=3600).contains(&r.lease_secs),
            "reconciler.lease_secs",
            "must be 1 to 3600",
        )?;
        check(
            r.restart_backoff_secs <= 3600,
            "reconciler.restart_backoff_secs",
            "must be at most 3600",
        )?;
        Ok(())
    }

    /// The model store instances load from.
    pub fn models_dir(&self) -> PathBuf {
        self.driver
            .models_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.clone())
    }

    /// The base URL users reach this server at, without a trailing slash.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_toml_masked(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

#[cfg(test)]
// figment's `Jail` closures return its own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn env_overrides_and_secrets_are_masked() {
        Jail::expect_with(|jail| {
            jail.set_env("PADDOCK_LISTEN", "127.0.0.1:9999");
            jail.set_env("PADDOCK_IDENTITY__ADMIN_PASSWORD", "12345678");
            jail.set_env("PADDOCK_DRIVER__KEEP_INSTANCES_ON_SHUTDOWN", "true");
            jail.set_env("PADDOCK_LOG", "debug");
            let c = Config::load(None).expect("loads");
            assert_eq!(c.listen.port(), 9999);
            assert!(c.driver.keep_instances_on_shutdown);
            assert_eq!(
                c.identity.admin_password.as_ref().unwrap().expose(),
                "12345678"
            );
            assert!(!format!("{c:?}").contains("12345678"));
            assert!(!c.to_toml_masked().contains("12345678"));
            assert!(c.to_toml_masked().contains("****"));
            assert!(c.deprecated_env.is_empty());
            Ok(())
        });
    }

    #[test]
    fn flat_names_still_work_with_a_warning() {
        Jail::expect_with(|jail| {
            jail.set_env("PADDOCK_ADMIN_PASSWORD", "Sup3r-secret!");
            jail.set_env("PADDOCK_CLIENT_TIMEOUT_SECS", "7");
            jail.set_env("PADDOCK_RECONCILE_INTERVAL_MS", "250");
            let c = Config::load(None).expect("loads");
            assert_eq!(
                c.identity.admin_password.as_ref().unwrap().expose(),
                "Sup3r-secret!"
            );
            assert_eq!(c.gateway.client_timeout_secs, 7);
            assert_eq!(c.reconciler.interval_ms, 250);
            let mut names: Vec<_> = c.deprecated_env.iter().map(|(_, n)| n.as_str()).collect();
            names.sort_unstable();
            assert_eq!(
                names,
                [
                    "PADDOCK_GATEWAY__CLIENT_TIMEOUT_SECS",
                    "PADDOCK_IDENTITY__ADMIN_PASSWORD",
                    "PADDOCK_RECONCILER__INTERVAL_MS"
                ]
            );
            Ok(())
        });
    }

    #[test]
    fn bad_env_value_is_named() {
        Jail::expect_with(|jail| {
            jail.set_env("PADDOCK_LISTEN", "nope");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.to_lowercase().contains("listen"), "{e}");
            assert!(e.contains("PADDOCK_"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn toml_file_is_read_in_sections() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "p.toml",
                "listen = \"127.0.0.1:1234\"\n[identity]\nallow_signup = false\n[gateway]\nqueue_per_instance = 3\n",
            )?;
            let c = Config::load(Some(Path::new("p.toml"))).expect("loads");
            assert_eq!(c.listen.port(), 1234);
            assert!(!c.identity.allow_signup);
            assert_eq!(c.gateway.queue_per_instance, 3);
            jail.create_file("bad.toml", "nonsense = 1\n")?;
            let e = Config::load(Some(Path::new("bad.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("nonsense"), "{e}");
            // The previous release's flat file still loads, with warnings.
            jail.create_file(
                "flat.toml",
                "allow_signup = false\nreconcile_interval_ms = 300\n",
            )?;
            let c = Config::load(Some(Path::new("flat.toml"))).expect("flat file");
            assert!(!c.identity.allow_signup);
            assert_eq!(c.reconciler.interval_ms, 300);
            let news: Vec<_> = c.deprecated_env.iter().map(|(_, n)| n.as_str()).collect();
            assert!(news.contains(&"identity.allow_signup"), "{news:?}");
            assert!(Config::load(Some(Path::new("missing.toml"))).is_err());
            Ok(())
        });
    }

    #[test]
    fn validate_names_the_key() {
        let mut c = Config::default();
        c.validate().expect("defaults are valid");
        c.reconciler.interval_ms = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("reconciler.interval_ms"), "{e}");
        let mut c = Config::default();
        c.driver.runtime_parallel = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("driver.runtime_parallel"));
        let c = Config {
            public_url: Some("paddock.example.com".into()),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("public_url"));
        let mut c = Config::default();
        c.identity.admin_email = "nobody".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("identity.admin_email"));
    }
}
