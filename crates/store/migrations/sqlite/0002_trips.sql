-- Freight loop: trips (the whole domain value as JSON, with the columns queries need),
-- the units party to each trip (for unit-scoped users), crew personal data (sealed), and alerts.

CREATE TABLE trips (
    id BLOB PRIMARY KEY,
    plate TEXT NOT NULL,
    state TEXT NOT NULL,
    class TEXT,
    destination_id BLOB NOT NULL REFERENCES units(id),
    custodian_id BLOB NOT NULL REFERENCES units(id),
    pending_to BLOB,
    deadline_at TEXT,
    accept_by TEXT,
    -- The next time the deadline watcher must look at this trip (NULL: nothing left to watch).
    sweep_at TEXT,
    jurisdiction TEXT NOT NULL,
    policy_version INTEGER NOT NULL,
    data TEXT NOT NULL,
    rev INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    closed_at TEXT
);
-- One open trip per tractor plate: a retried check-in cannot open a second one.
CREATE UNIQUE INDEX trips_open_plate ON trips (plate) WHERE closed_at IS NULL;
CREATE INDEX trips_sweep ON trips (sweep_at) WHERE sweep_at IS NOT NULL;
CREATE INDEX trips_jurisdiction ON trips (jurisdiction, created_at);
CREATE INDEX trips_state ON trips (state, class);

CREATE TABLE trip_parties (
    trip_id BLOB NOT NULL REFERENCES trips(id),
    unit_id BLOB NOT NULL REFERENCES units(id),
    PRIMARY KEY (trip_id, unit_id)
);
CREATE INDEX trip_parties_unit ON trip_parties (unit_id);

CREATE TABLE trip_crew (
    id BLOB PRIMARY KEY,
    trip_id BLOB NOT NULL REFERENCES trips(id),
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    id_number_enc BLOB NOT NULL,
    id_number_bidx BLOB NOT NULL,
    phone_enc BLOB,
    health_code TEXT,
    UNIQUE (trip_id, seq)
);
CREATE INDEX trip_crew_id_number ON trip_crew (id_number_bidx);

CREATE TABLE alerts (
    id BLOB PRIMARY KEY,
    trip_id BLOB NOT NULL REFERENCES trips(id),
    kind TEXT NOT NULL,
    due_at TEXT NOT NULL,
    raised_at TEXT NOT NULL,
    custodian_id BLOB NOT NULL REFERENCES units(id),
    handoff_id BLOB,
    receiver_id BLOB,
    -- 0: the custodian; 1: its supervising unit; 2: the command office.
    level INTEGER NOT NULL,
    recipient_id BLOB NOT NULL REFERENCES units(id),
    escalate_at TEXT,
    acknowledged_at TEXT,
    acknowledged_by TEXT,
    resolved_at TEXT,
    resolved_by TEXT,
    note TEXT NOT NULL DEFAULT '',
    jurisdiction TEXT NOT NULL,
    policy_version INTEGER NOT NULL,
    UNIQUE (trip_id, kind, due_at)
);
CREATE INDEX alerts_escalate ON alerts (escalate_at) WHERE escalate_at IS NOT NULL;
CREATE INDEX alerts_recipient ON alerts (recipient_id, resolved_at);
CREATE INDEX alerts_jurisdiction ON alerts (jurisdiction, raised_at);
