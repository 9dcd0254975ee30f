//! The freight whitelist (白名单): enterprises, vehicles and drivers approved ahead by the
//! province, the city or the county, each with a validity window, a status with a reason
//! for every change, a review before it counts, and a fraud flag. At check-in the plate, the
//! crew's ID numbers and the cargo owner's credit code are matched against it
//! ([`match_check_in`]).
//!
//! Status machine (every change carries a reason and an actor):
//!
//! ```text
//! pending_review --review approve--> active
//! pending_review --review reject---> rejected
//! active  --suspend-->  suspended
//! suspended --reinstate--> active        (refused while the fraud flag is set)
//! any but revoked --revoke--> revoked    (final: nothing leaves it)
//! ```
//!
//! The fraud flag (冒用/造假) is set with a reason: an active entry becomes suspended at once;
//! a pending entry cannot be approved while flagged; clearing the flag (also with a reason)
//! does not reactivate anything, someone must reinstate it. Rejected and revoked entries
//! never count; a revoked one cannot be flagged or cleared either.
//!
//! An entry counts at check-in only when it is active, not flagged, and `valid_from <= now <
//! valid_until`. Everything else is reported with its reason ([`Problem`]).

use crate::error::FieldError;
use crate::ident::{IdNumber, Phone, Plate};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

labelled! {
    /// What an entry lists.
    EntryKind {
        Enterprise = "enterprise", "企业", "Enterprise";
        Vehicle = "vehicle", "车辆", "Vehicle";
        Driver = "driver", "司机", "Driver";
    }
}

labelled! {
    /// Which level approved the entry. Informational: every entry the county keeps counts the same.
    Tier {
        Province = "province", "省级", "Province";
        City = "city", "市级", "City";
        County = "county", "县级", "County";
    }
}

labelled! {
    Status {
        PendingReview = "pending_review", "待审核", "Pending review";
        Active = "active", "有效", "Active";
        Rejected = "rejected", "审核未通过", "Rejected";
        Suspended = "suspended", "已暂停", "Suspended";
        /// Final.
        Revoked = "revoked", "已撤销", "Revoked";
    }
}

labelled! {
    /// What happened to an entry, one per history line.
    EventKind {
        Create = "create", "新建", "Created";
        Approve = "approve", "审核通过", "Approved";
        Reject = "reject", "审核驳回", "Rejected";
        Suspend = "suspend", "暂停", "Suspended";
        Reinstate = "reinstate", "恢复", "Reinstated";
        Revoke = "revoke", "撤销", "Revoked";
        FlagFraud = "flag_fraud", "标记造假", "Flagged as fraud";
        ClearFraud = "clear_fraud", "解除造假标记", "Fraud flag cleared";
    }
}

impl Status {
    /// Whether the status can still change (only `revoked` is final).
    pub fn is_final(self) -> bool {
        self == Status::Revoked
    }

    /// Rejected and revoked entries are history; the others are live (one live entry per subject).
    pub fn is_live(self) -> bool {
        matches!(self, Status::PendingReview | Status::Active | Status::Suspended)
    }
}

impl Tier {
    /// Accepts the code or either label (for spreadsheets): `county`, `县级`, `县`, `County`.
    pub fn parse_loose(s: &str) -> Option<Tier> {
        let t = s.trim();
        Tier::ALL.iter().copied().find(|x| {
            x.as_str().eq_ignore_ascii_case(t)
                || x.label(true) == t
                || x.label(false).eq_ignore_ascii_case(t)
                || x.label(true).trim_end_matches('级') == t
        })
    }
}

impl EntryKind {
    /// Accepts the code or either label, and 驾驶员 / 车 for the driver and the vehicle.
    pub fn parse_loose(s: &str) -> Option<EntryKind> {
        let t = s.trim();
        match t {
            "驾驶员" | "司乘人员" => return Some(EntryKind::Driver),
            "车" | "货车" => return Some(EntryKind::Vehicle),
            _ => {}
        }
        EntryKind::ALL.iter().copied().find(|x| x.as_str().eq_ignore_ascii_case(t) || x.label(true) == t || x.label(false).eq_ignore_ascii_case(t))
    }
}

