//! The audit log: every write and every reveal, chained by a keyed hash so that
//! `baton audit verify` detects an edited, deleted or reordered entry.
//!
//! Appends happen inside the transaction of the change they record. The first statement
//! bumps the chain head, which takes the write lock (SQLite) or the head row's lock
//! (PostgreSQL), so concurrent appends queue instead of forking the chain.

use crate::db::{Db, Tx};
use crate::page::{Page, PageQuery, Paged};
use crate::principal::Principal;
use crate::vault::Vault;
use crate::{q, scope_args};
use baton_domain::Error;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

/// What is being recorded: the action on an object, in a jurisdiction.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub action: &'a str,
    pub object_type: &'a str,
    pub object_id: String,
    pub jurisdiction: &'a str,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub request_id: String,
    pub actor_id: Option<Uuid>,
    pub actor_name: String,
    pub unit_id: Option<Uuid>,
    pub jurisdiction: String,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub detail: String,
}

impl Record {
    /// The bytes the chain hashes: a JSON array in fixed order (unambiguous, stable).
    fn canonical(&self) -> Vec<u8> {
        serde_json::json!([
            self.seq,
            self.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            self.request_id,
            self.actor_id.map(|u| u.to_string()),
            self.actor_name,
            self.unit_id.map(|u| u.to_string()),
            self.jurisdiction,
            self.action,
            self.object_type,
            self.object_id,
            self.detail,
        ])
        .to_string()
        .into_bytes()
    }

    fn chain_hash(&self, vault: &Vault, prev: &[u8]) -> Vec<u8> {
        let mut data = prev.to_vec();
        data.extend_from_slice(&self.canonical());
        vault.audit_mac(&data)
    }

    fn from_row(r: &crate::db::Row) -> Result<Record, Error> {
        Ok(Record {
            seq: r.get("seq")?,
            at: r.get("at")?,
            request_id: r.get("request_id")?,
            actor_id: r.get("actor_id")?,
            actor_name: r.get("actor_name")?,
            unit_id: r.get("unit_id")?,
            jurisdiction: r.get("jurisdiction")?,
            action: r.get("action")?,
            object_type: r.get("object_type")?,
            object_id: r.get("object_id")?,
            detail: r.get("detail")?,
        })
    }
}

/// Truncate to what both databases keep (microseconds), so hashes survive a round trip.
pub fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::DurationRound;
    t.duration_trunc(chrono::Duration::microseconds(1)).unwrap_or(t)
}

/// Entries per multi-row append (PostgreSQL; SQLite writes them one by one).
const APPEND_ROWS: usize = 10;
const APPEND_HEAD: &str = "INSERT INTO audit_log (seq, at, request_id, actor_id, actor_name, unit_id, jurisdiction, action, object_type, object_id, detail, prev_hash, hash)";
static SQL_APPEND_MANY: std::sync::LazyLock<&'static str> =
    std::sync::LazyLock::new(|| crate::person_codes::values(APPEND_HEAD, 13, APPEND_ROWS, ""));
static SQL_APPEND_ONE: std::sync::LazyLock<&'static str> = std::sync::LazyLock::new(|| crate::person_codes::values(APPEND_HEAD, 13, 1, ""));

pub async fn append(tx: &mut Tx, vault: &Vault, at: DateTime<Utc>, who: &Principal, e: Entry<'_>) -> Result<i64, Error> {
    let seqs = append_all(tx, vault, at, who, vec![e]).await?;
    seqs.first().copied().ok_or_else(|| Error::internal("audit append wrote nothing"))
}

