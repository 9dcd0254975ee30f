//! Background recompute of person codes: when a risk-area list, a policy version or a result
//! changes, and when a code reaches its `until`. Only the persons a change can touch are
//! recomputed, and of those only the codes that change are written (`person_codes::recompute`).
//!
//! Risk-area changes and policy versions become **runs** (`code_recomputes`): a run knows its
//! cause, its total, how far it got (`processed`, and `cursor`, the last person id done, written
//! in the same transaction as the codes of each chunk) and how many codes changed, so progress
//! can be shown and a run interrupted by a restart resumes after its cursor and finishes.
//! A risk-area run covers the lists (every risk-area change is written as a list) after the
//! previous run's newest up to its own, and the areas they wrote or superseded; it touches the persons with a stay in the look-back window at, above or below
//! those areas' divisions.

use crate::db::Row;
use crate::page::{Page, PageQuery, Paged};
use crate::person_codes::{CHUNK, Context, Decided, Reads, decide, recompute_ids, write_decided};
use crate::{Principal, Store, audit, q};
use baton_domain::Error;
use baton_domain::division::prefix_end;
use baton_domain::role::Permission;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: Uuid,
    pub cause: String,
    pub cause_ref: String,
    pub state: String,
    pub total: i64,
    pub processed: i64,
    pub changed: i64,
    pub watermark: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

fn run_of(r: &Row) -> Result<Run, Error> {
    Ok(Run {
        id: r.get("id")?,
        cause: r.get("cause")?,
        cause_ref: r.get("cause_ref")?,
        state: r.get("state")?,
        total: r.get("total")?,
        processed: r.get("processed")?,
        changed: r.get("changed")?,
        watermark: r.get("watermark")?,
        error: r.get("error")?,
        created_at: r.get("created_at")?,
        started_at: r.get("started_at")?,
        finished_at: r.get("finished_at")?,
    })
}

/// A page of runs, newest first. Every run is county-wide: a risk-area change, a policy
/// version, the results of a pass and a manual run each recompute persons wherever they live,
/// and its counts are the county's. So only county-wide readers see runs.
pub async fn list(store: &Store, who: &Principal, page: &PageQuery) -> Result<Paged<Run>, Error> {
    who.require(Permission::PersonsRead)?;
    let page = Page::<(DateTime<Utc>, Uuid)>::read("recomputes", page)?;
    if !who.scope.is_county_wide() {
        return Ok(Paged { items: Vec::new(), next_cursor: None });
    }
    let (at, id) = page.parts();
    let rows = store
        .db
        .scan(q!(
            "SELECT id, cause, cause_ref, state, total, processed, changed, watermark, error, created_at, started_at, finished_at
               FROM code_recomputes WHERE ($1 IS NULL OR (created_at, id) < ($1, $2)) ORDER BY created_at DESC, id DESC LIMIT $3",
            at,
            id,
            page.fetch()
        ))
        .await?;
    let list = rows.iter().map(run_of).collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(list, |r| (r.created_at, r.id)))
}

async fn insert(store: &Store, who: &Principal, cause: &str, cause_ref: &str, watermark: Option<DateTime<Utc>>) -> Result<Run, Error> {
    let id = Uuid::now_v7();
    let now = store.now();
    let mut tx = store.db.begin().await?;
    tx.execute(q!(
        "INSERT INTO code_recomputes (id, cause, cause_ref, state, watermark, created_at) VALUES ($1, $2, $3, 'queued', $4, $5)",
        id,
        cause,
        cause_ref,
        watermark,
        now
    ))
    .await?;
    let entry = audit::Entry {
        action: "code.recompute_queued",
        object_type: "code_recompute",
        object_id: id.to_string(),
        jurisdiction: "",
        detail: serde_json::json!({"cause": cause, "ref": cause_ref, "watermark": watermark}),
    };
    store.audited(who, entry, tx).await?;
    get(store, id).await
}

pub async fn get(store: &Store, id: Uuid) -> Result<Run, Error> {
    let r = store
        .db
        .fetch_optional(q!(
            "SELECT id, cause, cause_ref, state, total, processed, changed, watermark, error, created_at, started_at, finished_at
               FROM code_recomputes WHERE id = $1",
            id
        ))
        .await?
        .ok_or(Error::NotFound("code_recompute"))?;
    run_of(&r)
}