// ---------- unified social credit code ----------

const CREDIT_CHARS: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const CREDIT_WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];

/// An enterprise's 18-character unified social credit code (统一社会信用代码) with a valid
/// GB 32100-2015 check character.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct CreditCode(String);

impl CreditCode {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let s: String = raw.trim().to_ascii_uppercase();
        let bad = |code, zh: &str, en: &str| FieldError::new(field, code, zh, en);
        if s.chars().count() != 18 {
            return Err(bad("credit_code_length", "统一社会信用代码应为18位", "a unified social credit code has 18 characters"));
        }
        let b = s.as_bytes();
        if !b.iter().all(|c| CREDIT_CHARS.contains(c)) {
            return Err(bad(
                "credit_code_chars",
                "统一社会信用代码只能包含数字和大写字母(不含 I、O、Z、S、V)",
                "a unified social credit code has digits and capital letters other than I, O, Z, S and V",
            ));
        }
        if !b[2..8].iter().all(u8::is_ascii_digit) {
            return Err(bad("credit_code_region", "统一社会信用代码第3至8位应为行政区划代码", "characters 3 to 8 of the code are a division code"));
        }
        if Self::check_char(&b[..17]) != Some(b[17]) {
            return Err(bad("credit_code_check", "统一社会信用代码校验位错误", "the code's check character is wrong"));
        }
        Ok(Self(s))
    }

    /// The GB 32100 check character for the first 17 characters (`None` if one is not allowed).
    pub fn check_char(first17: &[u8]) -> Option<u8> {
        let mut sum = 0u32;
        for (c, w) in first17.iter().zip(CREDIT_WEIGHTS) {
            let v = CREDIT_CHARS.iter().position(|x| x == c)?;
            sum += u32::try_from(v).ok()? * w;
        }
        let r = (31 - sum % 31) % 31;
        CREDIT_CHARS.get(r as usize).copied()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for CreditCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CreditCode::parse("credit_code", &s).map_err(|e| serde::de::Error::custom(e.en))
    }
}

// ---------- entries ----------

/// Who or what an entry lists.
#[derive(Clone, PartialEq, Eq)]
pub enum Subject {
    Enterprise {
        name: String,
        credit_code: CreditCode,
    },
    /// `holder`: the carrier or owner's name, optional.
    Vehicle {
        plate: Plate,
        holder: String,
    },
    Driver {
        id_number: IdNumber,
        name: String,
        phone: Phone,
    },
}

impl fmt::Debug for Subject {
    // The ID number and the phone print masked (their own Debug does that).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Enterprise { name, credit_code } => write!(f, "Enterprise({name}, {})", credit_code.as_str()),
            Subject::Vehicle { plate, .. } => write!(f, "Vehicle({})", plate.as_str()),
            Subject::Driver { id_number, name, phone } => write!(f, "Driver({name}, {id_number:?}, {phone:?})"),
        }
    }
}

impl Subject {
    pub fn kind(&self) -> EntryKind {
        match self {
            Subject::Enterprise { .. } => EntryKind::Enterprise,
            Subject::Vehicle { .. } => EntryKind::Vehicle,
            Subject::Driver { .. } => EntryKind::Driver,
        }
    }

    /// What the subject is shown as: the credit code, the plate, or the masked ID number.
    pub fn display_key(&self) -> String {
        match self {
            Subject::Enterprise { credit_code, .. } => credit_code.as_str().to_string(),
            Subject::Vehicle { plate, .. } => plate.as_str().to_string(),
            Subject::Driver { id_number, .. } => id_number.mask(),
        }
    }
}

/// A whitelist entry as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: Uuid,
    pub subject: Subject,
    pub tier: Tier,
    pub valid_from: DateTime<Utc>,
    /// Exclusive.
    pub valid_until: DateTime<Utc>,
    pub status: Status,
    pub fraud: bool,
}

