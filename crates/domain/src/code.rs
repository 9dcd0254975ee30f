//! Person codes (精准赋码, 健康码): from a person's facts to a colour, the reasons and until when.
//!
//! [`evaluate`] is a pure function of the facts ([`CodeInputs`]), the rules of one policy version
//! ([`CodeRules`]) and the time. Each rule yields a [`Reason`] with its own colour and its own end;
//! the code's colour is the highest among its reasons (green when there is none) and its `until`
//! is the earliest time at which the passing of time alone may change it, so whoever keeps codes
//! must recompute a code at its `until` (and whenever a fact changes).
//!
//! Default rules (docs/domain.md, Codes):
//!
//! | reason | colour | from | ends |
//! | --- | --- | --- | --- |
//! | `positive` | red | latest result positive | a later result |
//! | `confirmed_case` | red | control order | the order's end |
//! | `central_quarantine` | red | control order | the order's end |
//! | `high_risk_stay` | red | an exact stay in a high-risk area in the look-back window | the stay leaves the window |
//! | `risk_area_stay` | yellow | an exact stay in a low/medium area, or any possible (coarse) hit | the stay leaves the window |
//! | `pending_recheck` | yellow | latest result pending re-check | a later result |
//! | `home_isolation` | yellow | control order | the order's end |
//! | `missed_test` | yellow | a test requirement and no sample for `required_test_hours` | a new sample |
//! | `companion` | yellow | an exposure (same venue, same time as a case) | a series of negative samples (below), or `companion_days` |
//!
//! The companion rule is the venue form of the Chengdu rule: back to green after 2 negative tests
//! at least 24 h apart within 3 days. A series clears the exposure when it has
//! `companion_clear_tests` negative samples, the first taken at or after the exposure, each at
//! least `companion_clear_hours` after the one before, the first and the last at most
//! `companion_clear_days` apart; it clears at its last sample. The samples are the person's
//! negative samples ([`CodeInputs::negatives`], and the latest result when it is negative).

use crate::policy::{CodeRules, TruckRules};
use crate::risk::{RiskHit, RiskLevel};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

labelled! {
    /// The code's colour.
    Colour {
        Green = "green", "绿码", "Green";
        Yellow = "yellow", "黄码", "Yellow";
        Red = "red", "红码", "Red";
    }
}

impl Colour {
    /// Green < yellow < red.
    pub fn rank(self) -> u8 {
        match self {
            Colour::Green => 0,
            Colour::Yellow => 1,
            Colour::Red => 2,
        }
    }

    pub fn max(self, other: Colour) -> Colour {
        if other.rank() > self.rank() { other } else { self }
    }

    /// The answer at a venue's door: red barred, yellow restricted, green passes.
    pub fn admission(self) -> Admission {
        match self {
            Colour::Green => Admission::Pass,
            Colour::Yellow => Admission::Restricted,
            Colour::Red => Admission::Barred,
        }
    }
}

labelled! {
    /// What a venue's door answers to a scan.
    Admission {
        Pass = "pass", "通行", "Pass";
        Restricted = "restricted", "限制进入，请登记并听从工作人员安排", "Restricted: register and follow staff instructions";
        Barred = "barred", "禁止进入，请就地等候工作人员", "Barred: wait here for staff";
    }
}

labelled! {
    /// A person's latest test result, as the testing module keeps it.
    ResultStatus {
        Pending = "pending", "待出结果", "Pending";
        Negative = "negative", "阴性", "Negative";
        Positive = "positive", "阳性", "Positive";
        PendingRecheck = "pending_recheck", "待复核", "Pending re-check";
        Invalid = "invalid", "无效", "Invalid";
    }
}

labelled! {
    /// A control order or flag on a person, from a time until a time (or until lifted).
    ControlKind {
        ConfirmedCase = "confirmed_case", "确诊或疑似病例", "Confirmed or suspected case";
        CentralQuarantine = "central_quarantine", "集中隔离", "Central quarantine";
        HomeIsolation = "home_isolation", "居家隔离", "Home isolation";
        Companion = "companion", "时空伴随", "Companion of a case";
        TestRequired = "test_required", "须按时核酸", "Tests required";
    }
}

