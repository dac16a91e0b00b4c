//! `paddock serve` on the AWS backends, against an AWS emulator (moto) on
//! 127.0.0.1, with dummy credentials: nothing reaches AWS.

mod support;

use nix::sys::signal::Signal;
use paddock_core::testkit::moto::Moto;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use support::{runtime_pids, Serve};

/// The environment that points `paddock serve` at the emulator's DynamoDB,
/// on tables of this test's own.
fn dynamodb_env(prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PADDOCK_STORE__KIND", "dynamodb".into()),
        ("PADDOCK_STORE__CREATE_TABLES", "true".into()),
        ("PADDOCK_STORE__TABLE_PREFIX", prefix.into()),
        ("AWS_ENDPOINT_URL", Moto::shared().endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

async fn serve(dir: &std::path::Path, env: &[(&'static str, String)], args: &[&str]) -> Serve {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Serve::start_with(dir, &env, args).await
}

/// The confirmation code the log mailer wrote for `email`.
fn mailed_code(dir: &std::path::Path, email: &str) -> String {
    let needle = format!("confirmation code for {email}: ");
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if let Some(line) = text.lines().rev().find(|l| l.contains(&needle)) {
            let code = line.split(&needle).nth(1).unwrap();
            return code.split_whitespace().next().unwrap().to_owned();
        }
    }
    panic!("no code was mailed to {email}");
}

/// The API flow of the SQLite + built-in setup on `env`'s backends: sign
/// up, confirm (the code from `code`), log in, the catalog, deploy, chat
/// through the gateway with an API key, usage, stop; then a restart finds
/// it all again, and nothing was kept in a database file on this disk.
async fn api_flow(
    dir: &std::path::Path,
    env: &[(&'static str, String)],
    args: &[&str],
    code: impl Fn(&std::path::Path, &str) -> String,
) {
    let mut serve = serve(dir, env, args).await;

    let email = "ana@example.com";
    let password = "Correct-horse-9";
    serve
        .call(
            Method::POST,
            "/api/auth/signup",
            None,
            Some(json!({"email": email, "password": password, "confirmPassword": password})),
        )
        .await;
    let code = code(dir, email);
    serve
        .call(
            Method::POST,
            "/api/auth/confirm",
            None,
            Some(json!({"email": email, "code": code})),
        )
        .await;
    let login = serve
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await;
    let token = login["access_token"].as_str().unwrap().to_owned();

    let catalog = serve
        .call(Method::GET, "/api/models", Some(&token), None)
        .await;
    assert!(catalog.to_string().contains("gemma3:270m"), "{catalog}");
    let id = serve.deploy_gemma(&token).await;
    serve.wait_status(&token, &id, "RUNNING").await;
    let key = serve
        .call(
            Method::POST,
            "/api/keys",
            Some(&token),
            Some(json!({"name": "aws"})),
        )
        .await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = serve
        .call(
            Method::POST,
            "/api/generate",
            Some(&key),
            Some(json!({"model": "gemma3:270m", "prompt": "The sky is", "stream": false, "options": {"num_predict": 3}})),
        )
        .await;
    assert_eq!(v["done"], true, "{v}");
    let mut usage = Value::Null;
    for _ in 0..100 {
        usage = serve
            .call(Method::GET, "/api/usage?days=1", Some(&token), None)
            .await;
        if usage["totals"]["requests"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(usage["totals"]["requests"], 1, "{usage}");
    serve
        .call(
            Method::POST,
            "/api/models/stop",
            Some(&token),
            Some(json!({"instance_id": id})),
        )
        .await;
    serve.wait_status(&token, &id, "STOPPED").await;
    assert!(!dir.join("paddock.db").exists(), "a SQLite file was made");

    // Another start on the same tables knows the user, the instance, its
    // history and the usage.
    let exit = serve.stop(Signal::SIGTERM).await;
    assert!(exit.success(), "{exit}");
    let serve = self::serve(dir, env, args).await;
    let v = serve
        .call(
            Method::GET,
            &format!("/api/instances/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(v["status"], "STOPPED", "{v}");
    let states: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert_eq!(states.first(), Some(&"PENDING"), "{states:?}");
    assert_eq!(states.last(), Some(&"STOPPED"), "{states:?}");
    let usage = serve
        .call(Method::GET, "/api/usage?days=1", Some(&token), None)
        .await;
    assert_eq!(usage["totals"]["requests"], 1, "{usage}");
}

/// Every record in DynamoDB, accounts kept by paddock (the code from the
/// log mailer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_flow_on_dynamodb() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("e2e{:08x}-", rand::random::<u32>());
    api_flow(dir.path(), &dynamodb_env(&prefix), &[], mailed_code).await;
}

/// Every record in DynamoDB and every account in a Cognito user pool: the
/// state of a paddock on AWS, none of it on this disk but the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_flow_on_dynamodb_and_cognito() {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_types::region::Region::new("us-east-1"))
        .endpoint_url(&Moto::shared().endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "paddock-tests",
        ))
        .load()
        .await;
    let (pool, client) = paddock_identity_cognito::testkit::create_pool(
        &sdk,
        &format!("e2e-{:08x}", rand::random::<u32>()),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("e2e{:08x}-", rand::random::<u32>());
    // The two sections in a file, as a deployment has them; the AWS chain
    // (endpoint, region, credentials) from the environment.
    let config = dir.path().join("aws.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nkind = \"dynamodb\"\ntable_prefix = \"{prefix}\"\ncreate_tables = true\n\n\
             [identity]\nkind = \"cognito\"\nuser_pool_id = \"{pool}\"\nclient_id = \"{client}\"\n"
        ),
    )
    .unwrap();
    let env: Vec<(&'static str, String)> = dynamodb_env(&prefix)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("PADDOCK_STORE__"))
        .collect();
    let config = config.to_str().unwrap().to_owned();
    // The emulator mails nothing and takes any code.
    api_flow(dir.path(), &env, &["--config", &config], |_, _| {
        "123456".into()
    })
    .await;
    assert!(!dir.path().join("secrets").join("jwt.key").exists());

    // The first admin is a member of the pool's Administrators group.
    let members = aws_sdk_cognitoidentityprovider::Client::new(&sdk)
        .list_users_in_group()
        .user_pool_id(&pool)
        .group_name("Administrators")
        .send()
        .await
        .unwrap();
    assert_eq!(members.users().len(), 1, "{members:?}");
}

/// Two replicas on the same tables: one reconciles (it holds the lease in
/// DynamoDB) and launches the model server; when it is killed, the other
/// takes the lease within its time and brings the instance back under its
/// own driver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_reconciles_and_another_takes_over_when_it_dies() {
    let prefix = format!("lease{:08x}-", rand::random::<u32>());
    let mut env = dynamodb_env(&prefix);
    env.push(("PADDOCK_RECONCILER__LEASE_SECS", "3".into()));
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log_has = |dir: &std::path::Path, text: &str| {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(text)))
    };
    let mut a = serve(dir_a.path(), &env, &[]).await;
    for _ in 0..100 {
        if log_has(dir_a.path(), "this replica reconciles") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(log_has(dir_a.path(), "this replica reconciles"));
    let b = serve(dir_b.path(), &env, &[]).await;
    let token = b.admin_token().await;
    let id = b.deploy_gemma(&token).await;
    b.wait_status(&token, &id, "RUNNING").await;
    assert_eq!(runtime_pids(dir_a.path()).len(), 1, "the leader launches");
    assert!(runtime_pids(dir_b.path()).is_empty(), "the other does not");
    assert!(!log_has(dir_b.path(), "this replica reconciles"));

    // The leader dies without giving the lease up.
    let started = std::time::Instant::now();
    let _ = a.child.kill();
    let _ = a.child.wait();
    let mut taken = None;
    for _ in 0..300 {
        if runtime_pids(dir_b.path()).len() == 1 {
            taken = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let taken = taken.expect("the other replica never took over");
    assert!(log_has(dir_b.path(), "this replica reconciles"));
    let v = b.wait_status(&token, &id, "RUNNING").await;
    assert!(taken < Duration::from_secs(30), "{taken:?}: {v}");
}

/// `paddock aws deploy` against the emulator, as far as it goes: the
/// templates compiled into the binary go to an S3 bucket, the parent stack
/// and its nested stacks are created (moto implements no Cognito or
/// Secrets Manager resources, so the first admin's password cannot be
/// set: the command says so), the URL and outputs are printed; `paddock
/// aws destroy` deletes the stack. The image push is skipped.
#[tokio::test]
async fn aws_deploy_creates_the_stack_and_destroy_deletes_it() {
    let env = [
        ("AWS_ENDPOINT_URL", Moto::shared().endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ];
    let run = |args: &[&str]| {
        let out = std::process::Command::new(support::bin())
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Bad input is refused before anything is made.
    let (ok, _, err) = run(&[
        "aws",
        "deploy",
        "--stack",
        "Ecs-Bad",
        "--region",
        "us-east-1",
        "--admin-email",
        "a@example.com",
        "--skip-images",
    ]);
    assert!(!ok);
    assert!(err.contains("lower-case"), "{err}");

    let (ok, out, err) = run(&[
        "aws",
        "deploy",
        "--stack",
        "pdk-e2e",
        "--region",
        "us-east-1",
        "--admin-email",
        "admin@example.com",
        "--skip-images",
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(
        err.contains("uploaded the templates to s3://paddock-pdk-e2e-us-east-1-templates/"),
        "{err}"
    );
    assert!(err.contains("CREATE_COMPLETE"), "{err}");
    let url = out
        .lines()
        .find_map(|l| l.strip_prefix("url\t"))
        .unwrap_or_else(|| panic!("no url in {out}"));
    assert!(
        url.starts_with("http://") && url.contains(".elb.amazonaws.com"),
        "{url}"
    );
    assert!(out.contains("ClusterName\tpdk-e2e"), "{out}");
    assert!(err.contains("password could not be set"), "{err}");

    // What the stack made, as the emulator has it.
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_types::region::Region::new("us-east-1"))
        .endpoint_url(&Moto::shared().endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await;
    let ecs = aws_sdk_ecs::Client::new(&sdk);
    let clusters = ecs
        .describe_clusters()
        .clusters("pdk-e2e")
        .send()
        .await
        .unwrap();
    assert_eq!(clusters.clusters().len(), 1);
    let services = ecs.list_services().cluster("pdk-e2e").send().await.unwrap();
    assert_eq!(
        services.service_arns().len(),
        1,
        "the control plane's service"
    );

    // A second deploy updates the stack in place.
    let (ok, out, err) = run(&[
        "aws",
        "deploy",
        "--stack",
        "pdk-e2e",
        "--region",
        "us-east-1",
        "--admin-email",
        "admin@example.com",
        "--skip-images",
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(
        err.contains("UPDATE_COMPLETE") || err.contains("up to date"),
        "{err}"
    );

    let (ok, out, err) = run(&[
        "aws",
        "destroy",
        "--stack",
        "pdk-e2e",
        "--region",
        "us-east-1",
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("deleted pdk-e2e"), "{out}");
    let (ok, _, err) = run(&[
        "aws",
        "destroy",
        "--stack",
        "pdk-e2e",
        "--region",
        "us-east-1",
    ]);
    assert!(!ok && err.contains("does not exist"), "{err}");
}
