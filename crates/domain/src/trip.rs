//! The freight loop's trip: its lifecycle and its custody chain (the "baton").
//!
//! A trip is an immutable value. [`Trip::apply`] takes an [`Action`] done by one unit at one
//! time and returns a **new** trip, or a [`TransitionError`] with a stable snake_case code and
//! a reason in Chinese and English; the trip it was called on never changes. The store keeps
//! the returned value; the web layer turns the error into a 4xx.
//!
//! Lifecycle (docs/domain.md), every transition and who may make it:
//!
//! ```text
//! from              action (actor)                                          to
//! reported          check_in (a checkpoint; the plate must match)           checked_in       custody → checkpoint
//! reported          cancel (the reporter)                                   cancelled        closed
//! checked_in        accept an escort handoff (the escort)                   escort_assigned  pass, closed_loop
//! checked_in        confirm_arrival / accept a destination handoff          at_destination   pass only
//! checked_in        turn_back (the checkpoint holding it)                   turned_back      closed
//! escort_assigned   accept an escort handoff (the next escort)              escort_assigned  relay
//! escort_assigned   confirm_arrival / accept a destination handoff          at_destination   custody → destination
//! at_destination    confirm_departure (the destination)                     departed
//! at_destination    accept a township handoff (the township)                converted        closed
//! departed          accept an escort handoff (a return escort)              departed
//! departed          exit_scan (an exit checkpoint)                          exited           closed: the loop
//! any of checked_in, escort_assigned, at_destination, departed:
//!                   accept a quarantine handoff (the quarantine site)       isolated         closed
//! ```
//!
//! Proposing, rejecting and withdrawing a handoff change neither the state nor the custodian.
//!
//! Escort fallback (domain.md: "escort by the receiver (fallback: police/transport staff)"): when the
//! receiver has no escort, or its escort rejected the handoff, or did not accept it by its `accept_by`,
//! the custodian (in practice the deadline watcher on its behalf) sends the escort handoff to a fallback
//! escort unit with [`Action::EscortFallback`]: an overdue pending handoff is withdrawn and the new one is
//! proposed in the same step, marked with its [`FallbackReason`]. Like any proposal it moves neither the
//! state nor custody, and it is refused while the escort handoff is still in time (`fallback_not_due`).
//!
//! Custody ("exactly one custodian unit at every moment"):
//!
//! * the reporter (cargo owner / receiver) holds a pre-reported trip until a checkpoint checks it in;
//! * the check-in checkpoint then holds it until a handoff is accepted: to an escort (`escort`), to the
//!   destination (`destination`, also done by the destination's arrival scan), to a township when the crew
//!   stays (`township` → `converted`) or to a quarantine site (`quarantine` → `isolated`);
//! * after departure the destination stays answerable until an exit checkpoint scans the truck (the scan
//!   is that checkpoint's acceptance and closes the loop); a return escort may take over meanwhile.
//!
//! A handoff is proposed by the custodian and accepted (or rejected) by its receiver only; until then the
//! sender stays custodian. Each acceptance appends a [`CustodySpan`] to the chain, which is the
//! responsibility ledger: spans are contiguous, the last is the custodian's and is open until the trip
//! closes.
//!
//! Clocks. An open trip has exactly one [`Deadline`] for its next link (check-in, arrival, disposition,
//! departure, exit); a pending handoff additionally has its own `accept_by` (domain.md: "the handoff has
//! its own acceptance deadline"). Keeping the two apart means a rejected or withdrawn handoff leaves the
//! trip's deadline exactly as it was, and an escort handoff at the checkpoint does not hide the arrival
//! clock. [`Trip::next_due`] gives the earlier of the two; [`Trip::due_breaches`] reports every one passed.
//!
//! Design choices beyond the brief, with reasons:
//!
//! * The acting unit is the `actor` argument; no action repeats it in a field (`by`, `checkpoint`), so
//!   the two can never disagree.
//! * `AssignEscort`, `Convert` and `Isolate` are handoffs with a purpose (constructors
//!   [`Action::assign_escort`], [`Action::convert`], [`Action::isolate`]): each needs its receiver's
//!   acceptance, and one code path gives them the same checks. Accepting a `township` handoff closes the
//!   trip as `converted`, a `quarantine` handoff as `isolated`.
//! * A physical event (arrival scan, exit scan, turn-back) **supersedes** a pending route handoff
//!   (`escort`, `destination`): the truck has moved on, refusing the fact would only leave a false breach.
//!   A pending `township` or `quarantine` handoff **blocks** them (`handoff_pending`): the crew is being
//!   handed to community management or quarantine and must not silently leave.
//! * `cancelled` is an extra closed state for a pre-report withdrawn before check-in; without it a truck
//!   that never came would stay open forever.
//! * Late acceptance is allowed: the breach has already been raised, and custody should still move.
//! * Ids of new handoffs come in the action (the store makes them), so `apply` is deterministic.
//! * Rules come in as [`TripRules`]: the [`TruckRules`] of a policy version, the version number (each
//!   deadline and handoff records the version that set it), and four parameters that `policy.rs` does not
//!   have yet (see [`TripRules`]).

use crate::alert::{AlertEnd, Settled};
use crate::error::{Error, FieldError};
use crate::ident::Plate;
use crate::policy::TruckRules;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

labelled! {
    /// The control class chosen at check-in (by the classification rules, elsewhere).
    ControlClass {
        /// Sample and go, no escort; must reach the destination by ETA + slack.
        Pass = "pass", "即采即走", "Pass";
        /// Escorted point to point, crew stays in the cab, leaves within the closed-loop limit.
        ClosedLoop = "closed_loop", "闭环管控", "Closed loop";
        /// Crew to central quarantine, or turned back where the policy allows.
        Isolate = "isolate", "隔离管控", "Isolate";
    }
}

labelled! {
    TripState {
        Reported = "reported", "已报备", "Reported";
        CheckedIn = "checked_in", "已落地", "Checked in";
        EscortAssigned = "escort_assigned", "接返中", "Escorted";
        AtDestination = "at_destination", "已到达", "At destination";
        Departed = "departed", "已离开", "Departed";
        /// Seen at an exit checkpoint: the loop is closed.
        Exited = "exited", "已驶离(闭环)", "Exited (loop closed)";
        /// Crew handed to the township as community management.
        Converted = "converted", "已转社区管理", "Converted to community management";
        Isolated = "isolated", "已集中隔离", "Isolated";
        TurnedBack = "turned_back", "已劝返", "Turned back";
        /// A pre-report withdrawn before the truck was checked in.
        Cancelled = "cancelled", "已撤销报备", "Cancelled";
    }
}

impl TripState {
    pub fn is_closed(self) -> bool {
        matches!(self, TripState::Exited | TripState::Converted | TripState::Isolated | TripState::TurnedBack | TripState::Cancelled)
    }
}

labelled! {
    /// What a deadline is waiting for.
    DeadlineKind {
        /// A reported truck to be checked in: expected time + arrival slack.
        CheckIn = "check_in", "落地报到", "Check-in";
        /// Arrival at the destination: ETA + arrival slack.
        Arrival = "arrival", "到达目的地", "Arrival";
        /// An `isolate` crew to be handed to quarantine or turned back.
        Disposition = "disposition", "隔离或劝返处置", "Disposition";
        /// Departure from the destination: arrival + stay limit (overstay after it).
        Departure = "departure", "离开目的地", "Departure";
        /// An exit checkpoint scan after departure.
        Exit = "exit", "出口卡口核销", "Exit scan";
        /// Acceptance of a pending handoff (only ever from [`Trip::next_due`] / [`Trip::deadlines`]).
        HandoffAcceptance = "handoff_acceptance", "交接确认", "Handoff acceptance";
    }
}

labelled! {
    /// A broken link, found by [`Trip::due_breaches`].
    BreachKind {
        /// Not in the brief's list: a pre-reported truck that did not check in.
        NotCheckedIn = "not_checked_in", "报备车辆未按时落地", "Reported truck not checked in";
        NoArrival = "no_arrival", "未按时到达目的地", "No arrival by ETA + slack";
        /// Not in the brief's list: an `isolate` crew neither handed to quarantine nor turned back in time.
        NotDisposed = "not_disposed", "隔离类车辆未按时处置", "Isolate crew not disposed of in time";
        HandoffNotAccepted = "handoff_not_accepted", "交接未按时确认", "Handoff not accepted in time";
        Overstay = "overstay", "超时滞留", "Overstay past the limit";
        NoExit = "no_exit", "离开后未在出口卡口核销", "Departed but not seen at an exit";
        /// Raised at once when a checkpoint sees another plate than the pre-report's (not a deadline).
        PlateMismatch = "plate_mismatch", "车牌与报备不符", "Plate does not match the pre-report";
        /// Raised at once when the crew checked in is not the crew pre-reported (not a deadline).
        IdentityMismatch = "identity_mismatch", "司乘人员与报备不符", "Crew does not match the pre-report";
        /// Raised by the testing module when a trip's landing tube is positive (an emergency).
        PositiveLanding = "positive_landing", "落地核酸阳性(紧急)", "Positive landing test (emergency)";
    }
}

labelled! {
    /// The parties the responsibility ledger holds answerable for a trip (货主、园区、属地、司机),
    /// each of which confirms its duty, so that a breach can be traced to who had not.
    LedgerParty {
        CargoOwner = "cargo_owner", "货主企业", "Cargo owner";
        LogisticsPark = "logistics_park", "物流园区", "Logistics park";
        Township = "township", "属地乡镇(街道)", "Township (locality)";
        Driver = "driver", "司机", "Driver";
    }
}

impl LedgerParty {
    /// What the party confirms it answers for (the Huguan meeting's four duties).
    pub fn duty(self, zh: bool) -> &'static str {
        let (z, e) = match self {
            LedgerParty::CargoOwner => (
                "车辆在本企业期间落实闭环管理，按时确认到达和离开",
                "keeps the truck in the loop on its premises; confirms arrival and departure on time",
            ),
            LedgerParty::LogisticsPark => {
                ("园区内停靠、装卸全程管控，不与他人接触", "controls parking, loading and unloading in the park; no contact with others")
            }
            LedgerParty::Township => {
                ("属地知晓并落实超时滞留人员的社区管理", "knows of the truck and takes an overstaying crew into community management")
            }
            LedgerParty::Driver => (
                "点对点行驶，全程不下车，按时离开并接受出口核销",
                "drives point to point, stays in the cab, leaves on time and is scanned at the exit",
            ),
        };
        if zh { z } else { e }
    }
}

/// The parties that had not confirmed by `at` (a confirmation after it does not count): who
/// had failed when a breach was raised. Parties that do not apply to the trip are left out.
pub fn unconfirmed_at(parties: &[(LedgerParty, Option<DateTime<Utc>>)], at: DateTime<Utc>) -> Vec<LedgerParty> {
    parties.iter().filter(|(_, confirmed)| confirmed.is_none_or(|c| c > at)).map(|(p, _)| *p).collect()
}

labelled! {
    /// Why custody is handed over; decides where the handoff is allowed and what accepting it does.
    HandoffPurpose {
        /// To an escort (or the receiver escorting itself): at the checkpoint, between escorts, or for the way out.
        Escort = "escort", "接返护送", "Escort";
        /// To the destination unit on arrival; accepting it is the arrival.
        Destination = "destination", "目的地接收", "Destination";
        /// To the township when the crew stays (overstay or by choice); accepting closes the trip as `converted`.
        Township = "township", "转属地社区管理", "Township (community management)";
        /// To a central quarantine site; accepting closes the trip as `isolated`.
        Quarantine = "quarantine", "转集中隔离", "Quarantine";
    }
}

labelled! {
    /// Why an escort handoff went to a fallback escort unit (police or transport staff).
    FallbackReason {
        NoReceiverEscort = "no_receiver_escort", "接收单位无接返人员", "The receiver has no escort";
        Rejected = "rejected", "接返交接被拒收", "The escort handoff was rejected";
        NotAccepted = "not_accepted", "接返交接未按时确认", "The escort handoff was not accepted in time";
    }
}

impl HandoffPurpose {
    /// Route handoffs follow the truck; an arrival or exit scan supersedes them.
    pub fn is_route(self) -> bool {
        matches!(self, HandoffPurpose::Escort | HandoffPurpose::Destination)
    }
}

labelled! {
    HandoffOutcome {
        Accepted = "accepted", "已接收", "Accepted";
        Rejected = "rejected", "已拒收", "Rejected";
        Withdrawn = "withdrawn", "已撤回", "Withdrawn";
        /// The truck moved on (arrival, exit or turn-back) before the handoff was accepted.
        Superseded = "superseded", "已失效", "Superseded";
    }
}

impl DeadlineKind {
    pub fn breach(self) -> BreachKind {
        match self {
            DeadlineKind::CheckIn => BreachKind::NotCheckedIn,
            DeadlineKind::Arrival => BreachKind::NoArrival,
            DeadlineKind::Disposition => BreachKind::NotDisposed,
            DeadlineKind::Departure => BreachKind::Overstay,
            DeadlineKind::Exit => BreachKind::NoExit,
            DeadlineKind::HandoffAcceptance => BreachKind::HandoffNotAccepted,
        }
    }
}

/// The rules a transition reads: a policy version's truck rules, with the four the trip uses
/// most copied out (tests may set them directly).
#[derive(Debug, Clone, Copy)]
pub struct TripRules<'a> {
    /// The policy version these rules come from; recorded on every deadline and handoff.
    pub version: i64,
    pub truck: &'a TruckRules,
    /// `truck.exit_window_minutes`: from departure to the exit checkpoint scan. Default 120 min:
    /// a county is crossed in well under two hours, so later means the truck went somewhere else.
    pub exit_window_minutes: u32,
    /// `truck.isolate_disposition_minutes`: for an `isolate` crew to be accepted by a quarantine
    /// site or turned back after check-in. Default 120 min (arranging a transfer vehicle and a room).
    pub isolate_disposition_minutes: u32,
    /// `truck.pass_stay_limit_hours`: how long a `pass` crew may stay at the destination before it
    /// is an overstay (the 6 h closed-loop limit is for `closed_loop` only). Default 48 h, the default
    /// test-certificate validity: past it the crew needs a new test or community management.
    pub pass_stay_limit_hours: u32,
    /// `truck.turn_back_allowed`: domain.md says `isolate` trucks may be turned back "where the
    /// policy allows". Default true.
    pub turn_back_allowed: bool,
}