/// Queue a recompute of every person (after a policy version, or by hand): county-wide staff
/// who may change the policy.
pub async fn enqueue(store: &Store, who: &Principal, cause: &str, note: &str) -> Result<Run, Error> {
    who.require(Permission::PolicyWrite)?;
    who.require_county_wide()?;
    let note = crate::text_field("note", note, 0, 200).map_err(|e| Error::Invalid(vec![e]))?;
    insert(store, who, cause, &note, None).await
}

/// The newest risk-area list (every change to the areas is written as a list; ids are time-ordered).
async fn newest_list(store: &Store) -> Result<Option<Uuid>, Error> {
    let r = store.db.fetch_optional(q!("SELECT id FROM risk_area_lists ORDER BY id DESC LIMIT 1")).await?;
    r.map(|r| r.get("id")).transpose()
}

/// The newest list covered by the risk-area runs (before `run`: run ids are time-ordered).
async fn covered_list(store: &Store, before: Option<&Run>) -> Result<Option<Uuid>, Error> {
    let q = match before {
        Some(r) => q!("SELECT cause_ref FROM code_recomputes WHERE cause = 'risk_areas' AND id < $1", r.id),
        None => q!("SELECT cause_ref FROM code_recomputes WHERE cause = 'risk_areas'"),
    };
    let mut best: Option<Uuid> = None;
    for r in &store.db.scan(q).await? {
        if let Ok(u) = Uuid::parse_str(&r.get::<String>("cause_ref")?) {
            best = best.max(Some(u));
        }
    }
    Ok(best)
}

