-- Codes due at their `until` were found by an index on `valid_until`: a county-wide change
-- moved a million of its entries (a delete and an insert each), half of SQLite's work in
-- rewriting the codes (measured outside Baton: 1,000,000 in-place updates 1.8 s without it,
-- 3.7 s with it). Now each write of codes leaves a row per hour of `until` it wrote: the
-- earliest `until` of that hour and the range of persons holding them
-- (`person_codes::write_decided`); the recompute looks for the codes due inside the range
-- when its time comes (`recompute::sweep`). A county-wide change writes a row per chunk.
DROP INDEX person_codes_until;
CREATE TABLE code_due (
    at TEXT NOT NULL,
    lo BLOB NOT NULL,
    hi BLOB NOT NULL,
    PRIMARY KEY (at, lo, hi)
) WITHOUT ROWID;
INSERT INTO code_due (at, lo, hi) SELECT valid_until, person_id, person_id FROM person_codes WHERE valid_until IS NOT NULL;