/// Append several entries by one actor at one time, in order, taking the chain head once
/// (the deadline watcher raises hundreds of alerts in one pass). Returns their sequence numbers.
pub async fn append_all(tx: &mut Tx, vault: &Vault, at: DateTime<Utc>, who: &Principal, entries: Vec<Entry<'_>>) -> Result<Vec<i64>, Error> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let n = entries.len() as i64;
    let head = tx.fetch_one(q!("UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash", n)).await?;
    let last: i64 = head.get("seq")?;
    let mut prev: Vec<u8> = head.get("hash")?;
    let at = micros(at);
    // An entry that names no jurisdiction belongs where its actor works (a sign-in, with its
    // address, is seen by the actor's jurisdiction, not by every reader); only the system's own
    // entries keep the empty jurisdiction, which county-wide readers alone see.
    let home = who.home().0;
    let mut seqs = Vec::with_capacity(entries.len());
    let mut rows: Vec<Vec<crate::db::Val>> = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let rec = Record {
            seq: last - n + 1 + i as i64,
            at,
            request_id: who.request_id.clone(),
            actor_id: who.user_id,
            actor_name: who.name.clone(),
            unit_id: who.unit_id,
            jurisdiction: if e.jurisdiction.is_empty() { home.clone() } else { e.jurisdiction.to_string() },
            action: e.action.to_string(),
            object_type: e.object_type.to_string(),
            object_id: e.object_id,
            detail: e.detail.to_string(),
        };
        let hash = rec.chain_hash(vault, &prev);
        seqs.push(rec.seq);
        rows.push(vec![
            rec.seq.into(),
            rec.at.into(),
            rec.request_id.into(),
            rec.actor_id.into(),
            rec.actor_name.into(),
            rec.unit_id.into(),
            rec.jurisdiction.into(),
            rec.action.into(),
            rec.object_type.into(),
            rec.object_id.into(),
            rec.detail.into(),
            prev.into(),
            hash.clone().into(),
        ]);
        prev = hash;
    }
    // Several entries a statement: a batch import appends one per row it writes.
    tx.execute_rows(&SQL_APPEND_MANY, APPEND_ROWS, &SQL_APPEND_ONE, &rows).await?;
    tx.execute(q!("UPDATE audit_head SET hash = $1 WHERE id = 1", prev)).await?;
    Ok(seqs)
}

#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    pub entries: i64,
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A checkpoint of the chain kept outside the database (a file beside the key file, on the
/// application server): the head's sequence number and hash when it was written, with a MAC
/// under the audit key. The chain alone cannot show that its newest entries were deleted and
/// the head rewound to match, or that every entry was; the anchor can, since whoever changes
/// the database cannot change it (nor forge one without the key). `anchor` writes it after
/// the chain has moved (the jobs loop, and shutdown); `verify` checks the log against it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Anchor {
    pub seq: i64,
    /// Hex of the entry's chain hash.
    pub hash: String,
    pub at: DateTime<Utc>,
    /// Hex of the MAC over the fields above.
    pub mac: String,
}

impl Anchor {
    fn mac(vault: &Vault, seq: i64, hash: &str, at: DateTime<Utc>) -> String {
        let data = format!("baton-audit-anchor\0{seq}\0{hash}\0{}", at.to_rfc3339_opts(SecondsFormat::Micros, true));
        hex::encode(vault.audit_mac(data.as_bytes()))
    }

    fn genuine(&self, vault: &Vault) -> bool {
        Anchor::mac(vault, self.seq, &self.hash, self.at) == self.mac
    }
}

/// The anchor in `path`, if one was written; an unreadable one is an error (a problem to
/// report, not a missing anchor).
pub fn read_anchor(path: &std::path::Path) -> Result<Option<Anchor>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::internal(format!("audit anchor {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::internal(format!("audit anchor {}: {e}", path.display()))),
    }
}

/// What is wrong between the chain (its head at `head_seq`) and the anchor, if anything.
async fn anchor_problem(db: &Db, vault: &Vault, a: &Anchor, head_seq: i64) -> Result<Option<String>, Error> {
    if !a.genuine(vault) {
        return Ok(Some("the audit anchor's MAC does not match (the anchor was altered or made without the audit key)".into()));
    }
    if a.seq > head_seq {
        return Ok(Some(format!(
            "the audit anchor of {} records entry {} but the chain ends at {head_seq} (the newest entries were deleted and the head rewound)",
            a.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            a.seq
        )));
    }
    if a.seq == 0 {
        return Ok(None);
    }
    Ok(match db.fetch_optional(q!("SELECT hash FROM audit_log WHERE seq = $1", a.seq)).await? {
        Some(r) if hex::encode(r.get::<Vec<u8>>("hash")?) == a.hash => None,
        Some(_) => Some(format!("entry {} differs from the audit anchor (the chain was rewritten)", a.seq)),
        None => Some(format!("entry {} recorded by the audit anchor is missing (deleted)", a.seq)),
    })
}

/// Write the chain's head to the anchor file if it moved on from the last one: to a temporary
/// file, flushed to disk, then renamed over the old one, so a crash leaves one whole anchor.
/// Returns the anchor written, if any; an error (the anchor kept) when the chain no longer
/// reaches the last anchor.
pub async fn anchor(db: &Db, vault: &Vault, path: &std::path::Path, now: DateTime<Utc>) -> Result<Option<Anchor>, Error> {
    let head = db.fetch_one(q!("SELECT seq, hash FROM audit_head WHERE id = 1")).await?;
    let seq: i64 = head.get("seq")?;
    let hash = hex::encode(head.get::<Vec<u8>>("hash")?);
    if let Some(old) = read_anchor(path)? {
        if old.seq == seq && old.hash == hash {
            return Ok(None);
        }
        // The anchor only moves forward along the chain it anchored: it never follows a head
        // that was rewound or a chain that was rewritten, so `verify` still sees those.
        if let Some(p) = anchor_problem(db, vault, &old, seq).await? {
            return Err(Error::internal(format!("audit anchor kept: {p}")));
        }
    }
    let at = micros(now);
    let a = Anchor { seq, mac: Anchor::mac(vault, seq, &hash, at), hash, at };
    let (path, body) = (path.to_path_buf(), serde_json::to_vec(&a).map_err(Error::internal)?);
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })
    .await
    .map_err(Error::internal)?
    .map_err(|e| Error::internal(format!("audit anchor: {e}")))?;
    Ok(Some(a))
}

