//! The testing dashboard's figures, in the caller's scope (a lab sees its own tubes, the command
//! office the county's): tubes awaiting receipt, received, pending and overdue by priority, and
//! the turnaround from sampling to result as percentiles.

use crate::{Principal, Store, q, scope_args};
use baton_domain::Error;
use baton_domain::role::Permission;
use baton_domain::testing::Priority;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Tubes looked at for the turnaround at most (the newest results first).
const MAX_TURNAROUND_ROWS: i64 = 200_000;

/// One priority's tubes at the labs.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PriorityCounts {
    /// Handed to a lab, not received yet.
    pub awaiting_receipt: i64,
    /// Received since the window's start (a result before receipt counts as receipt).
    pub received: i64,
    /// At a lab without a result.
    pub pending: i64,
    /// Pending past their result deadline.
    pub overdue: i64,
    /// Resulted since the window's start.
    pub resulted: i64,
    /// Of those, positive.
    pub positive: i64,
}

/// Minutes from sampling to result: nearest-rank percentiles of the tubes resulted in the window.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Turnaround {
    pub tubes: usize,
    pub p50: Option<i64>,
    pub p90: Option<i64>,
    pub p99: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LabStats {
    pub since: DateTime<Utc>,
    pub at: DateTime<Utc>,
    pub routine: PriorityCounts,
    pub expedited: PriorityCounts,
    pub turnaround_routine: Turnaround,
    pub turnaround_expedited: Turnaround,
    pub turnaround_all: Turnaround,
}

impl LabStats {
    pub fn counts(&self, p: Priority) -> &PriorityCounts {
        match p {
            Priority::Routine => &self.routine,
            Priority::Expedited => &self.expedited,
        }
    }
    pub fn turnaround(&self, p: Option<Priority>) -> &Turnaround {
        match p {
            Some(Priority::Routine) => &self.turnaround_routine,
            Some(Priority::Expedited) => &self.turnaround_expedited,
            None => &self.turnaround_all,
        }
    }
}

/// The nearest-rank `p`-th percentile (0 < p ≤ 100) of sorted values.
pub fn percentile(sorted: &[i64], p: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (usize::try_from(p).unwrap_or(100) * n).div_ceil(100).clamp(1, n);
    sorted.get(rank - 1).copied()
}

fn turnaround(mut minutes: Vec<i64>) -> Turnaround {
    minutes.sort_unstable();
    Turnaround { tubes: minutes.len(), p50: percentile(&minutes, 50), p90: percentile(&minutes, 90), p99: percentile(&minutes, 99) }
}

/// The figures at `now` for the window from `since`.
pub async fn lab_stats(store: &Store, who: &Principal, since: DateTime<Utc>) -> Result<LabStats, Error> {
    who.require(Permission::TestingRead)?;
    let now = store.now();
    let (lo, hi, unit) = scope_args(&who.scope);
    let rows = store
        .db
        .scan(q!(
            "SELECT t.priority,
                    COALESCE(SUM(CASE WHEN t.state = 'shipped' THEN 1 ELSE 0 END), 0) AS awaiting,
                    COALESCE(SUM(CASE WHEN t.received_at >= $5 THEN 1 ELSE 0 END), 0) AS received,
                    COALESCE(SUM(CASE WHEN t.outcome IS NULL AND t.state IN ('shipped', 'received') THEN 1 ELSE 0 END), 0) AS pending,
                    COALESCE(SUM(CASE WHEN t.outcome IS NULL AND t.state IN ('shipped', 'received') AND t.due_at < $6 THEN 1 ELSE 0 END), 0) AS overdue,
                    COALESCE(SUM(CASE WHEN t.resulted_at >= $5 THEN 1 ELSE 0 END), 0) AS resulted,
                    COALESCE(SUM(CASE WHEN t.resulted_at >= $5 AND t.outcome = 'positive' THEN 1 ELSE 0 END), 0) AS positive
             FROM tubes t
             WHERE t.lab_id IS NOT NULL
               AND ((t.jurisdiction >= $1 AND t.jurisdiction < $2) OR t.team_id = $3 OR t.lab_id = $3 OR t.team_id = $4 OR t.lab_id = $4)
               AND (t.state IN ('shipped', 'received') OR t.received_at >= $5 OR t.resulted_at >= $5)
             GROUP BY t.priority",
            lo.clone(),
            hi.clone(),
            unit,
            who.unit_id,
            since,
            now
        ))
        .await?;
    let mut routine = PriorityCounts::default();
    let mut expedited = PriorityCounts::default();
    for r in &rows {
        let p: String = r.get("priority")?;
        let c = PriorityCounts {
            awaiting_receipt: r.get("awaiting")?,
            received: r.get("received")?,
            pending: r.get("pending")?,
            overdue: r.get("overdue")?,
            resulted: r.get("resulted")?,
            positive: r.get("positive")?,
        };
        match Priority::parse(&p) {
            Some(Priority::Routine) => routine = c,
            Some(Priority::Expedited) => expedited = c,
            None => return Err(Error::internal(format!("stored priority {p}"))),
        }
    }
    let rows = store
        .db
        .scan(q!(
            "SELECT t.priority, t.sampled_at, t.resulted_at FROM tubes t
             WHERE t.resulted_at >= $5
               AND ((t.jurisdiction >= $1 AND t.jurisdiction < $2) OR t.team_id = $3 OR t.lab_id = $3 OR t.team_id = $4 OR t.lab_id = $4)
             ORDER BY t.resulted_at DESC LIMIT $6",
            lo,
            hi,
            unit,
            who.unit_id,
            since,
            MAX_TURNAROUND_ROWS
        ))
        .await?;
    let (mut all, mut by_routine, mut by_expedited) = (Vec::new(), Vec::new(), Vec::new());
    for r in &rows {
        let p: String = r.get("priority")?;
        let sampled: DateTime<Utc> = r.get("sampled_at")?;
        let resulted: DateTime<Utc> = r.get("resulted_at")?;
        let m = (resulted - sampled).num_minutes().max(0);
        all.push(m);
        if Priority::parse(&p) == Some(Priority::Expedited) {
            by_expedited.push(m);
        } else {
            by_routine.push(m);
        }
    }
    Ok(LabStats {
        since,
        at: now,
        routine,
        expedited,
        turnaround_routine: turnaround(by_routine),
        turnaround_expedited: turnaround(by_expedited),
        turnaround_all: turnaround(all),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 50), Some(7));
        assert_eq!(percentile(&[7], 99), Some(7));
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!((percentile(&v, 50), percentile(&v, 90), percentile(&v, 99), percentile(&v, 100)), (Some(50), Some(90), Some(99), Some(100)));
        // Ten values: the 99th percentile is the largest, the median the fifth.
        let v: Vec<i64> = (1..=10).map(|x| x * 10).collect();
        assert_eq!((percentile(&v, 50), percentile(&v, 90), percentile(&v, 99)), (Some(50), Some(90), Some(100)));
        let t = turnaround(vec![300, 60, 120]);
        assert_eq!((t.tubes, t.p50, t.p90, t.p99), (3, Some(120), Some(300), Some(300)));
    }
}
