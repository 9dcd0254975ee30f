-- PostgreSQL twin of migrations/sqlite/0001_platform.sql; keep the two in step.
-- Platform: units, roles, users, sessions, tokens, audit chain, policy versions, grids, idempotency.
-- Times are bound from Rust (never NOW()); `jurisdiction` is a division-code path on every scoped row.

CREATE TABLE units (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    jurisdiction TEXT COLLATE "C" NOT NULL,
    supervisor_id UUID REFERENCES units(id),
    address TEXT NOT NULL DEFAULT '',
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX units_name ON units (jurisdiction, name);
CREATE INDEX units_jurisdiction ON units (jurisdiction);

CREATE TABLE roles (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    label_zh TEXT NOT NULL,
    label_en TEXT NOT NULL,
    permissions TEXT NOT NULL,
    builtin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE users (
    id UUID PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    unit_id UUID NOT NULL REFERENCES units(id),
    role_id UUID NOT NULL REFERENCES roles(id),
    scope_kind TEXT NOT NULL,
    scope_code TEXT COLLATE "C" NOT NULL,
    jurisdiction TEXT COLLATE "C" NOT NULL,
    password_hash TEXT NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT FALSE,
    phone_enc BYTEA,
    phone_bidx BYTEA,
    id_number_enc BYTEA,
    id_number_bidx BYTEA,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX users_jurisdiction ON users (jurisdiction);
CREATE INDEX users_unit ON users (unit_id);
CREATE INDEX users_phone_bidx ON users (phone_bidx);
CREATE INDEX users_id_number_bidx ON users (id_number_bidx);

CREATE TABLE sessions (
    token_hash BYTEA PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    lang TEXT NOT NULL DEFAULT 'zh',
    ip TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_tokens (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash BYTEA NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    unit_id UUID NOT NULL REFERENCES units(id),
    jurisdiction TEXT COLLATE "C" NOT NULL,
    scope_kind TEXT NOT NULL,
    scope_code TEXT COLLATE "C" NOT NULL,
    permissions TEXT NOT NULL,
    created_by UUID NOT NULL REFERENCES users(id),
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ
);
CREATE INDEX api_tokens_jurisdiction ON api_tokens (jurisdiction);

CREATE TABLE login_failures (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL,
    ip TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL
);
CREATE INDEX login_failures_user ON login_failures (username, at);
CREATE INDEX login_failures_ip ON login_failures (ip, at);

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    request_id TEXT NOT NULL,
    actor_id UUID,
    actor_name TEXT NOT NULL,
    unit_id UUID,
    jurisdiction TEXT COLLATE "C" NOT NULL,
    action TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL
);
CREATE INDEX audit_log_jurisdiction ON audit_log (jurisdiction, seq);
CREATE INDEX audit_log_object ON audit_log (object_type, object_id);
CREATE INDEX audit_log_at ON audit_log (at);

-- The head of the chain. Updating it first in every audited transaction serialises appends.
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);

CREATE TABLE policy_versions (
    id UUID PRIMARY KEY,
    version BIGINT NOT NULL UNIQUE,
    effective_from TIMESTAMPTZ NOT NULL,
    params TEXT NOT NULL,
    note TEXT NOT NULL,
    created_by UUID,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE grids (
    id UUID PRIMARY KEY,
    code TEXT COLLATE "C" NOT NULL UNIQUE,
    name TEXT NOT NULL,
    village_code TEXT NOT NULL,
    jurisdiction TEXT COLLATE "C" NOT NULL,
    member_id UUID REFERENCES users(id),
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX grids_name ON grids (village_code, name);
CREATE INDEX grids_jurisdiction ON grids (jurisdiction);

-- A repeated create with the same key returns the first answer instead of creating twice.
CREATE TABLE idempotency (
    actor TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash BYTEA NOT NULL,
    status BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (actor, key)
);
