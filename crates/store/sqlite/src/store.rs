//! The [`Store`] trait on SQLite: one query, or one transaction, per method.
//!
//! Owns the SQL and the mapping of SQLite errors to [`StoreError`] (unique
//! violations become `Conflict`; everything else `Backend`, with messages
//! that name tables and columns but never values, so no hash reaches a log).
//! Updates of instances, users and models are compare-and-swap on their
//! `version` column; an API key's last use and revocation, and a
//! confirmation attempt, are single-column conditional writes.

use crate::codec::{self, int, json, opt_json, opt_ts, ts, ts_nanos};
use crate::SqliteStore;
use async_trait::async_trait;
use paddock_core::catalog::Model;
use paddock_core::instance::{Instance, Transition};
use paddock_core::store::{CredentialStore, Store, StoreError, StoreResult, UsageDay, UsageQuery};
use paddock_core::user::{ApiKey, ConfirmationCode, RefreshToken, UsageRecord, User};
use paddock_core::{ApiKeyId, InstanceId, ModelId, Timestamp, UserId};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

/// Any SQLite failure, as a backend error.
fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A unique-key violation as `Conflict(what)`; anything else as `Backend`.
fn conflict_or_backend(e: sqlx::Error, what: impl FnOnce(&str) -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(what(db.message()))
        }
        _ => backend(e),
    }
}

/// Decodes every row with `decode`.
fn decode_all<T>(
    rows: Vec<SqliteRow>,
    decode: fn(&SqliteRow) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    rows.iter().map(decode).collect()
}

fn user_conflict(message: &str) -> String {
    if message.contains("users.email") {
        "user with this email".to_owned()
    } else {
        "user with this id".to_owned()
    }
}

const INSTANCE_COLUMNS: &str = "instance_id, user_id, model_id, model_name, spec, status, \
     desired, idle_timeout_secs, handle, upstream_url, status_reason, restart_count, \
     created_at, updated_at, last_active_at, running_since, billed_secs, name, version";

