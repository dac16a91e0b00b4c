//! Client commands: each one is a call (or a few) to the paddock API and a
//! table or JSON for the result.

use crate::client::{Client, Credentials};
use crate::table::{cell, Output};
use crate::{out, outln};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Your email [prompted when absent].
    #[arg(long)]
    email: Option<String>,
    /// Read the password from standard input instead of prompting.
    #[arg(long)]
    password_stdin: bool,
}

fn prompt(label: &str) -> Result<String> {
    eprint!("{label}: ");
    let mut s = String::new();
    std::io::stdin().lock().read_line(&mut s)?;
    Ok(s.trim().to_owned())
}

fn prompt_password(label: &str, from_stdin: bool) -> Result<String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut s = String::new();
        std::io::stdin().lock().read_line(&mut s)?;
        return Ok(s.trim_end_matches(['\n', '\r']).to_owned());
    }
    Ok(rpassword::prompt_password(format!("{label}: "))?)
}

pub async fn login(url: Option<String>, args: LoginArgs) -> Result<()> {
    let mut c = Client::new(url, None);
    let email = match args.email {
        Some(e) => e,
        None => prompt("Email")?,
    };
    let password = prompt_password("Password", args.password_stdin)?;
    let mut v = c
        .post(
            "/api/auth/login",
            &json!({"email": email, "password": password}),
        )
        .await?;
    if v["challenge"] == "NEW_PASSWORD_REQUIRED" {
        eprintln!(
            "You must choose a new password (8+ characters with upper, lower, digit and symbol)."
        );
        let new_password = prompt_password("New password", args.password_stdin)?;
        v = c
            .post(
                "/api/auth/new-password",
                &json!({"email": email, "session": v["session"], "new_password": new_password}),
            )
            .await?;
    }
    let creds = Credentials {
        url: c.url.clone(),
        email: email.clone(),
        access_token: v["access_token"]
            .as_str()
            .context("no access token in reply")?
            .to_owned(),
        refresh_token: v["refresh_token"].as_str().unwrap_or_default().to_owned(),
    };
    creds.save()?;
    outln!("Logged in to {} as {email}", c.url);
    Ok(())
}

