//! The shared store conformance suite, plus what only a file-backed SQLite
//! store has: reopening, file permissions, and concurrent writers on one
//! file.

use chrono::Utc;
use paddock_core::compute::ComputeSpec;
use paddock_core::instance::{Instance, InstanceState, Transition};
use paddock_core::store::{Store, StoreError};
use paddock_core::{InstanceId, ModelId, UserId};
use paddock_store_sqlite::SqliteStore;
use std::path::PathBuf;

/// A new directory under cargo's per-target scratch space, kept after the
/// test (the store must outlive any guard the test could hold, and the
/// conformance macro takes only the store); `cargo clean` removes it.
fn scratch_dir() -> PathBuf {
    tempfile::Builder::new()
        .prefix("sqlite-store-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create a scratch directory")
        .keep()
}

/// An empty store in a fresh file.
async fn fresh_store() -> SqliteStore {
    SqliteStore::open(&scratch_dir().join("paddock.db"))
        .await
        .expect("open a fresh store")
}

paddock_core::store_conformance_tests!(fresh_store().await);
paddock_core::credential_store_conformance_tests!(fresh_store().await);

fn pending_instance() -> (Instance, Transition) {
    let now = Utc::now();
    let i = Instance::new(
        UserId::generate(),
        ModelId::new("gemma3:270m"),
        "Gemma 3 270M".into(),
        ComputeSpec::Gpu {
            instance_type: "g5.xlarge".into(),
            gpu_count: 1,
            spot: false,
        },
        0,
        now,
    );
    let t = Transition {
        instance_id: i.instance_id.clone(),
        from: None,
        to: InstanceState::Pending,
        reason: "deploy requested".into(),
        at: now,
    };
    (i, t)
}

#[tokio::test]
async fn reopening_keeps_data_and_migrations_run_once() {
    let path = scratch_dir().join("nested/dir/paddock.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let (i, t) = pending_instance();
    store.create_instance(&i, &t).await.unwrap();
    store.close().await;

    let reopened = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        reopened.get_instance(&i.instance_id).await.unwrap(),
        Some(i.clone())
    );
    assert_eq!(
        reopened.list_transitions(&i.instance_id).await.unwrap(),
        vec![t]
    );
    // A second open while the first is still live is harmless too.
    let again = SqliteStore::open(&path).await.unwrap();
    again.ping().await.unwrap();
    assert_eq!(again.list_instances(None).await.unwrap(), vec![i]);
}

#[cfg(unix)]
#[tokio::test]
async fn database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch_dir();
    let path = dir.join("paddock.db");
    let store = SqliteStore::open(&path).await.unwrap();
    // Write something so the WAL and shared-memory files exist.
    let (i, t) = pending_instance();
    store.create_instance(&i, &t).await.unwrap();
    for name in ["paddock.db", "paddock.db-wal", "paddock.db-shm"] {
        let mode = std::fs::metadata(dir.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} has mode {:o}", mode & 0o777);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_from_one_version_exactly_one_wins() {
    let store = fresh_store().await;
    let (i, t) = pending_instance();
    store.create_instance(&i, &t).await.unwrap();

    for round in 0..20 {
        let base = store.get_instance(&i.instance_id).await.unwrap().unwrap();
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let store = store.clone();
                let mut mine = base.clone();
                tokio::spawn(async move {
                    mine.status_reason = Some(format!("round {round} writer {w}"));
                    store.update_instance(&mine, None).await
                })
            })
            .collect();
        let mut wins = Vec::new();
        for w in writers {
            match w.await.unwrap() {
                Ok(stored) => wins.push(stored),
                Err(StoreError::Stale(_)) => {}
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(wins.len(), 1, "round {round}: exactly one writer wins");
        let now = store.get_instance(&i.instance_id).await.unwrap().unwrap();
        assert_eq!(now, wins[0]);
        assert_eq!(now.version, base.version + 1);
    }
}

#[tokio::test]
async fn updates_report_missing_instances_and_roundtrip_every_field() {
    let store = fresh_store().await;
    let (mut i, first) = pending_instance();
    assert!(matches!(
        store.update_instance(&i, None).await,
        Err(StoreError::NotFound(_))
    ));
    store.create_instance(&i, &first).await.unwrap();
    assert!(matches!(
        store.create_instance(&i, &first).await,
        Err(StoreError::Conflict(_))
    ));

    let t = i
        .transition(InstanceState::Starting, "launching", Utc::now())
        .unwrap();
    i.handle = Some(paddock_core::driver::Handle {
        driver: "docker".into(),
        data: serde_json::json!({"container": "abc", "port": 41234, "ratio": 0.1}),
    });
    i.upstream_url = Some("http://127.0.0.1:41234".into());
    i.restart_count = 3;
    i.billed_secs = 12_345;
    let stored = store.update_instance(&i, Some(&t)).await.unwrap();
    assert_eq!(
        store.get_instance(&i.instance_id).await.unwrap(),
        Some(stored)
    );
    assert_eq!(
        store.list_transitions(&i.instance_id).await.unwrap(),
        vec![first, t]
    );
    // Deleting twice is fine; the history is gone with the record.
    store.delete_instance(&i.instance_id).await.unwrap();
    store.delete_instance(&i.instance_id).await.unwrap();
    assert!(store
        .list_transitions(&InstanceId::new(i.instance_id.as_str()))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn catalog_entries_roundtrip_exactly() {
    let store = fresh_store().await;
    for mut m in paddock_core::catalog::default_catalog() {
        store.insert_model_if_absent(&m).await.unwrap();
        assert_eq!(
            store.get_model(&m.model_id).await.unwrap().as_ref(),
            Some(&m)
        );
        m.updated_at = Some(Utc::now());
        m.description.push_str(" (edited)");
        let stored = store.update_model(&m).await.unwrap();
        assert_eq!(store.get_model(&m.model_id).await.unwrap(), Some(stored));
    }
}

#[tokio::test]
async fn emails_are_unique_regardless_of_case() {
    let store = fresh_store().await;
    let now = Utc::now();
    let mut u = paddock_core::user::User {
        user_id: UserId::generate(),
        email: "a@example.com".into(),
        password_hash: "$argon2id$secret-hash".into(),
        role: paddock_core::user::Role::User,
        confirmed: true,
        disabled: false,
        must_change_password: false,
        created_at: now,
        updated_at: now,
        version: 0,
    };
    store.create_user(&u).await.unwrap();
    assert_eq!(store.get_user(&u.user_id).await.unwrap(), Some(u.clone()));
    u.user_id = UserId::generate();
    u.email = "A@Example.com".into();
    match store.create_user(&u).await {
        Err(StoreError::Conflict(what)) => {
            assert_eq!(what, "user with this email");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}
