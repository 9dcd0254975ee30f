-- Alerts end when what they watched is settled. The system ends an alert whose link was mended
-- or whose trip is over: it closes it, or (an emergency that outlives its trip) stops its climb
-- and leaves it open where it is; `stop_reason` says why (a `baton_domain::alert::AlertEnd`
-- code). An alert that would climb to a unit already holding the same open alert stops and
-- names that one in `merged_into`: one open alert per unit and subject, which the unique index
-- below holds against any race.
ALTER TABLE alerts ADD COLUMN stopped_at TEXT;
ALTER TABLE alerts ADD COLUMN stop_reason TEXT;
ALTER TABLE alerts ADD COLUMN merged_into BLOB;

-- Open duplicates that earlier escalations left at one unit: each is merged into the unit's own
-- (raised to it, not climbed to it), else the oldest, and closed.
UPDATE alerts SET merged_into = (
    SELECT o.id FROM alerts o
    WHERE o.recipient_id = alerts.recipient_id AND o.subject_kind = alerts.subject_kind AND o.subject_id = alerts.subject_id
      AND o.kind = alerts.kind AND o.resolved_at IS NULL
      AND (CASE WHEN o.custodian_id = o.recipient_id THEN 0 ELSE 1 END, o.id)
          < (CASE WHEN alerts.custodian_id = alerts.recipient_id THEN 0 ELSE 1 END, alerts.id)
    ORDER BY CASE WHEN o.custodian_id = o.recipient_id THEN 0 ELSE 1 END, o.id
    LIMIT 1)
WHERE resolved_at IS NULL;
UPDATE alerts SET resolved_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'), resolved_by = 'system', stopped_at = strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'),
                  stop_reason = 'merged', escalate_at = NULL
WHERE merged_into IS NOT NULL AND resolved_at IS NULL;

CREATE UNIQUE INDEX alerts_open_per_recipient ON alerts (recipient_id, subject_kind, subject_id, kind) WHERE resolved_at IS NULL;
