-- Risk areas, kept with history. A list is one import or one edit (its batch); an area row is
-- never updated in place except to mark it superseded: an edit, a lift or a new import inserts
-- a new row and stamps the old one's `superseded_at`. So "what was in force at X, as known at X"
-- is `created_at <= X AND (superseded_at IS NULL OR superseded_at > X)
--       AND valid_from <= X AND (valid_to IS NULL OR valid_to > X)`.
-- Risk areas are public notices for the whole country: no jurisdiction column.

CREATE TABLE risk_area_lists (
    id BLOB PRIMARY KEY,
    source TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    row_count INTEGER NOT NULL,
    created_by BLOB REFERENCES users(id),
    created_at TEXT NOT NULL
);
CREATE INDEX risk_area_lists_created ON risk_area_lists (created_at);

CREATE TABLE risk_areas (
    id BLOB PRIMARY KEY,
    list_id BLOB NOT NULL REFERENCES risk_area_lists(id),
    division_code TEXT NOT NULL,
    -- A named place inside the division ('' for the whole division).
    place TEXT NOT NULL DEFAULT '',
    level TEXT NOT NULL CHECK (level IN ('high', 'medium', 'low')),
    valid_from TEXT NOT NULL,
    valid_to TEXT,
    -- The row this one replaced (edit or lift), if any.
    replaces BLOB REFERENCES risk_areas(id),
    superseded_at TEXT,
    created_at TEXT NOT NULL
);
-- At most one current row per area (division and place).
CREATE UNIQUE INDEX risk_areas_current ON risk_areas (division_code, place) WHERE superseded_at IS NULL;
CREATE INDEX risk_areas_division ON risk_areas (division_code, created_at);
CREATE INDEX risk_areas_list ON risk_areas (list_id);
CREATE INDEX risk_areas_created ON risk_areas (created_at);
