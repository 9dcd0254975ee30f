//! Spreadsheets and CSV files as people exchange them: xlsx written and read, CSV in UTF-8
//! (with or without BOM) or GBK as Chinese Excel saves it, and the dates and times typed
//! into their cells read as China time. Every import and export goes through here.

use baton_domain::{Error, FieldError};
use chrono::{DateTime, Utc};
use std::borrow::Cow;

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

/// Bytes as text: UTF-8 (a BOM is dropped; borrowed, not copied), else GBK (GB 18030's
/// common subset, as Chinese Excel saves "CSV"); anything else is refused.
pub fn decode_text(bytes: &[u8]) -> Result<Cow<'_, str>, Error> {
    let b = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(s) = std::str::from_utf8(b) {
        return Ok(Cow::Borrowed(s));
    }
    encoding_rs::GBK.decode_without_bom_handling_and_without_replacement(b).ok_or_else(|| {
        Error::field(
            "file",
            "encoding_unknown",
            "文件编码无法识别，请保存为 UTF-8 或 GBK 编码的 CSV",
            "the file is neither UTF-8 nor GBK; save the CSV as UTF-8 or GBK",
        )
    })
}

fn count_newlines(b: &[u8]) -> usize {
    b.iter().filter(|c| **c == b'\n').count()
}

/// Every record of a CSV file (UTF-8 or GBK), in order, with the row Excel shows it on.
///
/// The csv reader's own line numbers are not that row: a record's position is where the reader
/// began looking for it, which is the LF of the CRLF before it (one too low in every CRLF file)
/// or the first of the blank lines it skipped; and a quoted value with line breaks spans several
/// lines but one row. So the row is counted here: line breaks before the record's first byte,
/// less those inside earlier records' values, and every blank line is a (blank) row, as in Excel.
fn csv_rows(bytes: &[u8], f: &mut dyn FnMut(usize, Vec<RCell>) -> Result<(), Error>) -> Result<(), Error> {
    let text = decode_text(bytes)?;
    let b = text.as_bytes();
    let mut rd = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(b);
    let mut rec = csv::StringRecord::new();
    let (mut scanned, mut breaks, mut inside) = (0usize, 0usize, 0usize);
    loop {
        match rd.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => return Err(Error::field("file", "csv_unreadable", format!("CSV 无法读取：{e}"), format!("the CSV cannot be read: {e}"))),
        }
        let at = rec.position().map_or(scanned, |p| usize::try_from(p.byte()).unwrap_or(scanned)).clamp(scanned, b.len());
        let start = at + b[at..].iter().take_while(|c| matches!(c, b'\r' | b'\n')).count();
        breaks += count_newlines(&b[scanned..start]);
        scanned = start;
        let row = breaks + 1 - inside;
        inside += rec.iter().map(|v| count_newlines(v.as_bytes())).sum::<usize>();
        let cells = rec.iter().map(|v| if v.trim().is_empty() { RCell::Empty } else { RCell::Text(v.to_string()) }).collect();
        f(row, cells)?;
    }
}

