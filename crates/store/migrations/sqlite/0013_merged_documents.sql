-- A person registered for the first time is looked up among merged records too (a merged
-- duplicate's document finds the survivor). The unique document index holds only unmerged
-- records, so that look-up scanned every person: index the merged ones as well.
CREATE INDEX persons_merged_document ON persons (document_bidx) WHERE merged_into IS NOT NULL;
