//! Risk areas, kept with history (migration 0003). Reading is open to every signed-in caller
//! (risk areas are public notices); writing needs `risk_areas.write`, and an area the writer's
//! scope covers: the county's list of areas elsewhere in the country, areas over the whole
//! county and replacing the whole list are for county-wide staff; a township's staff may keep
//! only areas inside their township.
//!
//! History: a row is never changed except to stamp `superseded_at`. Each area is identified by
//! its division and named place; creating an area that already has a current row (an edit), a
//! lift, or an import that names it inserts a new row and supersedes the old one. An import may
//! also `replace` the whole current list (an official complete list): every current row it does
//! not name is superseded too. "In force at X" is answered as known at X:
//! `created_at <= X < superseded_at` and `valid_from <= X < valid_to`.
//!
//! Imports (CSV in UTF-8, with or without BOM, or GBK as Chinese Excel saves it; JSON; xlsx)
//! are checked row by row and written all or nothing: any bad row (unknown or ambiguous place,
//! bad level, bad time, empty or duplicate row) is reported at `rows[N].<column>`, where N is
//! the row as a spreadsheet shows it (header = row 1; for JSON, element 1 is row 1), and
//! nothing is written.

use crate::db::{Row, Val};
use crate::page::{Page, PageQuery, Paged};
use crate::sheet::{self, Column, Format, Header, RCell, RowErrors};
use crate::{Check, Principal, Store, audit, q, text_field};
use baton_domain::division::{Divisions, prefix_end};
use baton_domain::policy::TruckRules;
use baton_domain::risk::{RiskArea, RiskHit, RiskLevel, Stay};
use baton_domain::role::Permission;
use baton_domain::scope::Scope;
use baton_domain::{Error, FieldError};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use uuid::Uuid;

/// Most rows one import may carry (the national list at its late-2022 peak had well under this).
pub const MAX_ROWS: usize = 100_000;
/// Most stays one itinerary may list.
const MAX_STAYS: usize = 200;

const CHINA: i32 = 8 * 3600;

/// One stored version of an area.
#[derive(Debug, Clone, Serialize)]
pub struct Area {
    pub id: Uuid,
    pub list_id: Uuid,
    pub division_code: String,
    pub division_name: String,
    pub place: Option<String>,
    pub level: RiskLevel,
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
    /// The version this one replaced (an edit, a lift or a re-import).
    pub replaces: Option<Uuid>,
    pub superseded_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Of the list (batch) that wrote this version.
    pub source: String,
    pub note: String,
    pub created_by: Option<String>,
}

impl Area {
    pub fn to_domain(&self) -> RiskArea {
        RiskArea {
            id: self.id,
            division_code: self.division_code.clone(),
            place: self.place.clone(),
            level: self.level,
            from: self.from,
            to: self.to,
        }
    }
}

/// One import or edit.
#[derive(Debug, Clone, Serialize)]
pub struct List {
    pub id: Uuid,
    pub source: String,
    pub note: String,
    pub row_count: i64,
    pub created_at: DateTime<Utc>,
}

/// One area by form or API. Times: `2022-11-10`, `2022-11-10 08:00`, `2022-11-10T08:00` (China
/// time) or RFC 3339. `division` is a code or a name ("140105", "太原市小店区").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AreaInput {
    pub division: String,
    #[serde(default)]
    pub place: Option<String>,
    pub level: String,
    pub from: String,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiftInput {
    /// When the area stops being in force (default: now).
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryFilter {
    /// A division code or name: versions of areas at or under it.
    pub division: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub source: String,
    pub note: String,
    /// Supersede every current area the file does not name (a complete official list).
    pub replace: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub list: List,
    pub format: &'static str,
    /// Rows written.
    pub created: usize,
    /// Current versions superseded (edits of areas already listed, and with `replace` the rest).
    pub superseded: usize,
}

// ---------- times ----------

/// A time as people write it in lists: a date (00:00 China time), a date and time (China
/// time; `-` or `/` between date parts, ` ` or `T` before the time, seconds optional), or RFC 3339.
pub fn parse_time(field: &str, s: &str) -> Result<DateTime<Utc>, FieldError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(FieldError::required(field));
    }
    if let Ok(x) = DateTime::parse_from_rfc3339(t) {
        return Ok(audit::micros(x.with_timezone(&Utc)));
    }
    let norm = t.replace('/', "-").replacen('T', " ", 1);
    let naive = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&norm, f).ok())
        .or_else(|| NaiveDate::parse_from_str(&norm, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)));
    naive
        .and_then(|n| FixedOffset::east_opt(CHINA).and_then(|z| z.from_local_datetime(&n).single()))
        .map(|x| audit::micros(x.with_timezone(&Utc)))
        .ok_or_else(|| {
            FieldError::new(
                field,
                "datetime_format",
                format!("时间“{t}”格式有误，应为 2022-11-10、2022-11-10 08:00 或 RFC 3339"),
                format!("cannot read the time \"{t}\"; use 2022-11-10, 2022-11-10 08:00 or RFC 3339"),
            )
        })
}

// ---------- validation ----------

/// One row as read from a file or a form: every value as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRow {
    pub division: String,
    pub place: String,
    pub level: String,
    pub from: String,
    pub to: String,
}

impl RawRow {
    fn is_empty(&self) -> bool {
        [&self.division, &self.place, &self.level, &self.from, &self.to].iter().all(|v| v.trim().is_empty())
    }
}

/// A checked area, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Valid {
    pub division_code: String,
    /// '' for the whole division.
    pub place: String,
    pub level: RiskLevel,
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
}