async fn last_watermark(store: &Store, cause: &str) -> Result<Option<DateTime<Utc>>, Error> {
    let r = store.db.fetch_one(q!("SELECT MAX(watermark) AS w FROM code_recomputes WHERE cause = $1", cause)).await?;
    r.get("w")
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct SweepReport {
    pub queued: usize,
    pub processed: usize,
    pub changed: usize,
    pub results: usize,
    pub expired: usize,
    /// Codes may still be due: the pass stopped at its limit.
    pub due_left: bool,
}

/// Persons whose codes at their `until` one pass recomputes at most (more when one mark holds more).
const EXPIRE_PERSONS: usize = 5000;
/// Marks one pass reads at most.
const EXPIRE_MARKS: i64 = 100;

/// Recompute the codes that reached their `until`, found through the marks their writers left
/// (`code_due`, see `person_codes::write_decided`): for each mark due, the codes inside its
/// range due by now; then, since the mark's promise covers its hour, a mark at the earliest
/// `until` still ahead in that hour and range, if any. A mark is removed only after its codes
/// were recomputed, so a pass cut short leaves it to the next. Returns (codes changed, whether
/// marks due were left for the next pass).
async fn expire(store: &Store, now: DateTime<Utc>) -> Result<(usize, bool), Error> {
    let marks = store.db.scan(q!("SELECT at, lo, hi FROM code_due WHERE at <= $1 ORDER BY at LIMIT $2", now, EXPIRE_MARKS)).await?;
    let (mut changed, mut persons) = (0, 0);
    for (i, m) in marks.iter().enumerate() {
        if persons >= EXPIRE_PERSONS {
            return Ok((changed, i < marks.len()));
        }
        let (at, lo, hi): (DateTime<Utc>, Uuid, Uuid) = (m.get("at")?, m.get("lo")?, m.get("hi")?);
        let due = store
            .db
            .scan(q!("SELECT person_id FROM person_codes WHERE person_id >= $1 AND person_id <= $2 AND valid_until <= $3", lo, hi, now))
            .await?;
        let ids: Vec<Uuid> = due.iter().map(|r| r.get("person_id")).collect::<Result<_, _>>()?;
        persons += ids.len();
        changed += recompute_ids(store, &ids, "expiry").await?;
        let hour_end = crate::person_codes::due_hour_end(at);
        let next: Option<DateTime<Utc>> = store
            .db
            .fetch_one(q!(
                "SELECT MIN(valid_until) AS t FROM person_codes WHERE person_id >= $1 AND person_id <= $2 AND valid_until > $3 AND valid_until < $4",
                lo,
                hi,
                now,
                hour_end
            ))
            .await?
            .get("t")?;
        let mut tx = store.db.begin().await?;
        tx.execute(q!("DELETE FROM code_due WHERE at = $1 AND lo = $2 AND hi = $3", at, lo, hi)).await?;
        if let Some(t) = next {
            tx.execute(q!("INSERT INTO code_due (at, lo, hi) VALUES ($1, $2, $3) ON CONFLICT (at, lo, hi) DO NOTHING", t, lo, hi)).await?;
        }
        tx.commit().await?;
    }
    Ok((changed, i64::try_from(marks.len()).map_err(Error::internal)? == EXPIRE_MARKS))
}

/// One pass: queue runs for new risk-area changes and policy versions, recompute persons whose
/// result changed or whose code reached its `until`, and work on pending runs (at most
/// `chunks` chunks of `CHUNK` persons; `usize::MAX` to finish them).
pub async fn sweep(store: &Store, chunks: usize) -> Result<SweepReport, Error> {
    let mut rep = SweepReport::default();
    let system = Principal::system("recompute");
    let now = store.now();
    // Risk areas: a run per batch of new lists.
    if let Some(newest) = newest_list(store).await?
        && covered_list(store, None).await?.is_none_or(|c| newest > c)
    {
        insert(store, &system, "risk_areas", &newest.to_string(), None).await?;
        rep.queued += 1;
    }
    // Policy versions: one run per version that codes do not yet carry.
    let version = crate::policy::current(store, now).await?.version;
    let vref = version.to_string();
    let seen = store.db.fetch_optional(q!("SELECT id FROM code_recomputes WHERE cause = 'policy' AND cause_ref = $1", vref.clone())).await?;
    if seen.is_none() {
        insert(store, &system, "policy", &vref, None).await?;
        rep.queued += 1;
    }
    // Results changed since the last look (the testing module's `updated_at`; rows at the
    // watermark itself are looked at again, so one written in the same instant is not missed).
    let since = last_watermark(store, "results").await?;
    // Two statements, not `$1 IS NULL OR …`, so that SQLite starts at the watermark in the index
    // instead of walking it from the beginning on every pass.
    let q = match since {
        Some(w) => q!("SELECT person_id, updated_at FROM person_results WHERE updated_at >= $1 ORDER BY updated_at LIMIT 5000", w),
        None => q!("SELECT person_id, updated_at FROM person_results ORDER BY updated_at LIMIT 5000"),
    };
    let rows = store.db.scan(q).await?;
    if !rows.is_empty() {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.get("person_id")).collect::<Result<_, _>>()?;
        let w: Option<DateTime<Utc>> = rows.last().map(|r| r.get("updated_at")).transpose()?;
        rep.results = recompute_ids(store, &ids, "result").await?;
        if w > since {
            let n = i64::try_from(ids.len()).map_err(Error::internal)?;
            store
                .db
                .execute(q!(
                    "INSERT INTO code_recomputes (id, cause, cause_ref, state, total, processed, changed, watermark, created_at, started_at, finished_at)
                     VALUES ($1, 'results', '', 'done', $2, $2, $3, $4, $5, $5, $5)",
                    Uuid::now_v7(),
                    n,
                    i64::try_from(rep.results).map_err(Error::internal)?,
                    w,
                    now
                ))
                .await?;
        }
    }
    // Codes that reached their `until`.
    let (expired, due_left) = expire(store, now).await?;
    rep.expired = expired;
    rep.due_left = due_left;
    // Pending runs, oldest first.
    let mut budget = chunks;
    while budget > 0 {
        let Some(r) = store
            .db
            .fetch_optional(q!("SELECT id, cause, cause_ref, state, total, processed, changed, watermark, error, created_at, started_at, finished_at
                   FROM code_recomputes WHERE state IN ('queued', 'running') ORDER BY created_at, id LIMIT 1"))
            .await?
        else {
            break;
        };
        let run = run_of(&r)?;
        let (p, c, used) = work(store, &run, budget).await?;
        rep.processed += p;
        rep.changed += c;
        budget = budget.saturating_sub(used.max(1));
    }
    Ok(rep)
}

/// How a run reads its persons' facts: by id range when its persons are most of all persons
/// (a policy run, a change over the county), by lists otherwise.
async fn reads_for(store: &Store, run: &Run, affected: usize) -> Result<Reads, Error> {
    if run.cause != "risk_areas" {
        return Ok(Reads::Range);
    }
    let all: i64 = store.db.fetch_one(q!("SELECT COUNT(*) AS n FROM persons")).await?.get("n")?;
    Ok(if i64::try_from(affected).map_err(Error::internal)?.saturating_mul(2) >= all { Reads::Range } else { Reads::Lists })
}

/// The persons a run must look at, in id order, each once.
async fn affected(store: &Store, run: &Run, ctx: &Context) -> Result<Vec<Uuid>, Error> {
    let mut ids = Vec::new();
    if run.cause != "risk_areas" {
        let mut cursor = Uuid::nil();
        loop {
            let rows = store.db.scan(q!("SELECT id FROM persons WHERE merged_into IS NULL AND id > $1 ORDER BY id LIMIT 10000", cursor)).await?;
            let Some(last) = rows.last() else { break };
            cursor = last.get("id")?;
            for r in &rows {
                ids.push(r.get::<Uuid>("id")?);
            }
        }
        return Ok(ids);
    }
    // The lists after the previous risk-area run's, up to this run's: the areas they wrote, and
    // the areas they superseded.
    let prev = covered_list(store, Some(run)).await?.unwrap_or(Uuid::nil());
    let upto = Uuid::parse_str(&run.cause_ref).map_err(|_| Error::internal("risk-area run without its list"))?;
    let mut codes: BTreeSet<String> = BTreeSet::new();
    for r in &store.db.scan(q!("SELECT DISTINCT division_code FROM risk_areas WHERE list_id > $1 AND list_id <= $2", prev, upto)).await? {
        codes.insert(r.get("division_code")?);
    }
    let since = store.db.fetch_one(q!("SELECT MIN(created_at) AS t FROM risk_area_lists WHERE id > $1 AND id <= $2", prev, upto)).await?;
    if let Some(t) = since.get::<Option<DateTime<Utc>>>("t")? {
        for r in &store.db.scan(q!("SELECT DISTINCT division_code FROM risk_areas WHERE superseded_at >= $1", t)).await? {
            codes.insert(r.get("division_code")?);
        }
    }
    let start = ctx.now - Duration::days(i64::from(ctx.rules.itinerary_days));
    for code in &codes {
        // Stays at the area's division or below it.
        let rows = store
            .db
            .scan(q!(
                "SELECT person_id FROM person_stays WHERE division_code >= $1 AND division_code < $2 AND stay_to > $3",
                code.clone(),
                prefix_end(code),
                start
            ))
            .await?;
        for r in &rows {
            ids.push(r.get::<Uuid>("person_id")?);
        }
        // Stays recorded only at an ancestor (possible hits).
        for n in [2usize, 4, 6, 9] {
            if let Some(anc) = code.get(..n).filter(|_| n < code.len()) {
                let rows = store.db.scan(q!("SELECT person_id FROM person_stays WHERE division_code = $1 AND stay_to > $2", anc, start)).await?;
                for r in &rows {
                    ids.push(r.get::<Uuid>("person_id")?);
                }
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Chunks decided ahead of the one being written: the writer is one thread, so the persons'
/// facts are read and their codes decided on the other cores meanwhile.
const AHEAD: usize = 2;

/// A chunk being decided: its persons (the last is the run's cursor once it is written) and the
/// task deciding it.
type Ahead = (Vec<Uuid>, tokio::task::JoinHandle<Result<Decided, Error>>);

/// Work on one run for at most `budget` chunks; returns (processed, changed, chunks used).
/// Chunks are decided ahead on the runtime's other threads (`AHEAD`) and written in order, each
/// in its own transaction with the run's progress and cursor; a chunk's persons are distinct
/// from every other's, so writing one does not change what another decides.
async fn work(store: &Store, run: &Run, budget: usize) -> Result<(usize, usize, usize), Error> {
    let now = store.now();
    let ctx = Arc::new(Context::load(store).await?);
    let t = std::time::Instant::now();
    let ids = affected(store, run, &ctx).await?;
    let found = t.elapsed();
    let cursor: Option<Uuid> = store.db.fetch_one(q!("SELECT cursor FROM code_recomputes WHERE id = $1", run.id)).await?.get("cursor")?;
    let total = i64::try_from(ids.len()).map_err(Error::internal)?;
    store
        .db
        .execute(q!(
            "UPDATE code_recomputes SET state = 'running', total = $2, started_at = COALESCE(started_at, $3) WHERE id = $1",
            run.id,
            total,
            now
        ))
        .await?;
    let how = reads_for(store, run, ids.len()).await?;
    let start = cursor.map_or(0, |c| ids.partition_point(|id| *id <= c));
    let rest = ids.get(start..).unwrap_or_default();
    let cause = format!("{}{}", run.cause, if run.cause_ref.is_empty() { String::new() } else { format!(":{}", run.cause_ref) });
    let mut chunks = rest.chunks(CHUNK).take(budget);
    let more = rest.chunks(CHUNK).len() > budget;
    let mut ahead: VecDeque<Ahead> = VecDeque::new();
    let (mut processed, mut changed, mut used) = (0usize, 0usize, 0usize);
    let (mut waited, mut writing) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    loop {
        while ahead.len() < AHEAD
            && let Some(chunk) = chunks.next()
        {
            let (store, ctx, cause, ids) = (store.clone(), ctx.clone(), cause.clone(), chunk.to_vec());
            ahead.push_back((ids.clone(), tokio::spawn(async move { decide(&store, &ctx, &ids, &cause, how).await })));
        }
        let Some((chunk, decided)) = ahead.pop_front() else { break };
        let (n, last) = (chunk.len(), chunk.last().copied());
        let t = std::time::Instant::now();
        let decided = decided.await.map_err(|e| Error::internal(format!("recompute: {e}")))??;
        waited += t.elapsed();
        let t = std::time::Instant::now();
        let mut tx = store.db.begin_alone(crate::Durability::Resumable).await?;
        let w = write_decided(&mut tx, &decided).await?;
        let mut c = w.changed;
        tx.execute(q!(
            "UPDATE code_recomputes SET processed = processed + $2, changed = changed + $3, cursor = $4 WHERE id = $1",
            run.id,
            i64::try_from(n).map_err(Error::internal)?,
            i64::try_from(c).map_err(Error::internal)?,
            last
        ))
        .await?;
        tx.commit().await?;
        // Freed on the blocking pool: the chunk's rows were allocated where it was decided, and
        // freeing them here held the writer (see `code_history::Pending`).
        tokio::task::spawn_blocking(move || drop(decided));
        // Codes that a single person's recompute (a result, a control order) wrote meanwhile:
        // decided again from the facts as they are now.
        if w.overtaken > 0 {
            let again = recompute_ids(store, &chunk, &cause).await?;
            let n = i64::try_from(again).map_err(Error::internal)?;
            store.db.execute(q!("UPDATE code_recomputes SET changed = changed + $2 WHERE id = $1", run.id, n)).await?;
            c += again;
        }
        writing += t.elapsed();
        processed += n;
        changed += c;
        used += 1;
    }
    if more {
        return Ok((processed, changed, used));
    }
    // Where the time of the sweep that finished the run went: finding its persons, waiting
    // for chunks to be decided, writing them.
    tracing::info!(run = %run.id, processed, changed, affected_ms = found.as_millis(), waited_ms = waited.as_millis(), writing_ms = writing.as_millis(), "recompute chunks");
    let done = get(store, run.id).await?;
    let mut tx = store.db.begin().await?;
    tx.execute(q!("UPDATE code_recomputes SET state = 'done', finished_at = $2 WHERE id = $1", run.id, store.now())).await?;
    let entry = audit::Entry {
        action: "code.recompute",
        object_type: "code_recompute",
        object_id: run.id.to_string(),
        jurisdiction: "",
        detail: serde_json::json!({"cause": run.cause, "ref": run.cause_ref, "total": done.total, "processed": done.processed, "changed": done.changed}),
    };
    store.audited(&Principal::system("recompute"), entry, tx).await?;
    Ok((processed, changed, used))
}
