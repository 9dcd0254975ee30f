-- Whitelist (白名单): enterprises, vehicles and drivers, each with tier, validity, status,
-- fraud flag and a history of every change with its reason.
-- Drivers' ID numbers and phones are sealed by the vault (`*_enc`) and found through an HMAC
-- blind index (`*_bidx`), as in `users`. Plates and credit codes are not personal data: plain.
-- `subject_key` is what matching and uniqueness use: `vehicle:<plate>`, `enterprise:<code>`,
-- `driver:<hex of the ID number's blind index>`.

CREATE TABLE whitelist_entries (
    id BLOB PRIMARY KEY,
    kind TEXT NOT NULL,
    tier TEXT NOT NULL,
    status TEXT NOT NULL,
    fraud BOOLEAN NOT NULL DEFAULT FALSE,
    subject_key TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    plate TEXT,
    credit_code TEXT,
    id_number_enc BLOB,
    id_number_bidx BLOB,
    phone_enc BLOB,
    phone_bidx BLOB,
    valid_from TEXT NOT NULL,
    valid_until TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    jurisdiction TEXT NOT NULL,
    unit_id BLOB REFERENCES units(id),
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX whitelist_entries_jurisdiction ON whitelist_entries (jurisdiction);
CREATE INDEX whitelist_entries_subject ON whitelist_entries (subject_key);
CREATE INDEX whitelist_entries_plate ON whitelist_entries (plate);
CREATE INDEX whitelist_entries_credit_code ON whitelist_entries (credit_code);
CREATE INDEX whitelist_entries_id_number_bidx ON whitelist_entries (id_number_bidx);
CREATE INDEX whitelist_entries_phone_bidx ON whitelist_entries (phone_bidx);
-- One live (pending, active or suspended) entry per subject in a jurisdiction.
CREATE UNIQUE INDEX whitelist_entries_live ON whitelist_entries (jurisdiction, subject_key)
    WHERE status IN ('pending_review', 'active', 'suspended');

CREATE TABLE whitelist_history (
    id BLOB PRIMARY KEY,
    entry_id BLOB NOT NULL REFERENCES whitelist_entries(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    fraud BOOLEAN NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    actor_id BLOB,
    at TEXT NOT NULL
);
CREATE UNIQUE INDEX whitelist_history_entry ON whitelist_history (entry_id, seq);
