//! Times in the facts a code is decided from, serialized for their reader: RFC 3339 text where
//! the format is read by people (JSON: the API, facts stored as JSON), nanoseconds since the
//! epoch where it is not (MessagePack: the code history blocks, where writing each time as text
//! was two-fifths of packing a block). Both are read back from any self-describing format, so
//! blocks packed with text times before still read. Use with `#[serde(with = "…")]`: this
//! module for a time, [`option`] for an optional one, [`vec`] for a list.

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A time serialized as the module says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Time(DateTime<Utc>);

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Nanoseconds reach only from 1677 to 2262: a time outside (a typing error kept as
        // entered) is written as text, which reads back the same.
        match self.0.timestamp_nanos_opt() {
            Some(n) if !s.is_human_readable() => s.serialize_i64(n),
            _ => self.0.serialize(s),
        }
    }
}

struct TimeVisitor;

impl Visitor<'_> for TimeVisitor {
    type Value = Time;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an RFC 3339 time or nanoseconds since 1970")
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Time, E> {
        Ok(Time(DateTime::from_timestamp_nanos(n)))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Time, E> {
        i64::try_from(n).map_err(E::custom).and_then(|n| self.visit_i64(n))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Time, E> {
        DateTime::parse_from_rfc3339(s).map(|t| Time(t.with_timezone(&Utc))).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
        if d.is_human_readable() { DateTime::<Utc>::deserialize(d).map(Time) } else { d.deserialize_any(TimeVisitor) }
    }
}

pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    Time(*t).serialize(s)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    Time::deserialize(d).map(|t| t.0)
}

pub mod option {
    use super::Time;
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        t.map(Time).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<Time>::deserialize(d).map(|t| t.map(|t| t.0))
    }
}

pub mod vec {
    use super::Time;
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &[DateTime<Utc>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ts.iter().map(|t| Time(*t)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DateTime<Utc>>, D::Error> {
        Vec::<Time>::deserialize(d).map(|ts| ts.into_iter().map(|t| t.0).collect())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Facts {
        #[serde(with = "super")]
        at: DateTime<Utc>,
        #[serde(default, with = "super::option")]
        until: Option<DateTime<Utc>>,
        #[serde(default, with = "super::vec")]
        samples: Vec<DateTime<Utc>>,
    }

    /// The same facts with chrono's own serialization: how blocks were packed before.
    #[derive(Serialize)]
    struct Before {
        at: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
        samples: Vec<DateTime<Utc>>,
    }

    /// What the packed facts hold as MessagePack sees them.
    #[derive(Deserialize)]
    struct Raw {
        at: i64,
        until: String,
    }

    #[test]
    fn times_are_text_for_people_numbers_otherwise_and_either_reads_back() {
        let at = Utc.with_ymd_and_hms(2022, 11, 10, 1, 2, 3).unwrap() + chrono::Duration::nanoseconds(123_456_789);
        // Outside the reach of nanoseconds: kept as text even in MessagePack.
        let far = Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0).unwrap();
        let facts = Facts { at, until: Some(far), samples: vec![at, at + chrono::Duration::hours(1)] };
        let json = serde_json::to_value(&facts).unwrap();
        assert_eq!(json["at"], "2022-11-10T01:02:03.123456789Z");
        assert_eq!(json["until"], "9999-12-31T00:00:00Z");
        assert_eq!(serde_json::from_value::<Facts>(json).unwrap(), facts);

        let packed = rmp_serde::to_vec_named(&facts).unwrap();
        let raw: Raw = rmp_serde::from_slice(&packed).unwrap();
        assert_eq!(Some(raw.at), at.timestamp_nanos_opt());
        assert_eq!(raw.until, "9999-12-31T00:00:00Z");
        assert_eq!(rmp_serde::from_slice::<Facts>(&packed).unwrap(), facts);

        let before = rmp_serde::to_vec_named(&Before { at, until: Some(far), samples: facts.samples.clone() }).unwrap();
        assert_eq!(rmp_serde::from_slice::<Facts>(&before).unwrap(), facts);
        let none = rmp_serde::to_vec_named(&Before { at, until: None, samples: vec![] }).unwrap();
        assert_eq!(rmp_serde::from_slice::<Facts>(&none).unwrap(), Facts { at, until: None, samples: vec![] });
    }
}
