-- PostgreSQL twin of migrations/sqlite/0008_codes.sql; keep the two in step.
-- Person codes (精准赋码), the facts they are decided from that this module keeps (declared
-- stays, control orders), their history, bulk recompute runs, venues and venue scans.
-- Results are read from the testing module's `person_results`; risk areas from `risk_areas`.

-- Where a person stayed (declared itinerary, or a trip's): matched against risk areas.
CREATE TABLE person_stays (
    id UUID PRIMARY KEY,
    person_id UUID NOT NULL REFERENCES persons(id),
    division_code TEXT COLLATE "C" NOT NULL,
    stay_from TIMESTAMPTZ NOT NULL,
    stay_to TIMESTAMPTZ NOT NULL,
    source TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
-- A risk-area change finds the persons it touches by division prefix.
CREATE INDEX person_stays_division ON person_stays (division_code, stay_to);
CREATE INDEX person_stays_person ON person_stays (person_id);

-- Control orders and flags: case, central quarantine, home isolation, companion, test requirement.
CREATE TABLE person_controls (
    id UUID PRIMARY KEY,
    person_id UUID NOT NULL REFERENCES persons(id),
    kind TEXT NOT NULL CHECK (kind IN ('confirmed_case', 'central_quarantine', 'home_isolation', 'companion', 'test_required')),
    valid_from TIMESTAMPTZ NOT NULL,
    valid_to TIMESTAMPTZ,
    note TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    lifted_at TIMESTAMPTZ
);
CREATE INDEX person_controls_person ON person_controls (person_id);

-- Each person's current code, with the inputs and the policy version that decided it.
CREATE TABLE person_codes (
    person_id UUID PRIMARY KEY REFERENCES persons(id),
    colour TEXT NOT NULL CHECK (colour IN ('green', 'yellow', 'red')),
    reasons TEXT NOT NULL,
    valid_until TIMESTAMPTZ,
    policy_version BIGINT NOT NULL,
    inputs TEXT NOT NULL,
    jurisdiction TEXT COLLATE "C" NOT NULL,
    rev BIGINT NOT NULL,
    computed_at TIMESTAMPTZ NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX person_codes_until ON person_codes (valid_until);
CREATE INDEX person_codes_jurisdiction ON person_codes (jurisdiction);

-- Every code a person has had: one row per change, with its cause.
CREATE TABLE person_code_history (
    id UUID PRIMARY KEY,
    person_id UUID NOT NULL REFERENCES persons(id),
    rev BIGINT NOT NULL,
    colour TEXT NOT NULL,
    reasons TEXT NOT NULL,
    valid_until TIMESTAMPTZ,
    policy_version BIGINT NOT NULL,
    inputs TEXT NOT NULL,
    cause TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL
);
CREATE INDEX person_code_history_person ON person_code_history (person_id, rev);

-- Background recompute runs: progress, and a cursor so that a run interrupted by a restart resumes.
CREATE TABLE code_recomputes (
    id UUID PRIMARY KEY,
    cause TEXT NOT NULL,
    cause_ref TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    total BIGINT NOT NULL DEFAULT 0,
    processed BIGINT NOT NULL DEFAULT 0,
    changed BIGINT NOT NULL DEFAULT 0,
    cursor UUID,
    -- The newest risk-area change (its time) this run covers.
    watermark TIMESTAMPTZ,
    error TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ
);
CREATE INDEX code_recomputes_state ON code_recomputes (state, created_at);

-- Key venues with a venue code (场所码).
CREATE TABLE venues (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('enterprise', 'construction_site', 'market', 'hotel', 'school', 'other')),
    address TEXT NOT NULL DEFAULT '',
    jurisdiction TEXT COLLATE "C" NOT NULL,
    unit_id UUID REFERENCES units(id),
    active BOOLEAN NOT NULL DEFAULT TRUE,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX venues_jurisdiction ON venues (jurisdiction, name);

-- One row per registered visit. `tag` is taken from the scanned token's signature (or random for
-- a typed entry): a token replayed at the same venue is the same scan.
CREATE TABLE scans (
    id UUID PRIMARY KEY,
    venue_id UUID NOT NULL REFERENCES venues(id),
    person_id UUID NOT NULL REFERENCES persons(id),
    at TIMESTAMPTZ NOT NULL,
    colour TEXT NOT NULL,
    admission TEXT NOT NULL,
    tag BYTEA NOT NULL,
    jurisdiction TEXT COLLATE "C" NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX scans_tag ON scans (venue_id, tag);
CREATE INDEX scans_venue_at ON scans (venue_id, at);
CREATE INDEX scans_person_at ON scans (person_id, at);

-- Duplicates merged into one record: the history. The merged record keeps its row (and its
-- document's index) with `persons.merged_into` set, so its document still finds the survivor.
CREATE TABLE person_merges (
    id UUID PRIMARY KEY,
    kept_id UUID NOT NULL REFERENCES persons(id),
    merged_id UUID NOT NULL REFERENCES persons(id),
    note TEXT NOT NULL DEFAULT '',
    -- What moved: stays, controls, scans.
    moved TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX person_merges_kept ON person_merges (kept_id, created_at);
CREATE UNIQUE INDEX person_merges_merged ON person_merges (merged_id);