/// Appends one history entry for `id` inside the caller's transaction.
async fn insert_transition(
    conn: &mut SqliteConnection,
    id: &InstanceId,
    t: &Transition,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO instance_transitions (instance_id, from_state, to_state, reason, at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(id.as_str())
    .bind(t.from.map(|s| s.as_str()))
    .bind(t.to.as_str())
    .bind(&t.reason)
    .bind(ts(&t.at))
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Why a compare-and-swap `UPDATE` in the caller's transaction changed no
/// row: `Stale` if the row with `key` in `table` exists (at another
/// version), `NotFound` if not. `table` and `column` are fixed names.
async fn stale_or_missing(
    conn: &mut SqliteConnection,
    table: &str,
    column: &str,
    key: &str,
    what: String,
) -> StoreError {
    let exists = sqlx::query(&format!("SELECT 1 FROM {table} WHERE {column} = ?"))
        .bind(key)
        .fetch_optional(conn)
        .await;
    match exists {
        Ok(Some(_)) => StoreError::Stale(what),
        Ok(None) => StoreError::NotFound(what),
        Err(e) => backend(e),
    }
}

impl SqliteStore {
    /// The row matching `key` in a single-key lookup, decoded.
    async fn fetch_one_by<T>(
        &self,
        sql: &'static str,
        key: &str,
        decode: fn(&SqliteRow) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        sqlx::query(sql)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .as_ref()
            .map(decode)
            .transpose()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    // ---- users ----

    async fn create_user(&self, u: &User) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO users (user_id, email, password_hash, role, confirmed, disabled, \
             must_change_password, created_at, updated_at, version) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(u.user_id.as_str())
        .bind(&u.email)
        .bind(&u.password_hash)
        .bind(u.role.as_str())
        .bind(u.confirmed)
        .bind(u.disabled)
        .bind(u.must_change_password)
        .bind(ts(&u.created_at))
        .bind(ts(&u.updated_at))
        .bind(int(u.version, "version")?)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or_backend(e, user_conflict))?;
        Ok(())
    }

    async fn get_user(&self, id: &UserId) -> StoreResult<Option<User>> {
        self.fetch_one_by(
            "SELECT * FROM users WHERE user_id = ?",
            id.as_str(),
            codec::user,
        )
        .await
    }

    async fn get_user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        self.fetch_one_by("SELECT * FROM users WHERE email = ?", email, codec::user)
            .await
    }

    async fn update_user(&self, u: &User) -> StoreResult<User> {
        let version = int(u.version, "version")?;
        // As for instances: the UPDATE comes first, so the transaction holds
        // the write lock when the version is compared.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let done = sqlx::query(
            "UPDATE users SET email = ?, password_hash = ?, role = ?, confirmed = ?, \
             disabled = ?, must_change_password = ?, created_at = ?, updated_at = ?, \
             version = version + 1 WHERE user_id = ? AND version = ?",
        )
        .bind(&u.email)
        .bind(&u.password_hash)
        .bind(u.role.as_str())
        .bind(u.confirmed)
        .bind(u.disabled)
        .bind(u.must_change_password)
        .bind(ts(&u.created_at))
        .bind(ts(&u.updated_at))
        .bind(u.user_id.as_str())
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_or_backend(e, user_conflict))?;
        if done.rows_affected() == 0 {
            let id = u.user_id.as_str();
            let what = format!("user {id}");
            return Err(stale_or_missing(&mut tx, "users", "user_id", id, what).await);
        }
        tx.commit().await.map_err(backend)?;
        Ok(User {
            version: u.version + 1,
            ..u.clone()
        })
    }

    async fn list_users(&self) -> StoreResult<Vec<User>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY created_at, rowid")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        decode_all(rows, codec::user)
    }

    // ---- catalog ----
    async fn insert_model_if_absent(&self, m: &Model) -> StoreResult<bool> {
        let done = bind_model_fields(
            sqlx::query(
                "INSERT INTO models (model_name, model_family, model_size_gb, cpu_vcpu, \
                 cpu_memory_mb, gpu_memory_mb, gpu_type, description, supported_tasks, \
                 is_active, updated_at, kind, model_id, version) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (model_id) DO NOTHING",
            ),
            m,
        )?
        .bind(int(m.version, "version")?)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn update_model(&self, m: &Model) -> StoreResult<Model> {
        let version = int(m.version, "version")?;
        // The UPDATE comes first, as for instances.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let done = bind_model_fields(
            sqlx::query(
                "UPDATE models SET model_name = ?, model_family = ?, model_size_gb = ?, \
                 cpu_vcpu = ?, cpu_memory_mb = ?, gpu_memory_mb = ?, gpu_type = ?, \
                 description = ?, supported_tasks = ?, is_active = ?, updated_at = ?, \
                 kind = ?, version = version + 1 WHERE model_id = ? AND version = ?",
            ),
            m,
        )?
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            let id = m.model_id.as_str();
            let what = format!("model {id}");
            return Err(stale_or_missing(&mut tx, "models", "model_id", id, what).await);
        }
        tx.commit().await.map_err(backend)?;
        Ok(Model {
            version: m.version + 1,
            ..m.clone()
        })
    }

    async fn get_model(&self, id: &ModelId) -> StoreResult<Option<Model>> {
        self.fetch_one_by(
            "SELECT * FROM models WHERE model_id = ?",
            id.as_str(),
            codec::model,
        )
        .await
    }

    async fn list_models(&self) -> StoreResult<Vec<Model>> {
        let rows = sqlx::query("SELECT * FROM models ORDER BY model_id")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        decode_all(rows, codec::model)
    }

    // ---- instances ----

    async fn create_instance(&self, i: &Instance, first: &Transition) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let sql = format!(
            "INSERT INTO instances ({INSTANCE_COLUMNS}) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        bind_instance_fields(sqlx::query(&sql).bind(i.instance_id.as_str()), i)?
            .bind(int(i.version, "version")?)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_or_backend(e, |_| format!("instance {}", i.instance_id)))?;
        insert_transition(&mut tx, &i.instance_id, first).await?;
        tx.commit().await.map_err(backend)
    }

    async fn get_instance(&self, id: &InstanceId) -> StoreResult<Option<Instance>> {
        sqlx::query(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE instance_id = ?"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(codec::instance)
        .transpose()
    }

    async fn list_instances(&self, user: Option<&UserId>) -> StoreResult<Vec<Instance>> {
        let mut q =
            QueryBuilder::<Sqlite>::new(format!("SELECT {INSTANCE_COLUMNS} FROM instances"));
        if let Some(u) = user {
            q.push(" WHERE user_id = ").push_bind(u.as_str());
        }
        q.push(" ORDER BY created_at DESC, instance_id");
        let rows = q.build().fetch_all(&self.pool).await.map_err(backend)?;
        decode_all(rows, codec::instance)
    }

    async fn update_instance(
        &self,
        i: &Instance,
        transition: Option<&Transition>,
    ) -> StoreResult<Instance> {
        let version = int(i.version, "version")?;
        // The UPDATE is the transaction's first statement, so it takes the
        // write lock at once (waiting up to the busy timeout) and the version
        // it compares is the latest committed one.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let done = bind_instance_fields(
            sqlx::query(
                "UPDATE instances SET user_id = ?, model_id = ?, model_name = ?, spec = ?, \
             status = ?, desired = ?, idle_timeout_secs = ?, handle = ?, upstream_url = ?, \
             status_reason = ?, restart_count = ?, created_at = ?, updated_at = ?, \
             last_active_at = ?, running_since = ?, billed_secs = ?, name = ?, \
             version = version + 1 \
             WHERE instance_id = ? AND version = ?",
            ),
            i,
        )?
        .bind(i.instance_id.as_str())
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            let id = i.instance_id.as_str();
            let what = format!("instance {id}");
            return Err(stale_or_missing(&mut tx, "instances", "instance_id", id, what).await);
        }
        if let Some(t) = transition {
            insert_transition(&mut tx, &i.instance_id, t).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(Instance {
            version: i.version + 1,
            ..i.clone()
        })
    }

    async fn list_transitions(&self, id: &InstanceId) -> StoreResult<Vec<Transition>> {
        let rows =
            sqlx::query("SELECT * FROM instance_transitions WHERE instance_id = ? ORDER BY id")
                .bind(id.as_str())
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
        decode_all(rows, codec::transition)
    }

    async fn delete_user(&self, id: &UserId) -> StoreResult<()> {
        sqlx::query("DELETE FROM users WHERE user_id = ?")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn delete_instance(&self, id: &InstanceId) -> StoreResult<()> {
        // The history goes with it (ON DELETE CASCADE); deleting what is not
        // there is not an error, so a retried delete succeeds.
        sqlx::query("DELETE FROM instances WHERE instance_id = ?")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    // ---- API keys ----

    async fn create_api_key(&self, k: &ApiKey) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_keys (key_id, user_id, name, prefix, secret_hash, created_at, \
             expires_at, last_used_at, allowed_models, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(k.key_id.as_str())
        .bind(k.user_id.as_str())
        .bind(&k.name)
        .bind(&k.prefix)
        .bind(&k.secret_hash)
        .bind(ts(&k.created_at))
        .bind(opt_ts(&k.expires_at))
        .bind(opt_ts(&k.last_used_at))
        .bind(opt_json(&k.allowed_models, "allowed_models")?)
        .bind(opt_ts(&k.revoked_at))
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or_backend(e, |_| format!("API key {}", k.key_id)))?;
        Ok(())
    }

    async fn get_api_key(&self, id: &ApiKeyId) -> StoreResult<Option<ApiKey>> {
        self.fetch_one_by(
            "SELECT * FROM api_keys WHERE key_id = ?",
            id.as_str(),
            codec::api_key,
        )
        .await
    }

    async fn get_api_key_by_hash(&self, secret_hash: &str) -> StoreResult<Option<ApiKey>> {
        self.fetch_one_by(
            "SELECT * FROM api_keys WHERE secret_hash = ?",
            secret_hash,
            codec::api_key,
        )
        .await
    }

    async fn list_api_keys(&self, user: &UserId) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query(
            "SELECT * FROM api_keys WHERE user_id = ? ORDER BY created_at DESC, rowid DESC",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        decode_all(rows, codec::api_key)
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let nanos = |t: &Timestamp| t.timestamp_nanos_opt().unwrap_or(i64::MAX);
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, until_ns) VALUES (?, ?, ?) \
             ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, until_ns = excluded.until_ns \
             WHERE leases.holder = excluded.holder OR leases.until_ns < ?",
        )
        .bind(name)
        .bind(holder)
        .bind(nanos(&until))
        .bind(nanos(&now))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM leases WHERE name = ? AND holder = ?")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn touch_api_key(&self, id: &ApiKeyId, at: Timestamp) -> StoreResult<()> {
        // One conditional write of one column: it can never undo a
        // revocation, whenever it lands. Timestamps compare as text.
        let at = ts(&at);
        sqlx::query(
            "UPDATE api_keys SET last_used_at = ? WHERE key_id = ? AND revoked_at IS NULL \
             AND (last_used_at IS NULL OR last_used_at < ?)",
        )
        .bind(&at)
        .bind(id.as_str())
        .bind(&at)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn revoke_api_key(&self, id: &ApiKeyId, at: Timestamp) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
        )
        .bind(ts(&at))
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    // ---- usage ----

    async fn record_usage(&self, r: &UsageRecord) -> StoreResult<()> {
        self.record_usage_batch(std::slice::from_ref(r)).await
    }

    async fn record_usage_batch(&self, records: &[UsageRecord]) -> StoreResult<()> {
        // Multi-row INSERTs of a few fixed sizes (128 rows, then the
        // remainder as 64, 32, ... and 1), so sqlx keeps one prepared
        // statement per size instead of re-preparing one per batch length.
        const ROWS: usize = 128;
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let mut rest = records;
        let mut size = ROWS;
        while !rest.is_empty() {
            while size > rest.len() {
                size /= 2;
            }
            let (chunk, tail) = rest.split_at(size);
            insert_usage(chunk)?
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            rest = tail;
        }
        // The day totals, one upsert per user, day and model in the batch.
        let mut days: std::collections::BTreeMap<(chrono::NaiveDate, &str, &str), [u64; 4]> =
            std::collections::BTreeMap::new();
        for r in records {
            let t = days
                .entry((r.at.date_naive(), r.user_id.as_str(), r.model_id.as_str()))
                .or_default();
            t[0] += 1;
            t[1] += u64::from(r.status >= 400);
            t[2] += r.prompt_tokens;
            t[3] += r.completion_tokens;
        }
        for ((day, user, model), [requests, errors, prompt, completion]) in days {
            sqlx::query(
                "INSERT INTO usage_daily (user_id, day, model_id, requests, errors, prompt_tokens, completion_tokens) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (user_id, day, model_id) DO UPDATE SET \
                 requests = requests + excluded.requests, errors = errors + excluded.errors, \
                 prompt_tokens = prompt_tokens + excluded.prompt_tokens, \
                 completion_tokens = completion_tokens + excluded.completion_tokens",
            )
            .bind(user)
            .bind(codec::day(&day))
            .bind(model)
            .bind(int(requests, "requests")?)
            .bind(int(errors, "errors")?)
            .bind(int(prompt, "prompt_tokens")?)
            .bind(int(completion, "completion_tokens")?)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(())
    }

    async fn usage_by_day(
        &self,
        user_id: Option<&UserId>,
        since: chrono::NaiveDate,
    ) -> StoreResult<Vec<UsageDay>> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT day, model_id, SUM(requests) AS requests, SUM(errors) AS errors, \
             SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens \
             FROM usage_daily WHERE day >= ",
        );
        q.push_bind(codec::day(&since));
        if let Some(u) = user_id {
            q.push(" AND user_id = ").push_bind(u.as_str().to_owned());
        }
        q.push(" GROUP BY day, model_id ORDER BY day, model_id");
        let rows = q.build().fetch_all(&self.pool).await.map_err(backend)?;
        decode_all(rows, codec::usage_day)
    }

    async fn list_usage(&self, query: &UsageQuery) -> StoreResult<Vec<UsageRecord>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM usage_records WHERE 1 = 1");
        if let Some(u) = &query.user_id {
            q.push(" AND user_id = ").push_bind(u.as_str().to_owned());
        }
        if let Some(since) = &query.since {
            q.push(" AND at >= ").push_bind(ts_nanos(since)?);
        }
        if let Some(until) = &query.until {
            q.push(" AND at < ").push_bind(ts_nanos(until)?);
        }
        q.push(" ORDER BY at, id");
        let rows = q.build().fetch_all(&self.pool).await.map_err(backend)?;
        decode_all(rows, codec::usage)
    }
}

