//! What the offices post and file, written from rows the caller gathered: public notice lists
//! (拟认定名单 for 村公示, 乡镇公示 / 公告, 县公告) as CSV (UTF-8 or GBK), XLSX and a printable A4
//! HTML page, one section (and printed page) per village; and plain tables (exports in the import
//! columns) as CSV or XLSX. Identity numbers reach a list only
//! masked: a [`NoticeRow`] is built from an [`IdNumber`] and keeps only its masked form, so no
//! writer here can print one in clear. No I/O: every writer returns bytes.

mod csv_out;
mod html;
mod notice;
mod table;
mod xlsx;

pub use csv_out::{Encoding, to_csv};
pub use html::to_html;
pub use notice::{Listed, NoticeList, NoticeRow, VillageSection};
pub use table::{Table, sheets_xlsx, table_csv, table_xlsx};
pub use xlsx::to_xlsx;
