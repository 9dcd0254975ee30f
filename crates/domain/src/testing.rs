//! Sampling and testing (核酸采检): tubes and N-in-1 pools, priorities and result deadlines,
//! the status a person's samples give, and pool-size planning (Dorfman, 1943).
//!
//! A tube's lifecycle:
//!
//! ```text
//! open      add members (up to the pool size; a full tube seals itself)   open | sealed
//! open      seal (at least one member)                                     sealed
//! sealed    ship (packed into a batch handed to a lab)                     shipped
//! shipped   receive (the lab's receipt lists it)                           received
//! shipped   missing (the lab's receipt does not list it)                   missing
//! shipped, received, resulted
//!           result (a shipped tube's result is also its receipt;           resulted
//!           a resulted tube's new result is a correction)
//! ```
//!
//! A refused event changes nothing. Every number (pool sizes, deadlines) comes from the policy
//! version in force, never from a constant here.

use crate::FieldError;
use crate::error::Error;
use crate::policy::TestingRules;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

labelled! {
    Priority {
        Routine = "routine", "常规", "Routine";
        Expedited = "expedited", "加急", "Expedited";
    }
}

labelled! {
    /// Why a tube was taken: a screening, a landing test at a checkpoint, the single-tube
    /// re-test of a positive pool's member, or a re-sample after an invalid result.
    Purpose {
        Screening = "screening", "筛查", "Screening";
        Landing = "landing", "落地检", "Landing test";
        Recheck = "recheck", "单管复核", "Re-check";
        Resample = "resample", "重新采样", "Re-sample";
    }
}

labelled! {
    TubeState {
        Open = "open", "采样中", "Open";
        Sealed = "sealed", "已封管", "Sealed";
        Shipped = "shipped", "已送检", "Shipped";
        Received = "received", "已接收", "Received";
        Resulted = "resulted", "已出结果", "Resulted";
        Missing = "missing", "接收时缺失", "Missing";
    }
}

labelled! {
    Outcome {
        Negative = "negative", "阴性", "Negative";
        Positive = "positive", "阳性", "Positive";
        Invalid = "invalid", "无效", "Invalid";
        /// 可疑: the lab saw something but not enough to call the tube positive (one gene only,
        /// or a late Ct). Not a refused row: see [`member_status`] for what it means.
        Suspect = "suspect", "可疑", "Suspect";
    }
}

labelled! {
    /// A person's testing status, as the rest of the system reads it (`person_results`).
    PersonStatus {
        Pending = "pending", "待出结果", "Pending";
        Negative = "negative", "阴性", "Negative";
        Positive = "positive", "阳性", "Positive";
        PendingRecheck = "pending_recheck", "待复核", "Pending re-check";
        Invalid = "invalid", "无效待重采", "Invalid, re-sample";
    }
}

impl Outcome {
    /// The words labs write in their exports: English names or the Chinese ones.
    pub fn parse_loose(s: &str) -> Option<Outcome> {
        let t = s.trim();
        Outcome::parse(&t.to_ascii_lowercase()).or(match t {
            "阴性" | "阴" | "-" => Some(Outcome::Negative),
            "阳性" | "阳" | "+" => Some(Outcome::Positive),
            "无效" | "无效样本" => Some(Outcome::Invalid),
            "可疑" | "可疑阳性" | "suspected" | "Suspected" => Some(Outcome::Suspect),
            _ => None,
        })
    }
}

