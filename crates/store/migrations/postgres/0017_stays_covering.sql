-- A risk-area run finds its persons by the stays at, above and below the areas' divisions:
-- with the person in the index the read can be the index alone, not a visit to the table's row
-- for every stay (a county-wide change reads a million).
DROP INDEX person_stays_division;
CREATE INDEX person_stays_division ON person_stays (division_code, stay_to) INCLUDE (person_id);
