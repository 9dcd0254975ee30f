//! Risk areas (风险地区) and matching an itinerary against them.
//!
//! A risk area is a division (GB/T 2260 code, optionally narrowed to a named place inside it,
//! such as a residential compound) declared at a level from a time until it is lifted. After
//! 11 Nov 2022 the levels are `high` and `low`; `medium` existed before and is still accepted
//! so that older lists load. A high-risk area is lifted after 5 days without new cases; the
//! lifting itself is a decision recorded as the area's `to`, never computed here.
//!
//! An itinerary is a list of [`Stay`]s, each resolved to a division code. [`match_itinerary`]
//! finds every area that was in force somewhere the crew stayed, while they stayed there.
//!
//! **Places** (how a stay's division `S` relates to an area's division `A`):
//!
//! * `A` is `S` or one of its ancestors (an area for 小店区, 太原市 or 山西省; a stay in
//!   太原市小店区 or a township below it): a hit.
//! * `A` is strictly inside `S` (a high-risk township in a county, a stay recorded only at
//!   county level): a **possible** hit, flagged `coarse: true`. The stay was recorded less
//!   precisely than the area, so the crew may or may not have been inside it. This holds at
//!   every level (a stay recorded only as "太原市" with a high-risk area in 小店区 is coarse too):
//!   a vague itinerary must never hide an area. What a coarse hit leads to is the classification
//!   rule's choice, not this module's.
//! * An area with a named `place` (a compound inside `A`) matches stays at `A` or below, always
//!   `coarse: true`: an itinerary records divisions, not compounds, so presence inside the
//!   compound cannot be established from it.
//! * Otherwise (unrelated codes): no hit.
//!
//! **Time** (all intervals half-open, `[from, to)`; an area without `to` is in force until
//! lifted): the overlap of the stay, the area's time in force and the look-back window
//! `[now − itinerary_days, now]` must be **longer than** `pass_through_max_hours`. A stay of
//! 4 h or less (the default limit) is a pass-through and never counts; neither does a longer stay
//! whose time inside the window while the area was in force is 4 h or less. With a limit of 0
//! any non-empty overlap counts.

use crate::error::FieldError;
use crate::policy::TruckRules;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The level of a risk area. Ordered: `Low < Medium < High`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    Low,
    /// Used before 11 Nov 2022; still accepted so that older lists load.
    Medium,
    High,
}

impl RiskLevel {
    pub const ALL: &[RiskLevel] = &[RiskLevel::High, RiskLevel::Medium, RiskLevel::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
        }
    }

    pub fn label(self, zh: bool) -> &'static str {
        match (self, zh) {
            (RiskLevel::Low, true) => "低风险",
            (RiskLevel::Medium, true) => "中风险",
            (RiskLevel::High, true) => "高风险",
            (RiskLevel::Low, false) => "Low",
            (RiskLevel::Medium, false) => "Medium",
            (RiskLevel::High, false) => "High",
        }
    }

    /// `high` / `medium` / `low` in any case, or 高 / 中 / 低 (optionally with 风险 or 风险区/地区).
    pub fn parse(s: &str) -> Option<Self> {
        let t = s.trim();
        let t = ["风险地区", "风险区", "风险"].iter().find_map(|suf| t.strip_suffix(suf)).unwrap_or(t);
        match t.to_ascii_lowercase().as_str() {
            "high" | "高" => Some(RiskLevel::High),
            "medium" | "中" => Some(RiskLevel::Medium),
            "low" | "低" => Some(RiskLevel::Low),
            _ => None,
        }
    }

    /// As `parse`, with a field error naming the accepted values.
    pub fn parse_field(field: &str, s: &str) -> Result<Self, FieldError> {
        if s.trim().is_empty() {
            return Err(FieldError::required(field));
        }
        Self::parse(s).ok_or_else(|| {
            FieldError::new(
                field,
                "risk_level_unknown",
                format!("风险等级“{}”无效，应为 高/中/低(high/medium/low)", s.trim()),
                format!("unknown risk level \"{}\"; use high, medium or low", s.trim()),
            )
        })
    }
}

