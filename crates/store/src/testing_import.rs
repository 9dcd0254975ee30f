//! Lab files: a LIS export (CSV in UTF-8 or GBK, or xlsx) read row by row into results, as it
//! comes out of the LIS: a title row above the header, a 序号 column, blank rows and a total
//! line at the end are passed over (`sheet::read_table`). Every row is checked before anything
//! is written; a bad row — unknown or unshipped tube, unreadable result, duplicate barcode — is
//! reported by its row as Excel shows it (the first thousand; the rest counted) and nothing is
//! imported.
//!
//! A negative's Ct is usually not a number (`未检出`, `-`, `NoCt`, empty): it has none. The
//! ORF1ab and N genes' Ct values are kept when the lab gives them apart. A suspect (可疑) tube is
//! a result, not a bad row: its members are re-tested (`testing::member_status`).

use crate::sheet::{self, Format, Header, RCell, RowErrors};
use crate::testing::{self, CheckedResult, ResultInput, ResultReport};
use crate::{Principal, Store};
use baton_domain::role::Permission;
use baton_domain::testing::parse_ct;
use baton_domain::{Error, FieldError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Barcode,
    Result,
    Ct,
    CtOrf1ab,
    CtN,
    TestedAt,
}

/// Header names as LIS exports write them (white space already dropped).
fn column(h: &str) -> Option<Col> {
    let k: String = h.to_lowercase().chars().filter(|c| !matches!(c, '_' | '-' | '(' | ')' | '（' | '）' | '/' | ':' | '：')).collect();
    let gene = k.replace("基因", "").replace("gene", "").replace('值', "").replace("value", "");
    Some(match k.as_str() {
        "barcode" | "条码" | "条码号" | "样本编号" | "样本条码" | "采样管条码" | "试管编码" | "试管条码" | "管码" | "样本号" => {
            Col::Barcode
        }
        "result" | "结果" | "检测结果" | "核酸结果" | "核酸检测结果" => Col::Result,
        "ct" | "ct值" | "ctvalue" => Col::Ct,
        "testedat" | "检测时间" | "报告时间" | "检测日期" => Col::TestedAt,
        _ => match gene.as_str() {
            "orf1ab" | "orf1abct" | "ctorf1ab" => Col::CtOrf1ab,
            "n" | "nct" | "ctn" => Col::CtN,
            _ => return None,
        },
    })
}

fn file_error(code: &'static str, zh: impl Into<String>, en: impl Into<String>) -> Error {
    Error::field("file", code, zh, en)
}

/// Required columns present once each; other columns are passed over.
fn check_header(h: &Header<Col>, names: &[RCell]) -> Result<(), Error> {
    let mut errs: Vec<FieldError> = h
        .repeated(names)
        .into_iter()
        .map(|name| FieldError::new(format!("columns.{name}"), "column_repeated", "列重复", "the column appears twice"))
        .collect();
    for (need, name) in [(Col::Barcode, "barcode(条码)"), (Col::Result, "result(结果)")] {
        if !h.has(need) {
            errs.push(FieldError::new(
                format!("columns.{}", name.split('(').next().unwrap_or(name)),
                "column_missing",
                format!("表头(第 {} 行)缺少“{name}”列；可用列：条码、结果、Ct值(或 ORF1ab基因Ct值、N基因Ct值)、检测时间", h.row),
                format!("the header (row {}) has no column {name}; columns are barcode, result, ct (or ORF1ab and N gene Ct), tested_at", h.row),
            ));
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(Error::Invalid(errs)) }
}

/// Import a lab file as results of the caller's lab.
pub async fn import(store: &Store, who: &Principal, format: Format, bytes: &[u8]) -> Result<ResultReport, Error> {
    who.require(Permission::TestingResult)?;
    if format == Format::Json {
        return Err(file_error("format_unsupported", "请上传 CSV 或 xlsx 文件", "upload a CSV or xlsx file"));
    }
    let now = store.now();
    let mut checked: Vec<(usize, CheckedResult)> = Vec::new();
    let mut errs = RowErrors::default();
    let mut seen = 0usize;
    let rows = sheet::read_table(format, bytes, column, check_header, |r| {
        seen += 1;
        if seen > testing::MAX_RESULTS {
            return Err(file_error(
                "too_many_rows",
                format!("一次最多导入 {} 行", testing::MAX_RESULTS),
                format!("at most {} rows per import", testing::MAX_RESULTS),
            ));
        }
        let n = r.row;
        let mut row_errs = Vec::new();
        let mut ct = |col: Col, name: &str| match r.get(col) {
            RCell::Number(x) => Some(*x),
            c => parse_ct(&format!("rows[{n}].{name}"), &c.text()).unwrap_or_else(|e| {
                row_errs.push(e);
                None
            }),
        };
        let (ct, ct_orf1ab, ct_n) = (ct(Col::Ct, "ct"), ct(Col::CtOrf1ab, "ct_orf1ab"), ct(Col::CtN, "ct_n"));
        let tested_at = match sheet::cell_time(&format!("rows[{n}].tested_at"), r.get(Col::TestedAt), false) {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                row_errs.push(e);
                None
            }
            None => None,
        };
        let input = ResultInput { barcode: r.text(Col::Barcode), result: r.text(Col::Result), ct, ct_orf1ab, ct_n, tested_at };
        match testing::check_result(n, &input, now) {
            Ok(c) if row_errs.is_empty() => checked.push((n, c)),
            Ok(_) => errs.extend(n, row_errs),
            Err(e) => {
                errs.extend(n, row_errs);
                errs.extend(n, e);
            }
        }
        Ok(())
    })?;
    if rows == 0 {
        return Err(file_error("file_empty", "文件中没有数据行", "the file holds no data rows"));
    }
    testing::apply_results(store, who, &checked, &format!("file:{}", format.as_str()), errs).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lis_headers_with_gene_ct_columns() {
        for (h, c) in [
            ("条码号", Col::Barcode),
            ("试管编码", Col::Barcode),
            ("检测结果", Col::Result),
            ("Ct值", Col::Ct),
            ("ORF1ab基因Ct值", Col::CtOrf1ab),
            ("Ct值(ORF1ab)", Col::CtOrf1ab),
            ("ORF1ab", Col::CtOrf1ab),
            ("N基因Ct值", Col::CtN),
            ("Ct（N）", Col::CtN),
            ("检测时间", Col::TestedAt),
        ] {
            assert_eq!(column(h), Some(c), "{h}");
        }
        for h in ["姓名", "证件号码", "检测机构", "序号"] {
            assert_eq!(column(h), None, "{h}");
        }
    }
}
