//! Lab files: a LIS export (CSV in UTF-8 or GBK, or xlsx) read row by row into results.
//! Every row is checked before anything is written; a bad row — unknown or unshipped tube,
//! unreadable result, duplicate barcode, empty row — is reported by its line in the file and
//! nothing is imported.

use crate::sheet::{self, Format, RCell};
use crate::testing::{self, CheckedResult, ResultInput, ResultReport};
use crate::{Principal, Store};
use baton_domain::role::Permission;
use baton_domain::{Error, FieldError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Barcode,
    Result,
    Ct,
    TestedAt,
}

/// Header names as LIS exports write them.
fn column(h: &str) -> Option<Col> {
    let k = h.trim().to_ascii_lowercase().replace([' ', '_'], "");
    match k.as_str() {
        "barcode" | "条码" | "条码号" | "样本编号" | "样本条码" | "采样管条码" => Some(Col::Barcode),
        "result" | "结果" | "检测结果" | "核酸结果" => Some(Col::Result),
        "ct" | "ct值" | "ctvalue" => Some(Col::Ct),
        "testedat" | "检测时间" | "报告时间" => Some(Col::TestedAt),
        _ => None,
    }
}

fn file_error(code: &'static str, zh: impl Into<String>, en: impl Into<String>) -> Error {
    Error::field("file", code, zh, en)
}

/// Import a lab file as results of the caller's lab.
pub async fn import(store: &Store, who: &Principal, format: Format, bytes: &[u8]) -> Result<ResultReport, Error> {
    who.require(Permission::TestingResult)?;
    if format == Format::Json {
        return Err(file_error("format_unsupported", "请上传 CSV 或 xlsx 文件", "upload a CSV or xlsx file"));
    }
    let rows = sheet::read_rows(format, bytes)?;
    let mut it = rows.into_iter();
    let Some((_, head)) = it.next() else {
        return Err(file_error("file_empty", "文件中没有数据", "the file holds no rows"));
    };
    let mut map: Vec<Option<Col>> = Vec::new();
    let mut errs = Vec::new();
    for h in &head {
        let name = h.text();
        let col = column(&name);
        if col.is_some() && map.contains(&col) {
            errs.push(FieldError::new(format!("columns.{name}"), "column_repeated", "列重复", "the column appears twice"));
        }
        map.push(col);
    }
    for (need, name) in [(Col::Barcode, "barcode(条码)"), (Col::Result, "result(结果)")] {
        if !map.contains(&Some(need)) {
            errs.push(FieldError::new(
                format!("columns.{}", name.split('(').next().unwrap_or(name)),
                "column_missing",
                format!("缺少“{name}”列；可用列：条码、结果、Ct值、检测时间"),
                format!("the column {name} is missing; columns are barcode, result, ct, tested_at"),
            ));
        }
    }
    if !errs.is_empty() {
        return Err(Error::Invalid(errs));
    }
    let now = store.now();
    let mut checked: Vec<(usize, CheckedResult)> = Vec::new();
    let mut count = 0usize;
    for (line, cells) in it {
        count += 1;
        if count > testing::MAX_RESULTS {
            return Err(file_error(
                "too_many_rows",
                format!("一次最多导入 {} 行", testing::MAX_RESULTS),
                format!("at most {} rows per import", testing::MAX_RESULTS),
            ));
        }
        if cells.iter().all(|c| *c == RCell::Empty) {
            errs.push(FieldError::new(format!("rows[{line}]"), "row_empty", "空行", "the row is empty"));
            continue;
        }
        let mut input = ResultInput { barcode: String::new(), result: String::new(), ct: None, tested_at: None };
        let mut row_errs = Vec::new();
        for (i, cell) in cells.iter().enumerate() {
            match map.get(i).copied().flatten() {
                Some(Col::Barcode) => input.barcode = cell.text(),
                Some(Col::Result) => input.result = cell.text(),
                Some(Col::Ct) => match cell {
                    RCell::Empty => {}
                    RCell::Number(x) => input.ct = Some(*x),
                    c => match c.text().parse::<f64>() {
                        Ok(x) => input.ct = Some(x),
                        Err(_) => row_errs.push(FieldError::new(format!("rows[{line}].ct"), "ct_invalid", "Ct 值应为数字", "a Ct value is a number")),
                    },
                },
                Some(Col::TestedAt) => {
                    if let Some(t) = sheet::cell_time(&format!("rows[{line}].tested_at"), cell, false) {
                        match t {
                            Ok(t) => input.tested_at = Some(t),
                            Err(e) => row_errs.push(e),
                        }
                    }
                }
                None => {}
            }
        }
        match testing::check_result(line, &input, now) {
            Ok(c) if row_errs.is_empty() => checked.push((line, c)),
            Ok(_) => errs.extend(row_errs),
            Err(e) => {
                errs.extend(row_errs);
                errs.extend(e);
            }
        }
    }
    if count == 0 {
        return Err(file_error("file_empty", "文件中没有数据行", "the file holds no data rows"));
    }
    testing::apply_results(store, who, &checked, &format!("file:{}", format.as_str()), errs).await
}