/// Check one row; field names are `{prefix}division` etc.
pub fn validate(prefix: &str, r: &RawRow) -> Result<Valid, Vec<FieldError>> {
    validate_with(prefix, r, &mut |field, name| Divisions::get_all().resolve(field, name).map(|d| d.code))
}

/// [`validate`], with divisions resolved by `division` (field, name) → code: a list of thousands
/// of rows names the same divisions again and again.
fn validate_with(
    prefix: &str,
    r: &RawRow,
    division: &mut impl FnMut(&str, &str) -> Result<&'static str, FieldError>,
) -> Result<Valid, Vec<FieldError>> {
    let f = |n: &str| format!("{prefix}{n}");
    if r.is_empty() {
        let at = prefix.trim_end_matches('.');
        return Err(vec![FieldError::new(if at.is_empty() { "row" } else { at }, "row_empty", "空行", "the row is empty")]);
    }
    let mut c = Check::default();
    let division = if r.division.trim().is_empty() {
        c.take::<()>(Err(FieldError::required(f("division"))));
        None
    } else {
        c.take(division(&f("division"), &r.division))
    };
    let place = c.take(text_field(&f("place"), &r.place, 0, 100));
    let level = c.take(RiskLevel::parse_field(&f("level"), &r.level));
    let from = c.take(parse_time(&f("from"), &r.from));
    let to = if r.to.trim().is_empty() { Some(None) } else { c.take(parse_time(&f("to"), &r.to)).map(Some) };
    if let (Some(a), Some(Some(b))) = (from, to)
        && b <= a
    {
        c.0.push(FieldError::new(f("to"), "to_before_from", "结束时间应晚于开始时间", "must be later than the start"));
    }
    match (division, place, level, from, to, c.0.is_empty()) {
        (Some(d), Some(place), Some(level), Some(from), Some(to), true) => Ok(Valid { division_code: d.to_string(), place, level, from, to }),
        _ => Err(c.0),
    }
}

// ---------- reading files ----------

/// The column a header names, in English or Chinese (white space already dropped).
fn column(h: &str) -> Option<usize> {
    let k = h.to_lowercase();
    Some(match k.as_str() {
        "division" | "division_code" | "code" | "地区" | "行政区划" | "区划" | "区划代码" | "所在地区" | "地区代码" => 0,
        "place" | "地点" | "具体地点" | "区域" | "风险区域" | "小区" => 1,
        "level" | "等级" | "风险等级" | "级别" => 2,
        "from" | "开始" | "开始时间" | "起始时间" | "生效时间" | "划定时间" => 3,
        "to" | "结束" | "结束时间" | "解除时间" => 4,
        _ => return None,
    })
}

const COLUMNS: [&str; 5] = ["division", "place", "level", "from", "to"];

fn set(r: &mut RawRow, col: usize, v: String) {
    match col {
        0 => r.division = v,
        1 => r.place = v,
        2 => r.level = v,
        3 => r.from = v,
        _ => r.to = v,
    }
}

fn file_error(code: &'static str, zh: impl Into<String>, en: impl Into<String>) -> Error {
    Error::field("file", code, zh, en)
}

/// Unknown names, repeated and missing columns are errors; a 序号 column and columns without a
/// name are passed over.
fn check_header(h: &Header<usize>, _: &[RCell]) -> Result<(), Error> {
    let mut c = Check::default();
    let mut seen = [false; 5];
    for col in &h.columns {
        match col {
            Column::Known(i) if seen[*i] => {
                c.0.push(FieldError::new(format!("columns.{}", COLUMNS[*i]), "column_repeated", "列重复", "the column appears twice"))
            }
            Column::Known(i) => seen[*i] = true,
            Column::Unknown(name) => c.0.push(FieldError::new(
                format!("columns.{name}"),
                "column_unknown",
                format!("不认识的列“{name}”，可用列：division(地区)、place(地点)、level(等级)、from(开始时间)、to(解除时间)"),
                format!("unknown column \"{name}\"; columns are division, place, level, from, to"),
            )),
            Column::RowNumber | Column::Blank => {}
        }
    }
    for (i, name) in COLUMNS.iter().enumerate() {
        if !seen[i] && matches!(*name, "division" | "level" | "from") {
            c.0.push(FieldError::new(
                format!("columns.{name}"),
                "column_missing",
                format!("表头(第 {} 行)缺少“{name}”列", h.row),
                format!("the header (row {}) has no column \"{name}\"", h.row),
            ));
        }
    }
    c.done()
}

fn too_many_rows() -> Error {
    file_error("too_many_rows", format!("一次最多导入 {MAX_ROWS} 行"), format!("at most {MAX_ROWS} rows per import"))
}

/// A CSV or xlsx list, as `sheet::read_table` reads it (a title row, a 序号 column, blank rows
/// and a total line are passed over). A time typed into Excel is a date cell, or a bare serial
/// number when its format was lost: both are read as the time they stand for.
fn parse_sheet(format: Format, bytes: &[u8]) -> Result<Vec<(usize, RawRow)>, Error> {
    let mut out = Vec::new();
    let mut overhang = RowErrors::default();
    sheet::read_table(format, bytes, column, check_header, |r| {
        if out.len() >= MAX_ROWS {
            return Err(too_many_rows());
        }
        let mut raw = RawRow::default();
        for col in 0..COLUMNS.len() {
            let v = match r.get(col) {
                // A serial from 2000 on (36526) is a date; a smaller number is not one.
                RCell::Number(f) if col >= 3 && *f >= 36526.0 => RCell::Date(*f).text(),
                cell => cell.text(),
            };
            set(&mut raw, col, v);
        }
        if r.overhangs() {
            overhang.push(
                r.row,
                FieldError::new(
                    format!("rows[{}]", r.row),
                    "row_too_long",
                    "该行的值多于表头的列",
                    "the row has more values than the header has columns",
                ),
            );
        }
        out.push((r.row, raw));
        Ok(())
    })?;
    overhang.finish()?;
    Ok(out)
}

