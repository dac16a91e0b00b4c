//! The HTTP client the CLI uses: the server URL and tokens saved in the
//! user's config directory (mode 0600), bearer auth, a silent token refresh
//! on 401, and errors printed as the server's message.

use anyhow::{anyhow, bail, Context, Result};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;

/// What `paddock login` saves.
#[derive(Default, Serialize, Deserialize)]
pub struct Credentials {
    pub url: String,
    pub email: String,
    pub access_token: String,
    pub refresh_token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("url", &self.url)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// `$XDG_CONFIG_HOME/paddock/credentials.json`.
pub fn credentials_path() -> PathBuf {
    std::env::var_os("PADDOCK_CONFIG_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::config_dir().map(|d| d.join("paddock")))
        .unwrap_or_else(|| PathBuf::from(".paddock"))
        .join("credentials.json")
}

impl Credentials {
    pub fn load() -> Option<Credentials> {
        let text = std::fs::read_to_string(credentials_path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn save(&self) -> Result<()> {
        let path = credentials_path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        std::io::Write::write_all(&mut f, serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(())
    }

    pub fn remove() {
        let _ = std::fs::remove_file(credentials_path());
    }
}

/// A signed-in (or anonymous) connection to a paddock server.
#[derive(Debug)]
pub struct Client {
    pub url: String,
    http: reqwest::Client,
    creds: Option<Credentials>,
    /// A bearer token given on the command line or in PADDOCK_TOKEN (an API
    /// key, typically); it wins over saved credentials.
    token: Option<String>,
}

impl Client {
    /// Uses `url` if given, else the saved one, else the default local server.
    pub fn new(url: Option<String>, token: Option<String>) -> Client {
        let creds = Credentials::load();
        let url = url
            .or_else(|| creds.as_ref().map(|c| c.url.clone()))
            .unwrap_or_else(|| "http://127.0.0.1:8080".into())
            .trim_end_matches('/')
            .to_owned();
        Client {
            url,
            http: reqwest::Client::new(),
            creds,
            token,
        }
    }

    fn bearer(&self) -> Option<String> {
        self.token
            .clone()
            .or_else(|| self.creds.as_ref().map(|c| c.access_token.clone()))
    }

    /// Sends a request; on 401 with saved credentials, refreshes once and retries.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let (status, v) = self.send(method.clone(), path, body).await?;
        if status == StatusCode::UNAUTHORIZED && self.token.is_none() && self.refresh().await {
            let (status, v) = self.send(method, path, body).await?;
            return check(status, v);
        }
        check(status, v)
    }

    pub async fn get(&mut self, path: &str) -> Result<Value> {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&mut self, path: &str, body: &Value) -> Result<Value> {
        self.request(Method::POST, path, Some(body)).await
    }

    /// A raw request for streaming responses.
    pub fn raw(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}{}", self.url, path));
        if let Some(t) = self.bearer() {
            req = req.bearer_auth(t);
        }
        req
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut req = self.raw(method, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.with_context(|| {
            format!(
                "cannot reach paddock at {}; is `paddock serve` running?",
                self.url
            )
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, v))
    }

    async fn refresh(&mut self) -> bool {
        let Some(creds) = self.creds.as_mut() else {
            return false;
        };
        let body = serde_json::json!({"refresh_token": creds.refresh_token});
        let Ok(resp) = self
            .http
            .post(format!("{}/api/auth/refresh", self.url))
            .json(&body)
            .send()
            .await
        else {
            return false;
        };
        if !resp.status().is_success() {
            return false;
        }
        let Ok(v) = resp.json::<Value>().await else {
            return false;
        };
        match (v["access_token"].as_str(), v["refresh_token"].as_str()) {
            (Some(a), Some(r)) => {
                creds.access_token = a.to_owned();
                creds.refresh_token = r.to_owned();
                creds.save().is_ok()
            }
            _ => false,
        }
    }
}

fn check(status: StatusCode, v: Value) -> Result<Value> {
    if status.is_success() {
        return Ok(v);
    }
    if status == StatusCode::UNAUTHORIZED {
        bail!(
            "{} (run `paddock login`)",
            v["error"]["message"].as_str().unwrap_or("not signed in")
        );
    }
    let msg = v["error"]["message"]
        .as_str()
        .or_else(|| v["error"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string());
    Err(anyhow!("{msg} ({status})"))
}
