//! How an alert ends other than by a person resolving it. An alert watches one broken link
//! (a deadline passed, a result late, a positive found); once the link is mended or its trip is
//! over there is nothing left to escalate, and the system ends the alert and says why.

labelled! {
    /// Why the system ended an alert: closed it, or stopped its climb up the ladder.
    AlertEnd {
        TripExited = "trip_exited", "行程已出口核销闭环", "The trip was scanned out (loop closed)";
        TripConverted = "trip_converted", "行程已转社区管理", "The trip was converted to community management";
        TripIsolated = "trip_isolated", "司乘人员已集中隔离", "The crew was handed to quarantine";
        TripTurnedBack = "trip_turned_back", "车辆已劝返", "The truck was turned back";
        TripCancelled = "trip_cancelled", "报备已撤销", "The pre-report was cancelled";
        CheckedIn = "checked_in", "车辆已落地报到", "The truck was checked in";
        Arrived = "arrived", "车辆已到达目的地", "The truck arrived at its destination";
        Departed = "departed", "车辆已离开目的地", "The truck left its destination";
        HandoffAccepted = "handoff_accepted", "交接已被接收", "The handoff was accepted";
        HandoffRejected = "handoff_rejected", "交接已被拒收，另行安排", "The handoff was rejected; another is arranged";
        HandoffWithdrawn = "handoff_withdrawn", "交接已撤回", "The handoff was withdrawn";
        HandoffSuperseded = "handoff_superseded", "车辆已前行，交接失效", "The truck moved on; the handoff lapsed";
        ResultRecorded = "result_recorded", "检测结果已出", "The result is in";
        BatchReceived = "batch_received", "批次已被实验室接收", "The lab received the batch";
        OrderSampled = "order_sampled", "已按要求复检或重采", "The re-test or re-sample was taken";
        /// The unit it was to climb to already had the same alert open: that one carries on.
        Merged = "merged", "上一级已有同一告警，并入该告警", "The next unit up already has this alert; merged into it";
    }
}

/// What the system does with an alert whose subject moved on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Nothing is broken any more: the alert is closed.
    Closed(AlertEnd),
    /// Escalating can do nothing more (an emergency whose trip is over), but a person still has
    /// to act: the alert stays open where it is and stops climbing.
    Stopped(AlertEnd),
}

impl Settled {
    pub fn reason(self) -> AlertEnd {
        match self {
            Settled::Closed(r) | Settled::Stopped(r) => r,
        }
    }
}