/// Every row of the first sheet of an xlsx file, in order, with its row number, read cell by
/// cell from the sheet's XML (the sheet is never held whole); rows with no cells are left out.
fn xlsx_rows(bytes: &[u8], f: &mut dyn FnMut(usize, Vec<RCell>) -> Result<(), Error>) -> Result<(), Error> {
    use calamine::{DataRef, Reader, Xlsx};
    let unreadable =
        |e: String| Error::field("file", "xlsx_unreadable", format!("无法读取 xlsx 文件：{e}"), format!("the file could not be read as xlsx: {e}"));
    let mut wb: Xlsx<_> = Xlsx::new(std::io::Cursor::new(bytes)).map_err(|e| unreadable(e.to_string()))?;
    let Some(name) = wb.sheet_names().first().cloned() else { return Err(unreadable("no worksheet".into())) };
    let mut cells = wb.worksheet_cells_reader(&name).map_err(|e| unreadable(e.to_string()))?;
    let mut row: Option<u32> = None;
    let mut cur: Vec<RCell> = Vec::new();
    while let Some(cell) = cells.next_cell().map_err(|e| unreadable(e.to_string()))? {
        let (r, c) = cell.get_position();
        if row != Some(r) {
            if let Some(n) = row {
                f(n as usize + 1, std::mem::take(&mut cur))?;
            }
            row = Some(r);
        }
        let v = match cell.get_value() {
            DataRef::Empty | DataRef::Error(_) => continue,
            DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => RCell::Text(s.clone()),
            DataRef::SharedString(s) => RCell::Text((*s).to_string()),
            DataRef::Int(n) => RCell::Number(*n as f64),
            DataRef::Float(x) => RCell::Number(*x),
            DataRef::Bool(b) => RCell::Text(b.to_string()),
            DataRef::DateTime(dt) => RCell::Date(dt.as_f64()),
        };
        let c = c as usize;
        if cur.len() <= c {
            cur.resize(c + 1, RCell::Empty);
        }
        cur[c] = v;
    }
    match row {
        Some(n) => f(n as usize + 1, cur),
        None => Ok(()),
    }
}

/// Every row of a CSV or xlsx file, in order, each with its row number as Excel shows it (blank
/// rows of a CSV file included): the one reader every import goes through.
pub fn for_each_row(format: Format, bytes: &[u8], mut f: impl FnMut(usize, Vec<RCell>) -> Result<(), Error>) -> Result<(), Error> {
    match format {
        Format::Csv => csv_rows(bytes, &mut f),
        Format::Xlsx => xlsx_rows(bytes, &mut f),
        Format::Json => Err(Error::field("file", "format_unsupported", "请上传 CSV 或 xlsx 文件", "upload a CSV or xlsx file")),
    }
}

// ---------- tables as people export them ----------

/// Rows looked at for the header: a title (often merged across the columns), a note or two
/// (unit, date of export), then the header.
const HEADER_SEARCH_ROWS: usize = 10;

/// Names of the row-number column exports put first (序号): its numbers are not data.
const ROW_NUMBER_NAMES: &[&str] = &["序号", "行号", "no", "no.", "#"];

/// Words a total line at the end of an export starts with (合计 12 份).
const TOTAL_WORDS: &[&str] = &["合计", "总计", "共计", "小计", "汇总", "total", "sum"];

/// What a header cell names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column<C> {
    /// A column the import reads.
    Known(C),
    /// The row-number column (序号): skipped.
    RowNumber,
    /// A header cell without a name: nothing under it is read.
    Blank,
    /// A name the import does not know (kept for the import's own message).
    Unknown(String),
}

/// A table's header: the row it is on, and what each of its columns names.
#[derive(Debug, Clone)]
pub struct Header<C> {
    pub row: usize,
    pub columns: Vec<Column<C>>,
}

impl<C: Copy + Eq> Header<C> {
    pub fn has(&self, c: C) -> bool {
        self.columns.contains(&Column::Known(c))
    }

    fn known(&self) -> usize {
        self.columns.iter().filter(|c| matches!(c, Column::Known(_))).count()
    }

    /// Header names (as written) of the columns that name something another column already names.
    pub fn repeated(&self, names: &[RCell]) -> Vec<String> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for (i, c) in self.columns.iter().enumerate() {
            if let Column::Known(k) = c {
                if seen.contains(k) {
                    out.push(names.get(i).map(RCell::text).unwrap_or_default());
                } else {
                    seen.push(*k);
                }
            }
        }
        out
    }

    /// Whether a row holds nothing but perhaps its row number.
    fn is_blank(&self, cells: &[RCell]) -> bool {
        cells.iter().enumerate().all(|(i, c)| c.is_blank() || self.columns.get(i) == Some(&Column::RowNumber))
    }
}

