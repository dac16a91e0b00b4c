//! The ECS driver against the emulator (moto on 127.0.0.1): the driver
//! conformance suite with health read from ECS (nothing connects to the
//! task IPs moto invents), and the RunTask parameters per size, checked
//! through DescribeTasks.

use paddock_core::compute::ComputeTable;
use paddock_core::driver::{ComputeDriver, Handle, Health, LaunchSpec, Observed};
use paddock_core::testkit::moto::{EcsFixture, Moto};
use paddock_core::{InstanceId, ModelId};
use paddock_driver_ecs::{EcsDriver, EcsSettings};

async fn sdk() -> aws_types::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
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
        .await
}

fn settings(fx: &EcsFixture, deployment: &str) -> EcsSettings {
    EcsSettings {
        cluster: fx.cluster.clone(),
        subnets: fx.subnets.clone(),
        security_groups: vec![fx.security_group.clone()],
        assign_public_ip: false,
        execution_role_arn: Some("arn:aws:iam::123456789012:role/paddock-exec".into()),
        task_role_arn: None,
        log_group: fx.log_group.clone(),
        region: "us-east-1".into(),
        image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/paddock:test".into(),
        model_image_repository: Some(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/paddock-model".into(),
        ),
        deployment: deployment.into(),
        gpu_capacity_provider: Some(fx.gpu_capacity_provider.clone()),
        gpu_spot_capacity_provider: Some(fx.gpu_spot_capacity_provider.clone()),
        runtime_parallel: 2,
        registry: Some("https://registry.example.com".into()),
    }
}

fn spec(spec: paddock_core::compute::ComputeSpec) -> LaunchSpec {
    LaunchSpec {
        instance_id: InstanceId::generate(),
        model_id: ModelId::new("gemma3:270m"),
        spec,
        threads: 1,
        ctx: 2048,
    }
}

async fn driver(cluster: &str) -> (EcsDriver, aws_sdk_ecs::Client, EcsFixture) {
    let fx = Moto::shared().ecs_cluster(cluster);
    let sdk = sdk().await;
    let d = EcsDriver::new(&sdk, settings(&fx, cluster), ComputeTable::builtin()).unwrap();
    (d, aws_sdk_ecs::Client::new(&sdk), fx)
}

#[tokio::test]
async fn conformance_with_health_from_ecs() {
    let (d, _, _) = driver("conformance").await;
    let t = ComputeTable::builtin();
    paddock_core::testkit::driver_conformance(
        &d,
        spec(t.fargate_spec(1024, 2048).unwrap()),
        |endpoint| async move {
            panic!("the ECS driver reports health; {endpoint} must never be connected to")
        },
    )
    .await;
}

fn task_arn(h: &Handle) -> String {
    h.data["task_arn"].as_str().unwrap().to_owned()
}

async fn described(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    h: &Handle,
) -> aws_sdk_ecs::types::Task {
    ecs.describe_tasks()
        .cluster(cluster)
        .tasks(task_arn(h))
        .include(aws_sdk_ecs::types::TaskField::Tags)
        .send()
        .await
        .unwrap()
        .tasks()
        .first()
        .cloned()
        .expect("the task")
}