pub async fn logout(c: &mut Client) -> Result<()> {
    if let Some(creds) = Credentials::load() {
        // Best effort: the server forgets the session even if we are offline.
        let _ = c
            .post(
                "/api/auth/logout",
                &json!({"refresh_token": creds.refresh_token}),
            )
            .await;
    }
    Credentials::remove();
    outln!("Logged out");
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCmd {
    /// The catalog on the server (the default).
    Catalog {
        /// Include inactive models (admins).
        #[arg(long)]
        all: bool,
    },
    #[command(flatten)]
    Local(paddock_runtime::cli::ModelsCommand),
}

pub async fn models(c: &mut Client, out: &Output, cmd: Option<ModelsCmd>) -> Result<()> {
    let all = match cmd {
        Some(ModelsCmd::Local(local)) => return Ok(paddock_runtime::cli::models(local).await?),
        Some(ModelsCmd::Catalog { all }) => all,
        None => false,
    };
    let v = c
        .get(if all {
            "/api/models?all=true"
        } else {
            "/api/models"
        })
        .await?;
    let rows = v["models"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            vec![
                cell(&m["model_id"]),
                cell(&m["model_name"]),
                format!("{} GB", m["model_size_gb"]),
                format!(
                    "{} vCPU / {} MB",
                    m["cpu_requirements"]["vcpu"], m["cpu_requirements"]["memory_mb"]
                ),
                format!("{} MB", m["gpu_requirements"]["gpu_memory_mb"]),
                cell(&m["supported_tasks"]),
                match m["availability"].as_str() {
                    Some("on_host") => "on this host".into(),
                    Some("download") => "downloads on first deploy".into(),
                    Some("remote") => "in its image".into(),
                    _ => String::new(),
                },
                if m["is_active"] == true {
                    "yes".into()
                } else {
                    "no".into()
                },
            ]
        })
        .collect();
    out.print(
        &v,
        &[
            "MODEL",
            "NAME",
            "SIZE",
            "CPU NEEDS",
            "GPU NEEDS",
            "TASKS",
            "WEIGHTS",
            "ACTIVE",
        ],
        rows,
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The catalog model, e.g. gemma3:270m.
    model: String,
    /// vCPUs for a CPU size (0.25, 0.5, 1, 2, 4, 8, 16).
    #[arg(long, requires = "memory", conflicts_with = "instance_type")]
    cpu: Option<f64>,
    /// Memory in MiB for a CPU size (a valid Fargate pair with --cpu).
    #[arg(long, requires = "cpu")]
    memory: Option<u32>,
    /// A GPU instance type, e.g. g5.xlarge.
    #[arg(long)]
    instance_type: Option<String>,
    /// Minutes without requests before the instance sleeps (0 = never).
    #[arg(long)]
    idle_timeout: Option<f64>,
    /// Spot capacity (Fargate Spot, or spot GPU instances): cheaper, may be
    /// interrupted (the instance is then restarted). The ecs driver only.
    #[arg(long)]
    spot: bool,
    /// A name for the instance (default: the model and a short suffix).
    #[arg(long)]
    name: Option<String>,
    /// Return at once instead of waiting for RUNNING.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for RUNNING, seconds, once the model is on the
    /// host (a download first takes as long as it takes).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

pub async fn deploy(c: &mut Client, out: &Output, a: DeployArgs) -> Result<()> {
    let mut body = json!({"model_name": a.model});
    match (a.cpu, a.memory, &a.instance_type) {
        (Some(cpu), Some(mem), None) => {
            body["fargate_resources"] = json!({"cpu": cpu, "memory": mem});
        }
        (None, None, Some(t)) => body["instance_type"] = json!(t),
        _ => bail!("give --cpu and --memory for a CPU size, or --instance-type for a GPU (see `paddock compute`)"),
    }
    if let Some(m) = a.idle_timeout {
        body["idle_timeout_minutes"] = json!(m);
    }
    if a.spot {
        body["spot"] = json!(true);
    }
    if let Some(n) = &a.name {
        body["name"] = json!(n);
    }
    let v = c.post("/api/models/deploy", &body).await?;
    let id = v["instance_id"].as_str().unwrap_or_default().to_owned();
    if a.no_wait {
        out.message(&v, &format!("{id} {}", cell(&v["status"])));
        return Ok(());
    }
    await_running(c, out, &id, a.timeout).await
}

/// Waits for an instance that was deployed or started to run, then says
/// where it answers, or why it did not start.
async fn await_running(c: &mut Client, out: &Output, id: &str, timeout: u64) -> Result<()> {
    let v = wait_for(c, id, &["RUNNING", "FAILED", "STOPPED"], timeout, out.json).await?;
    if v["status"] == "RUNNING" {
        out.message(
            &v,
            &format!(
                "{id} is RUNNING\nendpoint: {}\n  try: curl {}/api/chat -H \"Authorization: Bearer $PADDOCK_API_KEY\" -d '{{\"model\":\"{}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'",
                cell(&v["endpoint_url"]),
                c.url,
                cell(&v["model_name"])
            ),
        );
        Ok(())
    } else {
        bail!(
            "{id} is {}: {}",
            cell(&v["status"]),
            cell(&v["status_reason"])
        )
    }
}

/// Starts a stopped, sleeping or failed instance again and waits for it to
/// run (unless `no_wait`).
pub async fn start(c: &mut Client, out: &Output, id: &str, no_wait: bool) -> Result<()> {
    let v = c
        .post(&format!("/api/instances/{id}/start"), &json!({}))
        .await?;
    if no_wait {
        out.message(&v, &format!("{id} {}", cell(&v["status"])));
        return Ok(());
    }
    await_running(c, out, id, 600).await
}

/// Polls an instance until its status is one of `done`. On a terminal it
/// shows a spinner, or a bar of bytes while the model downloads
/// (PULLING); otherwise (a log, CI) it prints a line at each change of
/// status and every tenth of a download.
async fn wait_for(
    c: &mut Client,
    id: &str,
    done: &[&str],
    timeout: u64,
    quiet: bool,
) -> Result<Value> {
    let tty = std::io::stderr().is_terminal();
    let bar = if quiet || !tty {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    let spinner = ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bytes = ProgressStyle::with_template(
        "{spinner} {elapsed:>4} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(spinner.clone());
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut downloading = false;
    let mut last_line = String::new();
    // The timeout counts from the end of a download: a big model takes
    // as long as it takes, and the bar shows it moving.
    let mut start = Instant::now();
    loop {
        let v = c.get(&format!("/api/instances/{id}")).await?;
        let status = cell(&v["status"]);
        let pull = v["pull"]["total_bytes"]
            .as_u64()
            .filter(|t| *t > 0)
            .map(|total| (v["pull"]["completed_bytes"].as_u64().unwrap_or(0), total));
        match pull {
            Some((completed, total)) => {
                if !downloading {
                    bar.set_style(bytes.clone());
                    downloading = true;
                }
                bar.set_length(total);
                bar.set_position(completed);
                bar.set_message(format!("{id} PULLING {}", cell(&v["model_name"])));
            }
            None => {
                if downloading {
                    bar.set_style(spinner.clone());
                    downloading = false;
                }
                bar.set_message(format!("{id} {status} {}", cell(&v["status_reason"])));
            }
        }
        if !quiet && !tty {
            let line = match pull {
                Some((completed, total)) => format!(
                    "{id} PULLING {}: {}% of {}",
                    cell(&v["model_name"]),
                    completed * 10 / total * 10,
                    megabytes(total)
                ),
                None => format!("{id} {status}"),
            };
            if line != last_line {
                eprintln!("{line}");
                last_line = line;
            }
        }
        if done.contains(&status.as_str()) {
            bar.finish_and_clear();
            return Ok(v);
        }
        if status == "PULLING" {
            start = Instant::now();
        }
        if start.elapsed() > Duration::from_secs(timeout) {
            bar.finish_and_clear();
            bail!("{id} is still {status} after {timeout}s; `paddock show {id}` follows it");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `253.1 MB`.
fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn instance_rows(v: &Value) -> Vec<Vec<String>> {
    v["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            vec![
                cell(&i["instance_id"]),
                cell(&i["name"]),
                cell(&i["model_name"]),
                if i["spot"].as_bool() == Some(true) {
                    format!("{} (spot)", cell(&i["instance_type"]))
                } else {
                    cell(&i["instance_type"])
                },
                cell(&i["status"]),
                format!("{}s", i["uptime_seconds"]),
                format!("${:.4}", i["cost_usd"].as_f64().unwrap_or(0.0)),
                cell(&i["endpoint_url"]),
            ]
        })
        .collect()
}

pub async fn ps(c: &mut Client, out: &Output, all: bool) -> Result<()> {
    let v = c
        .get(if all {
            "/api/instances?all=true"
        } else {
            "/api/instances"
        })
        .await?;
    out.print(
        &v,
        &[
            "INSTANCE", "NAME", "MODEL", "SIZE", "STATUS", "UPTIME", "COST", "ENDPOINT",
        ],
        instance_rows(&v),
    );
    Ok(())
}

pub async fn stop(c: &mut Client, out: &Output, id: &str) -> Result<()> {
    c.post("/api/models/stop", &json!({"instance_id": id}))
        .await?;
    let v = wait_for(c, id, &["STOPPED", "FAILED"], 120, out.json).await?;
    out.message(&v, &format!("{id} {}", cell(&v["status"])));
    Ok(())
}

pub async fn rm(c: &mut Client, id: &str) -> Result<()> {
    c.request(Method::DELETE, &format!("/api/instances/{id}"), None)
        .await?;
    outln!("deleted {id}");
    Ok(())
}

pub async fn show(c: &mut Client, out: &Output, id: &str) -> Result<()> {
    let v = c.get(&format!("/api/instances/{id}")).await?;
    if out.json {
        return {
            out.message(&v, "");
            Ok(())
        };
    }
    for k in [
        "instance_id",
        "name",
        "model_name",
        "instance_type",
        "compute",
        "status",
        "status_reason",
        "endpoint_url",
        "idle_timeout_minutes",
        "uptime_seconds",
        "price_per_hour_usd",
        "cost_usd",
        "created_at",
    ] {
        outln!("{k:<22} {}", cell(&v[k]));
    }
    outln!("\nhistory:");
    let rows = v["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            vec![
                cell(&t["at"]),
                cell(&t["from"]),
                cell(&t["to"]),
                cell(&t["reason"]),
            ]
        })
        .collect::<Vec<_>>();
    out!(
        "{}",
        crate::table::render(&["AT", "FROM", "TO", "REASON"], &rows)
    );
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysCmd {
    /// Create a key; the secret is printed once.
    Create {
        name: String,
        /// Limit the key to these models (comma-separated).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Expiry as RFC 3339, e.g. 2027-01-01T00:00:00Z.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List your keys.
    List,
    /// Revoke a key.
    Revoke { key_id: String },
}

pub async fn keys(c: &mut Client, out: &Output, cmd: KeysCmd) -> Result<()> {
    match cmd {
        KeysCmd::Create {
            name,
            models,
            expires_at,
        } => {
            let mut body = json!({"name": name});
            if !models.is_empty() {
                body["allowed_models"] = json!(models);
            }
            if let Some(e) = expires_at {
                body["expires_at"] = json!(e);
            }
            let v = c.post("/api/keys", &body).await?;
            out.message(
                &v,
                &format!(
                    "{}\n\nkey {} created; store the secret above now, it is not shown again",
                    cell(&v["secret"]),
                    cell(&v["key_id"])
                ),
            );
        }
        KeysCmd::List => {
            let v = c.get("/api/keys").await?;
            let rows = v["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|k| {
                    vec![
                        cell(&k["key_id"]),
                        cell(&k["name"]),
                        format!("{}...", cell(&k["prefix"])),
                        cell(&k["status"]),
                        cell(&k["allowed_models"]),
                        cell(&k["created_at"]),
                        cell(&k["last_used_at"]),
                    ]
                })
                .collect();
            out.print(
                &v,
                &[
                    "KEY",
                    "NAME",
                    "PREFIX",
                    "STATUS",
                    "MODELS",
                    "CREATED",
                    "LAST USED",
                ],
                rows,
            );
        }
        KeysCmd::Revoke { key_id } => {
            let v = c
                .request(Method::DELETE, &format!("/api/keys/{key_id}"), None)
                .await?;
            out.message(&v, &format!("revoked {key_id}"));
        }
    }
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum UsersCmd {
    /// List users.
    List,
    /// Create a user; they choose a new password at first login.
    Create {
        email: String,
        /// Make them an admin.
        #[arg(long)]
        admin: bool,
    },
    /// Disable a user (their sessions and keys stop working).
    Disable { user_id: String },
    /// Enable a disabled user.
    Enable { user_id: String },
    /// Make a user an admin.
    Promote { user_id: String },
    /// Make an admin a plain user.
    Demote { user_id: String },
    /// Give a user a temporary password, changed at their next login.
    ResetPassword { user_id: String },
    /// Delete a user: their instances are stopped and keys revoked; their
    /// usage stays.
    Delete { user_id: String },
}

pub async fn users(c: &mut Client, out: &Output, cmd: UsersCmd) -> Result<()> {
    let patch = |id: String, body: Value| (format!("/api/users/{id}"), body);
    let (path, body) = match cmd {
        UsersCmd::List => {
            let v = c.get("/api/users").await?;
            let rows = v["users"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|u| {
                    vec![
                        cell(&u["user_id"]),
                        cell(&u["email"]),
                        cell(&u["role"]),
                        if u["disabled"] == true {
                            "disabled".into()
                        } else {
                            "active".into()
                        },
                        cell(&u["created_at"]),
                    ]
                })
                .collect();
            out.print(&v, &["USER", "EMAIL", "ROLE", "STATUS", "CREATED"], rows);
            return Ok(());
        }
        UsersCmd::Create { email, admin } => {
            let role = if admin { "admin" } else { "user" };
            let v = c
                .post("/api/users", &json!({"email": email, "role": role}))
                .await?;
            out.message(
                &v,
                &format!(
                    "created {} ({role}); temporary password: {}\nthey must choose a new one at first login",
                    cell(&v["email"]),
                    cell(&v["temporary_password"])
                ),
            );
            return Ok(());
        }
        UsersCmd::ResetPassword { user_id } => {
            let v = c
                .post(&format!("/api/users/{user_id}/reset-password"), &json!({}))
                .await?;
            out.message(
                &v,
                &format!(
                    "temporary password for {user_id}: {}\nthey must choose a new one at their next login",
                    cell(&v["temporary_password"])
                ),
            );
            return Ok(());
        }
        UsersCmd::Delete { user_id } => {
            let v = c
                .request(Method::DELETE, &format!("/api/users/{user_id}"), None)
                .await?;
            out.message(
                &v,
                &format!(
                    "deleted {}: {} instance(s) stopped, {} key(s) revoked; their usage stays",
                    cell(&v["email"]),
                    v["instances_stopped"],
                    v["keys_revoked"]
                ),
            );
            return Ok(());
        }
        UsersCmd::Disable { user_id } => patch(user_id, json!({"disabled": true})),
        UsersCmd::Enable { user_id } => patch(user_id, json!({"disabled": false})),
        UsersCmd::Promote { user_id } => patch(user_id, json!({"role": "admin"})),
        UsersCmd::Demote { user_id } => patch(user_id, json!({"role": "user"})),
    };
    let v = c.request(Method::PATCH, &path, Some(&body)).await?;
    out.message(
        &v,
        &format!(
            "{} is now {} and {}",
            cell(&v["email"]),
            cell(&v["role"]),
            if v["disabled"] == true {
                "disabled"
            } else {
                "active"
            }
        ),
    );
    Ok(())
}

pub async fn compute(c: &mut Client, out: &Output) -> Result<()> {
    let v = c.get("/api/compute").await?;
    if out.json {
        out.message(&v, "");
        return Ok(());
    }
    outln!("CPU sizes (Fargate pairs; local CPU priced at the configured rate):");
    let cpu_rows: Vec<Vec<String>> = v["fargate"]["sizes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            vec![
                cell(&s["vcpu"]),
                cell(&s["memory"]),
                format!("${:.4}", s["price_per_hour_usd"].as_f64().unwrap_or(0.0)),
            ]
        })
        .collect();
    out!(
        "{}",
        crate::table::render(&["VCPU", "MEMORY MB", "FARGATE $/H"], &cpu_rows)
    );
    outln!(
        "\nGPU instance types ({} list prices, {}):",
        cell(&v["region"]),
        cell(&v["prices_as_of"])
    );
    let gpu_rows: Vec<Vec<String>> = v["gpu_instance_types"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            vec![
                cell(&g["instance_type"]),
                cell(&g["vcpu"]),
                cell(&g["memory_mb"]),
                format!("{}x {}", g["gpu_count"], cell(&g["gpu_type"])),
                cell(&g["gpu_memory_mb"]),
                format!("${}", g["price_per_hour_usd"]),
            ]
        })
        .collect();
    out!(
        "{}",
        crate::table::render(
            &["TYPE", "VCPU", "MEMORY MB", "GPUS", "GPU MEMORY MB", "$/H"],
            &gpu_rows
        )
    );
    Ok(())
}

pub async fn logs(c: &mut Client, out: &Output, id: &str, lines: usize) -> Result<()> {
    let v = c
        .get(&format!("/api/instances/{id}/logs?lines={lines}"))
        .await?;
    if out.json {
        out.message(&v, "");
        return Ok(());
    }
    for l in v["lines"].as_array().into_iter().flatten() {
        outln!("{}", l.as_str().unwrap_or_default());
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// The deployed model, e.g. gemma3:270m.
    model: String,
    /// Send one message and exit (otherwise read messages from standard input).
    #[arg(long, short = 'm')]
    message: Option<String>,
    /// A system prompt.
    #[arg(long)]
    system: Option<String>,
    /// Sampling temperature.
    #[arg(long)]
    temperature: Option<f64>,
    /// Most tokens per reply.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Talk to this instance rather than routing by model.
    #[arg(long)]
    instance: Option<String>,
}

/// Streams one assistant reply to stdout and returns its text.
async fn chat_turn(c: &Client, path: &str, body: &Value) -> Result<String> {
    use futures::StreamExt;
    let resp = c.raw(Method::POST, path).json(body).send().await?;
    if !resp.status().is_success() {
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or_default();
        bail!(
            "{} ({status})",
            v["error"]["message"]
                .as_str()
                .or(v["error"].as_str())
                .unwrap_or("chat failed")
        );
    }
    let mut text = String::new();
    let mut buf = Vec::new();
    let mut stream = resp.bytes_stream();
    let mut stats = Value::Null;
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if let Some(piece) = v["message"]["content"].as_str() {
                out!("{piece}");
                use std::io::Write;
                let _ = std::io::stdout().flush();
                text.push_str(piece);
            }
            if v["done"] == true {
                stats = v;
            }
        }
    }
    outln!("");
    if let (Some(n), Some(ns)) = (
        stats["eval_count"].as_f64(),
        stats["eval_duration"].as_f64(),
    ) {
        if ns > 0.0 {
            eprintln!("[{n} tokens, {:.1} tokens/s]", n / (ns / 1e9));
        }
    }
    Ok(text)
}

pub async fn chat(c: &mut Client, a: ChatArgs) -> Result<()> {
    let path = match &a.instance {
        Some(id) => format!("/models/{id}/api/chat"),
        None => "/api/chat".to_owned(),
    };
    let mut messages = Vec::new();
    if let Some(s) = &a.system {
        messages.push(json!({"role": "system", "content": s}));
    }
    let mut options = json!({});
    if let Some(t) = a.temperature {
        options["temperature"] = json!(t);
    }
    if let Some(n) = a.max_tokens {
        options["num_predict"] = json!(n);
    }
    let interactive = a.message.is_none() && std::io::stdin().is_terminal();
    let mut pending = a.message.clone();
    loop {
        let msg = match pending.take() {
            Some(m) => m,
            None if a.message.is_some() => return Ok(()),
            None => {
                if interactive {
                    eprint!(">>> ");
                }
                let mut line = String::new();
                if std::io::stdin().lock().read_line(&mut line)? == 0 {
                    return Ok(());
                }
                let line = line.trim().to_owned();
                if line.is_empty() {
                    continue;
                }
                if line == "/bye" || line == "/exit" {
                    return Ok(());
                }
                line
            }
        };
        messages.push(json!({"role": "user", "content": msg}));
        let body =
            json!({"model": a.model, "messages": messages, "stream": true, "options": options});
        let reply = chat_turn(c, &path, &body).await?;
        messages.push(json!({"role": "assistant", "content": reply}));
    }
}

pub async fn usage(c: &mut Client, out: &Output, days: u32, all: bool) -> Result<()> {
    let path = format!(
        "/api/usage?days={days}{}",
        if all { "&all=true" } else { "" }
    );
    let v = c.get(&path).await?;
    let rows = v["by_day"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            vec![
                cell(&r["day"]),
                cell(&r["model"]),
                cell(&r["requests"]),
                cell(&r["prompt_tokens"]),
                cell(&r["completion_tokens"]),
                format!("${:.4}", r["cost_usd"].as_f64().unwrap_or(0.0)),
            ]
        })
        .collect();
    out.print(
        &v,
        &[
            "DAY",
            "MODEL",
            "REQUESTS",
            "PROMPT TOKENS",
            "COMPLETION TOKENS",
            "COST",
        ],
        rows,
    );
    Ok(())
}