/// One INSERT of `rows` usage records. Text columns are bound by
/// reference and the argument list is sized once.
fn insert_usage(
    rows: &[UsageRecord],
) -> StoreResult<sqlx::query::Query<'_, Sqlite, sqlx::sqlite::SqliteArguments<'_>>> {
    use sqlx::Arguments;
    let mut args = sqlx::sqlite::SqliteArguments::default();
    args.reserve(rows.len() * 10, 0);
    let bad = |e: sqlx::error::BoxDynError| StoreError::Backend(format!("binding usage: {e}"));
    for r in rows {
        args.add(ts_nanos(&r.at)?).map_err(bad)?;
        args.add(r.user_id.as_str()).map_err(bad)?;
        args.add(r.api_key_id.as_ref().map(|k| k.as_str()))
            .map_err(bad)?;
        args.add(r.instance_id.as_str()).map_err(bad)?;
        args.add(r.model_id.as_str()).map_err(bad)?;
        args.add(r.route.as_str()).map_err(bad)?;
        args.add(int(r.prompt_tokens, "prompt_tokens")?)
            .map_err(bad)?;
        args.add(int(r.completion_tokens, "completion_tokens")?)
            .map_err(bad)?;
        args.add(int(r.duration_ms, "duration_ms")?).map_err(bad)?;
        args.add(i64::from(r.status)).map_err(bad)?;
    }
    Ok(sqlx::query_with(usage_sql(rows.len()), args))
}

