-- paddock's records. Timestamps are RFC 3339 text in UTC with nine fractional
-- digits (`2024-05-01T12:00:00.123456789Z`): readable in the sqlite shell,
-- exact on round trip, and ordered correctly by plain text comparison.
-- Unsigned counters are INTEGER (i64); JSON columns hold serde_json text.

CREATE TABLE users (
    user_id              TEXT PRIMARY KEY NOT NULL,
    -- Callers lower-case emails; NOCASE keeps the uniqueness rule if one slips.
    email                TEXT NOT NULL COLLATE NOCASE,
    password_hash        TEXT NOT NULL,
    role                 TEXT NOT NULL,
    confirmed            INTEGER NOT NULL,
    disabled             INTEGER NOT NULL,
    must_change_password INTEGER NOT NULL,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE UNIQUE INDEX users_email ON users (email);

CREATE TABLE confirmation_codes (
    email      TEXT PRIMARY KEY NOT NULL COLLATE NOCASE,
    code_hash  TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    attempts   INTEGER NOT NULL
);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL,
    family_id  TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT,
    revoked_at TEXT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

CREATE TABLE models (
    model_id        TEXT PRIMARY KEY NOT NULL,
    model_name      TEXT NOT NULL,
    model_family    TEXT NOT NULL,
    model_size_gb   REAL NOT NULL,
    cpu_vcpu        REAL NOT NULL,
    cpu_memory_mb   INTEGER NOT NULL,
    gpu_memory_mb   INTEGER NOT NULL,
    gpu_type        TEXT NOT NULL,
    description     TEXT NOT NULL,
    -- JSON array of strings.
    supported_tasks TEXT NOT NULL,
    is_active       INTEGER NOT NULL,
    updated_at      TEXT
);

CREATE TABLE instances (
    instance_id       TEXT PRIMARY KEY NOT NULL,
    user_id           TEXT NOT NULL,
    model_id          TEXT NOT NULL,
    model_name        TEXT NOT NULL,
    -- JSON ComputeSpec ({"kind":"cpu",...}).
    spec              TEXT NOT NULL,
    -- Wire names: PENDING, RUNNING, ...
    status            TEXT NOT NULL,
    desired           TEXT NOT NULL,
    idle_timeout_secs INTEGER NOT NULL,
    -- The driver's opaque JSON handle.
    handle            TEXT,
    upstream_url      TEXT,
    status_reason     TEXT,
    restart_count     INTEGER NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    last_active_at    TEXT NOT NULL,
    running_since     TEXT,
    billed_secs       INTEGER NOT NULL,
    version           INTEGER NOT NULL
);
CREATE INDEX instances_user ON instances (user_id);

CREATE TABLE instance_transitions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL REFERENCES instances (instance_id) ON DELETE CASCADE,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    at          TEXT NOT NULL
);
CREATE INDEX instance_transitions_instance ON instance_transitions (instance_id, id);

CREATE TABLE api_keys (
    key_id         TEXT PRIMARY KEY NOT NULL,
    user_id        TEXT NOT NULL,
    name           TEXT NOT NULL,
    prefix         TEXT NOT NULL,
    secret_hash    TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    expires_at     TEXT,
    last_used_at   TEXT,
    -- JSON array of model ids; NULL means every model.
    allowed_models TEXT,
    revoked_at     TEXT
);
CREATE UNIQUE INDEX api_keys_secret_hash ON api_keys (secret_hash);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE usage_records (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    at                TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    api_key_id        TEXT,
    instance_id       TEXT NOT NULL,
    model_id          TEXT NOT NULL,
    route             TEXT NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    duration_ms       INTEGER NOT NULL,
    status            INTEGER NOT NULL
);
CREATE INDEX usage_records_user_at ON usage_records (user_id, at);
CREATE INDEX usage_records_at ON usage_records (at);