fn parse_json(bytes: &[u8]) -> Result<Vec<(usize, RawRow)>, Error> {
    let v: serde_json::Value = serde_json::from_slice(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes))
        .map_err(|e| file_error("json_unreadable", format!("JSON 格式错误：{e}"), format!("malformed JSON: {e}")))?;
    let serde_json::Value::Array(items) = v else {
        return Err(file_error("json_not_array", "JSON 应为对象数组", "the JSON must be an array of objects"));
    };
    if items.len() > MAX_ROWS {
        return Err(too_many_rows());
    }
    let mut out = Vec::new();
    let mut errs = RowErrors::default();
    for (i, item) in items.iter().enumerate() {
        let n = i + 1;
        let serde_json::Value::Object(m) = item else {
            errs.push(n, FieldError::new(format!("rows[{n}]"), "row_not_object", "每一项应为对象", "each item must be an object"));
            continue;
        };
        let mut r = RawRow::default();
        for (k, v) in m {
            let Some(col) = column(k) else {
                errs.push(
                    n,
                    FieldError::new(
                        format!("rows[{n}].{k}"),
                        "unknown_field",
                        format!("不认识的字段“{k}”"),
                        format!("unknown field \"{k}\"; fields are division, place, level, from, to"),
                    ),
                );
                continue;
            };
            let text = match v {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(x) => x.to_string(),
                _ => {
                    errs.push(n, FieldError::new(format!("rows[{n}].{}", COLUMNS[col]), "invalid_type", "应为文本", "must be text"));
                    continue;
                }
            };
            set(&mut r, col, text);
        }
        out.push((n, r));
    }
    errs.finish()?;
    Ok(out)
}

/// Read a file into rows numbered as the file shows them.
pub fn read_file(format: Format, bytes: &[u8]) -> Result<Vec<(usize, RawRow)>, Error> {
    let rows = match format {
        Format::Csv | Format::Xlsx => parse_sheet(format, bytes)?,
        Format::Json => parse_json(bytes)?,
    };
    if rows.is_empty() {
        return Err(file_error("file_empty", "文件中没有数据行", "the file holds no data rows"));
    }
    Ok(rows)
}

/// Check every row; all errors (the first thousand listed), or every row valid. Two rows naming
/// the same area are an error.
pub fn check_rows(rows: &[(usize, RawRow)]) -> Result<Vec<Valid>, Error> {
    let mut errs = RowErrors::default();
    let mut out = Vec::with_capacity(rows.len());
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    // Each name resolved once; its error is given again under each row's field.
    let mut names: HashMap<String, Result<&'static str, FieldError>> = HashMap::new();
    let mut division = |field: &str, name: &str| -> Result<&'static str, FieldError> {
        let found = names.entry(name.to_string()).or_insert_with(|| Divisions::get_all().resolve(field, name).map(|d| d.code));
        found.clone().map_err(|e| e.at(field))
    };
    for (n, raw) in rows {
        match validate_with(&format!("rows[{n}]."), raw, &mut division) {
            Ok(v) => {
                let key = (v.division_code.clone(), v.place.clone());
                match seen.get(&key) {
                    Some(first) => errs.push(
                        *n,
                        FieldError::new(
                            format!("rows[{n}].division"),
                            "duplicate_row",
                            format!("与第 {first} 行是同一地区"),
                            format!("names the same area as row {first}"),
                        ),
                    ),
                    None => {
                        seen.insert(key, *n);
                    }
                }
                out.push(v);
            }
            Err(e) => errs.extend(*n, e),
        }
    }
    errs.finish()?;
    Ok(out)
}

// ---------- reading ----------

/// `SELECT … FROM risk_areas …` followed by a literal WHERE clause, as one static string.
macro_rules! select {
    ($where:literal) => {
        concat!(
            "SELECT r.id, r.list_id, r.division_code, r.place, r.level, r.valid_from, r.valid_to, r.replaces, r.superseded_at, r.created_at,
                    l.source, l.note, u.display_name AS created_by
               FROM risk_areas r JOIN risk_area_lists l ON l.id = r.list_id LEFT JOIN users u ON u.id = l.created_by ",
            $where
        )
    };
}

fn from_row(r: &Row) -> Result<Area, Error> {
    let code: String = r.get("division_code")?;
    let place: String = r.get("place")?;
    let level: String = r.get("level")?;
    Ok(Area {
        id: r.get("id")?,
        list_id: r.get("list_id")?,
        division_name: Divisions::get_all().full_name(&code),
        division_code: code,
        place: if place.is_empty() { None } else { Some(place) },
        level: RiskLevel::parse(&level).ok_or_else(|| Error::internal(format!("risk level {level}")))?,
        from: r.get("valid_from")?,
        to: r.get("valid_to")?,
        replaces: r.get("replaces")?,
        superseded_at: r.get("superseded_at")?,
        created_at: r.get("created_at")?,
        source: r.get("source")?,
        note: r.get("note")?,
        created_by: r.get("created_by")?,
    })
}

/// Highest level first, then by division and place: the order of [`display_key`].
fn sort_for_display(v: &mut [Area]) {
    v.sort_by_key(display_key);
}

/// An area's place in the in-force list, as its page key.
fn display_key(a: &Area) -> (i64, String, String, Uuid) {
    (-(a.level as i64), a.division_code.clone(), a.place.clone().unwrap_or_default(), a.id)
}

