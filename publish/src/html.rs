//! The list as a printable page (A4 landscape, for the notice board and the county's portal): one section
//! per village, each starting a new printed page, in the Chinese fonts the browser has.

use crate::notice::NoticeList;
use std::fmt::Write;

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "@page { size: A4 landscape; margin: 12mm 10mm; }
body { font-family: 'Noto Sans CJK SC', 'Noto Serif CJK SC', 'Source Han Sans SC', 'WenQuanYi Zen Hei', \
'Microsoft YaHei', 'SimSun', sans-serif; font-size: 10pt; }
section + section { break-before: page; page-break-before: always; }
h1 { font-size: 16pt; text-align: center; margin: 0 0 4mm; }
p.facts { margin: 1mm 0; }
table { width: 100%; border-collapse: collapse; margin-top: 3mm; }
th, td { border: 1px solid #000; padding: 0.8mm 1.2mm; text-align: center; white-space: nowrap; }
thead { display: table-header-group; }
tr { break-inside: avoid; }";

pub fn to_html(list: &NoticeList) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n",
        escape(&list.title)
    );
    if list.villages.is_empty() {
        let _ = write!(h, "<section><h1>{}</h1><p>无</p></section>", escape(&list.title));
    }
    for v in &list.villages {
        let _ = write!(
            h,
            "<section><h1>{} — {}</h1><p class=\"facts\">公示单位: {}</p><p class=\"facts\">异议受理: {}</p>\
             <table><thead><tr>",
            escape(&list.title),
            escape(&v.name),
            escape(&list.posted_by),
            escape(&list.objections_to)
        );
        for head in list.headers() {
            let _ = write!(h, "<th>{head}</th>");
        }
        h.push_str("</tr></thead><tbody>\n");
        for (i, r) in v.rows.iter().enumerate() {
            h.push_str("<tr>");
            for cell in NoticeList::cells(v, i + 1, r) {
                let _ = write!(h, "<td>{}</td>", escape(&cell));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</tbody></table></section>\n");
    }
    h.push_str("</body></html>\n");
    h
}
