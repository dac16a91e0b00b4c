//! Conformance suites that every backend runs unchanged.
//!
//! `store_conformance_tests!(make)` expands to one `#[tokio::test]` per
//! check, where `make` is an async expression yielding a fresh, empty store.
//! A new backend (DynamoDB) adds one line in its tests and gets them all.
//! `identity_conformance_tests!(make)` does the same for identities
//! ([`identity`]).

use crate::catalog::default_catalog;
use crate::compute::ComputeSpec;
use crate::instance::{Instance, InstanceState, Transition};
use crate::store::{CredentialStore, Store, StoreError, UsageQuery};
use crate::user::{ApiKey, ConfirmationCode, RefreshToken, Role, UsageRecord, User};
use crate::{ApiKeyId, InstanceId, ModelId, UserId};
use chrono::{Duration, Utc};

pub mod identity;
pub mod moto;

/// Expands to the store conformance tests for a backend.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@each $make;
            users_roundtrip_and_unique_email,
            user_updates_are_compare_and_swap,
            users_are_deleted_with_their_email,
            catalog_insert_if_absent_keeps_edits,
            catalog_updates_are_compare_and_swap,
            instances_versioned_updates_and_history,
            instances_are_listed_per_user,
            api_keys,
            api_key_revocation_survives_last_use,
            usage_filters,
            usage_batches_keep_every_record,
            usage_adds_up_by_day_and_model,
            leases_are_held_by_one_until_they_expire);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let store = $make;
                $crate::testkit::$name(&store).await;
            }
        )*
    };
}

/// Expands to the credential store conformance tests for a backend that
/// keeps the built-in identity's records.
#[macro_export]
macro_rules! credential_store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@each $make;
            confirmation_codes,
            confirmation_attempts_count_atomically,
            refresh_tokens_rotate_once);
    };
}

fn user(email: &str) -> User {
    let now = Utc::now();
    User {
        user_id: UserId::generate(),
        email: email.to_owned(),
        password_hash: "$argon2id$fake".into(),
        role: Role::User,
        confirmed: false,
        disabled: false,
        must_change_password: false,
        created_at: now,
        updated_at: now,
        version: 0,
    }
}

fn instance(user: &UserId) -> (Instance, Transition) {
    let now = Utc::now();
    let i = Instance::new(
        user.clone(),
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
    let t = Transition {
        instance_id: i.instance_id.clone(),
        from: None,
        to: InstanceState::Pending,
        reason: "deploy requested".into(),
        at: now,
    };
    (i, t)
}

pub async fn users_roundtrip_and_unique_email(s: &dyn Store) {
    let mut u = user("a@example.com");
    s.create_user(&u).await.unwrap();
    let got = s.get_user(&u.user_id).await.unwrap().unwrap();
    assert_eq!(got.email, "a@example.com");
    assert_eq!(got.password_hash, u.password_hash);
    assert_eq!(got.role, Role::User);
    let by_mail = s.get_user_by_email("a@example.com").await.unwrap().unwrap();
    assert_eq!(by_mail.user_id, u.user_id);
    assert!(s
        .get_user_by_email("b@example.com")
        .await
        .unwrap()
        .is_none());

    let dup = user("a@example.com");
    assert!(matches!(
        s.create_user(&dup).await,
        Err(StoreError::Conflict(_))
    ));

    u.confirmed = true;
    u.role = Role::Admin;
    let stored = s.update_user(&u).await.unwrap();
    let got = s.get_user(&u.user_id).await.unwrap().unwrap();
    assert!(got.confirmed);
    assert_eq!(got.role, Role::Admin);
    assert_eq!(got, stored);
    assert!(matches!(
        s.update_user(&user("ghost@example.com")).await,
        Err(StoreError::NotFound(_))
    ));

    s.create_user(&user("c@example.com")).await.unwrap();
    let all = s.list_users().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].email, "a@example.com");
}

