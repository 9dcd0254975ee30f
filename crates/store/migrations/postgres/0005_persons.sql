-- PostgreSQL twin of migrations/sqlite/0005_persons.sql; keep the two in step.

CREATE TABLE persons (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    document_kind TEXT NOT NULL,
    document_enc BYTEA NOT NULL,
    document_bidx BYTEA NOT NULL,
    document_masked TEXT NOT NULL,
    phone_enc BYTEA,
    phone_bidx BYTEA,
    phone_masked TEXT,
    jurisdiction TEXT COLLATE "C" NOT NULL,
    unit_id UUID REFERENCES units(id),
    merged_into UUID REFERENCES persons(id),
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX persons_document ON persons (document_bidx) WHERE merged_into IS NULL;
CREATE INDEX persons_phone ON persons (phone_bidx);
CREATE INDEX persons_jurisdiction ON persons (jurisdiction, name);
CREATE INDEX persons_unit ON persons (unit_id);