/// Why a change was made: 1 to 500 characters of text, required on every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason(String);

impl Reason {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let t = raw.trim();
        if t.is_empty() {
            return Err(FieldError::new(field, "reason_required", "每次变更都须填写原因", "every change needs a reason"));
        }
        if t.chars().count() > 500 {
            return Err(FieldError::new(field, "too_long", "不能超过 500 个字符", "at most 500 characters"));
        }
        if t.chars().any(char::is_control) {
            return Err(FieldError::new(field, "control_chars", "不能包含控制字符", "must not contain control characters"));
        }
        Ok(Self(t.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Check a validity window: it must end after it starts.
pub fn validity(from: DateTime<Utc>, until: DateTime<Utc>) -> Result<(), FieldError> {
    if until <= from {
        return Err(FieldError::new("valid_until", "validity_order", "有效期止应晚于有效期起", "the validity must end after it starts"));
    }
    Ok(())
}

/// A requested change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Approve (→ active) or reject (→ rejected) a pending entry.
    Review { approve: bool },
    /// Move to `active` (reinstate), `suspended` or `revoked`.
    SetStatus(Status),
    /// Set (true) or clear (false) the fraud flag.
    Fraud(bool),
}

/// A refused change: a stable snake_case code and a reason in both languages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub code: &'static str,
    pub zh: String,
    pub en: String,
}

impl Refusal {
    fn new(code: &'static str, zh: impl Into<String>, en: impl Into<String>) -> Self {
        Self { code, zh: zh.into(), en: en.into() }
    }
}

impl From<Refusal> for crate::Error {
    fn from(r: Refusal) -> Self {
        crate::Error::Conflict { code: r.code, zh: r.zh, en: r.en }
    }
}

/// One line of an entry's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub kind: EventKind,
    pub from: Status,
    pub to: Status,
    pub fraud: bool,
    pub reason: Reason,
    pub actor: String,
    pub at: DateTime<Utc>,
}

impl Entry {
    /// Apply a change: the entry after it and the history line, or a refusal. `self` never changes.
    pub fn apply(&self, change: &Change, reason: Reason, actor: &str, at: DateTime<Utc>) -> Result<(Entry, Event), Refusal> {
        use Status::*;
        let s = self.status;
        if s.is_final() {
            return Err(Refusal::new("whitelist_revoked", "该白名单已撤销，不能再变更", "the entry is revoked; it cannot change any more"));
        }
        let (kind, to, fraud) = match change {
            Change::Review { approve } => {
                if s != PendingReview {
                    return Err(Refusal::new(
                        "whitelist_not_pending",
                        format!("只有待审核的条目可以审核(当前：{})", s.label(true)),
                        format!("only an entry pending review can be reviewed (now: {})", s.label(false)),
                    ));
                }
                if *approve && self.fraud {
                    return Err(Refusal::new("whitelist_fraud", "已标记造假，不能审核通过", "the entry is flagged as fraud; it cannot be approved"));
                }
                if *approve { (EventKind::Approve, Active, self.fraud) } else { (EventKind::Reject, Rejected, self.fraud) }
            }
            Change::SetStatus(to) => match (s, *to) {
                (_, Revoked) => (EventKind::Revoke, Revoked, self.fraud),
                (Active, Suspended) => (EventKind::Suspend, Suspended, self.fraud),
                (Suspended, Active) if self.fraud => {
                    return Err(Refusal::new(
                        "whitelist_fraud",
                        "已标记造假，须先解除标记才能恢复",
                        "the entry is flagged as fraud; clear the flag before reinstating it",
                    ));
                }
                (Suspended, Active) => (EventKind::Reinstate, Active, false),
                (PendingReview, Active | Rejected) => {
                    return Err(Refusal::new(
                        "whitelist_review_required",
                        "待审核的条目须通过审核变更",
                        "an entry pending review changes only by review",
                    ));
                }
                (from, to) => {
                    return Err(Refusal::new(
                        "whitelist_transition",
                        format!("不能从“{}”变为“{}”", from.label(true), to.label(true)),
                        format!("cannot go from {} to {}", from.as_str(), to.as_str()),
                    ));
                }
            },
            Change::Fraud(true) => {
                if self.fraud {
                    return Err(Refusal::new("whitelist_fraud_already", "已标记造假", "the entry is already flagged as fraud"));
                }
                let to = if s == Active { Suspended } else { s };
                (EventKind::FlagFraud, to, true)
            }
            Change::Fraud(false) => {
                if !self.fraud {
                    return Err(Refusal::new("whitelist_fraud_not_flagged", "该条目未标记造假", "the entry is not flagged as fraud"));
                }
                (EventKind::ClearFraud, s, false)
            }
        };
        let next = Entry { status: to, fraud, ..self.clone() };
        Ok((next, Event { kind, from: s, to, fraud, reason, actor: actor.to_string(), at }))
    }

