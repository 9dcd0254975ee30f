-- Codes and their history rebuilt for bulk recomputes, where every changed code is one upsert
-- and one history row (a county-wide change writes a million of each):
-- * the codes keyed by the person WITHOUT ROWID: one b-tree where there were two (the rowid
--   table and the index on the key);
-- * the history without its unused `id` and that id's index: rows are appended in rowid order,
--   and the index on person and revision finds them. (WITHOUT ROWID, keyed by person and
--   revision, each new row lands inside a full page and splits it, slower with every revision
--   kept: in a trial of five rounds of 200,000 codes a round took 5.1 s rising to 8.1 s,
--   against 5.1 s to 5.7 s.)
-- * the colour's CHECK written without `IN (…)`: SQLite builds a temporary b-tree for an
--   `IN` list of three, twice for every upsert;
-- * a code's inputs are kept once, in the history row of its revision;
-- * a history row is unique by person and revision, so two writers that decided the same
--   person from the same revision cannot both land (`person_codes::write_decided`). Rows that
--   an earlier race doubled keep the first written.
CREATE TABLE person_codes_new (
    person_id BLOB PRIMARY KEY REFERENCES persons(id),
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
CREATE UNIQUE INDEX person_code_history_person ON person_code_history_new (person_id, rev);
INSERT OR IGNORE INTO person_code_history_new (person_id, rev, colour, reasons, valid_until, policy_version, inputs, cause, at)
    SELECT person_id, rev, colour, reasons, valid_until, policy_version, inputs, cause, at FROM person_code_history ORDER BY id;
DROP TABLE person_code_history;
ALTER TABLE person_code_history_new RENAME TO person_code_history;
