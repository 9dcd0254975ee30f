-- Freight loop, second part: truck service sites and each trip's stays there, the
-- responsibility ledger's confirmations, every ended handoff (for acceptance times), and the
-- entry checkpoint as a column (open trips by checkpoint).

ALTER TABLE trips ADD COLUMN entry_checkpoint_id BLOB;
UPDATE trips SET entry_checkpoint_id = unhex(replace(json_extract(data, '$.trip.entry_checkpoint'), '-', ''))
 WHERE json_extract(data, '$.trip.entry_checkpoint') IS NOT NULL;
CREATE INDEX trips_open_checkpoint ON trips (entry_checkpoint_id) WHERE closed_at IS NULL;

-- A truck service site's capacity (trucks at once); the site itself is a unit.
CREATE TABLE truck_sites (
    unit_id BLOB PRIMARY KEY REFERENCES units(id),
    capacity INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);

-- A trip's stay at a site: checked in, waiting for its result or not, checked out.
CREATE TABLE site_stays (
    id BLOB PRIMARY KEY,
    site_id BLOB NOT NULL REFERENCES units(id),
    trip_id BLOB NOT NULL REFERENCES trips(id),
    plate TEXT NOT NULL,
    arrived_at TEXT NOT NULL,
    arrived_by TEXT NOT NULL,
    waiting_result BOOLEAN NOT NULL,
    result_at TEXT,
    over_capacity BOOLEAN NOT NULL,
    left_at TEXT,
    left_by TEXT,
    jurisdiction TEXT NOT NULL
);
-- A truck is at one site at a time: a retried check-in cannot open a second stay.
CREATE UNIQUE INDEX site_stays_open_trip ON site_stays (trip_id) WHERE left_at IS NULL;
CREATE INDEX site_stays_site ON site_stays (site_id, left_at);

-- Responsibility ledger: each party's confirmation of its duty for a trip (one per party).
CREATE TABLE trip_confirmations (
    trip_id BLOB NOT NULL REFERENCES trips(id),
    party TEXT NOT NULL,
    unit_id BLOB,
    confirmed_at TEXT NOT NULL,
    confirmed_by TEXT NOT NULL,
    PRIMARY KEY (trip_id, party)
);

-- Every handoff once it has ended (accepted, rejected, withdrawn, superseded), with how long it took.
CREATE TABLE trip_handoffs (
    id BLOB PRIMARY KEY,
    trip_id BLOB NOT NULL REFERENCES trips(id),
    purpose TEXT NOT NULL,
    from_id BLOB NOT NULL,
    to_id BLOB NOT NULL,
    proposed_at TEXT NOT NULL,
    ended_at TEXT NOT NULL,
    outcome TEXT NOT NULL,
    seconds INTEGER NOT NULL,
    jurisdiction TEXT NOT NULL
);
CREATE INDEX trip_handoffs_jurisdiction ON trip_handoffs (jurisdiction, ended_at);