/// One declared area, as in force (its `to` is when it was or will be lifted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskArea {
    pub id: Uuid,
    pub division_code: String,
    /// A named place inside the division (a residential compound, a market), if the area is narrower.
    pub place: Option<String>,
    pub level: RiskLevel,
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
}

/// One entry of an itinerary: where (a resolved division code) and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stay {
    pub place: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// An area that was in force where and while the crew stayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskHit {
    /// Index of the stay in the itinerary.
    pub stay: usize,
    pub area_id: Uuid,
    pub division_code: String,
    pub place: Option<String>,
    pub level: RiskLevel,
    /// The part of the stay, inside the look-back window, during which the area was in force.
    #[serde(with = "crate::serde_time")]
    pub overlap_from: DateTime<Utc>,
    #[serde(with = "crate::serde_time")]
    pub overlap_to: DateTime<Utc>,
    /// The stay was recorded less precisely than the area (see the module notes): a possible hit.
    pub coarse: bool,
}

/// How a stay's division relates to an area's: `None` (no match), `Some(false)` (a hit),
/// `Some(true)` (a possible, coarse hit).
pub fn place_relation(stay_code: &str, area_code: &str, area_has_place: bool) -> Option<bool> {
    if area_code.is_empty() || stay_code.is_empty() {
        return None;
    }
    if stay_code.starts_with(area_code) {
        Some(area_has_place)
    } else if area_code.starts_with(stay_code) {
        Some(true)
    } else {
        None
    }
}

/// The look-back window `[now − itinerary_days, now]`.
pub fn window(rules: &TruckRules, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    (now - Duration::days(i64::from(rules.itinerary_days)), now)
}

/// Every hit of every stay against every area, in stay order then area order.
pub fn match_itinerary(stays: &[Stay], areas: &[impl std::borrow::Borrow<RiskArea>], rules: &TruckRules, now: DateTime<Utc>) -> Vec<RiskHit> {
    let (start, end) = window(rules, now);
    let limit = Duration::hours(i64::from(rules.pass_through_max_hours));
    let mut out = Vec::new();
    for (i, s) in stays.iter().enumerate() {
        // A pass-through is not a stay at all.
        if s.to - s.from <= limit {
            continue;
        }
        for a in areas.iter().map(std::borrow::Borrow::borrow) {
            let Some(coarse) = place_relation(&s.place, &a.division_code, a.place.is_some()) else {
                continue;
            };
            let lo = s.from.max(a.from).max(start);
            let hi = a.to.map_or(s.to, |t| t.min(s.to)).min(end);
            if hi > lo && hi - lo > limit {
                out.push(RiskHit {
                    stay: i,
                    area_id: a.id,
                    division_code: a.division_code.clone(),
                    place: a.place.clone(),
                    level: a.level,
                    overlap_from: lo,
                    overlap_to: hi,
                    coarse,
                });
            }
        }
    }
    out
}

