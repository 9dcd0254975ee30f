-- Codes and their history are derived from a person's facts and written only for persons the
-- decider read from `persons`, which are never deleted (a merged record stays, marked): their
-- references to `persons` guarded nothing, and cost a probe of the persons' key for every new
-- code and every history row written (a county-wide change writes a million of each). SQLite
-- drops a reference only by rebuilding the table.
CREATE TABLE person_codes_new (
    person_id BLOB PRIMARY KEY,
    colour TEXT NOT NULL CHECK (colour = 'green' OR colour = 'yellow' OR colour = 'red'),
    reasons TEXT NOT NULL,
    valid_until TEXT,
    policy_version INTEGER NOT NULL,
    jurisdiction TEXT NOT NULL,
    rev INTEGER NOT NULL,
    computed_at TEXT NOT NULL,
    changed_at TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO person_codes_new (person_id, colour, reasons, valid_until, policy_version, jurisdiction, rev, computed_at, changed_at)
    SELECT person_id, colour, reasons, valid_until, policy_version, jurisdiction, rev, computed_at, changed_at FROM person_codes;
DROP TABLE person_codes;
ALTER TABLE person_codes_new RENAME TO person_codes;
CREATE INDEX person_codes_until ON person_codes (valid_until);
CREATE INDEX person_codes_jurisdiction ON person_codes (jurisdiction);

DROP INDEX person_code_history_person;
CREATE TABLE person_code_history_new (
    person_id BLOB NOT NULL,
    rev INTEGER NOT NULL,
    colour TEXT NOT NULL,
    reasons TEXT NOT NULL,
    valid_until TEXT,
    policy_version INTEGER NOT NULL,
    inputs TEXT NOT NULL,
    cause TEXT NOT NULL,
    at TEXT NOT NULL
);
INSERT INTO person_code_history_new (person_id, rev, colour, reasons, valid_until, policy_version, inputs, cause, at)
    SELECT person_id, rev, colour, reasons, valid_until, policy_version, inputs, cause, at FROM person_code_history ORDER BY rowid;
DROP TABLE person_code_history;
ALTER TABLE person_code_history_new RENAME TO person_code_history;
CREATE UNIQUE INDEX person_code_history_person ON person_code_history (person_id, rev);

-- Venue scans are written only for the venues and persons an upload named and the ingest found
-- (`venues::ingest`, `venues::scan`; unknown ones are listed and refused), and neither is ever
-- deleted (a venue is deactivated): their references cost two probes a scan.
CREATE TABLE scans_new (
    id BLOB PRIMARY KEY,
    venue_id BLOB NOT NULL,
    person_id BLOB NOT NULL,
    at TEXT NOT NULL,
    colour TEXT NOT NULL,
    admission TEXT NOT NULL,
    tag BLOB NOT NULL,
    jurisdiction TEXT NOT NULL,
    created_at TEXT NOT NULL
);
INSERT INTO scans_new (id, venue_id, person_id, at, colour, admission, tag, jurisdiction, created_at)
    SELECT id, venue_id, person_id, at, colour, admission, tag, jurisdiction, created_at FROM scans ORDER BY rowid;
DROP TABLE scans;
ALTER TABLE scans_new RENAME TO scans;
CREATE UNIQUE INDEX scans_tag ON scans (venue_id, tag);
CREATE INDEX scans_venue_at ON scans (venue_id, at);
CREATE INDEX scans_person_at ON scans (person_id, at);