    /// Why this entry does not count now, or `None` when it does.
    pub fn problem(&self, now: DateTime<Utc>) -> Option<Problem> {
        if self.fraud {
            return Some(Problem::Fraud);
        }
        match self.status {
            Status::PendingReview => return Some(Problem::PendingReview),
            Status::Rejected => return Some(Problem::Rejected),
            Status::Suspended => return Some(Problem::Suspended),
            Status::Revoked => return Some(Problem::Revoked),
            Status::Active => {}
        }
        if now < self.valid_from {
            return Some(Problem::NotYetValid);
        }
        if now >= self.valid_until {
            return Some(Problem::Expired);
        }
        None
    }
}

// ---------- matching at check-in ----------

labelled! {
    /// Why a subject is not whitelisted.
    Problem {
        NotListed = "not_listed", "不在白名单", "not on the whitelist";
        PendingReview = "pending_review", "待审核", "pending review";
        Rejected = "rejected", "审核未通过", "rejected in review";
        Suspended = "suspended", "已暂停", "suspended";
        Revoked = "revoked", "已撤销", "revoked";
        Fraud = "fraud", "已标记造假", "flagged as fraud";
        NotYetValid = "not_yet_valid", "尚未生效", "not valid yet";
        Expired = "expired", "已过有效期", "expired";
    }
}

/// An entry found for a subject, and why it does not count (if it does not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub entry_id: Uuid,
    pub tier: Tier,
    pub status: Status,
    pub fraud: bool,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    pub problem: Option<Problem>,
}

/// The result for one subject presented at check-in (the plate, one driver, the enterprise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectMatch {
    pub kind: EntryKind,
    /// The plate, the credit code, or the masked ID number.
    pub key: String,
    /// The entry that counts, if one does.
    pub entry_id: Option<Uuid>,
    pub ok: bool,
    /// Why not, when not ok: the most telling problem among the candidates, or `not_listed`.
    pub problem: Option<Problem>,
    pub reason_zh: Option<String>,
    pub reason_en: Option<String>,
    pub candidates: Vec<Candidate>,
}

/// The whitelist's answer at check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WhitelistMatch {
    /// True when something was presented and every presented subject has an entry that counts now.
    pub whitelisted: bool,
    pub vehicle: Option<SubjectMatch>,
    pub drivers: Vec<SubjectMatch>,
    pub enterprise: Option<SubjectMatch>,
    /// Entries that count now (the ids of the `ok` subjects).
    pub matched: Vec<Uuid>,
    pub at: DateTime<Utc>,
}

/// How bad a problem is, for choosing the one to show: a fraud flag beats everything.
fn severity(p: Problem) -> u8 {
    match p {
        Problem::Fraud => 7,
        Problem::Revoked => 6,
        Problem::Suspended => 5,
        Problem::Rejected => 4,
        Problem::Expired => 3,
        Problem::NotYetValid => 2,
        Problem::PendingReview => 1,
        Problem::NotListed => 0,
    }
}