/// A header cell's name as imports match it: without white space (headers wrap in their cells)
/// or a BOM.
pub fn header_name(cell: &RCell) -> String {
    cell.text().chars().filter(|c| !c.is_whitespace() && *c != '\u{feff}').collect()
}

fn header_of<C>(row: usize, cells: &[RCell], column: &impl Fn(&str) -> Option<C>) -> Header<C> {
    let columns = cells
        .iter()
        .map(|cell| {
            let name = header_name(cell);
            if name.is_empty() {
                Column::Blank
            } else if ROW_NUMBER_NAMES.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
                Column::RowNumber
            } else {
                column(&name).map_or(Column::Unknown(name), Column::Known)
            }
        })
        .collect();
    Header { row, columns }
}

/// Whether a row is a total line (合计, 总计, Total…): its first value starts with such a word.
fn is_total(cells: &[RCell]) -> bool {
    let Some(first) = cells.iter().find(|c| !c.is_blank()) else { return false };
    let t = first.text().to_lowercase();
    TOTAL_WORDS.iter().any(|w| t.strip_prefix(w).is_some_and(|rest| !w.is_ascii() || !rest.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())))
}

/// One data row of a table: its row number and its cells, read by column.
pub struct Record<'a, C> {
    pub row: usize,
    header: &'a Header<C>,
    cells: &'a [RCell],
}

impl<C: Copy + Eq> Record<'_, C> {
    /// The cell under the (first) column naming `c`; empty when there is none.
    pub fn get(&self, c: C) -> &RCell {
        static EMPTY: RCell = RCell::Empty;
        self.header.columns.iter().position(|x| *x == Column::Known(c)).and_then(|i| self.cells.get(i)).unwrap_or(&EMPTY)
    }

    pub fn text(&self, c: C) -> String {
        self.get(c).text()
    }

    /// Whether the row has values right of its header's last column.
    pub fn overhangs(&self) -> bool {
        self.cells.iter().skip(self.header.columns.len()).any(|c| !c.is_blank())
    }
}

