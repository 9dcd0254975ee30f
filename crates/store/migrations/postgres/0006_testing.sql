-- PostgreSQL twin of migrations/sqlite/0006_testing.sql; keep the two in step.
-- Sampling and testing tables, and alerts made subject-general (altered in place here).

ALTER TABLE alerts ADD COLUMN subject_kind TEXT NOT NULL DEFAULT 'trip';
ALTER TABLE alerts ADD COLUMN subject_id UUID;
ALTER TABLE alerts ADD COLUMN subject TEXT NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN rung1_id UUID REFERENCES units(id);
ALTER TABLE alerts ADD COLUMN emergency BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE alerts SET subject_id = trip_id, subject = COALESCE((SELECT t.plate FROM trips t WHERE t.id = alerts.trip_id), '');
ALTER TABLE alerts ALTER COLUMN subject_id SET NOT NULL;
ALTER TABLE alerts ALTER COLUMN subject_kind DROP DEFAULT;
ALTER TABLE alerts ALTER COLUMN trip_id DROP NOT NULL;
ALTER TABLE alerts DROP CONSTRAINT alerts_trip_id_kind_due_at_key;
CREATE UNIQUE INDEX alerts_subject ON alerts (subject_kind, subject_id, kind, due_at, custodian_id);
CREATE INDEX alerts_trip ON alerts (trip_id) WHERE trip_id IS NOT NULL;

CREATE TABLE sampling_sites (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    team_id UUID NOT NULL REFERENCES units(id),
    address TEXT NOT NULL DEFAULT '',
    active BOOLEAN NOT NULL DEFAULT TRUE,
    jurisdiction TEXT COLLATE "C" NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (team_id, name)
);

CREATE TABLE screening_rounds (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    -- The area: a township or the county (the prefix every expected person's residence starts with).
    jurisdiction TEXT COLLATE "C" NOT NULL,
    starts_at TIMESTAMPTZ NOT NULL,
    due_at TIMESTAMPTZ NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    policy_version BIGINT NOT NULL
);
CREATE INDEX screening_rounds_jurisdiction ON screening_rounds (jurisdiction, starts_at);

CREATE TABLE test_batches (
    id UUID PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    team_id UUID NOT NULL REFERENCES units(id),
    lab_id UUID NOT NULL REFERENCES units(id),
    -- handed (the lab has not accepted it yet) | received
    state TEXT NOT NULL,
    tubes BIGINT NOT NULL,
    handed_at TIMESTAMPTZ NOT NULL,
    accept_by TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ,
    received_by TEXT,
    -- Barcodes flagged at receipt (JSON arrays).
    missing TEXT NOT NULL DEFAULT '[]',
    extra TEXT NOT NULL DEFAULT '[]',
    jurisdiction TEXT COLLATE "C" NOT NULL
);
CREATE INDEX test_batches_lab ON test_batches (lab_id, state);
CREATE INDEX test_batches_accept ON test_batches (accept_by) WHERE state = 'handed';

CREATE TABLE tubes (
    id UUID PRIMARY KEY,
    barcode TEXT NOT NULL UNIQUE,
    pool_size BIGINT NOT NULL,
    members BIGINT NOT NULL,
    priority TEXT NOT NULL,
    purpose TEXT NOT NULL,
    state TEXT NOT NULL,
    team_id UUID NOT NULL REFERENCES units(id),
    site_id UUID REFERENCES sampling_sites(id),
    round_id UUID REFERENCES screening_rounds(id),
    trip_id UUID REFERENCES trips(id),
    batch_id UUID REFERENCES test_batches(id),
    lab_id UUID REFERENCES units(id),
    sampled_at TIMESTAMPTZ NOT NULL,
    sealed_at TIMESTAMPTZ,
    shipped_at TIMESTAMPTZ,
    received_at TIMESTAMPTZ,
    due_at TIMESTAMPTZ NOT NULL,
    outcome TEXT,
    ct_centi BIGINT,
    resulted_at TIMESTAMPTZ,
    -- When the deadline watcher must look at the tube (NULL: resulted, or its overdue alert is raised).
    watch_at TIMESTAMPTZ,
    jurisdiction TEXT COLLATE "C" NOT NULL,
    policy_version BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX tubes_watch ON tubes (watch_at) WHERE watch_at IS NOT NULL;
CREATE INDEX tubes_batch ON tubes (batch_id);
CREATE INDEX tubes_lab ON tubes (lab_id, state);
CREATE INDEX tubes_team ON tubes (team_id, state);
CREATE INDEX tubes_trip ON tubes (trip_id) WHERE trip_id IS NOT NULL;
CREATE INDEX tubes_jurisdiction ON tubes (jurisdiction, sampled_at);

CREATE TABLE tube_members (
    tube_id UUID NOT NULL REFERENCES tubes(id),
    person_id UUID NOT NULL REFERENCES persons(id),
    seq BIGINT NOT NULL,
    added_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tube_id, person_id)
);
CREATE INDEX tube_members_person ON tube_members (person_id, added_at);

-- Every result a lab sent; a changed result is a new row superseding the one before.
CREATE TABLE tube_results (
    id UUID PRIMARY KEY,
    tube_id UUID NOT NULL REFERENCES tubes(id),
    outcome TEXT NOT NULL,
    ct_centi BIGINT,
    lab_id UUID NOT NULL REFERENCES units(id),
    source TEXT NOT NULL,
    tested_at TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    recorded_by TEXT NOT NULL,
    supersedes UUID REFERENCES tube_results(id)
);
CREATE INDEX tube_results_tube ON tube_results (tube_id, recorded_at);

-- A single-tube re-test (after a positive pool) or a re-sample (after an invalid tube) owed by a person.
CREATE TABLE retest_orders (
    id UUID PRIMARY KEY,
    person_id UUID NOT NULL REFERENCES persons(id),
    source_tube_id UUID NOT NULL REFERENCES tubes(id),
    kind TEXT NOT NULL,
    ordered_at TIMESTAMPTZ NOT NULL,
    due_at TIMESTAMPTZ NOT NULL,
    tube_id UUID REFERENCES tubes(id),
    resolved_at TIMESTAMPTZ,
    jurisdiction TEXT COLLATE "C" NOT NULL,
    UNIQUE (source_tube_id, person_id)
);
CREATE INDEX retest_orders_person ON retest_orders (person_id) WHERE resolved_at IS NULL;
CREATE INDEX retest_orders_open ON retest_orders (jurisdiction, due_at) WHERE resolved_at IS NULL;
CREATE INDEX retest_orders_tube ON retest_orders (tube_id) WHERE tube_id IS NOT NULL;

CREATE TABLE person_results (
    person_id UUID PRIMARY KEY REFERENCES persons(id),
    status TEXT NOT NULL,
    sampled_at TIMESTAMPTZ NOT NULL,
    resulted_at TIMESTAMPTZ,
    tube_id UUID NOT NULL REFERENCES tubes(id),
    updated_at TIMESTAMPTZ NOT NULL,
    jurisdiction TEXT COLLATE "C" NOT NULL
);
CREATE INDEX person_results_changed ON person_results (updated_at);
CREATE INDEX person_results_status ON person_results (status, jurisdiction);
CREATE INDEX person_results_tube ON person_results (tube_id);
