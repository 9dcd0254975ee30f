-- PostgreSQL twin of migrations/sqlite/0007_freight.sql; keep the two in step.
-- Freight loop, second part: truck service sites and each trip's stays there, the
-- responsibility ledger's confirmations, every ended handoff (for acceptance times), and the
-- entry checkpoint as a column (open trips by checkpoint).

ALTER TABLE trips ADD COLUMN entry_checkpoint_id UUID;
UPDATE trips SET entry_checkpoint_id = (data::json -> 'trip' ->> 'entry_checkpoint')::uuid
 WHERE data::json -> 'trip' ->> 'entry_checkpoint' IS NOT NULL;
CREATE INDEX trips_open_checkpoint ON trips (entry_checkpoint_id) WHERE closed_at IS NULL;

-- A truck service site's capacity (trucks at once); the site itself is a unit.
CREATE TABLE truck_sites (
    unit_id UUID PRIMARY KEY REFERENCES units(id),
    capacity BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- A trip's stay at a site: checked in, waiting for its result or not, checked out.
CREATE TABLE site_stays (
    id UUID PRIMARY KEY,
    site_id UUID NOT NULL REFERENCES units(id),
    trip_id UUID NOT NULL REFERENCES trips(id),
    plate TEXT NOT NULL,
    arrived_at TIMESTAMPTZ NOT NULL,
    arrived_by TEXT NOT NULL,
    waiting_result BOOLEAN NOT NULL,
    result_at TIMESTAMPTZ,
    over_capacity BOOLEAN NOT NULL,
    left_at TIMESTAMPTZ,
    left_by TEXT,
    jurisdiction TEXT COLLATE "C" NOT NULL
);
-- A truck is at one site at a time: a retried check-in cannot open a second stay.
CREATE UNIQUE INDEX site_stays_open_trip ON site_stays (trip_id) WHERE left_at IS NULL;
CREATE INDEX site_stays_site ON site_stays (site_id, left_at);

-- Responsibility ledger: each party's confirmation of its duty for a trip (one per party).
CREATE TABLE trip_confirmations (
    trip_id UUID NOT NULL REFERENCES trips(id),
    party TEXT NOT NULL,
    unit_id UUID,
    confirmed_at TIMESTAMPTZ NOT NULL,
    confirmed_by TEXT NOT NULL,
    PRIMARY KEY (trip_id, party)
);

-- Every handoff once it has ended (accepted, rejected, withdrawn, superseded), with how long it took.
CREATE TABLE trip_handoffs (
    id UUID PRIMARY KEY,
    trip_id UUID NOT NULL REFERENCES trips(id),
    purpose TEXT NOT NULL,
    from_id UUID NOT NULL,
    to_id UUID NOT NULL,
    proposed_at TIMESTAMPTZ NOT NULL,
    ended_at TIMESTAMPTZ NOT NULL,
    outcome TEXT NOT NULL,
    seconds BIGINT NOT NULL,
    jurisdiction TEXT COLLATE "C" NOT NULL
);
CREATE INDEX trip_handoffs_jurisdiction ON trip_handoffs (jurisdiction, ended_at);
