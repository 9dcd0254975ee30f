//! Validated identities: resident ID numbers (GB 11643), mobile phones and vehicle plates.
//! Parsing normalises the input; `mask` gives the form shown on screen by default.

use crate::error::FieldError;
use chrono::NaiveDate;
use serde::Serialize;
use std::fmt;

/// An 18-character resident identity number with a valid GB 11643 check character.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
pub struct IdNumber(String);

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: &[u8; 11] = b"10X98765432";

impl IdNumber {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let s: String = raw.trim().to_ascii_uppercase();
        let bad = |code, zh: &str, en: &str| FieldError::new(field, code, zh, en);
        if s.chars().count() != 18 {
            return Err(bad("id_number_length", "身份证号应为18位", "an ID number has 18 characters"));
        }
        let b = s.as_bytes();
        if !b[..17].iter().all(u8::is_ascii_digit) || !(b[17].is_ascii_digit() || b[17] == b'X') {
            return Err(bad("id_number_chars", "身份证号只能包含数字和末位X", "an ID number has 17 digits and a final digit or X"));
        }
        let region = &s[..2];
        if !("11"..="82").contains(&region) {
            return Err(bad("id_number_region", "身份证号的地区码无效", "the ID number's region code is invalid"));
        }
        let birth = NaiveDate::parse_from_str(&s[6..14], "%Y%m%d").ok();
        if birth.is_none_or(|d| d < NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or_default()) {
            return Err(bad("id_number_birth", "身份证号中的出生日期无效", "the ID number's date of birth is invalid"));
        }
        if Self::check_char(&b[..17]) != b[17] {
            return Err(bad("id_number_check", "身份证号校验位错误", "the ID number's check character is wrong"));
        }
        Ok(Self(s))
    }

    /// `parse`, for an ID number given now for a person (not one read back from storage): its
    /// date of birth may not be after `today`, the county's date.
    pub fn parse_born_by(field: &str, raw: &str, today: NaiveDate) -> Result<Self, FieldError> {
        let id = Self::parse(field, raw)?;
        if id.birth_date().is_some_and(|d| d > today) {
            return Err(FieldError::new(
                field,
                "id_number_birth_future",
                "身份证号中的出生日期晚于今天",
                "the ID number's date of birth is after today",
            ));
        }
        Ok(id)
    }

    /// The date of birth the number carries (checked by `parse`).
    pub fn birth_date(&self) -> Option<NaiveDate> {
        NaiveDate::parse_from_str(self.0.get(6..14)?, "%Y%m%d").ok()
    }

    /// The GB 11643 check character for the first 17 digits.
    pub fn check_char(first17: &[u8]) -> u8 {
        let sum: u32 = first17.iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
        CHECK[(sum % 11) as usize]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `140427********1234`
    pub fn mask(&self) -> String {
        format!("{}********{}", &self.0[..6], &self.0[14..])
    }
}

impl fmt::Debug for IdNumber {
    // Personal data never reaches logs in full.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdNumber({})", self.mask())
    }
}

/// A mainland mobile number, 11 digits starting with 13–19; `+86`, spaces and dashes are dropped.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Phone(String);

impl Phone {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let mut s: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if let Some(rest) = s.strip_prefix("+86") {
            s = rest.to_string();
        }
        let b = s.as_bytes();
        if b.len() != 11 || !b.iter().all(u8::is_ascii_digit) || b[0] != b'1' || b[1] < b'3' {
            return Err(FieldError::new(field, "phone_format", "手机号应为以1开头的11位数字", "a mobile number has 11 digits starting with 13–19"));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `138****1234`
    pub fn mask(&self) -> String {
        format!("{}****{}", &self.0[..3], &self.0[7..])
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phone({})", self.mask())
    }
}

/// Mask a stored value of a known kind without parsing it again.
pub fn mask_kind(kind: PersonalKind, plain: &str) -> String {
    let chars: Vec<char> = plain.chars().collect();
    let (head, tail) = match kind {
        PersonalKind::IdNumber => (6, 4),
        PersonalKind::Phone => (3, 4),
    };
    if chars.len() <= head + tail {
        return "*".repeat(chars.len());
    }
    let stars = "*".repeat(chars.len() - head - tail);
    format!("{}{}{}", chars[..head].iter().collect::<String>(), stars, chars[chars.len() - tail..].iter().collect::<String>())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonalKind {
    IdNumber,
    Phone,
}

impl PersonalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PersonalKind::IdNumber => "id_number",
            PersonalKind::Phone => "phone",
        }
    }
}

/// Province abbreviations used as the first character of a plate.
const PLATE_PROVINCES: &str = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼";

/// A vehicle plate: ordinary (7 characters), new-energy (8 characters, D/F marker) or trailer (…挂).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Plate(String);

impl<'de> serde::Deserialize<'de> for Plate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Plate::parse("plate", &s).map_err(|e| serde::de::Error::custom(e.en))
    }
}

