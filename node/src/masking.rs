//! Personal numbers in what the node prints (errors, logs, lists): ID numbers, phones and bank
//! accounts keep their first two and last two characters (domain.md §7). A mistyped ID number is
//! still most of a real person's number, so errors about one mask it too; the file and line say
//! which row it is.

use jianka_shared::id_number::IdNumberError;
pub use jianka_shared::id_number::mask;

/// What is wrong with an ID number: its message already shows the number masked and leaves its
/// birth date out (`IdNumberError`'s own wording, the same at the hub).
pub fn id_number_error(e: &IdNumberError) -> String {
    e.to_string()
}

/// A number a spreadsheet stored as a number cell (or wrote in its exponent form, 4.2E+17):
/// it kept 15 significant digits, the rest is gone and cannot be recovered from the file.
pub fn lost_digits(column: &str, raw: &str) -> String {
    format!(
        "the cell holds the number {}, not text: a spreadsheet keeps only 15 digits of a number, so the last \
         digits are lost; format the {column} column as text (设置单元格格式 → 文本) and enter the number again",
        mask(raw)
    )
}

/// Whether a cell's text is a number in a spreadsheet's exponent form (4.20322194509167E+17).
pub fn in_exponent_form(raw: &str) -> bool {
    raw.contains(['E', 'e']) && raw.trim().parse::<f64>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use jianka_shared::IdNumber;

    #[test]
    fn no_message_shows_the_number_or_its_birth_date() {
        let today = NaiveDate::from_ymd_opt(2014, 6, 1).unwrap();
        let good = IdNumber::compose("420322", NaiveDate::from_ymd_opt(1940, 1, 2).unwrap(), 1).unwrap().to_string();
        let wrong_check = format!("{}{}", &good[..17], if good.ends_with('0') { '1' } else { '0' });
        for bad in [wrong_check.as_str(), "42032219400102001", "4203221940A102001X", "420322194002300013"] {
            let e = IdNumber::parse(bad, today).unwrap_err();
            let msg = id_number_error(&e);
            assert!(msg.contains(&mask(bad)) && !msg.contains(bad) && !msg.contains("19400"), "{msg}");
        }
        assert!(in_exponent_form("4.20322194509167E+17") && !in_exponent_form("420322194509167000"));
        assert!(!lost_digits("身份证号", "420322194509167000").contains("4203221945"));
    }
}
