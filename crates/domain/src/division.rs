//! China's administrative divisions (GB/T 2260 and the NBS statistical codes), from the
//! project's derived copy `data/divisions.tsv`, with look-up by code and by name.
//!
//! A code's prefix is its ancestor (140427101 百尺镇 ⊂ 140427 壶关县 ⊂ 1404 长治市 ⊂ 14 山西省),
//! which is why a division code doubles as the jurisdiction path of every scoped row.

use crate::error::FieldError;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

const DATA: &str = include_str!("../../../data/divisions.tsv");

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Province,
    City,
    County,
    Township,
    Village,
}

impl Level {
    pub fn of_len(len: usize) -> Option<Level> {
        Some(match len {
            2 => Level::Province,
            4 => Level::City,
            6 => Level::County,
            9 => Level::Township,
            12 => Level::Village,
            _ => return None,
        })
    }

    pub fn code_len(self) -> usize {
        match self {
            Level::Province => 2,
            Level::City => 4,
            Level::County => 6,
            Level::Township => 9,
            Level::Village => 12,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Province => "province",
            Level::City => "city",
            Level::County => "county",
            Level::Township => "township",
            Level::Village => "village",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Division {
    pub code: &'static str,
    pub name: &'static str,
    pub level: Level,
}

pub struct Divisions {
    /// Sorted by code, so that every subtree is one contiguous run.
    list: Vec<Division>,
    by_code: HashMap<&'static str, usize>,
    /// Full names and short names (suffix dropped) → indexes into `list`.
    by_name: HashMap<String, Vec<usize>>,
}

/// Suffixes dropped to form the short names people write ("山西" for 山西省， "和平社区" for
/// 和平社区居委会), each with what may stand in its place: a village committee (百尺村委会) is
/// written as its village, "百尺村", as well as "百尺".
const SUFFIXES: &[(&str, &str)] = &[
    ("特别行政区", ""),
    ("维吾尔自治区", ""),
    ("壮族自治区", ""),
    ("回族自治区", ""),
    ("自治区", ""),
    ("自治州", ""),
    ("自治县", ""),
    ("自治旗", ""),
    ("地区", ""),
    ("街道办事处", ""),
    ("办事处", ""),
    ("街道", ""),
    ("社区居委会", ""),
    ("社区居民委员会", ""),
    ("居委会", ""),
    ("居民委员会", ""),
    ("村委会", "村"),
    ("村民委员会", "村"),
    ("省", ""),
    ("市", ""),
    ("区", ""),
    ("县", ""),
    ("镇", ""),
    ("乡", ""),
    ("盟", ""),
    ("旗", ""),
];

fn short_names(name: &str) -> impl Iterator<Item = Cow<'_, str>> {
    SUFFIXES
        .iter()
        .filter_map(move |(s, keep)| name.strip_suffix(s).filter(|rest| rest.chars().count() >= 2).map(|rest| (rest, *keep)))
        .flat_map(|(rest, keep)| std::iter::once(Cow::Borrowed(rest)).chain((!keep.is_empty()).then(|| Cow::Owned(format!("{rest}{keep}")))))
}

impl Divisions {
    /// The whole country, parsed once.
    pub fn get_all() -> &'static Divisions {
        static ALL: OnceLock<Divisions> = OnceLock::new();
        ALL.get_or_init(|| Divisions::parse(DATA))
    }

    fn parse(data: &'static str) -> Divisions {
        let mut list: Vec<Division> = data
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (code, name) = l.split_once('\t')?;
                Some(Division { code, name, level: Level::of_len(code.len())? })
            })
            .collect();
        list.sort_by_key(|d| d.code);
        let by_code = list.iter().enumerate().map(|(i, d)| (d.code, i)).collect();
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, d) in list.iter().enumerate() {
            by_name.entry(d.name.to_string()).or_default().push(i);
            for s in short_names(d.name) {
                let v = by_name.entry(s.into_owned()).or_default();
                if !v.contains(&i) {
                    v.push(i);
                }
            }
        }
        Divisions { list, by_code, by_name }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn get(&self, code: &str) -> Option<&Division> {
        self.by_code.get(code).map(|&i| &self.list[i])
    }

    /// The nearest existing ancestor (some cities have no county-level parent row in the source).
    pub fn parent(&self, code: &str) -> Option<&Division> {
        [9usize, 6, 4, 2].iter().filter(|&&n| n < code.len()).find_map(|&n| self.get(&code[..n]))
    }

    /// Ancestors from the province down, not including the division itself.
    pub fn ancestors(&self, code: &str) -> Vec<&Division> {
        let mut out: Vec<&Division> = std::iter::successors(self.parent(code), |d| self.parent(d.code)).collect();
        out.reverse();
        out
    }

    /// Every division under `code` (not including it), in code order.
    pub fn descendants(&self, code: &str) -> &[Division] {
        let start = self.list.partition_point(|d| d.code <= code);
        let len = self.list[start..].partition_point(|d| d.code.starts_with(code));
        &self.list[start..start + len]
    }

    /// The divisions directly under `code`.
    pub fn children<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a Division> + 'a {
        self.descendants(code).iter().filter(move |d| self.parent(d.code).is_some_and(|p| p.code == code))
    }

    /// "山西省长治市壶关县百尺镇"; levels named "市辖区" etc. are kept as the source has them.
    pub fn full_name(&self, code: &str) -> String {
        let mut s: String = self.ancestors(code).iter().map(|d| d.name).collect();
        if let Some(d) = self.get(code) {
            s.push_str(d.name);
        }
        s
    }

    /// Find divisions by code ("140105") or by a name written with or without its parents
    /// ("太原市小店区", "小店区", "山西小店"). Several results mean the name is ambiguous.
    pub fn lookup(&self, query: &str) -> Vec<&Division> {
        let q: String = query.chars().filter(|c| !c.is_whitespace()).collect();
        if q.is_empty() {
            return Vec::new();
        }
        if q.bytes().all(|b| b.is_ascii_digit()) {
            return self.get(&q).into_iter().collect();
        }
        let mut found: Vec<(usize, usize)> = Vec::new(); // (index, levels matched)
        for (start, _) in q.char_indices() {
            let (head, tail) = q.split_at(start);
            if let Some(cands) = self.by_name.get(tail) {
                for &i in cands {
                    if let Some(n) = self.consume_ancestors(head, self.list[i].code) {
                        found.push((i, n));
                    }
                }
            }
        }
        // Prefer the reading that explains most of the words, then the higher level: a town and
        // a village of its own with the same stem (百尺镇, 百尺村委会) both read "百尺", which
        // names the town (the village is "百尺村").
        let best = found.iter().map(|&(_, n)| n).max().unwrap_or(0);
        let mut out: Vec<&Division> = found.into_iter().filter(|&(_, n)| n == best).map(|(i, _)| &self.list[i]).collect();
        out.sort_by_key(|d| d.code);
        out.dedup_by_key(|d| d.code);
        let codes: Vec<&str> = out.iter().map(|d| d.code).collect();
        out.retain(|d| !codes.iter().any(|c| c.len() < d.code.len() && d.code.starts_with(c)));
        out
    }

    /// Whether `head` is made of (some of) the names of `code`'s ancestors, in order;
    /// returns how many ancestors it named.
    fn consume_ancestors(&self, head: &str, code: &str) -> Option<usize> {
        if head.is_empty() {
            return Some(0);
        }
        let parent = self.parent(code)?;
        let names = std::iter::once(Cow::Borrowed(parent.name)).chain(short_names(parent.name));
        for n in names {
            if let Some(rest) = head.strip_suffix(n.as_ref())
                && let Some(k) = self.consume_ancestors(rest, parent.code)
            {
                return Some(k + 1);
            }
        }
        // The parent may be left out ("山西小店区").
        self.consume_ancestors(head, parent.code)
    }

    /// Exactly one division for a code or name, or a field error saying why not.
    pub fn resolve(&self, field: &str, query: &str) -> Result<&Division, FieldError> {
        let found = self.lookup(query);
        match found.as_slice() {
            [one] => Ok(one),
            [] => Err(FieldError::new(field, "division_unknown", format!("找不到行政区划“{query}”"), format!("no division matches \"{query}\""))),
            many => {
                let list: Vec<String> = many.iter().take(5).map(|d| format!("{} {}", d.code, self.full_name(d.code))).collect();
                Err(FieldError::new(
                    field,
                    "division_ambiguous",
                    format!("“{query}”对应多个行政区划，请写明上级：{}", list.join(";")),
                    format!("\"{query}\" matches several divisions; name the parent: {}", list.join("; ")),
                ))
            }
        }
    }

    /// A code that must exist (optionally at one of the given levels).
    pub fn code(&self, field: &str, code: &str, levels: &[Level]) -> Result<&Division, FieldError> {
        let d = self.get(code.trim()).ok_or_else(|| {
            FieldError::new(field, "division_code_unknown", format!("行政区划代码“{code}”不存在"), format!("division code \"{code}\" does not exist"))
        })?;
        if !levels.is_empty() && !levels.contains(&d.level) {
            let want: Vec<&str> = levels.iter().map(|l| l.as_str()).collect();
            return Err(FieldError::new(
                field,
                "division_level",
                format!("行政区划“{}”的级别不符", d.name),
                format!("division {} is a {}, expected {}", d.code, d.level.as_str(), want.join("/")),
            ));
        }
        Ok(d)
    }
}

