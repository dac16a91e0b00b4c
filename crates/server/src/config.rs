//! Server configuration: defaults, then a TOML file, then `PADDOCK_*`
//! environment variables, then command-line flags (applied by the binary).
//!
//! Owns [`Config`] and [`Secret`]. Secrets never show in `Debug` output or
//! in `--print-config`; they print as `****`.

use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A string that must never be logged.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
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
    /// The first admin's email, used when no admin exists.
    pub admin_email: String,
    /// The first admin's password; when absent one is generated, printed
    /// once, and must be changed at first login.
    pub admin_password: Option<Secret>,
    /// Lifetime of access tokens (JWT), seconds.
    pub access_token_ttl_secs: u64,
    /// Lifetime of refresh tokens, seconds.
    pub refresh_token_ttl_secs: u64,
    /// Lifetime of email confirmation codes, seconds.
    pub confirmation_ttl_secs: u64,
    /// Failed logins for one email before it is throttled.
    pub login_max_failures: u32,
    /// First lock-out after too many failures, seconds (doubles each time).
    pub login_lockout_secs: u64,
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
    /// Price per vCPU-hour charged for CPU instances on the local machine
    /// (0 by default: your own hardware). GPU sizes use their list price.
    pub local_cpu_hour_usd: f64,
    /// Whether anyone may sign up (otherwise only admins create users).
    pub allow_signup: bool,
    /// The `paddock` executable the process driver runs as `paddock runtime`
    /// [default: this executable].
    pub runtime_binary: Option<PathBuf>,
    /// The model store instances load from [default: `<data_dir>`, where
    /// `paddock models import` and `paddock pull` put models].
    pub models_dir: Option<PathBuf>,
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
    /// How often the reconciler checks every instance, milliseconds.
    pub reconcile_interval_ms: u64,
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            data_dir: default_data_dir(),
            public_url: None,
            admin_email: "admin@localhost".into(),
            admin_password: None,
            access_token_ttl_secs: 3600,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            confirmation_ttl_secs: 24 * 3600,
            login_max_failures: 5,
            login_lockout_secs: 30,
            body_limit_bytes: 2 * 1024 * 1024,
            client_timeout_secs: 60,
            max_connections: None,
            queue_per_instance: 512,
            queue_timeout_secs: 60,
            local_cpu_hour_usd: 0.0,
            allow_signup: true,
            runtime_binary: None,
            models_dir: None,
            runtime_parallel: 4,
            keep_instances_on_shutdown: false,
            reconcile_interval_ms: 1000,
            start_timeout_secs: 120,
            wake_timeout_secs: 120,
            max_restarts: 3,
            restart_backoff_secs: 2,
        }
    }
}

/// `$XDG_DATA_HOME/paddock` (e.g. `~/.local/share/paddock`), or `./paddock-data`.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("paddock"))
        .unwrap_or_else(|| PathBuf::from("paddock-data"))
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
}

impl Config {
    /// Defaults, then `file` (if given, it must exist; if not given,
    /// `./paddock.toml` is read when present), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(p) => Self::from_file(p)?,
            None if Path::new("paddock.toml").exists() => {
                Self::from_file(Path::new("paddock.toml"))?
            }
            None => Config::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Applies `PADDOCK_<FIELD>` variables (upper-cased field names).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ConfigError>
        where
            T::Err: fmt::Display,
        {
            v.parse().map_err(|e: T::Err| ConfigError::Env {
                name: name.to_owned(),
                message: e.to_string(),
            })
        }
        macro_rules! env {
            ($field:ident, $conv:expr) => {{
                let name = concat!("PADDOCK_", stringify!($field)).to_uppercase();
                if let Some(v) = get(&name) {
                    #[allow(clippy::redundant_closure_call)]
                    {
                        self.$field = ($conv)(&name, v.as_str())?;
                    }
                }
            }};
        }
        env!(listen, parse);
        env!(data_dir, |_: &str, v: &str| Ok::<_, ConfigError>(
            PathBuf::from(v)
        ));
        env!(public_url, |_: &str, v: &str| Ok::<_, ConfigError>(Some(
            v.to_owned()
        )));
        env!(admin_email, |_: &str, v: &str| Ok::<_, ConfigError>(
            v.to_owned()
        ));
        env!(admin_password, |_: &str, v: &str| Ok::<_, ConfigError>(
            Some(Secret::new(v))
        ));
        env!(access_token_ttl_secs, parse);
        env!(refresh_token_ttl_secs, parse);
        env!(confirmation_ttl_secs, parse);
        env!(login_max_failures, parse);
        env!(login_lockout_secs, parse);
        env!(body_limit_bytes, parse);
        env!(client_timeout_secs, parse);
        env!(max_connections, |name: &str, v: &str| parse(name, v)
            .map(Some));
        env!(queue_per_instance, parse);
        env!(queue_timeout_secs, parse);
        env!(local_cpu_hour_usd, parse);
        env!(allow_signup, parse);
        env!(runtime_binary, |_: &str, v: &str| Ok::<_, ConfigError>(
            Some(PathBuf::from(v))
        ));
        env!(models_dir, |_: &str, v: &str| Ok::<_, ConfigError>(Some(
            PathBuf::from(v)
        )));
        env!(runtime_parallel, parse);
        env!(keep_instances_on_shutdown, parse);
        env!(reconcile_interval_ms, parse);
        env!(start_timeout_secs, parse);
        env!(wake_timeout_secs, parse);
        env!(max_restarts, parse);
        env!(restart_backoff_secs, parse);
        Ok(())
    }

    /// [`Config::client_timeout_secs`] as a duration (at least a second).
    pub fn client_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.client_timeout_secs.max(1))
    }

    /// [`Config::queue_timeout_secs`] as a duration.
    pub fn queue_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.queue_timeout_secs)
    }

    /// The model store instances load from.
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir
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
mod tests {
    use super::*;

    #[test]
    fn env_overrides_and_secrets_are_masked() {
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "PADDOCK_LISTEN" => Some("127.0.0.1:9999".into()),
            "PADDOCK_ADMIN_PASSWORD" => Some("Sup3r-secret!".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert!(!c.keep_instances_on_shutdown);
        c.apply_env(|k| (k == "PADDOCK_KEEP_INSTANCES_ON_SHUTDOWN").then(|| "true".into()))
            .unwrap();
        assert!(c.keep_instances_on_shutdown);
        assert_eq!(c.admin_password.as_ref().unwrap().expose(), "Sup3r-secret!");
        assert!(!format!("{c:?}").contains("Sup3r"));
        assert!(!c.to_toml_masked().contains("Sup3r"));
        assert!(c.to_toml_masked().contains("****"));
    }

    #[test]
    fn bad_env_value_is_named() {
        let mut c = Config::default();
        let e = c
            .apply_env(|k| (k == "PADDOCK_LISTEN").then(|| "nope".into()))
            .unwrap_err();
        assert!(e.to_string().contains("PADDOCK_LISTEN"));
    }

    #[test]
    fn toml_file_is_read() {
        let c: Config =
            toml::from_str("listen = \"127.0.0.1:1234\"\nallow_signup = false\n").unwrap();
        assert_eq!(c.listen.port(), 1234);
        assert!(!c.allow_signup);
        assert!(toml::from_str::<Config>("nonsense = 1").is_err());
    }
}