/// A Ct value as labs write it: a number, or one of the ways their exports say there is none
/// (`未检出`, `-`, `NoCt`, `N/A`, `Undetermined`, `>40`, empty…), as a negative's Ct normally
/// is. Anything else is an error of `field`.
pub fn parse_ct(field: &str, s: &str) -> Result<Option<f64>, FieldError> {
    let t: String = s.trim().chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase();
    const NONE: &[&str] = &[
        "",
        "-",
        "--",
        "—",
        "/",
        "\\",
        "未检出",
        "未检测到",
        "无",
        "无ct",
        "无ct值",
        "阴性",
        "nd",
        "n/a",
        "na",
        "noct",
        "none",
        "null",
        "undetermined",
        "undet",
    ];
    // Beyond the run's last cycle (">40"): no Ct either.
    if NONE.contains(&t.as_str()) || t.starts_with(['>', '＞', '≥']) {
        return Ok(None);
    }
    t.replace('，', ".").parse::<f64>().map(Some).map_err(|_| {
        FieldError::new(field, "ct_invalid", "Ct 值应为数字，或留空、写“未检出”", "a Ct value is a number, or empty or 未检出 when there is none")
    })
}

/// A tube as the state machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tube {
    pub pool_size: u32,
    pub state: TubeState,
    pub members: u32,
    pub outcome: Option<Outcome>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    AddMembers(u32),
    Seal,
    Ship,
    Receive,
    Missing,
    Result(Outcome),
}

macro_rules! tube_errors {
    ($($v:ident = $code:literal, $zh:literal, $en:literal;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum TubeError { $($v),* }

        impl TubeError {
            pub fn code(self) -> &'static str { match self { $(TubeError::$v => $code),* } }
            pub fn zh(self) -> &'static str { match self { $(TubeError::$v => $zh),* } }
            pub fn en(self) -> &'static str { match self { $(TubeError::$v => $en),* } }
        }
    };
}

tube_errors! {
    TubeSealed = "tube_sealed", "该管已封管，不能再加人", "the tube is sealed; no one can be added";
    TubeFull = "tube_full", "该管人数已满", "the tube is full";
    TubeNotOpen = "tube_not_open", "该管已不在采样中", "the tube is no longer open for sampling";
    TubeEmpty = "tube_empty", "空管不能封管", "an empty tube cannot be sealed";
    TubeNotSealed = "tube_not_sealed", "该管尚未封管或已送检", "the tube is not sealed, or already shipped";
    TubeNotShipped = "tube_not_shipped", "该管尚未送检到检测机构", "the tube was never shipped to a lab";
    TubeMissing = "tube_missing", "该管在接收时缺失", "the tube was missing at receipt";
    NoMembers = "no_members", "请至少添加一人", "add at least one person";
}

impl From<TubeError> for Error {
    fn from(e: TubeError) -> Self {
        Error::conflict(e.code(), e.zh(), e.en())
    }
}

impl Tube {
    pub fn open(pool_size: u32) -> Tube {
        Tube { pool_size, state: TubeState::Open, members: 0, outcome: None }
    }

    pub fn is_pool(&self) -> bool {
        self.pool_size > 1
    }

    /// The tube after `e`, or why not (the tube itself never changes).
    pub fn apply(&self, e: Event) -> Result<Tube, TubeError> {
        use TubeState::*;
        let mut t = *self;
        match (e, self.state) {
            (Event::AddMembers(0), _) => return Err(TubeError::NoMembers),
            (Event::AddMembers(n), Open) => {
                let total = self.members.checked_add(n).ok_or(TubeError::TubeFull)?;
                if total > self.pool_size {
                    return Err(TubeError::TubeFull);
                }
                t.members = total;
                // A full tube is sealed at once: nobody can be added by mistake.
                if total == self.pool_size {
                    t.state = Sealed;
                }
            }
            (Event::AddMembers(_), Sealed) if self.members >= self.pool_size => return Err(TubeError::TubeFull),
            (Event::AddMembers(_), Sealed) => return Err(TubeError::TubeSealed),
            (Event::AddMembers(_), _) => return Err(TubeError::TubeNotOpen),
            (Event::Seal, Open) if self.members == 0 => return Err(TubeError::TubeEmpty),
            (Event::Seal, Open) => t.state = Sealed,
            (Event::Seal, _) => return Err(TubeError::TubeNotOpen),
            (Event::Ship, Sealed) => t.state = Shipped,
            (Event::Ship, _) => return Err(TubeError::TubeNotSealed),
            (Event::Receive, Shipped) => t.state = Received,
            (Event::Missing, Shipped) => t.state = Missing,
            (Event::Receive | Event::Missing, _) => return Err(TubeError::TubeNotShipped),
            (Event::Result(o), Shipped | Received | Resulted) => {
                t.state = Resulted;
                t.outcome = Some(o);
            }
            (Event::Result(_), Missing) => return Err(TubeError::TubeMissing),
            (Event::Result(_), _) => return Err(TubeError::TubeNotShipped),
        }
        Ok(t)
    }
}

/// A pool size the policy in force allows.
pub fn check_pool_size(rules: &TestingRules, k: u32) -> Result<u32, FieldError> {
    if rules.pool_sizes.contains(&k) {
        Ok(k)
    } else {
        let list = rules.pool_sizes.iter().map(u32::to_string).collect::<Vec<_>>().join("、");
        Err(FieldError::new(
            "pool_size",
            "pool_size_not_allowed",
            format!("现行策略允许的混采规格：{list}"),
            format!("the policy in force allows pool sizes {list}"),
        ))
    }
}

/// How long the lab has for a tube's result, from the policy: re-checks and expedited tubes
/// have their own (shorter) deadlines, then single tubes, then pools.
pub fn result_hours(rules: &TestingRules, pool_size: u32, priority: Priority, purpose: Purpose) -> u32 {
    let base = if pool_size > 1 { rules.pooled_deadline_hours } else { rules.single_deadline_hours };
    let mut h = base;
    if priority == Priority::Expedited {
        h = h.min(rules.expedited_deadline_hours);
    }
    if purpose == Purpose::Recheck {
        h = h.min(rules.recheck_deadline_hours);
    }
    h
}

pub fn result_due(rules: &TestingRules, sampled_at: DateTime<Utc>, pool_size: u32, priority: Priority, purpose: Purpose) -> DateTime<Utc> {
    sampled_at + Duration::hours(i64::from(result_hours(rules, pool_size, priority, purpose)))
}

/// A tube's barcode as printed: 4 to 40 letters, digits, `-` or `_`.
pub fn parse_barcode(field: &str, s: &str) -> Result<String, FieldError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(FieldError::required(field));
    }
    let n = t.chars().count();
    if !(4..=40).contains(&n) || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(FieldError::new(
            field,
            "barcode_invalid",
            "条码应为 4 到 40 位字母、数字、- 或 _",
            "a barcode is 4 to 40 letters, digits, - or _",
        ));
    }
    Ok(t.to_ascii_uppercase())
}

