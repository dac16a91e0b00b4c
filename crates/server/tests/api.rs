//! The management API against a real server: catalog, compute sizes,
//! deploy validation, instance ownership and lifecycle records, API keys,
//! error shapes and the OpenAPI document.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn deploy(s: &TestServer, token: &str, body: Value) -> (StatusCode, Value) {
    s.post("/api/models/deploy", Some(token), body).await
}

fn cpu(model: &str, cpu: Value, memory: Value) -> Value {
    json!({"model_name": model, "fargate_resources": {"cpu": cpu, "memory": memory}})
}

async fn instance_count(s: &TestServer, token: &str) -> usize {
    s.get("/api/instances", token).await.1["instances"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn catalog_lists_models_and_admins_edit_it() {
    let s = TestServer::start().await;
    let user = s.user_token("u@example.com").await;
    let admin = s.admin_token().await;
    let (st, v) = s.get("/api/models", &user).await;
    assert_eq!(st, StatusCode::OK);
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 31);
    let gemma = models
        .iter()
        .find(|m| m["model_id"] == "gemma3:270m")
        .unwrap();
    for field in [
        "model_name",
        "model_family",
        "model_size_gb",
        "cpu_requirements",
        "gpu_requirements",
        "description",
        "supported_tasks",
        "is_active",
        "estimated_start_seconds",
    ] {
        assert!(gemma.get(field).is_some(), "missing {field}");
    }

    // Users cannot edit; admins can deactivate and add.
    let (st, _) = s
        .call(
            Method::PATCH,
            "/api/models/llama3.1:8b",
            Some(&user),
            Some(json!({"is_active": false})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = s
        .call(
            Method::PATCH,
            "/api/models/llama3.1:8b",
            Some(&admin),
            Some(json!({"is_active": false, "description": "retired here"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["is_active"], false);
    assert_eq!(v["model_name"], "Llama 3.1 8B");
    let (st, v) = s
        .call(
            Method::PATCH,
            "/api/models/llama3.1:8b",
            Some(&admin),
            Some(json!({"model_size_gb": -1})),
        )
        .await;
    assert_error(
        st,
        &v,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let (_, v) = s.get("/api/models", &user).await;
    assert_eq!(v["models"].as_array().unwrap().len(), 30);
    let (_, v) = s.get("/api/models?all=true", &admin).await;
    assert_eq!(v["models"].as_array().unwrap().len(), 31);
    let (st, _) = s.get("/api/models/llama3.1:8b", &user).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let new_model = json!({
        "model_id": "tinyllama:1.1b", "model_name": "TinyLlama", "model_family": "llama",
        "model_size_gb": 0.6, "cpu_requirements": {"vcpu": 1, "memory_mb": 2048},
        "gpu_requirements": {"gpu_memory_mb": 2048, "gpu_type": "any"},
        "description": "small", "supported_tasks": ["chat"], "is_active": true
    });
    let (st, _) = s.post("/api/models", Some(&admin), new_model.clone()).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, v) = s.post("/api/models", Some(&admin), new_model).await;
    assert_error(st, &v, StatusCode::CONFLICT, "conflict");
    let (st, v) = s
        .post("/api/models", Some(&admin), json!({"model_id": "x y"}))
        .await;
    assert_error(
        st,
        &v,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );

    // Restart on the same data: the catalog loads again without duplicates
    // and without undoing the admin's edits.
    let dir = s.shutdown().await.unwrap();
    let s = TestServer::start_in(dir.path(), test_config(dir.path())).await;
    let admin = s.admin_token().await;
    let (_, v) = s.get("/api/models?all=true", &admin).await;
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 32);
    let llama = models
        .iter()
        .find(|m| m["model_id"] == "llama3.1:8b")
        .unwrap();
    assert_eq!(llama["is_active"], false);
    assert_eq!(llama["description"], "retired here");
}

#[tokio::test]
async fn compute_sizes_have_prices() {
    let s = TestServer::start().await;
    let t = s.user_token("u@example.com").await;
    let (st, v) = s.get("/api/compute", &t).await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["prices_as_of"].is_string());
    let sizes = v["fargate"]["sizes"].as_array().unwrap();
    assert!(sizes.iter().any(|x| x["cpu"] == 256 && x["memory"] == 512));
    assert!(sizes
        .iter()
        .all(|x| x["price_per_hour_usd"].as_f64().unwrap() > 0.0));
    let gpus = v["gpu_instance_types"].as_array().unwrap();
    for t in [
        "g4dn.xlarge",
        "g5.xlarge",
        "g6.xlarge",
        "g6e.xlarge",
        "p4d.24xlarge",
    ] {
        let g = gpus.iter().find(|g| g["instance_type"] == t).unwrap();
        assert!(g["price_per_hour_usd"].as_f64().unwrap() > 0.0);
        assert!(g["gpu_memory_mb"].as_u64().unwrap() > 0);
    }
}

#[tokio::test]
async fn deploy_validates_and_records_nothing_on_bad_input() {
    let s = TestServer::start().await;
    let t = s.user_token("u@example.com").await;
    let admin = s.admin_token().await;
    s.call(
        Method::PATCH,
        "/api/models/mistral:7b",
        Some(&admin),
        Some(json!({"is_active": false})),
    )
    .await;
    let bad = [
        (
            cpu("nosuch:1b", json!(1024), json!(2048)),
            "not in the catalog",
        ),
        (cpu("mistral:7b", json!(4096), json!(8192)), "inactive"),
        (
            cpu("gemma3:270m", json!(1024), json!(1024)),
            "not valid with cpu 1024",
        ),
        (
            cpu("gemma3:270m", json!(3000), json!(4096)),
            "not a Fargate size",
        ),
        (cpu("gemma3:270m", json!(256), json!(512)), "needs 1024 MiB"),
        (cpu("llama3.1:70b", json!(16384), json!(122880)), "GPU"),
        (
            cpu("gemma3:270m", json!("lots"), json!(2048)),
            "fargate_resources.cpu",
        ),
        (
            json!({"model_name": "gemma3:270m", "instance_type": "x9.huge"}),
            "unknown instance_type",
        ),
        (
            json!({"model_name": "llama3.1:70b", "instance_type": "g5.xlarge"}),
            "GPU memory",
        ),
        (json!({"model_name": "gemma3:270m"}), "fargate_resources"),
        (
            json!({"model_name": "gemma3:270m", "instance_type": "g5.xlarge", "fargate_resources": {"cpu": 1024, "memory": 2048}}),
            "not both",
        ),
        (
            json!({"fargate_resources": {"cpu": 1024, "memory": 2048}}),
            "model_name",
        ),
        (
            json!({"model_name": "gemma3:270m", "fargate_resources": {"cpu": 1024, "memory": 2048}, "idle_timeout_minutes": 99999}),
            "idle_timeout_minutes",
        ),
    ];
    for (body, mentions) in bad {
        let (st, v) = deploy(&s, &t, body.clone()).await;
        assert_error(
            st,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(mentions), "{body} -> {msg}");
    }
    // Unknown fields are refused too, naming the field.
    let (st, v) = deploy(&s, &t, json!({"model_name": "gemma3:270m", "cpus": 1})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("cpus"));
    // Every bad field at once, each in the list with what to change.
    let (st, v) = deploy(
        &s,
        &t,
        json!({"model_name": "nosuch:1b", "fargate_resources": {"cpu": "lots", "memory": 1.5},
               "idle_timeout_minutes": -1, "name": "a<b>"}),
    )
    .await;
    assert_error(
        st,
        &v,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let fields: Vec<&str> = v["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "model_name",
            "fargate_resources.cpu",
            "fargate_resources.memory",
            "idle_timeout_minutes",
            "name"
        ],
        "{v}"
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not in the catalog; "));
    // A single bad field is a list of one.
    let (_, v) = deploy(&s, &t, cpu("gemma3:270m", json!(1024), json!(1024))).await;
    assert_eq!(v["error"]["fields"][0]["field"], "fargate_resources", "{v}");
    assert_eq!(instance_count(&s, &t).await, 0);

    // The valid forms: CPU units, vCPUs as strings, a GPU type.
    let (st, v) = deploy(&s, &t, cpu("gemma3:270m", json!(1024), json!(2048))).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "PENDING");
    assert_eq!(v["compute"], "fargate");
    assert_eq!(v["model_name"], "gemma3:270m");
    assert_eq!(v["fargate_resources"], json!({"cpu": 1024, "memory": 2048}));
    assert_eq!(v["idle_timeout_minutes"], 15.0);
    let id = v["instance_id"].as_str().unwrap();
    assert!(v["endpoint_url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/models/{id}")));
    assert!(
        v["name"].as_str().unwrap().starts_with("gemma3-270m-")
            && v["name"].as_str().unwrap().len() == 16,
        "{v}"
    );
    let mut named = cpu("gemma3:270m", json!("0.5"), json!("1024"));
    named["name"] = json!("  Night shift: notes ");
    let (st, v) = deploy(&s, &t, named).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["instance_type"], "cpu-0.5vcpu-1024mb");
    assert_eq!(v["name"], "Night shift: notes");
    // A GPU size that fits is refused at deploy time when the driver has
    // no GPU (the process driver on this machine), not left to fail later.
    let (st, v) = deploy(
        &s,
        &t,
        json!({"model_name": "llama3.1:8b", "instance_type": "g5.xlarge", "idle_timeout_minutes": 0}),
    )
    .await;
    assert_error(
        st,
        &v,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("no GPU"),
        "{v}"
    );
    assert_eq!(instance_count(&s, &t).await, 2);
}

#[tokio::test]
async fn instances_belong_to_their_owner() {
    let s = TestServer::start().await;
    let a = s.user_token("a@example.com").await;
    let b = s.user_token("b@example.com").await;
    let admin = s.admin_token().await;
    let (_, v) = deploy(&s, &a, cpu("gemma3:270m", json!(1024), json!(2048))).await;
    let id = v["instance_id"].as_str().unwrap().to_owned();

    // B sees nothing of A's instance: every route answers 404.
    assert_eq!(instance_count(&s, &b).await, 0);
    let (st, v) = s.get(&format!("/api/instances/{id}"), &b).await;
    assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
    let (st, _) = s
        .post("/api/models/stop", Some(&b), json!({"instance_id": id}))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/instances/{id}"),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.get("/api/instances/i-doesnotexist", &b).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // The admin sees everyone's with ?all=true; a user's ?all=true is ignored.
    let (_, v) = s.get("/api/instances?all=true", &admin).await;
    assert_eq!(v["instances"].as_array().unwrap().len(), 1);
    let (_, v) = s.get("/api/instances?all=true", &b).await;
    assert_eq!(v["instances"].as_array().unwrap().len(), 0);

    // A cannot delete before stopping; stop, then delete.
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/api/instances/{id}"),
            Some(&a),
            None,
        )
        .await;
    assert_error(st, &v, StatusCode::CONFLICT, "conflict");
    let (st, v) = s
        .post("/api/models/stop", Some(&a), json!({"instance_id": id}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "STOPPED");
    // Stopping twice is fine.
    let (st, _) = s
        .post(&format!("/api/instances/{id}/stop"), Some(&a), json!({}))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    // The history records every transition with time and reason (this
    // server's runtime binary does not exist, so the launch failed first).
    let (st, v) = s.get(&format!("/api/instances/{id}"), &a).await;
    assert_eq!(st, StatusCode::OK);
    let history = v["history"].as_array().unwrap();
    assert_eq!(history[0]["to"], "PENDING");
    assert_eq!(history[0]["reason"], "deploy requested");
    let last = history.last().unwrap();
    assert_eq!(last["to"], "STOPPED");
    assert!(last["at"].is_string());
    for pair in history.windows(2) {
        assert_eq!(pair[1]["from"], pair[0]["to"], "{history:?}");
    }
    if history.len() > 2 {
        assert!(
            history[1]["reason"]
                .as_str()
                .unwrap()
                .contains("launch failed"),
            "{history:?}"
        );
    }
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/instances/{id}"),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(instance_count(&s, &a).await, 0);
}

#[tokio::test]
async fn api_keys_authenticate_and_can_be_revoked() {
    let s = TestServer::start().await;
    let a = s.user_token("a@example.com").await;
    let b = s.user_token("b@example.com").await;
    let (st, v) = s
        .post(
            "/api/keys",
            Some(&a),
            json!({"name": "laptop", "allowed_models": ["gemma3:270m"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let secret = v["secret"].as_str().unwrap().to_owned();
    let key_id = v["key_id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("pdk_"));
    assert!(secret.starts_with(v["prefix"].as_str().unwrap()));

    // The key works like a token, and is limited to its models.
    let (st, me) = s.get("/api/auth/me", &secret).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(me["email"], "a@example.com");
    let (st, _) = deploy(&s, &secret, cpu("gemma3:270m", json!(1024), json!(2048))).await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let (st, v) = deploy(&s, &secret, cpu("qwen2.5:0.5b", json!(1024), json!(2048))).await;
    assert_error(st, &v, StatusCode::FORBIDDEN, "forbidden");

    // Listing never shows the secret; last use is recorded.
    let (_, v) = s.get("/api/keys", &a).await;
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].get("secret").is_none());
    assert!(!v.to_string().contains(&secret));
    assert!(keys[0]["last_used_at"].is_string());
    assert_eq!(keys[0]["status"], "active");

    // B cannot see or revoke A's key.
    let (_, v) = s.get("/api/keys", &b).await;
    assert!(v["keys"].as_array().unwrap().is_empty());
    let (st, _) = s
        .call(
            Method::DELETE,
            &format!("/api/keys/{key_id}"),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/api/keys/{key_id}"),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["status"], "revoked");
    let (st, v) = s.get("/api/auth/me", &secret).await;
    assert_error(st, &v, StatusCode::UNAUTHORIZED, "unauthorized");

    // Bad key requests.
    for (body, mentions) in [
        (json!({"name": ""}), "name"),
        (
            json!({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            json!({"name": "x", "allowed_models": ["nosuch:1b"]}),
            "allowed_models",
        ),
        (json!({"name": "x", "allowed_models": []}), "allowed_models"),
    ] {
        let (st, v) = s.post("/api/keys", Some(&a), body).await;
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

    // A key that expires stops working when its time comes.
    let soon = (chrono::Utc::now() + chrono::Duration::minutes(5)).to_rfc3339();
    let (_, v) = s
        .post(
            "/api/keys",
            Some(&a),
            json!({"name": "short", "expires_at": soon}),
        )
        .await;
    let short = v["secret"].as_str().unwrap().to_owned();
    let (st, _) = s.get("/api/auth/me", &short).await;
    assert_eq!(st, StatusCode::OK);
    s.clock.advance(std::time::Duration::from_secs(600));
    let (st, _) = s.get("/api/auth/me", &short).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

/// A new key for the holder of `token`: its secret and id.
async fn new_key(s: &TestServer, token: &str, name: &str) -> (String, String) {
    let (st, v) = s
        .post("/api/keys", Some(token), json!({ "name": name }))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    (
        v["secret"].as_str().unwrap().to_owned(),
        v["key_id"].as_str().unwrap().to_owned(),
    )
}

/// Revokes a key with the owner's session token and checks the answer.
async fn revoke_key(s: &TestServer, token: &str, key_id: &str) {
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/api/keys/{key_id}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "revoked", "{v}");
}

/// The key's entry in its owner's list.
async fn listed_key(s: &TestServer, token: &str, key_id: &str) -> Value {
    let (_, v) = s.get("/api/keys", token).await;
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == key_id)
        .cloned()
        .unwrap_or_else(|| panic!("{key_id} is not listed: {v}"))
}

/// A revoked key is refused on the very next request, also on a connection
/// a program keeps open, whichever door it knocks on: the management API,
/// a by-model gateway route (which the fast path looks at first) and the
/// gateway's other routes.
#[tokio::test]
async fn a_revoked_key_fails_at_once_on_a_kept_alive_connection() {
    let s = TestServer::start().await;
    let token = s.user_token("keep@example.com").await;
    let chat = json!({"model": "gemma3:270m", "messages": [{"role": "user", "content": "hi"}]});
    for (method, path, body) in [
        ("GET", "/api/instances", None),
        ("GET", "/v1/models", None),
        ("POST", "/api/chat", Some(&chat)),
    ] {
        let (secret, key_id) = new_key(&s, &token, path).await;
        let mut c = RawConnection::open(&s.url).await;
        for _ in 0..3 {
            let (st, got) = c.send(method, path, &secret, body).await;
            assert_ne!(st, StatusCode::UNAUTHORIZED, "{path}: {got}");
        }
        revoke_key(&s, &token, &key_id).await;
        let (st, got) = c.send(method, path, &secret, body).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}: {got}");
        let (st, got) = c.send(method, path, &secret, body).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{path}: {got}");
        assert_eq!(listed_key(&s, &token, &key_id).await["status"], "revoked");
    }
}

/// A revocation that lands while the key is being used is final: however
/// the requests under way interleave with it (each reads the key, then
/// records its last use and caches it), the key is listed revoked
/// afterwards, and no request sent after the DELETE answered gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoking_a_key_in_use_is_final() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let s = TestServer::start().await;
    let token = s.user_token("race@example.com").await;
    for round in 0..20u64 {
        let (secret, key_id) = new_key(&s, &token, &format!("race {round}")).await;
        let revoked = Arc::new(AtomicBool::new(false));
        let users: Vec<_> = [
            "/api/auth/me",
            "/api/instances",
            "/v1/models",
            "/api/auth/me",
        ]
        .into_iter()
        .map(|path| {
            let (url, secret, revoked) = (s.url.clone(), secret.clone(), revoked.clone());
            tokio::spawn(async move {
                let mut c = RawConnection::open(&url).await;
                // What requests sent after the DELETE answered got.
                let mut after = Vec::new();
                while after.len() < 5 {
                    let sent_after = revoked.load(Ordering::SeqCst);
                    let (st, got) = c.send("GET", path, &secret, None).await;
                    if sent_after {
                        after.push((path, st, got));
                    }
                }
                after
            })
        })
        .collect();
        // The revocation lands at a different moment of the first,
        // uncached requests each round.
        tokio::time::sleep(std::time::Duration::from_millis(round % 5)).await;
        revoke_key(&s, &token, &key_id).await;
        revoked.store(true, Ordering::SeqCst);
        for user in users {
            for (path, st, got) in user.await.unwrap() {
                assert_eq!(
                    st,
                    StatusCode::UNAUTHORIZED,
                    "round {round}: {path} after the revocation: {got}"
                );
            }
        }
        let listed = listed_key(&s, &token, &key_id).await;
        assert_eq!(listed["status"], "revoked", "round {round}: {listed}");
        let (st, _) = s.get("/api/auth/me", &secret).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "round {round}");
    }
}

#[tokio::test]
async fn errors_have_one_shape_and_bad_input_is_never_5xx() {
    let s = TestServer::start().await;
    let t = s.user_token("u@example.com").await;
    let url = |p: &str| format!("{}{}", s.url, p);

    // Malformed JSON: 400 with the parser's message.
    let r = s
        .client
        .post(url("/api/auth/login"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "bad_request");

    // No content type: 415.
    let r = s
        .client
        .post(url("/api/auth/login"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Too big: 413.
    let big = "x".repeat(3 * 1024 * 1024);
    let r = s
        .client
        .post(url("/api/keys"))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body(format!("{{\"name\":\"{big}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "payload_too_large");

    // Missing or bad credentials: 401 in the same shape.
    let (st, v) = s.call(Method::GET, "/api/instances", None, None).await;
    assert_error(st, &v, StatusCode::UNAUTHORIZED, "unauthorized");
    let (st, v) = s.get("/api/instances", "garbage").await;
    assert_error(st, &v, StatusCode::UNAUTHORIZED, "unauthorized");
    let (st, v) = s.get("/api/instances", "pdk_notakey").await;
    assert_error(st, &v, StatusCode::UNAUTHORIZED, "unauthorized");

    // Unknown route and wrong method.
    let (st, v) = s.get("/api/nope", &t).await;
    assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
    let (st, v) = s.call(Method::PUT, "/api/instances", Some(&t), None).await;
    assert_error(st, &v, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");

    // A spray of wrong-typed bodies at every JSON route: always 4xx.
    let junk = [
        json!(null),
        json!([]),
        json!("s"),
        json!(1),
        json!({"a": {"b": []}}),
    ];
    let doc = serde_json::to_value(paddock_server::api::openapi()).unwrap();
    let mut with_body = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op.get("requestBody").is_none() {
                continue;
            }
            with_body += 1;
            let path = path
                .replace("{model_id}", "gemma3:270m")
                .replace("{user_id}", "u-x");
            for body in &junk {
                let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let (st, v) = s.call(m, &path, Some(&t), Some(body.clone())).await;
                assert!(st.is_client_error(), "{method} {path} {body} -> {st} {v}");
            }
        }
    }
    assert_eq!(with_body, 14);
}

/// The document is generated from the handlers and registered with the
/// router in one step: every documented operation is served, has a summary,
/// names its request body's and JSON responses' schemas, and every schema
/// it refers to is in the document. The served document is the one the
/// router was built with.
#[tokio::test]
async fn openapi_documents_every_route_and_every_documented_route_is_served() {
    let s = TestServer::start().await;
    let (st, doc) = s.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc,
        serde_json::to_value(paddock_server::api::openapi()).unwrap()
    );
    let paths = doc["paths"].as_object().unwrap();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            assert!(op["summary"].is_string(), "{method} {path}");
            assert_eq!(
                op["responses"]["4XX"]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/Error",
                "{method} {path}"
            );
            // Served: the router does not answer "no such route" or 405.
            let served = path
                .replace("{model_id}", "gemma3:270m")
                .replace("{instance_id}", "i-x")
                .replace("{key_id}", "k-x")
                .replace("{user_id}", "u-x");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (st, v) = s.call(m, &served, None, Some(json!({}))).await;
            assert_ne!(st, StatusCode::METHOD_NOT_ALLOWED, "{method} {served}");
            assert!(
                !v.to_string().contains("no such route"),
                "{method} {served} is documented but not served"
            );
            // Every JSON body has a schema, and every schema named exists.
            let text = op.to_string();
            for part in text.split("\"#/components/schemas/").skip(1) {
                let name = part.split('"').next().unwrap();
                assert!(schemas.contains_key(name), "{method} {path}: {name}");
            }
            if let Some(body) = op.get("requestBody") {
                assert!(
                    body["content"]["application/json"]["schema"].is_object(),
                    "{method} {path}: request body without a schema"
                );
            }
            for (status, resp) in op["responses"].as_object().unwrap() {
                if let Some(json) = resp["content"].get("application/json") {
                    if path != "/api/openapi.json" {
                        assert!(json["schema"].is_object(), "{method} {path} {status}");
                    }
                }
            }
        }
    }
    // The routes of the management API and operations, each once.
    assert_eq!(operations, 35, "{:?}", paths.keys().collect::<Vec<_>>());
    let (st, _) = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = s.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["status"], "ready");
}

/// Connections that send nothing, or a request too slowly, are closed after
/// `client_timeout_secs`, whether paddock's own loop or hyper holds them.
#[tokio::test]
async fn slow_and_idle_client_connections_are_closed() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.gateway.client_timeout_secs = 1;
    let s = TestServer::start_in(dir.path(), config).await;
    let addr = s.url.trim_start_matches("http://").to_owned();

    /// Connects, sends `sent` and reads until the server closes: what it
    /// answered, and how long that took.
    async fn until_closed(addr: &str, sent: &[u8]) -> (String, Duration) {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(sent).await.unwrap();
        let t = Instant::now();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut got))
            .await
            .expect("the server closes the connection")
            .unwrap();
        (String::from_utf8_lossy(&got).into_owned(), t.elapsed())
    }

    // Nothing sent at all; half a request head, then silence.
    for sent in [&b""[..], b"POST /api/chat HTTP/1.1\r\nhost: x\r\n"] {
        let (got, waited) = until_closed(&addr, sent).await;
        assert!(got.is_empty(), "{got}");
        assert!(waited >= Duration::from_millis(900), "{waited:?}");
    }

    // A whole request, answered by the router; then the kept-alive
    // connection idles and is closed.
    let (got, _) = until_closed(&addr, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");

    // The server still answers.
    let (st, _) = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(st, StatusCode::OK);
}
