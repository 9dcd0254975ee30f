-- Mass-screening rounds (the table came with 0006): each round has a priority its tubes take
-- by default. Coverage reads tubes by round and members by the round's window.
ALTER TABLE screening_rounds ADD COLUMN priority TEXT NOT NULL DEFAULT 'routine';
CREATE INDEX tubes_round ON tubes (round_id) WHERE round_id IS NOT NULL;
CREATE INDEX tube_members_added ON tube_members (added_at);
