-- Escorts for closed-loop trucks: each receiver may name the unit that escorts its trucks
-- (itself, a park's team…); police and transport departments stand on the fallback roster for
-- the area they serve (their unit's division), taken in priority order when the receiver's
-- escort is missing, rejects the handoff or does not accept it in time.

CREATE TABLE receiver_escorts (
    receiver_id BLOB PRIMARY KEY REFERENCES units(id),
    escort_id BLOB NOT NULL REFERENCES units(id),
    updated_at TEXT NOT NULL
);

CREATE TABLE fallback_escorts (
    unit_id BLOB PRIMARY KEY REFERENCES units(id),
    priority INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);

-- The escort step of the deadline watcher looks only at closed-loop trucks waiting at a checkpoint.
CREATE INDEX trips_waiting_escort ON trips (state, class) WHERE closed_at IS NULL;
