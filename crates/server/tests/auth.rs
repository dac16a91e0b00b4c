//! Accounts end to end: sign-up, confirmation, login, refresh rotation and
//! reuse, logout, expiry on a moved clock, throttling, forced new passwords.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn signup_confirm_login_refresh_logout() {
    let s = TestServer::start().await;
    let email = "ana@example.com";
    let (st, v) = s
        .post(
            "/api/auth/signup",
            None,
            json!({"email": "Ana@Example.com", "password": PASSWORD, "confirmPassword": PASSWORD}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");

    // Not confirmed yet: login is refused with a message saying why.
    let (st, v) = s
        .post(
            "/api/auth/login",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_error(st, &v, StatusCode::FORBIDDEN, "forbidden");
    assert!(v["error"]["message"].as_str().unwrap().contains("confirm"));

    // A wrong code, then the right one.
    let code = s.mailer.last_code(email).unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (st, v) = s
        .post(
            "/api/auth/confirm",
            None,
            json!({"email": email, "code": wrong}),
        )
        .await;
    assert_error(
        st,
        &v,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let (st, _) = s
        .post(
            "/api/auth/confirm",
            None,
            json!({"email": email, "code": code}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    let tokens = s.login(email, PASSWORD).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    let access = tokens["access_token"].as_str().unwrap();
    let (st, me) = s.get("/api/auth/me", access).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["email"], email);
    assert_eq!(me["role"], "user");

    // Refresh rotates: the new pair works, the old refresh token is spent.
    let r1 = tokens["refresh_token"].as_str().unwrap();
    let (st, t2) = s
        .post("/api/auth/refresh", None, json!({"refresh_token": r1}))
        .await;
    assert_eq!(st, StatusCode::OK, "{t2}");
    assert_ne!(t2["refresh_token"], tokens["refresh_token"]);
    let (st, _) = s
        .get("/api/auth/me", t2["access_token"].as_str().unwrap())
        .await;
    assert_eq!(st, StatusCode::OK);

    // Logout revokes the family: the current refresh token stops working.
    let r2 = t2["refresh_token"].as_str().unwrap();
    let (st, _) = s
        .post("/api/auth/logout", None, json!({"refresh_token": r2}))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, v) = s
        .post("/api/auth/refresh", None, json!({"refresh_token": r2}))
        .await;
    assert_error(st, &v, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn refresh_token_reuse_revokes_the_family() {
    let s = TestServer::start().await;
    let t1 = s.user("bo@example.com").await;
    let r1 = t1["refresh_token"].as_str().unwrap().to_owned();
    let (_, t2) = s
        .post("/api/auth/refresh", None, json!({"refresh_token": r1}))
        .await;
    let r2 = t2["refresh_token"].as_str().unwrap().to_owned();
    // A stolen copy of r1 is replayed: refused, and r2 dies with it.
    let (st, _) = s
        .post("/api/auth/refresh", None, json!({"refresh_token": r1}))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s
        .post("/api/auth/refresh", None, json!({"refresh_token": r2}))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn access_tokens_and_codes_expire_on_the_clock() {
    let s = TestServer::start().await;
    let t = s.user_token("cy@example.com").await;
    let (st, _) = s.get("/api/instances", &t).await;
    assert_eq!(st, StatusCode::OK);
    s.clock.advance(Duration::from_secs(3601));
    let (st, v) = s.get("/api/instances", &t).await;
    assert_error(st, &v, StatusCode::UNAUTHORIZED, "unauthorized");

    // A confirmation code is good for 24 hours.
    let email = "late@example.com";
    s.post(
        "/api/auth/signup",
        None,
        json!({"email": email, "password": PASSWORD, "confirmPassword": PASSWORD}),
    )
    .await;
    let code = s.mailer.last_code(email).unwrap();
    s.clock.advance(Duration::from_secs(24 * 3600 + 1));
    let (st, v) = s
        .post(
            "/api/auth/confirm",
            None,
            json!({"email": email, "code": code}),
        )
        .await;
    assert_error(
        st,
        &v,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"));
    // A new code can be asked for and works.
    let (st, _) = s
        .post("/api/auth/resend-code", None, json!({"email": email}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let code2 = s.mailer.last_code(email).unwrap();
    let (st, _) = s
        .post(
            "/api/auth/confirm",
            None,
            json!({"email": email, "code": code2}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled() {
    let s = TestServer::start().await;
    s.user("dee@example.com").await;
    let bad = json!({"email": "dee@example.com", "password": "Wrong-pass1!"});
    for _ in 0..4 {
        let (st, v) = s.post("/api/auth/login", None, bad.clone()).await;
        assert_error(st, &v, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let resp = s
        .client
        .post(format!("{}/api/auth/login", s.url))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 30, "{retry}");
    // Even the right password waits.
    let good = json!({"email": "dee@example.com", "password": PASSWORD});
    let (st, _) = s.post("/api/auth/login", None, good.clone()).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    // Other accounts are unaffected.
    s.user("eve@example.com").await;
    s.clock.advance(Duration::from_secs(31));
    let (st, _) = s.post("/api/auth/login", None, good).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn signup_input_is_checked() {
    let s = TestServer::start().await;
    let cases = [
        (
            json!({"email": "nope", "password": PASSWORD, "confirmPassword": PASSWORD}),
            "email",
        ),
        (
            json!({"email": "a@example.com", "password": "short1!", "confirmPassword": "short1!"}),
            "8 characters",
        ),
        (
            json!({"email": "a@example.com", "password": "nouppercase1!", "confirmPassword": "nouppercase1!"}),
            "upper-case",
        ),
        (
            json!({"email": "a@example.com", "password": "NoSymbols123", "confirmPassword": "NoSymbols123"}),
            "symbol",
        ),
        (
            json!({"email": "a@example.com", "password": PASSWORD, "confirmPassword": "Other-pass1!"}),
            "confirmPassword",
        ),
    ];
    for (body, mentions) in cases {
        let (st, v) = s.post("/api/auth/signup", None, body).await;
        assert_error(
            st,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        assert!(
            v["error"]["message"].as_str().unwrap().contains(mentions),
            "{v}"
        );
    }
    // Missing field, wrong type: 422 from the parser, never 5xx.
    let (st, v) = s.post("/api/auth/signup", None, json!({"email": 5})).await;
    assert_error(
        st,
        &v,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );

    s.user("a@example.com").await;
    let (st, v) = s
        .post(
            "/api/auth/signup",
            None,
            json!({"email": "A@example.com", "password": PASSWORD, "confirmPassword": PASSWORD}),
        )
        .await;
    assert_error(st, &v, StatusCode::CONFLICT, "conflict");
}

#[tokio::test]
async fn admin_created_users_must_choose_a_new_password() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let (st, v) = s
        .post(
            "/api/users",
            Some(&admin),
            json!({"email": "new@example.com"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let temp = v["temporary_password"].as_str().unwrap().to_owned();
    let (st, v) = s
        .post(
            "/api/auth/login",
            None,
            json!({"email": "new@example.com", "password": temp}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["challenge"], "NEW_PASSWORD_REQUIRED");
    assert!(v.get("access_token").is_none());
    let session = v["session"].as_str().unwrap();
    // The session is not an access token.
    let (st, _) = s.get("/api/instances", session).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, v) = s
        .post(
            "/api/auth/new-password",
            None,
            json!({"email": "new@example.com", "session": session, "new_password": "weak"}),
        )
        .await;
    assert_error(
        st,
        &v,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let (st, v) = s
        .post(
            "/api/auth/new-password",
            None,
            json!({"email": "new@example.com", "session": session, "new_password": "Ch0sen-pass!"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["access_token"].is_string());
    s.login("new@example.com", "Ch0sen-pass!").await;

    // A voluntary change needs the old password and ends other sessions.
    let t = s.login("new@example.com", "Ch0sen-pass!").await;
    let access = t["access_token"].as_str().unwrap();
    let (st, _) = s
        .post(
            "/api/auth/new-password",
            Some(access),
            json!({"old_password": "wrong", "new_password": "An0ther-pass!"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, _) = s
        .post(
            "/api/auth/new-password",
            Some(access),
            json!({"old_password": "Ch0sen-pass!", "new_password": "An0ther-pass!"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": t["refresh_token"]}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    s.login("new@example.com", "An0ther-pass!").await;
}

#[tokio::test]
async fn admins_manage_users_and_others_cannot() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let user = s.user_token("plain@example.com").await;
    let (st, v) = s.get("/api/users", &user).await;
    assert_error(st, &v, StatusCode::FORBIDDEN, "forbidden");
    let (st, v) = s.get("/api/users", &admin).await;
    assert_eq!(st, StatusCode::OK);
    let users = v["users"].as_array().unwrap();
    assert_eq!(users.len(), 2);
    assert!(users.iter().all(|u| u.get("password_hash").is_none()));
    let id = users
        .iter()
        .find(|u| u["email"] == "plain@example.com")
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Promote, then the user can list users.
    let (st, _) = patch_user(&s, &admin, &id, json!({"role": "admin"})).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.get("/api/users", &user).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = patch_user(&s, &admin, &id, json!({"role": "root"})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);

    // Disable: their token and login stop working.
    let (st, _) = patch_user(&s, &admin, &id, json!({"disabled": true})).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.get("/api/instances", &user).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s
        .post(
            "/api/auth/login",
            None,
            json!({"email": "plain@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = patch_user(&s, &admin, &id, json!({"disabled": false})).await;
    assert_eq!(st, StatusCode::OK);
    s.login("plain@example.com", PASSWORD).await;
}

/// An admin resets a password (temporary, changed at the next login) and
/// deletes a user: instances stopped, keys revoked, usage kept, the email
/// free again. Neither works on the admin's own account.
#[tokio::test]
async fn admins_reset_passwords_and_delete_users() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let user = s.user_token("leaving@example.com").await;
    let key = s.api_key(&user, "script").await;
    let (st, v) = s
        .post(
            "/api/models/deploy",
            Some(&user),
            json!({"model_name": "gemma3:270m", "fargate_resources": {"cpu": 1024, "memory": 2048}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    let instance = v["instance_id"].as_str().unwrap().to_owned();
    let (_, me) = s.get("/api/auth/me", &user).await;
    let id = me["user_id"].as_str().unwrap().to_owned();

    // Reset: the old password stops working, the temporary one must be
    // changed, and plain users may not reset anyone's.
    let (st, v) = s
        .post(
            &format!("/api/users/{id}/reset-password"),
            Some(&user),
            json!({}),
        )
        .await;
    assert_error(st, &v, StatusCode::FORBIDDEN, "forbidden");
    let (st, v) = s
        .post(
            &format!("/api/users/{id}/reset-password"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let temporary = v["temporary_password"].as_str().unwrap().to_owned();
    let (st, _) = s
        .post(
            "/api/auth/login",
            None,
            json!({"email": "leaving@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, v) = s
        .post(
            "/api/auth/login",
            None,
            json!({"email": "leaving@example.com", "password": temporary}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["challenge"], "NEW_PASSWORD_REQUIRED", "{v}");

    // Delete: not oneself; then the user's instance stops, their key is
    // refused, they cannot sign in, and the address can sign up again.
    let (_, admin_me) = s.get("/api/auth/me", &admin).await;
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/api/users/{}", admin_me["user_id"].as_str().unwrap()),
            Some(&admin),
            None,
        )
        .await;
    assert_error(
        st,
        &v,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/api/users/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["instances_stopped"], 1, "{v}");
    assert_eq!(v["keys_revoked"], 1, "{v}");
    let (st, _) = s.get("/api/instances", &key).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (_, all) = s.get("/api/instances?all=true", &admin).await;
    let left = all["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["instance_id"] == instance.as_str())
        .unwrap()
        .clone();
    assert_eq!(left["desired_status"], "STOPPED", "{left}");
    let (_, users) = s.get("/api/users", &admin).await;
    assert!(!users["users"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["email"] == "leaving@example.com"));
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/users/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.user_token("leaving@example.com").await;
}

/// An admin's disable that lands while the user is changing their password
/// (which reads the account, checks the old password and hashes the new
/// one before it writes) is never undone by that change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_password_change_never_undoes_a_disable() {
    let s = TestServer::start().await;
    let admin = s.admin_token().await;
    let email = "racer@example.com";
    let user = s.user_token(email).await;
    let (_, me) = s.get("/api/auth/me", &user).await;
    let id = me["user_id"].as_str().unwrap().to_owned();
    let passwords = [PASSWORD, "Sec0nd-pass!"];
    for (round, delay_ms) in [0u64, 5, 15, 30, 60].into_iter().enumerate() {
        let (old, new) = (passwords[round % 2], passwords[(round + 1) % 2]);
        let token = s.login(email, old).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let change = {
            let (client, url) = (s.client.clone(), s.url.clone());
            tokio::spawn(async move {
                client
                    .post(format!("{url}/api/auth/new-password"))
                    .bearer_auth(token)
                    .json(&json!({"old_password": old, "new_password": new}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        let (st, v) = patch_user(&s, &admin, &id, json!({"disabled": true})).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let changed = change.await.unwrap();
        assert!(
            changed == StatusCode::OK || changed == StatusCode::FORBIDDEN,
            "{changed}"
        );

        let (_, v) = s.get("/api/users", &admin).await;
        let listed = v["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["user_id"] == id.as_str())
            .cloned()
            .unwrap();
        assert_eq!(listed["disabled"], true, "round {round}: {listed}");
        for password in passwords {
            let (st, v) = s
                .post(
                    "/api/auth/login",
                    None,
                    json!({"email": email, "password": password}),
                )
                .await;
            assert_ne!(st, StatusCode::OK, "round {round}: {v}");
        }

        // Enabled again for the next round, with whichever password won.
        let (st, _) = patch_user(&s, &admin, &id, json!({"disabled": false})).await;
        assert_eq!(st, StatusCode::OK);
        if changed != StatusCode::OK {
            // The old password stays; change it so the rounds alternate.
            let token = s.login(email, old).await["access_token"]
                .as_str()
                .unwrap()
                .to_owned();
            let (st, v) = s
                .post(
                    "/api/auth/new-password",
                    Some(&token),
                    json!({"old_password": old, "new_password": new}),
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
        }
    }
}

#[tokio::test]
async fn a_generated_first_admin_must_change_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.identity.admin_password = None;
    let s = TestServer::start_in(dir.path(), config).await;
    // The generated password is printed to the terminal, not to us; what we
    // can check is that the admin exists and is flagged for a change.
    let store = paddock_store_sqlite::SqliteStore::open(&dir.path().join("paddock.db"))
        .await
        .unwrap();
    use paddock_core::store::Store;
    let admin = store.get_user_by_email(ADMIN_EMAIL).await.unwrap().unwrap();
    assert!(admin.must_change_password);
    assert!(admin.confirmed);
    s.shutdown().await;
}

/// An admin's `PATCH /api/users/{id}`.
async fn patch_user(
    s: &TestServer,
    admin: &str,
    id: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    s.call(
        Method::PATCH,
        &format!("/api/users/{id}"),
        Some(admin),
        Some(body),
    )
    .await
}
