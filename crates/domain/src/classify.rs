//! Control class at check-in (分类管控): the policy version in force chooses `pass`,
//! `closed_loop` or `isolate` from the evidence, and says why in both languages.

use crate::policy::TruckRules;
use crate::risk::{RiskHit, RiskLevel};
use crate::trip::ControlClass;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeColour {
    Green,
    Yellow,
    Red,
}

impl CodeColour {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "green" | "绿" | "绿码" => Some(CodeColour::Green),
            "yellow" | "黄" | "黄码" => Some(CodeColour::Yellow),
            "red" | "红" | "红码" => Some(CodeColour::Red),
            _ => None,
        }
    }
}

/// The worst risk-area stay found in the itinerary's look-back window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskExposure {
    None,
    Low,
    Medium,
    High,
}

/// The exposure an itinerary's hits mean. An exact hit counts at its level. A coarse hit (the stay
/// was recorded less precisely than the area) counts one level lower when the policy says so
/// (`coarse_hit_one_level_lower`, the default), so that a stay recorded only as a city with one
/// high-risk compound is escorted, not quarantined; otherwise it counts at the area's level.
pub fn exposure_of(hits: &[RiskHit], rules: &TruckRules) -> RiskExposure {
    let lower = rules.coarse_hit_one_level_lower;
    hits.iter()
        .map(|h| match (h.level, h.coarse && lower) {
            (RiskLevel::High, false) => RiskExposure::High,
            (RiskLevel::High, true) | (RiskLevel::Medium, false) => RiskExposure::Medium,
            (RiskLevel::Medium, true) | (RiskLevel::Low, _) => RiskExposure::Low,
        })
        .max()
        .unwrap_or(RiskExposure::None)
}

/// What the checkpoint saw, for the whole crew (the worst member decides).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub health_code: CodeColour,
    /// Hours since the latest negative test certificate; `None` when there is none.
    pub test_age_hours: Option<u32>,
    pub risk: RiskExposure,
    pub whitelisted: bool,
    pub antigen_positive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub zh: String,
    pub en: String,
}

fn reason(code: &str, zh: impl Into<String>, en: impl Into<String>) -> Reason {
    Reason { code: code.into(), zh: zh.into(), en: en.into() }
}

