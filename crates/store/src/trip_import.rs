//! Batch pre-report (批量报备) from an xlsx workbook or a CSV file (UTF-8 or GBK).
//!
//! **One row per truck**: its plate, trailer, destination, the time it is expected at a
//! checkpoint, the driver, and optionally a second crew member (a truck carries one or two).
//! A row per truck keeps "one row = one trip" so that errors and retries are easy to read; a
//! third crew member is rare and is added at the checkpoint. Columns are found by their header,
//! in Chinese or English (the template has both), in any order; other columns are ignored.
//!
//! All or nothing: every row is checked first; if any is bad nothing is written and the error
//! lists the problems by spreadsheet row (`rows[5].plate`, `rows[5].driver_id_number`; the
//! first thousand, and how many there are in all). A plate that already has an open trip, or
//! appears twice in the file, is an error of its row, so uploading the same file again reports
//! each truck as already reported instead of duplicating it (and the API honours an
//! Idempotency-Key). Files come as companies export them: a title row above the header, a 序号
//! column, blank rows and a total line are passed over (`sheet::read_table`); up to 100,000 rows,
//! written a chunk at a time.

use crate::sheet::{self, Format, Header, RCell, RowErrors, XCell, cell_time, write_sheet};
use crate::trips::{CrewInput, ReportChecked, ReportInput, insert_reported, report_check_known, report_new, trip_audit};
use crate::{Durability, Principal, Store, audit, q};
use baton_domain::ident::Plate;
use baton_domain::role::Permission;
use baton_domain::trip::TripRules;
use baton_domain::unit::UnitKind;
use baton_domain::{Error, FieldError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// Rows one file may carry: a logistics company's pre-reports for a busy week.
pub const MAX_ROWS: usize = 100_000;
/// Trips written (with their audit entries) per round of statements.
const WRITE_CHUNK: usize = 1000;

/// Field, then the header names that mean it (the first Chinese and English ones go in the template).
const HEADERS: &[(&str, &[&str])] = &[
    ("plate", &["车牌号", "plate", "车牌", "车牌号码"]),
    ("trailer", &["挂车号", "trailer", "挂车车牌"]),
    ("destination", &["目的地单位", "destination", "目的地"]),
    ("expected_at", &["预计到达卡口时间", "expected_at", "预计到达时间"]),
    ("driver_name", &["司机姓名", "driver_name"]),
    ("driver_id_number", &["司机身份证号", "driver_id_number"]),
    ("driver_phone", &["司机手机号", "driver_phone"]),
    ("co_driver_name", &["随车人员姓名", "co_driver_name"]),
    ("co_driver_id_number", &["随车人员身份证号", "co_driver_id_number"]),
    ("co_driver_phone", &["随车人员手机号", "co_driver_phone"]),
];
const REQUIRED: &[&str] = &["plate", "expected_at", "driver_name", "driver_id_number"];

#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub imported: usize,
    pub trips: Vec<ImportedTrip>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportedTrip {
    /// The spreadsheet row.
    pub row: usize,
    pub id: Uuid,
    pub plate: String,
}

/// The template: both header names per column and one example row.
pub fn template() -> Result<Vec<u8>, Error> {
    let header = HEADERS.iter().map(|(f, names)| XCell::Text(format!("{}/{f}", names[0]))).collect();
    let example = ["晋D12345", "", "壶关县太行钢材贸易有限公司", "2022-11-11 08:00", "张师傅", "11010519491231002X", "13912345678", "", "", ""];
    write_sheet("pre-report", &[header, example.iter().map(|s| XCell::Text((*s).to_string())).collect()])
}

fn header_field(h: &str) -> Option<&'static str> {
    let h = h.trim();
    // The template writes `中文/english`; either half names the column.
    HEADERS.iter().find(|(_, names)| names.iter().any(|n| h.split('/').any(|part| n.eq_ignore_ascii_case(part.trim())))).map(|(f, _)| *f)
}

fn check_header(h: &Header<&'static str>, _: &[RCell]) -> Result<(), Error> {
    let missing: Vec<FieldError> = REQUIRED
        .iter()
        .filter(|f| !h.has(f))
        .map(|f| {
            let name = HEADERS.iter().find(|(x, _)| x == f).map(|(_, n)| n[0]).unwrap_or(f);
            FieldError::new(
                format!("header.{f}"),
                "column_missing",
                format!("表头(第 {} 行)缺少“{name}”列", h.row),
                format!("the header (row {}) has no column \"{name}\" ({f})", h.row),
            )
        })
        .collect();
    if missing.is_empty() { Ok(()) } else { Err(Error::Invalid(missing)) }
}

