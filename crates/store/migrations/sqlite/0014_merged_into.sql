-- The records merged into a person (the exposure search reads their ID numbers and landing
-- tubes with the survivor's). Without an index that look-up scanned every person.
CREATE INDEX persons_merged_into ON persons (merged_into) WHERE merged_into IS NOT NULL;