/// A user write made from an old read is refused, so that (for example) a
/// password change racing an admin's disable cannot re-enable the user.
/// A deleted user is gone and their email free for a new account.
pub async fn users_are_deleted_with_their_email(s: &dyn Store) {
    let u = user("gone@example.com");
    s.create_user(&u).await.unwrap();
    s.delete_user(&u.user_id).await.unwrap();
    assert!(s.get_user(&u.user_id).await.unwrap().is_none());
    assert!(s
        .get_user_by_email("gone@example.com")
        .await
        .unwrap()
        .is_none());
    assert!(s.list_users().await.unwrap().is_empty());
    // Deleting again is not an error; the email can sign up again.
    s.delete_user(&u.user_id).await.unwrap();
    s.create_user(&user("gone@example.com")).await.unwrap();
}

pub async fn user_updates_are_compare_and_swap(s: &dyn Store) {
    let u = user("cas@example.com");
    s.create_user(&u).await.unwrap();
    let read = s.get_user(&u.user_id).await.unwrap().unwrap();
    assert_eq!(read.version, 0);

    // Two edits from the same read: an admin disables, the user changes
    // the password.
    let mut disable = read.clone();
    disable.disabled = true;
    let mut new_password = read.clone();
    new_password.password_hash = "$argon2id$new".into();
    let stored = s.update_user(&disable).await.unwrap();
    assert_eq!(stored.version, read.version + 1);
    assert!(matches!(
        s.update_user(&new_password).await,
        Err(StoreError::Stale(_))
    ));
    let got = s.get_user(&u.user_id).await.unwrap().unwrap();
    assert!(got.disabled, "the stale write did not re-enable the user");
    assert_eq!(got.password_hash, read.password_hash);
    assert_eq!(got.version, stored.version);

    // Re-read and retried, the change applies on top of the disable.
    let mut retried = got;
    retried.password_hash = "$argon2id$new".into();
    let stored = s.update_user(&retried).await.unwrap();
    let got = s.get_user(&u.user_id).await.unwrap().unwrap();
    assert!(got.disabled);
    assert_eq!(got.password_hash, "$argon2id$new");
    assert_eq!(got, stored);

    // Of writers racing from one version, exactly one wins.
    let base = got;
    let writes: Vec<User> = (0..4)
        .map(|i| User {
            password_hash: format!("$argon2id$racer{i}"),
            ..base.clone()
        })
        .collect();
    let (a, b, c, d) = tokio::join!(
        s.update_user(&writes[0]),
        s.update_user(&writes[1]),
        s.update_user(&writes[2]),
        s.update_user(&writes[3]),
    );
    let results = [a, b, c, d];
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(_) | Err(StoreError::Stale(_)))));
    assert_eq!(
        s.get_user(&u.user_id).await.unwrap().unwrap().version,
        base.version + 1
    );
}

pub async fn confirmation_codes(s: &dyn CredentialStore) {
    let c = ConfirmationCode {
        email: "a@example.com".into(),
        code_hash: "h1".into(),
        expires_at: Utc::now() + Duration::hours(24),
        attempts: 0,
    };
    s.put_confirmation(&c).await.unwrap();
    let c2 = ConfirmationCode {
        code_hash: "h2".into(),
        ..c.clone()
    };
    s.put_confirmation(&c2).await.unwrap();
    let got = s.get_confirmation("a@example.com").await.unwrap().unwrap();
    assert_eq!(got.code_hash, "h2");
    s.delete_confirmation("a@example.com").await.unwrap();
    assert!(s.get_confirmation("a@example.com").await.unwrap().is_none());
    s.delete_confirmation("a@example.com").await.unwrap();
}

