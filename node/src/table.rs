//! Reading a spreadsheet as header + rows of text, from CSV (UTF-8 with or without BOM, or GBK)
//! or XLSX/XLS/ODS (first sheet). Line numbers are the file's own (header = line 1).

use anyhow::{Context, Result, bail};
use calamine::{Data, Reader};
use std::path::Path;

pub struct Table {
    pub headers: Vec<String>,
    /// (line number in the file, cells)
    pub rows: Vec<(u64, Vec<String>)>,
    pub encoding: &'static str,
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
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(text.as_bytes());
    let headers = rdr
        .headers()
        .with_context(|| format!("{}: cannot read the header line", path.display()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.with_context(|| format!("{}: malformed CSV", path.display()))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        rows.push((line, rec.iter().map(|c| c.trim().to_string()).collect()));
    }
    Ok(Table { headers, rows, encoding })
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
    for (i, r) in iter {
        let cells = pad(r);
        if cells.iter().all(|c| c.is_empty()) {
            continue;
        }
        rows.push((first_row + i as u64 + 1, cells));
    }
    Ok(Table { headers, rows, encoding: "XLSX" })
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
}