labelled! {
    /// Why a code has its colour.
    ReasonCode {
        Positive = "positive", "核酸检测阳性", "Positive test result";
        ConfirmedCase = "confirmed_case", "确诊或疑似病例", "Confirmed or suspected case";
        CentralQuarantine = "central_quarantine", "集中隔离中", "In central quarantine";
        HighRiskStay = "high_risk_stay", "7天内到过高风险地区", "Stayed in a high-risk area within the look-back days";
        RiskAreaStay = "risk_area_stay", "7天内有风险地区旅居史", "Risk-area history within the look-back days";
        PendingRecheck = "pending_recheck", "混管阳性，待单管复核", "Pooled positive, awaiting single-tube re-check";
        HomeIsolation = "home_isolation", "居家隔离中", "In home isolation";
        MissedTest = "missed_test", "未按要求完成核酸检测", "A required test was missed";
        Companion = "companion", "与病例同时段到过同一场所（时空伴随）", "At the same venue as a case at the same time (companion)";
    }
}

labelled! {
    /// What a venue is.
    VenueKind {
        Enterprise = "enterprise", "企业", "Enterprise";
        ConstructionSite = "construction_site", "建筑工地", "Construction site";
        Market = "market", "农贸市场/商超", "Market";
        Hotel = "hotel", "宾馆酒店", "Hotel";
        School = "school", "学校", "School";
        Other = "other", "其他场所", "Other";
    }
}

/// The latest result of a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResult {
    pub status: ResultStatus,
    #[serde(with = "crate::serde_time")]
    pub sampled_at: DateTime<Utc>,
    #[serde(default, with = "crate::serde_time::option")]
    pub resulted_at: Option<DateTime<Utc>>,
}

/// A control order or flag; in force on `[from, to)` (no `to`: until lifted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    pub kind: ControlKind,
    #[serde(with = "crate::serde_time")]
    pub from: DateTime<Utc>,
    #[serde(default, with = "crate::serde_time::option")]
    pub to: Option<DateTime<Utc>>,
}

/// Every fact a code is decided from. `hits` are the person's stays matched against the risk
/// areas in force (see `risk::match_itinerary` with [`CodeRules::itinerary`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeInputs {
    pub result: Option<TestResult>,
    pub hits: Vec<RiskHit>,
    pub controls: Vec<Control>,
    /// When the person's negative samples were taken (those the companion rule can use: kept
    /// only for persons with a companion exposure).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "crate::serde_time::vec")]
    pub negatives: Vec<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reason {
    pub code: ReasonCode,
    pub colour: Colour,
    /// When this reason ends by itself (None: when a fact changes).
    #[serde(default, with = "crate::serde_time::option")]
    pub until: Option<DateTime<Utc>>,
    /// What it is about: a division code for stays, a status for results.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// A decided code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Code {
    pub colour: Colour,
    /// Highest colour first, then by reason.
    pub reasons: Vec<Reason>,
    /// The earliest time the code may change by time alone (recompute then).
    pub until: Option<DateTime<Utc>>,
}

