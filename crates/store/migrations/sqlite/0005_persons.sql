-- The person registry: one record per person, found by an identity document through an HMAC
-- blind index over `kind:number` (`document_bidx`). Document numbers and phones are sealed by
-- the vault (`*_enc`); the masked forms are kept beside them so lists never decrypt.
-- A duplicate merged into another record keeps its row with `merged_into` set, so that what
-- pointed at it can still be followed; only unmerged records hold a document's index.
-- `jurisdiction` is the residence division (village, township or county code).

CREATE TABLE persons (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    document_kind TEXT NOT NULL,
    document_enc BLOB NOT NULL,
    document_bidx BLOB NOT NULL,
    document_masked TEXT NOT NULL,
    phone_enc BLOB,
    phone_bidx BLOB,
    phone_masked TEXT,
    jurisdiction TEXT NOT NULL,
    unit_id BLOB REFERENCES units(id),
    merged_into BLOB REFERENCES persons(id),
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX persons_document ON persons (document_bidx) WHERE merged_into IS NULL;
CREATE INDEX persons_phone ON persons (phone_bidx);
CREATE INDEX persons_jurisdiction ON persons (jurisdiction, name);
CREATE INDEX persons_unit ON persons (unit_id);
