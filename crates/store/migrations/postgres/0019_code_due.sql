-- Codes due at their `until` were found by an index on `valid_until`, which a county-wide
-- change rewrote a million times. Now each write of codes leaves a row per hour of `until` it
-- wrote: the earliest `until` of that hour and the range of persons holding them
-- (`person_codes::write_decided`); the recompute looks for the codes due inside the range
-- when its time comes (`recompute::sweep`).
DROP INDEX person_codes_until;
CREATE TABLE code_due (
    at TIMESTAMPTZ NOT NULL,
    lo UUID NOT NULL,
    hi UUID NOT NULL,
    PRIMARY KEY (at, lo, hi)
);
INSERT INTO code_due (at, lo, hi) SELECT valid_until, person_id, person_id FROM person_codes WHERE valid_until IS NOT NULL;