impl<'a> TripRules<'a> {
    pub fn new(version: i64, truck: &'a TruckRules) -> Self {
        Self {
            version,
            truck,
            exit_window_minutes: truck.exit_window_minutes,
            isolate_disposition_minutes: truck.isolate_disposition_minutes,
            pass_stay_limit_hours: truck.pass_stay_limit_hours,
            turn_back_allowed: truck.turn_back_allowed,
        }
    }

    /// Out-of-range new parameters, named as they would be in the policy (`truck.…`).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut range = |field: &str, v: u32, lo: u32, hi: u32| {
            if v < lo || v > hi {
                errs.push(FieldError::new(field, "out_of_range", format!("取值应在 {lo} 到 {hi} 之间"), format!("must be between {lo} and {hi}")));
            }
        };
        range("truck.exit_window_minutes", self.exit_window_minutes, 10, 24 * 60);
        range("truck.isolate_disposition_minutes", self.isolate_disposition_minutes, 10, 24 * 60);
        range("truck.pass_stay_limit_hours", self.pass_stay_limit_hours, 1, 168);
        errs
    }

    fn deadline(&self, kind: DeadlineKind, at: DateTime<Utc>) -> Deadline {
        Deadline { at, kind, policy_version: self.version }
    }

    fn stay_limit_hours(&self, class: ControlClass) -> u32 {
        match class {
            ControlClass::ClosedLoop | ControlClass::Isolate => self.truck.closed_loop_limit_hours,
            ControlClass::Pass => self.pass_stay_limit_hours,
        }
    }
}

/// `t` plus whole minutes, saturating instead of panicking at the end of chrono's range.
fn plus_minutes(t: DateTime<Utc>, minutes: u32) -> DateTime<Utc> {
    t.checked_add_signed(Duration::minutes(i64::from(minutes))).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadline {
    pub at: DateTime<Utc>,
    pub kind: DeadlineKind,
    /// The policy version whose rules set this deadline.
    pub policy_version: i64,
}

/// A proposed transfer of custody; the sender stays custodian until the receiver accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    pub id: Uuid,
    pub from: Uuid,
    pub to: Uuid,
    pub purpose: HandoffPurpose,
    pub proposed_at: DateTime<Utc>,
    /// The handoff's own acceptance deadline: proposal + `handoff_accept_minutes`.
    pub accept_by: DateTime<Utc>,
    pub policy_version: i64,
    /// Set when this is an escort handoff to a fallback escort unit, with why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackReason>,
}

/// A handoff that is no longer pending, with how and when it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffRecord {
    pub handoff: Handoff,
    pub outcome: HandoffOutcome,
    pub at: DateTime<Utc>,
    /// The unit whose action ended it.
    pub by: Uuid,
    pub reason: Option<String>,
}

/// One unit's stretch of custody. `to` is `None` while it holds the trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodySpan {
    pub unit: Uuid,
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
    /// The accepted handoff that began this span; `None` for the first span and for scans that take
    /// custody directly (check-in, arrival scan, exit scan).
    pub via: Option<Uuid>,
}

/// How a closed trip ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closure {
    pub at: DateTime<Utc>,
    /// The unit whose action closed it (exit checkpoint, township, quarantine site, …).
    pub by: Uuid,
    pub reason: Option<String>,
}

/// What a checkpoint records when it checks a truck in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckIn {
    pub plate: Plate,
    pub trailer: Option<Plate>,
    pub class: ControlClass,
    /// The receiving unit (cargo owner, logistics park…).
    pub destination: Uuid,
    /// Expected arrival at the destination.
    pub eta: DateTime<Utc>,
}

/// What a cargo owner or receiver pre-reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub plate: Plate,
    pub trailer: Option<Plate>,
    pub destination: Uuid,
    /// When the truck is expected at a checkpoint.
    pub expected_at: DateTime<Utc>,
}

/// Something a unit does to a trip. The acting unit is `apply`'s `actor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// A checkpoint checks in a reported truck (walk-ins start with [`Trip::walk_in`]).
    CheckIn(CheckIn),
    /// The custodian proposes to hand the trip to `to`. `id` is made by the caller.
    ProposeHandoff {
        id: Uuid,
        to: Uuid,
        purpose: HandoffPurpose,
    },
    /// The receiver accepts (tap accept: `handoff` = the id shown; scan the trip code: `None` = whatever
    /// is pending for the actor).
    AcceptHandoff {
        handoff: Option<Uuid>,
    },
    RejectHandoff {
        handoff: Option<Uuid>,
        reason: String,
    },
    /// The sender takes a pending handoff back (wrong receiver, receiver unreachable).
    WithdrawHandoff {
        handoff: Option<Uuid>,
    },
    /// The custodian sends the escort to a fallback escort unit `to` (police or transport staff) because
    /// of `reason`: a pending escort handoff past its `accept_by` is withdrawn, and the escort handoff `id`
    /// is proposed. `id` is made by the caller.
    EscortFallback {
        id: Uuid,
        to: Uuid,
        reason: FallbackReason,
    },
    /// The destination scans the trip on arrival; takes custody (accepting a pending `destination` handoff).
    ConfirmArrival,
    ConfirmDeparture,
    /// An exit checkpoint scans the departing truck: the loop is closed.
    ExitScan,
    /// The checkpoint holding a just-checked-in truck sends it back.
    TurnBack {
        reason: String,
    },
    /// The reporter withdraws a pre-report before check-in.
    Cancel {
        reason: String,
    },
}

impl Action {
    pub fn assign_escort(id: Uuid, escort: Uuid) -> Self {
        Action::ProposeHandoff { id, to: escort, purpose: HandoffPurpose::Escort }
    }

    /// The crew stays (or overstayed): hand it to the township as community management.
    pub fn convert(id: Uuid, township: Uuid) -> Self {
        Action::ProposeHandoff { id, to: township, purpose: HandoffPurpose::Township }
    }

    /// Hand the crew to a central quarantine site.
    pub fn isolate(id: Uuid, site: Uuid) -> Self {
        Action::ProposeHandoff { id, to: site, purpose: HandoffPurpose::Quarantine }
    }

    /// A stable name for audit records.
    pub fn name(&self) -> &'static str {
        match self {
            Action::CheckIn(_) => "check_in",
            Action::ProposeHandoff { .. } => "propose_handoff",
            Action::AcceptHandoff { .. } => "accept_handoff",
            Action::RejectHandoff { .. } => "reject_handoff",
            Action::WithdrawHandoff { .. } => "withdraw_handoff",
            Action::EscortFallback { .. } => "escort_fallback",
            Action::ConfirmArrival => "confirm_arrival",
            Action::ConfirmDeparture => "confirm_departure",
            Action::ExitScan => "exit_scan",
            Action::TurnBack { .. } => "turn_back",
            Action::Cancel { .. } => "cancel",
        }
    }
}

macro_rules! transition_errors {
    ($($v:ident = $code:literal, $zh:literal, $en:literal;)*) => {
        /// Why a transition was refused. Nothing changed. Codes are part of the API contract.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum TransitionError { $($v),* }

        impl TransitionError {
            pub const ALL: &[TransitionError] = &[$(TransitionError::$v),*];
            pub fn code(self) -> &'static str { match self { $(TransitionError::$v => $code),* } }
            pub fn zh(self) -> &'static str { match self { $(TransitionError::$v => $zh),* } }
            pub fn en(self) -> &'static str { match self { $(TransitionError::$v => $en),* } }
        }
    };
}

transition_errors! {
    TripClosed = "trip_closed", "该行程已结束(闭环、转社区、隔离、劝返或撤销)，不能再操作", "the trip is closed (exited, converted, isolated, turned back or cancelled); nothing more can be done";
    ClockBeforeLastEvent = "clock_before_last_event", "操作时间早于该行程的上一条记录，请检查系统时间后重试", "the action's time is before the trip's last record; check the clock and retry";
    NotCheckedIn = "not_checked_in", "车辆尚未在卡口落地报到", "the truck has not been checked in at a checkpoint yet";
    AlreadyCheckedIn = "already_checked_in", "车辆已落地报到，不能重复报到或撤销报备", "the truck is already checked in; it cannot be checked in again or its report cancelled";
    PlateMismatch = "plate_mismatch", "车牌与报备信息不符", "the plate does not match the pre-report";
    EtaInPast = "eta_in_past", "预计到达时间早于当前时间", "the expected time is in the past";
    NotCustodian = "not_custodian", "只有当前责任单位可以执行此操作", "only the current custodian unit may do this";
    NotDestination = "not_destination", "只有目的地单位可以确认到达或离开", "only the destination unit may confirm arrival or departure";
    WrongClass = "wrong_class", "该管控类别不允许此操作(隔离类车辆只能转集中隔离或劝返)", "this control class does not allow it (an isolate crew goes to quarantine or is turned back)";
    EscortRequired = "escort_required", "闭环管控车辆须先由接返人员(可为接收单位)接收护送", "a closed-loop truck must first be accepted by an escort (the receiver may escort)";
    AlreadyArrived = "already_arrived", "车辆已确认到达", "the truck's arrival is already confirmed";
    DepartureBeforeArrival = "departure_before_arrival", "尚未确认到达，不能确认离开", "departure cannot be confirmed before arrival";
    AlreadyDeparted = "already_departed", "车辆已确认离开", "the truck's departure is already confirmed";
    ExitBeforeArrival = "exit_before_arrival", "车辆尚未到达目的地，不能出口核销", "the truck has not reached its destination; it cannot exit yet";
    ExitBeforeDeparture = "exit_before_departure", "目的地尚未确认离开，不能出口核销", "the destination has not confirmed departure; it cannot exit yet";
    HandoffPending = "handoff_pending", "有待确认的交接(转社区或转隔离)，请先完成或撤回", "a handoff is pending; let it be accepted or withdraw it first";
    HandoffNotAllowed = "handoff_not_allowed", "当前环节不允许此类交接", "this kind of handoff is not allowed at this stage of the trip";
    HandoffToSelf = "handoff_to_self", "不能交接给本单位", "a unit cannot hand a trip to itself";
    WrongDestination = "wrong_destination", "只能交接给该行程的目的地单位", "a destination handoff must go to the trip's destination unit";
    HandoffIdReused = "handoff_id_reused", "交接编号已被使用", "this handoff id is already used";
    NoPendingHandoff = "no_pending_handoff", "没有待确认的交接", "there is no pending handoff";
    UnknownHandoff = "unknown_handoff", "该交接不属于此行程或已被替换，请刷新", "this handoff is not on this trip or has been replaced; refresh";
    HandoffNotForYou = "handoff_not_for_you", "该交接的接收方不是本单位", "this handoff is meant for another unit";
    HandoffAlreadyAccepted = "handoff_already_accepted", "该交接已被接收，不能重复确认", "this handoff is already accepted";
    HandoffNotPending = "handoff_not_pending", "该交接已被拒收、撤回或失效", "this handoff was rejected, withdrawn or superseded";
    TurnBackNotAllowed = "turn_back_not_allowed", "现行政策不允许劝返", "the policy in force does not allow turning trucks back";
    TurnBackTooLate = "turn_back_too_late", "车辆已离开卡口，不能劝返", "the truck has left the checkpoint; it can no longer be turned back";
    ReasonRequired = "reason_required", "请填写原因", "a reason is required";
    FallbackNotDue = "fallback_not_due", "接返交接未被拒收且仍在确认时限内，不能改派兜底接返", "the escort handoff is neither rejected nor overdue; no fallback escort is due";
}

impl fmt::Display for TransitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.en())
    }
}

impl std::error::Error for TransitionError {}

impl From<TransitionError> for Error {
    /// Bad input becomes a field error (422-style); every other refusal is a conflict with the
    /// trip's current state (409-style) carrying the transition's own code.
    fn from(e: TransitionError) -> Self {
        let field = match e {
            TransitionError::ReasonRequired => Some("reason"),
            TransitionError::EtaInPast => Some("eta"),
            TransitionError::PlateMismatch => Some("plate"),
            _ => None,
        };
        match field {
            Some(f) => Error::field(f, e.code(), e.zh(), e.en()),
            None => Error::conflict(e.code(), e.zh(), e.en()),
        }
    }
}

/// A passed deadline: what broke, when it was due, who is answerable now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breach {
    pub kind: BreachKind,
    pub due_at: DateTime<Utc>,
    /// The custodian, who is alerted first.
    pub custodian: Uuid,
    /// For a handoff breach: the handoff and the receiver who has not accepted it.
    pub handoff: Option<Uuid>,
    pub receiver: Option<Uuid>,
    pub policy_version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trip {
    pub id: Uuid,
    pub plate: Plate,
    pub trailer: Option<Plate>,
    pub state: TripState,
    /// Chosen at check-in; `None` while only reported (or cancelled before check-in).
    pub class: Option<ControlClass>,
    pub destination: Uuid,
    /// The unit that pre-reported it, if any.
    pub reporter: Option<Uuid>,
    /// Pre-reported time at a checkpoint.
    pub expected_at: Option<DateTime<Utc>>,
    pub entry_checkpoint: Option<Uuid>,
    /// Expected arrival at the destination, set at check-in.
    pub eta: Option<DateTime<Utc>>,
    /// The one unit answerable now.
    pub custodian: Uuid,
    pub pending: Option<Handoff>,
    /// Handoffs that are no longer pending, oldest first.
    pub handoffs: Vec<HandoffRecord>,
    /// The deadline of the next link; `Some` exactly while the trip is open.
    pub deadline: Option<Deadline>,
    pub chain: Vec<CustodySpan>,
    /// The policy version in force when the trip was reported, or when it was classified at check-in.
    pub policy_version: i64,
    pub created_at: DateTime<Utc>,
    pub checked_in_at: Option<DateTime<Utc>>,
    pub arrived_at: Option<DateTime<Utc>>,
    pub departed_at: Option<DateTime<Utc>>,
    pub closed: Option<Closure>,
    /// The time of the latest action; an action may not be earlier.
    pub last_event_at: DateTime<Utc>,
}

