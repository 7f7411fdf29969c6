//! The list as CSV, in UTF-8 (with a BOM, so spreadsheet programs read the Chinese) or GBK (for
//! older office software): a title line, the notice's facts, then the table.

use crate::notice::NoticeList;

/// The encoding the clerk chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Gbk,
}

impl std::str::FromStr for Encoding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Ok(Encoding::Utf8),
            "gbk" | "gb18030" | "gb2312" => Ok(Encoding::Gbk),
            other => Err(format!("encoding {other:?}: utf-8 or gbk")),
        }
    }
}

pub fn to_csv(list: &NoticeList, encoding: Encoding) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
    w.write_record([list.title.as_str()])?;
    w.write_record(["公示单位", list.posted_by.as_str()])?;
    w.write_record(["异议受理", list.objections_to.as_str()])?;
    w.write_record(list.headers())?;
    for (v, n, r) in list.lines() {
        w.write_record(NoticeList::cells(v, n, r))?;
    }
    let text = String::from_utf8(w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;
    encode(&text, encoding)
}

/// CSV text in the chosen encoding (UTF-8 with a BOM).
pub(crate) fn encode(text: &str, encoding: Encoding) -> anyhow::Result<Vec<u8>> {
    Ok(match encoding {
        Encoding::Utf8 => [&b"\xEF\xBB\xBF"[..], text.as_bytes()].concat(),
        Encoding::Gbk => {
            let (bytes, _, unmappable) = encoding_rs::GBK.encode(text);
            anyhow::ensure!(!unmappable, "the file holds characters GBK cannot write; choose --encoding utf-8");
            bytes.into_owned()
        }
    })
}
