-- Platform: units, roles, users, sessions, tokens, audit chain, policy versions, grids, idempotency.
-- Times are bound from Rust (never NOW()); `jurisdiction` is a division-code path on every scoped row.

CREATE TABLE units (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    jurisdiction TEXT NOT NULL,
    supervisor_id BLOB REFERENCES units(id),
    address TEXT NOT NULL DEFAULT '',
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX units_name ON units (jurisdiction, name);
CREATE INDEX units_jurisdiction ON units (jurisdiction);

CREATE TABLE roles (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    label_zh TEXT NOT NULL,
    label_en TEXT NOT NULL,
    permissions TEXT NOT NULL,
    builtin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE users (
    id BLOB PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    unit_id BLOB NOT NULL REFERENCES units(id),
    role_id BLOB NOT NULL REFERENCES roles(id),
    scope_kind TEXT NOT NULL,
    scope_code TEXT NOT NULL,
    jurisdiction TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    phone_enc BLOB,
    phone_bidx BLOB,
    id_number_enc BLOB,
    id_number_bidx BLOB,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX users_jurisdiction ON users (jurisdiction);
CREATE INDEX users_unit ON users (unit_id);
CREATE INDEX users_phone_bidx ON users (phone_bidx);
CREATE INDEX users_id_number_bidx ON users (id_number_bidx);

CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY,
    user_id BLOB NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    lang TEXT NOT NULL DEFAULT 'zh',
    ip TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_tokens (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    unit_id BLOB NOT NULL REFERENCES units(id),
    jurisdiction TEXT NOT NULL,
    scope_kind TEXT NOT NULL,
    scope_code TEXT NOT NULL,
    permissions TEXT NOT NULL,
    created_by BLOB NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    last_used_at TEXT
);
CREATE INDEX api_tokens_jurisdiction ON api_tokens (jurisdiction);

CREATE TABLE login_failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL,
    ip TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX login_failures_user ON login_failures (username, at);
CREATE INDEX login_failures_ip ON login_failures (ip, at);

CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    request_id TEXT NOT NULL,
    actor_id BLOB,
    actor_name TEXT NOT NULL,
    unit_id BLOB,
    jurisdiction TEXT NOT NULL,
    action TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX audit_log_jurisdiction ON audit_log (jurisdiction, seq);
CREATE INDEX audit_log_object ON audit_log (object_type, object_id);
CREATE INDEX audit_log_at ON audit_log (at);

-- The head of the chain. Updating it first in every audited transaction serialises appends.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, X'0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE policy_versions (
    id BLOB PRIMARY KEY,
    version INTEGER NOT NULL UNIQUE,
    effective_from TEXT NOT NULL,
    params TEXT NOT NULL,
    note TEXT NOT NULL,
    created_by BLOB,
    created_at TEXT NOT NULL
);

CREATE TABLE grids (
    id BLOB PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    village_code TEXT NOT NULL,
    jurisdiction TEXT NOT NULL,
    member_id BLOB REFERENCES users(id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX grids_name ON grids (village_code, name);
CREATE INDEX grids_jurisdiction ON grids (jurisdiction);

-- A repeated create with the same key returns the first answer instead of creating twice.
CREATE TABLE idempotency (
    actor TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (actor, key)
);
