//! How domain values become SQLite columns and back.
//!
//! Owns the column encodings (timestamps as RFC 3339 text with nanoseconds,
//! except usage records' as integer nanoseconds; days as `YYYY-MM-DD`;
//! unsigned counters as checked `i64`, structured fields as JSON text, enums
//! as their wire names) and the row decoders for every record. It does not
//! run queries; `store.rs` does.

use chrono::{DateTime, SecondsFormat, Utc};
use paddock_core::catalog::{CpuRequirements, GpuRequirements, Model, ModelKind};
use paddock_core::instance::{DesiredState, Instance, InstanceState, Transition};
use paddock_core::store::{StoreError, StoreResult, UsageDay};
use paddock_core::user::{ApiKey, ConfirmationCode, RefreshToken, Role, UsageRecord, User};
use paddock_core::{ApiKeyId, InstanceId, ModelId, Timestamp, UserId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

/// A timestamp as stored: fixed-width RFC 3339 in UTC with nine fractional
/// digits, so that text order is time order and the value round-trips exactly.
pub(crate) fn ts(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// A usage record's time as stored: nanoseconds since the Unix epoch.
pub(crate) fn ts_nanos(t: &Timestamp) -> StoreResult<i64> {
    t.timestamp_nanos_opt()
        .ok_or_else(|| StoreError::Backend(format!("time {t} is out of range")))
}

/// How a day is written: `YYYY-MM-DD`, so that text order is day order.
const DAY_FORMAT: &str = "%Y-%m-%d";

/// A day as stored.
pub(crate) fn day(d: &chrono::NaiveDate) -> String {
    d.format(DAY_FORMAT).to_string()
}

/// An optional timestamp as stored (`NULL` for `None`).
pub(crate) fn opt_ts(t: &Option<Timestamp>) -> Option<String> {
    t.as_ref().map(ts)
}

/// An unsigned counter as an SQLite integer; refuses values beyond `i64`.
pub(crate) fn int(v: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("{what} {v} is too large to store")))
}

/// A value as JSON text.
pub(crate) fn json<T: Serialize + ?Sized>(v: &T, what: &str) -> StoreResult<String> {
    serde_json::to_string(v)
        .map_err(|e| StoreError::Backend(format!("cannot encode {what} as JSON: {e}")))
}

/// An optional value as JSON text (`NULL` for `None`).
pub(crate) fn opt_json<T: Serialize>(v: &Option<T>, what: &str) -> StoreResult<Option<String>> {
    v.as_ref().map(|v| json(v, what)).transpose()
}

fn get<'r, T>(row: &'r SqliteRow, col: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(col)
        .map_err(|e| StoreError::Backend(format!("reading column {col}: {e}")))
}

fn corrupt(col: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("column {col} holds an invalid value: {why}"))
}

fn parse_ts(col: &str, s: &str) -> StoreResult<Timestamp> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| corrupt(col, e))
}

fn get_ts(row: &SqliteRow, col: &str) -> StoreResult<Timestamp> {
    let s: String = get(row, col)?;
    parse_ts(col, &s)
}

fn get_ts_nanos(row: &SqliteRow, col: &str) -> StoreResult<Timestamp> {
    Ok(DateTime::from_timestamp_nanos(get::<i64>(row, col)?))
}

fn get_opt_ts(row: &SqliteRow, col: &str) -> StoreResult<Option<Timestamp>> {
    let s: Option<String> = get(row, col)?;
    s.map(|s| parse_ts(col, &s)).transpose()
}

fn get_uint<T: TryFrom<i64>>(row: &SqliteRow, col: &str) -> StoreResult<T> {
    let v: i64 = get(row, col)?;
    T::try_from(v).map_err(|_| corrupt(col, format!("{v} is out of range")))
}

fn get_json<T: DeserializeOwned>(row: &SqliteRow, col: &str) -> StoreResult<T> {
    let s: String = get(row, col)?;
    serde_json::from_str(&s).map_err(|e| corrupt(col, e))
}

fn get_opt_json<T: DeserializeOwned>(row: &SqliteRow, col: &str) -> StoreResult<Option<T>> {
    let s: Option<String> = get(row, col)?;
    s.map(|s| serde_json::from_str(&s).map_err(|e| corrupt(col, e)))
        .transpose()
}

fn parse_state(col: &str, s: &str) -> StoreResult<InstanceState> {
    InstanceState::parse(s).ok_or_else(|| corrupt(col, format!("unknown state {s:?}")))
}

pub(crate) fn user(row: &SqliteRow) -> StoreResult<User> {
    let role: String = get(row, "role")?;
    Ok(User {
        user_id: UserId::new(get::<String>(row, "user_id")?),
        email: get(row, "email")?,
        password_hash: get(row, "password_hash")?,
        role: Role::parse(&role)
            .ok_or_else(|| corrupt("role", format!("unknown role {role:?}")))?,
        confirmed: get(row, "confirmed")?,
        disabled: get(row, "disabled")?,
        must_change_password: get(row, "must_change_password")?,
        created_at: get_ts(row, "created_at")?,
        updated_at: get_ts(row, "updated_at")?,
        version: get_uint(row, "version")?,
    })
}

pub(crate) fn confirmation(row: &SqliteRow) -> StoreResult<ConfirmationCode> {
    Ok(ConfirmationCode {
        email: get(row, "email")?,
        code_hash: get(row, "code_hash")?,
        expires_at: get_ts(row, "expires_at")?,
        attempts: get_uint(row, "attempts")?,
    })
}