#[tokio::test]
async fn sizes_map_to_capacity_providers_and_task_definitions() {
    let (d, ecs, fx) = driver("sizes").await;
    let t = ComputeTable::builtin();
    let cases = [
        (t.fargate_spec(1024, 2048).unwrap(), "FARGATE"),
        (
            t.fargate_spec(1024, 2048).unwrap().with_spot(true),
            "FARGATE_SPOT",
        ),
        (
            t.gpu_spec("g5.xlarge").unwrap(),
            fx.gpu_capacity_provider.as_str(),
        ),
        (
            t.gpu_spec("g5.xlarge").unwrap().with_spot(true),
            fx.gpu_spot_capacity_provider.as_str(),
        ),
    ];
    let mut families = Vec::new();
    for (size, provider) in cases {
        let s = spec(size.clone());
        let h = d.launch(&s).await.unwrap();
        let task = described(&ecs, &fx.cluster, &h).await;
        assert_eq!(task.capacity_provider_name(), Some(provider), "{size:?}");
        assert_eq!(task.started_by(), Some("sizes"));
        let tags: Vec<(String, String)> = task
            .tags()
            .iter()
            .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
            .collect();
        assert!(
            tags.contains(&("paddock:instance".into(), s.instance_id.to_string())),
            "{tags:?}"
        );
        assert!(
            tags.contains(&("paddock:deployment".into(), "sizes".into())),
            "{tags:?}"
        );
        let o = task.overrides().unwrap().container_overrides();
        let cmd = o[0].command();
        assert_eq!(&cmd[..3], ["runtime", "--model", "gemma3:270m"]);
        assert_eq!(
            &cmd[cmd.len() - 2..],
            ["--registry", "https://registry.example.com"],
            "a model the image lacks is pulled from the configured registry"
        );
        // The task definition: the model image, the size, GPUs for GPU sizes.
        let td = ecs
            .describe_task_definition()
            .task_definition(task.task_definition_arn().unwrap())
            .send()
            .await
            .unwrap()
            .task_definition()
            .cloned()
            .unwrap();
        let c = &td.container_definitions()[0];
        assert_eq!(
            c.image(),
            Some("123456789012.dkr.ecr.us-east-1.amazonaws.com/paddock-model:gemma3-270m")
        );
        assert!(c.health_check().is_some());
        assert_eq!(
            c.log_configuration().unwrap().log_driver().as_str(),
            "awslogs"
        );
        let gpus: Vec<&str> = c
            .resource_requirements()
            .iter()
            .map(|r| r.value())
            .collect();
        match &size {
            paddock_core::compute::ComputeSpec::Cpu { .. } => {
                assert_eq!(td.cpu(), Some("1024"));
                assert_eq!(td.memory(), Some("2048"));
                assert!(gpus.is_empty());
            }
            paddock_core::compute::ComputeSpec::Gpu { .. } => assert_eq!(gpus, ["1"]),
        }
        families.push(td.family().unwrap().to_owned());
        // RUNNING with ECS's health: alive at the task's private IP.
        match d.status(&h).await.unwrap() {
            Observed::Alive { endpoint, health } => {
                assert!(
                    endpoint.starts_with("http://10.") && endpoint.ends_with(":11434"),
                    "{endpoint}"
                );
                assert_eq!(health, Some(Health::Healthy));
            }
            other => panic!("{other:?}"),
        }
        d.stop(&h).await.unwrap();
    }
    // Spot reuses the on-demand size's task definition.
    assert_eq!(families[0], families[1]);
    assert_eq!(families[2], families[3]);
    assert_ne!(families[0], families[2]);
}

#[tokio::test]
async fn a_spot_interruption_is_an_exit_with_its_reason_and_logs_come_from_cloudwatch() {
    let (d, ecs, fx) = driver("interrupt").await;
    let s = spec(
        ComputeTable::builtin()
            .fargate_spec(512, 1024)
            .unwrap()
            .with_spot(true),
    );
    let h = d.launch(&s).await.unwrap();
    // What awslogs writes for the task, under the stream the driver reads.
    let logs = aws_sdk_cloudwatchlogs::Client::new(&sdk().await);
    let task_id = task_arn(&h).rsplit('/').next().unwrap().to_owned();
    let stream = format!("interrupt/model/{task_id}");
    logs.create_log_stream()
        .log_group_name(&fx.log_group)
        .log_stream_name(&stream)
        .send()
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    logs.put_log_events()
        .log_group_name(&fx.log_group)
        .log_stream_name(&stream)
        .log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(now)
                .message("paddock runtime: listening on 0.0.0.0:11434")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let lines = d.logs(&h, 10).await.unwrap();
    assert_eq!(
        lines[0], "paddock runtime: listening on 0.0.0.0:11434",
        "{lines:?}"
    );
    assert!(
        lines.last().unwrap().contains("RUNNING on FARGATE_SPOT"),
        "{lines:?}"
    );

    ecs.stop_task()
        .cluster(&fx.cluster)
        .task(task_arn(&h))
        .reason("Your Spot Task was interrupted.")
        .send()
        .await
        .unwrap();
    match d.status(&h).await.unwrap() {
        Observed::Exited { reason, .. } => {
            assert!(
                reason.starts_with("Your Spot Task was interrupted."),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    // Launching again starts a new task.
    let again = d.launch(&s).await.unwrap();
    assert_ne!(task_arn(&again), task_arn(&h));
    d.stop(&again).await.unwrap();
}

#[tokio::test]
async fn many_statuses_cost_one_call_per_hundred() {
    let (d, _, _) = driver("batch").await;
    let t = ComputeTable::builtin();
    let mut handles = Vec::new();
    for _ in 0..3 {
        handles.push(
            d.launch(&spec(t.fargate_spec(256, 512).unwrap()))
                .await
                .unwrap(),
        );
    }
    // One handle of a task ECS never had.
    let mut gone = handles[0].clone();
    gone.data["task_arn"] = serde_json::json!("arn:aws:ecs:us-east-1:123456789012:task/batch/0000");
    handles.push(gone);
    let seen = d.status_many(&handles).await;
    assert_eq!(seen.len(), 4);
    for s in &seen[..3] {
        assert!(matches!(s, Ok(Observed::Alive { .. })), "{s:?}");
    }
    assert!(matches!(seen[3], Ok(Observed::Gone)), "{:?}", seen[3]);
    assert!(d.adopt(&[]).await.unwrap().is_empty());
}