/// The upper bound of the range of codes under a prefix: every descendant `c` of `p`
/// satisfies `p <= c < prefix_end(p)` in byte order (`:` sorts right after `9`).
pub fn prefix_end(prefix: &str) -> String {
    format!("{prefix}:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huguan_has_its_townships_and_villages() {
        let d = Divisions::get_all();
        assert_eq!(d.get("140427").unwrap().name, "壶关县");
        let towns: Vec<_> = d.children("140427").collect();
        assert_eq!(towns.len(), 11);
        let villages = d.descendants("140427").iter().filter(|x| x.level == Level::Village).count();
        assert_eq!(villages, 283);
        assert_eq!(d.full_name("140427101"), "山西省长治市壶关县百尺镇");
        assert_eq!(d.ancestors("140427101").iter().map(|x| x.code).collect::<Vec<_>>(), ["14", "1404", "140427"]);
    }

    #[test]
    fn whole_country_is_present_and_every_row_has_a_parent() {
        let d = Divisions::get_all();
        assert_eq!(d.children("").filter(|x| x.level == Level::Province).count(), 0);
        assert!(d.len() > 47_000);
        for x in d.list.iter().filter(|x| x.level != Level::Province) {
            assert!(d.parent(x.code).is_some(), "{} has no parent", x.code);
        }
    }

    #[test]
    fn lookup_by_code_and_name() {
        let d = Divisions::get_all();
        for q in ["140105", "小店区", "太原市小店区", "山西省太原市小店区", "山西小店区", " 太原 小店区 "] {
            let r = d.lookup(q);
            assert_eq!(r.iter().map(|x| x.code).collect::<Vec<_>>(), ["140105"], "{q}");
        }
        assert_eq!(d.resolve("place", "壶关县百尺镇").unwrap().code, "140427101");
        assert_eq!(d.resolve("place", "百尺镇").unwrap().code, "140427101");
        // 城区 exists in many cities: ambiguous until the city is named.
        assert_eq!(d.resolve("place", "城区").unwrap_err().code, "division_ambiguous");
        assert_eq!(d.resolve("place", "长治市潞州区").unwrap().code, "140403");
        assert_eq!(d.resolve("place", "火星市").unwrap_err().code, "division_unknown");
        assert!(d.lookup("").is_empty());
        assert!(d.lookup("999999").is_empty());
    }

    /// Villages are written as people write them: 百尺村 for 百尺村委会; a town and its own
    /// village of the same stem (百尺镇, 百尺村委会) do not make a name ambiguous.
    #[test]
    fn villages_by_their_own_names() {
        let d = Divisions::get_all();
        assert_eq!(d.get("140427101200").unwrap().name, "百尺村委会");
        for q in ["百尺村", "百尺村委会", "百尺镇百尺村", "壶关县百尺村", "山西省长治市壶关县百尺镇百尺村委会"] {
            assert_eq!(d.resolve("place", q).map(|x| x.code), Ok("140427101200"), "{q}");
        }
        // The stem alone names the town, not the town and its village.
        for q in ["壶关县百尺", "壶关百尺"] {
            assert_eq!(d.resolve("place", q).map(|x| x.code), Ok("140427101"), "{q}");
        }
        let bare: Vec<&str> = d.lookup("百尺").iter().map(|x| x.code).collect();
        assert!(bare.contains(&"140427101") && !bare.contains(&"140427101200"), "{bare:?}");
        // Other villages of the county, and a 村民委员会 elsewhere.
        assert_eq!(d.resolve("place", "龙泉镇南关村").map(|x| x.code), Ok("140427100200"));
        assert_eq!(d.resolve("place", "壶关县城南社区").map(|x| x.code), Ok("140427100001"));
        let (code, name) = d.list.iter().find(|x| x.name.ends_with("村民委员会")).map(|x| (x.code, x.name)).unwrap();
        let village = format!("{}{}", d.full_name(&code[..9]), name.trim_end_matches("村民委员会"));
        assert_eq!(d.resolve("place", &format!("{village}村")).map(|x| x.code), Ok(code), "{village}");
    }

    #[test]
    fn code_check_by_level() {
        let d = Divisions::get_all();
        assert!(d.code("v", "140427101", &[Level::Township]).is_ok());
        assert_eq!(d.code("v", "140427101", &[Level::Village]).unwrap_err().code, "division_level");
        assert_eq!(d.code("v", "140427999", &[]).unwrap_err().code, "division_code_unknown");
    }

    #[test]
    fn prefix_range_holds_descendants() {
        let d = Divisions::get_all();
        let end = prefix_end("140427");
        for x in d.descendants("140427") {
            assert!(x.code > "140427" && x.code < end.as_str());
        }
        assert!("140428" > end.as_str());
    }
}