fn match_one<'a>(kind: EntryKind, key: String, found: impl Iterator<Item = &'a Entry>, now: DateTime<Utc>) -> SubjectMatch {
    let candidates: Vec<Candidate> = found
        .map(|e| Candidate {
            entry_id: e.id,
            tier: e.tier,
            status: e.status,
            fraud: e.fraud,
            valid_from: e.valid_from,
            valid_until: e.valid_until,
            problem: e.problem(now),
        })
        .collect();
    let good = candidates.iter().find(|c| c.problem.is_none()).map(|c| c.entry_id);
    // A fraud flag on any entry of the subject refuses it, even if another entry is fine.
    let fraud = candidates.iter().any(|c| c.fraud);
    let problem = if fraud {
        Some(Problem::Fraud)
    } else if good.is_some() {
        None
    } else {
        Some(candidates.iter().filter_map(|c| c.problem).max_by_key(|p| severity(*p)).unwrap_or(Problem::NotListed))
    };
    let ok = problem.is_none();
    SubjectMatch {
        kind,
        key,
        entry_id: if ok { good } else { None },
        ok,
        problem,
        reason_zh: problem.map(|p| format!("{}：{}", kind.label(true), p.label(true))),
        reason_en: problem.map(|p| format!("{}: {}", kind.label(false), p.label(false))),
        candidates,
    }
}

