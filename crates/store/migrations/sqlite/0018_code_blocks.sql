-- A county-wide change rewrites a million codes. Written as before, each cost four b-tree
-- writes: the code row (growing by its reasons, so that its page split), its `valid_until`
-- entry, a history row and the history's key. Now a code row keeps its reasons by reference
-- (`code_reasons`, one row per distinct set of reasons, keyed by a hash of its JSON), so it
-- keeps its size, and the history is written in blocks of up to 64 revisions, compressed
-- (`code_history_blocks`): a row names the block of its current revision (`hist`), and each
-- revision in a block names the block of the one before, so a person's history is a chain.
CREATE TABLE code_reasons (
    id BLOB PRIMARY KEY,
    reasons TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE code_history_blocks (
    id BLOB PRIMARY KEY,
    cause TEXT NOT NULL,
    policy_version INTEGER NOT NULL,
    at TEXT NOT NULL,
    -- Deflated JSON: [{person, rev, colour, reasons, until, inputs, prev}, …].
    entries BLOB NOT NULL
) WITHOUT ROWID;

-- Codes written before this keep `reasons_id` and `hist` empty: their reasons and inputs are in
-- `person_code_history`, which is now read only, for revisions written before this migration.
ALTER TABLE person_codes ADD COLUMN reasons_id BLOB;
ALTER TABLE person_codes ADD COLUMN hist BLOB;
ALTER TABLE person_codes DROP COLUMN reasons;

-- A merged-away record's code row goes; the head of its history stays with the merge.
ALTER TABLE person_merges ADD COLUMN code_hist BLOB;
