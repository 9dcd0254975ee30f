//! Spreadsheets and CSV files as people exchange them: xlsx written and read, CSV in UTF-8
//! (with or without BOM) or GBK as Chinese Excel saves it, and the dates and times typed
//! into their cells read as China time. Every import and export goes through here.

use baton_domain::{Error, FieldError};
use chrono::{DateTime, Utc};

pub const XLSX_MIME: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// A file of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
    Xlsx,
}

impl Format {
    /// From a Content-Type header (parameters such as `charset` are ignored: the bytes decide).
    pub fn from_content_type(ct: &str) -> Option<Format> {
        let base = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match base.as_str() {
            "text/csv" | "application/csv" | "text/plain" => Some(Format::Csv),
            "application/json" => Some(Format::Json),
            XLSX_MIME => Some(Format::Xlsx),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Xlsx => "xlsx",
        }
    }
}

/// Bytes as text: UTF-8 (a BOM is dropped), else GBK (GB 18030's common subset, as Chinese
/// Excel saves "CSV"); anything else is refused.
pub fn decode_text(bytes: &[u8]) -> Result<String, Error> {
    let b = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(s) = std::str::from_utf8(b) {
        return Ok(s.to_string());
    }
    encoding_rs::GBK.decode_without_bom_handling_and_without_replacement(b).map(|s| s.into_owned()).ok_or_else(|| {
        Error::field(
            "file",
            "encoding_unknown",
            "文件编码无法识别，请保存为 UTF-8 或 GBK 编码的 CSV",
            "the file is neither UTF-8 nor GBK; save the CSV as UTF-8 or GBK",
        )
    })
}

/// Read a CSV file (UTF-8 or GBK) as text cells, each row with its line number (the header is
/// row 1). Rows of only empty cells are kept: the caller decides whether they are an error.
pub fn read_csv(bytes: &[u8]) -> Result<Vec<(usize, Vec<RCell>)>, Error> {
    let text = decode_text(bytes)?;
    let mut rd = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut out = Vec::new();
    for rec in rd.records() {
        let rec = rec.map_err(|e| Error::field("file", "csv_unreadable", format!("CSV 无法读取：{e}"), format!("the CSV cannot be read: {e}")))?;
        let line = rec.position().map(|p| p.line() as usize).unwrap_or(out.len() + 1);
        out.push((line, rec.iter().map(|v| if v.trim().is_empty() { RCell::Empty } else { RCell::Text(v.to_string()) }).collect()));
    }
    Ok(out)
}

/// Read a CSV or xlsx file into rows of cells, numbered as the file shows them.
pub fn read_rows(format: Format, bytes: &[u8]) -> Result<Vec<(usize, Vec<RCell>)>, Error> {
    match format {
        Format::Csv => read_csv(bytes),
        Format::Xlsx => read_sheet(bytes),
        Format::Json => Err(Error::field("file", "format_unsupported", "请上传 CSV 或 xlsx 文件", "upload a CSV or xlsx file")),
    }
}

/// A cell to write.
#[derive(Debug, Clone)]
pub enum XCell {
    Text(String),
    Number(f64),
    /// A date cell (`yyyy-mm-dd`).
    Date(chrono::NaiveDate),
}

/// A cell as read.
#[derive(Debug, Clone, PartialEq)]
pub enum RCell {
    Empty,
    Text(String),
    Number(f64),
    /// Excel serial date-time (days since 1899-12-30, fraction = time of day).
    Date(f64),
}