/// Every attempt at a code is counted, also when many arrive at once, so
/// that the limit on guesses holds.
pub async fn confirmation_attempts_count_atomically(s: &dyn CredentialStore) {
    assert!(s
        .count_confirmation_attempt("none@example.com")
        .await
        .unwrap()
        .is_none());
    let c = ConfirmationCode {
        email: "a@example.com".into(),
        code_hash: "h1".into(),
        expires_at: Utc::now() + Duration::hours(24),
        attempts: 0,
    };
    s.put_confirmation(&c).await.unwrap();
    let first = s
        .count_confirmation_attempt("a@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.attempts, 1);
    assert_eq!(first.code_hash, "h1");
    assert_eq!(first.expires_at, c.expires_at);

    let attempt = || s.count_confirmation_attempt("a@example.com");
    let counted = tokio::join!(
        attempt(),
        attempt(),
        attempt(),
        attempt(),
        attempt(),
        attempt(),
        attempt(),
        attempt()
    );
    let mut seen: Vec<u32> = [
        counted.0, counted.1, counted.2, counted.3, counted.4, counted.5, counted.6, counted.7,
    ]
    .into_iter()
    .map(|r| r.unwrap().unwrap().attempts)
    .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (2..=9).collect::<Vec<u32>>(),
        "each attempt counted once"
    );
    let got = s.get_confirmation("a@example.com").await.unwrap().unwrap();
    assert_eq!(got.attempts, 9);

    // A new code starts from nothing.
    s.put_confirmation(&c).await.unwrap();
    assert_eq!(
        s.get_confirmation("a@example.com")
            .await
            .unwrap()
            .unwrap()
            .attempts,
        0
    );
}