type Step = Result<(), TransitionError>;

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

impl Trip {
    fn start(id: Uuid, plate: Plate, trailer: Option<Plate>, destination: Uuid, holder: Uuid, now: DateTime<Utc>, version: i64) -> Self {
        Trip {
            id,
            plate,
            trailer,
            state: TripState::Reported,
            class: None,
            destination,
            reporter: None,
            expected_at: None,
            entry_checkpoint: None,
            eta: None,
            custodian: holder,
            pending: None,
            handoffs: Vec::new(),
            deadline: None,
            chain: vec![CustodySpan { unit: holder, from: now, to: None, via: None }],
            policy_version: version,
            created_at: now,
            checked_in_at: None,
            arrived_at: None,
            departed_at: None,
            closed: None,
            last_event_at: now,
        }
    }

    /// A pre-report by `reporter`, who holds the trip until a checkpoint checks it in.
    pub fn report(id: Uuid, reporter: Uuid, report: Report, now: DateTime<Utc>, rules: &TripRules<'_>) -> Result<Trip, TransitionError> {
        if report.expected_at < now {
            return Err(TransitionError::EtaInPast);
        }
        let mut t = Trip::start(id, report.plate, report.trailer, report.destination, reporter, now, rules.version);
        t.reporter = Some(reporter);
        t.expected_at = Some(report.expected_at);
        t.deadline = Some(rules.deadline(DeadlineKind::CheckIn, plus_minutes(report.expected_at, rules.truck.arrival_slack_minutes)));
        Ok(t)
    }

    /// A truck checked in at `checkpoint` without a pre-report.
    pub fn walk_in(id: Uuid, checkpoint: Uuid, check_in: CheckIn, now: DateTime<Utc>, rules: &TripRules<'_>) -> Result<Trip, TransitionError> {
        if check_in.eta < now {
            return Err(TransitionError::EtaInPast);
        }
        let mut t = Trip::start(id, check_in.plate.clone(), None, check_in.destination, checkpoint, now, rules.version);
        t.enter_checked_in(&check_in, checkpoint, now, rules);
        Ok(t)
    }

    pub fn is_closed(&self) -> bool {
        self.state.is_closed()
    }

    /// The trip after `actor` does `action` at `now`, or why it cannot. `self` is never changed.
    pub fn apply(&self, action: &Action, actor: Uuid, now: DateTime<Utc>, rules: &TripRules<'_>) -> Result<Trip, TransitionError> {
        if self.is_closed() {
            return Err(TransitionError::TripClosed);
        }
        if now < self.last_event_at {
            return Err(TransitionError::ClockBeforeLastEvent);
        }
        // Work on a copy: any error drops it, so a refused action changes nothing.
        let mut t = self.clone();
        t.last_event_at = now;
        match action {
            Action::CheckIn(c) => t.check_in(c, actor, now, rules)?,
            Action::ProposeHandoff { id, to, purpose } => t.propose(*id, *to, *purpose, actor, now, rules)?,
            Action::AcceptHandoff { handoff } => {
                let h = t.pending_for(*handoff, actor)?;
                if h.to != actor {
                    return Err(TransitionError::HandoffNotForYou);
                }
                t.accept(h, actor, now, rules);
            }
            Action::RejectHandoff { handoff, reason } => {
                let h = t.pending_for(*handoff, actor)?;
                if h.to != actor {
                    return Err(TransitionError::HandoffNotForYou);
                }
                if blank(reason) {
                    return Err(TransitionError::ReasonRequired);
                }
                t.end_pending(HandoffOutcome::Rejected, actor, now, Some(reason.trim().to_string()));
            }
            Action::WithdrawHandoff { handoff } => {
                let h = t.pending_for(*handoff, actor)?;
                if h.from != actor {
                    return Err(TransitionError::NotCustodian);
                }
                t.end_pending(HandoffOutcome::Withdrawn, actor, now, None);
            }
            Action::EscortFallback { id, to, reason } => t.fallback(*id, *to, *reason, actor, now, rules)?,
            Action::ConfirmArrival => t.confirm_arrival(actor, now, rules)?,
            Action::ConfirmDeparture => t.confirm_departure(actor, now, rules)?,
            Action::ExitScan => t.exit_scan(actor, now)?,
            Action::TurnBack { reason } => t.turn_back(reason, actor, now, rules)?,
            Action::Cancel { reason } => t.cancel(reason, actor, now)?,
        }
        Ok(t)
    }

    fn check_in(&mut self, c: &CheckIn, actor: Uuid, now: DateTime<Utc>, rules: &TripRules<'_>) -> Step {
        if self.state != TripState::Reported {
            return Err(TransitionError::AlreadyCheckedIn);
        }
        if c.plate != self.plate {
            return Err(TransitionError::PlateMismatch);
        }
        if c.eta < now {
            return Err(TransitionError::EtaInPast);
        }
        // The checkpoint's scan is its acceptance: custody passes from the reporter directly.
        self.pass_custody(actor, now, None);
        self.enter_checked_in(c, actor, now, rules);
        Ok(())
    }

    fn enter_checked_in(&mut self, c: &CheckIn, checkpoint: Uuid, now: DateTime<Utc>, rules: &TripRules<'_>) {
        self.state = TripState::CheckedIn;
        self.class = Some(c.class);
        self.destination = c.destination;
        self.eta = Some(c.eta);
        if c.trailer.is_some() {
            self.trailer = c.trailer.clone();
        }
        self.entry_checkpoint = Some(checkpoint);
        self.checked_in_at = Some(now);
        self.policy_version = rules.version;
        self.deadline = Some(match c.class {
            ControlClass::Isolate => rules.deadline(DeadlineKind::Disposition, plus_minutes(now, rules.isolate_disposition_minutes)),
            ControlClass::Pass | ControlClass::ClosedLoop => {
                rules.deadline(DeadlineKind::Arrival, plus_minutes(c.eta, rules.truck.arrival_slack_minutes))
            }
        });
    }

    fn checked_in_class(&self) -> Result<ControlClass, TransitionError> {
        match (self.state, self.class) {
            (TripState::Reported, _) | (_, None) => Err(TransitionError::NotCheckedIn),
            (_, Some(c)) => Ok(c),
        }
    }

    fn propose(&mut self, id: Uuid, to: Uuid, purpose: HandoffPurpose, actor: Uuid, now: DateTime<Utc>, rules: &TripRules<'_>) -> Step {
        use HandoffPurpose as P;
        use TripState as S;
        let class = self.checked_in_class()?;
        if actor != self.custodian {
            return Err(TransitionError::NotCustodian);
        }
        if self.pending.is_some() {
            return Err(TransitionError::HandoffPending);
        }
        if to == self.custodian {
            return Err(TransitionError::HandoffToSelf);
        }
        match (purpose, self.state) {
            (P::Escort, S::CheckedIn | S::EscortAssigned | S::Departed) | (P::Destination, S::CheckedIn) if class == ControlClass::Isolate => {
                return Err(TransitionError::WrongClass);
            }
            (P::Destination, S::CheckedIn) if class == ControlClass::ClosedLoop => return Err(TransitionError::EscortRequired),
            (P::Escort, S::CheckedIn | S::EscortAssigned | S::Departed)
            | (P::Destination, S::CheckedIn | S::EscortAssigned)
            | (P::Township, S::AtDestination)
            | (P::Quarantine, S::CheckedIn | S::EscortAssigned | S::AtDestination | S::Departed) => {}
            _ => return Err(TransitionError::HandoffNotAllowed),
        }
        if purpose == P::Destination && to != self.destination {
            return Err(TransitionError::WrongDestination);
        }
        if self.handoffs.iter().any(|r| r.handoff.id == id) {
            return Err(TransitionError::HandoffIdReused);
        }
        self.pending = Some(Handoff {
            id,
            from: actor,
            to,
            purpose,
            proposed_at: now,
            accept_by: plus_minutes(now, rules.truck.handoff_accept_minutes),
            policy_version: rules.version,
            fallback: None,
        });
        Ok(())
    }

    /// Withdraw an overdue escort handoff (if that is the cause) and propose the escort to `to` instead.
    fn fallback(&mut self, id: Uuid, to: Uuid, reason: FallbackReason, actor: Uuid, now: DateTime<Utc>, rules: &TripRules<'_>) -> Step {
        self.checked_in_class()?;
        if actor != self.custodian {
            return Err(TransitionError::NotCustodian);
        }
        let last_rejected =
            self.handoffs.last().is_some_and(|r| r.outcome == HandoffOutcome::Rejected && r.handoff.purpose == HandoffPurpose::Escort);
        match (reason, &self.pending) {
            (_, Some(p)) if p.purpose != HandoffPurpose::Escort => return Err(TransitionError::HandoffPending),
            (FallbackReason::NotAccepted, None) => return Err(TransitionError::NoPendingHandoff),
            (FallbackReason::NotAccepted, Some(p)) if now <= p.accept_by => return Err(TransitionError::FallbackNotDue),
            (FallbackReason::NotAccepted, Some(_)) => self.end_pending(HandoffOutcome::Withdrawn, actor, now, Some(reason.as_str().into())),
            (_, Some(_)) => return Err(TransitionError::HandoffPending),
            (FallbackReason::Rejected, None) if !last_rejected => return Err(TransitionError::FallbackNotDue),
            (FallbackReason::Rejected | FallbackReason::NoReceiverEscort, None) => {}
        }
        self.propose(id, to, HandoffPurpose::Escort, actor, now, rules)?;
        if let Some(p) = self.pending.as_mut() {
            p.fallback = Some(reason);
        }
        Ok(())
    }

    /// The pending handoff an accept/reject/withdraw refers to, or why there is none.
    fn pending_for(&self, id: Option<Uuid>, actor: Uuid) -> Result<Handoff, TransitionError> {
        let accepted = |r: &HandoffRecord| r.outcome == HandoffOutcome::Accepted;
        match (id, &self.pending) {
            (None, Some(p)) => Ok(p.clone()),
            (Some(id), Some(p)) if p.id == id => Ok(p.clone()),
            (Some(id), _) => match self.handoffs.iter().find(|r| r.handoff.id == id) {
                Some(r) if accepted(r) => Err(TransitionError::HandoffAlreadyAccepted),
                Some(_) => Err(TransitionError::HandoffNotPending),
                None => Err(TransitionError::UnknownHandoff),
            },
            // A second scan by the unit that just accepted (or a late withdrawal by its sender): say so.
            (None, None) => match self.handoffs.last() {
                Some(r) if accepted(r) && (r.handoff.to == actor || r.handoff.from == actor) => Err(TransitionError::HandoffAlreadyAccepted),
                _ => Err(TransitionError::NoPendingHandoff),
            },
        }
    }

    fn end_pending(&mut self, outcome: HandoffOutcome, by: Uuid, now: DateTime<Utc>, reason: Option<String>) {
        if let Some(h) = self.pending.take() {
            self.handoffs.push(HandoffRecord { handoff: h, outcome, at: now, by, reason });
        }
    }

    fn accept(&mut self, h: Handoff, actor: Uuid, now: DateTime<Utc>, rules: &TripRules<'_>) {
        self.end_pending(HandoffOutcome::Accepted, actor, now, None);
        self.pass_custody(h.to, now, Some(h.id));
        match h.purpose {
            HandoffPurpose::Escort => {
                if self.state == TripState::CheckedIn {
                    self.state = TripState::EscortAssigned;
                }
            }
            HandoffPurpose::Destination => self.arrive(now, rules),
            HandoffPurpose::Township => self.close(TripState::Converted, actor, now, None),
            HandoffPurpose::Quarantine => self.close(TripState::Isolated, actor, now, None),
        }
    }

