-- Sampling and testing: sampling sites, screening rounds, tubes and their members, batches
-- handed to labs, every result kept (a correction supersedes, never overwrites), re-test
-- orders, and `person_results` — one row per person, the one place the rest of the system
-- reads a person's latest testing status from.
--
-- Alerts become subject-general: a breach is about a trip, a tube, a person…
-- (`subject_kind`, `subject_id`), so that tube and pool alerts climb the same ladder and show on
-- the same pages. SQLite cannot change a table's constraints: the table is rebuilt.

CREATE TABLE alerts_new (
    id BLOB PRIMARY KEY,
    subject_kind TEXT NOT NULL,
    subject_id BLOB NOT NULL,
    -- What the alert is about in words (a barcode…); trips show their plate.
    subject TEXT NOT NULL DEFAULT '',
    trip_id BLOB REFERENCES trips(id),
    kind TEXT NOT NULL,
    due_at TEXT NOT NULL,
    raised_at TEXT NOT NULL,
    custodian_id BLOB NOT NULL REFERENCES units(id),
    handoff_id BLOB,
    receiver_id BLOB,
    -- 0: the custodian; 1: its supervising unit (or `rung1_id`); 2: the command office.
    level INTEGER NOT NULL,
    recipient_id BLOB NOT NULL REFERENCES units(id),
    -- The unit at rung 1 when it is not the custodian's supervising unit (tubes: the testing task force).
    rung1_id BLOB REFERENCES units(id),
    emergency BOOLEAN NOT NULL DEFAULT FALSE,
    escalate_at TEXT,
    acknowledged_at TEXT,
    acknowledged_by TEXT,
    resolved_at TEXT,
    resolved_by TEXT,
    note TEXT NOT NULL DEFAULT '',
    jurisdiction TEXT NOT NULL,
    policy_version INTEGER NOT NULL
);
INSERT INTO alerts_new (id, subject_kind, subject_id, subject, trip_id, kind, due_at, raised_at, custodian_id, handoff_id, receiver_id, level,
                        recipient_id, escalate_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, note, jurisdiction, policy_version)
SELECT a.id, 'trip', a.trip_id, COALESCE((SELECT t.plate FROM trips t WHERE t.id = a.trip_id), ''), a.trip_id, a.kind, a.due_at, a.raised_at,
       a.custodian_id, a.handoff_id, a.receiver_id, a.level, a.recipient_id, a.escalate_at, a.acknowledged_at, a.acknowledged_by, a.resolved_at,
       a.resolved_by, a.note, a.jurisdiction, a.policy_version
FROM alerts a;
DROP TABLE alerts;
ALTER TABLE alerts_new RENAME TO alerts;
CREATE UNIQUE INDEX alerts_subject ON alerts (subject_kind, subject_id, kind, due_at, custodian_id);
CREATE INDEX alerts_escalate ON alerts (escalate_at) WHERE escalate_at IS NOT NULL;
CREATE INDEX alerts_recipient ON alerts (recipient_id, resolved_at);
CREATE INDEX alerts_jurisdiction ON alerts (jurisdiction, raised_at);
CREATE INDEX alerts_trip ON alerts (trip_id) WHERE trip_id IS NOT NULL;

CREATE TABLE sampling_sites (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    team_id BLOB NOT NULL REFERENCES units(id),
    address TEXT NOT NULL DEFAULT '',
    active BOOLEAN NOT NULL DEFAULT TRUE,
    jurisdiction TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (team_id, name)
);

