//! Batch pre-report (批量报备) from an xlsx workbook or a CSV file (UTF-8 or GBK).
//!
//! **One row per truck**: its plate, trailer, destination, the time it is expected at a
//! checkpoint, the driver, and optionally a second crew member (a truck carries one or two).
//! A row per truck keeps "one row = one trip" so that errors and retries are easy to read; a
//! third crew member is rare and is added at the checkpoint. Columns are found by their header,
//! in Chinese or English (the template has both), in any order; other columns are ignored.
//!
//! All or nothing: every row is checked first; if any is bad nothing is written and the error
//! lists every problem by spreadsheet row (`rows[5].plate`, `rows[5].driver_id_number`). A
//! plate that already has an open trip, or appears twice in the file, is an error of its row,
//! so uploading the same file again reports each truck as already reported instead of
//! duplicating it (and the API honours an Idempotency-Key).

use crate::sheet::{Format, RCell, XCell, cell_time, read_rows, write_sheet};
use crate::trips::{CrewInput, ReportInput, report_check, report_in, trip_audit};
use crate::{Principal, Store, audit, q};
use baton_domain::ident::Plate;
use baton_domain::role::Permission;
use baton_domain::trip::TripRules;
use baton_domain::unit::UnitKind;
use baton_domain::{Error, FieldError};
use serde::Serialize;
use std::collections::HashMap;
use uuid::Uuid;

const MAX_ROWS: usize = 2000;

