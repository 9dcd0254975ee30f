-- Contacts marked as companions of a case from the exposure search: one row per case and
-- person, pointing at the companion order it put on the person, so that posting the same
-- marks again adds nothing.
CREATE TABLE companion_marks (
    case_id BLOB NOT NULL REFERENCES persons(id),
    person_id BLOB NOT NULL REFERENCES persons(id),
    -- The order this mark put on the person (written after the mark, hence no foreign key).
    control_id BLOB NOT NULL,
    exposed_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (case_id, person_id)
);
