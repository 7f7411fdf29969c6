//! A plain table (a header and rows of text) as CSV or XLSX, for exports that must read back in
//! exactly the import columns. An internal export carries its note (内部资料 …): in CSV as a
//! leading `#` line the importer skips, in XLSX as a sheet of its own after the data sheet (the
//! importer reads the first).

use crate::csv_out::Encoding;
use rust_xlsxwriter::Workbook;

/// A table with its header, and the note an internal export carries.
pub struct Table<'a> {
    pub headers: &'a [String],
    pub rows: &'a [Vec<String>],
    pub note: Option<&'a str>,
}

pub fn table_csv(t: &Table, encoding: Encoding) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    w.write_record(t.headers)?;
    for r in t.rows {
        w.write_record(r)?;
    }
    let body = String::from_utf8(w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;
    let text = match t.note {
        // A line of its own; the note holds no line break.
        Some(note) => format!("# {}\n{body}", note.replace(['\n', '\r'], " ")),
        None => body,
    };
    crate::csv_out::encode(&text, encoding)
}

/// One data sheet named `sheet` (then the note's sheet, 说明); every cell text, so a number
/// is never turned into a float that loses digits.
pub fn table_xlsx(t: &Table, sheet: &str) -> anyhow::Result<Vec<u8>> {
    let mut book = Workbook::new();
    let data = book.add_worksheet();
    data.set_name(sheet)?;
    for (c, h) in t.headers.iter().enumerate() {
        data.write_string(0, c as u16, h)?;
    }
    for (i, r) in t.rows.iter().enumerate() {
        for (c, cell) in r.iter().enumerate() {
            if !cell.is_empty() {
                data.write_string(1 + i as u32, c as u16, cell)?;
            }
        }
    }
    if let Some(note) = t.note {
        let info = book.add_worksheet();
        info.set_name("说明")?;
        info.write_string(0, 0, note)?;
    }
    Ok(book.save_to_buffer()?)
}

/// A workbook of several named sheets, each a header and rows of text (a year's report).
pub fn sheets_xlsx(sheets: &[(&str, Table)]) -> anyhow::Result<Vec<u8>> {
    let mut book = Workbook::new();
    for (name, Table { headers, rows, .. }) in sheets {
        let sheet = book.add_worksheet();
        sheet.set_name(*name)?;
        for (c, h) in headers.iter().enumerate() {
            sheet.write_string(0, c as u16, h)?;
        }
        for (i, r) in rows.iter().enumerate() {
            for (c, cell) in r.iter().enumerate() {
                match cell.parse::<f64>() {
                    // Counts and sums as numbers, so the office can add them up.
                    Ok(n) if !cell.is_empty() && cell.len() < 15 => sheet.write_number(1 + i as u32, c as u16, n)?,
                    _ => sheet.write_string(1 + i as u32, c as u16, cell)?,
                };
            }
        }
    }
    Ok(book.save_to_buffer()?)
}
