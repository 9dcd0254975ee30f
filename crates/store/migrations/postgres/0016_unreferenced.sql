-- Codes and their history are derived from a person's facts and written only for persons the
-- decider read from `persons`, which are never deleted (a merged record stays, marked): their
-- references to `persons` guarded nothing, and cost a check and a share lock on the person's
-- row for every code and every history row written (a county-wide change writes a million of
-- each).
ALTER TABLE person_codes DROP CONSTRAINT IF EXISTS person_codes_person_id_fkey;
ALTER TABLE person_code_history DROP CONSTRAINT IF EXISTS person_code_history_person_id_fkey;

-- Venue scans are written only for the venues and persons an upload named and the ingest found
-- (`venues::ingest`, `venues::scan`; unknown ones are listed and refused), and neither is ever
-- deleted (a venue is deactivated): their references cost two checks and share locks a scan.
ALTER TABLE scans DROP CONSTRAINT IF EXISTS scans_venue_id_fkey;
ALTER TABLE scans DROP CONSTRAINT IF EXISTS scans_person_id_fkey;
