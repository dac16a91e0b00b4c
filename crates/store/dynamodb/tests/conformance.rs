//! The shared store conformance suite against DynamoDB (moto, on
//! 127.0.0.1), plus what only DynamoDB needs: two control-plane replicas
//! racing on one instance, and the tables being created or required.

use paddock_core::compute::ComputeSpec;
use paddock_core::instance::{Instance, InstanceState, Transition};
use paddock_core::store::{Store, StoreError};
use paddock_core::testkit::moto::Moto;
use paddock_core::{ModelId, UserId};
use paddock_store_dynamodb::{DynamoSettings, DynamoStore};

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

/// Tables of their own for each test (a random prefix), created.
async fn fresh_store() -> DynamoStore {
    let prefix = format!("t{:08x}-", rand::random::<u32>());
    DynamoStore::open(
        &sdk().await,
        DynamoSettings {
            table_prefix: prefix,
            create_tables: true,
            usage_retention_days: 90,
        },
    )
    .await
    .expect("open a store on the emulator")
}

paddock_core::store_conformance_tests!(fresh_store().await);
paddock_core::credential_store_conformance_tests!(fresh_store().await);

#[tokio::test]
async fn missing_tables_are_named_unless_they_may_be_created() {
    let err = DynamoStore::open(
        &sdk().await,
        DynamoSettings {
            table_prefix: "absent-".into(),
            create_tables: false,
            usage_retention_days: 90,
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("absent-users"), "{err}");
    assert!(err.contains("create_tables = true"), "{err}");

    // A second replica opening tables another made finds them.
    let first = fresh_store().await;
    let prefix = first.tables().users.trim_end_matches("users").to_owned();
    let second = DynamoStore::open(
        &sdk().await,
        DynamoSettings {
            table_prefix: prefix,
            create_tables: false,
            usage_retention_days: 90,
        },
    )
    .await
    .unwrap();
    second.ping().await.unwrap();
}

/// Two replicas of the control plane (two clients, same tables) write one
/// instance's transition from the same read: exactly one wins, and the
/// history holds exactly its entry.
#[tokio::test]
async fn two_replicas_racing_on_an_instance_lose_no_transition() {
    let a = fresh_store().await;
    let prefix = a.tables().users.trim_end_matches("users").to_owned();
    let b = DynamoStore::open(
        &sdk().await,
        DynamoSettings {
            table_prefix: prefix,
            create_tables: false,
            usage_retention_days: 90,
        },
    )
    .await
    .unwrap();
    let now = chrono::Utc::now();
    let i = Instance::new(
        UserId::generate(),
        ModelId::new("gemma3:270m"),
        "Gemma 3 270M".into(),
        ComputeSpec::Cpu {
            vcpu_milli: 1000,
            memory_mb: 2048,
            spot: false,
        },
        900,
        now,
    );
    let first = Transition {
        instance_id: i.instance_id.clone(),
        from: None,
        to: InstanceState::Pending,
        reason: "deploy requested".into(),
        at: now,
    };
    a.create_instance(&i, &first).await.unwrap();
    for round in 0..10 {
        let read_a = a.get_instance(&i.instance_id).await.unwrap().unwrap();
        let read_b = b.get_instance(&i.instance_id).await.unwrap().unwrap();
        assert_eq!(read_a, read_b);
        let mut ia = read_a.clone();
        let ta = Transition {
            reason: format!("replica a, round {round}"),
            ..first.clone()
        };
        ia.restart_count += 1;
        let mut ib = read_b.clone();
        ib.restart_count += 2;
        let tb = Transition {
            reason: format!("replica b, round {round}"),
            ..first.clone()
        };
        let (ra, rb) = tokio::join!(
            a.update_instance(&ia, Some(&ta)),
            b.update_instance(&ib, Some(&tb))
        );
        let won: Vec<bool> = [&ra, &rb].iter().map(|r| r.is_ok()).collect();
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "round {round}");
        for r in [&ra, &rb] {
            assert!(matches!(r, Ok(_) | Err(StoreError::Stale(_))), "{r:?}");
        }
        let history = a.list_transitions(&i.instance_id).await.unwrap();
        assert_eq!(history.len(), round + 2, "round {round}: {history:?}");
        let last = &history.last().unwrap().reason;
        let winner = if won[0] { "a" } else { "b" };
        assert_eq!(last, &format!("replica {winner}, round {round}"));
        let stored = a.get_instance(&i.instance_id).await.unwrap().unwrap();
        assert_eq!(stored.version, read_a.version + 1);
    }
}