impl RCell {
    /// The text of a cell; whole numbers print without a decimal point (phones typed as numbers).
    pub fn text(&self) -> String {
        match self {
            RCell::Empty => String::new(),
            RCell::Text(s) => s.trim().to_string(),
            RCell::Number(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
            RCell::Number(f) => f.to_string(),
            RCell::Date(f) => serial_to_naive(*f).map(|d| d.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default(),
        }
    }
}

fn xlsx_err(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("xlsx: {e}"))
}

/// Write one sheet; row 0 is usually the header.
pub fn write_sheet(name: &str, rows: &[Vec<XCell>]) -> Result<Vec<u8>, Error> {
    write_sheets(&[(name, rows)])
}

/// Write a workbook of several sheets, in order; in each, row 0 is usually the header.
pub fn write_sheets(sheets: &[(&str, &[Vec<XCell>])]) -> Result<Vec<u8>, Error> {
    use rust_xlsxwriter::Workbook;
    let mut wb = Workbook::new();
    for (name, rows) in sheets {
        fill_sheet(wb.add_worksheet(), name, rows)?;
    }
    wb.save_to_buffer().map_err(xlsx_err)
}

fn fill_sheet(ws: &mut rust_xlsxwriter::Worksheet, name: &str, rows: &[Vec<XCell>]) -> Result<(), Error> {
    use rust_xlsxwriter::{ExcelDateTime, Format};
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let bold = Format::new().set_bold();
    ws.set_name(name).map_err(xlsx_err)?;
    for (r, row) in rows.iter().enumerate() {
        let r = u32::try_from(r).map_err(xlsx_err)?;
        for (c, cell) in row.iter().enumerate() {
            let c = u16::try_from(c).map_err(xlsx_err)?;
            match cell {
                XCell::Text(s) if r == 0 => ws.write_string_with_format(r, c, s, &bold).map(|_| ()),
                XCell::Text(s) => ws.write_string(r, c, s).map(|_| ()),
                XCell::Number(n) => ws.write_number(r, c, *n).map(|_| ()),
                XCell::Date(d) => {
                    use chrono::Datelike;
                    let dt = ExcelDateTime::from_ymd(
                        u16::try_from(d.year()).map_err(xlsx_err)?,
                        u8::try_from(d.month()).map_err(xlsx_err)?,
                        u8::try_from(d.day()).map_err(xlsx_err)?,
                    )
                    .map_err(xlsx_err)?;
                    ws.write_datetime_with_format(r, c, &dt, &date).map(|_| ())
                }
            }
            .map_err(xlsx_err)?;
        }
    }
    for c in 0..u16::try_from(rows.first().map(Vec::len).unwrap_or(0)).unwrap_or(0) {
        ws.set_column_width(c, 20).map_err(xlsx_err)?;
    }
    Ok(())
}

/// Read the first sheet: each row with its spreadsheet row number (1-based).
pub fn read_sheet(bytes: &[u8]) -> Result<Vec<(usize, Vec<RCell>)>, Error> {
    read_sheet_at(bytes, 0)
}

/// Read the sheet at `index` (0: the first), as [`read_sheet`] does.
pub fn read_sheet_at(bytes: &[u8], index: usize) -> Result<Vec<(usize, Vec<RCell>)>, Error> {
    use calamine::{Data, Reader, Xlsx};
    let unreadable =
        |e: String| Error::field("file", "xlsx_unreadable", format!("无法读取 xlsx 文件：{e}"), format!("the file could not be read as xlsx: {e}"));
    let mut wb: Xlsx<_> = Xlsx::new(std::io::Cursor::new(bytes)).map_err(|e| unreadable(e.to_string()))?;
    let range = match wb.worksheet_range_at(index) {
        Some(r) => r.map_err(|e| unreadable(e.to_string()))?,
        None => return Err(unreadable("no worksheet".into())),
    };
    let first = range.start().map(|(r, _)| r as usize).unwrap_or(0);
    let first_col = range.start().map(|(_, c)| c as usize).unwrap_or(0);
    Ok(range
        .rows()
        .enumerate()
        .map(|(i, row)| {
            let mut cells = vec![RCell::Empty; first_col];
            cells.extend(row.iter().map(|d| match d {
                Data::Empty | Data::Error(_) => RCell::Empty,
                Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => RCell::Text(s.clone()),
                Data::Int(n) => RCell::Number(*n as f64),
                Data::Float(f) => RCell::Number(*f),
                Data::Bool(b) => RCell::Text(b.to_string()),
                Data::DateTime(dt) => RCell::Date(dt.as_f64()),
            }));
            (first + i + 1, cells)
        })
        .collect())
}

fn serial_to_naive(serial: f64) -> Option<chrono::NaiveDateTime> {
    if !(0.0..2_958_466.0).contains(&serial) {
        return None;
    }
    let base = chrono::NaiveDate::from_ymd_opt(1899, 12, 30)?.and_hms_opt(0, 0, 0)?;
    let ms = (serial * 86_400_000.0).round() as i64;
    base.checked_add_signed(chrono::Duration::milliseconds(ms))
}

pub fn china() -> Option<chrono::FixedOffset> {
    chrono::FixedOffset::east_opt(8 * 3600)
}

/// The county's date at `t`.
pub fn china_date(t: DateTime<Utc>) -> chrono::NaiveDate {
    china().map_or_else(|| t.date_naive(), |z| t.with_timezone(&z).date_naive())
}

pub fn from_china(n: chrono::NaiveDateTime) -> Option<DateTime<Utc>> {
    use chrono::TimeZone;
    china()?.from_local_datetime(&n).single().map(|t| t.with_timezone(&Utc))
}

/// A validity bound from a cell, in China time. A date alone means the start of that day for
/// `valid_from`, and the end of that day (the next day's start) for `valid_until`.
pub fn cell_time(field: &str, cell: &RCell, end: bool) -> Option<Result<DateTime<Utc>, FieldError>> {
    let bad = || {
        FieldError::new(
            field,
            "date_format",
            "日期格式应为 2022-11-10 或 2022-11-10 08:00",
            "use a date like 2022-11-10 or a time like 2022-11-10 08:00",
        )
    };
    let whole_day = |d: chrono::NaiveDate| -> Option<DateTime<Utc>> {
        let d = if end { d.succ_opt()? } else { d };
        from_china(d.and_hms_opt(0, 0, 0)?)
    };
    let t = match cell {
        RCell::Empty => return None,
        RCell::Text(s) if s.trim().is_empty() => return None,
        RCell::Date(f) | RCell::Number(f) => match serial_to_naive(*f) {
            Some(n) if n.time() == chrono::NaiveTime::MIN => whole_day(n.date()),
            Some(n) => from_china(n),
            None => None,
        },
        RCell::Text(s) => {
            let s = s.trim().replace(['/', '年', '月'], "-").replace('日', "");
            if let Ok(d) = chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d") {
                whole_day(d)
            } else {
                ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"]
                    .iter()
                    .find_map(|f| chrono::NaiveDateTime::parse_from_str(&s, f).ok())
                    .and_then(from_china)
                    .or_else(|| DateTime::parse_from_rfc3339(&s).ok().map(|t| t.with_timezone(&Utc)))
            }
        }
    };
    Some(t.ok_or_else(bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_become_times_in_china() {
        let from = cell_time("f", &RCell::Text("2022-11-10".into()), false).unwrap().unwrap();
        assert_eq!(from.to_rfc3339(), "2022-11-09T16:00:00+00:00");
        let until = cell_time("u", &RCell::Text("2022/11/10".into()), true).unwrap().unwrap();
        assert_eq!(until.to_rfc3339(), "2022-11-10T16:00:00+00:00");
        // 44875 is 2022-11-10 in Excel's serial days.
        assert_eq!(cell_time("f", &RCell::Date(44875.0), false).unwrap().unwrap(), from);
        assert_eq!(cell_time("f", &RCell::Text("2022-11-10 08:00".into()), false).unwrap().unwrap().to_rfc3339(), "2022-11-10T00:00:00+00:00");
        assert_eq!(cell_time("f", &RCell::Text("soon".into()), false).unwrap().unwrap_err().code, "date_format");
        assert!(cell_time("f", &RCell::Empty, false).is_none());
        assert_eq!(RCell::Number(13800134567.0).text(), "13800134567");
    }

    #[test]
    fn sheets_round_trip() {
        let d = chrono::NaiveDate::from_ymd_opt(2022, 11, 10).unwrap();
        let bytes = write_sheet("t", &[vec![XCell::Text("a".into()), XCell::Text("b".into())], vec![XCell::Date(d), XCell::Number(1.5)]]).unwrap();
        let rows = read_sheet(&bytes).unwrap();
        assert_eq!(rows[0].1, vec![RCell::Text("a".into()), RCell::Text("b".into())]);
        assert_eq!(rows[1].0, 2);
        assert_eq!(rows[1].1, vec![RCell::Date(44875.0), RCell::Number(1.5)]);
        assert_eq!(read_sheet(b"not a zip").unwrap_err().fields()[0].code, "xlsx_unreadable");
    }

    #[test]
    fn csv_in_utf8_bom_and_gbk_reads_the_same_cells() {
        let text = "车牌,姓名\n晋D12345,张三\n,\n";
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(text.as_bytes());
        let (gbk, _, _) = encoding_rs::GBK.encode(text);
        for bytes in [text.as_bytes().to_vec(), bom, gbk.into_owned()] {
            let rows = read_rows(Format::Csv, &bytes).unwrap();
            assert_eq!(rows.len(), 3);
            assert_eq!(rows[1], (2, vec![RCell::Text("晋D12345".into()), RCell::Text("张三".into())]));
            assert_eq!(rows[2].1, vec![RCell::Empty, RCell::Empty]);
        }
        assert_eq!(read_rows(Format::Csv, b"\xff\xfe\x00\x01\x80").unwrap_err().fields()[0].code, "encoding_unknown");
        assert_eq!(read_rows(Format::Json, b"[]").unwrap_err().fields()[0].code, "format_unsupported");
    }
}
