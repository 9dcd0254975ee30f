-- Codes and their history are derived from a person's facts and written only for persons the
-- decider read from `persons`, which are never deleted (a merged record stays, marked): their
-- references to `persons` guarded nothing, and cost a check and a share lock on the person's
-- row for every code and every history row written (a county-wide change writes a million of
-- each).
ALTER TABLE person_codes DROP CONSTRAINT IF EXISTS person_codes_person_id_fkey;
ALTER TABLE person_code_history DROP CONSTRAINT IF EXISTS person_code_history_person_id_fkey;