impl CodeRules {
    /// The look-back and pass-through limits in the shape the itinerary matcher takes.
    pub fn itinerary(&self) -> TruckRules {
        TruckRules { itinerary_days: self.itinerary_days, pass_through_max_hours: self.pass_through_max_hours, ..TruckRules::default() }
    }
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// When a companion exposure starting at `from` is cleared by the negative samples `samples`
/// (sorted, no repeats): the last sample of the series that completes first (see the module notes).
fn companion_cleared_at(samples: &[DateTime<Utc>], from: DateTime<Utc>, rules: &CodeRules) -> Option<DateTime<Utc>> {
    let gap = Duration::hours(i64::from(rules.companion_clear_hours));
    let span = Duration::days(i64::from(rules.companion_clear_days));
    let need = rules.companion_clear_tests.max(1);
    let mut best: Option<DateTime<Utc>> = None;
    for (i, first) in samples.iter().enumerate().filter(|(_, s)| **s >= from) {
        // Taking the earliest sample allowed each time ends the series soonest.
        let (mut last, mut n) = (*first, 1);
        for s in &samples[i + 1..] {
            if n >= need {
                break;
            }
            if *s >= last + gap {
                last = *s;
                n += 1;
            }
        }
        if n >= need && last - *first <= span {
            best = earliest(best, Some(last));
        }
    }
    best
}

/// Decide a code at `now`.
pub fn evaluate(inputs: &CodeInputs, rules: &CodeRules, now: DateTime<Utc>) -> Code {
    let mut reasons: Vec<Reason> = Vec::new();
    // Boundaries where a rule not yet in force starts to apply (a test deadline, a future order).
    let mut next: Option<DateTime<Utc>> = None;
    // The same reason twice (two orders, two stays in one area) is one reason lasting as long as the longer.
    let push = |reasons: &mut Vec<Reason>, code, colour, until: Option<DateTime<Utc>>, detail: String| match reasons
        .iter_mut()
        .find(|r| r.code == code && r.detail == detail)
    {
        Some(r) => r.until = r.until.zip(until).map(|(a, b)| a.max(b)),
        None => reasons.push(Reason { code, colour, until, detail }),
    };

    if let Some(r) = &inputs.result {
        // A sample dated ahead of `now` starts to count when its time comes.
        if r.sampled_at > now {
            next = earliest(next, Some(r.sampled_at));
        }
        match r.status {
            ResultStatus::Positive => push(&mut reasons, ReasonCode::Positive, Colour::Red, None, String::new()),
            ResultStatus::PendingRecheck => push(&mut reasons, ReasonCode::PendingRecheck, Colour::Yellow, None, String::new()),
            _ => {}
        }
    }

    // The negative samples taken by now; later ones start to count when their time comes.
    let mut negatives: Vec<DateTime<Utc>> = inputs.negatives.clone();
    if let Some(r) = inputs.result.as_ref().filter(|r| r.status == ResultStatus::Negative) {
        negatives.push(r.sampled_at);
    }
    negatives.sort();
    negatives.dedup();
    let (negatives, later): (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) = negatives.into_iter().partition(|s| *s <= now);

    for c in &inputs.controls {
        if c.from > now {
            next = earliest(next, Some(c.from));
            continue;
        }
        if c.to.is_some_and(|t| t <= now) {
            continue;
        }
        match c.kind {
            ControlKind::ConfirmedCase => push(&mut reasons, ReasonCode::ConfirmedCase, Colour::Red, c.to, String::new()),
            ControlKind::CentralQuarantine => push(&mut reasons, ReasonCode::CentralQuarantine, Colour::Red, c.to, String::new()),
            ControlKind::HomeIsolation => push(&mut reasons, ReasonCode::HomeIsolation, Colour::Yellow, c.to, String::new()),
            ControlKind::Companion => {
                let cleared = companion_cleared_at(&negatives, c.from, rules).is_some();
                let ends = earliest(c.to, Some(c.from + Duration::days(i64::from(rules.companion_days))));
                if !cleared && ends.is_none_or(|e| e > now) {
                    push(&mut reasons, ReasonCode::Companion, Colour::Yellow, ends, String::new());
                    next = later.iter().fold(next, |n, s| earliest(n, Some(*s)));
                }
            }
            ControlKind::TestRequired => {
                let last = inputs.result.as_ref().map(|r| r.sampled_at).filter(|s| *s >= c.from && *s <= now).unwrap_or(c.from);
                let due = last + Duration::hours(i64::from(rules.required_test_hours));
                if due <= now {
                    push(&mut reasons, ReasonCode::MissedTest, Colour::Yellow, c.to, String::new());
                } else {
                    next = earliest(next, Some(due));
                    if let Some(t) = c.to {
                        next = earliest(next, Some(t));
                    }
                }
            }
        }
    }

    let days = Duration::days(i64::from(rules.itinerary_days));
    let limit = Duration::hours(i64::from(rules.pass_through_max_hours));
    for h in &inputs.hits {
        // The hit stops counting once less than the pass-through limit of it is left in the window.
        let ends = h.overlap_to + days - limit;
        if ends <= now {
            continue;
        }
        let (code, colour) = if h.level == RiskLevel::High && !h.coarse {
            (ReasonCode::HighRiskStay, Colour::Red)
        } else {
            (ReasonCode::RiskAreaStay, Colour::Yellow)
        };
        push(&mut reasons, code, colour, Some(ends), h.division_code.clone());
    }

    reasons.sort_by(|a, b| b.colour.rank().cmp(&a.colour.rank()).then(a.code.as_str().cmp(b.code.as_str())).then(a.detail.cmp(&b.detail)));
    let colour = reasons.iter().fold(Colour::Green, |c, r| c.max(r.colour));
    let until = reasons.iter().fold(next, |n, r| earliest(n, r.until));
    Code { colour, reasons, until }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2022-11-10T09:00:00+08:00").unwrap().with_timezone(&Utc) + Duration::hours(h)
    }