impl Plate {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let s: String = raw.chars().filter(|c| !c.is_whitespace() && *c != '·' && *c != '-').collect::<String>().to_uppercase();
        let c: Vec<char> = s.chars().collect();
        let bad = || {
            FieldError::new(
                field,
                "plate_format",
                "车牌号格式无效(如 晋D12345、晋DD12345 或 晋D1234挂)",
                "invalid plate (e.g. 晋D12345, 晋DD12345 or 晋D1234挂)",
            )
        };
        if c.len() < 7 || !PLATE_PROVINCES.contains(c[0]) || !c[1].is_ascii_uppercase() {
            return Err(bad());
        }
        let serial_ok = |x: &char| (x.is_ascii_uppercase() && *x != 'I' && *x != 'O') || x.is_ascii_digit();
        let ok = match c.len() {
            7 if c[6] == '挂' => c[2..6].iter().all(serial_ok),
            7 => c[2..].iter().all(serial_ok),
            // New energy: small cars put D/F first then 5 digits; large vehicles 5 digits then D/F.
            8 => {
                let rest = &c[2..];
                (matches!(rest[0], 'D' | 'F') && serial_ok(&rest[1]) && rest[2..].iter().all(char::is_ascii_digit))
                    || (rest[..5].iter().all(char::is_ascii_digit) && matches!(rest[5], 'D' | 'F'))
            }
            _ => false,
        };
        if ok { Ok(Self(s)) } else { Err(bad()) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn with_check(first17: &str) -> String {
        let c = IdNumber::check_char(first17.as_bytes()) as char;
        format!("{first17}{c}")
    }

    #[test]
    fn known_id_numbers() {
        // The standard's own example: 11010519491231002X.
        assert!(IdNumber::parse("id", "11010519491231002X").is_ok());
        assert!(IdNumber::parse("id", "11010519491231002x").is_ok());
        assert_eq!(IdNumber::parse("id", "110105194912310021").unwrap_err().code, "id_number_check");
        assert_eq!(IdNumber::parse("id", "1101051949123100").unwrap_err().code, "id_number_length");
        assert_eq!(IdNumber::parse("id", &with_check("11010519491331002")).unwrap_err().code, "id_number_birth");
        assert_eq!(IdNumber::parse("id", &with_check("99010519491231002")).unwrap_err().code, "id_number_region");
        assert_eq!(IdNumber::parse("id", "11010519491231002X").unwrap().mask(), "110105********002X");
        // Born tomorrow: a valid number, but not of anyone who can be registered today.
        let born = |d: &str| with_check(&format!("110105{d}002"));
        let today = NaiveDate::from_ymd_opt(2022, 11, 10).unwrap();
        assert!(IdNumber::parse("id", &born("20221111")).is_ok());
        assert_eq!(IdNumber::parse_born_by("id", &born("20221111"), today).unwrap_err().code, "id_number_birth_future");
        assert!(IdNumber::parse_born_by("id", &born("20221110"), today).is_ok());
        assert_eq!(IdNumber::parse("id", &born("20221110")).unwrap().birth_date(), Some(today));
    }

    #[test]
    fn phones() {
        assert_eq!(Phone::parse("p", "+86 138-0013-4567").unwrap().as_str(), "13800134567");
        assert_eq!(Phone::parse("p", "13800134567").unwrap().mask(), "138****4567");
        for bad in ["12800134567", "1380013456", "138001345678", "1380013456a", ""] {
            assert_eq!(Phone::parse("p", bad).unwrap_err().code, "phone_format", "{bad}");
        }
    }

    #[test]
    fn plates() {
        for ok in ["晋D12345", "晋d·12345", "晋DD12345", "晋D12345F", "晋D1234挂", "京AF0236"] {
            assert!(Plate::parse("p", ok).is_ok(), "{ok}");
        }
        for bad in ["晋D1234", "X D12345", "晋DI2345", "晋D123456", "晋DA12345", "晋D12345678", "晋112345"] {
            assert!(Plate::parse("p", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mask_kinds() {
        assert_eq!(mask_kind(PersonalKind::Phone, "13800134567"), "138****4567");
        assert_eq!(mask_kind(PersonalKind::IdNumber, "11010519491231002X"), "110105********002X");
    }

    proptest! {
        #[test]
        fn any_valid_body_with_its_check_char_parses(day in 1u32..=28, month in 1u32..=12, year in 1930u32..2020, seq in 0u32..1000) {
            let first17 = format!("140427{year:04}{month:02}{day:02}{seq:03}");
            let id = with_check(&first17);
            prop_assert!(IdNumber::parse("id", &id).is_ok());
            // Any other final character is refused.
            for c in "0123456789X".chars().filter(|c| !id.ends_with(*c)) {
                let wrong = format!("{first17}{c}");
                prop_assert!(IdNumber::parse("id", &wrong).is_err());
            }
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,24}") {
            let _ = IdNumber::parse("id", &s);
            let _ = Phone::parse("p", &s);
            let _ = Plate::parse("p", &s);
        }
    }
}