/// What one result means for each member of the tube.
///
/// The policy for a suspect (可疑) result: it clears nobody and convicts nobody, so every member
/// goes on pending re-check (yellow code, as a positive pool's members do) and is owed a
/// single-tube re-test, expedited, with the re-check deadline and the member's township
/// answerable for it, exactly like the members of a positive pool; it raises no emergency alert
/// (only a positive does). The re-test's result then decides.
pub fn member_status(pool_size: u32, outcome: Outcome) -> PersonStatus {
    match outcome {
        Outcome::Negative => PersonStatus::Negative,
        Outcome::Invalid => PersonStatus::Invalid,
        Outcome::Suspect => PersonStatus::PendingRecheck,
        Outcome::Positive if pool_size > 1 => PersonStatus::PendingRecheck,
        Outcome::Positive => PersonStatus::Positive,
    }
}

/// One of a person's samples, for `person_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub sampled_at: DateTime<Utc>,
    pub pool_size: u32,
    pub outcome: Option<Outcome>,
}

/// A person's status from their samples: the latest result counts; a later sample still
/// waiting for its result leaves a positive or pending re-check standing (the re-test has not
/// cleared it yet), and otherwise makes the person pending.
pub fn person_status(samples: &[Sample]) -> Option<PersonStatus> {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by_key(|s| s.sampled_at);
    let latest_result = sorted.iter().rev().find_map(|s| s.outcome.map(|o| (s.sampled_at, member_status(s.pool_size, o))));
    let latest = sorted.last()?;
    match latest_result {
        Some((at, st)) if at == latest.sampled_at => Some(st),
        Some((_, st @ (PersonStatus::Positive | PersonStatus::PendingRecheck))) => Some(st),
        _ => Some(PersonStatus::Pending),
    }
}

