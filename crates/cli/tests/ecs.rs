//! `paddock serve --driver ecs` against the emulator (moto on 127.0.0.1):
//! deploys of each kind become the right RunTask calls (checked through
//! the emulator's DescribeTasks), RUNNING once ECS says healthy, stop ends
//! the task, a task stopped behind paddock's back (a spot interruption) is
//! FAILED and relaunched, and a restart adopts the tasks and stops strays.
//! The tasks' IPs are the emulator's inventions: nothing connects to them
//! (no gateway request is made; the reconciler reads ECS's health).

mod support;

use nix::sys::signal::Signal;
use paddock_core::testkit::moto::{EcsFixture, Moto};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use support::Serve;

const DEPLOYMENT: &str = "e2e";

fn env(fx: &EcsFixture) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", Moto::shared().endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("PADDOCK_DRIVER__CLUSTER", fx.cluster.clone()),
        ("PADDOCK_DRIVER__SUBNETS", fx.subnets.join(",")),
        ("PADDOCK_DRIVER__SECURITY_GROUPS", fx.security_group.clone()),
        ("PADDOCK_DRIVER__LOG_GROUP", fx.log_group.clone()),
        (
            "PADDOCK_DRIVER__EXECUTION_ROLE_ARN",
            "arn:aws:iam::123456789012:role/e2e-exec".into(),
        ),
        (
            "PADDOCK_DRIVER__IMAGE",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/e2e-paddock:test".into(),
        ),
        ("PADDOCK_DRIVER__DEPLOYMENT", DEPLOYMENT.into()),
        (
            "PADDOCK_DRIVER__GPU_CAPACITY_PROVIDER",
            fx.gpu_capacity_provider.clone(),
        ),
        (
            "PADDOCK_DRIVER__GPU_SPOT_CAPACITY_PROVIDER",
            fx.gpu_spot_capacity_provider.clone(),
        ),
    ]
}

async fn serve(dir: &std::path::Path, fx: &EcsFixture) -> Serve {
    let env = env(fx);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Serve::start_with(dir, &env, &["--driver", "ecs"]).await
}

async fn ecs() -> aws_sdk_ecs::Client {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_types::region::Region::new("us-east-1"))
        .endpoint_url(&Moto::shared().endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await;
    aws_sdk_ecs::Client::new(&sdk)
}

/// Every task of the deployment, by the instance its tag names.
async fn tasks(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
) -> HashMap<String, Vec<aws_sdk_ecs::types::Task>> {
    let arns = ecs
        .list_tasks()
        .cluster(cluster)
        .started_by(DEPLOYMENT)
        .send()
        .await
        .unwrap()
        .task_arns()
        .to_vec();
    let mut out: HashMap<String, Vec<_>> = HashMap::new();
    if arns.is_empty() {
        return out;
    }
    let described = ecs
        .describe_tasks()
        .cluster(cluster)
        .set_tasks(Some(arns))
        .include(aws_sdk_ecs::types::TaskField::Tags)
        .send()
        .await
        .unwrap();
    for t in described.tasks() {
        let instance = t
            .tags()
            .iter()
            .find(|g| g.key() == Some("paddock:instance"))
            .and_then(|g| g.value())
            .unwrap_or("")
            .to_owned();
        out.entry(instance).or_default().push(t.clone());
    }
    out
}

fn running(ts: &[aws_sdk_ecs::types::Task]) -> Vec<&aws_sdk_ecs::types::Task> {
    ts.iter()
        .filter(|t| t.desired_status() == Some("RUNNING"))
        .collect()
}

async fn deploy(s: &Serve, token: &str, body: Value) -> Value {
    s.call(Method::POST, "/api/models/deploy", Some(token), Some(body))
        .await
}

