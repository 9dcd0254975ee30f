//! Idempotency keys: a retried create (same key, same actor) returns the first answer
//! instead of creating twice. A key first claims a row; the answer is stored when done.

use crate::{Store, q};
use baton_domain::Error;
use chrono::Duration;

pub enum Claim {
    /// First time: go ahead, then `finish` (or `release` on a server error).
    New,
    /// Done before with the same request: replay this status and body.
    Replay { status: u16, body: String },
    /// The same key was used for a different request.
    Mismatch,
    /// The first request with this key is still running.
    InProgress,
}

/// Placeholders older than this are taken to belong to a request that died.
const STALE_SECONDS: i64 = 60;

pub async fn claim(store: &Store, actor: &str, key: &str, request_hash: &[u8]) -> Result<Claim, Error> {
    let now = store.now();
    let mut tx = store.db.begin().await?;
    let inserted = tx
        .execute(q!(
            "INSERT INTO idempotency (actor, key, request_hash, status, body, created_at) VALUES ($1, $2, $3, 0, '', $4) ON CONFLICT (actor, key) DO NOTHING",
            actor, key, request_hash.to_vec(), now
        ))
        .await?;
    if inserted == 1 {
        tx.commit().await?;
        return Ok(Claim::New);
    }
    let r = tx.fetch_one(q!("SELECT request_hash, status, body, created_at FROM idempotency WHERE actor = $1 AND key = $2", actor, key)).await?;
    let h: Vec<u8> = r.get("request_hash")?;
    let status: i64 = r.get("status")?;
    let created: chrono::DateTime<chrono::Utc> = r.get("created_at")?;
    let out = if h != request_hash {
        Claim::Mismatch
    } else if status == 0 && now - created > Duration::seconds(STALE_SECONDS) {
        tx.execute(q!("UPDATE idempotency SET created_at = $3 WHERE actor = $1 AND key = $2", actor, key, now)).await?;
        Claim::New
    } else if status == 0 {
        Claim::InProgress
    } else {
        Claim::Replay { status: u16::try_from(status).unwrap_or(500), body: r.get("body")? }
    };
    tx.commit().await?;
    Ok(out)
}

pub async fn finish(store: &Store, actor: &str, key: &str, status: u16, body: &str) -> Result<(), Error> {
    store
        .db
        .execute(q!("UPDATE idempotency SET status = $3, body = $4 WHERE actor = $1 AND key = $2", actor, key, i64::from(status), body))
        .await
        .map(|_| ())
}

pub async fn release(store: &Store, actor: &str, key: &str) -> Result<(), Error> {
    store.db.execute(q!("DELETE FROM idempotency WHERE actor = $1 AND key = $2", actor, key)).await.map(|_| ())
}
