//! The built-in identity (argon2id passwords, our own JWTs, refresh tokens
//! in SQLite) runs the identity conformance suite that every identity
//! runs, on a real SQLite file, with a clock the suite can move and a
//! mailer whose codes it can read.

use async_trait::async_trait;
use paddock_core::identity::Identity;
use paddock_core::store::Store;
use paddock_core::testkit::identity::IdentityHarness;
use paddock_core::Clock;
use paddock_core::UserId;
use paddock_identity_builtin::mailer::MemoryMailer;
use paddock_identity_builtin::{BuiltinIdentity, BuiltinSettings};
use paddock_store_sqlite::SqliteStore;
use std::sync::Arc;

struct Builtin {
    identity: BuiltinIdentity,
    store: Arc<SqliteStore>,
    mailer: Arc<MemoryMailer>,
    clock: Clock,
    _dir: tempfile::TempDir,
}

async fn builtin() -> Builtin {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("paddock.db"))
            .await
            .unwrap(),
    );
    let mailer = Arc::new(MemoryMailer::default());
    let clock = Clock::default();
    let identity = BuiltinIdentity::new(
        store.clone(),
        store.clone(),
        mailer.clone(),
        clock.clone(),
        b"a signing key for the identity conformance tests, 64 bytes long!",
        BuiltinSettings {
            access_ttl_secs: 3600,
            refresh_ttl_secs: 30 * 24 * 3600,
            confirmation_ttl_secs: 24 * 3600,
            login_max_failures: 5,
            login_lockout_secs: 30,
        },
    );
    Builtin {
        identity,
        store,
        mailer,
        clock,
        _dir: dir,
    }
}

#[async_trait]
impl IdentityHarness for Builtin {
    fn identity(&self) -> &dyn Identity {
        &self.identity
    }

    async fn code_for(&self, email: &str) -> String {
        self.mailer.last_code(email).expect("a code was mailed")
    }

    async fn set_disabled(&self, user: &UserId, disabled: bool) {
        let mut u = self.store.get_user(user).await.unwrap().expect("user");
        u.disabled = disabled;
        self.store.update_user(&u).await.unwrap();
    }

    fn advance(&self, secs: u64) -> bool {
        self.clock.advance(std::time::Duration::from_secs(secs));
        true
    }
}

paddock_core::identity_conformance_tests!(builtin().await);
