//! The list as an XLSX workbook: one sheet per village, each with the title, the notice's facts
//! and its table, every cell text (so no spreadsheet turns a number into something else).

use crate::notice::NoticeList;
use rust_xlsxwriter::{Format, Workbook};

pub fn to_xlsx(list: &NoticeList) -> anyhow::Result<Vec<u8>> {
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    for v in &list.villages {
        let sheet = book.add_worksheet();
        // Sheet names are at most 31 characters and unique: the village code is both.
        sheet.set_name(&v.code)?;
        sheet.write_string_with_format(0, 0, format!("{} — {}", list.title, v.name), &bold)?;
        sheet.write_string(1, 0, "公示单位")?;
        sheet.write_string(1, 1, &list.posted_by)?;
        sheet.write_string(2, 0, "异议受理")?;
        sheet.write_string(2, 1, &list.objections_to)?;
        for (c, h) in list.headers().iter().enumerate() {
            sheet.write_string_with_format(3, c as u16, *h, &bold)?;
        }
        for (i, r) in v.rows.iter().enumerate() {
            for (c, cell) in NoticeList::cells(v, i + 1, r).iter().enumerate() {
                sheet.write_string(4 + i as u32, c as u16, cell)?;
            }
        }
        sheet.set_column_width(4, 22)?;
    }
    if list.villages.is_empty() {
        let sheet = book.add_worksheet();
        sheet.write_string(0, 0, format!("{}: no household", list.title))?;
    }
    Ok(book.save_to_buffer()?)
}