/// Crew errors come back as `crew[0].x` / `crew[1].x`; the sheet calls them `driver_x` / `co_driver_x`.
fn row_field(n: usize, field: &str) -> String {
    let f = if let Some(rest) = field.strip_prefix("crew[0].") {
        format!("driver_{rest}")
    } else if let Some(rest) = field.strip_prefix("crew[1].") {
        format!("co_driver_{rest}")
    } else if field == "crew" {
        "driver_name".to_string()
    } else if field == "destination_id" {
        "destination".to_string()
    } else {
        field.to_string()
    };
    format!("rows[{n}].{f}")
}

/// A row that passed every check, ready to become a trip.
struct Good {
    row: usize,
    destination: Uuid,
    expected_at: DateTime<Utc>,
    checked: ReportChecked,
}

pub async fn import(store: &Store, who: &Principal, format: Format, bytes: &[u8]) -> Result<ImportReport, Error> {
    who.require(Permission::TripsReport)?;
    let reporter = who.unit_id.ok_or(Error::Forbidden)?;
    let now = store.now();
    // Destinations by exact unit name, among the kinds a truck is bound for; a blank one is the reporter.
    let mut dests: HashMap<String, (Uuid, String)> = HashMap::new();
    for kind in [UnitKind::CargoOwner, UnitKind::LogisticsPark, UnitKind::TruckServiceSite, UnitKind::KeyVenue] {
        for r in store.db.fetch_all(q!("SELECT id, name, jurisdiction FROM units WHERE kind = $1 AND active = TRUE", kind.as_str())).await? {
            dests.entry(r.get("name")?).or_insert((r.get("id")?, r.get("jurisdiction")?));
        }
    }
    let own: Option<String> = store
        .db
        .fetch_optional(q!("SELECT jurisdiction FROM units WHERE id = $1 AND active = TRUE", reporter))
        .await?
        .map(|r| r.get("jurisdiction"))
        .transpose()?;
    // Plates with an open trip already: a re-upload of the same file says so row by row.
    let open: HashSet<String> =
        store.db.scan(q!("SELECT plate FROM trips WHERE closed_at IS NULL")).await?.iter().map(|r| r.get("plate")).collect::<Result<_, _>>()?;
    let mut errs = RowErrors::default();
    let mut good: Vec<Good> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut count = 0usize;
    let rows = sheet::read_table(format, bytes, header_field, check_header, |r| {
        count += 1;
        if count > MAX_ROWS {
            return Err(Error::field("file", "too_many_rows", format!("一次最多导入 {MAX_ROWS} 行"), format!("at most {MAX_ROWS} rows per import")));
        }
        let n = r.row;
        let text = |f: &'static str| r.text(f);
        let mut row_errs: Vec<FieldError> = Vec::new();
        let destination = match text("destination") {
            d if d.is_empty() => Some((reporter, own.clone())),
            d => match dests.get(&d) {
                Some((id, j)) => Some((*id, Some(j.clone()))),
                None => {
                    row_errs.push(FieldError::new(
                        format!("rows[{n}].destination"),
                        "unit_unknown",
                        format!("找不到名为“{d}”的目的地单位"),
                        format!("no destination unit is named \"{d}\""),
                    ));
                    None
                }
            },
        };
        let expected_at = match cell_time(&format!("rows[{n}].expected_at"), r.get("expected_at"), false) {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                row_errs.push(e);
                None
            }
            None => {
                row_errs.push(FieldError::required(format!("rows[{n}].expected_at")));
                None
            }
        };
        if let Ok(p) = Plate::parse("plate", &text("plate")) {
            match seen.get(p.as_str()) {
                Some(first) => row_errs.push(FieldError::new(
                    format!("rows[{n}].plate"),
                    "duplicate_in_file",
                    format!("与第 {first} 行车牌重复"),
                    format!("the same plate as row {first}"),
                )),
                None => {
                    if open.contains(p.as_str()) {
                        row_errs.push(FieldError::new(
                            format!("rows[{n}].plate"),
                            "trip_open_for_plate",
                            "该车辆已有未闭环的行程(已报备)",
                            "this vehicle already has an open trip (already reported)",
                        ));
                    }
                    seen.insert(p.as_str().to_string(), n);
                }
            }
        }
        let mut crew =
            vec![CrewInput { name: text("driver_name"), id_number: text("driver_id_number"), phone: text("driver_phone"), health_code: None }];
        if !text("co_driver_name").is_empty() || !text("co_driver_id_number").is_empty() {
            crew.push(CrewInput {
                name: text("co_driver_name"),
                id_number: text("co_driver_id_number"),
                phone: text("co_driver_phone"),
                health_code: None,
            });
        }
        let trailer = Some(text("trailer")).filter(|t| !t.is_empty());
        // A row with a bad time or destination is still checked field by field (with stand-ins).
        let (destination_id, jurisdiction) = match destination {
            Some((id, j)) => (id, j),
            None => (reporter, own.clone()),
        };
        let input = ReportInput { plate: text("plate"), trailer, destination_id, expected_at: expected_at.unwrap_or(now), crew };
        let stood_in: Vec<String> = row_errs.iter().map(|e| e.field.clone()).collect();
        match report_check_known(&input, jurisdiction, now) {
            Ok(checked) if row_errs.is_empty() => {
                good.push(Good { row: n, destination: input.destination_id, expected_at: input.expected_at, checked });
                return Ok(());
            }
            Ok(_) => {}
            Err(Error::Invalid(fs)) => {
                for f in fs {
                    let field = row_field(n, &f.field);
                    // A stand-in value (time, destination) already has its own error.
                    if !stood_in.contains(&field) {
                        row_errs.push(f.at(field));
                    }
                }
            }
            Err(e) => return Err(e),
        }
        errs.extend(n, row_errs);
        Ok(())
    })?;
    if rows == 0 {
        return Err(Error::field("file", "sheet_no_rows", "表格中没有数据行", "the sheet has no data rows"));
    }
    errs.finish()?;
    drop(seen);
    drop(open);
    let policy = crate::trips::policy_now(store).await?;
    let rules = TripRules::new(policy.version, &policy.params.truck);
    // Thousands of rows: a transaction of its own, not a savepoint (see `Writer::begin_alone`).
    let mut tx = store.db.begin_alone(Durability::Durable).await?;
    let mut done = Vec::with_capacity(good.len());
    let mut good = good.into_iter().peekable();
    while good.peek().is_some() {
        let mut reported = Vec::with_capacity(WRITE_CHUNK);
        for g in good.by_ref().take(WRITE_CHUNK) {
            let r = report_new(reporter, (g.destination, g.expected_at), g.checked, &rules, now)?;
            done.push(ImportedTrip { row: g.row, id: r.trip.id, plate: r.trip.plate.as_str().to_string() });
            reported.push(r);
        }
        insert_reported(store, &mut tx, &reported, now).await?;
        let entries = reported.iter().map(|r| trip_audit("trip.report", &r.trip, &r.jurisdiction, r.detail.clone())).collect();
        audit::append_all(&mut tx, &store.vault, now, who, entries).await?;
    }
    let (home, _) = who.home();
    use sha2::Digest;
    let detail = serde_json::json!({"format": format.as_str(), "rows": done.len(), "sha256": hex::encode(sha2::Sha256::digest(bytes)),
                                    "first": done.iter().take(20).map(|t| t.id).collect::<Vec<_>>()});
    let entry = audit::Entry { action: "trip.import", object_type: "trip", object_id: reporter.to_string(), jurisdiction: &home, detail };
    store.audited(who, entry, tx).await?;
    Ok(ImportReport { imported: done.len(), trips: done })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_in_either_language_and_the_template_reads_back() {
        assert_eq!(header_field("车牌号"), Some("plate"));
        assert_eq!(header_field(" Driver_ID_Number "), Some("driver_id_number"));
        assert_eq!(header_field("司机身份证号/driver_id_number"), Some("driver_id_number"));
        assert_eq!(header_field("备注"), None);
        let rows = crate::sheet::read_sheet(&template().unwrap()).unwrap();
        let fields: Vec<Option<&str>> = rows[0].1.iter().map(|c| header_field(&c.text())).collect();
        assert!(fields.iter().all(Option::is_some) && fields.len() == HEADERS.len(), "{fields:?}");
        assert_eq!(row_field(5, "crew[1].id_number"), "rows[5].co_driver_id_number");
        assert_eq!(row_field(5, "destination_id"), "rows[5].destination");
    }
}
