-- Person codes (精准赋码), the facts they are decided from that this module keeps (declared
-- stays, control orders), their history, bulk recompute runs, venues and venue scans.
-- Results are read from the testing module's `person_results`; risk areas from `risk_areas`.

-- Where a person stayed (declared itinerary, or a trip's): matched against risk areas.
CREATE TABLE person_stays (
    id BLOB PRIMARY KEY,
    person_id BLOB NOT NULL REFERENCES persons(id),
    division_code TEXT NOT NULL,
    stay_from TEXT NOT NULL,
    stay_to TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL
);
-- A risk-area change finds the persons it touches by division prefix.
CREATE INDEX person_stays_division ON person_stays (division_code, stay_to);
CREATE INDEX person_stays_person ON person_stays (person_id);

-- Control orders and flags: case, central quarantine, home isolation, companion, test requirement.
CREATE TABLE person_controls (
    id BLOB PRIMARY KEY,
    person_id BLOB NOT NULL REFERENCES persons(id),
    kind TEXT NOT NULL CHECK (kind IN ('confirmed_case', 'central_quarantine', 'home_isolation', 'companion', 'test_required')),
    valid_from TEXT NOT NULL,
    valid_to TEXT,
    note TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    lifted_at TEXT
);
CREATE INDEX person_controls_person ON person_controls (person_id);

-- Each person's current code, with the inputs and the policy version that decided it.
CREATE TABLE person_codes (
    person_id BLOB PRIMARY KEY REFERENCES persons(id),
    colour TEXT NOT NULL CHECK (colour IN ('green', 'yellow', 'red')),
    reasons TEXT NOT NULL,
    valid_until TEXT,
    policy_version INTEGER NOT NULL,
    inputs TEXT NOT NULL,
    jurisdiction TEXT NOT NULL,
    rev INTEGER NOT NULL,
    computed_at TEXT NOT NULL,
    changed_at TEXT NOT NULL
);
CREATE INDEX person_codes_until ON person_codes (valid_until);
CREATE INDEX person_codes_jurisdiction ON person_codes (jurisdiction);

-- Every code a person has had: one row per change, with its cause.
CREATE TABLE person_code_history (
    id BLOB PRIMARY KEY,
    person_id BLOB NOT NULL REFERENCES persons(id),
    rev INTEGER NOT NULL,
    colour TEXT NOT NULL,
    reasons TEXT NOT NULL,
    valid_until TEXT,
    policy_version INTEGER NOT NULL,
    inputs TEXT NOT NULL,
    cause TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX person_code_history_person ON person_code_history (person_id, rev);

-- Background recompute runs: progress, and a cursor so that a run interrupted by a restart resumes.
CREATE TABLE code_recomputes (
    id BLOB PRIMARY KEY,
    cause TEXT NOT NULL,
    cause_ref TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    total INTEGER NOT NULL DEFAULT 0,
    processed INTEGER NOT NULL DEFAULT 0,
    changed INTEGER NOT NULL DEFAULT 0,
    cursor BLOB,
    -- The newest risk-area change (its time) this run covers.
    watermark TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX code_recomputes_state ON code_recomputes (state, created_at);

-- Key venues with a venue code (场所码).
CREATE TABLE venues (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('enterprise', 'construction_site', 'market', 'hotel', 'school', 'other')),
    address TEXT NOT NULL DEFAULT '',
    jurisdiction TEXT NOT NULL,
    unit_id BLOB REFERENCES units(id),
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX venues_jurisdiction ON venues (jurisdiction, name);

-- One row per registered visit. `tag` is taken from the scanned token's signature (or random for
-- a typed entry): a token replayed at the same venue is the same scan.
CREATE TABLE scans (
    id BLOB PRIMARY KEY,
    venue_id BLOB NOT NULL REFERENCES venues(id),
    person_id BLOB NOT NULL REFERENCES persons(id),
    at TEXT NOT NULL,
    colour TEXT NOT NULL,
    admission TEXT NOT NULL,
    tag BLOB NOT NULL,
    jurisdiction TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE UNIQUE INDEX scans_tag ON scans (venue_id, tag);
CREATE INDEX scans_venue_at ON scans (venue_id, at);
CREATE INDEX scans_person_at ON scans (person_id, at);

-- Duplicates merged into one record: the history. The merged record keeps its row (and its
-- document's index) with `persons.merged_into` set, so its document still finds the survivor.
CREATE TABLE person_merges (
    id BLOB PRIMARY KEY,
    kept_id BLOB NOT NULL REFERENCES persons(id),
    merged_id BLOB NOT NULL REFERENCES persons(id),
    note TEXT NOT NULL DEFAULT '',
    -- What moved: stays, controls, scans.
    moved TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX person_merges_kept ON person_merges (kept_id, created_at);
CREATE UNIQUE INDEX person_merges_merged ON person_merges (merged_id);