pub async fn refresh_tokens_rotate_once(s: &dyn CredentialStore) {
    let u = UserId::generate();
    let now = Utc::now();
    let t = RefreshToken {
        token_hash: "t1".into(),
        user_id: u.clone(),
        family_id: "f1".into(),
        created_at: now,
        expires_at: now + Duration::days(30),
        used_at: None,
        revoked_at: None,
    };
    s.insert_refresh_token(&t).await.unwrap();
    let t2 = RefreshToken {
        token_hash: "t2".into(),
        ..t.clone()
    };
    s.insert_refresh_token(&t2).await.unwrap();
    assert!(s.consume_refresh_token("t1", now).await.unwrap());
    assert!(!s.consume_refresh_token("t1", now).await.unwrap());
    assert!(!s.consume_refresh_token("missing", now).await.unwrap());
    let got = s.get_refresh_token("t1").await.unwrap().unwrap();
    assert!(got.used_at.is_some());
    s.revoke_refresh_family("f1", now).await.unwrap();
    assert!(s
        .get_refresh_token("t2")
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
    assert!(!s.consume_refresh_token("t2", now).await.unwrap());

    let t3 = RefreshToken {
        token_hash: "t3".into(),
        family_id: "f2".into(),
        ..t.clone()
    };
    s.insert_refresh_token(&t3).await.unwrap();
    s.revoke_user_refresh_tokens(&u, now).await.unwrap();
    assert!(!s.consume_refresh_token("t3", now).await.unwrap());
}

pub async fn catalog_insert_if_absent_keeps_edits(s: &dyn Store) {
    let catalog = default_catalog();
    for m in &catalog {
        assert!(s.insert_model_if_absent(m).await.unwrap());
    }
    let mut edited = catalog[0].clone();
    edited.description = "edited by an admin".into();
    edited.is_active = false;
    edited.kind = crate::catalog::ModelKind::Base;
    let stored = s.update_model(&edited).await.unwrap();
    assert_eq!(stored.version, edited.version + 1);
    for m in &catalog {
        assert!(!s.insert_model_if_absent(m).await.unwrap());
    }
    let all = s.list_models().await.unwrap();
    assert_eq!(all.len(), catalog.len());
    let got = s.get_model(&edited.model_id).await.unwrap().unwrap();
    assert_eq!(got.description, "edited by an admin");
    assert!(!got.is_active);
    assert_eq!(got.kind, crate::catalog::ModelKind::Base);
    assert_eq!(got.cpu_requirements, edited.cpu_requirements);
    assert_eq!(got.supported_tasks, edited.supported_tasks);
    assert!(s
        .get_model(&ModelId::new("nope:1b"))
        .await
        .unwrap()
        .is_none());
}

/// Two edits of a catalog entry from one read: the second is refused, so
/// it cannot undo the first.
pub async fn catalog_updates_are_compare_and_swap(s: &dyn Store) {
    let m = default_catalog().remove(0);
    assert!(matches!(
        s.update_model(&m).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(s.insert_model_if_absent(&m).await.unwrap());
    let read = s.get_model(&m.model_id).await.unwrap().unwrap();
    assert_eq!(read, m);
    let mut deactivate = read.clone();
    deactivate.is_active = false;
    let mut describe = read.clone();
    describe.description = "edited".into();
    let stored = s.update_model(&deactivate).await.unwrap();
    assert!(matches!(
        s.update_model(&describe).await,
        Err(StoreError::Stale(_))
    ));
    let got = s.get_model(&m.model_id).await.unwrap().unwrap();
    assert_eq!(got, stored);
    assert!(!got.is_active);
    assert_eq!(got.description, m.description);
    let mut retried = got;
    retried.description = "edited".into();
    s.update_model(&retried).await.unwrap();
    let got = s.get_model(&m.model_id).await.unwrap().unwrap();
    assert!(!got.is_active);
    assert_eq!(got.description, "edited");
    assert_eq!(got.version, read.version + 2);
}

pub async fn instances_versioned_updates_and_history(s: &dyn Store) {
    let u = UserId::generate();
    let (mut i, first) = instance(&u);
    s.create_instance(&i, &first).await.unwrap();
    let got = s.get_instance(&i.instance_id).await.unwrap().unwrap();
    assert_eq!(got, i);

    let t = i
        .transition(InstanceState::Starting, "launching", Utc::now())
        .unwrap();
    let handle = crate::driver::Handle {
        driver: "process".into(),
        data: serde_json::json!({"pid": 42}),
    };
    i.handle = Some(handle.clone());
    assert!(i.name.starts_with("gemma3-270m-"), "{}", i.name);
    i.name = "night shift".into();
    let stored = s.update_instance(&i, Some(&t)).await.unwrap();
    assert_eq!(stored.version, i.version + 1);
    assert_eq!(
        s.get_instance(&i.instance_id).await.unwrap().unwrap().name,
        "night shift"
    );
    assert_eq!(stored.status, InstanceState::Starting);
    assert_eq!(stored.handle, Some(handle));

    // Writing from the old version is refused.
    assert!(matches!(
        s.update_instance(&i, None).await,
        Err(StoreError::Stale(_))
    ));
    let history = s.list_transitions(&i.instance_id).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].to, InstanceState::Pending);
    assert_eq!(history[1].from, Some(InstanceState::Pending));
    assert_eq!(history[1].to, InstanceState::Starting);
    assert_eq!(history[1].reason, "launching");

    s.delete_instance(&i.instance_id).await.unwrap();
    assert!(s.get_instance(&i.instance_id).await.unwrap().is_none());
    assert!(s.list_transitions(&i.instance_id).await.unwrap().is_empty());
    assert!(s
        .get_instance(&InstanceId::new("i-missing"))
        .await
        .unwrap()
        .is_none());
}

pub async fn instances_are_listed_per_user(s: &dyn Store) {
    let a = UserId::generate();
    let b = UserId::generate();
    for owner in [&a, &a, &b] {
        let (i, t) = instance(owner);
        s.create_instance(&i, &t).await.unwrap();
    }
    assert_eq!(s.list_instances(Some(&a)).await.unwrap().len(), 2);
    assert_eq!(s.list_instances(Some(&b)).await.unwrap().len(), 1);
    assert_eq!(s.list_instances(None).await.unwrap().len(), 3);
}

pub async fn api_keys(s: &dyn Store) {
    let u = UserId::generate();
    let now = Utc::now();
    let mut k = ApiKey {
        key_id: ApiKeyId::generate(),
        user_id: u.clone(),
        name: "ci".into(),
        prefix: "pdk_abcd".into(),
        secret_hash: "hash1".into(),
        created_at: now,
        expires_at: Some(now + Duration::days(1)),
        last_used_at: None,
        allowed_models: Some(vec![ModelId::new("gemma3:270m")]),
        revoked_at: None,
    };
    s.create_api_key(&k).await.unwrap();
    let got = s.get_api_key_by_hash("hash1").await.unwrap().unwrap();
    assert_eq!(got.key_id, k.key_id);
    assert_eq!(got.allowed_models, k.allowed_models);
    assert_eq!(got.secret_hash, "hash1");
    assert!(s.get_api_key_by_hash("other").await.unwrap().is_none());

    // Last use only moves forward.
    let later = now + Duration::seconds(90);
    s.touch_api_key(&k.key_id, later).await.unwrap();
    s.touch_api_key(&k.key_id, now).await.unwrap();
    let got = s.get_api_key(&k.key_id).await.unwrap().unwrap();
    assert_eq!(got.last_used_at, Some(later));
    assert!(got.revoked_at.is_none());

    // Revocation keeps the first time; the rest of the record is untouched.
    assert!(s.revoke_api_key(&k.key_id, now).await.unwrap());
    assert!(!s.revoke_api_key(&k.key_id, later).await.unwrap());
    let got = s.get_api_key(&k.key_id).await.unwrap().unwrap();
    assert_eq!(got.revoked_at, Some(now));
    k.revoked_at = Some(now);
    k.last_used_at = Some(later);
    assert_eq!(got, k);
    assert!(!s.revoke_api_key(&ApiKeyId::generate(), now).await.unwrap());
    s.touch_api_key(&ApiKeyId::generate(), now).await.unwrap();
    assert_eq!(s.list_api_keys(&u).await.unwrap().len(), 1);
    assert!(s
        .list_api_keys(&UserId::generate())
        .await
        .unwrap()
        .is_empty());
}

/// A revocation is final: a last-use update racing it (authentication
/// records the use of a key it read before the revocation) never undoes it,
/// whichever lands first.
pub async fn api_key_revocation_survives_last_use(s: &dyn Store) {
    let u = UserId::generate();
    let t0 = Utc::now();
    for round in 0..50i64 {
        let k = ApiKey {
            key_id: ApiKeyId::generate(),
            user_id: u.clone(),
            name: format!("round {round}"),
            prefix: "pdk_abcd".into(),
            secret_hash: format!("race-{round}"),
            created_at: t0,
            expires_at: None,
            last_used_at: None,
            allowed_models: None,
            revoked_at: None,
        };
        s.create_api_key(&k).await.unwrap();
        let revoked_at = t0 + Duration::seconds(round);
        let used_at = revoked_at + Duration::milliseconds(1);
        // The use before or after the revocation, by turns.
        let (touched, revoked) = if round % 2 == 0 {
            tokio::join!(
                s.touch_api_key(&k.key_id, used_at),
                s.revoke_api_key(&k.key_id, revoked_at)
            )
        } else {
            let (r, t) = tokio::join!(
                s.revoke_api_key(&k.key_id, revoked_at),
                s.touch_api_key(&k.key_id, used_at)
            );
            (t, r)
        };
        touched.unwrap();
        assert!(revoked.unwrap(), "round {round}: the revocation took");
        let got = s.get_api_key(&k.key_id).await.unwrap().unwrap();
        assert_eq!(got.revoked_at, Some(revoked_at), "round {round}");

        // A use recorded after the revocation changes nothing.
        s.touch_api_key(&k.key_id, used_at + Duration::seconds(60))
            .await
            .unwrap();
        let after = s.get_api_key(&k.key_id).await.unwrap().unwrap();
        assert_eq!(after, got, "round {round}");
        assert!(s
            .get_api_key_by_hash(&k.secret_hash)
            .await
            .unwrap()
            .is_some_and(|k| k.revoked_at.is_some()));
    }
    let listed = s.list_api_keys(&u).await.unwrap();
    assert_eq!(listed.len(), 50);
    assert!(listed.iter().all(|k| k.revoked_at.is_some()));
}

/// A successful request's usage record on a fresh instance.
fn usage_record(
    user: &UserId,
    at: chrono::DateTime<Utc>,
    model: &str,
    prompt_tokens: u64,
    completion_tokens: u64,
) -> UsageRecord {
    UsageRecord {
        at,
        user_id: user.clone(),
        api_key_id: None,
        instance_id: InstanceId::generate(),
        model_id: ModelId::new(model),
        route: "/api/chat".into(),
        prompt_tokens,
        completion_tokens,
        duration_ms: 5,
        status: 200,
    }
}

pub async fn usage_filters(s: &dyn Store) {
    let a = UserId::generate();
    let b = UserId::generate();
    let t0 = Utc::now() - Duration::days(2);
    for (who, offset_h, tokens) in [(&a, 0, 10), (&a, 30, 20), (&b, 31, 40)] {
        s.record_usage(&usage_record(
            who,
            t0 + Duration::hours(offset_h),
            "gemma3:270m",
            tokens,
            tokens * 2,
        ))
        .await
        .unwrap();
    }
    let all = s.list_usage(&UsageQuery::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    let mine = s
        .list_usage(&UsageQuery {
            user_id: Some(a.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[0].prompt_tokens, 10);
    let recent = s
        .list_usage(&UsageQuery {
            user_id: Some(a.clone()),
            since: Some(t0 + Duration::hours(1)),
            until: None,
        })
        .await
        .unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].completion_tokens, 40);
}

pub async fn usage_batches_keep_every_record(s: &dyn Store) {
    let u = UserId::generate();
    let t0 = Utc::now() - Duration::hours(1);
    // Sizes around the backends' statement sizes, so every split is used.
    for n in [1usize, 31, 32, 45, 100] {
        let batch: Vec<UsageRecord> = (0..n)
            .map(|i| {
                let at = t0 + Duration::milliseconds(i as i64);
                usage_record(&u, at, &format!("m{n}"), i as u64, 1)
            })
            .collect();
        s.record_usage_batch(&batch).await.unwrap();
        let got: Vec<UsageRecord> = s
            .list_usage(&UsageQuery {
                user_id: Some(u.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.model_id.as_str() == format!("m{n}"))
            .collect();
        assert_eq!(got.len(), n, "batch of {n}");
        let tokens: Vec<u64> = got.iter().map(|r| r.prompt_tokens).collect();
        assert_eq!(tokens, (0..n as u64).collect::<Vec<_>>(), "batch of {n}");
    }
}

pub async fn usage_adds_up_by_day_and_model(s: &dyn Store) {
    let a = UserId::generate();
    let b = UserId::generate();
    let today = Utc::now();
    let yesterday = today - Duration::days(1);
    let mut failed = usage_record(&a, today, "m1", 7, 1);
    failed.status = 499;
    // One at a time and in a batch alike.
    s.record_usage(&usage_record(&a, yesterday, "m1", 1, 2))
        .await
        .unwrap();
    s.record_usage_batch(&[
        usage_record(&a, today, "m1", 3, 4),
        failed,
        usage_record(&a, today, "m2", 5, 6),
        usage_record(&b, today, "m1", 100, 200),
    ])
    .await
    .unwrap();
    s.record_usage_batch(&[usage_record(&a, today, "m1", 10, 20)])
        .await
        .unwrap();
    let row = |days: &[crate::store::UsageDay], day: chrono::NaiveDate, model: &str| {
        days.iter()
            .find(|d| d.day == day && d.model_id.as_str() == model)
            .map(|d| (d.requests, d.errors, d.prompt_tokens, d.completion_tokens))
    };
    let since = yesterday.date_naive();
    let mine = s.usage_by_day(Some(&a), since).await.unwrap();
    assert_eq!(mine.len(), 3, "{mine:?}");
    assert_eq!(row(&mine, since, "m1"), Some((1, 0, 1, 2)));
    assert_eq!(row(&mine, today.date_naive(), "m1"), Some((3, 1, 20, 25)));
    assert_eq!(row(&mine, today.date_naive(), "m2"), Some((1, 0, 5, 6)));
    assert!(mine
        .windows(2)
        .all(|w| (w[0].day, &w[0].model_id) < (w[1].day, &w[1].model_id)));
    let only_today = s.usage_by_day(Some(&a), today.date_naive()).await.unwrap();
    assert_eq!(only_today.len(), 2);
    // Everyone's: other users' rows in the same store are included too.
    let all = s.usage_by_day(None, since).await.unwrap();
    let (requests, _, prompt, _) = row(&all, today.date_naive(), "m1").unwrap();
    assert!(requests >= 4 && prompt >= 120, "{all:?}");
}

/// A lease is held by one holder at a time: renewed by it, refused to
/// others until it expires or is released.
pub async fn leases_are_held_by_one_until_they_expire(s: &dyn Store) {
    let t0 = Utc::now();
    let ttl = Duration::seconds(10);
    assert!(s
        .acquire_lease("reconciler", "a", t0 + ttl, t0)
        .await
        .unwrap());
    assert!(!s
        .acquire_lease("reconciler", "b", t0 + ttl, t0)
        .await
        .unwrap());
    // Renewed by its holder; another lease is apart.
    let t1 = t0 + Duration::seconds(5);
    assert!(s
        .acquire_lease("reconciler", "a", t1 + ttl, t1)
        .await
        .unwrap());
    assert!(s.acquire_lease("other", "b", t1 + ttl, t1).await.unwrap());
    assert!(
        !s.acquire_lease("reconciler", "b", t1 + ttl, t0 + ttl)
            .await
            .unwrap(),
        "the renewal holds"
    );
    // Expired: taken over, and the old holder is refused.
    let t2 = t1 + ttl + Duration::seconds(1);
    assert!(s
        .acquire_lease("reconciler", "b", t2 + ttl, t2)
        .await
        .unwrap());
    assert!(!s
        .acquire_lease("reconciler", "a", t2 + ttl, t2)
        .await
        .unwrap());
    // Released by a non-holder: nothing; by its holder: free at once.
    s.release_lease("reconciler", "a").await.unwrap();
    assert!(!s
        .acquire_lease("reconciler", "a", t2 + ttl, t2)
        .await
        .unwrap());
    s.release_lease("reconciler", "b").await.unwrap();
    assert!(s
        .acquire_lease("reconciler", "a", t2 + ttl, t2)
        .await
        .unwrap());
    // Racing takers of a free lease: exactly one wins.
    let t3 = t2 + ttl * 2;
    let (x, y, z) = tokio::join!(
        s.acquire_lease("race", "x", t3 + ttl, t3),
        s.acquire_lease("race", "y", t3 + ttl, t3),
        s.acquire_lease("race", "z", t3 + ttl, t3),
    );
    let won = [x.unwrap(), y.unwrap(), z.unwrap()];
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}

/// Checks a compute driver's contract with one launch spec: launching is
/// idempotent, the server becomes reachable (`probe` says when an endpoint
/// answers), logs are readable, adoption keeps known instances and ends
/// unknown ones, stopping is final and idempotent, and a graceful shutdown
/// of the control plane either keeps the model server or ends it, as it
/// says.
pub async fn driver_conformance<P, F>(
    driver: &dyn crate::driver::ComputeDriver,
    spec: crate::driver::LaunchSpec,
    probe: P,
) where
    P: Fn(String) -> F,
    F: std::future::Future<Output = bool>,
{
    use crate::driver::Observed;
    use std::time::Duration;

    async fn wait_alive(
        driver: &dyn crate::driver::ComputeDriver,
        h: &crate::driver::Handle,
    ) -> String {
        for _ in 0..600 {
            match driver.status(h).await.expect("status") {
                Observed::Alive { endpoint, .. } => return endpoint,
                Observed::Exited { reason, .. } => panic!("exited while starting: {reason}"),
                Observed::Gone => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never alive");
    }

    async fn wait_down(driver: &dyn crate::driver::ComputeDriver, h: &crate::driver::Handle) {
        for _ in 0..200 {
            if !matches!(
                driver.status(h).await.expect("status"),
                Observed::Alive { .. }
            ) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("still alive after stop");
    }

    // Launch is idempotent per instance, also when two launches race.
    let (h, racing) = tokio::join!(driver.launch(&spec), driver.launch(&spec));
    let (h, racing) = (h.expect("launch"), racing.expect("racing launch"));
    assert_eq!(h, racing, "two racing launches start one server");
    let again = driver.launch(&spec).await.expect("second launch");
    assert_eq!(h, again, "launching a running instance returns its handle");
    assert_eq!(h.driver, driver.name());

    // It becomes healthy: by the driver's own health report when it has
    // one (then `probe` is never asked), else by probing the endpoint.
    let endpoint = wait_alive(driver, &h).await;
    let mut up = false;
    for _ in 0..600 {
        up = match driver.status(&h).await.expect("status") {
            Observed::Alive {
                health: Some(health),
                ..
            } => health == crate::driver::Health::Healthy,
            Observed::Alive { endpoint, .. } => probe(endpoint).await,
            other => panic!("ended while starting: {other:?}"),
        };
        if up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "{endpoint} never became healthy");
    assert!(
        !driver.logs(&h, 50).await.expect("logs").is_empty(),
        "no logs"
    );

    // Adoption keeps what the store knows.
    let kept = driver
        .adopt(&[(spec.instance_id.clone(), h.clone())])
        .await
        .expect("adopt");
    assert_eq!(kept, vec![spec.instance_id.clone()]);
    assert!(matches!(
        driver.status(&h).await.expect("status"),
        Observed::Alive { .. }
    ));

    // Stop is final and idempotent.
    driver.stop(&h).await.expect("stop");
    wait_down(driver, &h).await;
    driver.stop(&h).await.expect("second stop");
    assert!(!driver
        .logs(&h, 50)
        .await
        .expect("logs after stop")
        .is_empty());

    // Adoption ends what the store does not know.
    let h2 = driver.launch(&spec).await.expect("relaunch");
    wait_alive(driver, &h2).await;
    let kept = driver.adopt(&[]).await.expect("adopt nothing");
    assert!(kept.is_empty());
    wait_down(driver, &h2).await;

    // A graceful shutdown keeps the model server for the next start to
    // adopt, or ends it before it returns; it says which.
    let h3 = driver.launch(&spec).await.expect("launch before shutdown");
    wait_alive(driver, &h3).await;
    let known = [(spec.instance_id.clone(), h3.clone())];
    let ended = driver.shutdown(&known).await.expect("shutdown");
    let alive = matches!(
        driver.status(&h3).await.expect("status after shutdown"),
        Observed::Alive { .. }
    );
    if ended.is_empty() {
        assert!(alive, "a kept model server runs on");
        let kept = driver.adopt(&known).await.expect("adopt after shutdown");
        assert_eq!(kept, vec![spec.instance_id.clone()]);
        driver.stop(&h3).await.expect("stop after shutdown");
        wait_down(driver, &h3).await;
    } else {
        assert_eq!(ended, vec![spec.instance_id.clone()]);
        assert!(
            !alive,
            "an ended model server is gone when shutdown returns"
        );
        driver.stop(&h3).await.expect("stop after shutdown");
    }
}