    fn rules() -> CodeRules {
        CodeRules::default()
    }

    fn result(status: ResultStatus, sampled: i64) -> Option<TestResult> {
        Some(TestResult { status, sampled_at: t(sampled), resulted_at: Some(t(sampled + 6)) })
    }

    fn control(kind: ControlKind, from: i64, to: Option<i64>) -> Control {
        Control { kind, from: t(from), to: to.map(t) }
    }

    fn hit(code: &str, level: RiskLevel, coarse: bool, from: i64, to: i64) -> RiskHit {
        RiskHit {
            stay: 0,
            area_id: Uuid::from_u128(1),
            division_code: code.into(),
            place: None,
            level,
            overlap_from: t(from),
            overlap_to: t(to),
            coarse,
        }
    }

    fn codes(c: &Code) -> Vec<&'static str> {
        c.reasons.iter().map(|r| r.code.as_str()).collect()
    }

    #[test]
    fn nothing_known_is_green_for_ever() {
        let c = evaluate(&CodeInputs::default(), &rules(), t(0));
        assert_eq!((c.colour, c.reasons.len(), c.until), (Colour::Green, 0, None));
    }

    #[test]
    fn results_decide_red_and_yellow() {
        let pos = evaluate(&CodeInputs { result: result(ResultStatus::Positive, -10), ..Default::default() }, &rules(), t(0));
        assert_eq!((pos.colour, codes(&pos), pos.until), (Colour::Red, vec!["positive"], None));
        let re = evaluate(&CodeInputs { result: result(ResultStatus::PendingRecheck, -10), ..Default::default() }, &rules(), t(0));
        assert_eq!((re.colour, codes(&re)), (Colour::Yellow, vec!["pending_recheck"]));
        for s in [ResultStatus::Negative, ResultStatus::Pending, ResultStatus::Invalid] {
            assert_eq!(evaluate(&CodeInputs { result: result(s, -10), ..Default::default() }, &rules(), t(0)).colour, Colour::Green);
        }
    }

    #[test]
    fn control_orders_hold_while_in_force() {
        for (kind, colour) in
            [(ControlKind::ConfirmedCase, Colour::Red), (ControlKind::CentralQuarantine, Colour::Red), (ControlKind::HomeIsolation, Colour::Yellow)]
        {
            let i = CodeInputs { controls: vec![control(kind, 0, Some(120))], ..Default::default() };
            // Before it starts: green, and the code must be recomputed when it starts.
            let before = evaluate(&i, &rules(), t(-1));
            assert_eq!((before.colour, before.until), (Colour::Green, Some(t(0))));
            let during = evaluate(&i, &rules(), t(0));
            assert_eq!((during.colour, during.until, codes(&during)), (colour, Some(t(120)), vec![kind.as_str()]));
            assert_eq!(evaluate(&i, &rules(), t(120)).colour, Colour::Green, "{kind:?} ends at its `to`");
        }
    }

    #[test]
    fn stays_in_risk_areas_until_they_leave_the_window() {
        // 7 days look-back, 4 h pass-through: a stay ending at t(10) counts until t(10) + 7 d - 4 h.
        let end = t(10) + Duration::days(7) - Duration::hours(4);
        let high = CodeInputs { hits: vec![hit("140105", RiskLevel::High, false, 0, 10)], ..Default::default() };
        let c = evaluate(&high, &rules(), t(11));
        assert_eq!((c.colour, codes(&c), c.until), (Colour::Red, vec!["high_risk_stay"], Some(end)));
        assert_eq!(c.reasons[0].detail, "140105");
        assert_eq!(evaluate(&high, &rules(), end - Duration::seconds(1)).colour, Colour::Red);
        assert_eq!(evaluate(&high, &rules(), end).colour, Colour::Green);
        // Low, medium and possible (coarse) high hits: yellow.
        for (level, coarse) in [(RiskLevel::Low, false), (RiskLevel::Medium, false), (RiskLevel::High, true)] {
            let i = CodeInputs { hits: vec![hit("140105", level, coarse, 0, 10)], ..Default::default() };
            let c = evaluate(&i, &rules(), t(11));
            assert_eq!((c.colour, codes(&c)), (Colour::Yellow, vec!["risk_area_stay"]), "{level:?} {coarse}");
        }
        // Two stays in one area: one reason, lasting as long as the later stay.
        let two = CodeInputs {
            hits: vec![hit("140105", RiskLevel::Low, false, 0, 10), hit("140105", RiskLevel::Low, false, 20, 30)],
            ..Default::default()
        };
        let c = evaluate(&two, &rules(), t(31));
        assert_eq!((c.reasons.len(), c.until), (1, Some(t(30) + Duration::days(7) - Duration::hours(4))));
    }

    fn companion_with(negatives: &[i64], latest: Option<i64>) -> CodeInputs {
        CodeInputs {
            controls: vec![control(ControlKind::Companion, 0, None)],
            negatives: negatives.iter().map(|h| t(*h)).collect(),
            result: latest.and_then(|h| result(ResultStatus::Negative, h)),
            hits: vec![],
        }
    }

    #[test]
    fn companions_clear_with_two_negative_tests_a_day_apart_within_three_days() {
        let c = evaluate(&companion_with(&[], None), &rules(), t(1));
        assert_eq!((c.colour, codes(&c), c.until), (Colour::Yellow, vec!["companion"], Some(t(0) + Duration::days(14))));
        // One negative, however late, is not enough.
        for h in [0, 24, 100] {
            assert_eq!(evaluate(&companion_with(&[h], None), &rules(), t(h + 1)).colour, Colour::Yellow, "one negative at +{h} h");
        }
        // Two, 24 h apart: green from the second sample on, not before.
        let two = companion_with(&[2, 26], None);
        assert_eq!(evaluate(&two, &rules(), t(26) - Duration::seconds(1)).colour, Colour::Yellow);
        assert_eq!(evaluate(&two, &rules(), t(26)).colour, Colour::Green);
        // The second sample may be the latest result (the testing module's), the first one kept.
        assert_eq!(evaluate(&companion_with(&[2], Some(26)), &rules(), t(30)).colour, Colour::Green);
        // 23 h apart: not a series; 72 h apart (3 days): still one; 73 h: not.
        assert_eq!(evaluate(&companion_with(&[2, 25], None), &rules(), t(30)).colour, Colour::Yellow);
        assert_eq!(evaluate(&companion_with(&[2, 74], None), &rules(), t(80)).colour, Colour::Green);
        assert_eq!(evaluate(&companion_with(&[2, 75], None), &rules(), t(80)).colour, Colour::Yellow);
        // A sample taken before the exposure does not count.
        assert_eq!(evaluate(&companion_with(&[-1, 23], None), &rules(), t(30)).colour, Colour::Yellow);
        // A sample too close to the one before is skipped: 2, 10, 26 is a series (2 and 26).
        assert_eq!(evaluate(&companion_with(&[2, 10, 26], None), &rules(), t(30)).colour, Colour::Green);
        // A late pair clears even when the first tests were too far apart: 2 … 80, 104.
        assert_eq!(evaluate(&companion_with(&[2, 80, 104], None), &rules(), t(103)).colour, Colour::Yellow);
        assert_eq!(evaluate(&companion_with(&[2, 80, 104], None), &rules(), t(104)).colour, Colour::Green);
        // A sample dated ahead of now counts from its time: the code says to recompute then.
        let ahead = evaluate(&companion_with(&[2, 40], None), &rules(), t(30));
        assert_eq!((ahead.colour, ahead.until), (Colour::Yellow, Some(t(40))));
        // Without tests it ends after `companion_days`.
        assert_eq!(evaluate(&companion_with(&[], None), &rules(), t(14 * 24)).colour, Colour::Green);
        // The rule's figures are the policy's: three tests 12 h apart within one day.
        let three = CodeRules { companion_clear_tests: 3, companion_clear_hours: 12, companion_clear_days: 1, ..rules() };
        assert_eq!(evaluate(&companion_with(&[1, 13], None), &three, t(20)).colour, Colour::Yellow);
        assert_eq!(evaluate(&companion_with(&[1, 13, 25], None), &three, t(25)).colour, Colour::Green);
        assert_eq!(evaluate(&companion_with(&[1, 13, 26], None), &three, t(26)).colour, Colour::Yellow);
    }

    #[test]
    fn a_required_test_missed_turns_the_code_yellow_until_a_sample() {
        let req = vec![control(ControlKind::TestRequired, 0, None)];
        let due = t(72);
        let c = evaluate(&CodeInputs { controls: req.clone(), ..Default::default() }, &rules(), t(71));
        assert_eq!((c.colour, c.until), (Colour::Green, Some(due)));
        let c = evaluate(&CodeInputs { controls: req.clone(), ..Default::default() }, &rules(), due);
        assert_eq!((c.colour, codes(&c)), (Colour::Yellow, vec!["missed_test"]));
        // A sample (whatever its result) restarts the interval.
        let sampled = CodeInputs { controls: req, result: result(ResultStatus::Pending, 70), ..Default::default() };
        let c = evaluate(&sampled, &rules(), t(80));
        assert_eq!((c.colour, c.until), (Colour::Green, Some(t(70 + 72))));
    }

    #[test]
    fn reasons_are_ordered_red_first() {
        let i = CodeInputs {
            result: result(ResultStatus::PendingRecheck, -1),
            hits: vec![hit("140105", RiskLevel::High, false, -20, -10)],
            controls: vec![control(ControlKind::HomeIsolation, -5, Some(50))],
            negatives: vec![],
        };
        let c = evaluate(&i, &rules(), t(0));
        assert_eq!(codes(&c), ["high_risk_stay", "home_isolation", "pending_recheck"]);
        assert_eq!(c.until, Some(t(50)));
    }

    #[test]
    fn admission_follows_colour() {
        assert_eq!(Colour::Red.admission(), Admission::Barred);
        assert_eq!(Colour::Yellow.admission(), Admission::Restricted);
        assert_eq!(Colour::Green.admission(), Admission::Pass);
    }

    fn status_s() -> impl Strategy<Value = ResultStatus> {
        prop::sample::select(ResultStatus::ALL.to_vec())
    }

    fn kind_s() -> impl Strategy<Value = ControlKind> {
        prop::sample::select(ControlKind::ALL.to_vec())
    }

    fn inputs_s() -> impl Strategy<Value = CodeInputs> {
        let result = prop::option::of((status_s(), -400i64..400).prop_map(|(s, h)| TestResult { status: s, sampled_at: t(h), resulted_at: None }));
        let control =
            (kind_s(), -400i64..400, prop::option::of(0i64..400)).prop_map(|(k, f, d)| Control { kind: k, from: t(f), to: d.map(|d| t(f + d + 1)) });
        let level = prop::sample::select(vec![RiskLevel::Low, RiskLevel::Medium, RiskLevel::High]);
        let hit = (level, any::<bool>(), -400i64..0, 1i64..100, 0usize..3).prop_map(|(l, c, f, d, code)| {
            let codes = ["140105", "140427", "1401"];
            hit(codes[code], l, c, f, f + d)
        });
        let negatives = prop::collection::vec((-400i64..400).prop_map(t), 0..5);
        (result, prop::collection::vec(control, 0..5), prop::collection::vec(hit, 0..5), negatives)
            .prop_map(|(result, controls, hits, negatives)| CodeInputs { result, hits, controls, negatives })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// The colour is the highest of the reasons, green exactly when there are none; every
        /// end lies in the future, and the code's `until` is no later than any reason's end.
        #[test]
        fn colour_and_until_follow_the_reasons(i in inputs_s(), now in -100i64..500) {
            let now = t(now);
            let c = evaluate(&i, &rules(), now);
            let max = c.reasons.iter().map(|r| r.colour.rank()).max().unwrap_or(0);
            prop_assert_eq!(c.colour.rank(), max);
            prop_assert_eq!(c.colour == Colour::Green, c.reasons.is_empty());
            for r in &c.reasons {
                prop_assert!(r.until.is_none_or(|u| u > now));
                prop_assert!(c.until.is_some() || r.until.is_none());
                if let (Some(cu), Some(ru)) = (c.until, r.until) {
                    prop_assert!(cu <= ru);
                }
            }
            prop_assert!(c.until.is_none_or(|u| u > now));
        }

        /// Until its `until`, time alone does not change a code.
        #[test]
        fn a_code_holds_until_its_until(i in inputs_s(), now in -100i64..500, later in 0i64..600) {
            let now = t(now);
            let c = evaluate(&i, &rules(), now);
            let at = now + Duration::minutes(later);
            if c.until.is_none_or(|u| at < u) {
                prop_assert_eq!(evaluate(&i, &rules(), at).colour, c.colour);
            }
        }

        /// Facts in another order give the same code; a red order added never lowers the colour.
        #[test]
        fn order_does_not_matter_and_red_facts_only_raise(i in inputs_s(), now in -100i64..500) {
            let now = t(now);
            let c = evaluate(&i, &rules(), now);
            let mut rev = i.clone();
            rev.controls.reverse();
            rev.hits.reverse();
            prop_assert_eq!(&evaluate(&rev, &rules(), now), &c);
            let mut worse = i.clone();
            worse.controls.push(Control { kind: ControlKind::CentralQuarantine, from: now, to: None });
            prop_assert_eq!(evaluate(&worse, &rules(), now).colour, Colour::Red);
            let mut shuffled = i.clone();
            shuffled.negatives.reverse();
            prop_assert_eq!(&evaluate(&shuffled, &rules(), now), &c);
        }

        /// A negative sample more never raises the colour; a companion exposure in force stays
        /// until at least `companion_clear_tests` negatives were taken after it.
        #[test]
        fn negatives_only_clear_and_one_is_never_enough(i in inputs_s(), now in -100i64..500, extra in -400i64..400) {
            let now = t(now);
            let c = evaluate(&i, &rules(), now);
            let mut more = i.clone();
            more.negatives.push(t(extra));
            prop_assert!(evaluate(&more, &rules(), now).colour.rank() <= c.colour.rank());
            let from = now - Duration::hours(1);
            let mut exposed = i.clone();
            exposed.controls = vec![Control { kind: ControlKind::Companion, from, to: None }];
            let after = exposed.negatives.iter().chain(exposed.result.iter().filter(|r| r.status == ResultStatus::Negative).map(|r| &r.sampled_at))
                .filter(|s| **s >= from && **s <= now).count();
            if after < 2 {
                prop_assert!(evaluate(&exposed, &rules(), now).reasons.iter().any(|r| r.code == ReasonCode::Companion));
            }
        }
    }
}