/// Field, then the header names that mean it (the first Chinese and English ones go in the template).
const HEADERS: &[(&str, &[&str])] = &[
    ("plate", &["车牌号", "plate", "车牌"]),
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

pub async fn import(store: &Store, who: &Principal, format: Format, bytes: &[u8]) -> Result<ImportReport, Error> {
    who.require(Permission::TripsReport)?;
    let reporter = who.unit_id.ok_or(Error::Forbidden)?;
    let now = store.now();
    let rows = read_rows(format, bytes)?;
    let mut rows = rows.into_iter().filter(|(_, cells)| cells.iter().any(|c| !c.text().is_empty()));
    let Some((_, header)) = rows.next() else {
        return Err(Error::field("file", "sheet_empty", "表格是空的", "the sheet is empty"));
    };
    let mut col: HashMap<&str, usize> = HashMap::new();
    for (i, h) in header.iter().enumerate() {
        if let Some(f) = header_field(&h.text()) {
            col.entry(f).or_insert(i);
        }
    }
    let missing: Vec<FieldError> = REQUIRED
        .iter()
        .filter(|f| !col.contains_key(**f))
        .map(|f| {
            let name = HEADERS.iter().find(|(x, _)| x == f).map(|(_, n)| n[0]).unwrap_or(f);
            FieldError::new(format!("header.{f}"), "column_missing", format!("缺少“{name}”列"), format!("the column \"{name}\" ({f}) is missing"))
        })
        .collect();
    if !missing.is_empty() {
        return Err(Error::Invalid(missing));
    }
    let data: Vec<(usize, Vec<RCell>)> = rows.collect();
    if data.is_empty() {
        return Err(Error::field("file", "sheet_no_rows", "表格中没有数据行", "the sheet has no data rows"));
    }
    if data.len() > MAX_ROWS {
        return Err(Error::field("file", "too_many_rows", format!("一次最多导入 {MAX_ROWS} 行"), format!("at most {MAX_ROWS} rows per import")));
    }
    // Destinations by exact unit name, among the kinds a truck is bound for.
    let mut dests: HashMap<String, Uuid> = HashMap::new();
    for kind in [UnitKind::CargoOwner, UnitKind::LogisticsPark, UnitKind::TruckServiceSite, UnitKind::KeyVenue] {
        for r in store.db.fetch_all(q!("SELECT id, name FROM units WHERE kind = $1 AND active = TRUE", kind.as_str())).await? {
            dests.entry(r.get("name")?).or_insert(r.get("id")?);
        }
    }
    let mut errs: Vec<FieldError> = Vec::new();
    let mut inputs: Vec<(usize, ReportInput)> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (n, cells) in &data {
        let get = |f: &str| col.get(f).and_then(|i| cells.get(*i)).cloned().unwrap_or(RCell::Empty);
        let text = |f: &str| get(f).text();
        let destination = match text("destination") {
            d if d.is_empty() => Some(reporter),
            d => {
                let found = dests.get(&d).copied();
                if found.is_none() {
                    errs.push(FieldError::new(
                        format!("rows[{n}].destination"),
                        "unit_unknown",
                        format!("找不到名为“{d}”的目的地单位"),
                        format!("no destination unit is named \"{d}\""),
                    ));
                }
                found
            }
        };
        let expected_at = match cell_time(&format!("rows[{n}].expected_at"), &get("expected_at"), false) {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                errs.push(e);
                None
            }
            None => {
                errs.push(FieldError::required(format!("rows[{n}].expected_at")));
                None
            }
        };
        if let Ok(p) = Plate::parse("plate", &text("plate")) {
            match seen.get(p.as_str()) {
                Some(first) => errs.push(FieldError::new(
                    format!("rows[{n}].plate"),
                    "duplicate_in_file",
                    format!("与第 {first} 行车牌重复"),
                    format!("the same plate as row {first}"),
                )),
                None => {
                    seen.insert(p.as_str().to_string(), *n);
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
        // Rows with a bad time or destination are still checked field by field (with stand-ins).
        let input = ReportInput {
            plate: text("plate"),
            trailer,
            destination_id: destination.unwrap_or(reporter),
            expected_at: expected_at.unwrap_or(now),
            crew,
        };
        inputs.push((*n, input));
    }
    // Plates with an open trip already: a re-upload of the same file says so row by row.
    for (n, input) in &inputs {
        if let Ok(p) = Plate::parse("plate", &input.plate)
            && store.db.fetch_optional(q!("SELECT id FROM trips WHERE plate = $1 AND closed_at IS NULL", p.as_str())).await?.is_some()
        {
            errs.push(FieldError::new(
                format!("rows[{n}].plate"),
                "trip_open_for_plate",
                "该车辆已有未闭环的行程(已报备)",
                "this vehicle already has an open trip (already reported)",
            ));
        }
    }
    let policy = crate::trips::policy_now(store).await?;
    let rules = TripRules::new(policy.version, &policy.params.truck);
    let mut tx = store.db.begin().await?;
    for (n, input) in &inputs {
        let row_errs: Vec<String> = errs.iter().filter(|e| e.field.starts_with(&format!("rows[{n}]."))).map(|e| e.field.clone()).collect();
        match report_check(&mut tx, input, now).await {
            Ok(()) => {}
            Err(Error::Invalid(fs)) => {
                for f in fs {
                    let field = row_field(*n, &f.field);
                    // A stand-in value (time, destination) already has its own error.
                    if !row_errs.contains(&field) {
                        errs.push(f.at(field));
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    if !errs.is_empty() {
        // By row, and in column order within a row (a stable sort keeps the order found).
        errs.sort_by_key(|e| e.field.trim_start_matches("rows[").split(']').next().and_then(|x| x.parse::<usize>().ok()).unwrap_or(0));
        return Err(Error::Invalid(errs));
    }
    let mut done = Vec::new();
    let mut entries = Vec::new();
    for (n, input) in &inputs {
        let (trip, jurisdiction, detail) = report_in(store, &mut tx, reporter, input, &rules, now).await?;
        done.push(ImportedTrip { row: *n, id: trip.id, plate: trip.plate.as_str().to_string() });
        entries.push((trip, jurisdiction, detail));
    }
    for (trip, jurisdiction, detail) in &entries {
        audit::append(&mut tx, &store.vault, now, who, trip_audit("trip.report", trip, jurisdiction, detail.clone())).await?;
    }
    let (home, _) = who.home();
    let detail = serde_json::json!({"format": format.as_str(), "rows": done.len(), "trips": done.iter().map(|t| t.id).collect::<Vec<_>>()});
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
