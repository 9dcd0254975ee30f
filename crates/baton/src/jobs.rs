//! Background jobs. For the platform: purge what has served its purpose (expired
//! sessions, old login failures, finished idempotency keys). Modules add their jobs here.

use baton_store::{Store, q};
use baton_web::metrics::Metrics;
use chrono::Duration;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::watch;

/// One pass of the housekeeping job; returns rows removed.
pub async fn housekeeping(store: &Store) -> Result<u64, baton_domain::Error> {
    let now = store.now();
    let mut tx = store.db.begin().await?;
    let mut n =
        tx.execute(q!("DELETE FROM sessions WHERE expires_at < $1 OR revoked_at < $2", now - Duration::days(1), now - Duration::days(1))).await?;
    n += tx.execute(q!("DELETE FROM login_failures WHERE at < $1", now - Duration::days(1))).await?;
    n += tx.execute(q!("DELETE FROM idempotency WHERE created_at < $1", now - Duration::days(1))).await?;
    tx.commit().await?;
    Ok(n)
}

/// One pass of the deadline watcher: raise what each module finds overdue, then escalate.
/// Also run by `baton sim` after each step of its clock.
pub async fn watch(store: &Store) -> Result<baton_store::alerts::SweepReport, baton_domain::Error> {
    let now = store.now();
    let t = baton_store::testing::sweep(store, now).await?;
    if t.tubes_overdue > 0 || t.batches_unaccepted > 0 || t.retests_overdue > 0 {
        tracing::info!(tubes = t.tubes_overdue, batches = t.batches_unaccepted, retests = t.retests_overdue, "testing deadlines");
    }
    let r = baton_store::alerts::sweep(store, now).await?;
    // After the alerts: an escort handoff redirected to a fallback escort has had its breach raised.
    let e = baton_store::escorts::sweep(store, now).await?;
    if e.proposed + e.fallbacks + e.no_fallback > 0 {
        tracing::info!(proposed = e.proposed, fallbacks = e.fallbacks, no_fallback = e.no_fallback, "escorts");
    }
    Ok(r)
}

/// The deadline watcher's period: a breach is raised within this long of its deadline.
const WATCH_SECONDS: u64 = 10;

/// How often the code recompute looks for work (risk-area lists, policy versions, results, codes at their `until`).
const RECOMPUTE_SECONDS: u64 = 2;

/// Chunks of persons one recompute pass works on before it looks whether to stop.
const RECOMPUTE_CHUNKS: usize = 8;

/// Person codes follow their facts: its own loop, so that a long run never delays the deadline watcher.
async fn recompute(store: Store, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(RECOMPUTE_SECONDS));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|v| *v) => return,
        }
        // On a manual clock whoever moves time runs `recompute::sweep` (as for the deadline watcher).
        if store.clock.is_manual() {
            continue;
        }
        // Bounded passes until the work is done, so that a stop waits for one pass at most (an
        // unfinished run resumes at the next start).
        loop {
            let pass = baton_store::recompute::sweep(&store, RECOMPUTE_CHUNKS).await;
            metrics.jobs_run.fetch_add(1, Ordering::Relaxed);
            match pass {
                Ok(r) => {
                    if r.changed + r.results + r.expired > 0 {
                        tracing::info!(processed = r.processed, changed = r.changed, results = r.results, expired = r.expired, "codes recomputed");
                    }
                    let stopping = *stop.borrow();
                    if (r.processed == 0 && !r.due_left) || stopping {
                        break;
                    }
                }
                Err(e) => {
                    metrics.jobs_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, "code recompute failed");
                    break;
                }
            }
        }
    }
}

/// Write the audit chain's anchor if the chain moved (`audit::anchor`); a failure is logged,
/// and the next tick tries again.
pub async fn anchor_audit(store: &Store, path: &std::path::Path) {
    if let Err(e) = baton_store::audit::anchor(&store.db, &store.vault, path, store.now()).await {
        tracing::error!(error = %e, "audit anchor");
    }
}

pub async fn run(store: Store, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>, audit_anchor: std::path::PathBuf) {
    let codes = tokio::spawn(recompute(store.clone(), metrics.clone(), stop.clone()));
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(WATCH_SECONDS));
    let mut n: u64 = 0;
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait_for(|v| *v) => true,
        };
        if stopping {
            // The database closes after this returns: let the recompute pass finish first.
            let _ = codes.await;
            return;
        }
        n += 1;
        // On a manual clock (tests, simulation) time moves only when told, so whoever moves it
        // runs the watcher too (`alerts::sweep`); sweeping on wall-clock ticks would race them.
        let sweep = if store.clock.is_manual() { Ok(Default::default()) } else { watch(&store).await };
        match sweep {
            Ok(r) => {
                if r.raised > 0 || r.escalated > 0 || r.settled > 0 || r.merged > 0 {
                    tracing::info!(
                        raised = r.raised,
                        escalated = r.escalated,
                        settled = r.settled,
                        merged = r.merged,
                        trips = r.trips_checked,
                        "deadline watcher"
                    );
                }
            }
            Err(e) => {
                metrics.jobs_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "deadline watcher failed");
            }
        }
        metrics.jobs_run.fetch_add(1, Ordering::Relaxed);
        anchor_audit(&store, &audit_anchor).await;
        // Housekeeping once a minute.
        if !n.is_multiple_of(60 / WATCH_SECONDS) {
            continue;
        }
        metrics.jobs_pending.store(1, Ordering::Relaxed);
        match housekeeping(&store).await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(removed = n, "housekeeping");
                }
            }
            Err(e) => {
                metrics.jobs_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "housekeeping failed");
            }
        }
        metrics.jobs_pending.store(0, Ordering::Relaxed);
        metrics.jobs_run.fetch_add(1, Ordering::Relaxed);
    }
}