/// The areas in force at `at`, as the lists stood at `at`; highest level first.
pub async fn in_force_at(store: &Store, at: DateTime<Utc>) -> Result<Vec<Area>, Error> {
    let at = audit::micros(at);
    let sql = select!(
        "WHERE r.created_at <= $1 AND (r.superseded_at IS NULL OR r.superseded_at > $1)
           AND r.valid_from <= $1 AND (r.valid_to IS NULL OR r.valid_to > $1)"
    );
    let rows = store.db.fetch_all(q!(sql, at)).await?;
    let mut out = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    sort_for_display(&mut out);
    Ok(out)
}

/// A page of the areas in force at `at` (a list made whole, then paged by its display order).
pub async fn in_force_page(store: &Store, at: DateTime<Utc>, page: &PageQuery) -> Result<Paged<Area>, Error> {
    let page = Page::read("risk_areas", page)?;
    Ok(page.slice(in_force_at(store, at).await?, display_key, false))
}

/// One version by id, current or not.
pub async fn get(store: &Store, id: Uuid) -> Result<Area, Error> {
    let r = store.db.fetch_optional(q!(select!("WHERE r.id = $1"), id)).await?.ok_or(Error::NotFound("risk_area"))?;
    from_row(&r)
}

/// A page of every version, newest first.
pub async fn history(store: &Store, f: &HistoryFilter, page: &PageQuery) -> Result<Paged<Area>, Error> {
    let page = Page::<(DateTime<Utc>, Uuid)>::read("risk_area_history", page)?;
    let (at, id) = page.parts();
    let (lo, hi) = match f.division.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(d) => {
            let d = Divisions::get_all().resolve("division", d).map_err(|e| Error::Invalid(vec![e]))?;
            (Some(d.code.to_string()), Some(prefix_end(d.code)))
        }
        None => (None, None),
    };
    let rows = store
        .db
        .fetch_all(q!(
            select!(
                "WHERE ($1 IS NULL OR (r.division_code >= $1 AND r.division_code < $2))
                   AND ($3 IS NULL OR (r.created_at, r.id) < ($3, $4))
                 ORDER BY r.created_at DESC, r.id DESC LIMIT $5"
            ),
            lo,
            hi,
            at,
            id,
            page.fetch()
        ))
        .await?;
    let list = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    Ok(page.finish(list, |a| (a.created_at, a.id)))
}

/// Current areas (as known at `known_at`) that may touch a stay at `code` between `start` and
/// `end`: areas at the code or an ancestor, or inside it.
async fn candidates(store: &Store, code: &str, start: DateTime<Utc>, end: DateTime<Utc>, known_at: DateTime<Utc>) -> Result<Vec<Area>, Error> {
    let mut anc: Vec<String> = [2usize, 4, 6, 9].iter().filter(|&&n| n < code.len()).map(|&n| code[..n].to_string()).collect();
    while anc.len() < 4 {
        anc.push(code.to_string());
    }
    let rows = store
        .db
        .fetch_all(q!(
            select!(
                "WHERE r.created_at <= $1 AND (r.superseded_at IS NULL OR r.superseded_at > $1)
                   AND r.valid_from < $2 AND (r.valid_to IS NULL OR r.valid_to > $3)
                   AND (r.division_code IN ($4, $5, $6, $7) OR (r.division_code >= $8 AND r.division_code < $9))"
            ),
            known_at,
            end,
            start,
            anc[0].clone(),
            anc[1].clone(),
            anc[2].clone(),
            anc[3].clone(),
            code,
            prefix_end(code)
        ))
        .await?;
    rows.iter().map(from_row).collect()
}