/// Dorfman (1943): expected tests per person with pools of `k` at prevalence `p` — one test
/// per pool, plus `k` single tests when the pool is positive: `1/k + 1 − (1−p)^k`.
pub fn tests_per_person(p: f64, k: u32) -> f64 {
    if k <= 1 {
        return 1.0;
    }
    let k_i = i32::try_from(k).unwrap_or(i32::MAX);
    1.0 / f64::from(k) + 1.0 - (1.0 - p).powi(k_i)
}

/// The best pool size up to `max_k` (1 when pooling would not save tests), with its tests per person.
pub fn optimal_pool(p: f64, max_k: u32) -> (u32, f64) {
    let mut best = (1, 1.0);
    for k in 2..=max_k {
        let e = tests_per_person(p, k);
        if e < best.1 {
            best = (k, e);
        }
    }
    best
}

/// The best of the pool sizes the policy allows.
pub fn suggest_pool(p: f64, allowed: &[u32]) -> (u32, f64) {
    allowed.iter().map(|k| (*k, tests_per_person(p, *k))).fold((1, 1.0), |b, x| if x.1 < b.1 { x } else { b })
}

/// Which of the allowed sizes a prevalence must fall under for pooling to be worth it at all.
pub fn pooling_pays(p: f64) -> bool {
    optimal_pool(p, 100).0 > 1
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2022-11-10T09:00:00+08:00").unwrap().with_timezone(&Utc) + Duration::hours(h)
    }

    #[test]
    fn dorfman_matches_the_published_values() {
        // Dorfman (1943), and the domain notes: p = 1% → k = 11, ≈ 0.196; p = 0.1% → k = 32, ≈ 0.063.
        let (k, e) = optimal_pool(0.01, 100);
        assert_eq!(k, 11);
        assert!((e - 0.1956).abs() < 0.0005, "{e}");
        let (k, e) = optimal_pool(0.001, 100);
        assert_eq!(k, 32);
        assert!((e - 0.0628).abs() < 0.0005, "{e}");
        // Dorfman's table: p = 5% → k = 5, ≈ 0.426; p = 10% → k = 4, ≈ 0.594.
        let (k, e) = optimal_pool(0.05, 100);
        assert_eq!(k, 5);
        assert!((e - 0.4262).abs() < 0.0005, "{e}");
        let (k, e) = optimal_pool(0.10, 100);
        assert_eq!(k, 4);
        assert!((e - 0.5939).abs() < 0.0005, "{e}");
        // Above ≈ 30.7% pooling never pays.
        assert_eq!(optimal_pool(0.35, 100).0, 1);
        assert!(!pooling_pays(0.35));
        assert!(pooling_pays(0.2));
    }

    #[test]
    fn suggestion_is_the_best_allowed_size() {
        let allowed = [1, 5, 10, 20];
        assert_eq!(suggest_pool(0.01, &allowed).0, 10);
        assert_eq!(suggest_pool(0.0005, &allowed).0, 20);
        assert_eq!(suggest_pool(0.05, &allowed).0, 5);
        assert_eq!(suggest_pool(0.5, &allowed).0, 1);
        assert!((suggest_pool(0.01, &allowed).1 - tests_per_person(0.01, 10)).abs() < 1e-12);
    }

    #[test]
    fn deadlines_follow_priority_and_purpose() {
        let r = TestingRules::default();
        assert_eq!(result_hours(&r, 1, Priority::Routine, Purpose::Screening), r.single_deadline_hours);
        assert_eq!(result_hours(&r, 10, Priority::Routine, Purpose::Screening), r.pooled_deadline_hours);
        assert_eq!(result_hours(&r, 10, Priority::Expedited, Purpose::Screening), r.expedited_deadline_hours);
        assert_eq!(result_hours(&r, 1, Priority::Routine, Purpose::Recheck), r.recheck_deadline_hours.min(r.single_deadline_hours));
        let mut r2 = r.clone();
        r2.pooled_deadline_hours = 12;
        assert_eq!(result_due(&r2, t(0), 20, Priority::Routine, Purpose::Screening), t(12));
    }

    #[test]
    fn pool_sizes_come_from_the_policy() {
        let mut r = TestingRules::default();
        for k in [1, 5, 10, 20] {
            assert_eq!(check_pool_size(&r, k).unwrap(), k);
        }
        assert_eq!(check_pool_size(&r, 3).unwrap_err().code, "pool_size_not_allowed");
        r.pool_sizes = vec![1, 10];
        assert!(check_pool_size(&r, 20).is_err());
    }

    #[test]
    fn barcodes_and_outcomes_parse() {
        assert_eq!(parse_barcode("b", " hg-0001 ").unwrap(), "HG-0001");
        assert_eq!(parse_barcode("b", "ab").unwrap_err().code, "barcode_invalid");
        assert_eq!(parse_barcode("b", "管子0001").unwrap_err().code, "barcode_invalid");
        assert_eq!(parse_barcode("b", "").unwrap_err().code, "required");
        assert_eq!(Outcome::parse_loose("阳性"), Some(Outcome::Positive));
        assert_eq!(Outcome::parse_loose("Negative"), Some(Outcome::Negative));
        assert_eq!(Outcome::parse_loose("无效"), Some(Outcome::Invalid));
        assert_eq!(Outcome::parse_loose("maybe"), None);
        assert_eq!(Outcome::parse_loose("可疑"), Some(Outcome::Suspect));
        assert_eq!(Outcome::parse_loose("suspect"), Some(Outcome::Suspect));
    }

    #[test]
    fn ct_values_as_lab_exports_write_them() {
        for none in ["", " ", "-", "未检出", "NoCt", "No Ct", "N/A", "Undetermined", ">40", "＞40", "/"] {
            assert_eq!(parse_ct("ct", none).unwrap(), None, "{none:?}");
        }
        assert_eq!(parse_ct("ct", " 27.3 ").unwrap(), Some(27.3));
        assert_eq!(parse_ct("ct", "36").unwrap(), Some(36.0));
        let e = parse_ct("rows[3].ct_n", "abc").unwrap_err();
        assert_eq!((e.field.as_str(), e.code), ("rows[3].ct_n", "ct_invalid"));
    }

    #[test]
    fn pools_of_every_size_fill_then_seal_themselves() {
        for k in [1, 5, 10, 20] {
            let mut tube = Tube::open(k);
            for i in 0..k {
                assert_eq!(tube.state, TubeState::Open, "size {k} after {i}");
                tube = tube.apply(Event::AddMembers(1)).unwrap();
            }
            assert_eq!(tube.state, TubeState::Sealed);
            assert_eq!(tube.apply(Event::AddMembers(1)), Err(TubeError::TubeFull));
        }
        let half = Tube::open(10).apply(Event::AddMembers(3)).unwrap().apply(Event::Seal).unwrap();
        assert_eq!(half.apply(Event::AddMembers(1)), Err(TubeError::TubeSealed));
        assert_eq!(Tube::open(5).apply(Event::Seal), Err(TubeError::TubeEmpty));
        assert_eq!(Tube::open(5).apply(Event::AddMembers(6)), Err(TubeError::TubeFull));
        assert_eq!(Tube::open(5).apply(Event::Result(Outcome::Negative)), Err(TubeError::TubeNotShipped));
    }

    #[test]
    fn statuses_from_results_and_history() {
        assert_eq!(member_status(10, Outcome::Positive), PersonStatus::PendingRecheck);
        assert_eq!(member_status(1, Outcome::Positive), PersonStatus::Positive);
        assert_eq!(member_status(20, Outcome::Invalid), PersonStatus::Invalid);
        // A suspect result re-tests its members, single tube or pool.
        assert_eq!(member_status(1, Outcome::Suspect), PersonStatus::PendingRecheck);
        assert_eq!(member_status(10, Outcome::Suspect), PersonStatus::PendingRecheck);
        let s = |h, k, o| Sample { sampled_at: t(h), pool_size: k, outcome: o };
        assert_eq!(person_status(&[]), None);
        assert_eq!(person_status(&[s(0, 10, None)]), Some(PersonStatus::Pending));
        // Positive pool, re-test taken but not back yet: still pending re-check.
        let pos = s(0, 10, Some(Outcome::Positive));
        assert_eq!(person_status(&[pos, s(5, 1, None)]), Some(PersonStatus::PendingRecheck));
        // The re-test resolves the member either way.
        assert_eq!(person_status(&[pos, s(5, 1, Some(Outcome::Negative))]), Some(PersonStatus::Negative));
        assert_eq!(person_status(&[s(5, 1, Some(Outcome::Positive)), pos]), Some(PersonStatus::Positive));
        // A late negative of an older sample does not hide a newer pending one.
        assert_eq!(person_status(&[s(0, 5, Some(Outcome::Negative)), s(24, 5, None)]), Some(PersonStatus::Pending));
    }

    fn event_s() -> impl Strategy<Value = Event> {
        prop_oneof![
            (0u32..25).prop_map(Event::AddMembers),
            Just(Event::Seal),
            Just(Event::Ship),
            Just(Event::Receive),
            Just(Event::Missing),
            prop_oneof![Just(Outcome::Negative), Just(Outcome::Positive), Just(Outcome::Invalid), Just(Outcome::Suspect)].prop_map(Event::Result),
        ]
    }

    fn rank(s: TubeState) -> u8 {
        match s {
            TubeState::Open => 0,
            TubeState::Sealed => 1,
            TubeState::Shipped => 2,
            TubeState::Received | TubeState::Missing => 3,
            TubeState::Resulted => 4,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// Any sequence of events: members never exceed the pool size, nobody joins a tube that is
        /// not open, states only move forward, a result needs a shipment, and refusals change nothing.
        #[test]
        fn random_events_keep_the_invariants(k in prop_oneof![Just(1u32), Just(5), Just(10), Just(20)], events in proptest::collection::vec(event_s(), 0..40)) {
            let mut tube = Tube::open(k);
            let mut shipped = false;
            for e in events {
                let before = tube;
                match tube.apply(e) {
                    Ok(next) => {
                        prop_assert!(next.members <= next.pool_size);
                        prop_assert!(rank(next.state) >= rank(before.state));
                        prop_assert_eq!(next.pool_size, before.pool_size);
                        if let Event::AddMembers(n) = e {
                            prop_assert_eq!(before.state, TubeState::Open);
                            prop_assert_eq!(next.members, before.members + n);
                            prop_assert_eq!(next.state == TubeState::Sealed, next.members == k);
                        } else {
                            prop_assert_eq!(next.members, before.members);
                        }
                        if next.state != TubeState::Open {
                            prop_assert!(next.members >= 1);
                        }
                        shipped |= next.state == TubeState::Shipped;
                        if next.outcome.is_some() {
                            prop_assert!(shipped);
                            prop_assert_eq!(next.state, TubeState::Resulted);
                        }
                        tube = next;
                    }
                    Err(_) => prop_assert_eq!(tube, before),
                }
            }
        }
    }
}