/// Walk the whole chain in order and report every break.
pub async fn verify(db: &Db, vault: &Vault) -> Result<VerifyReport, Error> {
    verify_anchored(db, vault, None).await
}

/// `verify`, and with an anchor also check that the log still reaches the anchored entry
/// unchanged.
pub async fn verify_anchored(db: &Db, vault: &Vault, anchor: Option<&Anchor>) -> Result<VerifyReport, Error> {
    let mut report = VerifyReport::default();
    let mut expected_seq = 1i64;
    let mut prev = vec![0u8; 32];
    loop {
        let rows = db
            .scan(q!(
                "SELECT seq, at, request_id, actor_id, actor_name, unit_id, jurisdiction, action, object_type, object_id, detail, prev_hash, hash
                 FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT 5000",
                expected_seq
            ))
            .await?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let rec = Record::from_row(r)?;
            let stored_prev: Vec<u8> = r.get("prev_hash")?;
            let stored: Vec<u8> = r.get("hash")?;
            if rec.seq != expected_seq {
                report.problems.push(format!("entries {expected_seq}..{} are missing (deleted)", rec.seq - 1));
            }
            if stored_prev != prev {
                report.problems.push(format!("entry {} does not follow the entry before it (deleted or reordered)", rec.seq));
            }
            if rec.chain_hash(vault, &stored_prev) != stored {
                report.problems.push(format!("entry {} was altered", rec.seq));
            }
            prev = stored;
            expected_seq = rec.seq + 1;
            report.entries += 1;
        }
    }
    let head = db.fetch_one(q!("SELECT seq, hash FROM audit_head WHERE id = 1")).await?;
    let head_seq: i64 = head.get("seq")?;
    let head_hash: Vec<u8> = head.get("hash")?;
    if head_seq != expected_seq - 1 {
        report.problems.push(format!("the chain head is at entry {head_seq} but the log ends at {} (entries deleted)", expected_seq - 1));
    } else if head_hash != prev {
        report.problems.push(format!("the last entry {head_seq} does not match the chain head (altered)"));
    }
    if let Some(a) = anchor
        && let Some(p) = anchor_problem(db, vault, a, head_seq).await?
    {
        report.problems.push(p);
    }
    Ok(report)
}

/// Filters for the audit viewer; every field optional.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Search {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Entries inside the viewer's scope, newest first, paged by sequence number. Entries with no
/// jurisdiction (the system's own: recomputes naming persons, key rotations; and entries
/// written before every entry got its actor's jurisdiction, sign-ins with addresses among them)
/// only county-wide readers see.
pub async fn search(db: &Db, who: &Principal, s: &Search, page: &PageQuery) -> Result<Paged<Record>, Error> {
    let (lo, hi, unit) = scope_args(&who.scope);
    let page = Page::<i64>::read("audit", page)?;
    let empty = |o: &Option<String>| o.as_ref().map(|x| x.trim().to_string()).filter(|x| !x.is_empty());
    let rows = db
        .scan(q!(
            "SELECT seq, at, request_id, actor_id, actor_name, unit_id, jurisdiction, action, object_type, object_id, detail
             FROM audit_log
             WHERE ((jurisdiction >= $1 AND jurisdiction < $2) OR unit_id = $3 OR (jurisdiction = '' AND $12))
               AND ($4 IS NULL OR actor_name = $4)
               AND ($5 IS NULL OR action = $5)
               AND ($6 IS NULL OR object_type = $6)
               AND ($7 IS NULL OR object_id = $7)
               AND ($8 IS NULL OR at >= $8)
               AND ($9 IS NULL OR at < $9)
               AND ($10 IS NULL OR seq < $10)
             ORDER BY seq DESC LIMIT $11",
            lo,
            hi,
            unit,
            empty(&s.actor),
            empty(&s.action),
            empty(&s.object_type),
            empty(&s.object_id),
            s.from,
            s.to,
            page.after,
            page.fetch(),
            who.scope.is_county_wide()
        ))
        .await?;
    let list = rows.iter().map(Record::from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(list, |r| r.seq))
}