/// Read a table as a person reads an export: the header is the row among the first
/// [`HEADER_SEARCH_ROWS`] that names the most of the import's columns (`column` says what a
/// header name means; title and note rows above it are passed over), or else the first row with
/// anything in it; after it, blank rows (or rows with only a row number) are skipped, the
/// row-number column (序号) is not read, and a total line that ends the file is dropped (one
/// followed by more rows is read as a row). `header` checks the header before any row is read;
/// `row` gets each data row. Returns how many data rows there were.
pub fn read_table<C: Copy + Eq>(
    format: Format,
    bytes: &[u8],
    column: impl Fn(&str) -> Option<C>,
    header: impl FnOnce(&Header<C>, &[RCell]) -> Result<(), Error>,
    mut row: impl FnMut(Record<'_, C>) -> Result<(), Error>,
) -> Result<usize, Error> {
    let mut head: Option<Header<C>> = None;
    let mut check = Some(header);
    let mut first: Vec<(usize, Vec<RCell>)> = Vec::new();
    let mut held: Option<(usize, Vec<RCell>)> = None;
    let mut count = 0usize;
    // A data row: the total line held back is a row after all when another row follows it.
    let mut data = |h: &Header<C>, n: usize, cells: Vec<RCell>, count: &mut usize| -> Result<(), Error> {
        if h.is_blank(&cells) {
            return Ok(());
        }
        if let Some((m, prev)) = held.take() {
            *count += 1;
            row(Record { row: m, header: h, cells: &prev })?;
        }
        if is_total(&cells) {
            held = Some((n, cells));
            return Ok(());
        }
        *count += 1;
        row(Record { row: n, header: h, cells: &cells })
    };
    let mut found = |first: &mut Vec<(usize, Vec<RCell>)>| -> Result<Header<C>, Error> {
        let mut best: Option<(usize, Header<C>)> = None;
        for (i, (n, cells)) in first.iter().enumerate() {
            let h = header_of(*n, cells, &column);
            if h.known() > best.as_ref().map_or(0, |(_, b)| b.known()) {
                best = Some((i, h));
            }
        }
        let (i, h) = match best {
            Some(b) => b,
            None => match first.iter().position(|(_, cells)| cells.iter().any(|c| !c.is_blank())) {
                Some(i) => (i, header_of(first[i].0, &first[i].1, &column)),
                None => return Err(Error::field("file", "file_empty", "文件中没有数据", "the file holds no rows")),
            },
        };
        if let Some(check) = check.take() {
            check(&h, &first[i].1)?;
        }
        first.drain(..=i);
        Ok(h)
    };
    for_each_row(format, bytes, |n, cells| {
        if let Some(h) = &head {
            return data(h, n, cells, &mut count);
        }
        first.push((n, cells));
        if first.len() < HEADER_SEARCH_ROWS {
            return Ok(());
        }
        let h = found(&mut first)?;
        for (n, cells) in first.drain(..) {
            data(&h, n, cells, &mut count)?;
        }
        head = Some(h);
        Ok(())
    })?;
    if head.is_none() {
        let h = found(&mut first)?;
        for (n, cells) in first.drain(..) {
            data(&h, n, cells, &mut count)?;
        }
    }
    Ok(count)
}

// ---------- row errors ----------

/// Row errors listed in one answer; the rest are counted (a file of 100,000 bad rows would
/// otherwise answer with megabytes of errors).
pub const MAX_LISTED_ERRORS: usize = 1000;

/// The row errors of one file: the first [`MAX_LISTED_ERRORS`] in row order kept, every one
/// counted. Errors found in several passes over the rows are gathered per pass and merged
/// ([`RowErrors::merge`]): the first errors by row of the whole are among each pass's first.
#[derive(Debug, Default)]
pub struct RowErrors {
    listed: Vec<(usize, FieldError)>,
    total: usize,
}

impl RowErrors {
    pub fn push(&mut self, row: usize, e: FieldError) {
        self.total += 1;
        if self.listed.len() < MAX_LISTED_ERRORS {
            self.listed.push((row, e));
        }
    }

    pub fn extend(&mut self, row: usize, errs: impl IntoIterator<Item = FieldError>) {
        for e in errs {
            self.push(row, e);
        }
    }

    pub fn merge(&mut self, other: RowErrors) {
        self.total += other.total;
        self.listed.extend(other.listed);
        self.listed.sort_by_key(|(row, _)| *row);
        self.listed.truncate(MAX_LISTED_ERRORS);
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Nothing wrong, or the listed errors in row order with, when some are not listed, a
    /// `rows` error (`too_many_errors`) that gives the total.
    pub fn finish(mut self) -> Result<(), Error> {
        if self.total == 0 {
            return Ok(());
        }
        self.listed.sort_by_key(|(row, _)| *row);
        let mut errs: Vec<FieldError> = self.listed.into_iter().map(|(_, e)| e).collect();
        if self.total > errs.len() {
            let (total, listed) = (self.total, errs.len());
            errs.push(FieldError::new(
                "rows",
                "too_many_errors",
                format!("共 {total} 处错误，只列出前 {listed} 处"),
                format!("{total} errors in all; the first {listed} are listed"),
            ));
        }
        Err(Error::Invalid(errs))
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
    /// Nothing, or only white space.
    pub fn is_blank(&self) -> bool {
        match self {
            RCell::Empty => true,
            RCell::Text(s) => s.trim().is_empty(),
            _ => false,
        }
    }

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
        // As Chinese Excel writes a time into a CSV file: no leading zeros.
        assert_eq!(cell_time("f", &RCell::Text("2022/11/10 8:00".into()), false).unwrap().unwrap().to_rfc3339(), "2022-11-10T00:00:00+00:00");
        assert_eq!(cell_time("f", &RCell::Text("2022/1/5".into()), false).unwrap().unwrap().to_rfc3339(), "2022-01-04T16:00:00+00:00");
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

    fn rows(format: Format, bytes: &[u8]) -> Vec<(usize, Vec<RCell>)> {
        let mut out = Vec::new();
        for_each_row(format, bytes, |n, cells| {
            out.push((n, cells));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn csv_in_utf8_bom_and_gbk_reads_the_same_cells() {
        let text = "车牌,姓名\n晋D12345,张三\n,\n";
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(text.as_bytes());
        let (gbk, _, _) = encoding_rs::GBK.encode(text);
        for bytes in [text.as_bytes().to_vec(), bom, gbk.into_owned()] {
            let rows = rows(Format::Csv, &bytes);
            assert_eq!(rows.len(), 3);
            assert_eq!(rows[1], (2, vec![RCell::Text("晋D12345".into()), RCell::Text("张三".into())]));
            assert_eq!(rows[2].1, vec![RCell::Empty, RCell::Empty]);
        }
        let err = |b: &[u8], f| for_each_row(f, b, |_, _| Ok(())).unwrap_err().fields()[0].code;
        assert_eq!(err(b"\xff\xfe\x00\x01\x80", Format::Csv), "encoding_unknown");
        assert_eq!(err(b"[]", Format::Json), "format_unsupported");
        assert_eq!(err(b"not a zip", Format::Xlsx), "xlsx_unreadable");
    }

    /// The row a CSV record is reported at is the row Excel shows it on, whatever the line
    /// breaks: LF, CRLF (the csv reader's own numbers are one too low there), blank lines, and
    /// quoted values with line breaks inside (one row however many lines).
    #[test]
    fn csv_rows_are_numbered_as_excel_shows_them() {
        let numbers = |text: &str| rows(Format::Csv, text.as_bytes()).iter().map(|r| r.0).collect::<Vec<_>>();
        for eol in ["\n", "\r\n"] {
            let text = ["a,b", "1,2", "3,4", ""].join(eol);
            assert_eq!(numbers(&text), [1, 2, 3], "{eol:?}");
            // Blank lines are rows too (the reader skips them; the numbering does not).
            let text = ["a,b", "", "1,2", "", "", "3,4", ""].join(eol);
            assert_eq!(numbers(&text), [1, 3, 6], "{eol:?}");
            // A quoted value over two lines is one row.
            let text = ["a,b", "\"x", "y\",2", "3,4", "\"p", "", "q\",5", "6,7"].join(eol);
            assert_eq!(numbers(&text), [1, 2, 3, 4, 5], "{eol:?}");
            let cells = rows(Format::Csv, text.as_bytes());
            assert_eq!(cells[1].1[0], RCell::Text(format!("x{eol}y")));
        }
        // No line break at the end; a CR-LF file in GBK, as Chinese Excel saves it.
        assert_eq!(numbers("a,b\r\n1,2"), [1, 2]);
        let (gbk, _, _) = encoding_rs::GBK.encode("条码,结果\r\n\r\nHG-1,阴性\r\n");
        assert_eq!(rows(Format::Csv, &gbk).iter().map(|r| r.0).collect::<Vec<_>>(), [1, 3]);
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Col {
        Code,
        Result,
    }

    fn col(h: &str) -> Option<Col> {
        match h {
            "条码" | "样本编号" => Some(Col::Code),
            "结果" | "检测结果" => Some(Col::Result),
            _ => None,
        }
    }

    /// (row, code, result) of each data row, and the header's row.
    fn table(format: Format, bytes: &[u8]) -> (usize, Vec<(usize, String, String)>) {
        let mut at = 0;
        let mut out = Vec::new();
        let n = read_table(
            format,
            bytes,
            col,
            |h, _| {
                at = h.row;
                Ok(())
            },
            |r| {
                out.push((r.row, r.text(Col::Code), r.text(Col::Result)));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(n, out.len());
        (at, out)
    }

    /// An export as labs send it: a title row, a note, the header with a 序号 column, rows with
    /// blank rows between them (and one with only its 序号), a total line at the end.
    #[test]
    fn tables_are_read_past_titles_blank_rows_row_numbers_and_totals() {
        let text = "壶关县人民医院核酸检测结果,,\r\n导出时间：2022-11-10,,\r\n序号,条码,检测结果\r\n1,HG-1,阴性\r\n,,\r\n2,HG-2,阳性\r\n3,,\r\n合计,2,\r\n,,\r\n";
        let (gbk, _, _) = encoding_rs::GBK.encode(text);
        let want = (3, vec![(4, "HG-1".to_string(), "阴性".to_string()), (6, "HG-2".into(), "阳性".into())]);
        assert_eq!(table(Format::Csv, &gbk), want);
        assert_eq!(table(Format::Csv, text.replace("\r\n", "\n").as_bytes()), want);
        // The same as xlsx, its title merged across the columns.
        use rust_xlsxwriter::{Format as XFormat, Workbook};
        let mut wb = Workbook::new();
        let ws = wb.add_worksheet();
        ws.merge_range(0, 0, 0, 2, "壶关县人民医院核酸检测结果", &XFormat::new()).unwrap();
        ws.write_string(1, 0, "导出时间：2022-11-10").unwrap();
        for (c, h) in ["序号", "条码", "检测结果"].iter().enumerate() {
            ws.write_string(2, c as u16, *h).unwrap();
        }
        ws.write_number(3, 0, 1.0).unwrap();
        ws.write_string(3, 1, "HG-1").unwrap();
        ws.write_string(3, 2, "阴性").unwrap();
        ws.write_number(5, 0, 2.0).unwrap();
        ws.write_string(5, 1, "HG-2").unwrap();
        ws.write_string(5, 2, "阳性").unwrap();
        ws.write_number(6, 0, 3.0).unwrap();
        ws.write_string(7, 0, "合计").unwrap();
        ws.write_number(7, 1, 2.0).unwrap();
        assert_eq!(table(Format::Xlsx, &wb.save_to_buffer().unwrap()), want);
        // A total line followed by another row is a row (and the import reports it).
        let (_, rows) = table(Format::Csv, "条码,结果\nTotal: 1,\nHG-3,阴性\n".as_bytes());
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 3]);
        // A code that starts like a total word is not a total.
        let (_, rows) = table(Format::Csv, "条码,结果\nTOTAL01,阴性\n".as_bytes());
        assert_eq!(rows.len(), 1);
        // Without any known name, the first row with anything in it is the header.
        let (at, rows) = table(Format::Csv, "\ntube,outcome\nHG-1,negative\n".as_bytes());
        assert_eq!((at, rows.len()), (2, 1));
        let e = read_table(Format::Csv, b"\n,,\n", col, |_, _| Ok(()), |_| Ok(())).unwrap_err();
        assert_eq!(e.fields()[0].code, "file_empty");
    }

    #[test]
    fn row_errors_list_the_first_thousand_and_count_the_rest() {
        let e = |n: usize| FieldError::new(format!("rows[{n}].x"), "bad", "坏", "bad");
        let mut a = RowErrors::default();
        assert!(a.is_empty());
        for n in 2..2502 {
            a.push(n, e(n));
        }
        let mut b = RowErrors::default();
        b.push(1, e(1));
        b.push(3000, e(3000));
        a.merge(b);
        assert_eq!(a.total(), 2502);
        let fields = a.finish().unwrap_err().fields().to_vec();
        assert_eq!(fields.len(), MAX_LISTED_ERRORS + 1);
        assert_eq!((fields[0].field.as_str(), fields[999].field.as_str()), ("rows[1].x", "rows[1000].x"));
        assert_eq!((fields[1000].field.as_str(), fields[1000].code), ("rows", "too_many_errors"));
        assert!(fields[1000].en.starts_with("2502 errors"), "{}", fields[1000].en);
        assert!(RowErrors::default().finish().is_ok());
    }
}
