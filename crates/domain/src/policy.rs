//! Policy versions: the rule parameters in force from an effective time. Every rule with a
//! number in it reads it from here, never from a constant, and each decision records the
//! version that made it. Missing fields take the defaults (the Nov 2022 policy), so older
//! stored versions keep loading as modules add rules.

use crate::error::FieldError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[derive(Default)]
pub struct PolicyParams {
    pub truck: TruckRules,
    pub testing: TestingRules,
    pub escalation: EscalationRules,
    pub retention: RetentionRules,
    pub codes: CodeRules,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TruckRules {
    /// Validity of a negative test certificate (24, 48 or 72 h).
    pub test_validity_hours: u32,
    /// How far back an itinerary is checked.
    pub itinerary_days: u32,
    /// A pass-through this short does not count as a stay.
    pub pass_through_max_hours: u32,
    /// How long a `closed_loop` crew may stay before it is handed to the township.
    pub closed_loop_limit_hours: u32,
    /// How far ahead a truck must be pre-reported.
    pub pre_report_lead_hours: u32,
    /// Slack after the expected arrival before "no arrival" is a breach.
    pub arrival_slack_minutes: u32,
    /// How long a receiver has to accept a handoff.
    pub handoff_accept_minutes: u32,
    /// How long a checkpoint has to hand a `closed_loop` truck to an escort before the deadline
    /// watcher proposes one on its behalf (the receiver's escort, or a fallback escort).
    pub escort_assign_minutes: u32,
    /// From departure to the exit checkpoint's scan.
    pub exit_window_minutes: u32,
    /// For an `isolate` crew to be taken by a quarantine site or turned back after check-in.
    pub isolate_disposition_minutes: u32,
    /// How long a `pass` crew may stay at the destination (the closed-loop limit is for `closed_loop`).
    pub pass_stay_limit_hours: u32,
    /// Whether `isolate` trucks may be turned back ("where the policy allows").
    pub turn_back_allowed: bool,
    /// A coarse risk-area hit (the stay was recorded less precisely than the area) counts one
    /// level lower; when false it counts at the area's own level.
    pub coarse_hit_one_level_lower: bool,
}

impl Default for TruckRules {
    fn default() -> Self {
        Self {
            test_validity_hours: 48,
            itinerary_days: 7,
            pass_through_max_hours: 4,
            closed_loop_limit_hours: 6,
            pre_report_lead_hours: 24,
            arrival_slack_minutes: 60,
            handoff_accept_minutes: 30,
            escort_assign_minutes: 10,
            exit_window_minutes: 120,
            isolate_disposition_minutes: 120,
            pass_stay_limit_hours: 48,
            turn_back_allowed: true,
            coarse_hit_one_level_lower: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingRules {
    pub pool_sizes: Vec<u32>,
    pub single_deadline_hours: u32,
    pub pooled_deadline_hours: u32,
    pub expedited_deadline_hours: u32,
    pub round_hours: u32,
    /// The single-tube re-test of a positive pool's members.
    pub recheck_deadline_hours: u32,
    /// How long a lab has to accept (receive) a batch handed to it.
    pub batch_accept_minutes: u32,
}

impl Default for TestingRules {
    fn default() -> Self {
        Self {
            pool_sizes: vec![1, 5, 10, 20],
            single_deadline_hours: 6,
            pooled_deadline_hours: 24,
            expedited_deadline_hours: 4,
            round_hours: 24,
            recheck_deadline_hours: 4,
            batch_accept_minutes: 120,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EscalationRules {
    /// Minutes an alert may stay unacknowledged at each rung (custodian → supervisor → command office).
    pub ladder_minutes: Vec<u32>,
}

impl Default for EscalationRules {
    fn default() -> Self {
        Self { ladder_minutes: vec![30, 60] }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionRules {
    /// Days personal data is kept after its purpose ends (PIPL Art. 47).
    pub personal_data_days: u32,
}

impl Default for RetentionRules {
    fn default() -> Self {
        Self { personal_data_days: 30 }
    }
}

/// Person codes (see `code`): look-back, companions, required tests, signed tokens, exposure search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CodeRules {
    /// How far back a person's stays are matched against risk areas.
    pub itinerary_days: u32,
    /// A stay this short does not count.
    pub pass_through_max_hours: u32,
    /// Companion clearance: this many negative samples taken after the exposure…
    pub companion_clear_tests: u32,
    /// …each at least this long after the one before…
    pub companion_clear_hours: u32,
    /// …the first and the last within this many days.
    pub companion_clear_days: u32,
    /// A companion exposure ends by itself after this many days.
    pub companion_days: u32,
    /// Under a test requirement, a sample is due this long after the last one.
    pub required_test_hours: u32,
    /// Validity of the signed QR token a person shows (short: a screenshot soon expires).
    pub token_minutes: u32,
    /// Validity of the link by which a person opens their code.
    pub link_days: u32,
    /// Exposure search: a visit is taken to last this long; visits overlapping a case's are listed.
    pub exposure_window_minutes: u32,
    /// Exposure search: how far back a case's visits are taken.
    pub exposure_days: u32,
}

impl Default for CodeRules {
    fn default() -> Self {
        Self {
            itinerary_days: 7,
            pass_through_max_hours: 4,
            companion_clear_tests: 2,
            companion_clear_hours: 24,
            companion_clear_days: 3,
            companion_days: 14,
            required_test_hours: 72,
            token_minutes: 10,
            link_days: 30,
            exposure_window_minutes: 30,
            exposure_days: 14,
        }
    }
}

impl PolicyParams {
    /// Every out-of-range parameter, named by its dotted path.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut range = |field: &str, v: u32, lo: u32, hi: u32| {
            if v < lo || v > hi {
                errs.push(FieldError::new(field, "out_of_range", format!("取值应在 {lo} 到 {hi} 之间"), format!("must be between {lo} and {hi}")));
            }
        };
        let t = &self.truck;
        range("truck.itinerary_days", t.itinerary_days, 1, 30);
        range("truck.pass_through_max_hours", t.pass_through_max_hours, 0, 24);
        range("truck.closed_loop_limit_hours", t.closed_loop_limit_hours, 1, 24);
        range("truck.pre_report_lead_hours", t.pre_report_lead_hours, 0, 72);
        range("truck.arrival_slack_minutes", t.arrival_slack_minutes, 0, 24 * 60);
        range("truck.handoff_accept_minutes", t.handoff_accept_minutes, 1, 24 * 60);
        range("truck.escort_assign_minutes", t.escort_assign_minutes, 1, 240);
        range("truck.exit_window_minutes", t.exit_window_minutes, 10, 24 * 60);
        range("truck.isolate_disposition_minutes", t.isolate_disposition_minutes, 10, 24 * 60);
        range("truck.pass_stay_limit_hours", t.pass_stay_limit_hours, 1, 168);
        let s = &self.testing;
        range("testing.single_deadline_hours", s.single_deadline_hours, 1, 72);
        range("testing.pooled_deadline_hours", s.pooled_deadline_hours, 1, 72);
        range("testing.expedited_deadline_hours", s.expedited_deadline_hours, 1, 72);
        range("testing.round_hours", s.round_hours, 1, 168);
        range("testing.recheck_deadline_hours", s.recheck_deadline_hours, 1, 72);
        range("testing.batch_accept_minutes", s.batch_accept_minutes, 5, 24 * 60);
        range("retention.personal_data_days", self.retention.personal_data_days, 1, 3650);
        let c = &self.codes;
        range("codes.itinerary_days", c.itinerary_days, 1, 30);
        range("codes.pass_through_max_hours", c.pass_through_max_hours, 0, 24);
        range("codes.companion_clear_tests", c.companion_clear_tests, 1, 5);
        range("codes.companion_clear_hours", c.companion_clear_hours, 0, 168);
        range("codes.companion_clear_days", c.companion_clear_days, 1, 14);
        range("codes.companion_days", c.companion_days, 1, 30);
        range("codes.required_test_hours", c.required_test_hours, 12, 24 * 14);
        range("codes.token_minutes", c.token_minutes, 1, 24 * 60);
        range("codes.link_days", c.link_days, 1, 365);
        range("codes.exposure_window_minutes", c.exposure_window_minutes, 1, 24 * 60);
        range("codes.exposure_days", c.exposure_days, 1, 30);
        if c.companion_clear_tests.saturating_sub(1).saturating_mul(c.companion_clear_hours) > c.companion_clear_days.saturating_mul(24) {
            errs.push(FieldError::new(
                "codes.companion_clear_days",
                "too_short",
                "天数不足以按间隔完成规定次数的检测",
                "too few days for the required tests at the required interval",
            ));
        }
        if ![24, 48, 72].contains(&t.test_validity_hours) {
            errs.push(FieldError::new("truck.test_validity_hours", "not_allowed", "只能为 24、48 或 72 小时", "must be 24, 48 or 72 hours"));
        }
        if s.pool_sizes.is_empty() || s.pool_sizes.iter().any(|k| ![1, 5, 10, 20].contains(k)) {
            errs.push(FieldError::new("testing.pool_sizes", "not_allowed", "混采规格只能为 1、5、10、20", "pool sizes must be among 1, 5, 10, 20"));
        }
        let l = &self.escalation.ladder_minutes;
        if l.is_empty() || l.iter().any(|m| *m == 0 || *m > 24 * 60) {
            errs.push(FieldError::new(
                "escalation.ladder_minutes",
                "out_of_range",
                "每级升级时限应在 1 到 1440 分钟之间",
                "each rung must be 1 to 1440 minutes",
            ));
        }
        errs
    }
}

/// A stored version: the parameters in force from `effective_from` until the next version.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyVersion {
    pub version: i64,
    pub effective_from: DateTime<Utc>,
    pub params: PolicyParams,
    pub note: String,
}

/// The version in force at `at`: the latest whose effective time is not after it.
pub fn in_force(versions: &[PolicyVersion], at: DateTime<Utc>) -> Option<&PolicyVersion> {
    versions.iter().filter(|v| v.effective_from <= at).max_by_key(|v| (v.effective_from, v.version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn defaults_are_valid_and_match_the_domain_notes() {
        let p = PolicyParams::default();
        assert!(p.validate().is_empty());
        assert_eq!(p.truck.test_validity_hours, 48);
        assert_eq!(p.truck.closed_loop_limit_hours, 6);
        assert_eq!(p.testing.pool_sizes, vec![1, 5, 10, 20]);
    }

    #[test]
    fn validation_names_each_bad_field() {
        let mut p = PolicyParams::default();
        p.truck.closed_loop_limit_hours = 25;
        p.truck.test_validity_hours = 36;
        p.testing.pool_sizes = vec![3];
        let fields: Vec<String> = p.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["truck.closed_loop_limit_hours", "truck.test_validity_hours", "testing.pool_sizes"]);
    }

    #[test]
    fn companion_clearance_must_fit_its_days() {
        let mut p = PolicyParams::default();
        assert_eq!((p.codes.companion_clear_tests, p.codes.companion_clear_hours, p.codes.companion_clear_days), (2, 24, 3));
        // Three tests 36 h apart take 72 h: they fit 3 days, not 2.
        p.codes.companion_clear_tests = 3;
        p.codes.companion_clear_hours = 36;
        assert!(p.validate().is_empty());
        p.codes.companion_clear_days = 2;
        let errs: Vec<(String, &str)> = p.validate().into_iter().map(|e| (e.field, e.code)).collect();
        assert_eq!(errs, [("codes.companion_clear_days".to_string(), "too_short")]);
        p.codes.companion_clear_tests = 0;
        assert_eq!(p.validate()[0].field, "codes.companion_clear_tests");
    }

    #[test]
    fn partial_json_takes_defaults_and_unknown_fields_are_refused() {
        let p: PolicyParams = serde_json::from_str(r#"{"truck":{"closed_loop_limit_hours":12}}"#).unwrap();
        assert_eq!(p.truck.closed_loop_limit_hours, 12);
        assert_eq!(p.truck.test_validity_hours, 48);
        assert!(serde_json::from_str::<PolicyParams>(r#"{"truck":{"nope":1}}"#).is_err());
    }

    #[test]
    fn version_in_force_follows_effective_time() {
        let t0 = Utc::now();
        let v = |n, h| PolicyVersion { version: n, effective_from: t0 + Duration::hours(h), params: PolicyParams::default(), note: String::new() };
        let vs = vec![v(1, 0), v(2, 10), v(3, 5)];
        assert_eq!(in_force(&vs, t0 - Duration::hours(1)).map(|v| v.version), None);
        assert_eq!(in_force(&vs, t0 + Duration::hours(6)).map(|v| v.version), Some(3));
        assert_eq!(in_force(&vs, t0 + Duration::hours(10)).map(|v| v.version), Some(2));
    }
}