/// The class and every reason that led to it (the strongest class wins).
pub fn classify(e: &Evidence, rules: &TruckRules) -> (ControlClass, Vec<Reason>) {
    let mut isolate = Vec::new();
    if e.health_code == CodeColour::Red {
        isolate.push(reason("red_code", "健康码为红码", "red health code"));
    }
    if e.risk == RiskExposure::High {
        isolate.push(reason(
            "high_risk_stay",
            format!("{} 天内有高风险地区旅居史", rules.itinerary_days),
            format!("stayed in a high-risk area within {} days", rules.itinerary_days),
        ));
    }
    if e.antigen_positive {
        isolate.push(reason("antigen_positive", "抗原检测阳性", "positive antigen test"));
    }
    if !isolate.is_empty() {
        return (ControlClass::Isolate, isolate);
    }
    let mut closed = Vec::new();
    if e.health_code == CodeColour::Yellow {
        closed.push(reason("yellow_code", "健康码为黄码", "yellow health code"));
    }
    if matches!(e.risk, RiskExposure::Low | RiskExposure::Medium) {
        closed.push(reason(
            "risk_area_stay",
            format!("{} 天内有风险地区旅居史", rules.itinerary_days),
            format!("stayed in a risk area within {} days", rules.itinerary_days),
        ));
    }
    let valid_test = e.test_age_hours.is_some_and(|h| h <= rules.test_validity_hours);
    if e.whitelisted && closed.is_empty() {
        return (ControlClass::Pass, vec![reason("whitelisted", "白名单车辆与人员", "whitelisted vehicle and crew")]);
    }
    if !valid_test {
        closed.push(match e.test_age_hours {
            None => reason("no_test", "无核酸检测证明", "no test certificate"),
            Some(h) => reason(
                "test_expired",
                format!("核酸证明已超过 {} 小时(已 {h} 小时)", rules.test_validity_hours),
                format!("test certificate older than {} h ({h} h)", rules.test_validity_hours),
            ),
        });
    }
    if !closed.is_empty() {
        return (ControlClass::ClosedLoop, closed);
    }
    (
        ControlClass::Pass,
        vec![reason("green_negative", "绿码、核酸阴性证明有效、无风险地区旅居史", "green code, valid negative test, no risk-area stay")],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(code: CodeColour, age: Option<u32>, risk: RiskExposure) -> Evidence {
        Evidence { health_code: code, test_age_hours: age, risk, whitelisted: false, antigen_positive: false }
    }

    #[test]
    fn default_policy_classes() {
        let r = TruckRules::default();
        let class = |e: Evidence| classify(&e, &r).0;
        assert_eq!(class(ev(CodeColour::Green, Some(10), RiskExposure::None)), ControlClass::Pass);
        assert_eq!(class(ev(CodeColour::Green, Some(48), RiskExposure::None)), ControlClass::Pass, "48 h is still valid");
        assert_eq!(class(ev(CodeColour::Green, Some(49), RiskExposure::None)), ControlClass::ClosedLoop);
        assert_eq!(class(ev(CodeColour::Green, None, RiskExposure::None)), ControlClass::ClosedLoop);
        assert_eq!(class(ev(CodeColour::Yellow, Some(1), RiskExposure::None)), ControlClass::ClosedLoop);
        assert_eq!(class(ev(CodeColour::Green, Some(1), RiskExposure::Low)), ControlClass::ClosedLoop);
        assert_eq!(class(ev(CodeColour::Red, Some(1), RiskExposure::None)), ControlClass::Isolate);
        assert_eq!(class(ev(CodeColour::Green, Some(1), RiskExposure::High)), ControlClass::Isolate);
        assert_eq!(class(Evidence { antigen_positive: true, ..ev(CodeColour::Green, Some(1), RiskExposure::None) }), ControlClass::Isolate);
        // Whitelisted: sample and go even without a fresh test, but not past a risk or a red code.
        assert_eq!(class(Evidence { whitelisted: true, ..ev(CodeColour::Green, None, RiskExposure::None) }), ControlClass::Pass);
        assert_eq!(class(Evidence { whitelisted: true, ..ev(CodeColour::Green, None, RiskExposure::Low) }), ControlClass::ClosedLoop);
        assert_eq!(class(Evidence { whitelisted: true, ..ev(CodeColour::Red, None, RiskExposure::None) }), ControlClass::Isolate);
    }

    #[test]
    fn coarse_hits_count_one_level_lower_only_when_the_policy_says_so() {
        let hit = |level, coarse| RiskHit {
            stay: 0,
            area_id: uuid::Uuid::nil(),
            division_code: "140105".into(),
            place: None,
            level,
            overlap_from: chrono::Utc::now(),
            overlap_to: chrono::Utc::now(),
            coarse,
        };
        let lenient = TruckRules::default();
        let strict = TruckRules { coarse_hit_one_level_lower: false, ..TruckRules::default() };
        assert_eq!(exposure_of(&[], &lenient), RiskExposure::None);
        assert_eq!(exposure_of(&[hit(RiskLevel::High, false)], &lenient), RiskExposure::High);
        assert_eq!(exposure_of(&[hit(RiskLevel::High, true)], &lenient), RiskExposure::Medium);
        assert_eq!(exposure_of(&[hit(RiskLevel::Medium, true), hit(RiskLevel::Low, false)], &lenient), RiskExposure::Low);
        assert_eq!(exposure_of(&[hit(RiskLevel::High, true)], &strict), RiskExposure::High);
        assert_eq!(exposure_of(&[hit(RiskLevel::Medium, true)], &strict), RiskExposure::Medium);
        // Old stored policy JSON without the field keeps the lenient reading.
        let old: TruckRules = serde_json::from_str(r#"{"test_validity_hours":48}"#).unwrap();
        assert!(old.coarse_hit_one_level_lower);
    }

    #[test]
    fn the_policy_version_changes_the_answer_and_every_reason_is_given() {
        let r = TruckRules { test_validity_hours: 24, ..TruckRules::default() };
        let (class, why) = classify(&ev(CodeColour::Yellow, Some(30), RiskExposure::Medium), &r);
        assert_eq!(class, ControlClass::ClosedLoop);
        let codes: Vec<&str> = why.iter().map(|w| w.code.as_str()).collect();
        assert_eq!(codes, ["yellow_code", "risk_area_stay", "test_expired"]);
        assert!(why[2].zh.contains("24") && why[2].en.contains("30 h"));
    }
}