    /// A physical event happened: a pending route handoff is superseded, any other blocks it.
    fn supersede_route_handoff(&mut self, actor: Uuid, now: DateTime<Utc>) -> Step {
        match &self.pending {
            Some(p) if !p.purpose.is_route() => Err(TransitionError::HandoffPending),
            Some(_) => {
                self.end_pending(HandoffOutcome::Superseded, actor, now, None);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn confirm_arrival(&mut self, actor: Uuid, now: DateTime<Utc>, rules: &TripRules<'_>) -> Step {
        let class = self.checked_in_class()?;
        match self.state {
            TripState::CheckedIn if class == ControlClass::Isolate => return Err(TransitionError::WrongClass),
            TripState::CheckedIn if class == ControlClass::ClosedLoop => return Err(TransitionError::EscortRequired),
            TripState::CheckedIn | TripState::EscortAssigned => {}
            _ => return Err(TransitionError::AlreadyArrived),
        }
        if actor != self.destination {
            return Err(TransitionError::NotDestination);
        }
        if let Some(p) = self.pending.clone().filter(|p| p.purpose == HandoffPurpose::Destination && p.to == actor) {
            // The scan is the receiver's acceptance of the handoff meant for it.
            self.accept(p, actor, now, rules);
            return Ok(());
        }
        self.supersede_route_handoff(actor, now)?;
        self.pass_custody(actor, now, None);
        self.arrive(now, rules);
        Ok(())
    }

    fn arrive(&mut self, now: DateTime<Utc>, rules: &TripRules<'_>) {
        self.state = TripState::AtDestination;
        self.arrived_at = Some(now);
        let hours = rules.stay_limit_hours(self.class.unwrap_or(ControlClass::ClosedLoop));
        self.deadline = Some(rules.deadline(DeadlineKind::Departure, plus_minutes(now, hours.saturating_mul(60))));
    }

    fn confirm_departure(&mut self, actor: Uuid, now: DateTime<Utc>, rules: &TripRules<'_>) -> Step {
        self.checked_in_class()?;
        match self.state {
            TripState::CheckedIn | TripState::EscortAssigned => return Err(TransitionError::DepartureBeforeArrival),
            TripState::AtDestination => {}
            _ => return Err(TransitionError::AlreadyDeparted),
        }
        if actor != self.destination {
            return Err(TransitionError::NotDestination);
        }
        self.supersede_route_handoff(actor, now)?;
        self.state = TripState::Departed;
        self.departed_at = Some(now);
        self.deadline = Some(rules.deadline(DeadlineKind::Exit, plus_minutes(now, rules.exit_window_minutes)));
        Ok(())
    }

    fn exit_scan(&mut self, actor: Uuid, now: DateTime<Utc>) -> Step {
        self.checked_in_class()?;
        match self.state {
            TripState::CheckedIn | TripState::EscortAssigned => return Err(TransitionError::ExitBeforeArrival),
            TripState::AtDestination => return Err(TransitionError::ExitBeforeDeparture),
            _ => {}
        }
        self.supersede_route_handoff(actor, now)?;
        self.close(TripState::Exited, actor, now, None);
        Ok(())
    }

    fn turn_back(&mut self, reason: &str, actor: Uuid, now: DateTime<Utc>, rules: &TripRules<'_>) -> Step {
        self.checked_in_class()?;
        if self.state != TripState::CheckedIn {
            return Err(TransitionError::TurnBackTooLate);
        }
        if actor != self.custodian {
            return Err(TransitionError::NotCustodian);
        }
        if !rules.turn_back_allowed {
            return Err(TransitionError::TurnBackNotAllowed);
        }
        if blank(reason) {
            return Err(TransitionError::ReasonRequired);
        }
        self.supersede_route_handoff(actor, now)?;
        self.close(TripState::TurnedBack, actor, now, Some(reason.trim().to_string()));
        Ok(())
    }

    fn cancel(&mut self, reason: &str, actor: Uuid, now: DateTime<Utc>) -> Step {
        if self.state != TripState::Reported {
            return Err(TransitionError::AlreadyCheckedIn);
        }
        if actor != self.custodian {
            return Err(TransitionError::NotCustodian);
        }
        if blank(reason) {
            return Err(TransitionError::ReasonRequired);
        }
        self.close(TripState::Cancelled, actor, now, Some(reason.trim().to_string()));
        Ok(())
    }

    /// Close the current span at `at` and open one for `unit` (no-op when it already holds the trip).
    fn pass_custody(&mut self, unit: Uuid, at: DateTime<Utc>, via: Option<Uuid>) {
        if unit == self.custodian {
            return;
        }
        if let Some(last) = self.chain.last_mut() {
            last.to = Some(at);
        }
        self.chain.push(CustodySpan { unit, from: at, to: None, via });
        self.custodian = unit;
    }

    /// End the trip. The closing unit becomes the last custodian (a zero-length span when it did not
    /// hold the trip before, e.g. the exit checkpoint), and the last span ends at closing time.
    fn close(&mut self, state: TripState, by: Uuid, now: DateTime<Utc>, reason: Option<String>) {
        self.pass_custody(by, now, None);
        if let Some(last) = self.chain.last_mut() {
            last.to = Some(now);
        }
        self.state = state;
        self.deadline = None;
        self.pending = None;
        self.closed = Some(Closure { at: now, by, reason });
    }

    /// Every running clock: the trip's deadline and a pending handoff's acceptance deadline.
    pub fn deadlines(&self) -> Vec<Deadline> {
        let mut d: Vec<Deadline> = self.deadline.iter().copied().collect();
        if let Some(p) = &self.pending {
            d.push(Deadline { at: p.accept_by, kind: DeadlineKind::HandoffAcceptance, policy_version: p.policy_version });
        }
        d
    }

    /// The earliest running clock (what the deadline watcher sleeps until).
    pub fn next_due(&self) -> Option<Deadline> {
        self.deadlines().into_iter().min_by_key(|d| d.at)
    }

    /// Every deadline that has passed at `now` (a deadline met exactly on time is not a breach).
    /// The watcher identifies a breach by (trip, kind, due_at) so that raising it twice is harmless.
    pub fn due_breaches(&self, now: DateTime<Utc>) -> Vec<Breach> {
        let pending = self.pending.as_ref();
        self.deadlines()
            .into_iter()
            .filter(|d| now > d.at)
            .map(|d| {
                let handoff = if d.kind == DeadlineKind::HandoffAcceptance { pending } else { None };
                Breach {
                    kind: d.kind.breach(),
                    due_at: d.at,
                    custodian: self.custodian,
                    handoff: handoff.map(|h| h.id),
                    receiver: handoff.map(|h| h.to),
                    policy_version: d.policy_version,
                }
            })
            .collect()
    }

    /// Whether a breach of `kind` raised on this trip (about `handoff`, for a handoff breach) is
    /// settled by where the trip stands now, and how; `None` while it still stands. A closed trip
    /// settles every breach: nothing more can happen to it, so nothing is left to escalate. Only a
    /// positive landing outlives its trip unless the crew went to quarantine: it stays open for a
    /// person to act on, and stops climbing.
    pub fn settles(&self, kind: BreachKind, handoff: Option<Uuid>) -> Option<Settled> {
        if let Some(end) = self.closed_end() {
            return Some(match kind {
                BreachKind::PositiveLanding if self.state != TripState::Isolated => Settled::Stopped(end),
                _ => Settled::Closed(end),
            });
        }
        let end = match kind {
            BreachKind::NotCheckedIn => (self.state != TripState::Reported).then_some(AlertEnd::CheckedIn),
            BreachKind::NoArrival => self.arrived_at.map(|_| AlertEnd::Arrived),
            BreachKind::Overstay => self.departed_at.map(|_| AlertEnd::Departed),
            // The breach watched one handoff: once it is no longer pending, its fate is known.
            BreachKind::HandoffNotAccepted => {
                let ended = self.handoffs.iter().find(|r| Some(r.handoff.id) == handoff);
                ended.map(|r| match r.outcome {
                    HandoffOutcome::Accepted => AlertEnd::HandoffAccepted,
                    HandoffOutcome::Rejected => AlertEnd::HandoffRejected,
                    HandoffOutcome::Withdrawn => AlertEnd::HandoffWithdrawn,
                    HandoffOutcome::Superseded => AlertEnd::HandoffSuperseded,
                })
            }
            // Only closing mends these: disposal, the exit scan; facts seen and emergencies stand.
            BreachKind::NotDisposed | BreachKind::NoExit | BreachKind::PlateMismatch | BreachKind::IdentityMismatch | BreachKind::PositiveLanding => {
                None
            }
        };
        end.map(Settled::Closed)
    }

    /// How the trip ended, as an alert's reason; `None` while open.
    fn closed_end(&self) -> Option<AlertEnd> {
        match self.state {
            TripState::Exited => Some(AlertEnd::TripExited),
            TripState::Converted => Some(AlertEnd::TripConverted),
            TripState::Isolated => Some(AlertEnd::TripIsolated),
            TripState::TurnedBack => Some(AlertEnd::TripTurnedBack),
            TripState::Cancelled => Some(AlertEnd::TripCancelled),
            TripState::Reported | TripState::CheckedIn | TripState::EscortAssigned | TripState::AtDestination | TripState::Departed => None,
        }
    }

    /// The trip's invariants; `Err` names the first one broken. Every trip `apply` returns satisfies them.
    pub fn check_invariants(&self) -> Result<(), String> {
        let fail = |m: String| Err(m);
        let closed = self.is_closed();
        // The chain: non-empty, from the creation, contiguous, ordered, only the last span may be open.
        let Some(last) = self.chain.last() else { return fail("empty custody chain".into()) };
        if self.chain[0].from != self.created_at {
            return fail("chain does not start at creation".into());
        }
        for (i, pair) in self.chain.windows(2).enumerate() {
            if pair[0].to != Some(pair[1].from) {
                return fail(format!("span {i} does not end where span {} begins", i + 1));
            }
            if pair[0].unit == pair[1].unit {
                return fail(format!("spans {i} and {} are the same unit", i + 1));
            }
        }
        for (i, s) in self.chain.iter().enumerate() {
            if s.to.is_some_and(|to| to < s.from) {
                return fail(format!("span {i} ends before it begins"));
            }
        }
        // Exactly one custodian: the last span's unit.
        if last.unit != self.custodian {
            return fail("the last span is not the custodian's".into());
        }
        if last.from > self.last_event_at {
            return fail("the last span begins after the last event".into());
        }
        // Open ⇔ a deadline; closed ⇒ no pending handoff, no deadline, last span closed at closing time.
        match (&self.closed, closed) {
            (None, false) => {
                if self.deadline.is_none() {
                    return fail("an open trip without a deadline".into());
                }
                if last.to.is_some() {
                    return fail("an open trip whose last span is closed".into());
                }
            }
            (Some(c), true) => {
                if self.deadline.is_some() || self.pending.is_some() {
                    return fail("a closed trip with a deadline or a pending handoff".into());
                }
                if last.to != Some(c.at) || c.by != self.custodian || c.at != self.last_event_at {
                    return fail("a closed trip's last span does not end at closing time with the closing unit".into());
                }
            }
            _ => return fail("closure record and state disagree".into()),
        }
        // The deadline waits for the link that comes next in this state.
        let expected = match (self.state, self.class) {
            (TripState::Reported, None) => Some(DeadlineKind::CheckIn),
            (TripState::CheckedIn, Some(ControlClass::Isolate)) => Some(DeadlineKind::Disposition),
            (TripState::CheckedIn, Some(_)) | (TripState::EscortAssigned, Some(ControlClass::Pass | ControlClass::ClosedLoop)) => {
                Some(DeadlineKind::Arrival)
            }
            (TripState::AtDestination, Some(_)) => Some(DeadlineKind::Departure),
            (TripState::Departed, Some(_)) => Some(DeadlineKind::Exit),
            (TripState::Cancelled, None) => None,
            (s, Some(_)) if s.is_closed() && s != TripState::Cancelled => None,
            (s, c) => return fail(format!("state {} with class {c:?}", s.as_str())),
        };
        if self.deadline.map(|d| d.kind) != expected {
            return fail(format!("state {} has deadline {:?}", self.state.as_str(), self.deadline.map(|d| d.kind)));
        }
        // Milestones are recorded exactly when they have happened, in order.
        use TripState as S;
        let classified = !matches!(self.state, S::Reported | S::Cancelled);
        if self.class.is_some() != classified || self.checked_in_at.is_some() != classified {
            return fail("check-in time, class and state disagree".into());
        }
        // An isolated crew may have been taken from any link; every other state knows whether it arrived/departed.
        let must_arrive = matches!(self.state, S::AtDestination | S::Departed | S::Exited | S::Converted);
        if (must_arrive && self.arrived_at.is_none()) || (!must_arrive && self.state != S::Isolated && self.arrived_at.is_some()) {
            return fail("arrival time and state disagree".into());
        }
        let must_depart = matches!(self.state, S::Departed | S::Exited);
        if (must_depart && self.departed_at.is_none()) || (!must_depart && self.state != S::Isolated && self.departed_at.is_some()) {
            return fail("departure time and state disagree".into());
        }
        if self.state == S::AtDestination && self.custodian != self.destination {
            return fail("at destination, but the destination is not the custodian".into());
        }
        if self.departed_at.is_some() && self.arrived_at.is_none() {
            return fail("departed without arrival".into());
        }
        let times = [Some(self.created_at), self.checked_in_at, self.arrived_at, self.departed_at, self.closed.as_ref().map(|c| c.at)];
        let seen: Vec<DateTime<Utc>> = times.into_iter().flatten().collect();
        if seen.windows(2).any(|w| w[0] > w[1]) || seen.iter().any(|t| *t > self.last_event_at) {
            return fail("milestone times out of order".into());
        }
        // A pending handoff comes from the custodian, goes elsewhere, and has its own deadline.
        if let Some(p) = &self.pending {
            if p.from != self.custodian {
                return fail("the pending handoff's sender is not the custodian".into());
            }
            if p.to == self.custodian {
                return fail("a pending handoff to the custodian itself".into());
            }
            if p.accept_by < p.proposed_at || p.proposed_at < last.from {
                return fail("the pending handoff's times are inconsistent".into());
            }
            if self.handoffs.iter().any(|r| r.handoff.id == p.id) {
                return fail("the pending handoff's id is already in the history".into());
            }
        }
        let escort_fallback = |h: &Handoff| h.fallback.is_none() || h.purpose == HandoffPurpose::Escort;
        if !self.pending.iter().chain(self.handoffs.iter().map(|r| &r.handoff)).all(escort_fallback) {
            return fail("a fallback mark on a handoff that is not an escort handoff".into());
        }
        // History: unique ids; every accepted handoff began exactly one span, and every span's `via` is one.
        let mut ids: Vec<Uuid> = self.handoffs.iter().map(|r| r.handoff.id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return fail("a handoff id appears twice in the history".into());
        }
        for r in &self.handoffs {
            let spans = self.chain.iter().filter(|s| s.via == Some(r.handoff.id)).count();
            let ok = match r.outcome {
                HandoffOutcome::Accepted => spans == 1 && r.by == r.handoff.to,
                _ => spans == 0,
            };
            if !ok || r.at < r.handoff.proposed_at {
                return fail(format!("handoff {} ({}) does not match the chain", r.handoff.id, r.outcome.as_str()));
            }
        }
        for s in &self.chain {
            if let Some(v) = s.via
                && !self.handoffs.iter().any(|r| r.handoff.id == v && r.outcome == HandoffOutcome::Accepted && r.handoff.to == s.unit)
            {
                return fail(format!("span of {} cites handoff {v}, which it did not accept", s.unit));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::sync::LazyLock;

    static TRUCK: LazyLock<TruckRules> = LazyLock::new(TruckRules::default);

    fn rules() -> TripRules<'static> {
        TripRules::new(7, &TRUCK)
    }

    fn u(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    const REPORTER: u128 = 1;
    const CP: u128 = 2;
    const ESCORT: u128 = 3;
    const DEST: u128 = 4;
    const TOWNSHIP: u128 = 5;
    const HOTEL: u128 = 6;
    const EXIT: u128 = 7;
    const STRANGER: u128 = 8;
    const ESCORT2: u128 = 9;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2022-11-10T08:00:00+08:00").unwrap().with_timezone(&Utc)
    }

    fn at(min: i64) -> DateTime<Utc> {
        t0() + Duration::minutes(min)
    }

    fn plate() -> Plate {
        Plate::parse("plate", "晋D12345").unwrap()
    }

    fn check_in(class: ControlClass) -> CheckIn {
        CheckIn { plate: plate(), trailer: None, class, destination: u(DEST), eta: at(120) }
    }

    fn walk_in(class: ControlClass) -> Trip {
        let t = Trip::walk_in(u(100), u(CP), check_in(class), t0(), &rules()).unwrap();
        t.check_invariants().unwrap();
        t
    }

    fn reported() -> Trip {
        let r = Report { plate: plate(), trailer: None, destination: u(DEST), expected_at: at(60) };
        let t = Trip::report(u(100), u(REPORTER), r, t0(), &rules()).unwrap();
        t.check_invariants().unwrap();
        t
    }

    /// Apply and check invariants and that the original did not change.
    fn ok(t: &Trip, a: Action, actor: u128, min: i64) -> Trip {
        let before = t.clone();
        let next = t.apply(&a, u(actor), at(min), &rules()).unwrap_or_else(|e| panic!("{} refused: {e}", a.name()));
        assert_eq!(*t, before);
        next.check_invariants().unwrap_or_else(|e| panic!("after {}: {e}", a.name()));
        next
    }

    fn err(t: &Trip, a: Action, actor: u128, min: i64) -> TransitionError {
        let before = t.clone();
        let e = t.apply(&a, u(actor), at(min), &rules()).expect_err("should be refused");
        assert_eq!(*t, before);
        e
    }

    fn propose(id: u128, to: u128, purpose: HandoffPurpose) -> Action {
        Action::ProposeHandoff { id: u(id), to: u(to), purpose }
    }

    fn accept() -> Action {
        Action::AcceptHandoff { handoff: None }
    }

    fn accept_id(id: u128) -> Action {
        Action::AcceptHandoff { handoff: Some(u(id)) }
    }

    fn units(t: &Trip) -> Vec<Uuid> {
        t.chain.iter().map(|s| s.unit).collect()
    }

    /// A closed-loop trip escorted to the destination and arrived there.
    fn at_destination() -> Trip {
        let t = walk_in(ControlClass::ClosedLoop);
        let t = ok(&t, Action::assign_escort(u(500), u(ESCORT)), CP, 5);
        let t = ok(&t, accept(), ESCORT, 10);
        ok(&t, Action::ConfirmArrival, DEST, 100)
    }

    fn departed() -> Trip {
        ok(&at_destination(), Action::ConfirmDeparture, DEST, 200)
    }

    #[test]
    fn report_gives_the_reporter_custody_and_a_check_in_deadline() {
        let t = reported();
        assert_eq!(t.state, TripState::Reported);
        assert_eq!(t.custodian, u(REPORTER));
        assert_eq!(t.class, None);
        assert_eq!(t.deadline, Some(Deadline { at: at(60 + 60), kind: DeadlineKind::CheckIn, policy_version: 7 }));
        let late = Report { plate: plate(), trailer: None, destination: u(DEST), expected_at: at(-1) };
        assert_eq!(Trip::report(u(1), u(REPORTER), late, t0(), &rules()).unwrap_err(), TransitionError::EtaInPast);
    }

    #[test]
    fn check_in_moves_custody_from_reporter_to_checkpoint() {
        let t = reported();
        let mut c = check_in(ControlClass::ClosedLoop);
        c.trailer = Some(Plate::parse("t", "晋D1234挂").unwrap());
        let t = ok(&t, Action::CheckIn(c.clone()), CP, 50);
        assert_eq!(t.state, TripState::CheckedIn);
        assert_eq!(t.custodian, u(CP));
        assert_eq!(t.entry_checkpoint, Some(u(CP)));
        assert_eq!(t.trailer.as_ref().map(Plate::as_str), Some("晋D1234挂"));
        assert_eq!(units(&t), [u(REPORTER), u(CP)]);
        assert_eq!(t.chain[0].to, Some(at(50)));
        // Arrival: ETA + 60 min slack.
        assert_eq!(t.deadline.map(|d| (d.kind, d.at)), Some((DeadlineKind::Arrival, at(180))));
        assert_eq!(err(&t, Action::CheckIn(c), CP, 51), TransitionError::AlreadyCheckedIn);
    }

    #[test]
    fn check_in_refuses_another_plate_and_a_past_eta() {
        let t = reported();
        let mut c = check_in(ControlClass::Pass);
        c.plate = Plate::parse("p", "晋D54321").unwrap();
        assert_eq!(err(&t, Action::CheckIn(c), CP, 50), TransitionError::PlateMismatch);
        let mut c = check_in(ControlClass::Pass);
        c.eta = at(10);
        assert_eq!(err(&t, Action::CheckIn(c.clone()), CP, 50), TransitionError::EtaInPast);
        assert_eq!(Trip::walk_in(u(1), u(CP), c, at(50), &rules()).unwrap_err(), TransitionError::EtaInPast);
    }

    #[test]
    fn cancel_only_by_the_reporter_before_check_in() {
        let t = reported();
        assert_eq!(err(&t, Action::Cancel { reason: "no".into() }, STRANGER, 1), TransitionError::NotCustodian);
        assert_eq!(err(&t, Action::Cancel { reason: " ".into() }, REPORTER, 1), TransitionError::ReasonRequired);
        let c = ok(&t, Action::Cancel { reason: " order cancelled ".into() }, REPORTER, 1);
        assert_eq!(c.state, TripState::Cancelled);
        assert_eq!(c.closed, Some(Closure { at: at(1), by: u(REPORTER), reason: Some("order cancelled".into()) }));
        assert_eq!(c.chain[0].to, Some(at(1)));
        let t = ok(&t, Action::CheckIn(check_in(ControlClass::Pass)), CP, 5);
        assert_eq!(err(&t, Action::Cancel { reason: "x".into() }, CP, 6), TransitionError::AlreadyCheckedIn);
    }

    #[test]
    fn a_reported_trip_has_no_later_links_yet() {
        let t = reported();
        for a in [Action::ConfirmArrival, Action::ConfirmDeparture, Action::ExitScan, Action::TurnBack { reason: "r".into() }] {
            assert_eq!(err(&t, a, REPORTER, 1), TransitionError::NotCheckedIn);
        }
        assert_eq!(err(&t, propose(500, ESCORT, HandoffPurpose::Escort), REPORTER, 1), TransitionError::NotCheckedIn);
    }

    #[test]
    fn closed_loop_full_loop_with_escort_and_destination_handoffs() {
        let t = walk_in(ControlClass::ClosedLoop);
        let t = ok(&t, Action::assign_escort(u(500), u(ESCORT)), CP, 5);
        // Until accepted the checkpoint stays custodian; the handoff has its own clock (30 min).
        assert_eq!(t.custodian, u(CP));
        assert_eq!(t.pending.as_ref().map(|p| p.accept_by), Some(at(35)));
        assert_eq!(t.deadline.map(|d| d.kind), Some(DeadlineKind::Arrival));
        assert_eq!(t.next_due().map(|d| (d.kind, d.at)), Some((DeadlineKind::HandoffAcceptance, at(35))));
        let t = ok(&t, accept_id(500), ESCORT, 10);
        assert_eq!((t.state, t.custodian), (TripState::EscortAssigned, u(ESCORT)));
        assert_eq!(t.chain[1].via, Some(u(500)));
        // The escort hands over at the gate; the destination accepts, which is the arrival.
        let t = ok(&t, propose(501, DEST, HandoffPurpose::Destination), ESCORT, 95);
        let t = ok(&t, accept(), DEST, 100);
        assert_eq!((t.state, t.custodian, t.arrived_at), (TripState::AtDestination, u(DEST), Some(at(100))));
        // Closed-loop limit: 6 h after arrival.
        assert_eq!(t.deadline.map(|d| (d.kind, d.at)), Some((DeadlineKind::Departure, at(100 + 360))));
        let t = ok(&t, Action::ConfirmDeparture, DEST, 300);
        assert_eq!(t.deadline.map(|d| (d.kind, d.at)), Some((DeadlineKind::Exit, at(300 + 120))));
        assert_eq!(t.custodian, u(DEST));
        let t = ok(&t, Action::ExitScan, EXIT, 350);
        assert_eq!(t.state, TripState::Exited);
        assert_eq!(units(&t), [u(CP), u(ESCORT), u(DEST), u(EXIT)]);
        assert_eq!(t.chain.last().map(|s| (s.from, s.to)), Some((at(350), Some(at(350)))));
        assert_eq!(t.handoffs.iter().map(|r| r.outcome).collect::<Vec<_>>(), [HandoffOutcome::Accepted; 2]);
        assert!(t.due_breaches(at(100_000)).is_empty());
    }

    #[test]
    fn an_overdue_or_rejected_escort_handoff_goes_to_a_fallback_escort() {
        const POLICE: u128 = 10;
        const TRANSPORT: u128 = 11;
        let fb = |id, to, reason| Action::EscortFallback { id: u(id), to: u(to), reason };
        let t = walk_in(ControlClass::ClosedLoop);
        // No receiver escort: proposed straight to the fallback, marked with why; nothing else moves.
        let f = ok(&t, fb(500, POLICE, FallbackReason::NoReceiverEscort), CP, 5);
        let p = f.pending.clone().unwrap();
        assert_eq!((p.to, p.purpose, p.fallback, p.accept_by), (u(POLICE), HandoffPurpose::Escort, Some(FallbackReason::NoReceiverEscort), at(35)));
        assert_eq!((f.custodian, f.state, f.deadline), (t.custodian, t.state, t.deadline));
        assert_eq!(err(&f, fb(501, TRANSPORT, FallbackReason::NoReceiverEscort), CP, 6), TransitionError::HandoffPending);
        // The receiver's escort, in time: no fallback yet; once overdue it is withdrawn and redirected.
        let e = ok(&t, Action::assign_escort(u(500), u(ESCORT)), CP, 5);
        assert_eq!(err(&e, fb(501, POLICE, FallbackReason::NotAccepted), CP, 35), TransitionError::FallbackNotDue);
        assert_eq!(err(&e, fb(501, POLICE, FallbackReason::Rejected), CP, 35), TransitionError::HandoffPending);
        assert_eq!(err(&e, fb(501, POLICE, FallbackReason::NotAccepted), ESCORT, 36), TransitionError::NotCustodian);
        assert_eq!(err(&e, fb(500, POLICE, FallbackReason::NotAccepted), CP, 36), TransitionError::HandoffIdReused);
        let breaches = e.due_breaches(at(36));
        assert_eq!(breaches.iter().map(|b| (b.kind, b.receiver)).collect::<Vec<_>>(), [(BreachKind::HandoffNotAccepted, Some(u(ESCORT)))]);
        let r = ok(&e, fb(501, POLICE, FallbackReason::NotAccepted), CP, 36);
        let last = r.handoffs.last().unwrap();
        assert_eq!(
            (last.handoff.id, last.outcome, last.by, last.reason.as_deref()),
            (u(500), HandoffOutcome::Withdrawn, u(CP), Some("not_accepted"))
        );
        assert_eq!(r.pending.as_ref().map(|p| (p.to, p.fallback, p.accept_by)), Some((u(POLICE), Some(FallbackReason::NotAccepted), at(66))));
        // The late escort can no longer accept; the fallback escort can, and the chain records it.
        assert_eq!(err(&r, accept_id(500), ESCORT, 37), TransitionError::HandoffNotPending);
        let a = ok(&r, accept(), POLICE, 40);
        assert_eq!((a.state, a.custodian, a.chain.last().and_then(|s| s.via)), (TripState::EscortAssigned, u(POLICE), Some(u(501))));
        // Rejected: only right after a rejected escort handoff.
        assert_eq!(err(&t, fb(501, POLICE, FallbackReason::Rejected), CP, 6), TransitionError::FallbackNotDue);
        assert_eq!(err(&t, fb(501, POLICE, FallbackReason::NotAccepted), CP, 6), TransitionError::NoPendingHandoff);
        let rej = ok(&e, Action::RejectHandoff { handoff: None, reason: "no car".into() }, ESCORT, 10);
        let f = ok(&rej, fb(501, TRANSPORT, FallbackReason::Rejected), CP, 11);
        assert_eq!(f.pending.as_ref().map(|p| (p.to, p.fallback)), Some((u(TRANSPORT), Some(FallbackReason::Rejected))));
        // Not for an isolate crew, not before check-in, not while the crew is being handed to quarantine.
        assert_eq!(err(&walk_in(ControlClass::Isolate), fb(501, POLICE, FallbackReason::NoReceiverEscort), CP, 1), TransitionError::WrongClass);
        assert_eq!(err(&reported(), fb(501, POLICE, FallbackReason::NoReceiverEscort), REPORTER, 1), TransitionError::NotCheckedIn);
        let q = ok(&t, Action::isolate(u(600), u(HOTEL)), CP, 1);
        assert_eq!(err(&q, fb(501, POLICE, FallbackReason::NotAccepted), CP, 100), TransitionError::HandoffPending);
        // A stored trip from before the fallback existed still reads.
        let mut old = serde_json::to_value(&e).unwrap();
        old["pending"].as_object_mut().unwrap().remove("fallback");
        assert_eq!(serde_json::from_value::<Trip>(old).unwrap(), e);
    }

    #[test]
    fn pass_trip_arrives_by_the_destination_scan_without_escort() {
        let t = walk_in(ControlClass::Pass);
        assert_eq!(err(&t, Action::ConfirmArrival, STRANGER, 60), TransitionError::NotDestination);
        let t = ok(&t, Action::ConfirmArrival, DEST, 60);
        assert_eq!((t.state, t.custodian), (TripState::AtDestination, u(DEST)));
        assert_eq!(t.chain[1].via, None);
        // A pass crew's stay limit is the separate pass parameter (48 h by default).
        assert_eq!(t.deadline.map(|d| d.at), Some(at(60 + 48 * 60)));
        // A pass trip may also get a destination handoff from the checkpoint, accepted by the scan.
        let t = walk_in(ControlClass::Pass);
        let t = ok(&t, propose(500, DEST, HandoffPurpose::Destination), CP, 1);
        let t = ok(&t, Action::ConfirmArrival, DEST, 60);
        assert_eq!(t.handoffs[0].outcome, HandoffOutcome::Accepted);
        assert_eq!(t.chain[1].via, Some(u(500)));
    }

    #[test]
    fn closed_loop_needs_an_escort_before_arrival() {
        let t = walk_in(ControlClass::ClosedLoop);
        assert_eq!(err(&t, Action::ConfirmArrival, DEST, 60), TransitionError::EscortRequired);
        assert_eq!(err(&t, propose(500, DEST, HandoffPurpose::Destination), CP, 1), TransitionError::EscortRequired);
        // The receiver may escort itself, then confirm arrival as custodian.
        let t = ok(&t, Action::assign_escort(u(500), u(DEST)), CP, 1);
        let t = ok(&t, accept(), DEST, 2);
        assert_eq!(t.state, TripState::EscortAssigned);
        assert_eq!(err(&t, propose(501, DEST, HandoffPurpose::Destination), DEST, 3), TransitionError::HandoffToSelf);
        let t = ok(&t, Action::ConfirmArrival, DEST, 60);
        assert_eq!(units(&t), [u(CP), u(DEST)]);
    }

    #[test]
    fn escorts_can_relay_and_a_return_escort_is_superseded_by_the_exit_scan() {
        let t = walk_in(ControlClass::ClosedLoop);
        let t = ok(&t, Action::assign_escort(u(500), u(ESCORT)), CP, 1);
        let t = ok(&t, accept(), ESCORT, 2);
        let t = ok(&t, Action::assign_escort(u(501), u(ESCORT2)), ESCORT, 30);
        let t = ok(&t, accept(), ESCORT2, 31);
        assert_eq!(t.state, TripState::EscortAssigned);
        // A pending relay is superseded when the destination scans the arrival.
        let t = ok(&t, Action::assign_escort(u(502), u(ESCORT)), ESCORT2, 40);
        let t = ok(&t, Action::ConfirmArrival, DEST, 60);
        assert_eq!(t.handoffs.last().map(|r| r.outcome), Some(HandoffOutcome::Superseded));
        let t = ok(&t, Action::ConfirmDeparture, DEST, 120);
        let t = ok(&t, Action::assign_escort(u(503), u(ESCORT)), DEST, 121);
        let done = ok(&t, Action::ExitScan, EXIT, 150);
        assert_eq!(done.handoffs.last().map(|r| (r.outcome, r.by)), Some((HandoffOutcome::Superseded, u(EXIT))));
        // Accepted, the escort holds it until the exit scan.
        let t = ok(&t, accept(), ESCORT, 125);
        assert_eq!((t.state, t.custodian), (TripState::Departed, u(ESCORT)));
        let t = ok(&t, Action::ExitScan, EXIT, 150);
        assert_eq!(units(&t), [u(CP), u(ESCORT), u(ESCORT2), u(DEST), u(ESCORT), u(EXIT)]);
    }

    #[test]
    fn the_ledger_names_who_had_not_confirmed_when_a_breach_was_raised() {
        let parties = [(LedgerParty::CargoOwner, Some(at(10))), (LedgerParty::Township, None), (LedgerParty::Driver, Some(at(100)))];
        assert_eq!(unconfirmed_at(&parties, at(50)), [LedgerParty::Township, LedgerParty::Driver]);
        assert_eq!(unconfirmed_at(&parties, at(100)), [LedgerParty::Township], "confirmed at the very moment counts");
        assert_eq!(unconfirmed_at(&parties, at(5)).len(), 3);
        for p in LedgerParty::ALL {
            assert!(!p.duty(true).is_empty() && p.duty(false).is_ascii());
        }
    }

    #[test]
    fn overstay_is_a_breach_and_the_township_takes_the_crew() {
        let t = at_destination();
        assert!(t.due_breaches(at(100 + 360)).is_empty(), "on time is not a breach");
        let b = t.due_breaches(at(100 + 361));
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].kind, b[0].custodian, b[0].due_at), (BreachKind::Overstay, u(DEST), at(460)));
        let t = ok(&t, Action::convert(u(600), u(TOWNSHIP)), DEST, 470);
        // While the township has not accepted, the crew may not leave.
        assert_eq!(err(&t, Action::ConfirmDeparture, DEST, 471), TransitionError::HandoffPending);
        let t = ok(&t, accept(), TOWNSHIP, 480);
        assert_eq!(t.state, TripState::Converted);
        assert_eq!((t.custodian, t.closed.as_ref().map(|c| c.by)), (u(TOWNSHIP), Some(u(TOWNSHIP))));
        assert_eq!(t.chain.last().map(|s| (s.from, s.to, s.via)), Some((at(480), Some(at(480)), Some(u(600)))));
    }

    #[test]
    fn isolate_trips_end_in_quarantine_or_turn_back() {
        let t = walk_in(ControlClass::Isolate);
        assert_eq!(t.deadline.map(|d| (d.kind, d.at)), Some((DeadlineKind::Disposition, at(120))));
        assert_eq!(err(&t, Action::ConfirmArrival, DEST, 5), TransitionError::WrongClass);
        assert_eq!(err(&t, Action::assign_escort(u(500), u(ESCORT)), CP, 5), TransitionError::WrongClass);
        assert_eq!(err(&t, propose(500, DEST, HandoffPurpose::Destination), CP, 5), TransitionError::WrongClass);
        assert_eq!(t.due_breaches(at(121)).iter().map(|b| b.kind).collect::<Vec<_>>(), [BreachKind::NotDisposed]);
        let q = ok(&t, Action::isolate(u(500), u(HOTEL)), CP, 5);
        // A pending quarantine handoff blocks the turn-back until withdrawn.
        assert_eq!(err(&q, Action::TurnBack { reason: "r".into() }, CP, 6), TransitionError::HandoffPending);
        let iso = ok(&q, accept(), HOTEL, 30);
        assert_eq!((iso.state, iso.custodian), (TripState::Isolated, u(HOTEL)));
        let w = ok(&q, Action::WithdrawHandoff { handoff: Some(u(500)) }, CP, 6);
        let tb = ok(&w, Action::TurnBack { reason: "劝返".into() }, CP, 7);
        assert_eq!((tb.state, tb.custodian), (TripState::TurnedBack, u(CP)));
        assert_eq!(units(&tb), [u(CP)]);
    }

    #[test]
    fn a_positive_crew_can_be_isolated_from_any_later_link() {
        for t in [at_destination(), departed()] {
            let t = ok(&t, Action::isolate(u(700), u(HOTEL)), t.custodian.as_u128(), 250);
            assert_eq!(
                err(&t, Action::ExitScan, EXIT, 251),
                if t.state == TripState::Departed { TransitionError::HandoffPending } else { TransitionError::ExitBeforeDeparture }
            );
            let t = ok(&t, accept(), HOTEL, 260);
            assert_eq!(t.state, TripState::Isolated);
        }
    }

    #[test]
    fn turn_back_rules() {
        let t = walk_in(ControlClass::ClosedLoop);
        let t = ok(&t, Action::assign_escort(u(500), u(ESCORT)), CP, 1);
        assert_eq!(err(&t, Action::TurnBack { reason: "x".into() }, STRANGER, 2), TransitionError::NotCustodian);
        assert_eq!(err(&t, Action::TurnBack { reason: "".into() }, CP, 2), TransitionError::ReasonRequired);
        let truck = TruckRules::default();
        let mut strict = TripRules::new(8, &truck);
        strict.turn_back_allowed = false;
        assert_eq!(t.apply(&Action::TurnBack { reason: "x".into() }, u(CP), at(2), &strict), Err(TransitionError::TurnBackNotAllowed));
        // A pending escort handoff is superseded by the turn-back.
        let tb = ok(&t, Action::TurnBack { reason: "x".into() }, CP, 2);
        assert_eq!(tb.handoffs[0].outcome, HandoffOutcome::Superseded);
        let t = ok(&t, accept(), ESCORT, 3);
        assert_eq!(err(&t, Action::TurnBack { reason: "x".into() }, ESCORT, 4), TransitionError::TurnBackTooLate);
    }

    #[test]
    fn out_of_order_links_are_refused() {
        let t = walk_in(ControlClass::Pass);
        assert_eq!(err(&t, Action::ExitScan, EXIT, 1), TransitionError::ExitBeforeArrival);
        assert_eq!(err(&t, Action::ConfirmDeparture, DEST, 1), TransitionError::DepartureBeforeArrival);
        let t = ok(&t, Action::ConfirmArrival, DEST, 60);
        assert_eq!(err(&t, Action::ConfirmArrival, DEST, 61), TransitionError::AlreadyArrived);
        assert_eq!(err(&t, Action::ExitScan, EXIT, 61), TransitionError::ExitBeforeDeparture);
        assert_eq!(err(&t, Action::ConfirmDeparture, STRANGER, 61), TransitionError::NotDestination);
        let t = ok(&t, Action::ConfirmDeparture, DEST, 62);
        assert_eq!(err(&t, Action::ConfirmDeparture, DEST, 63), TransitionError::AlreadyDeparted);
        assert_eq!(err(&t, Action::ConfirmArrival, DEST, 63), TransitionError::AlreadyArrived);
        assert_eq!(err(&t, Action::ExitScan, EXIT, 61), TransitionError::ClockBeforeLastEvent);
    }

    #[test]
    fn handoff_proposal_checks() {
        let t = walk_in(ControlClass::ClosedLoop);
        assert_eq!(err(&t, Action::assign_escort(u(500), u(ESCORT)), STRANGER, 1), TransitionError::NotCustodian);
        assert_eq!(err(&t, Action::assign_escort(u(500), u(CP)), CP, 1), TransitionError::HandoffToSelf);
        assert_eq!(err(&t, Action::convert(u(500), u(TOWNSHIP)), CP, 1), TransitionError::HandoffNotAllowed);
        let p = ok(&t, Action::assign_escort(u(500), u(ESCORT)), CP, 1);
        assert_eq!(err(&p, Action::assign_escort(u(501), u(ESCORT2)), CP, 2), TransitionError::HandoffPending);
        let w = ok(&p, Action::WithdrawHandoff { handoff: None }, CP, 2);
        assert_eq!(err(&w, Action::assign_escort(u(500), u(ESCORT2)), CP, 3), TransitionError::HandoffIdReused);
        let e = ok(&p, accept(), ESCORT, 2);
        assert_eq!(err(&e, propose(501, STRANGER, HandoffPurpose::Destination), ESCORT, 3), TransitionError::WrongDestination);
        assert_eq!(err(&e, Action::convert(u(501), u(TOWNSHIP)), ESCORT, 3), TransitionError::HandoffNotAllowed);
    }

    #[test]
    fn acceptance_checks() {
        let t = walk_in(ControlClass::ClosedLoop);
        assert_eq!(err(&t, accept(), ESCORT, 1), TransitionError::NoPendingHandoff);
        assert_eq!(err(&t, accept_id(999), ESCORT, 1), TransitionError::UnknownHandoff);
        let p = ok(&t, Action::assign_escort(u(500), u(ESCORT)), CP, 1);
        // Accepting a handoff meant for another unit.
        assert_eq!(err(&p, accept(), ESCORT2, 2), TransitionError::HandoffNotForYou);
        assert_eq!(err(&p, Action::RejectHandoff { handoff: None, reason: "x".into() }, ESCORT2, 2), TransitionError::HandoffNotForYou);
        assert_eq!(err(&p, accept_id(999), ESCORT, 2), TransitionError::UnknownHandoff);
        assert_eq!(err(&p, Action::WithdrawHandoff { handoff: None }, ESCORT, 2), TransitionError::NotCustodian);
        // A second acceptance, by id or by scanning again.
        let a = ok(&p, accept_id(500), ESCORT, 2);
        assert_eq!(err(&a, accept_id(500), ESCORT, 3), TransitionError::HandoffAlreadyAccepted);
        assert_eq!(err(&a, accept(), ESCORT, 3), TransitionError::HandoffAlreadyAccepted);
        assert_eq!(err(&a, Action::RejectHandoff { handoff: Some(u(500)), reason: "x".into() }, ESCORT, 3), TransitionError::HandoffAlreadyAccepted);
        assert_eq!(err(&a, accept(), ESCORT2, 3), TransitionError::NoPendingHandoff);
        assert_eq!(err(&a, Action::WithdrawHandoff { handoff: None }, CP, 3), TransitionError::HandoffAlreadyAccepted);
        // Late acceptance still moves custody (the breach was already raised).
        let late = ok(&p, accept(), ESCORT, 500);
        assert_eq!(late.custodian, u(ESCORT));
    }

    #[test]
    fn rejection_keeps_the_sender_and_the_trip_clock() {
        let t = walk_in(ControlClass::ClosedLoop);
        let p = ok(&t, Action::assign_escort(u(500), u(ESCORT)), CP, 1);
        assert_eq!(err(&p, Action::RejectHandoff { handoff: None, reason: "  ".into() }, ESCORT, 2), TransitionError::ReasonRequired);
        let r = ok(&p, Action::RejectHandoff { handoff: Some(u(500)), reason: "no car".into() }, ESCORT, 2);
        assert_eq!((r.custodian, r.pending.is_none(), r.deadline), (u(CP), true, t.deadline));
        assert_eq!(r.handoffs[0].reason.as_deref(), Some("no car"));
        assert_eq!(err(&r, accept_id(500), ESCORT, 3), TransitionError::HandoffNotPending);
        // The next proposal goes to someone else.
        let n = ok(&r, Action::assign_escort(u(501), u(ESCORT2)), CP, 3);
        let n = ok(&n, accept(), ESCORT2, 4);
        assert_eq!(units(&n), [u(CP), u(ESCORT2)]);
    }

    #[test]
    fn breaches_at_each_link() {
        let kinds = |t: &Trip, m: i64| t.due_breaches(at(m)).into_iter().map(|b| b.kind).collect::<Vec<_>>();
        let r = reported();
        assert_eq!(kinds(&r, 120), []);
        assert_eq!(kinds(&r, 121), [BreachKind::NotCheckedIn]);
        let t = walk_in(ControlClass::ClosedLoop);
        assert_eq!(kinds(&t, 181), [BreachKind::NoArrival]);
        let p = ok(&t, Action::assign_escort(u(500), u(ESCORT)), CP, 1);
        assert_eq!(kinds(&p, 32), [BreachKind::HandoffNotAccepted]);
        assert_eq!(kinds(&p, 200), [BreachKind::NoArrival, BreachKind::HandoffNotAccepted]);
        let b = p.due_breaches(at(32));
        assert_eq!((b[0].custodian, b[0].receiver, b[0].handoff, b[0].due_at), (u(CP), Some(u(ESCORT)), Some(u(500)), at(31)));
        assert_eq!(b[0].policy_version, 7);
        let d = departed();
        assert_eq!(kinds(&d, 320), []);
        assert_eq!(kinds(&d, 321), [BreachKind::NoExit]);
    }

    #[test]
    fn a_breach_is_settled_by_its_link_or_by_the_end_of_the_trip() {
        use crate::alert::{AlertEnd as E, Settled as S};
        let r = reported();
        assert_eq!(r.settles(BreachKind::NotCheckedIn, None), None);
        let checked = ok(&r, Action::CheckIn(check_in(ControlClass::Pass)), CP, 10);
        assert_eq!(checked.settles(BreachKind::NotCheckedIn, None), Some(S::Closed(E::CheckedIn)));
        assert_eq!(checked.settles(BreachKind::NoArrival, None), None);
        assert_eq!(checked.settles(BreachKind::PlateMismatch, None), None, "a fact seen stands while the trip is open");
        // A handoff breach is about its own handoff: the next one pending does not settle it.
        let p = ok(&walk_in(ControlClass::ClosedLoop), Action::assign_escort(u(500), u(ESCORT)), CP, 1);
        assert_eq!(p.settles(BreachKind::HandoffNotAccepted, Some(u(500))), None);
        let w = ok(&p, Action::WithdrawHandoff { handoff: None }, CP, 40);
        assert_eq!(w.settles(BreachKind::HandoffNotAccepted, Some(u(500))), Some(S::Closed(E::HandoffWithdrawn)));
        let p2 = ok(&w, Action::assign_escort(u(501), u(ESCORT2)), CP, 41);
        assert_eq!(p2.settles(BreachKind::HandoffNotAccepted, Some(u(501))), None);
        let a = ok(&p2, accept(), ESCORT2, 80);
        assert_eq!(a.settles(BreachKind::HandoffNotAccepted, Some(u(501))), Some(S::Closed(E::HandoffAccepted)));
        let rejected = ok(&p, Action::RejectHandoff { handoff: None, reason: "no car".into() }, ESCORT, 40);
        assert_eq!(rejected.settles(BreachKind::HandoffNotAccepted, Some(u(500))), Some(S::Closed(E::HandoffRejected)));
        let d = at_destination();
        assert_eq!(d.settles(BreachKind::NoArrival, None), Some(S::Closed(E::Arrived)));
        assert_eq!(d.settles(BreachKind::Overstay, None), None);
        assert_eq!(departed().settles(BreachKind::Overstay, None), Some(S::Closed(E::Departed)));
        assert_eq!(departed().settles(BreachKind::NoExit, None), None);
        // Every breach of a closed trip is settled; a positive landing only stops climbing, unless quarantined.
        let exited = ok(&departed(), Action::ExitScan, EXIT, 250);
        assert_eq!(exited.settles(BreachKind::NoExit, None), Some(S::Closed(E::TripExited)));
        assert_eq!(exited.settles(BreachKind::PositiveLanding, None), Some(S::Stopped(E::TripExited)));
        let isolated = ok(&ok(&walk_in(ControlClass::Isolate), Action::isolate(u(600), u(HOTEL)), CP, 1), accept(), HOTEL, 2);
        assert_eq!(isolated.settles(BreachKind::PositiveLanding, None), Some(S::Closed(E::TripIsolated)));
        assert_eq!(isolated.settles(BreachKind::NotDisposed, None), Some(S::Closed(E::TripIsolated)));
        let cancelled = ok(&r, Action::Cancel { reason: "r".into() }, REPORTER, 1);
        assert_eq!(cancelled.settles(BreachKind::NotCheckedIn, None), Some(S::Closed(E::TripCancelled)));
        assert_eq!(cancelled.settles(BreachKind::PlateMismatch, None), Some(S::Closed(E::TripCancelled)));
    }

    #[test]
    fn closed_trips_refuse_everything() {
        let exited = ok(&departed(), Action::ExitScan, EXIT, 250);
        let converted = ok(&ok(&at_destination(), Action::convert(u(600), u(TOWNSHIP)), DEST, 110), accept(), TOWNSHIP, 120);
        let isolated = ok(&ok(&walk_in(ControlClass::Isolate), Action::isolate(u(600), u(HOTEL)), CP, 1), accept(), HOTEL, 2);
        let turned = ok(&walk_in(ControlClass::Isolate), Action::TurnBack { reason: "r".into() }, CP, 1);
        let cancelled = ok(&reported(), Action::Cancel { reason: "r".into() }, REPORTER, 1);
        for t in [exited, converted, isolated, turned, cancelled] {
            assert!(t.is_closed() && t.deadline.is_none() && t.pending.is_none());
            for a in [Action::ExitScan, Action::ConfirmArrival, accept(), Action::CheckIn(check_in(ControlClass::Pass))] {
                for who in [t.custodian.as_u128(), EXIT, DEST] {
                    assert_eq!(err(&t, a.clone(), who, 0), TransitionError::TripClosed);
                    assert_eq!(err(&t, a.clone(), who, 10_000), TransitionError::TripClosed);
                }
            }
            assert!(t.due_breaches(at(1_000_000)).is_empty());
        }
    }

    /// Each error code, produced by a real refusal.
    #[test]
    fn every_error_code_is_reachable_and_well_formed() {
        use TransitionError as E;
        let mut seen = BTreeSet::new();
        let mut see = |e: TransitionError| {
            seen.insert(e.code());
        };
        let r = reported();
        let cl = walk_in(ControlClass::ClosedLoop);
        let pass = walk_in(ControlClass::Pass);
        let iso = walk_in(ControlClass::Isolate);
        let pending = ok(&cl, Action::assign_escort(u(500), u(ESCORT)), CP, 1);
        let escorted = ok(&pending, accept(), ESCORT, 2);
        let rejected = ok(&pending, Action::RejectHandoff { handoff: None, reason: "x".into() }, ESCORT, 2);
        let arrived = at_destination();
        let conv = ok(&arrived, Action::convert(u(600), u(TOWNSHIP)), DEST, 101);
        let exited = ok(&departed(), Action::ExitScan, EXIT, 250);
        let mut bad_plate = check_in(ControlClass::Pass);
        bad_plate.plate = Plate::parse("p", "京AF0236").unwrap();
        let mut past = check_in(ControlClass::Pass);
        past.eta = at(-5);
        let truck = TruckRules::default();
        let mut strict = TripRules::new(1, &truck);
        strict.turn_back_allowed = false;
        see(err(&exited, Action::ExitScan, EXIT, 300));
        see(err(&cl, Action::ExitScan, EXIT, -1));
        see(err(&r, Action::ConfirmArrival, DEST, 1));
        see(err(&cl, Action::CheckIn(check_in(ControlClass::Pass)), CP, 1));
        see(err(&r, Action::CheckIn(bad_plate), CP, 1));
        see(err(&r, Action::CheckIn(past), CP, 1));
        see(err(&cl, Action::assign_escort(u(500), u(ESCORT)), STRANGER, 1));
        see(err(&pass, Action::ConfirmArrival, STRANGER, 1));
        see(err(&iso, Action::ConfirmArrival, DEST, 1));
        see(err(&cl, Action::ConfirmArrival, DEST, 1));
        see(err(&arrived, Action::ConfirmArrival, DEST, 101));
        see(err(&cl, Action::ConfirmDeparture, DEST, 1));
        see(err(&departed(), Action::ConfirmDeparture, DEST, 201));
        see(err(&cl, Action::ExitScan, EXIT, 1));
        see(err(&arrived, Action::ExitScan, EXIT, 101));
        see(err(&conv, Action::ConfirmDeparture, DEST, 102));
        see(err(&cl, Action::convert(u(600), u(TOWNSHIP)), CP, 1));
        see(err(&cl, Action::assign_escort(u(600), u(CP)), CP, 1));
        see(err(&escorted, propose(600, STRANGER, HandoffPurpose::Destination), ESCORT, 3));
        see(err(&rejected, Action::assign_escort(u(500), u(ESCORT2)), CP, 3));
        see(err(&cl, accept(), ESCORT, 1));
        see(err(&cl, accept_id(999), ESCORT, 1));
        see(err(&pending, accept(), ESCORT2, 2));
        see(err(&escorted, accept_id(500), ESCORT, 3));
        see(err(&rejected, accept_id(500), ESCORT, 3));
        see(iso.apply(&Action::TurnBack { reason: "x".into() }, u(CP), at(1), &strict).unwrap_err());
        see(err(&escorted, Action::TurnBack { reason: "x".into() }, ESCORT, 3));
        see(err(&iso, Action::TurnBack { reason: "".into() }, CP, 1));
        see(err(&cl, Action::EscortFallback { id: u(600), to: u(ESCORT), reason: FallbackReason::Rejected }, CP, 1));
        let all: BTreeSet<&str> = E::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(all.len(), E::ALL.len(), "codes are unique");
        assert_eq!(seen, all, "every code is produced by some refusal");
        for e in E::ALL {
            assert!(e.code().chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{}", e.code());
            assert!(!e.zh().is_empty() && e.en().len() > 10);
            assert!(e.zh().chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)), "{} has Chinese", e.code());
        }
    }

    #[test]
    fn errors_become_domain_errors_with_the_same_code() {
        let e: Error = TransitionError::ExitBeforeArrival.into();
        assert_eq!(e.code(), "exit_before_arrival");
        assert!(e.message(true).contains("目的地") && e.message(false).contains("destination"));
        let e: Error = TransitionError::ReasonRequired.into();
        assert_eq!((e.code(), e.fields()[0].field.as_str(), e.fields()[0].code), ("invalid_input", "reason", "reason_required"));
        assert_eq!(TransitionError::TripClosed.to_string(), format!("trip_closed: {}", TransitionError::TripClosed.en()));
    }

    #[test]
    fn names_serialise_as_their_codes() {
        for s in TripState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
            assert_eq!(TripState::parse(s.as_str()), Some(*s));
        }
        for c in ControlClass::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), serde_json::json!(c.as_str()));
        }
        for k in DeadlineKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::json!(k.as_str()));
            assert_eq!(serde_json::to_value(k.breach()).unwrap(), serde_json::json!(k.breach().as_str()));
        }
        for p in HandoffPurpose::ALL {
            assert_eq!(serde_json::to_value(p).unwrap(), serde_json::json!(p.as_str()));
        }
        for o in HandoffOutcome::ALL {
            assert_eq!(serde_json::to_value(o).unwrap(), serde_json::json!(o.as_str()));
        }
        let v = serde_json::to_value(Action::assign_escort(u(1), u(2))).unwrap();
        assert_eq!(v["action"], "propose_handoff");
        assert_eq!(v["purpose"], "escort");
        let t = serde_json::to_value(walk_in(ControlClass::ClosedLoop)).unwrap();
        assert_eq!((t["state"].as_str(), t["plate"].as_str()), (Some("checked_in"), Some("晋D12345")));
    }

    #[test]
    fn new_rule_parameters_have_valid_defaults() {
        let truck = TruckRules::default();
        let r = TripRules::new(1, &truck);
        assert!(r.validate().is_empty());
        let bad = TripRules { exit_window_minutes: 0, pass_stay_limit_hours: 1000, ..r };
        let fields: Vec<String> = bad.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["truck.exit_window_minutes", "truck.pass_stay_limit_hours"]);
    }

    #[test]
    fn invariant_checker_catches_broken_trips() {
        let good = departed();
        let mut t = good.clone();
        t.custodian = u(STRANGER);
        assert!(t.check_invariants().is_err());
        let mut t = good.clone();
        t.deadline = None;
        assert!(t.check_invariants().is_err());
        let mut t = good.clone();
        t.chain[1].from += Duration::minutes(1);
        assert!(t.check_invariants().is_err());
        let mut t = good.clone();
        if let Some(s) = t.chain.last_mut() {
            s.to = Some(at(500));
        }
        assert!(t.check_invariants().is_err());
        let mut t = good.clone();
        t.pending = Some(Handoff {
            id: u(900),
            from: u(ESCORT),
            to: u(EXIT),
            purpose: HandoffPurpose::Escort,
            proposed_at: at(201),
            accept_by: at(231),
            policy_version: 7,
            fallback: None,
        });
        assert!(t.check_invariants().is_err(), "pending handoff not from the custodian");
        let mut t = ok(&good, Action::ExitScan, EXIT, 250);
        t.pending = good.pending.clone().or(t.handoffs.first().map(|r| r.handoff.clone()));
        assert!(t.check_invariants().is_err(), "closed with a pending handoff");
    }

    // ---- Property tests ----

    const UNITS: usize = 6;
    const IDS: usize = 4;

    /// Who acts: resolved against the trip at that step, so that many random steps succeed.
    #[derive(Debug, Clone, Copy)]
    enum Who {
        Custodian,
        Receiver,
        Destination,
        Unit(usize),
    }

    #[derive(Debug, Clone, Copy)]
    enum IdRef {
        Pending,
        Pool(usize),
    }

    #[derive(Debug, Clone)]
    enum Gen {
        CheckIn { class: ControlClass, dest: usize, same_plate: bool, eta_min: i64 },
        Propose { id: usize, to: Who, purpose: HandoffPurpose },
        Accept(Option<IdRef>),
        Reject(Option<IdRef>, bool),
        Withdraw(Option<IdRef>),
        Fallback { id: usize, to: Who, reason: FallbackReason },
        Arrive,
        Depart,
        Exit,
        TurnBack(bool),
        Cancel(bool),
    }

    fn unit_at(i: usize) -> Uuid {
        u(1000 + i as u128)
    }

    fn pool_id(i: usize) -> Uuid {
        u(5000 + i as u128)
    }

    fn who(t: &Trip, w: Who) -> Uuid {
        match w {
            Who::Custodian => t.custodian,
            Who::Receiver => t.pending.as_ref().map_or(t.custodian, |p| p.to),
            Who::Destination => t.destination,
            Who::Unit(i) => unit_at(i),
        }
    }

    fn id_of(t: &Trip, r: Option<IdRef>) -> Option<Uuid> {
        r.map(|r| match r {
            IdRef::Pending => t.pending.as_ref().map_or(pool_id(0), |p| p.id),
            IdRef::Pool(i) => pool_id(i),
        })
    }

    fn reason(ok: bool) -> String {
        if ok { "reason".into() } else { String::new() }
    }

    fn resolve(t: &Trip, g: &Gen, now: DateTime<Utc>) -> Action {
        match g {
            Gen::CheckIn { class, dest, same_plate, eta_min } => Action::CheckIn(CheckIn {
                plate: if *same_plate { t.plate.clone() } else { Plate::parse("p", "京AF0236").unwrap() },
                trailer: None,
                class: *class,
                destination: unit_at(*dest),
                eta: now + Duration::minutes(*eta_min),
            }),
            Gen::Propose { id, to, purpose } => Action::ProposeHandoff { id: pool_id(*id), to: who(t, *to), purpose: *purpose },
            Gen::Accept(r) => Action::AcceptHandoff { handoff: id_of(t, *r) },
            Gen::Reject(r, ok) => Action::RejectHandoff { handoff: id_of(t, *r), reason: reason(*ok) },
            Gen::Withdraw(r) => Action::WithdrawHandoff { handoff: id_of(t, *r) },
            Gen::Fallback { id, to, reason } => Action::EscortFallback { id: pool_id(*id), to: who(t, *to), reason: *reason },
            Gen::Arrive => Action::ConfirmArrival,
            Gen::Depart => Action::ConfirmDeparture,
            Gen::Exit => Action::ExitScan,
            Gen::TurnBack(ok) => Action::TurnBack { reason: reason(*ok) },
            Gen::Cancel(ok) => Action::Cancel { reason: reason(*ok) },
        }
    }

    fn class_s() -> impl Strategy<Value = ControlClass> {
        prop::sample::select(ControlClass::ALL.to_vec())
    }

    fn who_s() -> impl Strategy<Value = Who> {
        prop_oneof![3 => Just(Who::Custodian), 3 => Just(Who::Receiver), 2 => Just(Who::Destination), 2 => (0..UNITS).prop_map(Who::Unit)]
    }

    fn idref_s() -> impl Strategy<Value = Option<IdRef>> {
        prop_oneof![3 => Just(None), 3 => Just(Some(IdRef::Pending)), 1 => (0..IDS).prop_map(|i| Some(IdRef::Pool(i)))]
    }

    fn gen_s() -> impl Strategy<Value = Gen> {
        prop_oneof![
            2 => (class_s(), 0..UNITS, prop::bool::weighted(0.9), -10i64..600)
                .prop_map(|(class, dest, same_plate, eta_min)| Gen::CheckIn { class, dest, same_plate, eta_min }),
            4 => (0..IDS, who_s(), prop::sample::select(HandoffPurpose::ALL.to_vec())).prop_map(|(id, to, purpose)| Gen::Propose { id, to, purpose }),
            4 => idref_s().prop_map(Gen::Accept),
            1 => (idref_s(), prop::bool::weighted(0.8)).prop_map(|(r, ok)| Gen::Reject(r, ok)),
            1 => idref_s().prop_map(Gen::Withdraw),
            2 => (0..IDS, who_s(), prop::sample::select(FallbackReason::ALL.to_vec())).prop_map(|(id, to, reason)| Gen::Fallback { id, to, reason }),
            2 => Just(Gen::Arrive),
            2 => Just(Gen::Depart),
            2 => Just(Gen::Exit),
            1 => prop::bool::weighted(0.8).prop_map(Gen::TurnBack),
            1 => prop::bool::weighted(0.8).prop_map(Gen::Cancel),
        ]
    }

    /// (action, actor, minutes after the previous step; occasionally negative: a clock behind).
    fn steps_s() -> impl Strategy<Value = Vec<(Gen, Who, i64)>> {
        prop::collection::vec((gen_s(), who_s(), prop_oneof![1 => -30i64..0, 12 => 0i64..240]), 1..40)
    }

    fn start_s() -> impl Strategy<Value = Trip> {
        (prop::option::of(class_s()), 0..UNITS, 0..UNITS, 0i64..600).prop_map(|(class, holder, dest, eta)| {
            let holder = unit_at(holder);
            let destination = unit_at(dest);
            let rules = rules();
            match class {
                None => Trip::report(u(1), holder, Report { plate: plate(), trailer: None, destination, expected_at: at(eta) }, t0(), &rules),
                Some(class) => Trip::walk_in(u(1), holder, CheckIn { plate: plate(), trailer: None, class, destination, eta: at(eta) }, t0(), &rules),
            }
            .unwrap()
        })
    }

    /// Runs a walk; returns the final trip, checking the properties after every step.
    fn walk(start: Trip, steps: &[(Gen, Who, i64)]) -> Result<Trip, TestCaseError> {
        let rules = rules();
        let mut t = start;
        prop_assert!(t.check_invariants().is_ok(), "{:?}", t.check_invariants());
        let mut now = t.last_event_at;
        for (g, w, dt) in steps {
            now += Duration::minutes(*dt);
            let action = resolve(&t, g, now);
            let actor = who(&t, *w);
            let before = t.clone();
            match t.apply(&action, actor, now, &rules) {
                Ok(next) => {
                    // (1) Every successful step keeps the invariants, and the old trip is untouched.
                    prop_assert_eq!(&t, &before);
                    prop_assert!(!before.is_closed(), "a closed trip accepted {:?}", action);
                    if let Err(e) = next.check_invariants() {
                        return Err(TestCaseError::fail(format!("after {action:?} by {actor}: {e}\n{next:#?}")));
                    }
                    prop_assert_eq!(next.last_event_at, now);
                    // Custody moves only to the acting unit, and only by a check-in, an acceptance or a scan;
                    // proposing, rejecting and withdrawing never move it ("the sender remains custodian").
                    if next.custodian != t.custodian {
                        prop_assert_eq!(next.custodian, actor);
                        let moves = matches!(action, Action::CheckIn(_) | Action::AcceptHandoff { .. } | Action::ConfirmArrival | Action::ExitScan);
                        prop_assert!(moves, "{:?} moved custody", action);
                    }
                    if matches!(
                        action,
                        Action::ProposeHandoff { .. } | Action::RejectHandoff { .. } | Action::WithdrawHandoff { .. } | Action::EscortFallback { .. }
                    ) {
                        prop_assert_eq!((next.custodian, next.state, next.deadline), (t.custodian, t.state, t.deadline));
                    }
                    // A fallback proposes an escort handoff marked with its reason, and only when one is due:
                    // the previous escort handoff was rejected, or is withdrawn now past its acceptance deadline.
                    if let Action::EscortFallback { id, to, reason } = &action {
                        let p = next.pending.as_ref();
                        prop_assert_eq!(p.map(|p| (p.id, p.to, p.purpose, p.fallback)), Some((*id, *to, HandoffPurpose::Escort, Some(*reason))));
                        match reason {
                            FallbackReason::NotAccepted => {
                                let was = t.pending.as_ref().map(|p| (p.id, p.accept_by));
                                let ended = next.handoffs.last().map(|r| (r.handoff.id, r.outcome));
                                prop_assert!(was.is_some_and(|(_, by)| now > by), "redirected in time");
                                prop_assert_eq!(ended, was.map(|(id, _)| (id, HandoffOutcome::Withdrawn)));
                            }
                            FallbackReason::Rejected => {
                                prop_assert!(t.pending.is_none() && t.handoffs.last().is_some_and(|r| r.outcome == HandoffOutcome::Rejected));
                            }
                            FallbackReason::NoReceiverEscort => prop_assert!(t.pending.is_none()),
                        }
                    }
                    // The ledger is append-only: earlier spans and handoff records never change.
                    let n = t.chain.len() - 1;
                    prop_assert_eq!(&next.chain[..n], &t.chain[..n]);
                    prop_assert_eq!((next.chain[n].unit, next.chain[n].from), (t.chain[n].unit, t.chain[n].from));
                    prop_assert_eq!(&next.handoffs[..t.handoffs.len()], &t.handoffs[..]);
                    t = next;
                }
                Err(e) => {
                    // (2) A refusal changes nothing.
                    prop_assert_eq!(&t, &before);
                    // (3) Once closed, everything is refused with `trip_closed`.
                    if t.is_closed() {
                        prop_assert_eq!(e, TransitionError::TripClosed);
                    } else {
                        prop_assert_ne!(e, TransitionError::TripClosed);
                    }
                }
            }
            // Breach detection agrees with the clocks.
            let next_due = t.next_due();
            prop_assert_eq!(next_due.is_some(), !t.is_closed());
            if let Some(d) = next_due {
                prop_assert!(t.due_breaches(d.at).is_empty());
                prop_assert!(!t.due_breaches(d.at + Duration::seconds(1)).is_empty());
            }
        }
        Ok(t)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        /// (1)+(2): random actions by random units at forward-moving (sometimes backward) times.
        #[test]
        fn random_walks_keep_the_invariants_and_refusals_change_nothing(start in start_s(), steps in steps_s()) {
            walk(start, &steps)?;
        }

        /// (3): drive a trip closed by one of the closing paths, then throw anything at it.
        #[test]
        fn closed_trips_refuse_every_action(path in 0usize..5, steps in steps_s(), w in who_s()) {
            let t = match path {
                0 => ok(&departed(), Action::ExitScan, EXIT, 250),
                1 => ok(&ok(&at_destination(), Action::convert(u(600), u(TOWNSHIP)), DEST, 110), accept(), TOWNSHIP, 120),
                2 => ok(&ok(&walk_in(ControlClass::Isolate), Action::isolate(u(600), u(HOTEL)), CP, 1), accept(), HOTEL, 2),
                3 => ok(&walk_in(ControlClass::Pass), Action::TurnBack { reason: "r".into() }, CP, 1),
                _ => ok(&reported(), Action::Cancel { reason: "r".into() }, REPORTER, 1),
            };
            let frozen = t.clone();
            let mut now = t.last_event_at;
            for (g, _, dt) in &steps {
                now += Duration::minutes(*dt);
                let a = resolve(&t, g, now);
                prop_assert_eq!(t.apply(&a, who(&t, w), now, &rules()), Err(TransitionError::TripClosed));
            }
            prop_assert_eq!(t, frozen);
        }
    }

    /// The random walk is not vacuous: across many walks it reaches every state, including
    /// every closed one, and produces most error codes.
    #[test]
    fn random_walks_reach_every_state() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let mut states = BTreeSet::new();
        let mut fallbacks = BTreeSet::new();
        let strategy = (start_s(), steps_s());
        for _ in 0..3000 {
            let (start, steps) = strategy.new_tree(&mut runner).unwrap().current();
            let rules = rules();
            let mut t = start;
            let mut now = t.last_event_at;
            states.insert(t.state.as_str());
            for (g, w, dt) in &steps {
                now += Duration::minutes(*dt);
                let action = resolve(&t, g, now);
                if let Ok(n) = t.apply(&action, who(&t, *w), now, &rules) {
                    if let Action::EscortFallback { reason, .. } = action {
                        fallbacks.insert(reason.as_str());
                    }
                    t = n;
                    states.insert(t.state.as_str());
                }
            }
        }
        let all: BTreeSet<&str> = TripState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(states, all);
        let reasons: BTreeSet<&str> = FallbackReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(fallbacks, reasons, "every fallback reason is reached");
    }
}
