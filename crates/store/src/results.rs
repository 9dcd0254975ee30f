//! A person's latest testing results: THE one interface the freight loop, codes and later
//! modules read (never the testing tables directly). `person_results` holds one row per
//! person, kept by `testing` in the same transaction as every sample, result and re-check.

use crate::{Store, q};
use baton_domain::Error;
use baton_domain::testing::PersonStatus;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonResult {
    pub person_id: Uuid,
    /// `pending`, `negative`, `positive`, `pending_recheck` or `invalid`.
    pub status: PersonStatus,
    /// The latest sample's time.
    pub sampled_at: DateTime<Utc>,
    /// When the status's result came in (`None` while pending).
    pub resulted_at: Option<DateTime<Utc>>,
    /// The latest sample's tube.
    pub tube_id: Uuid,
    pub updated_at: DateTime<Utc>,
    /// The person's residence division.
    pub jurisdiction: String,
}

/// Ids looked up per statement (the same text for both databases; unused slots repeat the first id).
const CHUNK: usize = 32;

/// The latest status of each person that has one (persons never sampled are absent).
pub async fn latest(store: &Store, person_ids: &[Uuid]) -> Result<HashMap<Uuid, PersonResult>, Error> {
    let mut out = HashMap::with_capacity(person_ids.len());
    for chunk in person_ids.chunks(CHUNK) {
        let mut ids: Vec<Uuid> = chunk.to_vec();
        ids.resize(CHUNK, chunk[0]);
        let mut q = q!(
            "SELECT person_id, status, sampled_at, resulted_at, tube_id, updated_at, jurisdiction FROM person_results WHERE person_id IN ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32)"
        );
        q.args = ids.into_iter().map(crate::db::Val::from).collect();
        for r in store.db.fetch_all(q).await? {
            let status: String = r.get("status")?;
            let p = PersonResult {
                person_id: r.get("person_id")?,
                status: PersonStatus::parse(&status).ok_or_else(|| Error::internal(format!("stored status {status}")))?,
                sampled_at: r.get("sampled_at")?,
                resulted_at: r.get("resulted_at")?,
                tube_id: r.get("tube_id")?,
                updated_at: r.get("updated_at")?,
                jurisdiction: r.get("jurisdiction")?,
            };
            out.insert(p.person_id, p);
        }
    }
    Ok(out)
}

/// When each person's negative samples were taken, from `since` on: every sample, not only the
/// latest (the companion rule clears on a series of negative tests). Persons without one are absent.
pub async fn negatives_since(store: &Store, person_ids: &[Uuid], since: DateTime<Utc>) -> Result<HashMap<Uuid, Vec<DateTime<Utc>>>, Error> {
    let mut out: HashMap<Uuid, Vec<DateTime<Utc>>> = HashMap::new();
    for chunk in person_ids.chunks(CHUNK) {
        let mut args = vec![crate::db::Val::from(since)];
        args.extend(chunk.iter().map(|id| crate::db::Val::from(*id)));
        args.resize(CHUNK + 1, crate::db::Val::from(chunk[0]));
        let mut q = q!(
            "SELECT m.person_id, m.added_at FROM tube_members m JOIN tubes t ON t.id = m.tube_id
              WHERE t.outcome = 'negative' AND m.added_at >= $1
                AND m.person_id IN ($2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33)"
        );
        q.args = args;
        for r in store.db.fetch_all(q).await? {
            out.entry(r.get("person_id")?).or_default().push(r.get("added_at")?);
        }
    }
    Ok(out)
}

/// Persons whose status changed after `since`, oldest change first (for recomputing codes):
/// page on by passing the last time seen.
pub async fn changed_since(store: &Store, since: DateTime<Utc>, limit: i64) -> Result<Vec<(Uuid, DateTime<Utc>)>, Error> {
    let rows = store
        .db
        .fetch_all(q!(
            "SELECT person_id, updated_at FROM person_results WHERE updated_at > $1 ORDER BY updated_at, person_id LIMIT $2",
            since,
            limit.clamp(1, 100_000)
        ))
        .await?;
    rows.iter().map(|r| Ok((r.get("person_id")?, r.get("updated_at")?))).collect()
}

/// A trip whose landing test came back positive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PositiveLanding {
    pub trip_id: Uuid,
    pub tube_id: Uuid,
    pub barcode: String,
    pub resulted_at: DateTime<Utc>,
}

/// Trips whose landing tube is positive, resulted after `since`. (The result path already
/// raises the `positive_landing` emergency alert on the trip; this is for reading.)
pub async fn positive_landings(store: &Store, since: DateTime<Utc>) -> Result<Vec<PositiveLanding>, Error> {
    let rows = store
        .db
        .fetch_all(q!(
            "SELECT trip_id, id, barcode, resulted_at FROM tubes WHERE trip_id IS NOT NULL AND outcome = 'positive' AND resulted_at > $1 ORDER BY resulted_at",
            since
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(PositiveLanding { trip_id: r.get("trip_id")?, tube_id: r.get("id")?, barcode: r.get("barcode")?, resulted_at: r.get("resulted_at")? })
        })
        .collect()
}