/// Match what is presented at check-in against the entries found for it (the caller may pass
/// more; only those of the presented subjects are looked at).
pub fn match_check_in(
    plate: Option<&Plate>,
    driver_id_numbers: &[IdNumber],
    enterprise: Option<&CreditCode>,
    entries: &[Entry],
    now: DateTime<Utc>,
) -> WhitelistMatch {
    let vehicle = plate.map(|p| {
        let found = entries.iter().filter(|e| matches!(&e.subject, Subject::Vehicle { plate, .. } if plate == p));
        match_one(EntryKind::Vehicle, p.as_str().to_string(), found, now)
    });
    let mut seen = Vec::new();
    let drivers: Vec<SubjectMatch> = driver_id_numbers
        .iter()
        .filter(|id| {
            let new = !seen.contains(id);
            seen.push(id);
            new
        })
        .map(|id| {
            let found = entries.iter().filter(|e| matches!(&e.subject, Subject::Driver { id_number, .. } if id_number == id));
            match_one(EntryKind::Driver, id.mask(), found, now)
        })
        .collect();
    let enterprise = enterprise.map(|c| {
        let found = entries.iter().filter(|e| matches!(&e.subject, Subject::Enterprise { credit_code, .. } if credit_code == c));
        match_one(EntryKind::Enterprise, c.as_str().to_string(), found, now)
    });
    let all: Vec<&SubjectMatch> = vehicle.iter().chain(drivers.iter()).chain(enterprise.iter()).collect();
    let whitelisted = !all.is_empty() && all.iter().all(|m| m.ok);
    let matched = all.iter().filter_map(|m| m.entry_id).collect();
    WhitelistMatch { whitelisted, vehicle, drivers, enterprise, matched, at: now }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use proptest::prelude::*;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2022-11-10T00:00:00Z").unwrap().with_timezone(&Utc) + Duration::hours(h)
    }

    fn id(first17: &str) -> IdNumber {
        let c = IdNumber::check_char(first17.as_bytes()) as char;
        IdNumber::parse("id", &format!("{first17}{c}")).unwrap()
    }

    fn entry(subject: Subject, status: Status) -> Entry {
        Entry { id: Uuid::now_v7(), subject, tier: Tier::County, valid_from: t(0), valid_until: t(24 * 30), status, fraud: false }
    }

    fn vehicle(p: &str, status: Status) -> Entry {
        entry(Subject::Vehicle { plate: Plate::parse("p", p).unwrap(), holder: String::new() }, status)
    }

    fn driver(i: &IdNumber, status: Status) -> Entry {
        entry(Subject::Driver { id_number: i.clone(), name: "张三".into(), phone: Phone::parse("p", "13800134567").unwrap() }, status)
    }

    fn reason() -> Reason {
        Reason::parse("reason", "核查").unwrap()
    }

    #[test]
    fn credit_codes() {
        for ok in ["91350100M000100Y43", "91110000802100433B", "911101085923662400", "91440300708461136t"] {
            assert!(CreditCode::parse("c", ok).is_ok(), "{ok}");
        }
        assert_eq!(CreditCode::parse("c", "91350100M000100Y44").unwrap_err().code, "credit_code_check");
        assert_eq!(CreditCode::parse("c", "91350100M000100Y4").unwrap_err().code, "credit_code_length");
        assert_eq!(CreditCode::parse("c", "91350100M000100YI3").unwrap_err().code, "credit_code_chars");
        assert_eq!(CreditCode::parse("c", "91A50100M000100Y43").unwrap_err().code, "credit_code_region");
        assert_eq!(CreditCode::check_char(b"91350100M000100Y4"), Some(b'3'));
    }

    #[test]
    fn loose_labels() {
        assert_eq!(Tier::parse_loose("县级"), Some(Tier::County));
        assert_eq!(Tier::parse_loose("市"), Some(Tier::City));
        assert_eq!(Tier::parse_loose("Province"), Some(Tier::Province));
        assert_eq!(Tier::parse_loose("乡级"), None);
        assert_eq!(EntryKind::parse_loose("驾驶员"), Some(EntryKind::Driver));
        assert_eq!(EntryKind::parse_loose("企业"), Some(EntryKind::Enterprise));
        assert_eq!(EntryKind::parse_loose("Vehicle"), Some(EntryKind::Vehicle));
        assert_eq!(EntryKind::parse_loose("bus"), None);
    }

    #[test]
    fn reasons_and_validity() {
        assert_eq!(Reason::parse("reason", "  ").unwrap_err().code, "reason_required");
        assert_eq!(Reason::parse("reason", &"x".repeat(501)).unwrap_err().code, "too_long");
        assert!(validity(t(1), t(1)).is_err());
        assert!(validity(t(1), t(2)).is_ok());
    }

    #[test]
    fn review_and_status_transitions() {
        let e = vehicle("晋D12345", Status::PendingReview);
        let (a, ev) = e.apply(&Change::Review { approve: true }, reason(), "commander", t(1)).unwrap();
        assert_eq!((a.status, ev.kind, ev.from, ev.to), (Status::Active, EventKind::Approve, Status::PendingReview, Status::Active));
        let (r, _) = e.apply(&Change::Review { approve: false }, reason(), "c", t(1)).unwrap();
        assert_eq!(r.status, Status::Rejected);
        assert_eq!(e.apply(&Change::SetStatus(Status::Active), reason(), "c", t(1)).unwrap_err().code, "whitelist_review_required");
        assert_eq!(a.apply(&Change::Review { approve: true }, reason(), "c", t(1)).unwrap_err().code, "whitelist_not_pending");
        let (s, _) = a.apply(&Change::SetStatus(Status::Suspended), reason(), "c", t(2)).unwrap();
        assert_eq!(s.status, Status::Suspended);
        assert_eq!(s.apply(&Change::SetStatus(Status::Suspended), reason(), "c", t(2)).unwrap_err().code, "whitelist_transition");
        let (back, ev) = s.apply(&Change::SetStatus(Status::Active), reason(), "c", t(3)).unwrap();
        assert_eq!((back.status, ev.kind), (Status::Active, EventKind::Reinstate));
        assert_eq!(r.apply(&Change::SetStatus(Status::Active), reason(), "c", t(3)).unwrap_err().code, "whitelist_transition");
        let (gone, _) = r.apply(&Change::SetStatus(Status::Revoked), reason(), "c", t(3)).unwrap();
        assert_eq!(gone.apply(&Change::SetStatus(Status::Active), reason(), "c", t(4)).unwrap_err().code, "whitelist_revoked");
        assert_eq!(gone.apply(&Change::Fraud(true), reason(), "c", t(4)).unwrap_err().code, "whitelist_revoked");
    }

    #[test]
    fn fraud_suspends_and_blocks_until_cleared() {
        let a = vehicle("晋D12345", Status::Active);
        let (f, ev) = a.apply(&Change::Fraud(true), reason(), "c", t(1)).unwrap();
        assert_eq!((f.status, f.fraud, ev.kind), (Status::Suspended, true, EventKind::FlagFraud));
        assert_eq!(f.apply(&Change::Fraud(true), reason(), "c", t(1)).unwrap_err().code, "whitelist_fraud_already");
        assert_eq!(f.apply(&Change::SetStatus(Status::Active), reason(), "c", t(1)).unwrap_err().code, "whitelist_fraud");
        let (c, _) = f.apply(&Change::Fraud(false), reason(), "c", t(2)).unwrap();
        assert_eq!((c.status, c.fraud), (Status::Suspended, false));
        assert_eq!(c.apply(&Change::Fraud(false), reason(), "c", t(2)).unwrap_err().code, "whitelist_fraud_not_flagged");
        assert_eq!(c.apply(&Change::SetStatus(Status::Active), reason(), "c", t(3)).unwrap().0.status, Status::Active);
        // A pending entry stays pending when flagged, and cannot be approved.
        let p = vehicle("晋D12345", Status::PendingReview);
        let (pf, _) = p.apply(&Change::Fraud(true), reason(), "c", t(1)).unwrap();
        assert_eq!(pf.status, Status::PendingReview);
        assert_eq!(pf.apply(&Change::Review { approve: true }, reason(), "c", t(1)).unwrap_err().code, "whitelist_fraud");
        assert_eq!(pf.apply(&Change::Review { approve: false }, reason(), "c", t(1)).unwrap().0.status, Status::Rejected);
    }

    #[test]
    fn matching_counts_only_active_valid_unflagged_entries() {
        let d1 = id("14042719800101123");
        let d2 = id("14042719850505456");
        let plate = Plate::parse("p", "晋D12345").unwrap();
        let code = CreditCode::parse("c", "91350100M000100Y43").unwrap();
        let ent = entry(Subject::Enterprise { name: "太行钢贸".into(), credit_code: code.clone() }, Status::Active);
        let entries = vec![vehicle("晋D12345", Status::Active), driver(&d1, Status::Active), driver(&d2, Status::Suspended), ent];
        let m = match_check_in(Some(&plate), std::slice::from_ref(&d1), Some(&code), &entries, t(5));
        assert!(m.whitelisted);
        assert_eq!(m.matched.len(), 3);
        assert_eq!(m.drivers[0].key, d1.mask());
        let m = match_check_in(Some(&plate), &[d1.clone(), d2.clone()], None, &entries, t(5));
        assert!(!m.whitelisted);
        assert_eq!(m.drivers[1].problem, Some(Problem::Suspended));
        assert!(m.drivers[1].reason_en.as_deref().unwrap_or("").contains("suspended"));
        // Expiry and not yet valid.
        let m = match_check_in(Some(&plate), &[], None, &entries, t(24 * 30));
        assert_eq!(m.vehicle.as_ref().and_then(|v| v.problem), Some(Problem::Expired));
        let m = match_check_in(Some(&plate), &[], None, &entries, t(-1));
        assert_eq!(m.vehicle.as_ref().and_then(|v| v.problem), Some(Problem::NotYetValid));
        // Not listed, and nothing presented.
        let other = Plate::parse("p", "晋D54321").unwrap();
        let m = match_check_in(Some(&other), &[], None, &entries, t(5));
        assert_eq!(m.vehicle.as_ref().and_then(|v| v.problem), Some(Problem::NotListed));
        assert!(!match_check_in(None, &[], None, &entries, t(5)).whitelisted);
        // A revoked old entry beside an active new one: the new one counts.
        let mut two = entries.clone();
        two.push(vehicle("晋D12345", Status::Revoked));
        assert!(match_check_in(Some(&plate), &[], None, &two, t(5)).whitelisted);
        // A fraud flag on any entry of the subject refuses it.
        let mut fr = vehicle("晋D12345", Status::Rejected);
        fr.fraud = true;
        two.push(fr);
        let m = match_check_in(Some(&plate), &[], None, &two, t(5));
        assert!(!m.whitelisted);
        assert_eq!(m.vehicle.as_ref().and_then(|v| v.problem), Some(Problem::Fraud));
    }

    fn any_change() -> impl Strategy<Value = Change> {
        prop_oneof![
            any::<bool>().prop_map(|approve| Change::Review { approve }),
            prop::sample::select(Status::ALL.to_vec()).prop_map(Change::SetStatus),
            any::<bool>().prop_map(Change::Fraud),
        ]
    }

    proptest! {
        /// Over any sequence of changes: nothing leaves `revoked`; every accepted change yields
        /// a history line with its reason, actor and the right from/to; a refused change leaves
        /// the entry as it was; an entry that counts is active and unflagged.
        #[test]
        fn status_machine_holds(changes in prop::collection::vec((any_change(), "[a-z\u{4e00}-\u{4e10}]{1,8}"), 0..40)) {
            let mut e = vehicle("晋D12345", Status::PendingReview);
            let mut history: Vec<Event> = Vec::new();
            for (i, (c, why)) in changes.iter().enumerate() {
                let reason = Reason::parse("reason", why).unwrap();
                let at = t(i as i64);
                match e.apply(c, reason.clone(), "someone", at) {
                    Ok((next, ev)) => {
                        prop_assert!(!e.status.is_final(), "a change out of revoked was accepted");
                        prop_assert_eq!(ev.from, e.status);
                        prop_assert_eq!(ev.to, next.status);
                        prop_assert_eq!(&ev.reason, &reason);
                        prop_assert!(!ev.reason.as_str().is_empty());
                        prop_assert_eq!(ev.actor.as_str(), "someone");
                        if next.fraud && !e.fraud {
                            prop_assert!(next.status != Status::Active);
                        }
                        if e.status == Status::PendingReview && next.status != Status::PendingReview {
                            let by_review_or_revoke = matches!(c, Change::Review { .. } | Change::SetStatus(Status::Revoked));
                            prop_assert!(by_review_or_revoke);
                        }
                        history.push(ev);
                        e = next;
                    }
                    Err(r) => {
                        prop_assert!(!r.code.is_empty() && !r.zh.is_empty() && !r.en.is_empty());
                    }
                }
                if e.problem(t(1)).is_none() {
                    prop_assert!(e.status == Status::Active && !e.fraud);
                }
            }
            // The history is a chain: each line starts where the one before ended.
            for w in history.windows(2) {
                prop_assert_eq!(w[0].to, w[1].from);
            }
            if let Some(i) = history.iter().position(|h| h.to == Status::Revoked) {
                prop_assert_eq!(i, history.len() - 1, "nothing happens after a revocation");
            }
        }

        #[test]
        fn credit_code_parser_never_panics_and_accepts_its_own_check(body in "[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{9}", junk in "\\PC{0,24}") {
            let c = CreditCode::check_char(body.as_bytes()).unwrap() as char;
            let code = format!("{body}{c}");
            prop_assert!(CreditCode::parse("c", &code).is_ok());
            for other in "0123456789ABCDEFGHJKLMNPQRTUWXY".chars().filter(|x| *x != c) {
                let wrong = format!("{body}{other}");
                prop_assert!(CreditCode::parse("c", &wrong).is_err());
            }
            let _ = CreditCode::parse("c", &junk);
        }
    }
}