/// The highest level among the hits; `exact_only` ignores coarse (possible) hits.
pub fn worst(hits: &[RiskHit], exact_only: bool) -> Option<RiskLevel> {
    hits.iter().filter(|h| !exact_only || !h.coarse).map(|h| h.level).max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2022-11-10T09:00:00+08:00").unwrap().with_timezone(&Utc) + Duration::hours(h)
    }

    fn area(n: u128, code: &str, place: Option<&str>, level: RiskLevel, from: i64, to: Option<i64>) -> RiskArea {
        RiskArea { id: Uuid::from_u128(n), division_code: code.into(), place: place.map(Into::into), level, from: t(from), to: to.map(t) }
    }

    fn stay(code: &str, from: i64, to: i64) -> Stay {
        Stay { place: code.into(), from: t(from), to: t(to) }
    }

    fn rules() -> TruckRules {
        TruckRules::default()
    }

    #[test]
    fn levels_parse_in_both_languages() {
        for (s, l) in [
            ("high", RiskLevel::High),
            ("HIGH", RiskLevel::High),
            ("高", RiskLevel::High),
            ("高风险", RiskLevel::High),
            ("高风险区", RiskLevel::High),
        ] {
            assert_eq!(RiskLevel::parse(s), Some(l), "{s}");
        }
        assert_eq!(RiskLevel::parse(" medium "), Some(RiskLevel::Medium));
        assert_eq!(RiskLevel::parse("中风险地区"), Some(RiskLevel::Medium));
        assert_eq!(RiskLevel::parse("低"), Some(RiskLevel::Low));
        assert_eq!(RiskLevel::parse("severe"), None);
        assert_eq!(RiskLevel::parse_field("level", "severe").unwrap_err().code, "risk_level_unknown");
        assert_eq!(RiskLevel::parse_field("level", " ").unwrap_err().code, "required");
        assert!(RiskLevel::Low < RiskLevel::Medium && RiskLevel::Medium < RiskLevel::High);
    }

    #[test]
    fn places_match_by_ancestry() {
        // 140105 小店区 ⊂ 1401 太原市 ⊂ 14 山西省; 140105001 a street in 小店区.
        assert_eq!(place_relation("140105", "140105", false), Some(false));
        assert_eq!(place_relation("140105", "1401", false), Some(false));
        assert_eq!(place_relation("140105", "14", false), Some(false));
        assert_eq!(place_relation("140105001", "140105", false), Some(false));
        // A township area, a stay recorded at county level: possible.
        assert_eq!(place_relation("140105", "140105001", false), Some(true));
        // A named compound: possible wherever the stay is at or below its division.
        assert_eq!(place_relation("140105", "140105", true), Some(true));
        assert_eq!(place_relation("140105001", "140105", true), Some(true));
        // Siblings and strangers.
        assert_eq!(place_relation("140106", "140105", false), None);
        assert_eq!(place_relation("140105001", "140105002", false), None);
        assert_eq!(place_relation("", "14", false), None);
    }

    #[test]
    fn a_stay_under_a_high_area_hits_and_the_worst_level_is_reported() {
        let now = t(24);
        let areas = [area(1, "1401", None, RiskLevel::Low, -48, None), area(2, "140105", None, RiskLevel::High, -48, None)];
        let hits = match_itinerary(&[stay("140105", -20, -2)], &areas, &rules(), now);
        assert_eq!(hits.len(), 2);
        assert_eq!(worst(&hits, true), Some(RiskLevel::High));
        assert!(hits.iter().all(|h| !h.coarse && h.overlap_from == t(-20) && h.overlap_to == t(-2)));
        assert!(match_itinerary(&[stay("140106", -20, -2)], &areas[1..], &rules(), now).is_empty());
        let coarse = match_itinerary(&[stay("1401", -20, -2)], &areas[1..], &rules(), now);
        assert_eq!((coarse.len(), coarse[0].coarse), (1, true));
        assert_eq!(worst(&coarse, true), None);
        assert_eq!(worst(&coarse, false), Some(RiskLevel::High));
    }

    #[test]
    fn pass_through_limit_is_exclusive() {
        let now = t(100);
        let a = [area(1, "140105", None, RiskLevel::High, 0, None)];
        // Exactly 4 h is a pass-through; 4 h and a second is a stay.
        assert!(match_itinerary(&[stay("140105", 10, 14)], &a, &rules(), now).is_empty());
        let s = Stay { place: "140105".into(), from: t(10), to: t(14) + Duration::seconds(1) };
        assert_eq!(match_itinerary(&[s], &a, &rules(), now).len(), 1);
        // A long stay that overlaps the area's time in force by only 4 h does not count.
        assert!(match_itinerary(&[stay("140105", -20, 4)], &a, &rules(), now).is_empty());
        assert_eq!(match_itinerary(&[stay("140105", -20, 5)], &a, &rules(), now).len(), 1);
        // With a limit of 0 any overlap counts, an empty one never.
        let zero = TruckRules { pass_through_max_hours: 0, ..rules() };
        assert_eq!(match_itinerary(&[stay("140105", -1, 1)], &a, &zero, now).len(), 1);
        assert!(match_itinerary(&[stay("140105", -5, 0)], &a, &zero, now).is_empty());
    }

    #[test]
    fn window_edges() {
        let now = t(0);
        let a = [area(1, "140105", None, RiskLevel::High, -1000, None)];
        let days = 7 * 24;
        // Ends exactly at the window's start: outside.
        assert!(match_itinerary(&[stay("140105", -days - 10, -days)], &a, &rules(), now).is_empty());
        // Overlaps the window by exactly 4 h: not enough; by 5 h: a hit clipped to the window.
        assert!(match_itinerary(&[stay("140105", -days - 10, -days + 4)], &a, &rules(), now).is_empty());
        let h = match_itinerary(&[stay("140105", -days - 10, -days + 5)], &a, &rules(), now);
        assert_eq!((h.len(), h[0].overlap_from, h[0].overlap_to), (1, t(-days), t(-days + 5)));
        // The part of a stay after `now` is not counted.
        assert!(match_itinerary(&[stay("140105", -4, 10)], &a, &rules(), now).is_empty());
        let h = match_itinerary(&[stay("140105", -5, 10)], &a, &rules(), now);
        assert_eq!(h[0].overlap_to, now);
    }

    #[test]
    fn lifted_and_future_areas() {
        let now = t(200);
        // Lifted exactly when the stay began: nothing.
        let lifted = [area(1, "140105", None, RiskLevel::High, 0, Some(100))];
        assert!(match_itinerary(&[stay("140105", 100, 150)], &lifted, &rules(), now).is_empty());
        let h = match_itinerary(&[stay("140105", 90, 150)], &lifted, &rules(), now);
        assert_eq!((h[0].overlap_from, h[0].overlap_to), (t(90), t(100)));
        // Declared exactly when the stay ended: nothing.
        let later = [area(2, "140105", None, RiskLevel::High, 150, None)];
        assert!(match_itinerary(&[stay("140105", 100, 150)], &later, &rules(), now).is_empty());
    }

    #[test]
    fn named_places_are_coarse() {
        let a = [area(1, "140105001", Some("某某小区"), RiskLevel::High, -100, None)];
        let h = match_itinerary(&[stay("140105001", -20, -2)], &a, &rules(), t(0));
        assert_eq!((h.len(), h[0].coarse, h[0].place.as_deref()), (1, true, Some("某某小区")));
        assert!(match_itinerary(&[stay("140105002", -20, -2)], &a, &rules(), t(0)).is_empty());
    }

    fn code_s() -> impl Strategy<Value = String> {
        // Codes from a small tree so that ancestry happens often.
        prop::sample::select(vec!["14", "1401", "140105", "140105001", "140105002", "140106", "1402", "15", "150102"]).prop_map(String::from)
    }

    fn stay_s() -> impl Strategy<Value = Stay> {
        (code_s(), -300i64..50, 0i64..100).prop_map(|(c, f, d)| stay(&c, f, f + d))
    }

    fn area_s() -> impl Strategy<Value = RiskArea> {
        (0u128..1000, code_s(), any::<bool>(), 0usize..3, -400i64..50, prop::option::of(0i64..200))
            .prop_map(|(n, c, p, l, f, d)| area(n, &c, p.then_some("小区"), RiskLevel::ALL[l], f, d.map(|d| f + d)))
    }

    fn rules_s() -> impl Strategy<Value = TruckRules> {
        (1u32..15, 0u32..8).prop_map(|(d, p)| TruckRules { itinerary_days: d, pass_through_max_hours: p, ..TruckRules::default() })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Every hit lies inside its stay, its area's time in force and the window, is longer than
        /// the pass-through limit, and names related places.
        #[test]
        fn hits_respect_every_bound(stays in prop::collection::vec(stay_s(), 0..6), areas in prop::collection::vec(area_s(), 0..8), r in rules_s(), now_h in -50i64..60) {
            let now = t(now_h);
            let (start, end) = window(&r, now);
            let limit = Duration::hours(i64::from(r.pass_through_max_hours));
            // Stored areas have distinct ids (generated ones may repeat, even with the same
            // division and place), so that a hit names exactly one area.
            let areas: Vec<RiskArea> = areas.into_iter().enumerate().map(|(i, a)| RiskArea { id: Uuid::from_u128(i as u128), ..a }).collect();
            for h in match_itinerary(&stays, &areas, &r, now) {
                let s = &stays[h.stay];
                let a = areas.iter().find(|a| a.id == h.area_id).unwrap();
                prop_assert!(h.overlap_from >= s.from && h.overlap_to <= s.to);
                prop_assert!(h.overlap_from >= a.from && a.to.is_none_or(|t| h.overlap_to <= t));
                prop_assert!(h.overlap_from >= start && h.overlap_to <= end);
                prop_assert!(h.overlap_to - h.overlap_from > limit);
                prop_assert!(s.to - s.from > limit);
                prop_assert_eq!(Some(h.coarse), place_relation(&s.place, &a.division_code, a.place.is_some()));
            }
        }

        /// A longer look-back or a shorter pass-through limit never loses a hit; the order of
        /// the areas does not matter.
        #[test]
        fn monotone_and_order_free(stays in prop::collection::vec(stay_s(), 0..6), areas in prop::collection::vec(area_s(), 0..8), r in rules_s(), now_h in -50i64..60) {
            let now = t(now_h);
            let key = |h: &RiskHit| (h.stay, h.area_id, h.division_code.clone());
            let base: Vec<_> = match_itinerary(&stays, &areas, &r, now).iter().map(key).collect();
            let wider = TruckRules { itinerary_days: r.itinerary_days + 1, ..r.clone() };
            let w: Vec<_> = match_itinerary(&stays, &areas, &wider, now).iter().map(key).collect();
            prop_assert!(base.iter().all(|k| w.contains(k)));
            if r.pass_through_max_hours > 0 {
                let looser = TruckRules { pass_through_max_hours: r.pass_through_max_hours - 1, ..r.clone() };
                let l: Vec<_> = match_itinerary(&stays, &areas, &looser, now).iter().map(key).collect();
                prop_assert!(base.iter().all(|k| l.contains(k)));
            }
            let mut rev = areas.clone();
            rev.reverse();
            let mut a: Vec<_> = match_itinerary(&stays, &rev, &r, now).iter().map(key).collect();
            let mut b = base.clone();
            a.sort();
            b.sort();
            prop_assert_eq!(a, b);
        }

        /// A hit is found exactly when the overlap computed independently is long enough.
        #[test]
        fn hit_iff_long_enough_overlap(s in stay_s(), a in area_s(), r in rules_s(), now_h in -50i64..60) {
            let now = t(now_h);
            let (start, end) = window(&r, now);
            let limit = Duration::hours(i64::from(r.pass_through_max_hours));
            let related = place_relation(&s.place, &a.division_code, a.place.is_some()).is_some();
            let lo = [s.from, a.from, start].into_iter().max().unwrap();
            let hi = [Some(s.to), a.to, Some(end)].into_iter().flatten().min().unwrap();
            let expect = related && s.to - s.from > limit && hi - lo > limit;
            prop_assert_eq!(match_itinerary(std::slice::from_ref(&s), std::slice::from_ref(&a), &r, now).len(), usize::from(expect));
        }
    }
}