// ---------- matching ----------

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StayInput {
    /// A division code or name.
    pub place: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchInput {
    pub stays: Vec<StayInput>,
    /// Check as of this time (default now): the look-back window ends here, the lists as known then.
    #[serde(default)]
    pub at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResolvedStay {
    pub place: String,
    pub division_code: String,
    pub division_name: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Not longer than the pass-through limit: not a stay.
    pub pass_through: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct HitView {
    #[serde(flatten)]
    pub hit: RiskHit,
    pub division_name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MatchResult {
    pub at: DateTime<Utc>,
    pub policy_version: i64,
    pub itinerary_days: u32,
    pub pass_through_max_hours: u32,
    pub stays: Vec<ResolvedStay>,
    pub hits: Vec<HitView>,
    /// Highest level among exact hits.
    pub worst: Option<RiskLevel>,
    /// Highest level counting possible (coarse) hits too.
    pub worst_possible: Option<RiskLevel>,
}

/// Check an itinerary's stays as entered (places resolved, times parsed, each stay ending after it starts).
pub fn check_stays(input: &[StayInput]) -> Result<Vec<Stay>, Error> {
    let mut c = Check::default();
    if input.len() > MAX_STAYS {
        return Err(Error::field("stays", "too_many", format!("行程最多 {MAX_STAYS} 段"), format!("at most {MAX_STAYS} stays")));
    }
    let mut out = Vec::new();
    for (i, s) in input.iter().enumerate() {
        let f = |n: &str| format!("stays[{i}].{n}");
        let place = if s.place.trim().is_empty() {
            c.take::<()>(Err(FieldError::required(f("place"))));
            None
        } else {
            c.take(Divisions::get_all().resolve(&f("place"), &s.place))
        };
        let from = c.take(parse_time(&f("from"), &s.from));
        let to = c.take(parse_time(&f("to"), &s.to));
        if let (Some(a), Some(b)) = (from, to)
            && b < a
        {
            c.0.push(FieldError::new(f("to"), "to_before_from", "结束时间不能早于开始时间", "must not be earlier than the start"));
        }
        if let (Some(p), Some(from), Some(to)) = (place, from, to) {
            out.push(Stay { place: p.code.to_string(), from, to });
        }
    }
    c.done()?;
    Ok(out)
}

/// Match stays against the areas in force on their dates, as the lists stood at `at`, under
/// the truck rules of the policy version in force at `at`.
pub async fn match_stays(store: &Store, stays: &[Stay], rules: &TruckRules, at: DateTime<Utc>) -> Result<Vec<RiskHit>, Error> {
    let (start, end) = baton_domain::risk::window(rules, at);
    let mut areas: Vec<RiskArea> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for s in stays {
        for a in candidates(store, &s.place, start, end, at).await? {
            if seen.insert(a.id) {
                areas.push(a.to_domain());
            }
        }
    }
    Ok(baton_domain::risk::match_itinerary(stays, &areas, rules, at))
}

pub async fn match_itinerary(store: &Store, input: &MatchInput) -> Result<MatchResult, Error> {
    let mut c = Check::default();
    let at = match input.at.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(s) => c.take(parse_time("at", s)),
        None => Some(store.now()),
    };
    let stays = match check_stays(&input.stays) {
        Ok(s) => Some(s),
        Err(e) => {
            c.0.extend(e.fields().iter().cloned());
            None
        }
    };
    c.done()?;
    let (Some(at), Some(stays)) = (at, stays) else {
        return Err(Error::internal("validation"));
    };
    let policy = crate::policy::current(store, at).await?;
    let rules = &policy.params.truck;
    let hits = match_stays(store, &stays, rules, at).await?;
    let d = Divisions::get_all();
    let limit = chrono::Duration::hours(i64::from(rules.pass_through_max_hours));
    Ok(MatchResult {
        at,
        policy_version: policy.version,
        itinerary_days: rules.itinerary_days,
        pass_through_max_hours: rules.pass_through_max_hours,
        worst: baton_domain::risk::worst(&hits, true),
        worst_possible: baton_domain::risk::worst(&hits, false),
        stays: stays
            .iter()
            .zip(&input.stays)
            .map(|(s, i)| ResolvedStay {
                place: i.place.trim().to_string(),
                division_code: s.place.clone(),
                division_name: d.full_name(&s.place),
                from: s.from,
                to: s.to,
                pass_through: s.to - s.from <= limit,
            })
            .collect(),
        hits: hits.into_iter().map(|h| HitView { division_name: d.full_name(&h.division_code), hit: h }).collect(),
    })
}

// ---------- writing ----------

struct Written {
    list: List,
    ids: Vec<Uuid>,
    superseded: usize,
}

/// Write one batch: a list, and a new current version of each area (superseding the old one).
/// What a batch is, for its list row and its audit entry.
struct Batch<'a> {
    action: &'a str,
    source: &'a str,
    note: &'a str,
    /// Supersede every current area the batch does not name.
    replace: bool,
    /// More audit detail.
    extra: serde_json::Value,
}

/// Divisions read, and versions superseded, per statement (the same text for both databases;
/// unused slots repeat the first value).
const CHUNK: usize = 32;
/// New versions per multi-row insert (PostgreSQL; SQLite writes row by row).
const WRITE_ROWS: usize = 10;
const INSERT_HEAD: &str =
    "INSERT INTO risk_areas (id, list_id, division_code, place, level, valid_from, valid_to, replaces, superseded_at, created_at)";
static SQL_INSERT_AREAS: std::sync::LazyLock<&'static str> =
    std::sync::LazyLock::new(|| crate::person_codes::values(INSERT_HEAD, 10, WRITE_ROWS, ""));
static SQL_INSERT_AREA: std::sync::LazyLock<&'static str> = std::sync::LazyLock::new(|| crate::person_codes::values(INSERT_HEAD, 10, 1, ""));

fn busy() -> Error {
    Error::conflict("risk_area_busy", "该地区正被同时修改，请重试", "this area is being changed at the same time; try again")
}

async fn write(store: &Store, who: &Principal, b: Batch<'_>, areas: &[Valid]) -> Result<Written, Error> {
    let Batch { action, source, note, replace, extra } = b;
    let now = store.now();
    let list_id = Uuid::now_v7();
    let count = i64::try_from(areas.len()).map_err(Error::internal)?;
    // A long list: a transaction of its own, not a savepoint (see `Writer::begin_alone`).
    let mut tx = if areas.len() > CHUNK { store.db.begin_alone(crate::Durability::Durable).await? } else { store.db.begin().await? };
    tx.execute(q!(
        "INSERT INTO risk_area_lists (id, source, note, row_count, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        list_id,
        source,
        note,
        count,
        who.user_id,
        now
    ))
    .await?;
    // The current version of each area named, found a few divisions a statement; then each
    // superseded and the new versions written several a statement (a list of 100,000 rows).
    let mut codes: Vec<&str> = areas.iter().map(|a| a.division_code.as_str()).collect();
    codes.sort_unstable();
    codes.dedup();
    let mut current: HashMap<(String, String), Uuid> = HashMap::new();
    for chunk in codes.chunks(CHUNK) {
        let mut args: Vec<Val> = chunk.iter().map(|c| Val::from(*c)).collect();
        args.resize(CHUNK, Val::from(chunk[0]));
        let mut q = q!(
            "SELECT id, division_code, place FROM risk_areas WHERE superseded_at IS NULL
               AND division_code IN ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32)"
        );
        q.args = args;
        for r in tx.fetch_all(q).await? {
            current.insert((r.get("division_code")?, r.get("place")?), r.get("id")?);
        }
    }
    let replaced: Vec<Option<Uuid>> = areas.iter().map(|a| current.get(&(a.division_code.clone(), a.place.clone())).copied()).collect();
    drop(current);
    let old: Vec<Uuid> = replaced.iter().flatten().copied().collect();
    let mut superseded = 0usize;
    for chunk in old.chunks(CHUNK) {
        let mut args = vec![Val::from(now)];
        args.extend(chunk.iter().map(|id| Val::from(*id)));
        args.resize(CHUNK + 1, Val::from(chunk[0]));
        let mut q = q!(
            "UPDATE risk_areas SET superseded_at = $1 WHERE superseded_at IS NULL
               AND id IN ($2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33)"
        );
        q.args = args;
        superseded += usize::try_from(tx.execute(q).await?).map_err(Error::internal)?;
    }
    if superseded < old.len() {
        // Another writer superseded one of them since it was read.
        return Err(busy());
    }
    let ids: Vec<Uuid> = areas.iter().map(|_| Uuid::now_v7()).collect();
    let rows: Vec<Vec<Val>> = areas
        .iter()
        .zip(&ids)
        .zip(&replaced)
        .map(|((a, id), replaces)| {
            vec![
                (*id).into(),
                list_id.into(),
                a.division_code.as_str().into(),
                a.place.as_str().into(),
                a.level.as_str().into(),
                a.from.into(),
                a.to.into(),
                (*replaces).into(),
                Val::Time(None),
                now.into(),
            ]
        })
        .collect();
    tx.execute_rows(&SQL_INSERT_AREAS, WRITE_ROWS, &SQL_INSERT_AREA, &rows).await.map_err(|e| match e {
        Error::Conflict { code: "already_exists", .. } => busy(),
        e => e,
    })?;
    drop(rows);
    if replace {
        let n = tx.execute(q!("UPDATE risk_areas SET superseded_at = $1 WHERE superseded_at IS NULL AND list_id <> $2", now, list_id)).await?;
        superseded += usize::try_from(n).map_err(Error::internal)?;
    }
    let mut detail =
        serde_json::json!({"list_id": list_id, "source": source, "note": note, "rows": areas.len(), "superseded": superseded, "replace": replace});
    if areas.len() == 1
        && let Some(a) = areas.first()
    {
        detail["area"] = serde_json::json!({
            "division_code": a.division_code, "place": a.place, "level": a.level.as_str(), "from": a.from, "to": a.to, "replaces": replaced.first().copied().flatten(),
        });
    }
    if let (serde_json::Value::Object(d), serde_json::Value::Object(x)) = (&mut detail, extra) {
        d.extend(x);
    }
    let (object_type, object_id) = match ids.as_slice() {
        [one] if action != "risk_area.import" => ("risk_area", one.to_string()),
        _ => ("risk_area_list", list_id.to_string()),
    };
    store.audited(who, audit::Entry { action, object_type, object_id, jurisdiction: "", detail }, tx).await?;
    Ok(Written { list: List { id: list_id, source: source.to_string(), note: note.to_string(), row_count: count, created_at: now }, ids, superseded })
}

/// Whether the writer's scope covers an area: everything for county-wide staff, else the
/// areas inside their division.
fn writable(who: &Principal, division_code: &str) -> bool {
    who.scope.is_county_wide() || matches!(&who.scope, Scope::Division { .. } if who.scope.covers(division_code, None))
}

fn outside_scope(field: String) -> FieldError {
    FieldError::new(
        field,
        "outside_scope",
        "该地区不在您的管辖范围内(辖区外和全县的风险地区由县级人员维护)",
        "the area is outside your scope (areas elsewhere and county-wide are kept by county staff)",
    )
}

fn note_of(n: Option<&str>) -> Result<String, Error> {
    text_field("note", n.unwrap_or(""), 0, 500).map_err(|e| Error::Invalid(vec![e]))
}

/// Add one area, or a new version of an area already listed (same division and place).
pub async fn create(store: &Store, who: &Principal, input: &AreaInput) -> Result<Area, Error> {
    who.require(Permission::RiskAreasWrite)?;
    let raw = RawRow {
        division: input.division.clone(),
        place: input.place.clone().unwrap_or_default(),
        level: input.level.clone(),
        from: input.from.clone(),
        to: input.to.clone().unwrap_or_default(),
    };
    let mut c = Check::default();
    let v = match validate("", &raw) {
        Ok(v) => Some(v),
        Err(e) => {
            // An empty input is "division required", not an empty row.
            if e.iter().any(|f| f.code == "row_empty") {
                c.0.extend(["division", "level", "from"].map(FieldError::required));
            } else {
                c.0.extend(e);
            }
            None
        }
    };
    if let Some(v) = &v
        && !writable(who, &v.division_code)
    {
        c.0.push(outside_scope("division".into()));
    }
    let note = c.take(note_of(input.note.as_deref()).map_err(|e| e.fields().first().cloned().unwrap_or_else(|| FieldError::required("note"))));
    c.done()?;
    let (Some(v), Some(note)) = (v, note) else {
        return Err(Error::internal("validation"));
    };
    let w = write(
        store,
        who,
        Batch { action: "risk_area.create", source: "manual", note: &note, replace: false, extra: serde_json::json!({}) },
        std::slice::from_ref(&v),
    )
    .await?;
    get(store, w.ids.first().copied().ok_or(Error::internal("no row written"))?).await
}

/// End an area at `at` (default now): a new version with `to` set supersedes the current one.
pub async fn lift(store: &Store, who: &Principal, id: Uuid, input: &LiftInput) -> Result<Area, Error> {
    who.require(Permission::RiskAreasWrite)?;
    let cur = get(store, id).await?;
    if !writable(who, &cur.division_code) {
        // Visible to everyone (a public notice), but not the caller's to change.
        return Err(Error::Forbidden);
    }
    let now = store.now();
    if cur.superseded_at.is_some() {
        return Err(Error::conflict(
            "risk_area_superseded",
            "这是该地区的旧版本，请对现行版本操作",
            "this is an old version of the area; act on the current one",
        ));
    }
    if cur.to.is_some_and(|t| t <= now) {
        return Err(Error::conflict("risk_area_lifted", "该地区已解除", "this area has already been lifted"));
    }
    let mut c = Check::default();
    let at = match input.at.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(s) => c.take(parse_time("at", s)),
        None => Some(now),
    };
    let note = c.take(note_of(input.note.as_deref()).map_err(|e| e.fields().first().cloned().unwrap_or_else(|| FieldError::required("note"))));
    if let Some(at) = at
        && at <= cur.from
    {
        c.0.push(FieldError::new("at", "lift_before_from", "解除时间应晚于开始时间", "must be later than the area's start"));
    }
    c.done()?;
    let (Some(at), Some(note)) = (at, note) else {
        return Err(Error::internal("validation"));
    };
    let v = Valid {
        division_code: cur.division_code.clone(),
        place: cur.place.clone().unwrap_or_default(),
        level: cur.level,
        from: cur.from,
        to: Some(at),
    };
    let w = write(
        store,
        who,
        Batch { action: "risk_area.lift", source: "lift", note: &note, replace: false, extra: serde_json::json!({"lifted": id}) },
        std::slice::from_ref(&v),
    )
    .await?;
    get(store, w.ids.first().copied().ok_or(Error::internal("no row written"))?).await
}

