-- A code's inputs are kept once, in the history row of its revision (a county-wide change
-- writes a million codes and a million history rows).
ALTER TABLE person_codes DROP COLUMN inputs;

-- A history row is unique by person and revision, so two writers that decided the same person
-- from the same revision cannot both land (`person_codes::write_decided`); its key is that pair
-- and the unused `id` goes. Rows that an earlier race doubled keep the first written.
-- (The SQLite twin of this migration also rebuilds both tables WITHOUT ROWID.)
DELETE FROM person_code_history a USING person_code_history b
 WHERE a.person_id = b.person_id AND a.rev = b.rev AND a.id > b.id;
ALTER TABLE person_code_history DROP CONSTRAINT person_code_history_pkey;
ALTER TABLE person_code_history DROP COLUMN id;
DROP INDEX person_code_history_person;
ALTER TABLE person_code_history ADD PRIMARY KEY (person_id, rev);