/// The INSERT text for `n` rows, built once per `n` and kept for the
/// process's life (only eight sizes are used). Its text depends only on the
/// row count, so sqlx caches one prepared statement per count; leaking it
/// gives the 'static lifetime sqlx wants.
fn usage_sql(n: usize) -> &'static str {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<usize, &'static str>>> = OnceLock::new();
    let mut map = CACHE
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    map.entry(n).or_insert_with(|| {
        let mut sql = String::from(
            "INSERT OR FAIL INTO usage_records (at, user_id, api_key_id, instance_id, model_id, route, \
             prompt_tokens, completion_tokens, duration_ms, status) VALUES ",
        );
        for i in 0..n {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        }
        Box::leak(sql.into_boxed_str())
    })
}

/// Binds the instance columns between `instance_id` and `version`, in the
/// order INSERT and UPDATE both list them.
fn bind_instance_fields<'q>(
    q: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    i: &'q Instance,
) -> StoreResult<sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>> {
    Ok(q.bind(i.user_id.as_str())
        .bind(i.model_id.as_str())
        .bind(&i.model_name)
        .bind(json(&i.spec, "spec")?)
        .bind(i.status.as_str())
        .bind(i.desired.as_str())
        .bind(int(i.idle_timeout_secs, "idle_timeout_secs")?)
        .bind(opt_json(&i.handle, "handle")?)
        .bind(&i.upstream_url)
        .bind(&i.status_reason)
        .bind(i64::from(i.restart_count))
        .bind(ts(&i.created_at))
        .bind(ts(&i.updated_at))
        .bind(ts(&i.last_active_at))
        .bind(opt_ts(&i.running_since))
        .bind(int(i.billed_secs, "billed_secs")?)
        .bind(&i.name))
}

