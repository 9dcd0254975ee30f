-- A county-wide change rewrites a million codes. Written as before, each cost a code row
-- (growing by its reasons), its `valid_until` entry, a history row and the history's key. Now
-- a code row keeps its reasons by reference (`code_reasons`, one row per distinct set of
-- reasons, keyed by a hash of its JSON), and the history is written in blocks of up to 64
-- revisions, compressed (`code_history_blocks`): a row names the block of its current
-- revision (`hist`), and each revision in a block names the block of the one before, so a
-- person's history is a chain.
CREATE TABLE code_reasons (
    id BYTEA PRIMARY KEY,
    reasons TEXT NOT NULL
);

CREATE TABLE code_history_blocks (
    id UUID PRIMARY KEY,
    cause TEXT NOT NULL,
    policy_version BIGINT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    -- Deflated JSON: [{person, rev, colour, reasons, until, inputs, prev}, …].
    entries BYTEA NOT NULL
);
-- Deflated already: stored as it is.
ALTER TABLE code_history_blocks ALTER COLUMN entries SET STORAGE EXTERNAL;

-- Codes written before this keep `reasons_id` and `hist` empty: their reasons and inputs are in
-- `person_code_history`, which is now read only, for revisions written before this migration.
ALTER TABLE person_codes ADD COLUMN reasons_id BYTEA;
ALTER TABLE person_codes ADD COLUMN hist UUID;
ALTER TABLE person_codes DROP COLUMN reasons;

-- A merged-away record's code row goes; the head of its history stays with the merge.
ALTER TABLE person_merges ADD COLUMN code_hist UUID;
