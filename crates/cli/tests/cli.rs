//! The `paddock` CLI as a user runs it: the real binary against a real
//! server, with a real model for `deploy`, `chat` and `logs`.

use paddock_server::testkit::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_paddock"))
}

struct Cli {
    url: String,
    config: tempfile::TempDir,
}

impl Cli {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(bin())
            .args(args)
            .env("PADDOCK_URL", &self.url)
            .env("PADDOCK_CONFIG_DIR", self.config.path())
            .env_remove("PADDOCK_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        assert!(
            out.status.success(),
            "paddock {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// gemma3:270m's row of `paddock models`.
    fn gemma_row(&self) -> String {
        let models = self.ok(&["models"]);
        models
            .lines()
            .find(|l| l.starts_with("gemma3:270m"))
            .unwrap_or_else(|| panic!("no gemma3:270m in\n{models}"))
            .to_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_drives_paddock_from_the_cli() {
    let s = TestServer::start_with_runtime(bin()).await;
    let cli = Cli {
        url: s.url.clone(),
        config: tempfile::tempdir().unwrap(),
    };
    let url = s.url.clone();
    tokio::task::spawn_blocking(move || {
        // Not signed in: a clear message.
        let out = cli.run(&["ps"], None);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("paddock login"));

        let out = cli.run(
            &["login", "--email", ADMIN_EMAIL, "--password-stdin"],
            Some(&format!("{ADMIN_PASSWORD}\n")),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(&url));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(cli.config.path().join("credentials.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // Tables for people, JSON for scripts.
        let table = cli.ok(&["models"]);
        assert!(table.starts_with("MODEL"), "{table}");
        assert!(table.contains("gemma3:270m"));
        let models = cli.json(&["models"]);
        assert_eq!(models["models"].as_array().unwrap().len(), 31);

        // Bad sizes are refused with the server's explanation.
        let out = cli.run(
            &["deploy", "gemma3:270m", "--cpu", "1", "--memory", "1000"],
            None,
        );
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("not valid with cpu 1024"));

        // Deploy waits for RUNNING.
        let out = cli.ok(&[
            "deploy",
            "gemma3:270m",
            "--cpu",
            "1",
            "--memory",
            "2048",
            "--name",
            "night shift",
        ]);
        assert!(out.contains("is RUNNING"), "{out}");
        assert!(cli.ok(&["ps"]).contains("night shift"));
        let ps = cli.json(&["ps"]);
        assert_eq!(ps["instances"][0]["name"], "night shift");
        let id = ps["instances"][0]["instance_id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(ps["instances"][0]["status"], "RUNNING");
        assert!(cli.ok(&["show", &id]).contains("history:"));

        // Chat streams the model's answer.
        let out = cli.run(
            &[
                "chat",
                "gemma3:270m",
                "-m",
                "Say hello",
                "--temperature",
                "0",
                "--max-tokens",
                "16",
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty());
        assert!(String::from_utf8_lossy(&out.stderr).contains("tokens/s"));
        assert!(!cli.ok(&["logs", &id, "-n", "5"]).is_empty());

        // Keys: the secret once, then only its prefix.
        let created = cli.ok(&["keys", "create", "laptop", "--models", "gemma3:270m"]);
        let secret = created.lines().next().unwrap().to_owned();
        assert!(secret.starts_with("pdk_"));
        let listed = cli.ok(&["keys", "list"]);
        assert!(listed.contains("laptop") && !listed.contains(&secret));

        // Users (admin).
        let created = cli.ok(&["users", "create", "bo@example.com"]);
        assert!(created.contains("temporary password"));
        let users = cli.json(&["users", "list"]);
        assert_eq!(users["users"].as_array().unwrap().len(), 2);

        std::thread::sleep(std::time::Duration::from_millis(300));
        let usage = cli.json(&["usage", "--days", "1"]);
        assert_eq!(usage["totals"]["requests"], 1);

        let out = cli.ok(&["stop", &id]);
        assert!(out.contains("STOPPED"), "{out}");
        // Started again with the same id, then stopped for good.
        let out = cli.ok(&["start", &id]);
        assert!(out.contains("is RUNNING") && out.contains(&id), "{out}");
        cli.ok(&["stop", &id]);
        cli.ok(&["rm", &id]);
        assert!(cli.json(&["ps"])["instances"]
            .as_array()
            .unwrap()
            .is_empty());
        cli.ok(&["logout"]);
        assert!(!cli.config.path().join("credentials.json").exists());
    })
    .await
    .unwrap();
}

#[test]
fn serve_takes_the_driver_from_a_flag_and_names_the_choices_of_a_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args([
            "serve",
            "--driver",
            "docker",
            "--print-config",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let config: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(config["driver"]["kind"].as_str(), Some("docker"), "{text}");
    assert_eq!(config["driver"]["docker_reach"].as_str(), Some("auto"));
    assert_eq!(config["driver"]["model_images"].as_bool(), Some(true));

    let out = Command::new(bin())
        .args(["serve", "--driver", "kubernetes", "--print-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("choose process, docker or ecs"), "{err}");
}

/// `paddock deploy` of a model that is not on the host: where stderr is
/// not a terminal it says how far the download is (a line every tenth),
/// then the instance runs, and `paddock models` has it on this host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_follows_the_download_of_a_model_not_on_the_host() {
    let registry = registry_with_test_model().await;
    let size = std::fs::metadata(test_model_file()).unwrap().len();
    registry.hold_at(size / 2);
    let s = TestServer::start_pulling(bin(), &registry.url).await;
    let cli = Cli {
        url: s.url.clone(),
        config: tempfile::tempdir().unwrap(),
    };
    let deploying = tokio::task::spawn_blocking(move || {
        let out = cli.run(
            &["login", "--email", ADMIN_EMAIL, "--password-stdin"],
            Some(&format!("{ADMIN_PASSWORD}\n")),
        );
        assert!(out.status.success(), "{out:?}");
        assert!(cli.gemma_row().contains("downloads on first deploy"));
        let out = cli.run(
            &["deploy", "gemma3:270m", "--cpu", "1", "--memory", "2048"],
            None,
        );
        (cli, out)
    });
    // Held at half until the CLI has had time to see it there.
    let token = s.admin_token().await;
    let half = paddock_models::testkit::CONFIG.len() as u64 + size / 2;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, v) = s.get("/api/instances", &token).await;
        if v["instances"][0]["pull"]["completed_bytes"].as_u64() == Some(half) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no download at half: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    registry.release();
    let (cli, out) = deploying.await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("is RUNNING"), "{stdout}");
    let total = format!(
        "{:.1} MB",
        (size + paddock_models::testkit::CONFIG.len() as u64) as f64 / 1e6
    );
    assert!(
        stderr.contains(&format!("PULLING gemma3:270m: 50% of {total}")),
        "{stderr}"
    );
    assert!(
        stderr.lines().last().unwrap().ends_with("RUNNING"),
        "{stderr}"
    );
    tokio::task::spawn_blocking(move || {
        assert!(cli.gemma_row().contains("on this host"));
    })
    .await
    .unwrap();
}