/// Binds the model columns from `model_name` to `kind`, then
/// `model_id`, in the order INSERT and UPDATE both list them.
fn bind_model_fields<'q>(
    q: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    m: &'q Model,
) -> StoreResult<sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>> {
    Ok(q.bind(&m.model_name)
        .bind(&m.model_family)
        .bind(m.model_size_gb)
        .bind(m.cpu_requirements.vcpu)
        .bind(i64::from(m.cpu_requirements.memory_mb))
        .bind(i64::from(m.gpu_requirements.gpu_memory_mb))
        .bind(&m.gpu_requirements.gpu_type)
        .bind(&m.description)
        .bind(json(&m.supported_tasks, "supported_tasks")?)
        .bind(m.is_active)
        .bind(opt_ts(&m.updated_at))
        .bind(m.kind.as_str())
        .bind(m.model_id.as_str()))
}

#[async_trait]
impl CredentialStore for SqliteStore {
    // ---- confirmation codes ----

    async fn put_confirmation(&self, c: &ConfirmationCode) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO confirmation_codes (email, code_hash, expires_at, attempts) \
             VALUES (?, ?, ?, ?) \
             ON CONFLICT (email) DO UPDATE SET email = excluded.email, \
             code_hash = excluded.code_hash, expires_at = excluded.expires_at, \
             attempts = excluded.attempts",
        )
        .bind(&c.email)
        .bind(&c.code_hash)
        .bind(ts(&c.expires_at))
        .bind(i64::from(c.attempts))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn get_confirmation(&self, email: &str) -> StoreResult<Option<ConfirmationCode>> {
        self.fetch_one_by(
            "SELECT * FROM confirmation_codes WHERE email = ?",
            email,
            codec::confirmation,
        )
        .await
    }

    async fn count_confirmation_attempt(
        &self,
        email: &str,
    ) -> StoreResult<Option<ConfirmationCode>> {
        sqlx::query(
            "UPDATE confirmation_codes SET attempts = attempts + 1 WHERE email = ? RETURNING *",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .as_ref()
        .map(codec::confirmation)
        .transpose()
    }

    async fn delete_confirmation(&self, email: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM confirmation_codes WHERE email = ?")
            .bind(email)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    // ---- refresh tokens ----

    async fn insert_refresh_token(&self, t: &RefreshToken) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, user_id, family_id, created_at, \
             expires_at, used_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.token_hash)
        .bind(t.user_id.as_str())
        .bind(&t.family_id)
        .bind(ts(&t.created_at))
        .bind(ts(&t.expires_at))
        .bind(opt_ts(&t.used_at))
        .bind(opt_ts(&t.revoked_at))
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or_backend(e, |_| "refresh token".to_owned()))?;
        Ok(())
    }

    async fn get_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        self.fetch_one_by(
            "SELECT * FROM refresh_tokens WHERE token_hash = ?",
            token_hash,
            codec::refresh_token,
        )
        .await
    }

    async fn consume_refresh_token(&self, token_hash: &str, at: Timestamp) -> StoreResult<bool> {
        // One conditional write: of two concurrent rotations exactly one
        // changes the row. Expiry is the caller's check.
        let done = sqlx::query(
            "UPDATE refresh_tokens SET used_at = ? \
             WHERE token_hash = ? AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind(ts(&at))
        .bind(token_hash)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_refresh_family(&self, family_id: &str, at: Timestamp) -> StoreResult<()> {
        // The first revocation time is kept.
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL",
        )
        .bind(ts(&at))
        .bind(family_id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn revoke_user_refresh_tokens(&self, user: &UserId, at: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
        )
        .bind(ts(&at))
        .bind(user.as_str())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }
}
