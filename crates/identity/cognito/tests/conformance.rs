//! The Cognito identity runs the identity conformance suite that every
//! identity runs, against Cognito in moto on 127.0.0.1, with a pool of
//! its own per test. moto accepts any confirmation code, so the wrong-code
//! check runs in the built-in identity's suite only; Cognito keeps refresh
//! tokens unless the pool rotates them, so the rotation checks do too.
//! The clock that checks token expiry is paddock's, which the suite moves.

use async_trait::async_trait;
use paddock_core::identity::Identity;
use paddock_core::store::Store;
use paddock_core::testkit::identity::IdentityHarness;
use paddock_core::testkit::moto::Moto;
use paddock_core::{Clock, UserId};
use paddock_identity_cognito::{CognitoIdentity, CognitoSettings};
use paddock_store_sqlite::SqliteStore;
use std::sync::Arc;

struct Cognito {
    identity: CognitoIdentity,
    store: Arc<SqliteStore>,
    admin: aws_sdk_cognitoidentityprovider::Client,
    pool_id: String,
    clock: Clock,
    _dir: tempfile::TempDir,
}

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

async fn cognito() -> Cognito {
    let sdk = sdk().await;
    let (pool_id, client_id) = paddock_identity_cognito::testkit::create_pool(
        &sdk,
        &format!("conformance-{:08x}", rand::random::<u32>()),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("paddock.db"))
            .await
            .unwrap(),
    );
    let clock = Clock::default();
    let identity = CognitoIdentity::new(
        &sdk,
        store.clone(),
        clock.clone(),
        CognitoSettings {
            user_pool_id: pool_id.clone(),
            client_id,
            client_secret: None,
            admin_group: "Administrators".into(),
        },
    )
    .unwrap();
    Cognito {
        identity,
        store,
        admin: aws_sdk_cognitoidentityprovider::Client::new(&sdk),
        pool_id,
        clock,
        _dir: dir,
    }
}

#[async_trait]
impl IdentityHarness for Cognito {
    fn identity(&self) -> &dyn Identity {
        &self.identity
    }

    async fn code_for(&self, _email: &str) -> String {
        // The emulator sends no mail and accepts any code.
        "123456".into()
    }

    async fn set_disabled(&self, user: &UserId, disabled: bool) {
        // As paddock's admin does: the store's record; and in the pool.
        if let Some(mut u) = self.store.get_user(user).await.unwrap() {
            u.disabled = disabled;
            self.store.update_user(&u).await.unwrap();
        }
        if disabled {
            self.admin
                .admin_disable_user()
                .user_pool_id(&self.pool_id)
                .username(user.as_str())
                .send()
                .await
                .unwrap();
        } else {
            self.admin
                .admin_enable_user()
                .user_pool_id(&self.pool_id)
                .username(user.as_str())
                .send()
                .await
                .unwrap();
        }
    }

    fn advance(&self, secs: u64) -> bool {
        self.clock.advance(std::time::Duration::from_secs(secs));
        true
    }

    fn checks_codes(&self) -> bool {
        false
    }

    fn rotates_refresh_tokens(&self) -> bool {
        false
    }
}

paddock_core::identity_conformance_tests!(cognito().await);

/// A role an admin gives in paddock is written to the pool's admin group,
/// so the user's next sign-in (whose role follows the group) keeps it; and
/// taking it back removes them from the group.
#[tokio::test]
async fn a_role_set_in_paddock_holds_at_the_next_sign_in() {
    use paddock_core::identity::LoginOutcome;
    use paddock_core::user::Role;
    let h = cognito().await;
    let pw = h.identity.passwords().unwrap();
    let user = pw.signup("gil@example.com", "Str0ng-pass!").await.unwrap();
    pw.confirm("gil@example.com", "123456").await.unwrap();
    let role = |outcome: LoginOutcome| async {
        let LoginOutcome::Tokens(t) = outcome else {
            panic!("no tokens");
        };
        h.identity.authenticate(&t.access_token).await.unwrap().role
    };
    let login = || pw.login("gil@example.com", "Str0ng-pass!");
    assert_eq!(role(login().await.unwrap()).await, Role::User);
    h.identity.set_role(&user, Role::Admin).await.unwrap();
    assert_eq!(role(login().await.unwrap()).await, Role::Admin);
    h.identity.set_role(&user, Role::User).await.unwrap();
    assert_eq!(role(login().await.unwrap()).await, Role::User);
}