CREATE TABLE screening_rounds (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    -- The area: a township or the county (the prefix every expected person's residence starts with).
    jurisdiction TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    due_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    policy_version INTEGER NOT NULL
);
CREATE INDEX screening_rounds_jurisdiction ON screening_rounds (jurisdiction, starts_at);

CREATE TABLE test_batches (
    id BLOB PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    team_id BLOB NOT NULL REFERENCES units(id),
    lab_id BLOB NOT NULL REFERENCES units(id),
    -- handed (the lab has not accepted it yet) | received
    state TEXT NOT NULL,
    tubes INTEGER NOT NULL,
    handed_at TEXT NOT NULL,
    accept_by TEXT NOT NULL,
    received_at TEXT,
    received_by TEXT,
    -- Barcodes flagged at receipt (JSON arrays).
    missing TEXT NOT NULL DEFAULT '[]',
    extra TEXT NOT NULL DEFAULT '[]',
    jurisdiction TEXT NOT NULL
);
CREATE INDEX test_batches_lab ON test_batches (lab_id, state);
CREATE INDEX test_batches_accept ON test_batches (accept_by) WHERE state = 'handed';

CREATE TABLE tubes (
    id BLOB PRIMARY KEY,
    barcode TEXT NOT NULL UNIQUE,
    pool_size INTEGER NOT NULL,
    members INTEGER NOT NULL,
    priority TEXT NOT NULL,
    purpose TEXT NOT NULL,
    state TEXT NOT NULL,
    team_id BLOB NOT NULL REFERENCES units(id),
    site_id BLOB REFERENCES sampling_sites(id),
    round_id BLOB REFERENCES screening_rounds(id),
    trip_id BLOB REFERENCES trips(id),
    batch_id BLOB REFERENCES test_batches(id),
    lab_id BLOB REFERENCES units(id),
    sampled_at TEXT NOT NULL,
    sealed_at TEXT,
    shipped_at TEXT,
    received_at TEXT,
    due_at TEXT NOT NULL,
    outcome TEXT,
    ct_centi INTEGER,
    resulted_at TEXT,
    -- When the deadline watcher must look at the tube (NULL: resulted, or its overdue alert is raised).
    watch_at TEXT,
    jurisdiction TEXT NOT NULL,
    policy_version INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX tubes_watch ON tubes (watch_at) WHERE watch_at IS NOT NULL;
CREATE INDEX tubes_batch ON tubes (batch_id);
CREATE INDEX tubes_lab ON tubes (lab_id, state);
CREATE INDEX tubes_team ON tubes (team_id, state);
CREATE INDEX tubes_trip ON tubes (trip_id) WHERE trip_id IS NOT NULL;
CREATE INDEX tubes_jurisdiction ON tubes (jurisdiction, sampled_at);

CREATE TABLE tube_members (
    tube_id BLOB NOT NULL REFERENCES tubes(id),
    person_id BLOB NOT NULL REFERENCES persons(id),
    seq INTEGER NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (tube_id, person_id)
);
CREATE INDEX tube_members_person ON tube_members (person_id, added_at);

-- Every result a lab sent; a changed result is a new row superseding the one before.
CREATE TABLE tube_results (
    id BLOB PRIMARY KEY,
    tube_id BLOB NOT NULL REFERENCES tubes(id),
    outcome TEXT NOT NULL,
    ct_centi INTEGER,
    lab_id BLOB NOT NULL REFERENCES units(id),
    source TEXT NOT NULL,
    tested_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    supersedes BLOB REFERENCES tube_results(id)
);
CREATE INDEX tube_results_tube ON tube_results (tube_id, recorded_at);

-- A single-tube re-test (after a positive pool) or a re-sample (after an invalid tube) owed by a person.
CREATE TABLE retest_orders (
    id BLOB PRIMARY KEY,
    person_id BLOB NOT NULL REFERENCES persons(id),
    source_tube_id BLOB NOT NULL REFERENCES tubes(id),
    kind TEXT NOT NULL,
    ordered_at TEXT NOT NULL,
    due_at TEXT NOT NULL,
    tube_id BLOB REFERENCES tubes(id),
    resolved_at TEXT,
    jurisdiction TEXT NOT NULL,
    UNIQUE (source_tube_id, person_id)
);
CREATE INDEX retest_orders_person ON retest_orders (person_id) WHERE resolved_at IS NULL;
CREATE INDEX retest_orders_open ON retest_orders (jurisdiction, due_at) WHERE resolved_at IS NULL;
CREATE INDEX retest_orders_tube ON retest_orders (tube_id) WHERE tube_id IS NOT NULL;

CREATE TABLE person_results (
    person_id BLOB PRIMARY KEY REFERENCES persons(id),
    status TEXT NOT NULL,
    sampled_at TEXT NOT NULL,
    resulted_at TEXT,
    tube_id BLOB NOT NULL REFERENCES tubes(id),
    updated_at TEXT NOT NULL,
    jurisdiction TEXT NOT NULL
);
CREATE INDEX person_results_changed ON person_results (updated_at);
CREATE INDEX person_results_status ON person_results (status, jurisdiction);
CREATE INDEX person_results_tube ON person_results (tube_id);