pub(crate) fn refresh_token(row: &SqliteRow) -> StoreResult<RefreshToken> {
    Ok(RefreshToken {
        token_hash: get(row, "token_hash")?,
        user_id: UserId::new(get::<String>(row, "user_id")?),
        family_id: get(row, "family_id")?,
        created_at: get_ts(row, "created_at")?,
        expires_at: get_ts(row, "expires_at")?,
        used_at: get_opt_ts(row, "used_at")?,
        revoked_at: get_opt_ts(row, "revoked_at")?,
    })
}

pub(crate) fn model(row: &SqliteRow) -> StoreResult<Model> {
    Ok(Model {
        model_id: ModelId::new(get::<String>(row, "model_id")?),
        model_name: get(row, "model_name")?,
        model_family: get(row, "model_family")?,
        model_size_gb: get(row, "model_size_gb")?,
        cpu_requirements: CpuRequirements {
            vcpu: get(row, "cpu_vcpu")?,
            memory_mb: get_uint(row, "cpu_memory_mb")?,
        },
        gpu_requirements: GpuRequirements {
            gpu_memory_mb: get_uint(row, "gpu_memory_mb")?,
            gpu_type: get(row, "gpu_type")?,
        },
        description: get(row, "description")?,
        supported_tasks: get_json(row, "supported_tasks")?,
        kind: {
            let kind: String = get(row, "kind")?;
            ModelKind::parse(&kind)
                .ok_or_else(|| corrupt("kind", format!("unknown model kind {kind:?}")))?
        },
        is_active: get(row, "is_active")?,
        updated_at: get_opt_ts(row, "updated_at")?,
        version: get_uint(row, "version")?,
    })
}

pub(crate) fn instance(row: &SqliteRow) -> StoreResult<Instance> {
    let status: String = get(row, "status")?;
    let desired: String = get(row, "desired")?;
    Ok(Instance {
        instance_id: InstanceId::new(get::<String>(row, "instance_id")?),
        user_id: UserId::new(get::<String>(row, "user_id")?),
        model_id: ModelId::new(get::<String>(row, "model_id")?),
        model_name: get(row, "model_name")?,
        name: get(row, "name")?,
        spec: get_json(row, "spec")?,
        status: parse_state("status", &status)?,
        desired: DesiredState::parse(&desired)
            .ok_or_else(|| corrupt("desired", format!("unknown state {desired:?}")))?,
        idle_timeout_secs: get_uint(row, "idle_timeout_secs")?,
        handle: get_opt_json(row, "handle")?,
        upstream_url: get(row, "upstream_url")?,
        status_reason: get(row, "status_reason")?,
        restart_count: get_uint(row, "restart_count")?,
        created_at: get_ts(row, "created_at")?,
        updated_at: get_ts(row, "updated_at")?,
        last_active_at: get_ts(row, "last_active_at")?,
        running_since: get_opt_ts(row, "running_since")?,
        billed_secs: get_uint(row, "billed_secs")?,
        version: get_uint(row, "version")?,
    })
}

pub(crate) fn transition(row: &SqliteRow) -> StoreResult<Transition> {
    let from: Option<String> = get(row, "from_state")?;
    let to: String = get(row, "to_state")?;
    Ok(Transition {
        instance_id: InstanceId::new(get::<String>(row, "instance_id")?),
        from: from.map(|s| parse_state("from_state", &s)).transpose()?,
        to: parse_state("to_state", &to)?,
        reason: get(row, "reason")?,
        at: get_ts(row, "at")?,
    })
}

pub(crate) fn api_key(row: &SqliteRow) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        key_id: ApiKeyId::new(get::<String>(row, "key_id")?),
        user_id: UserId::new(get::<String>(row, "user_id")?),
        name: get(row, "name")?,
        prefix: get(row, "prefix")?,
        secret_hash: get(row, "secret_hash")?,
        created_at: get_ts(row, "created_at")?,
        expires_at: get_opt_ts(row, "expires_at")?,
        last_used_at: get_opt_ts(row, "last_used_at")?,
        allowed_models: get_opt_json(row, "allowed_models")?,
        revoked_at: get_opt_ts(row, "revoked_at")?,
    })
}

pub(crate) fn usage_day(row: &SqliteRow) -> StoreResult<UsageDay> {
    let day: String = get(row, "day")?;
    Ok(UsageDay {
        day: chrono::NaiveDate::parse_from_str(&day, DAY_FORMAT).map_err(|e| corrupt("day", e))?,
        model_id: ModelId::new(get::<String>(row, "model_id")?),
        requests: get_uint(row, "requests")?,
        errors: get_uint(row, "errors")?,
        prompt_tokens: get_uint(row, "prompt_tokens")?,
        completion_tokens: get_uint(row, "completion_tokens")?,
    })
}

pub(crate) fn usage(row: &SqliteRow) -> StoreResult<UsageRecord> {
    Ok(UsageRecord {
        at: get_ts_nanos(row, "at")?,
        user_id: UserId::new(get::<String>(row, "user_id")?),
        api_key_id: get::<Option<String>>(row, "api_key_id")?.map(ApiKeyId::new),
        instance_id: InstanceId::new(get::<String>(row, "instance_id")?),
        model_id: ModelId::new(get::<String>(row, "model_id")?),
        route: get(row, "route")?,
        prompt_tokens: get_uint(row, "prompt_tokens")?,
        completion_tokens: get_uint(row, "completion_tokens")?,
        duration_ms: get_uint(row, "duration_ms")?,
        status: get_uint(row, "status")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_with_nanoseconds_and_sort_as_text() {
        let a = Utc::now();
        let b = a + chrono::Duration::nanoseconds(1);
        assert_eq!(parse_ts("t", &ts(&a)).unwrap(), a);
        assert!(ts(&a) < ts(&b));
        let whole = DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(ts(&whole), "2024-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn counters_beyond_i64_are_refused() {
        assert!(int(u64::MAX, "version").is_err());
        assert_eq!(int(7, "version").unwrap(), 7);
    }
}