/// Import a file: every row checked first; any bad row and nothing is written.
pub async fn import(store: &Store, who: &Principal, format: Format, bytes: &[u8], opts: &ImportOptions) -> Result<ImportReport, Error> {
    who.require(Permission::RiskAreasWrite)?;
    let mut c = Check::default();
    let source = c.take(text_field("source", if opts.source.trim().is_empty() { format.as_str() } else { &opts.source }, 1, 100));
    let note = c.take(text_field("note", &opts.note, 0, 500));
    c.done()?;
    let (Some(source), Some(note)) = (source, note) else {
        return Err(Error::internal("validation"));
    };
    if opts.replace && !who.scope.is_county_wide() {
        return Err(Error::field(
            "replace",
            "county_wide_only",
            "只有县级人员可以用文件替换整个风险地区清单",
            "only county-wide staff may replace the whole list of risk areas",
        ));
    }
    let rows = read_file(format, bytes)?;
    let valid = check_rows(&rows)?;
    // Rows and checked areas correspond one to one (check_rows fails on any bad row).
    let outside: Vec<usize> = rows.iter().zip(&valid).filter(|(_, v)| !writable(who, &v.division_code)).map(|((n, _), _)| *n).collect();
    let mut errs = crate::sheet::RowErrors::default();
    for n in outside {
        errs.push(n, outside_scope(format!("rows[{n}].division")));
    }
    errs.finish()?;
    let w = write(
        store,
        who,
        Batch {
            action: "risk_area.import",
            source: &source,
            note: &note,
            replace: opts.replace,
            extra: serde_json::json!({"format": format.as_str()}),
        },
        &valid,
    )
    .await?;
    Ok(ImportReport { list: w.list, format: format.as_str(), created: w.ids.len(), superseded: w.superseded })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn times_in_the_usual_forms() {
        let want = DateTime::parse_from_rfc3339("2022-11-10T08:00:00+08:00").unwrap().with_timezone(&Utc);
        for s in ["2022-11-10 08:00", "2022-11-10T08:00", "2022/11/10 08:00:00", "2022-11-10T08:00:00+08:00", "2022-11-10T00:00:00Z"] {
            assert_eq!(parse_time("from", s).unwrap(), want, "{s}");
        }
        let midnight = DateTime::parse_from_rfc3339("2022-11-10T00:00:00+08:00").unwrap().with_timezone(&Utc);
        assert_eq!(parse_time("from", "2022-11-10").unwrap(), midnight);
        assert_eq!(parse_time("from", "2022/11/10").unwrap(), midnight);
        assert_eq!(parse_time("from", "10 Nov").unwrap_err().code, "datetime_format");
        assert_eq!(parse_time("from", "2022-13-01").unwrap_err().code, "datetime_format");
        assert_eq!(parse_time("from", " ").unwrap_err().code, "required");
    }

    fn raw(d: &str, p: &str, l: &str, f: &str, t: &str) -> RawRow {
        RawRow { division: d.into(), place: p.into(), level: l.into(), from: f.into(), to: t.into() }
    }

    #[test]
    fn rows_are_checked_field_by_field() {
        let v = validate("rows[2].", &raw("太原市小店区", "", "高", "2022-11-10", "")).unwrap();
        assert_eq!((v.division_code.as_str(), v.level, v.to), ("140105", RiskLevel::High, None));
        let e = validate("rows[3].", &raw("城区", "", "severe", "2022-11-40", "2022-11-01")).unwrap_err();
        let codes: Vec<(&str, &str)> = e.iter().map(|f| (f.field.as_str(), f.code)).collect();
        assert_eq!(codes, [("rows[3].division", "division_ambiguous"), ("rows[3].level", "risk_level_unknown"), ("rows[3].from", "datetime_format")]);
        let e = validate("rows[4].", &raw("火星市", "", "low", "2022-11-10", "2022-11-09")).unwrap_err();
        let codes: Vec<&str> = e.iter().map(|f| f.code).collect();
        assert_eq!(codes, ["division_unknown", "to_before_from"]);
        assert_eq!(validate("rows[5].", &RawRow::default()).unwrap_err()[0].field, "rows[5]");
        assert_eq!(validate("rows[5].", &RawRow::default()).unwrap_err()[0].code, "row_empty");
    }

    #[test]
    fn csv_in_utf8_with_bom_and_in_gbk() {
        let text = "division,place,level,from,to\n140105,,high,2022-11-10,\n太原市迎泽区,某某小区,低,2022-11-10 08:00,2022-11-15\n";
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(text.as_bytes());
        let (gbk, _, bad) = encoding_rs::GBK.encode(text);
        assert!(!bad);
        assert!(std::str::from_utf8(&gbk).is_err(), "the GBK bytes must not also be UTF-8");
        for bytes in [text.as_bytes().to_vec(), bom, gbk.into_owned()] {
            let rows = read_file(Format::Csv, &bytes).unwrap();
            assert_eq!(rows.len(), 2);
            assert_eq!(rows[1].0, 3);
            assert_eq!(rows[1].1.place, "某某小区");
            let v = check_rows(&rows).unwrap();
            assert_eq!(v[1].division_code, "140106");
        }
        // Chinese headers work as well.
        let rows = read_file(Format::Csv, "地区,等级,开始时间\n140105,高,2022-11-10\n".as_bytes()).unwrap();
        assert_eq!(rows[0].1.level, "高");
    }

    #[test]
    fn bad_headers_and_files() {
        let e = read_file(Format::Csv, b"division,levle,from\n140105,high,2022-11-10\n").unwrap_err();
        let f: Vec<(&str, &str)> = e.fields().iter().map(|x| (x.field.as_str(), x.code)).collect();
        assert_eq!(f, [("columns.levle", "column_unknown"), ("columns.level", "column_missing")]);
        assert_eq!(read_file(Format::Csv, b"division,level,from\n").unwrap_err().fields()[0].code, "file_empty");
        assert_eq!(read_file(Format::Csv, b"\xff\xfe\x00\x01\x80").unwrap_err().fields()[0].code, "encoding_unknown");
        assert_eq!(read_file(Format::Json, b"{\"a\":1}").unwrap_err().fields()[0].code, "json_not_array");
        assert_eq!(read_file(Format::Json, b"[").unwrap_err().fields()[0].code, "json_unreadable");
        assert_eq!(read_file(Format::Xlsx, b"not a zip").unwrap_err().fields()[0].code, "xlsx_unreadable");
        let e = read_file(Format::Json, br#"[{"division":"140105","level":"high","from":"2022-11-10","colour":1}, 5]"#).unwrap_err();
        let f: Vec<(&str, &str)> = e.fields().iter().map(|x| (x.field.as_str(), x.code)).collect();
        assert_eq!(f, [("rows[1].colour", "unknown_field"), ("rows[2]", "row_not_object")]);
    }

    #[test]
    fn duplicates_in_one_file_are_refused() {
        let rows = read_file(Format::Csv, "division,level,from\n140105,high,2022-11-10\n太原市小店区,low,2022-11-11\n".as_bytes()).unwrap();
        let e = check_rows(&rows).unwrap_err();
        assert_eq!((e.fields()[0].field.as_str(), e.fields()[0].code), ("rows[3].division", "duplicate_row"));
    }

    #[test]
    fn xlsx_with_numbers_and_dates() {
        use rust_xlsxwriter::{ExcelDateTime, Format as XFormat, Workbook};
        let mut wb = Workbook::new();
        let ws = wb.add_worksheet();
        for (i, h) in ["division", "place", "level", "from", "to"].iter().enumerate() {
            ws.write_string(0, i as u16, *h).unwrap();
        }
        let date = XFormat::new().set_num_format("yyyy-mm-dd hh:mm");
        ws.write_number(1, 0, 140105.0).unwrap();
        ws.write_string(1, 2, "高").unwrap();
        ws.write_datetime_with_format(1, 3, ExcelDateTime::parse_from_str("2022-11-10 08:00:00").unwrap(), &date).unwrap();
        ws.write_string(2, 0, "太原市迎泽区").unwrap();
        ws.write_string(2, 1, "某某小区").unwrap();
        ws.write_string(2, 2, "low").unwrap();
        ws.write_string(2, 3, "2022-11-10").unwrap();
        // A date whose cell lost its format: the bare serial (44880 is 2022-11-15).
        ws.write_number(2, 4, 44880.0).unwrap();
        // A number too small to be a date of ours is not read as one.
        ws.write_string(3, 0, "140105").unwrap();
        ws.write_string(3, 1, "另一小区").unwrap();
        ws.write_string(3, 2, "low").unwrap();
        ws.write_number(3, 3, 2022.0).unwrap();
        let bytes = wb.save_to_buffer().unwrap();
        let rows = read_file(Format::Xlsx, &bytes).unwrap();
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 3, 4]);
        let e = check_rows(&rows).unwrap_err();
        assert_eq!(e.fields().iter().map(|f| (f.field.as_str(), f.code)).collect::<Vec<_>>(), [("rows[4].from", "datetime_format")]);
        let v = check_rows(&rows[..2]).unwrap();
        assert_eq!(v[0].division_code, "140105");
        assert_eq!(v[0].from, DateTime::parse_from_rfc3339("2022-11-10T08:00:00+08:00").unwrap().with_timezone(&Utc));
        assert_eq!(v[1].place, "某某小区");
        assert_eq!(v[1].to, Some(DateTime::parse_from_rfc3339("2022-11-15T00:00:00+08:00").unwrap().with_timezone(&Utc)));
    }
}
