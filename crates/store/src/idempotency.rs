//! Idempotency keys: a retried create (same key, same actor) returns the first answer
//! instead of creating twice. A key's row holds its answer and is written in the same
//! transaction as the record it answers (`db::hold`), so that no crash can leave a record
//! without its answer or a key claimed by a request that died: a retry after any crash
//! either replays the answer or runs as the first time.

use crate::db::Tx;
use crate::{Store, q};
use baton_domain::Error;

pub enum Claim {
    /// Not answered yet: go ahead, then `answer`.
    New,
    /// Done before with the same request: replay this status and body.
    Replay { status: u16, body: String },
    /// The same key was used for a different request.
    Mismatch,
}

/// What the key has answered before, if anything. Rows with status 0 are placeholders left
/// by an earlier Baton, which claimed a key before running the request: they answer nothing.
pub async fn lookup(store: &Store, actor: &str, key: &str, request_hash: &[u8]) -> Result<Claim, Error> {
    claim_of(store.db.fetch_optional(answered(actor, key)).await?, request_hash)
}

fn answered(actor: &str, key: &str) -> crate::db::Q {
    q!("SELECT request_hash, status, body FROM idempotency WHERE actor = $1 AND key = $2", actor, key)
}

fn claim_of(row: Option<crate::db::Row>, request_hash: &[u8]) -> Result<Claim, Error> {
    let Some(r) = row else {
        return Ok(Claim::New);
    };
    let h: Vec<u8> = r.get("request_hash")?;
    let status: i64 = r.get("status")?;
    Ok(if h != request_hash {
        Claim::Mismatch
    } else if status == 0 {
        Claim::New
    } else {
        Claim::Replay { status: u16::try_from(status).unwrap_or(500), body: r.get("body")? }
    })
}

/// Write the key's answer into `tx` (the open transaction that holds the record answered, or
/// a new one when nothing was written) and commit both. When another request with the same
/// key committed first (two retries racing), nothing of this one is kept and the answer to
/// give is that one's: `Some(claim)`.
pub async fn answer(
    store: &Store,
    tx: Option<Tx>,
    actor: &str,
    key: &str,
    request_hash: &[u8],
    status: u16,
    body: &str,
) -> Result<Option<Claim>, Error> {
    let mut tx = match tx {
        Some(tx) => tx,
        None => store.db.begin().await?,
    };
    let stored = tx
        .execute(q!(
            "INSERT INTO idempotency (actor, key, request_hash, status, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (actor, key) DO UPDATE SET request_hash = excluded.request_hash, status = excluded.status, body = excluded.body, created_at = excluded.created_at
             WHERE idempotency.status = 0",
            actor, key, request_hash.to_vec(), i64::from(status), body, store.now()
        ))
        .await?;
    if stored == 0 {
        // The other request's answer, read where it is visible already: on SQLite it may sit in
        // the group-commit batch this transaction joined, not yet committed.
        let claim = claim_of(tx.fetch_optional(answered(actor, key)).await?, request_hash)?;
        drop(tx);
        // Give it only once it is durable, as its own request does: an empty job waits for
        // the batch holding it.
        store.db.begin().await?.commit_now().await?;
        return Ok(Some(claim));
    }
    tx.commit_now().await?;
    Ok(None)
}