#[tokio::test]
async fn serve_on_ecs_deploys_stops_recovers_and_adopts() {
    let fx = Moto::shared().ecs_cluster("e2e");
    let ecs = ecs().await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = serve(dir.path(), &fx).await;
    let token = s.admin_token().await;

    // The sizes say spot is available here, with its lower price.
    let compute = s
        .call(Method::GET, "/api/compute", Some(&token), None)
        .await;
    assert_eq!(compute["spot"]["available"], true, "{compute}");

    let base = json!({"model_name": "gemma3:270m", "idle_timeout_minutes": 0});
    let with = |extra: Value| {
        let mut b = base.clone();
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        b
    };
    let cpu = deploy(
        &s,
        &token,
        with(json!({"fargate_resources": {"cpu": 1024, "memory": 2048}})),
    )
    .await;
    let gpu = deploy(&s, &token, with(json!({"instance_type": "g5.xlarge"}))).await;
    let spot = deploy(
        &s,
        &token,
        with(json!({"fargate_resources": {"cpu": 1024, "memory": 2048}, "spot": true})),
    )
    .await;
    assert_eq!(spot["spot"], true);
    assert!(
        spot["price_per_hour_usd"].as_f64().unwrap() < cpu["price_per_hour_usd"].as_f64().unwrap(),
        "{spot} {cpu}"
    );
    // On ECS a CPU size costs what Fargate charges, not the local price.
    assert!(cpu["price_per_hour_usd"].as_f64().unwrap() > 0.04, "{cpu}");
    let id = |v: &Value| v["instance_id"].as_str().unwrap().to_owned();
    let (cpu, gpu, spot) = (id(&cpu), id(&gpu), id(&spot));
    for i in [&cpu, &gpu, &spot] {
        let v = s.wait_status(&token, i, "RUNNING").await;
        assert!(v["endpoint_url"].as_str().unwrap().starts_with(&s.url));
    }

    // The RunTask parameters, as the emulator recorded them.
    let seen = tasks(&ecs, &fx.cluster).await;
    let provider = |i: &str| {
        let r = running(&seen[i]);
        assert_eq!(r.len(), 1, "{i}: {:?}", seen[i]);
        r[0].capacity_provider_name().unwrap().to_owned()
    };
    assert_eq!(provider(&cpu), "FARGATE");
    assert_eq!(provider(&gpu), fx.gpu_capacity_provider);
    assert_eq!(provider(&spot), "FARGATE_SPOT");
    for t in seen.values().flatten() {
        let c = &t.overrides().unwrap().container_overrides()[0];
        assert_eq!(&c.command()[..3], ["runtime", "--model", "gemma3:270m"]);
    }

    // The logs end with ECS's view of the task.
    let logs = s
        .call(
            Method::GET,
            &format!("/api/instances/{gpu}/logs"),
            Some(&token),
            None,
        )
        .await;
    assert!(logs.to_string().contains("RUNNING on e2e-gpu"), "{logs}");

    // Stop: the task is stopped.
    s.call(
        Method::POST,
        &format!("/api/instances/{cpu}/stop"),
        Some(&token),
        None,
    )
    .await;
    s.wait_status(&token, &cpu, "STOPPED").await;
    let seen = tasks(&ecs, &fx.cluster).await;
    assert!(running(&seen[&cpu]).is_empty(), "{:?}", seen[&cpu]);

    // A spot interruption behind paddock's back: FAILED with ECS's reason,
    // then relaunched by the restart policy on a new task.
    let first = running(&seen[&spot])[0].task_arn().unwrap().to_owned();
    ecs.stop_task()
        .cluster(&fx.cluster)
        .task(&first)
        .reason("Your Spot Task was interrupted.")
        .send()
        .await
        .unwrap();
    let mut relaunched = None;
    for _ in 0..300 {
        let v = s
            .call(
                Method::GET,
                &format!("/api/instances/{spot}"),
                Some(&token),
                None,
            )
            .await;
        let h = support::history(&v);
        let failed = h.iter().position(|(to, why)| {
            to == "FAILED" && why.contains("Your Spot Task was interrupted.")
        });
        // RUNNING again after the failure, in the history too: the API
        // reads the record, then its history, and a failure landing between
        // the two reads shows a RUNNING record with a history ending in
        // FAILED.
        let again = failed.is_some_and(|f| h[f..].iter().any(|(to, _)| to == "RUNNING"));
        if again && v["status"] == "RUNNING" {
            relaunched = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v =
        relaunched.expect("the interrupted instance is FAILED with the reason, then RUNNING again");
    assert_eq!(v["restart_count"], 1, "{v}");
    let seen = tasks(&ecs, &fx.cluster).await;
    let second = running(&seen[&spot])[0].task_arn().unwrap().to_owned();
    assert_ne!(first, second);

    // A stray task of this deployment (no instance owns it).
    let td = running(&seen[&gpu])[0]
        .task_definition_arn()
        .unwrap()
        .to_owned();
    let stray = ecs
        .run_task()
        .cluster(&fx.cluster)
        .task_definition(&td)
        .started_by(DEPLOYMENT)
        .capacity_provider_strategy(
            aws_sdk_ecs::types::CapacityProviderStrategyItem::builder()
                .capacity_provider(&fx.gpu_capacity_provider)
                .build()
                .unwrap(),
        )
        .network_configuration(
            aws_sdk_ecs::types::NetworkConfiguration::builder()
                .awsvpc_configuration(
                    aws_sdk_ecs::types::AwsVpcConfiguration::builder()
                        .set_subnets(Some(fx.subnets.clone()))
                        .security_groups(&fx.security_group)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap()
        .tasks()[0]
        .task_arn()
        .unwrap()
        .to_owned();

    // A restart: the tasks outlive paddock, are adopted, the stray stopped.
    let gpu_task = running(&seen[&gpu])[0].task_arn().unwrap().to_owned();
    assert!(s.stop(Signal::SIGTERM).await.success());
    let s = serve(dir.path(), &fx).await;
    for _ in 0..100 {
        let seen = tasks(&ecs, &fx.cluster).await;
        if running(&seen[""]).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = tasks(&ecs, &fx.cluster).await;
    assert!(
        running(&seen[""])
            .iter()
            .all(|t| t.task_arn() != Some(stray.as_str())),
        "the stray still runs"
    );
    for (i, task) in [(&gpu, &gpu_task), (&spot, &second)] {
        let v = s.wait_status(&token, i, "RUNNING").await;
        assert_eq!(
            running(&seen[i.as_str()])[0].task_arn(),
            Some(task.as_str()),
            "{v}"
        );
        let h = support::history(&v);
        assert!(!h.iter().skip(1).any(|(to, _)| to == "PENDING"), "{h:?}");
    }
}
