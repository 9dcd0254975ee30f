-- PostgreSQL twin of migrations/sqlite/0002_trips.sql; keep the two in step.
-- Freight loop: trips (the whole domain value as JSON, with the columns queries need),
-- the units party to each trip (for unit-scoped users), crew personal data (sealed), and alerts.

CREATE TABLE trips (
    id UUID PRIMARY KEY,
    plate TEXT NOT NULL,
    state TEXT NOT NULL,
    class TEXT,
    destination_id UUID NOT NULL REFERENCES units(id),
    custodian_id UUID NOT NULL REFERENCES units(id),
    pending_to UUID,
    deadline_at TIMESTAMPTZ,
    accept_by TIMESTAMPTZ,
    -- The next time the deadline watcher must look at this trip (NULL: nothing left to watch).
    sweep_at TIMESTAMPTZ,
    jurisdiction TEXT COLLATE "C" NOT NULL,
    policy_version BIGINT NOT NULL,
    data TEXT NOT NULL,
    rev BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    closed_at TIMESTAMPTZ
);
-- One open trip per tractor plate: a retried check-in cannot open a second one.
CREATE UNIQUE INDEX trips_open_plate ON trips (plate) WHERE closed_at IS NULL;
CREATE INDEX trips_sweep ON trips (sweep_at) WHERE sweep_at IS NOT NULL;
CREATE INDEX trips_jurisdiction ON trips (jurisdiction, created_at);
CREATE INDEX trips_state ON trips (state, class);

CREATE TABLE trip_parties (
    trip_id UUID NOT NULL REFERENCES trips(id),
    unit_id UUID NOT NULL REFERENCES units(id),
    PRIMARY KEY (trip_id, unit_id)
);
CREATE INDEX trip_parties_unit ON trip_parties (unit_id);

CREATE TABLE trip_crew (
    id UUID PRIMARY KEY,
    trip_id UUID NOT NULL REFERENCES trips(id),
    seq BIGINT NOT NULL,
    name TEXT NOT NULL,
    id_number_enc BYTEA NOT NULL,
    id_number_bidx BYTEA NOT NULL,
    phone_enc BYTEA,
    health_code TEXT,
    UNIQUE (trip_id, seq)
);
CREATE INDEX trip_crew_id_number ON trip_crew (id_number_bidx);

CREATE TABLE alerts (
    id UUID PRIMARY KEY,
    trip_id UUID NOT NULL REFERENCES trips(id),
    kind TEXT NOT NULL,
    due_at TIMESTAMPTZ NOT NULL,
    raised_at TIMESTAMPTZ NOT NULL,
    custodian_id UUID NOT NULL REFERENCES units(id),
    handoff_id UUID,
    receiver_id UUID,
    -- 0: the custodian; 1: its supervising unit; 2: the command office.
    level BIGINT NOT NULL,
    recipient_id UUID NOT NULL REFERENCES units(id),
    escalate_at TIMESTAMPTZ,
    acknowledged_at TIMESTAMPTZ,
    acknowledged_by TEXT,
    resolved_at TIMESTAMPTZ,
    resolved_by TEXT,
    note TEXT NOT NULL DEFAULT '',
    jurisdiction TEXT COLLATE "C" NOT NULL,
    policy_version BIGINT NOT NULL,
    UNIQUE (trip_id, kind, due_at)
);
CREATE INDEX alerts_escalate ON alerts (escalate_at) WHERE escalate_at IS NOT NULL;
CREATE INDEX alerts_recipient ON alerts (recipient_id, resolved_at);
CREATE INDEX alerts_jurisdiction ON alerts (jurisdiction, raised_at);
