//! Reading a spreadsheet as header + rows of text, from CSV (UTF-8 with or without BOM, or GBK)
//! or XLSX/XLS/ODS (first sheet). Line numbers are the file's own (header = line 1).

use anyhow::{Context, Result, bail};
use calamine::{Data, Reader};
use std::collections::HashSet;
use std::path::Path;

pub struct Table {
    pub headers: Vec<String>,
    /// (line number in the file, cells)
    pub rows: Vec<(u64, Vec<String>)>,
    pub encoding: &'static str,
    /// (line, column index) of cells a workbook stores as numbers of 16 digits or more: a
    /// spreadsheet keeps 15 significant digits of a number, so the rest of such a cell is lost.
    pub long_numbers: HashSet<(u64, usize)>,
}

impl Table {
    pub fn is_long_number(&self, line: u64, column: usize) -> bool {
        self.long_numbers.contains(&(line, column))
    }
}

pub fn read(path: &Path) -> Result<Table> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "xlsx" | "xlsm" | "xls" | "xlsb" | "ods" => read_workbook(path),
        _ => read_csv(path),
    }
}

/// UTF-8 when the bytes are valid UTF-8 (a BOM is dropped), GBK otherwise.
pub fn decode_text(bytes: &[u8]) -> Result<(String, &'static str)> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Ok((s.to_string(), "UTF-8"));
    }
    let (text, _, had_errors) = encoding_rs::GBK.decode(bytes);
    if had_errors {
        bail!("the file is neither UTF-8 nor GBK text; save it as CSV (UTF-8) or XLSX");
    }
    Ok((text.into_owned(), "GBK"))
}

fn read_csv(path: &Path) -> Result<Table> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (text, encoding) = decode_text(&bytes).with_context(|| path.display().to_string())?;
    // A leading `# …` line is a note (an internal export says so there), not the header.
    let mut rdr =
        csv::ReaderBuilder::new().has_headers(true).flexible(true).comment(Some(b'#')).from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .with_context(|| format!("{}: cannot read the header line", path.display()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    let mut lines = LineCounter::new(&text);
    for rec in rdr.records() {
        let rec = rec.with_context(|| format!("{}: malformed CSV", path.display()))?;
        if rec.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let line = rec.position().map(|p| lines.line_at(p.byte() as usize)).unwrap_or(0);
        rows.push((line, rec.iter().map(|c| c.trim().to_string()).collect()));
    }
    Ok(Table { headers, rows, encoding, long_numbers: HashSet::new() })
}

/// The file's own line of a record, from the byte where the reader says it starts. The csv
/// reader's own line count lags one line per CRLF, so lines are counted here: LF, CRLF and a lone
/// CR each end a line.
struct LineCounter<'a> {
    text: &'a [u8],
    /// Bytes before `counted` hold `breaks` line ends.
    counted: usize,
    breaks: u64,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        LineCounter { text: text.as_bytes(), counted: 0, breaks: 0 }
    }

    /// Line (1-based) of the record starting at `byte`; calls go forward through the text.
    fn line_at(&mut self, byte: usize) -> u64 {
        // A record's reported start may sit before the line end that precedes it.
        let mut start = byte.min(self.text.len());
        while start < self.text.len() && matches!(self.text[start], b'\r' | b'\n') {
            start += 1;
        }
        let from = self.counted.min(start);
        for i in from..start {
            match self.text[i] {
                b'\n' => self.breaks += 1,
                b'\r' if self.text.get(i + 1) != Some(&b'\n') => self.breaks += 1,
                _ => {}
            }
        }
        self.counted = start;
        self.breaks + 1
    }
}

fn cell_text(d: &Data) -> String {
    match d {
        Data::Empty => String::new(),
        Data::String(s) => s.trim().to_string(),
        // Codes and numbers typed as numbers: 420322105200.0 → "420322105200".
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Int(i) => i.to_string(),
        Data::Bool(b) => jianka_shared::labels::yes_no(*b).to_string(),
        other => other.to_string(),
    }
}

fn read_workbook(path: &Path) -> Result<Table> {
    let mut wb =
        calamine::open_workbook_auto(path).with_context(|| format!("cannot open workbook {}", path.display()))?;
    let range = wb
        .worksheet_range_at(0)
        .with_context(|| format!("{}: the workbook has no sheet", path.display()))?
        .with_context(|| format!("{}: cannot read the first sheet", path.display()))?;
    let first_row = range.start().map(|(r, _)| r as u64).unwrap_or(0);
    let first_col = range.start().map(|(_, c)| c as usize).unwrap_or(0);
    let mut iter = range.rows().enumerate();
    let Some((_, header)) = iter.next() else {
        bail!("{}: the first sheet is empty", path.display());
    };
    // Cells left of the used range are empty: pad so columns line up with the sheet.
    let pad = |cells: &[Data]| -> Vec<String> {
        std::iter::repeat_n(String::new(), first_col).chain(cells.iter().map(cell_text)).collect()
    };
    let headers = pad(header);
    let mut rows = Vec::new();
    let mut long_numbers = HashSet::new();
    for (i, r) in iter {
        let cells = pad(r);
        if cells.iter().all(|c| c.is_empty()) {
            continue;
        }
        let line = first_row + i as u64 + 1;
        for (c, d) in r.iter().enumerate() {
            if is_long_number(d) {
                long_numbers.insert((line, first_col + c));
            }
        }
        rows.push((line, cells));
    }
    Ok(Table { headers, rows, encoding: "XLSX", long_numbers })
}

/// A number cell too long for a spreadsheet to hold exactly (it keeps 15 significant digits).
fn is_long_number(d: &Data) -> bool {
    match d {
        Data::Float(f) => f.abs() >= 1e15,
        Data::Int(i) => i.unsigned_abs() >= 1_000_000_000_000_000,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_bom_and_gbk_are_detected() {
        let s = "村代码,姓名\n420322105200,王大山\n";
        assert_eq!(decode_text(s.as_bytes()).unwrap(), (s.to_string(), "UTF-8"));
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(s.as_bytes());
        assert_eq!(decode_text(&bom).unwrap().0, s);
        let (gbk, _, _) = encoding_rs::GBK.encode(s);
        assert!(std::str::from_utf8(&gbk).is_err());
        assert_eq!(decode_text(&gbk).unwrap(), (s.to_string(), "GBK"));
    }

    #[test]
    fn lines_are_counted_for_lf_crlf_and_lone_cr() {
        for end in ["\n", "\r\n", "\r"] {
            let text = ["h1,h2", "a,b", "", "\"c", "d\",e", "f,g", ""].join(end);
            let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
            let mut lines = LineCounter::new(&text);
            let got: Vec<u64> =
                rdr.records().map(|r| lines.line_at(r.unwrap().position().unwrap().byte() as usize)).collect();
            assert_eq!(got, vec![2, 4, 6], "line end {end:?}");
        }
    }
}
